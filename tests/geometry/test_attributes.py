"""Semantic attributes (Stage I): the asset, the directions, skin tone, expressions; MS-SSIM."""

import math

import numpy as np
import pytest

from headveil.common.images import lab_to_srgb, srgb_to_lab
from headveil.geometry.identity.attributes import (
    EXPRESSION_ATTRIBUTES, FaceAttributeError, ShapeAttributes, booleans, expression_values, ita_degrees,
    shape_attributes, shift_ita)


def test_asset_belongs_to_the_model_and_keeps_recoverable_attributes(tmp_path):
    sa = shape_attributes()
    assert {"male", "older", "wide_face"} <= set(sa.names)
    assert (sa.r2 >= 0.5).all()  # only directions with held-out R² ≥ MIN_R2 ship
    assert sa.fit_accuracy.shape == (len(sa.names),) and ((0 <= sa.fit_accuracy) & (sa.fit_accuracy <= 1)).all()
    other = tmp_path / "other.npz"
    other.write_bytes(b"not the model")
    from headveil.geometry.morphable.model import EMBEDDED_PATH

    asset = EMBEDDED_PATH.with_name("headveil_head_attributes.npz")
    with pytest.raises(FaceAttributeError, match="another head model"):
        ShapeAttributes.load(asset, model_path=other)
    with pytest.raises(FaceAttributeError, match="asset missing"):
        ShapeAttributes.load(model_path=other)
    with pytest.raises(FaceAttributeError, match="unknown shape attribute"):
        sa.index("bald")


def test_geometric_estimator_on_held_out_mixtures():
    sa = shape_attributes()
    A, Y = sa.holdout["holdout_alpha"], sa.holdout["holdout_values"]
    pred = np.stack([sa.true_values(a) for a in A[:100]])
    i = sa.index("male")
    assert np.corrcoef(pred[:, i], Y[:100, i])[0, 1] > 0.98  # gender macro: R² ≈ 0.998 on true α


def test_move_sets_targets_and_holds_the_rest():
    sa = shape_attributes()
    a = sa.holdout["holdout_alpha"][0]
    before = sa.true_values(a)
    want = sa.target_value("male", not before[sa.index("male")] > 0.5)
    moved = sa.move(a, {"male": want})
    after = sa.true_values(moved)
    assert after[sa.index("male")] == pytest.approx(want, abs=1e-6)
    others = [j for j in range(len(sa.names)) if j != sa.index("male")]
    np.testing.assert_allclose(after[others], before[others], atol=1e-6)
    assert sa.target_value("male", True) == pytest.approx(0.5 + 1.5 * sa.spread[sa.index("male")])


def test_ita_is_the_angle_of_lightness_over_yellowness():
    rgb = lab_to_srgb(np.array([65.0, 10.0, 15.0]))  # ITA = atan((65 − 50) / 15) = 45°
    np.testing.assert_allclose(srgb_to_lab(rgb), [65.0, 10.0, 15.0], atol=0.25)  # OpenCV's float32 round trip
    assert ita_degrees(np.tile(rgb, (10, 1))) == pytest.approx(45.0, abs=0.2)
    darker = shift_ita(np.tile(rgb, (4, 1)), 45.0, 0.0, 15.0)  # ITA 0° ⇒ L* = 50, b* kept
    np.testing.assert_allclose(srgb_to_lab(darker)[0], [50.0, 10.0, 15.0], atol=0.3)  # two float32 round trips


def test_expression_values_and_booleans():
    v = expression_values({"mouthSmileLeft": 0.9, "mouthSmileRight": 0.7, "jawOpen": 0.05})
    assert v["smiling"] == pytest.approx(0.8) and v["mouth_slightly_open"] == pytest.approx(0.05)
    assert math.isnan(expression_values({})["smiling"])
    b = booleans({**v, "light_skin": 30.0, "male": 0.2, "apparent_older": 50.0})
    assert b == {"smiling": True, "mouth_slightly_open": False, "light_skin": True, "male": False,
                 "apparent_older": True}
    assert EXPRESSION_ATTRIBUTES["smiling"].threshold == 0.4
    with pytest.raises(FaceAttributeError):
        booleans({"bald": 1.0})


def test_ms_ssim_hand_values():
    from headveil.geometry.perception.metrics import ms_ssim

    rng = np.random.default_rng(0)
    a = (rng.uniform(0, 1, (128, 128, 3)) * 255).astype(np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    # constant images: contrast-structure is 1 at every scale; luminance (2·0.5·0.6 + C1)/(0.25 + 0.36 + C1)
    # at the coarsest scale, raised to its normalised weight 0.1333
    lum = (0.6 + 1e-4) / (0.61 + 1e-4)
    assert ms_ssim(np.full((128, 128), 0.5), np.full((128, 128), 0.6)) == pytest.approx(lum ** 0.1333, rel=1e-6)
