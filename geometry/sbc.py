"""Spherical Bins Coloring (SBC), CHEP/SBC paper §2.3, eq. (12)–(13).

Colour is carried from a coloured mesh ``(F, T)`` to a mesh with other vertices (the dense,
perturbed ``F̈'``) through a grid of bins over the sphere around an origin behind the nose:

- eq. (12): ``r = ‖x‖``, ``θ = atan2(√(x² + z²), y) ∈ [0, π]`` (inclination from +y) and
  ``φ = (π + atan2(x, z)) mod 2π`` (azimuth measured from the −z side, so the face, which looks
  toward +z, sits at φ = π, far from the seam). The paper writes ``arctan(x / z)``; its
  quadrant-aware form atan2 is used, since the one-argument arctan folds the front and back
  hemispheres onto one another.
- bins ``γ_jk = [θ_j, θ_j+1] × [φ_k, φ_k+1]``: ``n_theta × n_phi`` equal cells of [0, π] × [0, 2π]
  (100 × 100 in the paper); ``Ξ_jk`` = the mean colour of the source vertices falling in γ_jk.
- eq. (13): a target vertex takes the bilinear mix of the four bins whose centres surround it,
  weights ``[[1−s−t+st, s−st], [t−st, st]]`` for bins ``[[(j−1, k−1), (j−1, k)], [(j, k−1), (j, k)]]``
  with ``s`` the fraction along φ and ``t`` along θ (Fig. 10). φ wraps around; θ is clamped at the
  poles.

Empty bins (no source vertex; the sparse mesh has ~0.7 vertices per bin at 100 × 100): each takes
the mean colour of the nearest non-empty bin (Euclidean distance in bin units, φ periodic), so the
interpolation of eq. (13) always mixes defined colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def spherical_coordinates(points, origin=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. (12): ``points (N, 3)`` (model frame, metres) → ``r (N,)`` metres, ``θ (N,)`` in [0, π],
    ``φ (N,)`` in [0, 2π)."""
    p = np.asarray(points, np.float64) - np.asarray(origin, np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (N, 3); got {p.shape}")
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    r = np.sqrt(x * x + y * y + z * z)
    theta = np.arctan2(np.sqrt(x * x + z * z), y)
    phi = np.mod(np.pi + np.arctan2(x, z), 2 * np.pi)
    return r, theta, phi


@dataclass
class SphericalBins:
    """Mean colours of the bins over [0, π] × [0, 2π].

    Attributes:
        colors: ``(n_theta, n_phi, 3) float64`` Ξ, empty bins filled (see module docstring).
        counts: ``(n_theta, n_phi) int64`` source vertices per bin (0 = filled from a neighbour).
        origin: ``(3,)`` the sphere centre (model frame, metres).
    """

    colors: np.ndarray
    counts: np.ndarray
    origin: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.counts.shape

    @property
    def empty_fraction(self) -> float:
        return float((self.counts == 0).mean())


def _bin_index(theta: np.ndarray, phi: np.ndarray, n_theta: int, n_phi: int) -> tuple[np.ndarray, np.ndarray]:
    j = np.clip((theta / np.pi * n_theta).astype(np.int64), 0, n_theta - 1)
    k = np.clip((phi / (2 * np.pi) * n_phi).astype(np.int64), 0, n_phi - 1)
    return j, k


def _fill_empty(colors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    empty = counts == 0
    if not empty.any():
        return colors
    n_phi = counts.shape[1]
    tiled = np.concatenate([empty[:, -n_phi:], empty, empty[:, :n_phi]], axis=1)  # φ periodic
    _, (ji, ki) = distance_transform_edt(tiled, return_indices=True)
    ji, ki = ji[:, n_phi:2 * n_phi], np.mod(ki[:, n_phi:2 * n_phi] - n_phi, n_phi)
    return colors[ji, ki]


def build_bins(vertices, colors, n_theta: int = 100, n_phi: int = 100, origin=(0.0, 0.0, 0.0)) -> SphericalBins:
    """Ξ_jk: mean colour per bin of ``vertices (N, 3)`` with ``colors (N, 3)`` (any range, e.g. [0, 1]).

    Raises:
        ValueError: mismatched shapes, NaN, no vertices, or bin counts < 1.
    """
    v = np.asarray(vertices, np.float64)
    c = np.asarray(colors, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or c.shape != (len(v), 3):
        raise ValueError(f"vertices (N, 3) and colors (N, 3) must match; got {v.shape} and {c.shape}")
    if len(v) == 0 or not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
        raise ValueError("build_bins needs at least one finite vertex and colour")
    if n_theta < 1 or n_phi < 1:
        raise ValueError(f"bin counts must be ≥ 1; got {n_theta} × {n_phi}")
    _, th, ph = spherical_coordinates(v, origin)
    j, k = _bin_index(th, ph, n_theta, n_phi)
    flat = j * n_phi + k
    counts = np.bincount(flat, minlength=n_theta * n_phi)
    sums = np.stack([np.bincount(flat, c[:, i], minlength=n_theta * n_phi) for i in range(3)], 1)
    mean = sums / np.maximum(counts, 1)[:, None]
    counts = counts.reshape(n_theta, n_phi)
    return SphericalBins(_fill_empty(mean.reshape(n_theta, n_phi, 3), counts), counts,
                         np.asarray(origin, np.float64))


def outer_surface_mask(vertices, faces, origin=(0.0, 0.0, 0.0), eps_m: float = 2e-4) -> np.ndarray:
    """``(V,) bool``: vertices on the outer surface seen from ``origin`` — the ray from the origin
    through the vertex meets no more of the mesh beyond it.

    The paper's face mesh is a single surface, so all its vertices qualify; a head mesh with a
    mouth cavity or eyeballs behind the lids has inner surfaces along the same directions, and a
    bin holding only inner vertices (the red mouth lining behind a sparse cheek) would tint the skin.
    Ray casting through trimesh (embree when installed).
    """
    import trimesh

    v = np.asarray(vertices, np.float64)
    d = v - np.asarray(origin, np.float64)
    n = np.linalg.norm(d, axis=1, keepdims=True)
    d = d / np.maximum(n, 1e-12)
    mesh = trimesh.Trimesh(v, np.asarray(faces), process=False)
    hit = mesh.ray.intersects_any(v + eps_m * d, d)
    return ~np.asarray(hit, bool)


def sample_bins(bins: SphericalBins, vertices) -> np.ndarray:
    """Eq. (13): colours ``(N, 3) float64`` of ``vertices (N, 3)`` by 4-bin interpolation."""
    n_theta, n_phi = bins.shape
    _, th, ph = spherical_coordinates(vertices, bins.origin)
    # continuous bin coordinates with bin centres at integers
    u = th / np.pi * n_theta - 0.5
    w = ph / (2 * np.pi) * n_phi - 0.5
    j = np.floor(u).astype(np.int64) + 1          # the lower-right bin of Fig. 10 is (j, k)
    k = np.floor(w).astype(np.int64) + 1
    t = u - (j - 1)                                # fraction along θ from bin j−1 to j
    s = w - (k - 1)                                # fraction along φ from bin k−1 to k
    j0, j1 = np.clip(j - 1, 0, n_theta - 1), np.clip(j, 0, n_theta - 1)
    k0, k1 = np.mod(k - 1, n_phi), np.mod(k, n_phi)
    X = bins.colors
    w00, w01, w10, w11 = 1 - s - t + s * t, s - s * t, t - s * t, s * t
    return (w00[:, None] * X[j0, k0] + w01[:, None] * X[j0, k1]
            + w10[:, None] * X[j1, k0] + w11[:, None] * X[j1, k1])


def spherical_bins_coloring(source_vertices, source_colors, target_vertices, n_theta: int = 100,
                            n_phi: int = 100, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """SBC in one call: bins from ``(source_vertices (N, 3), source_colors (N, 3))``, colours
    ``(M, 3)`` for ``target_vertices (M, 3)`` (same frame, metres)."""
    return sample_bins(build_bins(source_vertices, source_colors, n_theta, n_phi, origin), target_vertices)
