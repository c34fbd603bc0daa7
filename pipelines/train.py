"""The one training loop for head fields: stages are configs, not copies of the loop.

A stage picks the views it may use (all, privacy-neutral only, protected only), the image losses
and the regularisers of the two-stage paper's eq. 9:

    L = λ1 L_rgb + λ2 L_eik + λ3 L_lip + λ4 L_grad  (+ mask and residual terms)

- ``L_rgb`` (eq. 2): L1 on colours of random rays of the stage's RGB views;
- ``L_grad`` (eq. 5): L1 between ‖ĝ‖ of rendered patches (the protecting operator of
  :mod:`headveil.render.protect`, same kernel and blur, ``valid`` padding) and the ‖g‖ of the
  stage's gradient views — the only thing a protected view holds;
- ``L_eik`` (eq. 4) on finite-difference gradients at random points, ``L_lip`` (eq. 8) the
  colour network's product of per-layer bounds.

Rays are sampled in the head's bounding sphere (or in a band around the 3DMM surface), rendered
with VolSDF density and composited over the capture's background.

Deterministic for a seed on CPU; checkpoints are written atomically; a non-finite loss stops
the run with :class:`TrainingDivergedError` and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import json
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
from headveil.render.protect import ProtectConfig, gradient_magnitude
from headveil.render.rays import rays_from_camera
from headveil.render.field import FieldRenderConfig, render_rays


class TrainingDivergedError(HeadVeilError, RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class StageConfig(FieldRenderConfig):
    """One training stage: the views and losses it uses and how its rays are rendered
    (the :class:`~headveil.render.field.FieldRenderConfig` fields)."""

    name: str = "rgb"
    steps: int = 800
    views: str = "all"
    """Which views this stage may see: ``all``, ``neutral`` or ``protected``."""
    loss: str = "rgb"
    """Image losses: ``rgb`` (L1 on colours of RGB views), ``grad`` (L1 on gradient magnitudes of
    gradient views) or ``rgb+grad`` (both, each on its own views)."""
    w_rgb: float = 1.0
    """λ1 of eq. 9."""
    w_grad: float = 1.0
    """λ4 of eq. 9."""
    rays: int = 512
    """Random rays per step for the RGB loss."""
    patches: int = 4
    """Patches per step for the gradient loss."""
    patch_size: int = 16
    """Side (px) of a rendered patch; the loss sees its interior (side − 2·operator margin)."""
    lr: float = 2e-3
    """Adam learning rate of the geometry (SDF hash grid and MLP); decays ×0.1 over the stage."""
    lr_networks: float = 5e-3
    """Adam learning rate of the colour network and the density β; same decay."""
    lr_codes: float = 2e-2
    """Adam learning rate of trainable 3DMM codes (α ~ N(0, I) units); same decay."""
    w_codes: float = 1e-3
    """Weight of the code prior mean(α²) (trainable codes only)."""
    w_eikonal: float = 0.05
    eikonal_points: int = 1024
    w_lipschitz: float = 0.0
    w_mask: float = 0.1
    w_residual: float = 0.01
    """Weight of mean |Δ| in millimetres at the samples: the learned residual must earn its
    departure from the 3DMM surface (prior fields only)."""


def _check_views(views: str) -> None:
    if views not in ("all", "neutral", "protected"):
        raise ValueError(f"views must be all, neutral or protected; got {views!r}")


def rays_of(capture: Capture, views: str):
    """Rays, target colours and masks of the selected RGB views: ``(N, 3) ×2, (N, 3), (N,) | None``
    (mask −1 where a view has none)."""
    _check_views(views)
    sel = capture.views(views, "rgb")
    if not sel:
        raise HeadVeilError(f"the capture has no {views} RGB views for this stage's RGB loss")
    o, d = zip(*(rays_from_camera(capture.cameras[i]) for i in sel))
    rgb = capture.images[sel].reshape(-1, 3)
    mask = capture.masks[sel].reshape(-1) if capture.masks is not None else None
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return t(np.concatenate(o)), t(np.concatenate(d)), t(rgb), (t(mask) if mask is not None else None)


class GradientPatches:
    """Random ``S × S`` patches of a capture's gradient views: rays and the ‖g‖ targets of their
    interiors.

    Patch corners are drawn with probability 0.8 among those whose target patch holds any gradient
    (the head), else uniformly (so empty space stays empty). Rays ``(V, H, W, 3)`` are precomputed.
    """

    def __init__(self, capture: Capture, views: str, size: int, margin: int):
        _check_views(views)
        self.sel = capture.views(views, "gradient")
        if not self.sel:
            raise HeadVeilError(f"the capture has no {views} gradient views for this stage's gradient loss "
                                "(protect the face views with `headveil protect CAPTURE --out DIR`)")
        H, W = capture.gradients.shape[1:]
        if size > min(H, W) or size - 2 * margin < 2:
            raise ValueError(f"patch_size {size} must fit the {W}×{H} views and exceed 2·margin + 1 = {2 * margin + 1}")
        self.size, self.margin, self.H, self.W = size, margin, H, W
        o, d = zip(*(rays_from_camera(capture.cameras[i]) for i in self.sel))
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        self.o = t(np.stack(o)).reshape(len(self.sel), H, W, 3)
        self.d = t(np.stack(d)).reshape(len(self.sel), H, W, 3)
        self.g = t(capture.gradients[self.sel])
        busy = F.max_pool2d((self.g > 1e-3).float()[:, None], size, stride=1)[:, 0]  # (V, H−S+1, W−S+1)
        self.busy = busy.reshape(-1).nonzero()[:, 0]
        self.n_corners = busy.numel()
        self._shape = busy.shape

    def sample(self, n: int, generator=None):
        """``n`` patches: ``origins, dirs (n·S·S, 3)`` and targets ``(n, S − 2m, S − 2m)``."""
        S, m = self.size, self.margin
        pick_busy = torch.rand(n, generator=generator) < 0.8
        any_idx = torch.randint(0, self.n_corners, (n,), generator=generator)
        if len(self.busy):
            busy_idx = self.busy[torch.randint(0, len(self.busy), (n,), generator=generator)]
            any_idx = torch.where(pick_busy, busy_idx, any_idx)
        _, h1, w1 = self._shape
        v, rem = any_idx // (h1 * w1), any_idx % (h1 * w1)
        y0, x0 = rem // w1, rem % w1
        ar = torch.arange(S)
        ys = (y0[:, None] + ar)[:, :, None].expand(n, S, S)
        xs = (x0[:, None] + ar)[:, None, :].expand(n, S, S)
        vv = v[:, None, None].expand(n, S, S)
        target = self.g[vv, ys, xs][:, m:S - m, m:S - m]
        return self.o[vv, ys, xs].reshape(-1, 3), self.d[vv, ys, xs].reshape(-1, 3), target


def _param_groups(field: HeadField, cfg: StageConfig):
    """Geometry (the SDF's grid and MLP) at ``lr``; colour and density at ``lr_networks``;
    trainable codes (α, η) at ``lr_codes``."""
    geo_prefix = ("residual.", "net.")
    named = [(n, p) for n, p in field.named_parameters() if p.requires_grad]
    geo = [p for n, p in named if n.startswith(geo_prefix)]
    codes = [p for n, p in named if n in ("alpha", "eta")]
    rest = [p for n, p in named if not n.startswith(geo_prefix) and n not in ("alpha", "eta")]
    return [{"params": geo, "lr": cfg.lr}, {"params": rest, "lr": cfg.lr_networks},
            {"params": codes, "lr": cfg.lr_codes}]


def save_checkpoint(path: Path, field: HeadField, opt, stage: int, step: int, extra: dict,
                    generator: torch.Generator | None = None) -> None:
    """Write a checkpoint atomically (temp file, then rename): field, optimiser, position, both
    random states (the global one and the sampling generator's), so a resumed run continues the
    same random sequence as an uninterrupted one. Only tensors and plain values: it loads with
    ``torch.load(..., weights_only=True)``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"field": field.state_dict(), "optimizer": opt.state_dict(), "stage": stage, "step": step,
                "backend": field.backend(), "rng": torch.get_rng_state(),
                **({"generator": generator.get_state()} if generator is not None else {}), **extra}, tmp)
    os.replace(tmp, path)


def _diverged_message(stage: str, step: int, what: str, checkpoint: Path | None) -> str:
    keep = f"the last good checkpoint is {checkpoint}" if checkpoint is not None else "no checkpoint was kept"
    return f"stage {stage}: {what} became NaN or infinite at step {step}; {keep}; lower the learning rates"


def train(field: HeadField, capture: Capture, stages: list[StageConfig], seed: int = 0,
          checkpoint: Path | None = None, checkpoint_every: int = 200, resume: bool = False,
          background=(0.0, 0.0, 0.0), progress: bool = True, on_stage_end=None) -> dict:
    """Run the stages in order; returns per-stage stats (final loss, batch PSNR / gradient L1,
    seconds). ``on_stage_end(index, stage_config, field)`` is called after each stage (e.g. to
    extract that stage's mesh); on resume it is called for the stages that are run."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    start_stage, start_step, state = 0, 0, None
    if resume and checkpoint is not None and checkpoint.is_file():
        try:
            state = torch.load(checkpoint, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say so instead of a pickle traceback
            raise HeadVeilError(f"{checkpoint} is not a readable headveil checkpoint ({type(exc).__name__}); "
                                "delete it to start over") from None
        field.load_state_dict(state["field"])
        if field.config.prior and getattr(field, "code_components", 0):
            field.recache()  # the cache must sit at the restored codes
        start_stage, start_step = state["stage"], state["step"]
        torch.set_rng_state(state["rng"])
        if "generator" in state:
            gen.set_state(state["generator"])
        else:
            gen.manual_seed(seed + 7919 * (start_stage * 100003 + start_step))
    bg = torch.as_tensor(background, dtype=torch.float32)
    stats = {k: v for k, v in json.loads(state.get("stats_json", "{}")).items()} if state is not None else {}
    for si, cfg in enumerate(stages):
        if si < start_stage:
            continue
        if cfg.loss not in ("rgb", "grad", "rgb+grad"):
            raise ValueError(f"stage {cfg.name}: loss must be rgb, grad or rgb+grad; got {cfg.loss!r}")
        use_rgb, use_grad = "rgb" in cfg.loss.split("+"), "grad" in cfg.loss.split("+")
        o = d = rgb = mask = patches = None
        if use_rgb:
            o, d, rgb, mask = rays_of(capture, cfg.views)
        if use_grad:
            op = ProtectConfig.from_json(capture.protect or {})
            patches = GradientPatches(capture, cfg.views, cfg.patch_size, op.margin)
        opt = torch.optim.Adam(_param_groups(field, cfg), betas=(0.9, 0.99), eps=1e-15)
        first = start_step if si == start_stage else 0
        if state is not None and si == start_stage and first > 0:
            opt.load_state_dict(state["optimizer"])
        t0 = time.perf_counter()
        bar = tqdm(range(first, cfg.steps), desc=f"stage {cfg.name}", unit="step", disable=not progress)
        loss_v = psnr_v = grad_v = float("nan")
        for step in bar:
            for g, base in zip(opt.param_groups, (cfg.lr, cfg.lr_networks, cfg.lr_codes)):
                g["lr"] = base * 0.1 ** (step / cfg.steps)  # exponential decay ×0.1 over the stage
            loss = torch.zeros(())
            residuals = []
            if use_rgb:
                idx = torch.randint(0, len(o), (cfg.rays,), generator=gen)
                pred, opacity, _ = render_rays(field, o[idx], d[idx], cfg, bg, gen)
                residuals.append(getattr(field, "last_residual", None))
                if not (torch.isfinite(pred).all() and torch.isfinite(opacity).all()):
                    raise TrainingDivergedError(_diverged_message(cfg.name, step, "the rendered colours", checkpoint))
                loss = loss + cfg.w_rgb * (pred - rgb[idx]).abs().mean()
                if mask is not None and cfg.w_mask > 0:
                    mi = mask[idx]
                    has = mi >= 0
                    if has.any():
                        bce = F.binary_cross_entropy(opacity[has].clamp(1e-4, 1 - 1e-4), mi[has])
                        loss = loss + cfg.w_mask * bce
                mse = ((pred.detach() - rgb[idx]) ** 2).mean().item()
                psnr_v = -10 * math.log10(max(mse, 1e-10))
            if use_grad:
                po, pd, target = patches.sample(cfg.patches, gen)
                pc, _, _ = render_rays(field, po, pd, cfg, bg, gen)
                residuals.append(getattr(field, "last_residual", None))
                if not torch.isfinite(pc).all():
                    raise TrainingDivergedError(_diverged_message(cfg.name, step, "the rendered patches", checkpoint))
                S = cfg.patch_size
                g_hat = gradient_magnitude(pc.reshape(-1, S, S, 3), op.operator, op.blur, padding="valid")
                loss_grad = (g_hat - target).abs().mean()
                loss = loss + cfg.w_grad * loss_grad
                grad_v = loss_grad.item()
            if cfg.w_eikonal > 0:
                p = (torch.rand(cfg.eikonal_points, 3, generator=gen) * 2 - 1) * cfg.bound_radius
                loss = loss + cfg.w_eikonal * eikonal_loss(finite_difference_gradient(field.sdf, p, eps=2e-3))
            residuals = [r for r in residuals if r is not None] if field.config.prior else []
            if cfg.w_residual > 0 and residuals:
                loss = loss + cfg.w_residual * torch.cat(residuals).abs().mean() * 1e3
            if cfg.w_lipschitz > 0:
                loss = loss + cfg.w_lipschitz * field.color.lipschitz_loss()
            if field.config.prior and field.alpha.requires_grad and cfg.w_codes > 0:
                loss = loss + cfg.w_codes * (field.alpha ** 2).mean()
            if not torch.isfinite(loss):
                raise TrainingDivergedError(_diverged_message(cfg.name, step, f"the loss ({loss.item()})", checkpoint))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = loss.item()
            post = {"loss": f"{loss_v:.4f}"}
            if use_rgb:
                post["psnr"] = f"{psnr_v:.1f}"
            if use_grad:
                post["grad"] = f"{grad_v:.4f}"
            bar.set_postfix(post)
            if checkpoint is not None and (step + 1) % checkpoint_every == 0:
                save_checkpoint(checkpoint, field, opt, si, step + 1,
                                {"stage_name": cfg.name, "stats_json": json.dumps(stats)}, gen)
        bar.close()
        stats[cfg.name] = {"steps": cfg.steps, "loss": loss_v, "psnr_batch": psnr_v if use_rgb else None,
                           "grad_l1_batch": grad_v if use_grad else None,
                           "seconds": time.perf_counter() - t0, "config": asdict(cfg)}
        if field.config.prior and getattr(field, "code_components", 0):
            field.recache()  # the cache follows α to first order only: make it exact again
        if checkpoint is not None:
            save_checkpoint(checkpoint, field, opt, si + 1, 0,
                            {"stage_name": cfg.name, "stats_json": json.dumps(stats)}, gen)
        if on_stage_end is not None:
            on_stage_end(si, cfg, field)
        state, start_step = None, 0
    return stats
