"""Classic obfuscation baselines on the face region: blur, pixelate, mask.

Each works on photos (the face region comes from the input's landmarks, its face box, or a
detector run) and is registered so every report compares a 3D method against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.errors import NoFaceFoundError
from headveil.render.deid.registry import DeidInput, DeidOutput, MethodSpec, register_method
from headveil.render import image_ops


def face_region(inp: DeidInput, margin: float = 0.15) -> np.ndarray:
    """The face box of an input: from its landmarks, else its box, else the first available detector."""
    if inp.landmarks68 is not None:
        return image_ops.face_box_from_landmarks(inp.landmarks68, inp.image.shape, margin)
    if inp.face_box is not None:
        return np.asarray(inp.face_box, float)
    from headveil.geometry.perception.detectors import detect_faces

    found = detect_faces(inp.image, "auto")
    if not found:
        raise NoFaceFoundError(inp.extras.get("source", "<array>"), "auto")
    return image_ops.face_box_from_landmarks(found[0].points, inp.image.shape, margin)


@dataclass
class BlurParams:
    sigma: float = 8.0
    """Gaussian σ in pixels (0 = unchanged); for ``variant="downsample"`` the downsampling factor."""
    variant: str = "gaussian"
    """``gaussian`` or ``downsample`` (area-downsample by ``sigma`` then bilinear upsample)."""


def _blur(inp: DeidInput, p: BlurParams, rng: np.random.Generator) -> DeidOutput:
    box = face_region(inp)
    if p.variant == "gaussian":
        img = image_ops.gaussian_blur(inp.image, box, p.sigma)
    elif p.variant == "downsample":
        img = image_ops.downsample_blur(inp.image, box, max(1, int(round(p.sigma))) if p.sigma > 0 else 1)
    else:
        raise ValueError(f"blur variant must be 'gaussian' or 'downsample'; got {p.variant!r}")
    return DeidOutput(img, metrics={"region_box": box.tolist()})


@dataclass
class PixelateParams:
    block: int = 16
    """Block size in pixels (1 = unchanged)."""


def _pixelate(inp: DeidInput, p: PixelateParams, rng: np.random.Generator) -> DeidOutput:
    box = face_region(inp)
    return DeidOutput(image_ops.pixelate(inp.image, box, int(p.block)), metrics={"region_box": box.tolist()})


@dataclass
class MaskParams:
    color: tuple[int, int, int] = (0, 0, 0)
    """Fill colour, RGB 0–255."""


def _mask(inp: DeidInput, p: MaskParams, rng: np.random.Generator) -> DeidOutput:
    box = face_region(inp)
    return DeidOutput(image_ops.fill(inp.image, box, p.color), metrics={"region_box": box.tolist()})


register_method(MethodSpec("blur", BlurParams, _blur, "Gaussian (or downsample-upsample) blur of the face region",
                           strength="sigma", identity_strength=0.0))
register_method(MethodSpec("pixelate", PixelateParams, _pixelate, "mean-colour blocks over the face region",
                           strength="block", identity_strength=1))
register_method(MethodSpec("mask", MaskParams, _mask, "solid fill of the face region"))
