"""What covers a face: hair strands, hat brims, glasses frames, hands — kept on top of a new face.

:func:`occluder_mask` marks, inside a face's outline, the pixels a per-face skin-colour model
(:func:`skin_distance`) rejects: a Gaussian in CIELAB fitted robustly (median and MAD) on small
skin patches the landmarks locate (cheeks, forehead centre, nose bridge, chin). The eye, brow and lip polygons are features,
never occluders (they are the face to replace); the background a person segmenter sees inside the
outline is kept too; small specks are removed by a morphological opening,
so shadows and pores stay part of the face, and only blobs that reach the outline's rim count
(occluders come in from outside the face). A de-identified face is composited *under* the occluders:
those pixels keep their original values (they are not the face) and are reported by count.

Landmark schemes: ``mediapipe478`` (the detector cascade's) and ``ibug68``.
"""

from __future__ import annotations

import numpy as np

#: Feature polygons per scheme (pixels inside are the face's features, never occluders).
FEATURES = {
    "mediapipe478": {
        "eye_left": [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246],
        "eye_right": [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466],
        "brow_left": [70, 63, 105, 66, 107, 55, 65, 52, 53, 46],
        "brow_right": [300, 293, 334, 296, 336, 285, 295, 282, 283, 276],
        "lips": [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185],
    },
    "ibug68": {"eye_left": list(range(36, 42)), "eye_right": list(range(42, 48)), "brow_left": list(range(17, 22)),
               "brow_right": list(range(22, 27)), "lips": list(range(48, 60))},
}
#: Skin patch centres per scheme: cheeks, forehead centre, nose bridge, chin.
SKIN_PATCHES = {"mediapipe478": [50, 280, 151, 6, 199, 205, 425], "ibug68": [2, 14, 29, 8, 31, 35]}


def feature_mask(points: np.ndarray, scheme: str, shape: tuple[int, int], grow_px: int = 2) -> np.ndarray:
    """``(H, W) bool``: the eye, brow and lip polygons of landmark ``points (L, 2)``, grown by ``grow_px``."""
    import cv2

    m = np.zeros(shape, np.uint8)
    for idx in FEATURES.get(scheme, {}).values():
        if len(points) > max(idx):
            cv2.fillPoly(m, [cv2.convexHull(np.round(np.asarray(points)[idx]).astype(np.int32))], 1)
    if grow_px > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1,) * 2))
    return m.astype(bool)


def skin_distance(photo: np.ndarray, points: np.ndarray, scheme: str, region: np.ndarray) -> np.ndarray | None:
    """``(H, W) float64``: every pixel's distance (robust units) to one face's skin colour — a
    Gaussian in CIELAB fitted by median and MAD (floors 15 L*, 3 a*/b*: shading moves lightness far
    more than hue) on small patches at the cheeks, forehead centre, nose bridge and chin of
    landmark ``points (L, 2)`` inside ``region (H, W) bool``; None when the patches hold fewer than
    30 pixels."""
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
    if patches.sum() < 30:
        return None
    lab = cv2.cvtColor(photo, cv2.COLOR_RGB2LAB).astype(np.float64)
    x = lab[patches > 0]
    med = np.median(x, 0)
    mad = np.maximum(np.median(np.abs(x - med), 0) * 1.4826, [15.0, 3.0, 3.0])
    return np.sqrt((((lab - med) / mad) ** 2).sum(-1))


def occluder_mask(photo: np.ndarray, points: np.ndarray, scheme: str, region: np.ndarray,
                  max_distance: float = 4.0, min_blob_frac: float = 0.03, person: np.ndarray | None = None) -> np.ndarray:
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

    Returns:
        ``(H, W) bool``: pixels of ``region`` to keep from the photo.
    """
    import cv2

    pts = np.asarray(points, np.float64)
    H, W = photo.shape[:2]
    size = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    d = skin_distance(photo, pts, scheme, region)
    if d is None:
        return np.zeros((H, W), bool)
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
    if person is not None:
        keep |= (np.asarray(person) < 0.5) & ~feature_mask(pts, scheme, (H, W))
    return keep & np.asarray(region, bool)


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
