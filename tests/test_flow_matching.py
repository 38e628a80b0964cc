"""Tests for coursekit.flow_matching, each against an independent reference.

scipy.stats for the marginal mixture; finite differences for the continuity equation;
self-normalised importance sampling for E[eps - x0 | x_t]; the score identity by autograd;
the closed-form flow map of a Gaussian for the samplers' orders; closed-form expectations
(scipy.integrate.quad) for the flow-matching loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from coursekit import diffusion as df
from coursekit import flow_matching as fm

# The 3-component test mixture `mix` is a fixture of conftest.py.


def scipy_log_prob(
    mix: df.NoisedGaussianMixture, x: np.ndarray, t: np.ndarray | float
) -> np.ndarray:
    """log sum_k pi_k N(x | (1-t) mu_k, (1-t)^2 Sigma_k + t^2 I), one point at a time."""
    ts = np.broadcast_to(np.asarray(t, float), (len(x),))
    out = np.empty(len(x))
    for i, (xi, ti) in enumerate(zip(x, ts, strict=True)):
        dens = sum(
            w * stats.multivariate_normal((1 - ti) * np.array(m),
                                          (1 - ti) ** 2 * np.array(c) + ti**2 * np.eye(2)).pdf(xi)
            for w, m, c in zip(mix.weights, mix.means, mix.covariances, strict=True)
        )
        out[i] = np.log(dens)
    return out


# --------------------------------------------------------------------------------------
# The exact marginals and velocity
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1e-3, 0.3, 0.9, 1.0])
def test_marginal_log_prob_matches_scipy(mix, t):
    x = np.random.default_rng(0).normal(size=(25, 2)) * 2
    np.testing.assert_allclose(fm.marginal_log_prob(mix, x, t), scipy_log_prob(mix, x, t),
                               rtol=1e-10, atol=1e-10)


def test_per_row_t_and_types(mix):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 2)) * 2
    t = rng.uniform(0.01, 1.0, size=12)
    lp = fm.marginal_log_prob(mix, x, t)
    assert isinstance(lp, np.ndarray) and lp.shape == (12,)
    np.testing.assert_allclose(lp, scipy_log_prob(mix, x, t), rtol=1e-10)
    v = fm.exact_velocity(mix, x, t)
    assert isinstance(v, np.ndarray) and v.shape == (12, 2)
    # per-row t equals row-by-row scalar t
    for i in (0, 5, 11):
        np.testing.assert_allclose(v[i], fm.exact_velocity(mix, x[i:i + 1], float(t[i]))[0],
                                   rtol=1e-12)
    vt = fm.exact_velocity(mix, torch.tensor(x, dtype=torch.float32), torch.tensor(t))
    assert isinstance(vt, torch.Tensor) and vt.dtype == torch.float32
    np.testing.assert_allclose(vt.numpy(), v, rtol=1e-4, atol=1e-4)
    # NumPy code accepts tensors that require grad, and the torch path is differentiable
    xg = torch.tensor(x, requires_grad=True)
    fm.marginal_log_prob(mix, xg, 0.5).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("t", [0.05, 0.4, 0.8])
def test_velocity_satisfies_the_continuity_equation(mix, t):
    # d/dt p_t + div(p_t v) = 0  <=>  d/dt log p_t + div v + v . grad log p_t = 0, every term
    # by central finite differences (h = 1e-5) of marginal_log_prob and exact_velocity.
    x = np.random.default_rng(2).normal(size=(40, 2)) * 2
    h = 1e-5
    dlogp_dt = (fm.marginal_log_prob(mix, x, t + h) - fm.marginal_log_prob(mix, x, t - h)) / (2 * h)
    eye = np.eye(2)
    grad_logp = np.stack([(fm.marginal_log_prob(mix, x + h * e, t)
                           - fm.marginal_log_prob(mix, x - h * e, t)) / (2 * h) for e in eye], 1)
    div_v = sum((fm.exact_velocity(mix, x + h * e, t)[:, j]
                 - fm.exact_velocity(mix, x - h * e, t)[:, j]) / (2 * h) for j, e in enumerate(eye))
    v = fm.exact_velocity(mix, x, t)
    residual = dlogp_dt + div_v + (v * grad_logp).sum(1)
    scale = np.abs(dlogp_dt) + np.abs(div_v) + 1.0
    assert np.abs(residual / scale).max() < 1e-6, np.abs(residual).max()


def test_velocity_is_the_posterior_mean_monte_carlo(mix):
    # E[eps - x0 | x_t = x] by self-normalised importance sampling with the data law as
    # proposal: given x_t = x and x0, eps = (x - (1-t) x0) / t, and the weight of x0 is
    # N(x | (1-t) x0, t^2 I). 4e5 draws; tolerance 5 standard errors.
    t = 0.6
    x = np.array([[0.5, 0.2], [-1.5, 0.3], [1.0, -1.5]])
    v = fm.exact_velocity(mix, x, t)
    y = mix.sample(400_000, rng=3)
    for xi, vi in zip(x, v, strict=True):
        logw = -0.5 * ((xi - (1 - t) * y) ** 2).sum(1) / t**2
        w = np.exp(logw - logw.max())
        w /= w.sum()
        target = (xi - (1 - t) * y) / t - y  # eps - x0 for each draw
        est = w @ target
        se = np.sqrt(w**2 @ (target - est) ** 2)
        assert np.all(np.abs(est - vi) < 5 * se + 1e-4), (est, vi, se)


def test_velocity_score_and_denoiser_identities(mix):
    # Two other routes to v (Tweedie): v = -(x + t grad log p_t(x)) / (1 - t) with the score by
    # autograd of marginal_log_prob, and v = (x - D(x/(1-t); t/(1-t))) / t with the VE
    # mixture's exact denoiser. At t = 1, v(x) = x - E[x0].
    x = np.random.default_rng(4).normal(size=(30, 2)) * 2
    for t in (0.1, 0.5, 0.9):
        xt = torch.tensor(x, requires_grad=True)
        (score,) = torch.autograd.grad(fm.marginal_log_prob(mix, xt, t).sum(), xt)
        v = fm.exact_velocity(mix, x, t)
        np.testing.assert_allclose(v, -(x + t * score.numpy()) / (1 - t), rtol=1e-9, atol=1e-10)
        d = mix.denoise(x / (1 - t), t / (1 - t))
        np.testing.assert_allclose(v, (x - d) / t, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fm.exact_velocity(mix, x, 1.0), x - mix.mixture.mean(),
                               rtol=1e-12, atol=1e-12)
    # near t = 0 the velocity tends to E[eps - x0 | x0 = x] = -x, without cancellation
    np.testing.assert_allclose(fm.exact_velocity(mix, x, 1e-9), -x, atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), 0.0), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), 1.5), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), -0.2), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), float("nan")), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), np.full(4, 0.5)), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), np.full((3, 1), 0.5)), "t"),
        (lambda m: fm.exact_velocity(m, np.zeros((3, 2)), "half"), "t"),
        (lambda m: fm.marginal_log_prob(m, np.zeros((3, 2)), torch.tensor([0.5, 0.0, 0.5])), "t"),
        (lambda m: fm.marginal_log_prob(m, np.zeros((3, 3)), 0.5), "x"),
        (lambda m: fm.marginal_log_prob(m, np.zeros(2), 0.5), "x"),
        (lambda m: fm.marginal_log_prob(m, np.full((3, 2), np.nan), 0.5), "x"),
        (lambda m: fm.marginal_log_prob(m, np.zeros((0, 2)), 0.5), "x"),
    ],
)
def test_bad_inputs_exact(mix, call, match):
    with pytest.raises(ValueError, match=f"^{match}:"):
        call(mix)


def test_bad_mixture_type():
    with pytest.raises(TypeError, match="^mixture:"):
        fm.exact_velocity("mixture", np.zeros((3, 2)), 0.5)


# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------


def gaussian_flow_map(mean: np.ndarray, cov: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """The exact ODE map x1 -> x0 for data N(mean, cov): in the eigenbasis of cov every
    coordinate is a 1-D Gaussian path N((1-t) m, (1-t)^2 lam + t^2), transported monotonically,
    so x0 = mean + U diag(sqrt(lam)) U^T x1."""
    lam, u = np.linalg.eigh(cov)
    return mean + x1 @ (u * np.sqrt(lam)) @ u.T


def test_sample_ode_orders_on_a_gaussian():
    # Euler converges at order 1, Heun at order 2: the slope of log error against log N,
    # measured between N = 40 and N = 80, within 0.25 of the order.
    mean, cov = np.array([1.0, -0.5]), np.array([[0.5, 0.2], [0.2, 0.3]])
    g = df.NoisedGaussianMixture([1.0], [mean], [cov])
    x1 = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = gaussian_flow_map(mean, cov, x1.numpy())

    def vel(x, t):
        return fm.exact_velocity(g, x, t)

    for method, order in (("euler", 1), ("heun", 2)):
        err = [np.abs(fm.sample_ode(vel, x1, n, method).numpy() - exact).max() for n in (40, 80)]
        slope = math.log2(err[0] / err[1])
        assert abs(slope - order) < 0.25, (method, err, slope)
    assert np.abs(fm.sample_ode(vel, x1, 200, "heun").numpy() - exact).max() < 1e-4


class Counting:
    """velocity(x, t) = -x, counting calls and recording the times."""

    def __init__(self):
        self.ts = []

    def __call__(self, x, t):
        self.ts.append(t)
        return -x


@pytest.mark.parametrize("n", [1, 2, 7])
def test_sample_ode_calls_and_times(n):
    for method, calls in (("euler", n), ("heun", 2 * n - 1)):
        c = Counting()
        fm.sample_ode(c, np.zeros((3, 2)), n, method)
        assert len(c.ts) == calls
        assert c.ts[0] == 1.0 and min(c.ts) > 0 and all(isinstance(t, float) for t in c.ts)
    # dx/dt = -x from t = 1 to 0 gives x1 e: Euler's (1 + 1/N)^N
    out = fm.sample_ode(lambda x, t: -x, torch.ones(1, 1, dtype=torch.float64), n)
    assert math.isclose(float(out), (1 + 1 / n) ** n, rel_tol=1e-12)


def test_sample_ode_reaches_the_mixture_on_the_grid_tv():
    # Heun with the exact velocity (199 calls) is indistinguishable from exact samples on
    # the divergence of the diffusion chapters: within 4 s.d. of the grid-TV floor.
    m = df.example_mixture()
    n = 20_000
    floor, sd = df.grid_tv_floor(m, n, n_repeats=20, rng=0)
    x1 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = fm.sample_ode(lambda x, t: fm.exact_velocity(m, x, t), x1, 100, "heun")
    assert abs(df.grid_tv(x, m) - floor) < 4 * sd, (df.grid_tv(x, m), floor, sd)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: fm.sample_ode(lambda x, t: x, np.zeros((3, 2)), 0), ValueError, "n_steps"),
        (lambda: fm.sample_ode(lambda x, t: x, np.zeros((3, 2)), 2, "rk4"), ValueError, "method"),
        (lambda: fm.sample_ode("v", np.zeros((3, 2)), 2), TypeError, "velocity"),
        (lambda: fm.sample_ode(lambda x, t: x[:, :1], np.zeros((3, 2)), 2), ValueError,
         "velocity"),
        (lambda: fm.sample_ode(lambda x, t: x * np.nan, np.ones((3, 2)), 2), ValueError,
         "velocity"),
        (lambda: fm.sample_ode(lambda x, t: x, np.full((3, 2), np.nan), 2), ValueError, "x1"),
        (lambda: fm.cfm_loss(lambda x, t: x, np.full((3, 2), np.inf)), ValueError, "x0"),
        (lambda: fm.cfm_loss(lambda x, t: x[:, :1], np.zeros((3, 2))), ValueError, "model"),
        (lambda: fm.cfm_loss(None, np.zeros((3, 2))), TypeError, "model"),
        (lambda: fm.cfm_loss(lambda x, t: x, np.zeros((3, 2)), generator=np.random.default_rng(0)),
         TypeError, "generator"),
    ],
)
def test_bad_inputs_sampler_and_loss(call, exc, match):
    with pytest.raises(exc, match=f"^{match}:"):
        call()


# --------------------------------------------------------------------------------------
# The conditional flow-matching loss
# --------------------------------------------------------------------------------------


def test_cfm_loss_expectations_closed_form():
    # Data N(m, s^2) in 1-D. (a) model = 0: E||eps - x0||^2 = 1 + s^2 + m^2.
    # (b) model = the exact velocity: the loss's minimum, E_t Var(eps - x0 | x_t) with
    #     Var = 1 + s^2 - (t - (1-t) s^2)^2 / ((1-t)^2 s^2 + t^2), integrated by scipy's quad.
    # (c) model = exact + c: the minimum plus c^2 (Lipman et al. 2023, Theorem 2).
    # Each within 5 standard errors of the per-row losses, n = 2e5.
    m, s = 0.7, 0.5
    g = df.NoisedGaussianMixture([1.0], [[m]], [[[s**2]]])
    n = 200_000
    x0 = m + s * torch.randn(n, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss_and_se(model):
        # the per-row squared errors, rebuilt from what the model saw (eps from x_t), give
        # the loss's standard error
        seen = {}

        def spy(x, t):
            seen["x"], seen["t"], seen["out"] = x, t, model(x, t)
            return seen["out"]

        loss = float(fm.cfm_loss(spy, x0, generator=1))
        t = seen["t"][:, None]
        eps = (seen["x"] - (1 - t) * x0) / t
        rows = ((seen["out"] - (eps - x0)) ** 2)[:, 0]
        assert math.isclose(float(rows.mean()), loss, rel_tol=1e-9)
        return loss, float(rows.std()) / math.sqrt(n)

    def exact(x, t):
        return fm.exact_velocity(g, x, t)

    var_min = integrate.quad(
        lambda t: 1 + s**2 - (t - (1 - t) * s**2) ** 2 / ((1 - t) ** 2 * s**2 + t**2), 0, 1)[0]
    for model, expected in ((lambda x, t: 0 * x, 1 + s**2 + m**2), (exact, var_min),
                            (lambda x, t: exact(x, t) + 0.3, var_min + 0.09)):
        loss, se = loss_and_se(model)
        assert abs(loss - expected) < 5 * se, (loss, expected, se)


def test_cfm_loss_draws_uniform_times_and_the_interpolant():
    # t uniform on (0, 1] (KS test, p > 1e-3) and x_t = (1-t) x0 + t eps with eps ~ N(0, 1):
    # eps recovered from (x_t - (1-t) x0) / t is standard normal (KS).
    seen = {}

    def spy(x, t):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    x0 = torch.linspace(-2, 2, 20_000, dtype=torch.float64)[:, None]
    fm.cfm_loss(spy, x0, generator=3)
    t = seen["t"].numpy()
    assert t.shape == (20_000,) and t.min() > 0 and t.max() <= 1
    assert stats.kstest(t, "uniform").pvalue > 1e-3
    eps = (seen["x"][:, 0].numpy() - (1 - t) * x0[:, 0].numpy()) / t
    assert stats.kstest(eps, "norm").pvalue > 1e-3


def test_cfm_loss_trains_a_module_and_is_reproducible():
    class Lin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 2)

        def forward(self, x, t):
            return self.a(torch.cat([x, t[:, None]], 1))

    # per coordinate: for x0 = 0 in 2-D and model = 0, the loss is E[eps_j^2] = 1 (5 s.e.)
    zero = fm.cfm_loss(lambda x, t: 0 * x, torch.zeros(50_000, 2, dtype=torch.float64),
                       generator=2)
    assert abs(float(zero) - 1.0) < 5 * math.sqrt(2 / 100_000)
    model = Lin()
    x0 = np.random.default_rng(0).normal(size=(64, 2))  # NumPy float64 -> the model's float32
    loss = fm.cfm_loss(model, x0, generator=0)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    loss.backward()
    assert model.a.weight.grad is not None
    assert torch.equal(fm.cfm_loss(model, x0, generator=0), fm.cfm_loss(model, x0, generator=0))
    assert not torch.equal(fm.cfm_loss(model, x0, generator=0), fm.cfm_loss(model, x0, generator=1))
