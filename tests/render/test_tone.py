"""Tone matching of a donor albedo to a target's skin (hand-checkable)."""

import numpy as np

from headveil.common.images import srgb_to_lab
from headveil.render import tone


def test_tone_matching_moves_the_mean_colour_and_keeps_detail():
    rng = np.random.default_rng(1)
    S = 64
    skin = np.ones((S, S), bool)
    src = np.clip(0.5 + 0.05 * rng.normal(size=(S, S, 3)), 0, 1).astype(np.float32)
    tgt = np.clip(np.array([0.8, 0.6, 0.5]) + 0.05 * rng.normal(size=(S, S, 3)), 0, 1).astype(np.float32)
    out = tone.match_tone(src, tgt, skin)
    lab = srgb_to_lab(out.reshape(-1, 3)).mean(0)
    np.testing.assert_allclose(lab, srgb_to_lab(tgt.reshape(-1, 3)).mean(0), atol=1.0)
    assert np.corrcoef(out[..., 1].ravel(), src[..., 1].ravel())[0, 1] > 0.9


def test_tone_matching_keeps_a_brows_hue_on_a_paler_skin():
    """A dark brow of little colour on a pink skin: an additive a* shift would take it to
    3 − 20 + 12 = −5 (green) on a paler target; scaled about neutral (12 / 20) it stays warm."""
    from headveil.common.images import lab_to_srgb

    lab = np.array([[65.0, 20.0, 20.0]] * 90 + [[30.0, 3.0, 5.0]] * 10, np.float32)
    skin = np.arange(100) < 90
    stats = (np.array([70.0, 12.0, 15.0]), np.array([1.0, 1.0, 1.0]))
    out = srgb_to_lab(tone.match_tone_values(lab_to_srgb(lab), skin, stats))
    np.testing.assert_allclose(out[:90].mean(0), [70.0, 12.0, 15.0], atol=0.5)  # the skin takes the target's tone
    np.testing.assert_allclose(out[90:, 1:].mean(0), [3.0 * 12 / 20, 5.0 * 15 / 20], atol=0.5)
    assert (out[90:, 1:] > 0).all()


def test_flat_tone_matching_is_match_tone_on_the_selected_texels():
    rng = np.random.default_rng(2)
    S = 48
    where = np.zeros((S, S), bool)
    where[8:40, 4:44] = True
    skin = where.copy()
    skin[8:16] = False
    src = rng.uniform(0.3, 0.7, (S, S, 3)).astype(np.float32)
    tgt = rng.uniform(0.4, 0.9, (S, S, 3)).astype(np.float32)
    seen = rng.uniform(0, 1, (S, S)).astype(np.float32)
    full = tone.match_tone(src, tgt, skin, seen, where=where)
    stats = tone.tone_stats(tgt, skin, seen)
    flat = tone.match_tone_values(src[where], skin[where], stats)
    np.testing.assert_array_equal(full[where], flat)
    np.testing.assert_array_equal(full[~where], src[~where])  # outside ``where`` untouched
    # a target's own statistics leave it where it is (up to the CIELAB round trip)
    own = tone.tone_stats(src, where)
    np.testing.assert_allclose(tone.match_tone_values(src[where], np.ones(where.sum(), bool), own), src[where], atol=2e-3)
    assert tone.tone_stats(tgt, np.zeros((S, S), bool)) is None  # too few texels: no statistics
    np.testing.assert_array_equal(tone.match_tone_values(src[where], skin[where], None), src[where])
