import math

import torch

from headveil.neural_fields.encodings import HashGridConfig, HashGridEncoding
from headveil.neural_fields.sdf import (
    ColorNetwork,
    LaplaceDensity,
    LipschitzLinear,
    SDFNetwork,
    eikonal_loss,
    finite_difference_gradient,
    sdf_gradient,
)


def _sphere_points(n, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    return d / d.norm(dim=1, keepdim=True) * r


def test_geometric_init_is_close_to_a_sphere():
    torch.manual_seed(0)
    for enc in (None, HashGridEncoding(HashGridConfig(backend="torch", n_levels=4, log2_table_size=12))):
        net = SDFNetwork(encoding=enc)
        means = []
        for r in (0.02, 0.1, 0.2):
            s = net.sdf(_sphere_points(200, r))
            # the untrained network is, on average over directions, the sphere of radius 0.1 m to ~3 cm
            # (a 64-wide random MLP is an approximation of |x| − r, with spread around it)
            assert abs(s.mean().item() - (r - 0.1)) < 0.03, (r, s.mean())
            means.append(s.mean().item())
        assert means[0] < means[1] < means[2]
        assert net.sdf(torch.zeros(1, 3)).item() < 0 < net.sdf(torch.tensor([[0.25, 0.0, 0.0]])).item()


def test_eikonal_and_gradients_on_an_exact_sphere():
    sphere = lambda x: x.norm(dim=-1) - 0.1  # noqa: E731
    x = _sphere_points(50, 0.07)
    g_fd = finite_difference_gradient(sphere, x, eps=1e-4)
    g_an = sdf_gradient(sphere, x)
    assert torch.allclose(g_fd, x / x.norm(dim=1, keepdim=True), atol=1e-3)
    assert torch.allclose(g_an, g_fd, atol=1e-3)
    assert eikonal_loss(g_an) < 1e-10
    assert math.isclose(eikonal_loss(torch.tensor([[2.0, 0, 0], [0, 0, 0]])).item(), 1.0)  # ((2−1)² + (0−1)²) / 2


def test_laplace_density_values():
    dens = LaplaceDensity(beta_init=0.01)
    s = torch.tensor([-1.0, 0.0, 1.0])
    sigma = dens(s)
    beta = dens.beta.item()
    assert math.isclose(beta, 0.01, rel_tol=1e-6)
    assert torch.allclose(sigma, torch.tensor([1 / beta, 0.5 / beta, 0.0]), atol=1e-6)
    assert math.isclose(dens(torch.tensor([0.01])).item(), 0.5 * math.exp(-1) / beta, rel_tol=1e-5)


def test_lipschitz_layer_bound_and_loss():
    torch.manual_seed(0)
    lin = LipschitzLinear(5, 4)
    x = torch.randn(3, 5)
    assert torch.allclose(lin(x), lin.linear(x), atol=1e-6)  # initial bound = the weights' own bound
    with torch.no_grad():
        lin.m.fill_(math.log(math.expm1(0.5)))  # softplus(m) = 0.5
    assert lin.weight().abs().sum(1).max() <= 0.5 + 1e-6
    a, b = torch.randn(1, 5), torch.randn(1, 5)
    assert (lin(a) - lin(b)).abs().max() <= 0.5 * (a - b).abs().max() + 1e-6  # ∞-norm Lipschitz bound
    net = ColorNetwork(feature_dim=2)
    expected = math.prod(float(torch.nn.functional.softplus(layer.m.detach())) for layer in net.layers)
    assert math.isclose(net.lipschitz_loss().item(), expected, rel_tol=1e-6)
    rgb = net(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2))
    assert rgb.shape == (2, 3) and bool(((rgb > 0) & (rgb < 1)).all())
