"""The parametric head field: the 3DMM surface as SDF prior plus a learned residual in canonical space.

.. math::
    f(x) = \\mathrm{sdf}_{model}(x; α, η) + Δ_θ(x_c), \\qquad
    x_c = \\sum_i b_i\\, \\bar v_{f,i} + \\mathrm{sdf}_{model}(x)\\, \\bar n(b)

where the closest point of ``x`` on the posed model mesh lies in triangle ``f`` with barycentrics
``b``; ``x_c`` is the same surface position on the mean (template) mesh ``\\bar v`` pushed out along
the template normal by the same signed distance. Δθ is a hash-grid MLP whose output layer starts
at zero, so the untrained field *is* the 3DMM head (the template of the two-stage
reconstruction), and detail learned on one identity moves with the surface when α or η change.

With ``prior=False`` the same class is a plain VolSDF field (``f = SDFNetwork(x)``).

Training speed comes from :meth:`HeadField.cache_prior` (the model SDF on a grid). With
``code_components = k`` the cache also holds the first-order sensitivity of the SDF to the first
``k`` identity components, ``∂sdf/∂α_j = −n(p)·∂p/∂α_j`` (``p`` the closest surface point, ``n``
its normal), so α can be optimised jointly with the residual through the cache
(``sdf(x; α) ≈ sdf(x; α₀) − B(x)(α − α₀)``); :meth:`HeadField.recache` re-centres the cache at
the current α (exact again).

Frames: points in the model frame (metres, +Y up, face toward +Z); codes α ``(K,)``, η ``(E,)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from headveil.geometry.morphable.model import MorphableModel
from headveil.neural_fields.encodings import HashGridConfig, HashGridEncoding
from headveil.geometry.normals import vertex_normals
from headveil.neural_fields.mesh_sdf import capped, face_neighbours, mesh_sdf, vertex_faces
from headveil.neural_fields.sdf import ColorNetwork, ColorNetworkConfig, LaplaceDensity, SDFNetwork, SDFNetworkConfig


class FieldSample(NamedTuple):
    """What the field returns at ``N`` points: ``sdf (N,)`` metres, ``features (N, F)``, and the
    residual ``(N,)`` metres on top of the 3DMM (None for a plain field)."""

    sdf: torch.Tensor
    features: torch.Tensor
    residual: torch.Tensor | None


@dataclass
class HeadFieldConfig:
    prior: bool = True
    """Use the 3DMM surface as the SDF prior (else a plain VolSDF field)."""
    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(log2_table_size=15, n_levels=12))
    hidden: int = 64
    feature_dim: int = 15
    prior_parts: tuple[str, ...] = ("skin",)
    """Sub-meshes whose surface defines the prior SDF (the eyes, lashes, teeth and tongue sit inside
    the skin and would add internal zero crossings)."""
    candidates: int = 16
    """Candidate triangles per point in the closest-point query."""
    residual_scale: float = 0.02
    """Metres per unit of the residual output (the residual starts at exactly 0)."""
    beta_init: float = 0.005
    """Initial VolSDF β (metres)."""
    color: ColorNetworkConfig = field(default_factory=ColorNetworkConfig)


class _Residual(nn.Module):
    """Δθ: hash grid + MLP on canonical points → (residual SDF (N,), features (N, D)); starts at 0."""

    def __init__(self, cfg: HeadFieldConfig):
        super().__init__()
        self.encoding = HashGridEncoding(cfg.encoding)
        self.mlp = nn.Sequential(nn.Linear(3 + self.encoding.out_dim, cfg.hidden), nn.Softplus(beta=100),
                                 nn.Linear(cfg.hidden, 1 + cfg.feature_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.scale = cfg.residual_scale

    def forward(self, x_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp(torch.cat([x_c / 0.2, self.encoding(x_c)], -1))
        return h[:, 0] * self.scale, h[:, 1:]


class HeadField(nn.Module):
    """SDF + colour field of a head; see the module docstring.

    Args:
        model: the morphable model (required when ``config.prior``).
        config: field settings.
        alpha, eta: initial codes (zeros by default); :meth:`set_codes` changes them.
    """

    def __init__(self, model: MorphableModel | None = None, config: HeadFieldConfig | None = None,
                 alpha=None, eta=None):
        super().__init__()
        self.config = cfg = config or HeadFieldConfig()
        if cfg.prior:
            if model is None:
                raise ValueError("HeadField(prior=True) needs the morphable model")
            self.model = model
            faces = model.faces[model.face_part_mask(*cfg.prior_parts)] if cfg.prior_parts else model.faces
            if len(faces) == 0:
                raise ValueError(f"prior_parts {cfg.prior_parts} select no triangles; parts: {model.part_names}")
            # close the neck, eye and mouth openings so the normal-based sign is reliable everywhere
            faces, self._loops = capped(faces, model.n_vertices)
            self._neighbours = face_neighbours(faces)  # fixed topology: computed once
            self._rings = vertex_faces(faces, model.n_vertices + len(self._loops))
            self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long), persistent=False)
            self.register_buffer("template", self._with_caps(torch.as_tensor(model.vertices_mean, dtype=torch.float32)),
                                 persistent=False)
            self.register_buffer("template_normals", vertex_normals(self.template, self.faces), persistent=False)
            self.alpha = nn.Parameter(torch.zeros(model.n_id), requires_grad=False)
            self.eta = nn.Parameter(torch.zeros(model.n_expr), requires_grad=False)
            self.set_codes(alpha, eta)
            self.residual = _Residual(cfg)
        else:
            self.model = None
            self.net = SDFNetwork(SDFNetworkConfig(hidden=cfg.hidden, feature_dim=cfg.feature_dim),
                                  HashGridEncoding(cfg.encoding))
        self.color = ColorNetwork(cfg.feature_dim, cfg.color)
        self.density = LaplaceDensity(cfg.beta_init)
        self._posed = None
        self._prior_grid = None  # (1, 7 + k, R, R, R): model SDF, canonical points and normals, sensitivities
        self._prior_box = None
        self._cache_alpha = None  # α at which the cache was computed (k,)
        self._cache_band = None  # metres: the exact band of the cache (None: exact everywhere)
        self._grids_of, self._grids_cache = None, None  # channel subsets of _prior_grid (see _grids)

    # -- codes ---------------------------------------------------------------------------------
    def set_codes(self, alpha=None, eta=None, trainable: bool = False) -> None:
        """Set α ``(K,)`` / η ``(E,)`` (shorter codes are zero-padded); ``trainable`` lets the
        training loop optimise them."""
        if not self.config.prior:
            raise ValueError("set_codes needs a field with the 3DMM prior (HeadFieldConfig.prior=True)")
        for name, value, n in (("alpha", alpha, self.model.n_id), ("eta", eta, self.model.n_expr)):
            p = getattr(self, name)
            with torch.no_grad():
                p.zero_()
                if value is not None:
                    v = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
                    if v.numel() > n or not torch.isfinite(v).all():
                        raise ValueError(f"{name} must be a finite vector of at most {n} values; got {tuple(v.shape)}")
                    p[: v.numel()] = v
            p.requires_grad_(trainable)
        self._posed = None
        self._prior_grid = None  # the cached prior belongs to the previous codes

    def _with_caps(self, v: torch.Tensor) -> torch.Tensor:
        """Append the cap centres (mean of each border loop) to model vertices ``(V, 3)``."""
        if not self._loops:
            return v
        return torch.cat([v, torch.stack([v[torch.as_tensor(lp)].mean(0) for lp in self._loops])], 0)

    def posed_vertices(self) -> torch.Tensor:
        """``(V + caps, 3)`` model vertices for the current codes (differentiable in them), followed
        by the centres of the caps that close the skin's openings."""
        if self._posed is None or self.alpha.requires_grad or self.eta.requires_grad:
            v = self._with_caps(self.model.vertices_torch(self.alpha[None], self.eta[None])[0])
            if self.alpha.requires_grad or self.eta.requires_grad:
                return v
            self._posed = v.detach()
        return self._posed

    # -- field ---------------------------------------------------------------------------------
    def cache_prior(self, resolution: int = 96, half_extent: float = 0.22, chunk: int = 32768,
                    code_components: int = 0, progress: bool = False, band: float | None = None) -> None:
        """Precompute the model SDF and canonical points on a ``resolution³`` grid over the cube
        ``±half_extent`` metres; :meth:`model_sdf` then interpolates trilinearly (fast training).

        With ``code_components = k > 0`` the grid also holds ``∂sdf/∂α_j`` for ``j < k`` and α
        becomes trainable: the cached SDF follows α to first order (see the module docstring).
        Without it the cache has no gradient to the codes. :meth:`set_codes` clears the cache.

        ``band`` (metres; None = everywhere): the exact SDF only where the samplers need it. A
        coarse grid (a quarter of the resolution) is computed exactly and interpolated to the full
        one; grid points whose coarse value lies within ``band`` plus both grids' cell diagonals of
        the surface are then computed exactly. Since the SDF is 1-Lipschitz, that covers every point
        within ``band`` of the surface and the corners of every cell such a point lies in, so
        :meth:`model_sdf` there is the same as with ``band=None``; farther out it is the coarse
        interpolation (within a coarse cell diagonal of the exact distance)."""
        k = int(code_components)
        if not 0 <= k <= self.model.n_id:
            raise ValueError(f"code_components must be in [0, {self.model.n_id}]; got {k}")
        if band is not None and not band > 0:
            raise ValueError(f"band must be > 0 metres or None; got {band}")
        self._prior_grid = None

        def exact(pts, desc):
            from tqdm import tqdm

            vals = []
            with torch.no_grad():
                for s in tqdm(range(0, len(pts), chunk), desc=desc, unit="chunk", disable=not progress, leave=False):
                    base, x_c, n_c, sens = self._exact_prior(pts[s:s + chunk], k)
                    vals.append(torch.cat([base[:, None], x_c, n_c] + ([sens] if k else []), 1))
            return torch.cat(vals) if vals else torch.zeros(0, 7 + k)

        def lattice(n):
            axis = torch.linspace(-half_extent, half_extent, n)
            zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")  # grid_sample order: D=z, H=y, W=x
            return torch.stack([xx, yy, zz], -1).reshape(-1, 3)

        pts = lattice(resolution)
        if band is None:
            grid = exact(pts, f"3DMM prior {resolution}³").reshape(resolution, resolution, resolution, 7 + k)
        else:
            import torch.nn.functional as F

            rc = max(resolution // 4, 8)  # coarse grid side
            coarse = exact(lattice(rc), f"3DMM prior {rc}³ (coarse)").reshape(rc, rc, rc, 7 + k)
            grid = F.interpolate(coarse.permute(3, 0, 1, 2)[None], size=(resolution,) * 3, mode="trilinear",
                                 align_corners=True)[0].permute(1, 2, 3, 0).reshape(-1, 7 + k).contiguous()
            diag = 3 ** 0.5 * 2 * half_extent * (1 / (rc - 1) + 1 / (resolution - 1))
            near = grid[:, 0].abs() < band + diag
            grid[near] = exact(pts[near], f"3DMM prior {resolution}³ band")
            grid = grid.reshape(resolution, resolution, resolution, 7 + k)
        self._prior_grid, self._prior_box = grid.permute(3, 0, 1, 2)[None].contiguous(), half_extent
        self._cache_alpha = self.alpha.detach()[:k].clone()
        self._cache_args = (resolution, half_extent, chunk)
        self._cache_band = band
        if k:
            self.alpha.requires_grad_(True)

    def prior_cache_key(self, resolution: int = 96, half_extent: float = 0.22, code_components: int = 0,
                        band: float | None = None) -> str:
        """A hex digest naming the cache :meth:`cache_prior` would build: the model's geometry and
        topology, the codes, the grid, the code components and the exact band."""
        import hashlib

        h = hashlib.sha256(b"headveil/prior-cache/v1")
        for arr in (self.model.vertices_mean, self.model.faces, self.model.shape_basis[:8], self.alpha.detach(),
                    self.eta.detach()):
            h.update(np.ascontiguousarray(arr.numpy() if isinstance(arr, torch.Tensor) else arr).tobytes())
        h.update(f"{resolution}/{half_extent}/{int(code_components)}".encode())
        if band is not None:
            h.update(f"/band{float(band)}".encode())
        return h.hexdigest()

    def prior_cache_state(self) -> dict:
        """The cached prior as tensors and plain values (for :func:`torch.save`; loads with
        ``weights_only=True``)."""
        if self._prior_grid is None:
            raise ValueError("no cached prior (call cache_prior first)")
        res, half, chunk = self._cache_args
        band = self._cache_band
        return {"grid": self._prior_grid, "box": float(self._prior_box), "alpha": self._cache_alpha,
                "args": [int(res), float(half), int(chunk)], "band": band,
                "key": self.prior_cache_key(res, half, self._prior_grid.shape[1] - 7, band)}

    def load_prior_cache(self, state: dict, band: float | None = None) -> bool:
        """Restore a cache saved by :meth:`prior_cache_state` if it belongs to this model and these
        codes (its key matches) and was built for ``band`` (:meth:`cache_prior`); returns whether
        it was used."""
        res, half, chunk = state["args"]
        k = int(state["grid"].shape[1]) - 7
        saved_band = state.get("band")
        if saved_band != band or state.get("key") != self.prior_cache_key(res, half, k, saved_band):
            return False
        self._prior_grid, self._prior_box = state["grid"].contiguous(), float(state["box"])
        self._cache_alpha, self._cache_args = state["alpha"], (int(res), float(half), int(chunk))
        self._cache_band = saved_band
        if k:
            self.alpha.requires_grad_(True)
        return True

    def recache(self) -> None:
        """Recompute the cache at the current codes (keeps resolution and code components)."""
        if self._prior_grid is None:
            raise ValueError("recache needs a cached prior (call cache_prior first)")
        k = self._prior_grid.shape[1] - 7
        self._posed = None
        self.cache_prior(*self._cache_args, code_components=k, band=self._cache_band)

    @property
    def code_components(self) -> int:
        """Identity components trainable through the cache (0 without sensitivities)."""
        return 0 if self._prior_grid is None else self._prior_grid.shape[1] - 7

    def _exact_prior(self, x: torch.Tensor, k: int = 0, detach: bool = True):
        """Exact model SDF ``(N,)``, canonical points and normals ``(N, 3)`` and, for ``k > 0``,
        ``∂sdf/∂α_{<k}`` ``(N, k)`` at the current codes (``detach``: no grad to the codes)."""
        verts = self.posed_vertices()
        verts = verts.detach() if detach else verts
        base, cp = mesh_sdf(x, verts, self.faces, k=self.config.candidates, neighbours=self._neighbours,
                            rings=self._rings)
        f = self.faces[cp.face]
        q_c = (cp.bary[..., None] * self.template[f]).sum(1)
        n_c = (cp.bary[..., None] * self.template_normals[f]).sum(1)
        n_c = n_c / n_c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sens = None
        if k:
            if getattr(self, "_basis", None) is None or self._basis.shape[1] < k:
                basis = torch.as_tensor(self.model.shape_basis[:k], dtype=torch.float32)  # (k, V, 3)
                self._basis = self._with_caps(basis.permute(1, 0, 2).reshape(self.model.n_vertices, -1)).reshape(-1, k, 3)
            # ∇sdf = sign(sdf)·(x − p)/|x − p| off the surface (exact, independent of the winding);
            # on it (|x − p| ≈ 0) the interpolated vertex normal, oriented by the mesh pseudonormal sign
            off = x - cp.points
            dist = off.norm(dim=-1, keepdim=True)
            vn = vertex_normals(verts, self.faces)
            n_s = (cp.bary[..., None] * vn[f]).sum(1)
            n_s = n_s / n_s.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            n = torch.where(dist > 1e-6, off / dist.clamp_min(1e-12) * torch.sign(base)[:, None], n_s)
            dp = (cp.bary[..., None, None] * self._basis[:, :k][f]).sum(1)  # (N, k, 3)
            sens = -(dp * n[:, None, :]).sum(-1)
        return base, q_c + base[:, None] * n_c, n_c, sens

    def _grids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cache's channels that :meth:`model_sdf` reads (SDF and canonical points; all of them
        with code sensitivities) and the SDF channel alone (:meth:`model_distance`), contiguous."""
        if self._grids_of is not self._prior_grid:
            g = self._prior_grid
            self._grids_cache = (g if g.shape[1] > 7 else g[:, :4].contiguous(), g[:, :1].contiguous())
            self._grids_of = g
        return self._grids_cache

    def model_distance(self, x: torch.Tensor) -> torch.Tensor:
        """The model SDF ``(N,)`` (metres) alone at ``x (N, 3)`` (metres, model frame), e.g. to find
        where rays cross the prior surface: one channel of the cache instead of all, no gradient to
        the codes."""
        if self._prior_grid is None:
            return self._exact_prior(x)[0]
        import torch.nn.functional as F

        g = (x / self._prior_box).reshape(1, -1, 1, 1, 3)
        base = F.grid_sample(self._grids()[1], g, mode="bilinear", padding_mode="border", align_corners=True).reshape(-1)
        k = self._prior_grid.shape[1] - 7
        if k:
            v = F.grid_sample(self._prior_grid[:, 7:], g, mode="bilinear", padding_mode="border", align_corners=True)
            base = base + v.reshape(k, -1).T @ (self.alpha[:k] - self._cache_alpha).detach()
        return base

    def model_sdf(self, x: torch.Tensor):
        """SDF of the model surface alone and the canonical points ``x_c (N, 3)``."""
        if self._prior_grid is not None:
            import torch.nn.functional as F

            grid = self._grids()[0]
            g = (x / self._prior_box).reshape(1, -1, 1, 1, 3)
            v = F.grid_sample(grid, g, mode="bilinear", padding_mode="border", align_corners=True)
            v = v.reshape(grid.shape[1], -1).T
            base, x_c = v[:, 0], v[:, 1:4]
            k = self._prior_grid.shape[1] - 7
            if k:
                d_alpha = self.alpha[:k] - self._cache_alpha
                shift = v[:, 7:] @ d_alpha  # first-order change of the model SDF (v[:, 7:] = ∂sdf/∂α)
                base = base + shift
                x_c = x_c + shift[:, None] * v[:, 4:7]
            return base, x_c
        base, x_c, _, _ = self._exact_prior(x, 0, detach=False)
        return base, x_c

    def query(self, x: torch.Tensor) -> FieldSample:
        """``x (N, 3)`` metres (world frame) → :class:`FieldSample`: the SDF, the colour features and,
        with the prior, the learned residual Δ (what a residual penalty acts on)."""
        if not self.config.prior:
            sdf, feats = self.net(x)
            return FieldSample(sdf, feats, None)
        base, x_c = self.model_sdf(x)
        delta, feats = self.residual(x_c)
        return FieldSample(base + delta, feats, delta)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, 3)`` metres → ``(sdf (N,) metres, features (N, feature_dim))`` (see :meth:`query`)."""
        q = self.query(x)
        return q.sdf, q.features

    @property
    def has_prior_cache(self) -> bool:
        """Whether the 3DMM prior is cached on a grid (prior-guided sampling uses it)."""
        return self._prior_grid is not None

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def backend(self) -> str:
        """The resolved hash-grid backend (for manifests and checkpoints)."""
        enc = self.residual.encoding if self.config.prior else self.net.encoding
        return enc.backend
