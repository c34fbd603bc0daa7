"""Input encodings: multiresolution hash grid (Instant-NGP) and sinusoidal frequencies.

``HashGridEncoding`` has two backends behind one module:

- ``torch``: pure PyTorch, the default, the CPU path and the test oracle. One custom autograd
  function computes every level on corner-major ``(8, N)`` arrays: an ``index_select`` of the 8 cell
  corners per feature in forward and a ``scatter_add_`` into one flat table gradient in backward
  (no dense table-sized intermediates per corner or per level).
  Gradients flow to the table and, first order, to the input points (analytic trilinear
  derivative); second derivatives through the grid are not supported — use finite-difference
  normals for the eikonal loss (:func:`headveil.neural_fields.sdf.finite_difference_gradient`).
- ``native``: the same computation in a small C kernel for CPU tensors
  (:mod:`headveil.neural_fields.native`, built on first use with the system C compiler): each
  level in one pass over the points with its block of the table in cache, threads split by level,
  no ``(8, N)`` intermediates (the backward recomputes the corners from the points). Same table
  layout as ``torch``, so parameters and checkpoints are shared; CUDA tensors take the ``torch``
  kernel.
- ``tcnn``: tiny-cuda-nn's fused ``HashGrid``, imported lazily, CUDA only.

``backend="auto"`` resolves to ``tcnn`` when CUDA and tinycudann are present, else to ``native``
where its kernel builds, else to ``torch``; the resolved name is in ``encoding.backend`` and goes
into manifests and checkpoints. An explicit backend that cannot run raises
:class:`~headveil.common.errors.BackendUnavailableError`.

Level ``l`` has resolution ``N_l = floor(base_resolution · per_level_scale^l)`` cells per side;
levels whose ``(N_l + 1)^3`` vertices fit in the table are dense (no hashing), the others use the
spatial hash ``(x · 1 ⊕ y · 2654435761 ⊕ z · 805459861) mod T`` (Müller et al. 2022).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from headveil.common.registry import Registry
from headveil.common.registry import resolve_backend as resolve_registered
from headveil.neural_fields import native

log = logging.getLogger(__name__)

BACKENDS = ("torch", "native", "tcnn")
_PRIMES = (1, 2654435761, 805459861)


def has_tcnn() -> bool:
    """tiny-cuda-nn importable and a CUDA device present (does not import it)."""
    return importlib.util.find_spec("tinycudann") is not None and torch.cuda.is_available()


HASHGRID_BACKENDS: Registry[Callable[[], bool]] = Registry("hash-grid backend")
HASHGRID_BACKENDS.register("torch", lambda: True)
HASHGRID_BACKENDS.register("native", lambda: native.available())
HASHGRID_BACKENDS.register("tcnn", has_tcnn)


def available_backends() -> list[str]:
    """Hash-grid backends that run here."""
    return [b for b in BACKENDS if HASHGRID_BACKENDS.get(b)()]


def resolve_backend(backend: str = "auto") -> str:
    """``auto`` → ``tcnn`` where it runs, else ``native``, else ``torch``; explicit names are checked."""
    hint = {"tcnn": " (needs CUDA and the tinycudann package)",
            "native": " (needs a C compiler; see headveil.neural_fields.native)"}.get(backend, "")
    return resolve_registered(HASHGRID_BACKENDS, backend, ("tcnn", "native", "torch"), hint)


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


def _cells(p: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell of ``p (3, N)`` (level units): lower corner ``(3, N) int64`` and per-axis weights
    ``(3, 2, N)`` = ``(1 − frac, frac)``."""
    i0f = p.floor().clamp_(0, res - 1)
    frac = p - i0f
    return i0f.long(), torch.stack([1 - frac, frac], 1)


def _corners(p: torch.Tensor, res: int, size: int, dense: bool):
    """Corner-major form of :func:`level_indices` + :func:`trilinear_weights` for the fast kernel.

    Args:
        p: ``(3, N)`` points in level units (one contiguous row per axis).

    Returns:
        ``idx (8, N) int32`` table rows, ``w (8, N)`` trilinear weights (corner ``c = 4 b_x + 2 b_y
        + b_z`` as in :func:`level_indices`). Every broadcast runs along N (vectorised rows), and for hashed
        levels with a power-of-two table the mask is applied per axis before the XOR
        (``(a ⊕ b ⊕ c) & m = (a & m) ⊕ (b & m) ⊕ (c & m)``), so no ``(8, N)`` pass is spent on it;
        the ``(8, N)`` arithmetic then runs in int32 (rows < 2^24), half the memory traffic of int64.
    """
    i0, axis_w = _cells(p, res)
    mult = (1, res + 1, (res + 1) ** 2) if dense else _PRIMES
    pow2 = size & (size - 1) == 0
    narrow = dense or pow2  # every partial result fits in int32
    ax = []
    for k in range(3):
        a = i0[k] * mult[k]  # int64: the primes overflow int32
        pair = torch.stack([a, a + mult[k]])  # (2, N)
        if not dense and pow2:
            pair &= size - 1
        ax.append(pair.int() if narrow else pair)
    x, y, z = ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :]
    if dense:
        idx = (x + y) + z
    else:
        idx = (x ^ y) ^ z
        if not pow2:
            idx = (idx % size).int()
    w = (axis_w[0][:, None, None] * axis_w[1][None, :, None]) * axis_w[2][None, None, :]
    return idx.reshape(8, -1), w.reshape(8, -1)


class _HashLookup(torch.autograd.Function):
    """All levels of the hash encoding in one autograd node (the torch backend's kernel).

    Forward: per level and feature one ``index_select`` of a contiguous table row and a weighted sum over
    the 8 corners, all on corner-major ``(8, N)`` arrays. With ``jacobian`` it also returns the
    features' derivative in the points ``(L · F, 3, N)`` (the analytic trilinear derivative, from the
    values it has just gathered) for :class:`_PointGradient`; the points themselves are never an
    input of this node, so a pass that asks for point gradients only (normals) never runs its
    backward. Backward: the table gradient only — one zero-initialised gradient of the whole flat
    table, filled by one ``scatter_add_`` per level and feature (no per-level table-sized
    temporaries). First-order only; the autograd-native :func:`hash_encode_reference` is the oracle.

    ``native_grid`` (a :class:`headveil.neural_fields.native.Grid`, or None) runs both passes in the
    C kernel instead: ``u`` is then the raw ``(N, 3)`` points in the box frame (the kernel clamps
    them into the box itself), the forward saves only them, and the backward recomputes the corners.
    """

    backward_calls = 0
    """Times the backward ran (a test counts the passes that fill the table's gradient)."""

    @staticmethod
    def forward(ctx, u, table, levels, n_features, jacobian, native_grid=None):
        F = n_features
        ctx.levels, ctx.n_features, ctx.native = levels, F, native_grid
        if native_grid is not None:
            ctx.save_for_backward(u)
            ctx.table_numel = table.numel()
            return native.forward(u, table, native_grid, F).t()
        uT = u.t().contiguous()  # (3, N)
        N = u.shape[0]
        out = u.new_empty(len(levels) * F, N)  # feature-major: each row written in place
        jac = u.new_empty(len(levels) * F, 3, N) if jacobian else None
        saved = []
        for lvl, (res, size, dense, off) in enumerate(levels):
            p = uT * res
            idx, w = _corners(p, res, size, dense)
            tab = table.narrow(0, off * F, size * F).view(F, size)
            flat = idx.view(-1)
            if jac is not None:  # corner-pair weights of the other two axes, shared by the features
                _, aw = _cells(p, res)
                wyz = (aw[1][:, None] * aw[2][None, :]) * res
                wxz = (aw[0][:, None] * aw[2][None, :]) * res
                wxy = (aw[0][:, None] * aw[1][None, :]) * res
            for f in range(F):  # index_select of a contiguous row: ~3× faster than take on CPU
                vals = tab[f].index_select(0, flat).view_as(w)
                if jac is not None:
                    v = vals.view(2, 2, 2, N)
                    row = lvl * F + f
                    torch.sum((v[1] - v[0]) * wyz, (0, 1), out=jac[row, 0])
                    torch.sum((v[:, 1] - v[:, 0]) * wxz, (0, 1), out=jac[row, 1])
                    torch.sum((v[:, :, 1] - v[:, :, 0]) * wxy, (0, 1), out=jac[row, 2])
                torch.sum(vals.mul_(w), 0, out=out[lvl * F + f])
            saved += [idx, w]
        ctx.save_for_backward(table, *saved)
        if jac is None:
            return out.t()
        ctx.mark_non_differentiable(jac)
        return out.t(), jac

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_jac=None):
        _HashLookup.backward_calls += 1
        F = ctx.n_features
        gT = grad_out.t().contiguous()  # (L · F, N)
        if ctx.native is not None:
            g = native.backward(ctx.saved_tensors[0], gT, ctx.native, F, ctx.table_numel) if ctx.needs_input_grad[1] else None
            return None, g, None, None, None, None
        table, *saved = ctx.saved_tensors
        g_table = torch.zeros_like(table) if ctx.needs_input_grad[1] else None
        if g_table is not None:
            for lvl, (res, size, dense, off) in enumerate(ctx.levels):
                idx, w = saved[2 * lvl], saved[2 * lvl + 1]
                rows = gT[lvl * F:(lvl + 1) * F]
                gl = g_table.narrow(0, off * F, size * F).view(F, size)
                flat = idx.view(-1).long()  # scatter_add_ takes int64 rows only
                for f in range(F):
                    gl[f].scatter_add_(0, flat, (w * rows[f]).view(-1))
        return None, g_table, None, None, None, None


class _PointGradient(torch.autograd.Function):
    """Zeros ``(N, L · F)`` whose derivative in the points ``u (N, 3)`` is the features' Jacobian:
    added to the features, it makes them differentiable in the points as ``∂L/∂u = Σ_k
    ∂L/∂feat_k · ∂feat_k/∂u`` on a separate branch of the graph, so a pass that asks for the table
    only never runs it. The Jacobian is ``jac (L · F, 3, N)`` from the torch kernel's forward (no
    gather, no table access), or, with a ``native_grid``, recomputed by the C kernel from the
    table (saved for backward, so an in-place update in between is an error); ``u`` is then the
    raw points and the gradient includes the box normalisation and its clamp."""

    backward_calls = 0

    @staticmethod
    def forward(ctx, u, jac, table=None, native_grid=None, n_features=None):
        ctx.native, ctx.n_features = native_grid, n_features
        if native_grid is not None:
            ctx.save_for_backward(u.detach(), table)
            n_out = native_grid.n * n_features
        else:
            ctx.save_for_backward(jac)
            n_out = jac.shape[0]
        return u.new_zeros((1, n_out)).expand(u.shape[0], -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        _PointGradient.backward_calls += 1
        if ctx.native is not None:
            u, table = ctx.saved_tensors
            return native.point_backward(u, table, grad.t(), ctx.native, ctx.n_features), None, None, None, None
        (jac,) = ctx.saved_tensors
        return torch.einsum("kdn,nk->nd", jac, grad), None, None, None, None


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
    ``(N, n_levels · n_features)`` float32, level-major (with the torch backend a transposed view
    of a feature-major buffer; ``.contiguous()`` if a consumer needs rows). Differentiable in its table (parameters)
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
        self._native = None
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
            if self.backend == "native" and not cfg.compile:
                self._native = native.Grid(self.levels, lo, hi - lo)

    def normalise(self, points: torch.Tensor) -> torch.Tensor:
        """Points → ``[0, 1]^3`` box coordinates (clamped)."""
        return ((points - self.lo) / self.extent).clamp(0.0, 1.0)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be (N, 3); got {tuple(points.shape)}")
        F = self.config.n_features
        if self._native is not None and points.device.type == "cpu" and points.dtype == self.table.dtype == torch.float32:
            # box normalisation and clamp run in the kernel (each eager op over an (N, 3) broadcast costs ~10 ns an element)
            feats = _HashLookup.apply(points.detach(), self.table, self.levels, F, False, self._native)
            if not points.requires_grad:  # the point gradient recomputes its gathers only if asked for
                return feats
            return feats + _PointGradient.apply(points, None, self.table.detach(), self._native, F)
        u = self.normalise(points)
        if self.backend == "tcnn":
            return self._tcnn(u).float()
        if self.config.compile:
            if self._compiled is None:
                self._compiled = torch.compile(hash_encode_reference, dynamic=True)
            return self._compiled(u, self.table, self.levels, self.config.n_features)
        if not u.requires_grad:
            return _HashLookup.apply(u, self.table, self.levels, F, False)
        feats, jac = _HashLookup.apply(u.detach(), self.table, self.levels, F, True)
        return feats + _PointGradient.apply(u, jac)


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
