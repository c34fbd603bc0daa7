"""The protecting operator σ: hand-checked derivatives, range, patch/whole-image agreement, codes."""

import math

import numpy as np
import pytest
import torch

from headveil.render.protect import (
    GRADIENT_MAX,
    ProtectConfig,
    dequantize,
    gradient_magnitude,
    protect_image,
    quantize,
)


@pytest.mark.parametrize("operator", ["sobel", "central"])
def test_vertical_step_edge_by_hand(operator):
    img = np.zeros((8, 8, 3), np.float32)
    img[:, 4:] = 1.0  # a unit step in every channel between columns 3 and 4
    g = protect_image(img, ProtectConfig(size=0, operator=operator))
    # central: (1 − 0) / 2 = 0.5 per channel at columns 3 and 4; ‖(0.5, 0.5, 0.5)‖ = √3/2; y-derivative 0.
    # sobel: the column kernel [−1, 0, 1]/8 weighted 1, 2, 1 over rows of a constant column → the same.
    np.testing.assert_allclose(g[:, 3], math.sqrt(3) / 2, atol=1e-5)
    np.testing.assert_allclose(g[:, 4], math.sqrt(3) / 2, atol=1e-5)
    np.testing.assert_allclose(np.delete(g, [3, 4], axis=1), 0.0, atol=1e-5)


def test_x_and_y_norms_add_and_channels_combine_in_l2():
    img = np.zeros((5, 5, 3), np.float32)
    img[2, 3, 0] = 1.0  # red impulse right of the centre pixel
    img[3, 2, 1] = 1.0  # green impulse below it
    g = protect_image(img, ProtectConfig(size=0, operator="central"))
    # at (2, 2): ∂c/∂x = (0.5, 0, 0), ∂c/∂y = (0, 0.5, 0) → ‖g‖ = 0.5 + 0.5
    assert g[2, 2] == pytest.approx(1.0, abs=1e-5)


def test_range_and_constant_images():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, (32, 32, 3)).astype(np.float32)
    g = protect_image(noise, ProtectConfig(size=0, operator="central"))
    assert g.min() >= 0 and g.max() <= GRADIENT_MAX + 1e-6
    assert np.all(protect_image(np.full((16, 16, 3), 0.3, np.float32), ProtectConfig(size=0)) == 0)


@pytest.mark.parametrize("blur", [0.0, 0.8])
def test_valid_patch_matches_whole_image_interior(blur):
    t = torch.rand(1, 20, 20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    whole = gradient_magnitude(t, "sobel", blur)[0]
    m = ProtectConfig(blur=blur).margin
    patch = gradient_magnitude(t[:, 3:15, 5:17], "sobel", blur, padding="valid")[0]
    torch.testing.assert_close(patch, whole[3 + m:15 - m, 5 + m:17 - m])


def test_gradient_is_differentiable_and_finite_at_flat_regions():
    t = torch.zeros(1, 6, 6, 3, requires_grad=True)
    gradient_magnitude(t, "sobel").sum().backward()
    assert torch.isfinite(t.grad).all()


def test_downsampling_and_quantisation():
    img = np.zeros((256, 128, 3), np.uint8)
    img[:, 64:] = 255
    g = protect_image(img, ProtectConfig(size=64))
    assert g.shape == (64, 32) and g.dtype == np.float32
    q = quantize(g)
    assert q.dtype == np.uint16
    assert np.abs(dequantize(q) - g).max() <= GRADIENT_MAX / 65535


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="operator"):
        ProtectConfig(operator="laplace")
    with pytest.raises(ValueError, match="blur"):
        ProtectConfig(blur=-1)
    with pytest.raises(ValueError, match="size"):
        ProtectConfig(size=4)
    with pytest.raises(ValueError, match="RGB"):
        protect_image(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        protect_image(np.full((8, 8, 3), 2.0, np.float32))
