"""``headveil demo``: the main job on the embedded default, no user files needed.

Draws a subject from the embedded head model, renders it, fits the model back to the render
(landmarks + photometric refinement), exports the ground-truth and fitted meshes (PLY, OBJ,
GLB), a turntable video of the fit, a side-by-side comparison image, ``metrics.json`` and
``manifest.json``, and prints where everything is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.images import write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.geometry.mesh_io import export_mesh
from headveil.geometry.morphable.model import load_embedded
from headveil.geometry.transforms import similarity_procrustes
from headveil.pipelines.fit import FitConfig, fit_image, write_fit_outputs
from headveil.pipelines.synth import SynthConfig, generate, sample_to_json


@dataclass
class DemoConfig:
    """Run the demo: synthesise a subject, fit it back, export meshes and a turntable video."""

    out: Path = Path("demo_out")
    seed: int = 3
    image_size: int = 512
    refine: bool = True
    """Photometric refinement after the landmark fit."""
    turntable_frames: int = 48
    turntable_size: int = 256
    evaluate: bool = True
    """Also render a small evaluation set (3 identities × 2 views through the registered baselines), evaluate it with the recognizers and write its HTML report (needs headveil[faces])."""


def vertex_errors_mm(fitted: np.ndarray, truth: np.ndarray, mask: np.ndarray, scale: bool = False) -> np.ndarray:
    """Per-vertex distance (mm) on ``mask`` after rigid (or similarity) alignment of fitted to truth."""
    s, R, t = similarity_procrustes(fitted[mask], truth[mask], scale=scale)
    return np.linalg.norm(s * fitted[mask] @ R.T + t - truth[mask], axis=1) * 1e3


def run_demo(cfg: DemoConfig) -> dict:
    from tqdm import tqdm

    from headveil.render.turntable import turntable_frames, write_video

    t_start = time.perf_counter()
    model = load_embedded()
    synth = SynthConfig(subjects=1, seed=cfg.seed, image_size=cfg.image_size, yaw_range=25, pitch_range=10)
    sample = next(generate(model, synth))
    image = np.clip(sample.image * 255 + 0.5, 0, 255).astype(np.uint8)
    steps = tqdm(total=5 if cfg.evaluate else 4, desc="demo", unit="step")
    steps.set_postfix_str("fitting")
    fit = fit_image(image, model, FitConfig(refine=cfg.refine), source="demo subject")
    steps.update()
    v_fit = fit.vertices(model)
    face = model.regions["face"]
    err = vertex_errors_mm(v_fit, sample.vertices_model, face)
    err_s = vertex_errors_mm(v_fit, sample.vertices_model, face, scale=True)
    metrics = {"face_vertex_error_mm": {"rigid_mean": float(err.mean()), "rigid_median": float(np.median(err)),
                                        "similarity_mean": float(err_s.mean())},
               "landmark_rmse_px": fit.landmark_rmse_px, "photometric_rmse": fit.photometric_rmse,
               "pose_gt_deg": {"yaw": sample.pose.yaw, "pitch": sample.pose.pitch, "roll": sample.pose.roll},
               "pose_fit_deg": {k: fit.pose_dict()[f"{k}_deg"] for k in ("yaw", "pitch", "roll")},
               "seconds": fit.seconds}
    with atomic_output_dir(cfg.out) as tmp:
        write_image(tmp / "input.png", image)
        write_json(tmp / "ground_truth.json", sample_to_json(model, sample))
        for fmt in ("ply", "obj", "glb"):
            export_mesh(tmp / f"gt_mesh.{fmt}", sample.vertices_model, model.faces, model.albedo(sample.codes.beta))
        write_fit_outputs(tmp / "fit", model, fit, ("ply", "obj", "glb"))
        steps.set_postfix_str("comparison")
        from headveil.render.mesh_renderer import render_mesh
        from headveil.render.shading import SHLight

        light = SHLight(fit.lighting) if fit.lighting is not None else None
        overlay = render_mesh(fit.vertices_camera(model), model.faces, fit.camera, model.albedo(fit.albedo),
                              light=light, background=sample.image).image
        write_image(tmp / "comparison.png", np.concatenate([sample.image, overlay], 1))
        steps.update()
        steps.set_postfix_str("turntable")
        frames = turntable_frames(v_fit, model.faces, model.albedo(fit.albedo), cfg.turntable_frames,
                                  cfg.turntable_size, max_yaw=60)
        write_video(tmp / "fit_turntable.mp4", frames)
        steps.update()
        if cfg.evaluate:
            steps.set_postfix_str("evaluation set + attackers")
            metrics["evaluation"] = _demo_evaluation(tmp / "evaluation", cfg.seed)
            steps.update()
        metrics["seconds"]["total"] = time.perf_counter() - t_start
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "manifest.json", build_manifest("headveil demo", cfg, seed=cfg.seed,
                                                         backends={"detector": fit.detector, "raster": "auto"},
                                                         extra={"model": model.name}))
        steps.update()
    steps.close()
    return {"out": str(cfg.out), "metrics": metrics}


def _demo_evaluation(folder: Path, seed: int) -> dict:
    """A tiny rendered evaluation set through every registered method, evaluated and reported."""
    from headveil.pipelines.deid.registry import available_methods
    from headveil.pipelines.evaluate.evalset import EvalSetConfig, run_evalset
    from headveil.pipelines.evaluate.evaluate import EvalConfig, run_eval
    from headveil.pipelines.evaluate.report import ReportConfig, write_report

    run_evalset(EvalSetConfig(out=folder, subjects=3, views=(0.0, 25.0), lights=("front", "left"),
                              methods=tuple(available_methods()), seed=seed, image_size=192))
    m = run_eval(EvalConfig(folder=folder, classifiers=("svm",), lambdas=(1.0,), utility=False))
    write_report(ReportConfig(folder=folder))
    return {rec: {label: {k: v for k, v in mm.items() if k in ("dis_mean", "verification_rate", "detectability")}
                  for label, mm in r["methods"].items()} for rec, r in m["recognizers"].items()}
