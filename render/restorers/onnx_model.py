"""The ``onnx`` restorer: a user-supplied face-restoration model (e.g. a GFPGAN or CodeFormer export).

The model is read from a local path (nothing is downloaded) and run with onnxruntime on the CPU.
Expected signature: one input ``(1, 3, S, S)`` float32 RGB in [−1, 1] (``S`` fixed, or dynamic and
then ``size`` is used) and one output of the same shape and range — the GFPGAN/CodeFormer export
convention. The face box (from the face mask) is cropped square, resized to ``S``, restored,
resized back and blended in through the face mask, so pixels outside the face never change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headveil.render.restorers.base import RestoreContext, Restorer, RestorerError, register_restorer


class OnnxRestorer(Restorer):
    """Run a face-restoration ONNX model on the face crop.

    Args:
        model: path of the ``.onnx`` file.
        size: crop side when the model's spatial size is dynamic.
        value_range: ``"-1,1"`` (GFPGAN/CodeFormer) or ``"0,1"``.
    """

    name = "onnx"

    def __init__(self, model: str | Path | None = None, size: int = 512, value_range: str = "-1,1"):
        if model is None:
            raise RestorerError("the onnx restorer needs model=PATH to a local .onnx file")
        path = Path(model)
        if not path.is_file():
            raise RestorerError(f"ONNX model not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RestorerError(f"the onnx restorer needs onnxruntime ({exc}); install headveil[onnx]") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise RestorerError(f"cannot load ONNX model {path}: {exc}") from None
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or len(outs) < 1:
            raise RestorerError(f"{path}: expected one image input, got {len(ins)} inputs and {len(outs)} outputs")
        shape = ins[0].shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise RestorerError(f"{path}: input {ins[0].name!r} has shape {shape}; expected (1, 3, S, S) RGB")
        h, w = shape[2], shape[3]
        fixed = [d for d in (h, w) if isinstance(d, int)]
        if fixed and (len(fixed) != 2 or h != w):
            raise RestorerError(f"{path}: input {ins[0].name!r} has shape {shape}; expected a square (1, 3, S, S)")
        self.size = int(h) if fixed else int(size)
        self.input_name = ins[0].name
        lo, hi = (float(x) for x in value_range.split(","))
        self.lo, self.hi = lo, hi

    def __call__(self, image, context: RestoreContext):
        import cv2

        H, W = image.shape[:2]
        x0, y0, x1, y1 = context.face_box
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        X0, Y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        S = int(round(side))
        if S < 8:
            return image
        pad = max(0, -X0, -Y0, X0 + S - W, Y0 + S - H)
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        crop = padded[Y0 + pad:Y0 + pad + S, X0 + pad:X0 + pad + S]
        x = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = x * (self.hi - self.lo) + self.lo
        try:
            y = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0]
        except Exception as exc:
            raise RestorerError(f"the ONNX model failed on a (1, 3, {self.size}, {self.size}) input: {exc}") from None
        if y.shape != (1, 3, self.size, self.size):
            raise RestorerError(f"the ONNX model returned {y.shape}; expected (1, 3, {self.size}, {self.size})")
        y = ((y[0].transpose(1, 2, 0) - self.lo) / (self.hi - self.lo)).clip(0, 1)
        y = cv2.resize((y * 255 + 0.5).astype(np.uint8), (S, S), interpolation=cv2.INTER_CUBIC)
        restored = padded.copy()
        restored[Y0 + pad:Y0 + pad + S, X0 + pad:X0 + pad + S] = y
        restored = restored[pad:pad + H, pad:pad + W]
        a = context.face_mask[..., None].astype(np.float64)
        return (a * restored + (1 - a) * image + 0.5).astype(np.uint8)


register_restorer("onnx", OnnxRestorer)
