"""The morphable head model: one interface for the embedded model and user-supplied ones.

A head is synthesised linearly (CHEP eq. 1/3, IDEudemon eq. 1):

.. math::
    F(\\alpha, \\eta) = \\bar F + S\\alpha + E\\eta, \\qquad T(\\beta) = \\bar T + A\\beta

with identity codes :math:`\\alpha \\sim N(0, I)` (the basis columns are scaled by their standard
deviations), expression weights :math:`\\eta` (ARKit face units for the embedded model, in
[0, 1]) and albedo codes :math:`\\beta \\sim N(0, I)`.

Frame: the model frame, metres, right-handed, +Y up, the face looking toward +Z, +X the
subject's left; the origin is the centre of the mean head's skin bounding box.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headveil.common.outputs import atomic_replace

from headveil.common.errors import HeadVeilError

EMBEDDED_PATH = Path(__file__).resolve().parents[2] / "assets" / "head_model" / "headveil_head.npz"


@dataclass
class LandmarkSet:
    """Landmark correspondences on the model surface.

    Attributes:
        face_index: ``(L,) int64`` triangle index per landmark.
        bary: ``(L, 3) float32`` barycentric weights on that triangle (rows sum to 1).
        weight: ``(L,) float32`` fitting weight per landmark (0 = unused, e.g. silhouette points).
    """

    face_index: np.ndarray
    bary: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.face_index)


@dataclass
class MorphableModel:
    """A linear morphable head model (shape, expression, albedo) plus topology and annotations.

    Attributes:
        name: model name.
        vertices_mean: ``(V, 3) float32``, metres, model frame.
        faces: ``(F, 3) int64`` triangle vertex indices, counter-clockwise seen from outside.
        shape_basis: ``(K, V, 3) float32`` identity basis scaled by per-component std (metres per
            unit α).
        expr_basis: ``(E, V, 3) float32`` expression basis (metres per unit η).
        expr_names: ``E`` names (ARKit/MediaPipe blendshape names for the embedded model).
        albedo_mean: ``(V, 3) float32`` sRGB in [0, 1].
        albedo_basis: ``(A, V, 3) float32`` per unit β.
        albedo_names: ``A`` names.
        vertex_part: ``(V,) int64`` index into ``part_names`` (skin, eyes, teeth, …).
        part_names: sub-mesh names.
        regions: named ``(V,) bool`` vertex masks (``face``, ``skin``, ``lips``, …).
        landmarks: named :class:`LandmarkSet` (``mediapipe478``, ``ibug68``).
        uv: ``(V, 2) float32`` texture coordinates, or None.
        expr_range: ``(lo, hi)`` valid range of η per component.
        metadata: provenance (source, licence, build config).
    """

    name: str
    vertices_mean: np.ndarray
    faces: np.ndarray
    shape_basis: np.ndarray
    expr_basis: np.ndarray
    expr_names: list[str]
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    albedo_names: list[str]
    vertex_part: np.ndarray | None = None
    part_names: list[str] = field(default_factory=lambda: ["skin"])
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: dict[str, LandmarkSet] = field(default_factory=dict)
    uv: np.ndarray | None = None
    expr_range: tuple[float, float] = (-np.inf, np.inf)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        V = self.vertices_mean.shape[0]
        for nm, arr in (("shape_basis", self.shape_basis), ("expr_basis", self.expr_basis),
                        ("albedo_basis", self.albedo_basis)):
            if arr.ndim != 3 or arr.shape[1:] != (V, 3):
                raise ValueError(f"{nm} must have shape (K, {V}, 3), got {arr.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.max(initial=0) >= V:
            raise ValueError(f"faces must be (F, 3) indices < {V}, got shape {self.faces.shape}")
        if self.vertex_part is None:
            self.vertex_part = np.zeros(V, np.int64)
        if len(self.expr_names) != self.n_expr:
            raise ValueError("expr_names must name every expression component")

    # -- sizes --------------------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return self.vertices_mean.shape[0]

    @property
    def n_id(self) -> int:
        return self.shape_basis.shape[0]

    @property
    def n_expr(self) -> int:
        return self.expr_basis.shape[0]

    @property
    def n_albedo(self) -> int:
        return self.albedo_basis.shape[0]

    # -- synthesis (numpy) --------------------------------------------------------------------
    def _codes(self, code, n: int, name: str) -> np.ndarray:
        if code is None:
            return np.zeros(n, np.float32)
        code = np.asarray(code, dtype=np.float32).reshape(-1)
        if code.shape[0] > n:
            raise ValueError(f"{name} has {code.shape[0]} components, the model has {n}")
        if not np.all(np.isfinite(code)):
            raise ValueError(f"{name} contains NaN or inf")
        return np.pad(code, (0, n - code.shape[0]))

    def vertices(self, alpha=None, eta=None) -> np.ndarray:
        """Vertices for identity ``alpha (K',)`` and expression ``eta (E',)`` (shorter codes are
        zero-padded). Returns ``(V, 3) float32`` metres, model frame."""
        a = self._codes(alpha, self.n_id, "alpha")
        e = self._codes(eta, self.n_expr, "eta")
        v = self.vertices_mean + np.tensordot(a, self.shape_basis, 1) + np.tensordot(e, self.expr_basis, 1)
        return v.astype(np.float32)

    def albedo(self, beta=None) -> np.ndarray:
        """Per-vertex albedo ``(V, 3) float32`` sRGB, clipped to [0, 1]."""
        b = self._codes(beta, self.n_albedo, "beta")
        return np.clip(self.albedo_mean + np.tensordot(b, self.albedo_basis, 1), 0.0, 1.0).astype(np.float32)

    def landmarks_3d(self, vertices: np.ndarray, scheme: str) -> np.ndarray:
        """Landmark positions ``(L, 3)`` on a mesh with this topology (``vertices (V, 3)``)."""
        lm = self.landmark_set(scheme)
        tri = vertices[self.faces[lm.face_index]]  # (L, 3, 3)
        return np.einsum("lk,lkd->ld", lm.bary, tri)

    def landmark_set(self, scheme: str) -> LandmarkSet:
        if scheme not in self.landmarks:
            raise HeadVeilError(f"model {self.name!r} has no {scheme!r} landmarks (has: {sorted(self.landmarks)})")
        return self.landmarks[scheme]

    # -- sampling ------------------------------------------------------------------------------
    def sample_codes(self, rng: np.random.Generator, id_scale: float = 1.0, n_id: int | None = None,
                     albedo_scale: float = 1.0) -> dict[str, np.ndarray]:
        """Draw α ~ N(0, id_scale² I) (first ``n_id`` components, default all) and β ~ N(0, I)."""
        n_id = self.n_id if n_id is None else min(n_id, self.n_id)
        alpha = np.zeros(self.n_id, np.float32)
        alpha[:n_id] = rng.standard_normal(n_id) * id_scale
        beta = (rng.standard_normal(self.n_albedo) * albedo_scale).astype(np.float32)
        return {"alpha": alpha, "beta": beta}

    # -- torch ---------------------------------------------------------------------------------
    def torch_buffers(self, device=None) -> dict:
        """The bases as torch tensors (cached per device), for differentiable synthesis."""
        key = str(device)
        cache = self.__dict__.setdefault("_torch_cache", {})
        if key not in cache:
            import torch

            cache[key] = {
                "mean": torch.as_tensor(self.vertices_mean, dtype=torch.float32, device=device),
                "shape": torch.as_tensor(self.shape_basis.reshape(self.n_id, -1), dtype=torch.float32, device=device),
                "expr": torch.as_tensor(self.expr_basis.reshape(self.n_expr, -1), dtype=torch.float32, device=device),
                "albedo_mean": torch.as_tensor(self.albedo_mean, dtype=torch.float32, device=device),
                "albedo": torch.as_tensor(self.albedo_basis.reshape(self.n_albedo, -1), dtype=torch.float32,
                                          device=device),
                "faces": torch.as_tensor(self.faces, dtype=torch.int64, device=device),
            }
        return cache[key]

    def vertices_torch(self, alpha, eta):
        """Differentiable synthesis: ``alpha (B, K)``, ``eta (B, E)`` → ``(B, V, 3)`` metres."""
        b = self.torch_buffers(alpha.device)
        flat = alpha @ b["shape"][: alpha.shape[-1]] + eta @ b["expr"][: eta.shape[-1]]
        return b["mean"] + flat.reshape(alpha.shape[0], -1, 3)

    def albedo_torch(self, beta):
        """Differentiable albedo: ``beta (B, A)`` → ``(B, V, 3)`` (not clipped)."""
        b = self.torch_buffers(beta.device)
        return b["albedo_mean"] + (beta @ b["albedo"][: beta.shape[-1]]).reshape(beta.shape[0], -1, 3)

    # -- export --------------------------------------------------------------------------------
    def to_trimesh(self, vertices: np.ndarray | None = None, colors: np.ndarray | None = None):
        """A ``trimesh.Trimesh`` with this topology (``colors (V, 3)`` in [0, 1] become RGBA8)."""
        import trimesh

        verts = self.vertices_mean if vertices is None else vertices
        vc = None
        if colors is not None:
            c8 = np.clip(np.asarray(colors) * 255 + 0.5, 0, 255).astype(np.uint8)
            vc = np.concatenate([c8, np.full((len(c8), 1), 255, np.uint8)], 1)
        return trimesh.Trimesh(np.asarray(verts, np.float64), self.faces, vertex_colors=vc, process=False)

    def part_mask(self, *names: str) -> np.ndarray:
        """``(V,) bool``: vertices of the named sub-meshes."""
        ids = [self.part_names.index(n) for n in names if n in self.part_names]
        return np.isin(self.vertex_part, ids)

    def face_part_mask(self, *names: str) -> np.ndarray:
        """``(F,) bool``: triangles whose first vertex lies in the named sub-meshes."""
        return self.part_mask(*names)[self.faces[:, 0]]

    def summary(self) -> dict:
        return {"name": self.name, "vertices": self.n_vertices, "triangles": int(len(self.faces)),
                "identity_components": self.n_id, "expression_components": self.n_expr,
                "albedo_components": self.n_albedo, "parts": list(self.part_names),
                "landmarks": {k: len(v) for k, v in self.landmarks.items()},
                "regions": {k: int(v.sum()) for k, v in self.regions.items()}}

    # -- storage -------------------------------------------------------------------------------
    def save(self, path: str | Path, half: bool = True) -> None:
        """Save as a compressed ``.npz``; bases in float16 when ``half`` (mean stays float32)."""
        import os
        import tempfile

        fdt = np.float16 if half else np.float32
        arrays = {
            "vertices_mean": self.vertices_mean.astype(np.float32),
            "faces": self.faces.astype(np.uint16 if self.n_vertices < 65536 else np.int32),
            "shape_basis": self.shape_basis.astype(fdt), "expr_basis": self.expr_basis.astype(fdt),
            "albedo_mean": self.albedo_mean.astype(np.float32), "albedo_basis": self.albedo_basis.astype(fdt),
            "vertex_part": self.vertex_part.astype(np.uint8),
        }
        if self.uv is not None:
            arrays["uv"] = self.uv.astype(np.float32)
        for k, m in self.regions.items():
            arrays[f"region__{k}"] = np.packbits(m.astype(bool))
        for k, lm in self.landmarks.items():
            arrays[f"lm__{k}__face_index"] = lm.face_index.astype(np.int32)
            arrays[f"lm__{k}__bary"] = lm.bary.astype(np.float32)
            arrays[f"lm__{k}__weight"] = lm.weight.astype(np.float32)
        meta = {"name": self.name, "expr_names": self.expr_names, "albedo_names": self.albedo_names,
                "part_names": self.part_names, "expr_range": list(self.expr_range), "metadata": self.metadata}
        arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez_compressed(tmp, **arrays)
            atomic_replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> MorphableModel:
        """Load a model saved by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise HeadVeilError(f"head model file not found: {path}")
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta_json"]).decode())
            V = z["vertices_mean"].shape[0]
            regions = {k[len("region__"):]: np.unpackbits(z[k])[:V].astype(bool) for k in z.files
                       if k.startswith("region__")}
            lm_names = sorted({k.split("__")[1] for k in z.files if k.startswith("lm__")})
            landmarks = {n: LandmarkSet(z[f"lm__{n}__face_index"].astype(np.int64), z[f"lm__{n}__bary"],
                                        z[f"lm__{n}__weight"]) for n in lm_names}
            return cls(
                name=meta["name"], vertices_mean=z["vertices_mean"].astype(np.float32),
                faces=z["faces"].astype(np.int64), shape_basis=z["shape_basis"].astype(np.float32),
                expr_basis=z["expr_basis"].astype(np.float32), expr_names=list(meta["expr_names"]),
                albedo_mean=z["albedo_mean"].astype(np.float32), albedo_basis=z["albedo_basis"].astype(np.float32),
                albedo_names=list(meta["albedo_names"]), vertex_part=z["vertex_part"].astype(np.int64),
                part_names=list(meta["part_names"]), regions=regions, landmarks=landmarks,
                uv=z["uv"].astype(np.float32) if "uv" in z.files else None,
                expr_range=tuple(meta.get("expr_range", (-np.inf, np.inf))), metadata=meta.get("metadata", {}),
            )


@functools.lru_cache(maxsize=1)
def load_embedded() -> MorphableModel:
    """The embedded CC0 MakeHuman head model shipped in ``assets/head_model`` (cached)."""
    if not EMBEDDED_PATH.is_file():
        raise HeadVeilError(f"embedded head model missing at {EMBEDDED_PATH}; rebuild it with "
                            "`headveil build-model` (see assets/MANIFEST.md)")
    return MorphableModel.load(EMBEDDED_PATH)
