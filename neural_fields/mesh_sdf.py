"""Signed distance to a triangle mesh, differentiable in the points and the vertex positions.

For each query point a candidate set of triangles is chosen without gradients (the ``k`` nearest
triangle centroids and the triangles around the nearest vertex, :class:`scipy.spatial.cKDTree`
queries), then the exact closest point on each
candidate is computed in torch (plane projection when it falls inside the triangle, else the
closest point on the three edges) and the nearest one kept. The distance is exact whenever the
true closest triangle is among the candidates (always true for ``k ≥ F``; for a regular mesh a
few dozen suffice). The sign comes from the barycentrically interpolated vertex normal at the
closest point: ``sign((x − q) · n(q))``, which works for open meshes such as a head-and-neck
region (points beyond an open border get the sign of the nearest surface's side).

Shapes: ``points (N, 3)``, ``vertices (V, 3)`` float (metres), ``faces (F, 3)`` int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ClosestPoints:
    """Result of :func:`closest_points_on_mesh` (tensors on the points' device).

    Attributes:
        points: ``(N, 3)`` closest surface points (differentiable in inputs and vertices).
        distance: ``(N,)`` unsigned distance.
        face: ``(N,)`` int64 index of the closest triangle.
        bary: ``(N, 3)`` barycentric coordinates of the closest point in that triangle.
    """

    points: torch.Tensor
    distance: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor


def closest_point_on_triangles(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """Closest point of ``p (..., 3)`` on triangles ``a, b, c (..., 3)``; returns ``(q, bary)``.

    Degenerate triangles fall back to their edges.
    """
    ab, ac = b - a, c - a
    n = torch.cross(ab, ac, dim=-1)
    nn2 = (n * n).sum(-1, keepdim=True)
    # barycentrics of the plane projection (Cramer's rule on the normal-equation form)
    ap = p - a
    d00, d01, d11 = (ab * ab).sum(-1), (ab * ac).sum(-1), (ac * ac).sum(-1)
    d20, d21 = (ap * ab).sum(-1), (ap * ac).sum(-1)
    denom = (d00 * d11 - d01 * d01).clamp_min(1e-30)
    v = (d11 * d20 - d01 * d21) / denom
    w = (d00 * d21 - d01 * d20) / denom
    u = 1 - v - w
    inside = (u >= 0) & (v >= 0) & (w >= 0) & (nn2[..., 0] > 1e-30)
    q_plane = a + v[..., None] * ab + w[..., None] * ac
    best_q = q_plane
    best_d = torch.where(inside, ((p - q_plane) ** 2).sum(-1), torch.full_like(u, float("inf")))
    best_b = torch.stack([u, v, w], -1)
    for s, e, idx in ((a, b, (0, 1)), (b, c, (1, 2)), (c, a, (2, 0))):
        se = e - s
        t = (((p - s) * se).sum(-1) / (se * se).sum(-1).clamp_min(1e-30)).clamp(0, 1)
        q = s + t[..., None] * se
        d = ((p - q) ** 2).sum(-1)
        bb = torch.zeros_like(best_b)
        bb[..., idx[0]] = 1 - t
        bb[..., idx[1]] = t
        better = d < best_d
        best_q = torch.where(better[..., None], q, best_q)
        best_b = torch.where(better[..., None], bb, best_b)
        best_d = torch.where(better, d, best_d)
    return best_q, best_b


def vertex_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """``(V, max valence)`` faces around each vertex, padded by repeating the vertex's first face."""
    flat = faces.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n_vertices)
    width = max(int(counts.max()), 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.minimum(np.arange(width)[None, :], np.maximum(counts[:, None] - 1, 0))
    out = (order[np.minimum(starts[:, None] + j, len(order) - 1)] // 3)
    out[counts == 0] = 0  # unreferenced vertices: any face (only adds a candidate)
    return out


def closest_points_on_mesh(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                           k: int = 16, rings: np.ndarray | None = None) -> ClosestPoints:
    """Closest points of ``points (N, 3)`` on the mesh (see the module notes for ``k``);
    ``rings`` = ``vertex_faces(faces, V)`` when the caller keeps it for a fixed topology."""
    from scipy.spatial import cKDTree

    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3); got {tuple(points.shape)}")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"need vertices (V, 3) and faces (F, 3); got {tuple(vertices.shape)}, {tuple(faces.shape)}")
    if not torch.isfinite(points).all():
        raise ValueError("points contain NaN or infinite values")
    faces = faces.long()
    tri = vertices[faces]  # (F, 3, 3)
    k = min(k, len(faces))
    f_np = faces.cpu().numpy()
    p_np = points.detach().cpu().numpy().astype(np.float64)
    _, near_tri = cKDTree(tri.detach().mean(1).cpu().numpy().astype(np.float64)).query(p_np, k=k)
    # plus every triangle around the nearest vertex (small triangles next to large ones)
    _, near_vtx = cKDTree(vertices.detach().cpu().numpy().astype(np.float64)).query(p_np)
    ring = (vertex_faces(f_np, len(vertices)) if rings is None else rings)[near_vtx]  # (N, max valence), padded with a valid face
    cand = np.concatenate([np.asarray(near_tri).reshape(len(p_np), k), ring], 1)
    cand = torch.as_tensor(cand, device=points.device, dtype=torch.long)
    k = cand.shape[1]
    t = tri[cand]  # (N, k, 3, 3)
    q, bary = closest_point_on_triangles(points[:, None, :].expand(-1, k, -1), t[:, :, 0], t[:, :, 1], t[:, :, 2])
    d2 = ((points[:, None, :] - q) ** 2).sum(-1)
    j = d2.detach().argmin(1)
    rows = torch.arange(len(points), device=points.device)
    qp = q[rows, j]
    return ClosestPoints(qp, (points - qp).norm(dim=-1), cand[rows, j], bary[rows, j])


def face_neighbours(faces: np.ndarray) -> np.ndarray:
    """``(F, 3)``: the face across the edge opposite each corner (−1 on a border)."""
    F = len(faces)
    e = np.concatenate([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]])  # edge opposite corner 0, 1, 2
    key = np.sort(e, 1)
    owner = np.tile(np.arange(F), 3)
    order = np.lexsort((key[:, 1], key[:, 0]))
    k2 = key[order]
    same = (k2[1:] == k2[:-1]).all(1)
    nb = np.full(3 * F, -1)
    i = np.flatnonzero(same)
    nb[order[i]] = owner[order[i + 1]]
    nb[order[i + 1]] = owner[order[i]]
    return nb.reshape(3, F).T


def angle_weighted_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex pseudonormals ``(V, 3)``: face normals weighted by the incident angle."""
    faces = faces.long()
    tri = vertices[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    fn = fn / fn.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    vn = torch.zeros_like(vertices)
    for c in range(3):
        a = tri[:, (c + 1) % 3] - tri[:, c]
        b = tri[:, (c + 2) % 3] - tri[:, c]
        ang = torch.atan2(torch.cross(a, b, dim=-1).norm(dim=-1), (a * b).sum(-1))
        vn = vn.index_add(0, faces[:, c], fn * ang[:, None])
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-20)


def mesh_sdf(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, k: int = 16,
             neighbours: np.ndarray | None = None, rings: np.ndarray | None = None,
             ) -> tuple[torch.Tensor, ClosestPoints]:
    """Signed distance ``(N,)`` (metres, negative inside) and the closest-point record.

    The sign uses the angle-weighted pseudonormal of the closest feature (Bærentzen & Aanæs
    2005): the face normal inside a triangle, the sum of the two face normals on an edge, the
    angle-weighted vertex normal at a vertex — correct for any closed, consistently oriented
    mesh, and the best available guess next to the border of an open one.

    Args:
        points: ``(N, 3)``.
        vertices: ``(V, 3)``, differentiable.
        faces: ``(F, 3)`` int.
        k: candidate triangles per point.
        neighbours: ``face_neighbours(faces)`` when precomputed.
        rings: ``vertex_faces(faces, V)`` when precomputed.
    """
    cp = closest_points_on_mesh(points, vertices, faces, k, rings)
    with torch.no_grad():
        f = faces.long()
        tri = vertices.detach()[f]
        fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        fn = fn / fn.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        nb = torch.as_tensor(face_neighbours(f.cpu().numpy()) if neighbours is None else neighbours,
                             device=points.device)
        b = cp.bary
        nz = b > 1e-7
        n_nz = nz.sum(1)
        normal = fn[cp.face].clone()
        # on an edge: the corner with zero weight is opposite that edge
        on_edge = n_nz == 2
        if on_edge.any():
            opp = (~nz[on_edge]).float().argmax(1)
            other = nb[cp.face[on_edge], opp]
            normal[on_edge] = normal[on_edge] + torch.where(other[:, None] >= 0, fn[other.clamp_min(0)], 0.0)
        at_vertex = n_nz <= 1
        if at_vertex.any():
            vn = angle_weighted_normals(vertices.detach(), f)
            corner = b[at_vertex].argmax(1)
            normal[at_vertex] = vn[f[cp.face[at_vertex], corner]]
        sign = torch.sign(((points.detach() - cp.points.detach()) * normal).sum(-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return sign * cp.distance, cp


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops of the open borders of a mesh (each directed as its faces' edges)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, 1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[counts[inv.reshape(-1)] == 1]
    nxt = {int(a): int(b) for a, b in border}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if len(loop) >= 3:
            loops.append(np.array(loop))
    return loops


def capped(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Close every border loop with a fan around a new centre vertex (index ``n_vertices + i``).

    Returns the faces with the caps appended and the loops; the caller places centre ``i`` at the
    mean of loop ``i``'s vertices (so caps follow deformations)."""
    loops = boundary_loops(faces)
    caps = [np.stack([np.roll(lp, -1), lp, np.full(len(lp), n_vertices + i)], 1) for i, lp in enumerate(loops)]
    return (np.concatenate([faces, *caps]) if caps else faces), loops
