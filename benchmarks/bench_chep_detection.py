"""CHEP + SBC utility: which face detectors still find the perturbed Table 1 renders.

Renders the Table 1 targets (same database, seed, rotation ρ per identity, dense mesh and SBC
as ``headveil chep-table``) of the first ``--identities`` identities, neutral and smile, not
perturbed and perturbed with (q, Q) ∈ {2, 10} × {20} at b = 2, and counts the renders in which
each detector finds a face overlapping the projected landmarks (IoU ≥ 0.3, as the recognizers'
``detected`` flag): dlib HOG (the dlib recognizer's default), dlib MMOD CNN, and YuNet (SFace's).
Each dlib detector tries without, then with one 2× upsampling. Writes the ``chep-detection``
section of BENCHMARKS.md. Usage::

    python benchmarks/bench_chep_detection.py [--identities 60] [--size 256] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def main() -> None:
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import DlibRecognizer, SFaceRecognizer, _iou
    from headveil.pipelines.evaluate.table1 import Table1Command, database_codes, target_configs, target_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    model = load_embedded()
    cfg = Table1Command(splits=((180, 20),), size=a.size)
    alphas, betas = database_codes(cfg, model)
    per = target_configs(cfg, alphas)
    detectors = {"dlib HOG": DlibRecognizer(detector="hog"), "dlib CNN (MMOD)": DlibRecognizer(detector="cnn"),
                 "YuNet": SFaceRecognizer()}
    found = {}  # (detector, config) -> [bool]
    seconds = {n: 0.0 for n in detectors}
    t0 = time.perf_counter()
    for i in range(a.identities):
        colors = model.albedo(betas[i])
        for expr, name, img, px, _ in target_images(model, cfg, i, alphas[i], colors, per[i]):
            lm_box = np.concatenate([px.min(0), px.max(0)])
            for dn, det in detectors.items():
                t1 = time.perf_counter()
                boxes = det.detect(img)
                seconds[dn] += time.perf_counter() - t1
                found.setdefault((dn, name), []).append(any(_iou(b, lm_box) >= 0.3 for b in boxes))
        print(f"identity {i + 1}/{a.identities}", flush=True)
    wall = time.perf_counter() - t0
    configs = list(dict.fromkeys(c for _, c in found))
    n_img = len(found[(next(iter(detectors)), configs[0])])
    label = {"none": "not perturbed"} | {c: f"q = {c.split('_q')[1]}, Q = {c.split('_')[0][1:]}" for c in configs
                                          if c != "none"}
    lines = ["## CHEP + SBC: face detection on the perturbed renders (utility)\n",
             f"Table 1 targets of identities 0–{a.identities - 1} (seed {cfg.seed}), neutral and smile, b = {cfg.b:g}, "
             f"renders {cfg.size}² with ρ ~ U[0, π/8]³ (tilts up to ~39°): {n_img} renders per column. "
             "Detected = a box with IoU ≥ 0.3 with the projected landmarks' box. "
             f"Wall time {wall / 60:.1f} min.\n",
             "| detector | " + " | ".join(label[c] for c in configs) + " | s / image |",
             "|---" * (len(configs) + 2) + "|"]
    for dn in detectors:
        cells = [f"{100 * np.mean(found[(dn, c)]):.1f} %" for c in configs]
        lines.append(f"| {dn} | " + " | ".join(cells) + f" | {seconds[dn] / (n_img * len(configs)):.2f} |")
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        update_section("chep-detection", body)


if __name__ == "__main__":
    main()
