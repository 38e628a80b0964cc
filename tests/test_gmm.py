"""coursekit.gmm against scipy.special.logsumexp and scikit-learn's GaussianMixture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as scipy_logsumexp
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from coursekit import gmm


def _mixture(d: int = 2, k: int = 3, seed: int = 0) -> gmm.GaussianMixture:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k) * 2)
    means = 4.0 * rng.standard_normal((k, d))
    a = rng.standard_normal((k, d, d))
    covs = a @ a.transpose(0, 2, 1) / d + 0.3 * np.eye(d)
    return gmm.GaussianMixture(weights, means, covs)


def _sklearn_with(model: gmm.GaussianMixture) -> SkGaussianMixture:
    """A scikit-learn mixture holding exactly the parameters of ``model``."""
    sk = SkGaussianMixture(model.n_components, covariance_type="full")
    sk.weights_ = model.weights
    sk.means_ = model.means
    sk.covariances_ = model.covariances
    # scikit-learn stores the Cholesky factor of the precision: P with P P^T = Sigma^{-1}.
    sk.precisions_cholesky_ = np.stack(
        [np.linalg.inv(np.linalg.cholesky(c)).T for c in model.covariances]
    )
    return sk


# ---------------------------------------------------------------- logsumexp


@pytest.mark.parametrize("axis", [0, 1, -1, None, (0, 1)])
def test_logsumexp_matches_scipy(axis):
    a = np.random.default_rng(1).normal(scale=50.0, size=(7, 5))
    assert np.allclose(gmm.logsumexp(a, axis=axis), scipy_logsumexp(a, axis=axis), rtol=1e-14)


def test_logsumexp_keepdims():
    a = np.random.default_rng(2).normal(size=(4, 3))
    out = gmm.logsumexp(a, axis=1, keepdims=True)
    assert out.shape == (4, 1)
    assert np.allclose(out, scipy_logsumexp(a, axis=1, keepdims=True), rtol=1e-14)


def test_logsumexp_edge_cases():
    a = np.array(
        [
            [1000.0, 1000.0, 999.0],  # naive exp overflows
            [-1000.0, -1001.0, -1e9],  # naive exp underflows to 0, log(0) = -inf
            [-np.inf, -np.inf, -np.inf],  # zero probability: -inf, not NaN
            [-np.inf, 0.0, -np.inf],
            [np.inf, 1.0, -np.inf],
            [1e308, 1e308, 0.0],  # the sum of exponents overflows even after the shift? no: 2*1
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        ours = gmm.logsumexp(a, axis=1)
    with np.errstate(all="ignore"):
        ref = scipy_logsumexp(a, axis=1)
    assert not np.isnan(ours).any()
    assert np.allclose(ours, ref, rtol=1e-14), (ours, ref)
    assert ours[2] == -np.inf and ours[4] == np.inf
    assert np.isclose(ours[0], 1000.0 + np.log(2.0 + np.exp(-1.0)), rtol=1e-15)
    assert np.isclose(ours[1], -1000.0 + np.log1p(np.exp(-1.0)), rtol=1e-15)


def test_logsumexp_scalar_and_nan():
    assert gmm.logsumexp(np.array([-np.inf]), axis=None) == -np.inf
    assert isinstance(gmm.logsumexp([1.0, 2.0]), float)
    with pytest.raises(ValueError, match="NaN"):
        gmm.logsumexp([1.0, np.nan])
    with pytest.raises(ValueError, match="non-empty"):
        gmm.logsumexp(np.zeros((0,)))


# ---------------------------------------------------------------- the mixture density


@pytest.mark.parametrize("d,k", [(1, 1), (1, 4), (2, 3), (5, 6)])
def test_log_prob_matches_sklearn(d, k):
    model = _mixture(d, k, seed=d + k)
    x = np.random.default_rng(3).normal(scale=5.0, size=(500, d))
    ref = _sklearn_with(model).score_samples(x)
    assert np.allclose(model.log_prob(x), ref, rtol=1e-10, atol=1e-10)
    assert np.isclose(model.score(x), ref.mean(), rtol=1e-12)


def test_log_prob_matches_scipy_mixture():
    model = _mixture(3, 2, seed=4)
    x = np.random.default_rng(4).normal(size=(50, 3))
    dens = sum(w * stats.multivariate_normal(m, c).pdf(x)
               for w, m, c in zip(model.weights, model.means, model.covariances, strict=True))
    assert np.allclose(model.log_prob(x), np.log(dens), rtol=1e-10)


def test_log_prob_far_away_is_finite():
    # exp(log N) underflows to 0 at distance 100 sigmas; the log-sum-exp stays finite.
    model = gmm.GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [[[1e-2]], [[1e-2]]])
    lp = model.log_prob(np.array([[200.0]]))
    assert np.isfinite(lp).all() and lp[0] < -1e5
    ref = _sklearn_with(model).score_samples(np.array([[200.0]]))
    assert np.allclose(lp, ref, rtol=1e-12)


def test_responsibilities_match_sklearn():
    model = _mixture(2, 4, seed=5)
    x, _ = model.sample(300, rng=5)
    resp = model.responsibilities(x)
    assert resp.shape == (300, 4)
    assert np.allclose(resp.sum(1), 1.0, atol=1e-12)
    assert np.allclose(resp, _sklearn_with(model).predict_proba(x), atol=1e-10)


def test_zero_weight_component_is_never_sampled():
    model = gmm.GaussianMixture([0.5, 0.0, 0.5], np.zeros((3, 1)), np.ones((3, 1, 1)))
    _, labels = model.sample(10_000, rng=0)
    assert not np.any(labels == 1)
    assert np.isfinite(model.log_prob(np.zeros((1, 1)))).all()


def test_sample_frequencies_and_moments():
    model = _mixture(3, 4, seed=6)
    n = 200_000
    x, labels = model.sample(n, rng=np.random.default_rng(6))
    assert x.shape == (n, 3) and labels.shape == (n,)
    # Component frequencies: chi-square goodness of fit; p > 1e-3 fails a correct sampler
    # one time in a thousand, while a wrong table (e.g. an off-by-one) gives p ~ 0.
    counts = np.bincount(labels, minlength=4)
    assert stats.chisquare(counts, n * model.weights).pvalue > 1e-3
    # Mixture mean: 5 standard errors per coordinate.
    se = np.sqrt(np.diag(model.covariance()) / n)
    assert np.all(np.abs(x.mean(0) - model.mean()) < 5 * se)
    # Per-component mean and covariance (Cholesky sampling), relative tolerance ~ 10 / sqrt(n_k).
    for k in range(4):
        xk = x[labels == k]
        tol = 10.0 / np.sqrt(len(xk))
        scale = np.sqrt(np.diag(model.covariances[k]))
        assert np.all(np.abs(xk.mean(0) - model.means[k]) < 5 * scale / np.sqrt(len(xk)))
        err = (np.cov(xk.T) - model.covariances[k]) / np.outer(scale, scale)
        assert np.abs(err).max() < tol


def test_sample_is_reproducible():
    model = _mixture(2, 3)
    a, la = model.sample(100, rng=42)
    b, lb = model.sample(100, rng=np.random.default_rng(42))
    assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_mixture_moments_exact():
    # Two point-like components at -1 and +1 with equal weights: mean 0, variance 1 + s^2.
    model = gmm.GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [[[0.25]], [[0.25]]])
    assert np.allclose(model.mean(), [0.0])
    assert np.allclose(model.covariance(), [[1.25]])
    assert model.n_parameters == 1 + 2 + 2


@pytest.mark.parametrize(
    "weights,means,covs,match",
    [
        ([0.5, 0.6], np.zeros((2, 2)), np.stack([np.eye(2)] * 2), "sum to 1"),
        ([1.5, -0.5], np.zeros((2, 2)), np.stack([np.eye(2)] * 2), "non-negative"),
        ([0.5, 0.5], np.zeros((3, 2)), np.stack([np.eye(2)] * 3), "weights and means"),
        ([0.5, 0.5], np.zeros((2, 2)), np.stack([np.eye(3)] * 2), "covariances: expected shape"),
        ([0.5, 0.5], np.zeros(2), np.stack([np.eye(2)] * 2), "means"),
        ([0.5, 0.5], np.zeros((2, 2)), np.stack([np.eye(2), -np.eye(2)]), r"component 1\b.*positive"),
        ([0.5, 0.5], np.zeros((2, 2)), np.stack([[[1.0, 0.5], [0.0, 1.0]], np.eye(2)]),
         r"component 0\b.*symmetric"),
        ([0.5, 0.5], [[0.0, np.nan], [0.0, 0.0]], np.stack([np.eye(2)] * 2), "NaN"),
    ],
)
def test_bad_parameters(weights, means, covs, match):
    with pytest.raises(ValueError, match=match):
        gmm.GaussianMixture(weights, means, covs)


def test_bad_points():
    model = _mixture(2, 2)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        model.log_prob(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        model.responsibilities(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="n"):
        model.sample(0)


# ---------------------------------------------------------------- k-means


def test_kmeans_finds_separated_clusters_like_sklearn():
    truth = gmm.GaussianMixture([0.25] * 4, [[0, 0], [10, 0], [0, 10], [10, 10]],
                                np.stack([np.eye(2)] * 4))
    x, labels = truth.sample(2000, rng=7)
    centres, ours = gmm.kmeans(x, 4, rng=7)
    ref = KMeans(4, n_init=1, random_state=0).fit(x)
    assert adjusted_rand_score(ours, ref.labels_) == 1.0
    assert adjusted_rand_score(ours, labels) > 0.99
    inertia = ((x - centres[ours]) ** 2).sum()
    assert inertia <= ref.inertia_ * (1 + 1e-9)


def test_kmeans_assignment_is_nearest_centre():
    x = np.random.default_rng(8).normal(size=(500, 3))
    centres, labels = gmm.kmeans(x, 5, rng=8)
    d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)
    assert np.array_equal(labels, d2.argmin(1))


def test_kmeans_with_duplicate_points():
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    centres, labels = gmm.kmeans(x, 3, rng=0)
    assert np.isfinite(centres).all() and labels.shape == (20,)


# ---------------------------------------------------------------- EM


def _blobs(n=3000, seed=9):
    truth = _mixture(2, 3, seed=seed)
    return truth.sample(n, rng=seed)[0]


def test_em_log_likelihood_is_monotone():
    x = _blobs()
    for init in ("kmeans", "random"):
        model, history = gmm.fit_em(x, 3, init=init, rng=1, tol=1e-10, max_iter=300)
        h = np.array(history)
        # EM never decreases the likelihood; 1e-12 absorbs floating-point rounding only.
        assert np.all(np.diff(h) >= -1e-12), init
        assert np.isclose(model.score(x), h[-1], rtol=1e-12)


def test_em_matches_sklearn_from_the_same_start():
    x = _blobs(seed=10)
    start = gmm.initialize(x, 3, rng=0)
    ours, history = gmm.fit_em(x, 3, init=start, tol=1e-8, reg=1e-6)
    sk = SkGaussianMixture(
        3, covariance_type="full", tol=1e-8, reg_covar=1e-6, max_iter=200,
        weights_init=start.weights, means_init=start.means,
        precisions_init=np.linalg.inv(start.covariances),
    ).fit(x)
    # Same start, same updates: the two runs follow the same path; ours stops within tol.
    assert ours.score(x) >= sk.score(x) - 1e-6
    assert np.allclose(ours.means[np.argsort(ours.means[:, 0])],
                       sk.means_[np.argsort(sk.means_[:, 0])], atol=1e-3)


def test_em_at_least_sklearn_default():
    x = _blobs(seed=11)
    _, history = gmm.fit_em(x, 3, rng=0)
    sk = SkGaussianMixture(3, covariance_type="full", tol=1e-6, random_state=0).fit(x)
    assert history[-1] >= sk.score(x) - 1e-3


def test_em_one_component_is_the_gaussian_mle():
    x = np.random.default_rng(12).normal(size=(400, 3)) @ np.array([[1, 0, 0], [1, 1, 0], [0, 1, 2.0]])
    model, history = gmm.fit_em(x, 1, reg=1e-9, rng=0)
    assert np.allclose(model.means[0], x.mean(0), atol=1e-12)
    assert np.allclose(model.covariances[0], np.cov(x.T, bias=True), atol=1e-8)
    assert len(history) <= 2


def test_em_1d_data_and_many_components():
    x = np.random.default_rng(13).normal(size=(200, 1))
    model, history = gmm.fit_em(x, 50, rng=0, max_iter=20)
    assert np.isfinite(history).all() and model.n_components == 50


@pytest.mark.parametrize(
    "x,k,kwargs,match",
    [
        (np.array([[0.0, np.nan]] * 5), 2, {}, "NaN"),
        (np.array([[0.0, np.inf]] * 5), 2, {}, "infinite"),
        (np.zeros((3, 2)), 4, {}, "4 components but only 3"),
        (np.zeros(10), 2, {}, r"x\[:, None\]"),
        (np.zeros((10, 2)), 0, {}, "n_components"),
        (np.zeros((10, 2)), 2, {"init": "spectral"}, "init"),
        (np.zeros((10, 2)), 2, {"reg": 0.0}, "reg"),
        (np.zeros((10, 2)), 2, {"tol": -1.0}, "tol"),
    ],
)
def test_em_bad_input(x, k, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gmm.fit_em(x, k, **kwargs)


def test_em_init_mixture_must_fit_the_data():
    with pytest.raises(ValueError, match="init"):
        gmm.fit_em(np.zeros((10, 3)), 2, init=_mixture(2, 2))


# ---------------------------------------------------------------- gradient descent


def test_gd_improves_and_approaches_em():
    x = _blobs(n=1500, seed=14)
    start = gmm.initialize(x, 3, method="random", rng=0)
    model, history = gmm.fit_gd(x, 3, n_steps=300, lr=0.05, init=start, rng=0,
                                show_progress=False)
    _, em_hist = gmm.fit_em(x, 3, rng=0)
    assert len(history) == 300
    # history[0] is the start's log-likelihood (before the first update).
    assert np.isclose(history[0], start.score(x), atol=1e-6)
    assert model.score(x) > start.score(x) + 0.1
    assert model.score(x) >= em_hist[-1] - 0.05


def test_gd_loss_is_the_mixture_nll():
    # With lr tiny the parameters barely move: history[0] is exactly the mean log-likelihood.
    x = _blobs(n=500, seed=15)
    start = _mixture(2, 3, seed=15)
    _, history = gmm.fit_gd(x, 3, n_steps=1, lr=1e-12, init=start, show_progress=False)
    assert np.isclose(history[0], start.score(x), rtol=1e-8)


def test_gd_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        gmm.fit_gd(np.full((5, 2), np.nan), 2, n_steps=1, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        gmm.fit_gd(np.zeros((5, 2)), 2, n_steps=1, lr=0.0)


def test_log_joint_is_log_weight_plus_component_log_density():
    model = _mixture(2, 3, seed=16)
    x = np.random.default_rng(16).normal(size=(20, 2))
    ref = np.stack([np.log(w) + stats.multivariate_normal(m, c).logpdf(x) for w, m, c in
                    zip(model.weights, model.means, model.covariances, strict=True)], axis=1)
    assert np.allclose(model.log_joint(x), ref, rtol=1e-12)
    assert np.allclose(scipy_logsumexp(model.log_joint(x), axis=1), model.log_prob(x), rtol=1e-12)


def test_fit_em_n_init_keeps_the_best_run():
    x = gmm.GaussianMixture([0.3, 0.3, 0.4], [[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]],
                            np.stack([np.eye(2)] * 3)).sample(600, rng=0)[0]
    one, _ = gmm.fit_em(x, 6, rng=5)
    best, hist = gmm.fit_em(x, 6, rng=5, n_init=4)
    # The first of the four runs is the single run (same generator), so the best is no worse.
    assert best.score(x) >= one.score(x) - 1e-12
    assert hist[-1] == pytest.approx(best.score(x), abs=1e-10)
    with pytest.raises(ValueError, match="n_init"):
        gmm.fit_em(x, 3, n_init=0)
    with pytest.raises(ValueError, match="n_init"):
        gmm.fit_em(x, 3, init=one, n_init=2)
