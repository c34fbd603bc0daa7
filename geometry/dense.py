"""Dense meshes from the model mesh: midpoint subdivision plus a depth displacement from a bump map.

Stands in for the paper's detail stage (CHEP/SBC §2.3, ``F̈' = DepthDisplacement(F̂')``) when no
neural-field mesh is given: every subdivision level splits each triangle in four (V → ≈ 4V), then
vertices move along their normals by ``amplitude · (h(u, v) − mean h)`` where ``h`` is a bump map
in [0, 1] looked up at the vertex's texture coordinates (a user image, or a seeded procedural
wrinkle map). The result has a different vertex count from the model, which is why SBC is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.geometry.normals import vertex_normals


@dataclass(frozen=True)
class DenseMeshConfig:
    """How the dense mesh is made.

    Attributes:
        levels: midpoint subdivision levels (1: ≈ 28k vertices from the embedded model, 2: ≈ 112k).
        amplitude_m: peak-to-mean displacement in metres (0 = subdivision only).
        bump_size: side of the procedural bump map in texels.
        bump_seed: seed of the procedural bump map (fixed, so every identity gets the same skin).
    """

    levels: int = 1
    amplitude_m: float = 3e-4
    bump_size: int = 256
    bump_seed: int = 0


def procedural_bump(size: int = 256, seed: int = 0) -> np.ndarray:
    """A ``(size, size) float64`` bump map in [0, 1]: fine pores plus horizontal wrinkle bands."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    pores = gaussian_filter(rng.standard_normal((size, size)), 1.0)
    bands = gaussian_filter(rng.standard_normal((size, size)), (0.8, 6.0))
    h = 0.6 * pores / (pores.std() + 1e-12) + 0.4 * bands / (bands.std() + 1e-12)
    return (h - h.min()) / (h.max() - h.min() + 1e-12)


def _lookup(bump: np.ndarray, uv: np.ndarray) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    H, W = bump.shape
    rows = (1.0 - np.clip(uv[:, 1], 0, 1)) * (H - 1)
    cols = np.clip(uv[:, 0], 0, 1) * (W - 1)
    return map_coordinates(bump, [rows, cols], order=1, mode="nearest")


def dense_mesh(vertices, faces, uv=None, weight=None, config: DenseMeshConfig | None = None,
               bump: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Subdivide and displace a mesh.

    Args:
        vertices: ``(V, 3)`` metres, any frame.
        faces: ``(F, 3)`` int.
        uv: ``(V, 2)`` texture coordinates in [0, 1] for the bump lookup (None: no displacement).
        weight: ``(V,)`` displacement weight in [0, 1] (e.g. 1 on skin, 0 on eyes and teeth).
        config: :class:`DenseMeshConfig`.
        bump: ``(h, w)`` bump map in [0, 1] (default :func:`procedural_bump`).

    Returns:
        ``(vertices (V', 3) float64, faces (F', 3) int64)`` with ``F' = 4^levels F``.
    """
    import trimesh

    cfg = config or DenseMeshConfig()
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3) and faces (F, 3); got {v.shape}, {f.shape}")
    if cfg.levels < 0:
        raise ValueError(f"levels must be ≥ 0; got {cfg.levels}")
    attrs = {}
    if uv is not None:
        attrs["uv"] = np.asarray(uv, np.float64)
    attrs["w"] = (np.ones(len(v)) if weight is None else np.asarray(weight, np.float64)).reshape(-1, 1)
    for _ in range(cfg.levels):
        v, f, attrs = trimesh.remesh.subdivide(v, f, vertex_attributes=attrs)
    if uv is None or cfg.amplitude_m == 0:
        return v, f.astype(np.int64)
    h = _lookup(procedural_bump(cfg.bump_size, cfg.bump_seed) if bump is None else np.asarray(bump, np.float64),
                attrs["uv"])
    n = vertex_normals(v, f)
    return v + (cfg.amplitude_m * (h - h.mean()))[:, None] * attrs["w"] * n, f.astype(np.int64)
