"""The course project kit: one shared generator, automatic evaluation, a leaderboard with history.

The slides' project: every group trains **the same architecture** (:class:`SharedGenerator`) with
the method of a paper of its choice, and every morning for a month each submission is
evaluated automatically. This module holds what the instructor runs and what the groups use.

A submission is a folder ``SUBMISSIONS/<group>/`` with

- ``model.pt``: a ``state_dict`` of :class:`SharedGenerator` (``torch.save(model.state_dict())``);
- optionally ``sampling.py`` defining ``sample(model, n, generator) -> (n, 1, 8, 8) tensor`` in
  [0, 1], for a paper that changes how samples are drawn (truncation, rejection, Langevin...).

Command line (``python -m coursekit.project --help``)::

    python -m coursekit.project evaluate SUBMISSION_DIR [--n N] [--seed S] [--timeout SECONDS]
                                         [--no-sandbox]
    python -m coursekit.project leaderboard SUBMISSIONS_DIR --history HISTORY.csv --out SITE_DIR
                                            [--timeout SECONDS] [--date YYYY-MM-DD] [--n N]
                                            [--sets K] [--baseline GROUP] [--no-sandbox]
    python -m coursekit.project train-baseline OUT_DIR [--steps N] [--seed S]

**Safety.** Submissions are untrusted. Weights are read with
``torch.load(weights_only=True)``, which refuses pickled code. The submission's own code
(loading and sampling) runs in a bubblewrap sandbox (:mod:`coursekit.sandbox`): no network,
a read-only view of only the interpreter, the environment, coursekit and its own folder, a
private size-capped ``/tmp`` as the only writable place, its own PID namespace and session
(nothing it starts outlives it), caps on time, on memory and processes for the whole group,
and ``python -I``. Its only output is a .npy stream that the evaluator reads with
``allow_pickle=False`` and checks (float32, shape, finite, range); reasons shown anywhere are
one sanitised line. Without a working ``bwrap`` the kit refuses to run groups' code and says
how to install it; ``--no-sandbox`` (``sandbox=False``) is for a trusted local run only. The
history is read *before* any submission runs and written by the evaluator alone.

**Uncertainty.** Each group draws K fresh sets of n samples (``--sets``, default 5): every
metric is the mean over the sets with their standard deviation, and the paired difference to
the ``baseline`` group (set k of both drawn with the same seed) with its standard error.

The example submissions that ship with the package are at :func:`example_submissions`.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
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


def _child_sample(submission: str, n: int, seed: int) -> np.ndarray:
    """Child side: load the weights safely, draw ``n`` samples; returns them as float32."""
    torch.set_num_threads(1)
    # This is the child process, not the caller's: seeding its global stream makes a
    # sampling.py that ignores the generator it is given reproducible too.
    torch.manual_seed(seed)
    folder = Path(submission)
    model = SharedGenerator()
    try:
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any failure is the submission's; report it)
        raise SubmissionError(f"model.pt could not be loaded as plain weights "
                              f"(torch.load with weights_only=True): {type(e).__name__}: {e}"
                              ) from None
    if not isinstance(state, dict):
        raise SubmissionError(f"model.pt holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise SubmissionError("model.pt is not a state_dict of SharedGenerator: "
                              + " ".join(line.strip() for line in first[:3])) from None
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    script = folder / "sampling.py"
    if script.exists() and not script.is_file():
        raise SubmissionError("sampling.py is not a file")
    if script.is_file():
        spec = importlib.util.spec_from_file_location("submission_sampling", script)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)  # the submission's code: only ever in this child
        except Exception as e:  # noqa: BLE001 (SyntaxError, ImportError...: the submission's)
            raise SubmissionError(f"sampling.py could not be imported: {type(e).__name__}: {e}"
                                  ) from None
        if not callable(getattr(module, "sample", None)):
            raise SubmissionError("sampling.py defines no function sample(model, n, generator)")
        try:
            with torch.no_grad():
                x = module.sample(model, n, generator)
        except Exception as e:  # noqa: BLE001
            raise SubmissionError(f"sample() raised {type(e).__name__}: {e}") from None
    else:
        x = model.sample(n, generator)
    if not isinstance(x, torch.Tensor):
        raise SubmissionError(f"sample() returned a {type(x).__name__}, not a torch.Tensor "
                              "(convert it with torch.as_tensor)")
    if x.is_complex() or x.dtype == torch.bool:
        raise SubmissionError(f"sample() returned a tensor of dtype {x.dtype}: expected real "
                              "pixel values in [0, 1] (a float tensor)")
    return x.detach().cpu().to(torch.float32).numpy()


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


def draw_samples(submission: str | Path, n: int = DEFAULT_N, *, seed: int = 0,
                 timeout: float = DEFAULT_TIMEOUT, sandbox: bool = True,
                 limits: sandbox_mod.Limits | None = None) -> np.ndarray:
    """Run a submission's code in the sandbox and return its ``(n, 1, 8, 8)`` samples.

    The code runs under bubblewrap (:mod:`coursekit.sandbox`): no network, a read-only view
    of the interpreter, the environment, coursekit and its own folder, a private ``/tmp``,
    caps on time, memory (all its processes together), processes and disk. ``sandbox=False``
    runs it without bubblewrap, for a trusted local run only.

    Raises:
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here (nothing ran).
        SubmissionError: with the reason (missing file, unsafe or wrong weights, a crash,
            a timeout, the memory or process cap, a wrong shape, NaN, values outside [0, 1]).
    """
    folder = Path(submission)
    n = check_n(n)
    timeout = check_timeout(timeout)
    sandbox = _check_sandbox_flag(sandbox)
    limits = _limits(limits)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    if folder.is_symlink():
        # Its target would be bound into the sandbox: a link to / would show the whole disk.
        raise SubmissionError("the submission folder is a symbolic link: submit a real folder")
    if not folder.is_dir():
        raise SubmissionError("the submission is not a folder")
    model_pt = folder / "model.pt"
    if not model_pt.exists():
        raise SubmissionError("no model.pt in the submission folder")
    if not model_pt.is_file():
        raise SubmissionError("model.pt is not a file (a folder?): save the weights with "
                              "torch.save(model.state_dict(), 'model.pt')")
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
        raise SubmissionError("the sampling process returned no samples")
    try:
        x = np.load(io.BytesIO(res.stdout), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 (the bytes are the submission's output)
        raise SubmissionError(f"the samples could not be read: {type(e).__name__}") from None
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise SubmissionError("the samples are not a float32 array")
    if x.shape != (n, *IMAGE_SHAPE):
        raise SubmissionError(f"samples have shape {x.shape}, expected {(n, *IMAGE_SHAPE)}")
    if not np.all(np.isfinite(x)):
        raise SubmissionError(f"samples contain NaN or infinite values "
                              f"({int(np.sum(~np.isfinite(x)))} of {x.size})")
    if x.min() < 0.0 or x.max() > 1.0:
        raise SubmissionError(f"samples leave [0, 1] (min {x.min():.3g}, max {x.max():.3g})")
    return x


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def _reference() -> dict[str, np.ndarray]:
    """Features of the real digits (train and held-out test), computed once per process."""
    from coursekit import metrics
    from coursekit.data import load_digits

    train, _ = load_digits("train")
    test, _ = load_digits("test")
    train_pixels = train.flatten(1).numpy().astype(np.float64)
    test_pixels = test.flatten(1).numpy().astype(np.float64)
    # How close fresh digits come to the training set: 99 % of held-out digits are farther.
    heldout = metrics.nearest_neighbour_distances(test_pixels, train_pixels)
    return {"train": metrics.digits_features(train), "train_pixels": train_pixels,
            "test_pixels": test_pixels, "copy_radius": np.quantile(heldout, 0.01)}


def compute_metrics(samples: np.ndarray, *, seed: int = 0, n_bootstrap: int = 0,
                    reference: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """All leaderboard metrics of ``samples: (n, 1, 8, 8)`` against the real digits.

    - ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al. 2020, k = 5) and
      ``fid`` ("digits-FID"), in the feature space of the course's digits classifier, against
      the 1,437 training digits;
    - ``inception_score`` (10 splits) and ``class_coverage`` (number of the 10 classes that
      the classifier assigns to at least 1 % of the samples);
    - ``memorisation``: the fraction of samples that lie closer (in pixels) to a training
      digit than 99 % of the 360 held-out digits do. Fresh digits from the data law are that
      close only 1 % of the time, so a model that does not copy scores about 0.01; one that
      replays training digits scores near 1.

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
        out = dict(metrics.prdc(ref["train"], f, nearest_k=5))
        out["fid"] = metrics.fid(ref["train"], f)
        return out

    row: dict[str, Any] = core(np.arange(n))
    row["inception_score"] = metrics.inception_score(probs, splits=10)[0]
    share = np.bincount(probs.argmax(1), minlength=10) / n
    row["class_coverage"] = int(np.sum(share >= 0.01))
    d_train = metrics.nearest_neighbour_distances(x.reshape(n, -1).astype(np.float64),
                                                  ref["train_pixels"])
    row["memorisation"] = float(np.mean(d_train < ref["copy_radius"]))
    row = {k: float(v) for k, v in row.items()}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        draws = [core(rng.integers(0, n, n)) for _ in range(n_bootstrap)]
        for key in draws[0]:
            lo, hi = np.percentile([d[key] for d in draws], [2.5, 97.5])
            row[f"{key}_ci"] = [float(lo), float(hi)]
    row["n_samples"] = n
    row["n_real"] = int(ref["train"].shape[0])
    row["n_heldout"] = int(ref["test_pixels"].shape[0])
    return row


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
             reference: dict[str, np.ndarray] | None = None, sandbox: bool = True,
             limits: sandbox_mod.Limits | None = None, n_sets: int = 1) -> dict[str, Any]:
    """Evaluate one submission folder: samples from the sandbox, then :func:`compute_metrics`.

    The submission draws ``n_sets`` fresh sets of ``n`` samples (one run of ``n_sets * n``
    samples, cut into sets; the timeout covers them all). Each metric is the mean over the
    sets, ``<metric>_sd`` its standard deviation over them, ``<metric>_sets`` the values:
    the spread a student sees when drawing again, which the bootstrap underestimates for the
    k-NN metrics (resampling makes duplicates that shrink the radii).

    Returns a dict with ``status`` (``"ok"`` or ``"error"``), ``reason`` (empty when ok; one
    sanitised line of at most :data:`MAX_REASON` characters) and the metrics. The same seed
    gives the same numbers. ``sandbox=False`` is for a trusted local run only (the book's own
    examples). ``n_bootstrap`` (kept for older callers) adds bootstrap intervals of the
    first set.

    Raises:
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here.
    """
    n = check_n(n)
    n_sets = check_positive_int(n_sets, "n_sets")
    try:
        x = draw_samples(submission, n * n_sets, seed=seed, timeout=timeout, sandbox=sandbox,
                         limits=limits)
    except SubmissionError as e:
        # One line without a leading formula character: for the CSV, the page and the log.
        return {"status": "error", "reason": sandbox_mod.sanitise(e)}
    try:
        sets = [compute_metrics(x[k * n:(k + 1) * n], seed=seed,
                                n_bootstrap=n_bootstrap if k == 0 else 0, reference=reference)
                for k in range(n_sets)]
    except Exception as e:  # noqa: BLE001 (degenerate samples must not stop the other groups)
        return {"status": "error", "reason": sandbox_mod.sanitise(
            f"the metrics could not be computed on these samples: {type(e).__name__}: {e}")}
    row = {**sets[0], **_summarise(sets), "n_sets": n_sets}
    return {"status": "ok", "reason": "", **row}


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

_FIELDS = ["date", "group", "status", "reason", *METRICS, "n_samples", "n_sets",
           *(f"{m}_sd" for m in METRICS), *(f"{m}_diff" for m in METRICS),
           *(f"{m}_diff_se" for m in METRICS)]


def read_history(path: str | Path) -> list[dict[str, str]]:
    """The rows of a history CSV (empty when the file does not exist yet)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["date"], r["group"]))
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


def _plots(history: list[dict[str, str]], site: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in history if r["status"] == "ok"]
    groups = sorted({r["group"] for r in ok})
    names = []
    for metric, better in METRICS.items():
        fig, ax = plt.subplots(figsize=(5.0, 3.0))
        for g in groups:
            pts = sorted((r["date"], float(r[metric])) for r in ok if r["group"] == g)
            # Escape "$" (mathtext) and a leading "_" (legend skips such labels).
            label = g.replace("$", r"\$")
            label = " " + label if label.startswith("_") else label
            ax.plot([_dt.date.fromisoformat(d) for d, _ in pts], [v for _, v in pts],
                    marker="o", label=label)
        dates = sorted({r["date"] for r in ok})
        if len(dates) == 1:  # one morning: a week around it, not matplotlib's default years
            day = _dt.date.fromisoformat(dates[0])
            ax.set_xlim(day - _dt.timedelta(days=3), day + _dt.timedelta(days=3))
        ax.set_xlabel("evaluation date")
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


def write_site(site: str | Path, today: list[dict[str, Any]], history: list[dict[str, str]],
               date: str, baseline: str | None = None) -> Path:
    """Write ``site/index.html``: today's sortable table (mean ± sd over the sample sets, the
    paired difference to ``baseline``), and the history plots."""
    site = Path(site)
    site.mkdir(parents=True, exist_ok=True)
    plots = _plots(history, site)
    head = "".join(f'<th data-col="{i + 1}" title="click to sort">{html.escape(m)} '
                   f'({"↓" if b == "lower" else "↑"})</th>'
                   for i, (m, b) in enumerate(METRICS.items()))
    body = []
    for r in today:
        cells = [f"<td>{html.escape(r['group'])}</td>"]
        for m in METRICS:
            if r["status"] != "ok":
                cells.append('<td data-v=""></td>')
                continue
            extra = ""
            if r.get(f"{m}_sd"):
                extra += f" ± {_fmt(r[f'{m}_sd'])}"
            if f"{m}_diff" in r and r.get("group") != baseline:
                d, se = r[f"{m}_diff"], r[f"{m}_diff_se"]
                # A difference counts when it exceeds twice its standard error.
                mark = " *" if se > 0 and abs(d) > 2 * se else ""
                extra += f"<br><small>Δ {d:+.3f} ± {se:.3f}{mark}</small>"
            ci = r.get(f"{m}_ci")
            if ci and not r.get(f"{m}_sd"):
                extra += f"<br><small>[{_fmt(ci[0])}, {_fmt(ci[1])}]</small>"
            cells.append(f'<td data-v="{r[m]}">{_fmt(r[m])}{extra}</td>')
        status = "ok" if r["status"] == "ok" else f"error: {html.escape(r['reason'])}"
        cells.append(f"<td>{status}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    n = next((r["n_samples"] for r in today if r["status"] == "ok"), None)
    n_text = str(n) if n is not None else "the same number of"
    k = next((r.get("n_sets", 1) for r in today if r["status"] == "ok"), 1)
    brackets = ""
    if k > 1:
        n_text = f"{k} fresh sets of {n}"
        brackets = (f" Each cell: the mean over the {k} sets ± their standard deviation (the "
                    "spread of a new draw).")
        if baseline and any(r.get("group") == baseline and r["status"] == "ok" for r in today):
            brackets += (f" Δ: the paired difference to <b>{html.escape(baseline)}</b> (set k "
                         "of both drawn with the same seed) ± its standard error; it counts, "
                         "marked *, only when larger than twice its standard error. A change "
                         "smaller than that is not progress.")
    elif any(f"{m}_ci" in r for r in today for m in METRICS):
        brackets = " Brackets: 95 % bootstrap intervals over the samples."
    figs = "".join(f'<img src="{p}" alt="history of {p[8:-4]}" width="500">' for p in plots)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Project leaderboard — {html.escape(date)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th{{cursor:pointer;background:#f3f3f3}}td:first-child,td:last-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Project leaderboard — {html.escape(date)}</h1>
<p>Each submission draws {n_text} samples (the morning's seed); metrics in the digits classifier's feature
space against the 1,437 training digits.{brackets}
Click a column to sort. ↑ higher is better, ↓ lower is better.</p>
<table><thead><tr><th>group</th>{head}<th>status</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
<h2>History</h2>{figs}
<script>{_SORT_JS}</script></body></html>
"""
    (site / "index.html").write_text(page, encoding="utf-8")
    return site / "index.html"


def leaderboard(submissions: str | Path, history: str | Path, site: str | Path, *,
                date: str | None = None, n: int = DEFAULT_N, seed: int = 0,
                timeout: float = DEFAULT_TIMEOUT, n_bootstrap: int = 0, sandbox: bool = True,
                limits: sandbox_mod.Limits | None = None, n_sets: int = 5,
                baseline: str | None = "baseline") -> list[dict[str, Any]]:
    """Evaluate every group in ``submissions``, update the history and write the site.

    Rows of ``date`` already in the history are replaced (a rerun of the same morning); rows of
    other dates are kept untouched. Returns today's rows. Every group's code runs in the
    sandbox (:func:`draw_samples`); ``sandbox=False`` only for a trusted local run.

    Each group draws ``n_sets`` fresh sets of ``n`` samples (:func:`evaluate`); when the group
    ``baseline`` is evaluated fine, every row also gets ``<metric>_diff`` and
    ``<metric>_diff_se``, the paired difference to it and its standard error.

    Raises:
        ValueError: when the set itself is unusable (no such folder, no group in it), the
            history's folder does not exist, or the date is not YYYY-MM-DD; checked before any
            evaluation.
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
    groups = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not groups:
        raise ValueError(f"submissions: {folder} holds no group folder")
    history_path = Path(history)
    if sandbox:
        sandbox_mod.check_sandbox()  # fail closed, before anything runs
    # Read the past BEFORE any submission runs: nothing a submission writes can change it.
    past = [r for r in read_history(history_path) if r["date"] != date]
    reference = _reference()
    today = []
    for g in groups:
        row = evaluate(g, n, seed=seed, timeout=timeout, n_bootstrap=n_bootstrap,
                       reference=reference, sandbox=sandbox, limits=limits, n_sets=n_sets)
        today.append({"date": date, "group": safe_group_name(g.name), **row})
    base = next((r for r in today if r["group"] == baseline and r["status"] == "ok"), None)
    if base is not None:
        for r in today:
            if r["status"] == "ok":
                r.update(_paired(r, base))
    rows = past + [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}
                   for r in today]
    _write_history(history_path, rows)
    write_site(site, today, read_history(history_path), date, baseline=baseline)
    return today


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
    lb = sub.add_parser("leaderboard", help="evaluate every group, update history, write a site")
    lb.add_argument("submissions")
    lb.add_argument("--history", required=True)
    lb.add_argument("--out", required=True)
    lb.add_argument("--date", default=None)
    lb.add_argument("--sets", type=_arg(_sets), default=5,
                    help="fresh sample sets per group (mean ± sd over them)")
    lb.add_argument("--baseline", default="baseline",
                    help="the group every other is compared with (paired difference)")
    for p in (ev, lb):
        p.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                       help="run the groups' code WITHOUT bubblewrap: only for a trusted "
                            "local run (your own submission)")
        p.add_argument("--n", type=_arg(lambda t: check_n(_int_text(t))), default=DEFAULT_N,
                       help=f"samples drawn from each submission (>= {MIN_N})")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--timeout", type=_arg(check_timeout),
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
                           sandbox=args.sandbox)
        except SandboxUnavailable as e:
            print(f"evaluate: {e}", file=sys.stderr)
            return 2
        print(json.dumps(row, indent=2))
        return 0
    if args.command == "leaderboard":
        try:
            rows = leaderboard(args.submissions, args.history, args.out, date=args.date, n=args.n,
                               seed=args.seed, timeout=args.timeout, n_sets=args.sets,
                               baseline=args.baseline, sandbox=args.sandbox)
        except (ValueError, SandboxUnavailable) as e:
            print(f"leaderboard: {e}", file=sys.stderr)
            return 2
        for r in rows:
            what = f"FID {r['fid']:.2f}" if r["status"] == "ok" else f"error: {r['reason']}"
            print(f"{r['group']}: {what}")
        print(f"wrote {Path(args.out) / 'index.html'} and {args.history}")
        return 0
    model, history = train_baseline(args.steps, seed=args.seed, beta=args.beta)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    print(f"final loss {history[-1]:.2f} nats; wrote {out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
