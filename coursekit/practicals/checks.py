"""What the three practicals' checks share: one way to fail, pass, call a student's function.

Conventions (every check of every practical):

- a check is called with the student's function(s): ``check_x(x)``; it never looks them up;
- a failed check is an ``AssertionError`` whose message names the cause and the exercise,
  never the solution's code; a passed one prints one line starting with ``OK``;
- an exercise not done yet (its stub still raises ``NotImplementedError``, or a result it
  produces is still ``None``) is reported by one message: ":func:`not_done`";
- a ``NameError`` from the student's function means an earlier cell was not run;
- a torch error that a usual mistake produces becomes a hint (:data:`TORCH_HINTS`, plus the
  practical's own table), with torch's words after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

#: Errors the usual mistakes produce in any practical: (part of torch's message, the hint).
TORCH_HINTS: tuple[tuple[str, str], ...] = (
    ("does not require grad and does not have a grad_fn",
     "the loss you call .backward() on has no graph: a tensor on its way was detached "
     "(.detach(), .item(), .numpy() or torch.no_grad())"),
    ("mat1 and mat2 shapes cannot be multiplied",
     "a network got an input of the wrong width: check the shape of what you feed it"),
    ("must match the size of tensor",
     "two tensors' shapes do not broadcast: print their shapes; a per-sample quantity "
     "should have shape (n, 1, ...) to broadcast against a batch"),
    ("expected scalar type",
     "two tensors have different dtypes: convert one with .to(other.dtype)"),
    ("backward through the graph a second time",
     "backward ran twice through the same graph: make a new forward pass for each loss"),
    ("modified by an inplace operation",
     "a tensor needed for the gradient was changed in place (x += ..., x[...] = ..., "
     "optimizer.step() between a loss and its backward): write x = x + ... instead"),
)


def require(condition: Any, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` holds.

    An ``AssertionError`` rather than a ``ValueError``: the student's code is wrong, not the
    arguments of the check, and nbval and pytest report it as a failed check.
    """
    if not bool(condition):
        raise AssertionError(message)


def ok(what: str) -> None:
    """Report a passed check: one line, ``OK  <what was checked>``."""
    print(f"OK  {what}")


def not_done(exercise: str, detail: str = "") -> AssertionError:
    """The one "exercise not done yet" message (returned, for ``raise``)."""
    more = f" ({detail})" if detail else ""
    return AssertionError(
        f"{exercise}: not done yet{more}. Replace the stub by your code, run its cell, "
        "then this check again"
    )


def require_done(exercise: str, **results: Any) -> None:
    """Stop a cell that uses earlier results when one is still ``None`` (the handout sets
    them to ``None`` before the exercises): ``require_done("Exercise 6", encoder=encoder)``."""
    missing = [name for name, value in results.items() if value is None]
    if missing:
        raise not_done(exercise, f"no {', '.join(missing)} yet")


def _hint(err: BaseException, hints: Sequence[tuple[str, str]]) -> str | None:
    text = str(err)
    return next((h for key, h in (*hints, *TORCH_HINTS) if key in text), None)


def student(fn: Any, name: str, exercise: str,
            hints: Sequence[tuple[str, str]] = ()) -> Callable[..., Any]:
    """The student's function ``fn``, wrapped so that its usual failures read as hints.

    Args:
        fn: what the student passed to the check (must be callable).
        name: its name in the notebook, for messages (``"train_step"``).
        exercise: the exercise that writes it (``"Exercise 4"``).
        hints: the practical's own (part of torch's message, hint) pairs, tried first.
    """
    require(fn is not None, f"`{name}` is None: do {exercise} first (write it, run its cell)")
    require(callable(fn), f"`{name}` should be a function, got {type(fn).__name__}")

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as err:
            raise not_done(exercise, f"`{name}` still raises NotImplementedError: {err}") from None
        except NameError as err:
            raise AssertionError(
                f"`{name}` ({exercise}) uses a name that is not defined ({err}): run the cell "
                "of the earlier exercise that defines it, then this check again"
            ) from err
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            hint = _hint(err, hints)
            if hint is None:
                raise
            raise AssertionError(
                f"`{name}` ({exercise}) failed inside torch: {hint}\n(torch said: {err})"
            ) from err

    call.__name__ = name
    return call


def as_tensor_result(x: Any, what: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Check that a student's result is a finite tensor (of ``shape`` when given)."""
    require(isinstance(x, torch.Tensor), f"{what} should be a torch.Tensor, got {type(x).__name__}")
    if shape is not None:
        require(tuple(x.shape) == tuple(shape),
                f"{what} should have shape {tuple(shape)}, got {tuple(x.shape)}")
    require(bool(torch.isfinite(x.detach()).all()), f"{what} contains NaN or infinite values")
    return x


def close(a: Any, b: Any, tol: float) -> bool:
    """Same shape and equal within ``tol`` (absolute and relative), compared in float64."""
    a = torch.as_tensor(a.detach() if isinstance(a, torch.Tensor) else a, dtype=torch.float64)
    b = torch.as_tensor(b.detach() if isinstance(b, torch.Tensor) else b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))
