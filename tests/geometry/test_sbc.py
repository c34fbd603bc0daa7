"""Spherical Bins Coloring (eq. 12–13) and the dense mesh."""

import numpy as np
import pytest

from headveil.geometry.dense import DenseMeshConfig, dense_mesh
from headveil.geometry.sbc import build_bins, outer_surface_mask, sample_bins, spherical_coordinates


def test_spherical_coordinates_by_hand():
    pts = np.array([[0, 1, 0], [0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, -2, 0]], float)
    r, th, ph = spherical_coordinates(pts)
    np.testing.assert_allclose(r, [1, 1, 1, 1, 1, 2])
    np.testing.assert_allclose(th, [0, np.pi / 2, np.pi / 2, np.pi / 2, np.pi / 2, np.pi])
    # φ from the −z side: −z → 0, −x → π/2, +z (the face) → π, +x → 3π/2
    np.testing.assert_allclose(ph[1:5], [np.pi, 0.0, 3 * np.pi / 2, np.pi / 2], atol=1e-12)


def _direction(theta, phi):
    # inverse of eq. (12) for r = 1
    return np.array([-np.sin(theta) * np.sin(phi), np.cos(theta), -np.sin(theta) * np.cos(phi)])


def test_bins_mean_and_four_bin_interpolation():
    n = 4  # bins of π/4 in θ, π/2 in φ
    c = lambda j, k: ((j + 0.5) * np.pi / n, (k + 0.5) * 2 * np.pi / n)  # noqa: E731  bin centres
    verts, cols = [], []
    for j in range(n):
        for k in range(n):
            verts.append(_direction(*c(j, k)))
            cols.append([j / 3, k / 3, 0.5])
    verts.append(_direction(*c(1, 1)) * 0.9)
    cols.append([1.0, 1.0, 1.0])  # a second vertex in bin (1, 1): its mean changes
    bins = build_bins(np.array(verts), np.array(cols), n, n)
    np.testing.assert_allclose(bins.colors[1, 1], [(1 / 3 + 1) / 2, (1 / 3 + 1) / 2, 0.75])
    # at a bin centre the weight st = 1 falls on that bin
    np.testing.assert_allclose(sample_bins(bins, _direction(*c(2, 3))[None])[0], [2 / 3, 1.0, 0.5], atol=1e-9)
    # halfway between the centres of bins (2, 2) and (2, 3) in φ: s = 0.5, t = 0 → the mean of the two
    th, ph = c(2, 2)[0], (c(2, 2)[1] + c(2, 3)[1]) / 2
    np.testing.assert_allclose(sample_bins(bins, _direction(th, ph)[None])[0], [2 / 3, (2 / 3 + 1) / 2, 0.5], atol=1e-9)
    # φ wraps: halfway between bin k = 3 and k = 0
    th, ph = c(2, 0)[0], 2 * np.pi - 1e-12
    np.testing.assert_allclose(sample_bins(bins, _direction(th, ph)[None])[0], [2 / 3, 0.5, 0.5], atol=1e-6)


def test_constant_colour_is_kept_and_empty_bins_filled():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 3))
    bins = build_bins(v, np.tile([0.2, 0.4, 0.6], (50, 1)), 100, 100)
    assert bins.empty_fraction > 0.99
    out = sample_bins(bins, rng.standard_normal((1000, 3)))
    np.testing.assert_allclose(out, np.tile([0.2, 0.4, 0.6], (1000, 1)), atol=1e-12)  # weights sum to 1


def test_nearest_fill_rule():
    v = np.array([_direction(0.5 * np.pi / 2, 0.5 * 2 * np.pi / 4), _direction(1.5 * np.pi / 2, 3.5 * 2 * np.pi / 4)])
    bins = build_bins(v, np.array([[1.0, 0, 0], [0, 0, 1.0]]), 2, 4)
    # bin (0, 3) is empty; (0, 0) is one step away through the φ seam, (1, 3) one step in θ: a tie
    assert bins.counts[0, 3] == 0 and bins.colors[0, 3].tolist() in ([1.0, 0, 0], [0, 0, 1.0])
    np.testing.assert_allclose(bins.colors[0, 1], [1.0, 0, 0])  # next to (0, 0)


def test_outer_surface_mask_drops_an_inner_shell():
    import trimesh

    outer, inner = trimesh.creation.icosphere(2, 1.0), trimesh.creation.icosphere(2, 0.5)
    v = np.vstack([outer.vertices, inner.vertices])
    f = np.vstack([outer.faces, inner.faces + len(outer.vertices)])
    m = outer_surface_mask(v, f)
    assert m[: len(outer.vertices)].all() and not m[len(outer.vertices):].any()


def test_dense_mesh_counts_and_displacement():
    import trimesh

    s = trimesh.creation.icosphere(1, 0.1)
    uv = np.c_[(s.vertices[:, 0] + 0.1) / 0.2, (s.vertices[:, 1] + 0.1) / 0.2]
    v0, f0 = dense_mesh(s.vertices, s.faces, None, config=DenseMeshConfig(levels=1))
    assert len(f0) == 4 * len(s.faces) and len(v0) == len(s.vertices) + len(s.edges_unique)
    np.testing.assert_allclose(v0[: len(s.vertices)], s.vertices)
    v1, _ = dense_mesh(s.vertices, s.faces, uv, config=DenseMeshConfig(levels=1, amplitude_m=1e-3))
    d = np.linalg.norm(v1 - v0, axis=1)
    assert 0 < d.max() <= 1e-3 + 1e-12
    with pytest.raises(ValueError):
        dense_mesh(s.vertices[:, :2], s.faces)
