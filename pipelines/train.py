"""The one training loop for head fields: stages are configs, not copies of the loop.

A stage picks the views it may use (all, privacy-neutral only, protected only), the image loss
(``rgb``: L1 on colours, paper eq. 2) and the regularisers (eikonal eq. 4 on finite-difference
gradients, the colour network's Lipschitz product eq. 8, a mask loss when the capture has masks).
Rays are drawn at random from the stage's views, sampled in the head's bounding sphere, rendered
with VolSDF density and composited over the capture's background.

Deterministic for a seed on CPU; checkpoints are written atomically; a non-finite loss stops
the run with :class:`TrainingDivergedError` and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from headveil.common.errors import HeadVeilError
from headveil.neural_fields.head_field import HeadField
from headveil.neural_fields.sdf import eikonal_loss, finite_difference_gradient
from headveil.pipelines.capture import Capture
from headveil.render.rays import rays_from_camera
from headveil.render.volume import (
    composite,
    expected_depth,
    near_far_from_sphere,
    render_weights,
    stratified_samples,
)


class TrainingDivergedError(HeadVeilError, RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class StageConfig:
    """One training stage."""

    name: str = "rgb"
    steps: int = 800
    views: str = "all"
    """Which views this stage may see: ``all``, ``neutral`` or ``protected``."""
    loss: str = "rgb"
    """Image loss: ``rgb`` (L1 on colours)."""
    rays: int = 512
    samples: int = 48
    lr: float = 2e-3
    """Adam learning rate of the geometry (SDF hash grid and MLP); decays ×0.1 over the stage."""
    lr_networks: float = 5e-3
    """Adam learning rate of the colour network, the density β and trainable codes; same decay."""
    w_eikonal: float = 0.05
    eikonal_points: int = 1024
    w_lipschitz: float = 0.0
    w_mask: float = 0.1
    w_residual: float = 0.01
    """Weight of mean |Δ| in millimetres at the samples: the learned residual must earn its
    departure from the 3DMM surface (prior fields only)."""
    bound_radius: float = 0.2
    """Radius (metres) of the sphere around the origin where samples are drawn."""
    sampling: str = "auto"
    """``uniform`` (stratified in the bounding sphere), ``prior`` (stratified in a band around the
    first crossing of the 3DMM surface along each ray; rays that miss it are sampled uniformly) or
    ``auto`` (prior when the field has a cached prior)."""
    band: float = 0.03
    """Half-width (metres) of the prior-guided sampling band."""


def rays_of(capture: Capture, views: str):
    """Rays, target colours and masks of the selected views: ``(N, 3) ×2, (N, 3), (N,) | None``."""
    if views not in ("all", "neutral", "protected"):
        raise ValueError(f"views must be all, neutral or protected; got {views!r}")
    sel = [i for i, p in enumerate(capture.privacy) if views == "all" or p == views]
    if not sel:
        raise HeadVeilError(f"the capture has no {views} views for this stage")
    o, d = zip(*(rays_from_camera(capture.cameras[i]) for i in sel))
    rgb = capture.images[sel].reshape(-1, 3)
    mask = capture.masks[sel].reshape(-1) if capture.masks is not None else None
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return t(np.concatenate(o)), t(np.concatenate(d)), t(rgb), (t(mask) if mask is not None else None)


def prior_band(field: HeadField, origins, dirs, near, far, band: float, n_coarse: int = 64):
    """Narrow ``near, far (R,)`` (metres along rays ``origins, dirs (R, 3)``) to ``±band`` around the
    first prior-surface crossing of each ray (no grad).

    Space in front of the band is empty under the prior, so skipping it keeps transmittance ≈ 1;
    rays that never cross the prior keep their full interval.
    """
    with torch.no_grad():
        t = near[:, None] + (far - near)[:, None] * torch.linspace(0, 1, n_coarse)
        pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]
        s = field.model_sdf(pts.reshape(-1, 3))[0].reshape(t.shape)
        cross = (s[:, :-1] > 0) & (s[:, 1:] <= 0)
        has = cross.any(1)
        k = cross.float().argmax(1)
        s0, s1 = s.gather(1, k[:, None])[:, 0], s.gather(1, k[:, None] + 1)[:, 0]
        t0, t1 = t.gather(1, k[:, None])[:, 0], t.gather(1, k[:, None] + 1)[:, 0]
        t_hit = t0 + (t1 - t0) * s0 / (s0 - s1).clamp_min(1e-12)
        new_near = torch.where(has, torch.maximum(near, t_hit - band), near)
        new_far = torch.where(has, torch.minimum(far, t_hit + band), far)
    return new_near, new_far


def render_rays(field: HeadField, origins, dirs, cfg: StageConfig, background, generator=None, perturb=True):
    """Volume-render rays ``origins, dirs (R, 3)`` (world frame, metres, unit directions).

    Returns ``rgb (R, 3)`` in [0, 1] composited over ``background``, ``opacity (R,)`` in [0, 1]
    and ``depth (R,)`` (expected ray distance in metres, 0 where empty); differentiable in the
    field's parameters. Normals fed to the colour network are detached SDF gradients.
    """
    near, far, hit = near_far_from_sphere(origins, dirs, cfg.bound_radius)
    mode = cfg.sampling
    if mode == "auto":
        mode = "prior" if getattr(field, "_prior_grid", None) is not None else "uniform"
    if mode == "prior":
        if not field.config.prior:
            raise ValueError("sampling='prior' needs a field with the 3DMM prior")
        near, far = prior_band(field, origins, dirs, near, far, cfg.band)
    elif mode != "uniform":
        raise ValueError(f"sampling must be auto, uniform or prior; got {cfg.sampling!r}")
    ts, te = stratified_samples(near, far, cfg.samples, perturb=perturb, generator=generator)
    mids = 0.5 * (ts + te)
    pts = (origins[:, None, :] + mids[..., None] * dirs[:, None, :]).reshape(-1, 3).requires_grad_(True)
    with torch.enable_grad():
        sdf, feats = field(pts)
        (grad,) = torch.autograd.grad(sdf.sum(), pts, retain_graph=True)
    normals = F.normalize(grad.detach(), dim=-1)
    sigma = field.density(sdf).reshape(ts.shape) * hit[:, None]
    w, _ = render_weights(ts, te, sigma)
    view = dirs[:, None, :].expand(-1, ts.shape[1], -1).reshape(-1, 3)
    color = field.color(pts, normals, view, feats).reshape(*ts.shape, 3)
    return composite(w, color, background), w.sum(1), expected_depth(w, ts, te)


def _param_groups(field: HeadField, cfg: StageConfig):
    """Geometry (the SDF's grid and MLP) at ``lr``; colour, density and codes at ``lr_networks``."""
    geo_prefix = ("residual.", "net.")
    geo = [p for n, p in field.named_parameters() if n.startswith(geo_prefix) and p.requires_grad]
    ids = {id(p) for p in geo}
    rest = [p for p in field.parameters() if id(p) not in ids and p.requires_grad]
    return [{"params": geo, "lr": cfg.lr}, {"params": rest, "lr": cfg.lr_networks}]


def save_checkpoint(path: Path, field: HeadField, opt, stage: int, step: int, extra: dict) -> None:
    """Write a checkpoint atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"field": field.state_dict(), "optimizer": opt.state_dict(), "stage": stage, "step": step,
                "backend": field.backend(), "rng": torch.get_rng_state(), **extra}, tmp)
    os.replace(tmp, path)


def _diverged_message(stage: str, step: int, what: str, checkpoint: Path | None) -> str:
    keep = f"the last good checkpoint is {checkpoint}" if checkpoint is not None else "no checkpoint was kept"
    return f"stage {stage}: {what} became NaN or infinite at step {step}; {keep}; lower the learning rates"


def train(field: HeadField, capture: Capture, stages: list[StageConfig], seed: int = 0,
          checkpoint: Path | None = None, checkpoint_every: int = 200, resume: bool = False,
          background=(0.0, 0.0, 0.0), progress: bool = True) -> dict:
    """Run the stages in order; returns per-stage stats (final loss, PSNR, seconds)."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    start_stage, start_step, state = 0, 0, None
    if resume and checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        field.load_state_dict(state["field"])
        start_stage, start_step = state["stage"], state["step"]
        torch.set_rng_state(state["rng"])
        gen.manual_seed(seed + 7919 * (start_stage * 100003 + start_step))
    bg = torch.as_tensor(background, dtype=torch.float32)
    stats = {}
    for si, cfg in enumerate(stages):
        if si < start_stage:
            continue
        o, d, rgb, mask = rays_of(capture, cfg.views)
        opt = torch.optim.Adam(_param_groups(field, cfg), betas=(0.9, 0.99), eps=1e-15)
        first = start_step if si == start_stage else 0
        if state is not None and si == start_stage and first > 0:
            opt.load_state_dict(state["optimizer"])
        t0 = time.perf_counter()
        bar = tqdm(range(first, cfg.steps), desc=f"stage {cfg.name}", unit="step", disable=not progress)
        loss_v = psnr_v = float("nan")
        for step in bar:
            for g, base in zip(opt.param_groups, (cfg.lr, cfg.lr_networks)):
                g["lr"] = base * 0.1 ** (step / cfg.steps)  # exponential decay ×0.1 over the stage
            idx = torch.randint(0, len(o), (cfg.rays,), generator=gen)
            pred, opacity, _ = render_rays(field, o[idx], d[idx], cfg, bg, gen)
            residual = getattr(field, "last_residual", None) if field.config.prior else None
            if not (torch.isfinite(pred).all() and torch.isfinite(opacity).all()):
                raise TrainingDivergedError(_diverged_message(cfg.name, step, "the rendered colours", checkpoint))
            if cfg.loss != "rgb":
                raise ValueError(f"unknown image loss {cfg.loss!r}")
            loss_img = (pred - rgb[idx]).abs().mean()
            loss = loss_img
            if mask is not None and cfg.w_mask > 0:
                loss = loss + cfg.w_mask * F.binary_cross_entropy(opacity.clamp(1e-4, 1 - 1e-4), mask[idx])
            if cfg.w_eikonal > 0:
                p = (torch.rand(cfg.eikonal_points, 3, generator=gen) * 2 - 1) * cfg.bound_radius
                loss = loss + cfg.w_eikonal * eikonal_loss(finite_difference_gradient(field.sdf, p, eps=2e-3))
            if cfg.w_residual > 0 and residual is not None:
                loss = loss + cfg.w_residual * residual.abs().mean() * 1e3
            if cfg.w_lipschitz > 0:
                loss = loss + cfg.w_lipschitz * field.color.lipschitz_loss()
            if not torch.isfinite(loss):
                raise TrainingDivergedError(_diverged_message(cfg.name, step, f"the loss ({loss.item()})", checkpoint))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = loss.item()
            mse = ((pred.detach() - rgb[idx]) ** 2).mean().item()
            psnr_v = -10 * math.log10(max(mse, 1e-10))
            bar.set_postfix(loss=f"{loss_v:.4f}", psnr=f"{psnr_v:.1f}")
            if checkpoint is not None and (step + 1) % checkpoint_every == 0:
                save_checkpoint(checkpoint, field, opt, si, step + 1, {"stage_name": cfg.name})
        bar.close()
        stats[cfg.name] = {"steps": cfg.steps, "loss": loss_v, "psnr_batch": psnr_v,
                           "seconds": time.perf_counter() - t0, "config": asdict(cfg)}
        if checkpoint is not None:
            save_checkpoint(checkpoint, field, opt, si + 1, 0, {"stage_name": cfg.name})
        state, start_step = None, 0
    return stats


def render_image(field: HeadField, camera, cfg: StageConfig | None = None, background=(0.0, 0.0, 0.0),
                 chunk: int = 4096) -> dict:
    """Render a full view with :func:`render_rays` in chunks of ``chunk`` rays (bounded memory),
    without jitter. Returns ``rgb (H, W, 3)`` in [0, 1], ``opacity (H, W)`` and ``depth (H, W)``
    (metres along the ray, 0 where empty) as float32 numpy arrays."""
    cfg = cfg or StageConfig()
    o, d = (torch.as_tensor(a, dtype=torch.float32) for a in rays_from_camera(camera))
    bg = torch.as_tensor(background, dtype=torch.float32)
    parts = []
    with torch.no_grad():
        for s in range(0, len(o), chunk):
            parts.append(render_rays(field, o[s:s + chunk], d[s:s + chunk], cfg, bg, perturb=False))
    H, W = camera.height, camera.width
    return {"rgb": torch.cat([p[0] for p in parts]).reshape(H, W, 3).numpy(),
            "opacity": torch.cat([p[1] for p in parts]).reshape(H, W).numpy(),
            "depth": torch.cat([p[2] for p in parts]).reshape(H, W).numpy()}
