"""Evaluating generative models from samples: IS, FID, precision/recall, density/coverage.

Lecture 4 of the course.  Every metric here compares two *sets of features*
(``(n, d)`` arrays), usually the features of real and of generated images under a
fixed network; for the 8x8 digits that network is the small classifier of this module
(:func:`digits_classifier`), the course's stand-in for Inception-v3.

- :func:`inception_score` (Salimans et al., 2016): ``exp E_x KL(p(y|x) || p(y))``, mean and
  standard deviation over consecutive splits;
- :func:`frechet_distance`, :func:`fid` (Heusel et al., 2017): the squared 2-Wasserstein
  distance between the Gaussians fitted to two feature sets, with a stable matrix square
  root (:func:`sqrtm_psd`);
- :func:`prdc` (Kynkaenniemi et al., 2019; Naeem et al., 2020): improved precision and
  recall, density and coverage from k-nearest-neighbour balls, computed block by block
  (memory O(n * block)), equal to the ``prdc`` package;
- :func:`prd_curve`, :func:`prd_from_histograms`, :func:`prd_f_beta` (Sajjadi et al., 2018):
  precision-recall curves of two distributions, from a k-means histogram of the union;
- :func:`nearest_neighbour_memorisation` (Meehan et al., 2020): a Mann-Whitney test that
  generated samples lie closer to the training set than fresh real data do (replayed
  training points);
- :class:`DigitsClassifier`, :func:`digits_classifier`, :func:`digits_probs`,
  :func:`digits_features`, :func:`digits_fid`, :func:`digits_inception_score`: the feature
  space for the digits (class probabilities for IS, penultimate layer for "digits-FID");
- :func:`dequantize_digits`, :func:`bits_per_dim`: likelihoods of continuous and discrete
  models on one footing (the leaderboard of Lecture 4), with standard errors.

Helpers: :func:`kth_neighbour_sq_distances`, :func:`nearest_neighbour_distances` (blocked
k-NN radii and nearest distances, built on :func:`coursekit.numerics.sq_dists`),
:func:`sqrtm_psd`, :func:`gaussian_statistics`, :func:`train_digits_classifier`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import stats
from torch import nn

from coursekit.numerics import sq_dists
from coursekit.validation import (
    RngLike,
    as_generator,
    as_rng,
    as_tensor,
    check_array,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

__all__ = [
    "DIGIT_LEVELS", "MIN_TEST_ACCURACY", "DigitsClassifier", "MemorisationTest", "bits_per_dim",
    "dequantize_digits", "digits_classifier", "digits_features", "digits_fid",
    "digits_inception_score", "digits_probs", "fid", "frechet_distance", "gaussian_statistics",
    "inception_score", "kth_neighbour_sq_distances", "nearest_neighbour_distances",
    "nearest_neighbour_memorisation", "prd_curve", "prd_f_beta", "prd_from_histograms", "prdc",
    "sqrtm_psd", "train_digits_classifier",
]

#: Entries of a distance block held in memory at once by :func:`prdc` (8 bytes each).
_BLOCK_ENTRIES = 2**22

# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _features(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """(n, d) float64 feature array, finite, with at least ``min_rows`` rows."""
    arr = check_array(x, name, ndim=2)  # NaN/inf -> ValueError naming the argument
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows (samples), got {arr.shape[0]}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {arr.shape}")
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_b}: expected {a.shape[1]} features per row like {name_a}, got {b.shape[1]}"
        )


# ----------------------------------------------------------------------------------------------
# Distances
# ----------------------------------------------------------------------------------------------


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) squared distances ||a_i - b_j||^2 >= 0: the shared, stable
    :func:`coursekit.numerics.sq_dists` (one matrix product on centred data)."""
    return sq_dists(a, b)


def _block_rows(n_cols: int, block_size: int | None) -> int:
    if block_size is not None:
        return check_positive_int(block_size, "block_size")
    return max(1, _BLOCK_ENTRIES // max(n_cols, 1))


def kth_neighbour_sq_distances(x: Any, k: int, *, block_size: int | None = None) -> np.ndarray:
    """Squared distance of each point to its k-th nearest neighbour, the point itself excluded.

    ``r_i^2 = ||x_i - NN_k(x_i)||^2``: the squared radius of the k-NN ball of Kynkaenniemi
    et al. (2019).  A duplicate of ``x_i`` elsewhere in ``x`` counts as a neighbour at
    distance 0 (as in the ``prdc`` package, which takes the (k+1)-th smallest distance
    including the point's own 0).  Blocked: memory O(block_size * n).

    Args:
        x: (n, d) points, n > k.
        k: the neighbour's rank, 1 <= k < n.
        block_size: rows per block (default: about 4M distances per block).

    Returns:
        (n,) squared radii.
    """
    x = _features(x, "x")
    k = check_positive_int(k, "k")
    n = x.shape[0]
    if k >= n:
        raise ValueError(f"k: the k-th neighbour needs k < n = {n} points, got k = {k}")
    out = np.empty(n)
    step = _block_rows(n, block_size)
    for s in range(0, n, step):
        d2 = _sq_dists(x[s:s + step], x)  # (b, n)
        rows = np.arange(d2.shape[0])
        d2[rows, s + rows] = 0.0  # the point itself, exactly 0
        # the (k+1)-th smallest including the own 0 is the k-th among the others
        out[s:s + step] = np.partition(d2, k, axis=1)[:, k]
    return out


def nearest_neighbour_distances(x: Any, reference: Any, *,
                                block_size: int | None = None) -> np.ndarray:
    """Distance of each row of ``x`` to its nearest row of ``reference`` (Euclidean).

    Args:
        x: (n, d) query points.  reference: (m, d) points.
        block_size: rows of ``x`` per block (memory O(block_size * m)).

    Returns:
        (n,) distances min_j ||x_i - reference_j||.
    """
    x = _features(x, "x")
    reference = _features(reference, "reference")
    _same_dim(x, reference, "x", "reference")
    out = np.empty(x.shape[0])
    step = _block_rows(reference.shape[0], block_size)
    for s in range(0, x.shape[0], step):
        out[s:s + step] = _sq_dists(x[s:s + step], reference).min(1)
    return np.sqrt(out)


# ----------------------------------------------------------------------------------------------
# Precision, recall, density, coverage (Kynkaenniemi et al. 2019; Naeem et al. 2020)
# ----------------------------------------------------------------------------------------------


def prdc(real_features: Any, fake_features: Any, nearest_k: int = 5, *,
         block_size: int | None = None) -> dict[str, float]:
    """Improved precision and recall, density and coverage from k-NN balls.

    With ``B(x, r)`` the open ball and ``r_k(x)`` the distance from ``x`` to its k-th nearest
    neighbour in its own set (itself excluded), for real points ``X_1..X_N`` and fake
    points ``Y_1..Y_M`` (Naeem et al., 2020, eqs. 1-4):

    - precision = (1/M) sum_j 1[ exists i: Y_j in B(X_i, r_k(X_i)) ]  (fake on the real manifold)
    - recall    = (1/N) sum_i 1[ exists j: X_i in B(Y_j, r_k(Y_j)) ]  (real on the fake manifold)
    - density   = 1/(kM) sum_j sum_i 1[ Y_j in B(X_i, r_k(X_i)) ]     (how many real balls)
    - coverage  = (1/N) sum_i 1[ exists j: Y_j in B(X_i, r_k(X_i)) ]  (real balls hit by a fake)

    The inequalities are strict, as in the ``prdc`` package, whose numbers this function
    reproduces.  The distances are computed block by block over the real rows (memory
    O(block_size * (N + M)) instead of three dense matrices), in float64, as squared
    distances of centred features (no square roots: the comparisons are the same).

    Args:
        real_features: (N, d) features of real data, N > nearest_k.
        fake_features: (M, d) features of generated data, M > nearest_k.
        nearest_k: k; Kynkaenniemi et al. use k = 3 for precision/recall, Naeem et al. k = 5.
        block_size: rows per block (default: about 4M distances per block).

    Returns:
        dict with float ``precision``, ``recall``, ``density`` and ``coverage``.
    """
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    _same_dim(real, fake, "real_features", "fake_features")
    k = check_positive_int(nearest_k, "nearest_k")
    for name, arr in (("real_features", real), ("fake_features", fake)):
        if k >= arr.shape[0]:
            raise ValueError(
                f"nearest_k: the k-th neighbour within {name} needs k < n = {arr.shape[0]} "
                f"rows, got nearest_k = {k}"
            )
    n, m = real.shape[0], fake.shape[0]
    fake_r2 = kth_neighbour_sq_distances(fake, k, block_size=block_size)  # (M,) r_k(Y_j)^2
    both = np.concatenate([real, fake])  # (N + M, d): one product per block of real rows
    hit_fake = np.zeros(m, dtype=bool)  # precision: Y_j inside some real ball
    balls_per_fake = np.zeros(m, dtype=np.int64)  # density: number of real balls around Y_j
    covered = np.empty(n, dtype=bool)  # coverage: nearest fake inside X_i's ball
    recalled = np.empty(n, dtype=bool)  # recall: X_i inside some fake ball
    step = _block_rows(n + m, block_size)
    for s in range(0, n, step):
        d2 = _sq_dists(real[s:s + step], both)  # (b, N + M)
        rows = np.arange(d2.shape[0])
        d2[rows, s + rows] = 0.0  # each real point's distance to itself
        real_r2 = np.partition(d2[:, :n], k, axis=1)[:, k]  # (b,) r_k(X_i)^2, self excluded
        d2_rf = d2[:, n:]  # (b, M) ||X_i - Y_j||^2
        inside = d2_rf < real_r2[:, None]  # (b, M) Y_j in B(X_i, r_k(X_i)), strict
        hit_fake |= inside.any(0)
        balls_per_fake += inside.sum(0)
        covered[s:s + step] = inside.any(1)  # = (min_j d_ij < r_i)
        recalled[s:s + step] = (d2_rf < fake_r2[None, :]).any(1)
    return {
        "precision": float(hit_fake.mean()),
        "recall": float(recalled.mean()),
        "density": float(balls_per_fake.sum() / (k * m)),
        "coverage": float(covered.mean()),
    }


# ----------------------------------------------------------------------------------------------
# Inception Score (Salimans et al. 2016)
# ----------------------------------------------------------------------------------------------


def _probability_rows(probs: Any, name: str = "probs") -> np.ndarray:
    """(n, C) class probabilities in float64, each row >= 0 and summing to 1.

    The tolerance on the sums follows the input's precision: sqrt(eps) of its dtype
    (3.5e-4 for float32 softmax outputs, 1.5e-8 for float64).
    """
    if isinstance(probs, torch.Tensor):
        src_dtype = np.dtype(str(probs.dtype).removeprefix("torch."))
    else:
        src_dtype = np.asarray(probs).dtype
    eps = np.finfo(src_dtype).eps if np.issubdtype(src_dtype, np.floating) else np.finfo(float).eps
    p = check_array(probs, name, ndim=2)
    if p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"{name}: expected shape (n, C) with n >= 1 and C >= 2 classes, "
                         f"got {p.shape}")
    if np.any(p < 0):
        raise ValueError(f"{name}: probabilities must be non-negative (class probabilities, "
                         f"e.g. a softmax; not logits), got min {p.min():.3g}")
    err = np.abs(p.sum(1) - 1.0)
    tol = math.sqrt(eps)
    if np.any(err > tol):
        i = int(err.argmax())
        raise ValueError(
            f"{name}: each row must sum to 1 (class probabilities, e.g. a softmax; not logits), "
            f"but row {i} sums to {p[i].sum():.10g} (tolerance {tol:.1e} for {src_dtype})"
        )
    return p


def inception_score(probs: Any, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``IS = exp( E_x KL( p(y|x) || p(y) ) )``, mean and std over splits.

    ``p(y)`` is the mean of ``p(y|x)`` over the split (the model's marginal class law).
    As in Salimans et al.'s code, the n rows are cut into ``splits`` consecutive chunks
    (chunk i holds rows ``i*n//splits`` to ``(i+1)*n//splits``), the score is computed on
    each, and the mean and the population standard deviation (ddof = 0: one split gives
    0) are returned.  Since KL(p(y|x) || p(y)) <= log C on average (it is the mutual
    information I(x; y) <= H(y) <= log C), 1 <= IS <= C.

    Args:
        probs: (n, C) class probabilities p(y | x_i), rows summing to 1, n >= splits.
        splits: number of chunks.

    Returns:
        (mean, std) as floats (computed in float64).
    """
    p = _probability_rows(probs, "probs")
    splits = check_positive_int(splits, "splits")
    n = p.shape[0]
    if splits > n:
        raise ValueError(f"splits: expected at most n = {n} splits (one row each), got {splits}")
    from scipy.special import xlogy  # 0 log 0 = 0

    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]  # (n_i, C) consecutive chunk
        py = part.mean(0)  # (C,) marginal p(y)
        # KL(p(y|x) || p(y)) = sum_y p log p - p log p(y); terms with p(y|x) = 0 vanish
        kl = (xlogy(part, part) - xlogy(part, py[None, :])).sum(1)  # (n_i,)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------
# Frechet distance and FID (Heusel et al. 2017)
# ----------------------------------------------------------------------------------------------


def _clamped(lam: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding noise removed: those below
    d * eps * max|lambda| (negative ones included) are set to 0.  The square root amplifies
    noise near 0 (sqrt(1e-16) = 1e-8 per eigenvalue), so a singular covariance would
    otherwise gain a spurious trace of order d * 1e-8."""
    tol = lam.size * np.finfo(float).eps * max(float(np.abs(lam).max(initial=0.0)), 1e-300)
    return np.where(lam > tol, lam, 0.0)


def sqrtm_psd(a: Any, name: str = "a") -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix, by its eigendecomposition.

    ``A = V diag(l) V^T  =>  A^{1/2} = V diag(sqrt(max(l, 0))) V^T``.  The input is
    symmetrised first and eigenvalues at the rounding level (below d * eps * max eigenvalue,
    negative ones included) are set to 0, so the result is always real and symmetric (``scipy.linalg.sqrtm`` can return complex
    values or lose accuracy on singular matrices).

    Args:
        a: (d, d) symmetric PSD matrix.

    Returns:
        (d, d) symmetric PSD root R with R @ R = A.
    """
    a = check_array(a, name, ndim=2)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {a.shape}")
    lam, vec = np.linalg.eigh(0.5 * (a + a.T))
    return (vec * np.sqrt(_clamped(lam))) @ vec.T


def _check_gaussian(mu: Any, sigma: Any, mu_name: str, sigma_name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = check_array(mu, mu_name, ndim=1)
    sigma = check_array(sigma, sigma_name, ndim=2)
    d = mu.shape[0]
    if d == 0:
        raise ValueError(f"{mu_name}: expected a non-empty mean vector")
    if sigma.shape != (d, d):
        raise ValueError(f"{sigma_name}: expected shape ({d}, {d}) to match {mu_name}, "
                         f"got {sigma.shape}")
    scale = max(1.0, float(np.abs(sigma).max()))
    if not np.allclose(sigma, sigma.T, rtol=1e-8, atol=1e-10 * scale):
        raise ValueError(f"{sigma_name}: a covariance matrix must be symmetric")
    lam_min = float(np.linalg.eigvalsh(0.5 * (sigma + sigma.T)).min())
    if lam_min < -1e-8 * scale:
        raise ValueError(f"{sigma_name}: a covariance matrix must be positive semi-definite, "
                         f"got an eigenvalue {lam_min:.3g}")
    return mu, sigma


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr( (S1^{1/2} S2 S1^{1/2})^{1/2} )``
    (Dowson & Landau, 1982).  The trace term equals tr((S1 S2)^{1/2}) (similar matrices)
    but is computed from the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``: its eigenvalues
    are real and >= 0 up to rounding (eigenvalues at the rounding level are set to 0), so no
    complex square root appears and singular covariances (dead features, n <= d) stay exact.

    Args:
        mu1, mu2: (d,) means.  sigma1, sigma2: (d, d) covariances (symmetric PSD).

    Returns:
        the distance (a float >= 0).
    """
    mu1, sigma1 = _check_gaussian(mu1, sigma1, "mu1", "sigma1")
    mu2, sigma2 = _check_gaussian(mu2, sigma2, "mu2", "sigma2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu2: expected dimension {mu1.shape[0]} like mu1, got {mu2.shape[0]}")
    root1 = sqrtm_psd(sigma1, "sigma1")  # (d, d) S1^{1/2}
    middle = root1 @ sigma2 @ root1  # (d, d) S1^{1/2} S2 S1^{1/2}, symmetric PSD
    lam = np.linalg.eigvalsh(0.5 * (middle + middle.T))  # (d,) real eigenvalues
    tr_covmean = np.sqrt(_clamped(lam)).sum()  # tr (S1^{1/2} S2 S1^{1/2})^{1/2}
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return float(max(d2, 0.0))  # >= 0 in exact arithmetic; clamp the rounding


def gaussian_statistics(features: Any, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) (``np.cov``, ddof = 1) of (n, d) features, n > d."""
    x = _features(features, name)
    n, d = x.shape
    if n <= d:
        raise ValueError(
            f"{name}: FID needs more samples than feature dimensions (n > d) for a "
            f"non-singular covariance estimate, got n = {n} <= d = {d}; use more samples "
            "or fewer features"
        )
    return x.mean(0), np.cov(x, rowvar=False, ddof=1)


def fid(features_a: Any, features_b: Any) -> float:
    """Frechet Inception Distance between two feature sets (Heusel et al., 2017).

    The Frechet distance between the Gaussians with the sets' means and unbiased sample
    covariances (``np.cov``, ddof = 1, as the field's implementations use).  FID is biased
    upwards at small n (even two samples of the same law give FID > 0), so always quote n.

    Args:
        features_a: (n_a, d), features_b: (n_b, d), with n_a, n_b > d.

    Returns:
        the FID (float >= 0).
    """
    a = _features(features_a, "features_a")
    b = _features(features_b, "features_b")
    _same_dim(a, b, "features_a", "features_b")
    mu1, s1 = gaussian_statistics(a, "features_a")
    mu2, s2 = gaussian_statistics(b, "features_b")
    return frechet_distance(mu1, s1, mu2, s2)


# ----------------------------------------------------------------------------------------------
# Precision-recall distributions (Sajjadi et al. 2018)
# ----------------------------------------------------------------------------------------------


def prd_from_histograms(real_hist: Any, fake_hist: Any, num_angles: int = 1001,
                        epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """The PRD curve of two discrete distributions (Sajjadi et al., 2018, Theorem 2).

    For the reference law P (``real_hist``) and the model Q (``fake_hist``) on the same
    bins, and slopes ``lambda = tan(angle)``, angles evenly spaced in (0, pi/2):
    ``alpha(lambda) = sum_w min(lambda P(w), Q(w))`` (precision) and
    ``beta(lambda) = alpha(lambda) / lambda`` (recall).  The pairs trace the frontier of
    PRD(Q, P).  Identical laws give (1, 1) at lambda = 1.

    Args:
        real_hist, fake_hist: (B,) non-negative weights (normalised here).
        num_angles: number of slopes, >= 3.
        epsilon: the angles run from epsilon to pi/2 - epsilon.

    Returns:
        precision (num_angles,), recall (num_angles,), both clipped to [0, 1].
    """
    p = check_array(real_hist, "real_hist", ndim=1)
    q = check_array(fake_hist, "fake_hist", ndim=1)
    if p.shape != q.shape or p.size == 0:
        raise ValueError(f"fake_hist: expected the same bins as real_hist {p.shape}, got {q.shape}")
    for name, h in (("real_hist", p), ("fake_hist", q)):
        if np.any(h < 0) or h.sum() <= 0:
            raise ValueError(f"{name}: expected non-negative weights with a positive sum")
    p, q = p / p.sum(), q / q.sum()
    num_angles = check_positive_int(num_angles, "num_angles", minimum=3)
    if not isinstance(epsilon, (int, float)) or not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon: expected 0 < epsilon < 0.1, got {epsilon}")
    slopes = np.tan(np.linspace(epsilon, math.pi / 2 - epsilon, num_angles))  # (A,) lambda
    precision = np.minimum(p[None, :] * slopes[:, None], q[None, :]).sum(1)  # (A,) alpha
    recall = precision / slopes  # (A,) beta = alpha / lambda
    return np.clip(precision, 0.0, 1.0), np.clip(recall, 0.0, 1.0)


def prd_curve(real_features: Any, fake_features: Any, *, num_clusters: int = 20,
              num_angles: int = 1001, num_runs: int = 10,
              rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
    """PRD curve of two feature sets (Sajjadi et al., 2018, section 4).

    The union of the features is clustered by k-means into ``num_clusters`` cells (the
    course's :func:`coursekit.gmm.kmeans`); the two sets' cell histograms are compared by
    :func:`prd_from_histograms`; the curves of ``num_runs`` clusterings are averaged.

    Args:
        real_features: (N, d) reference features.  fake_features: (M, d) model features.
        num_clusters: number of k-means cells (<= N + M).
        num_angles: number of slopes lambda.
        num_runs: independent clusterings to average.
        rng: NumPy Generator, int seed or None (the k-means seeding).

    Returns:
        precision (num_angles,), recall (num_angles,).
    """
    from coursekit.gmm import kmeans

    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    _same_dim(real, fake, "real_features", "fake_features")
    num_clusters = check_positive_int(num_clusters, "num_clusters")
    num_runs = check_positive_int(num_runs, "num_runs")
    rng = as_rng(rng)
    union = np.concatenate([real, fake])
    if num_clusters > union.shape[0]:
        raise ValueError(f"num_clusters: expected at most N + M = {union.shape[0]}, "
                         f"got {num_clusters}")
    n = real.shape[0]
    precisions, recalls = [], []
    for _ in range(num_runs):
        _, labels = kmeans(union, num_clusters, rng=rng)
        p_hist = np.bincount(labels[:n], minlength=num_clusters)
        q_hist = np.bincount(labels[n:], minlength=num_clusters)
        pr, rc = prd_from_histograms(p_hist, q_hist, num_angles)
        precisions.append(pr)
        recalls.append(rc)
    return np.mean(precisions, 0), np.mean(recalls, 0)


def prd_f_beta(precision: Any, recall: Any, beta: float = 8.0) -> tuple[float, float]:
    """Summary of a PRD curve: (max F_beta, max F_{1/beta}) (Sajjadi et al., 2018).

    ``F_beta = (1 + beta^2) p r / (beta^2 p + r)`` weighs recall beta times as much as
    precision: max F_8 summarises recall, max F_{1/8} precision.
    """
    p = check_array(precision, "precision", ndim=1)
    r = check_array(recall, "recall", ndim=1)
    if p.shape != r.shape or p.size == 0:
        raise ValueError(f"recall: expected the shape of precision {p.shape}, got {r.shape}")
    for name, v in (("precision", p), ("recall", r)):
        if np.any((v < 0) | (v > 1)):  # else F_beta can exceed 1
            raise ValueError(f"{name}: expected values in [0, 1] (a PRD curve), got "
                             f"[{v.min():.3g}, {v.max():.3g}]")
    beta = check_positive(beta, "beta")

    def f(b: float) -> float:
        den = b * b * p + r
        val = np.where(den > 0, (1 + b * b) * p * r / np.where(den > 0, den, 1.0), 0.0)
        return float(val.max())

    return f(beta), f(1.0 / beta)


# ----------------------------------------------------------------------------------------------
# Memorisation (Meehan et al. 2020)
# ----------------------------------------------------------------------------------------------


class MemorisationTest(NamedTuple):
    """Result of :func:`nearest_neighbour_memorisation`."""

    #: Mann-Whitney U of (generated, test) distances to the training set.
    statistic: float
    #: one-sided p-value of "generated samples are closer to the training set".
    p_value: float
    #: the normal approximation's z score of U (Meehan et al.'s Z_U; < -3: copying).
    z: float
    #: median generated-to-train distance / median test-to-train distance (< 1: closer).
    ratio: float
    #: fraction of generated samples at distance <= ``copy_tol`` from a training point.
    copied_fraction: float
    #: (M,) nearest-training-point distance of each generated sample.
    generated_distances: np.ndarray
    #: (T,) nearest-training-point distance of each held-out real sample.
    test_distances: np.ndarray


def nearest_neighbour_memorisation(generated: Any, train: Any, test: Any, *,
                                   copy_tol: float = 1e-6) -> MemorisationTest:
    """Do generated samples lie closer to the training set than fresh real data do?

    A model that replays (or nearly replays) training points scores perfectly on sample
    quality and precision.  If instead its samples are draws from the data law that do not
    depend on the training set, the distance from a generated sample to its nearest
    training point has the same law as that of a held-out real sample (Meehan et al.,
    2020).  The one-sided Mann-Whitney U test of the two sets of distances
    (``scipy.stats.mannwhitneyu``, alternative "less") detects samples that are too close.

    Args:
        generated: (M, d) generated samples (or their features).
        train: (N, d) the training set the model saw.
        test: (T, d) held-out real data from the same law, never seen in training.
        copy_tol: distance below which a generated sample counts as an exact copy.

    Returns:
        a :class:`MemorisationTest` (small p-value / very negative z: memorisation).
    """
    copy_tol = check_nonnegative(copy_tol, "copy_tol")
    g = _features(generated, "generated")
    tr = _features(train, "train")
    te = _features(test, "test")
    _same_dim(tr, g, "train", "generated")
    _same_dim(tr, te, "train", "test")
    d_gen = nearest_neighbour_distances(g, tr)  # (M,)
    d_test = nearest_neighbour_distances(te, tr)  # (T,)
    res = stats.mannwhitneyu(d_gen, d_test, alternative="less")
    m, t = d_gen.size, d_test.size
    z = (res.statistic - m * t / 2.0) / math.sqrt(m * t * (m + t + 1) / 12.0)
    med_test = float(np.median(d_test))
    ratio = float(np.median(d_gen) / med_test) if med_test > 0 else math.inf
    return MemorisationTest(
        statistic=float(res.statistic), p_value=float(res.pvalue), z=float(z), ratio=ratio,
        copied_fraction=float(np.mean(d_gen <= copy_tol)),
        generated_distances=d_gen, test_distances=d_test,
    )


# ----------------------------------------------------------------------------------------------
# Likelihoods on a common footing: dequantised digits, bits per dimension
# ----------------------------------------------------------------------------------------------

#: The 8x8 digits' pixels take the 17 integer values 0..16 (load_digits divides them by 16).
DIGIT_LEVELS = 17


def dequantize_digits(images: Any, rng: RngLike = None) -> np.ndarray:
    """Uniformly dequantised digits: ``x = (v + u) / 17``, ``v = 16 * image`` in {0..16}, u ~ U(0, 1)^64.

    A continuous density p on [0, 1]^64 evaluated at x is a fair score of the discrete data
    (Theis et al., 2016): ``E_u log p((v + u) / 17) <= log P(v) + 64 log 17``, where P is the
    law p induces on the 17^64 bins.  A discrete model P (a PixelCNN over the 17 levels)
    becomes the density ``P(v) 17^64`` that is constant on each bin.

    Args:
        images: (n, 1, 8, 8) or (n, 64) digits with values k / 16 (``load_digits``).
        rng: NumPy Generator, int seed or None (the uniform noise u).

    Returns:
        (n, 64) float64 array in (0, 1).
    """
    x = check_array(images, "images", ndim=(2, 4), min_rows=1)
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != 64:
        raise ValueError(f"images: expected 64 pixels per image, got {x.shape[1]}")
    v = np.rint(16.0 * x)
    if np.any(np.abs(16.0 * x - v) > 1e-4) or v.min() < 0 or v.max() > 16:
        raise ValueError("images: expected grey levels k / 16 with k in 0..16 (load_digits)")
    rng = as_rng(rng)
    return (v + rng.uniform(size=v.shape)) / DIGIT_LEVELS


def bits_per_dim(log_prob: Any, n_dims: int = 64) -> tuple[float, float]:
    """Negative log-likelihood in bits per dimension, with its standard error.

    ``bpd = -mean_i log p(x_i) / (D ln 2)`` and ``se = std_i(log p(x_i)) / (sqrt(n) D ln 2)``
    (ddof = 1): the uncertainty due to the finite test set, for comparing models on it.

    Args:
        log_prob: (n,) log-densities in nats, n >= 2.
        n_dims: D, the dimension of each x.

    Returns:
        (bpd, standard error).
    """
    lp = check_array(log_prob, "log_prob", ndim=1, min_rows=2)
    n_dims = check_positive_int(n_dims, "n_dims")
    scale = n_dims * math.log(2.0)
    # + 0.0 turns the -0.0 of a zero log-density into 0.0
    return float(-lp.mean() / scale) + 0.0, float(lp.std(ddof=1) / math.sqrt(lp.size) / scale)


# ----------------------------------------------------------------------------------------------
# The digits feature space: a small classifier as the course's "Inception network"
# ----------------------------------------------------------------------------------------------

#: Test accuracy the cached classifier must reach (checked when it is trained).
MIN_TEST_ACCURACY = 0.95


class DigitsClassifier(nn.Module):
    """An MLP classifier of the 8x8 digits whose penultimate layer serves as feature space.

    ``x (n, 1, 8, 8) or (n, 64) -> h = ReLU(W1 x) (n, hidden) -> f = ReLU(W2 h)
    (n, feature_dim) -> logits = W3 f (n, 10)``.  :meth:`features` returns ``f`` (the
    "pool3" of digits-FID), :meth:`probs` the softmax ``p(y | x)`` (for the IS).

    Args:
        hidden: width of the first hidden layer.
        feature_dim: width of the penultimate layer (the FID feature dimension).
        generator: torch generator / int seed / None for the initial weights.
    """

    def __init__(self, hidden: int = 128, feature_dim: int = 32,
                 generator: torch.Generator | int | None = None) -> None:
        super().__init__()
        hidden = check_positive_int(hidden, "hidden")
        self.feature_dim = check_positive_int(feature_dim, "feature_dim")
        self.body = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(),
                                  nn.Linear(hidden, self.feature_dim), nn.ReLU())
        self.head = nn.Linear(self.feature_dim, 10)
        gen = as_generator(generator, "generator")
        with torch.no_grad():  # PyTorch's default init, drawn from our own generator
            for layer in (self.body[0], self.body[2], self.head):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.uniform_(-bound, bound, generator=gen)

    def _flat(self, x: Any, name: str = "x") -> torch.Tensor:
        x = as_tensor(x, name, like=self, ndim=(2, 4))
        x = x.reshape(x.shape[0], -1)  # (n, 64)
        if x.shape[1] != 64:
            raise ValueError(f"{name}: expected (n, 1, 8, 8) or (n, 64), got {x.shape[1]} pixels")
        return x

    def features(self, x: Any) -> torch.Tensor:
        """(n, 1, 8, 8) or (n, 64) images -> (n, feature_dim) penultimate activations."""
        return self.body(self._flat(x))

    def forward(self, x: Any) -> torch.Tensor:
        """(n, 1, 8, 8) or (n, 64) images -> (n, 10) logits."""
        return self.head(self.features(x))

    def probs(self, x: Any) -> torch.Tensor:
        """(n, 10) class probabilities p(y | x) (softmax of the logits)."""
        return torch.softmax(self(x), dim=1)


def train_digits_classifier(seed: int = 0, *, n_steps: int = 300, batch_size: int = 256,
                            lr: float = 1e-2,
                            show_progress: bool = True) -> tuple[DigitsClassifier, list[float]]:
    """Train a :class:`DigitsClassifier` on the digits' training split (a few seconds, CPU).

    Cross-entropy, Adam through :func:`coursekit.utils.train`; initial weights and batches
    come from generators seeded with ``seed``, so the result is deterministic.  The test
    accuracy is stored in ``model.test_accuracy``.

    Returns:
        (model in eval mode, loss history).
    """
    from coursekit.data import load_digits
    from coursekit.utils import train

    seed = check_positive_int(seed, "seed", minimum=0)
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    model = DigitsClassifier(generator=seed)
    x_flat = x_train.reshape(len(x_train), -1)
    index = torch.arange(len(x_train))

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x_flat[batch]), y_train[batch])

    history = train(loss_fn, model.parameters(), index, n_steps=n_steps, batch_size=batch_size,
                    lr=lr, generator=torch.Generator().manual_seed(seed),
                    desc="digits classifier", show_progress=show_progress)
    model.eval()
    with torch.no_grad():
        model.test_accuracy = float((model(x_test).argmax(1) == y_test).double().mean())
    return model, history


@functools.lru_cache(maxsize=4)
def digits_classifier(seed: int = 0) -> DigitsClassifier:
    """The course's trained digits classifier, trained once per process and cached.

    Raises RuntimeError if its test accuracy is below :data:`MIN_TEST_ACCURACY`.
    The returned model is frozen (no gradients); do not modify it in place.
    """
    # enable_grad: the first call may come from inside a no_grad function (digits_features)
    with torch.enable_grad():
        model, _ = train_digits_classifier(seed, show_progress=False)
    if model.test_accuracy < MIN_TEST_ACCURACY:
        raise RuntimeError(f"digits classifier reached only {model.test_accuracy:.3f} test "
                           f"accuracy (< {MIN_TEST_ACCURACY})")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _model(model: DigitsClassifier | None) -> DigitsClassifier:
    if model is None:
        return digits_classifier()
    if not isinstance(model, DigitsClassifier):
        raise TypeError(f"model: expected a DigitsClassifier or None, got {type(model).__name__}")
    return model


@torch.no_grad()
def digits_probs(images: Any, model: DigitsClassifier | None = None) -> np.ndarray:
    """(n, 1, 8, 8) or (n, 64) images -> (n, 10) float64 class probabilities (for the IS)."""
    # softmax in float64: the rows then sum to 1 within float64 rounding (IS checks it)
    m = _model(model)
    return torch.softmax(m.head(m.body(m._flat(images, "images"))).double(), dim=1).numpy()


@torch.no_grad()
def digits_features(images: Any, model: DigitsClassifier | None = None) -> np.ndarray:
    """(n, 1, 8, 8) or (n, 64) images -> (n, feature_dim) float64 penultimate features."""
    return _digits_features(images, model, "images")


@torch.no_grad()
def _digits_features(images: Any, model: DigitsClassifier | None, name: str) -> np.ndarray:
    m = _model(model)
    return m.body(m._flat(images, name)).double().numpy()


def digits_fid(images_a: Any, images_b: Any, model: DigitsClassifier | None = None) -> float:
    """"Digits-FID": :func:`fid` between the classifier features of two image sets (n > 32)."""
    return fid(_digits_features(images_a, model, "images_a"),
               _digits_features(images_b, model, "images_b"))


def digits_inception_score(images: Any, splits: int = 10,
                           model: DigitsClassifier | None = None) -> tuple[float, float]:
    """:func:`inception_score` of images under the digits classifier: (mean, std), <= 10."""
    return inception_score(digits_probs(images, model), splits)
