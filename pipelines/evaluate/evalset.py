"""``headveil evalset``: rendered evaluation sets (subjects × views × lights × expressions × methods).

Layout of a set folder::

    DIR/evalset.jsonl       one typed EvalSetRow per line (JSON with its schema), appended as images finish
    DIR/images/<id>.png     the images (original renders and every method's output)
    DIR/meshes/<id>.ply     ground-truth meshes of the originals and method meshes (``--meshes``)
    DIR/manifest.json       resolved config, versions, seed

A row is keyed by its ``id``; rerunning the same command skips rows whose image exists with the
recorded checksum (resumable). Everything is deterministic for a seed: subject codes come from
``SeedSequence(seed).spawn(subjects)`` and each method call gets its own seed derived from the row
key, so the worker count and the order of completion do not change any pixel.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from headveil.common.artefacts import Artefact
from headveil.common.errors import HeadVeilError
from headveil.common.images import write_image
from headveil.common.outputs import build_manifest, sha256_file, to_jsonable, write_json
from headveil.geometry.morphable.model import load_embedded
from headveil.render.scene import (EXPRESSIONS, LIGHTS, HeadPose, SubjectCodes, expression_vector, portrait_camera,
                                   render_subject, subject_codes)
from headveil.pipelines.commands import command

ROWS_NAME = "evalset.jsonl"

@dataclass
class EvalSetCommand:
    """Render an evaluation set: subjects × views × lights × expressions, each through every method."""

    out: Path = Path("evalset_out")
    """Output folder (created; an existing set is resumed)."""
    subjects: int = 8
    """Synthetic identities."""
    views: tuple[float, ...] = (0.0, 25.0)
    """Head yaw angles in degrees (one image per angle)."""
    pitch: float = 0.0
    """Head pitch in degrees for every view."""
    lights: tuple[str, ...] = ("front", "left")
    """Named lights: front, left, right, top, dim."""
    expressions: tuple[str, ...] = ("neutral",)
    """Named expressions: neutral, smile, open, surprise, frown."""
    methods: tuple[str, ...] = ("blur", "pixelate", "mask")
    """De-identification methods from the registry, name or name:key=value,...."""
    seed: int = 0
    """Seed of the identities (rows are deterministic per seed)."""
    image_size: int = 256
    """Image side in pixels."""
    meshes: bool = False
    """Also write ground-truth meshes (and method meshes when a method returns one)."""
    workers: int = 1
    """Worker processes (local) or CPUs of a local Ray runtime; each task renders one subject."""
    executor: Literal["local", "ray"] = "local"
    """Where the subjects render: local (a process pool) or ray (a Ray cluster; extra headveil[dist])."""
    ray_address: str | None = None
    """--executor ray: auto or HOST:PORT of a running cluster (ray start --head); none starts a local runtime with --workers CPUs and stops it at the end."""
    identity_scale: float = 1.0
    """Std of the sampled identity codes α (1 = the model's prior)."""


@dataclass
class EvalSetRow(Artefact):
    """One image of an evaluation set (a line of ``evalset.jsonl``; loads back with ``from_json``).

    Attributes:
        id: unique row id; ``original_id``: the id of the unprotected render it derives from.
        subject / codes_sha / expression / pose (degrees) / light / seed: the rendered condition.
        landmarks68: ``(68, 2)`` projected model landmarks, pixels; camera: the render's camera.
        method / method_label / params: the de-identification method (``original`` for originals).
        files: ``{kind: {"path", "sha256"}}`` (image, optional mesh), relative to the set.
        method_seed / strength / method_metrics: per method row; error: why a row failed.
    """

    SCHEMA: ClassVar[str] = "headveil.evalset-row"
    SCHEMA_VERSION: ClassVar[int] = 1

    id: str
    subject: int
    codes_sha: str
    expression: str
    pose: dict
    light: str
    seed: int
    original_id: str
    landmarks68: list
    camera: dict
    method: str
    method_label: str
    params: dict
    files: dict = field(default_factory=dict)
    method_seed: int | None = None
    strength: float | None = None
    method_metrics: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Rendered and written (no error, files listed)."""
        return self.error is None and bool(self.files)


@dataclass
class _Task:
    subject: int
    cfg: EvalSetCommand
    done: set = field(default_factory=set)


def codes_hash(codes: SubjectCodes) -> str:
    """SHA-256 (first 16 hex) of the subject's identity and albedo codes."""
    h = hashlib.sha256()
    for a in (codes.alpha, codes.beta):
        h.update(np.ascontiguousarray(a, np.float32).tobytes())
    return h.hexdigest()[:16]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)


def _validate(cfg: EvalSetCommand) -> None:
    from headveil.render.deid.registry import parse_method

    if cfg.subjects < 1 or not cfg.views or not cfg.lights or not cfg.expressions:
        raise HeadVeilError("an evaluation set needs ≥ 1 subject, view, light and expression")
    if cfg.image_size < 64:
        raise HeadVeilError(f"--image-size must be ≥ 64; got {cfg.image_size}")
    for name, table, what in ((cfg.lights, LIGHTS, "light"), (cfg.expressions, EXPRESSIONS, "expression")):
        bad = [n for n in name if n not in table]
        if bad:
            raise HeadVeilError(f"unknown {what}(s) {bad}; choose from {', '.join(table)}")
    for m in cfg.methods:
        parse_method(m)


def _render_subject_rows(task: _Task) -> list[dict]:
    """Render one subject's images and method outputs; returns the finished rows (files written)."""
    import torch

    from headveil.geometry.mesh_io import export_mesh
    from headveil.render.deid.registry import DeidInput, apply_method, method_label, parse_method
    from headveil.render.scene import posed_vertices

    torch.set_num_threads(1)
    cfg = task.cfg
    out = Path(cfg.out)
    model = load_embedded()
    codes0 = subject_codes(model, cfg.seed, cfg.subjects)[task.subject]
    cam = portrait_camera(cfg.image_size)
    methods = [parse_method(m) for m in cfg.methods]
    rows = []
    for expr in cfg.expressions:
        codes = SubjectCodes(codes0.alpha, expression_vector(model, EXPRESSIONS[expr]), codes0.beta)
        for yaw in cfg.views:
            pose = HeadPose(float(yaw), float(cfg.pitch), 0.0)
            verts = posed_vertices(model, codes, pose)
            lm68, _ = cam.project(model.landmarks_3d(verts, "ibug68"))
            for light_name in cfg.lights:
                base = f"s{task.subject:04d}_y{yaw:+04.0f}_{light_name}_{expr}"
                common = {"subject": task.subject, "codes_sha": codes_hash(codes), "expression": expr,
                          "pose": {"yaw_deg": float(yaw), "pitch_deg": float(cfg.pitch), "roll_deg": 0.0},
                          "light": light_name, "seed": cfg.seed, "original_id": f"{base}_original",
                          "landmarks68": np.round(lm68, 3).tolist(), "camera": cam.to_dict()}
                light = LIGHTS[light_name]
                orig_id = f"{base}_original"
                original = None
                if orig_id not in task.done or any(f"{base}_{_slug(method_label(s, p))}" not in task.done for s, p in methods):
                    res, _ = render_subject(model, codes, pose, cam, light=light, background=(0.55, 0.56, 0.6))
                    original = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
                if orig_id not in task.done:
                    files = {"image": f"images/{orig_id}.png"}
                    write_image(out / files["image"], original)
                    if cfg.meshes:
                        files["mesh"] = f"meshes/{orig_id}.ply"
                        export_mesh(out / files["mesh"], verts, model.faces, model.albedo(codes.beta))
                    rows.append(EvalSetRow(orig_id, **common, method="original", method_label="original", params={},
                                           files={k: {"path": v, "sha256": sha256_file(out / v)}
                                                  for k, v in files.items()}))
                for spec, params in methods:
                    label = method_label(spec, params)
                    rid = f"{base}_{_slug(label)}"
                    if rid in task.done:
                        continue
                    mseed = zlib.crc32(f"{cfg.seed}/{rid}".encode())
                    inp = DeidInput(original, landmarks68=lm68, model=model, codes=codes, pose=pose, camera=cam,
                                    light=light, background=(0.55, 0.56, 0.6), extras={"source": rid})
                    row = EvalSetRow(rid, **common, method=spec.name, method_label=label,
                                     params={k: (list(v) if isinstance(v, tuple) else v)
                                             for k, v in params.__dict__.items()}, method_seed=mseed,
                                     strength=None if spec.strength is None else float(getattr(params, spec.strength)))
                    try:
                        res = apply_method(spec, inp, params, seed=mseed)
                    except HeadVeilError as exc:
                        row.error = str(exc)
                        rows.append(row)
                        continue
                    files = {"image": f"images/{rid}.png"}
                    write_image(out / files["image"], res.image)
                    if cfg.meshes and res.mesh is not None:
                        files["mesh"] = f"meshes/{rid}.ply"
                        export_mesh(out / files["mesh"], *res.mesh)
                    row.method_metrics = to_jsonable(res.metrics)
                    row.files = {k: {"path": v, "sha256": sha256_file(out / v)} for k, v in files.items()}
                    rows.append(row)
    return rows


def read_rows(folder: str | os.PathLike) -> list[EvalSetRow]:
    """Rows of an evaluation set, the last one per id (a truncated last line from an interrupted run
    is skipped; lines of sets written before rows carried a schema are read as version 1)."""
    path = Path(folder) / ROWS_NAME
    if not path.is_file():
        raise HeadVeilError(f"{folder} is not an evaluation set: {ROWS_NAME} is missing")
    rows = {}
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            r.setdefault("schema", EvalSetRow.SCHEMA)
            r.setdefault("schema_version", EvalSetRow.SCHEMA_VERSION)
            row = EvalSetRow.from_json(r, f"{path} row {r.get('id')!r}")
            rows[row.id] = row
    return list(rows.values())


def _finished_ids(folder: Path) -> set[str]:
    if not (folder / ROWS_NAME).is_file():
        return set()
    done = set()
    for r in read_rows(folder):
        if r.ok and all((folder / f["path"]).is_file() and sha256_file(folder / f["path"]) == f["sha256"]
                        for f in r.files.values()):
            done.add(r.id)
    return done


def run_evalset(cfg: EvalSetCommand) -> dict:
    """Render (or resume) an evaluation set; returns ``{"out", "rows", "new", "failed"}``."""
    from tqdm import tqdm

    from headveil.pipelines.executor import TaskFailure, make_executor

    _validate(cfg)
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if cfg.meshes:
        (out / "meshes").mkdir(exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        prev = json.loads(manifest_path.read_text()).get("config", {})
        same = {k: prev.get(k) for k in ("subjects", "seed", "image_size", "pitch", "identity_scale")}
        now = {k: getattr(cfg, k) for k in same}
        if same != now:
            raise HeadVeilError(f"{out} holds a set rendered with {same}; this run asks for {now}: "
                                "choose another --out or the same settings to resume")
    done = _finished_ids(out)
    tasks = [_Task(s, cfg, done) for s in range(cfg.subjects)]
    n_new, n_failed, failed_subjects = 0, 0, {}
    with open(out / ROWS_NAME, "a") as f:
        def consume(rows):
            nonlocal n_new, n_failed
            for r in rows:
                f.write(json.dumps(r.to_json()) + "\n")
                n_new += r.error is None
                n_failed += r.error is not None
            f.flush()

        bar = tqdm(total=len(tasks), desc="evalset", unit="subject")
        with make_executor(cfg.executor, cfg.workers, cfg.ray_address) as ex:
            for i, rows in ex.run(_render_subject_rows, tasks):
                if isinstance(rows, TaskFailure):  # reported; its rows are redone by a resumed run
                    failed_subjects[i] = rows.error
                    tqdm.write(f"[evalset] subject {i} failed twice: {rows.error}")
                else:
                    consume(rows)
                bar.update()
            backend = ex.describe()
        bar.close()
    n_rows = len(read_rows(out))
    write_json(manifest_path, build_manifest("headveil evalset", cfg, seed=cfg.seed,
                                             backends={"raster": "auto", **backend},
                                             extra={"rows": n_rows, "failed_subjects": failed_subjects}))
    return {"out": out, "rows": n_rows, "new": n_new, "failed": n_failed, "failed_subjects": failed_subjects}


@command("evalset", EvalSetCommand)
def _cli(cfg: EvalSetCommand) -> int | None:
    res = run_evalset(cfg)
    print(f"evaluation set {res['out']}/: {res['rows']} rows ({res['new']} new"
          + (f", {res['failed']} failed" if res["failed"] else "")
          + (f", {len(res['failed_subjects'])} subject(s) failed: rerun to redo them" if res["failed_subjects"] else "")
          + f"); next: headveil eval {res['out']}")
    return 1 if res["failed_subjects"] else 0
