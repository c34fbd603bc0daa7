"""Occluders: what enters the face from outside and is not skin stays on top; the face's own dark
parts (a mole, a shadow inside) and its features do not count."""

import numpy as np

from headveil.render.occlusion import feature_mask, keep_occluders, occluder_mask


def _face():
    """A 200² skin-coloured disc with iBUG-68-like landmarks on a grey background."""
    import cv2

    img = np.full((200, 200, 3), 120, np.uint8)
    cv2.circle(img, (100, 100), 70, (205, 150, 125), -1)
    t = np.linspace(0, 2 * np.pi, 17, endpoint=False)
    pts = np.zeros((68, 2))
    pts[:17] = np.stack([100 + 62 * np.cos(t), 100 + 62 * np.sin(t)], 1)
    for i in range(17, 68):  # features in the middle
        pts[i] = [70 + (i % 10) * 6, 80 + (i // 10 - 1) * 8]
    pts[2], pts[14], pts[29], pts[8], pts[31], pts[35] = [50, 110], [150, 110], [100, 100], [100, 150], [90, 115], [110, 115]
    region = np.zeros((200, 200), bool)
    cv2.fillConvexPoly(region.view(np.uint8), cv2.convexHull(pts[:17].astype(np.int32)), 1)
    return img, pts, region.astype(bool)


def test_a_fringe_from_outside_is_an_occluder_and_a_mole_is_not():
    img, pts, region = _face()
    img[30:62, 40:160] = (60, 40, 30)  # dark hair over the top of the face, from outside
    img[128:136, 128:136] = (60, 40, 30)  # a mole inside the face (not touching the rim)
    occ = occluder_mask(img, pts, "ibug68", region)
    fringe = region.copy()
    fringe[62:] = False
    assert occ[fringe & (img[..., 0] == 60)].mean() > 0.9
    assert not occ[128:136, 128:136].any()
    assert not occ[feature_mask(pts, "ibug68", img.shape[:2])].any()


def test_a_clean_face_has_no_occluders_and_they_are_put_back_exactly():
    img, pts, region = _face()
    assert occluder_mask(img, pts, "ibug68", region).sum() == 0
    out = np.zeros_like(img)
    occ = np.zeros((200, 200), bool)
    occ[10:20, 10:20] = True
    got = keep_occluders(out, img, occ)
    np.testing.assert_array_equal(got[occ], img[occ])
    assert (got[100:, 100:] == 0).all()
    assert not out.any()  # a copy by default
    mine = out.copy()
    assert keep_occluders(mine, img, occ, copy=False) is mine and (mine == got).all()
