"""A donor's albedo moved to a target's skin tone, so a new face keeps the neck's and ears' colour.

- :func:`match_tone`: an atlas moved to another atlas's tone (CIELAB mean and spread on the skin
  texels, hue kept on warm skins).
- :func:`tone_stats` + :func:`match_tone_values`: the same on flat texel values, the target's
  statistics computed once for many albedos.
- :func:`brow_regions`, :func:`brow_darkness`, :func:`lighten_brows`: how much darker than the skin
  above them a face's brows are, and a new face's brows made no darker than the target's (a
  blonde keeps light brows under her kept fringe).

Colours are sRGB in [0, 1] (``(S, S, 3)`` atlases or ``(N, 3)`` texel values, float32); statistics
are CIELAB (L* 0–100, a*, b*).
"""

from __future__ import annotations

import numpy as np

from headveil.common.images import lab_to_srgb, srgb_to_lab


def tone_stats(target: np.ndarray, skin: np.ndarray, target_weight: np.ndarray | None = None):
    """The target's skin tone: CIELAB mean and spread ``((3,), (3,))`` over ``skin (S, S) bool``
    texels of ``target (S, S, 3)`` in [0, 1] (those it saw, ``target_weight > 0.5``, when given);
    None when fewer than 50 texels are left. Compute it once per target for many
    :func:`match_tone_values` calls."""
    sel = skin if target_weight is None else skin & (target_weight > 0.5)
    if sel.sum() < 50:
        return None
    dst = srgb_to_lab(target[sel])
    return dst.mean(0), dst.std(0) + 1e-3


#: :func:`match_tone_values`: a* / b* means above which a skin is warm in that channel, and the
#: clip of the ratio its chroma is scaled by.
WARM_CHROMA = 4.0
CHROMA_RATIO = (0.5, 2.0)


def match_tone_values(values: np.ndarray, skin: np.ndarray, stats, spread: tuple[float, float] = (0.7, 1.4)) -> np.ndarray:
    """Colours ``values (N, 3)`` in [0, 1] moved to a skin tone ``stats`` (:func:`tone_stats`):
    per CIELAB channel, the mean (and the spread, clipped to ``spread``) over the ``skin (N,) bool``
    entries becomes the target's — except a* / b* where both skins are warm in them (means above
    :data:`WARM_CHROMA`): those are scaled about neutral by the ratio of the means (clipped to
    :data:`CHROMA_RATIO`), so features keep their hue. Returns ``(N, 3) float32`` in [0, 1];
    ``values`` as float32 when ``stats`` is None."""
    values = np.asarray(values, np.float32)
    if stats is None:
        return values
    lab = srgb_to_lab(values)
    src = lab[skin]
    ms, ss = src.mean(0), src.std(0) + 1e-3
    md, sd = stats
    k = np.clip(sd / ss, *spread)
    out = (lab - ms) * k + md
    # hue kept: where both skins are clearly warm in a* / b*, that channel is scaled about neutral
    # instead, so a feature with less colour than the donor's skin (brows, lashes, stubble) stays
    # brown instead of being pushed past grey into green or blue on a paler target
    for c in (1, 2):
        if ms[c] > WARM_CHROMA and md[c] > WARM_CHROMA:
            out[:, c] = lab[:, c] * np.clip(md[c] / ms[c], *CHROMA_RATIO)
    return np.clip(lab_to_srgb(out.astype(np.float32)), 0, 1)


def match_tone(albedo: np.ndarray, target: np.ndarray, skin: np.ndarray, target_weight: np.ndarray | None = None,
               spread: tuple[float, float] = (0.7, 1.4), where: np.ndarray | None = None) -> np.ndarray:
    """Move ``albedo (S, S, 3)`` to ``target``'s skin tone: per CIELAB channel, the mean (and the
    spread, clipped to ``spread``) over ``skin (S, S) bool`` texels (those the target saw, when
    ``target_weight`` is given) becomes the target's. Texture detail is kept. Only the texels of
    ``where (S, S) bool`` (default all; e.g. the atlas's covered texels) are converted; ``skin``
    must lie inside ``where``."""
    stats = tone_stats(target, skin, target_weight)
    if stats is None:
        return albedo
    where = np.ones(albedo.shape[:2], bool) if where is None else np.asarray(where, bool)
    out = np.array(albedo, np.float32, copy=True)
    out[where] = match_tone_values(albedo[where], skin[where], stats, spread)
    return out


#: :func:`brow_regions`: texels within this distance (metres, mean shape) of the model's brow
#: landmarks are the brow band (wide enough for a photo's brows, which the fit may put a few
#: millimetres off the model's); the skin ring it is compared with lies above them, between the
#: two ring radii; both keep this far from the eye landmarks (lids and their crease are no brow).
BROW_BAND_M = 0.012
BROW_RING_M = (0.015, 0.024)
BROW_EYE_CLEARANCE_M = 0.009


def brow_regions(model, raster) -> tuple[np.ndarray, np.ndarray]:
    """The brow band and its skin ring on an atlas, flat ``(S·S,)``: the band's weight ``float32`` in
    [0, 1] (1 within :data:`BROW_BAND_M` of the model's iBUG brow landmarks on the mean shape,
    falling to 0 over 3 mm beyond) and the ring ``bool`` (skin between :data:`BROW_RING_M` of
    them, above the nearest one: forehead and temples); both at least :data:`BROW_EYE_CLEARANCE_M`
    from the eye landmarks. Cached per atlas size."""
    cache = model.__dict__.setdefault("_brow_regions", {})
    if raster.size in cache:
        return cache[raster.size]
    from headveil.render.appearance import eye_texels, skin_texels, texel_attribute

    S = raster.size
    v = model.vertices()
    pos, idx = texel_attribute(raster, v, model.faces)
    lm = model.landmarks_3d(v, "ibug68")
    brows = np.concatenate([lm[17:22], (lm[17:21] + lm[18:22]) / 2, lm[22:27], (lm[22:26] + lm[23:27]) / 2])
    dist = np.linalg.norm(pos[:, None] - brows[None], axis=2)
    d_brow = dist.min(1)
    above = pos[:, 1] > brows[dist.argmin(1), 1]  # model frame: +Y up
    d_eye = np.min(np.linalg.norm(pos[:, None] - lm[None, 36:48], axis=2), 1)
    clear = d_eye > BROW_EYE_CLEARANCE_M
    band = np.zeros(S * S, np.float32)
    band[idx] = np.clip((BROW_BAND_M + 0.003 - d_brow) / 0.003, 0, 1) * clear
    band[eye_texels(model, raster).ravel()] = 0.0
    ring = np.zeros(S * S, bool)
    ring[idx] = (d_brow > BROW_RING_M[0]) & (d_brow < BROW_RING_M[1]) & clear & above
    ring &= skin_texels(model, raster).ravel()
    cache[raster.size] = (band, ring)
    return band, ring


def brow_darkness(values: np.ndarray, band: np.ndarray, ring: np.ndarray, weight: np.ndarray | None = None) -> float | None:
    """How much darker than the skin above them a face's brows are: the band-weighted mean of
    ``max(0, L*_ring − L*)`` over the brow band, L*_ring the ring's median lightness. ``values (N, 3)``
    sRGB in [0, 1], ``band (N,)`` weights and ``ring (N,) bool`` (:func:`brow_regions` at the same
    texels), ``weight (N,)``: texels seen (> 0.5) count, when given. None when fewer than 30 seen
    texels of the band or the ring are left (brows under a fringe or a brim are not measured)."""
    seen = np.ones(len(values), bool) if weight is None else np.asarray(weight) > 0.5
    b = (np.asarray(band) > 0.5) & seen
    r = np.asarray(ring, bool) & seen
    if b.sum() < 30 or r.sum() < 30:
        return None
    L = srgb_to_lab(np.asarray(values, np.float32)[b | r])[:, 0]
    in_b = b[b | r]
    ref = float(np.median(L[~in_b]))
    w = np.asarray(band, np.float32)[b]
    return float((np.maximum(ref - L[in_b], 0) * w).sum() / w.sum())


#: :func:`lighten_brows`: the least share of a new face's brow contrast that is kept.
BROW_MIN_FACTOR = 0.3


def lighten_brows(values: np.ndarray, band: np.ndarray, ring: np.ndarray, target: float | None) -> np.ndarray:
    """Brows no darker than a target's: where the brow band of ``values (N, 3)`` (sRGB in [0, 1])
    is darker than its ring by more than ``target`` (:func:`brow_darkness` of the target face), its
    texels darker than the ring's median colour are moved toward that colour in CIELAB so that the
    contrast is scaled by ``target / own`` (at least :data:`BROW_MIN_FACTOR`; never darkened, and
    weighted by the band, so the change fades out at its rim). Returns ``(N, 3) float32``;
    ``values`` unchanged when either darkness cannot be measured."""
    values = np.asarray(values, np.float32)
    own = brow_darkness(values, band, ring)
    if target is None or own is None or own <= target or own <= 0:
        return values
    factor = max(target / own, BROW_MIN_FACTOR)
    b = np.asarray(band, np.float32) > 0
    lab = srgb_to_lab(values[b | np.asarray(ring, bool)])
    in_b = b[b | np.asarray(ring, bool)]
    ref = np.median(lab[~in_b], 0)
    lb = lab[in_b]
    deficit = ref[0] - lb[:, 0]
    # the share taken away: (1 − factor) of the contrast, weighted by the band, eased in over the
    # first 2 L* of darkness so texels at the ring's lightness do not step
    g = (1 - factor) * np.asarray(band, np.float32)[b] * np.clip(deficit / 2.0, 0, 1)
    lb = lb + g[:, None] * (ref[None] - lb)
    out = values.copy()
    out[b] = np.clip(lab_to_srgb(lb.astype(np.float32)), 0, 1)
    return out
