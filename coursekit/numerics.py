"""One home for the numerical building blocks shared by several modules.

- :data:`LOG_2PI`, the constant log(2 pi) of every Gaussian log-density;
- :func:`logsumexp`, the stable log-sum-exp (NumPy; torch code uses ``torch.logsumexp``);
- :func:`sq_dists`, squared Euclidean distances computed on centred data, so that a
  large common offset (``x + 3e8``) does not cancel the digits that matter;
- :func:`standard_normal_log_prob`, log N(z | 0, I) in torch (the latent of flows and VAEs);
- :func:`softplus_inverse`, the inverse of softplus(a) = log(1 + e^a), stable at both ends.

Import from here rather than re-deriving: ``from coursekit.numerics import logsumexp``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from coursekit.validation import as_tensor, check_array

#: log(2 pi), the constant of the Gaussian log-density -(d log 2pi + |z|^2) / 2.
LOG_2PI = math.log(2.0 * math.pi)

__all__ = ["LOG_2PI", "logsumexp", "softplus_inverse", "sq_dists", "standard_normal_log_prob"]


def logsumexp(
    a: Any,
    axis: int | tuple[int, ...] | None = -1,
    keepdims: bool = False,
    *,
    name: str = "a",
) -> np.ndarray | float:
    """Stable ``log(sum(exp(a), axis))``: the LSE of the slides.

    The trick: LSE(a) = m + log sum exp(a - m) with m = max a, so the largest exponent is
    exp(0) = 1 (no overflow) and the sum is >= 1 (no log of an underflowed 0).

    Edge cases: a slice of only ``-inf`` gives ``-inf`` (the log of an empty sum, i.e. a
    zero probability) without a warning; a ``+inf`` entry gives ``+inf``.

    Args:
        a: array (or tensor, detached) of any shape: log-values.
        axis: axis or axes to reduce (None: all of them).
        keepdims: keep the reduced axes with length 1.
        name: the caller's argument name, for the error message.

    Returns:
        the reduced array (a float for a full reduction).

    Raises:
        ValueError: if ``a`` is empty or contains NaN, or ``axis`` is out of range.
    """
    arr = check_array(a, name, finite=False)
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN; log-sum-exp of NaN is undefined")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array")
    try:
        m = np.max(arr, axis=axis, keepdims=True)
    except (np.exceptions.AxisError, TypeError, ValueError):
        raise ValueError(
            f"axis: {axis!r} is not a valid axis of {name} with shape {arr.shape}"
        ) from None
    # A shift by -inf (all entries -inf) or +inf would give inf - inf = NaN: shift by 0 instead.
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        out = np.log(np.sum(np.exp(arr - m_safe), axis=axis, keepdims=True)) + m_safe
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return float(out[()]) if out.ndim == 0 else out


def sq_dists(x: Any, y: Any | None = None, *, name_x: str = "x", name_y: str = "y") -> np.ndarray:
    """Squared Euclidean distances ``D[i, j] = |x_i - y_j|^2``, stable for shifted data.

    The expansion ``|x|^2 - 2 x.y + |y|^2`` turns an (n, m, d) problem into one matrix
    product, but it subtracts large numbers when the points sit far from the origin
    (``x + 3e8`` loses every significant digit). Distances do not change under a common
    translation, so both sets are first centred on the mean of ``x`` (then the norms are of
    the size of the spread, not of the offset); the result is clipped at 0 against the
    remaining rounding, and the diagonal of ``sq_dists(x)`` is exactly 0.

    Args:
        x: (n, d) points. y: (m, d) points (None: ``x`` itself).
        name_x, name_y: the caller's argument names, for the error messages.

    Returns:
        (n, m) float64 matrix of squared distances.
    """
    x = check_array(x, name_x, ndim=2)
    same = y is None
    y = x if same else check_array(y, name_y, ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{name_y}: expected {x.shape[1]} columns like {name_x}, got shape {y.shape}"
        )
    centre = x.mean(axis=0) if x.shape[0] else np.zeros(x.shape[1])
    xc = x - centre
    yc = xc if same else y - centre
    d2 = (xc * xc).sum(1)[:, None] - 2.0 * xc @ yc.T + (yc * yc).sum(1)[None, :]
    d2 = np.maximum(d2, 0.0)
    if same:
        np.fill_diagonal(d2, 0.0)
    return d2


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z | 0, I_d) = -(|z|^2 + d log 2pi) / 2``, summed over the last axis.

    Args:
        z: (..., d) tensor.

    Returns:
        (...,) log-densities (differentiable).
    """
    if not isinstance(z, torch.Tensor):
        z = as_tensor(z, "z", min_rows=0, finite=False)
    if z.ndim == 0:
        raise ValueError("z: expected at least 1 dimension (..., d), got a scalar")
    return -0.5 * (z.pow(2).sum(dim=-1) + z.shape[-1] * LOG_2PI)


def softplus_inverse(y: Any) -> np.ndarray:
    """The inverse of softplus(a) = log(1 + e^a): a = log(e^y - 1) = y + log(1 - e^{-y}).

    ``log(expm1(y))`` overflows for y > 709 and loses precision for large y; the second form
    ``y + log1p(-exp(-y))`` is exact there, and ``log(expm1(y))`` is used for small y (where
    ``1 - e^{-y}`` would cancel).

    Args:
        y: array (or tensor) of values > 0.

    Returns:
        array of the same shape (float64).
    """
    y = check_array(y, "y")
    if np.any(y <= 0):
        raise ValueError(f"y: softplus only takes values > 0, got min {y.min():.3g}")
    small = y < 20.0
    out = np.empty_like(y)
    out[small] = np.log(np.expm1(y[small]))
    out[~small] = y[~small] + np.log1p(-np.exp(-y[~small]))
    return out
