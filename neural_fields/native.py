"""The hash grid's CPU kernel in C (``kernels/hashgrid.c``): built on first use, loaded with ctypes.

The source ships inside the package. :func:`library` compiles it once per source, compiler and
platform with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``; ``-O3 -pthread``,
no ``-march=native``, so a cache shared between cluster nodes holds no instructions a node lacks)
into :func:`headveil.common.outputs.cache_dir` ``/kernels/`` (temp name, then rename, so
concurrent first uses are safe), and returns the loaded library — or ``None`` with one logged
warning when no compiler is found or the build fails; the hash grid then runs its pure-PyTorch
kernel. ``HEADVEIL_NATIVE=0`` turns the native kernel off. ``python -m
headveil.neural_fields.native`` builds it ahead of time (``make setup`` does).

The functions take contiguous CPU float32 buffers (see the C file's header for shapes); the
calling thread releases the GIL for the call (ctypes does).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from headveil.common.outputs import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "kernels" / "hashgrid.c"
FLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-pthread", "-fno-math-errno")
ABI_VERSION = 4


def compiler() -> str | None:
    """The C compiler to build with (``$CC`` or the first of cc, gcc, clang on PATH), or None."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name
    return None


def _build(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", prefix=target.stem + ".", dir=target.parent)
    os.close(fd)
    try:
        cmd = [*cc.split(), *FLAGS, "-o", tmp, str(SOURCE), "-lm"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library_path(cc: str) -> Path:
    """Where the build for this source, compiler and platform is cached."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(" ".join((cc, *FLAGS, platform.machine(), platform.system())).encode())
    return cache_dir() / "kernels" / f"hashgrid-{key.hexdigest()[:16]}.so"


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    lib.hv_hash_forward.argtypes = [p, p, p, i64, p, i32, i32, p, p, p, p, p, i32]
    lib.hv_hash_backward.argtypes = [p, p, p, i64, p, i32, i32, p, p, p, p, p, i32]
    lib.hv_hash_point_backward.argtypes = [p, p, p, i64, p, p, i32, i32, p, p, p, p, p, i32]
    for fn in (lib.hv_hash_forward, lib.hv_hash_backward, lib.hv_hash_point_backward, lib.hv_abi_version):
        fn.restype = ctypes.c_int
    if lib.hv_abi_version() != ABI_VERSION:
        raise RuntimeError(f"kernel ABI {lib.hv_abi_version()}, expected {ABI_VERSION}")
    return lib


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel library, built if needed; None (warned once) where it cannot be."""
    if os.environ.get("HEADVEIL_NATIVE", "1") == "0":
        return None
    cc = compiler()
    if cc is None:
        log.warning("no C compiler found ($CC, cc, gcc, clang): the hash grid uses its PyTorch kernel")
        return None
    try:
        path = library_path(cc)
        if not path.exists():
            log.info("building the hash grid's CPU kernel with %s into %s", cc, path)
            _build(cc, path)
        return _declare(ctypes.CDLL(str(path)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        log.warning("the hash grid's CPU kernel could not be built or loaded (%s): using its PyTorch kernel", err)
        return None


def available() -> bool:
    """Whether the native kernel runs here (builds it on the first call)."""
    return library() is not None


class Grid:
    """What the kernel reads besides the points and the table: the box (``lo``, ``extent``, 3
    floats each, box frame) and per level the resolution, rows, dense flag and offset (int64)."""

    def __init__(self, levels, lo: torch.Tensor, extent: torch.Tensor):
        for res, size, dense, _ in levels:
            if not dense and size & (size - 1):
                raise ValueError(f"hashed level of {size} rows: the kernel needs a power-of-two table")
        self.n = len(levels)
        self.box = [lo.detach().float().cpu().contiguous(), extent.detach().float().cpu().contiguous()]
        self.tensors = [torch.tensor([lv[k] for lv in levels], dtype=torch.int64) for k in range(4)]
        self.ptrs = [t.data_ptr() for t in self.tensors]
        self.box_ptrs = [t.data_ptr() for t in self.box]


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _check(rc: int) -> None:
    if rc == -2:
        raise MemoryError("the hash grid's CPU kernel could not allocate its (N, 3) work buffers")


def _points(x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"the CPU kernel takes (N, 3) float32 CPU points; got {tuple(x.shape)} {x.dtype} {x.device}")
    return x.detach().contiguous()


def forward(x: torch.Tensor, table: torch.Tensor, grid: Grid, n_features: int) -> torch.Tensor:
    """Features ``(L · F, N)`` (feature-major) of the points ``x (N, 3)`` (box frame; clamped into
    the box); CPU float32."""
    x = _points(x)
    table = table.detach().contiguous()
    out = x.new_empty(grid.n * n_features, x.shape[0])
    _check(library().hv_hash_forward(x.data_ptr(), *grid.box_ptrs, x.shape[0], table.data_ptr(), grid.n, n_features,
                              *grid.ptrs, out.data_ptr(), _threads()))
    return out


def backward(x: torch.Tensor, grad_out: torch.Tensor, grid: Grid, n_features: int, table_numel: int) -> torch.Tensor:
    """Table gradient (flat, ``table_numel``) of ``grad_out (L · F, N)`` at the points ``x (N, 3)``."""
    x = _points(x)
    grad_out = grad_out.contiguous()
    g = torch.zeros(table_numel, dtype=torch.float32)
    _check(library().hv_hash_backward(x.data_ptr(), *grid.box_ptrs, x.shape[0], grad_out.data_ptr(), grid.n, n_features,
                               *grid.ptrs, g.data_ptr(), _threads()))
    return g


def point_backward(x: torch.Tensor, table: torch.Tensor, grad_out: torch.Tensor, grid: Grid,
                   n_features: int) -> torch.Tensor:
    """Point gradient ``(N, 3)`` of ``grad_out (L · F, N)`` (the features' upstream gradient) at
    ``x (N, 3)``: ``Σ_k grad_out_k ∂feature_k/∂x``, the gathers recomputed from the table; zero along
    an axis where the point lies outside the box (the clamp)."""
    x = _points(x)
    table = table.detach().contiguous()
    grad_out = grad_out.contiguous()
    g = torch.zeros_like(x)
    _check(library().hv_hash_point_backward(x.data_ptr(), *grid.box_ptrs, x.shape[0], table.data_ptr(),
                                     grad_out.data_ptr(), grid.n, n_features, *grid.ptrs, g.data_ptr(), _threads()))
    return g


def main() -> int:
    lib = library()
    if lib is None:
        print("hash-grid CPU kernel: not available (see the warning above); the PyTorch kernel is used")
        return 1
    print(f"hash-grid CPU kernel: {library_path(compiler())}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
