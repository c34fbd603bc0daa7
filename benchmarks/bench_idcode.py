"""ID-code de-identification (IDEudemon Step I) on the face photos shipped inside installed packages.

For every photo: fit once, then for each strength and draw run the method (photo-texture mode, no
restorer), and measure DIS (identity distance to the original) for each recognizer, the same for
the unperturbed re-render (the rendering effect alone), PSNR outside the face, pose error by
re-fitting the output, expression error, and detectability. Also measures throughput (images/min,
no photometric refinement, guard off) on the photos resized to 512². Writes the ``idcode`` section
of BENCHMARKS.md. Usage::

    python benchmarks/bench_idcode.py [--draws 10] [--synthetic 8] [--no-write]

``--synthetic N`` adds N synthetic subjects (``headveil synth`` renders at 512², |yaw| ≤ 30°), fitted
from their images like the photos, and reported in their own table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402


def _baseline(img, fit, model):
    """The unperturbed re-render: the same pipeline with α' = α (rendering effect only)."""
    from headveil.render.deid import face3d

    v = model.vertices(fit.identity, fit.expression)
    colors = face3d.photo_colors(img, model, v, fit.R, fit.t, fit.camera)
    sub = face3d.face_submesh(model)
    idx = sub.vertex_index
    return face3d.rerender_face(img, fit.camera, fit.R, fit.t, v[idx], sub.faces, v[idx], sub.faces, colors[idx],
                                unlit=True).image


def _throughput(photos, model) -> tuple[list, str]:
    """Outside-face PSNR and time per 512² image through the CLI path (guard off, after one warm-up)."""
    import cv2

    from headveil.pipelines.deid import DeidCommand, _method, deid_image
    from headveil.render.restorers import get_restorer

    cmd = DeidCommand([], method="id-noise", guard="off")
    spec, params = _method(cmd)
    outside, times, per = [], [], []
    for name, img in photos:
        img512 = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA)
        try:
            deid_image(img512, cmd, model, spec, params, {}, get_restorer("none"), {}, name)  # warm
            t0 = time.perf_counter()
            _, _, _, m, _ = deid_image(img512, cmd, model, spec, params, {}, get_restorer("none"), {}, name)
        except Exception as exc:  # e.g. no face once squashed to 512²
            print(f"{name}: {exc}")
            continue
        times.append(time.perf_counter() - t0)
        per.append(f"{name} {times[-1]:.2f} s")
        outside.append(m.utility.get("psnr_outside_face_db"))
    if not times:
        return outside, "Throughput: no photo could be timed."
    return outside, (f"Throughput at 512², no refinement, guard off, one process: {', '.join(per)}; median "
                     f"{np.median(times):.2f} s/image → {60 / np.median(times):.0f} images/min (target ≥ 60).")


def _table(rows: list[dict], recs: dict) -> list[str]:
    lines = ["| method | strength | recognizer | mean DIS | DIS > 0.6 (dlib) / > 0.637 (sface) | detected | "
             "pose err ° | expr err | PSNR dB |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], r["strength"], r["rec"]) for r in rows}, key=lambda k: (k[0] != "baseline", k))
    for meth, s, rec in keys:
        rr = [r for r in rows if (r["method"], r["strength"], r["rec"]) == (meth, s, rec)]
        dis = np.array([r["dis"] for r in rr if r["dis"] is not None])
        thr = recs[rec].threshold
        det = [r.get("detected", True) for r in rr]
        pe = [r["pose_err"] for r in rr if r.get("pose_err") is not None]
        ee = [r["expr_err"] for r in rr if r.get("expr_err") is not None]
        ps = [r["psnr"] for r in rr if r.get("psnr") is not None]
        f = lambda x, fmt: (fmt % np.mean(x)) if len(x) else "–"  # noqa: E731
        lines.append(f"| {meth} | {s:g} | {rec} | {f(dis, '%.3f')} | {f(dis > thr, '%.2f') if len(dis) else '–'} | "
                     f"{np.mean(det):.2f} | {f(pe, '%.2f')} | {f(ee, '%.3f')} | {f(ps, '%.1f')} |")
    return lines


def main() -> None:
    from headveil.geometry.morphable.model import load_embedded
    from headveil.render.deid.registry import DeidInput, apply_method, parse_method
    from headveil.pipelines.deid import _utility
    from headveil.pipelines.evaluate.calibration import package_photos
    from headveil.geometry.perception.metrics import expression_error, pose_error_deg
    from headveil.geometry.perception.recognizers import available_recognizers, get_recognizer
    from headveil.pipelines.fit import FitConfig, fit_image
    from headveil.render.scene import SubjectCodes
    from headveil.pipelines.synth import SynthCommand, generate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic subjects (0: photos only)")
    ap.add_argument("--synthetic-only", action="store_true", help="skip the photos (and the throughput line)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only time the CLI path on the photos (prints; does not touch BENCHMARKS.md)")
    a = ap.parse_args()
    model = load_embedded()
    recs = {n: get_recognizer(n) for n in available_recognizers()}
    sweeps = [("id-noise", "scale", s, a.draws) for s in (0.05, 0.15, 0.25, 0.4)]
    sweeps += [("id-dp", "epsilon", e, a.draws) for e in (1600.0, 800.0, 400.0)]
    sweeps += [("id-keyed", "theta", t, a.draws) for t in (30.0, 70.0)]  # one key per draw
    photos = package_photos()
    if a.throughput_only:
        print(_throughput(photos, model)[1])
        return
    sets = [("photos", photos)] if not a.synthetic_only else []
    if a.synthetic:
        cfg = SynthCommand(subjects=a.synthetic, views=1, seed=7, image_size=512, yaw_range=30.0, pitch_range=15.0)
        sets.append(("synthetic", [(s.name, (np.clip(s.image, 0, 1) * 255 + 0.5).astype(np.uint8))
                                   for s in generate(model, cfg)]))
    rows, used = [], {}
    for set_name, images in sets:
        used[set_name] = []
        for name, img in images:
            try:
                fit = fit_image(img, model, FitConfig(), source=name)
            except Exception as exc:  # e.g. no face found by the fitter's detector
                print(f"{name}: skipped ({exc})")
                continue
            used[set_name].append(name)
            print(f"[{set_name}] {name}", flush=True)
            pose0 = fit.pose_dict()
            p0 = (pose0["yaw_deg"], pose0["pitch_deg"], pose0["roll_deg"])
            emb0 = {n: r.embed(img) for n, r in recs.items()}
            base = _baseline(img, fit, model)
            for n, r in recs.items():
                e = r.embed(base)
                rows.append({"set": set_name, "photo": name, "method": "baseline", "strength": 0.0, "rec": n,
                             "dis": None if e is None or emb0[n] is None else float(r.distance(emb0[n], e))})
            inp = DeidInput(img, model=model, codes=SubjectCodes(fit.identity, fit.expression, fit.albedo),
                            camera=fit.camera, rigid=(fit.R, fit.t))
            for method, par, val, draws in sweeps:
                spec, params = parse_method(f"{method}:{par}={val}")
                for d in range(draws):
                    inp.extras = {"key": f"benchmark key {d}".encode()}  # id-keyed: a new key per draw
                    out = apply_method(spec, inp, params, seed=1000 + d).image
                    u = _utility(img, out, None)
                    try:
                        f2 = fit_image(out, model, FitConfig(), source=name)
                        q = f2.pose_dict()
                        pe = pose_error_deg(p0, (q["yaw_deg"], q["pitch_deg"], q["roll_deg"]))
                        ee = expression_error(fit.expression, f2.expression)
                    except Exception:  # no face found in the output counts against detectability
                        pe = ee = None
                    for n, r in recs.items():
                        e = r.embed(out)
                        rows.append({"set": set_name, "photo": name, "method": method, "strength": val, "rec": n,
                                     "draw": d, "detected": e is not None,
                                     "dis": None if e is None or emb0[n] is None else float(r.distance(emb0[n], e)),
                                     "pose_err": pe, "expr_err": ee, "psnr": u["psnr_db"]})
    outside, line = _throughput(photos, model) if not a.synthetic_only else ([], "")
    lines = ["## ID-code de-identification (id-noise / id-dp / id-keyed), photo-texture mode, no restorer\n",
             f"{a.draws} draws per strength and image (id-keyed: a new key per draw). "
             "DIS: identity distance between the input and the output — dlib L2 (match < 0.6), SFace cosine "
             "distance (match < 0.637). Baseline: the unperturbed re-render through the same pipeline "
             "(the rendering effect alone). Pose error by re-fitting the output; expression error = "
             "distance of the re-fitted η; PSNR of the whole image.\n"]
    for set_name, images in sets:
        skipped = [n for n, _ in images if n not in used[set_name]]
        if set_name == "photos":
            lines.append(f"### Real photos: {', '.join(used[set_name])} (the face photos shipped in installed "
                         f"packages that the fitter finds a face in; skipped: {', '.join(skipped) or 'none'})\n")
        else:
            lines.append(f"### Synthetic subjects: {len(used[set_name])} identities drawn from the model prior "
                         "(`headveil synth`, seed 7, 512², |yaw| ≤ 30°, |pitch| ≤ 15°, random light and "
                         f"expression), fitted from their images like the photos; skipped: {len(skipped)}\n")
        lines += _table([r for r in rows if r["set"] == set_name], recs)
        lines.append("")
    ok = [x for x in outside if x is not None]
    if outside:
        lines.append(f"\nOutside-face PSNR (face region grown by 3 px excluded), id-noise s = 0.25 at 512²: "
                     f"{'identical (∞)' if not ok else f'{min(ok):.1f}–{max(ok):.1f} dB'} over {len(outside)} photos.")
    lines.append(line)
    body = "\n".join(lines)
    print(body)
    if not a.no_write:
        update_section("idcode", body)


if __name__ == "__main__":
    main()
