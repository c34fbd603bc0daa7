"""Universal adversarial perturbation against a differentiable face recognizer (AnonymousNet Stage IV).

One perturbation ``v`` for a whole face set (Moosavi-Dezfooli et al. 2017, the paper's eq. 8–9):
``‖v‖∞ ≤ ξ`` and, for as many faces x of the set as possible, the recognizer no longer matches
``x + v`` to ``x``. ``v`` lives in the recognizer's aligned crop frame (FaceNet: 160 × 160 RGB,
pixel units 0–255); :func:`apply_to_photo` warps it back into a photo through the inverse of that
face's alignment.

The decision attacked is verification against the face itself: ``g(x') = τ − ‖f(x') − f(x)‖``
(matched while g > 0; f unit embeddings, τ the recognizer's threshold). The algorithm:

1. ``v = 0``; in each pass, over the faces in a seeded order: if ``x_i + v`` is still matched,
   DeepFool finds a small extra ``r`` by linearising g at ``x_i + v + r`` —
   ``r ← r − (1 + overshoot) g / ‖∇g‖² ∇g`` — until g < 0 or ``steps`` iterations; then
   ``v ← P_ξ(v + r)`` (clip to the ℓ∞ ball, and ``x + v`` to [0, 255]).
2. Stop when the fooling rate reaches ``1 − δ`` or after ``passes`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class UniversalPerturbation:
    """The result: ``v (160, 160, 3) float32`` (pixels), ``xi``, the fooling rate on the set it was
    computed on and the passes run."""

    v: np.ndarray
    xi: float
    fooling_rate: float
    passes: int


def universal_perturbation(crops: np.ndarray, net, xi: float, threshold: float = 1.1, delta: float = 0.2,
                           passes: int = 3, steps: int = 6, overshoot: float = 0.1, seed: int = 0,
                           progress=None) -> UniversalPerturbation:
    """Universal perturbation of ``crops (N, 160, 160, 3) uint8`` aligned faces against ``net``
    (an object with a differentiable ``forward((N, 3, 160, 160) in [0, 255]) → (N, D)`` unit
    embeddings, e.g. :class:`~headveil.geometry.perception.facenet.FaceNet`), ``‖v‖∞ ≤ xi`` pixels."""
    import torch

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8:
        raise ValueError(f"crops must be (N, H, W, 3) uint8; got {crops.shape} {crops.dtype}")
    if not xi >= 0:
        raise ValueError(f"xi must be ≥ 0; got {xi}")
    X = torch.as_tensor(crops.astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        ref = net.forward(X)
    v = torch.zeros_like(X[:1])
    order_rng = np.random.default_rng(seed)

    def fooled(vv) -> np.ndarray:
        with torch.no_grad():
            e = net.forward(torch.clamp(X + vv, 0, 255))
        return ((e - ref).norm(dim=1) >= threshold).numpy()

    rate = float(fooled(v).mean())
    p = 0
    for p in range(1, passes + 1):
        if rate >= 1 - delta or xi == 0:
            break
        for i in order_rng.permutation(len(X)):
            x, e0 = X[i:i + 1], ref[i:i + 1]
            r = torch.zeros_like(x)
            for _ in range(steps):
                z = torch.clamp(x + v + r, 0, 255).requires_grad_(True)
                g = threshold - (net.forward(z) - e0).norm()
                if g.item() < 0:
                    break
                (grad,) = torch.autograd.grad(g, z)
                r = r - (1 + overshoot) * (g.detach() + 1e-4) / grad.pow(2).sum().clamp_min(1e-12) * grad
            v = torch.clamp(v + r, -xi, xi)
        rate = float(fooled(v).mean())
        if progress is not None:
            progress(f"pass {p}: fooling rate {rate:.2f} at ξ = {xi:g}")
    return UniversalPerturbation(v[0].permute(1, 2, 0).numpy().astype(np.float32), float(xi), rate, p)


def apply_to_photo(photo: np.ndarray, v: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``photo (H, W, 3) uint8`` + the crop-frame perturbation ``v (S, S, 3)`` warped back through the
    inverse of the face's alignment ``M (2, 3)`` (photo → crop); outside the crop nothing changes."""
    import cv2

    photo = np.asarray(photo)
    H, W = photo.shape[:2]
    Minv = cv2.invertAffineTransform(np.asarray(M, np.float64))
    vw = cv2.warpAffine(np.ascontiguousarray(v, np.float32), Minv, (W, H), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.clip(photo.astype(np.float32) + vw + 0.5, 0, 255).astype(np.uint8)
