"""Fit the head model to photos: detect → landmark fit → optional photometric refinement.

``fit_image`` is the Python API (returns :class:`FitResult`); ``run_fit`` is ``headveil fit``,
writing per image ``<out>/<stem>/mesh.ply`` (+ formats), ``fit.json`` and ``manifest.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import FaceTooSmallError, HeadVeilError
from headveil.common.images import check_rgb8, list_images, read_image
from headveil.common.outputs import atomic_output_dir, build_manifest, write_json
from headveil.geometry.camera import Camera
from headveil.geometry.mesh_io import MESH_FORMATS, export_mesh
from headveil.geometry.perception.detectors import Detection, detect_faces, resolve_detector
from headveil.geometry.morphable.fit_result import FitResult
from headveil.geometry.morphable.fitting import LandmarkFitConfig, fit_landmarks
from headveil.geometry.morphable.model import MorphableModel, load_embedded
from headveil.render.photometric import PhotometricConfig, refine_photometric
from headveil.pipelines.commands import command


@dataclass
class FitConfig:
    """How a photo is fitted."""

    detector: str = "auto"
    """Landmark detector: auto (MediaPipe if installed, else dlib), mediapipe or dlib."""
    face: int = 0
    """Which face when several are found: 0 = the largest, 1 = the next, …"""
    refine: bool = False
    """Run the photometric refinement (albedo, 27 SH light coefficients, α, η, pose)."""
    focal_px: float | None = None
    """Known focal length in pixels (default: 1.2 × the larger image side)."""
    min_face_px: float = 64.0
    """Faces smaller than this (geometric mean of the box sides) are rejected."""
    max_side: int = 1280
    """Larger images are detected on a downscaled copy."""
    landmarks: LandmarkFitConfig = field(default_factory=LandmarkFitConfig)
    """Landmark fit settings."""
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    """Photometric refinement settings (with --fit.refine)."""


def detect_one(image: np.ndarray, cfg: FitConfig, source: str = "<array>") -> Detection:
    """The face ``cfg.face`` (0 = largest) of ``image``, detected once (large images on a downscaled
    copy, points in ``image`` pixels).

    Raises:
        NoFaceFoundError: no face; HeadVeilError: fewer faces than ``cfg.face + 1``;
        FaceTooSmallError: the face is below ``cfg.min_face_px``.
    """
    from headveil.common.errors import NoFaceFoundError

    found = detect_faces(image, cfg.detector, cfg.max_side)
    if not found:
        raise NoFaceFoundError(source, resolve_detector(cfg.detector))
    if cfg.face >= len(found):
        raise HeadVeilError(f"{source}: face {cfg.face} requested, {len(found)} found")
    det = found[cfg.face]
    if det.size < cfg.min_face_px:
        raise FaceTooSmallError(f"{source}: face is {det.size:.0f} px, below the {cfg.min_face_px:.0f} px minimum")
    return det


def fit_image(image: np.ndarray, model: MorphableModel | None = None, config: FitConfig | None = None,
              source: str = "<array>", detection: Detection | None = None, K: np.ndarray | None = None) -> FitResult:
    """Fit one face of ``image (H, W, 3) uint8`` RGB.

    Args:
        detection: the face's landmarks in ``image`` pixels (skips detection).
        K: ``(3, 3)`` intrinsics of ``image`` in pixels (e.g. a crop of a larger photo's camera);
            default from ``config.focal_px`` or 1.2 × the larger image side, centred.

    Raises:
        NoFaceFoundError: no face (names ``source``).
        FaceTooSmallError: the face is smaller than ``config.min_face_px``.
    """

    cfg = config or FitConfig()
    model = model or load_embedded()
    image = check_rgb8(image)
    H, W = image.shape[:2]
    secs = {}
    t0 = time.perf_counter()
    detection = detect_one(image, cfg, source) if detection is None else detection
    secs["detect"] = time.perf_counter() - t0
    if detection.size < cfg.min_face_px:
        raise FaceTooSmallError(f"{source}: face is {detection.size:.0f} px, below the {cfg.min_face_px:.0f} px minimum")
    if K is not None:
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise ValueError(f"K must be a finite (3, 3) matrix; got {K.shape}")
    elif cfg.focal_px is not None:
        K = np.array([[cfg.focal_px, 0, W / 2], [0, cfg.focal_px, H / 2], [0, 0, 1.0]])
    t0 = time.perf_counter()
    lf = fit_landmarks(model, detection, W, H, cfg.landmarks, K=K)
    secs["landmark_fit"] = time.perf_counter() - t0
    alpha, eta, R, t = lf.alpha, lf.eta, lf.R, lf.t
    beta, gamma, prmse, rmse = np.zeros(model.n_albedo, np.float32), None, None, lf.rmse_px
    if cfg.refine:
        pr = refine_photometric(model, image, lf, detection, cfg.photometric)
        alpha, eta, beta, gamma, R, t = pr.alpha, pr.eta, pr.beta, pr.gamma, pr.R, pr.t
        prmse, rmse = pr.photometric_rmse, pr.landmark_rmse_px
        secs["photometric"] = pr.seconds
    return FitResult(alpha.astype(np.float32), eta.astype(np.float32), list(model.expr_names), beta.astype(np.float32),
                     gamma, R, t, Camera(lf.K, np.eye(4), W, H), rmse, detection.detector, detection.scheme, detection,
                     prmse, secs)


# -- CLI ---------------------------------------------------------------------------------------
@dataclass
class FitCommand:
    """Fit the head model to photos; writes OUT/NAME/mesh.ply, fit.json, manifest.json and OUT/summary.json."""

    images: Annotated[list[Path], tyro.conf.Positional]
    """Image files or folders of images."""
    out: Path = Path("fit_out")
    """Output folder."""
    format: tuple[str, ...] = ("ply",)
    """Mesh formats: any of ply, obj, glb (ply is always written)."""
    all_faces: bool = False
    """Fit every face found (folders NAME_face<k>) instead of one."""
    names: Literal["index", "stem"] = "index"
    """Output folder names: index (0001, 0002, … in input order) or stem (the input's file name)."""
    record_inputs: bool = False
    """Write each input's path and SHA-256 into its manifest (off by default: a hash lets anyone holding the photo confirm the link)."""
    resume: bool = False
    """Continue an interrupted batch in OUT: inputs its summary.json lists as done are skipped."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """How each photo is fitted."""


def write_fit_outputs(folder: Path, model: MorphableModel, res: FitResult, formats: tuple[str, ...]) -> None:
    verts = res.vertices(model)
    colors = model.albedo(res.albedo)
    for fmt in dict.fromkeys(("ply",) + tuple(formats)):
        export_mesh(folder / f"mesh.{fmt}", verts, model.faces, colors)
    write_json(folder / "fit.json", res.to_json())


def run_fit(cmd: FitCommand, model: MorphableModel | None = None) -> dict:
    """Fit every image; one input's failure, whatever its cause, is reported, not fatal.

    Returns the batch summary as a dict (``done`` ``{input: output name}``, ``failed``)."""
    from tqdm import tqdm

    from headveil.common.errors import NoFaceFoundError
    from headveil.common.outputs import open_output_root
    from headveil.pipelines.batch import BatchSummary, output_names, public_config

    for f in cmd.format:
        if f not in MESH_FORMATS:
            raise HeadVeilError(f"--format {f!r} is not one of {', '.join(MESH_FORMATS)}")
    model = model or load_embedded()
    paths = list_images(cmd.images)
    if not paths:
        raise HeadVeilError(f"no images found in {', '.join(map(str, cmd.images))}")
    summary = BatchSummary.load_for_resume("headveil fit", cmd.out) if cmd.resume else BatchSummary("headveil fit",
                                                                                                    cmd.out)
    open_output_root(cmd.out, "headveil fit", cmd.images, cmd.overwrite or cmd.resume, private=True)
    names = output_names(paths, cmd.names, summary.done)
    if cmd.names == "stem" and len({p.stem for p in paths}) < len(paths):
        summary.notes.append("inputs sharing a file stem were given distinct names (stem_suffix)")
        tqdm.write("[fit] inputs share a file stem: their folders are named stem_suffix (see summary.json)")
    todo = [p for p in paths if str(p) not in summary.done]
    for p in tqdm(todo, desc="fitting", unit="image", disable=len(todo) < 2):
        with summary.item(p, "fit"):
            img = read_image(p)
            faces = detect_faces(img, cmd.fit.detector, cmd.fit.max_side) if cmd.all_faces else [None]
            if cmd.all_faces and not faces:
                raise NoFaceFoundError(str(p), resolve_detector(cmd.fit.detector))
            written = []
            for k, det in enumerate(faces):
                name = names[str(p)] if not cmd.all_faces else f"{names[str(p)]}_face{k}"
                res = fit_image(img, model, cmd.fit, source=str(p), detection=det)
                with atomic_output_dir(cmd.out / name, overwrite=cmd.overwrite, private=True) as tmp:
                    write_fit_outputs(tmp, model, res, cmd.format)
                    write_json(tmp / "manifest.json", build_manifest(
                        "headveil fit", {**public_config(cmd), "record_inputs": cmd.record_inputs},
                        seed=None, inputs=[p] if cmd.record_inputs else [],
                        backends={"detector": res.detector, "raster": "embree" if cmd.fit.refine else "none"},
                        extra={"model": model.name}))
                written.append(name)
            summary.done[str(p)] = ",".join(written)
    summary.write()
    return {**summary.to_json(), "out": str(cmd.out)}


@command("fit", FitCommand)
def _cli(cfg: FitCommand) -> int | None:
    from headveil.pipelines.commands import batch_status

    summary = run_fit(cfg)
    print(f"fitted {len(summary['done'])} face(s) into {summary['out']}/"
          + (f"; {len(summary['failed'])} image(s) failed (listed in summary.json)" if summary["failed"] else ""))
    return batch_status(len(summary["done"]), len(summary["failed"]))
