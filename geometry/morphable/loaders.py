"""Loaders for user-supplied morphable models, all returning :class:`MorphableModel`.

No model file ships with HeadVeil or is downloaded: users pass their own licensed files.

- **BFM 2009** (``01_MorphableModel.mat``): ``shapeMU (3N, 1)``, ``shapePC (3N, K)``,
  ``shapeEV (K, 1)`` (standard deviations), ``texMU``/``texPC``/``texEV`` (0–255), ``tl (F, 3)``
  1-based triangles; coordinates in micrometres. No expression basis.
- **BFM 2017** (``model2017-1_*.h5``): groups ``shape``/``expression``/``color`` each with
  ``model/mean``, ``model/pcaBasis`` (orthonormal, ``(3N, K)``), ``model/pcaVariance``, and
  ``shape/representer/cells (3, F)``; coordinates in millimetres, colours in [0, 1].
- **FLAME** (``generic_model.pkl`` / ``flame2023.pkl``): ``v_template (N, 3)`` metres, ``f (F, 3)``,
  ``shapedirs (N, 3, 300 + 100)`` (shape then expression, both in std units). The pickle may
  hold chumpy arrays; they are read without chumpy. Articulation (jaw/neck joints) is not
  modelled: the neutral-pose template plus linear bases.

Bases are scaled by their standard deviations so every code is N(0, I), as for the embedded
model. Frames are the files' own (all three: +Y up, face toward +Z); units become metres.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.morphable.model import MorphableModel


def _orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip the winding if the mesh's signed volume is negative (normals would point inward)."""
    tri = vertices[faces]
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    return faces[:, ::-1].copy() if vol < 0 else faces


def _to_basis(pc: np.ndarray, std: np.ndarray, n_verts: int, scale: float) -> np.ndarray:
    """``(3N, K)`` components and ``(K,)`` std → ``(K, N, 3)`` basis in metres per unit code."""
    return (pc * std[None, :] * scale).T.reshape(len(std), n_verts, 3).astype(np.float32)


def load_bfm2009(path: str | Path, n_shape: int | None = None, n_albedo: int | None = None) -> MorphableModel:
    """Load a Basel Face Model 2009 ``.mat`` file."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        d = loadmat(path)
    except Exception as exc:  # scipy raises several types for bad files
        raise HeadVeilError(f"cannot read BFM 2009 file {path}: {exc}") from exc
    for k in ("shapeMU", "shapePC", "shapeEV", "tl"):
        if k not in d:
            raise HeadVeilError(f"{path} is not a BFM 2009 model (missing {k!r})")
    um = 1e-6
    mean = d["shapeMU"].reshape(-1, 3) * um
    N = len(mean)
    ks = d["shapePC"].shape[1] if n_shape is None else n_shape
    shape = _to_basis(d["shapePC"][:, :ks], d["shapeEV"].reshape(-1)[:ks], N, um)
    faces = _orient_outward(mean, d["tl"].astype(np.int64) - 1)
    if "texMU" in d:
        ka = d["texPC"].shape[1] if n_albedo is None else n_albedo
        alb_mean = (d["texMU"].reshape(-1, 3) / 255.0).astype(np.float32)
        alb = _to_basis(d["texPC"][:, :ka], d["texEV"].reshape(-1)[:ka], N, 1 / 255.0)
    else:
        alb_mean, alb = np.full((N, 3), 0.7, np.float32), np.zeros((0, N, 3), np.float32)
    return MorphableModel("bfm2009", mean.astype(np.float32), faces, shape, np.zeros((0, N, 3), np.float32), [],
                          alb_mean, alb, [f"tex{i}" for i in range(len(alb))],
                          metadata={"source": str(path), "format": "bfm2009", "units_in_file": "micrometres"})


def load_bfm2017(path: str | Path, n_shape: int | None = None, n_expr: int | None = None,
                 n_albedo: int | None = None) -> MorphableModel:
    """Load a Basel Face Model 2017 ``.h5`` file."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise HeadVeilError(f"cannot read BFM 2017 file {path}: {exc}") from exc
    with f:
        if "shape" not in f or "model" not in f["shape"]:
            raise HeadVeilError(f"{path} is not a BFM 2017 model (no shape/model group)")
        mm = 1e-3

        def part(name, k, scale):
            g = f[name]["model"]
            pc = np.asarray(g["pcaBasis"])
            var = np.asarray(g["pcaVariance"]).reshape(-1)
            k = pc.shape[1] if k is None else k
            return np.asarray(g["mean"]).reshape(-1, 3), _to_basis(pc[:, :k], np.sqrt(var[:k]), pc.shape[0] // 3, scale)

        mean, shape = part("shape", n_shape, mm)
        mean = mean * mm
        N = len(mean)
        cells = np.asarray(f["shape"]["representer"]["cells"]).astype(np.int64)
        faces = cells.T if cells.shape[0] == 3 else cells
        if "expression" in f:
            _, expr = part("expression", n_expr, mm)
        else:
            expr = np.zeros((0, N, 3), np.float32)
        if "color" in f:
            alb_mean, alb = part("color", n_albedo, 1.0)
        else:
            alb_mean, alb = np.full((N, 3), 0.7), np.zeros((0, N, 3), np.float32)
    faces = _orient_outward(mean, faces)
    return MorphableModel("bfm2017", mean.astype(np.float32), faces, shape, expr, [f"exp{i}" for i in range(len(expr))],
                          alb_mean.astype(np.float32), alb, [f"color{i}" for i in range(len(alb))],
                          metadata={"source": str(path), "format": "bfm2017", "units_in_file": "millimetres"})


class _ChumpyArray:
    """Stands in for ``chumpy.Ch`` while unpickling: keeps the state, exposes the array."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}

    def array(self) -> np.ndarray:
        for key in ("x", "a", "_x"):
            if key in self.state:
                v = self.state[key]
                return v.array() if isinstance(v, _ChumpyArray) else np.asarray(v)
        raise HeadVeilError("unsupported chumpy object in FLAME pickle")


class _FlameUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("chumpy"):
            return _ChumpyArray
        return super().find_class(module, name)


def _arr(v) -> np.ndarray:
    return v.array() if isinstance(v, _ChumpyArray) else np.asarray(v)


def load_flame(path: str | Path, n_shape: int = 300, n_expr: int = 100) -> MorphableModel:
    """Load a FLAME ``.pkl`` (neutral pose; shape and expression bases)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            d = _FlameUnpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise HeadVeilError(f"cannot read FLAME file {path}: {exc}") from exc
    if not isinstance(d, dict) or not {"v_template", "f", "shapedirs"} <= set(d):
        raise HeadVeilError(f"{path} is not a FLAME model (needs v_template, f, shapedirs)")
    v = _arr(d["v_template"]).astype(np.float64)
    dirs = _arr(d["shapedirs"]).astype(np.float64)  # (N, 3, S+E)
    total = dirs.shape[2]
    ns = min(n_shape, total)
    # FLAME stores 300 shape then 100 expression components; smaller files split the same way
    n_shape_file = 300 if total > 300 else total
    ne = max(0, min(n_expr, total - n_shape_file))
    shape = np.moveaxis(dirs[:, :, :min(ns, n_shape_file)], 2, 0).astype(np.float32)
    expr = np.moveaxis(dirs[:, :, n_shape_file:n_shape_file + ne], 2, 0).astype(np.float32)
    N = len(v)
    faces = _orient_outward(v, _arr(d["f"]).astype(np.int64))
    return MorphableModel("flame", v.astype(np.float32), faces, shape, expr, [f"exp{i}" for i in range(len(expr))],
                          np.full((N, 3), 0.7, np.float32), np.zeros((0, N, 3), np.float32), [],
                          metadata={"source": str(path), "format": "flame", "units_in_file": "metres",
                                    "note": "neutral pose; joints and pose correctives are not modelled"})


def load_model(path: str | Path) -> MorphableModel:
    """Load any supported model by file type: HeadVeil ``.npz``, BFM ``.mat``/``.h5``, FLAME ``.pkl``."""
    path = Path(path)
    if not path.is_file():
        raise HeadVeilError(f"model file not found: {path}")
    loaders = {".npz": MorphableModel.load, ".mat": load_bfm2009, ".h5": load_bfm2017, ".pkl": load_flame}
    if path.suffix.lower() not in loaders:
        raise HeadVeilError(f"unknown model format {path.suffix!r}; use .npz, .mat (BFM 2009), .h5 (BFM 2017), .pkl (FLAME)")
    return loaders[path.suffix.lower()](path)
