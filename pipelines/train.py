"""The one training loop for head fields: stages are configs, not copies of the loop.

A stage picks the views it may use (all, privacy-neutral only, protected only) and lists its loss
terms (:mod:`headveil.render.losses`: the two-stage paper's eq. 9, L = λ1 L_rgb + λ2 L_eik +
λ3 L_lip + λ4 L_grad, plus mask, residual and code-prior terms). Each step the loop renders what
the terms need — random rays of the stage's RGB views, 16² patches of its gradient views — and sums
the terms in their listed order.

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
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from typing import Literal
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from headveil.common.errors import HeadVeilError, SettingsError
from headveil.neural_fields.head_field import HeadField
from headveil.pipelines.capture import Capture
from headveil.render.protect import ProtectConfig
from headveil.render.rays import rays_from_camera
from headveil.render.field import FieldRenderConfig, render_rays
from headveil.render.losses import (
    CodePrior,
    EikonalLoss,
    LossContext,
    LossTerm,
    MaskLoss,
    ResidualPenalty,
    RGBLoss,
    total_loss,
)


class TrainingDivergedError(HeadVeilError, RuntimeError):
    """The loss became NaN or infinite."""


def default_losses() -> tuple[LossTerm, ...]:
    """RGB + mask + eikonal + residual penalty + code prior: a single RGB stage."""
    return (RGBLoss(1.0), MaskLoss(0.1), EikonalLoss(0.05), ResidualPenalty(0.01), CodePrior(1e-3))


@dataclass
class StageConfig(FieldRenderConfig):
    """One training stage: the views it may see, its loss terms, its batch sizes and learning rates,
    and how its rays are rendered (the :class:`~headveil.render.field.FieldRenderConfig` fields)."""

    name: str = "rgb"
    steps: int = 800
    views: Literal["all", "neutral", "protected"] = "all"
    """Which views this stage may see: all, neutral or protected."""
    losses: tuple[LossTerm, ...] = dataclass_field(default_factory=default_losses)
    """The stage's objective, summed in this order (see headveil.render.losses)."""
    rays: int = 512
    """Random rays per step for the RGB terms."""
    patches: int = 4
    """Patches per step for the gradient term."""
    patch_size: int = 16
    """Side (px) of a rendered patch; the loss sees its interior (side − 2·operator margin)."""
    lr: float = 2e-3
    """Adam learning rate of the geometry (SDF hash grid and MLP); decays ×0.1 over the stage."""
    lr_networks: float = 5e-3
    """Adam learning rate of the colour network and the density β; same decay."""
    lr_codes: float = 2e-2
    """Adam learning rate of trainable 3DMM codes (α ~ N(0, I) units); same decay."""

    def __post_init__(self):
        super().__post_init__()
        if self.views not in ("all", "neutral", "protected"):
            raise SettingsError(f"stage {self.name}: views must be all, neutral or protected; got {self.views!r}")
        if not self.losses or not all(isinstance(t, LossTerm) for t in self.losses):
            raise SettingsError(f"stage {self.name}: losses must be a non-empty tuple of loss terms")
        if not any(t.needs for t in self.losses):
            raise SettingsError(f"stage {self.name}: no image loss (RGBLoss or GradientLoss) among its terms")
        for n in ("steps", "rays", "patches", "patch_size"):
            if getattr(self, n) < 1:
                raise SettingsError(f"stage {self.name}: {n} must be ≥ 1; got {getattr(self, n)}")

    @property
    def uses_rgb(self) -> bool:
        return any(t.needs == "rgb" for t in self.losses)

    @property
    def uses_grad(self) -> bool:
        return any(t.needs == "grad" for t in self.losses)

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "losses"}
        return {**d, "losses": [t.to_json() for t in self.losses]}


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
    stats = json.loads(state.get("stats_json", "{}")) if state is not None else {}  # earlier stages' stats
    for si, cfg in enumerate(stages):
        if si < start_stage:
            continue
        use_rgb, use_grad = cfg.uses_rgb, cfg.uses_grad
        o = d = rgb = mask = patches = None
        op = ProtectConfig.from_json(capture.protect or {})
        if use_rgb:
            o, d, rgb, mask = rays_of(capture, cfg.views)
        if use_grad:
            patches = GradientPatches(capture, cfg.views, cfg.patch_size, op.margin)
        opt = torch.optim.Adam(_param_groups(field, cfg), betas=(0.9, 0.99), eps=1e-15)
        params = [p for g in opt.param_groups for p in g["params"]]  # trainable ones (_param_groups)
        first = start_step if si == start_stage else 0
        if state is not None and si == start_stage and first > 0:
            opt.load_state_dict(state["optimizer"])
        t0 = time.perf_counter()
        bar = tqdm(range(first, cfg.steps), desc=f"stage {cfg.name}", unit="step", disable=not progress)
        loss_v = psnr_v = grad_v = float("nan")
        for step in bar:
            for g, base in zip(opt.param_groups, (cfg.lr, cfg.lr_networks, cfg.lr_codes)):
                g["lr"] = base * 0.1 ** (step / cfg.steps)  # exponential decay ×0.1 over the stage
            ctx = LossContext(patch_size=cfg.patch_size, operator=op.operator, blur=op.blur,
                              bound_radius=cfg.bound_radius, generator=gen)
            if use_rgb:
                idx = torch.randint(0, len(o), (cfg.rays,), generator=gen)
                ctx.rgb = render_rays(field, o[idx], d[idx], cfg, bg, gen)
                if not (torch.isfinite(ctx.rgb.rgb).all() and torch.isfinite(ctx.rgb.opacity).all()):
                    raise TrainingDivergedError(_diverged_message(cfg.name, step, "the rendered colours", checkpoint))
                ctx.rgb_target, ctx.mask_target = rgb[idx], None if mask is None else mask[idx]
                mse = ((ctx.rgb.rgb.detach() - ctx.rgb_target) ** 2).mean().item()
                psnr_v = -10 * math.log10(max(mse, 1e-10))
            if use_grad:
                po, pd, ctx.grad_target = patches.sample(cfg.patches, gen)
                ctx.patches = render_rays(field, po, pd, cfg, bg, gen)
                if not torch.isfinite(ctx.patches.rgb).all():
                    raise TrainingDivergedError(_diverged_message(cfg.name, step, "the rendered patches", checkpoint))
            loss, parts = total_loss(cfg.losses, ctx, field)
            grad_v = parts.get("GradientLoss", grad_v)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(_diverged_message(cfg.name, step, f"the loss ({loss.item()})", checkpoint))
            opt.zero_grad(set_to_none=True)
            # only what the optimiser steps: no gradient into the sample points (their normals
            # were taken by their own pass)
            torch.autograd.backward(loss, inputs=params)
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
                           "seconds": time.perf_counter() - t0, "config": cfg.to_json()}
        if field.config.prior and getattr(field, "code_components", 0):
            field.recache()  # the cache follows α to first order only: make it exact again
        if checkpoint is not None:
            save_checkpoint(checkpoint, field, opt, si + 1, 0,
                            {"stage_name": cfg.name, "stats_json": json.dumps(stats)}, gen)
        if on_stage_end is not None:
            on_stage_end(si, cfg, field)
        state, start_step = None, 0
    return stats
