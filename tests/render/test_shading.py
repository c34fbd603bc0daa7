import math

import numpy as np
import pytest

from headveil.render.shading import DirectionalLight, sh_basis, shade_lambert, shade_sh


def test_sh_basis_hand_values():
    # constant band is 1; the z band at n = +z equals (2π/√3)(√3/√(4π)) / (π/√(4π)) = 2
    b = sh_basis(np.array([[0.0, 0.0, 1.0]]))[0]
    assert b[0] == pytest.approx(1.0)
    assert b[2] == pytest.approx(2.0)
    assert b[6] == pytest.approx(0.5 * (2 * math.pi / math.sqrt(8)) * 3 * math.sqrt(5) / math.sqrt(12 * math.pi)
                                 / math.sqrt(3) * 2 / (math.pi / math.sqrt(4 * math.pi)))


def test_uniform_sh_light_gives_albedo():
    gamma = np.zeros((9, 3))
    gamma[0] = 1.0
    n = np.random.default_rng(0).normal(size=(10, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    alb = np.full((10, 3), 0.4)
    np.testing.assert_allclose(shade_sh(alb, n, gamma), alb)


def test_lambert_hand_values():
    n = np.array([[0, 0, 1.0], [0, 0, -1.0], [1, 0, 0.0]])
    out = shade_lambert(np.ones((3, 3)), n, (0, 0, 2.0), ambient=0.25, diffuse=0.5)
    np.testing.assert_allclose(out[:, 0], [0.75, 0.25, 0.25])


def test_directional_light_sh_fit_is_close():
    light = DirectionalLight((0, 0, 1), ambient=0.3, diffuse=0.7)
    g = light.to_sh()
    n = np.array([[0, 0, 1.0], [0, 0, -1.0]])
    out = shade_sh(np.ones((2, 3)), n, g)[:, 0]
    # order-2 SH approximates the clamped cosine to within ~0.1 of the exact 1.0 / 0.3
    assert out[0] == pytest.approx(1.0, abs=0.1) and out[1] == pytest.approx(0.3, abs=0.1)


def test_torch_path_matches_numpy():
    import torch

    n = np.array([[0.6, 0.0, 0.8]])
    g = np.random.default_rng(1).normal(size=(9, 3))
    a = np.full((1, 3), 0.5)
    np.testing.assert_allclose(shade_sh(torch.tensor(a), torch.tensor(n), torch.tensor(g)).numpy(), shade_sh(a, n, g))
