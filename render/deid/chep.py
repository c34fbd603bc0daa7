"""``chep``: Convex Hull Escape Perturbation + dense mesh + Spherical Bins Coloring (CHEP/SBC paper §2).

Pipeline for one subject (model codes α, η and colours T on the model mesh F):

1. α' = CHEP(α; pivots Q, q, b) (:func:`headveil.geometry.identity.chep.chep_perturb`);
2. F' = S α' + F̄ with the original expression η; the dense mesh F̈' = subdivision + bump
   displacement of F' (:func:`headveil.geometry.dense.dense_mesh`), so vertex counts differ;
3. colours of F̈' by SBC from (F, T) — F without expression as in the paper, or with it
   (``bins_from="expression"``, the §5 improvement) (:mod:`headveil.geometry.sbc`);
4. render: in place in the photo (the registered method, ``headveil deid``), or the paper's
   evaluation projection F^(2D) (:func:`project_2d`: random rotation ρ ~ U[0, π/8]³, face width ≈ 1,
   camera at 1.8 on z, fov π/3, ambient + spot light).

Pivots: ``pivots = N`` draws N identities from the model prior with ``pivot_seed`` (never the
subject's own code); ``pivots_file`` reads a ``(Q, K)`` ``.npy`` array or a folder of ``fit.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.geometry.dense import DenseMeshConfig, dense_mesh
from headveil.geometry.morphable.fit_result import FitResult
from headveil.geometry.identity.chep import CHEPPerturbation, chep_perturb
from headveil.geometry.sbc import SphericalBins, build_bins, outer_surface_mask, sample_bins
from headveil.render.deid import face3d
from headveil.render.deid.registry import DeidInput, DeidOutput, MethodSpec, register_method

BINS_FROM = ("neutral", "expression")


def load_pivots(spec: str | Path | int, model, seed: int = 0) -> np.ndarray:
    """Pivot codes ``(Q, K) float64``: an int → Q codes drawn from the model prior with ``seed``; a
    ``.npy`` file → its array; a folder → the ``identity`` of every ``fit.json`` under it."""
    if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.isdigit()):
        n = int(spec)
        if n < 1:
            raise HeadVeilError(f"the pivot count must be ≥ 1; got {n}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x51E7]))
        return rng.standard_normal((n, model.n_id))
    path = Path(spec)
    if path.suffix == ".npy" and path.is_file():
        arr = np.load(path)
    elif path.is_dir():
        fits = sorted(path.rglob("fit.json"))
        if not fits:
            raise HeadVeilError(f"no fit.json under {path} (fit pivot photos with `headveil fit` first)")
        arr = np.stack([FitResult.load(f).identity.astype(np.float64) for f in fits])
    else:
        raise HeadVeilError(f"pivots must be a count, a .npy file or a folder of fits; got {spec}")
    arr = np.asarray(arr, np.float64)
    if arr.ndim != 2 or arr.shape[1] > model.n_id:
        raise HeadVeilError(f"pivot codes must be (Q, ≤{model.n_id}); got {arr.shape}")
    return np.pad(arr, ((0, 0), (0, model.n_id - arr.shape[1])))


def source_bins(model, alpha, eta, colors, bins_from: str = "neutral", n_bins: int = 100) -> SphericalBins:
    """Ξ of the original coloured mesh (F, T) (§2.3): F = S α + F̄ without expression as in the
    paper, or with it (``bins_from="expression"``, the §5 improvement).

    Only vertices on the outer surface (:func:`headveil.geometry.sbc.outer_surface_mask`), minus
    interior parts, fill the bins: the embedded head has a mouth cavity and eyeballs, which the
    paper's single-surface face mesh has not.

    Args:
        model: the morphable model; ``alpha (K,)``, ``eta (E,)``; ``colors (V, 3)`` in [0, 1] (T).
    """
    if bins_from not in BINS_FROM:
        raise HeadVeilError(f"bins_from must be one of {BINS_FROM}; got {bins_from!r}")
    src_v = model.vertices(alpha, eta if bins_from == "expression" else None)
    ext = face3d.exterior_vertices(model) & outer_surface_mask(src_v, model.faces)
    return build_bins(src_v[ext], np.asarray(colors)[ext], n_bins, n_bins)


def sbc_dense_face(model, alpha_new, eta, bins: SphericalBins, dense: DenseMeshConfig,
                   region: str = "face", submesh=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Steps 2–3: the dense perturbed mesh F̈' (with expression η) and its SBC colours from ``bins``.

    Args:
        region: ``face`` (the face submesh, for compositing into photos) or ``head`` (the whole mesh).
        submesh: with ``region="face"``, the :class:`~headveil.render.deid.face3d.FaceSubmesh` to
            use (e.g. grown to a photo's face outline); default the model's face submesh.

    Returns:
        ``(vertices (V', 3) model frame metres, faces (F', 3), colors (V', 3) in [0, 1], info)``.
    """
    v_new = model.vertices(alpha_new, eta)
    skin = (model.vertex_part == 0).astype(np.float64)
    if region == "face":
        sub = submesh if submesh is not None else face3d.face_submesh(model)
        idx, faces = sub.vertex_index, sub.faces
    elif region == "head":
        idx, faces = np.arange(model.n_vertices), model.faces
    else:
        raise HeadVeilError(f"region must be face or head; got {region!r}")
    uv = None if model.uv is None else model.uv[idx]
    dv, df = dense_mesh(v_new[idx], faces, uv, skin[idx], dense)
    return dv, df, np.clip(sample_bins(bins, dv), 0, 1), {"dense_vertices": int(len(dv)),
                                                           "empty_bins": bins.empty_fraction}


def random_rotation(rng: np.random.Generator, max_angle: float = np.pi / 8) -> tuple[np.ndarray, np.ndarray]:
    """§2.4: ρ ~ U[0, max_angle]³ and R = Rodrigues(ρ); returns ``(ρ (3,), R (3, 3))``."""
    from headveil.geometry.transforms import rodrigues

    rho = rng.uniform(0.0, max_angle, 3)
    return rho, rodrigues(rho)


def project_2d(vertices_model, faces, colors, R, size: int = 224, face_width: float | None = None,
               background=(0.0, 0.0, 0.0), points_model=None):
    """The paper's F^(2D) (§2.4, eq. 14): rotate by R, scale the face to width ≈ 1, camera at
    z = 1.8 looking at it (H), fov π/3, aspect 1, ambient + spot light. Returns ``(size, size, 3) uint8``.

    Axes: the model looks toward +z, so the camera sits on +z at distance 1.8 facing −z (the
    paper's OpenGL extrinsic H with translation 1.8 along z). ``face_width`` (metres) sets the
    scale; default the x-extent of the given vertices.
    """
    from headveil.geometry.camera import Camera, intrinsics_from_fov, look_at
    from headveil.render.mesh_renderer import render_mesh
    from headveil.render.shading import DirectionalLight

    v = np.asarray(vertices_model, np.float64) @ np.asarray(R, np.float64).T
    width = face_width or float(np.ptp(np.asarray(vertices_model)[:, 0]))
    v = v / width
    cam = Camera(intrinsics_from_fov(size, size, 60.0), look_at((0.0, 0.0, 1.8)), size, size)
    spot = DirectionalLight((0.2, 0.3, 1.0), 0.45, 0.6)  # ambient + a light from near the camera
    res = render_mesh(v, faces, cam, colors, light=spot, background=background, supersample=2)
    img = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if points_model is None:
        return img
    px, _ = cam.project(np.asarray(points_model, np.float64) @ np.asarray(R, np.float64).T / width)
    return img, px


@dataclass
class CHEPParams:
    q: int = 10
    """Pivots per target (eq. 10)."""
    b: float = 2.0
    """Jump factor of eq. (11) (0 = unchanged, > 1 escapes)."""
    pivots: str = "20"
    """Pivot set: a count (drawn from the model prior with pivot_seed), a .npy (Q, K) file or a folder of fit.json."""
    pivot_seed: int = 0
    selection: str = "nearest"
    """nearest (eq. 10) or furthest (§5)."""
    dense_levels: int = 1
    """Subdivision levels of the dense mesh."""
    bins_from: str = "neutral"
    """neutral (paper) or expression (§5)."""
    render: str = "photo"
    """Colours T carried by SBC: photo (sampled from the input) or model (albedo)."""
    check_hull: bool = True

    def __post_init__(self):
        from headveil.common.errors import SettingsError

        if int(self.q) < 1:
            raise SettingsError(f"--q must be ≥ 1; got {self.q}")
        if not (np.isfinite(self.b) and self.b >= 0):
            raise SettingsError(f"--b must be a finite number ≥ 0; got {self.b}")
        if self.selection not in ("nearest", "furthest"):
            raise SettingsError(f"selection must be nearest or furthest; got {self.selection!r}")
        if self.bins_from not in BINS_FROM:
            raise SettingsError(f"bins_from must be one of {BINS_FROM}; got {self.bins_from!r}")
        if int(self.dense_levels) < 0:
            raise SettingsError(f"dense_levels must be ≥ 0; got {self.dense_levels}")
        face3d.check_render_mode(self.render)


def _chep(inp: DeidInput, p: CHEPParams, rng: np.random.Generator) -> DeidOutput:
    face3d.check_render_mode(p.render)
    model, c = inp.model, inp.codes
    alpha = np.asarray(c.alpha, np.float64)
    pivots = inp.extras.get("pivots")
    if pivots is None:
        pivots = load_pivots(p.pivots, model, p.pivot_seed)
    res = chep_perturb(alpha, pivots, CHEPPerturbation(p.q, p.b, p.selection, check_hull=p.check_hull))
    metrics = {**res.to_json(), "q": p.q, "b": p.b, "Q": int(len(pivots)), "render": p.render}
    R, t = inp.model_to_world()
    v_old = model.vertices(alpha, c.eta)
    colors = face3d.subject_colors(inp, p.render, v_old, R, t)
    bins = source_bins(model, alpha, c.eta, colors, p.bins_from)
    sub = face3d.region_submesh(model, face3d.to_world(v_old, R, t), inp.camera, inp.extras.get("face_region"))
    dv, df, dc, info = sbc_dense_face(model, res.alpha, c.eta, bins, DenseMeshConfig(levels=p.dense_levels),
                                      submesh=sub)
    comp = face3d.rerender_face(inp.image, inp.camera, R, t, v_old[sub.vertex_index], sub.faces, dv, df, dc,
                                light=face3d.scene_light(inp, p.render), unlit=p.render == "photo",
                                face_region=inp.extras.get("face_region"))
    metrics.update(info, face_pixels=int((comp.face_mask > 0).sum()))
    return DeidOutput(comp.image, mesh=(face3d.to_world(dv, R, t), df, dc), codes=res.alpha, metrics=metrics,
                      extras={"composite": comp})


register_method(MethodSpec("chep", CHEPParams, _chep, "convex-hull escape of the 3D identity code, dense mesh, SBC colour",
                           needs=("image", "model", "codes", "camera"), strength="b", identity_strength=0.0))
