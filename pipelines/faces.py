"""Faces in photos, shared by every command that works on them (``deid``, ``donors``).

:func:`select_faces` picks the faces ``--faces`` asks for (the detector cascade, largest first);
:class:`FaceWindow` is the working window around one face (downscaled beyond
:data:`WORK_FACE_PX`, pasted back); :func:`fit_in_window` fits the face in the photo's camera seen
through that window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORK_FACE_PX = 512
"""Faces larger than this (geometric mean of the box sides, pixels) are de-identified on a
downscaled copy of their window and pasted back: a 24-megapixel photo costs what a 1-megapixel one
does, and the re-rendered face holds no more detail than the model's texture anyway."""
WINDOW_MARGIN = 0.9
"""The working window is the face box grown by this × the face size on every side."""


@dataclass
class FaceWindow:
    """Where one face is worked on: ``x0, y0, x1, y1`` in the photo (pixels) and the scale ``s``
    of the working copy (1 = full resolution)."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float

    @classmethod
    def around(cls, det, height: int, width: int) -> FaceWindow:
        m = WINDOW_MARGIN * det.size
        x0, y0 = max(int(np.floor(det.box[0] - m)), 0), max(int(np.floor(det.box[1] - m)), 0)
        x1, y1 = min(int(np.ceil(det.box[2] + m)), width), min(int(np.ceil(det.box[3] + m)), height)
        return cls(x0, y0, x1, y1, min(1.0, WORK_FACE_PX / max(det.size, 1.0)))

    def detection_in(self, det, work_shape):
        """``det`` (photo pixels) in the working copy's pixels (shifted to the window, scaled)."""
        sx, sy = work_shape[1] / (self.x1 - self.x0), work_shape[0] / (self.y1 - self.y0)
        d = det.shifted(self.x0, self.y0)
        return type(d)(d.points * [sx, sy], d.scheme, d.box * [sx, sy, sx, sy], d.score, d.detector, d.blendshapes,
                       d.head_pose, None if d.depth is None else d.depth * sx)

    def crop(self, image: np.ndarray) -> np.ndarray:
        import cv2

        c = image[self.y0:self.y1, self.x0:self.x1]
        if self.scale == 1.0:
            return np.ascontiguousarray(c)
        size = (max(round(c.shape[1] * self.scale), 2), max(round(c.shape[0] * self.scale), 2))
        return cv2.resize(c, size, interpolation=cv2.INTER_AREA)

    def camera_K(self, K_full: np.ndarray, work_shape) -> np.ndarray:
        """Intrinsics of the working copy, for the photo's camera ``K_full (3, 3)``."""
        K = np.asarray(K_full, np.float64).copy()
        K[0, 2] -= self.x0
        K[1, 2] -= self.y0
        K[0] *= work_shape[1] / (self.x1 - self.x0)
        K[1] *= work_shape[0] / (self.y1 - self.y0)
        return K

    def full_K(self, K_work: np.ndarray, work_shape) -> np.ndarray:
        """Inverse of :meth:`camera_K`: the photo's intrinsics from the working copy's."""
        K = np.asarray(K_work, np.float64).copy()
        K[0] /= work_shape[1] / (self.x1 - self.x0)
        K[1] /= work_shape[0] / (self.y1 - self.y0)
        K[0, 2] += self.x0
        K[1, 2] += self.y0
        return K

    def paste(self, photo: np.ndarray, work_out: np.ndarray, replaced_work: np.ndarray) -> np.ndarray:
        """The photo with the working copy's result inside ``replaced_work (h, w) bool`` (everything
        else keeps the photo's own full-resolution pixels). A downscaled copy is brought back to
        full resolution (bicubic, the mask's edge bilinear) on the replaced region's box alone: in a
        large photo the window is several times the face."""
        import cv2

        out = photo.copy()
        h, w = self.y1 - self.y0, self.x1 - self.x0
        if self.scale == 1.0:
            out[self.y0:self.y1, self.x0:self.x1] = np.where(replaced_work[..., None], work_out,
                                                             photo[self.y0:self.y1, self.x0:self.x1])
            return out
        rows, cols = np.flatnonzero(replaced_work.any(1)), np.flatnonzero(replaced_work.any(0))
        if len(rows) == 0:
            return out
        hw, ww = replaced_work.shape
        fx, fy = ww / w, hw / h  # working pixels per photo pixel
        m = 4  # the grown mask (2 px) and the bilinear edge (1 px) reach this far, in working pixels
        bx0, bx1 = max(cols[0] - m, 0), min(cols[-1] + 1 + m, ww)
        by0, by1 = max(rows[0] - m, 0), min(rows[-1] + 1 + m, hw)
        X0, X1 = int(np.floor(bx0 / fx)), min(int(np.ceil(bx1 / fx)), w)  # the box in window pixels
        Y0, Y1 = int(np.floor(by0 / fy)), min(int(np.ceil(by1 / fy)), h)
        # what cv2.resize to (w, h) samples at a window pixel (x + 0.5) / f − 0.5, from the box's corner
        M = np.array([[fx, 0, (X0 + 0.5) * fx - 0.5], [0, fy, (Y0 + 0.5) * fy - 0.5]])
        size, inv = (X1 - X0, Y1 - Y0), cv2.WARP_INVERSE_MAP
        up = cv2.warpAffine(work_out, M, size, flags=cv2.INTER_CUBIC | inv, borderMode=cv2.BORDER_REPLICATE)
        grown = cv2.dilate(replaced_work.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
        a = np.clip(cv2.warpAffine(grown, M, size, flags=cv2.INTER_LINEAR | inv, borderMode=cv2.BORDER_REPLICATE),
                    0, 1)[..., None]
        ys, xs = slice(self.y0 + Y0, self.y0 + Y1), slice(self.x0 + X0, self.x0 + X1)
        win = photo[ys, xs].astype(np.float32)
        out[ys, xs] = np.clip(a * up.astype(np.float32) + (1 - a) * win + 0.5, 0, 255).astype(np.uint8)
        return out

    def to_full(self, mask_work: np.ndarray, shape) -> np.ndarray:
        """A working-copy mask ``(h, w) bool`` in photo pixels ``shape (H, W)``."""
        import cv2

        full = np.zeros(shape[:2], bool)
        h, w = self.y1 - self.y0, self.x1 - self.x0
        m = mask_work if self.scale == 1.0 else cv2.resize(mask_work.astype(np.uint8), (w, h),
                                                          interpolation=cv2.INTER_NEAREST).astype(bool)
        full[self.y0:self.y1, self.x0:self.x1] = m
        return full


def fit_in_window(work: np.ndarray, win: FaceWindow, det_w, photo_shape, fit_cfg, model, source: str):
    """Fit the face ``det_w`` (working-copy pixels) of the working copy ``work`` of a photo of
    ``photo_shape (H, W)``: the photo's camera (focal ``fit_cfg.focal_px`` or 1.2 × its larger side)
    seen through the window."""
    from headveil.pipelines.fit import fit_image

    H, W = photo_shape
    f = fit_cfg.focal_px or 1.2 * max(H, W)
    K_full = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    return fit_image(work, model, fit_cfg, source=source, detection=det_w, K=win.camera_K(K_full, work.shape))


def select_faces(img: np.ndarray, cmd, source: str) -> list:
    """The faces ``cmd.faces`` asks for (``all``, ``largest`` or the N largest; ``cmd.fit`` sets the
    detector), largest first; none found raises :class:`~headveil.common.errors.NoFaceFoundError`."""
    from headveil.common.errors import NoFaceFoundError
    from headveil.geometry.perception.detectors import detect_faces, resolve_detector

    found = detect_faces(img, cmd.fit.detector, cmd.fit.max_side)
    if not found:
        raise NoFaceFoundError(source, resolve_detector(cmd.fit.detector))
    if cmd.faces == "all":
        return found
    if cmd.faces == "largest":
        return found[:1]
    return found[: int(cmd.faces)]
