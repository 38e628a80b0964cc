"""coursekit.normalizing_flows: invertibility, log-determinants and densities against torch.distributions."""

import numpy as np
import pytest
import torch
from scipy import integrate
from torch.distributions import (
    AffineTransform,
    Independent,
    MultivariateNormal,
    Normal,
    TransformedDistribution,
)

from coursekit import normalizing_flows as flows


def _randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Give every parameter random values (a fresh coupling layer is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.fixture
def realnvp():
    torch.manual_seed(0)
    model = flows.RealNVP(2, 6, 16).double()
    _randomize(model)
    return model


def test_realnvp_round_trip(realnvp):
    x = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    z, _ = realnvp(x)
    assert not torch.allclose(z, x)  # the randomized flow is not the identity
    assert (realnvp.inverse(z) - x).abs().max() < 1e-10
    assert (realnvp(realnvp.inverse(x))[0] - x).abs().max() < 1e-10


def test_realnvp_round_trip_float32():
    torch.manual_seed(0)
    model = flows.RealNVP(2, 8, 32)
    _randomize(model, scale=0.1)
    x = 2 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(2))
    z = model(x)[0]
    assert z.abs().max() < 50  # a moderate map: float32 keeps ~7 digits of each coordinate
    assert (model.inverse(z) - x).abs().max() < 1e-5


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_log_det_matches_autograd_jacobian(dim):
    torch.manual_seed(dim)
    model = flows.RealNVP(dim, 4, 16).double()
    _randomize(model, seed=dim)
    x = torch.randn(7, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, log_det = model(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], x[i])
        ref = torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(log_det[i], ref, atol=1e-10)


def test_zero_initialised_realnvp_is_the_standard_normal():
    model = flows.RealNVP(3, 4, 8).double()
    for layer in model.layers:
        torch.nn.init.zeros_(layer.net[-1].weight)
        torch.nn.init.zeros_(layer.net[-1].bias)
    x = torch.randn(50, 3, dtype=torch.float64)
    ref = MultivariateNormal(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    assert torch.allclose(model.log_prob(x), ref.log_prob(x), atol=1e-12)
    assert torch.equal(model.inverse(x), x)


def test_single_coupling_with_constant_scale_matches_transformed_distribution():
    # A coupling whose MLP outputs constants (zero last weights, chosen biases) is the affine
    # map z_free = x_free * exp(s) + t: its generative direction is an AffineTransform of N(0, I).
    model = flows.RealNVP(2, 1, 8).double()
    layer = model.layers[0]  # mask (0, 1): coordinate 0 is transformed
    raw_s, t = 0.3, -0.7
    with torch.no_grad():
        layer.net[-1].weight.zero_()
        layer.net[-1].bias.copy_(torch.tensor([raw_s, 0.0, t, 0.0]))
    s = layer.scale_bound * np.tanh(raw_s)
    scale = torch.tensor([np.exp(-s), 1.0], dtype=torch.float64)
    loc = torch.tensor([-t * np.exp(-s), 0.0], dtype=torch.float64)
    base = Independent(Normal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)), 1)
    ref = TransformedDistribution(base, [AffineTransform(loc, scale, event_dim=1)])
    x = torch.randn(100, 2, dtype=torch.float64)
    assert torch.allclose(model.log_prob(x), ref.log_prob(x), atol=1e-12)


def test_sample_is_reproducible_and_shaped(realnvp):
    a = realnvp.sample(10, generator=torch.Generator().manual_seed(5))
    b = realnvp.sample(10, generator=torch.Generator().manual_seed(5))
    assert a.shape == (10, 2) and torch.equal(a, b)


def test_log_scale_is_bounded():
    layer = flows.AffineCoupling(torch.tensor([1.0, 0.0]), hidden=8, scale_bound=1.5)
    _randomize(layer, scale=10.0)  # huge weights: unbounded scales would overflow
    x = 100 * torch.randn(200, 2)
    _, log_det = layer(x)
    assert torch.all(log_det.abs() <= 1.5 + 1e-6)


def test_monotone1d_is_a_normalized_density_with_exact_inverse():
    torch.manual_seed(0)
    flow = flows.Monotone1d(5).double()
    with torch.no_grad():
        flow.raw_w.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0, 0.0]))
        flow.raw_s.copy_(torch.tensor([2.0, 0.0, 1.0, 3.0, -1.0]))
    x = torch.linspace(-8, 8, 401, dtype=torch.float64)[:, None]
    z, log_det = flow(x)
    assert torch.all(z[1:] > z[:-1])  # strictly increasing
    assert (flow.inverse(z) - x).abs().max() < 1e-10
    # log F'(x) against autograd's derivative
    xg = x.clone().requires_grad_(True)
    (dz,) = torch.autograd.grad(flow(xg)[0].sum(), xg)
    assert torch.allclose(log_det, dz[:, 0].log(), atol=1e-12)
    # p_hat integrates to one (change of variables), checked with scipy's adaptive quadrature
    dens = lambda v: flow.log_prob(torch.tensor([[v]], dtype=torch.float64)).exp().item()
    total, err = integrate.quad(dens, -np.inf, np.inf, limit=200)
    assert abs(total - 1.0) < 1e-6


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: flows.RealNVP(1, 2), "dim"),
        (lambda: flows.RealNVP(2, 0), "n_layers"),
        (lambda: flows.AffineCoupling(torch.tensor([1.0, 1.0])), "mask"),
        (lambda: flows.AffineCoupling(torch.tensor([0.5, 1.0])), "mask"),
        (lambda: flows.Monotone1d(0), "n_components"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    model = flows.RealNVP(2, 2)
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="shape"):
        model.inverse(torch.zeros(5))
    with pytest.raises(ValueError, match="n"):
        model.sample(0)


def test_non_finite_input_is_rejected():
    flow = flows.RealNVP(2, 2, 8)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="NaN or infinite"):
            flow.log_prob(torch.tensor([[bad, 0.0]]))
        with pytest.raises(ValueError, match="NaN or infinite"):
            flow.inverse(torch.tensor([[0.0, bad]]))
