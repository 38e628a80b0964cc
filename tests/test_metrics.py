"""coursekit.metrics against the prdc package, scipy, scikit-learn and closed forms."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import scipy.linalg
import torch
from prdc import compute_prdc
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from coursekit import metrics


def _reference_prdc(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints the set sizes
        out = compute_prdc(real, fake, nearest_k=k)
    return {key: float(v) for key, v in out.items()}


def _assert_same(ours, ref, tol=1e-10):
    assert set(ours) == {"precision", "recall", "density", "coverage"}
    for key in ours:
        assert abs(ours[key] - ref[key]) <= tol, (key, ours[key], ref[key])


# ---------------------------------------------------------------- prdc


@pytest.mark.parametrize("k", [1, 3, 5, 10])
@pytest.mark.parametrize("shape", [(400, 300, 8), (250, 500, 32), (60, 60, 2)])
def test_prdc_equals_the_package(k, shape):
    n, m, d = shape
    rng = np.random.default_rng(k + n)
    real = rng.standard_normal((n, d))
    fake = 1.3 * rng.standard_normal((m, d)) + 0.4
    _assert_same(metrics.prdc(real, fake, nearest_k=k), _reference_prdc(real, fake, k))


def test_prdc_blocking_does_not_change_the_result():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((301, 5)), rng.standard_normal((257, 5)) + 0.5
    whole = metrics.prdc(real, fake, 3, block_size=10_000)
    for block in (1, 7, 64):
        assert metrics.prdc(real, fake, 3, block_size=block) == whole
    _assert_same(whole, _reference_prdc(real, fake, 3))


def _tied_features():
    """Quantised features where equal distances are the rule: rounded Gaussians (d = 4) and
    raw 8x8 digits (17 grey levels 0..16, d = 64)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(20)
    rounded = (np.rint(2 * rng.standard_normal((500, 4))),
               np.rint(2 * rng.standard_normal((400, 4)) + 0.3))
    pixels = load_digits().data  # (1797, 64) integers 0..16
    return {"rounded": rounded, "digits": (pixels[:900], pixels[900:])}


TIED = _tied_features()


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("block_size", [1, 7, 64, None])
@pytest.mark.parametrize("data", ["rounded", "digits"])
def test_prdc_equals_the_package_on_tied_features(data, block_size, shift):
    # On integer (or half-integer) features the package's sklearn distances are exact, so it
    # is the exact answer; a rounding that depends on the block flips the strict "<" at ties.
    real, fake = (a + shift for a in TIED[data])
    ours = metrics.prdc(real, fake, 5, block_size=block_size)
    _assert_same(ours, _reference_prdc(real, fake, 5), tol=1e-12)


@pytest.mark.parametrize("block_size", [1, 64, None])
@pytest.mark.parametrize("data", ["rounded", "digits"])
def test_prdc_tie_refinement_without_the_exact_shortcut(monkeypatch, data, block_size):
    # The general path (rounding bound + direct recomputation near the radii) must settle
    # the same ties exactly; disable the integer shortcut to exercise it on the same data.
    monkeypatch.setattr(metrics, "_products_exact", lambda shifted: False)
    real, fake = (a + 0.5 for a in TIED[data])
    _assert_same(metrics.prdc(real, fake, 5, block_size=block_size),
                 _reference_prdc(real, fake, 5), tol=1e-12)
    assert not metrics._centred(real, fake)[0].exact  # the shortcut really is off


def _exact_sq_distances(a, b=None):
    """(n, m) exact squared distances of integer features, in int64 arithmetic."""
    a = a.astype(np.int64)
    b = a if b is None else b.astype(np.int64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _exact_pairwise_distance(a, b=None):
    return np.sqrt(_exact_sq_distances(a, b).astype(float))


@pytest.mark.parametrize("block_size", [1, 64, None])
def test_prdc_is_exact_where_the_matrix_product_rounds(monkeypatch, block_size):
    # Two clusters of integer points at +-2^26: the product's terms (~2^56) round by units,
    # more than the within-cluster distances (~10), while each difference a_k - b_k is exact.
    # Reference: the package's own logic fed with exact integer distances.
    import prdc.prdc as package

    rng = np.random.default_rng(22)

    def clusters(n):
        x = np.rint(2 * rng.standard_normal((n, 4)))
        x[: n // 2] += 2.0**26
        x[n // 2:] -= 2.0**26
        return x

    real, fake = clusters(300), clusters(260)
    assert not metrics._centred(real, fake)[0].exact
    monkeypatch.setattr(package, "compute_pairwise_distance", _exact_pairwise_distance)
    ref = _reference_prdc(real, fake, 5)
    _assert_same(metrics.prdc(real, fake, 5, block_size=block_size), ref, tol=1e-12)
    exact_r2 = np.sort(_exact_sq_distances(real), axis=1)[:, 5]  # the own 0 comes first
    np.testing.assert_array_equal(metrics.kth_neighbour_sq_distances(real, 5), exact_r2)


def test_distances_do_not_depend_on_the_blocking():
    # Features on a decimal grid (0.1 is not a binary fraction: the integer shortcut does not
    # apply): every radius and nearest distance is bit-identical across block sizes.
    rng = np.random.default_rng(21)
    x = np.round(rng.standard_normal((300, 6)), 1) + 1e3
    y = np.round(rng.standard_normal((200, 6)), 1) + 1e3
    assert not metrics._centred(x, y)[0].exact
    radii = {b: metrics.kth_neighbour_sq_distances(x, 3, block_size=b) for b in (1, 7, 64, None)}
    near = {b: metrics.nearest_neighbour_distances(y, x, block_size=b) for b in (1, 7, 64, None)}
    scores = {b: metrics.prdc(x, y, 3, block_size=b) for b in (1, 7, 64, None)}
    for b in (1, 7, 64):
        np.testing.assert_array_equal(radii[b], radii[None])
        np.testing.assert_array_equal(near[b], near[None])
        assert scores[b] == scores[None]
    dist, _ = NearestNeighbors(n_neighbors=4).fit(x).kneighbors(x)  # includes itself
    np.testing.assert_allclose(np.sqrt(radii[None]), dist[:, 3], rtol=1e-9)


def test_prdc_far_from_the_origin_and_float32_input():
    # The ||a||^2 + ||b||^2 - 2ab expansion cancels far from the origin; centring fixes it.
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((300, 4)), rng.standard_normal((300, 4)) + 0.3
    ref = _reference_prdc(real, fake, 5)
    _assert_same(metrics.prdc(real + 1e6, fake + 1e6, 5), ref)
    _assert_same(metrics.prdc(torch.tensor(real), torch.tensor(fake), 5), ref)


def test_prdc_identical_sets_and_duplicates():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((200, 6))
    # a set against itself: every score is 1 (density: each ball holds k points strictly)
    ours = metrics.prdc(real, real.copy(), 5)
    _assert_same(ours, {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    _assert_same(ours, _reference_prdc(real, real.copy(), 5))
    # fake = real with some points repeated: duplicates count as neighbours at distance 0
    fake = np.concatenate([real[:50], real[:50], rng.standard_normal((100, 6))])
    _assert_same(metrics.prdc(real, fake, 3), _reference_prdc(real, fake, 3))


def test_prdc_scores_are_in_range_and_recall_sees_mode_dropping():
    rng = np.random.default_rng(4)
    real = np.concatenate([rng.standard_normal((300, 2)) - 4, rng.standard_normal((300, 2)) + 4])
    fake = rng.standard_normal((300, 2)) + 4  # one mode only: precise, half the recall
    out = metrics.prdc(real, fake, 5)
    assert out["precision"] > 0.9 and 0.4 < out["recall"] < 0.6 and 0.4 < out["coverage"] < 0.6
    for key in ("precision", "recall", "coverage"):
        assert 0.0 <= out[key] <= 1.0


def test_prdc_bad_input():
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((10, 3)), rng.standard_normal((12, 3))
    with pytest.raises(ValueError, match="nearest_k"):
        metrics.prdc(real, fake, nearest_k=10)  # k >= n real
    with pytest.raises(ValueError, match="nearest_k"):
        metrics.prdc(real, fake[:4], nearest_k=5)  # k >= n fake
    with pytest.raises(ValueError, match="nearest_k"):
        metrics.prdc(real, fake, nearest_k=0)
    bad = real.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="real_features.*NaN"):
        metrics.prdc(bad, fake, 3)
    with pytest.raises(ValueError, match="fake_features.*features per row"):
        metrics.prdc(real, fake[:, :2], 3)
    with pytest.raises(ValueError, match="real_features.*dimension"):
        metrics.prdc(real[:, 0], fake, 3)


def test_kth_neighbour_and_nearest_distances_match_scikit_learn():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((200, 5)), rng.standard_normal((150, 5))
    for k in (1, 4):
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)  # includes itself
        np.testing.assert_allclose(np.sqrt(metrics.kth_neighbour_sq_distances(x, k, block_size=33)),
                                   dist[:, k], rtol=1e-9)
    dist, _ = NearestNeighbors(n_neighbors=1).fit(y).kneighbors(x)
    np.testing.assert_allclose(metrics.nearest_neighbour_distances(x, y, block_size=17),
                               dist[:, 0], rtol=1e-9)
    with pytest.raises(ValueError, match="k < n"):
        metrics.kth_neighbour_sq_distances(x[:3], 3)


# ---------------------------------------------------------------- Frechet distance, FID


def _random_spd(d, rng, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d + (0.0 if rank else 0.1 * np.eye(d))


def _scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_equal_covariances_is_squared_mean_distance():
    rng = np.random.default_rng(7)
    s = _random_spd(6, rng)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    assert metrics.frechet_distance(mu1, s, mu2, s) == pytest.approx(
        float(((mu1 - mu2) ** 2).sum()), rel=1e-10, abs=1e-10)


def test_frechet_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    got = metrics.frechet_distance([1.0], [[4.0]], [-0.5], [[0.25]])
    assert got == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, rel=1e-12)


@pytest.mark.parametrize("d", [2, 10, 40])
def test_frechet_matches_scipy_sqrtm_and_is_symmetric(d):
    rng = np.random.default_rng(d)
    s1, s2 = _random_spd(d, rng), _random_spd(d, rng)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)
    assert ours == pytest.approx(metrics.frechet_distance(mu2, s2, mu1, s1), rel=1e-10)
    assert ours >= 0
    # same Gaussian twice: 0 (not a small negative number)
    assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_singular_covariances_stay_real_and_non_negative():
    rng = np.random.default_rng(8)
    s1, s2 = _random_spd(20, rng, rank=3), _random_spd(20, rng, rank=5)
    mu = np.zeros(20)
    value = metrics.frechet_distance(mu, s1, mu, s2)
    assert np.isfinite(value) and value >= 0
    assert metrics.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    # the eigendecomposition root against scipy's Schur root on a well-conditioned matrix
    s = _random_spd(8, rng)
    np.testing.assert_allclose(metrics.sqrtm_psd(s), np.real(scipy.linalg.sqrtm(s)), atol=1e-10)
    r = metrics.sqrtm_psd(s1)
    np.testing.assert_allclose(r @ r, s1, atol=1e-10)


@pytest.mark.parametrize("d, r", [(32, 4), (64, 3), (16, 15)])
def test_frechet_low_rank_equals_the_nuclear_norm_formula(d, r):
    # S1 = A A^T, S2 = B B^T: tr (S1 S2)^{1/2} = sum of singular values of A^T B (exact route);
    # scipy.linalg.sqrtm of the singular product is off by ~1e-6 here.
    rng = np.random.default_rng(d + r)
    a, b = rng.standard_normal((d, r)) / 2, rng.standard_normal((d, r)) / 2
    s1, s2 = a @ a.T, b @ b.T
    exact = np.trace(s1) + np.trace(s2) - 2 * np.linalg.svd(a.T @ b, compute_uv=False).sum()
    zero = np.zeros(d)
    assert metrics.frechet_distance(zero, s1, zero, s2) == pytest.approx(exact, abs=1e-10)
    assert 0.0 <= metrics.frechet_distance(zero, s1, zero, s1) < 1e-10


def test_frechet_bad_input():
    s = np.eye(3)
    with pytest.raises(ValueError, match="sigma2.*symmetric"):
        metrics.frechet_distance(np.zeros(3), s, np.zeros(3), np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="sigma1.*positive semi-definite"):
        metrics.frechet_distance(np.zeros(3), -s, np.zeros(3), s)
    with pytest.raises(ValueError, match="sigma1.*shape"):
        metrics.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), s)
    with pytest.raises(ValueError, match="mu2"):
        metrics.frechet_distance(np.zeros(3), s, np.zeros(2), np.eye(2))


def test_fid_uses_unbiased_covariance_and_refuses_n_le_d():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((50, 4)), 2.0 * rng.standard_normal((80, 4)) + 1
    expected = _scipy_frechet(a.mean(0), np.cov(a.T, ddof=1), b.mean(0), np.cov(b.T, ddof=1))
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-8)
    assert metrics.fid(a, a.copy()) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"features_b.*n = 4 <= d = 4"):
        metrics.fid(a, b[:4])
    nan = a.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="features_a.*NaN"):
        metrics.fid(nan, b)


def test_fid_bias_shrinks_with_n():
    # Two samples of the same law: FID > 0, falling roughly like 1/n.
    rng = np.random.default_rng(10)
    small = np.mean([metrics.fid(rng.standard_normal((50, 5)), rng.standard_normal((50, 5)))
                     for _ in range(20)])
    large = np.mean([metrics.fid(rng.standard_normal((800, 5)), rng.standard_normal((800, 5)))
                     for _ in range(20)])
    assert small > 5 * large > 0


# ---------------------------------------------------------------- Inception Score


def _reference_is(p, splits):
    """Salimans et al.'s loop, with scipy's entropy for the KL."""
    n, scores = len(p), []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0)
        scores.append(np.exp(np.mean([stats.entropy(row, py) for row in part])))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_the_reference_loop():
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.full(10, 0.3), size=1003)  # n not divisible by splits
    mean, std = metrics.inception_score(p, splits=7)
    ref_mean, ref_std = _reference_is(p, 7)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-10)
    assert 1.0 <= mean <= 10.0
    assert metrics.inception_score(p, splits=1)[1] == 0.0  # one split: population std is 0


def test_inception_score_extremes():
    c = 10
    onehot = np.eye(c)[np.arange(500) % c]  # confident and balanced: IS = C
    assert metrics.inception_score(onehot, splits=5)[0] == pytest.approx(c, rel=1e-12)
    same = np.tile(np.eye(c)[3], (500, 1))  # always the same class: IS = 1
    assert metrics.inception_score(same, splits=5)[0] == pytest.approx(1.0, rel=1e-12)
    uniform = np.full((500, c), 1.0 / c)  # no confidence: IS = 1
    assert metrics.inception_score(uniform, splits=5)[0] == pytest.approx(1.0, rel=1e-12)


def test_inception_score_dtype_tolerance_and_bad_input():
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0))
    p32 = torch.softmax(logits, 1)  # float32 rows sum to 1 only within ~1e-7
    mean32, _ = metrics.inception_score(p32)
    mean64, _ = metrics.inception_score(torch.softmax(logits.double(), 1))
    assert mean32 == pytest.approx(mean64, rel=1e-5)
    with pytest.raises(ValueError, match="probs.*not logits"):
        metrics.inception_score(logits)  # logits, not probabilities
    with pytest.raises(ValueError, match=r"probs.*row \d+ sums to"):
        metrics.inception_score(logits.exp())  # unnormalised
    with pytest.raises(ValueError, match="probs.*sum to 1"):
        metrics.inception_score(np.full((20, 4), 0.25 + 1e-6))  # float64: tight tolerance
    with pytest.raises(ValueError, match="non-negative"):
        metrics.inception_score(np.array([[1.5, -0.5]] * 20))
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(np.full((5, 2), 0.5), splits=10)
    with pytest.raises(ValueError, match="NaN"):
        metrics.inception_score(np.full((5, 2), np.nan), splits=1)


# ---------------------------------------------------------------- PRD curves


def test_prd_identical_histograms_reach_one_one_at_lambda_one():
    rng = np.random.default_rng(12)
    p = rng.dirichlet(np.ones(20))
    precision, recall = metrics.prd_from_histograms(p, p, num_angles=1001)
    mid = 500  # angle pi/4: lambda = 1
    assert precision[mid] == pytest.approx(1.0, abs=1e-9) and recall[mid] == pytest.approx(1.0, abs=1e-9)
    assert np.all(precision <= 1) and np.all(recall <= 1)


def test_prd_matches_the_definition():
    # Sajjadi et al., Definition 1: (alpha, beta) is in PRD(Q, P) iff there is a law mu with
    # P = beta mu + (1 - beta) nu_P and Q = alpha mu + (1 - alpha) nu_Q.  For the frontier
    # point at slope lambda, mu = min(lambda P, Q) / alpha works: nu_P and nu_Q are laws.
    rng = np.random.default_rng(13)
    p, q = rng.dirichlet(np.ones(15)), rng.dirichlet(np.ones(15) * 0.5)
    precision, recall = metrics.prd_from_histograms(p, q, num_angles=51)
    slopes = np.tan(np.linspace(1e-10, np.pi / 2 - 1e-10, 51))
    for lam, a, b in zip(slopes[1:-1], precision[1:-1], recall[1:-1], strict=True):
        mu = np.minimum(lam * p, q) / a
        assert mu.sum() == pytest.approx(1.0)
        assert np.all(p - b * mu >= -1e-12) and np.all(q - a * mu >= -1e-12)
    # disjoint supports: precision and recall vanish
    pr, rc = metrics.prd_from_histograms([1, 1, 0, 0], [0, 0, 1, 1])
    assert pr.max() == 0 and rc.max() == 0


def test_prd_from_histograms_keeps_sajjadi_reference_values():
    # the curve now comes from quality_diversity.prd_alpha_beta (one home); its values must
    # stay those of Sajjadi et al.'s reference code: alpha = sum min(lambda p, q) at
    # lambda = tan(linspace(eps, pi/2 - eps)), beta = alpha / lambda, both clipped to [0, 1]
    rng = np.random.default_rng(15)
    cases = [(rng.dirichlet(np.ones(30)), rng.dirichlet(np.full(30, 0.2))),
             (np.array([3.0, 0, 1, 0]), np.array([0.0, 2, 1, 5])),  # zeros, unnormalised
             (np.ones(7), np.ones(7))]
    for hp, hq in cases:
        p, q = hp / hp.sum(), hq / hq.sum()
        for num_angles, eps in ((1001, 1e-10), (17, 1e-3)):
            slopes = np.tan(np.linspace(eps, np.pi / 2 - eps, num_angles))
            ref_a = np.minimum(p[None, :] * slopes[:, None], q[None, :]).sum(1)
            ref_b = ref_a / slopes
            prec, rec = metrics.prd_from_histograms(hp, hq, num_angles, epsilon=eps)
            np.testing.assert_allclose(prec, np.clip(ref_a, 0, 1), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(rec, np.clip(ref_b, 0, 1), rtol=1e-12, atol=1e-15)


def test_prd_curve_on_features_and_f_beta():
    rng = np.random.default_rng(14)
    real = np.concatenate([rng.standard_normal((200, 2)) - 5, rng.standard_normal((200, 2)) + 5])
    same = np.concatenate([rng.standard_normal((200, 2)) - 5, rng.standard_normal((200, 2)) + 5])
    half = rng.standard_normal((400, 2)) + 5  # drops a mode
    p_same, r_same = metrics.prd_curve(real, same, num_clusters=10, num_runs=3, rng=0)
    p_half, r_half = metrics.prd_curve(real, half, num_clusters=10, num_runs=3, rng=0)
    f8_same, f18_same = metrics.prd_f_beta(p_same, r_same)
    f8_half, f18_half = metrics.prd_f_beta(p_half, r_half)
    assert f8_same > 0.9 and f18_same > 0.9
    assert f8_half < 0.6 < 0.9 < f18_half  # low recall, high precision
    with pytest.raises(ValueError, match="num_clusters"):
        metrics.prd_curve(real[:3], same[:3], num_clusters=10)


# ---------------------------------------------------------------- memorisation


def test_memorisation_test_catches_replayed_training_points():
    rng = np.random.default_rng(15)
    train, test = rng.standard_normal((500, 4)), rng.standard_normal((300, 4))
    fresh = rng.standard_normal((300, 4))
    replay = train[rng.integers(0, 500, size=300)] + 1e-3 * rng.standard_normal((300, 4))
    honest = metrics.nearest_neighbour_memorisation(fresh, train, test)
    copied = metrics.nearest_neighbour_memorisation(replay, train, test)
    assert honest.p_value > 0.01 and abs(honest.z) < 3 and 0.8 < honest.ratio < 1.25
    assert copied.p_value < 1e-20 and copied.z < -10 and copied.ratio < 0.01
    exact = metrics.nearest_neighbour_memorisation(train[:100], train, test)
    assert exact.copied_fraction == 1.0 and honest.copied_fraction == 0.0
    # scipy's U and the z of the normal approximation agree in sign and size
    ref = stats.mannwhitneyu(copied.generated_distances, copied.test_distances, alternative="less")
    assert copied.statistic == ref.statistic
    with pytest.raises(ValueError, match="test.*features per row"):
        metrics.nearest_neighbour_memorisation(fresh, train, test[:, :2])


# ---------------------------------------------------------------- likelihood helpers


def test_dequantize_digits_stays_in_the_bins():
    from coursekit.data import load_digits

    images, _ = load_digits("test")
    x = metrics.dequantize_digits(images, rng=0)
    v = np.rint(16 * images.reshape(-1, 64).numpy())
    assert x.shape == (360, 64) and x.dtype == np.float64
    assert np.array_equal(np.floor(17 * x), v)  # each point inside its own bin
    np.testing.assert_array_equal(x, metrics.dequantize_digits(images, rng=0))  # seeded
    # the noise is uniform on the bin: KS test at n = 23 040, threshold 1e-3
    assert stats.kstest((17 * x - v).ravel(), "uniform").pvalue > 1e-3
    with pytest.raises(ValueError, match="images.*k / 16"):
        metrics.dequantize_digits(np.full((2, 64), 0.3))
    with pytest.raises(ValueError, match="64 pixels"):
        metrics.dequantize_digits(np.zeros((2, 10)))


def test_bits_per_dim_and_standard_error():
    rng = np.random.default_rng(16)
    lp = rng.normal(-50.0, 5.0, size=400)
    bpd, se = metrics.bits_per_dim(lp, 64)
    assert bpd == pytest.approx(-lp.mean() / (64 * np.log(2)), rel=1e-12)
    assert se == pytest.approx(stats.sem(lp) / (64 * np.log(2)), rel=1e-12)
    assert metrics.bits_per_dim(np.zeros(10)) == (0.0, 0.0)
    assert str(metrics.bits_per_dim(np.zeros(10))[0]) == "0.0"  # not "-0.0"
    with pytest.raises(ValueError, match="log_prob"):
        metrics.bits_per_dim([1.0])


# ---------------------------------------------------------------- digits classifier


def test_digits_classifier_is_accurate_cached_and_deterministic():
    from coursekit.data import load_digits

    model = metrics.digits_classifier()
    assert metrics.digits_classifier() is model  # cached within the process
    assert model.test_accuracy >= metrics.MIN_TEST_ACCURACY
    again, _ = metrics.train_digits_classifier(0, show_progress=False)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)  # same seed, same weights
    x_test, y_test = load_digits("test")
    probs = metrics.digits_probs(x_test)
    assert probs.shape == (360, 10) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert (probs.argmax(1) == y_test.numpy()).mean() == pytest.approx(model.test_accuracy)
    feats = metrics.digits_features(x_test.reshape(360, 64).numpy())  # flat NumPy input works
    assert feats.shape == (360, model.feature_dim)
    # digits-FID: test vs train is small, test vs noise is large; IS of real digits is high
    x_train, _ = load_digits("train")
    noise = torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert metrics.digits_fid(x_test, x_train) < 0.2 * metrics.digits_fid(x_test, noise)
    is_mean, _ = metrics.digits_inception_score(x_test)
    assert 7.0 < is_mean <= 10.0
    with pytest.raises(ValueError, match="images"):
        metrics.digits_features(torch.zeros(3, 1, 7, 7))
    with pytest.raises(TypeError, match="model"):
        metrics.digits_features(x_test, model=torch.nn.Linear(64, 10))


def test_copied_fraction_counts_distances_up_to_copy_tol():
    # Half of the samples at 0.005 from a training point, half at 0.02, copy_tol = 0.01:
    # exactly half are copies (a squared distance compared with copy_tol would count all,
    # a strict "<" on exact copies none of the duplicates at distance 0).
    rng = np.random.default_rng(17)
    train, test = rng.standard_normal((500, 4)), rng.standard_normal((200, 4))
    direction = np.zeros(4)
    direction[0] = 1.0
    gen = np.concatenate([train[:100] + 0.005 * direction, train[100:200] + 0.02 * direction])
    out = metrics.nearest_neighbour_memorisation(gen, train, test, copy_tol=0.01)
    dist, _ = NearestNeighbors(n_neighbors=1).fit(train).kneighbors(gen)
    np.testing.assert_allclose(out.generated_distances, dist[:, 0], rtol=1e-9)
    assert out.copied_fraction == 0.5
    assert metrics.nearest_neighbour_memorisation(train[:50], train, test,
                                                  copy_tol=0.0).copied_fraction == 1.0


def test_prdc_memory_is_linear_in_n():
    # Three dense 2000 x 2000 float64 matrices would take 96 MB; blocks of 50 rows (plus
    # the refinement's masks) stay within a few MB.
    import tracemalloc

    rng = np.random.default_rng(18)
    real, fake = rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))
    tracemalloc.start()
    metrics.prdc(real, fake, 5, block_size=50)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB"
