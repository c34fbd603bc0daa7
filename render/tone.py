"""A donor's albedo moved to a target's skin tone, so a new face keeps the neck's and ears' colour.

- :func:`match_tone`: an atlas moved to another atlas's tone (CIELAB mean and spread on the skin
  texels, hue kept on warm skins).
- :func:`tone_stats` + :func:`match_tone_values`: the same on flat texel values, the target's
  statistics computed once for many albedos.

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
