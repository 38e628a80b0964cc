"""Tests of coursekit.mcmc against exact references (Gaussian moments, AR(1) ESS)."""

import math

import numpy as np
import pytest
import torch

from coursekit import ebm, mcmc

COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
PREC = torch.linalg.inv(COV)


def gauss_energy(x):
    """E(x) = x^T Sigma^{-1} x / 2 for the correlated 2-D Gaussian."""
    return 0.5 * ((x @ PREC) * x).sum(1)


def test_hmc_with_one_leapfrog_step_is_mala():
    # Independent derivation: one leapfrog step of size h is the Langevin proposal with
    # eta = h^2 / 2, and H(x, v) - H(x', v') is MALA's log acceptance ratio.
    x0 = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = 0.9
    a = mcmc.hmc(gauss_energy, x0, h, 1, 30, generator=1)
    b = mcmc.mala(gauss_energy, x0, h * h / 2, 30, generator=1)
    assert torch.allclose(a.x, b.x, atol=1e-12, rtol=0)
    assert torch.allclose(a.accept_rate, b.accept_rate)


@pytest.mark.parametrize("sampler", ["hmc", "mala"])
def test_samplers_are_unbiased_on_a_gaussian_at_a_large_step(sampler):
    # Exact reference: the target's covariance. The step is large enough that ULA at the
    # same gradient step is visibly biased, while the Metropolis step removes the bias.
    n = 4000
    g = torch.Generator().manual_seed(0)
    x0 = torch.linalg.cholesky(COV) @ torch.randn(2, n, generator=g, dtype=torch.float64)
    x0 = x0.T
    if sampler == "hmc":
        res = mcmc.hmc(gauss_energy, x0, 0.5, 3, 40, generator=g)
    else:
        res = mcmc.mala(gauss_energy, x0, 0.15, 60, generator=g)
    assert 0.3 < res.accept_rate.mean() < 0.99
    emp = torch.cov(res.x.T)
    se = math.sqrt(2.0 / n)              # s.e. of a variance / covariance entry (~1)
    assert torch.all((emp - COV).abs() < 5 * se), emp
    assert torch.all(res.x.mean(0).abs() < 5 / math.sqrt(n))


def test_ula_is_biased_where_hmc_is_not():
    n, eta = 20000, 0.5
    g = torch.Generator().manual_seed(3)
    e1 = lambda x: 0.5 * x.pow(2).sum(1)                      # noqa: E731
    x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    ula = ebm.langevin(e1, x0, eta, 40, generator=g)
    mh = mcmc.mala(e1, x0, eta, 40, generator=g)
    se = math.sqrt(2.0 / n)
    assert abs(ula.var().item() - ebm.ula_gaussian_variance(1.0, eta)) < 5 * se
    assert ula.var().item() - 1.0 > 10 * se                   # ULA: 1 / (1 - eta / 2)
    assert abs(mh.x.var().item() - 1.0) < 5 * se               # MALA: exact


def test_effective_sample_size_of_an_ar1_process():
    # Exact reference: for x_t = rho x_{t-1} + noise, tau = (1 + rho) / (1 - rho).
    rng = np.random.default_rng(0)
    t, m, rho = 4000, 50, 0.8
    x = np.zeros((t, m))
    x[0] = rng.standard_normal(m) / math.sqrt(1 - rho**2)
    for i in range(1, t):
        x[i] = rho * x[i - 1] + rng.standard_normal(m)
    expected = t * m * (1 - rho) / (1 + rho)
    assert abs(mcmc.effective_sample_size(x) / expected - 1) < 0.1
    iid = rng.standard_normal((t, m))
    assert abs(mcmc.effective_sample_size(iid) / (t * m) - 1) < 0.1
    # one chain, given as a tensor
    one = mcmc.effective_sample_size(torch.from_numpy(x[:, 0]))
    assert 0.5 * expected / m < one < 2.0 * expected / m


def test_chain_shapes_and_numpy_input():
    x0 = np.zeros((7, 2))
    res = mcmc.hmc(gauss_energy, x0, 0.3, 2, 5, return_chain=True, generator=0)
    assert res.chain.shape == (6, 7, 2) and res.x.dtype == torch.float64
    assert torch.equal(res.chain[-1], res.x) and res.n_grad == 10
    again = mcmc.hmc(gauss_energy, x0, 0.3, 2, 5, generator=0)
    assert torch.equal(again.x, res.x)


def test_bad_inputs_raise_clear_errors():
    x0 = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="step_size"):
        mcmc.hmc(gauss_energy, x0, -1.0, 2, 5)
    with pytest.raises(ValueError, match="n_leapfrog"):
        mcmc.hmc(gauss_energy, x0, 0.1, 0, 5)
    with pytest.raises(ValueError, match="x0"):
        mcmc.mala(gauss_energy, torch.zeros(0, 2), 0.1, 5)
    with pytest.raises(ValueError, match="x0"):
        mcmc.mala(gauss_energy, torch.full((2, 2), float("nan")), 0.1, 5)
    with pytest.raises(ValueError, match="energy"):
        mcmc.hmc(lambda x: x.sum(), x0, 0.1, 1, 2)
    with pytest.raises(TypeError, match="generator"):
        mcmc.hmc(gauss_energy, x0, 0.1, 1, 2, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="constant"):
        mcmc.effective_sample_size(np.ones((10, 2)))
    with pytest.raises(ValueError, match="at least 4"):
        mcmc.effective_sample_size(np.arange(3.0))


def test_a_diverging_proposal_is_rejected_not_propagated():
    # A huge step overflows the energy; the chain must stay finite (rejection).
    res = mcmc.hmc(gauss_energy, torch.ones(4, 2, dtype=torch.float64), 1e3, 5, 3,
                   generator=0)
    assert torch.isfinite(res.x).all() and res.accept_rate.max() == 0


def test_a_model_energy_sets_the_dtype_and_a_non_callable_is_refused():
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 1)).double()
    res = mcmc.hmc(lambda x: net(x)[:, 0], np.zeros((3, 2)), 0.1, 2, 3, generator=0)
    assert res.x.dtype == torch.float64
    with pytest.raises(TypeError, match="energy"):
        mcmc.hmc("not an energy", np.zeros((3, 2)), 0.1, 2, 3)
