"""CHEP (eq. 10–11, hull test) and the noise / ε-DP / keyed perturbations of the identity code."""

import numpy as np
import pytest

from headveil.geometry.identity import codes as idc
from headveil.geometry.identity.chep import CHEPPerturbation, GalleryError, chep_perturb, in_convex_hull


def test_hull_membership_by_hand():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    assert in_convex_hull(np.array([1.0, 1.0]), square)
    assert in_convex_hull(np.array([2.0, 1.0]), square)  # on an edge
    assert not in_convex_hull(np.array([2.5, 1.0]), square)
    assert not in_convex_hull(np.array([3.0, 3.0]), square)


def test_pivot_jump_by_hand():
    alpha = np.array([0.0, 0.0])
    pivots = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0]])
    r = chep_perturb(alpha, pivots, CHEPPerturbation(q=2, b=2.0))
    # nearest two pivots (1,0), (3,0) → α_mid = (2, 0) → α' = α + 2 (α_mid − α) = (4, 0)
    assert r.pivots.tolist() == [0, 1]
    np.testing.assert_allclose(r.alpha_mid, [2.0, 0.0])
    np.testing.assert_allclose(r.alpha, [4.0, 0.0])
    assert r.delta_norm == pytest.approx(4.0)
    far = chep_perturb(alpha, pivots, CHEPPerturbation(q=1, b=2.0, selection="furthest"))
    np.testing.assert_allclose(far.alpha, [0.0, 10.0])
    np.testing.assert_array_equal(chep_perturb(alpha, pivots, CHEPPerturbation(q=2, b=0.0)).alpha, alpha)


def test_escape_reported_in_2d():
    gallery = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [0.3, 0.2]], float)
    alpha = np.array([0.1, 0.0])
    pivots = gallery[[1, 2]]  # the two right-hand corners: α_mid = (1, 0), α' = (1.9, 0) outside
    r = chep_perturb(alpha, pivots, CHEPPerturbation(q=2, b=2.0, hull_size=4), gallery=gallery)
    assert r.inside_before is True and r.inside_after is False
    assert r.to_json()["escaped"] is True
    assert r.nearest_gallery_distance == pytest.approx(np.hypot(0.9, 1.0))


def test_bad_galleries_raise_clear_errors():
    a = np.zeros(3)
    P = np.eye(3)
    with pytest.raises(GalleryError, match="Q ≥ q"):
        chep_perturb(a, P, CHEPPerturbation(q=4))
    with pytest.raises(GalleryError, match="dim α"):
        chep_perturb(np.zeros(2), np.array([[1.0, 0], [0, 1], [1, 1]]), CHEPPerturbation(q=3))
    with pytest.raises(GalleryError, match="duplicate"):
        chep_perturb(a, np.vstack([P, P[:1]]), CHEPPerturbation(q=2))
    with pytest.raises(GalleryError, match="contains the target"):
        chep_perturb(P[0], P, CHEPPerturbation(q=2))
    with pytest.raises(GalleryError, match="NaN"):
        chep_perturb(np.array([np.nan, 0, 0]), P, CHEPPerturbation(q=2))
    with pytest.raises(GalleryError):
        CHEPPerturbation(q=0)


def test_outside_hull_is_jumped_and_noted():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((30, 10))
    r = chep_perturb(G[0] * 10, G[1:], CHEPPerturbation(q=3), gallery=G)  # far outside the cloud
    assert r.inside_before is False and any("already outside" in n for n in r.notes)
    assert r.delta_norm > 0


def test_code_normalisation_and_noise():
    a = np.array([0.0, 1.5, -3.0, 6.0])
    z, clipped = idc.normalise_code(a)
    np.testing.assert_allclose(z, [0.0, 0.5, -1.0, 1.0])
    assert clipped == 1
    np.testing.assert_allclose(idc.denormalise_code(z), [0.0, 1.5, -3.0, 3.0])
    np.testing.assert_array_equal(idc.perturb_noise(a, 0.0, np.random.default_rng(0)), a)
    rng = np.random.default_rng(1)
    big = rng.standard_normal(100) * 0.5
    out = idc.perturb_noise(big, 0.25, np.random.default_rng(2))
    z0, z1 = big / 3, out / 3
    assert np.all(np.abs(z1) <= 1) and 0.15 < np.std(z1 - z0) < 0.35
    np.testing.assert_array_equal(idc.perturb_noise(big, 0.25, np.random.default_rng(2)), out)  # seeded


def test_laplace_mechanism_scale():
    assert idc.laplace_sensitivity(100) == 200.0
    a = np.zeros(100)
    out = idc.perturb_laplace(a, 2000.0, np.random.default_rng(0))  # scale Δ/ε = 0.1 on z
    z = out / 3
    assert np.mean(np.abs(z)) == pytest.approx(0.1, rel=0.3)  # E|Lap(b)| = b
    np.testing.assert_array_equal(idc.perturb_laplace(a, np.inf, np.random.default_rng(0)), a)
    with pytest.raises(ValueError):
        idc.perturb_laplace(a, 0.0, np.random.default_rng(0))


def test_keyed_rotation_is_exactly_reversible_and_key_bound():
    rng = np.random.default_rng(3)
    for theta in (20.0, 70.0, 85.0):
        for _ in range(20):
            a = rng.standard_normal(100) * rng.uniform(0.2, 3)
            p = idc.rotate_keyed(a, b"right key", theta)
            assert np.linalg.norm(p) == pytest.approx(np.linalg.norm(a))
            np.testing.assert_allclose(idc.recover_keyed(p, b"right key", theta), a, atol=1e-9)
            assert np.linalg.norm(idc.recover_keyed(p, b"wrong key", theta) - a) > 0.3 * np.linalg.norm(a)
    # a code at 90° from the reference is rotated by exactly θ
    r = idc.reference_direction(b"k", 100)
    a = rng.standard_normal(100)
    a -= (a @ r) * r
    p = idc.rotate_keyed(a, b"k", 70.0)
    ang = np.degrees(np.arccos(p @ a / np.linalg.norm(p) / np.linalg.norm(a)))
    assert ang == pytest.approx(70.0, abs=1e-6)
    assert idc.key_space_bits(b"123456") == 48.0


def test_key_file_errors(tmp_path):
    with pytest.raises(idc.InvalidKeyError, match="cannot read"):
        idc.read_key(tmp_path / "missing")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(idc.InvalidKeyError, match="empty"):
        idc.read_key(tmp_path / "empty")
