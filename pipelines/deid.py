"""``headveil deid``: de-identify photos in 3D.

Per face of a photo (``--faces``): fit the head model in a window around it (landmarks;
photometric refinement with ``--fit.refine``), build the method input (codes, pose, camera, and
for ``render=photo`` the photo's colours on the mesh), run a registered 3D method (``id-noise``,
``id-dp``, ``id-keyed``, ``chep``, or any other), restore with a restorer plugin, paste back, then
check re-identification with every installed recognizer. Writes per photo ``OUT/NAME/``:
``deid.png`` (no metadata, every face replaced), ``manifest.json``, and per face ``faceK/``:
``mesh.ply`` (+ other formats), ``metrics.json`` (a :class:`DeidRecord`) and, for id-keyed,
``codes.json`` (the protected code and pose, what ``headveil recover`` needs:
:mod:`headveil.pipelines.recover`). The donor and k-same
appearances are built in :mod:`headveil.pipelines.appearances`; occluders are kept on top
(:mod:`headveil.render.occlusion`); batches run on an executor (:mod:`headveil.pipelines.executor`).

Privacy: no pixel inside a face's landmark outline is left equal to the photo (it is re-rendered,
and what the new face leaves uncovered is inpainted); the mesh carries colours of the output,
never of the photo; privacy noise comes from fresh OS entropy per face and run and is never
written; manifests record output hashes only (an input hash would let anyone holding the photo
confirm the link); keys are read from an owner-only file, never logged or written; outputs are
owner-only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import tyro

from headveil.common.artefacts import Artefact
from headveil.common.errors import ExtremePoseError, FaceTooSmallError, HeadVeilError, ReidentifiedError
from headveil.common.images import encode_png, list_images, read_image, write_image
from headveil.common.outputs import atomic_file, atomic_output_dir, build_manifest, sha256_file, write_json
from headveil.pipelines.appearances import (DonorSelection, choose_donor, donor_embeddings, donor_privacy,
                                            k_same_appearances, own_mouth)
from headveil.pipelines.commands import command
from headveil.pipelines.faces import FaceWindow, fit_in_window, select_faces
from headveil.pipelines.fit import FitConfig
from headveil.pipelines.recover import keyed_codes

log = logging.getLogger(__name__)

#: Method parameters the command line sets directly (option name = parameter name).
_OPTION_PARAMS = ("scale", "epsilon", "theta", "q", "b", "pivots", "appearance")
#: Command-line options whose method parameter has another name.
_PARAM_NAMES = {"appearance": "render"}


@dataclass
class DeidCommand:
    """De-identify faces in photos by changing their 3D identity; writes OUT/NAME/deid.png and metrics."""

    images: Annotated[list[Path], tyro.conf.Positional]
    """Image files or folders of images."""
    method: str = "id-noise"
    """Registered method: id-noise, id-dp, id-keyed, chep (or name:key=value,...)."""
    out: Path = Path("deid_out")
    """Output folder (one subfolder per face, summary.json)."""
    scale: Annotated[float | None, tyro.conf.arg(metavar="FLOAT", help_behavior_hint="(default: 0.25)")] = None
    """id-noise: noise std s on the normalised code."""
    epsilon: Annotated[float | None, tyro.conf.arg(metavar="FLOAT", help_behavior_hint="(default: 800)")] = None
    """id-dp: privacy budget ε (smaller = more noise)."""
    key_file: Path | None = None
    """id-keyed: file holding the secret key, at least 128 bits, mode 600 (make one with headveil keygen)."""
    theta: Annotated[float | None, tyro.conf.arg(metavar="FLOAT", help_behavior_hint="(default: 70)")] = None
    """id-keyed: rotation θ in degrees, in [0, 90)."""
    q: Annotated[int | None, tyro.conf.arg(metavar="INT", help_behavior_hint="(default: 10)")] = None
    """chep: pivots per target."""
    b: Annotated[float | None, tyro.conf.arg(metavar="FLOAT", help_behavior_hint="(default: 2)")] = None
    """chep: jump factor (0 = unchanged, above 1 escapes the hull)."""
    pivots: Annotated[str | None, tyro.conf.arg(metavar="N|FILE|DIR", help_behavior_hint="(default: 20)")] = None
    """chep: a pivot count drawn from the model, a .npy (Q, K) file, or a folder of fit.json."""
    appearance: Annotated[Literal["photo", "model", "donor", "k-same"] | None,
                          tyro.conf.arg(help_behavior_hint="(default: photo)")] = None
    """Appearance of the new face: photo (the input's own colours), model (the model albedo under the scene light), donor (other people's albedo from --donors, chosen by the FaceNet attacker, under the photo's light) or k-same (each face becomes the mean shape and albedo of a cluster of ≥ --k faces of the inputs, relit by its own light)."""
    k: int = 5
    """--appearance k-same: the smallest cluster (no output can be linked to fewer than K inputs)."""
    donors: Path | None = None
    """--appearance donor: a donor bank (headveil donors build DIR --out BANK)."""
    donor_candidates: int = 3
    """--appearance donor: the donors farthest from the face (by the selection attacker) whose mixes of two and three are tried."""
    donor_shape: float = 0.5
    """--appearance donor: how far the new shape moves from the method's code toward the donors' (0–1)."""
    donor_gender: float = 0.5
    """--appearance donor: donors whose apparent P(male) differs from the face's by more than this are tried only when fewer than two others are left (0–1; 1 tries all)."""
    donor_age: float = 15.0
    """--appearance donor: donors whose apparent age differs from the face's by more than this many years are tried only when fewer than two others are left (≥ 0; a large value tries all)."""
    restorer: str = "none"
    """Step II restorer: none, poisson, inpaint, color-match, onnx, or a plugin."""
    restorer_model: Path | None = None
    """onnx restorer: path of the .onnx model."""
    guard: Literal["fail", "warn", "off"] = "fail"
    """Re-identification guard: fail (no output for a face a recognizer still matches), warn, or off."""
    max_yaw: float = 60.0
    """Faces turned further than this (degrees, yaw or pitch) are refused."""
    seed: int | None = None
    """Only with --insecure-reproducible: a fixed seed for the privacy noise."""
    insecure_reproducible: bool = False
    """Draw the noise from --seed instead of the OS's entropy: anyone who knows the seed can subtract the noise and recover the identity. For research runs on synthetic or consenting subjects only; every output is marked."""
    faces: str = "all"
    """Which faces of a photo: all, largest, or a number N (the N largest). A face too small or turned too far is left as it is and reported."""
    workers: int = 1
    """Photos de-identified at once: worker processes (local) or CPUs of a local Ray runtime."""
    executor: Literal["local", "ray"] = "local"
    """Where the photos are processed: local or ray (extra headveil[dist]); outputs are the same."""
    ray_address: str | None = None
    """--executor ray: auto or HOST:PORT of a running cluster; none starts a local runtime."""
    names: Literal["index", "stem"] = "index"
    """Output folder names: index (0001, 0002, … in input order) or stem (the input's file name)."""
    resume: bool = False
    """Continue an interrupted batch in OUT: inputs its summary.json lists as done are skipped."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""
    format: tuple[str, ...] = ("ply",)
    """Mesh formats (ply always; glb, obj)."""
    occluders: bool = True
    """Keep what covers a face (hair strands, hat brims, hands: pixels inside the face outline that the face's skin-colour model rejects, eyes, brows and lips excepted) on top of the new face."""
    glasses: Literal["replace", "keep"] = "replace"
    """A glasses frame found by its lens outlines: replace (it goes with the face: the new face is drawn without it; a frame's shape is part of how a person is recognised) or keep (it stays on top of the new face, as worn)."""
    fits: Path | None = None
    """Reuse saved fits instead of fitting again: a headveil fit output folder (its summary.json maps inputs to fits) or one folder with fit.json for a single photo."""
    fit: FitConfig = field(default_factory=FitConfig)
    """How each photo is fitted."""


@dataclass
class DeidRecord(Artefact):
    """What ``headveil deid`` measured on one face (``metrics.json``; loads back with ``DeidRecord.load``).

    Attributes:
        method / params: the registered method and its parameters.
        change: the method's own numbers (e.g. ``delta_norm`` of the identity code, CHEP's q and Q).
        fit: landmark RMSE, detector, pose (degrees), whether the fit was ``saved`` or ``fitted``.
        window: the working window in the photo (pixels) and its scale.
        utility: PSNR / SSIM in the window (at the working scale when it was downscaled), outside the
            face, and the share of face pixels left identical to the input (0 by construction);
            occluder pixels kept on top; a glasses frame's pixels and what became of it
            (``--glasses``; "none found"; None when no occluders were searched).
        seconds: detect (the photo's one face detection, shared among the faces it found; 0 for a
            saved fit), fit, occluders (finding what stays on top of a re-rendered face, before the
            method and, where the new face grew past that search, again after it), method
            (the change itself, the occluders apart), restore, guard (the verifiers, with the donor
            distances), total (the face, from its detection to its record, the detection apart).
        reidentification: per recognizer, Recognizer.reidentify's verdict (None with --guard off);
        reidentified_by / not_detected_by: recognizer names.
        insecure_reproducible: the noise came from a fixed seed.
        appearance: with ``--appearance donor``: ``selection`` (the FaceNet attacker's candidates,
            distances, whether they were previewed (a single candidate is not: its distances are
            the output's own), the one chosen, the margin beyond its threshold, donors refused as the face's
            own, and the method's seconds split into the face's own appearance, the selection and
            the render) and ``donor_privacy`` (each verifier's distance to the chosen donors).
    """

    SCHEMA: ClassVar[str] = "headveil.deid"
    SCHEMA_VERSION: ClassVar[int] = 1

    method: str
    params: dict
    change: dict
    fit: dict
    window: dict
    utility: dict
    seconds: dict
    reidentification: dict | None = None
    reidentified_by: list = field(default_factory=list)
    not_detected_by: list = field(default_factory=list)
    insecure_reproducible: bool = False
    appearance: dict | None = None


def _method(cmd: DeidCommand):
    import dataclasses

    from headveil.render.deid.registry import parse_method

    spec, params = parse_method(cmd.method)
    names = {f.name for f in dataclasses.fields(params)}
    over = {}
    for par in _OPTION_PARAMS:
        val = getattr(cmd, par)
        if val is None:
            continue
        name = _PARAM_NAMES.get(par, par)
        if name not in names:
            raise HeadVeilError(f"--{par} does not apply to method {spec.name!r} (its parameters: {sorted(names)})")
        over[name] = "donor" if par == "appearance" and val == "k-same" else val  # k-same renders a given albedo
    return spec, dataclasses.replace(params, **over)


def _recognizers() -> dict:
    from headveil.geometry.perception.recognizers import available_recognizers, get_recognizer

    return {n: get_recognizer(n) for n in available_recognizers()}


def guard_identity(original: np.ndarray, protected: np.ndarray, recognizers: dict, others: dict | None = None) -> dict:
    """Re-identification of ``protected`` against ``original`` (both ``(H, W, 3) uint8``) by every
    recognizer: ``{name: Recognizer.reidentify(...)}`` (status ``matched`` | ``not matched`` |
    ``not detected`` | ``original not detected``, distances with the output's own detection and at
    the original's alignment); ``others`` ``{name: (M, D) embeddings}`` adds each one's
    ``dis_others``."""
    others = others or {}
    return {name: rec.reidentify(original, protected, others.get(name)) for name, rec in recognizers.items()}


def _utility(original: np.ndarray, protected: np.ndarray, removed: np.ndarray | None) -> dict:
    from headveil.geometry.perception.metrics import psnr, ssim

    u = {"psnr_db": psnr(original, protected), "ssim": ssim(original, protected)}
    if removed is not None and (~removed).any():
        import cv2

        grown = cv2.dilate(removed.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        u["psnr_outside_face_db"] = psnr(original, protected, ~grown)
    # identical regions give an infinite PSNR, which JSON cannot hold: written as null with a flag
    for k in [k for k, v in u.items() if isinstance(v, float) and not np.isfinite(v)]:
        u[k], u[k.replace("_db", "_identical")] = None, True
    return u


def _at_work_scale(win: FaceWindow, work: np.ndarray, original: np.ndarray, protected: np.ndarray,
                   removed_work: np.ndarray | None, original_is_work: bool):
    """The window's original and output ``(h, w, 3)`` and the removed mask ``removed_work (h, w)``
    at the working copy's scale (the face at most :data:`~headveil.pipelines.faces.WORK_FACE_PX`):
    what the utility metrics compare, so a 24-megapixel photo costs them no more than a 512² one.
    ``original_is_work``: the working copy ``work`` is the original's window (no other face of the
    photo was replaced before), so it is not downscaled again. Unchanged when the window was not
    downscaled."""
    if win.scale == 1.0:
        return original, protected, removed_work
    import cv2

    size = (work.shape[1], work.shape[0])
    orig = work if original_is_work else cv2.resize(original, size, interpolation=cv2.INTER_AREA)
    return orig, cv2.resize(protected, size, interpolation=cv2.INTER_AREA), removed_work


def _occluders(work: np.ndarray, det_w, region: np.ndarray, model, fit, drawn: np.ndarray | None = None,
               person: np.ndarray | None = None, glasses: str = "replace") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What covers the face in the working copy (hair, brims, hands, a frame when ``glasses`` is
    ``keep``; the person segmenter's background), kept on top of a new face: ``(occluders (h, w)
    bool, a glasses frame (h, w) bool (not skin: left out of the face's own texture whatever
    ``glasses`` says), the region searched (h, w) bool, the person segmenter's confidence (h, w)
    float32)``; ``person``, when given, is that confidence from an earlier call, reused. Searched over everything a new face can be drawn on:
    the landmark outline ``region`` and the fitted face mesh's own coverage, grown by
    :data:`REACH_GROW` of the face's size (a changed shape reaches a little farther) — the model's
    forehead rises above the outline into a fringe, its cheeks past a turned face's edge — and
    ``drawn``, what a method's new face did replace (a shape changed more than that grows past it,
    over a hat's band)."""
    import cv2

    from headveil.geometry.perception.segmentation import person_mask
    from headveil.render.deid.face3d import face_submesh, to_world
    from headveil.render.occlusion import occluder_mask
    from headveil.render.rasterize import rasterize

    sub = face_submesh(model)
    v_w = to_world(model.vertices(fit.identity, fit.expression)[sub.vertex_index], fit.R, fit.t)
    s = min(1.0, 128.0 / max(det_w.size, 1.0))  # the coverage at ≤ 128 px a face is as good, and cheap
    reach = rasterize(v_w, sub.faces, fit.camera.scaled(s)).mask.astype(np.uint8)
    if s < 1.0:
        reach = cv2.resize(reach, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_NEAREST)
    g = max(3, int(REACH_GROW * det_w.size)) | 1
    reach = cv2.dilate(reach, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (g, g))).astype(bool) | region
    if drawn is not None:
        reach |= cv2.dilate(np.asarray(drawn, np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    person = person_mask(work) if person is None else person
    occ, frame = occluder_mask(work, det_w.points, det_w.scheme, reach, person=person, glasses=glasses, with_frame=True)
    return occ, frame, reach, person


#: The largest atlas an open mouth is re-rendered from when the appearance has none of its own
#: (photo, model): the whole face is baked for it (0.16 s at 512², 0.37 s at 1024², 1.2 s at 2048²
#: for a 512-px working face). At 512² a smile's teeth are softer than the photo's, still teeth,
#: and 512² photos keep their throughput (the mouth at 1024² took it from 59 to 42 images/min).
MOUTH_ATLAS_SIDE = 512

#: How far beyond the fitted face's coverage occluders are searched, as a share of the face's size.
REACH_GROW = 0.06


def _grew_past(removed: np.ndarray, reach: np.ndarray) -> bool:
    """Whether what a method replaced (``removed (h, w) bool``) reaches past the region searched for
    occluders (``reach``) by more than a pixel's sliver (the composite grows its mask by one pixel)."""
    import cv2

    beyond = (np.asarray(removed, bool) & ~np.asarray(reach, bool)).astype(np.uint8)
    return bool(beyond.any() and cv2.erode(beyond, np.ones((3, 3), np.uint8)).any())


def deid_image(img: np.ndarray, cmd: DeidCommand, model, spec, params, extras: dict, restorer, recognizers: dict,
               source: str = "<array>", rng: np.random.Generator | None = None, saved=None, detection=None,
               original: np.ndarray | None = None, face: str | None = None, on_image=None):
    """De-identify one photo ``img (H, W, 3) uint8``.

    The face is detected once (on a downscaled copy of a large photo), then fitted, changed,
    restored and checked inside a window around it (:class:`FaceWindow`), downscaled when the face
    is larger than :data:`WORK_FACE_PX`; the result is pasted back, and every pixel outside the
    replaced face region keeps the photo's own value. Utility and re-identification are measured
    in the window. ``rng`` is the privacy noise's generator; None draws fresh OS entropy.
    ``saved``: a :class:`~headveil.geometry.morphable.fit_result.FitResult` of this photo (from
    ``headveil fit``) used instead of detecting and fitting again; ``detection``: the face to work on
    (default the largest); ``original``: the untouched photo when ``img`` already has other faces
    replaced (the guard and the no-surviving-pixel check compare with it); ``face``: its label in
    messages (``face1``) when a photo has several; ``on_image``: called with the finished photo
    ``(H, W, 3) uint8`` as soon as it is made, before the metrics and the guard (a caller can start
    encoding it beside them; the guard may still refuse it).

    Returns:
        ``(image (H, W, 3) uint8, DeidOutput, FitResult, DeidRecord, photo camera)``; the fit and
        the output mesh are in the working copy's camera, whose world frame is the photo camera's.
    """
    from headveil.geometry.camera import Camera
    from headveil.render.deid.registry import DeidInput, apply_method
    from headveil.pipelines.fit import detect_one
    from headveil.render.scene import SubjectCodes
    from headveil.render.composite import break_coincidences, face_region_from_points, identical_share
    from headveil.render.restorers import RestoreContext, restore
    from headveil.render.shading import SHLight

    t0 = time.perf_counter()
    H, W = img.shape[:2]
    if saved is not None and (saved.camera.width, saved.camera.height) != (W, H):
        raise HeadVeilError(f"{source}: the saved fit is for a {saved.camera.width}×{saved.camera.height} image, this "
                            f"photo is {W}×{H}")
    original = img if original is None else original
    if saved is not None:
        det = saved.detection
    elif detection is not None:
        det = detection
        if det.size < cmd.fit.min_face_px:
            raise FaceTooSmallError(f"{source}: face is {det.size:.0f} px, below the {cmd.fit.min_face_px:.0f} px "
                                    "minimum")
    else:
        det = detect_one(img, cmd.fit, source)
    win = FaceWindow.around(det, H, W)
    work = win.crop(img)
    det_w = win.detection_in(det, work.shape)
    if saved is not None:
        fit = dataclasses.replace(saved, detection=det_w, camera=Camera(win.camera_K(saved.camera.K, work.shape),
                                                                        np.eye(4), work.shape[1], work.shape[0]))
    else:
        fit = fit_in_window(work, win, det_w, (H, W), cmd.fit, model, source)
    pose = fit.pose_dict()
    if max(abs(pose["yaw_deg"]), abs(pose["pitch_deg"])) > cmd.max_yaw:
        raise ExtremePoseError(f"{source}: head turned {pose['yaw_deg']:.0f}° yaw / {pose['pitch_deg']:.0f}° pitch, "
                               f"beyond ±{cmd.max_yaw:.0f}° (--max-yaw)")
    t_fit = time.perf_counter() - t0
    region = face_region_from_points(det_w.points, work.shape[:2])
    donors = extras.get("_donors")
    inp = DeidInput(work, landmarks68=None, model=model,
                    codes=SubjectCodes(fit.identity, fit.expression, fit.albedo), camera=fit.camera,
                    rigid=(fit.R, fit.t), light=SHLight(fit.lighting) if fit.lighting is not None else None,
                    extras={"source": source, "face_region": region,
                            **{k: v for k, v in extras.items() if not k.startswith("_")}})
    occ_w, frame_w, reach_w, person_w, t_occ = None, None, None, None, time.perf_counter()
    if cmd.occluders and "model" in spec.needs:  # a re-rendered face: what will stay on top of it
        occ_w, frame_w, reach_w, person_w = _occluders(work, det_w, region, model, fit, glasses=cmd.glasses)
        inp.extras["occluders"] = occ_w | frame_w  # not skin: left out of the face's own texture
    t_occ = time.perf_counter() - t_occ  # recorded on its own (seconds["occluders"]), found before the method
    rng = rng if rng is not None else np.random.default_rng(np.random.SeedSequence())
    selection, cluster = None, extras.get("_cluster")
    if cluster is not None:  # k-same: the cluster's mean shape and albedo under this photo's light
        from headveil.render.appearance import NewAppearance, photo_light

        v_w = model.vertices(fit.identity, fit.expression) @ np.asarray(fit.R).T + np.asarray(fit.t)
        inp.extras["appearance"] = NewAppearance(cluster.albedo_f(), photo_light(work, model, v_w, fit.camera, fit.albedo),
                                                 cluster.alpha, 1.0, f"k-same cluster of {cluster.size}")
        out = apply_method(spec, inp, params, rng=rng)
        out.image, mouth_px = own_mouth(out.image, inp, model, fit, cluster.albedo.shape[0])  # teeth, not a flat fill
        if mouth_px:
            out.metrics["mouth_opening_px"] = mouth_px
    elif donors is not None and getattr(params, "render", None) == "donor":
        out, selection = choose_donor(inp, spec, params, rng, donors, fit, source)
    else:
        out = apply_method(spec, inp, params, rng=rng)
        given = extras.get("appearance")  # a caller's own appearance (anonymize's class face)
        if out.extras.get("composite") is not None:  # a re-rendered face: the photo's teeth, not a flat fill
            size = MOUTH_ATLAS_SIDE if given is None else given.albedo.shape[0]
            out.image, mouth_px = own_mouth(out.image, inp, model, fit, size)
            if mouth_px:
                out.metrics["mouth_opening_px"] = mouth_px
    t_method = time.perf_counter() - t0 - t_fit - t_occ
    image_w = out.image
    comp = out.extras.get("composite")
    if comp is not None and restorer is not None:
        image_w = restore(restorer, image_w, RestoreContext.from_mask(comp.face_mask, comp.background))
    t_restore = time.perf_counter() - t0 - t_fit - t_occ - t_method
    replaced_w = region if comp is None else (region | comp.removed_mask)
    image = win.paste(img, image_w, replaced_w)
    region_full = win.to_full(region, img.shape)
    occ_full = np.zeros(img.shape[:2], bool)
    if comp is not None and cmd.occluders:  # hair, brims, frames, hands stay on top of the new face
        from headveil.render.occlusion import keep_occluders

        t_more = time.perf_counter()  # a search after the method is the occluders' time too
        if occ_w is None:
            occ_w = _occluders(work, det_w, region, model, fit, comp.removed_mask, glasses=cmd.glasses)[0]
        elif _grew_past(comp.removed_mask, reach_w):  # the new face went past the search: search there too
            occ_w = occ_w | _occluders(work, det_w, region, model, fit, comp.removed_mask, person_w, cmd.glasses)[0]
        t_occ += time.perf_counter() - t_more
        occ_full = win.to_full(occ_w, img.shape)
        image = keep_occluders(image, img, occ_full, copy=False)  # the paste's own copy
    coincident = 0
    if comp is not None:  # a method that re-rendered the face: no pixel of it may equal the input's
        image, coincident = break_coincidences(original, image, win.to_full(replaced_w, img.shape) & ~occ_full,
                                               copy=False)
    if on_image is not None:
        on_image(image)
    out.image = image_w
    orig_w, prot_w = original[win.y0:win.y1, win.x0:win.x1], image[win.y0:win.y1, win.x0:win.x1]
    removed_w = None if comp is None else np.asarray(comp.removed_mask, bool)
    utility = {**_utility(*_at_work_scale(win, work, orig_w, prot_w, removed_w, img is original)),
               "face_region_pixels": int(region_full.sum()),
               "face_pixels_identical_share": identical_share(original, image, region_full & ~occ_full),
               "face_pixels_coincident_before_dither": coincident,
               "occluder_pixels_kept": int((occ_full & region_full).sum()),
               "glasses_frame_pixels": int(frame_w.sum()) if frame_w is not None else None,
               "glasses": (cmd.glasses if frame_w.any() else "none found") if frame_w is not None else None}
    record = DeidRecord(
        spec.name, dict(params.__dict__), dict(out.metrics),
        {"landmark_rmse_px": fit.landmark_rmse_px, "detector": fit.detector, "source": "saved" if saved else "fitted",
         "pose": {k: pose[k] for k in ("yaw_deg", "pitch_deg", "roll_deg")}},
        {"x0": win.x0, "y0": win.y0, "x1": win.x1, "y1": win.y1, "scale": win.scale}, utility, {})
    donor_embs = None if selection is None else donor_embeddings(selection, donors, recognizers)
    t_verify = time.perf_counter()
    if cmd.guard != "off" and recognizers:
        g = guard_identity(orig_w, prot_w, recognizers, donor_embs)
        record.reidentification = g
        record.reidentified_by = [n for n, r in g.items() if r["status"] == "matched"]
        record.not_detected_by = [n for n, r in g.items() if r["status"] in ("not detected", "original not detected")]
        if record.reidentified_by:
            msg = f"still matched to the original by {', '.join(record.reidentified_by)} after the {cmd.restorer!r} restorer"
            if cmd.guard == "fail":
                raise ReidentifiedError(msg if face is None else f"{face}: {msg}")
            log.warning(f"{source}: {msg}" if face is None else f"{source} ({face}): {msg}")
    if cluster is not None:
        record.appearance = {"k_same": {"k": cluster.k, "cluster_size": cluster.size, "cluster_people": cluster.people}}
    if selection is not None:
        record.appearance = {"selection": selection}
        if recognizers:  # from the guard's own embedding of the output when it ran
            record.appearance["donor_privacy"] = donor_privacy(prot_w, donor_embs, recognizers, record.reidentification)
    record.seconds = {"fit": t_fit, "occluders": t_occ, "method": t_method, "restore": t_restore,
                      "guard": time.perf_counter() - t_verify,  # the verifiers (guard and donor distances)
                      "total": time.perf_counter() - t0}
    record.insecure_reproducible = bool(cmd.insecure_reproducible)
    camera = Camera(win.full_K(fit.camera.K, work.shape), fit.camera.c2w, W, H)
    return image, out, fit, record, camera


def _output_mesh(out, image: np.ndarray, fit, params):
    """The mesh to export: with photo colours, re-sampled from the *output* image (the working
    copy ``out.image``, in ``fit.camera``; the original's colours never leave in a file), else the
    method's colours."""
    if out.mesh is None:
        return None
    v, f, c = out.mesh
    if getattr(params, "render", None) in ("photo", "donor"):
        from headveil.render.texture import sample_photo_colors

        c, _ = sample_photo_colors(image, np.asarray(v, np.float64), np.asarray(f), fit.camera)
    return v, f, c


def saved_fits(folder: Path | None, model) -> dict[str, object]:
    """``{resolved input path: FitResult}`` of a ``headveil fit`` output folder (through its
    summary.json), or ``{"*": FitResult}`` for a folder holding one ``fit.json``; {} for None."""
    from headveil.geometry.morphable.fit_result import FitResult

    if folder is None:
        return {}
    folder = Path(folder)
    if (folder / "fit.json").is_file():
        return {"*": FitResult.load(folder / "fit.json", model)}
    summary = folder / "summary.json"
    if not summary.is_file():
        raise HeadVeilError(f"--fits {folder}: neither a fit.json nor a headveil fit summary.json is there")
    try:
        done = json.loads(summary.read_text())["done"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise HeadVeilError(f"--fits {folder}: unreadable summary.json ({exc})") from None
    out = {}
    for src, names in done.items():
        first = str(names).split(",")[0]  # with --all-faces the first (largest) face
        if (folder / first / "fit.json").is_file():
            out[str(Path(src).resolve())] = FitResult.load(folder / first / "fit.json", model)
    return out


def _noise_seeds(cmd: DeidCommand, n: int) -> list[np.random.SeedSequence]:
    """One seed sequence per input: fresh OS entropy per face and run (never written, never sent to
    a worker: a worker draws its own), or, only with --insecure-reproducible, children of
    SeedSequence(seed) (still one per face: no shared noise)."""
    if cmd.seed is not None and not cmd.insecure_reproducible:
        raise HeadVeilError("--seed makes the privacy noise reproducible by anyone who knows it; it is refused "
                            "unless you also pass --insecure-reproducible (research runs only)")
    seq = np.random.SeedSequence(0 if cmd.seed is None else cmd.seed) if cmd.insecure_reproducible else \
        np.random.SeedSequence()
    return seq.spawn(n)


def _prepare(cmd: DeidCommand, model):
    """Everything checked before any work: method, settings, key, pivots, restorer, recognizers."""
    from headveil.geometry.identity.codes import read_key
    from headveil.geometry.mesh_io import MESH_FORMATS
    from headveil.render.restorers import get_restorer

    for f in cmd.format:
        if f not in MESH_FORMATS:
            raise HeadVeilError(f"--format {f!r} is not one of {', '.join(MESH_FORMATS)}")
    if cmd.faces not in ("all", "largest") and not (cmd.faces.isdigit() and int(cmd.faces) >= 1):
        raise HeadVeilError(f"--faces must be all, largest or a number ≥ 1; got {cmd.faces!r}")
    if not 0 < cmd.max_yaw <= 90:
        raise HeadVeilError(f"--max-yaw must be in (0, 90] degrees; got {cmd.max_yaw}")
    spec, params = _method(cmd)
    extras = {}
    if spec.name == "id-keyed":
        if cmd.key_file is None:
            raise HeadVeilError("id-keyed needs --key-file FILE (make one with headveil keygen; it is never written "
                                "or logged)")
        extras["key"] = read_key(cmd.key_file)
    elif cmd.key_file is not None:
        raise HeadVeilError(f"--key-file applies to id-keyed only, not {spec.name!r}")
    if spec.name == "chep":
        from headveil.geometry.identity.chep import CHEPPerturbation, GalleryError, check_gallery
        from headveil.render.deid.chep import load_pivots

        extras["pivots"] = check_gallery(load_pivots(params.pivots, model, params.pivot_seed), "pivot set")
        CHEPPerturbation(params.q, params.b, params.selection)
        if params.q > len(extras["pivots"]) or params.q > model.n_id:
            raise GalleryError(f"q = {params.q} needs Q ≥ q and q ≤ dim α = {model.n_id}; the pivot set has "
                               f"Q = {len(extras['pivots'])}")
    if cmd.appearance == "donor":
        from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, get_recognizer
        from headveil.pipelines.donors import DonorBank

        if cmd.donors is None:
            raise HeadVeilError("--appearance donor needs --donors BANK (make one with headveil donors build DIR --out BANK)")
        if cmd.donor_candidates < 1:
            raise HeadVeilError(f"--donor-candidates must be ≥ 1; got {cmd.donor_candidates}")
        if not 0 <= cmd.donor_shape <= 1:
            raise HeadVeilError(f"--donor-shape must be in [0, 1]; got {cmd.donor_shape}")
        if not 0 <= cmd.donor_gender <= 1:
            raise HeadVeilError(f"--donor-gender must be in [0, 1]; got {cmd.donor_gender}")
        if not cmd.donor_age >= 0:
            raise HeadVeilError(f"--donor-age must be ≥ 0 years; got {cmd.donor_age}")
        extras["_donors"] = DonorSelection(DonorBank.load(cmd.donors, model), get_recognizer(SELECTION_ATTACKER),
                                           cmd.donor_candidates,
                                           0.0 if spec.name == "id-keyed" else cmd.donor_shape,  # keyed: exact recovery
                                           cmd.donor_gender, cmd.donor_age)
    if cmd.appearance == "k-same":
        extras.pop("_donors", None)
        if spec.name not in ("id-noise", "id-dp", "id-keyed"):
            raise HeadVeilError(f"--appearance k-same sets the shape itself and works with id-noise, id-dp or id-keyed, "
                                f"not {spec.name!r}")
        if cmd.k < 2:
            raise HeadVeilError(f"--k must be ≥ 2 (K = 1 is no anonymity); got {cmd.k}")
    elif cmd.donors is not None and cmd.appearance != "donor":
        raise HeadVeilError("--donors applies to --appearance donor only")
    opts = {"model": str(cmd.restorer_model)} if cmd.restorer_model is not None else {}
    if cmd.restorer_model is not None and cmd.restorer != "onnx":
        raise HeadVeilError("--restorer-model applies to --restorer onnx only")
    restorer = get_restorer(cmd.restorer, **opts)
    recognizers = _recognizers() if cmd.guard != "off" else {}
    return spec, params, extras, restorer, recognizers


@dataclass
class _ImageTask:
    """One photo of a batch (picklable): where it is, its output name, the command, the noise seed
    (only for --insecure-reproducible; None = the worker draws fresh OS entropy), its saved fit and
    its faces' k-same clusters."""

    path: str
    name: str
    cmd: DeidCommand
    seed: np.random.SeedSequence | None
    saved: object | None
    clusters: dict


_PREPARED: dict = {}
"""Per worker process: what :func:`_prepare` made for a command (method, key, bank, restorer,
recognizers), so a worker loads them once, not per photo."""


def _prepared(cmd: DeidCommand, model):
    key = json.dumps(dataclasses.asdict(cmd), sort_keys=True, default=str)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = _prepare(cmd, model)
    return _PREPARED[key]


def _write_encoded(path: Path, encoding) -> None:
    """Write the PNG bytes an ``encoding`` future gives (through a temp name)."""
    data = encoding.result()
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(data)


def _deid_one(task: _ImageTask, model=None, prepared=None) -> dict:
    """De-identify one photo and write its output folder (run by an executor's worker). Returns
    ``{"name", "attention"}`` or ``{"error"}`` (the photo's own failure: reported, not retried)."""
    from headveil.geometry.mesh_io import export_mesh
    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines.batch import failure_text, public_config

    cmd, p, name = task.cmd, task.path, task.name
    encoder = ThreadPoolExecutor(1)  # the finished photo's PNG is deflated beside its guard
    try:
        model = model or load_embedded()
        spec, params, extras, restorer, recognizers = prepared or _prepared(cmd, model)
        rng = np.random.default_rng(task.seed if task.seed is not None else np.random.SeedSequence())
        img = read_image(p)
        saved = task.saved
        t_detect = time.perf_counter()
        dets = [saved.detection] if saved is not None else select_faces(img, cmd, p)
        t_detect = 0.0 if saved is not None else (time.perf_counter() - t_detect) / max(len(dets), 1)
        cur, done_faces, left, encoding = img, [], {}, (None, None)

        def encode(image: np.ndarray) -> None:
            nonlocal encoding
            encoding = (image, encoder.submit(encode_png, image))

        for k, det in enumerate(dets):
            face_extras = extras
            if cmd.appearance == "k-same":
                if (p, k) not in task.clusters:
                    left[f"face{k}"] = "not in any k-same cluster (it could not be fitted in the first pass)"
                    continue
                face_extras = {**extras, "_cluster": task.clusters[(p, k)]}
            try:
                cur, out, fit, record, camera = deid_image(cur, cmd, model, spec, params, face_extras, restorer,
                                                           recognizers, p, rng, saved, det, img,
                                                           None if len(dets) == 1 else f"face{k}",
                                                           encode if k == len(dets) - 1 else None)
            except (FaceTooSmallError, ExtremePoseError) as exc:  # left as it is, and said so
                left[f"face{k}"] = str(exc).split(": ", 1)[-1]
                continue
            record.seconds = {"detect": t_detect, **record.seconds}
            done_faces.append((k, out, fit, record, camera))
        if not done_faces:
            raise HeadVeilError(f"{p}: no face could be de-identified (" +
                                "; ".join(f"{f}: {why}" for f, why in left.items()) + ")")
        noise = "insecure-reproducible seed" if cmd.insecure_reproducible else "fresh OS entropy per face (never stored)"
        with atomic_output_dir(cmd.out / name, overwrite=cmd.overwrite, private=True) as tmp, \
                ThreadPoolExecutor(1) as writer:
            if encoding[0] is cur:  # the last face's photo, encoding since it was made
                png = writer.submit(_write_encoded, tmp / "deid.png", encoding[1])
            else:  # the last face was left as it is
                png = writer.submit(write_image, tmp / "deid.png", cur)  # zlib runs beside the meshes' colours
            for k, out, fit, record, camera in done_faces:
                face_dir = tmp / f"face{k}"
                face_dir.mkdir()
                mesh = _output_mesh(out, out.image, fit, params)
                if mesh is not None:
                    for fmt in dict.fromkeys(("ply",) + tuple(cmd.format)):
                        export_mesh(face_dir / f"mesh.{fmt}", *mesh)
                record.save(face_dir / "metrics.json")
                if spec.name == "id-keyed":
                    write_json(face_dir / "codes.json",
                               keyed_codes(spec, params, out, fit, model, extras["key"], camera))
            png.result()  # its own error, if any, is this photo's
            outputs = {str(f.relative_to(tmp)): sha256_file(f) for f in sorted(tmp.rglob("*"))
                       if f.is_file() and not f.name.startswith(".")}
            write_json(tmp / "manifest.json", build_manifest(
                "headveil deid", public_config(cmd), seed=cmd.seed if cmd.insecure_reproducible else None,
                inputs=[], backends={"detector": done_faces[0][2].detector, "restorer": cmd.restorer,
                                     "recognizers": sorted(recognizers)},
                extra={"model": model.name, "output_sha256": outputs, "faces": len(done_faces),
                       "faces_left_as_they_are": left, "noise": noise,
                       **({"insecure_reproducible": True} if cmd.insecure_reproducible else {})}))
    except Exception as exc:  # noqa: BLE001 - one photo's failure, whatever its cause, is that photo's
        return {"error": failure_text(exc)}
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)
    why = []
    for k, _, _, record, _ in done_faces:
        why += [f"face{k} matched by {n}" for n in record.reidentified_by]
        why += [f"face{k} not detected by {n}" for n in record.not_detected_by]
    why += [f"{f} left as it is: {w}" for f, w in left.items()]
    return {"name": name, "attention": "; ".join(why)}


def run_deid(cmd: DeidCommand, model=None) -> dict:
    """``headveil deid``: every image (one image's failure, whatever its cause, is reported, not fatal).

    Returns the batch summary as a dict (``done`` ``{input: output name}``, ``failed``, ``attention``)."""
    import functools

    from tqdm import tqdm

    from headveil.common.outputs import open_output_root
    from headveil.geometry.morphable.model import load_embedded
    from headveil.pipelines.batch import BatchSummary, output_names
    from headveil.pipelines.executor import TaskFailure, make_executor

    model = model or load_embedded()
    spec, params, extras, restorer, recognizers = _prepare(cmd, model)
    paths = list_images(cmd.images)
    if not paths:
        raise HeadVeilError(f"no images found in {', '.join(map(str, cmd.images))}")
    seqs = _noise_seeds(cmd, len(paths))
    fits = saved_fits(cmd.fits, model)
    if "*" in fits and len(paths) > 1:
        raise HeadVeilError(f"--fits {cmd.fits} holds the fit of one photo, but {len(paths)} photos were given")
    summary = BatchSummary.load_for_resume("headveil deid", cmd.out) if cmd.resume else \
        BatchSummary("headveil deid", cmd.out)
    open_output_root(cmd.out, "headveil deid", cmd.images, cmd.overwrite or cmd.resume, private=True)
    names = output_names(paths, cmd.names, summary.done)
    if cmd.names == "stem" and len({p.stem for p in paths}) < len(paths):
        summary.notes.append("inputs sharing a file stem were given distinct names (stem_suffix)")
        tqdm.write("[deid] inputs share a file stem: their folders are named stem_suffix (see summary.json)")
    summary.extra = {"method": spec.name, "noise": "insecure-reproducible seed" if cmd.insecure_reproducible
                     else "fresh OS entropy per face (never stored)"}
    clusters = k_same_appearances(paths, cmd, model) if cmd.appearance == "k-same" else {}
    if clusters:
        summary.extra["k_same"] = {"k": cmd.k, "clusters": len({id(c) for c in clusters.values()}),
                                   "faces": len(clusters)}
    todo = [(p, seq) for p, seq in zip(paths, seqs) if str(p) not in summary.done]
    tasks = [_ImageTask(str(p), names[str(p)], cmd, seq if cmd.insecure_reproducible else None,
                        fits.get("*") or fits.get(str(Path(p).resolve())),
                        {k: c for k, c in clusters.items() if k[0] == str(p)}) for p, seq in todo]
    in_process = cmd.executor == "local" and cmd.workers == 1
    fn = functools.partial(_deid_one, model=model, prepared=(spec, params, extras, restorer, recognizers)) \
        if in_process else _deid_one
    try:
        with make_executor(cmd.executor, cmd.workers, cmd.ray_address) as ex:
            bar = tqdm(total=len(tasks), desc="de-identifying", unit="image", disable=len(tasks) < 2)
            for i, res in ex.run(fn, tasks):
                bar.update()
                p = tasks[i].path
                if isinstance(res, TaskFailure) or "error" in res:
                    summary.failed[p] = res.error if isinstance(res, TaskFailure) else res["error"]
                    tqdm.write(f"[deid] {p}: {summary.failed[p]}")
                else:
                    summary.done[p] = res["name"]
                    if res["attention"]:
                        summary.attention[res["name"]] = res["attention"]
                summary.write()
            bar.close()
            summary.extra["executor"] = ex.describe()
    except KeyboardInterrupt:
        summary.interrupted = True
        summary.write()
        raise
    summary.write()
    return {**summary.to_json(), "out": str(cmd.out)}


@command("deid", DeidCommand)
def _cli_deid(cfg: DeidCommand) -> int:
    import sys

    from headveil.pipelines.commands import batch_status

    res = run_deid(cfg)
    print(f"de-identified {len(res['done'])} image(s) into {res['out']}/ in {res['seconds']:.1f} s"
          + (f"; {len(res['failed'])} failed (listed in summary.json)" if res["failed"] else ""))
    for name, why in res.get("attention", {}).items():
        print(f"  {name}: {why}", file=sys.stderr)
    return batch_status(len(res["done"]), len(res["failed"]))
