"""coursekit.metrics, second edition of Lecture 4: cell-wise memorisation (C_T) and KID.

Each against an independent reference: scipy's Mann-Whitney test, scikit-learn's nearest
neighbours, a direct O(n^2) MMD formula, and statistical identities with 4-5 s.e. margins.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from coursekit import metrics

# ---------------------------------------------------------------- C_T (Meehan et al. 2020)


def _digit_splits():
    """Training digits, and the course's test digits cut in two: test set, held-out set."""
    from coursekit.data import load_digits

    train = load_digits("train")[0].reshape(-1, 64).numpy().astype(float)
    test_all = load_digits("test")[0].reshape(-1, 64).numpy().astype(float)
    perm = np.random.default_rng(30).permutation(len(test_all))
    return train, test_all[perm[:180]], test_all[perm[180:]]


def _mixture(n, rng, dim=5):
    """Two Gaussian clusters at -3 and +3 (first coordinate), equal weights."""
    x = rng.standard_normal((n, dim))
    x[:, 0] += np.where(rng.random(n) < 0.5, -3.0, 3.0)
    return x


def test_ct_flags_noisy_training_digits_and_not_held_out_ones():
    train, test, held_out = _digit_splits()
    rng = np.random.default_rng(31)
    # a generator returning real digits it never trained on is not copying: C_T ~ N(0, <= 1)
    honest = metrics.memorisation_ct(train, test, held_out, n_cells=3, rng=0)
    assert abs(honest.statistic) < 4.0  # 4 standard deviations under H0
    # training digits with small noise (0.02 against nearest-neighbour distances ~ 1)
    copies = train[rng.integers(0, len(train), 300)] + 0.02 * rng.standard_normal((300, 64))
    copied = metrics.memorisation_ct(train, test, copies, n_cells=3, rng=0)
    assert copied.statistic < -5.0  # Meehan et al.'s threshold is -3
    assert np.all(copied.cell_z[copied.kept] < -3.0)  # in every cell, not on average
    np.testing.assert_allclose(honest.cell_weight.sum(), 1.0)
    assert honest.n_test.sum() == 180 and honest.n_generated.sum() == 180


def test_ct_of_fresh_samples_from_the_training_law_is_small():
    rng = np.random.default_rng(32)
    train, test, fresh = _mixture(1500, rng), _mixture(500, rng), _mixture(500, rng)
    out = metrics.memorisation_ct(train, test, fresh, n_cells=4, rng=0)
    assert out.kept.all() and abs(out.statistic) < 4.0


def test_ct_cell_z_matches_scipy_mann_whitney_on_cell_neighbours():
    # Recompute every cell from scratch: cells of the returned centres, nearest training
    # point of the same cell by scikit-learn, Z_U from scipy's asymptotic p-value (no ties,
    # no continuity correction: z = Phi^-1(p)), C_T as the test-weighted mean.
    rng = np.random.default_rng(33)
    train, test = _mixture(800, rng), _mixture(300, rng)
    gen = np.concatenate([train[:150] + 0.05 * rng.standard_normal((150, 5)),
                          _mixture(150, rng)])  # half copies, half fresh
    out = metrics.memorisation_ct(train, test, gen, n_cells=4, min_generated=30, rng=1)
    cell = {name: cdist(x, out.centres, "sqeuclidean").argmin(1)
            for name, x in (("train", train), ("test", test), ("gen", gen))}
    z_ref = np.zeros(4)
    for c in range(4):
        nn = NearestNeighbors(n_neighbors=1).fit(train[cell["train"] == c])
        d_gen = nn.kneighbors(gen[cell["gen"] == c])[0][:, 0]
        d_test = nn.kneighbors(test[cell["test"] == c])[0][:, 0]
        res = stats.mannwhitneyu(d_gen, d_test, alternative="less", method="asymptotic",
                                 use_continuity=False)
        z_ref[c] = stats.norm.ppf(res.pvalue)
        assert out.n_generated[c] == d_gen.size and out.n_test[c] == d_test.size
    np.testing.assert_allclose(out.cell_z, z_ref, rtol=1e-8)
    weight = np.bincount(cell["test"], minlength=4) / len(test)
    kept = np.bincount(cell["gen"], minlength=4) >= 30
    np.testing.assert_array_equal(out.kept, kept)
    assert out.statistic == pytest.approx(weight[kept] @ z_ref[kept] / weight[kept].sum(),
                                          rel=1e-8)
    assert out.statistic < -3.0  # half of the samples are copies


def test_ct_cells_show_copying_that_underfitting_elsewhere_hides():
    # Copies of training points in the left cluster, too-spread samples in the right one:
    # the global Z_U and even the weighted C_T average them away; the cells' Z_U do not.
    rng = np.random.default_rng(34)
    train, test = _mixture(1000, rng, dim=2), _mixture(400, rng, dim=2)
    left = train[train[:, 0] < 0][:100] + 0.01 * rng.standard_normal((100, 2))
    right = 2.0 * rng.standard_normal((200, 2)) + [3.0, 0.0]
    gen = np.concatenate([left, right])
    out = metrics.memorisation_ct(train, test, gen, n_cells=2, rng=0)
    left_cell = int(np.argmin(out.centres[:, 0]))
    assert out.cell_z[left_cell] < -5.0 < 5.0 < out.cell_z[1 - left_cell]
    assert abs(metrics.nearest_neighbour_memorisation(gen, train, test).z) < 3.0
    assert abs(out.statistic) < 3.0  # the documented limit of an average


def test_ct_bad_input():
    rng = np.random.default_rng(35)
    train, test, gen = _mixture(100, rng), _mixture(40, rng), _mixture(40, rng)
    with pytest.raises(ValueError, match="n_cells"):
        metrics.memorisation_ct(train, test, gen, n_cells=101)
    with pytest.raises(ValueError, match="n_cells.*no test points"):
        metrics.memorisation_ct(train, test[:2], gen, n_cells=8, rng=0)
    with pytest.raises(ValueError, match="min_generated"):
        metrics.memorisation_ct(train, test, gen, n_cells=2, min_generated=41, rng=0)
    with pytest.raises(ValueError, match="generated.*features per row"):
        metrics.memorisation_ct(train, test, gen[:, :3])
    with pytest.raises(ValueError, match="min_generated"):
        metrics.memorisation_ct(train, test, gen, min_generated=0)


# ---------------------------------------------------------------- KID (Binkowski et al. 2018)


def _mmd2_by_pairs(x, y):
    """The U-statistic written pair by pair: k(a, b) = (a.b / d + 1)^3, i != j within sets."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    within_x = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    between = sum(k(a, b) for a in x for b in y)
    return within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2 * between / (m * n)


def test_mmd2_unbiased_matches_the_pairwise_formula():
    rng = np.random.default_rng(40)
    x, y = rng.standard_normal((30, 3)), 0.8 * rng.standard_normal((25, 3)) + 0.3
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_pairs(x, y), rel=1e-12)
    # symmetric in its two arguments
    assert metrics.mmd2_unbiased(y, x) == pytest.approx(metrics.mmd2_unbiased(x, y), rel=1e-12)


def test_mmd2_unbiased_has_expectation_zero_for_one_law():
    # 400 independent pairs of samples of N(0, I_4) (n = 20): the mean estimate is within
    # 4 standard errors of 0; the biased V-statistic (diagonal kept) is > 0 by far more.
    rng = np.random.default_rng(41)
    values = np.array([metrics.mmd2_unbiased(rng.standard_normal((20, 4)),
                                             rng.standard_normal((20, 4))) for _ in range(400)])
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean()) < 4 * se
    assert (values < 0).mean() > 0.2  # an unbiased estimate of 0 is often negative


def test_kid_on_whole_sets_is_the_unbiased_mmd_and_separates_laws():
    rng = np.random.default_rng(42)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((50, 5)) + 0.5
    # subsets of the whole smaller set: every subset of y is y itself (permuted)
    whole = metrics.kid(x[:50], y, n_subsets=5, subset_size=50, rng=0)
    assert whole[0] == pytest.approx(metrics.mmd2_unbiased(x[:50], y), rel=1e-12)
    assert whole[1] < 1e-12
    # seeded, and a shifted law is far above 0 relative to the spread of the subsets
    assert metrics.kid(x, y, n_subsets=20, subset_size=30, rng=3) == metrics.kid(
        x, y, n_subsets=20, subset_size=30, rng=3)
    mean, std = metrics.kid(x, y, n_subsets=50, subset_size=40, rng=1)
    assert mean > 3 * std > 0
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(x, y, subset_size=51)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(x, y, subset_size=1)
    with pytest.raises(ValueError, match="n_subsets"):
        metrics.kid(x, y, n_subsets=0)
    with pytest.raises(ValueError, match="fake_features.*features per row"):
        metrics.kid(x, y[:, :2])
    with pytest.raises(ValueError, match="y"):
        metrics.mmd2_unbiased(x, y[:1])


# ---------------------------------------------------------------- Inception Score splits


def test_inception_score_splits_are_consecutive_chunks_with_their_own_marginal():
    # One-hot rows of classes [0, 0, 0, 1, 1, 1, 2, 2, 2, 3] in 3 splits: the chunks are rows
    # 0:3, 3:6, 6:10 (i n // splits); the first two hold one class (IS = 1), the last has
    # p(y) = (3/4, 1/4) on classes 2, 3: IS = exp((3 log(4/3) + log 4) / 4).
    # Catches: a global p(y), strided or np.array_split chunks (sizes 4, 3, 3), a dropped
    # remainder row, ddof = 1, or exp of the mean log-score across splits.
    probs = np.eye(4)[[0, 0, 0, 1, 1, 1, 2, 2, 2, 3]]
    last = np.exp((3 * np.log(4 / 3) + np.log(4)) / 4)
    mean, std = metrics.inception_score(probs, splits=3)
    assert mean == pytest.approx((1 + 1 + last) / 3, rel=1e-12)
    assert std == pytest.approx(np.std([1.0, 1.0, last]), rel=1e-12)
    # the split size changes the score itself: two halves of two classes
    halves = np.eye(2)[[0] * 50 + [1] * 50]
    assert metrics.inception_score(halves, splits=1) == (pytest.approx(2.0, rel=1e-12), 0.0)
    assert metrics.inception_score(halves, splits=2)[0] == pytest.approx(1.0, rel=1e-12)


def test_inception_score_split_std_is_the_spread_at_n_over_splits():
    # IS of many independent sets of 50 rows has a spread sigma_50; the split std of one set
    # of 500 rows in 10 splits estimates it (not sigma_50 / sqrt(10)).  Averaged over 200
    # repeats, the mean split std (ddof = 0: times sqrt(9/10) in expectation, roughly) is
    # within 15 % of sigma_50 and far above sigma_50 / sqrt(10).
    rng = np.random.default_rng(43)

    def draw(n):
        return rng.dirichlet(np.full(10, 0.3), size=n)

    sigma_50 = np.std([metrics.inception_score(draw(50), splits=1)[0] for _ in range(2000)],
                      ddof=1)
    split_std = np.mean([metrics.inception_score(draw(500), splits=10)[1] for _ in range(200)])
    assert 0.8 * sigma_50 < split_std < 1.1 * sigma_50
    assert split_std > 2 * sigma_50 / np.sqrt(10)
