import math

import torch

from headveil.render.volume import (
    composite,
    expected_depth,
    importance_samples,
    near_far_from_sphere,
    render_weights,
    stratified_samples,
)


def test_near_far_hand_values():
    o = torch.tensor([[0.0, 0.0, -2.0], [0.0, 0.0, 0.0], [0.0, 2.0, -2.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    near, far, hit = near_far_from_sphere(o, d, radius=1.0)
    assert hit.tolist() == [True, True, False]
    assert torch.allclose(near, torch.tensor([1.0, 0.0, 0.0])) and torch.allclose(far, torch.tensor([3.0, 1.0, 0.0]))


def test_constant_density_opacity_is_exact():
    # opacity of a homogeneous slab is 1 − exp(−σ L) for any number of intervals
    near, far = torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.5])
    for S in (1, 7, 64):
        ts, te = stratified_samples(near, far, S, perturb=True, generator=torch.Generator().manual_seed(0))
        w, T = render_weights(ts, te, torch.full_like(ts, 0.8))
        assert torch.allclose(w.sum(1), 1 - torch.exp(-0.8 * (far - near)), atol=1e-6)
        assert torch.all(T[:, 0] == 1)
    # hand values, two intervals of length 1 with σ = ln 2: α = ½ each → w = ½, ¼
    w, _ = render_weights(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]), torch.full((1, 2), math.log(2)))
    assert torch.allclose(w, torch.tensor([[0.5, 0.25]]))
    rgb = composite(w, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), background=torch.tensor([0, 0, 1.0]))
    assert torch.allclose(rgb, torch.tensor([[0.5, 0.25, 0.25]]))
    assert torch.allclose(expected_depth(w, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])), torch.tensor([(0.25 + 0.375) / 0.75]))


def test_importance_samples_follow_the_weights():
    ts, te = stratified_samples(torch.zeros(3), torch.full((3,), 4.0), 4, perturb=False)
    w = torch.tensor([[0, 0, 1.0, 0], [1.0, 1.0, 1.0, 1.0], [0, 0, 0, 0]])
    t = importance_samples(ts, te, w, 64, generator=torch.Generator().manual_seed(0))
    assert torch.all((t[0] >= 2.0) & (t[0] <= 3.0))              # all mass in [2, 3]
    assert abs(t[1].mean().item() - 2.0) < 0.3                    # uniform on [0, 4]
    assert torch.all((t[2] >= 0) & (t[2] <= 4)) and torch.all(t[:, 1:] >= t[:, :-1])


def test_weights_are_differentiable_in_density():
    ts, te = stratified_samples(torch.zeros(1), torch.ones(1), 8, perturb=False)
    sigma = torch.full((1, 8), 2.0, requires_grad=True)
    render_weights(ts, te, sigma)[0].sum().backward()
    # d/dσ (1 − e^{−σ L}) = L e^{−σ L} spread over the intervals: the gradient sums to e^{−2} / 8 per unit…
    assert torch.allclose(sigma.grad.sum(), torch.tensor(math.exp(-2.0)), atol=1e-6)
