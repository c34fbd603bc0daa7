"""Geometric comparison of meshes: Chamfer distance, F-score, normal consistency, alignment.

All points are in metres in a shared frame; distances are *reported* in millimetres. Surfaces are
compared through area-uniform point samples (deterministic for a seed) and nearest neighbours
(:class:`scipy.spatial.cKDTree`), the definition used by the reconstruction literature:

.. math::
    d_{P\\to Q} = \\frac{1}{|P|}\\sum_{p\\in P} \\min_{q\\in Q}\\|p-q\\|, \\qquad
    \\mathrm{CD} = \\tfrac12 (d_{P\\to Q} + d_{Q\\to P}),

    \\mathrm{precision}_\\tau = \\frac{|\\{p: d(p, Q) < \\tau\\}|}{|P|},\\;
    \\mathrm{recall}_\\tau = \\frac{|\\{q: d(q, P) < \\tau\\}|}{|Q|},\\;
    F_\\tau = \\frac{2PR}{P+R}.

Normal consistency is the mean ``|n_p · n_q|`` over nearest-neighbour pairs in both directions
(1 = identical orientation field, 0.5 ≈ random).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from headveil.geometry.transforms import similarity_procrustes


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise ValueError(f"{name} must be a non-empty (N, 3) array; got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return p


def _check_mesh(vertices: np.ndarray, faces: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    v = _check_points(vertices, f"{name} vertices")
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"{name} faces must be a non-empty (F, 3) integer array; got shape {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{name} faces index outside [0, {len(v)})")
    return v, f.astype(np.int64)


def face_normals_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals ``(F, 3)`` and face areas ``(F,)`` (m²) of a triangle mesh."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(norm, 1e-30)[:, None], 0.5 * norm


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0,
                   face_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples of a mesh surface.

    Args:
        vertices: ``(V, 3)`` metres.
        faces: ``(F, 3)`` int vertex indices.
        n: number of samples.
        seed: RNG seed (same seed → same samples).
        face_mask: optional ``(F,)`` bool, sample only these faces (a region crop).

    Returns:
        ``points (n, 3) float64`` metres and their face normals ``(n, 3)``.
    """
    v, f = _check_mesh(vertices, faces, "mesh")
    if n <= 0:
        raise ValueError(f"n must be positive; got {n}")
    normals, areas = face_normals_areas(v, f)
    if face_mask is not None:
        areas = np.where(np.asarray(face_mask, bool), areas, 0.0)
    if areas.sum() <= 0:
        raise ValueError("the mesh (or the selected region) has zero area")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(f), size=n, p=areas / areas.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = np.einsum("nk,nkd->nd", bary, v[f[idx]])
    return pts, normals[idx]


@dataclass
class SurfaceDistance:
    """Result of :func:`surface_distance`; distances in millimetres."""

    chamfer_mm: float
    """Symmetric Chamfer distance ½(a→b + b→a)."""
    a_to_b_mm: float
    """Mean distance from samples of ``a`` (e.g. the prediction) to ``b`` (accuracy)."""
    b_to_a_mm: float
    """Mean distance from samples of ``b`` (e.g. ground truth) to ``a`` (completeness)."""
    precision: float
    recall: float
    fscore: float
    threshold_mm: float
    normal_consistency: float | None
    """Mean |cos| between normals of nearest-neighbour pairs, both directions (None without normals)."""

    def to_json(self) -> dict:
        return asdict(self)


def surface_distance(a_points: np.ndarray, b_points: np.ndarray, threshold_mm: float = 1.0,
                     a_normals: np.ndarray | None = None, b_normals: np.ndarray | None = None) -> SurfaceDistance:
    """Chamfer distance, F-score at ``threshold_mm`` and normal consistency of two point sets.

    Args:
        a_points: ``(N, 3)`` metres, e.g. samples of the prediction.
        b_points: ``(M, 3)`` metres, same frame, e.g. samples of the ground truth.
        threshold_mm: F-score distance threshold τ in millimetres.
        a_normals, b_normals: optional unit normals ``(N, 3)``/``(M, 3)`` for normal consistency.
    """
    from scipy.spatial import cKDTree

    a = _check_points(a_points, "a_points")
    b = _check_points(b_points, "b_points")
    if threshold_mm <= 0:
        raise ValueError(f"threshold_mm must be positive; got {threshold_mm}")
    d_ab, i_ab = cKDTree(b).query(a)
    d_ba, i_ba = cKDTree(a).query(b)
    tau = threshold_mm * 1e-3
    precision = float((d_ab < tau).mean())
    recall = float((d_ba < tau).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    nc = None
    if a_normals is not None and b_normals is not None:
        na, nb = np.asarray(a_normals, float), np.asarray(b_normals, float)
        if na.shape != a.shape or nb.shape != b.shape:
            raise ValueError("normals must have the shapes of their points")
        nc = float(0.5 * (np.abs((na * nb[i_ab]).sum(1)).mean() + np.abs((nb * na[i_ba]).sum(1)).mean()))
    return SurfaceDistance(chamfer_mm=float(0.5 * (d_ab.mean() + d_ba.mean()) * 1e3), a_to_b_mm=float(d_ab.mean() * 1e3),
                           b_to_a_mm=float(d_ba.mean() * 1e3), precision=precision, recall=recall, fscore=float(f),
                           threshold_mm=float(threshold_mm), normal_consistency=nc)


def icp_align(src: np.ndarray, dst: np.ndarray, n_iterations: int = 30, scale: bool = False,
              tol: float = 1e-7) -> np.ndarray:
    """Rigid (or similarity) ICP of ``src (N, 3)`` onto ``dst (M, 3)``; returns a ``(4, 4)`` transform.

    Point-to-point ICP with nearest-neighbour correspondences, each step solved in closed form
    (Umeyama). Initialise by a rough alignment first when the sets are far apart: ICP finds the
    nearest local minimum.
    """
    from scipy.spatial import cKDTree

    src = _check_points(src, "src")
    tree = cKDTree(_check_points(dst, "dst"))
    dst = tree.data
    T = np.eye(4)
    cur = src.copy()
    prev = np.inf
    for _ in range(n_iterations):
        d, j = tree.query(cur)
        s, R, t = similarity_procrustes(src, dst[j], scale=scale)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = s * R, t
        cur = src @ T[:3, :3].T + T[:3, 3]
        err = float(np.mean(d ** 2))
        if prev - err < tol * max(prev, 1e-30):
            break
        prev = err
    return T


def compare_meshes(pred_vertices: np.ndarray, pred_faces: np.ndarray, gt_vertices: np.ndarray, gt_faces: np.ndarray,
                   n_samples: int = 20000, threshold_mm: float = 1.0, align: str = "none",
                   pred_face_mask: np.ndarray | None = None, gt_face_mask: np.ndarray | None = None,
                   seed: int = 0) -> SurfaceDistance:
    """Surface distance between a predicted and a ground-truth mesh (metres in, mm out).

    Args:
        pred_vertices, pred_faces: ``(V, 3)`` metres and ``(F, 3)`` int, the prediction.
        gt_vertices, gt_faces: the ground truth in the same frame.
        n_samples: surface samples per mesh.
        threshold_mm: F-score threshold.
        align: ``"none"``; ``"rigid"``/``"similarity"``: Procrustes on corresponding vertices
            (meshes must share a vertex order, e.g. two fits of the head model); ``"icp"``: rigid
            ICP of prediction samples onto ground-truth samples.
        pred_face_mask, gt_face_mask: ``(F,)`` bool region crop (e.g. the model's face region).
        seed: sampling seed.
    """
    pv, pf = _check_mesh(pred_vertices, pred_faces, "pred")
    gv, gf = _check_mesh(gt_vertices, gt_faces, "gt")
    if align in ("rigid", "similarity"):
        if pv.shape != gv.shape:
            raise ValueError(f"align={align!r} needs corresponding vertices; got {pv.shape} and {gv.shape} "
                             "(use align='icp' for meshes of different topology)")
        s, R, t = similarity_procrustes(pv, gv, scale=align == "similarity")
        pv = s * pv @ R.T + t
    elif align not in ("none", "icp"):
        raise ValueError(f"align must be one of none, rigid, similarity, icp; got {align!r}")
    p_pts, p_n = sample_surface(pv, pf, n_samples, seed, pred_face_mask)
    g_pts, g_n = sample_surface(gv, gf, n_samples, seed + 1, gt_face_mask)
    if align == "icp":
        T = icp_align(p_pts, g_pts)
        p_pts = p_pts @ T[:3, :3].T + T[:3, 3]
        p_n = p_n @ T[:3, :3].T
    return surface_distance(p_pts, g_pts, threshold_mm, p_n, g_n)


def faces_in_region(faces: np.ndarray, vertex_mask: np.ndarray) -> np.ndarray:
    """``(F,)`` bool: faces whose three vertices all lie in the ``(V,)`` bool vertex region."""
    m = np.asarray(vertex_mask, bool)
    return m[np.asarray(faces)].all(1)


def vertex_errors_mm(fitted: np.ndarray, truth: np.ndarray, mask: np.ndarray, scale: bool = False) -> np.ndarray:
    """Per-vertex distance ``(M,)`` in millimetres on ``mask (V,) bool`` after a rigid (or, with
    ``scale``, similarity) alignment of ``fitted (V, 3)`` to ``truth (V, 3)`` (metres, same vertex order)."""
    from headveil.geometry.transforms import similarity_procrustes

    s, R, t = similarity_procrustes(fitted[mask], truth[mask], scale=scale)
    return np.linalg.norm(s * fitted[mask] @ R.T + t - truth[mask], axis=1) * 1e3
