"""Sampling from simple distributions: Lecture 1, part I (slides 1.2-1.3).

From pseudo-random integers to Gaussian vectors, written by hand on purpose so
that every step can be read and checked against SciPy / NumPy in the tests:

- linear congruential generators (Algorithm 1, "LCG") with the classic
  parameter sets :data:`RANDU`, :data:`MINSTD` and :data:`NUMERICAL_RECIPES`;
- uniform -> Gaussian: Box-Muller (Algorithm 2) and Marsaglia's polar method;
- inverse-transform sampling: exact (a known ``ppf``), numeric (a tabulated
  density) and discrete (a categorical law by prefix sums);
- sampling in high dimension when the joint law factorizes: Markov chains and
  tree-structured Bayesian networks by ancestral sampling (parents first);
- multivariate Gaussians by Cholesky (x = mu + L z) and their log-density.

Functions that draw randomness take ``rng``: a ``numpy.random.Generator``, an
int seed or None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from coursekit.numerics import LOG_2PI
from coursekit.validation import (
    RngLike,
    as_rng,
    check_array,
    check_positive_int,
    check_probabilities,
    check_spd,
)

# --------------------------------------------------------------------------- LCG

#: IBM's RANDU (1960s): a = 2^16 + 3, c = 0, m = 2^31. Infamous: triples of
#: consecutive outputs lie on 15 planes (Marsaglia 1968).
RANDU: dict[str, int] = {"a": 65539, "c": 0, "m": 2**31}

#: Park & Miller's "minimal standard" (1988): a = 7^5, c = 0, m = 2^31 - 1 (a prime).
MINSTD: dict[str, int] = {"a": 16807, "c": 0, "m": 2**31 - 1}

#: The generator of *Numerical Recipes* (Press et al.): full period m = 2^32.
NUMERICAL_RECIPES: dict[str, int] = {"a": 1664525, "c": 1013904223, "m": 2**32}

_MAX_MODULUS = 2**32


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(value)


def _check_lcg(seed: Any, a: Any, c: Any, m: Any) -> tuple[int, int, int, int]:
    """Validate LCG parameters: 0 < m <= 2^32, 0 < a < m, 0 <= c < m, 0 <= seed < m."""
    seed, a, c, m = (_as_int(v, k) for v, k in ((seed, "seed"), (a, "a"), (c, "c"), (m, "m")))
    if not 1 < m <= _MAX_MODULUS:
        raise ValueError(f"m: the modulus must satisfy 1 < m <= 2^32, got {m}")
    if not 0 < a < m:
        raise ValueError(f"a: the multiplier must satisfy 0 < a < m = {m}, got {a}")
    if not 0 <= c < m:
        raise ValueError(f"c: the increment must satisfy 0 <= c < m = {m}, got {c}")
    if not 0 <= seed < m:
        raise ValueError(f"seed: X_0 must satisfy 0 <= X_0 < m = {m}, got {seed}")
    if c == 0 and seed == 0:
        # With c = 0, the state 0 is a fixed point: the "random" sequence would be 0, 0, 0, ...
        raise ValueError("seed: X_0 = 0 with c = 0 gives the constant sequence 0; use X_0 > 0")
    return seed, a, c, m


def lcg_states(n: int, seed: int, a: int, c: int, m: int) -> np.ndarray:
    """The integer states X_1, ..., X_n of the LCG X_{t+1} = (a X_t + c) mod m (Algorithm 1).

    Exact integer arithmetic (Python ints), so the states match the published
    reference values bit for bit; no float rounding for any m <= 2^32.

    Args:
        n: number of states.
        seed: X_0, with 0 <= X_0 < m (and X_0 > 0 when c = 0).
        a, c, m: multiplier, increment, modulus (0 < a < m, 0 <= c < m, 1 < m <= 2^32),
            e.g. ``lcg_states(5, 1, **MINSTD)``.

    Returns:
        states: (n,) int64 array with 0 <= X_t < m.
    """
    n = check_positive_int(n, "n")
    x, a, c, m = _check_lcg(seed, a, c, m)
    out = np.empty(n, dtype=np.int64)  # X_t < 2^32 always fits in int64
    for t in range(n):
        x = (a * x + c) % m  # Python ints never overflow: the recurrence is exact
        out[t] = x
    return out


def lcg(n: int, seed: int, a: int, c: int, m: int) -> np.ndarray:
    """Pseudo-random uniforms U_t = X_t / m, t = 1..n (Algorithm 1).

    Returns:
        u: (n,) float64 array in [0, 1) (in (0, 1) when c = 0, since then X_t != 0).
    """
    return lcg_states(n, seed, a, c, m) / float(m)


# ------------------------------------------------------------ uniform -> Gaussian


def _check_uniform_pair(u1: Any, u2: Any, names: tuple[str, str] = ("u1", "u2")
                        ) -> tuple[np.ndarray, np.ndarray]:
    a, b = names
    u1 = check_array(u1, a)
    u2 = check_array(u2, b)
    if u1.shape != u2.shape:
        raise ValueError(f"{a} and {b} must have the same shape, got {u1.shape} and {u2.shape}")
    return u1, u2


def box_muller(u1: Any, u2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Box-Muller transform (Algorithm 2): two uniforms -> two independent N(0, 1).

    R = sqrt(-2 log U1), Theta = 2 pi U2, Z1 = R cos Theta, Z2 = R sin Theta.

    Args:
        u1: array in (0, 1]. U1 = 0 would give R = +inf, so it is rejected
            (a generator returning [0, 1) should pass ``1 - u``).
        u2: array in [0, 1), same shape as ``u1``.

    Returns:
        z1, z2: two arrays of the shape of ``u1``.
    """
    u1, u2 = _check_uniform_pair(u1, u2)
    if np.any(u1 <= 0) or np.any(u1 > 1):
        raise ValueError("u1: Box-Muller needs u1 in (0, 1] (log(0) = -inf); got values "
                         f"in [{u1.min():.3g}, {u1.max():.3g}]")
    if np.any(u2 < 0) or np.any(u2 > 1):
        raise ValueError(f"u2: expected values in [0, 1], got [{u2.min():.3g}, {u2.max():.3g}]")
    r = np.sqrt(-2.0 * np.log(u1))  # radius: R^2 ~ Exp(1/2), i.e. chi-square with 2 d.o.f.
    theta = 2.0 * np.pi * u2  # angle: uniform, independent of the radius
    return r * np.cos(theta), r * np.sin(theta)


def marsaglia_polar_transform(
    v1: Any, v2: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia's polar transform of a point (V1, V2) uniform in the square [-1, 1]^2.

    Points with S = V1^2 + V2^2 in (0, 1) (inside the unit disc, probability
    pi / 4) are accepted and mapped to Z_i = V_i sqrt(-2 log S / S): S plays the
    role of U1 and the direction (V1, V2)/sqrt(S) replaces (cos, sin) of Box-Muller.

    Returns:
        z1, z2: the normals of the accepted points, shape (n_accepted,);
        accepted: boolean mask of the input's shape.
    """
    v1, v2 = _check_uniform_pair(v1, v2, ("v1", "v2"))
    s = v1**2 + v2**2
    accepted = (s > 0) & (s < 1)
    s_ok = s[accepted]
    factor = np.sqrt(-2.0 * np.log(s_ok) / s_ok)
    return v1[accepted] * factor, v2[accepted] * factor, accepted


def marsaglia_polar(n: int, rng: RngLike = None) -> np.ndarray:
    """n standard normals by Marsaglia's polar (rejection) method, no sine or cosine.

    Returns:
        z: (n,) float64 array.
    """
    n = check_positive_int(n, "n")
    rng = as_rng(rng)
    chunks: list[np.ndarray] = []
    have = 0
    while have < n:
        # Each proposal yields 2 normals with probability pi/4: ask for a bit more than needed.
        pairs = int(np.ceil((n - have) / 2 / (np.pi / 4) * 1.05)) + 8
        v = rng.uniform(-1.0, 1.0, size=(2, pairs))
        z1, z2, _ = marsaglia_polar_transform(v[0], v[1])
        chunk = np.stack([z1, z2], axis=1).ravel()
        chunks.append(chunk)
        have += chunk.size
    return np.concatenate(chunks)[:n]


# -------------------------------------------------------------- inverse CDF


def _open_uniforms(n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniforms in the open interval (0, 1): ppf(0) is -inf for unbounded laws."""
    u = rng.random(n)
    while np.any(u == 0.0):  # probability 2^-53 per draw, but never return an infinity
        zero = u == 0.0
        u[zero] = rng.random(int(zero.sum()))
    return u


def inverse_cdf_sample(
    ppf: Callable[[np.ndarray], Any], n: int, rng: RngLike = None
) -> np.ndarray:
    """Inverse-transform sampling: X = F^{-1}(U), U ~ Unif(0, 1), has CDF F.

    Args:
        ppf: the quantile function F^{-1} (vectorized), e.g. ``lambda u: -np.log1p(-u)``
            for Exp(1), or ``scipy.stats.cauchy.ppf``.
        n: number of samples.

    Returns:
        x: (n,) float64 array.
    """
    if not callable(ppf):
        raise ValueError(f"ppf: expected a callable quantile function, got {type(ppf).__name__}")
    n = check_positive_int(n, "n")
    u = _open_uniforms(n, as_rng(rng))
    x = np.asarray(ppf(u), dtype=float)
    if x.shape != u.shape:
        raise ValueError(f"ppf: must map an array of shape {u.shape} to the same shape, "
                         f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = u[~np.isfinite(x)][0]
        raise ValueError(f"ppf: returned NaN or inf at u = {bad:.6g}; is it a quantile "
                         "function defined on (0, 1)?")
    return x


def tabulated_cdf(grid: Any, density: Any) -> np.ndarray:
    """CDF of a density tabulated on a grid, by the trapezoidal rule, normalized to end at 1.

    Args:
        grid: (k,) strictly increasing points, k >= 2.
        density: (k,) non-negative values of a density, normalized or not.

    Returns:
        cdf: (k,) non-decreasing, cdf[0] = 0, cdf[-1] = 1.
    """
    grid = check_array(grid, "grid", ndim=1)
    density = check_array(density, "density", ndim=1)
    if grid.size < 2:
        raise ValueError(f"grid: expected at least 2 points, got {grid.size}")
    if density.shape != grid.shape:
        raise ValueError(f"density: expected shape {grid.shape} like grid, got {density.shape}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid: must be strictly increasing")
    if np.any(density < 0):
        raise ValueError(f"density: must be non-negative, got min {density.min():.3g}")
    peak = density.max()
    if peak <= 0:
        raise ValueError("density: has zero total mass on the grid")
    # the CDF does not depend on the density's scale: divide by the peak so that huge
    # (unnormalised) values cannot overflow the sum
    d = density / peak
    cells = 0.5 * (d[1:] + d[:-1]) * np.diff(grid)  # mass of each grid cell
    cdf = np.concatenate([[0.0], np.cumsum(cells)])
    return cdf / cdf[-1]


def tabulated_inverse_cdf(
    grid: Any, density: Any, n: int, rng: RngLike = None
) -> np.ndarray:
    """Numeric inverse-transform sampling from a tabulated (unnormalized) 1-D density.

    Tabulates F on the grid (trapezoidal rule), then inverts its piecewise-linear
    interpolation: X = F^{-1}(U). The error is that of the interpolation (O(h^2)
    for a smooth density on a grid of step h), and X always lies in [grid[0], grid[-1]].

    Args:
        grid: (k,) strictly increasing points covering the support.
        density: (k,) non-negative values (need not integrate to 1).
        n: number of samples.

    Returns:
        x: (n,) float64 array.
    """
    cdf = tabulated_cdf(grid, density)
    n = check_positive_int(n, "n")
    u = _open_uniforms(n, as_rng(rng))
    # np.interp inverts the piecewise-linear CDF; flat pieces (zero density) have
    # probability zero of being hit by a continuous U.
    return np.interp(u, cdf, np.asarray(grid, dtype=float))


def sample_categorical(probs: Any, n: int, rng: RngLike = None) -> np.ndarray:
    """n draws from a categorical law on {0, ..., K-1}: the discrete generalized inverse.

    With the prefix sums F_k = p_0 + ... + p_k, return the first k with U < F_k
    (``np.searchsorted(F, U, side="right")``), so that P(k) = F_k - F_{k-1} = p_k
    and a category of probability 0 is never drawn.

    Args:
        probs: (K,) non-negative, summing to 1.
        n: number of draws.

    Returns:
        idx: (n,) int64 array of categories.
    """
    p = check_probabilities(probs, "probs")
    n = check_positive_int(n, "n")
    u = as_rng(rng).random(n)  # in [0, 1)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]  # the last prefix sum is exactly 1, so U < F_{K-1} always holds
    return np.searchsorted(cdf, u, side="right").astype(np.int64)


def _categorical_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of probs (n, K) by prefix sums, vectorized over rows."""
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(probs.shape[0])[:, None]
    # Number of prefix sums <= U = first index with U < F_k (as in sample_categorical).
    return (cdf <= u).sum(axis=1).astype(np.int64)


# ---------------------------------------------- high dimension: factorized laws


def _check_transition(matrix: Any, name: str, n_rows: int | None = None) -> np.ndarray:
    mat = check_array(matrix, name, ndim=2)
    if n_rows is not None and mat.shape[0] != n_rows:
        raise ValueError(f"{name}: expected {n_rows} rows (one per parent state), "
                         f"got shape {mat.shape}")
    for i, row in enumerate(mat):
        check_probabilities(row, f"{name}[{i}]")
    return mat


def sample_markov_chain(
    init: Any, transition: Any, length: int, n: int, rng: RngLike = None
) -> np.ndarray:
    """Ancestral sampling of a discrete Markov chain p(x_1) prod_t p(x_t | x_{t-1}).

    Draw X_1 ~ init, then X_t ~ transition[X_{t-1}], for n chains at once.

    Args:
        init: (K,) law of X_1.
        transition: (K, K) row-stochastic, transition[i, j] = p(x_t = j | x_{t-1} = i).
        length: number of time steps N.
        n: number of independent chains.

    Returns:
        x: (n, length) int64 array of states.
    """
    init = check_probabilities(init, "init")
    trans = _check_transition(transition, "transition", n_rows=init.size)
    if trans.shape[1] != init.size:
        raise ValueError(f"transition: expected shape ({init.size}, {init.size}), "
                         f"got {trans.shape}")
    length = check_positive_int(length, "length")
    n = check_positive_int(n, "n")
    rng = as_rng(rng)
    x = np.empty((n, length), dtype=np.int64)
    x[:, 0] = sample_categorical(init, n, rng)
    for t in range(1, length):
        # Row x[:, t-1] of the transition matrix is the law of the next state.
        x[:, t] = _categorical_rows(trans[x[:, t - 1]], rng)
    return x


def _check_parents(parents: Any) -> list[int]:
    """The parent list as Python ints (a list, tuple or 1-D integer array)."""
    if isinstance(parents, (str, bytes)) or not hasattr(parents, "__len__"):
        raise TypeError(f"parents: expected a list of parent indices, got {type(parents).__name__}")
    arr = np.asarray(parents)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"parents: expected a non-empty 1-D list of integers (-1 for a root), got {parents!r:.80}"
        )
    return [int(p) for p in arr]


def topological_order(parents: Sequence[int]) -> list[int]:
    """An order of the nodes of a forest in which every parent comes before its children.

    Args:
        parents: parents[i] is the parent of node i, or -1 for a root.
    """
    parents = _check_parents(parents)
    k = len(parents)
    for i, p in enumerate(parents):
        if not (p == -1 or 0 <= p < k) or p == i:
            raise ValueError(f"parents[{i}] = {p}: expected -1 (root) or another node in 0..{k - 1}")
    order: list[int] = []
    placed = [False] * k
    while len(order) < k:
        ready = [i for i in range(k) if not placed[i]
                 and (parents[i] == -1 or placed[parents[i]])]
        if not ready:
            raise ValueError("parents: the graph has a cycle, it is not a tree")
        for i in ready:
            placed[i] = True
        order.extend(ready)
    return order


def _check_tree(parents: Sequence[int], cpts: Sequence[Any]) -> tuple[list[int], list[np.ndarray]]:
    parents = _check_parents(parents)
    if isinstance(cpts, (str, bytes, np.ndarray)) or not isinstance(cpts, Sequence):
        raise TypeError(f"cpts: expected a list of tables, one per node, got {type(cpts).__name__}")
    if len(cpts) != len(parents):
        raise ValueError(f"cpts: expected one table per node ({len(parents)}), got {len(cpts)}")
    order = topological_order(parents)
    tables: list[np.ndarray] = [np.empty(0)] * len(parents)
    for i in order:
        if parents[i] == -1:
            tables[i] = check_probabilities(cpts[i], f"cpts[{i}]")
        else:
            n_parent = tables[parents[i]].shape[-1]
            tables[i] = _check_transition(cpts[i], f"cpts[{i}]", n_rows=n_parent)
    return order, tables


def sample_tree_bn(
    parents: Sequence[int], cpts: Sequence[Any], n: int, rng: RngLike = None
) -> np.ndarray:
    """Ancestral sampling of a tree-structured Bayesian network of discrete variables.

    p(x_1, ..., x_N) = prod_i p(x_i | x_parent(i)): visit the nodes in
    topological order and draw each one given its already-drawn parent.

    Args:
        parents: (N,) parents[i] = index of node i's parent, -1 for a root.
        cpts: N tables: (K_i,) for a root, (K_parent, K_i) row-stochastic otherwise.
        n: number of joint samples.

    Returns:
        x: (n, N) int64 array, column i holds node i.
    """
    order, tables = _check_tree(parents, cpts)
    n = check_positive_int(n, "n")
    rng = as_rng(rng)
    x = np.empty((n, len(tables)), dtype=np.int64)
    for i in order:
        if parents[i] == -1:
            x[:, i] = sample_categorical(tables[i], n, rng)
        else:
            x[:, i] = _categorical_rows(tables[i][x[:, parents[i]]], rng)
    return x


def tree_bn_marginals(parents: Sequence[int], cpts: Sequence[Any]) -> list[np.ndarray]:
    """Exact marginals p(x_i) of a tree Bayesian network: p(x_i) = p(x_parent) @ cpt_i.

    Returns:
        a list of N arrays, the i-th of shape (K_i,).
    """
    order, tables = _check_tree(parents, cpts)
    marg: list[np.ndarray] = [np.empty(0)] * len(tables)
    for i in order:
        marg[i] = tables[i] if parents[i] == -1 else marg[parents[i]] @ tables[i]
    return marg


# ---------------------------------------------------------------- Gaussians


def _check_mean_cov(mean: Any, cov: Any) -> tuple[np.ndarray, np.ndarray]:
    mean = check_array(mean, "mean", ndim=1)
    if mean.size == 0:
        raise ValueError("mean: expected a non-empty vector")
    chol = check_spd(cov, "cov")
    if chol.shape[0] != mean.size:
        raise ValueError(f"cov: expected shape ({mean.size}, {mean.size}) to match mean, "
                         f"got {chol.shape}")
    return mean, chol


def sample_mvn(mean: Any, cov: Any, n: int, rng: RngLike = None) -> np.ndarray:
    """n draws from N(mean, cov) by Cholesky: x = mu + L z, z ~ N(0, I), L L^T = Sigma.

    Cov(L z) = L I L^T = Sigma, and an affine map of a Gaussian is Gaussian.

    Args:
        mean: (d,) mean mu.
        cov: (d, d) symmetric positive-definite covariance Sigma.
        n: number of samples.

    Returns:
        x: (n, d) float64 array.
    """
    mean, chol = _check_mean_cov(mean, cov)
    n = check_positive_int(n, "n")
    z = as_rng(rng).standard_normal((n, mean.size))
    return mean + z @ chol.T  # row-wise x_i = mu + L z_i


def mvn_log_prob(x: Any, mean: Any, cov: Any) -> np.ndarray:
    """Log-density of N(mean, cov) at the rows of x, via the Cholesky factor.

    log p(x) = -d/2 log(2 pi) - sum_i log L_ii - 1/2 ||L^{-1}(x - mu)||^2,
    since log |Sigma| = 2 sum_i log L_ii and (x-mu)^T Sigma^{-1} (x-mu) = ||L^{-1}(x-mu)||^2.

    Args:
        x: (n, d) points (or (d,) for a single point).
        mean: (d,); cov: (d, d) symmetric positive definite.

    Returns:
        (n,) log-densities (a float for a single point).
    """
    mean, chol = _check_mean_cov(mean, cov)
    pts = check_array(x, "x", ndim=(1, 2))
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if pts.shape[1] != mean.size:
        raise ValueError(f"x: expected {mean.size} columns to match mean, got shape {pts.shape}")
    # Solve L y = (x - mu)^T instead of inverting Sigma: stable and O(d^2) per point.
    y = solve_triangular(chol, (pts - mean).T, lower=True)
    d = mean.size
    out = (-0.5 * d * LOG_2PI - np.log(np.diag(chol)).sum()
           - 0.5 * np.sum(y**2, axis=0))
    return float(out[0]) if single else out
