"""``headveil eval DIR``: privacy, utility and geometry metrics over an evaluation set or image pairs.

Inputs:

- an evaluation set (``evalset.jsonl`` from ``headveil evalset``): rendered originals with known
  landmarks and subject ids, and each method's output;
- or a pairs folder: ``DIR/original/<name>`` and ``DIR/protected/<name>`` with matching file
  names (real photos; the identity of each pair is its name).

Outputs, written into ``DIR/eval/`` (atomically): ``metrics.json`` (summary per method and
recognizer, calibration, failures), ``rows.csv`` (per-image metrics), ``summary_<recognizer>.csv``
and ``manifest.json``.

Thresholds: on rendered sets the verification rate is reported both at the recognizer's own
threshold and at the equal-error threshold calibrated on the set's originals (synthetic heads sit
close together in recognizer space, so the own threshold over-matches); on real pairs only the
own threshold applies. Every number says which (``threshold``: ``own`` / ``calibrated``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import HeadVeilError, ImageReadError
from headveil.common.images import list_images, read_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.geometry.perception import metrics as M
from headveil.geometry.perception.recognizers import RECOGNIZERS, FaceEmbedding, available_recognizers, get_recognizer
from headveil.render.image_ops import box_mask, face_box_from_landmarks
from headveil.pipelines.commands import command


@dataclass
class EvalCommand:
    """Compute metrics over an evaluation set folder or an original/protected pairs folder."""

    folder: Annotated[Path, tyro.conf.Positional]
    """The evaluation set (with evalset.jsonl) or pairs folder (original/ + protected/)."""
    recognizers: tuple[str, ...] = RECOGNIZERS
    """Attackers to run (dlib, sface)."""
    classifiers: tuple[str, ...] = M.CLASSIFIERS
    """Top-κ identification classifiers."""
    lambdas: tuple[float, ...] = (1.0, 10.0)
    """Regularisation strengths λ of the classifiers (C = 1/λ)."""
    ks: tuple[int, ...] = (1, 5)
    """κ values for top-κ identification."""
    utility: bool = True
    """Also re-detect and re-fit for landmark, pose and expression errors (slower)."""
    fars: tuple[float, ...] = (0.01, 0.1)
    """FAR levels for TAR@FAR."""
    workers: int = 1
    """Worker processes (local) or CPUs of a local Ray runtime; a task is one original with its protected images."""
    executor: Literal["local", "ray"] = "local"
    """Where the images are measured: local or ray (extra headveil[dist]); the metrics are the same."""
    ray_address: str | None = None
    """--executor ray: auto or HOST:PORT of a running cluster; none starts a local runtime."""


@dataclass
class _Item:
    id: str
    original_id: str
    identity: str
    method: str
    label: str
    strength: float | None
    image_path: Path
    landmarks68: np.ndarray | None
    mesh_path: Path | None
    condition: str


def _items_from_evalset(folder: Path, failures: list) -> list[_Item]:
    from headveil.pipelines.evaluate.evalset import read_rows

    rows = read_rows(folder)
    if not rows:
        raise HeadVeilError(f"evaluation set {folder} has no rows")
    items = []
    for r in rows:
        if r.error is not None or "image" not in r.files:
            failures.append({"id": r.id, "stage": "evalset", "error": r.error or "no image"})
            continue
        mesh = r.files.get("mesh", {}).get("path")
        items.append(_Item(r.id, r.original_id, f"s{r.subject}", r.method, r.method_label, r.strength,
                           folder / r.files["image"]["path"],
                           np.asarray(r.landmarks68, float) if r.landmarks68 else None,
                           folder / mesh if mesh else None,
                           f"{r.pose['yaw_deg']:+.0f}/{r.light}/{r.expression}"))
    return items


def _items_from_pairs(folder: Path, failures: list) -> list[_Item]:
    orig, prot = folder / "original", folder / "protected"
    if not orig.is_dir() or not prot.is_dir():
        raise HeadVeilError(f"{folder} is neither an evaluation set (evalset.jsonl) nor a pairs folder "
                            "(original/ and protected/ with matching file names)")
    originals = {p.stem: p for p in list_images([orig])}
    protected = {p.stem: p for p in list_images([prot])}
    if not originals:
        raise HeadVeilError(f"{orig} holds no images")
    for name in sorted(set(protected) - set(originals)):
        failures.append({"id": name, "stage": "pairs", "error": f"protected/{protected[name].name} has no original"})
    items = []
    for name, p in sorted(originals.items()):
        items.append(_Item(f"{name}/original", f"{name}/original", name, "original", "original", None, p, None, None, "photo"))
        if name in protected:
            items.append(_Item(f"{name}/protected", f"{name}/original", name, "protected", "protected", None,
                               protected[name], None, None, "photo"))
        else:
            failures.append({"id": name, "stage": "pairs", "error": f"original/{p.name} has no protected counterpart"})
    return items


def _detect68(image: np.ndarray):
    from headveil.geometry.perception.detectors import detect_faces, is_available

    if not is_available("dlib"):
        return None
    found = detect_faces(image, "dlib")
    return found[0] if found else None


def _utility_fit(image, model):
    """(landmarks68 or None, (yaw, pitch, roll) or None, η or None, blendshapes or None) of an image."""
    from headveil.geometry.perception.detectors import detect_faces, is_available
    from headveil.geometry.morphable.fitting import fit_landmarks

    lm = pose = eta = bs = None
    det = _detect68(image)
    if det is not None:
        lm = det.points
    mp = detect_faces(image, "mediapipe") if is_available("mediapipe") else []
    fit_det = mp[0] if mp else det
    if fit_det is not None:
        f = fit_landmarks(model, fit_det, image.shape[1], image.shape[0])
        pose, eta = np.array(f.head_angles), f.eta
        if mp and mp[0].blendshapes:
            bs = np.array([v for _, v in sorted(mp[0].blendshapes.items())], float)
    return lm, pose, eta, bs


def _nan_mean(values) -> float | None:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    return float(v.mean()) if v.size else None


def run_eval(cfg: EvalCommand) -> dict:
    """Evaluate a folder; writes ``folder/eval/`` and returns the metrics dict."""
    folder = Path(cfg.folder)
    if not folder.is_dir():
        raise HeadVeilError(f"{folder} is not a folder")
    recs = list(cfg.recognizers)
    missing = [r for r in recs if r not in available_recognizers()]
    if missing:
        get_recognizer(missing[0])  # raises the clear missing-extra error
    failures: list[dict] = []
    is_set = (folder / "evalset.jsonl").is_file()
    items = _items_from_evalset(folder, failures) if is_set else _items_from_pairs(folder, failures)
    items.sort(key=lambda it: it.method != "original")  # originals first (stable): their results are reused
    model = None
    if cfg.utility:
        from headveil.geometry.morphable.model import load_embedded

        model = load_embedded()
    per_row, emb = _measure(items, recs, cfg, model, failures)
    done = [it for it in items if it.id in per_row]
    summary: dict = {"mode": "evalset" if is_set else "pairs", "n_images": len(done),
                     "recognizers": {r: _recognizer_summary(r, done, per_row, emb, cfg) for r in recs},
                     "failures": failures}
    _write(folder, cfg, summary, list(per_row.values()))
    return summary


def _measure(items, recs, cfg, model, failures) -> tuple[dict, dict]:
    """Read, embed and measure every image: ``(rows by id, embeddings by id and recognizer)``;
    unreadable or unpaired images are appended to ``failures``. One task per original with its
    protected images, on ``cfg.executor`` (in this process for local with one worker)."""
    import functools

    from tqdm import tqdm

    from headveil.pipelines.executor import TaskFailure, make_executor

    groups: dict[str, list] = defaultdict(list)
    for it in items:  # originals first (items are sorted so), each group keeps that order
        groups[it.original_id].append(it)
    tasks = [(g, tuple(recs), cfg) for g in groups.values()]
    in_process = cfg.executor == "local" and cfg.workers == 1
    fn = functools.partial(_measure_group, model=model) if in_process else _measure_group
    per_row: dict[str, dict] = {}
    emb: dict[str, dict[str, FaceEmbedding | None]] = defaultdict(dict)
    with make_executor(cfg.executor, cfg.workers, cfg.ray_address) as ex:
        bar = tqdm(total=len(items), desc="eval", unit="image")
        for i, res in ex.run(fn, tasks):
            bar.update(len(tasks[i][0]))
            if isinstance(res, TaskFailure):
                failures.extend({"id": it.id, "stage": "measure", "error": res.error} for it in tasks[i][0])
                continue
            rows, embs, fails = res
            per_row.update(rows)
            emb.update(embs)
            failures.extend(fails)
        bar.close()
    return {it.id: per_row[it.id] for it in items if it.id in per_row}, emb


def _measure_group(task, model=None) -> tuple[dict, dict, list]:
    """Measure one original and its protected images (an executor's task): ``(rows, embeddings,
    failures)``."""
    group, recs, cfg = task
    if model is None and cfg.utility:
        from headveil.geometry.morphable.model import load_embedded

        model = load_embedded()
    by_id = {it.id: it for it in group}
    images: dict[str, np.ndarray] = {}
    emb: dict[str, dict[str, FaceEmbedding | None]] = defaultdict(dict)
    util: dict[str, tuple] = {}
    per_row: dict[str, dict] = {}
    failures: list[dict] = []
    for it in group:
        try:
            img = read_image(it.image_path)
        except (ImageReadError, OSError) as exc:
            failures.append({"id": it.id, "stage": "read", "error": str(exc)})
            continue
        orig = images.get(it.original_id)
        if it.method != "original":
            if orig is None:
                failures.append({"id": it.id, "stage": "pair", "error": f"original {it.original_id} unavailable"})
                continue
            if orig.shape != img.shape:
                failures.append({"id": it.id, "stage": "pair", "error": f"size {img.shape[:2]} differs from the original's {orig.shape[:2]}"})
                continue
        images[it.id] = img
        lm = it.landmarks68
        if lm is None and it.method == "original":
            det = _detect68(img)
            lm = det.points if det is not None else None
            it.landmarks68 = lm
        if lm is None and it.method != "original":
            lm = by_id[it.original_id].landmarks68 if it.original_id in by_id else None
        row = {"id": it.id, "identity": it.identity, "method": it.method, "label": it.label,
               "strength": it.strength, "condition": it.condition}
        for r in recs:
            rec = get_recognizer(r)
            e = rec.embed(img, lm) if lm is not None else rec.embed(img)
            emb[it.id][r] = e
            row[f"{r}_detected"] = bool(e is not None and e.detected)
            if it.method != "original" and e is not None and emb[it.original_id].get(r) is not None:
                row[f"{r}_dis"] = float(rec.distance(e, emb[it.original_id][r]))
        if it.method != "original":
            row.update(_image_utility(orig, img, lm))
            if cfg.utility:
                if it.original_id not in util:  # once per original, not once per protected image
                    util[it.original_id] = _utility_fit(orig, model)
                row.update(_fit_utility(util[it.original_id], _utility_fit(img, model)))
            if it.mesh_path is not None:
                orig_item = by_id.get(it.original_id)
                if orig_item is not None and orig_item.mesh_path is not None:
                    row.update(_mesh_metrics(it.mesh_path, orig_item.mesh_path, model))
        per_row[it.id] = row
    return per_row, dict(emb), failures


def _image_utility(orig: np.ndarray, img: np.ndarray, lm) -> dict:
    """PSNR / SSIM of the whole image and, with landmarks, of the face box."""
    out = {"psnr": M.psnr(orig, img), "ssim": M.ssim(orig, img)}
    if lm is not None:
        mask = box_mask(face_box_from_landmarks(lm, img.shape), img.shape)
        out["psnr_face"], out["ssim_face"] = M.psnr(orig, img, mask), M.ssim(orig, img, mask)
    return out


def _fit_utility(u0: tuple, u1: tuple) -> dict:
    """Landmark, pose, expression and blendshape errors between the fits of the original (``u0``)
    and of the output (``u1``), each ``(landmarks, pose, η, blendshapes)`` with None where absent."""
    out = {"landmarks_found": u1[0] is not None}
    if u0[0] is not None and u1[0] is not None:
        out["landmark_nme"] = M.landmark_distance(u0[0], u1[0])
    if u0[1] is not None and u1[1] is not None:
        out["pose_error_deg"] = M.pose_error_deg(u0[1], u1[1])
        out["eta_error"] = M.expression_error(u0[2], u1[2])
    if u0[3] is not None and u1[3] is not None:
        out["blendshape_error"] = M.expression_error(u0[3], u1[3])
    return out


def _recognizer_summary(r: str, done, per_row: dict, emb: dict, cfg) -> dict:
    """One recognizer's results: calibration on the set's originals, then every method."""
    rec = get_recognizer(r)
    originals = [it for it in done if it.method == "original"]
    labels = sorted({it.label for it in done if it.method != "original"})
    o_ok = [it for it in originals if emb[it.id].get(r) is not None]
    out_r = {"metric": rec.metric, "own_threshold": rec.threshold, "calibration": None, "methods": {}}
    cal_thr = None
    impostor = None
    if len({it.identity for it in o_ok}) >= 2:
        from headveil.pipelines.evaluate.calibration import genuine_impostor

        E = np.stack([emb[it.id][r].vector for it in o_ok])
        g, impostor = genuine_impostor(E, [it.identity for it in o_ok], rec.metric)
        if g.size and impostor.size:
            roc = M.equal_error_rate(g, impostor)
            cal_thr = roc.eer_threshold
            far, frr = M.far_frr(g, impostor, [rec.threshold])
            out_r["calibration"] = {**roc.to_json(), "far_at_own": float(far[0]), "frr_at_own": float(frr[0]),
                                    "set": "this set's originals"}
    for label in ["original", *labels]:
        its = [it for it in done if it.label == label]
        out_r["methods"][label] = _method_summary(r, rec, label, its, per_row, emb, o_ok, cal_thr, impostor, cfg)
    return out_r


def _method_summary(r, rec, label, its, per_row, emb, o_ok, cal_thr, impostor, cfg) -> dict:
    """One method's numbers for recognizer ``r``: detectability, DIS, verification rates, utility
    means, TAR at the requested FARs against the originals, top-κ identification."""
    rows = [per_row[it.id] for it in its]
    m = {"n": len(its), "method": its[0].method if its else label,
         "detectability": M.detectability([row[f"{r}_detected"] for row in rows])}
    if label != "original":
        d = np.array([x for x in (row.get(f"{r}_dis") for row in rows) if x is not None])
        if d.size:
            m["dis_mean"], m["dis_std"] = float(d.mean()), float(d.std())
            m["verification_rate"] = {"own": M.verification_rate(d, rec.threshold)}
            if cal_thr is not None:
                m["verification_rate"]["calibrated"] = M.verification_rate(d, cal_thr)
        strengths = sorted({it.strength for it in its if it.strength is not None})
        if strengths:
            m["strength"] = strengths[0] if len(strengths) == 1 else strengths
        for key in ("psnr", "ssim", "psnr_face", "ssim_face", "landmark_nme", "pose_error_deg", "eta_error",
                    "blendshape_error", "chamfer_mm", "fscore_1mm"):
            v = _nan_mean(row.get(key) for row in rows)
            if v is not None:
                m[key] = v
        if cfg.utility:
            m["landmark_detectability"] = M.detectability([row.get("landmarks_found", False) for row in rows])
    # attack: protected probes against originals of the same identity in other conditions
    if impostor is not None and impostor.size:
        gen = [float(rec.distance(emb[it.id][r], emb[o.id][r])) for it in its if emb[it.id].get(r) is not None
               for o in o_ok if o.identity == it.identity and o.condition != it.condition]
        if gen:
            m["tar_at_far"] = {str(f): M.tar_at_far(gen, impostor, f) for f in cfg.fars}
    m["topk"] = _topk(its, o_ok, emb, r, cfg)
    return m


def _topk(probes, originals, emb, r, cfg) -> dict | None:
    """Leave-one-condition-out top-κ: train on originals of the other conditions, test the probes."""
    conds = sorted({o.condition for o in originals})
    if len(conds) < 2 or len({o.identity for o in originals}) < 2:
        return None
    out = {}
    for clf in cfg.classifiers:
        for lam in cfg.lambdas:
            hits = defaultdict(list)
            for c in conds:
                train = [o for o in originals if o.condition != c]
                test = [p for p in probes if p.condition == c and emb[p.id].get(r) is not None]
                test = [p for p in test if p.identity in {o.identity for o in train}]
                if not test or len({o.identity for o in train}) < 2:
                    continue
                acc = M.topk_identification(np.stack([emb[o.id][r].vector for o in train]), [o.identity for o in train],
                                            np.stack([emb[p.id][r].vector for p in test]), [p.identity for p in test],
                                            cfg.ks, clf, lam)
                for k, a in acc.items():
                    hits[k].append((a, len(test)))
            if hits:
                out[f"{clf}/lambda={lam:g}"] = {f"top{k}": float(sum(a * n for a, n in v) / sum(n for _, n in v))
                                                for k, v in hits.items()}
    return out or None


def _mesh_metrics(pred_path: Path, gt_path: Path, model) -> dict:
    from headveil.geometry.mesh_io import load_mesh
    from headveil.geometry.metrics import compare_meshes, faces_in_region

    pv, pf, _ = load_mesh(pred_path)
    gv, gf, _ = load_mesh(gt_path)
    kw = {}
    if model is not None and len(gv) == len(model.vertices_mean) and len(pv) == len(gv):
        region = faces_in_region(model.faces, model.regions["face"])
        kw = {"pred_face_mask": region, "gt_face_mask": region}
    d = compare_meshes(pv, pf, gv, gf, n_samples=10000, **kw)
    return {"chamfer_mm": d.chamfer_mm, "fscore_1mm": d.fscore, "normal_consistency": d.normal_consistency}


def _write(folder: Path, cfg: EvalCommand, summary: dict, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("id", "identity", "method", "label"), k))
    with atomic_output_dir(folder / "eval") as tmp:
        write_json(tmp / "metrics.json", summary)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        (tmp / "rows.csv").write_text(buf.getvalue())
        for r, rs in summary["recognizers"].items():
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["method", "n", "detectability", "dis_mean", "verification_own", "verification_calibrated",
                        "psnr", "ssim", "ssim_face", "top1_svm"])
            for label, m in rs["methods"].items():
                vr = m.get("verification_rate", {})
                top = (m.get("topk") or {}).get("svm/lambda=1", {}).get("top1")
                w.writerow([label, m["n"], m["detectability"], m.get("dis_mean"), vr.get("own"), vr.get("calibrated"),
                            m.get("psnr"), m.get("ssim"), m.get("ssim_face"), top])
            (tmp / f"summary_{r}.csv").write_text(buf.getvalue())
        inputs = [] if not (folder / "evalset.jsonl").is_file() else [folder / "evalset.jsonl"]
        write_json(tmp / "manifest.json", build_manifest("headveil eval", cfg, seed=None, inputs=inputs,
                                                         backends={"recognizers": ",".join(cfg.recognizers)}))


def load_metrics(folder: str | os.PathLike) -> dict:
    """Read ``folder/eval/metrics.json`` (raises a clear error when ``headveil eval`` has not run)."""
    p = Path(folder) / "eval" / "metrics.json"
    if not p.is_file():
        raise HeadVeilError(f"{p} is missing: run `headveil eval {folder}` first")
    return json.loads(p.read_text())


@command("eval", EvalCommand)
def _cli(cfg: EvalCommand) -> int | None:
    m = run_eval(cfg)
    print(f"metrics of {m['n_images']} images in {cfg.folder}/eval/metrics.json (+ rows.csv, summary_*.csv)"
          + (f"; {len(m['failures'])} row(s) failed, listed there" if m["failures"] else "")
          + f"; next: headveil report {cfg.folder}")
