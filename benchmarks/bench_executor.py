"""Local process pool vs Ray for ``headveil evalset``: throughput at 1 and 2 workers, per-task
overhead, memory per worker, and a scale model of a cluster.

One evaluation set (``--subjects`` subjects × 2 yaws × 1 light × blur, pixelate, mask and id-noise
at 256²: 5 images per view, 10 per subject) is rendered four times in one run: local with 1 and 2 workers, Ray (a local
runtime of 1 and 2 CPUs, its start-up timed apart). Worker memory is the largest resident set of a
worker process, sampled every 0.2 s from ``/proc``.

Usage: python benchmarks/bench_executor.py [--subjects 12] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _workers(kind: str) -> list[int]:
    me, out = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (kind == "local" and "multiprocessing" in cmd and "spawn" in cmd) or \
                (kind == "ray" and ("ray::" in cmd or "default_worker.py" in cmd)):
            out.append(int(d.name))
    return out


class _Sampler(threading.Thread):
    def __init__(self, kind: str):
        super().__init__(daemon=True)
        self.kind, self.peak, self.stop = kind, 0.0, False

    def run(self):
        while not self.stop:
            for pid in _workers(self.kind):
                self.peak = max(self.peak, _rss_mb(pid))
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from headveil.pipelines.evaluate.evalset import EvalSetCommand, run_evalset
    from headveil.pipelines.executor import make_executor

    tmp = Path(tempfile.mkdtemp(prefix="headveil-exec-"))
    kw = dict(subjects=args.subjects, views=(0.0, 25.0), lights=("front",), methods=("blur", "pixelate", "mask", "id-noise"),
              image_size=256)
    results = {}
    for name, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
        t_init = 0.0
        ex = None
        if name == "ray":  # start the runtime first so its start-up is timed apart
            t0 = time.perf_counter()
            ex = make_executor("ray", workers)
            t_init = time.perf_counter() - t0
        s = _Sampler(name)
        s.start()
        t0 = time.perf_counter()
        res = run_evalset(EvalSetCommand(out=tmp / f"{name}{workers}", executor=name, workers=workers, **kw))
        dt = time.perf_counter() - t0
        s.stop = True
        s.join()
        if ex is not None:
            ex.close()
        results[(name, workers)] = {"seconds": dt, "images": res["rows"], "init": t_init, "rss_mb": s.peak}
        print(name, workers, results[(name, workers)], flush=True)
    lines = ["| executor | workers | runtime start s | render s (local: incl. spawning workers) | total s | images | "
             "images/min (total) | peak RSS per worker MB |", "|---|---|---|---|---|---|---|---|"]
    for (name, w), r in results.items():
        tot = r["init"] + r["seconds"]
        lines.append(f"| {name} | {w} | {r['init']:.1f} | {r['seconds']:.1f} | {tot:.1f} | {r['images']} | "
                     f"{60 * r['images'] / tot:.0f} | {r['rss_mb']:.0f} (1 worker = this process) |"
                     if name == "local" and w == 1 else
                     f"| {name} | {w} | {r['init']:.1f} | {r['seconds']:.1f} | {tot:.1f} | {r['images']} | "
                     f"{60 * r['images'] / tot:.0f} | {r['rss_mb']:.0f} |")
    n_tasks = args.subjects
    tot = {k: r["init"] + r["seconds"] for k, r in results.items()}
    over = {w: (tot[("ray", w)] - tot[("local", w)]) / n_tasks for w in (1, 2)}
    ratio = {w: tot[("ray", w)] / tot[("local", w)] for w in (1, 2)}
    per_worker_hour = 3600 * results[("ray", 2)]["images"] / results[("ray", 2)]["seconds"] / 2
    workers_for_1m_day = 1e6 / (per_worker_hour * 24)
    body = ("\n".join(lines) + "\n\n"
            f"- Ray / local total time at equal workers (start-up included): {ratio[1]:.2f}× (1 worker), "
            f"{ratio[2]:.2f}× (2); difference per task {over[1]:+.2f} s (1) / {over[2]:+.2f} s (2) on tasks of one "
            f"subject ({results[('local', 1)]['seconds'] / n_tasks:.2f} s each in one process). The local pool "
            "spawns its workers on demand (each imports torch and loads the model, ≈ 3 s), which a short batch "
            "on 2 cores barely amortises; Ray's workers are up once its runtime is.\n"
            f"- Scale model: {per_worker_hour:,.0f} images/hour per worker (256², this mix: original, blur, "
            f"pixelate, mask, id-noise); 1 M images in a day needs ≈ {workers_for_1m_day:.1f} such workers "
            f"(≈ {workers_for_1m_day / 16:.1f} nodes of 16 cores; a 3D method alone is slower than this mix). What bottlenecks first: the workers write "
            "their PNGs (and hash them) straight into the output folder, so the object store carries only "
            "rows (≈ 1 kB of JSON each) and the single writer only appends lines — on a cluster the shared "
            "filesystem taking ≈ 12 images/s per 1 M/day is the first limit, then the writer (not measured "
            "here); the model asset (4 MB) loads once per worker process.\n")
    # batch de-identification: the package photos and their mirror images (id-noise, guard on)
    import numpy as np

    from headveil.common.images import write_image
    from headveil.pipelines.deid import DeidCommand, run_deid
    from headveil.pipelines.evaluate.calibration import package_photos

    src = tmp / "photos"
    src.mkdir()
    n_photos = 0
    for name, img in package_photos():
        if name in ("astronaut", "grace_hopper", "lenna"):
            write_image(src / f"{name}.png", img)
            write_image(src / f"{name}_m.png", np.ascontiguousarray(img[:, ::-1]))
            n_photos += 2
    drows = ["| executor | workers | runtime start s | run s | total s | photos | photos/min (total) |",
             "|---|---|---|---|---|---|---|"]
    dt_d = {}
    for name, workers in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
        t_init, ex = 0.0, None
        if name == "ray":
            t0 = time.perf_counter()
            ex = make_executor("ray", workers)
            t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = run_deid(DeidCommand([src], guard="warn", executor=name, workers=workers, out=tmp / f"deid_{name}{workers}"))
        dt = time.perf_counter() - t0
        if ex is not None:
            ex.close()
        dt_d[(name, workers)] = t_init + dt
        drows.append(f"| {name} | {workers} | {t_init:.1f} | {dt:.1f} | {t_init + dt:.1f} | {len(res['done'])} | "
                     f"{60 * len(res['done']) / (t_init + dt):.1f} |")
        print(drows[-1], flush=True)
    body += (f"\n`headveil deid DIR` (id-noise, guard on) over {n_photos} photos (3 package photos and their mirror "
             "images); with so few photos the workers' start-up (torch, the model, two recognizers) is not "
             "amortised:\n\n" + "\n".join(drows) + "\n\n"
             f"- Ray / local total time: {dt_d[('ray', 1)] / dt_d[('local', 1)]:.2f}× (1 worker), "
             f"{dt_d[('ray', 2)] / dt_d[('local', 2)]:.2f}× (2).\n")
    print(body)
    if not args.no_write:
        update_section("executor", body)


if __name__ == "__main__":
    main()
