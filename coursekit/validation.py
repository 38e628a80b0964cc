"""Input checks shared by coursekit's public functions.

Every public function validates its arguments here and raises a ``ValueError``
(or a ``TypeError`` for the wrong kind of object) that names the caller's
argument, says what was wrong and what was expected, so that a student gets a
clear message instead of a NaN, a silently wrong answer or a traceback from
deep inside NumPy or torch.

The two conventions of the package live here (see CONTRIBUTING.md):

- **Randomness.** NumPy code takes ``rng`` (None, an int seed or a
  ``numpy.random.Generator``) through :func:`as_rng`; torch code takes
  ``generator`` (None, an int seed or a ``torch.Generator``) through
  :func:`as_generator`. ``None`` means the same thing everywhere: *draw a seed
  from the library's global random state*, which ``seed_everything`` seeds.
  So an unseeded run differs from the next one, and a run that starts with
  ``seed_everything(s)`` repeats exactly. Nothing in coursekit reseeds a global
  generator except ``seed_everything`` itself.
- **Tensors.** torch code converts its inputs with :func:`as_tensor`: NumPy
  arrays and tensors of any float (or integer) dtype are accepted and moved to
  the model's dtype and device; NumPy code converts with :func:`check_array`,
  which accepts tensors (detached, moved to the CPU).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from coursekit.seeding import derive_seed

RngLike = np.random.Generator | int | None
GeneratorLike = torch.Generator | int | None

#: Seeds drawn for ``None`` are below this bound (both libraries accept it).
_SEED_BOUND = 2**62


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_rng(rng: RngLike, name: str = "rng") -> np.random.Generator:
    """Turn ``rng`` into a ``numpy.random.Generator`` (the NumPy side of the convention).

    Args:
        rng: a Generator (used as it is, so its stream advances), an int seed
            >= 0 (a fresh Generator seeded with ``seeding.derive_seed`` of it), or None (a fresh Generator
            seeded from NumPy's global state, which ``seed_everything`` seeds).
        name: the caller's argument name, for the error message.

    Raises:
        TypeError: for a ``torch.Generator`` or any other kind of object.
        ValueError: for a negative seed.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        # The legacy global state is what ``np.random.seed`` (and seed_everything) sets.
        return np.random.default_rng(np.random.randint(0, 2**31 - 1, size=2))  # noqa: NPY002
    if _is_int(rng):
        if rng < 0:
            raise ValueError(f"{name}: a seed must be a non-negative integer, got {rng}")
        # Through derive_seed, so that COURSEKIT_SEED moves every seed of a run together.
        return np.random.default_rng(derive_seed(int(rng)))
    if isinstance(rng, torch.Generator):
        raise TypeError(
            f"{name}: got a torch.Generator, but this is NumPy code: pass a "
            "numpy.random.Generator (np.random.default_rng(seed)), an int seed or None"
        )
    raise TypeError(
        f"{name}: expected a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def as_generator(
    generator: GeneratorLike,
    name: str = "generator",
    *,
    device: torch.device | str | None = None,
) -> torch.Generator:
    """Turn ``generator`` into a ``torch.Generator`` (the torch side of the convention).

    Args:
        generator: a ``torch.Generator`` (used as it is), an int seed >= 0 (a
            fresh generator seeded with it), or None (a fresh generator seeded
            from torch's global state, which ``seed_everything`` seeds).
        name: the caller's argument name, for the error message.
        device: where the random numbers will be drawn (the model's device);
            a fresh generator is created there, and a given one must live there.

    Raises:
        TypeError: for a ``numpy.random.Generator`` or any other kind of object.
        ValueError: for a negative seed or a generator on another device.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, torch.Generator):
        if generator.device.type != dev.type:
            raise ValueError(
                f"{name}: the generator lives on {generator.device} but the random numbers "
                f"are drawn on {dev}; create it with torch.Generator(device='{dev.type}') "
                "or pass an int seed"
            )
        return generator
    if generator is None:
        seed = int(torch.randint(0, _SEED_BOUND, (1,)).item())
        return torch.Generator(device=dev).manual_seed(seed)
    if _is_int(generator):
        if generator < 0:
            raise ValueError(f"{name}: a seed must be a non-negative integer, got {generator}")
        return torch.Generator(device=dev).manual_seed(derive_seed(int(generator)))
    if isinstance(generator, np.random.Generator):
        raise TypeError(
            f"{name}: got a numpy.random.Generator, but this is torch code: pass a "
            "torch.Generator (torch.Generator().manual_seed(seed)), an int seed or None"
        )
    raise TypeError(
        f"{name}: expected a torch.Generator, an int seed or None, got {type(generator).__name__}"
    )


def module_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    """The floating dtype and the device of a model's first floating parameter or buffer.

    A module with none (e.g. a fixed function) gets torch's default dtype on the CPU.
    """
    # Lazily: the first parameter almost always answers (this runs at every forward call).
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


def _shape_text(shape: Sequence[int | None]) -> str:
    names = iter("nmkjl")
    parts = [str(s) if s is not None else next(names, "?") for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def as_tensor(
    x: Any,
    name: str,
    *,
    like: torch.nn.Module | torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    shape: Sequence[int | None] | None = None,
    ndim: int | tuple[int, ...] | None = None,
    min_rows: int = 1,
    finite: bool = True,
    detach: bool = False,
) -> torch.Tensor:
    """Convert ``x`` to a floating tensor for torch code, with the checks every function needs.

    Accepts a tensor, a NumPy array or a nested list of numbers, of any float,
    integer or bool dtype. The result has the dtype and device of ``like`` (a
    model: its parameters; a tensor: itself), else of ``dtype``/``device``,
    else keeps a floating input's dtype (integers become the default float).
    Gradients flow through the conversion unless ``detach`` is set (use it
    where the function is not meant to be differentiated).

    Args:
        x: the input.
        name: the caller's argument name, for the error message.
        like: a module or tensor whose dtype and device the result takes.
        dtype, device: explicit target (used when ``like`` is None).
        shape: the expected shape, ``None`` for a free axis: ``(None, 2)`` is ``(n, 2)``.
        ndim: the expected number of dimensions (or a tuple of allowed ones).
        min_rows: minimum length of the first axis (1: refuse an empty batch).
        finite: refuse NaN and infinite entries.
        detach: detach the result from the autograd graph.

    Returns:
        the converted tensor (the same object when nothing had to change).
    """
    if isinstance(like, torch.nn.Module):
        dtype, device = module_dtype_device(like)
    elif isinstance(like, torch.Tensor):
        dtype, device = (like.dtype if like.is_floating_point() else None), like.device
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.random.Generator) or isinstance(x, torch.Generator):
        raise TypeError(f"{name}: expected an array of numbers, got a random generator")
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected a tensor or an array, got {type(x).__name__}") from None
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise TypeError(
                f"{name}: expected a tensor or an array of numbers, got {type(x).__name__}"
                f" of dtype {arr.dtype}"
            )
        if np.iscomplexobj(arr):
            raise TypeError(f"{name}: expected real numbers, got a complex array")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name}: expected real numbers, got a complex tensor")
    target = dtype if dtype is not None else (t.dtype if t.is_floating_point() else None)
    if target is None:
        target = torch.get_default_dtype()
    if detach:
        t = t.detach()
    t = t.to(dtype=target, device=device if device is not None else t.device)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name}: expected {want} dimension(s), got shape {tuple(t.shape)}")
    if shape is not None:
        ok = t.ndim == len(shape) and all(s is None or s == ts for s, ts in zip(shape, t.shape, strict=False))
        if not ok:
            raise ValueError(
                f"{name}: expected shape {_shape_text(shape)}, got {tuple(t.shape)}"
            )
    if min_rows and (t.ndim == 0 or t.shape[0] < min_rows):
        what = "an empty batch" if t.ndim and t.shape[0] == 0 else f"shape {tuple(t.shape)}"
        raise ValueError(f"{name}: expected at least {min_rows} row(s), got {what}")
    if finite and t.numel() and not _all_finite(t):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t


def _all_finite(t: torch.Tensor) -> bool:
    """All entries finite? A sum is finite iff every entry is (NaN and inf propagate), unless
    it overflows; only then is the elementwise test needed. (8x faster on a CPU batch: this
    runs at every forward call.)"""
    if t.is_floating_point():
        if math.isfinite(t.detach().sum().item()):
            return True
        return bool(torch.isfinite(t.detach()).all())
    return True


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum`` and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def _real(value: Any, name: str, expected: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float if it is a finite real number with ``ok(v)``, else a ValueError.

    Strings are refused although ``float("0.1")`` would parse them: a number typed as text
    is a mistake to report, not to reinterpret.
    """
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {expected}, got {value!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """Check that ``value`` is a finite real number > 0 and return it as ``float``."""
    return _real(value, name, "a finite number > 0", lambda v: v > 0)


def check_nonnegative(value: Any, name: str) -> float:
    """Check that ``value`` is a finite real number >= 0 and return it as ``float``."""
    return _real(value, name, "a finite number >= 0", lambda v: v >= 0)


def check_finite(value: Any, name: str) -> float:
    """Check that ``value`` is a finite real number (of any sign) and return it as ``float``."""
    return _real(value, name, "a finite number", lambda v: True)


def check_callable(value: Any, name: str) -> Any:
    """Check that ``value`` can be called (a function or a model) and return it."""
    if not callable(value):
        raise TypeError(f"{name}: expected a callable (a function or a model), "
                        f"got {type(value).__name__}")
    return value


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
    if isinstance(x, torch.Tensor):
        # NumPy code accepts tensors: detached (no graph) and moved to the CPU.
        x = x.detach().cpu().numpy()
    if isinstance(x, (np.random.Generator, torch.Generator)):
        raise TypeError(f"{name}: expected an array of numbers, got a random generator")
    if np.iscomplexobj(x):
        # np.asarray(..., dtype=float) would silently drop the imaginary part.
        raise TypeError(f"{name}: expected real numbers, got a complex array")
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


def _float_eps(x: Any) -> float:
    """Machine epsilon of the float type ``x`` was computed in (float64 for lists)."""
    dt = getattr(x, "dtype", None)
    if isinstance(dt, torch.dtype):
        return torch.finfo(dt).eps if dt.is_floating_point else float(np.finfo(float).eps)
    try:
        dt = np.dtype(dt) if dt is not None else np.dtype(float)
    except TypeError:
        dt = np.dtype(float)
    return float(np.finfo(dt).eps) if np.issubdtype(dt, np.floating) else float(np.finfo(float).eps)


def check_probabilities(p: Any, name: str = "probs", *, atol: float = 1e-8) -> np.ndarray:
    """Check that ``p`` is a 1-D probability vector (entries >= 0, summing to 1).

    The sum may miss 1 by the rounding of the dtype it was computed in: ``max(atol,
    16 eps)`` per entry with eps the machine epsilon of ``p``'s dtype (a float32 softmax
    sums to 1 only within ~1e-7). The returned float64 vector is renormalised to sum to 1.
    """
    arr = check_array(p, name, ndim=1)
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty probability vector")
    if np.any(arr < 0):
        raise ValueError(f"{name}: probabilities must be non-negative, got min {arr.min():.3g}")
    total = arr.sum()
    tol = max(atol, 16.0 * _float_eps(p)) * max(1.0, arr.size)
    if abs(total - 1.0) > tol:
        raise ValueError(f"{name}: probabilities must sum to 1, got sum {total:.10g}")
    return arr / total


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
