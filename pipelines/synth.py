"""``headveil synth``: random subjects from the head model, rendered with ground truth.

Each image gets its own folder ``<out>/s<subject>_v<view>/`` with ``image.png``,
``codes.json`` (α, named η, β, light, pose), ``camera.json`` (OpenCV K, c2w) and ``gt_mesh.ply``
(model frame, the model's vertex order: it compares vertex by vertex with ``headveil fit``'s
``mesh.ply``). ``index.jsonl`` lists the images and ``manifest.json`` the run. Deterministic for
a seed: subject ``i`` draws from ``SeedSequence(seed).spawn`` child ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.errors import SettingsError
from headveil.common.images import write_image
from headveil.common.outputs import atomic_output_dir, build_manifest, sha256_file, write_json
from headveil.geometry.mesh_io import export_mesh
from headveil.geometry.morphable.model import MorphableModel, load_embedded
from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject
from headveil.render.shading import DirectionalLight
from headveil.pipelines.commands import command

#: Expression units drawn for random expressions (the rest stay 0).
EXPRESSION_UNITS = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "eyeBlinkLeft",
                    "eyeBlinkRight", "mouthFunnel", "mouthPucker", "browDownLeft", "browDownRight",
                    "cheekPuff", "mouthFrownLeft", "mouthFrownRight", "eyeSquintLeft", "eyeSquintRight")


@dataclass
class SynthCommand:
    """Random synthetic subjects rendered with ground truth."""

    subjects: int = 4
    """Number of identities."""
    views: int = 1
    """Images per identity (same expression, new pose and light each)."""
    seed: int = 0
    """Seed: subject i draws from SeedSequence(seed).spawn child i (byte-identical reruns)."""
    out: Path = Path("synth_out")
    """Output folder."""
    image_size: int = 512
    """Image side in pixels."""
    yaw_range: float = 45.0
    """Yaw drawn uniformly in ±this, degrees."""
    pitch_range: float = 20.0
    """Pitch drawn uniformly in ±this, degrees."""
    roll_range: float = 5.0
    """Roll drawn uniformly in ±this, degrees."""
    identity_scale: float = 1.0
    """Std of α (1 = the model's prior)."""
    expression_probability: float = 0.5
    """Chance that an identity gets a random expression (else neutral)."""
    expression_max: float = 0.7
    """Largest weight of a drawn expression unit."""
    fov_deg: float = 20.0
    """Vertical field of view of the portrait camera, degrees."""
    capture: bool = False
    """Write multi-view captures instead (one folder per subject with transforms.json, images, masks and per-view privacy labels; ground truth in OUT/ground_truth/) for headveil reconstruct."""
    capture_views: int = 30
    """Views per capture, spread around the head."""
    capture_size: int = 64
    """Capture image size in pixels."""
    capture_split: tuple[int, int] | None = None
    """N_NEUTRAL N_PROTECTED: place views as a split capture (protected views around the face, neutral ones behind), e.g. 10 20 (FaceScape) or 16 20 (H3DS); overrides capture_views."""
    capture_face_cone: float = 150.0
    """With --capture-split: protected views cover yaw ±this many degrees around the face, neutral views the rest (150: neutral views within ±30° of the back of the head, the paper's set-up; smaller cones let neutral views see the face's profile)."""
    capture_protect: bool = False
    """Write protected views only as gradient images (the protecting operator at capture-size, Sobel, no blur): a capture for the two-stage preset that holds no RGB of its protected views."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""


@dataclass
class SynthSample:
    """One rendered image with its ground truth (arrays as in :mod:`headveil.render.scene`)."""

    name: str
    image: np.ndarray
    codes: SubjectCodes
    pose: HeadPose
    light: DirectionalLight
    camera: object
    vertices_model: np.ndarray
    extras: dict = field(default_factory=dict)


def random_expression(model: MorphableModel, rng: np.random.Generator, max_weight: float) -> np.ndarray:
    eta = np.zeros(model.n_expr, np.float32)
    names = [n for n in EXPRESSION_UNITS if n in model.expr_names]
    k = rng.integers(1, 4)
    for n in rng.choice(names, size=k, replace=False):
        eta[model.expr_names.index(n)] = rng.uniform(0.2, max_weight)
    for side in ("Left", "Right"):  # keep smiles and frowns roughly symmetric
        for unit in ("mouthSmile", "mouthFrown", "eyeBlink"):
            a, b = f"{unit}Left", f"{unit}Right"
            if a in model.expr_names and b in model.expr_names and side == "Left":
                ia, ib = model.expr_names.index(a), model.expr_names.index(b)
                m = max(eta[ia], eta[ib])
                eta[ia] = eta[ib] = m
    return eta


def random_light(rng: np.random.Generator) -> DirectionalLight:
    d = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.8), 1.0])
    tint = 1.0 + rng.uniform(-0.06, 0.06, 3)
    return DirectionalLight(tuple(d), float(rng.uniform(0.3, 0.5)), float(rng.uniform(0.5, 0.8)), tuple(tint))


def generate(model: MorphableModel, cfg: SynthCommand):
    """Yield :class:`SynthSample` for every subject × view (deterministic for ``cfg.seed``)."""
    cam = portrait_camera(cfg.image_size, cfg.fov_deg)
    children = np.random.SeedSequence(cfg.seed).spawn(cfg.subjects)
    for i, ss in enumerate(children):
        rng = np.random.default_rng(ss)
        c = model.sample_codes(rng, id_scale=cfg.identity_scale)
        eta = random_expression(model, rng, cfg.expression_max) if rng.uniform() < cfg.expression_probability \
            else np.zeros(model.n_expr, np.float32)
        codes = SubjectCodes(c["alpha"], eta, c["beta"])
        for v in range(cfg.views):
            pose = HeadPose(float(rng.uniform(-cfg.yaw_range, cfg.yaw_range)),
                            float(rng.uniform(-cfg.pitch_range, cfg.pitch_range)),
                            float(rng.uniform(-cfg.roll_range, cfg.roll_range)))
            light = random_light(rng)
            bg = tuple(float(x) for x in rng.uniform(0.35, 0.75) + rng.uniform(-0.04, 0.04, 3))
            res, _ = render_subject(model, codes, pose, cam, light=light, background=bg)
            yield SynthSample(f"s{i:04d}_v{v:02d}", res.image, codes, pose, light, cam,
                              model.vertices(codes.alpha, codes.eta), {"background": bg})


def sample_to_json(model: MorphableModel, s: SynthSample) -> dict:
    return {
        "identity": s.codes.alpha.tolist(),
        "expression": {n: float(x) for n, x in zip(model.expr_names, s.codes.eta) if x != 0},
        "expression_vector": s.codes.eta.tolist(),
        "albedo": s.codes.beta.tolist(),
        "pose": {"yaw_deg": s.pose.yaw, "pitch_deg": s.pose.pitch, "roll_deg": s.pose.roll,
                 "R_model_to_world": s.pose.R.tolist(), "translation": list(s.pose.translation)},
        "light": {"type": "directional", "direction_world": list(s.light.direction), "ambient": s.light.ambient,
                  "diffuse": s.light.diffuse, "color": list(s.light.color)},
        "background": list(s.extras.get("background", ())),
        "model": model.name,
    }


def run_synth(cfg: SynthCommand, model: MorphableModel | None = None) -> Path:
    """Write the synthetic set to ``cfg.out`` (atomically); returns the folder."""
    from tqdm import tqdm

    if cfg.subjects < 1 or cfg.views < 1:
        raise SettingsError(f"--subjects and --views must be ≥ 1, got {cfg.subjects}, {cfg.views}")
    if not 0 < cfg.capture_face_cone < 180:
        raise SettingsError(f"--capture-face-cone must be in (0, 180) degrees; got {cfg.capture_face_cone}")
    from headveil.common.outputs import check_output_path

    check_output_path(cfg.out, (), cfg.overwrite)
    model = model or load_embedded()
    if cfg.capture:
        return _run_capture(cfg, model)
    rows = []
    with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        for s in tqdm(generate(model, cfg), total=cfg.subjects * cfg.views, desc="synth", unit="image"):
            d = tmp / s.name
            d.mkdir()
            write_image(d / "image.png", s.image)
            write_json(d / "codes.json", sample_to_json(model, s))
            write_json(d / "camera.json", s.camera.to_dict())
            export_mesh(d / "gt_mesh.ply", s.vertices_model, model.faces, model.albedo(s.codes.beta))
            rows.append({"name": s.name, "image": f"{s.name}/image.png",
                         "sha256": sha256_file(d / "image.png")})
        with open(tmp / "index.jsonl", "w") as f:
            for r in rows:
                import json

                f.write(json.dumps(r) + "\n")
        write_json(tmp / "manifest.json", build_manifest("headveil synth", cfg, seed=cfg.seed,
                                                         backends={"raster": "auto"}, extra={"model": model.name}))
    return cfg.out


def _run_capture(cfg: SynthCommand, model: MorphableModel) -> Path:
    from tqdm import tqdm

    from headveil.pipelines.capture import write_synthetic_capture
    from headveil.render.protect import ProtectConfig

    with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        (tmp / "ground_truth").mkdir()
        children = np.random.SeedSequence(cfg.seed).spawn(cfg.subjects)
        for i, ss in enumerate(tqdm(children, desc="synth captures", unit="subject")):
            rng = np.random.default_rng(ss)
            c = model.sample_codes(rng, id_scale=cfg.identity_scale)
            eta = random_expression(model, rng, cfg.expression_max) if rng.uniform() < cfg.expression_probability \
                else np.zeros(model.n_expr, np.float32)
            write_synthetic_capture(tmp / f"s{i:04d}", model, SubjectCodes(c["alpha"], eta, c["beta"]),
                                    cfg.capture_views, cfg.capture_size, seed=int(rng.integers(2**31)),
                                    light=random_light(rng), split=cfg.capture_split,
                                    face_cone_deg=cfg.capture_face_cone,
                                    protect=ProtectConfig(cfg.capture_size) if cfg.capture_protect else None,
                                    ground_truth=tmp / "ground_truth" / f"s{i:04d}")
        write_json(tmp / "manifest.json", build_manifest("headveil synth --capture", cfg, seed=cfg.seed,
                                                         backends={"raster": "auto"}, extra={"model": model.name}))
    return cfg.out


@command("synth", SynthCommand)
def _cli(cfg: SynthCommand) -> int | None:
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
