"""Rays through pixel centres (OpenCV cameras)."""

from __future__ import annotations

import numpy as np

from headveil.geometry.camera import Camera


def pixel_centers(width: int, height: int) -> np.ndarray:
    """``(H, W, 2) float64`` pixel-centre coordinates (u + 0.5, v + 0.5), x right, y down."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([u, v], -1)


def directions_camera(camera: Camera) -> np.ndarray:
    """``(H, W, 3)`` ray directions in the camera frame with z = 1 (not normalised)."""
    return _directions(camera, pixel_centers(camera.width, camera.height))


def _directions(camera: Camera, uv: np.ndarray) -> np.ndarray:
    """``(..., 3)`` camera-frame directions with z = 1 through image positions ``uv (..., 2)``."""
    homog = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1)
    return homog @ np.linalg.inv(camera.K).T


def rays_through(camera: Camera, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame rays through image positions ``uv (N, 2)`` (pixels; a pixel's centre is
    ``(u + 0.5, v + 0.5)``).

    Returns:
        origins ``(N, 3)``, unit directions ``(N, 3)`` (float64, world frame) and the camera-frame
        directions with z = 1 ``(N, 3)`` (what the rasteriser's depth is measured along).
    """
    dc = _directions(camera, np.asarray(uv, np.float64).reshape(-1, 2))
    d = dc @ camera.c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(camera.c2w[:3, 3], d.shape).copy()
    return o, d, dc


def rays_from_camera(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World-frame rays through every pixel centre.

    Returns:
        origins ``(H*W, 3)`` and unit directions ``(H*W, 3)``, float64, world frame, row-major
        pixel order (index = v * W + u).
    """
    return rays_through(camera, pixel_centers(camera.width, camera.height))[:2]
