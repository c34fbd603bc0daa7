"""Loss terms of head-field training, as objects a stage lists (the two-stage paper's eq. 9).

    L = λ1 L_rgb + λ2 L_eik + λ3 L_lip + λ4 L_grad  (+ mask, residual and code-prior terms)

Each term is a small dataclass holding its weight (and settings) and computing its value from a
:class:`LossContext` — what the training loop rendered this step — and the field. A stage's
``losses`` tuple is its whole objective, so the presets and ablations are configurations; a new
loss is a new class, not an edit of the loop. Terms whose inputs are missing this step (no RGB
batch, no prior, codes not trainable) contribute nothing.

- :class:`RGBLoss` (eq. 2): L1 between rendered and observed colours of random rays of RGB views.
- :class:`MaskLoss`: binary cross-entropy between opacity and the views' masks (where given).
- :class:`GradientLoss` (eq. 5): L1 between ‖ĝ‖ of rendered patches (the protecting operator,
  ``valid`` padding) and the ‖g‖ a protected view holds.
- :class:`EikonalLoss` (eq. 4): ``(‖∇f‖ − 1)²`` at random points of the bounding sphere's cube.
- :class:`ResidualPenalty`: mean |Δ| at the samples, weighted per millimetre (prior fields only).
- :class:`LipschitzLoss` (eq. 8): the colour network's product of per-layer bounds.
- :class:`CodePrior`: mean(α²) of trainable identity codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from headveil.common.errors import SettingsError
from headveil.neural_fields.head_field import HeadField
from headveil.neural_fields.sdf import eikonal_loss, finite_difference_gradient
from headveil.render.field import RenderedRays
from headveil.render.protect import gradient_magnitude


@dataclass
class LossContext:
    """What the loop rendered this step (None where the stage has no such batch).

    Attributes:
        rgb: rendered RGB-view rays; ``rgb_target (R, 3)`` in [0, 1]; ``mask_target (R,)`` in
            [0, 1], −1 where a view has no mask, or None.
        patches: rendered gradient patches ``(n·S·S)`` rays; ``grad_target (n, S', S')`` ‖g‖.
        patch_size: S; ``operator`` / ``blur``: the protecting operator's settings.
        bound_radius: metres; ``generator``: the loop's random generator (eikonal points).
    """

    rgb: RenderedRays | None = None
    rgb_target: torch.Tensor | None = None
    mask_target: torch.Tensor | None = None
    patches: RenderedRays | None = None
    grad_target: torch.Tensor | None = None
    patch_size: int = 16
    operator: str = "sobel"
    blur: float = 0.0
    bound_radius: float = 0.2
    generator: torch.Generator | None = None


@dataclass
class LossTerm:
    """One weighted term: ``weight · value(ctx, field)``; ``value`` returns None when it does not apply."""

    weight: float = 1.0
    needs: ClassVar[str] = ""
    """``rgb`` or ``grad`` when the term needs that batch rendered; empty otherwise."""

    def __post_init__(self):
        if not (self.weight >= 0):
            raise SettingsError(f"{type(self).__name__}: weight must be ≥ 0; got {self.weight}")

    def value(self, ctx: LossContext, field: HeadField) -> torch.Tensor | None:
        raise NotImplementedError

    def weighted(self, value: torch.Tensor) -> torch.Tensor:
        """The term's contribution to the loss."""
        return self.weight * value

    def to_json(self) -> dict:
        from dataclasses import asdict

        return {"term": type(self).__name__, **asdict(self)}


@dataclass
class RGBLoss(LossTerm):
    needs: ClassVar[str] = "rgb"

    def value(self, ctx, field):
        return None if ctx.rgb is None else (ctx.rgb.rgb - ctx.rgb_target).abs().mean()


@dataclass
class MaskLoss(LossTerm):
    weight: float = 0.1
    needs: ClassVar[str] = "rgb"

    def value(self, ctx, field):
        if ctx.rgb is None or ctx.mask_target is None or self.weight == 0:
            return None
        has = ctx.mask_target >= 0
        if not has.any():
            return None
        return F.binary_cross_entropy(ctx.rgb.opacity[has].clamp(1e-4, 1 - 1e-4), ctx.mask_target[has])


@dataclass
class GradientLoss(LossTerm):
    needs: ClassVar[str] = "grad"

    def value(self, ctx, field):
        if ctx.patches is None:
            return None
        S = ctx.patch_size
        g_hat = gradient_magnitude(ctx.patches.rgb.reshape(-1, S, S, 3), ctx.operator, ctx.blur, padding="valid")
        return (g_hat - ctx.grad_target).abs().mean()


@dataclass
class EikonalLoss(LossTerm):
    weight: float = 0.05
    points: int = 1024
    """Random points per step, uniform in the cube around the bounding sphere."""
    eps: float = 2e-3
    """Finite-difference step (metres)."""

    def value(self, ctx, field):
        if self.weight == 0:
            return None
        p = (torch.rand(self.points, 3, generator=ctx.generator) * 2 - 1) * ctx.bound_radius
        return eikonal_loss(finite_difference_gradient(field.sdf, p, eps=self.eps))


@dataclass
class ResidualPenalty(LossTerm):
    weight: float = 0.01

    def value(self, ctx, field):
        res = [r.residual for r in (ctx.rgb, ctx.patches) if r is not None and r.residual is not None]
        if self.weight == 0 or not res or not field.config.prior:
            return None
        return torch.cat(res).abs().mean()  # metres

    def weighted(self, value):
        return self.weight * value * 1e3  # the weight is per millimetre


@dataclass
class LipschitzLoss(LossTerm):
    weight: float = 3e-10

    def value(self, ctx, field):
        return None if self.weight == 0 else field.color.lipschitz_loss()


@dataclass
class CodePrior(LossTerm):
    weight: float = 1e-3

    def value(self, ctx, field):
        if self.weight == 0 or not field.config.prior or not field.alpha.requires_grad:
            return None
        return (field.alpha ** 2).mean()


def total_loss(terms, ctx: LossContext, field: HeadField) -> tuple[torch.Tensor, dict[str, float]]:
    """``Σ weight · value`` over ``terms`` in their order, and each applied term's unweighted value."""
    loss = torch.zeros(())
    parts = {}
    for t in terms:
        v = t.value(ctx, field)
        if v is not None:
            loss = loss + t.weighted(v)
            parts[type(t).__name__] = float(v.detach())
    return loss, parts
