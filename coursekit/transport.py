"""Transport maps: pushing one distribution onto another (Lecture 1, Part II).

The slides illustrate the change-of-variables formula with two transports:

- :func:`monge_map_1d`, the **deterministic** (Monge) transport in 1-D,
  :math:`T = F_\\beta^{-1} \\circ F_\\alpha`, where :math:`F_\\alpha`,
  :math:`F_\\beta` are the CDFs of the source :math:`\\alpha` and the target
  :math:`\\beta`. It is the only non-decreasing map with :math:`T_\\# \\alpha =
  \\beta`, and it is optimal for every convex cost :math:`c(x - y)`.
- :class:`StochasticLinearMap`, a **stochastic** transport: each point
  :math:`z` is sent by one of :math:`K` affine maps :math:`x = A_k z + b_k`
  chosen at random with probability :math:`\\pi_k`. Its push-forward of
  :math:`\\mathcal N(0, I)` is the Gaussian mixture
  :math:`\\sum_k \\pi_k \\mathcal N(b_k, A_k A_k^\\top)`; in general the
  density is the mixture of the :math:`K` change-of-variables densities.

NumPy code (Lecture 1 works with plain arrays); randomness through ``rng``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coursekit.numerics import LOG_2PI, logsumexp
from coursekit.sampling import sample_categorical
from coursekit.validation import RngLike, as_rng, check_array, check_positive_int

__all__ = ["StochasticLinearMap", "monge_map_1d"]

_METHODS = ("cdf", "sf", "ppf", "isf")


def _check_distribution(dist: Any, name: str) -> Any:
    """A 1-D distribution with SciPy's ``cdf/sf/ppf/isf`` (e.g. ``scipy.stats.norm()``)."""
    missing = [m for m in _METHODS if not callable(getattr(dist, m, None))]
    if missing:
        raise TypeError(
            f"{name}: expected a 1-D distribution with methods cdf, sf, ppf and isf "
            f"(e.g. scipy.stats.norm()), got {type(dist).__name__} without {missing}"
        )
    return dist


def monge_map_1d(x: Any, source: Any, target: Any) -> np.ndarray:
    """The 1-D Monge map :math:`T(x) = F_\\beta^{-1}(F_\\alpha(x))` at the points x.

    If :math:`X \\sim \\alpha` has a continuous CDF, :math:`U = F_\\alpha(X)` is
    uniform on (0, 1) (probability integral transform) and
    :math:`F_\\beta^{-1}(U) \\sim \\beta` (inverse-CDF sampling): so
    :math:`T_\\# \\alpha = \\beta`.

    Numerics: in the upper half (:math:`F_\\alpha(x) > 1/2`) the map is computed
    as :math:`\\bar F_\\beta^{-1}(\\bar F_\\alpha(x))` with the survival function
    :math:`\\bar F = 1 - F` and its inverse, because :math:`F_\\alpha(x)` rounds
    to 1 in the far right tail (``1 - 1e-17 == 1``) while :math:`\\bar
    F_\\alpha(x)` keeps its digits. Both tails then stay finite.

    Args:
        x: (n,) points of the source's support, finite.
        source: the source distribution :math:`\\alpha`: an object with
            ``cdf``, ``sf``, ``ppf`` and ``isf`` (a frozen ``scipy.stats``
            distribution).
        target: the target distribution :math:`\\beta`, same interface.

    Returns:
        (n,) the transported points :math:`T(x)`.
    """
    x = check_array(x, "x", ndim=1)
    source = _check_distribution(source, "source")
    target = _check_distribution(target, "target")
    u = np.asarray(source.cdf(x), dtype=float)  # (n,) F_alpha(x)
    upper = u > 0.5
    out = np.empty_like(x)
    out[~upper] = target.ppf(u[~upper])  # F_beta^{-1}(F_alpha(x))
    out[upper] = target.isf(source.sf(x[upper]))  # same map, via 1 - F on both sides
    if not np.all(np.isfinite(out)):  # F_alpha(x) or 1 - F_alpha(x) underflowed to 0
        bad = x[~np.isfinite(out)][0]
        raise ValueError(f"x: {bad:g} is beyond the source's tail that float64 resolves "
                         "(its CDF rounds to 0 or 1), so T(x) cannot be computed there")
    return out


class StochasticLinearMap:
    """Stochastic transport by K affine maps: x = A_k z + b_k, k ~ Categorical(pi).

    With :math:`z \\sim \\mathcal N(0, I_d)` independent of k, the pushed law is
    :math:`\\sum_k \\pi_k \\mathcal N(b_k, A_k A_k^\\top)`. Its density follows
    from the change of variables applied to each branch,

    .. math::
        p(x) = \\sum_k \\pi_k\\, q\\big(A_k^{-1}(x - b_k)\\big)\\,|\\det A_k|^{-1},

    which :meth:`log_prob` evaluates with a log-sum-exp.

    Args:
        weights: (K,) probabilities :math:`\\pi_k`, non-negative, summing to 1.
        matrices: (K, d, d) invertible :math:`A_k`.
        shifts: (K, d) :math:`b_k`.
    """

    def __init__(self, weights: Any, matrices: Any, shifts: Any):
        w = check_array(weights, "weights", ndim=1)
        a = check_array(matrices, "matrices", ndim=3)
        b = check_array(shifts, "shifts", ndim=2)
        k, d = b.shape
        if w.shape != (k,) or a.shape != (k, d, d):
            raise ValueError(
                f"matrices, shifts, weights: expected shapes (K, d, d), (K, d), (K,) with "
                f"the same K and d, got {a.shape}, {b.shape}, {w.shape}"
            )
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-8):
            raise ValueError(f"weights: expected non-negative numbers summing to 1, got {w}")
        sign, logdet = np.linalg.slogdet(a)  # (K,), (K,)
        singular = np.flatnonzero((sign == 0) | ~np.isfinite(logdet))
        if singular.size:
            raise ValueError(
                f"matrices: A_k must be invertible, but matrices[{int(singular[0])}] is singular"
            )
        self.weights, self.matrices, self.shifts = w, a, b
        self._log_abs_det = logdet  # (K,) log |det A_k|

    @property
    def n_maps(self) -> int:
        """K, the number of affine maps."""
        return self.shifts.shape[0]

    @property
    def dim(self) -> int:
        """d, the dimension of z and x."""
        return self.shifts.shape[1]

    def push(self, z: Any, rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
        """Send each latent point through a randomly chosen map.

        Args:
            z: (n, d) latent points.
            rng: a NumPy Generator, an int seed or None (draws the labels k).

        Returns:
            x: (n, d) the pushed points :math:`A_{k_i} z_i + b_{k_i}`;
            labels: (n,) the index k_i of the map used for each point.
        """
        z = check_array(z, "z", ndim=2, min_rows=1)
        if z.shape[1] != self.dim:
            raise ValueError(f"z: expected shape (n, {self.dim}), got {z.shape}")
        labels = sample_categorical(self.weights, len(z), as_rng(rng))  # (n,)
        x = np.einsum("nij,nj->ni", self.matrices[labels], z) + self.shifts[labels]
        return x, labels

    def sample(self, n: int, rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
        """n points of the push-forward of N(0, I_d): (n, d) points and (n,) labels."""
        n = check_positive_int(n, "n")
        rng = as_rng(rng)
        return self.push(rng.standard_normal((n, self.dim)), rng)

    def log_prob(self, x: Any) -> np.ndarray:
        """log p(x) of the push-forward of N(0, I_d): (n, d) -> (n,).

        Change of variables per branch, then a log-sum-exp over the K branches.
        """
        x = check_array(x, "x", ndim=2)
        if x.shape[1] != self.dim:
            raise ValueError(f"x: expected shape (n, {self.dim}), got {x.shape}")
        # z_k = A_k^{-1} (x - b_k) for every branch: solve, do not invert.
        diff = x[None, :, :] - self.shifts[:, None, :]  # (K, n, d)
        z = np.linalg.solve(self.matrices[:, None], diff[..., None])[..., 0]  # (K, n, d)
        log_q = -0.5 * (z**2).sum(-1) - 0.5 * self.dim * LOG_2PI  # (K, n) log N(z; 0, I)
        with np.errstate(divide="ignore"):  # a zero weight is a branch of log-weight -inf
            log_w = np.log(self.weights)
        terms = log_w[:, None] + log_q - self._log_abs_det[:, None]  # (K, n)
        return logsumexp(terms, axis=0)  # (n,)
