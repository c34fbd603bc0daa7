"""What covers a face: hair strands, hat brims, glasses frames, hands — kept on top of a new face.

:func:`occluder_mask` marks, inside a face's outline, the pixels a per-face skin-colour model
(:func:`skin_distance`) rejects: a Gaussian in CIELAB fitted robustly (median and MAD) on small
skin patches the landmarks locate (cheeks, forehead centre, nose bridge, chin). The eye, brow and lip polygons are features,
never occluders (they are the face to replace); the background a person segmenter sees inside the
outline is kept too; small specks are removed by a morphological opening,
so shadows and pores stay part of the face, and only blobs that reach the outline's rim count
(occluders come in from outside the face). A glasses frame is found by its lens outlines
(:mod:`headveil.render.glasses`) before the skin model is fitted, which then leaves the glasses'
band out (a bridge lies on the nose patch); the frame is then kept whole or goes with the face
(``glasses``). A de-identified face is composited *under* the occluders: those pixels keep their
original values (they are not the face) and are reported by count.

Landmark schemes: ``mediapipe478`` (the detector cascade's) and ``ibug68``.
"""

from __future__ import annotations

import numpy as np

from headveil.render.face_parts import feature_mask

#: Skin patch centres per scheme: cheeks, forehead centre, nose bridge, chin.
SKIN_PATCHES = {"mediapipe478": [50, 280, 151, 6, 199, 205, 425], "ibug68": [2, 14, 29, 8, 31, 35]}


def skin_distance(photo: np.ndarray, points: np.ndarray, scheme: str, region: np.ndarray,
                  exclude: np.ndarray | None = None) -> np.ndarray | None:
    """``(H, W) float64``: every pixel's distance (robust units) to one face's skin colour — a
    Gaussian in CIELAB fitted by median and MAD (floors 15 L*, 3 a*/b*: shading moves lightness far
    more than hue) on small patches at the cheeks, forehead centre, nose bridge and chin of
    landmark ``points (L, 2)`` inside ``region (H, W) bool`` and outside ``exclude (H, W) bool``
    (e.g. the band a pair of glasses spans: a bridge lies on the nose patch, rims on the cheeks');
    None when the patches hold fewer than 30 pixels."""
    import cv2

    pts = np.asarray(points, np.float64)
    H, W = photo.shape[:2]
    size = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    r = max(2, int(0.045 * size))
    patches = np.zeros((H, W), np.uint8)
    for i in SKIN_PATCHES.get(scheme, []):
        if i < len(pts):
            cv2.circle(patches, tuple(int(round(c)) for c in pts[i]), r, 1, -1)
    patches &= np.asarray(region, np.uint8)
    if exclude is not None:
        patches &= ~np.asarray(exclude, bool)
    if patches.sum() < 30:
        return None
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float64)
    x = lab[patches > 0]
    med = np.median(x, 0)
    mad = np.maximum(np.median(np.abs(x - med), 0) * 1.4826, [15.0, 3.0, 3.0])
    return np.sqrt((((lab - med) / mad) ** 2).sum(-1))


def occluder_mask(photo: np.ndarray, points: np.ndarray, scheme: str, region: np.ndarray,
                  max_distance: float = 4.0, min_blob_frac: float = 0.03, person: np.ndarray | None = None,
                  glasses: str = "keep", with_frame: bool = False):
    """Occluders on one face.

    Args:
        photo: ``(H, W, 3) uint8`` RGB.
        points: ``(L, 2)`` landmarks of the face (pixels) in ``scheme``.
        region: ``(H, W) bool`` the face's outline (e.g. the landmark hull) — only pixels inside it
            can be occluders.
        max_distance: Mahalanobis distance (robust units) beyond which a pixel is not this face's skin.
        min_blob_frac: opening radius as a share of the face size (removes specks and shadows).
        person: optional ``(H, W)`` person confidence (:mod:`headveil.geometry.perception.segmentation`):
            background inside the outline (confidence < 0.5; the outline's hull overshoots a turned
            face) is kept as well.
        glasses: what becomes of a glasses frame (:func:`headveil.render.glasses.frame_mask`):
            ``keep`` — it stays on top like any occluder; ``replace`` — it goes with the face (the
            new face is drawn where it was, and the skin model's blobs on it, such as a rim's
            outer corners that reach the outline, are dropped within the glasses' band).
        with_frame: return the frame's pixels as well.

    Returns:
        ``(H, W) bool``: pixels of ``region`` to keep from the photo; with ``with_frame``,
        ``(that, the frame (H, W) bool)`` — what is not skin either way (a texture baked from the
        photo leaves both out).
    """
    if glasses not in ("keep", "replace"):
        raise ValueError(f"glasses must be 'keep' or 'replace', got {glasses!r}")
    import cv2

    from headveil.render.glasses import find_glasses, frame_mask, glasses_band

    pts = np.asarray(points, np.float64)
    H, W = photo.shape[:2]
    size = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    # glasses first: the skin model then leaves their band out (a bridge on the nose patch)
    g = find_glasses(photo, pts, scheme)
    band = glasses_band(g, (H, W)) if g is not None else np.zeros((H, W), bool)
    d = skin_distance(photo, pts, scheme, region, exclude=band) if band.any() else None
    if d is None:  # no glasses, or too little skin left outside their band (a small face)
        d = skin_distance(photo, pts, scheme, region)
    if d is None:
        return (np.zeros((H, W), bool), np.zeros((H, W), bool)) if with_frame else np.zeros((H, W), bool)
    occ = (d > max_distance) & np.asarray(region, bool) & ~feature_mask(pts, scheme, (H, W))
    k = max(3, int(min_blob_frac * size)) | 1
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    occ = cv2.morphologyEx(occ.astype(np.uint8), cv2.MORPH_OPEN, ker)
    # occluders come in from outside the face (hair, brims, hands, the arms of glasses): keep the
    # blobs that reach the outline's rim; a blob wholly inside is the face's own (shadow, mole, beard)
    reg = np.asarray(region, np.uint8)
    b = max(3, int(0.04 * size)) | 1
    rim = reg & ~cv2.erode(reg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (b, b)))
    n, lab_img = cv2.connectedComponents(occ, connectivity=8)
    touching = np.unique(lab_img[(rim > 0) & (occ > 0)])
    keep = np.isin(lab_img, touching[touching > 0])
    frame = frame_mask(photo, pts, scheme, region, distance=d, glasses=g)
    if glasses == "keep":
        keep |= frame
    elif frame.any():  # the frame goes: so do the blobs on it, within the glasses' band
        on = np.unique(lab_img[frame & keep])
        keep &= ~(np.isin(lab_img, on[on > 0]) & band) & ~frame
    if person is not None:
        keep |= (np.asarray(person) < 0.5) & ~feature_mask(pts, scheme, (H, W))
    keep &= np.asarray(region, bool)
    return (keep, frame) if with_frame else keep


def keep_occluders(output: np.ndarray, photo: np.ndarray, occluders: np.ndarray, feather_px: float = 0.8,
                   copy: bool = True) -> np.ndarray:
    """``output`` with the ``occluders (H, W) bool`` pixels of ``photo`` put back on top (a soft
    edge of ``feather_px``; the occluders' own pixels are the photo's exactly); ``copy=False``
    changes ``output`` in place (a large photo's copy is costly)."""
    import cv2

    if not occluders.any():
        return output
    ys, xs = np.nonzero(occluders)  # work on the occluders' box only (a face in a large photo)
    m = int(np.ceil(3 * feather_px)) + 1
    y0, y1 = max(ys.min() - m, 0), min(ys.max() + m + 1, occluders.shape[0])
    x0, x1 = max(xs.min() - m, 0), min(xs.max() + m + 1, occluders.shape[1])
    occ = occluders[y0:y1, x0:x1]
    a = cv2.GaussianBlur(occ.astype(np.float32), (0, 0), feather_px) if feather_px > 0 else occ.astype(np.float32)
    a = np.where(occ, 1.0, a)[..., None]
    out = np.array(output, copy=True) if copy else output
    blend = a * photo[y0:y1, x0:x1].astype(np.float32) + (1 - a) * output[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (blend + 0.5).clip(0, 255).astype(np.uint8)
    return out
