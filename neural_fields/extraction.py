"""Mesh extraction from an SDF by marching cubes (scikit-image), in chunks of bounded memory."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def sample_grid(sdf_fn: Callable[[torch.Tensor], torch.Tensor], bbox, resolution: int, chunk: int = 65536,
                progress: bool = False) -> np.ndarray:
    """Evaluate ``sdf_fn`` on a ``resolution³`` grid spanning ``bbox`` (x0, y0, z0, x1, y1, z1, metres).

    Returns ``(R, R, R) float32`` indexed ``[i_x, i_y, i_z]``. Memory: one chunk of points at a time.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be ≥ 2; got {resolution}")
    lo, hi = np.asarray(bbox[:3], float), np.asarray(bbox[3:], float)
    if not (hi > lo).all():
        raise ValueError(f"bbox needs x1 > x0 etc.; got {bbox}")
    axes = [torch.linspace(float(lo[k]), float(hi[k]), resolution) for k in range(3)]
    out = np.empty(resolution ** 3, np.float32)
    gx, gy = torch.meshgrid(axes[0], axes[1], indexing="ij")
    plane = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)  # (R², 2)
    rows_per_chunk = max(1, chunk // resolution)
    it = range(0, resolution * resolution, rows_per_chunk)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="marching cubes grid", unit="chunk")
    with torch.no_grad():
        for s in it:
            xy = plane[s:s + rows_per_chunk]
            pts = torch.cat([xy.repeat_interleave(resolution, 0), axes[2].repeat(len(xy))[:, None]], 1)
            out[s * resolution:(s + len(xy)) * resolution] = sdf_fn(pts).float().cpu().numpy()
    return out.reshape(resolution, resolution, resolution)


def extract_mesh(sdf_fn: Callable[[torch.Tensor], torch.Tensor], bbox, resolution: int = 128, level: float = 0.0,
                 largest_component: bool = True, chunk: int = 65536, progress: bool = False):
    """Zero level set of an SDF as a triangle mesh.

    Returns:
        ``vertices (V, 3) float64`` metres in the SDF's frame and ``faces (F, 3) int64`` oriented
        with outward normals (SDF negative inside).

    Raises:
        ValueError: the level set does not cross the box (nothing to extract).
    """
    from skimage.measure import marching_cubes

    grid = sample_grid(sdf_fn, bbox, resolution, chunk, progress)
    if not np.isfinite(grid).all():
        raise ValueError("the SDF returned NaN or infinite values on the extraction grid")
    if grid.min() > level or grid.max() < level:
        raise ValueError(f"the SDF does not cross {level} inside the box (range {grid.min():.4g} … {grid.max():.4g})")
    lo, hi = np.asarray(bbox[:3], float), np.asarray(bbox[3:], float)
    spacing = (hi - lo) / (resolution - 1)
    verts, faces, _, _ = marching_cubes(grid, level=level, spacing=tuple(spacing), gradient_direction="descent")
    verts = verts + lo
    faces = faces.astype(np.int64)
    if largest_component and len(faces):
        import trimesh

        parts = trimesh.Trimesh(verts, faces, process=False).split(only_watertight=False)
        if len(parts) > 1:
            big = max(parts, key=lambda m: len(m.faces))
            verts, faces = np.asarray(big.vertices), np.asarray(big.faces, dtype=np.int64)
    return verts.astype(np.float64), faces
