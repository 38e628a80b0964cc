"""Input checks shared by coursekit's public functions.

Every public function validates its arguments here and raises a
``ValueError`` that says what was wrong and what was expected, so that a
student gets a clear message instead of a NaN or a silently wrong answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """Turn ``rng`` (a Generator, an int seed or None) into a ``numpy.random.Generator``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        if rng is not None and rng < 0:
            raise ValueError(f"rng: a seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(rng)
    raise ValueError(
        f"rng: expected a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """Check that ``value`` is a finite real number > 0 and return it as ``float``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def check_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    finite: bool = True,
    min_rows: int = 0,
) -> np.ndarray:
    """Convert ``x`` to a float array and check its number of dimensions and values.

    Args:
        x: array-like.
        name: the argument's name, used in the error message.
        ndim: required number of dimensions (or a tuple of allowed ones).
        finite: reject NaN and infinite entries.
        min_rows: minimum length of the first axis.
    """
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__}") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected {want} dimension(s), got shape {arr.shape}")
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if min_rows and (arr.ndim == 0 or arr.shape[0] < min_rows):
        raise ValueError(f"{name}: expected at least {min_rows} rows, got shape {arr.shape}")
    return arr


def check_probabilities(p: Any, name: str = "probs", *, atol: float = 1e-8) -> np.ndarray:
    """Check that ``p`` is a 1-D probability vector (entries >= 0, summing to 1)."""
    arr = check_array(p, name, ndim=1)
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty probability vector")
    if np.any(arr < 0):
        raise ValueError(f"{name}: probabilities must be non-negative, got min {arr.min():.3g}")
    total = arr.sum()
    if abs(total - 1.0) > atol * max(1.0, arr.size):
        raise ValueError(f"{name}: probabilities must sum to 1, got sum {total:.10g}")
    return arr


def check_spd(cov: Any, name: str = "cov", *, component: int | None = None) -> np.ndarray:
    """Check that ``cov`` is a symmetric positive-definite matrix; return its Cholesky factor.

    Args:
        cov: (d, d) matrix.
        name: the argument's name, used in the error message.
        component: when the matrix belongs to a mixture, its index (named in the error).

    Returns:
        L: (d, d) lower-triangular with ``L @ L.T == cov``.
    """
    where = f"{name}" if component is None else f"{name}[{component}] (component {component})"
    arr = check_array(cov, where, ndim=2)
    if arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{where}: expected a square matrix, got shape {arr.shape}")
    scale = max(1.0, float(np.max(np.abs(arr))))
    if not np.allclose(arr, arr.T, rtol=1e-8, atol=1e-10 * scale):
        raise ValueError(f"{where}: covariance matrix is not symmetric")
    try:
        return np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError(f"{where}: covariance matrix is not positive definite") from None
