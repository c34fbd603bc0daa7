"""Volume rendering along rays, pure PyTorch (the CPU path and the reference for any CUDA backend).

Rays are ``origins (R, 3)``, unit ``directions (R, 3)`` in the world frame (metres); samples are
intervals ``[t_starts, t_ends]`` ``(R, S)`` along each ray, in metres, sorted. With density σ
(1/metre) per interval (paper eq. 1):

.. math::
    α_i = 1 − e^{−σ_i δ_i},\\quad T_i = \\prod_{j<i} (1 − α_j),\\quad w_i = T_i α_i,\\quad
    \\hat c = \\sum_i w_i c_i + (1 − \\sum_i w_i)\\, c_{bg}.

All functions are differentiable in densities and values; sampling positions are not.
"""

from __future__ import annotations

import torch


def near_far_from_sphere(origins: torch.Tensor, directions: torch.Tensor, radius: float,
                         center=(0.0, 0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry/exit distances of rays through a sphere.

    Returns:
        ``near (R,)``, ``far (R,)`` in metres (near clamped at 0 for origins inside), and
        ``hit (R,) bool``; rays that miss get ``near = far = 0``.
    """
    c = torch.as_tensor(center, dtype=origins.dtype, device=origins.device)
    oc = origins - c
    b = (oc * directions).sum(-1)
    disc = b ** 2 - ((oc ** 2).sum(-1) - radius ** 2)
    hit = disc > 0
    root = torch.sqrt(disc.clamp_min(0))
    near = (-b - root).clamp_min(0)
    far = (-b + root).clamp_min(0)
    hit = hit & (far > near)
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n_samples: int, perturb: bool = True,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` equal intervals between near and far ``(R,)``, one jittered point each.

    Returns ``t_starts, t_ends (R, S)``: interval edges; with ``perturb`` the edges are the
    midpoints between jittered samples (NeRF stratified sampling), else the uniform bins.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be ≥ 1; got {n_samples}")
    u = torch.linspace(0.0, 1.0, n_samples + 1, dtype=near.dtype, device=near.device)
    edges = near[:, None] + (far - near)[:, None] * u  # (R, S+1)
    if perturb:
        lo, hi = edges[:, :-1], edges[:, 1:]
        r = torch.rand(lo.shape, generator=generator, dtype=lo.dtype, device=lo.device)
        mids = lo + (hi - lo) * r
        inner = 0.5 * (mids[:, 1:] + mids[:, :-1])
        edges = torch.cat([edges[:, :1], inner, edges[:, -1:]], 1)
    return edges[:, :-1], edges[:, 1:]


def render_weights(t_starts: torch.Tensor, t_ends: torch.Tensor, density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume-rendering weights ``w (R, S)`` and transmittance before each interval ``T (R, S)``."""
    sigma_delta = density * (t_ends - t_starts)
    alpha = 1.0 - torch.exp(-sigma_delta)
    # exclusive cumulative sum in log space: T_i = exp(−Σ_{j<i} σ_j δ_j)
    trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(sigma_delta[:, :1]), sigma_delta[:, :-1]], 1), 1))
    return trans * alpha, trans


def composite(weights: torch.Tensor, values: torch.Tensor, background: torch.Tensor | float | None = None) -> torch.Tensor:
    """``Σ_i w_i v_i`` over samples: weights ``(R, S)``, values ``(R, S, C)`` → ``(R, C)``; with a
    background ``(C,)``/``(R, C)``/scalar, the remaining ``1 − Σ w`` is filled with it."""
    out = (weights[..., None] * values).sum(1)
    if background is not None:
        out = out + (1.0 - weights.sum(1, keepdim=True)) * torch.as_tensor(background, dtype=out.dtype, device=out.device)
    return out


def expected_depth(weights: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor) -> torch.Tensor:
    """``(R,)`` expected ray distance ``Σ w t_mid / Σ w`` (0 where the ray is empty)."""
    acc = weights.sum(1)
    return (weights * 0.5 * (t_starts + t_ends)).sum(1) / acc.clamp_min(1e-10) * (acc > 1e-10)


def importance_samples(t_starts: torch.Tensor, t_ends: torch.Tensor, weights: torch.Tensor, n_samples: int,
                       perturb: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``(R, n_samples)`` sorted distances from the piecewise-constant pdf ∝ weights (inverse CDF).

    Intervals must be contiguous (``t_ends[:, i] == t_starts[:, i + 1]``), as produced by
    :func:`stratified_samples`. Rays with zero weight fall back to uniform samples.
    """
    w = weights.detach() + 1e-8
    pdf = w / w.sum(1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, 1)], 1).clamp_(max=1.0)  # (R, S+1)
    edges = torch.cat([t_starts[:, :1], t_ends], 1).detach()
    R = weights.shape[0]
    if perturb:
        u = torch.rand(R, n_samples, generator=generator, dtype=w.dtype, device=w.device)
        u, _ = torch.sort(u, 1)
    else:
        u = ((torch.arange(n_samples, dtype=w.dtype, device=w.device) + 0.5) / n_samples).expand(R, n_samples)
    idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True).clamp(1, cdf.shape[1] - 1)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    e0, e1 = edges.gather(1, idx - 1), edges.gather(1, idx)
    frac = ((u - c0) / (c1 - c0).clamp_min(1e-10)).clamp(0, 1)
    return e0 + frac * (e1 - e0)
