"""The ``headveil`` command line, generated from the typed configs with tyro.

Subcommands: ``info``, ``synth``, ``fit``, ``demo``, ``evalset``, ``eval``, ``report``,
``reconstruct``, ``protect``, ``deid``, ``recover``, ``keygen``, ``chep-table``, ``build-model``. Every
subcommand has ``--help``.

Exit status, the same for every command: 0 all inputs done; 1 some inputs failed (each listed in
the command's ``summary.json`` and on stderr), the others done; 2 a usage error (bad option, unsafe
output path, unreadable settings; one line on stderr, nothing written); 3 every input failed;
130 interrupted (Ctrl-C; a batch writes its summary first).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _subcommands() -> dict:
    from headveil.pipelines.build_model import BuildModelConfig
    from headveil.pipelines.deid.run import DeidCommand, RecoverCommand
    from headveil.pipelines.demo import DemoConfig
    from headveil.pipelines.evaluate.evalset import EvalSetConfig
    from headveil.pipelines.evaluate.table1 import Table1Config
    from headveil.pipelines.evaluate.evaluate import EvalConfig
    from headveil.pipelines.evaluate.report import ReportConfig
    from headveil.pipelines.fit import FitCommand
    from headveil.pipelines.info import InfoCommand
    from headveil.pipelines.keygen import KeygenCommand
    from headveil.pipelines.protect import ProtectCommand
    from headveil.pipelines.reconstruct import ReconstructConfig
    from headveil.pipelines.synth import SynthConfig

    return {"info": InfoCommand, "synth": SynthConfig, "fit": FitCommand, "demo": DemoConfig,
            "evalset": EvalSetConfig, "eval": EvalConfig, "report": ReportConfig, "reconstruct": ReconstructConfig,
            "protect": ProtectCommand, "deid": DeidCommand, "recover": RecoverCommand, "keygen": KeygenCommand, "chep-table": Table1Config,
            "build-model": BuildModelConfig}


EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def batch_status(n_done: int, n_failed: int) -> int:
    """The exit status of a batch: 0 all done, 1 some failed, 3 all failed."""
    if not n_failed:
        return EXIT_OK
    return EXIT_PARTIAL if n_done else EXIT_FAILED


def dispatch(cfg) -> int:
    """Run a parsed config; returns the process exit status."""
    from headveil.pipelines.build_model import BuildModelConfig, run_build_model
    from headveil.pipelines.deid.run import DeidCommand, RecoverCommand, run_deid, run_recover
    from headveil.pipelines.demo import DemoConfig, run_demo
    from headveil.pipelines.evaluate.table1 import Table1Config, format_markdown, run_table1
    from headveil.pipelines.evaluate.evalset import EvalSetConfig, run_evalset
    from headveil.pipelines.evaluate.evaluate import EvalConfig, run_eval
    from headveil.pipelines.evaluate.report import ReportConfig, write_report
    from headveil.pipelines.fit import FitCommand, run_fit
    from headveil.pipelines.info import InfoCommand, collect_info, format_info
    from headveil.pipelines.keygen import KeygenCommand, run_keygen
    from headveil.pipelines.protect import ProtectCommand, run_protect
    from headveil.pipelines.reconstruct import ReconstructConfig, run_reconstruct
    from headveil.pipelines.synth import SynthConfig, run_synth

    if isinstance(cfg, InfoCommand):
        info = collect_info()
        print(json.dumps(info, indent=2) if cfg.json else format_info(info))
    elif isinstance(cfg, SynthConfig):
        out = run_synth(cfg)
        if cfg.capture:
            n = sum(cfg.capture_split) if cfg.capture_split else cfg.capture_views
            nxt = (f"headveil reconstruct {out}/s0000 --ground-truth {out}/ground_truth/s0000 --out recon"
                   if cfg.capture_protect else
                   f"headveil protect {out}/s0000 --out {out}/s0000_protected, then headveil reconstruct "
                   f"{out}/s0000_protected --ground-truth {out}/ground_truth/s0000 --out recon")
            print(f"wrote {cfg.subjects} capture(s) of {n} views to {out}/s*/ (ground truth, never to be sent, in "
                  f"{out}/ground_truth/); next: {nxt}")
        else:
            print(f"wrote {cfg.subjects * cfg.views} images with ground truth to {out}/")
    elif isinstance(cfg, FitCommand):
        summary = run_fit(cfg)
        print(f"fitted {len(summary['done'])} face(s) into {summary['out']}/"
              + (f"; {len(summary['failed'])} image(s) failed (listed in summary.json)" if summary["failed"] else ""))
        return batch_status(len(summary["done"]), len(summary["failed"]))
    elif isinstance(cfg, DemoConfig):
        res = run_demo(cfg)
        _print_demo(res)
    elif isinstance(cfg, EvalSetConfig):
        res = run_evalset(cfg)
        print(f"evaluation set {res['out']}/: {res['rows']} rows ({res['new']} new"
              + (f", {res['failed']} failed" if res["failed"] else "") + f"); next: headveil eval {res['out']}")
    elif isinstance(cfg, EvalConfig):
        m = run_eval(cfg)
        print(f"metrics of {m['n_images']} images in {cfg.folder}/eval/metrics.json (+ rows.csv, summary_*.csv)"
              + (f"; {len(m['failures'])} row(s) failed, listed there" if m["failures"] else "")
              + f"; next: headveil report {cfg.folder}")
    elif isinstance(cfg, ReportConfig):
        print(f"wrote {write_report(cfg)}")
    elif isinstance(cfg, ReconstructConfig):
        res = run_reconstruct(cfg)
        m = res["metrics"]
        line = f"reconstructed in {m['seconds']['total']:.0f} s: {res['out']}/mesh.ply ({m['mesh']['vertices']} vertices)"
        geo = m.get("geometry_vs_gt")
        if geo:
            line += f"; Chamfer vs ground truth {geo['head']['chamfer_mm']:.2f} mm (head)"
            if "chamfer_mm" in geo.get("face", {}):
                line += f", {geo['face']['chamfer_mm']:.2f} mm (face)"
            for name, st in m.get("stage_meshes", {}).items():
                face = st.get("geometry_vs_gt", {}).get("face", {})
                if "chamfer_mm" in face:
                    line += f"; after {name}: {face['chamfer_mm']:.2f} mm (face)"
        print(line)
    elif isinstance(cfg, ProtectCommand):
        res = run_protect(cfg)
        print(f"wrote {res['written']} gradient image(s) to {res['out']}/"
              + (f"; {len(res['failed'])} failed (listed in manifest.json)" if res["failed"] else "")
              + ("; next: headveil reconstruct " + str(res["out"]) + " --preset two-stage"
                 if (Path(res["out"]) / "transforms.json").is_file() else ""))
    elif isinstance(cfg, DeidCommand):
        res = run_deid(cfg)
        print(f"de-identified {len(res['done'])} image(s) into {res['out']}/ in {res['seconds']:.1f} s"
              + (f"; {len(res['failed'])} failed (listed in summary.json)" if res["failed"] else ""))
        for name, why in res.get("attention", {}).items():
            print(f"  {name}: {why}", file=sys.stderr)
        return batch_status(len(res["done"]), len(res["failed"]))
    elif isinstance(cfg, RecoverCommand):
        res = run_recover(cfg)
        print(f"wrote {res['out']}/recovered.png")
    elif isinstance(cfg, KeygenCommand):
        print(f"wrote a new 256-bit key to {run_keygen(cfg)} (mode 600); keep it secret and keep a copy: "
              "without it an id-keyed output cannot be recovered")
    elif isinstance(cfg, Table1Config):
        print(format_markdown(run_table1(cfg)))
        print(f"tables in {cfg.out}/table1.json and table1.md")
    elif isinstance(cfg, BuildModelConfig):
        run_build_model(cfg)
    else:  # pragma: no cover - tyro only returns the registered types
        raise TypeError(type(cfg))
    return 0


def _print_demo(res: dict) -> None:
    m, out = res["metrics"], res["out"]
    print(f"\nDemo finished in {m['seconds']['total']:.0f} s. Outputs in {out}/:")
    rows = [("input.png, comparison.png", "a synthetic subject | the head fitted to it, rendered over it"),
            ("fit/ (mesh.ply .obj .glb, fit.json)", "the fitted mesh and codes; gt_mesh.* is the truth"),
            ("fit_turntable.mp4", "turntable video of the fitted head")]
    if "deid" in m:
        rows += [("photo_comparison.png", "a real photo | headveil deid's output"),
                 (f"{m['deid'].get('folder', 'deid')}/", "deid.png, mesh.ply, metrics.json (guard verdict), manifest")]
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


def main(argv: list[str] | None = None) -> None:
    import tyro

    from headveil.common.errors import HeadVeilError

    cfg = tyro.extras.subcommand_cli_from_dict(_subcommands(), args=argv, prog="headveil",
                                               description="HeadVeil: privacy-preserving 3D heads.")
    _quiet_native_logs()
    try:
        code = dispatch(cfg)
    except HeadVeilError as exc:
        print(f"headveil: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("headveil: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _quiet_native_logs() -> None:
    """Silence the native loggers of MediaPipe / TFLite / absl before they are imported, and show
    Python warnings as one line (``headveil: warning: ...``) instead of file and line."""
    import logging
    import os
    import warnings

    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.showwarning = lambda message, category, *args, **kw: print(f"headveil: warning: {message}",
                                                                         file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="headveil: %(levelname)s: %(message)s")
