"""Compositing a re-rendered face into its photo (IDEudemon §3.3, visual similarity assistance).

The face region is the projected model's face: ``region_new`` (where the new face renders) and
``region_old`` (where the original face was). The output keeps the photo outside both (hair,
background, clothing), shows the new render inside ``region_new``, and fills the rest of
``region_old`` from the photo's surroundings by inpainting, so no pixel of the original face
survives. The seam is blended with a feathered alpha that never reaches into ``region_old``
beyond the mask's own anti-aliased edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Composite:
    """A composited face.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB result.
        face_mask: ``(H, W) float32`` in [0, 1], where the new face shows.
        removed_mask: ``(H, W) bool``, pixels of the original face region (all replaced).
        background: ``(H, W, 3) uint8`` the photo with the whole face region inpainted (holds no
            original face pixel; what restorers may blend against).
    """

    image: np.ndarray
    face_mask: np.ndarray
    removed_mask: np.ndarray
    background: np.ndarray


def inpaint_region(image: np.ndarray, region: np.ndarray, radius: float = 5.0, method: str = "telea") -> np.ndarray:
    """OpenCV inpainting of ``region (H, W) bool`` in ``image (H, W, 3) uint8``."""
    import cv2

    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    m = np.asarray(region, bool).astype(np.uint8) * 255
    if not m.any():
        return image.copy()
    return cv2.inpaint(np.ascontiguousarray(image[..., ::-1]), m, float(radius), flag)[..., ::-1].copy()


def composite_face(photo: np.ndarray, render: np.ndarray, coverage_new: np.ndarray, coverage_old: np.ndarray,
                   feather_px: float = 1.5) -> Composite:
    """Put ``render`` into ``photo`` over the new face, inpainting what the old face leaves uncovered.

    Args:
        photo: ``(H, W, 3) uint8`` RGB.
        render: ``(H, W, 3) float`` in [0, 1], the new face (valid where ``coverage_new`` > 0).
        coverage_new: ``(H, W)`` new-face coverage in [0, 1].
        coverage_old: ``(H, W)`` original-face coverage in [0, 1].
        feather_px: Gaussian σ (pixels) of the seam blend, applied inside the new face only.
    """
    import cv2

    H, W = photo.shape[:2]
    for name, a in (("render", render), ("coverage_new", coverage_new), ("coverage_old", coverage_old)):
        if a.shape[:2] != (H, W):
            raise ValueError(f"{name} must be {H}×{W}; got {a.shape[:2]}")
    new = np.asarray(coverage_new, np.float64)
    removed = (np.asarray(coverage_old) > 0) | (new > 0)
    # grow by one pixel so the anti-aliased rim of the old face is replaced too
    removed = cv2.dilate(removed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    background = inpaint_region(photo, removed)
    alpha = new
    if feather_px > 0:
        inner = cv2.GaussianBlur((new > 0.999).astype(np.float64), (0, 0), feather_px)
        alpha = np.minimum(new, inner)
        alpha = np.where(new > 0.999, np.maximum(alpha, 0.5 * new), alpha)
    a = alpha[..., None]
    out = a * np.clip(render, 0, 1) * 255.0 + (1 - a) * background.astype(np.float64)
    return Composite((out + 0.5).clip(0, 255).astype(np.uint8), alpha.astype(np.float32), removed, background)
