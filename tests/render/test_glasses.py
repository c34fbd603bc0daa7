"""Glasses frames: lines measured, lens outlines tried, frames found on real and drawn faces and
either kept on top or replaced with the face."""

import numpy as np
import pytest

from headveil.render.glasses import (GLASSES_COVERAGE, N_OUTLINE, _AXES, _best_along_dx, _mirror_index, find_glasses,
                                     frame_mask, glasses_band, lens_outlines, ridge_strength, rim_zone)


def test_ridge_strength_is_high_on_a_line_and_low_on_flat_skin_and_blobs():
    L = np.full((60, 60), 70.0)
    L[29:32, 5:55] = 30.0  # a dark line 3 px wide, 40 L* darker
    L[45:48, 10:13] = 30.0  # a blob of the same contrast (3 × 3)
    s = ridge_strength(L, (1.0, 2.0))
    assert s[30, 30] > 10 and s[5:20, 5:55].max() < 1e-9  # flat: nothing at all
    assert s[46, 11] < 0.5 * s[30, 30]  # a round blob is no line


def test_lens_outlines_cover_the_grid_and_mirror_across_the_face():
    P, params = lens_outlines(np.array([50.0, 40.0]), 20.0, 0.0)
    M = int(np.prod([len(a) for a in _AXES]))
    assert P.shape == (M, N_OUTLINE, 2) and params.shape == (M, 5)
    # a round outline (p = 2) of a = 1, b = 1.05 at the eye's centre: the ellipse of one eye width
    # across and 1.05 up and down
    j = int(np.argmin(np.abs(params[:, :3] - [0.0, 0.0, 1.0]).sum(1) + np.abs(params[:, 4] - 2.0)
                      + np.abs(params[:, 3] - 1.05)))
    np.testing.assert_allclose(np.linalg.norm((P[j] - [50, 40]) * [1, 1 / 1.05], axis=1), 20.0, atol=1e-6)
    # the height unit: a turned head's far eye is narrower, not shorter
    Q, _ = lens_outlines(np.array([50.0, 40.0]), 10.0, 0.0, height_unit=20.0)
    np.testing.assert_allclose(np.ptp(Q[j], 0), [20.0, 42.0], atol=0.5)
    m = _mirror_index()
    np.testing.assert_allclose(params[m][:, 0], -params[:, 0], atol=1e-12)
    np.testing.assert_array_equal(params[m][:, 1:], params[:, 1:])


def test_best_along_dx_looks_only_within_its_steps():
    score = np.zeros((5, 2))
    score[4, 0] = 1.0  # best at dx index 4, in column 0
    flat = np.arange(10).reshape(5, 2)
    got = _best_along_dx(score, 2)
    assert got[2, 0] == flat[4, 0] and got[3, 0] == flat[4, 0]  # within 2 steps: found
    assert got[1, 0] != flat[4, 0]  # 3 steps away: not seen
    assert all(got[i, 1] // 2 in range(max(0, i - 2), i + 3) for i in range(5))  # column 1 stays in column 1


def _astronaut():
    skimage = pytest.importorskip("skimage.data")
    from headveil.geometry.perception.detectors import detect_faces

    img = skimage.astronaut()
    return img, detect_faces(img)[0]


def _draw_frames(img, d, colour=(30, 25, 20), width=5):
    """Two rounded lenses round the eyes and a bridge (cv2 ellipses), and the drawn pixels."""
    import cv2

    from headveil.render.glasses import FRAME_LANDMARKS

    lm = FRAME_LANDMARKS[d.scheme]
    p = d.points
    m = np.zeros(img.shape[:2], np.uint8)
    centres = []
    for o, i in zip(lm["outer"], lm["inner"]):
        ew = np.linalg.norm(p[o] - p[i])
        c = (p[o] + p[i]) / 2 + [0, 0.1 * ew]
        centres.append((c, ew))
        cv2.ellipse(m, (int(c[0]), int(c[1])), (int(1.1 * ew), int(0.75 * ew)), 0, 0, 360, 1, width)
    (c0, e0), (c1, e1) = centres
    cv2.line(m, (int(c0[0] + 1.1 * e0), int(c0[1] - 0.3 * e0)), (int(c1[0] - 1.1 * e1), int(c1[1] - 0.3 * e1)), 1, width)
    out = img.copy()
    out[m > 0] = colour
    return out, m > 0


def _region(img, d):
    import cv2

    r = np.zeros(img.shape[:2], np.uint8)
    cv2.fillConvexPoly(r, cv2.convexHull(np.round(d.points).astype(np.int32)), 1)
    return r.astype(bool)


def test_drawn_frames_are_found_and_masked_and_a_bare_face_has_none():
    from headveil.render.occlusion import feature_mask, skin_distance

    img, d = _astronaut()
    bare = find_glasses(img, d.points, d.scheme)
    assert not bare.worn and min(bare.coverage) < GLASSES_COVERAGE
    assert not frame_mask(img, d.points, d.scheme, _region(img, d)).any()
    drawn, truth = _draw_frames(img, d)
    g = find_glasses(drawn, d.points, d.scheme)
    assert g.worn and min(g.coverage) > 0.8
    region = _region(drawn, d)
    band = glasses_band(g, img.shape[:2])
    m = frame_mask(drawn, d.points, d.scheme, region, glasses=g,
                   distance=skin_distance(drawn, d.points, d.scheme, region, exclude=band))
    on = truth & region & ~feature_mask(d.points, d.scheme, img.shape[:2], grow_px=4)
    assert (m & on).sum() > 0.5 * on.sum()  # most of the frame away from the eyes and brows
    assert (m & truth).sum() > 0.9 * m.sum()  # and hardly anything else
    assert band[m].all() and not glasses_band(bare, img.shape[:2]).any()
    zone = rim_zone(g, img.shape[:2])  # what a donor's bake leaves out: the frame, eyes and brows apart
    assert zone[on].mean() > 0.75 and not rim_zone(bare, img.shape[:2]).any()


def test_a_real_pair_of_glasses_is_found():
    from headveil.pipelines.evaluate.calibration import package_photos

    photos = dict(package_photos())
    if "grace_hopper" not in photos:
        pytest.skip("matplotlib's sample photo is not installed")
    from headveil.geometry.perception.detectors import detect_faces

    img = photos["grace_hopper"]
    d = detect_faces(img)[0]
    g = find_glasses(img, d.points, d.scheme)
    assert g.worn, g.coverage


def test_occluders_keep_or_replace_a_frame():
    from headveil.render.occlusion import occluder_mask

    img, d = _astronaut()
    drawn, truth = _draw_frames(img, d)
    region = _region(drawn, d)
    kept, frame = occluder_mask(drawn, d.points, d.scheme, region, glasses="keep", with_frame=True)
    replaced, frame2 = occluder_mask(drawn, d.points, d.scheme, region, glasses="replace", with_frame=True)
    np.testing.assert_array_equal(frame, frame2)
    assert frame.any() and kept[frame].all()
    assert not (replaced & frame).any()
    assert not (replaced & truth & glasses_band(find_glasses(drawn, d.points, d.scheme), img.shape[:2])).any()
    # a bare face: both policies give the same occluders
    a = occluder_mask(img, d.points, d.scheme, _region(img, d), glasses="keep")
    np.testing.assert_array_equal(a, occluder_mask(img, d.points, d.scheme, _region(img, d), glasses="replace"))
    with pytest.raises(ValueError, match="glasses"):
        occluder_mask(img, d.points, d.scheme, region, glasses="remove")


def test_the_same_face_is_searched_once():
    img, d = _astronaut()
    a = find_glasses(img, d.points, d.scheme)
    assert find_glasses(img, d.points, d.scheme) is a  # a second occluder search reuses it
    other = img.copy()
    x, y = np.round(d.points[168]).astype(int)  # a pixel of the eye band changed: searched afresh
    other[y, x] = 255 - other[y, x]
    b = find_glasses(other, d.points, d.scheme)
    assert b is not a and b.coverage == pytest.approx(a.coverage, abs=0.05)
    assert a.strength().shape == img.shape[:2] and a.band_strength.size < 0.5 * img.shape[0] * img.shape[1]
