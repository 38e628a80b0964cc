"""Reproducibility, device choice, progress bars and the shared training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

# The plain text bar: it renders the same in Jupyter, Colab, the terminal and the
# built book (the widget bar needs ipywidgets and JavaScript to show at all).
from tqdm import tqdm

from coursekit.validation import (
    GeneratorLike,
    as_generator,
    check_positive,
    check_positive_int,
)

T = TypeVar("T")


def get_device(prefer_gpu: bool = True) -> torch.device:
    """The CUDA device when one is present (a Colab GPU), the CPU otherwise.

    Every model in the book is sized to train on a laptop CPU, so the CPU is
    always a correct answer; the GPU only makes the bigger exercises faster.
    """
    if prefer_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Iterator[T]:
    """A tqdm progress bar with the book's defaults (a bar that does not flood the page)."""
    if iterable is not None and not hasattr(iterable, "__iter__"):
        raise TypeError(f"iterable: expected an iterable (e.g. range(n)), got {type(iterable).__name__}")
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", True)
    # 79 characters: the width of a code cell in the rendered book (a wider bar would wrap).
    kwargs.setdefault("ncols", 79)
    return tqdm(iterable, **kwargs)


def _batches(
    data: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless stream of shuffled mini-batches of ``data`` (epochs without replacement)."""
    n = data.shape[0]
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield data[perm[start : start + batch_size]]


def _as_data(data: Any) -> torch.Tensor:
    """The training set as a tensor (NumPy arrays accepted), non-empty, without NaN."""
    if isinstance(data, (np.random.Generator, torch.Generator)):
        raise TypeError("data: expected a tensor or an array, got a random generator")
    if not isinstance(data, torch.Tensor):
        arr = np.asarray(data)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"data: expected a tensor or an array of numbers, got {type(data).__name__}")
        data = torch.from_numpy(np.ascontiguousarray(arr))
    if data.is_complex():
        raise TypeError("data: expected real numbers, got a complex tensor")
    if data.ndim < 1 or data.shape[0] == 0:
        raise ValueError(f"data: expected a non-empty batch of shape (n, ...), got {tuple(data.shape)}")
    if data.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise ValueError("data: contains NaN or infinite values")
    return data


def train(
    loss_fn: Callable[..., torch.Tensor],
    parameters: Iterable[torch.nn.Parameter] | torch.optim.Optimizer,
    data: torch.Tensor | None = None,
    *,
    n_steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    clip_grad: float | None = None,
    after_step: Callable[[], None] | None = None,
    generator: GeneratorLike = None,
    desc: str = "training",
    show_progress: bool = True,
) -> list[float]:
    """Minimise ``loss_fn`` with Adam for ``n_steps`` steps and return the loss history.

    Args:
        loss_fn: called as ``loss_fn(batch)`` with a mini-batch of ``data``
            (shape ``(batch_size, ...)``), or as ``loss_fn()`` when ``data`` is
            None (e.g. a reverse-KL objective that samples its own points).
            Returns a scalar tensor.
        parameters: the parameters to optimise, or a ready-made optimizer.
        data: (n, ...) training set (a tensor or a NumPy array), shuffled every epoch;
            floating data are moved to the parameters' dtype and device, integer data (token
            indices) keep their dtype.
        n_steps: number of gradient steps.
        batch_size: mini-batch size (capped at n).
        lr: Adam's learning rate (ignored when an optimizer is given).
        clip_grad: if set, a number > 0: clip the global gradient norm to this value.
        after_step: if set, called with no argument after every optimizer step (e.g. to
            clamp the weights of a WGAN critic, ``lambda: gan.clip_weights(critic, 0.01)``).
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state, which ``seed_everything`` seeds) for the shuffling.
        desc: label of the progress bar.
        show_progress: show a tqdm bar.

    Returns:
        the loss after each step, as a list of floats.
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    if clip_grad is not None:
        # A negative bound would flip the gradient (training uphill), 0 would freeze it.
        clip_grad = check_positive(clip_grad, "clip_grad")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
    if after_step is not None and not callable(after_step):
        raise TypeError(f"after_step: expected a callable, got {type(after_step).__name__}")
    if isinstance(parameters, torch.optim.Optimizer):
        optimizer = parameters
        params = [p for group in optimizer.param_groups for p in group["params"]]
    else:
        if isinstance(parameters, torch.Tensor):
            parameters = [parameters]
        try:
            params = [p for p in parameters]
        except TypeError:
            raise TypeError(
                "parameters: expected model.parameters(), a list of tensors or an optimizer, "
                f"got {type(parameters).__name__}"
            ) from None
        if not all(isinstance(p, torch.Tensor) for p in params):
            raise TypeError("parameters: expected tensors (e.g. model.parameters())")
        if not params:
            raise ValueError("parameters: nothing to optimise (empty parameter list)")
        optimizer = torch.optim.Adam(params, lr=check_positive(lr, "lr"))
    batches = None
    if data is not None:
        data = _as_data(data)
        floating = [p for p in params if p.is_floating_point()]
        if data.is_floating_point() and floating:
            # The book's data (float64 NumPy) meet the model's dtype and device here; integer
            # data (token or image indices) keep their dtype.
            data = data.to(dtype=floating[0].dtype, device=floating[0].device)
        batch_size = min(check_positive_int(batch_size, "batch_size"), data.shape[0])
        # Shuffling indices are drawn on the CPU (they index data on any device).
        batches = _batches(data, batch_size, as_generator(generator, "generator"))
    history: list[float] = []
    bar = progress(range(n_steps), desc=desc, disable=not show_progress)
    for _ in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(next(batches)) if batches is not None else loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise ValueError(
                "loss_fn: expected a scalar tensor that depends on the parameters, got "
                + (f"shape {tuple(loss.shape)}" + ("" if loss.requires_grad else " without grad")
                   if isinstance(loss, torch.Tensor) else type(loss).__name__)
            )
        if not torch.isfinite(loss):
            raise ValueError(
                f"loss became {loss.item()} at step {len(history)}: lower the learning rate "
                "or check the model for an unstable operation (log of 0, exp overflow)"
            )
        loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
        if after_step is not None:
            after_step()
        history.append(loss.item())
        if len(history) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(history[-50:]):.4f}")
    return history
