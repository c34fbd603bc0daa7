"""CPU mesh renderer: visibility by ray casting, shading in numpy or torch.

``render_mesh`` is the everyday entry point (numpy in, numpy out). ``shade_fragments_torch`` is
the differentiable path used by photometric fitting: visibility comes from :func:`rasterize`
(not differentiable), barycentrics, normals and colours are recomputed in torch so gradients
flow to vertex positions, albedo and lighting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.geometry.camera import Camera
from headveil.geometry.normals import vertex_normals
from headveil.render.rasterize import Fragments, interpolate, rasterize
from headveil.render.shading import DirectionalLight, SHLight, shade_lambert, shade_sh


@dataclass
class RenderResult:
    """Images of one render, all at the camera's resolution.

    Attributes:
        image: ``(H, W, 3) float32`` in [0, 1], composited over the background.
        mask: ``(H, W) float32`` coverage in [0, 1] (fractional at edges when supersampled).
        depth: ``(H, W) float32`` camera z in metres of the central sample, inf on background.
        normal: ``(H, W, 3) float32`` world-frame unit normals (0 on background).
        face_index: ``(H, W) int64`` visible triangle of the central sample, −1 on background.
        albedo: ``(H, W, 3) float32`` unlit colour.
    """

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    face_index: np.ndarray
    albedo: np.ndarray


def _downsample(x: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return x
    H, W = x.shape[0] // s, x.shape[1] // s
    return x.reshape(H, s, W, s, *x.shape[2:]).mean(axis=(1, 3))


def render_mesh(vertices: np.ndarray, faces: np.ndarray, camera: Camera, colors: np.ndarray | None = None,
                light: DirectionalLight | SHLight | None = None, background=(1.0, 1.0, 1.0),
                supersample: int = 2, backend: str = "auto") -> RenderResult:
    """Render a triangle mesh with per-vertex colours.

    Args:
        vertices: ``(V, 3)`` metres, world frame.
        faces: ``(F, 3)`` int vertex indices.
        camera: output camera (OpenCV axes); the image is ``camera.height × camera.width``.
        colors: ``(V, 3)`` albedo in [0, 1] (default light grey).
        light: :class:`DirectionalLight` (world frame) or :class:`SHLight` (camera frame);
            default a frontal directional light. ``None`` colours are shaded, never unlit.
        background: ``(3,)`` colour in [0, 1] or an ``(H, W, 3)`` float image.
        supersample: samples per pixel side (anti-aliasing); 1 disables it.
        backend: visibility backend (see :mod:`headveil.render.rasterize`).
    """
    if supersample < 1:
        raise ValueError(f"supersample must be ≥ 1, got {supersample}")
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    colors = np.full((len(vertices), 3), 0.8) if colors is None else np.asarray(colors, np.float64)
    if colors.shape != (len(vertices), 3):
        raise ValueError(f"colors must be ({len(vertices)}, 3), got {colors.shape}")
    light = DirectionalLight() if light is None else light
    cam = camera.scaled(supersample)
    frags = rasterize(vertices, faces, cam, backend=backend)
    H, W = cam.height, cam.width
    m = frags.mask
    vn = vertex_normals(vertices, faces)
    img = np.zeros((H, W, 3))
    alb = np.zeros((H, W, 3))
    nrm = np.zeros((H, W, 3))
    if m.any():
        fi, b = frags.face_index[m], frags.bary[m].astype(np.float64)
        n = interpolate(vn, faces, fi, b)
        n /= np.clip(np.linalg.norm(n, axis=1, keepdims=True), 1e-12, None)
        # two-sided shading: flip normals that face away from the camera (lash cards, inner mouth)
        hit = interpolate(vertices, faces, fi, b)
        view = cam.center - hit
        n = np.where(((n * view).sum(1) < 0)[:, None], -n, n)
        a = interpolate(colors, faces, fi, b)
        if isinstance(light, SHLight):
            n_cam = n @ cam.w2c[:3, :3].T
            c = shade_sh(a, n_cam, light.coeffs)
        else:
            c = shade_lambert(a, n, light.direction, light.ambient, light.diffuse, light.color)
        img[m], alb[m], nrm[m] = c, a, n
    cov = m.astype(np.float64)
    bg = np.asarray(background, np.float64)
    if bg.ndim == 1:
        bg = np.broadcast_to(bg, (camera.height, camera.width, 3))
    elif bg.shape != (camera.height, camera.width, 3):
        raise ValueError(f"background image must be ({camera.height}, {camera.width}, 3), got {bg.shape}")
    img_d, cov_d = _downsample(img, supersample), _downsample(cov, supersample)
    image = np.clip(img_d + (1 - cov_d)[..., None] * bg, 0, 1)
    c0 = supersample // 2
    centre = (slice(c0, None, supersample), slice(c0, None, supersample))
    return RenderResult(image=image.astype(np.float32), mask=cov_d.astype(np.float32),
                        depth=frags.depth[centre].astype(np.float32),
                        normal=_downsample(nrm, supersample).astype(np.float32),
                        face_index=frags.face_index[centre], albedo=_downsample(alb, supersample).astype(np.float32))


def shade_fragments_torch(vertices_cam, faces, colors, frags: Fragments, K: np.ndarray, gamma):
    """Differentiable SH shading of the pixels a :class:`Fragments` marks as foreground.

    Args:
        vertices_cam: ``(V, 3)`` torch, camera frame (OpenCV), metres; differentiable.
        faces: ``(F, 3)`` torch int64.
        colors: ``(V, 3)`` torch albedo; differentiable.
        frags: visibility from :func:`rasterize` for the same camera and (detached) geometry.
        K: ``(3, 3)`` intrinsics of that camera.
        gamma: ``(9, 3)`` torch SH coefficients, camera frame; differentiable.

    Returns:
        ``(N, 3)`` torch colours of the foreground pixels in row-major order, and the
        ``(N,)`` flat pixel indices they belong to.
    """
    import torch

    from headveil.render.rasterize import barycentrics_torch
    from headveil.render.rays import pixel_centers

    m = frags.mask.reshape(-1)
    pix = np.flatnonzero(m)
    H, W = frags.face_index.shape
    uv = pixel_centers(W, H).reshape(-1, 2)[pix]
    dirs = np.concatenate([uv, np.ones((len(pix), 1))], 1) @ np.linalg.inv(K).T
    dirs_t = torch.as_tensor(dirs, dtype=vertices_cam.dtype)
    fi = torch.as_tensor(frags.face_index.reshape(-1)[pix])
    bary, _ = barycentrics_torch(vertices_cam, faces, fi, dirs_t)
    vn = vertex_normals(vertices_cam, faces)
    n = interpolate(vn, faces, fi, bary)
    n = n / n.norm(dim=1, keepdim=True).clamp(min=1e-12)
    a = interpolate(colors, faces, fi, bary)
    return shade_sh(a, n, gamma), torch.as_tensor(pix)
