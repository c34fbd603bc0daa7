"""SDF and colour networks, VolSDF density, eikonal loss, normals.

- :class:`SDFNetwork`: ``f(x) = MLP([x, enc(x)])`` with geometric initialisation (Atzmon & Lipman:
  the untrained network is ≈ the signed distance to a sphere of radius ``init_radius``), softplus
  activations, and a geometry feature vector for the colour network.
- :class:`ColorNetwork` of :class:`LipschitzLinear` layers: each weight is renormalised so that its
  ∞-norm Lipschitz bound is ``softplus(m_i)`` (two-stage reconstruction paper eq. 7), and
  :meth:`ColorNetwork.lipschitz_loss` is ``L_lip = Π_i softplus(m_i)`` (eq. 8).
- :class:`LaplaceDensity`: VolSDF ``σ(x) = α Ψ_β(−f(x))`` with ``α = 1/β`` and Ψ the CDF of a
  zero-mean Laplace distribution with scale β (learnable, kept ≥ ``beta_min``).
- :func:`eikonal_loss`: ``mean((‖∇f‖₂ − 1)²)`` (paper eq. 4).
- Normals: analytic (autograd) with :func:`sdf_gradient`, or central differences with
  :func:`finite_difference_gradient` (needed when the encoding has no second derivative).

Points are ``(N, 3)`` float32 in metres in the field's frame; SDF values are metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SDFNetworkConfig:
    hidden: int = 64
    n_layers: int = 2
    """Hidden layers."""
    feature_dim: int = 15
    """Geometry features passed to the colour network."""
    init_radius: float = 0.1
    """Radius (metres) of the sphere the untrained network represents."""
    scale: float = 0.2
    """Metres per network unit: the MLP sees ``x / scale`` and its SDF output is multiplied by it,
    so the geometric initialisation and softplus(β = 100) work at unit scale, as in IDR."""
    softplus_beta: float = 100.0


class SDFNetwork(nn.Module):
    """``x (N, 3) → (sdf (N,), features (N, feature_dim))``.

    Args:
        config: sizes and initialisation.
        encoding: optional module ``(N, 3) → (N, E)`` with an ``out_dim`` attribute (e.g. a hash
            grid); its output is concatenated to the raw coordinates. Geometric initialisation
            zeroes the first-layer weights of the encoded part so the initial SDF is the sphere.
    """

    def __init__(self, config: SDFNetworkConfig | None = None, encoding: nn.Module | None = None):
        super().__init__()
        self.config = cfg = config or SDFNetworkConfig()
        self.encoding = encoding
        in_dim = 3 + (encoding.out_dim if encoding is not None else 0)
        dims = [in_dim] + [cfg.hidden] * cfg.n_layers + [1 + cfg.feature_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self._geometric_init(dims)

    def _geometric_init(self, dims) -> None:
        r = self.config.init_radius / self.config.scale
        for i, lin in enumerate(self.layers):
            out_dim = dims[i + 1]
            if i == len(self.layers) - 1:
                nn.init.normal_(lin.weight, mean=math.sqrt(math.pi) / math.sqrt(dims[i]), std=1e-4)
                nn.init.constant_(lin.bias, -r)
            else:
                nn.init.normal_(lin.weight, 0.0, math.sqrt(2) / math.sqrt(out_dim))
                nn.init.constant_(lin.bias, 0.0)
                if i == 0 and dims[0] > 3:
                    with torch.no_grad():
                        lin.weight[:, 3:] = 0.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xn = x / self.config.scale
        h = xn if self.encoding is None else torch.cat([xn, self.encoding(x)], -1)
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = F.softplus(h, beta=self.config.softplus_beta)
        return h[:, 0] * self.config.scale, h[:, 1:]

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` signed distance in metres."""
        return self.forward(x)[0]


class LipschitzLinear(nn.Module):
    """Linear layer with a trainable Lipschitz bound (paper eq. 7).

    The weight is rescaled row-wise so that its ∞-norm (max absolute row sum) is at most
    ``softplus(m)``: ``Ŵ = W · min(1, softplus(m) / Σ_j |W_ij|)``.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        with torch.no_grad():
            init_bound = self.linear.weight.abs().sum(1).max()
        # start at the initial weights' own bound, so the reparameterisation does not change them
        self.m = nn.Parameter(torch.log(torch.expm1(init_bound)).reshape(()))

    def bound(self) -> torch.Tensor:
        """``softplus(m)``, the layer's Lipschitz bound (∞-norm)."""
        return F.softplus(self.m)

    def weight(self) -> torch.Tensor:
        W = self.linear.weight
        scale = torch.clamp(self.bound() / W.abs().sum(1).clamp_min(1e-12), max=1.0)
        return W * scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.linear.bias)


@dataclass
class ColorNetworkConfig:
    hidden: int = 64
    n_layers: int = 2
    view_dependent: bool = True
    """Condition on the view direction (IDR-style: point, normal, view direction, geometry features)."""


class ColorNetwork(nn.Module):
    """``(x, normal, view_dir, features) → rgb (N, 3)`` in [0, 1] with Lipschitz-bounded layers."""

    def __init__(self, feature_dim: int, config: ColorNetworkConfig | None = None):
        super().__init__()
        self.config = cfg = config or ColorNetworkConfig()
        in_dim = 3 + 3 + (3 if cfg.view_dependent else 0) + feature_dim
        dims = [in_dim] + [cfg.hidden] * cfg.n_layers + [3]
        self.layers = nn.ModuleList(LipschitzLinear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x, normals, view_dirs, features) -> torch.Tensor:
        """Colour of points.

        Args:
            x: ``(N, 3)`` metres, the field's frame.
            normals: ``(N, 3)`` unit SDF gradients (same frame).
            view_dirs: ``(N, 3)`` unit ray directions (ignored unless ``view_dependent``).
            features: ``(N, feature_dim)`` geometry features of the SDF network.

        Returns:
            ``(N, 3)`` RGB in (0, 1).
        """
        parts = [x, normals] + ([view_dirs] if self.config.view_dependent else []) + [features]
        h = torch.cat(parts, -1)
        for i, lin in enumerate(self.layers):
            h = lin(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return torch.sigmoid(h)

    def lipschitz_loss(self) -> torch.Tensor:
        """``L_lip = Π_i softplus(m_i)`` (paper eq. 8), a scalar tensor."""
        return torch.stack([lin.bound() for lin in self.layers]).prod()


class LaplaceDensity(nn.Module):
    """VolSDF density ``σ = (1/β) Ψ_β(−s)`` (Yariv et al. 2021), β learnable and ≥ ``beta_min``.

    ``Ψ_β(y) = ½ exp(y/β)`` for ``y ≤ 0`` and ``1 − ½ exp(−y/β)`` for ``y > 0``; inside the surface
    (s < 0) the density tends to ``1/β``, outside it decays to 0, and at the surface it is ``1/(2β)``.
    """

    def __init__(self, beta_init: float = 0.01, beta_min: float = 1e-4):
        super().__init__()
        if not beta_init > beta_min > 0:
            raise ValueError(f"need beta_init > beta_min > 0; got {beta_init}, {beta_min}")
        self.beta_min = beta_min
        self.beta_raw = nn.Parameter(torch.tensor(math.log(beta_init - beta_min)))

    @property
    def beta(self) -> torch.Tensor:
        return self.beta_raw.exp() + self.beta_min

    def forward(self, sdf: torch.Tensor) -> torch.Tensor:
        """Density (1/metre) of SDF values (metres), same shape."""
        beta = self.beta
        y = -sdf
        psi = torch.where(y <= 0, 0.5 * torch.exp(y.clamp(max=0) / beta), 1 - 0.5 * torch.exp(-y.clamp(min=0) / beta))
        return psi / beta


def sdf_gradient(sdf_fn, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Analytic ``∇f (N, 3)`` by autograd (needs a twice-differentiable field to train through)."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        s = sdf_fn(x)
        (g,) = torch.autograd.grad(s.sum(), x, create_graph=create_graph)
    return g


def finite_difference_gradient(sdf_fn, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Central-difference ``∇f (N, 3)`` with step ``eps`` metres; differentiable in the field's
    parameters through first derivatives only (the hash-grid training path)."""
    offsets = torch.eye(3, dtype=x.dtype, device=x.device) * eps
    pts = torch.cat([x + offsets[k] for k in range(3)] + [x - offsets[k] for k in range(3)], 0)
    s = sdf_fn(pts).reshape(6, -1)
    return ((s[:3] - s[3:]) / (2 * eps)).T


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """``mean((‖∇f‖₂ − 1)²)`` over ``(N, 3)`` gradients (paper eq. 4)."""
    return ((gradients.norm(dim=-1) - 1.0) ** 2).mean()
