"""A face's appearance read from one photo, and cleaned for use on another face.

:func:`face_appearance` bakes a fitted face's photo colours into the head model's UV atlas
(:func:`~headveil.render.appearance.bake_texture`), de-lights them by the photo's SH light and
completes the unseen texels (:func:`~headveil.render.appearance.fill_unseen`). A donor's (or a
k-same or anonymize class member's) bake holds what someone else's face must not get; with
``reject_occluders`` it is taken out:

- :func:`occluder_texels`: skin texels a per-face skin-colour model rejects (hair, hat brims,
  glasses frames, hands), stricter on the forehead;
- :func:`patch_thin_holes`: the thin strips that rejection cuts out of seen skin, filled from the
  skin right around them;
- :func:`tame_albedo`: specular highlights and hue outliers of the de-lighting clamped.

:func:`even_albedo` then replaces de-lighting's broad residue by the model albedo's broad part
(the donor bank's build).

Arrays as in :mod:`headveil.render.appearance`: atlases ``(S, S, 3) float32`` in [0, 1] (sRGB),
weights ``(S, S) float32`` in [0, 1], texel positions in the model frame (metres, +Y up), vertices
in metres (world frame = the photo camera's frame for fitted photos, OpenCV axes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headveil.common.images import lab_to_srgb, srgb_to_lab
from headveil.geometry.camera import Camera
from headveil.render.appearance import (DEFAULT_TEXTURE_SIZE, SKIN_EXCLUDE, UVRaster, bake_texture, delight,
                                        eye_texels, fill_unseen, mouth_inside_texels, outer_skin, photo_light,
                                        pull_push_fill, shadow_weight, skin_texels, texel_attribute, texel_mask,
                                        uv_raster)


def _skin_distance(texture: np.ndarray, weight: np.ndarray, model, raster: UVRaster,
                   patch_radius_m: float = 0.015):
    """Per-texel robust CIELAB distance ``(S, S)`` to the face's skin model (fitted on well-seen
    cheek and nose texels), the texels' mean-shape positions ``(N, 3)`` with their flat indices, and
    the model's iBUG-68 landmarks; None when too little cheek was seen."""
    pos, idx = texel_attribute(raster, model.vertices(), model.faces)
    lm = model.landmarks_3d(model.vertices(), "ibug68")
    centres = np.stack([lm[29], lm[30], (lm[31] + lm[2]) / 2, (lm[35] + lm[14]) / 2, (lm[48] + lm[4]) / 2,
                        (lm[54] + lm[12]) / 2])
    S = raster.size
    patch = np.zeros(S * S, bool)
    patch[idx] = np.min(np.linalg.norm(pos[:, None] - centres[None], axis=2), 1) < patch_radius_m
    patch = patch.reshape(S, S) & (weight > 0.7)
    if patch.sum() < 100:
        return None
    lab = srgb_to_lab(texture.reshape(-1, 3)).reshape(texture.shape)
    x = lab[patch]
    med = np.median(x, 0)
    mad = np.maximum(np.median(np.abs(x - med), 0) * 1.4826, [15.0, 3.0, 3.0])
    return np.sqrt((((lab - med) / mad) ** 2).sum(-1)), pos, idx, lm


def _near(pos: np.ndarray, idx: np.ndarray, points: np.ndarray, radius: float, S: int) -> np.ndarray:
    out = np.zeros(S * S, bool)
    out[idx] = np.min(np.linalg.norm(pos[:, None] - points[None], axis=2), 1) < radius
    return out.reshape(S, S)


def _occluder_candidates(model, raster: UVRaster) -> np.ndarray:
    """``(S, S) bool``: every skin texel (forehead and temples too), features and ears excluded."""
    keep = outer_skin(model)
    for r in SKIN_EXCLUDE:
        if r in model.regions:
            keep &= ~model.regions[r]
    return texel_mask(model, raster, keep)


#: Widest cut-out (glasses frames, strands of a fringe, the shadow of a fold), as a share of the
#: atlas side, that :func:`patch_thin_holes` fills from the skin around it: every texel of such a hole
#: lies within this of a seen texel (≈ 12 mm on the face at any atlas size: skin UVs are ≈ 1 m per unit).
THIN_HOLE = 0.012


def patch_thin_holes(albedo: np.ndarray, weight: np.ndarray, model, raster: UVRaster,
                     max_share: float = THIN_HOLE) -> tuple[np.ndarray, np.ndarray]:
    """Fill the thin holes of a de-lit atlas from the seen skin right around them.

    A hole is a connected set of unseen skin texels (:func:`_occluder_candidates`: the skin where
    occluders are cut out) none of which lies farther than ``max_share`` × the atlas side from a seen
    texel (``weight > 0``): a glasses frame, strands of a fringe, the dark line of a fold. Completing
    those by the mirror and the model (:func:`fill_unseen`) leaves a flat plateau with a stepped edge
    in the middle of textured skin, which a render shows as a pale crackle; filled instead by a
    full-resolution pull-push of the seen texels (:func:`pull_push_fill`), they continue the colour
    right around them. Wider holes (a hat band, the unseen side) are left to :func:`fill_unseen`.

    Args:
        albedo: ``(S, S, 3) float32`` de-lit colours (valid where ``weight > 0``).
        weight: ``(S, S) float32`` visibility weight in [0, 1].
    Returns:
        ``(albedo, weight)``: the holes' texels filled, with weight 0.5 (seen, by the threshold of
        :func:`fill_unseen`, so no mirror or model colour is mixed into them).
    """
    import cv2

    seen = np.asarray(weight) > 0
    unseen_skin = _occluder_candidates(model, raster) & ~seen
    if not unseen_skin.any() or not seen.any():
        return albedo, weight
    dist = cv2.distanceTransform((~seen).astype(np.uint8), cv2.DIST_L2, 3)
    n, labels = cv2.connectedComponents(unseen_skin.astype(np.uint8), connectivity=8)
    far = np.zeros(n, np.float32)
    np.maximum.at(far, labels[unseen_skin], dist[unseen_skin])
    far[0] = np.inf  # the background label
    thin = unseen_skin & (far[labels] <= max_share * raster.size)
    if not thin.any():
        return albedo, weight
    filled = pull_push_fill(np.where(seen[..., None], albedo, 0.0), np.asarray(weight, np.float32))
    albedo = np.where(thin[..., None], filled, albedo).astype(np.float32)
    weight = np.where(thin, np.float32(0.5), weight).astype(np.float32)
    return albedo, weight


def occluder_texels(texture: np.ndarray, weight: np.ndarray, model, raster: UVRaster,
                    max_distance: float = 4.0, brow_radius_m: float = 0.009, eye_radius_m: float = 0.011,
                    forehead_distance: float = 2.5, forehead_above_m: float = 0.012) -> np.ndarray:
    """``(S, S) bool``: skin texels whose photo colour a per-face skin model rejects (hair, hat brims,
    glasses frames, hands). The model is a Gaussian in CIELAB fitted robustly (median, MAD, with
    floors: shading moves lightness far more than hue) to well-seen texels on the cheeks and the
    nose, where occluders rarely are; a skin texel farther than ``max_distance`` is an occluder.
    On the forehead (``forehead_above_m`` above the highest brow landmark), where fringes and
    brims fall and hair of a skin-like hue differs mostly in lightness (which the floors forgive),
    the limit is ``forehead_distance``. Texels within ``brow_radius_m`` of the model's brow
    landmarks or ``eye_radius_m`` of its eye landmarks are features (lids, lashes, shadows), never
    occluders — glasses frames there stay."""
    S = raster.size
    got = _skin_distance(texture, weight, model, raster)
    if got is None:
        return np.zeros((S, S), bool)
    d, pos, idx, lm = got
    cand = _occluder_candidates(model, raster)
    near = _near(pos, idx, lm[17:27], brow_radius_m, S) | _near(pos, idx, lm[36:48], eye_radius_m, S)
    forehead = np.zeros(S * S, bool)
    forehead[idx] = pos[:, 1] > lm[17:27, 1].max() + forehead_above_m  # model frame: +Y up
    limit = np.where(forehead.reshape(S, S), forehead_distance, max_distance)
    occ = cand & (weight > 0) & (d > limit) & ~near
    import cv2

    return cv2.dilate(occ.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & cand


def tame_albedo(albedo: np.ndarray, weight: np.ndarray, model, raster: UVRaster, k: float = 3.5) -> np.ndarray:
    """Clamp de-lighting's outliers on skin: texels brighter than the skin's median lightness by
    more than ``k`` robust spreads (specular highlights) are brought down to it, and hue (a*, b*)
    is held within ``k`` spreads of the median (a poor light estimate turns shadows green or
    purple). Darker texels (brows, lids, lips), the eye parts and the mouth's inside (teeth are
    brighter than skin, its shadows of any hue) are left as they are."""
    skin = skin_texels(model, raster) & (weight > 0.5)
    if skin.sum() < 100:
        return albedo
    cand = (weight > 0) & ~eye_texels(model, raster) & ~mouth_inside_texels(model, raster)
    lab = srgb_to_lab(albedo[cand])
    x = srgb_to_lab(albedo[skin])
    med = np.median(x, 0)
    mad = np.maximum(np.median(np.abs(x - med), 0) * 1.4826, [4.0, 2.0, 2.0])
    lab[:, 0] = np.minimum(lab[:, 0], med[0] + k * mad[0])
    lab[:, 1:] = np.clip(lab[:, 1:], med[1:] - k * mad[1:], med[1:] + k * mad[1:])
    out = np.array(albedo, np.float32, copy=True)
    out[cand] = np.clip(lab_to_srgb(lab), 0, 1)
    return out


def even_albedo(albedo: np.ndarray, model, raster: UVRaster, beta=None, sigma: float = 0.01,
                chroma: float = 0.25) -> np.ndarray:
    """A de-lit albedo with what de-lighting leaves behind taken out, for use on another face.

    An SH light of nine terms cannot explain a photo's coloured, mixed or cast light; the rest stays
    in the albedo as broad patches of colour and brightness (a purple cheek, a yellow forehead).
    In CIELAB, the albedo is split at a Gaussian of ``sigma`` × the atlas side (normalised over the
    skin texels): its broad part is replaced by the model albedo of ``beta``'s broad part plus the
    skin's mean difference to it (the donor's own tone); its fine part is kept — lightness fully
    (brows, lids, wrinkles, pores: the face), hue and chroma at ``chroma`` of their strength on the
    skin (a photo's colour blotches, and the colour mottling of a mix) and fully on the lips, eyes
    and mouth (the donor's own red lips), with a soft step between. The model albedo's own fine
    structure (its painted brows, which need not sit where the donor's are) never comes in.
    Returns ``(S, S, 3) float32`` in [0, 1]; texels outside the atlas's covered area are left as
    they are."""
    import cv2

    S = raster.size
    ref_v, idx = texel_attribute(raster, model.albedo(beta), model.faces)
    skin_full = skin_texels(model, raster)
    skin = skin_full.ravel()[idx]
    if skin.sum() < 100:
        return np.asarray(albedo, np.float32)
    lab_ref = np.zeros((S * S, 3), np.float32)
    lab_ref[idx] = srgb_to_lab(ref_v.astype(np.float32))
    lab = np.zeros((S * S, 3), np.float32)
    lab[idx] = srgb_to_lab(np.asarray(albedo, np.float32).reshape(-1, 3)[idx])
    wk = np.zeros(S * S, np.float32)
    wk[idx[skin]] = 1.0
    lab, lab_ref, wk = lab.reshape(S, S, 3), lab_ref.reshape(S, S, 3), wk.reshape(S, S)
    s = max(float(sigma) * S, 0.5)
    norm = np.maximum(cv2.GaussianBlur(wk, (0, 0), s), 1e-4)[..., None]

    def broad(x):
        return cv2.GaussianBlur(x * wk[..., None], (0, 0), s) / norm

    mean = (lab - lab_ref).reshape(-1, 3)[idx[skin]].mean(0)
    # the fine part's chroma weight: ``chroma`` on skin, 1 on the features (lips, eyes, mouth)
    c = np.where(skin_full, float(chroma), 1.0).astype(np.float32)
    c = cv2.GaussianBlur(c, (0, 0), max(0.002 * S, 0.5))
    gain = np.stack([np.ones_like(c), c, c], -1)
    out_lab = broad(lab_ref) + mean + (lab - broad(lab)) * gain
    out = np.array(albedo, np.float32, copy=True).reshape(-1, 3)
    out[idx] = np.clip(lab_to_srgb(out_lab.reshape(-1, 3)[idx].astype(np.float32)), 0, 1)
    return out.reshape(S, S, 3)


@dataclass
class FaceAppearance:
    """One face's appearance in UV space.

    Attributes:
        albedo: ``(S, S, 3) float32`` in [0, 1], de-lit and completed.
        confidence: ``(S, S) float32`` in [0, 1]: 1 where the photo saw the texel (or its mirror).
        light: ``(9, 3)`` SH light of the photo, camera frame.
        seen: ``(S, S) float32`` photo visibility weight before filling (occluders at 0 when rejected).
    """

    albedo: np.ndarray
    confidence: np.ndarray
    light: np.ndarray
    seen: np.ndarray


def face_appearance(photo: np.ndarray, model, vertices_model: np.ndarray, R, t, camera: Camera,
                    beta=None, size: int = DEFAULT_TEXTURE_SIZE, reject_occluders: bool = False,
                    exclude: np.ndarray | None = None, complete: bool = True) -> FaceAppearance:
    """Bake, de-light and complete the appearance of a fitted face.

    Args:
        photo: ``(H, W, 3) uint8`` RGB; ``camera``: its camera (world = camera frame for fits).
        vertices_model: ``(V, 3)`` fitted mesh in the model frame (metres); ``R (3, 3)``, ``t (3,)``
            model → world.
        beta: the fitted albedo code (the reference albedo of light estimation; default the mean).
        reject_occluders: drop the texels :func:`occluder_texels` rejects (donors: their glasses,
            hair and hat must not become part of someone else's face); they are filled instead.
        exclude: ``(H, W) bool`` photo pixels known not to be the face (e.g.
            :func:`headveil.render.occlusion.occluder_mask`): never baked.
        complete: fill the unseen texels (:func:`fill_unseen`); with False, ``albedo`` holds the
            de-lit seen texels only (the rest as baked) and ``confidence`` is the visibility weight,
            for callers that read the seen skin alone (a target's tone and light).
    """
    raster = uv_raster(model, size)
    vw = np.asarray(vertices_model, np.float64) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    tex, weight, normals = bake_texture(photo, vw, model.faces, camera, raster, exclude)
    gamma = photo_light(photo, model, vw, camera, beta)
    delit = delight(tex, normals, weight, gamma, camera.w2c)
    if reject_occluders:
        # the skin model reads de-lit colours: a face lit hard from one side is one skin, not a lit
        # half and a rejected one; texels in deep shadow (noise and colour cast multiplied by the
        # de-lighting) give way to their mirror where that one was lit
        weight = np.where(occluder_texels(delit, weight, model, raster), 0.0, weight)
        weight = (weight * shadow_weight(normals, weight, gamma, camera.w2c, model, raster)).astype(np.float32)
        delit = np.where((weight > 0)[..., None], delit, 0.0).astype(np.float32)  # what delight gives now
        delit, weight = patch_thin_holes(delit, weight, model, raster)
    ref = np.asarray(model.albedo(beta), np.float64)
    albedo = tame_albedo(delit, weight, model, raster)
    if reject_occluders:  # soft edges where occluders were cut out, so the fill blends in
        import cv2

        weight = np.minimum(weight, cv2.GaussianBlur(weight, (0, 0), 0.002 * raster.size + 0.5))
    if not complete:
        return FaceAppearance(albedo, weight, gamma, weight)
    filled, conf = fill_unseen(albedo, weight, model, raster, ref)
    return FaceAppearance(filled, conf, gamma, weight)
