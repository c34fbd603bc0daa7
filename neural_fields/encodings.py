"""Input encodings: multiresolution hash grid (Instant-NGP) and sinusoidal frequencies.

``HashGridEncoding`` has two backends behind one module:

- ``torch``: pure PyTorch, the default, the CPU path and the test oracle. Each level is computed
  by a custom autograd function that gathers the 8 cell corners and, in backward, scatters the
  gradient into the table with ``index_add_`` (no dense table-sized intermediates per corner).
  Gradients flow to the table and, first order, to the input points (analytic trilinear
  derivative); second derivatives through the grid are not supported — use finite-difference
  normals for the eikonal loss (:func:`headveil.neural_fields.sdf.finite_difference_gradient`).
- ``tcnn``: tiny-cuda-nn's fused ``HashGrid``, imported lazily, CUDA only.

``backend="auto"`` resolves to ``tcnn`` only when CUDA and tinycudann are present; the resolved
name is in ``encoding.backend`` and goes into manifests and checkpoints. An explicit backend that
cannot run raises :class:`~headveil.common.errors.BackendUnavailableError`.

Level ``l`` has resolution ``N_l = floor(base_resolution · per_level_scale^l)`` cells per side;
levels whose ``(N_l + 1)^3`` vertices fit in the table are dense (no hashing), the others use the
spatial hash ``(x · 1 ⊕ y · 2654435761 ⊕ z · 805459861) mod T`` (Müller et al. 2022).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from headveil.common.errors import BackendUnavailableError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "tcnn")
_PRIMES = (1, 2654435761, 805459861)


def has_tcnn() -> bool:
    """tiny-cuda-nn importable and a CUDA device present (does not import it)."""
    return importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()


def available_backends() -> list[str]:
    """Hash-grid backends that run here."""
    return ["torch"] + (["tcnn"] if has_tcnn() else [])


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` → ``tcnn`` where it runs, else ``torch``; explicit names are checked."""
    if backend == "auto":
        return "tcnn" if has_tcnn() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown hash-grid backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")
    if backend == "tcnn" and not has_tcnn():
        raise BackendUnavailableError("hash-grid backend 'tcnn' needs CUDA and the tinycudann package "
                                      f"(available here: {', '.join(available_backends())})")
    return backend


@dataclass
class HashGridConfig:
    """Settings of :class:`HashGridEncoding` (defaults sized for a head on a CPU)."""

    n_levels: int = 16
    n_features: int = 2
    """Features per level."""
    log2_table_size: int = 17
    base_resolution: int = 16
    per_level_scale: float = 1.38
    """Resolution growth between levels (16 levels from 16 reach ≈ 2000 cells per side)."""
    bbox: tuple[float, float, float, float, float, float] = (-0.15, -0.15, -0.15, 0.15, 0.15, 0.15)
    """Input box ``x0, y0, z0, x1, y1, z1`` (metres for head fields); points outside are clamped."""
    init_scale: float = 1e-4
    """Table entries start uniform in ±this."""
    backend: str = "auto"
    compile: bool = False
    """torch backend: run the autograd-native kernel (:func:`hash_encode_reference`) through
    ``torch.compile``: faster training steps on CPU (BENCHMARKS.md) after a one-off compile of up
    to a minute; supports derivatives of any order."""


def level_indices(pos: torch.Tensor, res: int, size: int, dense: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner table rows and in-cell position of points of one level.

    Args:
        pos: ``(N, 3)`` points in level units (``[0, res]`` per axis).
        res: cells per side; size: table rows of the level; dense: index without hashing.

    Returns:
        ``idx (N, 8) int64`` table rows of the 8 cell corners, corner ``c = 4 b_x + 2 b_y + b_z``
        (``b_k`` = 1 for the upper corner along axis k); ``frac (N, 3)`` in [0, 1].
    """
    i0 = pos.floor().clamp_(0, res - 1)
    frac = pos - i0
    i0 = i0.long()
    mult = (1, res + 1, (res + 1) ** 2) if dense else _PRIMES
    ax = [torch.stack([i0[:, k] * mult[k], (i0[:, k] + 1) * mult[k]], 1) for k in range(3)]  # 3 × (N, 2)
    x, y, z = ax[0][:, :, None, None], ax[1][:, None, :, None], ax[2][:, None, None, :]
    if dense:
        return (x + y + z).reshape(-1, 8), frac
    h = (x ^ y ^ z).reshape(-1, 8)
    return (h & (size - 1) if size & (size - 1) == 0 else h % size), frac


def _axis_weights(frac: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - frac, frac], -1)  # (N, 3, 2)


def trilinear_weights(frac: torch.Tensor) -> torch.Tensor:
    """``(N, 8)`` trilinear weights of the corners, ordered as in :func:`level_indices`."""
    w = _axis_weights(frac)
    return (w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]).reshape(-1, 8)


def trilinear_weight_gradients(frac: torch.Tensor) -> torch.Tensor:
    """``(N, 8, 3)``: derivative of each corner weight along each axis of ``frac``."""
    w = _axis_weights(frac)
    d = torch.tensor([-1.0, 1.0], dtype=frac.dtype, device=frac.device).expand_as(w[:, 0])
    gx = d[:, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]
    gy = w[:, 0, :, None, None] * d[:, None, :, None] * w[:, 2, None, None, :]
    gz = w[:, 0, :, None, None] * w[:, 1, None, :, None] * d[:, None, None, :]
    return torch.stack([gx.reshape(-1, 8), gy.reshape(-1, 8), gz.reshape(-1, 8)], -1)


class _LevelLookup(torch.autograd.Function):
    """Features of one level ``sum_c w_c · table[:, idx_c]``; backward to the table and the points.

    The level table is ``(F, size)`` (feature-major), so each feature is one ``take`` of a
    contiguous row in forward and one ``scatter_add_`` in backward — far cheaper on CPU than
    row indexing / ``index_add_`` of F-wide rows. First-order only.
    """

    @staticmethod
    def forward(ctx, pos, table, res, size, dense):
        idx, frac = level_indices(pos.detach(), res, size, dense)
        w = trilinear_weights(frac)
        out = torch.stack([(w * table[f].take(idx)).sum(1) for f in range(table.shape[0])], 1)
        ctx.save_for_backward(pos, table, idx, w, frac)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        pos, table, idx, w, frac = ctx.saved_tensors
        g_table = g_pos = None
        flat = idx.reshape(-1)
        if ctx.needs_input_grad[1]:
            g_table = torch.zeros_like(table)
            for f in range(table.shape[0]):
                g_table[f].scatter_add_(0, flat, (w * grad_out[:, f, None]).reshape(-1))
        if ctx.needs_input_grad[0]:
            dots = sum(table[f].take(idx) * grad_out[:, f, None] for f in range(table.shape[0]))  # (N, 8)
            g_pos = (dots[..., None] * trilinear_weight_gradients(frac)).sum(1)
        return g_pos, g_table, None, None, None


def hash_encode_reference(u: torch.Tensor, table: torch.Tensor, levels, n_features: int) -> torch.Tensor:
    """Autograd-native reference of the hash encoding (any derivative order; the test oracle).

    Args:
        u: ``(N, 3)`` points in ``[0, 1]^3``.
        table: flat parameter, per level a ``(F, size)`` block starting at ``F · offset``.
        levels: ``[(res, size, dense, offset)]`` per level.
        n_features: F.
    """
    feats = []
    for res, size, dense, off in levels:
        tab = table.narrow(0, off * n_features, size * n_features).view(n_features, size)
        idx, _ = level_indices((u * res).detach(), res, size, dense)
        frac = u * res - (u * res).detach().floor().clamp(0, res - 1)  # differentiable in u
        w = trilinear_weights(frac)
        feats.append(torch.stack([(w * tab[f][idx]).sum(1) for f in range(n_features)], 1))
    return torch.cat(feats, 1)


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding of points in a box.

    Input ``points (N, 3)`` float32 in the config's box frame (metres for head fields); output
    ``(N, n_levels · n_features)`` float32, level-major. Differentiable in its table (parameters)
    and, first order, in the points.
    """

    def __init__(self, config: HashGridConfig | None = None):
        super().__init__()
        self.config = cfg = config or HashGridConfig()
        if cfg.n_levels < 1 or cfg.n_features < 1 or not 2 <= cfg.log2_table_size <= 24:
            raise ValueError(f"invalid hash-grid config {cfg}")
        lo, hi = torch.tensor(cfg.bbox[:3]), torch.tensor(cfg.bbox[3:])
        if not bool((hi > lo).all()):
            raise ValueError(f"bbox must have x1 > x0 etc.; got {cfg.bbox}")
        self.register_buffer("lo", lo.float(), persistent=False)
        self.register_buffer("extent", (hi - lo).float(), persistent=False)
        self.backend = resolve_backend(cfg.backend)
        self._compiled = None
        self.out_dim = cfg.n_levels * cfg.n_features
        T = 2 ** cfg.log2_table_size
        self.levels = []  # (resolution, table size, dense, offset)
        offset = 0
        for lvl in range(cfg.n_levels):
            res = int(math.floor(cfg.base_resolution * cfg.per_level_scale ** lvl))
            n_vertices = (res + 1) ** 3
            size = min(T, n_vertices)
            self.levels.append((res, size, n_vertices <= T, offset))
            offset += size
        log.info("hash grid: %d levels, %d parameters, backend %s", cfg.n_levels, offset * cfg.n_features, self.backend)
        if self.backend == "tcnn":
            import tinycudann as tcnn

            self._tcnn = tcnn.Encoding(3, {"otype": "HashGrid", "n_levels": cfg.n_levels,
                                           "n_features_per_level": cfg.n_features,
                                           "log2_hashmap_size": cfg.log2_table_size,
                                           "base_resolution": cfg.base_resolution,
                                           "per_level_scale": cfg.per_level_scale})
        else:
            # flat storage; level l is a contiguous (F, size_l) block at F · offset_l
            self.table = nn.Parameter(torch.empty(offset * cfg.n_features).uniform_(-cfg.init_scale, cfg.init_scale))

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        """Points → ``[0, 1]^3`` box coordinates (clamped)."""
        return ((points - self.lo) / self.extent).clamp(0.0, 1.0)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3); got {tuple(points.shape)}")
        u = self.normalise(points)
        if self.backend == "tcnn":
            return self._tcnn(u).float()
        if self.config.compile:
            if self._compiled is None:
                self._compiled = torch.compile(hash_encode_reference, dynamic=True)
            return self._compiled(u, self.table, self.levels, self.config.n_features)
        F = self.config.n_features
        feats = []
        for res, size, dense, off in self.levels:
            table = self.table.narrow(0, off * F, size * F).view(F, size)
            feats.append(_LevelLookup.apply(u * res, table, res, size, dense))
        return torch.cat(feats, 1)


class FrequencyEncoding(nn.Module):
    """``[x, sin(2^k π x), cos(2^k π x)]_{k < n_frequencies}`` per coordinate (NeRF positional encoding).

    Input ``(N, D)``; output ``(N, D · (1 + 2 · n_frequencies))`` (the identity part first when
    ``include_input``). Fully differentiable, any order.
    """

    def __init__(self, in_dim: int = 3, n_frequencies: int = 6, include_input: bool = True):
        super().__init__()
        if n_frequencies < 0:
            raise ValueError(f"n_frequencies must be ≥ 0; got {n_frequencies}")
        self.in_dim, self.n_frequencies, self.include_input = in_dim, n_frequencies, include_input
        self.register_buffer("freqs", (2.0 ** torch.arange(n_frequencies)) * math.pi, persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * n_frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"expected last dim {self.in_dim}; got {tuple(x.shape)}")
        xf = (x[..., None, :] * self.freqs[:, None]).flatten(-2)
        parts = ([x] if self.include_input else []) + [torch.sin(xf), torch.cos(xf)]
        return torch.cat(parts, -1)
