"""Training-step time of the two-stage recipe's stages on this machine, optionally beside another
checkout of HeadVeil measured in the same run (ratios, the machine being shared and noisy).

One synthetic subject, 30 views at 64×64 (10 neutral RGB + 20 protected gradient magnitudes), the
default head field with the 3DMM prior at the subject's codes, ``--steps`` steps of each stage (the
two-stage preset's own settings: 512 rays and 16 patches of 8×8 per step, 48 samples per ray).
The reported time per step excludes the prior cache (built before the clock starts); the loss after
the steps shows that both checkouts compute the same thing. Writes the ``train-step`` section.

Usage:
    python benchmarks/bench_train_step.py [--steps 30] [--reps 3] [--against DIR] [--no-write]

``--against DIR``: a checkout (e.g. ``git worktree add ../base <commit>``) whose package is
imported in a child process (``DIR`` is linked as ``headveil`` on its ``PYTHONPATH``); its runs are
interleaved with this checkout's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _child(steps: int, capture: Path) -> dict:
    """One run in this process: ``{stage: [ms per step, loss]}``."""
    import numpy as np
    import torch

    from headveil.geometry.morphable.model import load_embedded
    from headveil.neural_fields.head_field import HeadField, HeadFieldConfig
    from headveil.pipelines.capture import load_capture, write_synthetic_capture
    from headveil.pipelines.reconstruct import PRESETS
    from headveil.pipelines.train import train
    from headveil.render.protect import ProtectConfig
    from headveil.render.scene import SubjectCodes

    torch.set_num_threads(2)
    model = load_embedded()
    if not capture.exists():
        c = model.sample_codes(np.random.default_rng(0))
        codes = SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"])
        write_synthetic_capture(capture, model, codes, size=64, seed=1, split=(10, 20), protect=ProtectConfig(64))
    cap = load_capture(capture)
    torch.manual_seed(0)
    field = HeadField(model, HeadFieldConfig())
    truth = json.loads((capture.with_name(capture.name + "_ground_truth") / "codes.json").read_text())
    field.set_codes(truth["identity"])
    field.cache_prior()
    stats = train(field, cap, PRESETS["two-stage"].stages((steps, steps)), seed=3, progress=False)
    return {k: [v["seconds"] / steps * 1e3, v["loss"]] for k, v in stats.items()}


def _prior_cache_rows(reps: int) -> list[str]:
    """Building the 3DMM prior cache (96³, the mean head) everywhere and only in the ±3 cm band the
    sampler uses, and loading a cached one from disk (what every later run and ``--resume`` do)."""
    import time

    import torch

    from headveil.geometry.morphable.model import load_embedded
    from headveil.neural_fields.head_field import HeadField, HeadFieldConfig

    torch.set_num_threads(2)
    field = HeadField(load_embedded(), HeadFieldConfig())
    t_full, t_band, t_load = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prior.pt"
        for _ in range(max(reps - 1, 1)):
            t0 = time.perf_counter()
            field.cache_prior()
            t_full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            field.cache_prior(band=0.03)
            t_band.append(time.perf_counter() - t0)
            torch.save(field.prior_cache_state(), path)
            t0 = time.perf_counter()
            assert field.load_prior_cache(torch.load(path, weights_only=True), 0.03)
            t_load.append(time.perf_counter() - t0)
    return ["#### 3DMM prior cache (96³ grid, mean head)", "",
            "| build everywhere s | build in the ±3 cm band s | load a cached one s |", "|---|---|---|",
            f"| {min(t_full):.2f} | {min(t_band):.2f} ({min(t_full) / min(t_band):.1f}× less) | {min(t_load):.3f} |", "",
            "The band cache is exact within the band plus both grids' cell diagonals and the coarse (24³) "
            "interpolation farther out (tested: the same model SDF at every point within the band). "
            "Target: ≤ 2 s when cached."]


def _run(pkg_parent: Path | None, steps: int, capture: Path) -> dict:
    env = dict(os.environ)
    if pkg_parent is not None:
        env["PYTHONPATH"] = str(pkg_parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--child", str(steps), str(capture)], env=env, cwd="/",
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(int(sys.argv[2]), Path(sys.argv[3]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--against", type=Path, default=None, help="another checkout, measured in the same run")
    ap.add_argument("--against-label", default=None, help="its name in the table (default: its git commit)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="headveil-step-"))
    capture = tmp / "capture"
    other = None
    if a.against is not None:
        other = tmp / "other"
        other.mkdir()
        (other / "headveil").symlink_to(a.against.resolve())
        label = a.against_label or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=a.against,
                                                  capture_output=True, text=True).stdout.strip() or str(a.against)
    runs: dict[str, list[dict]] = {"this checkout": [], **({label: []} if other else {})}
    _run(None, 1, capture)  # writes the capture and warms the prior's disk cache
    for _ in range(a.reps):
        runs["this checkout"].append(_run(None, a.steps, capture))
        if other is not None:
            runs[label].append(_run(other, a.steps, capture))
    rows = []
    best, median = {}, {}
    for name, rs in runs.items():
        for stage in rs[0]:
            best[(name, stage)] = min(r[stage][0] for r in rs)
            median[(name, stage)] = sorted(r[stage][0] for r in rs)[len(rs) // 2]
            rows.append(f"| {name} | {stage} | {best[(name, stage)]:.1f} | {median[(name, stage)]:.1f} "
                        f"| {rs[0][stage][1]:.7f} |")
    lines = ["### Training step, two-stage recipe (1 synthetic subject, 30 views at 64², default field with the "
             "prior; 512 rays / 16 patches × 48 samples per step)", "",
             f"{a.steps} steps per stage, {a.reps} runs per checkout, interleaved; time per step excludes the prior "
             "cache.", "",
             "| checkout | stage | ms / step (best) | ms / step (median) | loss after the steps |",
             "|---|---|---|---|---|", *rows]
    if other is not None:
        lines += [""] + [f"- {stage}: {best[(label, stage)] / best[('this checkout', stage)]:.2f}× faster than {label} "
                         f"by the best of {a.reps}, {median[(label, stage)] / median[('this checkout', stage)]:.2f}× "
                         "by the medians (target ≥ 1.4×)" for stage in runs["this checkout"][0]]
    lines += ["", *_prior_cache_rows(a.reps)]
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        update_section("train-step", body)


if __name__ == "__main__":
    main()
