"""Tone matching of a donor albedo to a target's skin (hand-checkable)."""

import numpy as np
import pytest

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


def _lab_values(lab):
    from headveil.common.images import lab_to_srgb

    return np.clip(lab_to_srgb(np.asarray(lab, np.float32)), 0, 1)


def test_brow_darkness_is_the_bands_mean_deficit_below_the_ring():
    # ring at L* 70; band texels at 60 (weight 1) and 66 (weight 0.5); a band texel lighter than
    # the ring counts 0; an unseen band texel does not count
    n_ring, n_band = 40, 40
    lab = np.zeros((n_ring + 2 * n_band + 10 + 1, 3))
    lab[:, 0], lab[:, 1], lab[:, 2] = 70.0, 12.0, 16.0
    band = np.zeros(len(lab), np.float32)
    ring = np.zeros(len(lab), bool)
    ring[:n_ring] = True
    band[n_ring:n_ring + n_band], lab[n_ring:n_ring + n_band, 0] = 1.0, 60.0
    band[n_ring + n_band:n_ring + 2 * n_band], lab[n_ring + n_band:n_ring + 2 * n_band, 0] = 1.0, 74.0
    band[-11:-1], lab[-11:-1, 0] = 0.6, 66.0
    band[-1], lab[-1, 0] = 1.0, 20.0  # unseen
    weight = np.ones(len(lab))
    weight[-1] = 0.0
    d = tone.brow_darkness(_lab_values(lab), band, ring, weight)
    assert d == pytest.approx((40 * 10 + 0 + 10 * 0.6 * 4) / (80 + 6), abs=0.05)
    assert tone.brow_darkness(_lab_values(lab), band, ring, np.zeros(len(lab))) is None  # nothing seen


def test_lighten_brows_scales_the_contrast_down_to_the_targets_and_never_darkens():
    lab = np.zeros((100, 3))
    lab[:, 0], lab[:, 1], lab[:, 2] = 70.0, 12.0, 16.0
    band = np.zeros(100, np.float32)
    band[50:] = 1.0
    ring = band == 0
    lab[50:, 0], lab[50:, 1], lab[50:, 2] = 50.0, 6.0, 8.0  # dark, greyer brows: 20 L* below the skin
    vals = _lab_values(lab)
    out = tone.lighten_brows(vals, band, ring, target=8.0)
    got = srgb_to_lab(out)
    assert got[50:, 0].mean() == pytest.approx(62.0, abs=0.3)  # 70 − 20 · 8/20
    assert got[50:, 2].mean() == pytest.approx(16 - 8 * 0.4, abs=0.3)  # the colour moves with it
    np.testing.assert_array_equal(out[:50], vals[:50])  # the skin is untouched
    assert tone.brow_darkness(out, band, ring) == pytest.approx(8.0, abs=0.2)
    np.testing.assert_array_equal(tone.lighten_brows(vals, band, ring, target=30.0), vals)  # darker target: kept
    np.testing.assert_array_equal(tone.lighten_brows(vals, band, ring, target=None), vals)
    floor = srgb_to_lab(tone.lighten_brows(vals, band, ring, target=0.0))
    assert floor[50:, 0].mean() == pytest.approx(70 - 20 * tone.BROW_MIN_FACTOR, abs=0.2)


def test_brow_regions_lie_over_the_brows_with_the_ring_above(model):
    from headveil.render.appearance import texel_attribute, uv_raster

    r = uv_raster(model, 256)
    band, ring = tone.brow_regions(model, r)
    pos, idx = texel_attribute(r, model.vertices(), model.faces)
    lm = model.landmarks_3d(model.vertices(), "ibug68")
    b, g = band[idx] > 0.99, ring[idx]
    assert b.sum() > 100 and g.sum() > 50 and not (b & g).any()
    assert np.abs(np.median(pos[b, 1]) - lm[17:27, 1].mean()) < 0.004  # at the brows' height
    assert np.median(pos[g, 1]) > lm[17:27, 1].max()  # the ring: forehead above them
    assert np.min(np.linalg.norm(pos[b][:, None] - lm[None, 36:48], axis=2)) > tone.BROW_EYE_CLEARANCE_M - 1e-6
