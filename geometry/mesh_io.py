"""Mesh export: PLY, OBJ, GLB with per-vertex colours; atomic and free of metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from headveil.common.outputs import atomic_file

MESH_FORMATS = ("ply", "obj", "glb")


def make_trimesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None):
    """A ``trimesh.Trimesh`` (not processed: vertex order is kept); ``colors (V, 3)`` in [0, 1]."""
    import trimesh

    vc = None
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (len(vertices), 3):
            raise ValueError(f"colors must be ({len(vertices)}, 3), got {colors.shape}")
        c8 = np.clip(colors * 255 + 0.5, 0, 255).astype(np.uint8)
        vc = np.concatenate([c8, np.full((len(c8), 1), 255, np.uint8)], 1)
    return trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), vertex_colors=vc,
                           process=False)


def export_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
                colors: np.ndarray | None = None) -> Path:
    """Write a mesh atomically; the format comes from the suffix (``.ply``, ``.obj``, ``.glb``).

    Args:
        vertices: ``(V, 3)`` metres (frame as the caller states; HeadVeil writes the model frame).
        faces: ``(F, 3)`` vertex indices.
        colors: optional ``(V, 3)`` per-vertex colours in [0, 1].
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {fmt!r}; choose from {', '.join(MESH_FORMATS)}")
    mesh = make_trimesh(vertices, faces, colors)
    mesh.metadata.clear()
    data = mesh.export(file_type=fmt, **({"include_normals": False} if fmt == "obj" else {}))
    if isinstance(data, str):
        data = data.encode()
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


def load_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a mesh without reordering vertices: ``(vertices (V, 3), faces (F, 3), colors (V, 3) | None)``."""
    import trimesh

    m = trimesh.load(str(path), process=False, force="mesh")
    colors = None
    if m.visual.kind == "vertex":
        colors = np.asarray(m.visual.vertex_colors)[:, :3].astype(np.float32) / 255.0
    return np.asarray(m.vertices), np.asarray(m.faces), colors
