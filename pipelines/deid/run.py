"""``headveil deid`` and ``headveil recover``: de-identify photos in 3D, and undo a keyed run.

Per photo: fit the head model (landmarks; photometric refinement with ``--fit.refine``), build the
method input (codes, pose, camera, and for ``render=photo`` the photo's colours on the mesh), run a
registered 3D method (``id-noise``, ``id-dp``, ``id-keyed``, ``chep``, or any other), restore with a
restorer plugin, then check re-identification with every installed recognizer. Writes per image
``OUT/<stem>/``: ``deid.png`` (no metadata), ``mesh.ply`` (+ other formats), ``metrics.json``,
``codes.json`` (the protected codes and pose, what ``recover`` needs) and ``manifest.json``.

Privacy: outputs never hold a copy of the original face region (it is re-rendered, and what the new
face leaves uncovered is inpainted); manifests record output hashes only (an input hash would let
anyone holding the photo confirm the link); keys are read from a file, never logged or written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import ExtremePoseError, HeadVeilError, ReidentifiedError
from headveil.common.images import list_images, read_image, write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, sha256_file, write_json
from headveil.pipelines.fit import FitConfig

log = logging.getLogger(__name__)

#: Method parameters the command line sets directly (option name = parameter name).
_OPTION_PARAMS = ("scale", "epsilon", "theta", "q", "b", "pivots", "render")


@dataclass
class DeidCommand:
    """De-identify faces in photos by changing their 3D identity; writes OUT/<stem>/deid.png and metrics."""

    images: Annotated[list[Path], tyro.conf.Positional]
    """Image files or folders of images."""
    method: str = "id-noise"
    """Registered method: id-noise, id-dp, id-keyed, chep (or name:key=value,...)."""
    out: Path = Path("deid_out")
    scale: float | None = None
    """id-noise: noise std s on the normalised code (default 0.25)."""
    epsilon: float | None = None
    """id-dp: privacy budget ε."""
    key_file: Path | None = None
    """id-keyed: file holding the secret key (never logged or written)."""
    theta: float | None = None
    """id-keyed: rotation θ in degrees (default 70)."""
    q: int | None = None
    """chep: pivots per target (default 10)."""
    b: float | None = None
    """chep: jump factor (default 2)."""
    pivots: str | None = None
    """chep: a pivot count drawn from the model, a .npy (Q, K) file, or a folder of fit.json."""
    render: Literal["photo", "model"] | None = None
    """Colours of the new face: photo (the input's own, default) or model (albedo, scene light)."""
    restorer: str = "none"
    """Step II restorer: none, poisson, inpaint, color-match, onnx, or a plugin."""
    restorer_model: Path | None = None
    """onnx restorer: path of the .onnx model."""
    guard: Literal["warn", "fail", "off"] = "warn"
    """Re-identification guard: warn or fail when a recognizer still matches the original."""
    max_yaw: float = 60.0
    """Faces turned further than this (degrees, yaw or pitch) are refused."""
    seed: int = 0
    format: tuple[str, ...] = ("ply",)
    """Mesh formats (ply always; glb, obj)."""
    fit: FitConfig = field(default_factory=FitConfig)


@dataclass
class RecoverCommand:
    """Undo an id-keyed de-identification with its key; writes OUT/recovered.png and codes."""

    folder: Annotated[Path, tyro.conf.Positional]
    """A folder written by `headveil deid --method id-keyed` (deid.png, codes.json, mesh.ply)."""
    key_file: Path
    """The key file used for the de-identification (a wrong key yields another identity)."""
    out: Path | None = None
    """Output folder (default FOLDER_recovered)."""


def _method(cmd: DeidCommand):
    import dataclasses

    from headveil.pipelines.deid.registry import parse_method

    spec, params = parse_method(cmd.method)
    names = {f.name for f in dataclasses.fields(params)}
    over = {}
    for par in _OPTION_PARAMS:
        val = getattr(cmd, par)
        if val is None:
            continue
        if par not in names:
            raise HeadVeilError(f"--{par} does not apply to method {spec.name!r} (its parameters: {sorted(names)})")
        over[par] = val
    return spec, dataclasses.replace(params, **over)


def _recognizers() -> dict:
    from headveil.pipelines.evaluate.recognizers import available_recognizers, get_recognizer

    return {n: get_recognizer(n) for n in available_recognizers()}


def guard_identity(original: np.ndarray, protected: np.ndarray, recognizers: dict) -> dict:
    """DIS between the original and protected face for every recognizer, and whether it still matches."""
    out = {}
    for name, rec in recognizers.items():
        a, b = rec.embed(original), rec.embed(protected)
        if a is None:
            out[name] = {"dis": None, "match": None, "note": "no face found in the original by this recognizer"}
            continue
        if b is None:
            out[name] = {"dis": None, "match": False, "detected": False}
            continue
        d = float(rec.distance(a, b))
        out[name] = {"dis": d, "match": bool(rec.is_match(d)), "threshold": rec.threshold, "metric": rec.metric,
                     "detected": True}
    return out


def _utility(original: np.ndarray, protected: np.ndarray, removed: np.ndarray | None) -> dict:
    from headveil.pipelines.evaluate.metrics import psnr, ssim

    u = {"psnr_db": psnr(original, protected), "ssim": ssim(original, protected)}
    if removed is not None and (~removed).any():
        import cv2

        grown = cv2.dilate(removed.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        u["psnr_outside_face_db"] = psnr(original, protected, ~grown)
    # identical regions give an infinite PSNR, which JSON cannot hold: written as null with a flag
    for k in [k for k, v in u.items() if isinstance(v, float) and not np.isfinite(v)]:
        u[k], u[k.replace("_db", "_identical")] = None, True
    return u


def deid_image(img: np.ndarray, cmd: DeidCommand, model, spec, params, extras: dict, restorer, recognizers: dict,
               source: str = "<array>"):
    """De-identify one photo. Returns ``(image uint8, DeidOutput, FitResult, metrics dict)``."""
    from headveil.pipelines.deid.registry import DeidInput, apply_method
    from headveil.pipelines.fit import fit_image
    from headveil.pipelines.scene import SubjectCodes
    from headveil.render.restorers import RestoreContext, restore
    from headveil.render.shading import SHLight

    t0 = time.perf_counter()
    fit = fit_image(img, model, cmd.fit, source=source)
    pose = fit.pose_dict()
    if max(abs(pose["yaw_deg"]), abs(pose["pitch_deg"])) > cmd.max_yaw:
        raise ExtremePoseError(f"{source}: head turned {pose['yaw_deg']:.0f}° yaw / {pose['pitch_deg']:.0f}° pitch, "
                               f"beyond ±{cmd.max_yaw:.0f}° (--max-yaw)")
    t_fit = time.perf_counter() - t0
    inp = DeidInput(img, landmarks68=None, model=model,
                    codes=SubjectCodes(fit.identity, fit.expression, fit.albedo), camera=fit.camera,
                    rigid=(fit.R, fit.t), light=SHLight(fit.lighting) if fit.lighting is not None else None,
                    extras={"source": source, **extras})
    out = apply_method(spec, inp, params, seed=cmd.seed)
    t_method = time.perf_counter() - t0 - t_fit
    image = out.image
    comp = out.extras.get("composite")
    if comp is not None and restorer is not None:
        image = restore(restorer, image, RestoreContext.from_mask(comp.face_mask, comp.background))
    t_restore = time.perf_counter() - t0 - t_fit - t_method
    metrics = {"method": spec.name, "params": dict(params.__dict__), **out.metrics,
               "fit": {"landmark_rmse_px": fit.landmark_rmse_px, "detector": fit.detector, "pose": {
                   k: pose[k] for k in ("yaw_deg", "pitch_deg", "roll_deg")}},
               "utility": _utility(img, image, None if comp is None else comp.removed_mask)}
    if cmd.guard != "off" and recognizers:
        g = guard_identity(img, image, recognizers)
        metrics["reidentification"] = g
        hits = [n for n, r in g.items() if r.get("match")]
        metrics["reidentified_by"] = hits
        if hits:
            msg = f"still matched to the original by {', '.join(hits)} after the {cmd.restorer!r} restorer"
            if cmd.guard == "fail":
                raise ReidentifiedError(msg)
            log.warning(msg)
    metrics["seconds"] = {"fit": t_fit, "method": t_method, "restore": t_restore,
                          "total": time.perf_counter() - t0}
    return image, out, fit, metrics


def _codes_json(spec, params, out, fit, model) -> dict:
    return {"method": spec.name, "render": getattr(params, "render", None), "theta_deg": getattr(params, "theta", None),
            "alpha_protected": None if out.codes is None else np.asarray(out.codes).tolist(),
            "expression": fit.expression.tolist(), "albedo": fit.albedo.tolist(),
            "R": np.asarray(fit.R).tolist(), "t": np.asarray(fit.t).tolist(), "camera": fit.camera.to_dict(),
            "model": model.name, "frame": "model -> OpenCV camera"}


def run_deid(cmd: DeidCommand, model=None) -> dict:
    """``headveil deid``: every image (per-image failures are reported, not fatal)."""
    from tqdm import tqdm

    from headveil.geometry.identity.codes import read_key
    from headveil.geometry.mesh_io import MESH_FORMATS, export_mesh
    from headveil.geometry.morphable.model import load_embedded
    from headveil.render.restorers import get_restorer

    for f in cmd.format:
        if f not in MESH_FORMATS:
            raise HeadVeilError(f"--format {f!r} is not one of {', '.join(MESH_FORMATS)}")
    spec, params = _method(cmd)
    model = model or load_embedded()
    extras = {}
    if spec.name == "id-keyed":
        if cmd.key_file is None:
            raise HeadVeilError("id-keyed needs --key-file FILE (the key is never written or logged)")
        extras["key"] = read_key(cmd.key_file)
    elif cmd.key_file is not None:
        raise HeadVeilError(f"--key-file applies to id-keyed only, not {spec.name!r}")
    if spec.name == "chep":
        from headveil.pipelines.deid.chep import load_pivots

        from headveil.geometry.identity.chep import CHEPPerturbation, GalleryError, check_gallery

        extras["pivots"] = check_gallery(load_pivots(params.pivots, model, params.pivot_seed), "pivot set")
        CHEPPerturbation(params.q, params.b, params.selection)
        if params.q > len(extras["pivots"]) or params.q > model.n_id:
            raise GalleryError(f"q = {params.q} needs Q ≥ q and q ≤ dim α = {model.n_id}; the pivot set has "
                               f"Q = {len(extras['pivots'])}")
    opts = {"model": str(cmd.restorer_model)} if cmd.restorer_model is not None else {}
    if cmd.restorer_model is not None and cmd.restorer != "onnx":
        raise HeadVeilError("--restorer-model applies to --restorer onnx only")
    restorer = get_restorer(cmd.restorer, **opts)
    paths = list_images(cmd.images)
    if not paths:
        raise HeadVeilError(f"no images found in {', '.join(map(str, cmd.images))}")
    recognizers = _recognizers() if cmd.guard != "off" else {}
    cmd.out.mkdir(parents=True, exist_ok=True)
    done, failed = [], {}
    t0 = time.perf_counter()
    for p in tqdm(paths, desc="de-identifying", unit="image", disable=len(paths) < 2):
        try:
            img = read_image(p)
            image, out, fit, metrics = deid_image(img, cmd, model, spec, params, extras, restorer, recognizers, str(p))
            with atomic_output_dir(cmd.out / p.stem) as tmp:
                write_image(tmp / "deid.png", image)
                if out.mesh is not None:
                    for fmt in dict.fromkeys(("ply",) + tuple(cmd.format)):
                        export_mesh(tmp / f"mesh.{fmt}", *out.mesh)
                write_json(tmp / "metrics.json", metrics)
                write_json(tmp / "codes.json", _codes_json(spec, params, out, fit, model))
                outputs = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
                write_json(tmp / "manifest.json", build_manifest(
                    "headveil deid", _public_config(cmd), seed=cmd.seed, inputs=[],
                    backends={"detector": fit.detector, "restorer": cmd.restorer,
                              "recognizers": sorted(recognizers)},
                    extra={"model": model.name, "output_sha256": outputs}))
            done.append(p.stem)
        except HeadVeilError as exc:
            failed[str(p)] = str(exc)
            tqdm.write(f"[deid] {p}: {exc}")
    summary = {"done": done, "failed": failed, "out": str(cmd.out), "seconds": time.perf_counter() - t0}
    write_json(cmd.out / "summary.json", summary)
    return summary


def _public_config(cmd: DeidCommand) -> dict:
    """The resolved config as written to manifests: the key file's path is kept, never its content."""
    import dataclasses

    cfg = dataclasses.asdict(cmd)
    cfg["images"] = [Path(p).name for p in cmd.images]
    return cfg


def run_recover(cmd: RecoverCommand, model=None) -> dict:
    """``headveil recover``: re-render the recovered identity into the de-identified photo."""
    from headveil.geometry.identity.codes import read_key, recover_keyed
    from headveil.geometry.camera import Camera
    from headveil.geometry.mesh_io import load_mesh
    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines.deid import face3d

    folder = Path(cmd.folder)
    try:
        codes = json.loads((folder / "codes.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise HeadVeilError(f"{folder}: no readable codes.json ({exc}); is this a `headveil deid` output?") from None
    if codes.get("method") != "id-keyed":
        raise HeadVeilError(f"{folder} was made with {codes.get('method')!r}; only id-keyed is reversible")
    model = model or load_embedded()
    key = read_key(cmd.key_file)
    a_prot = np.asarray(codes["alpha_protected"], np.float64)
    a = recover_keyed(a_prot, key, float(codes["theta_deg"]))
    img = read_image(folder / "deid.png")
    eta = np.asarray(codes["expression"], np.float64)
    R, t = np.asarray(codes["R"]), np.asarray(codes["t"])
    cam = Camera.from_dict(codes["camera"])
    if codes.get("render") == "photo":
        _, _, colors = load_mesh(folder / "mesh.ply")
        if colors is None or len(colors) != model.n_vertices:
            raise HeadVeilError(f"{folder}/mesh.ply lacks per-vertex colours of the {model.n_vertices}-vertex model")
    else:
        colors = model.albedo(codes["albedo"])
    sub = face3d.face_submesh(model)
    idx = sub.vertex_index
    comp = face3d.rerender_face(img, cam, R, t, model.vertices(a_prot, eta)[idx], sub.faces,
                                model.vertices(a, eta)[idx], sub.faces, colors[idx], unlit=codes.get("render") == "photo")
    out = cmd.out or folder.with_name(folder.name + "_recovered")
    with atomic_output_dir(out) as tmp:
        write_image(tmp / "recovered.png", comp.image)
        write_json(tmp / "codes.json", {**codes, "alpha_recovered": a.tolist()})
        write_json(tmp / "manifest.json", build_manifest("headveil recover", {"folder": str(folder)}, seed=None,
                                                         inputs=[], backends={}, extra={"model": model.name}))
    return {"out": str(out), "delta_norm": float(np.linalg.norm(a - a_prot))}
