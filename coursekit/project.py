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
    python -m coursekit.project leaderboard SUBMISSIONS_DIR --history HISTORY.csv --out SITE_DIR
                                            [--timeout SECONDS] [--date YYYY-MM-DD] [--n N]
    python -m coursekit.project train-baseline OUT_DIR [--steps N] [--seed S]

**Safety.** Submissions are untrusted. Weights are read with
``torch.load(weights_only=True)``, which refuses pickled code, so a malicious ``model.pt``
cannot run anything. The submission's own code (loading and sampling) runs in a child process,
in an empty temporary working folder, with a wall-clock limit (counted from when the child has
imported torch, so that start-up is not the submission's time) and an address-space limit
(:data:`MEMORY_LIMIT`); its only output is an array file that the evaluator reads with
``allow_pickle=False`` and checks (float32, shape, finite, range). The history is read
*before* any submission runs and written back by the evaluator alone, so no submission can
alter another group's row or earlier days. The child is **not** a security sandbox: it runs
as the same user and can read or write what that user can, so run the leaderboard on a
machine (or CI runner) that holds no secrets.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import html
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
#: Address-space limit of the child process that runs a submission's code, in bytes.
MEMORY_LIMIT = 6 * 2**30
#: Fewest samples an evaluation accepts: FID needs more samples than its 32 features, and the
#: bootstrap resamples some margin above that.
MIN_N = 50
#: Limit on the child's start-up (Python and torch imports), which is the evaluator's fixed cost
#: and not counted in the submission's timeout, in seconds.
STARTUP_LIMIT = 180.0
#: Longest reason kept for a broken submission's row (a crash message can be megabytes).
MAX_REASON = 400
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


def _limit_resources() -> None:  # runs in the child, before it executes anything
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()  # its own process group, so that a timeout kills everything it started


def _child_sample(submission: str, n: int, seed: int, out: str) -> None:
    """Child side: load the weights safely, draw ``n`` samples, save them as a float32 .npy."""
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
    np.save(out, x.detach().cpu().to(torch.float32).numpy(), allow_pickle=False)


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


def _wait_ready(proc: subprocess.Popen, limit: float) -> None:
    """Read the child's stdout until its ``READY`` line (or its end); TimeoutExpired after
    ``limit`` seconds."""
    import selectors
    import time

    deadline = time.monotonic() + limit
    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"READY\n" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, limit)
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:  # the child ended before it was ready: communicate() reports why
                return
            seen = (seen + chunk)[-64:]


def _kill(proc: subprocess.Popen) -> None:
    """Kill the child's whole process group, and never hang on pipes a grandchild holds."""
    for kill in (lambda: os.killpg(proc.pid, 9), proc.kill):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # a grandchild that left the group keeps a pipe open
        for f in (proc.stdout, proc.stderr):
            f.close()
        proc.wait()


def _reason(err: str, returncode: int) -> str:
    """The reason of a failed child, from its stderr: the submission's fault it reported, or
    the last line of the traceback; out-of-memory failures are named as such."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    tagged = [line for line in lines if line.startswith(_REASON_TAG)]
    if tagged:
        last = tagged[-1][len(_REASON_TAG):].strip()
    else:
        last = lines[-1] if lines else f"exit code {returncode}"
    memory = ("MemoryError" in err or "can't allocate memory" in err
              or "Cannot allocate memory" in err or "std::bad_alloc" in err
              or returncode in (-9, 137))
    if memory:
        last = f"ran out of memory (limit {MEMORY_LIMIT / 2**30:g} GiB): {last}"
    return last


def draw_samples(submission: str | Path, n: int = DEFAULT_N, *, seed: int = 0,
                 timeout: float = DEFAULT_TIMEOUT) -> np.ndarray:
    """Run a submission's code in a child process and return its ``(n, 1, 8, 8)`` samples.

    Raises:
        SubmissionError: with the reason (missing file, unsafe or wrong weights, a crash,
            a timeout, the memory limit, a wrong shape, NaN, values outside [0, 1]).
    """
    folder = Path(submission)
    n = check_n(n)
    timeout = check_timeout(timeout)
    model_pt = folder / "model.pt"
    if not model_pt.exists():
        raise SubmissionError("no model.pt in the submission folder")
    if not model_pt.is_file():
        raise SubmissionError("model.pt is not a file (a folder?): save the weights with "
                              "torch.save(model.state_dict(), 'model.pt')")
    with tempfile.TemporaryDirectory(prefix="submission-") as work:
        out = Path(work) / "samples.npy"
        cmd = [sys.executable, "-m", "coursekit.project", "_sample", str(folder.resolve()),
               "--n", str(n), "--seed", str(seed), "--out", str(out)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ACTIONS_"))}
        env["OMP_NUM_THREADS"] = "1"
        # The child runs in an empty folder: make this coursekit importable there even when it
        # is used from a clone that is not pip-installed (the CI workflow, a laptop).
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=_limit_resources)
        try:
            # The clock starts when the child says it has imported torch: start-up is the
            # evaluator's fixed cost, not the submission's.
            _wait_ready(proc, STARTUP_LIMIT)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise SubmissionError(f"the evaluator's child process did not start within "
                                  f"{STARTUP_LIMIT:g} s (an overloaded machine?)") from None
        try:
            _, err_bytes = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise SubmissionError(
                f"timed out: loading and sampling took more than {timeout:g} s") from None
        err = err_bytes.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise SubmissionError(_reason(err, proc.returncode))
        if not out.is_file():
            raise SubmissionError("the sampling process wrote no samples")
        try:
            x = np.load(out, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 (the file is the submission's output)
            raise SubmissionError(f"the samples file could not be read: {e}") from None
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        raise SubmissionError("the samples file is not a float32 array")
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


def evaluate(submission: str | Path, n: int = DEFAULT_N, *, seed: int = 0,
             timeout: float = DEFAULT_TIMEOUT, n_bootstrap: int = 0,
             reference: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Evaluate one submission folder: samples from a child process, then :func:`compute_metrics`.

    Returns a dict with ``status`` (``"ok"`` or ``"error"``), ``reason`` (empty when ok) and
    the metrics. The same seed gives the same numbers.
    """
    try:
        x = draw_samples(submission, n, seed=seed, timeout=timeout)
    except SubmissionError as e:
        reason = " ".join(str(e).split())  # one line, for the CSV and the page
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON - 3] + "..."
        return {"status": "error", "reason": reason}
    try:
        row = compute_metrics(x, seed=seed, n_bootstrap=n_bootstrap, reference=reference)
    except Exception as e:  # noqa: BLE001 (degenerate samples must not stop the other groups)
        return {"status": "error", "reason": f"the metrics could not be computed on these "
                f"samples: {type(e).__name__}: {' '.join(str(e).split())[:MAX_REASON]}"}
    return {"status": "ok", "reason": "", **row}


# ----------------------------------------------------------------------------------------------
# The leaderboard: history file and static page
# ----------------------------------------------------------------------------------------------

_FIELDS = ["date", "group", "status", "reason", *METRICS, "n_samples"]


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
               date: str) -> Path:
    """Write ``site/index.html``: today's sortable table with intervals, and the history plots."""
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
            ci = r.get(f"{m}_ci")
            extra = f"<br><small>[{_fmt(ci[0])}, {_fmt(ci[1])}]</small>" if ci else ""
            cells.append(f'<td data-v="{r[m]}">{_fmt(r[m])}{extra}</td>')
        status = "ok" if r["status"] == "ok" else f"error: {html.escape(r['reason'])}"
        cells.append(f"<td>{status}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    n = next((r["n_samples"] for r in today if r["status"] == "ok"), None)
    n_text = str(n) if n is not None else "the same number of"
    has_ci = any(f"{m}_ci" in r for r in today for m in METRICS)
    brackets = " Brackets: 95 % bootstrap intervals over the samples." if has_ci else ""
    figs = "".join(f'<img src="{p}" alt="history of {p[8:-4]}" width="500">' for p in plots)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Project leaderboard — {html.escape(date)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th{{cursor:pointer;background:#f3f3f3}}td:first-child,td:last-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Project leaderboard — {html.escape(date)}</h1>
<p>Each submission draws {n_text} samples (fixed seed); metrics in the digits classifier's feature
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
                timeout: float = DEFAULT_TIMEOUT, n_bootstrap: int = 100) -> list[dict[str, Any]]:
    """Evaluate every group in ``submissions``, update the history and write the site.

    Rows of ``date`` already in the history are replaced (a rerun of the same morning); rows of
    other dates are kept untouched. Returns today's rows.

    Raises:
        ValueError: when the set itself is unusable (no such folder, no group in it) or the
            date is not YYYY-MM-DD.
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
    folder = Path(submissions)
    if not folder.is_dir():
        raise ValueError(f"submissions: {folder} is not a folder")
    groups = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not groups:
        raise ValueError(f"submissions: {folder} holds no group folder")
    history_path = Path(history)
    # Read the past BEFORE any submission runs: nothing a submission writes can change it.
    past = [r for r in read_history(history_path) if r["date"] != date]
    reference = _reference()
    today = []
    for g in groups:
        row = evaluate(g, n, seed=seed, timeout=timeout, n_bootstrap=n_bootstrap,
                       reference=reference)
        today.append({"date": date, "group": g.name, **row})
    rows = past + [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()}
                   for r in today]
    _write_history(history_path, rows)
    write_site(site, today, read_history(history_path), date)
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


def _bootstrap(text: str) -> int:
    v = _int_text(text)
    if v < 0:
        raise ValueError(f"expected an integer >= 0, got {text!r}")
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
    lb.add_argument("--bootstrap", type=_arg(_bootstrap), default=100,
                    help="bootstrap resamples for the intervals (0: none)")
    for p in (ev, lb):
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
    ch = sub.add_parser("_sample", help=argparse.SUPPRESS)
    ch.add_argument("submission")
    ch.add_argument("--n", type=int, required=True)
    ch.add_argument("--seed", type=int, required=True)
    ch.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    if args.command == "_sample":
        print("READY", flush=True)  # imports done: the parent starts the submission's clock
        try:
            _child_sample(args.submission, args.n, args.seed, args.out)
        except SubmissionError as e:
            print(f"{_REASON_TAG} {' '.join(str(e).split())}", file=sys.stderr, flush=True)
            return 3
        return 0
    torch.set_num_threads(1)
    if args.command == "evaluate":
        row = evaluate(args.submission, args.n, seed=args.seed, timeout=args.timeout)
        print(json.dumps(row, indent=2))
        return 0
    if args.command == "leaderboard":
        try:
            rows = leaderboard(args.submissions, args.history, args.out, date=args.date, n=args.n,
                               seed=args.seed, timeout=args.timeout, n_bootstrap=args.bootstrap)
        except ValueError as e:
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
