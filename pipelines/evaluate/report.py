"""``headveil report DIR``: one self-contained HTML file from ``DIR/eval/metrics.json`` (an
evaluated set), or from a ``headveil reconstruct`` output's ``metrics.json`` (stage table and mesh
renders side by side).

Tables per recognizer (privacy and utility per method), an image grid of originals next to each
method's output, and matplotlib plots (DIS against strength per method, top-1 identification
bars). Images and plots are embedded as base64 PNG, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from headveil.common.images import read_image
from headveil.common.outputs import atomic_file
from headveil.pipelines.evaluate.evaluate import load_metrics
from headveil.pipelines.commands import command


@dataclass
class ReportCommand:
    """Write a self-contained HTML report: DIR/eval/report.html for an evaluated set, DIR/report.html for a deid, reconstruct or chep-table output."""

    folder: Annotated[Path, tyro.conf.Positional]
    """A folder that headveil eval, deid, reconstruct or chep-table wrote."""
    grid_rows: int = 4
    """Originals shown in the image grid."""
    thumb: int = 128
    """Thumbnail size in pixels."""


def _png_b64(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    return base64.b64encode(buf.tobytes()).decode()


def _fig_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "∞" if np.isinf(x) else f"{x:.3f}"
    return html.escape(str(x))


def _table(rec: str, r: dict) -> str:
    cols = [("n", "n"), ("detectability", "detected"), ("dis_mean", "DIS"),
            ("vr_own", f"verified @ own {r['own_threshold']:.3f}"), ("vr_cal", "verified @ calibrated EER thr."),
            ("tar", "TAR@FAR 0.1"), ("top1", "top-1 (SVM λ=1)"), ("psnr", "PSNR dB"), ("ssim", "SSIM"),
            ("ssim_face", "SSIM face"), ("landmark_nme", "landmark NME"), ("pose_error_deg", "pose err °"),
            ("eta_error", "η err"), ("chamfer_mm", "Chamfer mm")]
    head = "".join(f"<th>{html.escape(c)}</th>" for _, c in cols)
    body = []
    for label, m in r["methods"].items():
        vals = dict(m)
        vals["vr_own"] = m.get("verification_rate", {}).get("own")
        vals["vr_cal"] = m.get("verification_rate", {}).get("calibrated")
        vals["tar"] = (m.get("tar_at_far") or {}).get("0.1")
        vals["top1"] = ((m.get("topk") or {}).get("svm/lambda=1") or {}).get("top1")
        body.append(f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{_fmt(vals.get(k))}</td>" for k, _ in cols) + "</tr>")
    cal = r.get("calibration")
    cal_txt = ("no calibration (fewer than two identities)" if not cal else
               f"calibrated on {html.escape(cal['set'])}: EER {cal['eer']:.3f} at threshold {cal['eer_threshold']:.3f}; "
               f"at the own threshold FAR {cal['far_at_own']:.3f}, FRR {cal['frr_at_own']:.3f}")
    return (f"<h2>Attacker: {html.escape(rec)} ({html.escape(r['metric'])} distance, match below the threshold)</h2>"
            f"<p>{cal_txt}</p><table><tr><th>method</th>{head}</tr>{''.join(body)}</table>")


def _plots(metrics: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    recs = metrics["recognizers"]
    fig, axes = plt.subplots(1, len(recs), figsize=(5 * len(recs), 3.5), squeeze=False)
    for ax, (rec, r) in zip(axes[0], recs.items()):
        by_method: dict[str, list] = {}
        for label, m in r["methods"].items():
            if "dis_mean" in m and isinstance(m.get("strength"), (int, float)):
                by_method.setdefault(m["method"], []).append((m["strength"], m["dis_mean"]))
            elif "dis_mean" in m:
                ax.axhline(m["dis_mean"], ls=":", lw=1, color="gray")
                ax.text(0, m["dis_mean"], f" {label}", fontsize=7, va="bottom", color="gray")
        for name, pts in sorted(by_method.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
        ax.axhline(r["own_threshold"], color="k", lw=1, label="own threshold")
        cal = r.get("calibration")
        if cal:
            ax.axhline(cal["eer_threshold"], color="r", lw=1, ls="--", label="calibrated threshold")
        ax.set_xlabel("strength")
        ax.set_ylabel(f"DIS ({r['metric']})")
        ax.set_title(rec)
        ax.legend(fontsize=7)
    out.append(f'<h2>DIS against strength</h2><img alt="DIS vs strength" src="data:image/png;base64,{_fig_b64(fig)}">')
    fig, axes = plt.subplots(1, len(recs), figsize=(5 * len(recs), 3.5), squeeze=False)
    for ax, (rec, r) in zip(axes[0], recs.items()):
        labels = [k for k, m in r["methods"].items() if m.get("topk")]
        keys = sorted({c for k in labels for c in r["methods"][k]["topk"]})
        width = 0.8 / max(len(keys), 1)
        for j, c in enumerate(keys):
            ax.bar(np.arange(len(labels)) + j * width, [r["methods"][k]["topk"].get(c, {}).get("top1", np.nan) for k in labels],
                   width, label=c)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("top-1 accuracy")
        ax.set_title(rec)
        if keys:
            ax.legend(fontsize=6)
    out.append(f'<h2>Top-1 identification by the attackers</h2><img alt="top-1" src="data:image/png;base64,{_fig_b64(fig)}">')
    return "".join(out)


def _grid(folder: Path, cfg: ReportCommand) -> str:
    import cv2

    from headveil.pipelines.evaluate.evalset import read_rows

    if not (folder / "evalset.jsonl").is_file():
        return ""
    rows = [r for r in read_rows(folder) if r.ok]
    labels = sorted({r.method_label for r in rows if r.method != "original"})
    originals = [r for r in rows if r.method == "original"][: cfg.grid_rows]
    by_key = {(r.original_id, r.method_label): r for r in rows}
    head = "<tr><th>original</th>" + "".join(f"<th>{html.escape(lb)}</th>" for lb in labels) + "</tr>"
    body = []
    for o in originals:
        cells = []
        for lb in ["original", *labels]:
            r = by_key.get((o.id, lb))
            if r is None:
                cells.append("<td>–</td>")
                continue
            try:
                img = read_image(folder / r.files["image"]["path"])
            except Exception:  # a broken file is shown as missing, the report still renders
                cells.append("<td>unreadable</td>")
                continue
            img = cv2.resize(img, (cfg.thumb, cfg.thumb), interpolation=cv2.INTER_AREA)
            cells.append(f'<td><img alt="{html.escape(r.id)}" src="data:image/png;base64,{_png_b64(img)}"></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h2>Originals and protected images</h2><table class=grid>{head}{''.join(body)}</table>"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:right}th{background:#f3f3f3}"
          "table.grid td{padding:0}")


def _mesh_views(path: Path, size: int, yaws=(0.0, 45.0)) -> list[np.ndarray]:
    """Untextured and coloured renders of a mesh at the capture's framing (0.6 m, fov 30°)."""
    from headveil.geometry.camera import Camera, intrinsics_from_fov
    from headveil.geometry.mesh_io import load_mesh
    from headveil.pipelines.capture import orbit_c2w
    from headveil.render.mesh_renderer import render_mesh

    v, f, c = load_mesh(path)
    out = []
    for yaw in yaws:
        cam = Camera(intrinsics_from_fov(size, size, 30.0), orbit_c2w(np.radians(yaw), 0.0, 0.6), size, size)
        for colors in (None, c) if c is not None else (None,):
            img = render_mesh(v, f, cam, colors, background=(1.0, 1.0, 1.0)).image
            out.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def _terms(stage_config: dict) -> str:
    """The loss terms of a stage as ``name×weight`` (older metrics: the ``loss`` string)."""
    if "losses" in stage_config:
        return " + ".join(f"{t['term'].replace('Loss', '')}×{t['weight']:g}" for t in stage_config["losses"])
    return str(stage_config.get("loss", "?"))


def write_reconstruction_report(folder: Path, thumb: int = 192) -> Path:
    """``folder/report.html`` for a ``headveil reconstruct`` output: per-stage geometry table and
    renders of every stage's mesh (and the ground truth when the capture has one) side by side."""
    import json

    m = json.loads((folder / "metrics.json").read_text())
    rows, meshes = [], []
    for name, st in m.get("stage_meshes", {}).items():
        meshes.append((f"after {name}", folder / st["mesh"], st.get("geometry_vs_gt")))
    meshes.append((f"result ({m.get('preset', '?')})", folder / "mesh.ply", m.get("geometry_vs_gt")))
    try:
        cfg = json.loads((folder / "manifest.json").read_text())["config"]
        cap, gt_dir = Path(cfg["capture"]), cfg.get("ground_truth")
        gt = Path(gt_dir) / "gt_mesh.ply" if gt_dir else None
        if gt is None:  # a capture that carries its ground truth inside (older layout)
            rel = json.loads((cap / "transforms.json").read_text()).get("gt_mesh")
            gt = cap / rel if rel else None
        if gt is not None and gt.is_file():
            meshes.append(("ground truth", gt, None))
    except (OSError, KeyError, ValueError):
        pass
    for label, _, g in meshes:
        if g:
            face, head = g.get("face", {}), g.get("head", {})
            rows.append(f"<tr><th>{html.escape(label)}</th><td>{_fmt(face.get('chamfer_mm'))}</td>"
                        f"<td>{_fmt(face.get('fscore'))}</td><td>{_fmt(head.get('chamfer_mm'))}</td></tr>")
    stages = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v['config']['views']))}</td>"
                     f"<td>{html.escape(_terms(v['config']))}</td><td>{v['steps']}</td>"
                     f"<td>{_fmt(v.get('psnr_batch'))}</td><td>{_fmt(v.get('grad_l1_batch'))}</td>"
                     f"<td>{_fmt(v['seconds'])}</td></tr>" for k, v in m.get("stages", {}).items())
    grid = "".join(f"<tr><th>{html.escape(label)}</th>" + "".join(
        f"<td><img src='data:image/png;base64,{_png_b64(img)}' width={thumb}></td>" for img in _mesh_views(p, thumb))
        + "</tr>" for label, p, _ in meshes if p.is_file())
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>HeadVeil reconstruction report</title><style>"
           + _STYLE + "</style></head><body><h1>HeadVeil reconstruction report</h1>"
           f"<p>Preset {html.escape(str(m.get('preset')))} (private: {m.get('private')}), views "
           f"{html.escape(json.dumps(m.get('view_counts', {})))}, {m['seconds']['total']:.0f} s.</p>"
           "<h2>Stages</h2><table><tr><th>stage</th><th>views</th><th>loss</th><th>steps</th><th>batch PSNR dB</th>"
           f"<th>batch ‖g‖ L1</th><th>seconds</th></tr>{stages}</table>"
           "<h2>Geometry against the ground truth</h2><table><tr><th></th><th>face Chamfer mm</th>"
           f"<th>face F-score @1 mm</th><th>head Chamfer mm</th></tr>{''.join(rows)}</table>"
           "<h2>Meshes (front, 45°; untextured, colour field)</h2><table class=grid>" + grid + "</table></body></html>")
    path = folder / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path


def write_table1_report(folder: Path) -> Path:
    """``folder/report.html`` for a ``headveil chep-table`` output: Table 1 per recognizer and
    expression in the paper's layout, detection rates, and the example renders of identity 0."""
    import base64
    import json

    table = json.loads((folder / "table1.json").read_text())
    parts = [f"<p>Splits (targets, pivots): {html.escape(str(table['splits']))}; q ∈ {table['qs']}.</p>"]
    for rec, per_expr in table["recognizers"].items():
        for expr, rows in per_expr.items():
            cols = list(next(iter(rows.values())))
            head = "".join(f"<th>{html.escape(c.replace('none', 'not perturbed'))}</th>" for c in cols)
            body = "".join(f"<tr><td>{html.escape(rec)} + {html.escape(label)}</td>"
                           + "".join(f"<td>{100 * r[c]:.1f}%</td>" for c in cols) + "</tr>" for label, r in rows.items())
            parts.append(f"<h2>{html.escape(rec)}, expression {html.escape(expr)} (top-κ accuracy)</h2>"
                         f"<table><tr><th>h</th>{head}</tr>{body}</table>")
        det = table["detected"][rec]
        parts.append("<p>Detected by the recognizer's own detector: "
                     + ", ".join(f"{html.escape(k)} {100 * v:.1f}%" for k, v in det.items()) + "</p>")
    ex = sorted((folder / "examples").glob("*.png"))
    if ex:
        parts.append("<h2>Identity 0, neutral</h2><div>" + "".join(
            f"<figure style='display:inline-block'><img alt='{html.escape(p.stem)}' "
            f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
            f"<figcaption>{html.escape(p.stem.split('_', 1)[1])}</figcaption></figure>" for p in ex) + "</div>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>HeadVeil CHEP Table 1</title><style>" + _STYLE
           + "</style></head><body><h1>CHEP + SBC: Table 1</h1>" + "".join(parts) + "</body></html>")
    path = folder / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path


def write_deid_report(folder: Path, thumb: int = 256) -> Path:
    """``folder/report.html`` for a ``headveil deid`` output: every face beside its original (read
    from the input paths ``summary.json`` lists, when they are still there) with the verifiers'
    verdicts, the donor selection and the occluders kept. The report holds the originals, so it is
    written owner-only, like the folder; do not share it."""
    import json
    import os

    summary = json.loads((folder / "summary.json").read_text())
    rows = []
    for src, name in summary.get("done", {}).items():
        out_img = folder / name / "deid.png"
        if not out_img.is_file():
            continue
        out = read_image(out_img)
        orig = read_image(src) if Path(src).is_file() else None
        for face_dir in sorted((folder / name).glob("face*")):
            m = json.loads((face_dir / "metrics.json").read_text())
            w = m["window"]
            crop = (slice(w["y0"], w["y1"]), slice(w["x0"], w["x1"]))
            cells = [f"<td><img src='data:image/png;base64,{_png_b64(x[crop])}' width={thumb}></td>" if x is not None
                     else "<td>(original not found)</td>" for x in (orig, out)]
            verdict = "".join(f"{html.escape(k)}: {html.escape(v['status'])} (DIS {_fmt(v.get('dis_aligned'))})<br>"
                              for k, v in (m.get("reidentification") or {}).items())
            app = m.get("appearance") or {}
            extra = ""
            if "selection" in app:
                sel = app["selection"]
                extra += (f"chosen by {html.escape(sel['attacker'])}: DIS {_fmt(sel['dis'])} (threshold "
                          f"{_fmt(sel['threshold'])}), {len(sel['candidates'])} candidates<br>")
                extra += "".join(f"to its donors, {html.escape(k)}: {html.escape(v['status'])} "
                                 f"({_fmt(v.get('dis'))})<br>" for k, v in app.get("donor_privacy", {}).items())
            if "k_same" in app:
                extra += f"k-same: cluster of {app['k_same']['cluster_size']} (K = {app['k_same']['k']})<br>"
            extra += f"occluder pixels kept: {m['utility'].get('occluder_pixels_kept', 0)}"
            rows.append(f"<tr><th>{html.escape(name)}/{html.escape(face_dir.name)}</th>{''.join(cells)}"
                        f"<td>{verdict}{extra}</td></tr>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>HeadVeil de-identification report</title><style>"
           + _STYLE + "</style></head><body><h1>HeadVeil de-identification report</h1>"
           f"<p>{len(summary.get('done', {}))} image(s) done, {len(summary.get('failed', {}))} failed. This page "
           "shows the original photos: keep it private.</p><table class=grid><tr><th>face</th><th>original</th>"
           "<th>de-identified</th><th>verdicts</th></tr>" + "".join(rows) + "</table></body></html>")
    path = folder / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def _privacy_rows(label: str, tab: dict | None) -> str:
    if tab is None:
        return f"<tr><th>{html.escape(label)}</th><td colspan=4>not measured</td></tr>"
    cell = lambda d: (f"{_fmt(d.get('achieved'))} (asked {_fmt(d.get('requested'))}"  # noqa: E731
                      + (", met" if d.get("met") else ", missed" if "met" in d else "") + ")")
    return (f"<tr><th>{html.escape(label)}</th><td>{cell(tab['k_anonymity'])}</td><td>{cell(tab['l_diversity'])}</td>"
            f"<td>{cell(tab['t_closeness'])}</td><td>{tab['classes']}</td></tr>")


def write_anonymize_report(folder: Path, thumb: int = 256) -> Path:
    """``folder/report.html`` for a ``headveil anonymize`` output: the privacy table before, as
    planned and as re-measured on the outputs, attribute fidelity, verdicts and every released
    photo with its faces' assigned attributes. It holds the originals' attribute values (the audit):
    owner-only, like the folder."""
    import json
    import os

    a = json.loads((folder / "audit" / "privacy.json").read_text())
    rel = json.loads((folder / "release" / "attributes.json").read_text())
    fid = a["fidelity"]
    head = ("<table class=grid><tr><th></th><th>k-anonymity</th><th>l-diversity</th><th>t-closeness</th><th>classes</th></tr>"
            + _privacy_rows("before", a["before"]) + _privacy_rows("planned", a["planned"])
            + _privacy_rows("re-measured on the outputs", a["achieved_remeasured"]) + "</table>")
    facts = (f"<p>{a['faces']} faces; quasi-identifiers {html.escape(', '.join(rel['quasi_identifiers']))}; sensitive "
             f"{html.escape(rel['sensitive'])}. Changed attributes realised: {_fmt(fid['changed_realised'])} of "
             f"{fid['changed_pairs']} pairs; unchanged kept: {_fmt(fid['unchanged_kept'])} of {fid['unchanged_pairs']}; "
             f"mean pose error {_fmt(a['pose_error_deg'])}°; matched to the original: "
             + ", ".join(f"{html.escape(k)} {v}" for k, v in a["reidentified"].items()) + "</p>")
    by_image: dict = {}
    for f in rel["faces"]:
        by_image.setdefault(f["image"], []).append(f)
    rows = []
    for name, fs in sorted(by_image.items()):
        img = read_image(folder / "release" / name)
        scale = thumb / max(img.shape[:2])
        small = img if scale >= 1 else img[:: max(1, int(round(1 / scale))), :: max(1, int(round(1 / scale)))]
        desc = "".join(f"face {f['face']}: " + ", ".join(f"{html.escape(k)}={'yes' if v else 'no'}"
                                                          for k, v in f["attributes"].items()) + "<br>" for f in fs)
        rows.append(f"<tr><th>{html.escape(name)}</th><td><img src='data:image/png;base64,{_png_b64(small)}'></td>"
                    f"<td>{desc}</td></tr>")
    failed = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in a["failed"].items())
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>HeadVeil anonymisation report</title><style>"
           + _STYLE + "</style></head><body><h1>HeadVeil anonymisation report</h1>" + facts + head
           + "<h2>Released photos</h2><table class=grid>" + "".join(rows) + "</table>"
           + (f"<h2>Not anonymised</h2><ul>{failed}</ul>" if failed else "") + "</body></html>")
    path = folder / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def write_report(cfg: ReportCommand) -> Path:
    """Write ``folder/eval/report.html`` (an evaluated set) or ``folder/report.html`` (a
    ``headveil reconstruct`` output) atomically; returns its path."""
    folder = Path(cfg.folder)
    if (folder / "summary.json").is_file() and '"headveil deid"' in (folder / "summary.json").read_text():
        return write_deid_report(folder, max(cfg.thumb, 192))
    if (folder / "audit" / "privacy.json").is_file() and (folder / "release" / "attributes.json").is_file():
        return write_anonymize_report(folder, max(cfg.thumb, 192))
    if (folder / "table1.json").is_file():
        return write_table1_report(folder)
    if (folder / "metrics.json").is_file() and not (folder / "eval" / "metrics.json").is_file():
        return write_reconstruction_report(folder, max(cfg.thumb, 160))
    metrics = load_metrics(folder)
    parts = [f"<p>{metrics['n_images']} images ({html.escape(metrics['mode'])}); "
             f"{len(metrics['failures'])} failed rows.</p>"]
    for rec, r in metrics["recognizers"].items():
        parts.append(_table(rec, r))
    parts.append(_plots(metrics))
    parts.append(_grid(folder, cfg))
    if metrics["failures"]:
        parts.append("<h2>Failures</h2><ul>" + "".join(
            f"<li>{html.escape(f['id'])} ({html.escape(f['stage'])}): {html.escape(f['error'])}</li>"
            for f in metrics["failures"]) + "</ul>")
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>HeadVeil evaluation report</title><style>"
           + _STYLE + "</style></head><body><h1>HeadVeil evaluation report</h1>"
           + "".join(parts) + "</body></html>")
    path = folder / "eval" / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path


@command("report", ReportCommand)
def _cli(cfg: ReportCommand) -> int | None:
    print(f"wrote {write_report(cfg)}")
