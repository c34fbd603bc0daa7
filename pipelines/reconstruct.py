"""``headveil reconstruct CAPTURE --out DIR``: train a head field on a capture, extract the mesh.

Outputs in ``DIR``: ``mesh.ply`` (+ requested formats, vertex colours from the colour field),
``checkpoint.pt`` (resumable with ``--resume``), ``metrics.json`` (training stats, and Chamfer /
F-score against the capture's ``gt_mesh.ply`` when it has one: whole head and face region) and
``manifest.json``.

Presets (stage lists run by the one training loop in :mod:`headveil.pipelines.train`):

- ``full-rgb``: one stage on every view's RGB (the non-private baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro

from headveil.common.errors import HeadVeilError
from headveil.common.outputs import build_manifest, sha256_file, write_json
from headveil.pipelines.train import StageConfig, train

PRESETS = {
    "full-rgb": lambda steps: [StageConfig(name="rgb", steps=steps or 800, views="all")],
}


@dataclass
class ReconstructConfig:
    """Reconstruct a head from a multi-view capture; writes mesh, checkpoint, metrics, manifest."""

    capture: Annotated[Path, tyro.conf.Positional]
    """Capture folder with ``transforms.json`` (e.g. from ``headveil synth --capture``)."""
    out: Path = Path("recon_out")
    preset: str = "full-rgb"
    """Stage list: full-rgb."""
    prior: bool = True
    """Use the embedded 3DMM as the SDF prior (the parametric head field); False = plain VolSDF."""
    steps: int | None = None
    """Override the steps of every stage."""
    rays: int = 512
    samples: int = 48
    seed: int = 0
    fit_codes: bool = True
    """With the prior: use the capture's model codes when it has them (synthetic captures)."""
    cache_resolution: int = 96
    """Grid resolution of the cached 3DMM prior."""
    resolution: int = 128
    """Marching-cubes grid resolution inside the ±0.2 m box."""
    format: tuple[str, ...] = ("ply",)
    """Mesh formats: any of ply, obj, glb."""
    resume: bool = False
    """Continue from ``out/checkpoint.pt``."""
    checkpoint_every: int = 200
    threads: int = 2


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


def run_reconstruct(cfg: ReconstructConfig) -> dict:
    from headveil.geometry.mesh_io import export_mesh, load_mesh
    from headveil.geometry.metrics import compare_meshes
    from headveil.geometry.morphable.model import load_embedded
    from headveil.neural_fields.extraction import extract_mesh
    from headveil.neural_fields.head_field import HeadField, HeadFieldConfig
    from headveil.pipelines.capture import load_capture

    if cfg.preset not in PRESETS:
        raise HeadVeilError(f"unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
    bad = set(cfg.format) - {"ply", "obj", "glb"}
    if bad:
        raise HeadVeilError(f"unknown mesh format(s) {sorted(bad)}; choose from ply, obj, glb")
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    capture = load_capture(cfg.capture)  # validates before any training
    stages = PRESETS[cfg.preset](cfg.steps)
    for s in stages:
        s.rays, s.samples = cfg.rays, cfg.samples
    model = load_embedded() if cfg.prior else None
    torch.manual_seed(cfg.seed)
    field_ = HeadField(model, HeadFieldConfig(prior=cfg.prior))
    if cfg.prior:
        if cfg.fit_codes and capture.codes.get("identity") is not None:
            field_.set_codes(capture.codes["identity"], capture.codes.get("expression"))
        field_.cache_prior(cfg.cache_resolution)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    if not cfg.resume and ckpt.exists():
        ckpt.unlink()
    stats = train(field_, capture, stages, cfg.seed, ckpt, cfg.checkpoint_every, cfg.resume, capture.background)
    t_train = time.perf_counter() - t0

    # mesh + vertex colours from the colour field (normal = mesh normal, viewed head-on)
    t1 = time.perf_counter()
    with torch.no_grad():
        verts, faces = extract_mesh(field_.sdf, (-0.2, -0.2, -0.2, 0.2, 0.2, 0.2), cfg.resolution)
        from headveil.render.mesh_renderer import vertex_normals

        vt = torch.as_tensor(verts, dtype=torch.float32)
        n = torch.as_tensor(vertex_normals(verts, faces), dtype=torch.float32)
        cols = []
        for s in range(0, len(vt), 32768):
            _, feats = field_(vt[s:s + 32768])
            cols.append(field_.color(vt[s:s + 32768], n[s:s + 32768], -n[s:s + 32768], feats))
        colors = torch.cat(cols).numpy()
    for fmt in {"ply", *cfg.format}:
        export_mesh(out / f"mesh.{fmt}", verts, faces, colors)
    t_mesh = time.perf_counter() - t1
    metrics = {"stages": stats, "seconds": {"train": t_train, "mesh": t_mesh, "total": time.perf_counter() - t0},
               "mesh": {"vertices": int(len(verts)), "faces": int(len(faces))}, "backend": field_.backend(),
               "prior": cfg.prior, "views": len(capture)}
    if capture.gt_mesh is not None:
        gv, gf, _ = load_mesh(capture.gt_mesh)
        m = model or load_embedded()
        if len(gv) == m.n_vertices and np.array_equal(gf, m.faces):
            # model topology: compare with the skin (eyes, teeth, tongue are inside the head)
            skin = m.face_part_mask("skin")
            metrics["geometry_vs_gt"] = {
                "head": compare_meshes(verts, faces, gv, gf, n_samples=20000, gt_face_mask=skin).to_json(),
                "face": _face_metrics(verts, faces, gv, gf[skin], m.regions["face"]),
                "gt_surface": "skin sub-mesh of the model"}
        else:
            metrics["geometry_vs_gt"] = {"head": compare_meshes(verts, faces, gv, gf, n_samples=20000).to_json(),
                                         "gt_surface": "whole mesh"}
    write_json(out / "metrics.json", metrics)
    inputs = [capture.root / "transforms.json"] + ([capture.gt_mesh] if capture.gt_mesh else [])
    write_json(out / "manifest.json", build_manifest("headveil reconstruct", cfg, seed=cfg.seed, inputs=inputs,
                                                     backends={"hashgrid": field_.backend(), "volume": "torch"},
                                                     extra={"capture_sha256": sha256_file(capture.root / "transforms.json")}))
    return {"out": out, "metrics": metrics}
