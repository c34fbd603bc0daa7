"""Turntable renders of a mesh (a head rotating about the model's +Y axis) and video output."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from headveil.common.outputs import atomic_file
from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at
from headveil.geometry.transforms import rotation_y
from headveil.render.mesh_renderer import render_mesh
from headveil.render.shading import DirectionalLight


def turntable_frames(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, n_frames: int = 48,
                     size: int = 256, fov_deg: float = 20.0, max_yaw: float = 180.0, progress=None) -> np.ndarray:
    """Render ``n_frames`` views as the head turns through ±``max_yaw`` degrees.

    Args:
        vertices: ``(V, 3)`` metres, model frame (+Y up, face toward +Z), roughly centred.
        faces, colors: topology and optional ``(V, 3)`` colours in [0, 1].

    Returns:
        ``(n_frames, size, size, 3) uint8`` frames.
    """
    v = np.asarray(vertices, np.float64)
    centre = 0.5 * (v.min(0) + v.max(0))
    extent = float(np.linalg.norm(v.max(0) - v.min(0)))
    dist = 0.62 * extent / np.tan(np.radians(fov_deg) / 2)
    cam = Camera(intrinsics_from_fov(size, size, fov_deg), look_at((0.0, 0.0, dist)), size, size)
    light = DirectionalLight((-0.3, 0.5, 1.0), 0.4, 0.65)
    if n_frames < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
    yaws = np.linspace(-max_yaw, max_yaw, n_frames, endpoint=max_yaw < 180)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i, yaw in enumerate(yaws):
        vr = (v - centre) @ rotation_y(float(yaw)).T
        img = render_mesh(vr, faces, cam, colors, light=light, background=(0.92, 0.92, 0.94)).image
        frames[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        if progress:
            progress(i + 1, n_frames)
    return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 24) -> Path:
    """Write ``frames (T, H, W, 3) uint8`` as an H.264 MP4 (or a GIF for ``.gif``), atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    with atomic_file(path) as tmp:
        if path.suffix.lower() == ".gif":
            imageio.mimsave(tmp, list(frames), duration=1.0 / fps, loop=0)
        else:
            with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=7, macro_block_size=8,
                                    ffmpeg_log_level="error", output_params=["-map_metadata", "-1"]) as w:
                for f in frames:
                    w.append_data(f)
    return path
