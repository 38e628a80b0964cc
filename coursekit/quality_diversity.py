"""The quality-diversity trade-off: precision and recall as divergences, and sample-level audits.

Lecture 4 of the course, after :mod:`coursekit.metrics`.  Two views of "how good are the
samples" (precision, quality) against "how much of the data do they cover" (recall,
diversity):

1. **Distributions** (everything exact when the densities are known).
   For a reference law P (density p) and a model Q (density q), and a slope lambda in [0, inf],

       alpha(lambda) = sum_w min(lambda p(w), q(w))        (precision)
       beta(lambda)  = sum_w min(p(w), q(w) / lambda)      (recall) = alpha(lambda) / lambda

   trace the frontier of the precision-recall set PRD(Q, P) (Sajjadi et al. 2018, Theorem 2;
   Simon et al. 2019 for arbitrary distributions and the end points lambda = 0 and inf:
   beta(0) = P(supp Q), alpha(inf) = Q(supp P)).
   :func:`prd_alpha_beta` and :func:`prd_curve_exact` for probability vectors,
   :func:`prd_curve_mixtures` for two Gaussian mixtures (importance-sampled, with standard
   errors).  Each point is also a classification error: alpha(lambda) =
   min_A [lambda P(A) + Q(A^c)], the best weighted error of a test "P or Q?"
   (Simon et al. 2019).
   :func:`pr_divergence` (Verine et al. 2023): the f-divergence with
   f_lambda(u) = max(lambda u, 1) - max(lambda, 1), which equals min(lambda, 1) - alpha(lambda):
   minimising it moves the PR frontier outwards at slope lambda, and every f-divergence is
   a mixture of them, D_f = int_0^inf D_lambda f''(1/lambda) / lambda^3 d lambda.
   :func:`pr_f_divergence`: the same divergence as an f-GAN row of :mod:`coursekit.gan`.

2. **Samples, point by point** (Alaa et al. 2022, "How faithful is your synthetic data?").
   :func:`alpha_precision_beta_recall`: the share of generated points inside the real data's
   alpha-support (the smallest set of real probability alpha, approximated by a ball around
   the real centre with the alpha-quantile of the distances as radius), and the share of real
   points inside the generated data's beta-support; identical laws give the diagonal
   P_alpha = alpha, R_beta = beta.  :func:`authenticity`: the share of generated points that
   are farther from their nearest real point than that point is from its own nearest real
   neighbour (a copy of a training point is not authentic).

References: Sajjadi et al. (2018); Simon, Webster & Rabin (2019); Verine, Negrevergne,
Pydi & Chevaleyre (2023); Alaa, van Breugel, Saveliev & van der Schaar (2022).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import special
from scipy.spatial import cKDTree

from coursekit.gan import FDivergence
from coursekit.gmm import GaussianMixture

# One home for the feature-array checks shared with the other sample metrics.
from coursekit.metrics import _features, _same_dim
from coursekit.numerics import logsumexp, sq_dists
from coursekit.validation import (
    RngLike,
    as_rng,
    check_array,
    check_positive,
    check_positive_int,
    check_probabilities,
)

__all__ = [
    "AlphaBetaCurves", "Authenticity", "MixturePRD", "PRDCurve", "alpha_precision_beta_recall",
    "authenticity", "pr_divergence", "pr_f_divergence", "prd_alpha_beta", "prd_curve_exact",
    "prd_curve_mixtures",
]

#: Entries of a distance block held in memory at once by :func:`authenticity` (8 bytes each).
_BLOCK_ENTRIES = 2**22
#: Up to this dimension :func:`authenticity` uses a k-d tree, above it blocked products.
_TREE_MAX_DIM = 8

# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two probability vectors on the same support: (B,), (B,)."""
    p = check_probabilities(p, "p")
    q = check_probabilities(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"q: expected a probability vector on the {p.size} bins of p, "
                         f"got {q.size} entries")
    return p, q


def _slopes(lambdas: Any) -> np.ndarray:
    lam = check_array(lambdas, "lambdas", ndim=(0, 1), finite=False)
    if lam.size == 0:
        raise ValueError("lambdas: expected at least one slope")
    if np.any(np.isnan(lam)) or np.any(lam < 0):
        raise ValueError("lambdas: expected slopes in [0, inf] (no NaN, none negative)")
    return lam


def _angles_to_slopes(n_angles: Any) -> np.ndarray:
    """(A,) slopes lambda = tan(theta), theta evenly spaced in [0, pi/2], end points exact."""
    n_angles = check_positive_int(n_angles, "n_angles", minimum=3)
    lam = np.tan(np.linspace(0.0, math.pi / 2, n_angles))
    lam[0], lam[-1] = 0.0, math.inf  # tan(pi/2) is 1.6e16 in floating point, not inf
    return lam


# ----------------------------------------------------------------------------------------------
# 1. Precision-recall of two known distributions (Sajjadi et al. 2018; Simon et al. 2019)
# ----------------------------------------------------------------------------------------------


class PRDCurve(NamedTuple):
    """The PRD frontier at slopes lambda: points (precision alpha, recall beta)."""

    slopes: np.ndarray     #: (A,) lambda in [0, inf]
    precision: np.ndarray  #: (A,) alpha(lambda)
    recall: np.ndarray     #: (A,) beta(lambda)


def prd_alpha_beta(p: Any, q: Any, lambdas: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exact precision alpha(lambda) and recall beta(lambda) of two discrete laws.

    Sajjadi et al. (2018), Theorem 2, with the limits of Simon et al. (2019) at the ends:

        alpha(lambda) = sum_w min(lambda p_w, q_w),   alpha(inf) = sum_{p_w > 0} q_w,
        beta(lambda)  = sum_w min(p_w, q_w / lambda), beta(0)    = sum_{q_w > 0} p_w.

    Args:
        p: (B,) reference (data) probabilities P.
        q: (B,) model probabilities Q on the same bins.
        lambdas: a slope or (A,) slopes in [0, inf].

    Returns:
        alpha, beta: arrays of the shape of ``lambdas``.
    """
    p, q = _pair(p, q)
    lam = _slopes(lambdas)
    flat = lam.reshape(-1)
    alpha = np.empty(flat.shape)
    beta = np.empty(flat.shape)
    for i, s in enumerate(flat):
        # lambda = inf would give inf * 0 = NaN on p's zeros, lambda = 0 a q / 0: the limits
        alpha[i] = q[p > 0].sum() if math.isinf(s) else np.minimum(s * p, q).sum()
        beta[i] = p[q > 0].sum() if s == 0 else np.minimum(p, q / s).sum()
    return alpha.reshape(lam.shape), beta.reshape(lam.shape)


def prd_curve_exact(p: Any, q: Any, n_angles: int = 1001) -> PRDCurve:
    """The exact PRD curve of two discrete laws, slopes lambda = tan(theta).

    theta runs evenly over [0, pi/2], both ends included (lambda = 0 gives (0, P(supp Q)),
    lambda = inf gives (Q(supp P), 0)); see :func:`prd_alpha_beta` for the formulas.
    Identical laws give alpha = min(lambda, 1), beta = min(1, 1 / lambda) (the point (1, 1) at
    lambda = 1); laws with disjoint supports give alpha = beta = 0.

    Args:
        p: (B,) reference probabilities P.  q: (B,) model probabilities Q.
        n_angles: number of slopes A, >= 3.

    Returns:
        :class:`PRDCurve` of (A,) arrays.
    """
    p, q = _pair(p, q)
    lam = _angles_to_slopes(n_angles)
    alpha, beta = prd_alpha_beta(p, q, lam)
    return PRDCurve(lam, alpha, beta)


def pr_divergence(p: Any, q: Any, lam: float) -> float:
    """The PR-divergence D_lambda-PR(P || Q) of two discrete laws (Verine et al. 2023).

    The f-divergence D_f(P || Q) = sum_w q_w f(p_w / q_w) with

        f_lambda(u) = max(lambda u, 1) - max(lambda, 1),

    (convex, f_lambda(1) = 0; where q_w = 0 the term is p_w lim_{u->inf} f(u)/u = lambda p_w),
    so that D = sum_w max(lambda p_w, q_w) - max(lambda, 1) = min(lambda, 1) - alpha(lambda):
    the distance of the PRD frontier's point at slope lambda from the ideal one.
    0 <= D <= min(lambda, 1); D = 0 iff alpha(lambda) = min(lambda, 1).

    Args:
        p: (B,) reference probabilities P.  q: (B,) model probabilities Q.
        lam: the slope lambda > 0 (lambda > 1 weighs precision, lambda < 1 recall).

    Returns:
        D_lambda-PR(P || Q) as a float.
    """
    p, q = _pair(p, q)
    lam = check_positive(lam, "lam")
    # D = min(lam, 1) - alpha = sum (q - lam p)_+ (lam >= 1) or sum (lam p - q)_+ (lam < 1), as
    # p and q sum to 1: a sum of non-negatives, not sum max(lam p, q) - lam, which cancels to 0
    # for a large lam
    gap = q - lam * p if lam >= 1.0 else lam * p - q
    return float(np.maximum(gap, 0.0).sum())


def _is_t(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def pr_f_divergence(lam: float) -> FDivergence:
    """The PR-divergence as an f-GAN row (:class:`coursekit.gan.FDivergence`), for training.

    Generator f_lambda(u) = max(lambda u, 1) - max(lambda, 1) (Verine et al. 2023); its
    Fenchel conjugate over u >= 0 is

        f*(t) = max(t / lambda, 0) - 1 + max(lambda, 1)   for t <= lambda,   +inf above,

    and the critic's activation g(v) = lambda sigmoid(v) maps the logits onto [0, lambda], which
    holds the optimal critic f'(p/q) (0 where lambda p < q, lambda where lambda p > q). The
    f-GAN bound (Nowozin et al. 2016, eq. 6) then reads

        E_P[lambda s(X)] - E_Q[s(X)] + 1 - max(lambda, 1),   s = sigmoid(V) in [0, 1],

    a weighted classification score, tight (= :func:`pr_divergence`) for s = 1[lambda p > q].
    Its gradient vanishes where the critic is sure (s near 0 or 1), which is why Verine et al.
    train the critic with another divergence; use this row with :mod:`coursekit.gan`'s
    f-GAN losses (``divergence=pr_f_divergence(lam)``).

    Args:
        lam: the slope lambda > 0.

    Returns:
        a :class:`coursekit.gan.FDivergence` (functions of arrays or tensors).
    """
    lam = check_positive(lam, "lam")
    top = max(lam, 1.0)

    def f(u: Any) -> Any:
        u = u if _is_t(u) else np.asarray(u, dtype=float)
        return (torch.clamp(lam * u, min=1.0) if _is_t(u) else np.maximum(lam * u, 1.0)) - top

    def conjugate(t: Any) -> Any:
        t = t if _is_t(t) else np.asarray(t, dtype=float)
        if _is_t(t):
            val = torch.clamp(t / lam, min=0.0) - 1.0 + top
            return torch.where(t <= lam, val, torch.full_like(t, math.inf))
        return np.where(t <= lam, np.maximum(t / lam, 0.0) - 1.0 + top, np.inf)

    def activation(v: Any) -> Any:
        return lam * (torch.sigmoid(v) if _is_t(v) else special.expit(np.asarray(v, float)))

    def conjugate_activation(v: Any) -> Any:  # f*(lambda sigmoid(v)) = sigmoid(v) - 1 + top
        return (torch.sigmoid(v) if _is_t(v) else special.expit(np.asarray(v, float))) - 1.0 + top

    return FDivergence(f"PR-divergence (lambda = {lam:g})", f, conjugate, activation,
                       (-math.inf, lam), r"\int \max(\lambda p, q) - \max(\lambda, 1)",
                       conjugate_activation)


# ----------------------------------------------------------------------------------------------
# ... of two Gaussian mixtures, by importance sampling
# ----------------------------------------------------------------------------------------------


class MixturePRD(NamedTuple):
    """The PRD frontier of two mixtures, Monte Carlo, with the standard error of each point."""

    slopes: np.ndarray        #: (A,) lambda in [0, inf]
    precision: np.ndarray     #: (A,) estimate of alpha(lambda)
    recall: np.ndarray        #: (A,) estimate of beta(lambda)
    precision_se: np.ndarray  #: (A,) its standard error
    recall_se: np.ndarray     #: (A,) its standard error


def _as_mixture(m: Any, name: str) -> GaussianMixture:
    if isinstance(m, GaussianMixture):
        return m
    if isinstance(getattr(m, "mixture", None), GaussianMixture):  # diffusion.NoisedGaussianMixture
        return m.mixture
    if isinstance(m, (tuple, list)) and len(m) == 3:
        try:
            return GaussianMixture(*m)
        except ValueError as err:
            raise ValueError(f"{name}: not a valid (weights, means, covariances) mixture: {err}") \
                from None
    raise TypeError(f"{name}: expected a gmm.GaussianMixture, a diffusion.NoisedGaussianMixture "
                    f"or a tuple (weights, means, covariances), got {type(m).__name__}")


def prd_curve_mixtures(p_mixture: Any, q_mixture: Any, n_angles: int = 201, *,
                       n_samples: int = 200_000, rng: RngLike = None) -> MixturePRD:
    """The PRD curve of two Gaussian mixtures P, Q, by importance sampling with error bars.

    With m = (p + q) / 2 as the proposal, alpha(lambda) = E_m[min(lambda p, q) / m] and
    beta(lambda) = E_m[min(p, q / lambda) / m] (the integrals of :func:`prd_alpha_beta`).
    Half the points are drawn from P and half from Q (stratified), so

        alpha_hat = (mean_P h + mean_Q h) / 2,   se = sqrt(var_P h / n_P + var_Q h / n_Q) / 2,

    for h = min(lambda p, q) / m, and the same for beta.  The ratios are bounded
    (h <= 2 min(lambda, 1), and <= 2 min(1, 1/lambda) for beta), so the error is
    O(1 / sqrt(n_samples)) at every slope; identical mixtures give the exact curve with zero
    error; the ends alpha(inf) = beta(0) = 1 are exact (Gaussians have full support).
    Densities are evaluated in log space (:meth:`GaussianMixture.log_prob`).

    Args:
        p_mixture: the reference P; q_mixture: the model Q.  Each a
            :class:`coursekit.gmm.GaussianMixture`, a
            :class:`coursekit.diffusion.NoisedGaussianMixture` (its noise-free mixture) or a
            tuple (weights (K,), means (K, d), covariances (K, d, d)).
        n_angles: number of slopes A (theta evenly spaced in [0, pi/2], ends included).
        n_samples: total Monte Carlo points (>= 4; half from each mixture).
        rng: NumPy Generator, int seed or None.

    Returns:
        :class:`MixturePRD` of (A,) arrays.
    """
    pm = _as_mixture(p_mixture, "p_mixture")
    qm = _as_mixture(q_mixture, "q_mixture")
    if pm.dim != qm.dim:
        raise ValueError(f"q_mixture: expected dimension {pm.dim} like p_mixture, got {qm.dim}")
    lam = _angles_to_slopes(n_angles)
    n_samples = check_positive_int(n_samples, "n_samples", minimum=4)
    rng = as_rng(rng)
    n_p = n_samples // 2
    x = np.concatenate([pm.sample(n_p, rng)[0], qm.sample(n_samples - n_p, rng)[0]])  # (n, d)
    log_p, log_q = pm.log_prob(x), qm.log_prob(x)                     # (n,), (n,)
    log_m = logsumexp(np.stack([log_p, log_q], 1), axis=1) - math.log(2.0)  # (n,) log m
    rp, rq = np.exp(log_p - log_m), np.exp(log_q - log_m)             # p/m, q/m in [0, 2]
    from_p = np.arange(x.shape[0]) < n_p

    def stratified(h: np.ndarray) -> tuple[float, float]:
        a, b = h[from_p], h[~from_p]
        mean = 0.5 * (a.mean() + b.mean())
        se = 0.5 * math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        return mean, se

    out = np.zeros((4, lam.size))
    # The ends are exact: Gaussian densities are positive everywhere, so alpha(inf) = Q(supp P)
    # = 1 and beta(0) = P(supp Q) = 1 (an estimate of them would only add noise).
    out[0, -1] = out[1, 0] = 1.0
    for i, s in enumerate(lam[1:-1], start=1):
        out[0, i], out[2, i] = stratified(np.minimum(s * rp, rq))  # alpha(lambda), its s.e.
        out[1, i], out[3, i] = stratified(np.minimum(rp, rq / s))  # beta(lambda), its s.e.
    return MixturePRD(lam, out[0], out[1], out[2], out[3])


# ----------------------------------------------------------------------------------------------
# 2. Sample-level: alpha-precision, beta-recall, authenticity (Alaa et al. 2022)
# ----------------------------------------------------------------------------------------------


class AlphaBetaCurves(NamedTuple):
    """alpha-precision and beta-recall curves and their integrated scores (Alaa et al. 2022)."""

    levels: np.ndarray                 #: (L,) alpha = beta levels, evenly spaced in [0, 1]
    alpha_precision: np.ndarray        #: (L,) P_alpha
    beta_recall: np.ndarray            #: (L,) R_beta
    integrated_precision: float        #: IP_alpha = 1 - 2 int_0^1 |P_alpha - alpha| d alpha
    integrated_recall: float           #: IR_beta  = 1 - 2 int_0^1 |R_beta - beta| d beta


def _support_shares(inside_of: np.ndarray, centre: np.ndarray, others: np.ndarray,
                    levels: np.ndarray) -> np.ndarray:
    """Share of ``others`` in the balls B(centre, r_a), r_a the a-quantiles of |inside_of - c|."""
    radii = np.quantile(np.linalg.norm(inside_of - centre, axis=1), levels)  # (L,) r_a
    dist = np.sort(np.linalg.norm(others - centre, axis=1))                  # (m,)
    return np.searchsorted(dist, radii, side="right") / dist.size           # (L,) #{d <= r} / m


def _integrated(levels: np.ndarray, curve: np.ndarray) -> float:
    gap = np.abs(curve - levels)
    return float(1.0 - 2.0 * np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(levels)))  # trapezoid


def alpha_precision_beta_recall(real_features: Any, fake_features: Any, n_levels: int = 101, *,
                                center: Any = None) -> AlphaBetaCurves:
    """alpha-precision and beta-recall of Alaa et al. (2022), minimum-volume sets as balls.

    The alpha-support S_r^alpha of the real law is the smallest set of real probability alpha;
    like the paper (whose features come from a one-class embedding that makes the real data
    a ball around a centre c), it is approximated by the ball B(c, r_alpha), r_alpha the
    alpha-quantile of the distances ||x_r - c||.  Then (Alaa et al. 2022, Sec. 3)

        P_alpha = P(X_g in S_r^alpha)   (alpha-precision: generated points in the typical
                                          alpha-part of the data),
        R_beta  = P(X_r in S_g^beta)    (beta-recall: real points in the typical beta-part of
                                          the model; S_g^beta a ball around the generated
                                          mean with the beta-quantile radius),

    estimated by shares of the samples, and summarised by IP_alpha = 1 - 2 int |P_alpha - alpha|
    and IR_beta = 1 - 2 int |R_beta - beta| (1 on the diagonal, i.e. for identical laws).
    For identical laws the standard error of a point is about
    sqrt(a (1 - a) (1/n + 1/m)) (one share and one quantile).

    Note: the authors' code estimates R_beta differently (a real point counts if its nearest
    generated point is closer than its nearest real neighbour, a k-NN coverage test), which
    gives about beta / 2, not beta, for identical laws; this function follows the definition.
    The ball is a minimum-volume set only for isotropic, unimodal features: for other
    features, standardise or embed them first.

    Args:
        real_features: (n, d) real features, n >= 2.
        fake_features: (m, d) generated features, m >= 2.
        n_levels: number L of levels alpha = beta in [0, 1], >= 3.
        center: (d,) centre c of the real alpha-supports (default: the mean of the real
            features).

    Returns:
        :class:`AlphaBetaCurves`.
    """
    real = _features(real_features, "real_features", 2)
    fake = _features(fake_features, "fake_features", 2)
    _same_dim(real, fake, "real_features", "fake_features")
    n_levels = check_positive_int(n_levels, "n_levels", minimum=3)
    if center is None:
        c_real = real.mean(0)
    else:
        c_real = check_array(center, "center", ndim=1)
        if c_real.shape != (real.shape[1],):
            raise ValueError(f"center: expected shape ({real.shape[1]},), got {c_real.shape}")
    levels = np.linspace(0.0, 1.0, n_levels)
    precision = _support_shares(real, c_real, fake, levels)        # P_alpha
    recall = _support_shares(fake, fake.mean(0), real, levels)     # R_beta
    return AlphaBetaCurves(levels, precision, recall, _integrated(levels, precision),
                           _integrated(levels, recall))


class Authenticity(NamedTuple):
    """Authenticity (Alaa et al. 2022, Sec. 3.3): share and per-sample verdicts."""

    authenticity: float        #: A = share of authentic generated points
    authentic: np.ndarray      #: (m,) bool, d_g > d_r for each generated point
    nearest_real: np.ndarray   #: (m,) index of each generated point's nearest real point


def authenticity(real_features: Any, fake_features: Any) -> Authenticity:
    """Share of generated points that are not copies of a real one (Alaa et al. 2022).

    For a generated point g, let r* be its nearest real point, d_g = ||g - r*|| and d_r the
    distance of r* to its own nearest real neighbour.  g is authentic iff d_g > d_r: it lies
    farther from r* than the real data themselves come to r*.  A copy of a training point
    (d_g = 0) is never authentic (unless the training set holds a duplicate of it, where
    d_r = 0 too and a near copy passes).  A fresh sample of the same law is authentic with a
    probability well below 1 that grows with the dimension (1/3 in 1-D as n -> inf; about
    0.38, 0.49, 0.71 for Gaussians in 2, 5, 20 dimensions at n = 5000): the test is a
    per-sample audit of copying, not a proof of novelty.  Pass the *training* features as
    ``real_features`` to audit memorisation.  Neighbours come from a k-d tree (d <= 8) or
    from blocked matrix products (memory O(block * n)); the distances compared are summed
    pair by pair, so a copy gives exactly 0 and equal distances compare equal.

    Args:
        real_features: (n, d) training features, n >= 2.
        fake_features: (m, d) generated features.

    Returns:
        :class:`Authenticity` (the share A, the (m,) verdicts, the (m,) nearest real indices).
    """
    real = _features(real_features, "real_features", 2)
    fake = _features(fake_features, "fake_features", 1)
    _same_dim(real, fake, "real_features", "fake_features")
    if real.shape[1] <= _TREE_MAX_DIM:
        # a k-d tree is fast in low dimension and sums each distance pair by pair
        tree = cKDTree(real)
        d_rr, j_r = tree.query(real, k=2)       # (n, 2): the point itself (or a twin) and its NN
        # with a duplicate, column 0 may be the twin and column 1 the point: both at 0, right
        d_r2 = d_rr[:, 1] ** 2                   # (n,)
        idx = tree.query(fake, k=1)[1].astype(np.int64)  # (m,) r* of each generated point
    else:
        idx, d_r2 = _nearest_blocked(fake, real)
    # d_g^2 summed pair by pair, so that a copy gives exactly 0 and equal distances compare equal
    d_g2 = ((fake - real[idx]) ** 2).sum(1)      # (m,)
    authentic = d_g2 > d_r2[idx]
    return Authenticity(float(authentic.mean()), authentic, idx)


def _nearest_blocked(fake: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m,) nearest real index of each fake row; (n,) squared NN distance of each real row.

    Blocked matrix products (:func:`coursekit.numerics.sq_dists`, memory O(block * n)) choose
    the neighbours; the squared distance to the chosen one is then summed pair by pair, so a
    duplicate gives exactly 0 whatever the rounding of the product.
    """
    n = real.shape[0]
    step = max(1, _BLOCK_ENTRIES // n)
    idx = np.empty(fake.shape[0], dtype=np.int64)
    for s in range(0, fake.shape[0], step):
        idx[s:s + step] = sq_dists(fake[s:s + step], real).argmin(1)        # (r, n) -> (r,)
    j = np.empty(n, dtype=np.int64)
    for s in range(0, n, step):
        d2 = sq_dists(real[s:s + step], real)                                 # (r, n)
        d2[np.arange(d2.shape[0]), np.arange(s, s + d2.shape[0])] = np.inf   # not itself
        j[s:s + step] = d2.argmin(1)
    return idx, ((real - real[j]) ** 2).sum(1)
