"""Image-space operators on a face region: the classic obfuscation baselines and region helpers.

Images are ``(H, W, 3) uint8`` RGB in and out; boxes are ``(4,) float x0, y0, x1, y1`` in pixels
(x1, y1 exclusive) and are clipped to the image. Every operator returns a new array and changes
only the pixels inside the box (the face region), as in the obfuscation baselines of the
de-identification literature (blurring, pixelation, masking).
"""

from __future__ import annotations

import numpy as np

from headveil.common.images import check_rgb8


def _box_slices(box, shape) -> tuple[slice, slice]:
    b = np.asarray(box, float)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"box must be a finite (4,) array x0, y0, x1, y1; got {b}")
    h, w = shape[:2]
    x0, y0 = int(np.clip(np.floor(b[0]), 0, w)), int(np.clip(np.floor(b[1]), 0, h))
    x1, y1 = int(np.clip(np.ceil(b[2]), 0, w)), int(np.clip(np.ceil(b[3]), 0, h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {b.tolist()} does not overlap the {w}×{h} image")
    return slice(y0, y1), slice(x0, x1)


def face_box_from_landmarks(landmarks, image_shape, margin: float = 0.15, forehead: float = 0.35) -> np.ndarray:
    """A face box from landmarks ``(N, 2)`` px: their bounds, raised by ``forehead`` × height to cover
    the forehead (68/478-point sets stop at the brows) and grown by ``margin`` on each side; clipped."""
    lm = np.asarray(landmarks, float)
    if lm.ndim != 2 or lm.shape[1] != 2 or len(lm) < 3:
        raise ValueError(f"landmarks must be (N, 2) with N ≥ 3; got {lm.shape}")
    lo, hi = lm.min(0), lm.max(0)
    w, h = hi - lo
    lo = lo - [margin * w, margin * h + forehead * h]
    hi = hi + [margin * w, margin * h]
    H, W = image_shape[:2]
    return np.array([max(lo[0], 0), max(lo[1], 0), min(hi[0], W), min(hi[1], H)], float)


def _prepare(image: np.ndarray, box, strength: float, name: str, minimum: float, identity: float):
    """Validate an operator's input; returns a copy to write into and the region's slices
    (``None`` when ``strength`` is the identity value: nothing to do)."""
    image = check_rgb8(image)
    if strength < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}; got {strength}")
    out = image.copy()
    return out, (None if strength == identity else _box_slices(box, image.shape))


def gaussian_blur(image: np.ndarray, box, sigma: float) -> np.ndarray:
    """Gaussian blur of the box region with standard deviation ``sigma`` px (0 → unchanged)."""
    import cv2

    out, region = _prepare(image, box, sigma, "sigma", 0, 0)
    if region is None:
        return out
    ys, xs = region
    # blur with the surroundings so the region edge does not darken, then paste the region back
    pad = int(np.ceil(3 * sigma))
    y0, y1 = max(ys.start - pad, 0), min(ys.stop + pad, out.shape[0])
    x0, x1 = max(xs.start - pad, 0), min(xs.stop + pad, out.shape[1])
    blurred = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    out[ys, xs] = blurred[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def downsample_blur(image: np.ndarray, box, factor: int) -> np.ndarray:
    """Downsample the region by ``factor`` (area average) and upsample it back bilinearly (1 → unchanged)."""
    import cv2

    out, region = _prepare(image, box, factor, "factor", 1, 1)
    if region is None:
        return out
    h, w = out[region].shape[:2]
    small = cv2.resize(out[region], (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    out[region] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def pixelate(image: np.ndarray, box, block: int) -> np.ndarray:
    """Replace each ``block × block`` cell of the region (anchored at its top-left) by its mean colour
    (1 → unchanged)."""
    out, region = _prepare(image, box, block, "block", 1, 1)
    if region is None:
        return out
    r = out[region].astype(np.float64)
    h, w = r.shape[:2]
    ys, xs = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(r, ys, axis=0), xs, axis=1)  # (cells y, cells x, 3)
    counts = np.outer(np.diff(np.r_[ys, h]), np.diff(np.r_[xs, w]))[..., None]
    means = np.repeat(np.repeat(sums / counts, np.diff(np.r_[ys, h]), 0), np.diff(np.r_[xs, w]), 1)
    out[region] = np.clip(np.round(means), 0, 255).astype(np.uint8)
    return out


def fill(image: np.ndarray, box, color=(0, 0, 0)) -> np.ndarray:
    """Fill the region with a solid ``color`` (3 ints in [0, 255])."""
    image = check_rgb8(image)
    c = np.asarray(color)
    if c.shape != (3,) or (c < 0).any() or (c > 255).any():
        raise ValueError(f"color must be 3 values in [0, 255]; got {color}")
    out = image.copy()
    ys, xs = _box_slices(box, image.shape)
    out[ys, xs] = c.astype(np.uint8)
    return out


def box_mask(box, shape) -> np.ndarray:
    """``(H, W) bool`` mask of a box."""
    m = np.zeros(shape[:2], bool)
    ys, xs = _box_slices(box, shape)
    m[ys, xs] = True
    return m
