import numpy as np
import pytest

from headveil.geometry.metrics import compare_meshes, faces_in_region, icp_align, sample_surface, surface_distance
from headveil.geometry.transforms import rotation_from_euler

# a 10 cm square in the z = 0 plane, two triangles
SQ_V = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0], [0, 0.1, 0]], float)
SQ_F = np.array([[0, 1, 2], [0, 2, 3]])


def test_surface_distance_hand_values():
    a = np.array([[0, 0, 0], [1e-3, 0, 0]], float)       # two points 1 mm apart
    b = np.array([[0, 0, 2e-3]], float)                    # one point 2 mm above the first
    d = surface_distance(a, b, threshold_mm=2.1)
    # a→b: 2 mm and sqrt(1² + 2²) = 2.236 mm; b→a: 2 mm
    assert d.a_to_b_mm == pytest.approx((2 + np.sqrt(5)) / 2)
    assert d.b_to_a_mm == pytest.approx(2.0)
    assert d.chamfer_mm == pytest.approx(0.5 * ((2 + np.sqrt(5)) / 2 + 2))
    assert d.precision == 0.5 and d.recall == 1.0
    assert d.fscore == pytest.approx(2 * 0.5 / 1.5)


def test_offset_planes_and_normals():
    pts, n = sample_surface(SQ_V, SQ_F, 500)
    exact = surface_distance(pts + [0, 0, 1e-3], pts, 1.5, n, n)  # same samples lifted by 1 mm
    assert exact.chamfer_mm == pytest.approx(1.0) and exact.fscore == 1.0
    small = SQ_V * 0.1  # a 1 cm square: 20 000 samples lie ~0.07 mm apart
    d = compare_meshes(small + [0, 0, 1e-3], SQ_F, small, SQ_F, n_samples=20000, threshold_mm=1.5)
    # nearest samples are ≥ 1 mm away (the lift) and only the in-plane spacing adds to it
    assert 1.0 <= d.chamfer_mm < 1.01
    assert d.fscore == pytest.approx(1.0)
    assert d.normal_consistency == pytest.approx(1.0)
    same = compare_meshes(SQ_V, SQ_F, SQ_V, SQ_F, n_samples=4000)
    assert same.chamfer_mm < 1.0  # sampling noise only (~0.8 mm spacing for 4000 samples on 1 dm²)


def test_rigid_alignment_removes_a_known_motion():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3)) * 0.05
    R = rotation_from_euler(5.0, -3.0, 2.0)
    moved = v @ R.T + [0.002, -0.001, 0.003]
    f = np.array([[i, i + 1, i + 2] for i in range(0, 198, 3)])
    assert compare_meshes(moved, f, v, f, align="rigid").chamfer_mm < 1e-6 + compare_meshes(v, f, v, f).chamfer_mm + 1e-9
    T = icp_align(moved, v)
    back = moved @ T[:3, :3].T + T[:3, 3]
    assert np.abs(back - v).max() < 1e-6


def test_sampling_is_deterministic_and_respects_region():
    p1, _ = sample_surface(SQ_V, SQ_F, 100, seed=3)
    p2, _ = sample_surface(SQ_V, SQ_F, 100, seed=3)
    assert np.array_equal(p1, p2)
    only_first, _ = sample_surface(SQ_V, SQ_F, 500, face_mask=np.array([True, False]))
    assert np.all(only_first[:, 0] >= only_first[:, 1] - 1e-12)  # triangle (0,1,2) lies below the diagonal
    assert faces_in_region(SQ_F, np.array([True, True, True, False])).tolist() == [True, False]


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        surface_distance(np.array([[np.nan, 0, 0]]), SQ_V)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        surface_distance(np.zeros((3, 2)), SQ_V)
    with pytest.raises(ValueError, match="corresponding vertices"):
        compare_meshes(SQ_V[:3], SQ_F[:1], SQ_V, SQ_F, align="rigid")
    with pytest.raises(ValueError, match="align"):
        compare_meshes(SQ_V, SQ_F, SQ_V, SQ_F, align="bogus")
