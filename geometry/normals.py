"""Area-weighted vertex normals, the one implementation (numpy and torch)."""

from __future__ import annotations

import numpy as np


def vertex_normals(vertices, faces):
    """Unit vertex normals ``(V, 3)``: the sum of the (area-weighted) normals of the faces around
    each vertex, normalised.

    Args:
        vertices: ``(V, 3)`` numpy or torch (any float dtype; torch is differentiable).
        faces: ``(F, 3)`` integer indices, counter-clockwise seen from outside (outward normals).

    Returns:
        The normals in the input's library and dtype; a vertex on no face gets (0, 0, 0).
    """
    if isinstance(vertices, np.ndarray):
        faces = np.asarray(faces)
        tri = vertices[faces]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        vn = np.zeros_like(vertices)
        for i in range(3):
            np.add.at(vn, faces[:, i], fn)
        return vn / np.clip(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12, None)
    import torch

    faces = torch.as_tensor(faces).long()
    tri = vertices[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)
