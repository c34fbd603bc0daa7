"""``headveil demo``: the whole mission on files that ship with the packages, no user files needed.

1. Fit: draws a subject from the embedded head model, renders it, fits the model back to the render
   (landmarks + photometric refinement), exports the ground-truth and fitted meshes (PLY, OBJ,
   GLB), a turntable video of the fit and a side-by-side comparison image.
2. De-identification: ``headveil deid`` on a real photo (scikit-image's public-domain astronaut),
   with the re-identification guard's verdict per recognizer, and ``photo_comparison.png``.
3. Private reconstruction: a synthetic split capture whose face views exist only as gradient
   magnitudes, reconstructed by the two-stage preset, with Chamfer distances to the ground truth
   (kept in its own folder) after each stage.
4. Evaluation: a small rendered evaluation set through every registered method, attacked by both
   recognizers, with its HTML report.

Writes ``metrics.json`` and ``manifest.json`` and prints where everything is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.images import write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.geometry.mesh_io import export_mesh
from headveil.geometry.morphable.model import load_embedded
from headveil.geometry.metrics import vertex_errors_mm
from headveil.pipelines.commands import command
from headveil.pipelines.fit import FitConfig, fit_image, write_fit_outputs
from headveil.pipelines.synth import SynthCommand, generate, sample_to_json


@dataclass
class DemoCommand:
    """Run the demo: synthesise a subject, fit it back, export meshes and a turntable video."""

    out: Path = Path("demo_out")
    """Output folder."""
    seed: int = 3
    """Seed of the synthetic subjects."""
    image_size: int = 512
    """Side of the synthetic photo, pixels."""
    refine: bool = True
    """Photometric refinement after the landmark fit."""
    turntable_frames: int = 48
    """Frames of the turntable video."""
    turntable_size: int = 256
    """Side of the turntable frames, pixels."""
    evaluate: bool = True
    """Also render a small evaluation set (3 identities × 2 views through the registered baselines), evaluate it with the recognizers and write its HTML report (needs headveil[faces])."""
    deid: bool = True
    """Also de-identify a real photo (scikit-image's astronaut) with headveil deid (needs headveil[faces])."""
    reconstruct_steps: tuple[int, int] = (150, 150)
    """Steps of the two-stage private reconstruction (stage 1, stage 2); 0 0 skips it."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""


def run_demo(cfg: DemoCommand) -> dict:
    from tqdm import tqdm

    from headveil.render.turntable import turntable_frames, write_video

    t_start = time.perf_counter()
    model = load_embedded()
    synth = SynthCommand(subjects=1, seed=cfg.seed, image_size=cfg.image_size, yaw_range=25, pitch_range=10)
    sample = next(generate(model, synth))
    image = np.clip(sample.image * 255 + 0.5, 0, 255).astype(np.uint8)
    from headveil.common.outputs import check_output_path

    check_output_path(cfg.out, (), cfg.overwrite)
    steps = tqdm(total=4 + cfg.evaluate + cfg.deid + bool(min(cfg.reconstruct_steps)), desc="demo", unit="step")
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
    with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
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
        if cfg.deid:
            steps.set_postfix_str("de-identifying a photo")
            metrics["deid"] = _demo_deid(tmp, model)
            steps.update()
        if min(cfg.reconstruct_steps):
            steps.set_postfix_str("two-stage private reconstruction")
            metrics["reconstruction"] = _demo_reconstruction(tmp, model, cfg.seed, cfg.reconstruct_steps)
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


def _demo_deid(root: Path, model) -> dict:
    """``headveil deid`` (defaults but the guard, which only warns here so the demo shows the
    verdict) on the astronaut photo; ``photo_comparison.png`` puts the photo beside the result."""
    import skimage.data

    from headveil.common.images import read_image
    from headveil.pipelines.deid import DeidCommand, run_deid

    photo_dir = root / "photo"
    write_image(photo_dir / "astronaut.png", skimage.data.astronaut())
    res = run_deid(DeidCommand([photo_dir / "astronaut.png"], out=root / "deid", guard="warn"), model)
    if not res["done"]:
        return {"failed": res["failed"]}
    name = next(iter(res["done"].values()))
    out = read_image(root / "deid" / name / "deid.png")
    write_image(root / "photo_comparison.png", np.concatenate([skimage.data.astronaut(), out], 1))
    m = json.loads((root / "deid" / name / "face0" / "metrics.json").read_text())
    return {"folder": f"deid/{name}", "method": m["method"],
            "guard": {k: {"status": v["status"], "dis_aligned": v["dis_aligned"], "threshold": v["threshold"]}
                      for k, v in (m.get("reidentification") or {}).items()},
            "face_pixels_identical_share": m["utility"]["face_pixels_identical_share"]}


def _demo_reconstruction(root: Path, model, seed: int, steps: tuple[int, int]) -> dict:
    """A 10 + 20 view split capture (protected views as gradients only, ground truth apart),
    reconstructed with the private two-stage preset."""
    from headveil.pipelines.capture import write_synthetic_capture
    from headveil.pipelines.reconstruct import ReconstructCommand, run_reconstruct
    from headveil.render.scene import SubjectCodes
    from headveil.pipelines.synth import random_light
    from headveil.render.protect import ProtectConfig

    rng = np.random.default_rng(seed + 1000)
    c = model.sample_codes(rng)
    cap = write_synthetic_capture(root / "capture" / "s0000", model,
                                  SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"]),
                                  size=64, seed=seed, light=random_light(rng), split=(10, 20),
                                  protect=ProtectConfig(64), ground_truth=root / "capture" / "ground_truth")
    res = run_reconstruct(ReconstructCommand(cap, out=root / "reconstruction", steps=tuple(steps),
                                            ground_truth=root / "capture" / "ground_truth"))
    m = res["metrics"]
    face = lambda g: g.get("face", {}).get("chamfer_mm")  # noqa: E731
    return {"preset": m["preset"], "private": m["private"], "view_counts": m["view_counts"],
            "stage1_face_chamfer_mm": face(m["stage_meshes"].get("stage1", {}).get("geometry_vs_gt", {})),
            "stage2_face_chamfer_mm": face(m.get("geometry_vs_gt", {})), "seconds": m["seconds"]["total"]}


def _demo_evaluation(folder: Path, seed: int) -> dict:
    """A tiny rendered evaluation set through every registered method, evaluated and reported."""
    from headveil.render.deid.registry import available_methods
    from headveil.pipelines.evaluate.evalset import EvalSetCommand, run_evalset
    from headveil.pipelines.evaluate.evaluate import EvalCommand, run_eval
    from headveil.pipelines.evaluate.report import ReportCommand, write_report

    run_evalset(EvalSetCommand(out=folder, subjects=3, views=(0.0, 25.0), lights=("front", "left"),
                              methods=tuple(available_methods()), seed=seed, image_size=192))
    m = run_eval(EvalCommand(folder=folder, classifiers=("svm",), lambdas=(1.0,), utility=False))
    write_report(ReportCommand(folder=folder))
    return {rec: {label: {k: v for k, v in mm.items() if k in ("dis_mean", "verification_rate", "detectability")}
                  for label, mm in r["methods"].items()} for rec, r in m["recognizers"].items()}


def _print_demo(res: dict) -> None:
    m, out = res["metrics"], res["out"]
    print(f"\nDemo finished in {m['seconds']['total']:.0f} s. Outputs in {out}/:")
    rows = [("input.png, comparison.png", "a synthetic subject | the head fitted to it, rendered over it"),
            ("fit/ (mesh.ply .obj .glb, fit.json)", "the fitted mesh and codes; gt_mesh.* is the truth"),
            ("fit_turntable.mp4", "turntable video of the fitted head")]
    if "deid" in m:
        rows += [("photo_comparison.png", "a real photo | headveil deid's output"),
                 (f"{m['deid'].get('folder', 'deid')}/", "deid.png, manifest; face0/: mesh.ply, metrics.json (guard verdict)")]
    if "reconstruction" in m:
        rows += [("capture/s0000/", "a split capture: RGB of the back of the head, the face as gradients only"),
                 ("reconstruction/", "two-stage private reconstruction: mesh_stage1.ply, mesh.ply, metrics.json")]
    if "evaluation" in m:
        rows.append(("evaluation/eval/report.html", "recognizers attacking the registered de-identification methods"))
    rows.append(("metrics.json, manifest.json", "all numbers; config, versions, seed"))
    for name, what in rows:
        print(f"  {out}/{name:<38} {what}")
    e = m["face_vertex_error_mm"]
    print(f"Fit: face-region vertex error {e['rigid_mean']:.2f} mm (rigid), {e['similarity_mean']:.2f} mm (with "
          f"scale); landmark RMSE {m['landmark_rmse_px']:.2f} px")
    d = m.get("deid", {})
    if d.get("guard"):
        verdict = ", ".join(f"{k} {v['status']} (DIS {v['dis_aligned']:.2f}, match below {v['threshold']:.2f})"
                            for k, v in d["guard"].items())
        print(f"De-identification ({d['method']}): {verdict}")
    elif d:
        print(f"De-identification failed: {d.get('failed')}")
    r = m.get("reconstruction")
    if r:
        print(f"Private reconstruction ({r['view_counts']}): face Chamfer {r['stage1_face_chamfer_mm']:.2f} mm after "
              f"stage 1 (neutral RGB), {r['stage2_face_chamfer_mm']:.2f} mm after stage 2 (gradients), "
              f"{r['seconds']:.0f} s")


@command("demo", DemoCommand)
def _cli(cfg: DemoCommand) -> None:
    _print_demo(run_demo(cfg))
