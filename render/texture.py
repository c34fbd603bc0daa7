"""Photo texture: colours sampled from a photo onto a fitted mesh, with visibility.

A vertex takes the photo's colour at its projection when it is visible: it faces the camera and
its depth matches the rendered depth at its pixel (within ``depth_tol_m``). Hidden vertices get a
colour by diffusion over the mesh from their visible neighbours (Jacobi averaging on the vertex
adjacency), so a deformed mesh carries the person's own skin, light and detail everywhere.
"""

from __future__ import annotations

import numpy as np

from headveil.geometry.camera import Camera
from headveil.render.rasterize import depth_at


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    from scipy.ndimage import map_coordinates

    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5  # pixel centres at (u + 0.5, v + 0.5)
    return np.stack([map_coordinates(image[..., c], [y, x], order=1, mode="nearest") for c in range(3)], 1)


def vertex_adjacency(n_vertices: int, faces: np.ndarray):
    """Row-normalised vertex adjacency ``(V, V)`` scipy CSR matrix (mean over edge neighbours).
    The last few are cached by the faces' bytes (one model's mesh is diffused again and again)."""
    import hashlib

    f = np.ascontiguousarray(faces, np.int64)
    key = (int(n_vertices), f.shape, hashlib.blake2b(f.tobytes(), digest_size=16).digest())
    if key not in _ADJACENCY:
        if len(_ADJACENCY) >= 4:
            _ADJACENCY.pop(next(iter(_ADJACENCY)))
        _ADJACENCY[key] = _adjacency(n_vertices, f)
    return _ADJACENCY[key]


_ADJACENCY: dict = {}


def _adjacency(n_vertices: int, f: np.ndarray):
    from scipy.sparse import coo_matrix

    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    A = coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    A = A.multiply(1.0 / np.maximum(deg, 1)[:, None]).tocsr()
    return A


def diffuse_colors(colors: np.ndarray, known: np.ndarray, faces: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Fill ``colors (V, 3)`` where ``known (V,)`` is False by repeated neighbour averaging (Jacobi:
    every unknown vertex takes the mean of its neighbours, ``iterations`` times, starting from the
    known vertices' mean). Only the unknown rows are iterated: ``c_u ← A_uu c_u + A_uk c_k``, the
    known part computed once."""
    c = np.asarray(colors, np.float64).copy()
    known = np.asarray(known, bool)
    if known.all():
        return c
    if not known.any():
        raise ValueError("no vertex has a known colour to diffuse from")
    A = vertex_adjacency(len(c), faces)
    u = np.flatnonzero(~known)
    rows = A[u]
    A_uu, b = rows[:, u], rows[:, np.flatnonzero(known)] @ c[known]
    x = np.broadcast_to(c[known].mean(0), (len(u), 3)).copy()  # start; parts never reached keep it
    for _ in range(iterations):
        x = A_uu @ x + b
    c[u] = x
    return c


def sample_photo_colors(image: np.ndarray, vertices_world: np.ndarray, faces: np.ndarray, camera: Camera,
                        depth_tol_m: float = 2e-3, min_cos: float = 0.1, backend: str = "auto",
                        visibility_px: int = 512, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Colours of a photo on a mesh.

    Args:
        image: ``(H, W, 3)`` uint8 RGB or float in [0, 1] (the photo).
        vertices_world: ``(V, 3)`` metres, world frame (the fitted mesh at the photo's pose).
        faces: ``(F, 3)`` int.
        camera: the photo's camera (OpenCV axes).
        depth_tol_m: a vertex counts as visible when within this depth of the rendered surface.
        min_cos: minimum cosine between the vertex normal and the direction to the camera.
        visibility_px: the depth test's raster is at most this many pixels on its longer side (the
            head's window scaled down in a large photo: a pixel there is still well under
            ``depth_tol_m`` of face); colours are read from the photo at full resolution.
        exclude: ``(H, W) bool`` photo pixels that are not the face (occluders: hair, a brim,
            hands): the visible vertices under them take colours diffused from the others, like
            the unseen ones, and still count as ``visible`` (the photo saw that surface, behind
            what covers it). When every visible vertex is excluded, nothing is.

    Returns:
        ``colors (V, 3) float64`` in [0, 1] and ``visible (V,) bool``.
    """
    from headveil.geometry.normals import vertex_normals

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image must be ({camera.height}, {camera.width}, 3); got {img.shape}")
    v = np.asarray(vertices_world, np.float64)
    f = np.asarray(faces, np.int64)
    uv, z = camera.project(v)
    H, W = img.shape[:2]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
    dz = np.full(len(v), np.inf)
    win = camera.window(v)
    if win is not None:  # visibility only where the head projects
        x0, y0, w, h = win
        cam = camera.cropped(x0, y0, w, h)
        scale = min(1.0, visibility_px / max(w, h))
        if scale < 1.0:
            cam = cam.scaled(scale)
        px = np.clip(np.floor((uv - [x0, y0]) * scale).astype(np.int64), 0, [cam.width - 1, cam.height - 1])
        dz = np.abs(depth_at(v, f, cam, px, backend=backend) - z)  # the depth raster under the vertices alone
    n = vertex_normals(v, f)
    to_cam = camera.center[None] - v
    to_cam /= np.linalg.norm(to_cam, axis=1, keepdims=True)
    visible = inside & (dz < depth_tol_m) & ((n * to_cam).sum(1) > min_cos)
    known = visible
    if exclude is not None and visible.any():
        ex = np.asarray(exclude, bool)
        if ex.shape != (H, W):
            raise ValueError(f"exclude must be ({H}, {W}); got {ex.shape}")
        ij = np.clip(np.floor(uv[visible]).astype(np.int64), 0, [W - 1, H - 1])
        bare = visible.copy()
        bare[visible] = ~ex[ij[:, 1], ij[:, 0]]
        known = bare if bare.any() else visible
    colors = np.zeros((len(v), 3))
    if known.any():  # only the pixels around the known vertices are read (a head in a large photo)
        lo = np.maximum(np.floor(uv[known].min(0)).astype(np.int64) - 2, 0)
        hi = np.minimum(np.ceil(uv[known].max(0)).astype(np.int64) + 3, [W, H])
        crop = img[lo[1]:hi[1], lo[0]:hi[0]]
        crop = crop.astype(np.float64) / 255.0 if crop.dtype == np.uint8 else crop.astype(np.float64)
        colors[known] = _bilinear(crop, uv[known] - lo)
    return diffuse_colors(colors, known, f), visible
