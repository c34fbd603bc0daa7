"""Two-stage privacy reconstruction on synthetic subjects: the paper's Table 1 / Fig. 7 (geometry)
and Table 2 (recognition attack) analogues, and wall time.

For each subject (varied identity and expression, seeds no preset was tuned on) two captures with
the same 30 cameras at 64×64 (10 neutral behind the head, 20 protected around the face, the
FaceScape split) are written: an all-RGB one (for ``full-rgb``) and a protected one whose face
views hold only ‖g‖. Face-region Chamfer (mm) is measured for stage 1, stage 2, full-RGB and, on
the first ``--ablation-subjects`` subjects, for ``grad-only``, ``rgb+grad`` and two-stage without
L_lip.

Recognition attack: per recognizer, the fraction of probes (yaw ±25°, 256², the capture's
camera distance) verified against the subject's frontal original — originals, protected images
(‖g‖ at 64², scaled up), untextured renders of the stage-2 mesh, renders of our reconstruction
(stage-2 mesh with its colour field) and of the full-RGB reconstruction; at the recognizer's own
threshold and at the EER threshold of its synthetic calibration. A missed detection counts as
not verified.

``--face-cone C`` moves the split: protected views cover yaw ±C around the face, the neutral views
the rest (100° by default; 150° leaves the neutral views only behind the head). ``--cone-rows``
tabulates saved rows by cone and template (section ``two-stage-cone``).

Writes the ``two-stage`` section of BENCHMARKS.md. Usage:
    python benchmarks/bench_two_stage.py [--subjects 5] [--ablation-subjects 2] [--no-write]
    python benchmarks/bench_two_stage.py --geometry-only DIR --first S --subjects 1 --face-cone 150 --no-prior
    python benchmarks/bench_two_stage.py --cone-rows DIR/rows.jsonl ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

KINDS = ("original", "protected", "stage-2 mesh (no texture)", "our rendering", "full-RGB rendering")


def _probe_images(model, codes, meshes, light, size=256, yaws=(-25.0, 25.0)):
    """Reference (frontal original) and probes of every kind: ``ref uint8, {kind: [uint8 (H, W, 3)]}``."""
    import cv2

    from headveil.geometry.camera import Camera, intrinsics_from_fov
    from headveil.pipelines.capture import orbit_c2w
    from headveil.geometry.mesh_io import load_mesh
    from headveil.render.protect import gradient_preview
    from headveil.render.mesh_renderer import render_mesh
    from headveil.render.protect import ProtectConfig, protect_image

    verts = model.vertices(codes.alpha, codes.eta)
    albedo = model.albedo(codes.beta)
    K = intrinsics_from_fov(size, size, 30.0)

    def cam(yaw):
        return Camera(K, orbit_c2w(np.radians(yaw), 0.0, 0.6), size, size)

    def u8(x):
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)

    ref = u8(render_mesh(verts, model.faces, cam(0.0), albedo, light=light, background=(0, 0, 0)).image)
    out = {k: [] for k in KINDS}
    stage2 = load_mesh(meshes["stage2"])
    full = load_mesh(meshes["full"])
    for yaw in yaws:
        c = cam(yaw)
        orig = render_mesh(verts, model.faces, c, albedo, light=light, background=(0, 0, 0)).image
        out["original"].append(u8(orig))
        g = protect_image(orig, ProtectConfig(64))
        out["protected"].append(cv2.resize(gradient_preview(g), (size, size), interpolation=cv2.INTER_NEAREST))
        out["stage-2 mesh (no texture)"].append(u8(render_mesh(stage2[0], stage2[1], c, None, light=light,
                                                               background=(0, 0, 0)).image))
        out["our rendering"].append(u8(render_mesh(stage2[0], stage2[1], c, stage2[2], light=light,
                                                   background=(0, 0, 0)).image))
        out["full-RGB rendering"].append(u8(render_mesh(full[0], full[1], c, full[2], light=light,
                                                        background=(0, 0, 0)).image))
    return ref, out


def _subject(model, s):
    """Codes and light of benchmark subject ``s`` (deterministic; never used for tuning)."""
    from headveil.render.scene import SubjectCodes
    from headveil.pipelines.synth import random_expression, random_light

    rng = np.random.default_rng(9000 + s)
    c = model.sample_codes(rng)
    eta = random_expression(model, rng, 0.7) if s % 2 else np.zeros(model.n_expr, np.float32)
    return SubjectCodes(c["alpha"], eta, c["beta"]), random_light(rng)


def run_geometry(model, subjects, presets, steps2, steps1, save: Path, threads: int, prior: bool = True,
                 face_cone: float = 100.0) -> None:
    """Reconstruct ``subjects`` with ``presets``; rows go to ``save/rows.jsonl``, meshes to ``save``."""
    import torch

    from headveil.pipelines.capture import write_synthetic_capture
    from headveil.pipelines.reconstruct import ReconstructCommand, run_reconstruct
    from headveil.render.protect import ProtectConfig

    torch.set_num_threads(threads)
    save.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for s in subjects:
            codes, light = _subject(model, s)
            kw = dict(size=64, seed=s, light=light, split=(10, 20), face_cone_deg=face_cone)
            rgb = write_synthetic_capture(tmp / f"rgb{s}", model, codes, **kw)
            prot = write_synthetic_capture(tmp / f"prot{s}", model, codes, protect=ProtectConfig(64), **kw)
            for preset in presets:
                cap, st = (rgb, steps1) if preset == "full-rgb" else (prot, steps2 if "two-stage" in preset else steps1)
                t0 = time.perf_counter()
                out = tmp / f"{preset}{s}"
                m = run_reconstruct(ReconstructCommand(capture=cap, out=out, preset=preset, steps=st, resolution=128,
                                                      threads=threads, prior=prior, non_private=preset == "full-rgb",
                                                      ground_truth=cap.with_name(cap.name + "_ground_truth"))
                                    )["metrics"]
                dt = time.perf_counter() - t0
                face = lambda g: g["face"].get("chamfer_mm", np.nan)  # noqa: E731
                row = {"subject": s, "preset": preset, "seconds": dt, "threads": threads, "prior": prior,
                       "face_cone": face_cone,
                       "face_mm": face(m["geometry_vs_gt"]), "head_mm": m["geometry_vs_gt"]["head"]["chamfer_mm"]}
                if "stage1" in m["stage_meshes"]:
                    row["stage1_face_mm"] = face(m["stage_meshes"]["stage1"]["geometry_vs_gt"])
                if preset in ("two-stage", "full-rgb"):
                    shutil.copyfile(out / "mesh.ply", save / f"{preset}{s}.ply")
                with open(save / "rows.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def run_attack(model, folders: list[Path]) -> tuple[list[dict], dict]:
    """Rows of every folder and the recognition attack on the saved meshes."""
    from headveil.pipelines.evaluate.calibration import calibrate, synthetic_embeddings
    from headveil.geometry.perception.recognizers import available_recognizers, get_recognizer

    geo = [json.loads(line) for f in folders for line in (f / "rows.jsonl").read_text().splitlines() if line]
    have = lambda name: any((f / name).is_file() for f in folders)  # noqa: E731
    find = lambda name: next(f / name for f in folders if (f / name).is_file())  # noqa: E731
    subjects = sorted(s for s in {r["subject"] for r in geo} if have(f"two-stage{s}.ply") and have(f"full-rgb{s}.ply"))
    imgs = []
    for s in subjects:
        codes, light = _subject(model, s)
        imgs.append(_probe_images(model, codes, {"stage2": find(f"two-stage{s}.ply"), "full": find(f"full-rgb{s}.ply")},
                                  light))
    attack = {}
    for name in available_recognizers():
        rec = get_recognizer(name)
        E, ids, _ = synthetic_embeddings(rec)
        cal = calibrate(rec, E, ids, "synthetic")
        acc = {k: [0, 0, 0] for k in KINDS}  # verified@own, verified@eer, total
        for ref, probes in imgs:
            r = rec.embed(ref)
            for kind, ims in probes.items():
                for img in ims:
                    e = rec.embed(img)
                    acc[kind][2] += 1
                    if r is None or e is None or not (r.detected and e.detected):
                        continue
                    d = float(rec.distance(r, e))
                    acc[kind][0] += d < rec.threshold
                    acc[kind][1] += d < cal.eer_threshold
        attack[name] = {k: (100 * v[0] / v[2], 100 * v[1] / v[2]) for k, v in acc.items()}
        print(name, attack[name], flush=True)
    return geo, attack, subjects


def cone_table(rows: list[dict]) -> str:
    """Markdown table of stage 1, stage 2 and full-RGB face Chamfer by neutral-view coverage
    (``face_cone``) and template; the last row per (subject, preset, prior, cone) counts."""
    last = {}
    for r in rows:
        last[(r["subject"], r["preset"], bool(r.get("prior", True)), float(r.get("face_cone", 100.0)))] = r
    lines = ["| protected views cover yaw | neutral views | template | subjects | stage 1 face mm | stage 2 face mm "
             "| full-RGB face mm | stage 2 / stage 1 | stage 2 / full-RGB |", "|---" * 9 + "|"]
    for cone in sorted({k[3] for k in last}):
        for prior in (True, False):
            two = [r for k, r in last.items() if k[1] == "two-stage" and k[2] == prior and k[3] == cone]
            if not two:
                continue
            full = [r for k, r in last.items() if k[1] == "full-rgb" and k[2] == prior and k[3] == cone]
            s1 = np.mean([r["stage1_face_mm"] for r in two])
            s2 = np.mean([r["face_mm"] for r in two])
            fr = np.mean([r["face_mm"] for r in full]) if full else None
            full_cells = f"{fr:.2f} | {s2 / s1:.2f} | {s2 / fr:.2f}" if full else f"not run | {s2 / s1:.2f} | n/a"
            lines.append(f"| ±{cone:.0f}° | {cone:.0f}°–{360 - cone:.0f}° | {'mean head' if prior else 'none'} | "
                         f"{len(two)} | {s1:.2f} | {s2:.2f} | {full_cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--ablation-subjects", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs=2, default=None, help="stage-1 and stage-2 steps (preset defaults)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--geometry-only", type=Path, default=None, metavar="DIR",
                    help="only reconstruct (subjects from --first) and save rows + meshes to DIR")
    ap.add_argument("--first", type=int, default=0, help="first subject index (with --geometry-only)")
    ap.add_argument("--presets", nargs="+", default=None)
    ap.add_argument("--no-prior", action="store_true",
                    help="plain VolSDF fields (the paper's set-up: no 3DMM template) in every run")
    ap.add_argument("--face-cone", type=float, default=100.0,
                    help="protected views cover yaw ±this (degrees) around the face, neutral views the rest")
    ap.add_argument("--collect", type=Path, nargs="+", default=None, metavar="DIR",
                    help="skip reconstruction: attack and report the saved DIRs")
    ap.add_argument("--cone-rows", type=Path, nargs="+", default=None, metavar="JSONL",
                    help="skip reconstruction: tabulate saved rows by --face-cone and template (section two-stage-cone)")
    ap.add_argument("--machine-note", default="", help="where the geometry runs ran, when not here")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()

    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines.reconstruct import PRESETS

    if a.cone_rows is not None:
        rows = [json.loads(ln) for f in a.cone_rows for ln in f.read_text().splitlines() if ln.strip()]
        body = "### Two-stage ratios by neutral-view coverage\n\n" + cone_table(rows)
        if a.machine_note:
            body += "\n\n" + a.machine_note
        print(body)
        if not a.no_write:
            update_section("two-stage-cone", body)
        return
    model = load_embedded()
    steps2 = tuple(a.steps) if a.steps else PRESETS["two-stage"].default_steps
    steps1 = (sum(steps2),)  # single-stage runs get the two-stage run's total steps
    if a.geometry_only is not None:
        run_geometry(model, range(a.first, a.first + a.subjects), a.presets or ["two-stage", "full-rgb"],
                     steps2, steps1, a.geometry_only, a.threads, prior=not a.no_prior, face_cone=a.face_cone)
        return
    folders = a.collect
    tmpdir = None
    if folders is None:
        tmpdir = tempfile.TemporaryDirectory()
        folder = Path(tmpdir.name)
        setup = dict(prior=not a.no_prior, face_cone=a.face_cone)
        run_geometry(model, range(a.subjects), ["two-stage", "full-rgb"], steps2, steps1, folder, a.threads, **setup)
        run_geometry(model, range(a.ablation_subjects), ["two-stage-nolip", "grad-only", "rgb+grad"], steps2, steps1,
                     folder, a.threads, **setup)
        folders = [folder]
    geo, attack, attacked = run_attack(model, folders)
    setups = {(bool(r.get("prior", True)), float(r.get("face_cone", 100.0))) for r in geo}
    if len(setups) != 1:
        sys.exit(f"the rows mix set-ups (template, face cone) {sorted(setups)}; collect one at a time "
                 "(--cone-rows compares them)")
    ((prior, cone),) = setups
    times = {}
    for r in geo:
        times.setdefault(r["preset"], []).append(r["seconds"])
    n_subjects = len({r["subject"] for r in geo if r["preset"] == "two-stage"})

    def mean(preset, key):
        v = [r[key] for r in geo if r["preset"] == preset and key in r]
        return (np.nanmean(v), len(v)) if v else (np.nan, 0)

    s1, n1 = mean("two-stage", "stage1_face_mm")
    s2, _ = mean("two-stage", "face_mm")
    fr, _ = mean("full-rgb", "face_mm")
    lines = [f"### Two-stage privacy reconstruction, {n_subjects} synthetic subjects, 30 views at 64×64 "
             "(10 neutral RGB + 20 protected ‖g‖), marching cubes 128³", "",
             f"Steps: two-stage {steps2[0]} + {steps2[1]}; single-stage presets {steps1[0]}. Template: "
             + ("the model's mean head (no subject codes)" if prior else "none (plain VolSDF)")
             + f". Protected views cover yaw ±{cone:.0f}° around the face. "
             "Face-region Chamfer against the ground-truth skin.", "",
             "| run | subjects | face Chamfer mm | head Chamfer mm | wall time s (mean / max) |", "|---|---|---|---|---|",
             f"| stage 1 (neutral RGB) | {n1} | {s1:.2f} | | |"]
    for preset in ("two-stage", "two-stage-nolip", "full-rgb", "grad-only", "rgb+grad"):
        f_, n = mean(preset, "face_mm")
        h_, _ = mean(preset, "head_mm")
        if n:
            t = times[preset]
            label = {"two-stage": "stage 2 (two-stage result)"}.get(preset, preset)
            lines.append(f"| {label} | {n} | {f_:.2f} | {h_:.2f} | {np.mean(t):.0f} / {np.max(t):.0f} |")
    lines += ["", f"Ratios: stage 2 / stage 1 = {s2 / s1:.2f} (target ≤ 0.4; paper 0.33), "
              f"stage 2 / full-RGB = {s2 / fr:.2f} (target ≤ 1.3; paper 1.58). Two-stage wall time target ≤ 300 s.",
              "", "Per subject (face Chamfer mm, stage 1 → stage 2 | full-RGB):", ""]
    for s in sorted({r["subject"] for r in geo if r["preset"] == "two-stage"}):
        r2 = next(r for r in geo if r["subject"] == s and r["preset"] == "two-stage")
        rf = next(r for r in geo if r["subject"] == s and r["preset"] == "full-rgb")
        lines.append(f"- subject {s}: {r2['stage1_face_mm']:.2f} → {r2['face_mm']:.2f} | {rf['face_mm']:.2f}")
    lines += ["", f"Recognition attack (paper Table 2) on subjects {attacked}, 2 probes each (yaw ±25°): % of probes "
              "verified against the subject's frontal original, "
              "at the recognizer's own threshold / at its synthetic-calibration EER threshold.", "",
              "| recognizer | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 1) + "|"]
    for name, acc in attack.items():
        lines.append(f"| {name} | " + " | ".join(f"{acc[k][0]:.0f} / {acc[k][1]:.0f}" for k in KINDS) + " |")
    if a.machine_note:
        lines += ["", a.machine_note]
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        update_section("two-stage", "## Two-stage privacy reconstruction\n\n" + body)


if __name__ == "__main__":
    main()
