"""Evaluation harness: recognizer speed, evaluation-set rendering throughput, recognizer calibration.

Writes the ``eval`` section of BENCHMARKS.md. Usage:
    python benchmarks/bench_eval.py [--subjects 12] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=12, help="synthetic identities for calibration")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    import skimage.data
    import torch

    from headveil.geometry.perception.detectors import detect_faces
    from headveil.pipelines.evaluate.calibration import calibrate, real_embeddings, synthetic_embeddings
    from headveil.pipelines.evaluate.evalset import EvalSetCommand, run_evalset
    from headveil.geometry.perception.recognizers import RECOGNIZERS, get_recognizer

    torch.set_num_threads(2)
    img = skimage.data.astronaut()
    lm = detect_faces(img, "dlib")[0].points
    lines = ["### Recognizers (astronaut, 512², 2 cores; median of 20)", "",
             "| recognizer | detect + align + embed ms | embed from known landmarks ms (incl. detectability check) | embeddings / s (known landmarks) |",
             "|---|---|---|---|"]
    for name in RECOGNIZERS:
        rec = get_recognizer(name)
        rec.embed(img)
        t_full, t_lm = [], []
        for _ in range(20):
            t0 = time.perf_counter(); rec.embed(img); t_full.append(time.perf_counter() - t0)  # noqa: E702
            t0 = time.perf_counter(); rec.embed(img, lm); t_lm.append(time.perf_counter() - t0)  # noqa: E702
        lines.append(f"| {name} | {np.median(t_full) * 1e3:.0f} | {np.median(t_lm) * 1e3:.0f} | {1 / np.median(t_lm):.1f} |")

    lines += ["", "### Evaluation-set rendering (`headveil evalset`, 1 worker, methods blur + pixelate + mask)", "",
              "| image size | images | seconds | images / min |", "|---|---|---|---|"]
    for size in (256, 512):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run_evalset(EvalSetCommand(out=Path(tmp) / "set", subjects=3, views=(0.0, 25.0), lights=("front", "left"),
                                            image_size=size))
            dt = time.perf_counter() - t0
        lines.append(f"| {size}² | {res['rows']} | {dt:.1f} | {res['rows'] / dt * 60:.0f} |")

    lines += ["", "### Calibration (genuine/impostor distances; match = distance < threshold; sface distance = 1 − cos)", "",
              f"Synthetic: {a.subjects} model identities × yaw (−25°, 0°, 25°) × 3 lights at 256², embedded from projected "
              "model landmarks. Real: the 6 package photos (astronaut, grace_hopper, takeo, lenna, einstein, breakingbad) "
              "plus mirror / JPEG-30 / 0.8× variants as genuine pairs (optimistic genuine side, real impostor side).", "",
              "| recognizer | set | genuine n / mean [min, max] | impostor n / mean [min, max] | own threshold | FAR / FRR at own | EER | EER threshold |",
              "|---|---|---|---|---|---|---|---|"]
    for name in RECOGNIZERS:
        rec = get_recognizer(name)
        E, ids, det = synthetic_embeddings(rec, n_subjects=a.subjects)
        groups = None
        cals = [calibrate(rec, E, ids, f"synthetic (detected {det.mean():.0%})", groups)]
        E2, ids2, _ = real_embeddings(rec)
        if len(set(ids2.tolist())) >= 2:
            cals.append(calibrate(rec, E2, ids2, f"real ({len(set(ids2.tolist()))} photos, {len(E2)} crops)"))
        for c in cals:
            g, i = c.genuine, c.impostor
            lines.append(f"| {name} | {c.set_name} | {g.size} / {g.mean():.3f} [{g.min():.3f}, {g.max():.3f}] | "
                         f"{i.size} / {i.mean():.3f} [{i.min():.3f}, {i.max():.3f}] | {c.own_threshold:.3f} | "
                         f"{c.far_at_own:.3f} / {c.frr_at_own:.3f} | {c.eer:.3f} | {c.eer_threshold:.3f} |")
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        update_section("eval", "## Evaluation harness\n\n" + body)


if __name__ == "__main__":
    main()
