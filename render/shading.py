"""Lighting models: Lambert + ambient, and second-order spherical harmonics (27 coefficients).

Functions accept numpy arrays or torch tensors (the same code path; torch is differentiable).
SH irradiance follows Ramamoorthi & Hanrahan with the Lambertian convolution folded into the
basis, as in 3DMM fitting: ``irradiance(n) = Y(n) @ gamma`` with ``gamma (9, 3)`` per colour
channel; ``gamma[0] = 1`` and the rest 0 gives uniform unit irradiance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))
_DC = _A[0] * _C[0]  # basis value of the constant band (= 0.886…)


def _lib(x):
    return np if isinstance(x, np.ndarray) else __import__("torch")


def sh_basis(normals):
    """``(N, 9)`` SH irradiance basis of unit ``normals (N, 3)``, constant band normalised to 1."""
    xp = _lib(normals)
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    a1c1, a2c2 = _A[1] * _C[1], _A[2] * _C[2]
    one = xp.ones_like(x)
    cols = [_DC * one, -a1c1 * y, a1c1 * z, -a1c1 * x, a2c2 * x * y, -a2c2 * y * z,
            0.5 * a2c2 / math.sqrt(3.0) * (3 * z * z - 1), -a2c2 * x * z, 0.5 * a2c2 * (x * x - y * y)]
    return xp.stack(cols, -1) / _DC


def shade_sh(albedo, normals, gamma):
    """Colour = albedo ⊙ (Y(n) @ gamma). ``albedo (N, 3)``, ``normals (N, 3)``, ``gamma (9, 3)``."""
    return albedo * (sh_basis(normals) @ gamma)


def shade_lambert(albedo, normals, direction, ambient: float, diffuse: float, color=(1.0, 1.0, 1.0)):
    """Colour = albedo ⊙ color ⊙ (ambient + diffuse·max(0, n·l)); ``direction (3,)`` toward the light."""
    xp = _lib(normals)
    d = xp.asarray(direction, dtype=normals.dtype) if xp is np else xp.as_tensor(direction, dtype=normals.dtype)
    d = d / (d * d).sum() ** 0.5
    c = xp.asarray(color, dtype=normals.dtype) if xp is np else xp.as_tensor(color, dtype=normals.dtype)
    ndl = (normals * d).sum(-1)
    ndl = xp.clip(ndl, 0, None) if xp is np else ndl.clamp(min=0)
    return albedo * c * (ambient + diffuse * ndl)[..., None]


@dataclass
class DirectionalLight:
    """One directional light plus ambient.

    Attributes:
        direction: ``(3,)`` world-frame direction *toward* the light.
        ambient: ambient intensity (≥ 0).
        diffuse: directional intensity (≥ 0).
        color: ``(3,)`` light colour, linear multiplier.
    """

    direction: tuple[float, float, float] = (-0.4, 0.5, 1.0)
    ambient: float = 0.4
    diffuse: float = 0.7
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_sh(self, world_to_frame: np.ndarray | None = None) -> np.ndarray:
        """Least-squares SH fit ``gamma (9, 3)`` of this light, in the frame ``world_to_frame (3, 3)``."""
        rng = np.random.default_rng(0)
        n = rng.standard_normal((4096, 3))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        d = np.asarray(self.direction, float)
        d = d / np.linalg.norm(d)
        if world_to_frame is not None:
            d = world_to_frame @ d
        target = self.ambient + self.diffuse * np.clip(n @ d, 0, None)
        coef, *_ = np.linalg.lstsq(sh_basis(n), target, rcond=None)
        return np.outer(coef, np.asarray(self.color, float))


@dataclass
class SHLight:
    """Spherical-harmonics lighting, ``coeffs`` ``(9, 3)`` (27 values) in the camera frame."""

    coeffs: np.ndarray = field(default_factory=lambda: np.eye(9, 3)[:, [0, 0, 0]] * 1.0)

    def __post_init__(self) -> None:
        self.coeffs = np.asarray(self.coeffs, float).reshape(9, 3)
