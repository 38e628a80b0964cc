"""Divergences and distances between probability distributions (Lecture 1, part II).

The functions here are the quantities of the slides "Divergences": the
Kullback–Leibler divergence (closed form for Gaussians, Monte Carlo
otherwise), the total variation distance, the Wasserstein-1 distance in 1-D
and two sample-based distances used later in the book to score samplers
(sliced Wasserstein and the maximum mean discrepancy).

Conventions: samples are NumPy arrays of shape (n,) for 1-D data or (n, d);
every function returns a Python ``float`` and raises ``ValueError`` on bad
input instead of returning NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from coursekit.numerics import sq_dists
from coursekit.validation import (
    RngLike,
    as_rng,
    check_array,
    check_positive,
    check_positive_int,
    check_probabilities,
    check_spd,
)

__all__ = [
    "kl_gaussian",
    "kl_monte_carlo",
    "total_variation",
    "wasserstein_1d",
    "sliced_wasserstein",
    "mmd",
]


def _gaussian_params(mean: Any, cov: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a Gaussian's (mean, cov); return the mean (d,) and the Cholesky factor (d, d).

    A scalar mean with a scalar variance is read as a 1-D Gaussian.
    """
    m = check_array(mean, f"mean{name}", ndim=(0, 1))
    c = check_array(cov, f"cov{name}", ndim=(0, 2))
    if m.ndim == 0:
        m = m.reshape(1)
    if c.ndim == 0:
        c = c.reshape(1, 1)
    if c.shape != (m.size, m.size):
        raise ValueError(
            f"cov{name}: expected shape ({m.size}, {m.size}) to match mean{name} of length "
            f"{m.size}, got {c.shape}"
        )
    return m, check_spd(c, f"cov{name}")


def kl_gaussian(mean0: Any, cov0: Any, mean1: Any, cov1: Any) -> float:
    r"""Closed-form :math:`D_{KL}(\mathcal N(m_0, \Sigma_0) \,\|\, \mathcal N(m_1, \Sigma_1))`.

    .. math::
        D_{KL} = \tfrac12\Big[\operatorname{tr}(\Sigma_1^{-1}\Sigma_0)
                 + (m_1 - m_0)^\top \Sigma_1^{-1} (m_1 - m_0) - d
                 + \log\det\Sigma_1 - \log\det\Sigma_0\Big].

    Computed with Cholesky factors :math:`\Sigma_i = L_i L_i^\top` (triangular
    solves instead of inverses, log-determinants as sums of logs of the
    diagonal), which stays accurate for ill-conditioned covariances.

    Args:
        mean0, mean1: (d,) means (or scalars for d = 1).
        cov0, cov1: (d, d) symmetric positive-definite covariances (or scalar variances).

    Returns:
        the KL divergence in nats (>= 0).
    """
    m0, l0 = _gaussian_params(mean0, cov0, "0")
    m1, l1 = _gaussian_params(mean1, cov1, "1")
    if m0.size != m1.size:
        raise ValueError(f"mean0 and mean1: dimensions differ ({m0.size} vs {m1.size})")
    d = m0.size
    # tr(S1^{-1} S0) = ||L1^{-1} L0||_F^2 ; Mahalanobis term = ||L1^{-1} (m1 - m0)||^2
    a = np.linalg.solve(l1, l0)
    b = np.linalg.solve(l1, m1 - m0)
    logdet0 = 2.0 * np.sum(np.log(np.diag(l0)))
    logdet1 = 2.0 * np.sum(np.log(np.diag(l1)))
    kl = 0.5 * (np.sum(a * a) + np.sum(b * b) - d + logdet1 - logdet0)
    # Round-off can give -1e-16 for identical Gaussians; KL is >= 0 by Gibbs' inequality.
    return float(max(kl, 0.0))


def _to_numpy(values: Any, name: str) -> np.ndarray:
    # check_array detaches tensors; NaN is reported with its own message below.
    return check_array(values, name, finite=False).reshape(-1)


def kl_monte_carlo(
    log_p: Callable[[Any], Any],
    log_q: Callable[[Any], Any],
    samples: Any,
    *,
    return_stderr: bool = False,
) -> float | tuple[float, float]:
    r"""Monte Carlo estimate of :math:`D_{KL}(P\|Q) = \mathbb E_{X\sim P}[\log p(X) - \log q(X)]`.

    Args:
        log_p, log_q: log-densities; each maps ``samples`` to an (n,) array (NumPy or torch).
        samples: (n, ...) draws from P (at least 2).
        return_stderr: also return the standard error of the estimate
            (standard deviation of the log-ratios over sqrt(n)).

    Returns:
        the estimate in nats; ``inf`` when Q gives zero density to a sample of P
        (then P is not absolutely continuous w.r.t. Q and the KL is infinite).
        With ``return_stderr``: ``(estimate, stderr)``.
    """
    if not callable(log_p) or not callable(log_q):
        raise TypeError("log_p and log_q: expected callables returning log-densities")
    if isinstance(samples, (str, bytes)) or not hasattr(samples, "__len__"):
        raise TypeError(f"samples: expected an array of draws, got {type(samples).__name__}")
    # The draws themselves must be finite numbers, at least 2 of them (for the standard error).
    n = check_array(samples, "samples", min_rows=2).shape[0]
    lp = _to_numpy(log_p(samples), "log_p(samples)")
    lq = _to_numpy(log_q(samples), "log_q(samples)")
    if lp.shape != (n,) or lq.shape != (n,):
        raise ValueError(
            f"log_p and log_q: expected one log-density per sample, shape ({n},), "
            f"got {lp.shape} and {lq.shape}"
        )
    if n < 2:
        raise ValueError(f"samples: expected at least 2 samples, got {n}")
    if np.any(np.isnan(lp)) or np.any(np.isnan(lq)):
        raise ValueError("log_p or log_q returned NaN")
    if np.any(lp == -np.inf) or np.any(lp == np.inf) or np.any(lq == np.inf):
        raise ValueError(
            "log_p: a sample has zero (or infinite) density under P, so it cannot come from P; "
            "check that the samples are drawn from P"
        )
    if np.any(lq == -np.inf):
        return (np.inf, np.inf) if return_stderr else np.inf
    ratio = lp - lq
    est = float(ratio.mean())
    if return_stderr:
        return est, float(ratio.std(ddof=1) / np.sqrt(n))
    return est


def total_variation(p: Any, q: Any) -> float:
    r"""Total variation :math:`\mathrm{TV}(P, Q) = \tfrac12 \sum_i |p_i - q_i|` of two discrete laws.

    Equal to :math:`\sup_A |P(A) - Q(A)|`, reached at :math:`A = \{i : p_i > q_i\}`.

    Args:
        p, q: (k,) probability vectors on the same k outcomes.

    Returns:
        the distance, in [0, 1].
    """
    p = check_probabilities(p, "p")
    q = check_probabilities(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q: expected the same number of outcomes, got {p.size} and {q.size}")
    return float(min(0.5 * np.abs(p - q).sum(), 1.0))


def _check_1d_sample(x: Any, name: str) -> np.ndarray:
    arr = check_array(x, name, ndim=(1, 2))
    if arr.ndim == 2:
        if arr.shape[1] != 1:
            raise ValueError(f"{name}: expected a 1-D sample of shape (n,) or (n, 1), got {arr.shape}")
        arr = arr[:, 0]
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty sample")
    return arr


def wasserstein_1d(x: Any, y: Any) -> float:
    r"""Exact :math:`\mathcal W_1` between the empirical distributions of two 1-D samples.

    In 1-D, :math:`\mathcal W_1(P, Q) = \int_\mathbb{R} |F_P(t) - F_Q(t)|\,dt`: the two
    empirical CDFs are step functions that only change at the sample points, so
    the integral is a finite sum over the merged, sorted points. The samples
    may have different sizes.

    Args:
        x: (n,) sample of P; y: (m,) sample of Q.

    Returns:
        the distance (same unit as x).
    """
    x = np.sort(_check_1d_sample(x, "x"))
    y = np.sort(_check_1d_sample(y, "y"))
    t = np.sort(np.concatenate([x, y]))
    widths = np.diff(t)
    # CDFs on each interval [t_i, t_{i+1}): fraction of points <= t_i.
    f_x = np.searchsorted(x, t[:-1], side="right") / x.size
    f_y = np.searchsorted(y, t[:-1], side="right") / y.size
    return float(np.sum(np.abs(f_x - f_y) * widths))


def _check_two_samples(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = check_array(x, "x", ndim=(1, 2), min_rows=1)
    y = check_array(y, "y", ndim=(1, 2), min_rows=1)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y: dimensions differ ({x.shape[1]} vs {y.shape[1]})")
    return x, y


def sliced_wasserstein(
    x: Any,
    y: Any,
    n_projections: int = 200,
    rng: RngLike = None,
    *,
    projections: Any | None = None,
) -> float:
    r"""Monte Carlo sliced Wasserstein-1 distance between two samples in :math:`\mathbb R^d`.

    .. math::
        SW_1(P, Q) = \mathbb E_{\theta \sim \mathrm{Unif}(S^{d-1})}
        \big[\mathcal W_1(\theta^\top_\# P, \theta^\top_\# Q)\big],

    estimated by averaging the exact 1-D distance :func:`wasserstein_1d` over
    random directions. Projections are 1-Lipschitz, so :math:`SW_1 \le \mathcal W_1`.

    Args:
        x: (n, d) sample of P; y: (m, d) sample of Q.
        n_projections: number of random directions.
        rng: NumPy Generator, seed or None (for the directions).
        projections: optional (d, L) matrix of unit directions (columns); overrides
            ``n_projections`` and ``rng`` (to compare with another implementation).

    Returns:
        the estimate of :math:`SW_1`.
    """
    x, y = _check_two_samples(x, y)
    d = x.shape[1]
    if projections is None:
        n_projections = check_positive_int(n_projections, "n_projections")
        theta = as_rng(rng).standard_normal((d, n_projections))
        theta /= np.linalg.norm(theta, axis=0, keepdims=True)  # uniform on the sphere
    else:
        theta = check_array(projections, "projections", ndim=2)
        if theta.shape[0] != d:
            raise ValueError(f"projections: expected shape ({d}, L), got {theta.shape}")
        if not np.allclose(np.linalg.norm(theta, axis=0), 1.0, atol=1e-8):
            raise ValueError("projections: every column must be a unit vector")
    px, py = x @ theta, y @ theta
    return float(np.mean([wasserstein_1d(px[:, j], py[:, j]) for j in range(theta.shape[1])]))


def _median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    z = np.concatenate([x, y])[:1000]  # the median of a subset is enough for a heuristic
    d2 = sq_dists(z)  # (<= 1000, <= 1000), centred: exact for data far from the origin
    med = np.median(d2[np.triu_indices(len(z), k=1)])
    if med <= 0:
        raise ValueError("bandwidth: all points coincide, so 'median' gives 0; choose a number")
    return float(np.sqrt(med / 2.0))


#: Rows of the kernel matrix computed at once by :func:`mmd`: memory O(block * (n + m)).
MMD_BLOCK = 512


def _kernel_sum(a: np.ndarray, b: np.ndarray, h: float, *, same: bool = False) -> float:
    """sum_{i,j} k(a_i, b_j) for the Gaussian kernel, in blocks of rows (no n x m matrix).

    With ``same`` (a is b), the diagonal terms k(a_i, a_i) = 1 are left out (U-statistic).
    """
    total = 0.0
    for start in range(0, a.shape[0], MMD_BLOCK):
        block = a[start : start + MMD_BLOCK]
        d2 = sq_dists(block, b)  # (block, m), on centred data
        if same:
            rows = np.arange(block.shape[0])
            d2[rows, start + rows] = np.inf  # k = exp(-inf) = 0: the diagonal is left out
        total += float(np.exp(-d2 / (2.0 * h * h)).sum())
    return total


def mmd(x: Any, y: Any, bandwidth: float | str = 1.0, *, unbiased: bool = True) -> float:
    r"""Squared maximum mean discrepancy :math:`\mathrm{MMD}^2` with a Gaussian kernel.

    Kernel :math:`k(a, b) = \exp(-\|a - b\|^2 / (2h^2))`. The default is the
    **unbiased** U-statistic of Gretton et al. (2012, eq. 3)

    .. math::
        \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i, x_j)
        + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j),

    whose expectation is exactly the population :math:`\mathrm{MMD}^2`; it can be
    slightly negative when P = Q. With ``unbiased=False`` the biased V-statistic
    (diagonal terms included) is returned instead; it is always >= 0.

    Args:
        x: (n, d) sample of P; y: (m, d) sample of Q (n, m >= 2).
        bandwidth: kernel width h > 0, or ``"median"`` for the median heuristic
            (h^2 = median squared distance / 2 over the pooled sample).
        unbiased: U-statistic (True) or V-statistic (False).

    Returns:
        the estimate of the squared MMD.

    Memory: the kernel matrices are summed block by block (:data:`MMD_BLOCK` rows at a
    time), so 20 000 points need megabytes, not three dense n x n matrices. Distances are
    computed on data centred on the pooled mean (:func:`coursekit.numerics.sq_dists`).
    """
    x, y = _check_two_samples(x, y)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y: expected at least 2 samples each")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth: expected a positive number or 'median', got {bandwidth!r}")
        h = _median_bandwidth(x, y)
    else:
        h = check_positive(bandwidth, "bandwidth")
    n, m = x.shape[0], y.shape[0]
    # Distances do not change under a common translation: centring on the pooled mean keeps
    # the digits that ||a||^2 - 2 a.b + ||b||^2 would cancel for shifted data.
    centre = np.concatenate([x, y]).mean(axis=0)
    x, y = x - centre, y - centre
    kxy = _kernel_sum(x, y, h) / (n * m)
    if unbiased:
        # The U-statistic leaves out the diagonal terms k(x_i, x_i) = 1.
        term_x = _kernel_sum(x, x, h, same=True) / (n * (n - 1))
        term_y = _kernel_sum(y, y, h, same=True) / (m * (m - 1))
    else:
        term_x = (_kernel_sum(x, x, h, same=True) + n) / (n * n)
        term_y = (_kernel_sum(y, y, h, same=True) + m) / (m * m)
    return float(term_x + term_y - 2.0 * kxy)
