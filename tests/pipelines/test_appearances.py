"""Helpers of the donor appearance that need no recognizer (hand-checkable)."""

import numpy as np

from headveil.geometry.camera import Camera, look_at
from headveil.pipelines.appearances import TONE_ATLAS_SIDE, _atlas_side
from headveil.render.appearance import appearance_uv


def _camera(f):
    return Camera(np.array([[f, 0, 160], [0, f, 160], [0, 0, 1.0]]), look_at((0, 0, 0.62)), 320, 320)


def test_the_mouth_atlas_is_as_dense_as_the_photo_and_no_denser(model):
    v = model.vertices()
    uv = model.landmarks_3d(appearance_uv(model), "ibug68")
    for f, ceiling in ((300.0, 4096), (900.0, 4096), (2700.0, 4096), (2700.0, 1024), (10.0, 2048)):
        cam = _camera(f)
        px, _ = cam.project(model.landmarks_3d(v, "ibug68"))
        need = max(np.linalg.norm(px[a] - px[b]) / np.linalg.norm(uv[a] - uv[b]) for a, b in ((36, 45), (27, 8)))
        side = _atlas_side(model, v, cam, ceiling)
        # a power of two from the floor up to the ceiling: the first ≥ the photo's density
        assert side & (side - 1) == 0 and TONE_ATLAS_SIDE <= side <= ceiling
        assert side >= min(need, ceiling)
        assert side == TONE_ATLAS_SIDE or side // 2 < need
    # three times the focal length: the face is three times the pixels, so the atlas grows
    assert _atlas_side(model, v, _camera(2700.0), 8192) >= 2 * _atlas_side(model, v, _camera(900.0), 8192)


def test_a_donors_mix_weight_ramps_over_its_seen_edge_instead_of_stepping():
    from headveil.pipelines.appearances import MIX_WEIGHT_SIGMA, _mix_weight

    S = 512
    conf = np.zeros((S, S), np.uint8)
    conf[:, : S // 2] = 255  # seen on the left half only (an occluder hole, an unseen side)
    w = _mix_weight(conf)
    assert w.shape == (S, S) and w.dtype == np.float32
    row = w[S // 2]
    assert abs(row[10] - 1.001) < 1e-3 and abs(row[-10] - 0.001) < 1e-3  # far from the edge: as it was
    assert np.all(np.diff(row) <= 1e-6)  # falls monotonically
    # a Gaussian edge: 10 %–90 % over 2.56 σ (σ = 1 % of the side, 5.1 texels here), not one texel
    width = np.sum((row > 0.1 + 1e-3) & (row < 0.9 + 1e-3))
    assert 0.7 * 2.56 * MIX_WEIGHT_SIGMA * S < width < 1.5 * 2.56 * MIX_WEIGHT_SIGMA * S
