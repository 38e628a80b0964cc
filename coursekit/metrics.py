"""Evaluating generative models from samples: IS, FID, precision/recall, density/coverage.

Lecture 4 of the course.  Every metric here compares two *sets of features*
(``(n, d)`` arrays), usually the features of real and of generated images under a
fixed network; for the 8x8 digits that network is the small classifier of this module
(:func:`digits_classifier`), the course's stand-in for Inception-v3.

- :func:`inception_score` (Salimans et al., 2016): ``exp E_x KL(p(y|x) || p(y))``, mean and
  standard deviation over consecutive splits;
- :func:`frechet_distance`, :func:`fid` (Heusel et al., 2017): the squared 2-Wasserstein
  distance between the Gaussians fitted to two feature sets, with a stable matrix square
  root (:func:`sqrtm_psd`); biased at finite n (Binkowski et al., 2018);
- :func:`kid`, :func:`mmd2_unbiased` (Binkowski et al., 2018): the Kernel Inception
  Distance, an unbiased MMD^2 with a cubic polynomial kernel, mean and spread over subsets;
- :func:`prdc` (Kynkaenniemi et al., 2019; Naeem et al., 2020): improved precision and
  recall, density and coverage from k-nearest-neighbour balls, computed block by block
  (memory O(n * block)), equal to the ``prdc`` package;
- :func:`prd_curve`, :func:`prd_from_histograms`, :func:`prd_f_beta` (Sajjadi et al., 2018):
  precision-recall curves of two distributions, from a k-means histogram of the union;
- :func:`nearest_neighbour_memorisation` (Meehan et al., 2020): a Mann-Whitney test that
  generated samples lie closer to the training set than fresh real data do (replayed
  training points); :func:`memorisation_ct`, the paper's C_T: the same test in each
  k-means cell of the training set, averaged with the cells' test shares as weights;
- :class:`DigitsClassifier`, :func:`digits_classifier`, :func:`digits_probs`,
  :func:`digits_features`, :func:`digits_fid`, :func:`digits_inception_score`: the feature
  space for the digits (class probabilities for IS, penultimate layer for "digits-FID");
- :func:`dequantize_digits`, :func:`bits_per_dim`: likelihoods of continuous and discrete
  models on one footing (the leaderboard of Lecture 4), with standard errors.

Helpers: :func:`kth_neighbour_sq_distances`, :func:`nearest_neighbour_distances` (blocked
k-NN radii and nearest distances, independent of the blocking and exact on quantised data),
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
    "CellMemorisationTest", "DIGIT_LEVELS", "MIN_TEST_ACCURACY", "DigitsClassifier",
    "MemorisationTest", "bits_per_dim", "dequantize_digits", "digits_classifier",
    "digits_features", "digits_fid", "digits_inception_score", "digits_probs", "fid",
    "frechet_distance", "gaussian_statistics", "inception_score", "kid",
    "kth_neighbour_sq_distances", "memorisation_ct", "mmd2_unbiased",
    "nearest_neighbour_distances", "nearest_neighbour_memorisation", "prd_curve", "prd_f_beta",
    "prd_from_histograms", "prdc", "sqrtm_psd", "train_digits_classifier",
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
#
# The k-NN metrics compare distances with a strict "<", so two equal distances must come out
# equal: on quantised features (pixels, rounded codes) ties are the rule, and a rounding error
# of one ulp flips a decision.  The matrix product that makes the blocked distances fast may
# round differently with the block's shape, so each distance is settled as follows:
#
# 1. every set is shifted by one common centre (a coordinate-wise median of the reference set:
#    a value the data take, so quantised features stay on their grid and x - c is exact);
# 2. if the shifted features are integers times a common power of two, small enough that every
#    product and partial sum is an integer below 2^53, the product is exact in any order: the
#    distances are the exact ones, whatever the blocking;
# 3. otherwise the product's rounding error is bounded (|error| <= t_i + t_j below) and every
#    decision within that bound -- a comparison with a radius, a k-th smallest distance -- is
#    redone with the direct sum of (a_k - b_k)^2, computed pair by pair in a fixed order.
#
# Either way a decision depends only on the two points, never on the block they came in.

#: Safety factor of the rounding bound of one blocked squared distance (see _centred).
_ROUND_FACTOR = 8.0


class _Centred(NamedTuple):
    """Points shifted by a common centre, with what the blocked distances need."""

    x: np.ndarray  # (n, d) shifted points
    sq: np.ndarray  # (n,) squared norms of the shifted points
    tol: np.ndarray  # (n,) t_i: |blocked d2_ij - direct d2_ij| <= t_i + t_j (all 0 if exact)
    exact: bool  # integer arithmetic in disguise: blocked = direct = exact distance


def _products_exact(shifted: list[np.ndarray]) -> bool:
    """Are all entries integers times 2^-s with every ||a||^2 + ||b||^2 - 2 a.b exact?

    With |entries| <= L 2^-s and 4 d L^2 <= 2^53, each product, each partial sum (<= d L^2)
    and the final combination (<= 4 d L^2, in units of 2^-2s) is an integer below 2^53:
    float64 holds it exactly, whatever the summation order or fused multiply-adds.
    """
    d = shifted[0].shape[1]
    top = max(float(np.abs(s).max()) for s in shifted)
    if top == 0.0:
        return True
    limit = math.sqrt(2.0**53 / (4 * d))
    s = math.floor(math.log2(limit / top))
    if not -900 < s < 900:  # scaling would leave the normal range: give up (safe)
        return False
    for arr in shifted:
        scaled = np.ldexp(arr, s)  # exact: a power of two
        if not np.array_equal(scaled, np.rint(scaled)):
            return False
    return True


def _centred(reference: np.ndarray, *others: np.ndarray) -> list[_Centred]:
    """Shift ``reference`` and ``others`` by the coordinate-wise lower median of ``reference``.

    The median is robust to outliers (the norms, hence the rounding bound, stay of the
    size of the spread) and is an entry of each column, so the shift of quantised data is
    exact.  Rounding bound of a blocked squared distance ``fl(n_a + n_b - 2 a.b)`` against
    the direct ``sum_k fl(a_k - b_k)^2``: both are within about (2d + 5) u (n_a + n_b) of the
    exact value (u = eps / 2; Higham's gamma_d bound on a dot product, |a.b| <= (n_a + n_b) / 2),
    so t_i = 8 (d + 4) eps n_i leaves a margin of four.
    """
    sets = (reference, *others)
    mid = (reference.shape[0] - 1) // 2
    centre = np.partition(reference, mid, axis=0)[mid]  # (d,) lower median of each column
    shifted = [s - centre for s in sets]
    exact = _products_exact(shifted)
    d = reference.shape[1]
    out = []
    for x in shifted:
        sq = np.einsum("ij,ij->i", x, x)  # (n,)
        if exact:
            tol = np.zeros_like(sq)
        else:  # + tiny: a bound that stays > 0 even for points at the centre
            tol = _ROUND_FACTOR * (d + 4) * np.finfo(float).eps * sq + np.finfo(float).tiny
        out.append(_Centred(x, sq, tol, exact))
    return out


def _block_rows(n_cols: int, block_size: int | None) -> int:
    if block_size is not None:
        return check_positive_int(block_size, "block_size")
    return max(1, _BLOCK_ENTRIES // max(n_cols, 1))


def _blocked_sq(a: _Centred, start: int, stop: int, b_x: np.ndarray,
                b_sq: np.ndarray) -> np.ndarray:
    """(stop - start, m) squared distances of rows start:stop of ``a`` to all rows of ``b``."""
    d2 = a.x[start:stop] @ b_x.T  # (r, m) a.b: the only step that may round with the block
    d2 *= -2.0
    d2 += a.sq[start:stop, None]  # ||a||^2 - 2 a.b
    d2 += b_sq[None, :]  # + ||b||^2
    return np.maximum(d2, 0.0, out=d2)  # >= 0 like the exact value: only moves towards it


def _direct_sq(a_x: np.ndarray, ia: np.ndarray, b_x: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """(p,) ``sum_k (a_k - b_k)^2`` for the pairs (a_x[ia[p]], b_x[ib[p]]), pair by pair.

    Each value is a function of its two points only (same operations, same order),
    computed in chunks of at most ``_BLOCK_ENTRIES`` numbers.
    """
    out = np.empty(ia.size)
    step = max(1, _BLOCK_ENTRIES // a_x.shape[1])
    for s in range(0, ia.size, step):
        diff = a_x[ia[s:s + step]] - b_x[ib[s:s + step]]  # (p', d)
        out[s:s + step] = np.einsum("ij,ij->i", diff, diff)
    return out


def _kth_smallest(d2: np.ndarray, k: int, a: _Centred, start: int, b: _Centred) -> np.ndarray:
    """(r,) k-th smallest (0-based) direct squared distance in each row of a block.

    ``d2`` (r, m): blocked squared distances of rows ``start:start + r`` of ``a`` to ``b``.
    Each entry is within E_i = t_i + max_j t_j of its direct value, so the k-th smallest
    blocked value t lies within E_i of the direct one: entries below t - 2 E_i are surely
    smaller, entries above t + 2 E_i surely larger, and the answer is the (k - #smaller)-th
    smallest direct value among the candidates in between (usually the k-th entry alone).
    """
    r = d2.shape[0]
    at = np.arange(r)
    kth_col = np.argpartition(d2, k, axis=1)[:, k]  # (r,) column of the k-th smallest
    kth = d2[at, kth_col]  # (r,)
    if a.exact:
        return kth
    slack = 2.0 * (a.tol[start:start + r] + b.tol.max())  # (r,) 2 E_i
    low, high = (kth - slack)[:, None], (kth + slack)[:, None]
    n_smaller = np.count_nonzero(d2 < low, axis=1)  # (r,) surely smaller
    n_cand = np.count_nonzero(d2 <= high, axis=1) - n_smaller  # (r,) >= 1: the k-th itself
    out = _direct_sq(a.x, start + at, b.x, kth_col)  # right where the k-th is the only candidate
    multi = np.flatnonzero(n_cand > 1)
    if multi.size:  # near-ties: order the candidates by their direct distances
        sub = d2[multi]  # (r', m)
        rows, cols = np.nonzero((sub >= low[multi]) & (sub <= high[multi]))  # sorted by row
        vals = _direct_sq(a.x, start + multi[rows], b.x, cols)
        order = np.lexsort((vals, rows))  # by row, then by value
        first = np.searchsorted(rows, np.arange(multi.size))  # each row's first candidate
        out[multi] = vals[order][first + k - n_smaller[multi]]
    return out


def _less(d2: np.ndarray, bound: np.ndarray, slack: np.ndarray, a: _Centred, start: int,
          b_x: np.ndarray) -> np.ndarray:
    """(r, m) bool ``direct d2_ij < bound``, from blocked ``d2`` within ``slack`` of it.

    ``bound`` and ``slack`` broadcast against ``d2`` ((r, 1) per row or (1, m) per column);
    only the entries within the slack of the bound are recomputed directly.
    """
    inside = d2 < bound - slack  # surely below
    if a.exact:
        return inside
    maybe = d2 < bound + slack  # surely below or within the slack
    if np.count_nonzero(maybe) == np.count_nonzero(inside):  # none within (counting is cheap)
        return inside
    rows, cols = np.nonzero(maybe ^ inside)  # within the slack: ask the direct distance
    direct = _direct_sq(a.x, start + rows, b_x, cols)
    inside[rows, cols] = direct < np.broadcast_to(bound, d2.shape)[rows, cols]
    return inside


def kth_neighbour_sq_distances(x: Any, k: int, *, block_size: int | None = None) -> np.ndarray:
    """Squared distance of each point to its k-th nearest neighbour, the point itself excluded.

    ``r_i^2 = ||x_i - NN_k(x_i)||^2``: the squared radius of the k-NN ball of Kynkaenniemi
    et al. (2019).  A duplicate of ``x_i`` elsewhere in ``x`` counts as a neighbour at
    distance 0 (as in the ``prdc`` package, which takes the (k+1)-th smallest distance
    including the point's own 0).  Blocked (memory O(block_size * n)); the result does not
    depend on ``block_size`` and is exact for quantised data (see the notes above
    :func:`_centred`).

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
    (c,) = _centred(x)
    return _kth_radii(c, k, _block_rows(n, block_size))


def _kth_radii(c: _Centred, k: int, step: int) -> np.ndarray:
    """(n,) squared k-NN radii within one centred set (self excluded), blocked."""
    n = c.x.shape[0]
    out = np.empty(n)
    for s in range(0, n, step):
        d2 = _blocked_sq(c, s, s + step, c.x, c.sq)  # (r, n)
        rows = np.arange(d2.shape[0])
        d2[rows, s + rows] = 0.0  # the point itself, exactly 0 (as its direct value)
        # the (k+1)-th smallest including the own 0 is the k-th among the others
        out[s:s + step] = _kth_smallest(d2, k, c, s, c)
    return out


def nearest_neighbour_distances(x: Any, reference: Any, *,
                                block_size: int | None = None) -> np.ndarray:
    """Distance of each row of ``x`` to its nearest row of ``reference`` (Euclidean).

    Args:
        x: (n, d) query points.  reference: (m, d) points.
        block_size: rows of ``x`` per block (memory O(block_size * m)); the result does not
            depend on it.

    Returns:
        (n,) distances min_j ||x_i - reference_j||.
    """
    x = _features(x, "x")
    reference = _features(reference, "reference")
    _same_dim(x, reference, "x", "reference")
    ref, query = _centred(reference, x)
    out = np.empty(x.shape[0])
    step = _block_rows(reference.shape[0], block_size)
    for s in range(0, x.shape[0], step):
        d2 = _blocked_sq(query, s, s + step, ref.x, ref.sq)  # (r, m)
        out[s:s + step] = _kth_smallest(d2, 0, query, s, ref)
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

    The inequalities are strict, as in the ``prdc`` package.  The distances are computed
    block by block over the real rows (memory O(block_size * (N + M)) instead of three dense
    matrices), in float64, as squared distances (no square roots: the comparisons are the
    same).  Ties are frequent on quantised features (pixels, rounded codes) and a strict
    ``<`` is decided by one rounding error, so each comparison is settled by the two points
    alone: exactly when the features are integers times a power of two (then the result is
    the exact one, and the package's too as long as its own products are exact: small
    integers, halves, the digits' 17 levels), otherwise by recomputing directly every
    distance within the rounding bound of a radius.  The result never depends on
    ``block_size``.

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
    step = _block_rows(n + m, block_size)
    cr, cf = _centred(real, fake)  # one shift for both sets and every block
    fake_r2 = _kth_radii(cf, k, _block_rows(m, block_size))  # (M,) r_k(Y_j)^2
    both_x = np.concatenate([cr.x, cf.x])  # (N + M, d): one product per block of real rows
    both_sq = np.concatenate([cr.sq, cf.sq])
    # slack of entry (i, j) is t_i + t_j: bounded per row (real balls) or per column (fake)
    row_slack_extra, col_slack_extra = cf.tol.max(), cr.tol.max()
    hit_fake = np.zeros(m, dtype=bool)  # precision: Y_j inside some real ball
    balls_per_fake = np.zeros(m, dtype=np.int64)  # density: number of real balls around Y_j
    covered = np.empty(n, dtype=bool)  # coverage: nearest fake inside X_i's ball
    recalled = np.empty(n, dtype=bool)  # recall: X_i inside some fake ball
    for s in range(0, n, step):
        d2 = _blocked_sq(cr, s, s + step, both_x, both_sq)  # (b, N + M)
        b = d2.shape[0]
        rows = np.arange(b)
        d2[rows, s + rows] = 0.0  # each real point's distance to itself
        real_r2 = _kth_smallest(d2[:, :n], k, cr, s, cr)  # (b,) r_k(X_i)^2, self excluded
        d2_rf = d2[:, n:]  # (b, M) ||X_i - Y_j||^2
        row_slack = (cr.tol[s:s + b] + row_slack_extra)[:, None]  # (b, 1)
        inside = _less(d2_rf, real_r2[:, None], row_slack, cr, s, cf.x)  # (b, M) strict
        hit_fake |= inside.any(0)
        balls_per_fake += inside.sum(0)
        covered[s:s + step] = inside.any(1)  # = (min_j d_ij < r_i)
        col_slack = (cf.tol + col_slack_extra)[None, :]  # (1, M)
        recalled[s:s + step] = _less(d2_rf, fake_r2[None, :], col_slack, cr, s, cf.x).any(1)
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

    What the two numbers mean: each split is an IS computed from n / splits samples, so the
    mean is the IS *at that sample size*, not at n -- p(y) estimated from fewer samples
    changes the score (the mean of IS over 1, 10 or 50 splits of the same probabilities
    differs; a chunk holding one class only scores 1 however diverse the whole set is).
    The std is the spread of IS between independent sets of n / splits samples (the
    sampling variability at that size), not a Monte-Carlo error of the reported mean: the
    standard error of the mean is about std / sqrt(splits).  Quote n and splits with it.

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
    upwards at small n (even two samples of the same law give FID > 0); the bias falls
    roughly like 1/n with a model-dependent constant, so two models can swap ranks as n
    grows (Binkowski et al., 2018).  Always quote n; Chong & Forsyth (2020) extrapolate
    FID to n -> infinity (FID_inf), and :func:`kid` is unbiased at every n.

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
# Kernel Inception Distance (Binkowski et al. 2018)
# ----------------------------------------------------------------------------------------------


def _cubic_kernel_sum(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_ij (a_i . b_j / d + 1)^3`` over all pairs, block by block (memory O(block * m))."""
    d = a.shape[1]
    total = 0.0
    step = _block_rows(b.shape[0], None)
    for s in range(0, a.shape[0], step):
        k = a[s:s + step] @ b.T  # (r, m) a_i . b_j
        k /= d
        k += 1.0
        total += float(np.sum(k * k * k))  # (r, m) -> the block's kernel sum
    return total


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, n = x.shape[0], y.shape[0]
    d = x.shape[1]
    # diagonal terms k(x_i, x_i) = (|x_i|^2 / d + 1)^3, removed for the unbiased U-statistic
    diag_x = float(np.sum((np.einsum("ij,ij->i", x, x) / d + 1.0) ** 3))
    diag_y = float(np.sum((np.einsum("ij,ij->i", y, y) / d + 1.0) ** 3))
    kxx = (_cubic_kernel_sum(x, x) - diag_x) / (m * (m - 1))  # mean over i != j
    kyy = (_cubic_kernel_sum(y, y) - diag_y) / (n * (n - 1))
    kxy = _cubic_kernel_sum(x, y) / (m * n)  # mean over all pairs
    return kxx + kyy - 2.0 * kxy


def mmd2_unbiased(x: Any, y: Any) -> float:
    """Unbiased estimate of MMD^2 with the cubic polynomial kernel of KID.

    With ``k(a, b) = (a . b / d + 1)^3`` (Binkowski et al., 2018, the kernel of KID) and
    samples ``x_1..x_m ~ P``, ``y_1..y_n ~ Q`` (Gretton et al., 2012, the U-statistic):

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(mn) sum_{i, j} k(x_i, y_j).

    Its expectation is MMD^2(P, Q) exactly, at every m and n (hence 0 when P = Q: the
    estimate is then as often negative as positive); the diagonal terms i = j, which would
    add a positive bias of order 1/m, are left out.  Kernel sums are blocked (memory
    O(block * n)), in float64.

    Args:
        x: (m, d) features, m >= 2.  y: (n, d) features, n >= 2.

    Returns:
        the estimate (a float, possibly < 0).
    """
    xa = _features(x, "x", min_rows=2)
    ya = _features(y, "y", min_rows=2)
    _same_dim(xa, ya, "x", "y")
    return _mmd2_unbiased(xa, ya)


def kid(real_features: Any, fake_features: Any, *, n_subsets: int = 100,
        subset_size: int | None = None, rng: RngLike = None) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al., 2018): mean and spread over subsets.

    Each of ``n_subsets`` rounds draws ``subset_size`` rows of each set without replacement
    and computes :func:`mmd2_unbiased` (cubic polynomial kernel) on them; the KID is the
    mean of these estimates, unbiased like each of them, so unlike FID (whose bias falls
    roughly like 1/n and differs between models, which can flip rankings with n) it can
    be compared across sample sizes.  The standard deviation (ddof = 0) is the spread of
    one estimate at ``subset_size`` samples: report KID as mean +- std.  It is not the
    standard error of the mean: the subsets overlap, so the estimates are not independent.

    Args:
        real_features: (N, d) features of real data.  fake_features: (M, d) generated.
        n_subsets: number of subsets.
        subset_size: rows per subset, 2 <= subset_size <= min(N, M)
            (default: min(1000, N, M)).
        rng: NumPy Generator, int seed or None (the subsets).

    Returns:
        (mean, std) of the subsets' unbiased MMD^2.
    """
    real = _features(real_features, "real_features", min_rows=2)
    fake = _features(fake_features, "fake_features", min_rows=2)
    _same_dim(real, fake, "real_features", "fake_features")
    n_subsets = check_positive_int(n_subsets, "n_subsets")
    largest = min(real.shape[0], fake.shape[0])
    if subset_size is None:
        subset_size = min(1000, largest)
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    if subset_size > largest:
        raise ValueError(f"subset_size: expected at most min(N, M) = {largest} rows, "
                         f"got {subset_size}")
    rng = as_rng(rng)
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        r = real[rng.choice(real.shape[0], subset_size, replace=False)]  # (s, d)
        f = fake[rng.choice(fake.shape[0], subset_size, replace=False)]  # (s, d)
        values[i] = _mmd2_unbiased(r, f)
    return float(values.mean()), float(values.std())


# ----------------------------------------------------------------------------------------------
# Precision-recall distributions (Sajjadi et al. 2018)
# ----------------------------------------------------------------------------------------------


def prd_from_histograms(real_hist: Any, fake_hist: Any, num_angles: int = 1001,
                        epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """The PRD curve of two discrete distributions (Sajjadi et al., 2018, Theorem 2).

    For the reference law P (``real_hist``) and the model Q (``fake_hist``) on the same
    bins, and slopes ``lambda = tan(angle)``, angles evenly spaced in (0, pi/2):
    ``alpha(lambda) = sum_w min(lambda P(w), Q(w))`` (precision) and
    ``beta(lambda) = alpha(lambda) / lambda`` (recall), computed by
    :func:`coursekit.quality_diversity.prd_alpha_beta`.  The pairs trace the frontier of
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
    # one home for the frontier formulas: quality_diversity (imported here, since it
    # imports this module's feature checks)
    from coursekit.quality_diversity import prd_alpha_beta

    precision, recall = prd_alpha_beta(p, q, slopes)  # (A,) alpha, (A,) beta
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


def _mann_whitney_z(d_gen: np.ndarray, d_test: np.ndarray) -> tuple[float, float]:
    """Meehan et al.'s Z_U of two samples of distances: (U, Z_U).

    ``U = #{(i, j): d_gen_i > d_test_j} + #ties / 2`` (from the rank sum of ``d_gen`` in the
    pooled sample, ties at their average rank), standardised under H0 "same law":
    ``Z_U = (U - m t / 2) / sqrt(m t (m + t + 1) / 12)``.  Z_U << 0: generated samples are
    closer to the training set than test samples are.
    """
    m, t = d_gen.size, d_test.size
    ranks = stats.rankdata(np.concatenate([d_gen, d_test]))  # (m + t,) average ranks
    u = float(ranks[:m].sum() - m * (m + 1) / 2.0)  # pairs won by a generated distance
    return u, (u - m * t / 2.0) / math.sqrt(m * t * (m + t + 1) / 12.0)


class CellMemorisationTest(NamedTuple):
    """Result of :func:`memorisation_ct` (K = ``n_cells``)."""

    #: C_T: the cells' Z_U averaged with the test shares as weights, over the kept cells.
    statistic: float
    #: (K,) Z_U of each cell (0.0 for a cell without generated samples; never kept).
    cell_z: np.ndarray
    #: (K,) P_n(pi): share of the test points in each cell (the weights).
    cell_weight: np.ndarray
    #: (K,) number of test points in each cell.
    n_test: np.ndarray
    #: (K,) number of generated samples in each cell.
    n_generated: np.ndarray
    #: (K,) cells counted in C_T (Pi_tau: enough generated samples).
    kept: np.ndarray
    #: (K, d) the k-means centres of the training set that define the cells.
    centres: np.ndarray


def memorisation_ct(train: Any, test: Any, generated: Any, n_cells: int = 5, *,
                    min_generated: int = 20, rng: RngLike = None) -> CellMemorisationTest:
    """Meehan et al. (2020)'s data-copying statistic C_T, cell by cell.

    The training set is cut into ``n_cells`` k-means cells (the course's
    :func:`coursekit.gmm.kmeans`); each test point and each generated sample goes to the
    cell of its nearest centre.  In each cell pi, the distances of the test points (L_pi(P_n))
    and of the generated samples (L_pi(Q_m)) to their nearest training point *of the same
    cell* are compared by the Mann-Whitney Z_U (:func:`_mann_whitney_z`), and

        C_T = sum_{pi in Pi_tau} P_n(pi) Z_U(pi) / sum_{pi in Pi_tau} P_n(pi),

    with P_n(pi) the share of test points in pi and Pi_tau the cells that hold at least
    ``min_generated`` generated samples (the paper's tau = min_generated / m: too few samples
    give no usable Z_U; the default 20 is this module's choice).

    What it detects: C_T << 0 (Meehan et al. use about -3 as the threshold) when, in the
    cells that carry the test mass, generated samples sit closer to training points than
    fresh data do -- replayed or slightly perturbed training points.  C_T >> 0 means the
    opposite (samples farther than fresh data: underfitting).  Cells are the point: the
    global test (:func:`nearest_neighbour_memorisation`) averages over the whole space, so
    underfitting in one region can hide copying in another; ``cell_z`` shows each region.
    What it cannot detect: samples that are real data *not* in the training set (a generator
    that returns held-out images is "fresh"); copying in cells dropped for lack of generated
    samples, or of a small fraction of samples (diluted in the rank statistic); copying
    invisible in the chosen feature space; and a weighted average can still cancel a copying
    cell against an underfitting one, hence the per-cell values.  Under H0 each Z_U is about
    N(0, 1), so C_T has standard deviation at most 1.

    Args:
        train: (N, d) the training set the model saw (or its features).
        test: (T, d) held-out real data from the same law.
        generated: (M, d) generated samples.
        n_cells: K, number of k-means cells (every cell needs training and test points).
        min_generated: generated samples a cell needs to count in C_T.
        rng: NumPy Generator, int seed or None (the k-means seeding).

    Returns:
        a :class:`CellMemorisationTest`.
    """
    from coursekit.gmm import kmeans
    from coursekit.numerics import sq_dists

    tr = _features(train, "train")
    te = _features(test, "test")
    g = _features(generated, "generated")
    _same_dim(tr, te, "train", "test")
    _same_dim(tr, g, "train", "generated")
    n_cells = check_positive_int(n_cells, "n_cells")
    min_generated = check_positive_int(min_generated, "min_generated")
    if n_cells > tr.shape[0]:
        raise ValueError(f"n_cells: expected at most N = {tr.shape[0]} training points, "
                         f"got {n_cells}")
    centres, tr_cell = kmeans(tr, n_cells, rng=as_rng(rng))  # (K, d), (N,)
    te_cell = sq_dists(te, centres).argmin(1)  # (T,) cell of the nearest centre
    g_cell = sq_dists(g, centres).argmin(1)  # (M,)
    n_train = np.bincount(tr_cell, minlength=n_cells)
    n_test = np.bincount(te_cell, minlength=n_cells)
    n_gen = np.bincount(g_cell, minlength=n_cells)
    for name, counts in (("training", n_train), ("test", n_test)):
        if np.any(counts == 0):
            raise ValueError(f"n_cells: cell {int(np.argmin(counts))} of {n_cells} has no "
                             f"{name} points; use fewer cells")
    cell_z = np.zeros(n_cells)
    for c in range(n_cells):
        if n_gen[c] == 0:
            continue
        ref = tr[tr_cell == c]  # the cell's training points
        _, cell_z[c] = _mann_whitney_z(nearest_neighbour_distances(g[g_cell == c], ref),
                                       nearest_neighbour_distances(te[te_cell == c], ref))
    weight = n_test / te.shape[0]  # (K,) P_n(pi)
    kept = n_gen >= min_generated
    if not kept.any():
        raise ValueError(f"min_generated: no cell holds {min_generated} generated samples "
                         f"(largest: {int(n_gen.max())}); use fewer cells or more samples")
    statistic = float(weight[kept] @ cell_z[kept] / weight[kept].sum())
    return CellMemorisationTest(statistic=statistic, cell_z=cell_z, cell_weight=weight,
                                n_test=n_test, n_generated=n_gen, kept=kept, centres=centres)


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
