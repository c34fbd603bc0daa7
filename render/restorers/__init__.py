"""Image restorers (IDEudemon Step II): one contract, a registry, entry-point plugins.

Contract: ``restorer(image, context) -> image`` with ``image (H, W, 3) uint8`` RGB in and out,
same size; ``context`` is a :class:`RestoreContext` (face mask, the face-free background, the
face box). A restorer never receives the original face: privacy is decided before Step II.

Built-ins: ``none``, ``poisson`` (OpenCV seamless clone of the face into the background),
``inpaint`` (re-fills the seam band), ``color-match`` (face colour statistics matched to the
surrounding skin ring), ``onnx`` (a user-supplied face-restoration ONNX model, run by
onnxruntime from a local path). Other packages add restorers through the entry-point group
``headveil.restorers``: each entry point names a zero-argument factory returning a
:class:`Restorer` (or a class with that interface).
"""

from headveil.render.restorers.base import (
    ENTRY_POINT_GROUP,
    RestoreContext,
    Restorer,
    RestorerError,
    available_restorers,
    get_restorer,
    register_restorer,
    restore,
)

from headveil.render.restorers import builtin, onnx_model  # noqa: F401, E402  (registers the built-ins)

__all__ = ["ENTRY_POINT_GROUP", "RestoreContext", "Restorer", "RestorerError", "available_restorers",
           "get_restorer", "register_restorer", "restore"]
