"""Tests of the continuous autoregressive model and the colour masks (coursekit.autoregressive)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, Normal

from coursekit import autoregressive as ar


def _model(seed=0, d=2, k=3):
    torch.manual_seed(seed)
    m = ar.GaussianMixtureAR(d, k, hidden=16).double()
    with torch.no_grad():                      # spread the means: a multimodal density
        m.lin3.bias.mul_(3.0)
    return m


def test_log_prob_matches_torch_distributions_mixture():
    m = _model()
    x = torch.randn(50, 2, dtype=torch.float64)
    logits, means, log_scales = m(x)
    ref = sum(
        MixtureSameFamily(Categorical(logits=logits[:, i]),
                          Normal(means[:, i], log_scales[:, i].exp())).log_prob(x[:, i])
        for i in range(2))
    assert torch.allclose(m.log_prob(x), ref, atol=1e-10)


def test_density_integrates_to_one_on_a_grid():
    # Exactness of the chain rule: a leak of x_i into its own conditional breaks it.
    m = _model(1)
    lim, n = 12.0, 600
    t = torch.linspace(-lim, lim, n + 1, dtype=torch.float64)
    mid = 0.5 * (t[1:] + t[:-1])
    xx, yy = torch.meshgrid(mid, mid, indexing="ij")
    with torch.no_grad():
        p = m.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert abs(p.sum().item() * (2 * lim / n) ** 2 - 1) < 1e-3


def test_conditionals_depend_on_the_past_only():
    m = _model(2, d=4)
    x = torch.randn(4, dtype=torch.float64)
    for part in range(3):
        jac = torch.autograd.functional.jacobian(lambda v, k=part: m(v[None])[k][0], x)
        dep = jac.abs().sum(dim=1) > 0                       # (d, d): out i, in j
        assert not torch.any(torch.triu(dep)), part            # j >= i: never
        assert torch.all(torch.tril(dep, -1)[1:, 0])           # x_1 reaches every later i


def test_samples_follow_the_density():
    # Ancestral samples vs the model's own density: 1-D marginal of x_1 (KS against the
    # mixture CDF) and a binned chi-square test of the 2-D law.
    m = _model(3)
    x = m.sample(20000, generator=0)
    logits, means, log_scales = (t[0, 0].detach() for t in m(torch.zeros(1, 2)))
    w = torch.softmax(logits, -1).numpy()

    def cdf(v):
        return (w * stats.norm.cdf((v[:, None] - means.numpy()) / log_scales.exp().numpy())
                ).sum(1)

    assert stats.kstest(x[:, 0].numpy(), cdf).pvalue > 1e-3
    edges = np.array([-50.0, -1.5, -0.5, 0.5, 1.5, 50.0])       # 5 x 5 cells
    fine = torch.linspace(-15, 15, 1201, dtype=torch.float64)
    mid = 0.5 * (fine[1:] + fine[:-1])
    xx, yy = torch.meshgrid(mid, mid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        mass = m.log_prob(pts).exp().numpy() * (30 / 1200) ** 2

    def cell(p):
        return (np.searchsorted(edges, p[:, 0]) - 1) * 5 + np.searchsorted(edges, p[:, 1]) - 1

    expected = np.bincount(cell(pts.numpy()), weights=mass, minlength=25)
    observed = np.bincount(cell(x.numpy()), minlength=25)
    expected = expected / expected.sum() * observed.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_training_beats_a_single_gaussian():
    rng = np.random.default_rng(0)
    comp = rng.integers(0, 2, 3000)
    x = torch.tensor(np.stack([rng.normal(2 * comp - 1, 0.3),
                               rng.normal(0, 1, 3000) * 0.3 + comp], 1), dtype=torch.float32)
    torch.manual_seed(0)
    m = ar.GaussianMixtureAR(2, 4, 32)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(600):
        opt.zero_grad()
        loss = -m.log_prob(x).mean()
        loss.backward()
        opt.step()
    gauss = torch.distributions.MultivariateNormal(x.mean(0), torch.cov(x.T))
    assert -m.log_prob(x).mean() < -gauss.log_prob(x).mean() - 0.5


def test_gaussian_mixture_ar_rejects_bad_input():
    m = ar.GaussianMixtureAR(2)
    with pytest.raises(ValueError, match="x"):
        m.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x"):
        m.log_prob(torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="n_components"):
        ar.GaussianMixtureAR(2, 0)
    with pytest.raises(TypeError, match="generator"):
        m.sample(3, generator=np.random.default_rng(0))
    assert m.log_prob(np.zeros((2, 2))).shape == (2,)       # NumPy input accepted


def _rgb_net():
    torch.manual_seed(0)
    return nn.Sequential(
        ar.ColorMaskedConv2d("A", 3, 12, 3), nn.ReLU(),
        ar.ColorMaskedConv2d("B", 12, 12, 3), nn.ReLU(),
        ar.ColorMaskedConv2d("B", 12, 6, 1),
    ).double()


def test_color_masks_are_causal_in_pixel_then_colour_order():
    # Reference: the order (pixel, colour) = pixel * 3 + colour, from its definition.
    size = 5
    net = _rgb_net()
    jac = 0
    for seed in range(4):              # several inputs: no dependence hides behind a ReLU
        x = torch.randn(1, 3, size, size, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
        jac = jac + torch.autograd.functional.jacobian(net, x)[0, :, :, :, 0].abs()
    # outputs 0-1 predict R, 2-3 G, 4-5 B: sum each colour group
    dep = jac.view(3, 2, size, size, 3, size, size).sum(1)      # (3, H, W, 3, H, W)
    dep = dep.permute(1, 2, 0, 4, 5, 3).reshape(size * size * 3, size * size * 3) > 0
    order = torch.arange(size * size * 3)
    assert not torch.any(dep & (order[None] >= order[:, None]))   # never the future/self
    p = 2 * size + 2                                            # an interior pixel
    assert dep[3 * p + 1, 3 * p + 0] and dep[3 * p + 2, 3 * p + 1]   # G sees R, B sees G
    assert dep[3 * p + 2, 3 * p + 0] and not dep[3 * p + 0, 3 * p + 1]
    assert dep[3 * p + 0, 3 * (p - 1) + 2]                       # R sees the left pixel's B


def test_plain_masked_conv_would_leak_colours():
    # Non-vacuous: the single-channel mask B lets R see G and B of its own pixel.
    net = nn.Sequential(ar.MaskedConv2d("A", 3, 12, 3), nn.ReLU(),
                        ar.MaskedConv2d("B", 12, 6, 1)).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(net, x)[0, :, 1, 1, 0, :, 1, 1]
    assert jac.abs().sum() == 0                 # type A hides the whole centre pixel
    net[0] = ar.MaskedConv2d("B", 3, 12, 3).double()
    jac = torch.autograd.functional.jacobian(net, x)[0, 0:2, 1, 1, 0, 1:, 1, 1]
    assert jac.abs().sum() > 0                  # type B: R outputs see G and B


def test_channel_groups_and_errors():
    assert ar.channel_groups(6).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="in_channels"):
        ar.ColorMaskedConv2d("A", 4, 6, 3)
    with pytest.raises(ValueError, match="mask_type"):
        ar.ColorMaskedConv2d("C", 3, 6, 3)
    assert math.isclose(ar.ColorMaskedConv2d("B", 3, 3, 1).mask.sum().item(), 6)
