"""Tests of coursekit.quality_diversity, each against an independent reference.

References used: closed forms computed by hand (piecewise-linear alpha of two small discrete
laws, two Gaussians with a common covariance, chi-square and non-central chi-square laws of
Gaussian radii, the 1-D Poisson limit of authenticity), brute force (every subset for the
classifier view of alpha, pairwise distances for authenticity), SciPy (norm, multivariate
normal densities on a grid, quad, entropy), and coursekit.metrics's histogram PRD for the
sample-based estimate.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.spatial.distance import cdist

from coursekit import diffusion, gan, gmm, metrics
from coursekit import quality_diversity as qd

# ---------------------------------------------------------------------------------------------
# Helpers of the tests (references, not copies of the code under test)
# ---------------------------------------------------------------------------------------------

SLOPES = np.array([0.0, 0.05, 0.3, 1 / 3, 0.7, 1.0, 1.5, 2.0, 5.0, 40.0, math.inf])


def _random_laws(k: int, seed: int, zeros: bool = True) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    p, q = r.random(k), r.random(k)
    if zeros:
        p[0], q[1] = 0.0, 0.0  # a bin only Q reaches, a bin only P reaches
    return p / p.sum(), q / q.sum()


def _gaussian_pair_alpha(lam: np.ndarray, dist: float) -> np.ndarray:
    """alpha(lambda) for P = N(0, I), Q = N(mu, I), |mu| = dist, by hand.

    Along mu, lambda p(x) < q(x) iff x > x* = (log lambda + dist^2 / 2) / dist, so
    alpha = lambda P(X > x*) + Q(X < x*) = lambda (1 - Phi(x*)) + Phi(x* - dist).
    """
    with np.errstate(divide="ignore"):
        xs = (np.log(lam) + dist**2 / 2) / dist
    return lam * stats.norm.sf(xs) + stats.norm.cdf(xs - dist)


# ---------------------------------------------------------------------------------------------
# 1. PRD of discrete laws
# ---------------------------------------------------------------------------------------------


def test_identical_laws_give_the_ideal_curve():
    p, _ = _random_laws(7, 0)
    alpha, beta = qd.prd_alpha_beta(p, p, SLOPES)
    with np.errstate(divide="ignore"):
        ideal_beta = np.minimum(1.0, 1.0 / SLOPES)
    np.testing.assert_allclose(alpha, np.minimum(SLOPES, 1.0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(beta, ideal_beta, rtol=1e-12, atol=1e-15)
    curve = qd.prd_curve_exact(p, p, n_angles=5)
    np.testing.assert_allclose(curve.slopes[:4], [0.0, math.tan(math.pi / 8), 1.0,
                                                  math.tan(3 * math.pi / 8)], rtol=1e-12)
    assert curve.slopes[-1] == math.inf
    np.testing.assert_allclose(curve.precision[[0, 2, 4]], [0.0, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(curve.recall[[0, 2, 4]], [1.0, 1.0, 0.0], atol=1e-12)


def test_disjoint_supports_give_zero_everywhere():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.3, 0.7])
    curve = qd.prd_curve_exact(p, q, n_angles=51)
    assert np.all(curve.precision == 0.0) and np.all(curve.recall == 0.0)


def test_hand_computed_curves():
    # p = (1/2, 1/2, 0), q = (1/4, 1/4, 1/2): alpha = 2 min(lambda / 2, 1/4) = min(lambda, 1/2);
    # Q(supp P) = 1/2 at lambda = inf, P(supp Q) = 1 at lambda = 0.
    alpha, beta = qd.prd_alpha_beta([0.5, 0.5, 0.0], [0.25, 0.25, 0.5], SLOPES)
    with np.errstate(divide="ignore", invalid="ignore"):
        want_beta = np.where(SLOPES == 0, 1.0, np.minimum(1.0, 0.5 / SLOPES))
    np.testing.assert_allclose(alpha, np.minimum(SLOPES, 0.5), rtol=1e-12)
    np.testing.assert_allclose(beta, want_beta, rtol=1e-12)
    # p = (0.6, 0.4), q = (0.2, 0.8): kinks at lambda = 0.2/0.6 = 1/3 and 0.8/0.4 = 2
    lam = np.array([0.1, 1 / 3, 1.0, 2.0, 5.0])
    want = np.array([0.1, 1 / 3, 0.2 + 0.4, 1.0, 1.0])  # lambda, 0.2 + 0.4 lambda, 1
    alpha, beta = qd.prd_alpha_beta([0.6, 0.4], [0.2, 0.8], lam)
    np.testing.assert_allclose(alpha, want, rtol=1e-12)
    np.testing.assert_allclose(beta, want / lam, rtol=1e-12)


def test_alpha_is_the_best_weighted_error_of_a_test_between_p_and_q():
    # Simon et al. (2019): alpha(lambda) = min over sets A of lambda P(A) + Q(A^c), brute force
    p, q = _random_laws(8, 1)
    subsets = np.array(list(itertools.product([0, 1], repeat=8)), dtype=bool)  # (256, 8)
    for lam in [0.2, 0.9, 1.0, 3.0]:
        best = min(lam * p[a].sum() + q[~a].sum() for a in subsets)
        alpha, _ = qd.prd_alpha_beta(p, q, lam)
        assert alpha == pytest.approx(best, rel=1e-12)


def test_histogram_estimate_converges_to_the_exact_curve():
    # metrics.prd_from_histograms of sample counts, at its slopes tan(linspace(eps, pi/2 - eps)),
    # against the exact curve: the maximal error shrinks like 1 / sqrt(n) (x10 for 100x n).
    p, q = _random_laws(10, 2, zeros=False)
    n_angles = 201
    lam = np.tan(np.linspace(1e-10, math.pi / 2 - 1e-10, n_angles))
    alpha, beta = qd.prd_alpha_beta(p, q, lam)
    r = np.random.default_rng(3)
    errors = []
    for n in (500, 50_000):
        hp = np.bincount(r.choice(10, n, p=p), minlength=10)
        hq = np.bincount(r.choice(10, n, p=q), minlength=10)
        prec, rec = metrics.prd_from_histograms(hp, hq, n_angles)
        errors.append(max(np.abs(prec - alpha).max(), np.abs(rec - beta).max()))
    assert errors[1] < errors[0] / 3, errors
    assert errors[1] < 0.03, errors  # a few 1/sqrt(n) = 0.0045


# ---------------------------------------------------------------------------------------------
# 2. PR-divergence (Verine et al. 2023)
# ---------------------------------------------------------------------------------------------


def _f_divergence(p: np.ndarray, q: np.ndarray, lam: float) -> float:
    """sum_w q f(p/q) with f(u) = max(lam u, 1) - max(lam, 1), term by term.

    Where q = 0 the term is p * lim_{u->inf} f(u) / u = lam * p (the f-divergence convention).
    """
    total = 0.0
    for pw, qw in zip(p, q, strict=True):
        if qw > 0:
            u = pw / qw
            total += qw * (max(lam * u, 1.0) - max(lam, 1.0))
        else:
            total += lam * pw
    return total


@pytest.mark.parametrize("lam", [0.05, 0.5, 1.0, 2.0, 20.0])
def test_pr_divergence_is_the_f_divergence_and_the_frontier_gap(lam):
    p, q = _random_laws(9, 4)
    d = qd.pr_divergence(p, q, lam)
    assert d == pytest.approx(_f_divergence(p, q, lam), rel=1e-12, abs=1e-15)
    alpha, _ = qd.prd_alpha_beta(p, q, lam)
    assert d == pytest.approx(min(lam, 1.0) - alpha, rel=1e-12, abs=1e-15)  # the point at slope lam
    assert 0.0 <= d <= min(lam, 1.0)


def test_pr_divergence_edges():
    p, q = _random_laws(6, 5)
    assert qd.pr_divergence(p, p, 2.0) == pytest.approx(0.0, abs=1e-15)
    assert qd.pr_divergence([0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], 3.0) == pytest.approx(1.0)
    assert qd.pr_divergence([0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], 0.25) == pytest.approx(0.25)
    # lambda = 1 is the total variation
    assert qd.pr_divergence(p, q, 1.0) == pytest.approx(0.5 * np.abs(p - q).sum(), rel=1e-12)


def test_kl_is_a_mixture_of_pr_divergences():
    # D_f = int_0^inf D_lambda f''(1/lambda) / lambda^3 d lambda; for KL, f = u log u, the
    # weight is 1 / lambda^2. D_lambda is piecewise linear with kinks at q_w / p_w, 0 outside
    # [min q/p, max q/p] when both laws have full support.
    p, q = _random_laws(6, 6, zeros=False)
    kinks = np.sort(q / p)
    total = 0.0
    for a, b in zip(kinks[:-1], kinks[1:], strict=True):
        val, _ = integrate.quad(lambda lam: qd.pr_divergence(p, q, lam) / lam**2, a, b,
                                epsabs=1e-13, epsrel=1e-12)
        total += val
    assert total == pytest.approx(stats.entropy(p, q), rel=1e-9)


@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5])
def test_pr_f_gan_row_conjugate_and_tight_bound(lam):
    div = qd.pr_f_divergence(lam)
    # f matches the paper's formula; f* is sup_u (t u - f(u)) over u >= 0, by brute force
    u = np.union1d(np.linspace(0.0, 60.0, 600_001), [1.0 / lam])  # the kink of f
    fu = np.maximum(lam * u, 1.0) - max(lam, 1.0)
    np.testing.assert_allclose(div.f(u[::1000]), fu[::1000], rtol=1e-14)
    t = np.array([-2.0, -0.1, 0.0, 0.3 * lam, lam])
    brute = np.array([np.max(ti * u - fu) for ti in t])
    np.testing.assert_allclose(div.conjugate(t), brute, rtol=1e-12, atol=1e-12)
    # above lambda, t u - f(u) grows without bound (here up to the grid's end): f* = inf
    assert np.isinf(div.conjugate(lam + 0.5)) and np.max((lam + 0.5) * u - fu) > 20
    v = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(div.conjugate_of_activation(v), div.conjugate(div.activation(v)),
                               rtol=1e-12)
    # the bound sum_w p g(v_w) - q f*(g(v_w)) is tight at the critic 1[lambda p > q] and below
    # the divergence for any other critic
    p, q = _random_laws(7, 9)
    best = np.where(lam * p > q, 40.0, -40.0)

    def bound(logits):
        return np.sum(p * div.activation(logits)) - np.sum(q * div.conjugate_of_activation(logits))

    assert bound(best) == pytest.approx(qd.pr_divergence(p, q, lam), abs=1e-12)
    r = np.random.default_rng(9)
    assert all(bound(r.normal(0, 3, 7)) <= qd.pr_divergence(p, q, lam) + 1e-12 for _ in range(50))
    # tensors: the row goes through coursekit.gan's f-GAN bound, with gradients
    real_v = torch.tensor([1.0, -2.0], requires_grad=True)
    val = gan.variational_bound(div, real_v, torch.tensor([0.5, 3.0]))
    val.backward()
    assert torch.isfinite(real_v.grad).all()


# ---------------------------------------------------------------------------------------------
# PRD of Gaussian mixtures (importance sampling with standard errors)
# ---------------------------------------------------------------------------------------------

EYE2 = np.eye(2)


def test_identical_mixtures_are_exact_with_zero_error():
    m = gmm.GaussianMixture([0.3, 0.7], [[0, 0], [3, 1]], [EYE2, [[1, 0.5], [0.5, 2]]])
    res = qd.prd_curve_mixtures(m, m, n_angles=11, n_samples=2000, rng=0)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(res.precision, np.minimum(res.slopes, 1.0), rtol=1e-12)
        np.testing.assert_allclose(res.recall, np.minimum(1.0, 1.0 / res.slopes), rtol=1e-12)
    assert np.all(res.precision_se < 1e-12) and np.all(res.recall_se < 1e-12)


def test_two_gaussians_match_the_closed_form_within_five_standard_errors():
    mu = np.array([1.2, -0.9])  # |mu| = 1.5
    p = gmm.GaussianMixture([1.0], [[0.0, 0.0]], [EYE2])
    q = gmm.GaussianMixture([1.0], [mu], [EYE2])
    res = qd.prd_curve_mixtures(p, q, n_angles=101, n_samples=100_000, rng=1)
    want = _gaussian_pair_alpha(res.slopes[1:-1], 1.5)
    z_alpha = (res.precision[1:-1] - want) / res.precision_se[1:-1]
    z_beta = (res.recall[1:-1] - want / res.slopes[1:-1]) / res.recall_se[1:-1]
    # a 5-sigma bound on each of 99 (correlated) points of a fixed distribution
    assert np.abs(z_alpha).max() < 5 and np.abs(z_beta).max() < 5
    assert res.precision_se.max() < 0.003  # the error is stated and small
    # the ends: Gaussians have full support, alpha(inf) = beta(0) = 1
    assert res.precision[-1] == pytest.approx(1.0) and res.recall[0] == pytest.approx(1.0)


def test_mixtures_match_a_grid_quadrature_with_scipy_densities():
    w1, m1 = [0.4, 0.6], np.array([[-2.0, 0.0], [2.0, 1.0]])
    c1 = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, 0.0], [0.0, 1.2]]])
    w2, m2 = [0.2, 0.5, 0.3], np.array([[-2.0, 0.5], [1.0, 1.0], [0.0, -2.0]])
    c2 = np.array([EYE2, [[0.8, -0.2], [-0.2, 0.9]], 0.5 * EYE2])
    res = qd.prd_curve_mixtures((w1, m1, c1), (w2, m2, c2), n_angles=9, n_samples=100_000, rng=2)
    h = 0.02
    g = np.arange(-9, 9, h) + h / 2
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    dens = [sum(w * stats.multivariate_normal(m, c).pdf(xy) for w, m, c in zip(*mix, strict=True))
            for mix in ((w1, m1, c1), (w2, m2, c2))]
    for lam, a, a_se in zip(res.slopes[1:-1], res.precision[1:-1], res.precision_se[1:-1],
                            strict=True):
        ref = np.minimum(lam * dens[0], dens[1]).sum() * h * h  # midpoint rule, error << se
        assert abs(a - ref) < 5 * a_se + 1e-4, (lam, a, ref, a_se)


def test_stated_standard_errors_match_the_spread_over_seeds():
    # 40 independent runs: the spread of the estimates vs the mean stated s.e. (the ratio of a
    # sample s.d. of 40 draws has a relative s.e. of ~11%, so [0.6, 1.5] is ~4 of them)
    p = gmm.GaussianMixture([0.5, 0.5], [[0.0, 0.0], [3.0, 0.0]], [EYE2, EYE2])
    q = gmm.GaussianMixture([1.0], [[1.0, 0.5]], [2.0 * EYE2])
    runs = [qd.prd_curve_mixtures(p, q, n_angles=5, n_samples=2000, rng=s) for s in range(40)]
    for est, se in (("precision", "precision_se"), ("recall", "recall_se")):
        values = np.array([getattr(r, est)[1:-1] for r in runs])  # (40, 3) interior slopes
        stated = np.array([getattr(r, se)[1:-1] for r in runs]).mean(0)
        ratio = values.std(0, ddof=1) / stated
        assert np.all((ratio > 0.6) & (ratio < 1.5)), (est, ratio)


def test_mixture_arguments_of_every_kind_agree():
    w, m, c = [0.5, 0.5], [[0.0, 0.0], [2.0, 0.0]], np.stack([EYE2, EYE2])
    ref = qd.prd_curve_mixtures(gmm.GaussianMixture(w, m, c), (w, [[0.0, 1.0]] * 2, c),
                                n_angles=5, n_samples=400, rng=7)
    noised = diffusion.NoisedGaussianMixture(w, m, c)
    other = qd.prd_curve_mixtures(noised, (w, [[0.0, 1.0]] * 2, c), n_angles=5, n_samples=400,
                                  rng=7)
    np.testing.assert_array_equal(ref.precision, other.precision)


def test_sample_histograms_approach_the_mixture_curve_from_above():
    # P = N(0, I), Q = N((1.5, 0), I), 2-D histogram of 0.5-wide cells. Coarsening can only
    # raise alpha (min of sums >= sum of mins, the data-processing inequality): the exact cell
    # probabilities (products of normal CDF differences) lie above the closed form; the
    # histogram of n samples approaches the cells' curve as n grows.
    edges = np.arange(-7.0, 8.5, 0.5)
    cdf = stats.norm.cdf(edges)
    cell_p = np.outer(np.diff(cdf), np.diff(cdf)).ravel()
    cdf_shift = stats.norm.cdf(edges - 1.5)
    cell_q = np.outer(np.diff(cdf_shift), np.diff(cdf)).ravel()
    lam = np.tan(np.linspace(1e-10, math.pi / 2 - 1e-10, 101))
    a_cells, _ = qd.prd_alpha_beta(cell_p / cell_p.sum(), cell_q / cell_q.sum(), lam)
    exact = _gaussian_pair_alpha(lam, 1.5)
    assert np.all(a_cells >= exact - 1e-9)
    assert np.max(a_cells - exact) < 0.02  # the cells are fine enough to show the curve
    r = np.random.default_rng(8)
    errors = []
    for n in (2_000, 200_000):
        xp = r.normal(size=(n, 2))
        xq = r.normal(size=(n, 2)) + [1.5, 0.0]
        hp = np.histogram2d(xp[:, 0], xp[:, 1], [edges, edges])[0].ravel()
        hq = np.histogram2d(xq[:, 0], xq[:, 1], [edges, edges])[0].ravel()
        prec, _ = metrics.prd_from_histograms(hp, hq, 101)
        errors.append(np.abs(prec - a_cells).max())
    assert errors[1] < errors[0] / 3, errors


# ---------------------------------------------------------------------------------------------
# 3. alpha-precision, beta-recall, authenticity (Alaa et al. 2022)
# ---------------------------------------------------------------------------------------------

LEVELS = np.linspace(0.1, 0.9, 9)


def _at(curves: qd.AlphaBetaCurves, which: str, levels: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(curves.levels, levels - 1e-12)
    np.testing.assert_allclose(curves.levels[idx], levels, atol=1e-12)
    return getattr(curves, which)[idx]


def test_hand_computed_curves_on_a_line():
    # five points at distances 1..5 from the centre 0: the alpha-quantile radii at the levels
    # 0, 1/4, ..., 1 are 1, ..., 5, so the copies inside are 1/5, ..., 5/5 (a point on the
    # sphere counts as inside). The generated mean is (3, 0), distances 2, 1, 0, 1, 2, whose
    # quantiles are 0, 1, 1, 2, 2: 1, 3, 3, 5, 5 real points inside.
    x = np.array([[1.0, 0], [2, 0], [3, 0], [4, 0], [5, 0]])
    res = qd.alpha_precision_beta_recall(x, x, n_levels=5, center=[0.0, 0.0])
    np.testing.assert_allclose(res.levels, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(res.alpha_precision, [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(res.beta_recall, [0.2, 0.6, 0.6, 1.0, 1.0])
    # trapezoids of |curve - level|: (0.2, 0.15, 0.1, 0.05, 0) -> 0.1; (0.2, 0.35, 0.1, 0.25, 0)
    # -> 0.2; IP = 1 - 2 * 0.1, IR = 1 - 2 * 0.2
    assert res.integrated_precision == pytest.approx(0.8)
    assert res.integrated_recall == pytest.approx(0.6)


def test_identical_laws_lie_on_the_diagonal():
    r = np.random.default_rng(10)
    n = 5000
    res = qd.alpha_precision_beta_recall(r.normal(size=(n, 2)), r.normal(size=(n, 2)),
                                         n_levels=101)
    se = np.sqrt(LEVELS * (1 - LEVELS) * (2 / n))  # one share of m points + one quantile of n
    assert np.all(np.abs(_at(res, "alpha_precision", LEVELS) - LEVELS) < 4 * se)
    assert np.all(np.abs(_at(res, "beta_recall", LEVELS) - LEVELS) < 4 * se)
    assert res.integrated_precision > 0.95 and res.integrated_recall > 0.95


def test_shifted_gaussian_matches_the_noncentral_chi_square():
    # real N(0, I_d), fake N(mu, I_d): with centre 0 the alpha-ball has radius^2 chi2_d.ppf(alpha)
    # and P_alpha = P(|X_g|^2 <= r^2) = ncx2(d, |mu|^2).cdf(r^2); R_beta is the same by symmetry.
    d, shift, n = 3, 1.0, 5000
    mu = np.zeros(d)
    mu[0] = shift
    r = np.random.default_rng(11)
    res = qd.alpha_precision_beta_recall(r.normal(size=(n, d)), r.normal(size=(n, d)) + mu,
                                         n_levels=101, center=np.zeros(d))
    r2 = stats.chi2(d).ppf(LEVELS)
    fake = stats.ncx2(d, shift**2)
    want = fake.cdf(r2)
    # s.e.: binomial share + the quantile's error carried through the densities (delta method)
    se = np.sqrt(want * (1 - want) / n
                 + (fake.pdf(r2) / stats.chi2(d).pdf(r2)) ** 2 * LEVELS * (1 - LEVELS) / n)
    assert np.all(np.abs(_at(res, "alpha_precision", LEVELS) - want) < 4 * se)
    # R_beta's ball is centred on the *estimated* fake mean: add its radial error (1/n variance)
    eps = 1e-4
    dshift = (stats.ncx2(d, (shift + eps) ** 2).cdf(r2) - stats.ncx2(d, (shift - eps) ** 2).cdf(r2))
    se_r = np.sqrt(se**2 + (dshift / (2 * eps)) ** 2 / n)
    assert np.all(np.abs(_at(res, "beta_recall", LEVELS) - want) < 4 * se_r)
    assert np.all(_at(res, "alpha_precision", LEVELS) < LEVELS)  # the shift lowers precision


def test_precision_and_recall_say_bad():
    r = np.random.default_rng(12)
    real = r.normal(size=(3000, 2))
    good = qd.alpha_precision_beta_recall(real, r.normal(size=(3000, 2)))
    shifted = qd.alpha_precision_beta_recall(real, r.normal(size=(3000, 2)) + [2.0, 0.0])
    collapsed = qd.alpha_precision_beta_recall(real, 0.05 * r.normal(size=(3000, 2)))
    assert shifted.integrated_precision < good.integrated_precision - 0.3
    # a collapsed generator: every sample in the smallest real ball, few real points in its own
    assert collapsed.alpha_precision[collapsed.levels >= 0.05].min() > 0.99
    # its 95% ball has radius 0.05 * 2.45: real share 1 - exp(-0.1225^2 / 2) = 0.0075 (s.e. 0.0016)
    assert collapsed.beta_recall[collapsed.levels <= 0.95].max() < 0.02
    assert collapsed.integrated_recall < 0.1


def test_authenticity_of_copies_is_zero():
    r = np.random.default_rng(13)
    train = r.normal(size=(1000, 4))
    res = qd.authenticity(train, train[r.choice(1000, 500)])
    assert res.authenticity == 0.0
    half = np.concatenate([train[:300], r.normal(size=(300, 4))])
    res = qd.authenticity(train, half)
    assert not res.authentic[:300].any()
    np.testing.assert_array_equal(res.nearest_real[:300], np.arange(300))
    assert res.authentic[300:].mean() > 0.2


def test_authenticity_in_one_dimension_is_one_third():
    # n -> inf, any continuous 1-D law: locally a Poisson process. The nearest real r* of g is
    # at D ~ Exp(2) (the min of two unit gaps); r*'s nearest real neighbour is the point on the
    # far side (E ~ Exp(1)) unless it is the one across g, which is farther than g anyway; so
    # g is authentic iff E < D: probability 1 / (1 + 2) = 1/3.
    r = np.random.default_rng(14)
    n = 20_000
    a = qd.authenticity(r.normal(size=(n, 1)), r.normal(size=(n, 1))).authenticity
    # the verdicts share real points: over 20 seeds the spread was 1.3x the binomial s.e.;
    # 6 binomial s.e. is 4.6 measured ones
    assert abs(a - 1 / 3) < 6 * math.sqrt(2 / 9 / n)


@pytest.mark.parametrize("d", [3, 12])  # the k-d tree and the blocked products
def test_authenticity_matches_brute_force_distances(d, monkeypatch):
    monkeypatch.setattr(qd, "_BLOCK_ENTRIES", 1000)  # several blocks
    r = np.random.default_rng(15)
    real = np.round(r.normal(size=(300, d)) * 2)  # quantised: many equal distances
    fake = np.round(r.normal(size=(200, d)) * 2)
    real[-1] = real[0]  # a duplicate
    d_rr = cdist(real, real)
    np.fill_diagonal(d_rr, np.inf)
    d_gr = cdist(fake, real)
    nearest = d_gr.min(1)
    d_r = d_rr.min(1)
    # ties between several nearest reals: the verdict must hold for the one returned
    res = qd.authenticity(real, fake)
    np.testing.assert_allclose(d_gr[np.arange(200), res.nearest_real], nearest, rtol=0, atol=0)
    np.testing.assert_array_equal(res.authentic, nearest > d_r[res.nearest_real])
    # a duplicated real point has d_r = 0: its exact copy is not authentic (0 > 0 is false),
    # a near copy is (the rule's blind spot where the training data repeat themselves)
    dup = np.concatenate([real[1:], real[:1] + 0.5, real[:1] + 0.5])
    assert not qd.authenticity(dup, real[:1] + 0.5).authentic[0]
    assert qd.authenticity(dup, real[:1] + 0.5 + 1e-9).authentic[0]


# ---------------------------------------------------------------------------------------------
# Conventions: bad arguments are named, tensors are welcome
# ---------------------------------------------------------------------------------------------

P3, Q3 = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.25, 0.25])
X = np.random.default_rng(0).normal(size=(20, 2))
GM = gmm.GaussianMixture([1.0], [[0.0, 0.0]], [EYE2])

BAD = [
    (qd.prd_alpha_beta, dict(p=P3, q=Q3, lambdas=[0.5, 1.0]),
     {"p": [[0.5, 0.5]], "q": [0.5, 0.5], "lambdas": [-1.0]}),
    (qd.prd_alpha_beta, dict(p=P3, q=Q3, lambdas=1.0),
     {"p": [0.5, 0.6, -0.1], "q": [0.2, np.nan, 0.8], "lambdas": [np.nan]}),
    (qd.prd_curve_exact, dict(p=P3, q=Q3, n_angles=5),
     {"p": "x", "q": [1.5, -0.25, -0.25], "n_angles": 2}),
    (qd.prd_curve_exact, dict(p=P3, q=Q3, n_angles=5), {"p": [], "n_angles": 4.5}),
    (qd.pr_divergence, dict(p=P3, q=Q3, lam=2.0), {"p": [0.3, 0.3], "q": [1.0], "lam": 0.0}),
    (qd.pr_divergence, dict(p=P3, q=Q3, lam=2.0), {"lam": math.inf}),
    (qd.pr_f_divergence, dict(lam=2.0), {"lam": -1.0}),
    (qd.pr_f_divergence, dict(lam=2.0), {"lam": "x"}),
    (qd.prd_curve_mixtures, dict(p_mixture=GM, q_mixture=GM, n_angles=5, n_samples=10, rng=0),
     {"p_mixture": 3, "q_mixture": ([1.0], [[0.0]], [[[1.0]]]), "n_angles": 0,
      "n_samples": 2, "rng": torch.Generator()}),
    (qd.prd_curve_mixtures, dict(p_mixture=GM, q_mixture=GM, n_angles=5, n_samples=10, rng=0),
     {"q_mixture": ([0.5, 0.6], [[0.0, 0.0]], [EYE2]), "rng": "seed"}),
    (qd.alpha_precision_beta_recall, dict(real_features=X, fake_features=X + 1, n_levels=5),
     {"real_features": X[:1], "fake_features": X[:, :1], "n_levels": 1, "center": [0.0]}),
    (qd.alpha_precision_beta_recall, dict(real_features=X, fake_features=X + 1),
     {"real_features": X[:, :0], "fake_features": np.full((3, 2), np.inf),
      "center": [np.nan, 0.0]}),
    (qd.authenticity, dict(real_features=X, fake_features=X + 1),
     {"real_features": X[:1], "fake_features": X[:0]}),
    (qd.authenticity, dict(real_features=X, fake_features=X + 1),
     {"real_features": X[0], "fake_features": X[:, :1]}),
]


@pytest.mark.parametrize("fn, kwargs, arg, value",
                         [pytest.param(fn, kw, a, v, id=f"{fn.__name__}-{a}-{i}")
                          for i, (fn, kw, bad) in enumerate(BAD) for a, v in bad.items()])
def test_bad_argument_is_named(fn, kwargs, arg, value):
    fn(**kwargs)  # the valid call works
    with pytest.raises((ValueError, TypeError), match=arg):
        fn(**{**kwargs, arg: value})


def test_tensors_are_welcome():
    xt = torch.tensor(X, requires_grad=True)
    a = qd.alpha_precision_beta_recall(xt, xt + 1)
    b = qd.alpha_precision_beta_recall(X, X + 1)
    np.testing.assert_array_equal(a.alpha_precision, b.alpha_precision)
    assert qd.pr_divergence(torch.tensor(P3), torch.tensor(Q3), 2.0) == qd.pr_divergence(P3, Q3, 2.0)
