"""HeadVeil: privacy-preserving 3D head reconstruction and de-identification.

Importing is cheap: no torch, no model files, no GPU. Use the subpackages:
``headveil.geometry`` (head model, cameras, meshes, fitting), ``headveil.render`` (mesh renderer),
``headveil.pipelines`` (synthetic subjects, fitting runs, CLI).
"""

__version__ = "0.1.0"

from headveil.common.errors import HeadVeilError, ImageReadError, NoFaceFoundError  # noqa: E402

__all__ = ["__version__", "HeadVeilError", "ImageReadError", "NoFaceFoundError"]
