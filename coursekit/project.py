"""The course project kit: one shared generator, automatic evaluation, a leaderboard with history.

The slides' project: every group trains **the same architecture** (:class:`SharedGenerator`) with
the method of a paper of its choice, and every morning for a month each submission is
evaluated automatically. This module holds what the instructor runs and what the groups use.

A submission is a folder ``SUBMISSIONS/<group>/`` with

- ``model.pt``: a ``state_dict`` of :class:`SharedGenerator` (``torch.save(model.state_dict())``);
- optionally ``sampling.py`` defining ``sample(model, n, generator) -> z``, latent vectors of
  shape ``(n, 16)``, for a paper that changes how the latent is drawn (truncation, rejection
  in z with a discriminator, Langevin in latent space); extra weight files it needs are
  declared in ``EXTRA_FILES`` and loaded by it, inside the sandbox, with
  ``weights_only=True``. Without it, ``z ~ N(0, I)``.

The images are computed by the evaluator, outside the sandbox, with its own
:class:`SharedGenerator` loaded from the group's ``model.pt``: every group is judged on the
shared architecture.

Command line (``python -m coursekit.project --help``)::

    python -m coursekit.project evaluate SUBMISSION_DIR [--n N] [--seed S] [--timeout SECONDS]
                                         [--no-sandbox]
    python -m coursekit.project fetch GROUPS.toml --into SUBMISSIONS_DIR [--date YYYY-MM-DD]
    python -m coursekit.project leaderboard SUBMISSIONS_DIR --history HISTORY.csv --out SITE_DIR
                                            [--timeout SECONDS] [--date YYYY-MM-DD] [--n N]
                                            [--sets K] [--baseline GROUP] [--no-sandbox]
                                            [--reference PRIVATE.npz] [--secret-file FILE]
                                            [--seed S] [--carry-forward]
    python -m coursekit.project train-baseline OUT_DIR [--steps N] [--seed S]

**Safety.** Submissions are untrusted. Weights are read with
``torch.load(weights_only=True)``, which refuses pickled code. The submission's own code
(loading and sampling) runs in a bubblewrap sandbox (:mod:`coursekit.sandbox`): no network,
a read-only view of only the interpreter, the environment, coursekit and its own folder, a
private size-capped ``/tmp`` as the only writable place, its own PID namespace and session
(nothing it starts outlives it), caps on time, on memory and processes for the whole group,
and ``python -I``. Its only output is a .npy stream of latent vectors that the evaluator
reads with ``allow_pickle=False`` and checks (float32, shape (n, 16), finite, within
:data:`LATENT_BOUND`); reasons shown anywhere are one sanitised line. Without a working
``bwrap`` the kit refuses to run groups' code and says how to install it; ``--no-sandbox`` (``sandbox=False``) is for a trusted local run only. The
history is read *before* any submission runs and written by the evaluator alone.

**Uncertainty.** Each group draws K fresh sets of n samples (``--sets``, default 5): every
metric is the mean over the sets with their standard deviation, and the paired difference to
the ``baseline`` group (set k of both drawn with the same seed) with its standard error.

**Fairness.** The reference digits are the instructor's private set (``--reference``; the
public test split for a local run, marked on the page); the morning's seed is an HMAC of the
date under the instructor's secret; samples that look copied from real digits (near-copy
share, Meehan et al.'s C_T) are flagged and not ranked. **A month.** ``fetch`` takes each
group's last commit before the cutoff; the history records commit ids, file hashes and run
times, keeps superseded reruns, shows failures, and can carry a group's last good morning
forward; each group gets its own page.

The example submissions that ship with the package are at :func:`example_submissions`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import hmac
import html
import importlib.util
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coursekit import sandbox as sandbox_mod
from coursekit.sandbox import SandboxUnavailable
from coursekit.validation import as_generator, check_positive, check_positive_int

#: The latent dimension of the shared generator (fixed: everyone has the same architecture).
LATENT_DIM = 16
#: Image shape produced by the generator.
IMAGE_SHAPE = (1, 8, 8)
#: The metrics of a row, in the leaderboard's column order, with the direction that is better.
METRICS: dict[str, str] = {
    "fid": "lower",
    "precision": "higher",
    "recall": "higher",
    "density": "higher",
    "coverage": "higher",
    "inception_score": "higher",
    "class_coverage": "higher",
    "memorisation": "lower",
}
#: Default number of samples drawn from each submission.
DEFAULT_N = 1000
#: Default limit on a submission's own code (loading + sampling), in seconds.
DEFAULT_TIMEOUT = 60.0
#: Memory of a submission's sandbox in bytes: all its processes together (and each one's
#: address space). Importing torch alone takes about 0.6 GiB of address space.
MEMORY_LIMIT = 2 * 2**30
#: Fewest samples an evaluation accepts: FID needs more samples than its 32 features, and the
#: bootstrap resamples some margin above that.
MIN_N = 50
#: Limit on the child's start-up (Python and torch imports), which is the evaluator's fixed cost
#: and not counted in the submission's timeout, in seconds.
STARTUP_LIMIT = 180.0
#: Longest reason kept for a broken submission's row (a crash message can be megabytes).
MAX_REASON = sandbox_mod.MAX_REASON
#: Largest weights file (model.pt, a declared extra file) the evaluator reads, in bytes: the
#: shared generator's state_dict takes about 0.2 MB.
MAX_WEIGHTS_BYTES = 16 * 2**20
#: Largest absolute value of a latent coordinate a submission may return: N(0, I) stays
#: within 10 in practice; far beyond, the sigmoid saturates and a float overflow looms.
LATENT_BOUND = 100.0
#: First word of the line by which the child reports a submission's fault to the parent.
_REASON_TAG = "SUBMISSION-FAULT:"


class SharedGenerator(nn.Module):
    """The project's one architecture: noise ``z: (n, 16)`` -> images ``(n, 1, 8, 8)`` in [0, 1].

    A three-layer MLP (16 -> 128 -> 256 -> 64) with a sigmoid output: small enough to train
    on a laptop CPU in a minute, expressive enough for the 8x8 digits. The constructor takes
    no argument on purpose: every group trains exactly this network.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(LATENT_DIM, 128),
            nn.SiLU(),
            nn.Linear(128, 256),
            nn.SiLU(),
            nn.Linear(256, 64),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid pixel values: ``z: (n, 16)`` -> ``(n, 1, 8, 8)`` (a VAE decoder's logits)."""
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != LATENT_DIM:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z: expected a tensor of shape (n, {LATENT_DIM}), got {shape}")
        return self.net(z).view(-1, *IMAGE_SHAPE)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]: ``z: (n, 16)`` -> ``(n, 1, 8, 8)``."""
        return torch.sigmoid(self.logits(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """The default sampler: ``z ~ N(0, I)``, images ``(n, 1, 8, 8)``."""
        n = check_positive_int(n, "n")
        p = next(self.parameters())
        g = as_generator(generator, device=p.device)
        z = torch.randn(n, LATENT_DIM, generator=g, device=p.device, dtype=p.dtype)
        return self(z)


# ----------------------------------------------------------------------------------------------
# The example submissions that ship with the package
# ----------------------------------------------------------------------------------------------


def _examples_dir() -> Path:
    """The package-data folder of the examples, as a real folder on disk."""
    from importlib import resources

    root = resources.files("coursekit") / "project_examples"
    # The examples are read as folders (the evaluator binds them into its sandbox), so they
    # must exist on disk: true for every pip install, not for a zipped package.
    if not isinstance(root, Path) or not root.is_dir():
        raise FileNotFoundError("coursekit's project examples are not on disk (a zipped "
                                "install?): reinstall with pip install coursekit")
    return root


def example_submissions() -> Path:
    """The folder of the three example submissions that ship with coursekit (package data).

    It holds ``baseline/``, ``beta4/`` and ``truncation/``, each a valid submission folder;
    pass it to :func:`leaderboard` as ``submissions``. It is part of the installed package:
    copy a submission before changing it.
    """
    return _examples_dir() / "submissions"


def example_history() -> Path:
    """The examples' history CSV (three mornings) that ships with coursekit (package data).

    Copy it before running :func:`leaderboard` on it: the leaderboard rewrites its history.
    """
    return _examples_dir() / "history.csv"


# ----------------------------------------------------------------------------------------------
# The baseline a group can start from: SharedGenerator as the decoder of a VAE
# ----------------------------------------------------------------------------------------------


class _Encoder(nn.Module):
    """q_phi(z | x): (n, 1, 8, 8) -> mean and log-variance, each (n, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 128),
                                 nn.SiLU(), nn.Linear(128, 2 * LATENT_DIM))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)  # keeps exp(logvar) finite early in training


def train_baseline(n_steps: int = 3000, *, seed: int = 0, beta: float = 1.0,
                   show_progress: bool = True) -> tuple[SharedGenerator, list[float]]:
    """Train the baseline: a VAE whose decoder is :class:`SharedGenerator`, on the training digits.

    The loss is the negative ELBO with a Bernoulli likelihood on grey levels (the course's
    convention, Lecture 1 Part IV) and weight ``beta`` on the KL term; training goes through
    :func:`coursekit.utils.train` (Adam, mini-batches of 128).

    Returns:
        the trained generator (the decoder) and the loss history (nats per image).
    """
    from coursekit.data import load_digits
    from coursekit.utils import train

    n_steps = check_positive_int(n_steps, "n_steps")
    beta = check_positive(beta, "beta")
    g = as_generator(seed)
    # The networks' initial weights come from the seed, without touching the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder, encoder = SharedGenerator(), _Encoder()
    images, _ = load_digits("train")

    def neg_elbo(x: torch.Tensor) -> torch.Tensor:
        mu, logvar = encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
        rec = nn.functional.binary_cross_entropy_with_logits(
            decoder.logits(z), x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return (rec + beta * kl).mean()

    history = train(neg_elbo, list(decoder.parameters()) + list(encoder.parameters()), images,
                    n_steps=n_steps, batch_size=128, lr=2e-3, generator=g,
                    desc="baseline VAE", show_progress=show_progress)
    return decoder.eval(), history


# ----------------------------------------------------------------------------------------------
# Running a submission's code in a child process
# ----------------------------------------------------------------------------------------------


class SubmissionError(Exception):
    """A submission could not be evaluated; the message is the reason shown on the leaderboard."""


# The child's whole program: python -I ignores PYTHONPATH and the working folder, so coursekit
# is found through the folder given first (bound read-only in the sandbox).
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from coursekit.project import _child_main; sys.exit(_child_main(sys.argv[2:]))")


def _read_weights(path: Path) -> bytes:
    """The bytes of a weights file of the submission, refusing links and oversized files."""
    if path.is_symlink():
        # Outside the sandbox, a link would let a group make the evaluator read any file.
        raise SubmissionError(f"{path.name} is a symbolic link: submit the file itself")
    if not path.exists():
        raise SubmissionError(f"no {path.name} in the submission folder")
    if not path.is_file():
        raise SubmissionError(f"{path.name} is not a file (a folder?): save the weights with "
                              "torch.save(model.state_dict(), 'model.pt')")
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise SubmissionError(f"{path.name} holds {size} bytes, more than the "
                              f"{MAX_WEIGHTS_BYTES} a state_dict of SharedGenerator needs")
    return path.read_bytes()


def _load_generator(data: bytes) -> SharedGenerator:
    """A :class:`SharedGenerator` with the weights of ``model.pt``'s bytes, read with
    ``weights_only=True`` (pickled code is refused); eval mode, float32, CPU."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any failure is the submission's; report it)
        raise SubmissionError(f"model.pt could not be loaded as plain weights "
                              f"(torch.load with weights_only=True): {type(e).__name__}: {e}"
                              ) from None
    if not isinstance(state, dict):
        raise SubmissionError(f"model.pt holds a {type(state).__name__}, not a state_dict")
    model = SharedGenerator()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise SubmissionError("model.pt is not a state_dict of SharedGenerator: "
                              + " ".join(line.strip() for line in first[:3])) from None
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()):
        raise SubmissionError("model.pt holds NaN or infinite weights")
    return model.float().eval()


def _check_extra_files(module: Any, folder: Path) -> None:
    """Child side: the extra weight files ``sampling.py`` declares in ``EXTRA_FILES`` exist as
    plain files of the submission folder (a discriminator, an energy network...)."""
    extra = getattr(module, "EXTRA_FILES", ())
    if (not isinstance(extra, (list, tuple))
            or not all(isinstance(f, str) for f in extra) or len(extra) > 16):
        raise SubmissionError("EXTRA_FILES must be a list of at most 16 file names")
    for name in extra:
        if not name or "/" in name or name.startswith("."):
            raise SubmissionError(f"EXTRA_FILES: {name!r} is not a plain file name of your folder")
        _read_weights(folder / name)  # exists, a file, not a link, not oversized


def _child_sample(submission: str, n: int, seed: int) -> np.ndarray:
    """Child side: load the weights safely, run the group's ``sample(model, n, generator)``;
    returns its latent vectors as float32 (the parent checks their shape and values)."""
    torch.set_num_threads(1)
    # This is the child process, not the caller's: seeding its global stream makes a
    # sampling.py that ignores the generator it is given reproducible too.
    torch.manual_seed(seed)
    folder = Path(submission)
    model = _load_generator(_read_weights(folder / "model.pt"))
    generator = torch.Generator().manual_seed(seed)
    script = folder / "sampling.py"
    if not script.is_file():
        raise SubmissionError("sampling.py is not a file")
    spec = importlib.util.spec_from_file_location("submission_sampling", script)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # the submission's code: only ever in this child
    except Exception as e:  # noqa: BLE001 (SyntaxError, ImportError...: the submission's)
        raise SubmissionError(f"sampling.py could not be imported: {type(e).__name__}: {e}"
                              ) from None
    if not callable(getattr(module, "sample", None)):
        raise SubmissionError("sampling.py defines no function sample(model, n, generator)")
    _check_extra_files(module, folder)
    try:
        with torch.no_grad():
            z = module.sample(model, n, generator)
    except Exception as e:  # noqa: BLE001
        raise SubmissionError(f"sample() raised {type(e).__name__}: {e}") from None
    if not isinstance(z, torch.Tensor):
        raise SubmissionError(f"sample() returned a {type(z).__name__}, not a torch.Tensor "
                              "(convert it with torch.as_tensor)")
    if not z.is_floating_point():
        raise SubmissionError(f"sample() returned a tensor of dtype {z.dtype}: expected "
                              f"latent vectors z, a float tensor of shape (n, {LATENT_DIM})")
    return z.detach().cpu().to(torch.float32).numpy()


def _child_main(argv: Sequence[str]) -> int:
    """The sandboxed child: ``SUBMISSION N SEED NPROC``; writes ``READY`` and then the samples
    as a .npy stream on its standard output, or a tagged reason on stderr (exit code 3)."""
    import resource

    folder, n, seed, nproc = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    if nproc > 0:
        # Inside the sandbox's user namespace this counts the sandbox's own processes: a
        # kernel cap on a fork storm (ignored when the evaluator runs as root, where the
        # evaluator's watchdog still stops it).
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    torch.set_num_threads(1)
    # Everything the child needs after the group's code has run is imported now, before it.
    import numpy.lib.format  # noqa: F401
    # The samples go through a private copy of stdout; the group's prints go to stderr, so
    # they can never corrupt the samples stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    out.write(b"READY\n")  # imports done: the parent starts the submission's clock
    out.flush()
    try:
        x = _child_sample(folder, n, seed)
    except SubmissionError as e:
        print(f"{_REASON_TAG} {' '.join(str(e).split())[:4 * MAX_REASON]}", file=sys.stderr,
              flush=True)
        return 3
    buf = io.BytesIO()  # np.save needs a seekable file; a pipe is not one
    np.save(buf, x, allow_pickle=False)
    out.write(buf.getvalue())
    out.flush()
    return 0


def check_n(n: Any) -> int:
    """The number of samples of an evaluation: an integer >= :data:`MIN_N`."""
    n = check_positive_int(n, "n")
    if n < MIN_N:
        raise ValueError(f"n: expected at least {MIN_N} samples (FID needs more samples than "
                         f"its 32 features), got {n}")
    return n


def check_timeout(timeout: Any) -> float:
    """A submission's time limit in seconds: a finite number > 0, at most a day."""
    timeout = check_positive(timeout, "timeout")
    if timeout > 86400:
        raise ValueError(f"timeout: expected at most 86400 s (a day), got {timeout:g}")
    return timeout


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _reason(err: str, returncode: int, memory: int = MEMORY_LIMIT) -> str:
    """The reason of a failed child, from its stderr: the submission's fault it reported, or
    the last line of the traceback; out-of-memory failures are named as such."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    tagged = [line for line in lines if line.startswith(_REASON_TAG)]
    if tagged:
        last = tagged[-1][len(_REASON_TAG):].strip()
    else:
        last = lines[-1] if lines else f"exit code {returncode}"
    oom = ("MemoryError" in err or "can't allocate memory" in err
           or "Cannot allocate memory" in err or "std::bad_alloc" in err
           or returncode in (-9, 137))
    if oom:
        last = f"ran out of memory (limit {_gib(memory)}): {last}"
    return last


def _limits(limits: Any) -> sandbox_mod.Limits:
    if limits is None:
        return sandbox_mod.Limits(memory=MEMORY_LIMIT)
    if not isinstance(limits, sandbox_mod.Limits):
        raise ValueError(f"limits: expected a coursekit.sandbox.Limits or None, got "
                         f"{type(limits).__name__}")
    return limits


def _check_sandbox_flag(sandbox: Any) -> bool:
    if not isinstance(sandbox, bool):
        raise ValueError(f"sandbox: expected True or False, got {sandbox!r}")
    return sandbox


def _draw(submission: str | Path, n: int, seed: int, timeout: float, sandbox: bool,
          limits: sandbox_mod.Limits) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """The contract: latent vectors from the group, images from the evaluator.

    Returns ``z: (n, 16)``, ``images: (n, 1, 8, 8)`` computed here, outside the sandbox, by the
    evaluator's own :class:`SharedGenerator` loaded with the group's ``model.pt``, and the
    SHA-256 of the folder's files (``{name: hex}``).
    """
    folder = Path(submission)
    if folder.is_symlink():
        # Its target would be bound into the sandbox: a link to / would show the whole disk.
        raise SubmissionError("the submission folder is a symbolic link: submit a real folder")
    if not folder.is_dir():
        raise SubmissionError("the submission is not a folder")
    data = _read_weights(folder / "model.pt")
    hashes = _file_hashes(folder)
    hashes["model.pt"] = hashlib.sha256(data).hexdigest()  # the very bytes evaluated
    model = _load_generator(data)
    script = folder / "sampling.py"
    if script.is_symlink() or (script.exists() and not script.is_file()):
        raise SubmissionError("sampling.py is not a plain file")
    if not script.exists():
        # The default sampler needs no group code: z ~ N(0, I), drawn here.
        z = torch.randn(n, LATENT_DIM, generator=torch.Generator().manual_seed(seed)).numpy()
    else:
        z = _run_sampling(folder, n, seed, timeout, sandbox, limits)
    if not isinstance(z, np.ndarray) or z.dtype != np.float32:
        raise SubmissionError("the latent vectors are not a float32 array")
    if z.shape != (n, LATENT_DIM):
        hint = (" (images? return latent vectors z: the evaluator computes the images with "
                "your model.pt)" if z.shape[1:] == IMAGE_SHAPE else "")
        raise SubmissionError(f"sample() returned shape {z.shape}, expected latent vectors of "
                              f"shape {(n, LATENT_DIM)}{hint}")
    if not np.all(np.isfinite(z)):
        raise SubmissionError(f"the latent vectors contain NaN or infinite values "
                              f"({int(np.sum(~np.isfinite(z)))} of {z.size})")
    if np.abs(z).max() > LATENT_BOUND:
        raise SubmissionError(f"the latent vectors leave [-{LATENT_BOUND:g}, {LATENT_BOUND:g}] "
                              f"(max |z| {np.abs(z).max():.3g})")
    with torch.no_grad():
        x = torch.cat([model(torch.from_numpy(z[i:i + 4096]))
                       for i in range(0, n, 4096)]).numpy()
    if not np.all(np.isfinite(x)):
        raise SubmissionError("the generator's images of these latent vectors contain NaN")
    return z, x, hashes


def _file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of the regular top-level files of a submission (at most 32, each at most
    :data:`MAX_WEIGHTS_BYTES`; larger or linked files are listed without reading them)."""
    out = {}
    for f in sorted(folder.iterdir())[:32]:
        if f.is_symlink() or not f.is_file():
            continue
        if f.stat().st_size > MAX_WEIGHTS_BYTES:
            out[f.name] = "too-large"
            continue
        out[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _run_sampling(folder: Path, n: int, seed: int, timeout: float, sandbox: bool,
                  limits: sandbox_mod.Limits) -> np.ndarray:
    """The group's ``sampling.py`` in the sandbox; its latent vectors as an array."""
    lib = str(Path(__file__).resolve().parents[1])
    inside = sandbox_mod.SUBMISSION_MOUNT if sandbox else str(folder.resolve())
    argv = [sys.executable, "-I", "-c", _BOOT, lib, inside, str(n), str(int(seed)),
            str(limits.processes if sandbox else 0)]
    res = sandbox_mod.run(argv, submission=folder if sandbox else None, timeout=timeout,
                          startup_limit=STARTUP_LIMIT, limits=limits, sandbox=sandbox)
    if res.killed == "startup":
        raise SubmissionError(f"the evaluator's child process did not start within "
                              f"{STARTUP_LIMIT:g} s (an overloaded machine?)")
    if res.killed == "timeout":
        raise SubmissionError(f"timed out: loading and sampling took more than {timeout:g} s")
    if res.killed == "memory":
        raise SubmissionError(f"ran out of memory: its processes together held more than "
                              f"{_gib(limits.memory)}")
    if res.killed == "processes":
        raise SubmissionError(f"started too many processes or threads (limit "
                              f"{limits.processes})")
    if res.killed == "output":
        raise SubmissionError(f"wrote more than {limits.output} bytes on its standard output")
    if res.returncode != 0:
        raise SubmissionError(_reason(res.stderr, res.returncode, limits.memory))
    if not res.stdout:
        raise SubmissionError("the sampling process returned no latent vectors")
    try:
        z = np.load(io.BytesIO(res.stdout), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 (the bytes are the submission's output)
        raise SubmissionError(f"the latent vectors could not be read: {type(e).__name__}"
                              ) from None
    return z


def _check_draw_args(n: Any, timeout: Any, sandbox: Any, limits: Any, seed: Any
                     ) -> tuple[int, float, bool, sandbox_mod.Limits, int]:
    n = check_n(n)
    timeout = check_timeout(timeout)
    sandbox = _check_sandbox_flag(sandbox)
    limits = _limits(limits)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    return n, timeout, sandbox, limits, int(seed)


def draw_samples(submission: str | Path, n: int = DEFAULT_N, *, seed: int = 0,
                 timeout: float = DEFAULT_TIMEOUT, sandbox: bool = True,
                 limits: sandbox_mod.Limits | None = None) -> np.ndarray:
    """A submission's ``(n, 1, 8, 8)`` samples, by the project's contract.

    The group's ``sampling.py`` (when there is one) returns latent vectors ``z: (n, 16)``; it
    runs under bubblewrap (:mod:`coursekit.sandbox`): no network, a read-only view of the
    interpreter, the environment, coursekit and its own folder, a private ``/tmp``, caps on
    time, memory (all its processes together), processes and disk. Without ``sampling.py``,
    ``z ~ N(0, I)`` is drawn here. The images are then computed **here**, outside the
    sandbox, by the evaluator's own :class:`SharedGenerator` with the group's ``model.pt``
    (read with ``weights_only=True``): every group is judged on the shared architecture.
    ``sandbox=False`` runs ``sampling.py`` without bubblewrap, for a trusted local run only.

    Raises:
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here (nothing ran).
        SubmissionError: with the reason (missing file, unsafe or wrong weights, a crash,
            a timeout, the memory or process cap, a wrong shape or dtype, NaN).
    """
    n, timeout, sandbox, limits, seed = _check_draw_args(n, timeout, sandbox, limits, seed)
    return _draw(submission, n, seed, timeout, sandbox, limits)[1]


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


#: Environment variable naming the instructor's private reference set (a .npy/.npz file).
REFERENCE_ENV = "COURSEKIT_PROJECT_REFERENCE"
#: Environment variable holding the instructor's secret for the morning's sampling seed.
SECRET_ENV = "COURSEKIT_PROJECT_SECRET"
#: A group is flagged, and not ranked, when more than this share of its samples lie within
#: the copy radius of a known real digit (fresh digits do so about 1 % of the time) ...
COPY_SHARE = 0.10
#: ... or when Meehan et al.'s data-copying statistic C_T is below this (their threshold).
CT_THRESHOLD = -3.0
#: Fewest digits a private reference set must hold (FID's 32 features, k-NN, five cells).
MIN_REFERENCE = 100


def _load_reference_images(path: str | Path) -> np.ndarray:
    """The instructor's private digits: a .npy array, or the ``images`` array of a .npz
    (``allow_pickle=False``), of shape (m, 1, 8, 8), (m, 8, 8) or (m, 64), values in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"reference: {path} is not a file")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            if "images" not in data.files:
                raise ValueError(f"reference: {path} holds no array named 'images' "
                                 f"(found {data.files})")
            data = data["images"]
    except (OSError, ValueError) as e:
        if str(e).startswith("reference:"):
            raise
        raise ValueError(f"reference: {path} is not a .npy/.npz array file: {e}") from None
    x = np.asarray(data, dtype=np.float32)
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != 64:
        raise ValueError(f"reference: expected digits of shape (m, 1, 8, 8), (m, 8, 8) or "
                         f"(m, 64), got {x.shape}")
    x = x.reshape(-1, *IMAGE_SHAPE)
    if x.shape[0] < MIN_REFERENCE:
        raise ValueError(f"reference: expected at least {MIN_REFERENCE} digits, got {x.shape[0]}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError("reference: expected finite pixel values in [0, 1]")
    return x


def _reference(path: str | Path | None = None) -> dict[str, Any]:
    """What every submission is compared with, computed once per run.

    ``path`` (or the environment variable :data:`REFERENCE_ENV`): the instructor's private
    set, digits the groups never receive. Without it, the public test split (360 digits)
    stands in, for local runs, and the page says so.
    """
    from coursekit import metrics
    from coursekit.data import load_digits

    if path is None:
        path = os.environ.get(REFERENCE_ENV) or None
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    train_pixels = train.flatten(1).numpy().astype(np.float64)
    test_pixels = test.flatten(1).numpy().astype(np.float64)
    if path is None:
        ref = test.numpy().astype(np.float32)
        name = f"the public test split ({ref.shape[0]} digits): a local run, not official"
        private = False
    else:
        ref = _load_reference_images(path)
        name = f"the instructor's private set ({ref.shape[0]} digits)"
        private = True
    ref_pixels = ref.reshape(ref.shape[0], -1).astype(np.float64)
    # The copy radius: fresh digits (the reference, never trained on) come that close to the
    # training set only 1 % of the time.
    radius = float(np.quantile(metrics.nearest_neighbour_distances(ref_pixels, train_pixels),
                               0.01))
    known = [train_pixels, test_pixels] + ([ref_pixels] if private else [])
    return {"real": metrics.digits_features(ref), "ref_pixels": ref_pixels,
            "train_pixels": train_pixels, "known_pixels": np.concatenate(known),
            "copy_radius": radius, "name": name, "private": private}


def compute_metrics(samples: np.ndarray, *, seed: int = 0, n_bootstrap: int = 0,
                    reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """All leaderboard metrics of ``samples: (n, 1, 8, 8)`` against the reference digits.

    The reference (``reference``, from the private set the instructor holds, or the public
    test split for a local run) is data the model was not trained on.

    - ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al. 2020, k = 5) and
      ``fid`` ("digits-FID"), in the feature space of the course's digits classifier, against
      the reference digits;
    - ``inception_score`` (10 splits) and ``class_coverage`` (number of the 10 classes that
      the classifier assigns to at least 1 % of the samples);
    - ``memorisation``: the fraction of samples that lie closer (in pixels) to a known real
      digit (training set, public test split, reference) than 99 % of fresh digits come to
      the training set. A model that does not copy scores about 0.01; one that replays real
      digits scores near 1;
    - ``ct``: Meehan et al. (2020)'s data-copying statistic C_T
      (:func:`coursekit.metrics.memorisation_ct`, 5 k-means cells of the training pixels, the
      reference as held-out data): about 0 for a model that does not copy, far below -3 for
      one that returns (near-)copies of training digits.

    With ``n_bootstrap > 0`` it adds ``<metric>_ci``: a 95 % percentile interval over
    bootstrap resamples of the generated samples (the real set held fixed).
    """
    from coursekit import metrics

    ref = reference if reference is not None else _reference()
    x = np.asarray(samples, dtype=np.float32)
    n = x.shape[0]
    feats = metrics.digits_features(x)
    probs = metrics.digits_probs(x)

    def core(idx: np.ndarray) -> dict[str, float]:
        f = feats[idx]
        out = dict(metrics.prdc(ref["real"], f, nearest_k=5))
        out["fid"] = metrics.fid(ref["real"], f)
        return out

    row: dict[str, Any] = core(np.arange(n))
    row["inception_score"] = metrics.inception_score(probs, splits=10)[0]
    share = np.bincount(probs.argmax(1), minlength=10) / n
    row["class_coverage"] = int(np.sum(share >= 0.01))
    pixels = x.reshape(n, -1).astype(np.float64)
    d_known = metrics.nearest_neighbour_distances(pixels, ref["known_pixels"])
    row["memorisation"] = float(np.mean(d_known < ref["copy_radius"]))
    try:
        # The same cells for every group (k-means seed 0); cells need a few samples each.
        row["ct"] = metrics.memorisation_ct(ref["train_pixels"], ref["ref_pixels"], pixels,
                                            n_cells=5, min_generated=max(5, n // 50),
                                            rng=0).statistic
    except ValueError:  # every sample in cells too small to test (a collapsed model)
        row["ct"] = float("nan")
    row = {k: float(v) for k, v in row.items()}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = [core(rng.integers(0, n, n)) for _ in range(n_bootstrap)]
        for key in draws[0]:
            lo, hi = np.percentile([d[key] for d in draws], [2.5, 97.5])
            row[f"{key}_ci"] = [float(lo), float(hi)]
    row["n_samples"] = n
    row["n_real"] = int(ref["real"].shape[0])
    return row


def _copy_flag(row: dict[str, Any]) -> str:
    """Why a row is flagged as copying real digits ("" when it is not): too many samples
    within the copy radius of a known digit, or C_T below :data:`CT_THRESHOLD`."""
    why = []
    if row["memorisation"] > COPY_SHARE:
        why.append(f"{100 * row['memorisation']:.0f} % of samples are near-copies of real "
                   f"digits (fresh digits: about 1 %)")
    ct = row.get("ct", float("nan"))
    if np.isfinite(ct) and ct < CT_THRESHOLD:
        why.append(f"data-copying test C_T = {ct:.1f} < {CT_THRESHOLD:g}")
    return "; ".join(why)


def _morning_seed(date: str, secret: bytes | None) -> int:
    """The morning's sampling seed: HMAC-SHA256 of the date under the instructor's secret,
    so that no group can reproduce the official numbers offline; SHA-256 of the date alone
    without a secret (a public, reproducible seed for local runs)."""
    msg = f"coursekit-project:{date}".encode()
    digest = (hmac.new(secret, msg, hashlib.sha256).digest() if secret
              else hashlib.sha256(msg).digest())
    return int.from_bytes(digest[:8], "big") % 2**62


def _secret(secret_file: str | Path | None) -> bytes | None:
    """The instructor's secret: the file ``secret_file``, else :data:`SECRET_ENV`, else None."""
    if secret_file is not None:
        path = Path(secret_file)
        if not path.is_file():
            raise ValueError(f"secret_file: {path} is not a file")
        data = path.read_bytes().strip()
        if len(data) < 16:
            raise ValueError("secret_file: expected a secret of at least 16 bytes")
        return data
    env = os.environ.get(SECRET_ENV, "").strip()
    return env.encode() if env else None


def _summarise(sets: list[dict[str, float]]) -> dict[str, Any]:
    """Mean, standard deviation (ddof 1; 0 for one set) and the values of each metric over
    the K sample sets."""
    row: dict[str, Any] = {}
    for m in METRICS:
        v = np.array([s[m] for s in sets], dtype=np.float64)
        row[m] = float(v.mean())
        row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        row[f"{m}_sets"] = [float(a) for a in v]
    return row


def _paired(row: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """Paired difference of each metric to the baseline's, set by set (set k of both used
    the same seed), with its standard error sd / sqrt(K)."""
    out: dict[str, float] = {}
    for m in METRICS:
        d = np.subtract(row[f"{m}_sets"], base[f"{m}_sets"])
        out[f"{m}_diff"] = float(d.mean())
        out[f"{m}_diff_se"] = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return out


def evaluate(submission: str | Path, n: int = DEFAULT_N, *, seed: int = 0,
             timeout: float = DEFAULT_TIMEOUT, n_bootstrap: int = 0,
             reference: dict[str, Any] | None = None, sandbox: bool = True,
             limits: sandbox_mod.Limits | None = None, n_sets: int = 1) -> dict[str, Any]:
    """Evaluate one submission folder: samples by the contract (:func:`draw_samples`), then
    :func:`compute_metrics`.

    The submission draws ``n_sets`` fresh sets of ``n`` samples (one run of ``n_sets * n``
    latent vectors, cut into sets; the timeout covers them all). Each metric is the mean over
    the sets, ``<metric>_sd`` its standard deviation over them, ``<metric>_sets`` the values:
    the spread a student sees when drawing again, which the bootstrap underestimates for the
    k-NN metrics (resampling makes duplicates that shrink the radii).

    Returns a dict with ``status`` (``"ok"`` or ``"error"``), ``reason`` (empty when ok; one
    sanitised line of at most :data:`MAX_REASON` characters), ``files`` (the SHA-256 of the
    submission's files), ``flag`` (why the samples look copied from real digits, or empty)
    and the metrics. The same seed gives the same numbers. ``sandbox=False`` is for a trusted
    local run only (the book's own examples). ``n_bootstrap`` (kept for older callers) adds
    bootstrap intervals of the first set.

    Raises:
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here.
    """
    n, timeout, sandbox, limits, seed = _check_draw_args(n, timeout, sandbox, limits, seed)
    n_sets = check_positive_int(n_sets, "n_sets")
    try:
        _, x, hashes = _draw(submission, n * n_sets, seed, timeout, sandbox, limits)
    except SubmissionError as e:
        # One line without a leading formula character: for the CSV, the page and the log.
        return {"status": "error", "reason": sandbox_mod.sanitise(e),
                "files": _hash_text(submission)}
    try:
        sets = [compute_metrics(x[k * n:(k + 1) * n], seed=seed,
                                n_bootstrap=n_bootstrap if k == 0 else 0, reference=reference)
                for k in range(n_sets)]
    except Exception as e:  # noqa: BLE001 (degenerate samples must not stop the other groups)
        return {"status": "error", "reason": sandbox_mod.sanitise(
            f"the metrics could not be computed on these samples: {type(e).__name__}: {e}"),
            "files": _files_text(hashes)}
    row = {**sets[0], **_summarise(sets), "n_sets": n_sets}
    ct = np.array([s_["ct"] for s_ in sets])
    row["ct"] = float(np.nanmean(ct)) if np.isfinite(ct).any() else float("nan")
    row["ct_sd"] = float(np.nanstd(ct, ddof=1)) if np.isfinite(ct).sum() > 1 else 0.0
    row["flag"] = _copy_flag(row)
    return {"status": "ok", "reason": "", "files": _files_text(hashes), **row}


def _files_text(hashes: dict[str, str]) -> str:
    """``name:sha256`` pairs, space-separated (the history's ``files`` column)."""
    return " ".join(f"{k}:{v}" for k, v in sorted(hashes.items()))


def _hash_text(submission: str | Path) -> str:
    """The files of a folder that failed (when it is a readable folder at all)."""
    folder = Path(submission)
    try:
        ok = folder.is_dir() and not folder.is_symlink()
        return _files_text(_file_hashes(folder)) if ok else ""
    except OSError:
        return ""


def safe_group_name(name: str) -> str:
    """The name a group's folder is shown under (page, CSV): its folder name, with control
    characters replaced and a leading ``'`` when it starts like a spreadsheet formula."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    shown = "".join(" " if (ord(c) < 32 or 127 <= ord(c) < 160) else c for c in name)
    # A quote in front is how spreadsheets themselves mark "text, not a formula".
    return "'" + shown if shown[0] in "=+-@\t\r" else shown


# ----------------------------------------------------------------------------------------------
# The leaderboard: history file and static page
# ----------------------------------------------------------------------------------------------

_FIELDS = ["date", "group", "status", "reason", "flag", "rank", *METRICS, "ct", "n_samples",
           "n_sets", *(f"{m}_sd" for m in METRICS), "ct_sd", *(f"{m}_diff" for m in METRICS),
           *(f"{m}_diff_se" for m in METRICS), "seed", "seed_source", "reference", "commit",
           "files", "run_at", "superseded", "carried_from"]


def read_history(path: str | Path) -> list[dict[str, str]]:
    """The rows of a history CSV (empty when the file does not exist yet)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # rows of an older history lack the newer columns
        for k in _FIELDS:
            r[k] = r.get(k) or ""
    return rows


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["date"], r["group"], r.get("run_at") or ""))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in _FIELDS})
    tmp.replace(path)  # atomic: a reader never sees half a file


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _current(history: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows that count: every row but those a rerun of the same morning superseded."""
    return [r for r in history if not r.get("superseded")]


def _has_value(r: dict[str, str], metric: str) -> bool:
    return r["status"] in ("ok", "carried") and r.get(metric, "") not in ("", "nan")


def _plot_metric(ax: Any, rows: list[dict[str, str]], groups: list[str], metric: str) -> None:
    """One line per group over the dates; a failed morning is an x on the bottom edge, in
    the group's colour (failures stay visible)."""
    for i, g in enumerate(groups):
        mine = [r for r in rows if r["group"] == g]
        pts = sorted((r["date"], float(r[metric])) for r in mine if _has_value(r, metric))
        bad = sorted(r["date"] for r in mine if r["status"] == "error")
        # Escape "$" (mathtext) and a leading "_" (legend skips such labels).
        label = g.replace("$", r"\$")
        label = " " + label if label.startswith("_") else label
        colour = f"C{i % 10}"
        ax.plot([_dt.date.fromisoformat(d) for d, _ in pts], [v for _, v in pts],
                marker="o", label=label, color=colour)
        if bad:
            ax.plot([_dt.date.fromisoformat(d) for d in bad], [0.03] * len(bad), "x",
                    color=colour, markersize=9, mew=2, transform=ax.get_xaxis_transform(),
                    clip_on=False)
    dates = sorted({r["date"] for r in rows})
    if len(dates) == 1:  # one morning: a week around it, not matplotlib's default years
        day = _dt.date.fromisoformat(dates[0])
        ax.set_xlim(day - _dt.timedelta(days=3), day + _dt.timedelta(days=3))


def _plots(history: list[dict[str, str]], site: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _current(history)
    groups = sorted({r["group"] for r in rows})
    names = []
    for metric, better in METRICS.items():
        fig, ax = plt.subplots(figsize=(5.0, 3.0))
        _plot_metric(ax, rows, groups, metric)
        ax.set_xlabel("evaluation date (x: the submission failed)")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{metric.replace('_', ' ')} ({better} is better)")
        if groups:
            ax.legend(fontsize=7)
        fig.autofmt_xdate()
        fig.tight_layout()
        name = f"history_{metric}.png"
        fig.savefig(site / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _slug(group: str) -> str:
    """A file name for a group's page: safe characters and a hash (names stay distinct)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in group)
    return f"group-{safe[:40]}-{hashlib.sha256(group.encode()).hexdigest()[:8]}"


_SORT_JS = """
document.querySelectorAll('th[data-col]').forEach(th => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], col = +th.dataset.col;
  const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc'; th.dataset.dir = dir;
  const key = tr => { const v = tr.cells[col].dataset.v; return v === '' ? NaN : +v; };
  [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (isNaN(x)) return 1; if (isNaN(y)) return -1;
    return dir === 'asc' ? x - y : y - x;
  }).forEach(tr => body.appendChild(tr));
}));
"""

_STYLE = """<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{cursor:pointer;background:#f3f3f3}td:first-child,td:last-child{text-align:left}
tr.flagged td{background:#fff3e0}tr.failed td{background:#fdecea}
tr.superseded td{color:#999}img{max-width:100%}</style>"""


def _status_text(r: dict[str, Any]) -> str:
    if r["status"] == "ok":
        text = "ok"
    elif r["status"] == "carried":
        text = f"carried forward from {html.escape(str(r.get('carried_from', '')))}: " \
               f"{html.escape(str(r['reason']))}"
    else:
        text = f"error: {html.escape(str(r['reason']))}"
    if r.get("flag"):
        text += f"<br><b>flagged, not ranked</b>: {html.escape(str(r['flag']))}"
    return text


def _group_page(site: Path, group: str, rows: list[dict[str, str]]) -> str:
    """``site/<slug>.html``: one group's whole history (superseded reruns and failures
    included) and its plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slug = _slug(group)
    shown = ("fid", "precision", "recall", "memorisation")
    fig, axes = plt.subplots(1, len(shown), figsize=(12.0, 2.8))
    for ax, m in zip(axes, shown, strict=True):
        _plot_metric(ax, _current(rows), [group], m)
        ax.set_title(f"{m} ({METRICS[m]} is better)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    fig.savefig(site / f"{slug}.png", dpi=100)
    plt.close(fig)
    body = []
    for r in sorted(rows, key=lambda r: (r["date"], r.get("run_at") or ""), reverse=True):
        cls = ("superseded" if r.get("superseded") else "failed" if r["status"] == "error"
               else "flagged" if r.get("flag") else "")
        cells = [html.escape(r["date"]), html.escape(r.get("rank") or "")]
        for m in shown:
            v, sd = r.get(m) or "", r.get(f"{m}_sd") or ""
            cells.append(html.escape(f"{float(v):.3f}" + (f" ± {float(sd):.3f}" if sd else ""))
                         if _has_value(r, m) else "")
        ct = r.get("ct") or ""
        cells.append(html.escape(f"{float(ct):.1f}") if ct not in ("", "nan") else "")
        cells.append(html.escape((r.get("commit") or "")[:12]))
        files = " ".join(f"{f.split(':')[0]}:{f.split(':')[-1][:10]}"
                         for f in (r.get("files") or "").split())
        cells.append(f"<small>{html.escape(files)}</small>")
        status = _status_text(r) + (" <i>(superseded by a rerun)</i>" if r.get("superseded")
                                    else "")
        body.append(f'<tr class="{cls}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{status}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("date", "rank", *shown, "C_T", "commit",
                                              "files (sha256)", "status"))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(group)}: project history</title>{_STYLE}</head><body>
<p><a href="index.html">← leaderboard</a></p>
<h1>{html.escape(group)}: every morning</h1>
<p>Each cell: the mean over the fresh sample sets ± their standard deviation. Failed mornings
are marked x on the plots; a rerun of a morning keeps the earlier rows, greyed.</p>
<img src="{slug}.png" alt="history of {html.escape(group)}">
<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
</body></html>
"""
    (site / f"{slug}.html").write_text(page, encoding="utf-8")
    return f"{slug}.html"


def write_site(site: str | Path, today: list[dict[str, Any]], history: list[dict[str, str]],
               date: str, baseline: str | None = None) -> Path:
    """Write ``site/index.html``: today's ranked, sortable table (mean ± sd over the sample
    sets, the paired difference to ``baseline``, copying flags, failures), the history plots
    and one page per group with its own history."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    plots = _plots(history, site)
    pages = {g: _group_page(site, g, [r for r in history if r["group"] == g])
             for g in sorted({r["group"] for r in history})}
    head = "".join(f'<th data-col="{i + 2}" title="click to sort">{html.escape(m)} '
                   f'({"↓" if b == "lower" else "↑"})</th>'
                   for i, (m, b) in enumerate(METRICS.items()))

    def order(r: dict[str, Any]) -> tuple:
        rank = r.get("rank")
        return (0, int(rank)) if rank not in (None, "") else (1, 0) if r.get("flag") else (2, 0)

    body = []
    for r in sorted(today, key=order):
        link = pages.get(r["group"])
        name = html.escape(r["group"])
        name = f'<a href="{link}">{name}</a>' if link else name
        rank = r.get("rank") or ""
        cells = [f"<td>{name}</td>", f'<td data-v="{rank}">{rank or "—"}</td>']
        for m in METRICS:
            if r["status"] not in ("ok", "carried") or r.get(m) in (None, ""):
                cells.append('<td data-v=""></td>')
                continue
            v = float(r[m])
            extra = ""
            if r.get(f"{m}_sd") not in (None, ""):
                extra += f" ± {_fmt(float(r[f'{m}_sd']))}"
            if r.get(f"{m}_diff") not in (None, "") and r.get("group") != baseline:
                d, se = float(r[f"{m}_diff"]), float(r[f"{m}_diff_se"])
                # A difference counts when it exceeds twice its standard error.
                mark = " *" if se > 0 and abs(d) > 2 * se else ""
                extra += f"<br><small>Δ {d:+.3f} ± {se:.3f}{mark}</small>"
            ci = r.get(f"{m}_ci")
            if ci and r.get(f"{m}_sd") in (None, ""):
                extra += f"<br><small>[{_fmt(ci[0])}, {_fmt(ci[1])}]</small>"
            cells.append(f'<td data-v="{v}">{_fmt(v)}{extra}</td>')
        cells.append(f"<td>{_status_text(r)}</td>")
        cls = ("failed" if r["status"] == "error" else "flagged" if r.get("flag") else "")
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    good = [r for r in today if r["status"] == "ok"]
    n = next((r["n_samples"] for r in good), None)
    n_text = str(n) if n is not None else "the same number of"
    k = next((r.get("n_sets", 1) for r in good), 1)
    brackets = ""
    if k > 1:
        n_text = f"{k} fresh sets of {n}"
        brackets = (f" Each cell: the mean over the {k} sets ± their standard deviation (the "
                    "spread of a new draw; with 5 sets of 1,000 it matched the spread over "
                    "further fresh seeds, tests/test_project_uncertainty.py).")
        if baseline and any(r.get("group") == baseline and r["status"] == "ok" for r in today):
            brackets += (f" Δ: the paired difference to <b>{html.escape(baseline)}</b> (set k "
                         "of both drawn with the same seed) ± its standard error; it counts, "
                         "marked *, only when larger than twice its standard error. A change "
                         "smaller than that is not progress.")
    elif any(f"{m}_ci" in r for r in today for m in METRICS):
        brackets = " Brackets: 95 % bootstrap intervals over the samples."
    ref = next((r.get("reference") for r in today if r.get("reference")), "")
    seed_source = next((r.get("seed_source") for r in today if r.get("seed_source")), "")
    fairness = ""
    if ref:
        fairness += f" Reference: {html.escape(ref)}."
    if seed_source:
        fairness += f" Sampling seed: {html.escape(seed_source)}."
    figs = "".join(f'<img src="{p}" alt="history of {p[8:-4]}" width="500">' for p in plots)
    links = " · ".join(f'<a href="{v}">{html.escape(g)}</a>' for g, v in pages.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Project leaderboard — {html.escape(date)}</title>{_STYLE}</head><body>
<h1>Project leaderboard — {html.escape(date)}</h1>
<p>Each submission's latent vectors give {n_text} samples through the evaluator's own
SharedGenerator with the group's weights; metrics in the digits classifier's feature space
against reference digits the groups never trained on.{fairness}{brackets}
Rank: by FID among the groups evaluated fine and <b>not flagged</b> for copying real digits
(more than {100 * COPY_SHARE:.0f} % near-copies, or the data-copying test C_T below
{CT_THRESHOLD:g}). Click a column to sort. ↑ higher is better, ↓ lower is better.</p>
<table><thead><tr><th>group</th><th data-col="1">rank</th>{head}<th>status</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
<h2>History</h2><p>Each group's own page: {links}</p>{figs}
<script>{_SORT_JS}</script></body></html>
"""
    (site / "index.html").write_text(page, encoding="utf-8")
    return site / "index.html"


def _read_fetched(folder: Path) -> dict[str, dict[str, str]]:
    """``.fetched.json`` written by ``fetch`` (group -> commit or error), if any."""
    path = folder / ".fetched.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} \
        if isinstance(data, dict) else {}


def _rank(rows: list[dict[str, Any]]) -> None:
    """Rank by FID the rows evaluated (or carried) and not flagged; others get no rank."""
    ranked = sorted((r for r in rows if r["status"] in ("ok", "carried") and not r.get("flag")
                     and np.isfinite(float(r["fid"]))), key=lambda r: float(r["fid"]))
    for r in rows:
        r["rank"] = ""
    for i, r in enumerate(ranked):
        r["rank"] = str(i + 1)


def _carry(row: dict[str, Any], past: list[dict[str, str]]) -> dict[str, Any]:
    """Today's failed row, replaced by the group's last good morning, marked as carried."""
    good = [r for r in _current(past) if r["group"] == row["group"] and r["status"] == "ok"
            and r["date"] < row["date"]]
    if not good:
        return row
    last = max(good, key=lambda r: r["date"])
    keep = {k: row[k] for k in ("date", "group", "commit", "files", "seed", "seed_source",
                                "reference", "run_at") if k in row}
    numbers = [*METRICS, *(f"{m}_sd" for m in METRICS), "ct", "ct_sd"]
    metrics: dict[str, Any] = {k: float(last[k]) for k in numbers if last.get(k) not in ("", None)}
    metrics.update({k: last.get(k, "") for k in ("n_samples", "n_sets", "flag")})
    return {**metrics, **keep, "status": "carried", "carried_from": last["date"],
            "reason": f"today: {row['reason']}"}


def leaderboard(submissions: str | Path, history: str | Path, site: str | Path, *,
                date: str | None = None, n: int = DEFAULT_N, seed: int | None = None,
                timeout: float = DEFAULT_TIMEOUT, n_bootstrap: int = 0, sandbox: bool = True,
                limits: sandbox_mod.Limits | None = None, n_sets: int = 5,
                baseline: str | None = "baseline", reference: str | Path | None = None,
                secret_file: str | Path | None = None,
                carry_forward: bool = False) -> list[dict[str, Any]]:
    """Evaluate every group in ``submissions``, update the history and write the site.

    A rerun of a morning already in the history keeps that morning's earlier rows, marked
    ``superseded``; rows of other dates are kept untouched. Returns today's rows. Every
    group's code runs in the sandbox (:func:`draw_samples`); ``sandbox=False`` only for a
    trusted local run.

    Fairness: ``reference`` (or :data:`REFERENCE_ENV`) is the instructor's private set of
    digits (the public test split without it, marked on the page as a local run); ``seed``
    None derives the morning's sampling seed from the date and the instructor's secret
    (``secret_file`` or :data:`SECRET_ENV`; HMAC-SHA256), so that the official numbers cannot
    be reproduced offline. Groups whose samples look copied from real digits are flagged and
    not ranked. Each row records the commit (from ``fetch``'s ``.fetched.json``), the SHA-256
    of the submission's files and the run's time. ``carry_forward``: a group that fails
    today keeps its last good morning's numbers, marked ``carried``.

    Each group draws ``n_sets`` fresh sets of ``n`` samples (:func:`evaluate`); when the group
    ``baseline`` is evaluated fine, every row also gets ``<metric>_diff`` and
    ``<metric>_diff_se``, the paired difference to it and its standard error.

    Raises:
        ValueError: when the set itself is unusable (no such folder, no group in it), the
            history's folder does not exist, the date is not YYYY-MM-DD, or the reference or
            secret cannot be read; checked before any evaluation.
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here (nothing ran).
    """
    date = date or _dt.date.today().isoformat()
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date: expected YYYY-MM-DD, got {date!r}") from None
    n = check_n(n)
    timeout = check_timeout(timeout)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap: expected an integer >= 0, got {n_bootstrap!r}")
    sandbox = _check_sandbox_flag(sandbox)
    if not isinstance(carry_forward, bool):
        raise ValueError(f"carry_forward: expected True or False, got {carry_forward!r}")
    limits = _limits(limits)
    n_sets = check_positive_int(n_sets, "n_sets")
    if baseline is not None and (not isinstance(baseline, str) or not baseline):
        raise ValueError(f"baseline: expected a group name or None, got {baseline!r}")
    folder = Path(submissions)
    if not folder.is_dir():
        raise ValueError(f"submissions: {folder} is not a folder")
    if not Path(history).resolve().parent.is_dir():
        raise ValueError(f"history: the folder of {history} does not exist")
    try:  # the page's folder, made now: a bad --out must not lose a morning of evaluation
        Path(site).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"site: cannot create {site}: {e.strerror}") from None
    fetched = _read_fetched(folder)
    groups = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = sorted(g for g, info in fetched.items() if info.get("error")
                     and not (folder / g).is_dir())
    if not groups and not missing:
        raise ValueError(f"submissions: {folder} holds no group folder")
    if seed is None:
        secret = _secret(secret_file)
        seed = _morning_seed(date, secret)
        seed_source = ("derived from the date and the instructor's secret (not reproducible "
                       "offline)" if secret else "public, from the date alone (a local run)")
    else:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed: expected an integer or None, got {seed!r}")
        seed, seed_source = int(seed), f"given ({int(seed)})"
    history_path = Path(history)
    reference_data = _reference(reference)  # a bad reference file fails before anything runs
    if sandbox:
        sandbox_mod.check_sandbox()  # fail closed, before anything runs
    # Read the past BEFORE any submission runs: nothing a submission writes can change it.
    past = read_history(history_path)
    for r in past:
        if r["date"] == date and not r.get("superseded"):
            r["superseded"] = "yes"
    run_at = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {"date": date, "seed": str(seed), "seed_source": seed_source,
              "reference": reference_data["name"], "run_at": run_at}
    today = []
    for g in groups:
        name = safe_group_name(g.name)
        row = evaluate(g, n, seed=seed, timeout=timeout, n_bootstrap=n_bootstrap,
                       reference=reference_data, sandbox=sandbox, limits=limits, n_sets=n_sets)
        info = fetched.get(g.name, {})
        today.append({**common, "group": name, "commit": str(info.get("commit", ""))[:64],
                      **row})
    for g in missing:
        today.append({**common, "group": safe_group_name(g), "status": "error",
                      "reason": sandbox_mod.sanitise(f"fetch failed: {fetched[g]['error']}"),
                      "commit": ""})
    if carry_forward:
        today = [_carry(r, past) if r["status"] == "error" else r for r in today]
    base = next((r for r in today if r["group"] == baseline and r["status"] == "ok"), None)
    if base is not None:
        for r in today:
            if r["status"] == "ok":
                r.update(_paired(r, base))
    _rank(today)
    rows = past + [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}
                   for r in today]
    _write_history(history_path, rows)
    write_site(site, today, read_history(history_path), date, baseline=baseline)
    return today


# ----------------------------------------------------------------------------------------------
# A month of mornings: fetching each group's submission from its repository
# ----------------------------------------------------------------------------------------------


def _read_groups(path: Path) -> tuple[dict[str, dict[str, str]], str]:
    """The instructor's ``groups.toml``: ``cutoff = "HH:MM"`` (UTC) and one table per group,
    ``[groups.<name>]`` with ``repo`` (a git URL), ``ref`` (branch or tag, default ``main``)
    and ``path`` (the submission folder inside the repository, default ``submission``)."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"groups: cannot read {path}: {e}") from None
    cutoff = str(data.get("cutoff", "06:00"))
    try:
        _dt.time.fromisoformat(cutoff)
    except ValueError:
        raise ValueError(f"groups: cutoff: expected HH:MM (UTC), got {cutoff!r}") from None
    groups = data.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise ValueError(f"groups: {path} has no [groups.<name>] table")
    out = {}
    for name, g in groups.items():
        if not isinstance(g, dict) or not isinstance(g.get("repo"), str):
            raise ValueError(f"groups: [groups.{name}] needs repo = \"<git URL>\"")
        if not name or name.startswith(".") or "/" in name or name != name.strip():
            raise ValueError(f"groups: {name!r} is not a usable folder name")
        sub = str(g.get("path", "submission"))
        if sub.startswith("/") or ".." in Path(sub).parts:
            raise ValueError(f"groups: [groups.{name}] path must stay inside the repository")
        ref = str(g.get("ref", "main"))
        if ref.startswith("-"):
            raise ValueError(f"groups: [groups.{name}] ref {ref!r} is not a branch or tag")
        out[name] = {"repo": g["repo"], "ref": ref, "path": sub}
    return out, cutoff


def _git(*args: str, cwd: Path | None = None, timeout: float = 300) -> str:
    # No hooks, no credentials prompt, no submodules, no LFS filters: plain files only.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
           "HOME": os.environ.get("HOME", "/tmp"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_LFS_SKIP_SMUDGE": "1"}
    import subprocess

    done = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "core.symlinks=false",
                           *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(sandbox_mod.sanitise(done.stderr or f"git exit {done.returncode}"))
    return done.stdout.strip()


def _fetch(groups: str | Path, into: str | Path, *, date: str | None = None,
          depth: int = 50) -> dict[str, dict[str, str]]:
    """Fetch every group's submission into ``into/<group>/`` for the morning of ``date``.

    For each group of the ``groups`` file (see :func:`_read_groups`), ``git clone --depth
    DEPTH --single-branch --branch REF`` into a scratch folder, takes the last commit at or
    before the cutoff (``date`` at ``cutoff`` UTC), and copies that commit's submission folder
    (regular files only: links are dropped). ``into/.fetched.json`` records, per group, the
    commit id and its time, or why the fetch failed; :func:`leaderboard` reads it, so a group
    that could not be fetched keeps a row with the reason. The groups' code is never run here.
    """
    import shutil
    import tempfile

    date = date or _dt.date.today().isoformat()
    try:
        _dt.date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date: expected YYYY-MM-DD, got {date!r}") from None
    depth = check_positive_int(depth, "depth")
    table, cutoff = _read_groups(Path(groups))
    when = f"{date}T{cutoff}:00+00:00" if len(cutoff) == 5 else f"{date}T{cutoff}+00:00"
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    record: dict[str, dict[str, str]] = {}
    for name, g in table.items():
        dest = into / name
        if dest.exists():
            shutil.rmtree(dest)
        with tempfile.TemporaryDirectory(prefix="coursekit-fetch-") as scratch:
            clone = Path(scratch) / "repo"
            try:
                _git("clone", "--quiet", "--no-checkout", "--depth", str(depth),
                     "--single-branch", "--branch", g["ref"], "--", g["repo"], str(clone))
                commit = _git("rev-list", "-1", f"--before={when}", "HEAD", cwd=clone)
                if not commit:
                    raise RuntimeError(f"no commit on {g['ref']} before the cutoff {when}")
                _git("checkout", "--quiet", "--detach", commit, cwd=clone)
                stamp = _git("show", "-s", "--format=%cI", commit, cwd=clone)
                src = clone / g["path"]
                if src.is_symlink() or not src.is_dir():
                    raise RuntimeError(f"no folder {g['path']} in the repository at {commit[:12]}")
                dest.mkdir()
                for f in src.iterdir():  # regular files only: no link leaves the clone
                    if f.is_file() and not f.is_symlink():
                        shutil.copyfile(f, dest / f.name)
                record[name] = {"commit": commit, "committed_at": stamp, "repo": g["repo"],
                                "ref": g["ref"]}
            except (RuntimeError, OSError, ValueError) as e:
                record[name] = {"error": sandbox_mod.sanitise(e), "repo": g["repo"],
                                "ref": g["ref"]}
            except Exception as e:  # noqa: BLE001 (a timeout: one group, not the morning)
                record[name] = {"error": sandbox_mod.sanitise(f"{type(e).__name__}: {e}"),
                                "repo": g["repo"], "ref": g["ref"]}
    (into / ".fetched.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _arg(check: Any) -> Any:
    """An argparse type from a validator: its ValueError becomes a usage error (exit code 2)."""
    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    return parse


def _int_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _float_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _sets(text: str) -> int:
    v = _int_text(text)
    if v < 1:
        raise ValueError(f"expected an integer >= 1, got {text!r}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.project",
                                     description="The course project: evaluation and leaderboard.")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="evaluate one submission folder, print JSON")
    ev.add_argument("submission")
    ev.add_argument("--reference", default=None,
                    help="reference digits (.npy/.npz); default: the public test split")
    lb = sub.add_parser("leaderboard", help="evaluate every group, update history, write a site")
    lb.add_argument("submissions")
    lb.add_argument("--history", required=True)
    lb.add_argument("--out", required=True)
    lb.add_argument("--date", default=None)
    lb.add_argument("--sets", type=_arg(_sets), default=5,
                    help="fresh sample sets per group (mean ± sd over them)")
    lb.add_argument("--baseline", default="baseline",
                    help="the group every other is compared with (paired difference)")
    lb.add_argument("--reference", default=None,
                    help="the instructor's private digits (.npy/.npz); default: $"
                         f"{REFERENCE_ENV}, else the public test split (a local run)")
    lb.add_argument("--secret-file", default=None,
                    help="file with the instructor's secret for the morning's seed; "
                         f"default: ${SECRET_ENV}")
    lb.add_argument("--carry-forward", action="store_true",
                    help="a group that fails keeps its last good morning, marked carried")
    fe = sub.add_parser("fetch", help="fetch each group's submission from its repository")
    fe.add_argument("groups", help="the groups file (TOML: cutoff, [groups.<name>] repo/ref/path)")
    fe.add_argument("--into", required=True, help="the submissions folder to fill")
    fe.add_argument("--date", default=None)
    for p in (ev, lb):
        p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                       help="run the groups' code WITHOUT bubblewrap: only for a trusted "
                            "local run (your own submission)")
        p.add_argument("--n", type=_arg(lambda t: check_n(_int_text(t))), default=DEFAULT_N,
                       help=f"samples drawn from each submission (>= {MIN_N})")
        p.add_argument("--seed", type=int, default=0 if p is ev else None,
                       help="sampling seed (leaderboard: default derived from the date and "
                            "the instructor's secret)")
        p.add_argument("--timeout", type=_arg(lambda t: check_timeout(_float_text(t))),
                       default=DEFAULT_TIMEOUT,
                       help="limit on the submission's own code (loading and sampling), seconds")
    tb = sub.add_parser("train-baseline", help="train the baseline and save OUT_DIR/model.pt")
    tb.add_argument("out_dir")
    tb.add_argument("--steps", type=int, default=3000)
    tb.add_argument("--seed", type=int, default=0)
    tb.add_argument("--beta", type=float, default=1.0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    if args.command == "evaluate":
        try:
            row = evaluate(args.submission, args.n, seed=args.seed, timeout=args.timeout,
                           sandbox=args.sandbox, reference=_reference(args.reference))
        except (ValueError, SandboxUnavailable) as e:
            print(f"evaluate: {e}", file=sys.stderr)
            return 2
        print(json.dumps(row, indent=2))
        return 0
    if args.command == "leaderboard":
        try:
            rows = leaderboard(args.submissions, args.history, args.out, date=args.date, n=args.n,
                               seed=args.seed, timeout=args.timeout, n_sets=args.sets,
                               baseline=args.baseline, sandbox=args.sandbox,
                               reference=args.reference, secret_file=args.secret_file,
                               carry_forward=args.carry_forward)
        except (ValueError, SandboxUnavailable) as e:
            print(f"leaderboard: {e}", file=sys.stderr)
            return 2
        for r in rows:
            what = (f"FID {float(r['fid']):.2f}" if r["status"] in ("ok", "carried")
                    else f"error: {r['reason']}")
            flag = f" FLAGGED: {r['flag']}" if r.get("flag") else ""
            print(f"{r['group']}: {what}{flag}")
        print(f"wrote {Path(args.out) / 'index.html'} and {args.history}")
        return 0
    if args.command == "fetch":
        try:
            record = _fetch(args.groups, args.into, date=args.date)
        except ValueError as e:
            print(f"fetch: {e}", file=sys.stderr)
            return 2
        for g, info in record.items():
            print(f"{g}: {info.get('commit') or 'error: ' + info['error']}")
        return 0
    model, history = train_baseline(args.steps, seed=args.seed, beta=args.beta)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    print(f"final loss {history[-1]:.2f} nats; wrote {out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
