"""Compositing a re-rendered face into its photo (IDEudemon §3.3, visual similarity assistance).

:func:`identical_share` measures what the promise below is worth: the share of a region's pixels
left byte-identical to the input.

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
        photo_match: what matching the new face to the photo did (``contrast_ratios`` per band of
            :func:`match_detail`, ``tone_shift_lab`` of :func:`match_face_tone`), None when it did not run.
    """

    image: np.ndarray
    face_mask: np.ndarray
    removed_mask: np.ndarray
    background: np.ndarray
    photo_match: dict | None = None


def inpaint_region(image: np.ndarray, region: np.ndarray, radius: float = 5.0, method: str = "telea") -> np.ndarray:
    """OpenCV inpainting of ``region (H, W) bool`` in ``image (H, W, 3) uint8``."""
    import cv2

    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    m = np.asarray(region, bool).astype(np.uint8) * 255
    if not m.any():
        return image.copy()
    return cv2.inpaint(np.ascontiguousarray(image[..., ::-1]), m, float(radius), flag)[..., ::-1].copy()


def fill_region(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``image (H, W, 3) uint8`` with ``region (H, W) bool`` filled from what surrounds it: a
    pull-push interpolation (:func:`~headveil.render.appearance.pull_push_fill`), smooth and
    seamless, where Telea's inpainting streaks a hole as large as a face into flat, hard-edged
    patches. Works on the region's box (grown by a margin) alone. (Adding the surroundings'
    measured grain was tried: it showed as speckle where the fill shows, and raised the seam's
    gradient energy by 6 % at fixed seeds.)"""
    from headveil.render.appearance import pull_push_fill

    region = np.asarray(region, bool)
    out = np.array(image, np.uint8, copy=True)
    box = _box(region)
    if box is None:
        return out
    H, W = region.shape
    m = max(8, int(0.15 * max(box[0].stop - box[0].start, box[1].stop - box[1].start)))
    ys = slice(max(box[0].start - m, 0), min(box[0].stop + m, H))
    xs = slice(max(box[1].start - m, 0), min(box[1].stop + m, W))
    hole = region[ys, xs]
    block = out[ys, xs]  # a view: filled in place
    if hole.all():  # nothing around it to fill from
        block[hole] = 128
        return out
    filled = pull_push_fill(block.astype(np.float32), (~hole).astype(np.float32))
    block[hole] = np.clip(filled[hole] + 0.5, 0, 255).astype(np.uint8)
    return out


def multiband_blend(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, levels: int = 4) -> np.ndarray:
    """Laplacian-pyramid blend (Burt & Adelson) of ``fg`` over ``bg`` (both ``(H, W, 3)`` float) with
    ``alpha (H, W)`` in [0, 1]: fine detail switches at the mask's edge, colour and shading blend over
    a band that widens with the level, so a tone step across a seam is spread out."""
    import cv2

    def gauss(x):
        out = [x]
        for _ in range(levels):
            out.append(cv2.pyrDown(out[-1]))
        return out

    def lap(g):
        return [g[i] - cv2.pyrUp(g[i + 1], dstsize=(g[i].shape[1], g[i].shape[0])) for i in range(levels)] + [g[-1]]

    fg32, bg32, a32 = (np.asarray(x, np.float32) for x in (fg, bg, alpha))
    la, lb, ga = lap(gauss(fg32)), lap(gauss(bg32)), gauss(a32)
    out = None
    for i in range(levels, -1, -1):
        m = ga[i][..., None]
        band = la[i] * m + lb[i] * (1 - m)
        out = band if out is None else cv2.pyrUp(out, dstsize=(band.shape[1], band.shape[0])) + band
    return out


def composite_face(photo: np.ndarray, render: np.ndarray, coverage_new: np.ndarray, coverage_old: np.ndarray,
                   feather_px: float = 1.5, face_region: np.ndarray | None = None,
                   blend: str = "multiband") -> Composite:
    """Put ``render`` into ``photo`` over the new face, inpainting what the old face leaves uncovered.

    Args:
        photo: ``(H, W, 3) uint8`` RGB.
        render: ``(H, W, 3) float`` in [0, 1], the new face (valid where ``coverage_new`` > 0).
        coverage_new: ``(H, W)`` new-face coverage in [0, 1].
        coverage_old: ``(H, W)`` original-face coverage in [0, 1].
        feather_px: Gaussian σ (pixels) of the seam blend, applied inside the new face only.
        face_region: optional ``(H, W) bool``, the face as the detector outlines it (e.g. the hull of
            its landmarks): replaced too, where the model's face does not reach (jaw line, cheek rim).
        blend: ``feather`` (the feathered mask alone) or ``multiband`` (the default: a Laplacian
            pyramid blend against the face-free background, confined to the replaced region, so a
            tone step at the seam spreads out; pixels outside that region are never touched).
    """
    import cv2

    H, W = photo.shape[:2]
    for name, a in (("render", render), ("coverage_new", coverage_new), ("coverage_old", coverage_old)):
        if a.shape[:2] != (H, W):
            raise ValueError(f"{name} must be {H}×{W}; got {a.shape[:2]}")
    new = np.asarray(coverage_new, np.float64)
    removed = (np.asarray(coverage_old) > 0) | (new > 0)
    if face_region is not None:
        if face_region.shape != (H, W):
            raise ValueError(f"face_region must be {H}×{W}; got {face_region.shape}")
        removed |= np.asarray(face_region, bool)
    # grow by one pixel so the anti-aliased rim of the old face is replaced too
    removed = cv2.dilate(removed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    background = fill_region(photo, removed)
    alpha = new
    if feather_px > 0:
        inner = cv2.GaussianBlur((new > 0.999).astype(np.float64), (0, 0), feather_px)
        alpha = np.minimum(new, inner)
        alpha = np.where(new > 0.999, np.maximum(alpha, 0.5 * new), alpha)
    if blend not in ("feather", "multiband"):
        raise ValueError(f"blend must be 'feather' or 'multiband'; got {blend!r}")
    a = alpha[..., None]
    bgf = background.astype(np.float64)
    out = a * np.clip(render, 0, 1) * 255.0 + (1 - a) * bgf
    if blend == "multiband" and alpha.any():
        fg = np.where(new[..., None] > 0, np.clip(render, 0, 1) * 255.0, bgf)  # defined everywhere
        levels = int(np.clip(np.log2(max(np.sqrt(alpha.sum()), 8.0)) - 3, 1, 4))
        mb = multiband_blend(fg, bgf, alpha, levels).astype(np.float64)
        out = np.where(removed[..., None], mb, out)
    return Composite((out + 0.5).clip(0, 255).astype(np.uint8), alpha.astype(np.float32), removed, background)


def match_detail(render: np.ndarray, mask: np.ndarray, photo: np.ndarray, photo_mask: np.ndarray,
                 sigmas: tuple[float, ...], limits: tuple[float, float] = (0.35, 1.0),
                 support: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Bring a new face's local contrast to the photo's own face, so that it does not look painted
    on. A mix of donors, or a donor's face taken by another camera, shows more (or less) contrast in
    its features and skin than the photo it goes into has at this scale.

    Both images are split into bands by Gaussians of increasing ``sigmas`` (px; the render's blurs
    normalised over its own mask, so the empty surroundings do not leak in): band ``i`` is the
    difference of the blurs at ``sigmas[i-1]`` (0: the image) and ``sigmas[i]``. Each band of the
    render is scaled so that its luminance spread over ``mask`` equals the photo's over
    ``photo_mask``, the ratio clipped to ``limits`` (by default never sharper than it was); what
    is coarser than the last sigma (tone, shading) is kept.

    Args:
        render: ``(H, W, 3) float`` in [0, 1], valid where ``support``; ``mask``: ``(H, W) bool``,
            the new face's interior (where its spread is measured).
        photo: ``(H, W, 3) uint8``; ``photo_mask``: ``(H, W) bool``, the original face's interior.
        support: ``(H, W) bool`` where the render is defined and its detail is scaled (default
            ``mask``; the whole rendered face, so that no edge is left where the interior ends).
    Returns:
        ``(render (H, W, 3) float64 in [0, 1], the ratio applied per band)``; the render as it was
        (ratios 1) when either mask holds fewer than 50 pixels.
    """
    import cv2

    mask, photo_mask = np.asarray(mask, bool), np.asarray(photo_mask, bool)
    r = np.asarray(render, np.float64)
    if mask.sum() < 50 or photo_mask.sum() < 50:
        return r, [1.0] * len(sigmas)
    lum = np.array([0.299, 0.587, 0.114])
    support = mask if support is None else np.asarray(support, bool) | mask
    m = support.astype(np.float64)
    p = np.asarray(photo, np.float64) / 255.0

    def blur_r(s):
        return cv2.GaussianBlur(r * m[..., None], (0, 0), s) / np.maximum(cv2.GaussianBlur(m, (0, 0), s), 1e-6)[..., None]

    prev_r, prev_p, out, ks = r, p, None, []
    for s in sigmas:
        lr, lp = blur_r(s), cv2.GaussianBlur(p, (0, 0), s)
        band_r, band_p = prev_r - lr, prev_p - lp
        k = float(np.clip((band_p[photo_mask] @ lum).std() / max((band_r[mask] @ lum).std(), 1e-9), *limits))
        out = k * band_r if out is None else out + k * band_r
        ks.append(k)
        prev_r, prev_p = lr, lp
    return np.clip(np.where(support[..., None], prev_r + out, r), 0, 1), ks


def match_face_tone(render: np.ndarray, mask: np.ndarray, photo: np.ndarray, photo_mask: np.ndarray,
                    max_shift: float = 25.0) -> tuple[np.ndarray, list[float]]:
    """Shift a new face's colour so that its median in CIELAB over ``mask`` is the photo's own face's
    over ``photo_mask``: the camera's colour of this person's skin under this light, which the
    neck and ears around it share. The albedo was tone-matched before relighting; what a light
    estimate, a mix and the contrast matching leave of a colour offset is taken out here. The
    shift (each channel clipped to ``±max_shift``) applies to the whole render, so no edge is made
    where ``mask`` ends.

    Args: as :func:`match_detail` (``render (H, W, 3) float`` in [0, 1], ``photo uint8``).
    Returns:
        ``(render (H, W, 3) float64 in [0, 1], the L*, a*, b* shift applied)``; unchanged (shift 0)
        when either mask holds fewer than 50 pixels.
    """
    from headveil.common.images import lab_to_srgb, srgb_to_lab

    mask, photo_mask = np.asarray(mask, bool), np.asarray(photo_mask, bool)
    r = np.asarray(render, np.float64)
    if mask.sum() < 50 or photo_mask.sum() < 50:
        return r, [0.0, 0.0, 0.0]
    lab = srgb_to_lab(np.clip(r, 0, 1).astype(np.float32))
    lab_p = srgb_to_lab((np.asarray(photo)[photo_mask] / 255.0).astype(np.float32))
    shift = np.clip(np.median(lab_p, 0) - np.median(lab[mask], 0), -max_shift, max_shift)
    out = np.clip(lab_to_srgb((lab + shift).astype(np.float32)), 0, 1)
    return out.astype(np.float64), [float(x) for x in shift]


def face_region_from_points(points: np.ndarray, shape: tuple[int, int], grow_px: float = 2.0) -> np.ndarray:
    """``(H, W) bool``: the convex hull of landmark ``points (L, 2)`` (pixels), grown by ``grow_px``."""
    import cv2

    H, W = shape
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.isfinite(pts).all():
        raise ValueError(f"points must be a finite (L ≥ 3, 2) array; got {pts.shape}")
    hull = cv2.convexHull(np.round(pts).astype(np.int32))
    m = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(m, hull, 1)
    r = int(np.ceil(grow_px))
    if r > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return m.astype(bool)


def identical_share(original: np.ndarray, output: np.ndarray, region: np.ndarray) -> float:
    """Share in [0, 1] of ``region (H, W) bool`` whose pixels are byte-identical (all three
    channels) in ``original`` and ``output`` (both ``(H, W, 3) uint8``); 0 for an empty region."""
    region = np.asarray(region, bool)
    box = _box(region)
    if box is None:
        return 0.0
    r = region[box]
    same = _same_pixels(np.asarray(original)[box], np.asarray(output)[box])
    return float((same & r).sum() / r.sum())


def _same_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(h, w) bool``: where ``a`` and ``b`` (both ``(h, w, 3) uint8``) agree in all three channels
    (OpenCV's |a − b| summed over the channels, saturating: zero only where every channel is; ≈ 4×
    numpy's ``all(a == b, -1)``)."""
    import cv2

    d = cv2.absdiff(np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(b, np.uint8))
    return cv2.transform(d, np.ones((1, 3))) == 0


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of ``mask (H, W) bool`` as slices (None when empty): whole-photo masks of
    one face are compared on their box alone."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def break_coincidences(original: np.ndarray, output: np.ndarray, region: np.ndarray,
                       copy: bool = True) -> tuple[np.ndarray, int]:
    """Make every pixel of ``region`` differ from ``original``: a re-rendered pixel can land on the
    input's exact value by chance (photo colours re-sampled at nearly the same place); those get
    their green channel's lowest bit flipped (±1 of 255, invisible), so that "no original face pixel
    survives" holds byte for byte and can be checked. Returns ``(image, pixels changed)``;
    ``copy=False`` changes a ``uint8`` ``output`` in place (a large photo's copy is costly)."""
    out = np.array(output, np.uint8, copy=True) if copy or output.dtype != np.uint8 else output
    region = np.asarray(region, bool)
    box = _box(region)
    if box is None:
        return out, 0
    o = out[box]  # a view: flipped in place
    same = _same_pixels(np.asarray(original)[box], o) & region[box]
    o[same, 1] ^= 1
    return out, int(same.sum())
