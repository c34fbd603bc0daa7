"""Derive the model's landmark correspondences from the detectors themselves.

For ``n_identities`` random identities (plus the mean) under a few head poses, the head is
rendered, each detector is run, and every detected 2D landmark is back-projected by ray casting
onto the rendered mesh (triangle + barycentric). Because all identities share one topology, each
hit maps to a point on the mean head; per landmark, the hit nearest the median of those points
(the medoid, with its own triangle and barycentrics) is the correspondence. Every pose is
rendered with a closed and an open mouth, so inner-lip points land on the right lip. The spread of the hits (mm on the mean head) sets a fitting
weight: consistent points weigh 1, contour points that slide with pose weigh less.

All renders are neutral, so MediaPipe's median blendshape read-out over them is its bias on
this model's faces; it is stored and subtracted from read-outs when fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.geometry.morphable.model import LandmarkSet, MorphableModel
from headveil.render.scene import HeadPose, SubjectCodes, portrait_camera, render_subject
from headveil.render.rasterize import rasterize


@dataclass
class DerivationConfig:
    n_identities: int = 16
    """Random identities besides the mean head."""
    yaws: tuple[float, ...] = (0.0, -12.0, 12.0)
    """Head yaws (degrees) of the detector runs."""
    pitches: tuple[float, ...] = (0.0,)
    """Head pitches (degrees) of the detector runs."""
    image_size: int = 512
    """Render size in pixels."""
    seed: int = 7
    """Seed of the random identities."""
    open_mouth: float = 0.35
    """Each pose is also rendered with this jawOpen weight, so inner-lip landmarks are assigned to the correct lip (on a closed mouth the upper and lower lip points coincide); 0 disables."""
    spread_scale_mm: float = 2.0
    """A landmark whose hits spread by this much (robust std) gets weight 0.5."""


def _backproject(points: np.ndarray, frags, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle and barycentrics under each 2D point (nearest pixel), −1 where off the mesh."""
    H, W = frags.face_index.shape
    u = np.clip(np.floor(points[:, 0]).astype(int), 0, W - 1)
    v = np.clip(np.floor(points[:, 1]).astype(int), 0, H - 1)
    return frags.face_index[v, u], frags.bary[v, u]


def derive_landmarks(model: MorphableModel, detectors: list[str], cfg: DerivationConfig, progress=None):
    """Returns ``({scheme: LandmarkSet}, report)``; report holds per-scheme spread statistics."""
    import trimesh

    from headveil.geometry.perception.detectors import SCHEME, get_detector

    rng = np.random.default_rng(cfg.seed)
    cam = portrait_camera(cfg.image_size)
    mean_v = model.vertices_mean.astype(np.float64)
    hits: dict[str, list[np.ndarray]] = {SCHEME[d]: [] for d in detectors}
    hit_faces: dict[str, list[np.ndarray]] = {SCHEME[d]: [] for d in detectors}
    hit_bary: dict[str, list[np.ndarray]] = {SCHEME[d]: [] for d in detectors}
    neutral_blendshapes: list[dict[str, float]] = []
    n_images = {SCHEME[d]: 0 for d in detectors}
    subjects = [SubjectCodes(np.zeros(model.n_id, np.float32), np.zeros(model.n_expr, np.float32),
                             np.zeros(model.n_albedo, np.float32))]
    for _ in range(cfg.n_identities):
        c = model.sample_codes(rng)
        subjects.append(SubjectCodes(c["alpha"], np.zeros(model.n_expr, np.float32), c["beta"]))
    mouths = [0.0] + ([cfg.open_mouth] if cfg.open_mouth > 0 and "jawOpen" in model.expr_names else [])
    todo = [(s, y, p, mo) for s in subjects for y in cfg.yaws for p in cfg.pitches for mo in mouths]
    for k, (subj, yaw, pitch, mouth) in enumerate(todo):
        if mouth > 0:
            eta = np.zeros(model.n_expr, np.float32)
            eta[model.expr_names.index("jawOpen")] = mouth
            subj = SubjectCodes(subj.alpha, eta, subj.beta)
        res, verts = render_subject(model, subj, HeadPose(yaw, pitch), cam)
        frags = rasterize(verts, model.faces, cam)
        img = (np.clip(res.image, 0, 1) * 255 + 0.5).astype(np.uint8)
        for d in detectors:
            found = get_detector(d).detect(img)
            if not found:
                continue
            n_images[SCHEME[d]] += 1
            if found[0].blendshapes and mouth == 0:
                neutral_blendshapes.append(found[0].blendshapes)
            fi, b = _backproject(found[0].points, frags, model.faces)
            pts = np.full((len(fi), 3), np.nan)
            ok = fi >= 0
            pts[ok] = np.einsum("lk,lkd->ld", b[ok], mean_v[model.faces[fi[ok]]])
            hits[SCHEME[d]].append(pts)
            hit_faces[SCHEME[d]].append(fi)
            hit_bary[SCHEME[d]].append(b)
        if progress:
            progress(k + 1, len(todo))
    mesh = trimesh.Trimesh(mean_v, model.faces, process=False)
    sets, report = {}, {}
    for scheme, obs in hits.items():
        if not obs:
            raise RuntimeError(f"no detections for {scheme}; cannot derive its landmarks")
        P = np.stack(obs)  # (n_obs, L, 3)
        med = np.nanmedian(P, axis=0)
        valid = np.sum(np.isfinite(P[..., 0]), axis=0)
        dev = np.linalg.norm(P - med[None], axis=2)
        spread = np.nanmedian(dev, axis=0) * 1.4826 * 1e3  # robust std, mm
        # the medoid hit: the observation nearest the median keeps its own triangle and
        # barycentrics (snapping the median to the surface could cross the closed lip seam)
        Fi, Bi = np.stack(hit_faces[scheme]), np.stack(hit_bary[scheme])
        medoid = np.nanargmin(np.where(np.isfinite(dev), dev, np.inf), axis=0)
        L = P.shape[1]
        tri = Fi[medoid, np.arange(L)]
        bary = Bi[medoid, np.arange(L)].astype(np.float64)
        missing = tri < 0
        if missing.any():  # never hit: fall back to the closest surface point of the median
            closest, _, t2 = trimesh.proximity.closest_point(mesh, np.nan_to_num(med[missing]))
            tri[missing] = t2
            bary[missing] = trimesh.triangles.points_to_barycentric(mean_v[model.faces[t2]], closest)
        bary = np.clip(bary, 0, 1)
        bary /= bary.sum(1, keepdims=True)
        weight = 1.0 / (1.0 + (spread / cfg.spread_scale_mm) ** 2)
        weight[valid < max(3, 0.5 * len(obs))] = 0.0
        sets[scheme] = LandmarkSet(tri.astype(np.int64), bary.astype(np.float32), weight.astype(np.float32))
        report[scheme] = {"images": n_images[scheme], "renders": len(todo),
                          "spread_mm_median": float(np.nanmedian(spread)), "spread_mm_p90": float(np.nanpercentile(spread, 90)),
                          "unused_landmarks": int((weight == 0).sum())}
    if neutral_blendshapes:
        names = sorted(neutral_blendshapes[0])
        report["blendshape_bias"] = {n: float(np.median([b.get(n, 0.0) for b in neutral_blendshapes])) for n in names}
    return sets, report
