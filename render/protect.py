"""The protecting operator σ of the two-stage privacy reconstruction: keep only colour-gradient
magnitudes of a face image.

.. math::
    \\|g\\|_2 = \\Big\\|\\frac{\\partial c}{\\partial x}\\Big\\|_2 + \\Big\\|\\frac{\\partial c}{\\partial y}\\Big\\|_2

(paper eq. 6): per-channel x and y derivatives of the colour ``c`` (RGB in [0, 1]), the L2 norm over
the three channels of each, summed. Before the derivatives the image is downsampled (area
average) so its longer side is ``size`` px, then optionally blurred with a Gaussian of ``blur`` px
(in the downsampled image). Derivative kernels (per pixel of the downsampled image):

- ``sobel``: ``[1, 2, 1]ᵀ ⊗ [−1, 0, 1] / 8`` (and its transpose);
- ``central``: ``[−1, 0, 1] / 2``.

A unit step therefore gives a derivative of 0.5 on each side (central) or 0.5 split over the
neighbouring rows (Sobel); every derivative lies in [−1, 1], so ``‖g‖ ∈ [0, 2√3]``
(:data:`GRADIENT_MAX`).

The same torch code serves the user-side operator (whole images, borders replicated) and the
reconstruction's gradient loss (rendered patches, ``padding="valid"``: on interior pixels the two
agree exactly), so the loss compares like with like.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from headveil.common.errors import HeadVeilError
from headveil.common.outputs import atomic_file

GRADIENT_MAX = 2.0 * math.sqrt(3.0)
"""Upper bound of ‖g‖ for colours in [0, 1] with either kernel."""

OPERATORS = ("sobel", "central")


@dataclass(frozen=True)
class ProtectConfig:
    """Settings of the protecting operator; saved with every protected view."""

    size: int = 64
    """Longer side (px) of the downsampled image; 0 keeps the input size."""
    blur: float = 0.0
    """Gaussian σ (px of the downsampled image) applied before the derivatives; 0 = none."""
    operator: str = "sobel"
    """Derivative kernel: ``sobel`` or ``central``."""

    def __post_init__(self):
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}; got {self.operator!r}")
        if not (self.blur >= 0 and math.isfinite(self.blur)):
            raise ValueError(f"blur must be a finite σ ≥ 0 px; got {self.blur}")
        if self.size != 0 and self.size < 8:
            raise ValueError(f"size must be 0 (keep) or at least 8 px; got {self.size}")

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> ProtectConfig:
        return ProtectConfig(int(d.get("size", 64)), float(d.get("blur", 0.0)), str(d.get("operator", "sobel")))

    @property
    def margin(self) -> int:
        """Pixels lost on each side when the operator runs with ``padding="valid"``."""
        return 1 + gaussian_radius(self.blur)


def gaussian_radius(sigma: float) -> int:
    """Kernel radius ``ceil(3σ)`` of the blur (0 when σ = 0)."""
    return int(math.ceil(3.0 * sigma)) if sigma > 0 else 0


def _gaussian_kernel(sigma: float, dtype) -> torch.Tensor:
    r = gaussian_radius(sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def _derivative_kernels(operator: str, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if operator == "sobel":
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64) / 8.0
    elif operator == "central":
        kx = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64) / 2.0
    else:
        raise ValueError(f"operator must be one of {OPERATORS}; got {operator!r}")
    return kx.to(dtype), kx.T.contiguous().to(dtype)


def gradient_magnitude(images: torch.Tensor, operator: str = "sobel", blur: float = 0.0,
                       padding: str = "replicate") -> torch.Tensor:
    """‖g‖ of eq. 6 for images ``(B, H, W, 3)`` (RGB in [0, 1], any float dtype), differentiable.

    Args:
        operator: ``sobel`` or ``central``.
        blur: Gaussian σ in px applied first (0 = none).
        padding: ``replicate`` (output ``(B, H, W)``) or ``valid`` (output
            ``(B, H − 2m, W − 2m)`` with ``m = 1 + ceil(3·blur)``, no border assumption).

    Returns:
        ``(B, H', W')`` gradient magnitudes in ``[0, 2√3]`` per pixel.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3); got {tuple(images.shape)}")
    if padding not in ("replicate", "valid"):
        raise ValueError(f"padding must be replicate or valid; got {padding!r}")
    x = images.permute(0, 3, 1, 2).reshape(-1, 1, images.shape[1], images.shape[2])  # (B·3, 1, H, W)
    r = gaussian_radius(blur)
    if r > 0:
        k = _gaussian_kernel(blur, x.dtype)
        if padding == "replicate":
            x = F.pad(x, (r, r, r, r), mode="replicate")
        x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    kx, ky = _derivative_kernels(operator, x.dtype)
    if padding == "replicate":
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(x, kx[None, None]), F.conv2d(x, ky[None, None])
    h, w = gx.shape[-2:]
    gx, gy = gx.reshape(images.shape[0], 3, h, w), gy.reshape(images.shape[0], 3, h, w)
    # ‖·‖₂ over channels; the small floor keeps the gradient of the norm finite at 0
    return torch.sqrt((gx * gx).sum(1) + 1e-12) + torch.sqrt((gy * gy).sum(1) + 1e-12) - 2e-6


def downsample_to(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average ``(H, W, 3)`` float image so its longer side is ``size`` px (never upsamples)."""
    import cv2

    h, w = image.shape[:2]
    if size == 0 or max(h, w) <= size:
        return image
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return cv2.resize(np.ascontiguousarray(image, dtype=np.float32), (nw, nh), interpolation=cv2.INTER_AREA)


def protect_image(image: np.ndarray, config: ProtectConfig | None = None) -> np.ndarray:
    """Apply the protecting operator to one RGB image.

    Args:
        image: ``uint8 (H, W, 3)`` RGB, or ``float (H, W, 3)`` in [0, 1].
        config: operator settings (defaults: 64 px, no blur, Sobel).

    Returns:
        ``float32 (h, w)`` ‖g‖ in ``[0, 2√3]`` at the downsampled size.
    """
    cfg = config or ProtectConfig()
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB; got {img.shape}")
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = np.asarray(img, np.float32)
    if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise ValueError("a float image must be finite and in [0, 1]")
    small = downsample_to(img, cfg.size)
    with torch.no_grad():
        g = gradient_magnitude(torch.from_numpy(np.ascontiguousarray(small))[None], cfg.operator, cfg.blur)[0]
    return g.clamp(0, GRADIENT_MAX).numpy().astype(np.float32)


def quantize(g: np.ndarray) -> np.ndarray:
    """‖g‖ ``(h, w)`` in [0, 2√3] → ``uint16`` codes (step 2√3 / 65535 ≈ 5.3e-5)."""
    return np.round(np.clip(g, 0, GRADIENT_MAX) / GRADIENT_MAX * 65535.0).astype(np.uint16)


def dequantize(q: np.ndarray) -> np.ndarray:
    """``uint16`` codes → ‖g‖ ``float32 (h, w)``."""
    return (np.asarray(q, np.float32) * (GRADIENT_MAX / 65535.0)).astype(np.float32)


# -- the gradient file format: what leaves the operator ------------------------------------------
class GradientFileError(HeadVeilError, ValueError):
    """A file labelled as a gradient view is not one (missing, RGB, out of range, unreadable)."""


def write_gradient(path: str | os.PathLike, g: np.ndarray) -> Path:
    """Write ‖g‖ ``(H, W)`` atomically: ``.png`` → 16-bit greyscale codes (:func:`quantize`),
    ``.npy`` → float32. No metadata."""
    from PIL import Image

    path = Path(path)
    g = np.asarray(g, np.float32)
    if g.ndim != 2:
        raise ValueError(f"a gradient image is (H, W); got {g.shape}")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".npy"):
        raise ValueError(f"gradient files are .png (16-bit) or .npy; got {path.suffix!r}")
    with atomic_file(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, g)
        else:
            Image.fromarray(quantize(g)).save(tmp, format="PNG")  # uint16 → mode I;16, no text chunks
    return path


def gradient_preview(g: np.ndarray) -> np.ndarray:
    """An 8-bit RGB view of ‖g‖ ``(H, W)`` (scaled by its 99th percentile, grey) for people to look at."""
    hi = float(np.percentile(g, 99)) or 1.0
    v = np.clip(g / hi, 0, 1)
    return np.repeat((v * 255 + 0.5).astype(np.uint8)[..., None], 3, -1)


def read_gradient(path: Path) -> np.ndarray:
    """Read a gradient view: ``uint16`` greyscale PNG codes or a ``float32 .npy`` → ``(H, W) float32``
    ‖g‖. RGB images and values outside [0, 2√3] are refused (a protected view given as RGB)."""
    from PIL import Image

    if not path.is_file():
        raise GradientFileError(f"gradient view not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            g = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise GradientFileError(f"{path.name}: unreadable .npy ({exc})") from None
        if g.ndim != 2:
            raise GradientFileError(f"{path.name}: a gradient view must be one channel (H, W); got {g.shape} — "
                               "is it an RGB image? run `headveil protect` on it first")
        g = g.astype(np.float32)
    else:
        try:
            with Image.open(path) as im:
                im.load()
                mode, arr = im.mode, np.asarray(im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise GradientFileError(f"{path.name}: not a readable gradient image ({exc})") from None
        if arr.ndim != 2 or mode not in ("I;16", "I;16B", "I;16L", "I"):
            raise GradientFileError(f"{path.name}: labelled as a gradient view but holds a {mode} image {arr.shape}; "
                               "protected views must be the 16-bit output of `headveil protect`, never RGB")
        g = dequantize(arr.astype(np.uint16))
    if not np.isfinite(g).all() or g.min() < 0 or g.max() > GRADIENT_MAX + 1e-4:
        raise GradientFileError(f"{path.name}: values outside the gradient range [0, {GRADIENT_MAX:.3f}] — "
                           "not the output of the protecting operator")
    return g
