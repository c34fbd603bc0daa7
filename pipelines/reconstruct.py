"""``headveil reconstruct CAPTURE --out DIR``: train a head field on a capture, extract the mesh.

Outputs in ``DIR``: ``mesh.ply`` (+ requested formats, vertex colours from the colour field),
``checkpoint.pt`` (resumable with ``--resume``), ``prior_cache.pt`` (the cached 3DMM prior, reused
by ``--resume`` and later runs into the same folder), ``metrics.json`` (training stats, and Chamfer /
F-score against the ground truth given with ``--ground-truth DIR``: whole head and face region)
and ``manifest.json``. The default preset is the private ``two-stage``; the non-private
``full-rgb`` baseline reads RGB of the face and needs ``--non-private``.

Presets (stage lists run by the one training loop in :mod:`headveil.pipelines.train`; weights
are the two-stage paper's λ1..λ4):

- ``full-rgb``: one stage, L_rgb on every view's RGB (VolSDF on all views: the non-private baseline).
- ``two-stage``: stage 1, λ1 L_rgb + λ2 L_eik on the neutral RGB views (λ1 = 1, λ2 = 0.1);
  stage 2, λ2 L_eik + λ3 L_lip + λ4 L_grad on the protected gradient views (λ3 = 3e-10, λ4 = 1).
- ``two-stage-nolip``: the same with λ3 = 0 (ablation).
- ``grad-only``: one stage, L_grad (+ L_eik) on the protected views from the template (ablation).
- ``rgb+grad``: one stage with both losses, each on its own views, from the template (ablation).

Every preset but ``full-rgb`` is *private*: it refuses a capture that holds RGB of a protected view
(protect it first with ``headveil protect CAPTURE --out DIR``), so the field never receives a
sensitive RGB image. The template is the parametric field's Δθ = 0 start: the model's mean head
(``--template mean``), the capture's own codes (``capture``, synthetic captures) or a ``fit.json``
from ``headveil fit``. Multi-stage presets also write each earlier stage's mesh
(``mesh_stage1.ply``) and its metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
import tyro

from headveil.common.artefacts import Artefact
from headveil.common.errors import HeadVeilError
from headveil.common.outputs import build_manifest, cache_dir, sha256_file, write_json
from headveil.geometry.morphable.fit_result import FitResult
from headveil.pipelines.train import StageConfig, train
from headveil.render.losses import (
    CodePrior,
    EikonalLoss,
    GradientLoss,
    LipschitzLoss,
    MaskLoss,
    ResidualPenalty,
    RGBLoss,
)
from headveil.pipelines.commands import command

def _rgb_terms():
    """λ1 L_rgb (λ1 = 1) + mask + λ2 L_eik (λ2 = 0.1) + residual penalty + code prior."""
    return (RGBLoss(1.0), MaskLoss(0.1), EikonalLoss(0.1), ResidualPenalty(0.01), CodePrior(1e-3))


def _stage1(steps):
    return StageConfig(name="stage1", steps=steps, views="neutral", losses=_rgb_terms())


def _stage2(steps, lip: bool = True):
    """λ4 L_grad (λ4 = 1) + λ2 L_eik + λ3 L_lip (λ3 = 3e-10; 0 = the no-Lipschitz ablation) + a lighter
    residual penalty."""
    terms = (GradientLoss(1.0), EikonalLoss(0.1), ResidualPenalty(0.003)) + ((LipschitzLoss(3e-10),) if lip else ())
    return StageConfig(name="stage2", steps=steps, views="protected", losses=terms + (CodePrior(1e-3),))


@dataclass(frozen=True)
class Preset:
    stages: object
    """``steps tuple → [StageConfig]``."""
    private: bool
    """Never touches RGB of a protected view."""
    default_steps: tuple[int, ...]


def _per_stage(steps: tuple[int, ...], n: int, default: tuple[int, ...]) -> tuple[int, ...]:
    steps = tuple(steps) or default
    if len(steps) == 1:
        steps = steps * n
    if len(steps) != n or min(steps) < 1:
        raise HeadVeilError(f"--steps takes one value or one per stage ({n}), each ≥ 1; got {steps}")
    return steps


PRESETS = {
    "full-rgb": Preset(lambda s: [StageConfig(name="rgb", steps=s[0], views="all", losses=_rgb_terms())],
                       False, (600,)),
    # one stage each, from the template, for the paper's Fig. 7 ablations
    "two-stage": Preset(lambda s: [_stage1(s[0]), _stage2(s[1])], True, (300, 300)),
    "two-stage-nolip": Preset(lambda s: [_stage1(s[0]), _stage2(s[1], lip=False)], True, (300, 300)),
    "grad-only": Preset(lambda s: [replace(_stage2(s[0]), name="grad")], True, (600,)),
    "rgb+grad": Preset(lambda s: [StageConfig(name="rgb+grad", steps=s[0], views="all", losses=(
        RGBLoss(1.0), MaskLoss(0.1), GradientLoss(1.0), EikonalLoss(0.1), ResidualPenalty(0.01),
        LipschitzLoss(3e-10), CodePrior(1e-3)))], True, (600,)),
}


@dataclass
class ReconstructionResult(Artefact):
    """What ``headveil reconstruct`` measured (``metrics.json``; loads back with ``ReconstructionResult.load``).

    Attributes:
        preset / private: the stage list and whether it never read RGB of a protected view.
        stages: per stage: steps, final loss, batch PSNR or gradient L1, seconds, its config.
        stage_meshes: per earlier stage: its mesh file and geometry against the ground truth.
        seconds: ``train``, ``mesh``, ``total``; mesh: vertex and face counts of ``mesh.ply``.
        geometry_vs_gt: Chamfer / F-score of the result (head and face), with ground truth only.
    """

    SCHEMA: ClassVar[str] = "headveil.reconstruction"
    SCHEMA_VERSION: ClassVar[int] = 1

    preset: str
    private: bool
    stages: dict
    stage_meshes: dict
    seconds: dict
    mesh: dict
    backend: str
    prior: bool
    prior_cache: str | None
    template: str | None
    views: int
    view_counts: dict
    warnings: list
    resumed: bool
    geometry_vs_gt: dict | None = None


@dataclass
class ReconstructCommand:
    """Reconstruct a head from a multi-view capture; writes mesh, checkpoint, metrics, manifest."""

    capture: Annotated[Path, tyro.conf.Positional]
    """Capture folder with transforms.json (e.g. from headveil synth --capture, protected with headveil protect)."""
    out: Path = Path("recon_out")
    """Output folder (resumable with --resume)."""
    preset: str = "two-stage"
    """Stage list: two-stage (private: RGB of neutral views, then gradients of the face), two-stage-nolip, grad-only, rgb+grad, or full-rgb (the non-private baseline, needs --non-private)."""
    non_private: bool = False
    """Allow the full-rgb preset, which reads the RGB of the views that show the face."""
    ground_truth: Path | None = None
    """Ground-truth folder (gt_mesh.ply, codes.json; headveil synth writes OUT/ground_truth/sNNNN) for the Chamfer metrics and --template capture. Kept apart from the capture."""
    prior: bool = True
    """Use the embedded 3DMM as the SDF prior (the parametric head field); --no-prior = plain VolSDF."""
    overwrite: bool = False
    """Write into an existing folder headveil did not make (only headveil's own files are replaced)."""
    steps: tuple[int, ...] = ()
    """Steps: one value for every stage or one per stage (default per preset)."""
    rays: int = 512
    """Random rays per step of the RGB loss."""
    patches: int = 4
    """16×16 patches per step of the gradient loss."""
    samples: int = 48
    """Stratified samples per ray."""
    importance: int = 0
    """Extra importance samples per ray (0 = off), drawn from the weights of a no-grad render of the stratified samples."""
    normals: str = "detached"
    """Colour-network normals: detached (analytic, cheap) or fd (differentiable finite differences, about 2.3× slower per step)."""
    code_components: int = 0
    """With the prior: also optimise the first k identity components of α through the cached prior's first-order sensitivities (0 = the codes stay at the template)."""
    seed: int = 0
    """Seed of the sampling and initialisation (same seed, same mesh)."""
    template: str = "mean"
    """With the prior: mean (the model's mean head), capture (the subject's model codes from --ground-truth, synthetic captures) or a path to a fit.json (identity and expression of a fitted head)."""
    cache_resolution: int = 96
    """Grid resolution of the cached 3DMM prior."""
    resolution: int = 128
    """Marching-cubes grid resolution inside the ±0.2 m box."""
    format: tuple[str, ...] = ("ply",)
    """Mesh formats: any of ply, obj, glb."""
    resume: bool = False
    """Continue from out/checkpoint.pt."""
    checkpoint_every: int = 200
    """Steps between checkpoints."""
    threads: int = 2
    """Torch CPU threads."""


def _face_metrics(pred_v, pred_f, gt_v, gt_f, face_mask, seed=0) -> dict:
    """Chamfer restricted to the face: gt samples on face triangles, pred samples whose nearest gt
    vertex is a face vertex."""
    from scipy.spatial import cKDTree

    from headveil.geometry.metrics import faces_in_region, sample_surface, surface_distance

    g, gn = sample_surface(gt_v, gt_f, 20000, seed + 1, faces_in_region(gt_f, face_mask))
    p, pn = sample_surface(pred_v, pred_f, 40000, seed)
    _, j = cKDTree(gt_v).query(p)
    keep = face_mask[j]
    if keep.sum() < 10:
        return {"error": "the reconstruction has (almost) no surface near the face"}
    return surface_distance(p[keep], g, 1.0, pn[keep], gn).to_json()


def _template_codes(cfg: ReconstructCommand, capture, model):
    """α, η of the template (or None, None for the mean head)."""
    if cfg.template == "mean":
        return None, None
    if cfg.template == "capture":
        if capture.codes.get("identity") is None:
            raise HeadVeilError("--template capture needs the subject's codes: pass --ground-truth DIR (headveil synth "
                                "writes them to OUT/ground_truth/sNNNN)")
        return capture.codes["identity"], capture.codes.get("expression")
    p = Path(cfg.template)
    if not p.is_file():
        raise HeadVeilError(f"--template must be mean, capture or a fit.json path; {p} does not exist")
    fit = FitResult.load(p, model)
    return fit.identity, fit.expression


def check_capture_for_preset(capture, preset_name: str, prior: bool, non_private: bool = False) -> list[str]:
    """Refuse captures a preset cannot use (before any training); returns warnings."""
    preset = PRESETS[preset_name]
    warnings = []
    if not preset.private and capture.views("protected", "rgb") and not non_private:
        raise HeadVeilError(f"{preset_name} is the non-private baseline: it reads the RGB of the "
                            f"{len(capture.views('protected', 'rgb'))} views that show the face. Pass --non-private to "
                            "run it, or protect the capture (headveil protect CAPTURE --out DIR) and use --preset "
                            "two-stage")
    prot_rgb = capture.views("protected", "rgb")
    if preset.private and prot_rgb:
        raise HeadVeilError(
            f"preset {preset_name} never reads RGB of protected views, but this capture holds {len(prot_rgb)} "
            f"(e.g. {capture.names[prot_rgb[0]]}); protect them first: headveil protect {capture.root} --out DIR")
    if not preset.private and capture.views("all", "gradient"):
        raise HeadVeilError(f"{preset_name} needs RGB of every view, but this capture's protected views hold only "
                            "gradients; use --preset two-stage")
    stages = preset.stages(preset.default_steps)
    for st in stages:
        if st.uses_grad and not capture.views(st.views, "gradient"):
            raise HeadVeilError(f"preset {preset_name} needs protected gradient views; this capture has none "
                                f"({capture.summary()})")
        if st.uses_rgb and not st.uses_grad and not capture.views(st.views, "rgb"):
            raise HeadVeilError(f"preset {preset_name} stage {st.name} needs {st.views} RGB views; this capture has "
                                f"none ({capture.summary()})" + ("" if prior else " and --no-prior gives no template"))
    if not prior and not capture.views("neutral", "rgb") and preset.private:
        raise HeadVeilError("no neutral RGB views and no template: drop --no-prior to use the 3DMM prior as the template")
    if preset_name == "full-rgb" and capture.views("protected", "rgb"):
        warnings.append("full-rgb reads the RGB of protected views: it is the non-private baseline")
    if preset.private and prior and len(capture.views("neutral", "rgb")) < 3:
        warnings.append(f"only {len(capture.views('neutral', 'rgb'))} neutral RGB view(s): stage 1 relies on the "
                        "template (the model's head) for the low-frequency shape")
    return warnings


def _extract(field_, resolution: int):
    """Mesh of the field's zero level set with colours from the colour field (normal = mesh
    normal, viewed head-on): ``verts (V, 3) m, faces (F, 3), colors (V, 3) in [0, 1]``."""
    from headveil.neural_fields.extraction import extract_mesh
    from headveil.geometry.normals import vertex_normals

    with torch.no_grad():
        verts, faces = extract_mesh(field_.sdf, (-0.2, -0.2, -0.2, 0.2, 0.2, 0.2), resolution, progress=True)
        vt = torch.as_tensor(verts, dtype=torch.float32)
        n = torch.as_tensor(vertex_normals(verts, faces), dtype=torch.float32)
        cols = []
        for s in range(0, len(vt), 32768):
            _, feats = field_(vt[s:s + 32768])
            cols.append(field_.color(vt[s:s + 32768], n[s:s + 32768], -n[s:s + 32768], feats))
        colors = torch.cat(cols).numpy() if cols else np.zeros((0, 3), np.float32)
    return verts, faces, colors


def _geometry_vs_gt(verts, faces, capture, model) -> dict:
    from headveil.geometry.mesh_io import load_mesh
    from headveil.geometry.metrics import compare_meshes
    from headveil.geometry.morphable.model import load_embedded

    gv, gf, _ = load_mesh(capture.gt_mesh)
    m = model or load_embedded()
    if len(gv) == m.n_vertices and np.array_equal(gf, m.faces):
        # model topology: compare with the skin (eyes, teeth, tongue are inside the head)
        skin = m.face_part_mask("skin")
        return {"head": compare_meshes(verts, faces, gv, gf, n_samples=20000, gt_face_mask=skin).to_json(),
                "face": _face_metrics(verts, faces, gv, gf[skin], m.regions["face"]),
                "gt_surface": "skin sub-mesh of the model"}
    return {"head": compare_meshes(verts, faces, gv, gf, n_samples=20000).to_json(), "gt_surface": "whole mesh"}


def prior_band_of(stages) -> float | None:
    """The band (metres) the stages' samplers read the prior in: the widest stage band when every
    stage samples around the prior (``sampling`` auto or prior), else None (exact everywhere)."""
    if all(s.sampling in ("auto", "prior") for s in stages):
        return max(float(s.band) for s in stages)
    return None


def _prior_cache(field_, cfg: ReconstructCommand, out: Path, band: float | None = None) -> str:
    """Load the cached 3DMM prior built for the same model, codes, grid and exact ``band`` — from
    ``out/prior_cache.pt`` (a resumed run) or from :func:`cache_dir` (any earlier run) — or build it
    and keep it in both; returns ``loaded`` or ``built``."""
    from headveil.common.outputs import atomic_file

    key = field_.prior_cache_key(cfg.cache_resolution, code_components=cfg.code_components, band=band)
    shared = cache_dir() / f"prior-{key[:32]}.pt"
    local = out / "prior_cache.pt"
    for path in (local, shared):
        if path.is_file():
            try:
                state = torch.load(path, weights_only=True)
            except Exception:  # unreadable: rebuilt below
                continue
            if field_.load_prior_cache(state, band):
                if path != local:
                    with atomic_file(local) as tmp:
                        torch.save(state, tmp)
                return "loaded"
    field_.cache_prior(cfg.cache_resolution, code_components=cfg.code_components, progress=True, band=band)
    state = field_.prior_cache_state()
    for path in (local, shared):
        try:
            with atomic_file(path) as tmp:
                torch.save(state, tmp)
        except OSError:  # a read-only home is no reason to fail the run
            if path == local:
                raise
    return "built"


def run_reconstruct(cfg: ReconstructCommand) -> dict:
    import json
    import logging
    import sys

    from headveil.common.outputs import open_output_root
    from headveil.geometry.mesh_io import export_mesh
    from headveil.geometry.morphable.model import load_embedded
    from headveil.neural_fields.head_field import HeadField, HeadFieldConfig
    from headveil.pipelines.capture import load_capture

    log = logging.getLogger("headveil.reconstruct")
    if cfg.preset not in PRESETS:
        raise HeadVeilError(f"unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
    bad = set(cfg.format) - {"ply", "obj", "glb"}
    if bad:
        raise HeadVeilError(f"unknown mesh format(s) {sorted(bad)}; choose from ply, obj, glb")
    if cfg.normals not in ("detached", "fd"):
        raise HeadVeilError(f"--normals must be detached or fd; got {cfg.normals!r}")
    if cfg.code_components and not cfg.prior:
        raise HeadVeilError("--code-components needs the 3DMM prior (drop --no-prior)")
    for name in ("rays", "patches", "samples", "resolution", "cache_resolution", "checkpoint_every", "threads"):
        if getattr(cfg, name) < 1:
            raise HeadVeilError(f"--{name.replace('_', '-')} must be ≥ 1; got {getattr(cfg, name)}")
    if cfg.importance < 0:
        raise HeadVeilError(f"--importance must be ≥ 0; got {cfg.importance}")
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    capture = load_capture(cfg.capture, ground_truth=cfg.ground_truth)  # validates before any training
    warns = check_capture_for_preset(capture, cfg.preset, cfg.prior, cfg.non_private)
    for w in warns:
        log.warning(w)
    preset = PRESETS[cfg.preset]
    stages = preset.stages(_per_stage(cfg.steps, len(preset.stages(preset.default_steps)), preset.default_steps))
    stages = [replace(s, rays=cfg.rays, samples=cfg.samples, patches=cfg.patches, importance=cfg.importance,
                      normals=cfg.normals) for s in stages]  # replace: the settings are validated again
    out = Path(cfg.out)
    if cfg.resume and not (out / "checkpoint.pt").is_file():
        raise HeadVeilError(f"--resume: {out}/checkpoint.pt does not exist (nothing to resume)")
    open_output_root(out, "headveil reconstruct", [cfg.capture] + ([cfg.ground_truth] if cfg.ground_truth else []),
                     cfg.overwrite or cfg.resume)
    model = load_embedded() if cfg.prior else None
    torch.manual_seed(cfg.seed)
    field_ = HeadField(model, HeadFieldConfig(prior=cfg.prior))
    prior_cache = None
    if cfg.prior:
        alpha, eta = _template_codes(cfg, capture, model)
        if alpha is not None:
            field_.set_codes(alpha, eta)
        prior_cache = _prior_cache(field_, cfg, out, prior_band_of(stages))
    ckpt = out / "checkpoint.pt"
    if not cfg.resume and ckpt.exists():
        ckpt.unlink()
    stages_file = out / "stage_meshes.json"
    stage_meshes = {}
    if cfg.resume and stages_file.is_file():
        stage_meshes = json.loads(stages_file.read_text())
    elif stages_file.exists():
        stages_file.unlink()

    def on_stage_end(si, st, f):
        if si < len(stages) - 1:  # earlier stages: their mesh and metrics (the last one is the result)
            v, fc, col = _extract(f, cfg.resolution)
            export_mesh(out / f"mesh_{st.name}.ply", v, fc, col)
            entry = {"mesh": f"mesh_{st.name}.ply", "vertices": int(len(v))}
            if capture.gt_mesh is not None and len(v):
                entry["geometry_vs_gt"] = _geometry_vs_gt(v, fc, capture, model)
            stage_meshes[st.name] = entry
            write_json(stages_file, stage_meshes)

    stats = train(field_, capture, stages, cfg.seed, ckpt, cfg.checkpoint_every, cfg.resume, capture.background,
                  on_stage_end=on_stage_end)
    t_train = time.perf_counter() - t0

    t1 = time.perf_counter()
    print("extracting the mesh…", file=sys.stderr, flush=True)
    verts, faces, colors = _extract(field_, cfg.resolution)
    if len(verts) == 0:
        raise HeadVeilError("the trained field has no surface inside the box (training failed); see metrics of "
                            "the stages and try more steps or a lower learning rate")
    for fmt in {"ply", *cfg.format}:
        export_mesh(out / f"mesh.{fmt}", verts, faces, colors)
    t_mesh = time.perf_counter() - t1
    geo = None
    if capture.gt_mesh is not None:
        print("comparing with the ground truth…", file=sys.stderr, flush=True)
        geo = _geometry_vs_gt(verts, faces, capture, model)
    result = ReconstructionResult(
        cfg.preset, preset.private, stats, stage_meshes,
        {"train": t_train, "mesh": t_mesh, "total": time.perf_counter() - t0},
        {"vertices": int(len(verts)), "faces": int(len(faces))}, field_.backend(), cfg.prior, prior_cache,
        cfg.template if cfg.prior else None, len(capture), capture.summary(), warns, cfg.resume, geo)
    result.save(out / "metrics.json")
    metrics = result.to_json()
    inputs = [capture.root / "transforms.json"] + ([capture.gt_mesh] if capture.gt_mesh else [])
    write_json(out / "manifest.json", build_manifest("headveil reconstruct", cfg, seed=cfg.seed, inputs=inputs,
                                                     backends={"hashgrid": field_.backend(), "volume": "torch"},
                                                     extra={"capture_sha256": sha256_file(capture.root / "transforms.json")}))
    return {"out": out, "metrics": metrics}


@command("reconstruct", ReconstructCommand)
def _cli(cfg: ReconstructCommand) -> int | None:
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
