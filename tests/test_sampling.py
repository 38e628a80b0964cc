"""coursekit.sampling against exact reference values, scipy.stats and NumPy's samplers.

Statistical tests use a fixed seed and thresholds chosen so that a correct
sampler passes with overwhelming probability (p > 1e-3, or 5-sigma bounds),
while the usual bugs (a wrong constant, a swapped argument) fail by far.
"""

import numpy as np
import pytest
from scipy import stats

from coursekit import sampling as S

N = 100_000
P_MIN = 1e-3  # a correct sampler fails a KS/chi-square test at this level 0.1% of the time


# ------------------------------------------------------------------------ LCG


def test_parameter_sets():
    assert S.RANDU == {"a": 65539, "c": 0, "m": 2**31}
    assert S.MINSTD == {"a": 16807, "c": 0, "m": 2**31 - 1}
    assert S.NUMERICAL_RECIPES == {"a": 1664525, "c": 1013904223, "m": 2**32}


def test_minstd_reference_value():
    # Park & Miller (1988): from X_0 = 1, X_10000 = 1043618065.
    x = S.lcg_states(10_000, 1, **S.MINSTD)
    assert x[-1] == 1043618065
    assert x[0] == 16807 and x.dtype == np.int64


def test_lcg_matches_python_ints_near_2_32():
    # The largest modulus and states close to it: a * X ~ 2^52, c added; compare with Python ints.
    p = S.NUMERICAL_RECIPES
    seed = 2**32 - 1
    x, ref = seed, []
    for _ in range(1000):
        x = (p["a"] * x + p["c"]) % p["m"]
        ref.append(x)
    assert np.array_equal(S.lcg_states(1000, seed, **p), np.array(ref))
    # Worst case a = m - 1, X = m - 1 (a X close to 2^64): still exact.
    m = 2**32
    assert S.lcg_states(1, m - 1, a=m - 1, c=m - 1, m=m)[0] == ((m - 1) * (m - 1) + m - 1) % m


def test_randu_fifteen_planes_identity():
    # a^2 = 6a - 9 mod 2^31, hence X_{k+2} = 6 X_{k+1} - 9 X_k (mod 2^31) exactly.
    x = S.lcg_states(10_000, 1, **S.RANDU)
    assert np.all((x[2:] - 6 * x[1:-1] + 9 * x[:-2]) % 2**31 == 0)
    # In the unit cube: 9 u_k - 6 u_{k+1} + u_{k+2} is an integer between -5 and 9 (15 planes).
    u = x / 2**31
    k = 9 * u[:-2] - 6 * u[1:-1] + u[2:]
    assert np.allclose(k, np.round(k), atol=1e-9)
    assert set(np.round(k).astype(int)) <= set(range(-5, 10))


def test_lcg_uniforms_and_period():
    u = S.lcg(N, 12345, **S.MINSTD)
    assert u.shape == (N,) and np.all((u > 0) & (u < 1))
    assert stats.kstest(u, "uniform").pvalue > P_MIN
    # A full-period toy LCG (Hull-Dobell: c odd, a = 1 mod 4, m = 2^k) visits every state once.
    x = S.lcg_states(64, 0, a=5, c=3, m=64)
    assert sorted(x) == list(range(64))


def test_lcg_chi_square_uniformity_nr():
    u = S.lcg(N, 42, **S.NUMERICAL_RECIPES)
    counts = np.bincount((u * 100).astype(int), minlength=100)
    assert stats.chisquare(counts).pvalue > P_MIN


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": 1, "a": 5, "c": 0, "m": 2**32 + 1}, "modulus"),
        ({"seed": 1, "a": 5, "c": 0, "m": 0}, "modulus"),
        ({"seed": 1, "a": 0, "c": 0, "m": 8}, "multiplier"),
        ({"seed": 1, "a": 8, "c": 0, "m": 8}, "multiplier"),
        ({"seed": 1, "a": 5, "c": 8, "m": 8}, "increment"),
        ({"seed": 1, "a": 5, "c": -1, "m": 8}, "increment"),
        ({"seed": 8, "a": 5, "c": 1, "m": 8}, "X_0"),
        ({"seed": -1, "a": 5, "c": 1, "m": 8}, "X_0"),
        ({"seed": 0, "a": 5, "c": 0, "m": 8}, "constant"),
        ({"seed": 1.5, "a": 5, "c": 1, "m": 8}, "integer"),
    ],
)
def test_lcg_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.lcg_states(3, **kwargs)


def test_lcg_bad_n():
    with pytest.raises(ValueError, match="n"):
        S.lcg(0, 1, **S.MINSTD)


# ------------------------------------------------------------ Box-Muller, polar


def test_box_muller_is_gaussian_and_independent():
    rng = np.random.default_rng(0)
    u1, u2 = 1.0 - rng.random(N), rng.random(N)
    z1, z2 = S.box_muller(u1, u2)
    for z in (z1, z2):
        assert stats.kstest(z, "norm").pvalue > P_MIN
    # Independence: the correlation of two independent normals has s.d. 1/sqrt(N).
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 5 / np.sqrt(N)
    # Exact inverse: z1^2 + z2^2 = -2 log u1 and atan2 recovers the angle.
    assert np.allclose(z1**2 + z2**2, -2 * np.log(u1), rtol=1e-10, atol=1e-12)
    # The angle wraps around at 2 pi, so compare modulo 2 pi.
    theta = np.mod(np.arctan2(z2, z1), 2 * np.pi)
    diff = np.abs(theta - 2 * np.pi * u2)
    assert np.all((diff < 1e-9) | (np.abs(diff - 2 * np.pi) < 1e-9))


def test_box_muller_edges():
    z1, z2 = S.box_muller([1.0, 1e-300], [0.25, 0.0])
    assert np.all(np.isfinite(z1)) and np.all(np.isfinite(z2))
    assert z1[0] == pytest.approx(0.0) and z2[0] == 0.0
    assert z1[1] == pytest.approx(np.sqrt(600 * np.log(10)))
    with pytest.raises(ValueError, match="u1"):
        S.box_muller([0.0], [0.5])
    with pytest.raises(ValueError, match="u1"):
        S.box_muller([1.5], [0.5])
    with pytest.raises(ValueError, match="u2"):
        S.box_muller([0.5], [-0.1])
    with pytest.raises(ValueError, match="same shape"):
        S.box_muller([0.5, 0.5], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        S.box_muller([np.nan], [0.5])


def test_marsaglia_polar():
    z = S.marsaglia_polar(N, rng=1)
    assert z.shape == (N,)
    assert stats.kstest(z, "norm").pvalue > P_MIN
    assert np.array_equal(z, S.marsaglia_polar(N, rng=1))  # reproducible from a seed
    # Acceptance rate pi/4 within 5 binomial standard deviations.
    v = np.random.default_rng(2).uniform(-1, 1, size=(2, N))
    z1, z2, acc = S.marsaglia_polar_transform(v[0], v[1])
    p = np.pi / 4
    assert abs(acc.mean() - p) < 5 * np.sqrt(p * (1 - p) / N)
    assert z1.shape == z2.shape == (acc.sum(),)
    # A rejected point (outside the disc, or the centre) never produces a value.
    _, _, acc = S.marsaglia_polar_transform([0.0, 0.9, 0.5], [0.0, 0.9, 0.5])
    assert acc.tolist() == [False, False, True]


def test_marsaglia_bad_input():
    with pytest.raises(ValueError, match="n"):
        S.marsaglia_polar(-3)
    with pytest.raises(TypeError, match="rng"):
        S.marsaglia_polar(3, rng="seed")


# ------------------------------------------------------------------ inverse CDF


@pytest.mark.parametrize(
    "ppf, dist",
    [
        (lambda u: -np.log1p(-u), stats.expon),
        (lambda u: np.tan(np.pi * (u - 0.5)), stats.cauchy),
        (stats.gamma(2.5).ppf, stats.gamma(2.5)),
    ],
)
def test_inverse_cdf_sample(ppf, dist):
    x = S.inverse_cdf_sample(ppf, N, rng=3)
    assert stats.kstest(x, dist.cdf).pvalue > P_MIN


def test_inverse_cdf_exact_ppf_matches_scipy():
    u = np.linspace(0.001, 0.999, 999)
    assert np.allclose(-np.log1p(-u), stats.expon.ppf(u), rtol=1e-12)
    assert np.allclose(np.tan(np.pi * (u - 0.5)), stats.cauchy.ppf(u), rtol=1e-9)


def test_inverse_cdf_bad_input():
    with pytest.raises(ValueError, match="callable"):
        S.inverse_cdf_sample(3.0, 10)
    with pytest.raises(ValueError, match="NaN or inf"):
        S.inverse_cdf_sample(lambda u: np.where(u < 0.5, np.inf, u), 100, rng=0)
    with pytest.raises(ValueError, match="shape"):
        S.inverse_cdf_sample(lambda u: u[:2], 10, rng=0)


def test_tabulated_inverse_cdf_unnormalized_mixture():
    # An unnormalized bimodal density; the reference CDF comes from scipy.
    grid = np.linspace(-8, 8, 4001)
    a, b = stats.norm(-2, 0.7), stats.norm(2.5, 1.2)
    density = 5.0 * (0.3 * a.pdf(grid) + 0.7 * b.pdf(grid))
    x = S.tabulated_inverse_cdf(grid, density, N, rng=4)
    assert np.all((x >= -8) & (x <= 8))
    assert stats.kstest(x, lambda t: 0.3 * a.cdf(t) + 0.7 * b.cdf(t)).pvalue > P_MIN
    cdf = S.tabulated_cdf(grid, density)
    assert cdf[0] == 0.0 and cdf[-1] == 1.0 and np.all(np.diff(cdf) >= 0)
    assert np.allclose(cdf, 0.3 * a.cdf(grid) + 0.7 * b.cdf(grid), atol=1e-6)


def test_tabulated_zero_density_region_is_never_sampled():
    grid = np.linspace(0, 3, 301)
    density = np.where((grid > 1) & (grid < 2), 0.0, 1.0)  # a gap in the middle
    x = S.tabulated_inverse_cdf(grid, density, N, rng=5)
    assert np.mean((x > 1.01) & (x < 1.99)) == 0.0


@pytest.mark.parametrize(
    "grid, density, match",
    [
        ([0.0, 1.0, 1.0], [1.0, 1.0, 1.0], "increasing"),
        ([0.0, 1.0, 2.0], [1.0, -1.0, 1.0], "non-negative"),
        ([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], "zero total mass"),
        ([0.0, 1.0, 2.0], [1.0, 1.0], "shape"),
        ([0.0], [1.0], "at least 2"),
        ([0.0, 1.0, 2.0], [1.0, np.inf, 1.0], "NaN or infinite"),
    ],
)
def test_tabulated_bad_input(grid, density, match):
    with pytest.raises(ValueError, match=match):
        S.tabulated_inverse_cdf(grid, density, 10)


# ------------------------------------------------------------------ categorical


def test_sample_categorical_chi_square():
    p = np.array([0.1, 0.0, 0.25, 0.05, 0.6])
    idx = S.sample_categorical(p, N, rng=6)
    counts = np.bincount(idx, minlength=p.size)
    assert counts[1] == 0  # a zero-probability category is never drawn
    keep = p > 0
    assert stats.chisquare(counts[keep], N * p[keep]).pvalue > P_MIN
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < p.size


def test_sample_categorical_uniform_edge():
    # Prefix sums that round below 1 must not produce index K.
    p = np.full(3, 1 / 3)
    idx = S.sample_categorical(p, N, rng=7)
    assert idx.max() <= 2


@pytest.mark.parametrize(
    "probs, match",
    [([0.5, -0.1, 0.6], "non-negative"), ([0.2, 0.2], "sum to 1"),
     ([], "non-empty"), ([[0.5, 0.5]], "dimension"), ([np.nan, 1.0], "NaN")],
)
def test_sample_categorical_bad_input(probs, match):
    with pytest.raises(ValueError, match=match):
        S.sample_categorical(probs, 10)


# ---------------------------------------------------- Markov chain, tree network


def test_markov_chain_transitions_and_marginals():
    init = np.array([0.6, 0.3, 0.1])
    trans = np.array([[0.8, 0.15, 0.05], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    n, length = 20_000, 6
    x = S.sample_markov_chain(init, trans, length, n, rng=8)
    assert x.shape == (n, length)
    # Marginal of X_t is init @ T^(t-1): chi-square test at every step.
    marg = init.copy()
    for t in range(length):
        counts = np.bincount(x[:, t], minlength=3)
        assert stats.chisquare(counts, n * marg).pvalue > P_MIN / length
        marg = marg @ trans
    # Empirical transitions match T, each row within 5 binomial standard deviations.
    pairs = np.zeros((3, 3))
    np.add.at(pairs, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    rows = pairs.sum(axis=1, keepdims=True)
    se = np.sqrt(trans * (1 - trans) / rows)
    assert np.all(np.abs(pairs / rows - trans) <= 5 * se + 1e-12)


def test_markov_chain_bad_input():
    with pytest.raises(ValueError, match=r"transition\[1\]"):
        S.sample_markov_chain([0.5, 0.5], [[0.5, 0.5], [0.7, 0.7]], 3, 10)
    with pytest.raises(ValueError, match="transition"):
        S.sample_markov_chain([0.5, 0.5], [[1.0, 0.0, 0.0]], 3, 10)
    with pytest.raises(ValueError, match="init"):
        S.sample_markov_chain([0.5, 0.6], [[1.0, 0.0], [0.0, 1.0]], 3, 10)


TREE_PARENTS = [-1, 0, 0, 1, 3]  # 0 -> {1, 2}, 1 -> 3 -> 4
TREE_CPTS = [
    [0.3, 0.7],
    [[0.9, 0.1], [0.2, 0.8]],
    [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]],
    [[0.6, 0.4], [0.3, 0.7]],
    [[0.95, 0.05], [0.25, 0.75]],
]


def test_tree_bn_marginals_and_joint():
    n = 50_000
    x = S.sample_tree_bn(TREE_PARENTS, TREE_CPTS, n, rng=9)
    marg = S.tree_bn_marginals(TREE_PARENTS, TREE_CPTS)
    for i, m in enumerate(marg):
        assert np.isclose(m.sum(), 1.0)
        counts = np.bincount(x[:, i], minlength=m.size)
        assert stats.chisquare(counts, n * m).pvalue > P_MIN / len(marg)
    # Exact joint of (X0, X1, X3) by enumeration vs the empirical joint.
    c0, c1, c3 = (np.asarray(TREE_CPTS[i]) for i in (0, 1, 3))
    joint = c0[:, None, None] * c1[:, :, None] * c3[None, :, :]
    counts = np.zeros_like(joint)
    np.add.at(counts, (x[:, 0], x[:, 1], x[:, 3]), 1)
    assert stats.chisquare(counts.ravel(), n * joint.ravel()).pvalue > P_MIN


def test_topological_order_and_bad_trees():
    order = S.topological_order([2, -1, 1])
    assert order.index(1) < order.index(2) < order.index(0)
    with pytest.raises(ValueError, match="cycle"):
        S.topological_order([1, 0])
    with pytest.raises(ValueError, match="parents"):
        S.topological_order([-1, 5])
    with pytest.raises(ValueError, match="one table per node"):
        S.sample_tree_bn([-1, 0], [[0.5, 0.5]], 10)
    with pytest.raises(ValueError, match="rows"):
        S.sample_tree_bn([-1, 0], [[0.5, 0.5], [[0.5, 0.5]]], 10)


# -------------------------------------------------------------- Gaussians


MEAN = np.array([1.0, -2.0, 0.5])
COV = np.array([[2.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 0.5]])


def test_sample_mvn_moments_and_numpy_agreement():
    x = S.sample_mvn(MEAN, COV, N, rng=10)
    assert x.shape == (N, 3)
    # Mean: each coordinate within 5 standard errors.
    assert np.all(np.abs(x.mean(0) - MEAN) < 5 * np.sqrt(np.diag(COV) / N))
    # Covariance: Var(x_i x_j) ~ S_ii S_jj + S_ij^2, s.e. of each entry ~ sqrt(that / N).
    se = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV**2) / N)
    assert np.all(np.abs(np.cov(x, rowvar=False) - COV) < 5 * se)
    # Same law as NumPy's multivariate_normal: two-sample KS on random projections.
    y = np.random.default_rng(11).multivariate_normal(MEAN, COV, size=N)
    for w in np.random.default_rng(12).standard_normal((5, 3)):
        assert stats.ks_2samp(x @ w, y @ w).pvalue > P_MIN / 5
    # Every 1-D projection w^T x is N(w^T mu, w^T Sigma w): exact KS against scipy.
    w = np.array([0.3, -1.0, 2.0])
    assert stats.kstest(x @ w, stats.norm(w @ MEAN, np.sqrt(w @ COV @ w)).cdf).pvalue > P_MIN


def test_sample_mvn_is_cholesky_affine_map():
    x = S.sample_mvn(MEAN, COV, 7, rng=13)
    z = np.random.default_rng(13).standard_normal((7, 3))
    assert np.allclose(x, MEAN + z @ np.linalg.cholesky(COV).T, rtol=1e-12)


def test_mvn_log_prob_matches_scipy():
    x = np.random.default_rng(14).normal(size=(50, 3)) * 3
    ref = stats.multivariate_normal(MEAN, COV).logpdf(x)
    assert np.allclose(S.mvn_log_prob(x, MEAN, COV), ref, rtol=1e-10, atol=1e-10)
    assert np.isclose(S.mvn_log_prob(x[0], MEAN, COV), ref[0], rtol=1e-10)
    # Far in the tail the log-density stays finite (no exp underflow to log 0).
    assert np.isfinite(S.mvn_log_prob(np.full(3, 1e3), MEAN, COV))


@pytest.mark.parametrize(
    "mean, cov, match",
    [
        (MEAN, COV[:2, :2], "match mean"),
        (MEAN, COV + np.triu(np.ones((3, 3)), 1), "not symmetric"),
        (MEAN[:2], [[1.0, 2.0], [2.0, 1.0]], "not positive definite"),
        (MEAN[:2], [[1.0, 0.0], [0.0, np.nan]], "NaN"),
        ([np.nan, 0.0], np.eye(2), "NaN"),
        ([], np.eye(0), "non-empty"),
    ],
)
def test_mvn_bad_input(mean, cov, match):
    with pytest.raises(ValueError, match=match):
        S.sample_mvn(mean, cov, 10)


def test_mvn_log_prob_bad_x():
    with pytest.raises(ValueError, match="columns"):
        S.mvn_log_prob(np.zeros((4, 2)), MEAN, COV)
