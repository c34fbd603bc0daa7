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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    import torch

    from headveil.neural_fields.encodings import HashGridConfig, HashGridEncoding

    torch.set_num_threads(2)
    rows = []
    for malloc in (False, True):
        if malloc:
            tuned = _tune_malloc()
        for compiled in (False, True):
            if malloc is False and compiled:
                continue
            torch.manual_seed(0)
            enc = HashGridEncoding(HashGridConfig(backend="torch", compile=compiled))
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
                rows.append(f"| {'compiled' if compiled else 'eager'} | {'tuned' if malloc and tuned else 'default'} | 2^{log2n} "
                            f"| {f * 1e3:.0f} | {fb * 1e3:.0f} | {n / fb / 1e3:.0f}k | {t_first:.1f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = HashGridConfig()
    body = "\n".join([
        f"### Hash-grid encoding, torch backend (16 levels × 2 features, table 2^{cfg.log2_table_size} per level, "
        f"base 16, growth 1.38; {sum(s for _, s, _, _ in HashGridEncoding(cfg).levels) * 2 / 1e6:.1f} M parameters)", "",
        "Best of the repetitions; loss = mean(features²). `malloc tuned`: glibc `mallopt` keeps freed memory "
        "(what the training entry points do); `compiled`: `HashGridConfig(compile=True)` (first call compiles).", "",
        "| kernel | malloc | points | forward ms | forward + backward ms | points / s (fwd + bwd) | first call s |",
        "|---|---|---|---|---|---|---|", *rows, "",
        f"Peak RSS of the whole benchmark process: {peak:.0f} MiB. Target ≥ 500k points/s (fwd + bwd): see the table."])
    print(body)
    if not a.no_write:
        update_section("hashgrid", "## Neural fields\n\n" + body)


if __name__ == "__main__":
    main()
