"""Tests of coursekit.transport against independent references (SciPy, closed forms)."""

import numpy as np
import pytest
from scipy import integrate, stats

from coursekit import transport


def test_monge_gaussian_to_gaussian_is_the_affine_map():
    # Between two Gaussians the increasing map is x -> m_b + s_b (x - m_a) / s_a
    # (closed form); far in both tails too (the naive ppf(cdf(x)) is inf at x = 40).
    x = np.linspace(-40.0, 40.0, 2001)
    t = transport.monge_map_1d(x, stats.norm(1.0, 2.0), stats.norm(-3.0, 0.5))
    assert np.all(np.isfinite(t))
    np.testing.assert_allclose(t, -3.0 + 0.5 * (x - 1.0) / 2.0, rtol=1e-9, atol=1e-9)


def test_monge_pushes_the_source_onto_the_target():
    # KS test of the pushed samples against the target's CDF (p > 1e-3 at n = 1e5, seed 0),
    # and the same test rejects a map that forgets the source's CDF (ppf of the target
    # applied to x itself).
    rng = np.random.default_rng(0)
    source, target = stats.expon(), stats.gamma(3.0, scale=0.5)
    x = source.rvs(size=100_000, random_state=rng)
    y = transport.monge_map_1d(x, source, target)
    assert stats.kstest(y, target.cdf).pvalue > 1e-3
    wrong = target.ppf(np.clip(x, 0, 1))
    assert stats.kstest(wrong, target.cdf).pvalue < 1e-10


def test_monge_is_non_decreasing_and_cost_optimal():
    # Non-decreasing; its mean cost E|T(X) - X| equals W1(alpha, beta) = int |F_a - F_b|
    # (computed by quadrature), within 5 Monte Carlo standard errors; the decreasing
    # transport T'(x) = F_b^{-1}(1 - F_a(x)), which also pushes alpha to beta, costs more.
    rng = np.random.default_rng(1)
    source, target = stats.norm(0.0, 1.0), stats.gamma(2.0)
    grid = np.linspace(-8, 8, 4001)
    assert np.all(np.diff(transport.monge_map_1d(grid, source, target)) >= 0)
    w1 = integrate.quad(lambda t: abs(source.cdf(t) - target.cdf(t)), -np.inf, np.inf,
                        limit=200)[0]
    x = source.rvs(size=200_000, random_state=rng)
    cost = np.abs(transport.monge_map_1d(x, source, target) - x)
    assert abs(cost.mean() - w1) < 5 * cost.std() / np.sqrt(len(x))
    anti = np.abs(target.isf(source.cdf(x)) - x)
    assert anti.mean() > w1 + 0.2  # 2.36 vs 2.00 here; MC s.e. ~ 0.003


@pytest.mark.parametrize("bad", [object(), np.array([1.0])])
def test_monge_rejects_objects_that_are_not_distributions(bad):
    with pytest.raises(TypeError, match="source"):
        transport.monge_map_1d([0.0], bad, stats.norm())


def test_monge_rejects_non_finite_or_wrongly_shaped_points():
    with pytest.raises(ValueError, match="x"):
        transport.monge_map_1d([0.0, np.nan], stats.norm(), stats.norm())
    with pytest.raises(ValueError, match="x"):
        transport.monge_map_1d(np.zeros((3, 2)), stats.norm(), stats.norm())


def _three_maps():
    weights = np.array([0.5, 0.3, 0.2])
    matrices = np.array([[[1.0, 0.0], [0.5, 0.3]],
                         [[0.2, -0.6], [0.4, 0.1]],
                         [[-0.7, 0.0], [0.0, 0.4]]])
    shifts = np.array([[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]])
    return weights, matrices, shifts


def test_stochastic_map_density_is_the_gaussian_mixture():
    # p(x) = sum_k pi_k N(x; b_k, A_k A_k^T), evaluated by scipy.stats (independent
    # of the change-of-variables route of log_prob), to 1e-10.
    w, a, b = _three_maps()
    t = transport.StochasticLinearMap(w, a, b)
    x = np.random.default_rng(2).normal(scale=3.0, size=(500, 2))
    ref = np.log(sum(wk * stats.multivariate_normal(bk, ak @ ak.T).pdf(x)
                     for wk, ak, bk in zip(w, a, b, strict=True)))
    np.testing.assert_allclose(t.log_prob(x), ref, rtol=1e-10)


def test_stochastic_map_samples_follow_its_density():
    # Labels follow the weights (chi-square p > 1e-3), and each point is A_k z + b_k
    # for its label: the projection on a direction passes a KS test against the
    # mixture's 1-D marginal (a mixture of normals, computed in closed form).
    w, a, b = _three_maps()
    t = transport.StochasticLinearMap(w, a, b)
    x, labels = t.sample(100_000, rng=3)
    counts = np.bincount(labels, minlength=3)
    assert stats.chisquare(counts, 100_000 * w).pvalue > 1e-3
    u = np.array([0.6, 0.8])
    means = b @ u
    sds = np.sqrt(np.einsum("i,kij,j->k", u, a @ a.transpose(0, 2, 1), u))

    def cdf(s):
        return sum(wk * stats.norm(m, sd).cdf(s) for wk, m, sd in zip(w, means, sds,
                                                                        strict=True))
    assert stats.kstest(x @ u, cdf).pvalue > 1e-3


def test_stochastic_map_push_uses_the_given_latents():
    w, a, b = _three_maps()
    t = transport.StochasticLinearMap(w, a, b)
    z = np.random.default_rng(4).standard_normal((50, 2))
    x, labels = t.push(z, rng=5)
    np.testing.assert_allclose(x, np.einsum("nij,nj->ni", a[labels], z) + b[labels],
                               rtol=1e-12)


def test_stochastic_map_rejects_bad_parameters():
    w, a, b = _three_maps()
    with pytest.raises(ValueError, match="weights"):
        transport.StochasticLinearMap([0.5, 0.3, 0.3], a, b)
    singular = a.copy()
    singular[1] = [[1.0, 2.0], [2.0, 4.0]]
    with pytest.raises(ValueError, match=r"matrices\[1\]"):
        transport.StochasticLinearMap(w, singular, b)
    with pytest.raises(ValueError, match="shapes"):
        transport.StochasticLinearMap(w, a, b[:2])
    t = transport.StochasticLinearMap(w, a, b)
    with pytest.raises(ValueError, match="z"):
        t.push(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x"):
        t.log_prob(np.full((2, 2), np.inf))


def test_stochastic_map_zero_weight_branch_is_never_used():
    w, a, b = _three_maps()
    t = transport.StochasticLinearMap([0.6, 0.0, 0.4], a, b)
    _, labels = t.sample(5000, rng=6)
    assert not np.any(labels == 1)
    assert np.all(np.isfinite(t.log_prob(np.zeros((3, 2)))))
