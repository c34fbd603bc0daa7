"""Pinhole cameras in the OpenCV convention.

``K (3, 3)`` intrinsics in pixels; pixel (u, v) covers [u, u+1) × [v, v+1), so its centre is
(u + 0.5, v + 0.5). ``c2w (4, 4)`` camera-to-world with
OpenCV camera axes (x right, y down, z forward). World frame: metres, +Y up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Right-multiplying a c2w by this flips between OpenCV (y down, z forward) and OpenGL
#: (y up, z backward) camera axes; it is its own inverse.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Convert a camera-to-world matrix between OpenCV and OpenGL/pyrender axes (involution)."""
    return np.asarray(c2w, float) @ CV_TO_GL


opengl_to_opencv = opencv_to_opengl


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    """``K (3, 3)`` for a vertical field of view in degrees, principal point at the centre."""
    f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV camera-to-world ``(4, 4)`` at ``eye`` looking at ``target`` (world +Y up)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: view direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
    return c2w


@dataclass
class Camera:
    """A pinhole camera.

    Attributes:
        K: ``(3, 3) float64`` intrinsics, pixels.
        c2w: ``(4, 4) float64`` camera-to-world, OpenCV axes, metres.
        width, height: image size in pixels.
    """

    K: np.ndarray
    c2w: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, float)
        self.c2w = np.asarray(self.c2w, float)
        if self.K.shape != (3, 3) or self.c2w.shape != (4, 4):
            raise ValueError(f"Camera needs K (3, 3) and c2w (4, 4), got {self.K.shape}, {self.c2w.shape}")
        if not (np.all(np.isfinite(self.K)) and np.all(np.isfinite(self.c2w))):
            raise ValueError("Camera K/c2w contain NaN or inf")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Camera size must be positive, got {self.width}x{self.height}")

    @property
    def w2c(self) -> np.ndarray:
        """``(4, 4)`` world-to-camera."""
        return np.linalg.inv(self.c2w)

    @property
    def center(self) -> np.ndarray:
        """Camera centre ``(3,)`` in world coordinates."""
        return self.c2w[:3, 3].copy()

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by ``factor`` (e.g. supersampling)."""
        K = self.K.copy()
        K[:2] *= factor
        return Camera(K, self.c2w.copy(), int(round(self.width * factor)), int(round(self.height * factor)))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """The same camera seeing only the pixel window ``[x0, x0 + width) × [y0, y0 + height)``."""
        K = self.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return Camera(K, self.c2w.copy(), int(width), int(height))

    def window(self, points_world: np.ndarray, margin: int = 2) -> tuple[int, int, int, int] | None:
        """Integer pixel window ``(x0, y0, w, h)`` covering the projection of ``points_world (N, 3)``
        (points in front of the camera), clipped to the image; None when nothing projects inside."""
        uv, z = self.project(np.asarray(points_world, np.float64))
        uv = uv[z > 0]
        if len(uv) == 0:
            return None
        x0, y0 = np.floor(uv.min(0)).astype(int) - margin
        x1, y1 = np.ceil(uv.max(0)).astype(int) + margin
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``points_world (N, 3)`` → pixels ``(N, 2)`` (x right, y down) and depth ``(N,)``."""
        pc = points_world @ self.w2c[:3, :3].T + self.w2c[:3, 3]
        z = pc[:, 2]
        uv = (pc @ self.K.T)[:, :2] / np.where(np.abs(z) < 1e-12, 1e-12, z)[:, None]
        return uv, z

    def to_dict(self) -> dict:
        return {"K": self.K.tolist(), "c2w": self.c2w.tolist(), "width": self.width, "height": self.height,
                "convention": "opencv"}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        if d.get("convention", "opencv") != "opencv":
            raise ValueError(f"unsupported camera convention {d.get('convention')!r}")
        return cls(np.array(d["K"]), np.array(d["c2w"]), int(d["width"]), int(d["height"]))
