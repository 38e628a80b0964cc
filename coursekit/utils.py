"""Reproducibility, device choice, progress bars and the shared training loop."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

# The plain text bar: it renders the same in Jupyter, Colab, the terminal and the
# built book (the widget bar needs ipywidgets and JavaScript to show at all).
from tqdm import tqdm

from coursekit.validation import check_positive, check_positive_int

T = TypeVar("T")


def seed_everything(seed: int = 0, *, torch_threads: int | None = 1) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global state and torch, in one call.

    It also sets the number of torch CPU threads (one by default): the book's models
    are tiny, so a second thread only adds synchronisation overhead (up to 40x slower
    on a busy 2-core machine), and a fixed thread count keeps results bit-for-bit
    reproducible. Pass ``torch_threads=None`` to leave torch's setting alone.

    Returns a fresh ``numpy.random.Generator`` seeded with ``seed``: the
    course passes it explicitly to the functions that draw randomness, which
    is the reproducible way (global seeding is a safety net for library code).
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (the legacy global state, for library code that uses it)
    torch.manual_seed(seed)
    if torch_threads is not None:
        torch.set_num_threads(check_positive_int(torch_threads, "torch_threads"))
    # Hash randomisation only matters for subprocesses; set it for them.
    os.environ["PYTHONHASHSEED"] = str(seed)
    return np.random.default_rng(seed)


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
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("leave", True)
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


def train(
    loss_fn: Callable[..., torch.Tensor],
    parameters: Iterable[torch.nn.Parameter] | torch.optim.Optimizer,
    data: torch.Tensor | None = None,
    *,
    n_steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    clip_grad: float | None = None,
    generator: torch.Generator | None = None,
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
        data: (n, ...) training set, shuffled every epoch.
        n_steps: number of gradient steps.
        batch_size: mini-batch size (capped at n).
        lr: Adam's learning rate (ignored when an optimizer is given).
        clip_grad: if set, clip the global gradient norm to this value.
        generator: torch generator for the shuffling (reproducible batches).
        desc: label of the progress bar.
        show_progress: show a tqdm bar.

    Returns:
        the loss after each step, as a list of floats.
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    if isinstance(parameters, torch.optim.Optimizer):
        optimizer = parameters
        params = [p for group in optimizer.param_groups for p in group["params"]]
    else:
        params = [p for p in parameters]
        if not params:
            raise ValueError("parameters: nothing to optimise (empty parameter list)")
        optimizer = torch.optim.Adam(params, lr=check_positive(lr, "lr"))
    batches = None
    if data is not None:
        if not isinstance(data, torch.Tensor) or data.ndim < 1 or data.shape[0] == 0:
            raise ValueError("data: expected a non-empty torch.Tensor of shape (n, ...)")
        batch_size = min(check_positive_int(batch_size, "batch_size"), data.shape[0])
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        batches = _batches(data, batch_size, generator)
    history: list[float] = []
    bar = progress(range(n_steps), desc=desc, disable=not show_progress)
    for _ in bar:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(next(batches)) if batches is not None else loss_fn()
        if not torch.isfinite(loss):
            raise ValueError(
                f"loss became {loss.item()} at step {len(history)}: lower the learning rate "
                "or check the model for an unstable operation (log of 0, exp overflow)"
            )
        loss.backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
        history.append(loss.item())
        if len(history) % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(history[-50:]):.4f}")
    return history
