"""A face's parts from its landmarks: the eye, brow and lip polygons (the features a new face
replaces and occluder searches leave alone). Landmark schemes: ``mediapipe478`` and ``ibug68``;
points are pixels of the photo, ``(L, 2)``.
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


def polygon_mask(points: np.ndarray, polygons: list, shape: tuple[int, int], grow_px: int = 0) -> np.ndarray:
    """``(H, W) bool``: the convex hulls of ``points (L, 2)`` (pixels) at each index list of
    ``polygons``, grown by ``grow_px``; lists that index past the points are skipped."""
    import cv2

    m = np.zeros(shape, np.uint8)
    for idx in polygons:
        if len(points) > max(idx):
            cv2.fillPoly(m, [cv2.convexHull(np.round(np.asarray(points)[idx]).astype(np.int32))], 1)
    if grow_px > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1,) * 2))
    return m.astype(bool)


def feature_mask(points: np.ndarray, scheme: str, shape: tuple[int, int], grow_px: int = 2) -> np.ndarray:
    """``(H, W) bool``: the eye, brow and lip polygons of landmark ``points (L, 2)``, grown by ``grow_px``."""
    return polygon_mask(points, list(FEATURES.get(scheme, {}).values()), shape, grow_px)
