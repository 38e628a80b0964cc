"""coursekit.divergences against torch.distributions, SciPy and POT, plus the properties."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scipy import stats

from coursekit import divergences as dv


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


# ---------------------------------------------------------------- KL between Gaussians
@pytest.mark.parametrize("d", [1, 2, 5])
def test_kl_gaussian_matches_torch(d):
    rng = np.random.default_rng(d)
    for _ in range(5):
        m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
        s0, s1 = _random_spd(rng, d), _random_spd(rng, d)
        ref = torch.distributions.kl_divergence(
            torch.distributions.MultivariateNormal(torch.tensor(m0), torch.tensor(s0)),
            torch.distributions.MultivariateNormal(torch.tensor(m1), torch.tensor(s1)),
        ).item()
        assert dv.kl_gaussian(m0, s0, m1, s1) == pytest.approx(ref, rel=1e-9, abs=1e-10)


def test_kl_gaussian_scalar_and_edge_cases():
    # 1-D formula: log(s1/s0) + (s0^2 + (m0-m1)^2) / (2 s1^2) - 1/2
    s0, s1, dm = 0.7, 1.9, 1.3
    exact = np.log(s1 / s0) + (s0**2 + dm**2) / (2 * s1**2) - 0.5
    assert dv.kl_gaussian(0.0, s0**2, dm, s1**2) == pytest.approx(exact, rel=1e-12)
    # Identical Gaussians: exactly 0, never a tiny negative number.
    rng = np.random.default_rng(0)
    s = _random_spd(rng, 4)
    assert dv.kl_gaussian(np.ones(4), s, np.ones(4), s) == 0.0
    # Ill-conditioned but valid covariance (condition number 1e10): still finite and >= 0.
    ill = np.diag([1e-5, 1.0, 1e5])
    val = dv.kl_gaussian(np.zeros(3), ill, np.ones(3), np.eye(3))
    ref = 0.5 * (np.trace(ill) + 3 - 3 - np.log(np.linalg.det(ill)))
    assert np.isfinite(val) and val == pytest.approx(ref, rel=1e-10)


def test_kl_gaussian_is_asymmetric():
    a = dv.kl_gaussian(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    b = dv.kl_gaussian(np.ones(2), 4 * np.eye(2), np.zeros(2), np.eye(2))
    assert abs(a - b) > 0.1


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "cov0"),
        ((np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "dimensions differ"),
        ((np.zeros(2), np.eye(2), np.zeros(2), -np.eye(2)), "positive definite"),
        ((np.zeros(2), [[1.0, 0.5], [0.0, 1.0]], np.zeros(2), np.eye(2)), "symmetric"),
        ((np.zeros(2), np.eye(2), [np.nan, 0.0], np.eye(2)), "NaN"),
    ],
)
def test_kl_gaussian_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        dv.kl_gaussian(*args)


# ---------------------------------------------------------------- Monte Carlo KL
def test_kl_monte_carlo_within_five_standard_errors_of_closed_form():
    rng = np.random.default_rng(1)
    m0, m1 = np.array([0.0, 1.0]), np.array([1.0, -0.5])
    s0, s1 = _random_spd(rng, 2), _random_spd(rng, 2)
    p, q = stats.multivariate_normal(m0, s0), stats.multivariate_normal(m1, s1)
    x = p.rvs(size=100_000, random_state=rng)
    est, se = dv.kl_monte_carlo(p.logpdf, q.logpdf, x, return_stderr=True)
    exact = dv.kl_gaussian(m0, s0, m1, s1)
    # 5 standard errors: a false alarm has probability < 1e-6 (CLT at n = 1e5).
    assert abs(est - exact) < 5 * se
    assert dv.kl_monte_carlo(p.logpdf, q.logpdf, x) == est


def test_kl_monte_carlo_accepts_torch_and_reports_infinity():
    torch.manual_seed(0)
    p = torch.distributions.Normal(0.0, 1.0)
    q = torch.distributions.Normal(0.5, 1.0)
    x = p.sample(torch.Size([20_000]))
    est, se = dv.kl_monte_carlo(p.log_prob, q.log_prob, x, return_stderr=True)
    assert abs(est - 0.125) < 5 * se
    # Q = Uniform(0, 1) gives zero density to half of P's samples: the KL is infinite.
    unif = stats.uniform(0, 1)
    xs = np.linspace(-1, 2, 50)
    assert dv.kl_monte_carlo(stats.norm.logpdf, unif.logpdf, xs) == np.inf


def test_kl_monte_carlo_bad_input():
    x = np.linspace(0, 1, 10)
    with pytest.raises(TypeError, match="callables"):
        dv.kl_monte_carlo(None, stats.norm.logpdf, x)
    with pytest.raises(ValueError, match="one log-density per sample"):
        dv.kl_monte_carlo(lambda s: np.zeros(3), stats.norm.logpdf, x)
    with pytest.raises(ValueError, match="NaN"):
        dv.kl_monte_carlo(lambda s: np.full(10, np.nan), stats.norm.logpdf, x)
    with pytest.raises(ValueError, match="zero .* density under P"):
        dv.kl_monte_carlo(stats.uniform(2, 1).logpdf, stats.norm.logpdf, x)
    with pytest.raises(ValueError, match="at least 2"):
        dv.kl_monte_carlo(stats.norm.logpdf, stats.norm.logpdf, x[:1])


# ---------------------------------------------------------------- total variation
def test_total_variation_is_sup_over_events():
    rng = np.random.default_rng(2)
    p, q = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
    # Brute force over all 2^8 events A: sup_A |P(A) - Q(A)|.
    masks = (np.arange(256)[:, None] >> np.arange(8)) & 1
    sup = np.max(np.abs(masks @ (p - q)))
    assert dv.total_variation(p, q) == pytest.approx(sup, rel=1e-12)


def test_total_variation_range_and_symmetry():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(5) * 0.3), rng.dirichlet(np.ones(5) * 0.3)
        tv = dv.total_variation(p, q)
        assert 0.0 <= tv <= 1.0 and tv == dv.total_variation(q, p)
    assert dv.total_variation([1, 0, 0], [0, 0.5, 0.5]) == 1.0  # disjoint supports
    assert dv.total_variation([0.2, 0.8], [0.2, 0.8]) == 0.0


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, 0.6], [0.5, 0.5], "sum to 1"),
        ([1.5, -0.5], [0.5, 0.5], "non-negative"),
        ([0.5, 0.5], [1.0 / 3] * 3, "same number of outcomes"),
        ([[0.5, 0.5]], [0.5, 0.5], "dimension"),
    ],
)
def test_total_variation_bad_input(p, q, match):
    with pytest.raises(ValueError, match=match):
        dv.total_variation(p, q)


# ---------------------------------------------------------------- Wasserstein-1 in 1-D
@pytest.mark.parametrize("n, m", [(100, 100), (137, 59), (1, 40), (500, 3)])
def test_wasserstein_1d_matches_scipy(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    x, y = rng.standard_normal(n), 1.5 * rng.standard_normal(m) + 0.7
    ref = stats.wasserstein_distance(x, y)
    assert dv.wasserstein_1d(x, y) == pytest.approx(ref, rel=1e-12, abs=1e-14)


def test_wasserstein_1d_matches_pot_exact_transport():
    rng = np.random.default_rng(4)
    x, y = rng.exponential(size=70), rng.normal(size=45)
    cost = np.abs(x[:, None] - y[None, :])
    ref = ot.emd2(np.full(70, 1 / 70), np.full(45, 1 / 45), cost)
    assert dv.wasserstein_1d(x, y) == pytest.approx(ref, rel=1e-9)


def test_wasserstein_1d_properties():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1000)
    # A translation by c moves every point by c: W1 = |c| exactly.
    assert dv.wasserstein_1d(x, x + 2.5) == pytest.approx(2.5, rel=1e-12)
    assert dv.wasserstein_1d(x, x) == 0.0
    # Disjoint supports: finite (while the KL is infinite).
    u, v = rng.uniform(0, 1, 500), rng.uniform(3, 4, 400)
    w = dv.wasserstein_1d(u, v)
    assert np.isfinite(w) and 2.0 < w < 4.0
    # Accepts (n, 1) columns.
    assert dv.wasserstein_1d(x[:, None], x[:, None] + 1) == pytest.approx(1.0)


def test_wasserstein_1d_ties_and_large_values():
    # Ties: moving 1/3 of the mass from 0 to 1 costs exactly 1/3.
    assert dv.wasserstein_1d([0.0, 0.0, 1.0], [0.0, 1.0, 1.0]) == pytest.approx(1 / 3, rel=1e-14)
    # Large magnitudes: no cancellation problem (a translation by 1 far from the origin).
    x = np.array([1e12, 1e12 + 3.0, 1e12 + 7.0])
    assert dv.wasserstein_1d(x, x + 1.0) == pytest.approx(1.0, rel=1e-9)
    assert dv.wasserstein_1d(x, x[::-1]) == 0.0  # order does not matter


def test_wasserstein_1d_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        dv.wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="1-D sample"):
        dv.wasserstein_1d(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        dv.wasserstein_1d([np.nan, 1.0], [1.0])


# ---------------------------------------------------------------- sliced Wasserstein
def test_sliced_wasserstein_matches_pot_with_same_projections():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((300, 3)), rng.standard_normal((200, 3)) + [1.0, 0.0, -0.5]
    theta = rng.standard_normal((3, 64))
    theta /= np.linalg.norm(theta, axis=0)
    ref = ot.sliced_wasserstein_distance(x, y, n_projections=64, p=1, projections=theta)
    assert dv.sliced_wasserstein(x, y, projections=theta) == pytest.approx(ref, rel=1e-9)


def test_sliced_wasserstein_is_below_exact_w1_and_reproducible():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 2))
    y = rng.standard_normal((150, 2)) * [2.0, 0.5] + [1.0, 1.0]
    w1 = ot.emd2(np.full(200, 1 / 200), np.full(150, 1 / 150), ot.dist(x, y, metric="euclidean"))
    sw = dv.sliced_wasserstein(x, y, n_projections=500, rng=0)
    assert 0.0 < sw <= w1  # every projection is 1-Lipschitz
    assert sw == dv.sliced_wasserstein(x, y, n_projections=500, rng=0)
    # In 1-D there is one direction up to sign: SW1 = W1.
    assert dv.sliced_wasserstein(x[:, :1], y[:, :1], n_projections=3, rng=1) == pytest.approx(
        dv.wasserstein_1d(x[:, 0], y[:, 0]), rel=1e-12)


def test_sliced_wasserstein_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="dimensions differ"):
        dv.sliced_wasserstein(x, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="n_projections"):
        dv.sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match="unit vector"):
        dv.sliced_wasserstein(x, x, projections=np.ones((2, 4)))


# ---------------------------------------------------------------- MMD
def _gauss_kernel_mean(h2: float, var: float, delta2: float, d: int) -> float:
    """E k(X, Y) for X - Y ~ N(delta, var I_d) and k = exp(-|.|^2 / (2 h2))."""
    return (h2 / (h2 + var)) ** (d / 2) * np.exp(-delta2 / (2 * (h2 + var)))


def test_mmd_matches_explicit_sums():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((30, 2)) + 0.5
    from scipy.spatial.distance import cdist

    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * 0.8**2))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    u = ((kxx.sum() - 40) / (40 * 39) + (kyy.sum() - 30) / (30 * 29) - 2 * kxy.mean())
    v = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    assert dv.mmd(x, y, bandwidth=0.8) == pytest.approx(u, rel=1e-10)
    assert dv.mmd(x, y, bandwidth=0.8, unbiased=False) == pytest.approx(v, rel=1e-10)


def test_mmd_unbiased_estimate_matches_population_value():
    # P = N(0, I), Q = N(delta, I) in 2-D: the population MMD^2 has a closed form.
    d, h, delta = 2, 1.0, np.array([0.6, 0.0])
    exact = (2 * _gauss_kernel_mean(h * h, 2.0, 0.0, d)
             - 2 * _gauss_kernel_mean(h * h, 2.0, float(delta @ delta), d))
    rng = np.random.default_rng(9)
    est = [dv.mmd(rng.standard_normal((200, d)), rng.standard_normal((200, d)) + delta, h)
           for _ in range(200)]
    se = np.std(est, ddof=1) / np.sqrt(len(est))
    assert abs(np.mean(est) - exact) < 5 * se  # unbiased: mean of estimates -> exact value


def test_mmd_properties_and_bad_input():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((300, 2))
    same, diff = dv.mmd(x, rng.standard_normal((300, 2))), dv.mmd(x, x + 1.0)
    assert abs(same) < 0.01 < diff
    assert dv.mmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-12)
    assert dv.mmd(x, x + 1.0, bandwidth="median") > 0
    with pytest.raises(ValueError, match="bandwidth"):
        dv.mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        dv.mmd(x, x, bandwidth="silverman")
    with pytest.raises(ValueError, match="at least 2"):
        dv.mmd(x[:1], x)
    with pytest.raises(ValueError, match="dimensions differ"):
        dv.mmd(x, np.zeros((5, 3)))
