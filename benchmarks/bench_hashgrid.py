"""Hash-grid encoding throughput (forward + backward, points/s) and peak memory on this machine.

Writes the ``hashgrid`` section of BENCHMARKS.md. Usage:
    python benchmarks/bench_hashgrid.py [--compile] [--reps 5] [--no-write]
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def _tune_malloc() -> bool:
    """Keep freed blocks in the process (glibc): large tensors are not re-faulted every step."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, 1 << 31))  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    except OSError:
        return False


def _best(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _passes_and_floor(torch, HashGridConfig, HashGridEncoding, reps: int, kernels: list[str]) -> list[str]:
    """Each pass the field uses, beside the memory-access floor of the kernel's pattern: per point
    one ``index_select`` gather and one ``scatter_add_`` of 8 corners per level and feature (256 +
    256 for 16 levels × 2 features) on tables of the same sizes, with no hashing or weights.
    Kernels and floor alternate within each size, so load changes hit them alike."""
    rows = []
    for log2n, kernel in ((k, b) for k in (16, 18) for b in kernels):
        torch.manual_seed(0)
        enc = HashGridEncoding(HashGridConfig(backend=kernel))
        F = enc.config.n_features
        n = 2 ** log2n
        x = (torch.rand(n, 3) - 0.5) * 0.3
        rng = torch.Generator().manual_seed(1)
        idx = [torch.randint(0, size, (8 * n,), generator=rng) for _, size, _, _ in enc.levels]
        tabs = [torch.randn(size) for _, size, _, _ in enc.levels]

        def floor():
            for i, t in zip(idx, tabs):
                g = torch.zeros_like(t)
                for _ in range(F):
                    v = t.index_select(0, i)
                    g.scatter_add_(0, i, v)

        def table_pass():  # the loss pass: features → table gradient
            enc.table.grad = None
            (enc(x) ** 2).mean().backward()

        def normals_pass():  # autograd.grad of the features' sum in the points only
            xr = x.clone().requires_grad_(True)
            torch.autograd.grad(enc(xr).sum(), xr)

        def both_pass():  # one forward, point gradients (normals), then the table gradient (training)
            enc.table.grad = None
            xr = x.clone().requires_grad_(True)
            y = enc(xr)
            torch.autograd.grad(y.sum(), xr, retain_graph=True)
            torch.autograd.backward((y ** 2).mean(), inputs=[enc.table])

        def forward_only():
            with torch.no_grad():
                enc(x)

        t_floor = _best(floor, reps)
        t_tab, t_nrm, t_both, t_fwd = (_best(f, reps) for f in (table_pass, normals_pass, both_pass, forward_only))
        rows.append(f"| {kernel} | 2^{log2n} | {n / t_floor / 1e6:.2f} M | {n / t_tab / 1e6:.2f} M ({t_floor / t_tab:.0%}) "
                    f"| {n / t_nrm / 1e6:.2f} M | {n / t_both / 1e6:.2f} M | {n / t_fwd / 1e6:.2f} M |")
    return ["#### Passes beside the gather/scatter floor (malloc tuned)", "",
            "`floor`: the kernel's memory-access pattern alone (256 random `index_select` gathers + 256 "
            "`scatter_add_` per point). `table`: forward + backward into the table (share of the floor). "
            "`points`: forward + `autograd.grad` in the points only (normals; the table's scatter never "
            "runs). `points + table`: one forward, the normals' point gradient, then the table gradient "
            "(the training step's pattern). `forward`: no gradients (extraction, rendering).", "",
            "| kernel | points | floor pts/s | table pts/s | points pts/s | points + table pts/s | forward pts/s |",
            "|---|---|---|---|---|---|---|", *rows, "",
            "Targets: table ≥ 85 % of the floor, points ≥ 1.5 M, forward ≥ 5 M points/s."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    import torch

    from headveil.neural_fields.encodings import HashGridConfig, HashGridEncoding

    from headveil.neural_fields.encodings import available_backends

    torch.set_num_threads(2)
    kernels = [b for b in ("torch", "native") if b in available_backends()]
    rows = []
    for malloc in (False, True):
        if malloc:
            tuned = _tune_malloc()
        for kernel, compiled in (("torch", False), ("torch", True), ("native", False)):
            if (malloc is False and compiled) or kernel not in kernels:
                continue
            torch.manual_seed(0)
            enc = HashGridEncoding(HashGridConfig(backend=kernel, compile=compiled))
            for log2n in (16, 18):
                n = 2 ** log2n
                x = (torch.rand(n, 3) - 0.5) * 0.3
                t_first = time.perf_counter()
                y = enc(x)
                (y ** 2).mean().backward()
                t_first = time.perf_counter() - t_first
                times_fb, times_f = [], []
                for _ in range(a.reps):
                    enc.table.grad = None
                    t0 = time.perf_counter()
                    y = enc(x)
                    (y ** 2).mean().backward()
                    times_fb.append(time.perf_counter() - t0)
                    with torch.no_grad():
                        t0 = time.perf_counter()
                        enc(x)
                        times_f.append(time.perf_counter() - t0)
                fb, f = min(times_fb), min(times_f)
                rows.append(f"| {'native (C)' if kernel == 'native' else 'compiled' if compiled else 'eager'} | {'tuned' if malloc and tuned else 'default'} | 2^{log2n} "
                            f"| {f * 1e3:.0f} | {fb * 1e3:.0f} | {n / fb / 1e3:.0f}k | {t_first:.1f} |")
    extra = _passes_and_floor(torch, HashGridConfig, HashGridEncoding, a.reps, kernels)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = HashGridConfig()
    body = "\n".join([
        f"### Hash-grid encoding on the CPU: torch and native backends (16 levels × 2 features, table 2^{cfg.log2_table_size} per level, "
        f"base 16, growth 1.38; {sum(s for _, s, _, _ in HashGridEncoding(cfg).levels) * 2 / 1e6:.1f} M parameters)", "",
        "Best of the repetitions; loss = mean(features²). `malloc tuned`: glibc `mallopt` keeps freed memory "
        "(a process-wide setting HeadVeil leaves alone: on the README recipe it saves 2 of 76 s); `compiled`: `HashGridConfig(compile=True)` (first call compiles); "
        "`native (C)`: backend `native`, the C kernel (`headveil.neural_fields.native`; first call includes "
        "loading the cached build).", "",
        "| kernel | malloc | points | forward ms | forward + backward ms | points / s (fwd + bwd) | first call s |",
        "|---|---|---|---|---|---|---|", *rows, "",
        f"Peak RSS of the whole benchmark process: {peak:.0f} MiB. Target ≥ 500k points/s (fwd + bwd): see the table.",
        "", *extra])
    print(body)
    if not a.no_write:
        update_section("hashgrid", "## Neural fields\n\n" + body)


if __name__ == "__main__":
    main()
