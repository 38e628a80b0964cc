"""Seeds: one place that turns a chapter's seed into random numbers, and one knob to move them all.

Every seed a chapter writes (``seed_everything(0)``, ``rng=3``, ``generator=7``,
``seeding.rng(1)``, ``seeding.manual_seed(2)``) goes through :func:`derive_seed`. With the
environment variable ``COURSEKIT_SEED`` unset (or ``0``) a seed is used as it is, so the
book's printed numbers are the ones its authors saw. With ``COURSEKIT_SEED=s`` for another
``s``, every seed of the chapter is mixed with ``s``: *all* the chapter's randomness moves
together, and re-running the chapter answers "does this hold for another seed?"::

    COURSEKIT_SEED=3 jupyter execute book/lecture2_gans/original_gan.ipynb
    python benchmarks/check_seeds.py book/lecture2_gans/original_gan.ipynb --seeds 10

A chapter therefore never calls ``np.random.default_rng(k)``, ``torch.manual_seed(k)`` or
``torch.Generator().manual_seed(k)`` itself (``tests/test_book.py`` enforces it): it calls
:func:`rng`, :func:`manual_seed` and :func:`generator` below, or passes the int to coursekit.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

#: The environment variable that moves every seed of a run.
ENV_VAR = "COURSEKIT_SEED"


def _check_seed(seed: object, name: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name}: a seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name}: a seed must be a non-negative integer, got {seed}")
    return int(seed)


def seed_offset() -> int:
    """The run's seed offset: ``COURSEKIT_SEED`` as a non-negative int (0 when unset).

    Raises:
        ValueError: when the variable is set to anything but a non-negative integer.
    """
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV_VAR}: expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{ENV_VAR}: expected a non-negative integer, got {value}")
    return value


def derive_seed(seed: int, name: str = "seed") -> int:
    """The seed actually used for the chapter's seed ``seed`` in this run.

    Offset 0 returns ``seed`` itself. Another offset mixes the pair (seed, offset) through
    NumPy's ``SeedSequence`` rather than adding them, so that seeds 0 and 1 of one run never
    become seeds 1 and 0 of another (two draws of a chapter stay independent).

    Returns: an int in [0, 2**32), which every consumer accepts (NumPy's legacy
    ``RandomState`` and so scikit-learn's and SciPy's ``random_state``, torch, ``random``).
    """
    seed = _check_seed(seed, name)
    offset = seed_offset()
    if offset == 0:
        return seed
    return int(np.random.SeedSequence([seed, offset]).generate_state(1, dtype=np.uint32)[0])


def rng(seed: int) -> np.random.Generator:
    """A fresh ``numpy.random.Generator`` for the chapter's seed ``seed`` (moves with the run)."""
    return np.random.default_rng(derive_seed(seed))


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` for the chapter's seed ``seed``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed))


def manual_seed(seed: int) -> None:
    """Seed torch's global generator (weight initialisation, dropout) with the chapter's seed."""
    torch.manual_seed(derive_seed(seed))


def seed_everything(seed: int = 0, *, torch_threads: int | None = 1) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global state and torch, in one call.

    The seed goes through :func:`derive_seed`, so ``COURSEKIT_SEED`` moves it with every
    other seed of the run.

    It also sets the number of torch CPU threads (one by default): the book's models
    are tiny, so a second thread only adds synchronisation overhead (up to 40x slower
    on a busy 2-core machine), and a fixed thread count keeps results bit-for-bit
    reproducible. Pass ``torch_threads=None`` to leave torch's setting alone.

    Returns a fresh ``numpy.random.Generator`` seeded like the globals, to pass as ``rng``.
    The global states matter too: every coursekit function called with ``rng=None`` or
    ``generator=None`` draws its seed from them (NumPy's for ``rng``, torch's for
    ``generator``), so a notebook that starts with ``seed_everything(0)`` repeats exactly.
    No other coursekit function reseeds them.
    """
    used = derive_seed(seed)
    random.seed(used)
    np.random.seed(used % 2**32)  # noqa: NPY002  (the legacy global state, for library code)
    torch.manual_seed(used)
    if torch_threads is not None:
        if isinstance(torch_threads, bool) or not isinstance(torch_threads, (int, np.integer)):
            raise TypeError(f"torch_threads: expected an int >= 1 or None, got {torch_threads!r}")
        if torch_threads < 1:
            raise ValueError(f"torch_threads: expected an int >= 1 or None, got {torch_threads}")
        torch.set_num_threads(int(torch_threads))
    # Hash randomisation only matters for subprocesses; set it for them.
    os.environ["PYTHONHASHSEED"] = str(used % 2**32)
    return np.random.default_rng(used)
