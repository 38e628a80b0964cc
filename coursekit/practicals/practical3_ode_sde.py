"""Check cells of Practical 3 (Comparing ODE and SDE samplers in small dimensions).

Each ``check_*`` function runs a student's function on inputs whose answer is known and raises
an ``AssertionError`` whose message names the likely cause and the exercise; it prints a short
``OK`` line when everything holds. The answers come from this module's own private reference
code (a mixture of its own, different from the notebook's, the reference updates, a Gaussian
whose probability-flow ODE has a closed-form solution), never from :mod:`coursekit.diffusion`.

**The library is not an answer.** :mod:`coursekit.diffusion` implements the noised mixture,
the samplers, the grid TV and the ODE likelihood. While a check runs a student's function, a
profiling hook watches for a call into that module (other than ``edm_sigmas``) or into this
module's private reference code; one such call fails the check with a message saying that the
exercise is to be written by hand. The checks of exercises 2-5 and 8 also work on a mixture
that no object of the notebook holds.

Every check is written against a list of plausible wrong implementations
(``tests/test_practical3_ode_sde.py``), and student functions are called through
:func:`coursekit.practicals.checks.student`: a stub says which exercise to do first, a torch
error becomes a hint.

Conventions of the practical: points ``x`` are ``(n, 2)`` float64 tensors; a noise level
``sigma`` is a Python float >= 0; a *score* is a callable ``score(x, sigma) -> (n, 2)``; noise
levels ``sigmas`` are a decreasing 1-D float64 tensor (EDM's schedule ends at 0; Part F's
truncated schedules stop above 0); the variance-exploding noising is ``x = y + sigma n``.

Practical 3 uses, in order: :func:`check_noised_mixture` (exercise 1), :func:`check_samplers`
(exercises 2-4), :func:`check_grid_tv` (5), :func:`check_orders` (6),
:func:`check_perturbed_score` (7), :func:`check_near_floor` (Part D's measurements),
:func:`check_log_likelihood` (8).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from coursekit import diffusion, seeding
from coursekit.practicals.checks import ok as _ok
from coursekit.practicals.checks import require as _require
from coursekit.practicals.checks import require_done  # noqa: F401  (the notebook calls it)
from coursekit.practicals.checks import student as _student

Score = Callable[[torch.Tensor, float], torch.Tensor]

#: torch errors of this practical's usual mistakes: (part of torch's message, the hint).
_HINTS: tuple[tuple[str, str], ...] = (
    ("appears to not have been used in the graph",
     "the score has no graph back to x (it was computed at x.detach(), under torch.no_grad "
     "or through NumPy): the divergence differentiates the score with respect to x"),
    ("element 0 of tensors does not require grad",
     "the score has no graph back to x (it was computed at x.detach(), under torch.no_grad "
     "or through NumPy): the divergence differentiates the score with respect to x"),
    ("The size of tensor a",
     "two tensors' shapes do not broadcast: x is (n, 2), the means (K, 2), the covariances "
     "(K, 2, 2); insert the axes explicitly, e.g. x[:, None, :] - means[None] is (n, K, 2)"),
    ("a leaf Variable that requires grad is being used in an in-place operation",
     "x was changed in place (x += ..., x[...] = ...): write x = x + ... instead"),
    ("same dtype",
     "two tensors have different dtypes: the practical works in float64 (dtype=x.dtype)"),
    ("expected m1 and m2 to have the same dtype",
     "two tensors have different dtypes: the practical works in float64 (dtype=x.dtype)"),
)

_THIS_FILE = __file__
_LIBRARY_FILE = diffusion.__file__
_ALLOWED_LIBRARY = {"edm_sigmas"}  # a schedule is not an answer
# The callables a check hands to the student's code, and the guard itself (its generator is
# resumed by contextlib on the way out).
_HANDED = {"__call__", "<lambda>", "_no_library", "hook"}


@contextlib.contextmanager
def _no_library(exercise: str, name: str) -> Iterator[None]:
    """Fail if the student's function calls coursekit.diffusion or this module's answers.

    A profiling hook sees every Python call made while the student's function runs; a call
    that enters the library (or this module's reference code) from a frame outside them is
    the student's. The previous hook (a debugger's, coverage's) is restored afterwards.
    """
    seen: list[str] = []

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or seen:
            return
        code = frame.f_code
        where = code.co_filename
        if where not in (_THIS_FILE, _LIBRARY_FILE):
            return
        caller = frame.f_back
        if caller is not None and caller.f_code.co_filename in (_THIS_FILE, _LIBRARY_FILE):
            return  # the library calling itself, or a check calling its own reference
        if where == _LIBRARY_FILE and code.co_name not in _ALLOWED_LIBRARY:
            seen.append(f"coursekit.diffusion ({code.co_qualname})"
                        if hasattr(code, "co_qualname") else "coursekit.diffusion")
        elif where == _THIS_FILE and code.co_name not in _HANDED:
            seen.append(f"the checks' own reference code ({code.co_name})")

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)
    _require(not seen, f"`{name}` ({exercise}) calls {seen[0] if seen else ''}: the exercise "
             "is to write it yourself, with torch only; the library is what the check "
             "compares with, not an answer")


def _call(fn: Any, name: str, exercise: str) -> Callable[..., Any]:
    """The student's function, with hints for its torch errors and the library guard."""
    wrapped = _student(fn, name, exercise, _HINTS)

    def call(*args: Any, **kwargs: Any) -> Any:
        with _no_library(exercise, name):
            return wrapped(*args, **kwargs)

    return call


def _tensor(out: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    _require(isinstance(out, torch.Tensor), f"{what} should return a torch.Tensor, got "
             f"{type(out).__name__}")
    _require(tuple(out.shape) == shape, f"{what} should return shape {shape}, got "
             f"{tuple(out.shape)}")
    _require(bool(torch.isfinite(out.detach()).all()), f"{what} returned NaN or infinite "
             "values")
    return out


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


# ----------------------------------------------------------------------------------------------
# The checks' own mixture and reference code (private: not an answer to any exercise)
# ----------------------------------------------------------------------------------------------

# Four components, unequal weights, one correlated covariance: no notebook object holds it.
_W = np.array([0.4, 0.25, 0.2, 0.15])
_M = np.array([[-1.5, 0.5], [1.8, -0.4], [0.2, 2.2], [0.5, -2.0]])
_C = np.stack([np.array([[0.25, 0.08], [0.08, 0.16]]), np.diag([0.3**2, 0.5**2]),
               np.diag([0.45**2, 0.2**2]), 0.3**2 * np.eye(2)])


def _mix_log_prob(x: torch.Tensor, sigma: float, w: Any = _W, m: Any = _M,
                  c: Any = _C) -> torch.Tensor:
    """log p_sigma(x) of sum_k w_k N(m_k, c_k + sigma^2 I), by torch.distributions."""
    w, m, c = (torch.as_tensor(np.asarray(v, dtype=float)) for v in (w, m, c))
    cov = c + sigma**2 * torch.eye(c.shape[1], dtype=torch.float64)  # (K, d, d)
    comp = torch.distributions.MultivariateNormal(m, covariance_matrix=cov)
    return torch.logsumexp(torch.log(w) + comp.log_prob(x[:, None, :]), dim=1)  # (n,)


def _score_variant(w: np.ndarray, m: np.ndarray, c: np.ndarray, x: torch.Tensor, sigma: float,
                   resp_noise: bool = True, comp_noise: bool = True,
                   logdet: bool = True) -> torch.Tensor:
    """The mixture's score, optionally with one of the common mistakes (to name it)."""
    eye = np.eye(c.shape[1])
    cov_r = torch.as_tensor(c + (sigma**2 if resp_noise else 0.0) * eye)  # (K, d, d)
    cov_s = torch.as_tensor(c + (sigma**2 if comp_noise else 0.0) * eye)  # (K, d, d)
    diff = torch.as_tensor(m)[None] - x[:, None, :]  # (n, K, d): mu_k - x
    comp = torch.einsum("kij,nkj->nki", torch.linalg.inv(cov_s), diff)  # (n, K, d)
    maha = torch.einsum("nki,kij,nkj->nk", diff, torch.linalg.inv(cov_r), diff)  # (n, K)
    log_t = torch.log(torch.as_tensor(w))[None] - 0.5 * maha  # (n, K)
    if logdet:
        log_t = log_t - 0.5 * torch.logdet(cov_r)[None]
    return (torch.softmax(log_t, dim=1)[:, :, None] * comp).sum(1)  # (n, d)


class _MixScore:
    """The checks' mixture's exact score, as a callable handed to the student's samplers."""

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        return _score_variant(_W, _M, _C, x, float(sigma))


class _MixLogProb:
    """The checks' mixture's exact log-density, handed to the student's grid_tv."""

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        return _mix_log_prob(x, float(sigma))


def _mix_sample(n: int, seed: int) -> torch.Tensor:
    """n exact draws of the checks' mixture (component, then Cholesky factor times noise)."""
    g = seeding.generator(seed)
    k = torch.multinomial(torch.as_tensor(_W), n, replacement=True, generator=g)  # (n,)
    chol = torch.linalg.cholesky(torch.as_tensor(_C))  # (K, 2, 2)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return torch.as_tensor(_M)[k] + torch.einsum("nij,nj->ni", chol[k], z)


def _points(n: int = 64, seed: int = 0, scale: float = 2.5) -> torch.Tensor:
    g = seeding.generator(seed)
    return scale * torch.randn(n, 2, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Exercise 1: the noised mixture's log-density and score
# ----------------------------------------------------------------------------------------------


def _wrong_log_prob(w: np.ndarray, m: np.ndarray, c: np.ndarray, x: torch.Tensor,
                    sigma: float, how: str) -> torch.Tensor:
    """Log-densities of the common mistakes, to name the one a student made."""
    if how == "noise_on_std":  # (std + sigma)^2 per axis on the diagonal only
        c = c.copy()
        for k in range(len(c)):
            sd = np.sqrt(np.diag(c[k]))
            c[k] = c[k] + np.diag((sd + sigma) ** 2 - sd**2)
        return _mix_log_prob(x, 0.0, w, m, c)
    extra = sigma if how == "sigma_not_squared" else 0.0
    return _mix_log_prob(x, 0.0, w, m, c + extra * np.eye(c.shape[1]))


def _snapshot(*arrays: Any) -> list[torch.Tensor]:
    return [torch.as_tensor(a).detach().to(torch.float64).clone() for a in arrays]


def _unchanged(name: str, params: dict[str, Any], saved: list[torch.Tensor]) -> None:
    """Fail (and repair the notebook's tensor) if the student changed a global in place."""
    for (what, value), before in zip(params.items(), saved, strict=True):
        now = torch.as_tensor(value).detach().to(torch.float64)
        if now.shape == before.shape and torch.equal(now, before):
            continue
        if isinstance(value, torch.Tensor) and value.shape == before.shape:
            with torch.no_grad():
                value.copy_(before.to(value.dtype))  # put the notebook's data back
        raise AssertionError(
            f"`{name}` (Exercise 1) changed {what} in place (e.g. `cov = COVS; cov += ...` or "
            f"COVS.add_(...)): every later call then sees other parameters. Compute a new "
            f"tensor (`cov = COVS + sigma**2 * torch.eye(2)`). The check has put {what} "
            "back; run the set-up cell again if in doubt")


def check_noised_mixture(log_prob: Callable, score: Callable, weights: Any, means: Any,
                         covariances: Any) -> None:
    """Exercise 1: ``log_prob(x, sigma) -> (n,)`` and ``score(x, sigma) -> (n, 2)``.

    Compared with the exact noised mixture (components N(mu_k, Sigma_k + sigma^2 I)) at several
    noise levels, far from the data (log-sum-exp); the score with the finite differences of the
    student's own log-density, and differentiable in x (exercise 8 takes its divergence).
    """
    params = {"WEIGHTS": weights, "MEANS": means, "COVS": covariances}
    saved = _snapshot(weights, means, covariances)
    w, m, c = (t.numpy() for t in saved)
    lp = _call(log_prob, "noised_log_prob", "Exercise 1")
    sc = _call(score, "noised_score", "Exercise 1")
    x = _points()
    for sigma in (0.0, 0.3, 1.0, 4.0):
        got = _tensor(lp(x.clone(), sigma), (x.shape[0],), f"noised_log_prob(x, {sigma})")
        got = got.detach()
        _unchanged("noised_log_prob", params, saved)
        want = _mix_log_prob(x, sigma, w, m, c)
        if _close(got, want, 1e-8):
            continue
        for how, hint in (
            ("no_noise", "the noise is missing: component k of p_sigma is "
                         "N(mu_k, Sigma_k + sigma^2 I)"),
            ("sigma_not_squared", "you added sigma * I to the covariances: the noise's "
                                  "covariance is sigma^2 I"),
            ("noise_on_std", "you added sigma to the standard deviations: variances add "
                             "(Sigma_k + sigma^2 I), standard deviations do not"),
        ):
            if _close(got, _wrong_log_prob(w, m, c, x, sigma, how), 1e-8):
                raise AssertionError(f"noised_log_prob at sigma = {sigma} (Exercise 1): {hint}")
        if _close(got - want, (got - want).mean().expand_as(got), 1e-8):
            raise AssertionError(f"noised_log_prob at sigma = {sigma} (Exercise 1) is off by a "
                                 f"constant ({float((got - want).mean()):.4g}): check the "
                                 "normalisation (-log(2 pi) - 0.5 log det) and the weights")
        raise AssertionError(f"noised_log_prob at sigma = {sigma} (Exercise 1) differs from "
                             "the exact noised mixture by up to "
                             f"{float((got - want).abs().max()):.3g}: check the Mahalanobis "
                             "term (x - mu_k)^T (Sigma_k + sigma^2 I)^-1 (x - mu_k), the "
                             "log-determinant of Sigma_k + sigma^2 I (twice the sum of the "
                             "log-diagonal of its Cholesky factor) and the log-weights")
    far = torch.tensor([[40.0, -35.0], [-60.0, 60.0]], dtype=torch.float64)
    got = lp(far, 0.1)
    _require(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
             "noised_log_prob (Exercise 1) far from the data is -inf or NaN: combine the "
             "components with torch.logsumexp of the log-weights plus the log-densities, not "
             "log(sum(exp))")
    _require(_close(got, _mix_log_prob(far, 0.1, w, m, c), 1e-8),
             "noised_log_prob (Exercise 1) far from the data is inaccurate: use torch.logsumexp")
    _ok("log_prob: the exact noised mixture at sigma = 0, 0.3, 1, 4; stable far off")

    for sigma in (0.0, 0.5, 2.0):
        got = _tensor(sc(x.clone(), sigma), tuple(x.shape), f"noised_score(x, {sigma})")
        got = got.detach()  # an autograd score with create_graph=True keeps a graph
        _unchanged("noised_score", params, saved)
        want = _score_variant(w, m, c, x, sigma)
        if _close(got, want, 1e-7):
            continue
        where = f"noised_score at sigma = {sigma} (Exercise 1)"
        if _close(got, -want, 1e-7):
            raise AssertionError(f"{where} points away from the modes: the score of N(mu, S) "
                                 "is S^-1 (mu - x), not S^-1 (x - mu)")
        # A plain average of the component scores forgets the responsibilities.
        comps = []
        for k in range(len(w)):
            s_k = torch.as_tensor(c[k] + sigma**2 * np.eye(2))
            comps.append((torch.as_tensor(m[k]) - x) @ torch.linalg.inv(s_k))
        if _close(got, sum(comps) / len(comps), 1e-7) or _close(
                got, sum(wk * ck for wk, ck in zip(w, comps, strict=True)), 1e-7):
            raise AssertionError(f"{where}: each component's score must be weighted by its "
                                 "responsibility gamma_k(x), the posterior probability of "
                                 "component k given x at this noise level")
        for kw, hint in (
            (dict(resp_noise=False), "the responsibilities gamma_k(x) use the clean "
             "covariances Sigma_k: at noise level sigma they are computed with "
             "N(x; mu_k, Sigma_k + sigma^2 I)"),
            (dict(comp_noise=False), "the component scores use the clean covariances: "
             "the score of component k is (Sigma_k + sigma^2 I)^-1 (mu_k - x)"),
            (dict(logdet=False), "the responsibilities miss the -1/2 log det(Sigma_k + "
             "sigma^2 I) term of each component's log-density (the components do not have "
             "the same covariance)"),
        ):
            if _close(got, _score_variant(w, m, c, x, sigma, **kw), 1e-7):
                raise AssertionError(f"{where}: {hint}")
        h = 1e-5
        fd = torch.stack([(lp(x + h * e, sigma) - lp(x - h * e, sigma)) / (2 * h)
                          for e in torch.eye(2, dtype=torch.float64)], dim=1)
        if not _close(got, fd, 1e-4):
            raise AssertionError(f"{where} is not the gradient of your noised_log_prob "
                                 "(finite differences disagree by "
                                 f"{float((got - fd).abs().max()):.3g})")
        raise AssertionError(f"{where} differs from the exact score by up to "
                             f"{float((got - want).abs().max()):.3g}")
    # Exercise 8 differentiates the score with respect to x: it must keep its graph.
    xg = x[:8].clone().requires_grad_(True)
    with torch.enable_grad():
        out = sc(xg, 0.5)
        _require(isinstance(out, torch.Tensor) and out.requires_grad,
                 "noised_score (Exercise 1) returns a tensor with no graph back to x (it is "
                 "computed at x.detach(), under torch.no_grad, through NumPy, or by autograd "
                 "without create_graph=True): exercise 8 takes the divergence of the score "
                 "with autograd. Use the closed form (or create_graph=True)")
        div = sum(torch.autograd.grad(out[:, j].sum(), xg, retain_graph=True)[0][:, j]
                  for j in range(2))
    h = 1e-5
    fd = sum((score(x[:8] + h * e, 0.5) - score(x[:8] - h * e, 0.5))[:, j] / (2 * h)
             for j, e in enumerate(torch.eye(2, dtype=torch.float64)))
    _require(_close(div, fd, 1e-4), "noised_score (Exercise 1): its autograd divergence "
             "disagrees with finite differences: part of the computation is detached from x")
    _ok("score: the exact score, the gradient of log_prob, differentiable in x")


# ----------------------------------------------------------------------------------------------
# Exercises 2-4: Euler and Heun for the probability-flow ODE, Euler-Maruyama for the SDE
# ----------------------------------------------------------------------------------------------


class _Counter:
    """A score that counts its calls and those at sigma = 0."""

    def __init__(self, score: Score) -> None:
        self.score, self.calls, self.at_zero = score, 0, 0

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        self.calls += 1
        if float(sigma) == 0.0:
            self.at_zero += 1
        return self.score(x, float(sigma))


class _GaussScore:
    """Score of N(0, s2 I) noised to sigma: -x / (s2 + sigma^2)."""

    def __init__(self, s2: float) -> None:
        self.s2 = s2

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        return -x / (self.s2 + float(sigma) ** 2)


def _euler(score: Score, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        x = x + (b - a) * (-a * score(x, a))  # dx/dsigma = -sigma score
    return x


def _heun(score: Score, x: torch.Tensor, sigmas: torch.Tensor,
          skip_last_index: bool = False) -> torch.Tensor:
    s = [float(v) for v in sigmas]
    for i, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)):
        d = -a * score(x, a)
        xe = x + (b - a) * d  # the Euler point
        last = (i == len(s) - 2) if skip_last_index else (b == 0)
        if not last:
            xe = x + (b - a) * 0.5 * (d - b * score(xe, b))  # trapezoid
        x = xe
    return x


def _em(score: Score, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator,
        drift: str = "2h", std: str = "2h", noise_at: str = "cur", tweedie: str = "zero",
        float32: bool = False) -> torch.Tensor:
    """Euler-Maruyama on the reverse VE SDE, the accepted variants and the common mistakes.

    drift: "2h" (2 h sigma_i score), "diff" ((sigma_i^2 - sigma_{i+1}^2) score, the ancestral
    step), "1h" (the ODE's h sigma_i, a mistake); std: "2h" (sqrt(2 sigma_i h)), "diff"
    (sqrt(sigma_i^2 - sigma_{i+1}^2), the exact increment), "h" (a mistake); tweedie: the
    noise-free x + sigma^2 score when sigma_{i+1} == 0 ("zero"), on the last index ("index",
    a mistake) or never ("never", a mistake).
    """
    s = [float(v) for v in sigmas]
    for i, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)):
        sc = score(x, a)
        last = {"zero": b == 0, "index": i == len(s) - 2, "never": False}[tweedie]
        if last:
            x = x + a**2 * sc  # Tweedie's denoiser
            continue
        h = a - b
        z = torch.randn(x.shape, generator=generator,
                        dtype=torch.float32 if float32 else x.dtype)
        scale = a if noise_at == "cur" else b
        sd = {"2h": math.sqrt(2 * scale * h), "diff": math.sqrt(a**2 - b**2), "h": h}[std]
        gain = {"2h": 2 * h * a, "diff": a**2 - b**2, "1h": h * a}[drift]
        x = x + gain * sc + sd * z
    return x


_EM_VALID = tuple(dict(drift=d, std=s) for d in ("2h", "diff") for s in ("2h", "diff"))


def _ode_order(sampler: Callable, observed_order: Callable | None = None,
               n_list: tuple[int, ...] = (8, 16, 32, 64), heun: bool = False) -> float:
    """Observed order (against NFE) of a PF-ODE sampler on N(0, s^2 I), whose exact solution
    is a scaling: x(0) = x(smax) sqrt(s^2 / (s^2 + smax^2))."""
    s2, smax = 0.25, 10.0
    x0 = smax * torch.randn(256, 2, generator=seeding.generator(3), dtype=torch.float64)
    exact = x0 * math.sqrt(s2 / (s2 + smax**2))
    errs = []
    for n in n_list:
        out = sampler(_GaussScore(s2), x0.clone(), diffusion.edm_sigmas(n, 0.002, smax))
        errs.append(float((out - exact).norm(dim=1).mean()))
    nfe = np.array([2 * n - 1 if heun else n for n in n_list], dtype=float)
    if observed_order is not None:
        return float(observed_order(nfe, np.array(errs)))
    return float(-np.polyfit(np.log(nfe), np.log(errs), 1)[0])


def _sampler_common(fn: Callable, name: str, exercise: str, x0: torch.Tensor,
                    sigmas: torch.Tensor, *extra: Any) -> tuple[torch.Tensor, _Counter]:
    """Run a student's sampler once: shape, finite, input untouched; returns (out, counter)."""
    count = _Counter(_MixScore())
    arg = x0.clone()
    out = _tensor(_call(fn, name, exercise)(count, arg, sigmas, *extra), tuple(x0.shape), name)
    _require(torch.equal(arg, x0), f"`{name}` ({exercise}) changed its input x in place "
             "(x += ..., x.add_(...), x[...] = ...): the caller's tensor is then lost (Part F "
             "runs the samplers many times from the same start). Write x = x + ...")
    return out, count


def check_samplers(euler_ode: Callable | None = None, heun_ode: Callable | None = None,
                   euler_maruyama: Callable | None = None) -> None:
    """Exercises 2-4: each sampler given is compared with the reference update of the practical.

    - ``euler_ode(score, x, sigmas)``: N score calls, equal to the reference Euler steps, first
      order on a Gaussian whose ODE solution is known;
    - ``heun_ode(score, x, sigmas)``: 2N - 1 calls on a schedule that ends at 0 (no correction
      on the step to 0), 2N on one that stops above 0, EDM's Algorithm 1, second order;
    - ``euler_maruyama(score, x, sigmas, generator)``: N calls, one of the accepted updates
      (drift 2 h sigma_i s or (sigma_i^2 - sigma_{i+1}^2) s; noise sqrt(2 sigma_i h) z or
      sqrt(sigma_i^2 - sigma_{i+1}^2) z, one torch.randn per step) with the same generator,
      Tweedie's denoiser only on a step to sigma = 0, reproducible.

    Every sampler runs on the checks' own mixture, with the input x left unchanged.
    """
    x0 = 20.0 * torch.randn(128, 2, generator=seeding.generator(1), dtype=torch.float64)
    sigmas = diffusion.edm_sigmas(12, 0.002, 20.0)
    cut = sigmas[:8]  # a schedule that stops above 0, as in Part F
    n = len(sigmas) - 1
    mix = _MixScore()
    if euler_ode is not None:
        ex = "Exercise 2"
        out, count = _sampler_common(euler_ode, "euler_ode", ex, x0, sigmas)
        _require(count.calls == n, f"euler_ode ({ex}) called the score {count.calls} times for "
                 f"{n} steps: Euler makes exactly one call per step")
        _require(count.at_zero == 0, f"euler_ode ({ex}) called the score at sigma = 0: the "
                 "slope of a step is taken at its start, sigma_i > 0")
        want = _euler(mix, x0, sigmas)
        if not _close(out, want, 1e-8):
            spread = float(out.std() / want.std())
            _require(spread < 5.0, f"euler_ode's ({ex}) samples are {spread:.0f} times too "
                     "spread out: the ODE's slope is dx/dsigma = -sigma * score(x, sigma), and "
                     "the step sigma_{i+1} - sigma_i is negative")
            raise AssertionError(f"euler_ode ({ex}) differs from x <- x + (sigma_{{i+1}} - "
                                 "sigma_i) * (-sigma_i * score(x, sigma_i)) by up to "
                                 f"{float((out - want).abs().max()):.3g}: check the slope "
                                 "(-sigma * score) and the step (sigma_{i+1} - sigma_i < 0)")
        got_cut, _ = _sampler_common(euler_ode, "euler_ode", ex, x0, cut)
        _require(_close(got_cut, _euler(mix, x0, cut), 1e-8), f"euler_ode ({ex}) is wrong on "
                 "a schedule that stops above 0 (Part F uses sigmas[:j + 1]): every step is "
                 "the same Euler step, whatever its index")
        order = _ode_order(_call(euler_ode, "euler_ode", ex))
        _require(0.7 < order < 1.4, f"euler_ode's ({ex}) observed order is {order:.2f}, not "
                 "about 1")
        _ok(f"euler_ode: one call per step, the reference update, order {order:.2f}")
    if heun_ode is not None:
        ex = "Exercise 3"
        out, count = _sampler_common(heun_ode, "heun_ode", ex, x0, sigmas)
        _require(not _close(out, _euler(mix, x0, sigmas), 1e-8), f"heun_ode ({ex}) gives the "
                 "same result as Euler: the correction step (average of the slopes at both "
                 "ends) is missing")
        _require(count.at_zero == 0, f"heun_ode ({ex}) evaluated the score at sigma = 0: as in "
                 "EDM's Algorithm 1, the step to sigma = 0 is a plain Euler step (a learned "
                 "score is not trained at sigma = 0, and in the denoiser form the slope there "
                 "is 0/0)")
        _require(count.calls == 2 * n - 1, f"heun_ode ({ex}) called the score {count.calls} "
                 f"times for {n} steps: Heun makes 2 calls per step except the last (2N - 1)")
        want = _heun(mix, x0, sigmas)
        _require(_close(out, want, 1e-8), f"heun_ode ({ex}) differs from Heun's method by up "
                 f"to {float((out - want).abs().max()):.3g}: the corrected step is x_i + "
                 "(sigma_{i+1} - sigma_i) (d_i + d'_{i+1}) / 2, with d' the slope at the Euler "
                 "point x' and at sigma_{i+1}")
        got_cut, count = _sampler_common(heun_ode, "heun_ode", ex, x0, cut)
        if not _close(got_cut, _heun(mix, x0, cut), 1e-8):
            _require(not _close(got_cut, _heun(mix, x0, cut, skip_last_index=True), 1e-8),
                     f"heun_ode ({ex}) skips the correction on the last step of a schedule "
                     "that stops above 0 (Part F uses sigmas[:j + 1]): skip it when "
                     "sigma_{i+1} == 0, not on the last index")
            raise AssertionError(f"heun_ode ({ex}) is wrong on a schedule that stops above 0 "
                                 "(Part F uses sigmas[:j + 1])")
        order = _ode_order(_call(heun_ode, "heun_ode", ex), heun=True)
        _require(1.6 < order < 2.6, f"heun_ode's ({ex}) observed order is {order:.2f}, not "
                 "about 2")
        _ok(f"heun_ode: 2N - 1 calls, EDM's Algorithm 1, order {order:.2f}")
    if euler_maruyama is not None:
        _check_em(euler_maruyama, x0, sigmas, cut)


def _check_em(fn: Callable, x0: torch.Tensor, sigmas: torch.Tensor, cut: torch.Tensor) -> None:
    ex, name = "Exercise 4", "euler_maruyama"
    n = len(sigmas) - 1
    mix = _MixScore()
    out, count = _sampler_common(fn, name, ex, x0, sigmas, seeding.generator(5))
    _require(count.calls == n, f"{name} ({ex}) called the score {count.calls} times for "
             f"{n} steps: one call per step")
    _require(count.at_zero == 0, f"{name} ({ex}) called the score at sigma = 0: the drift "
             "of a step uses the score at its start, sigma_i > 0")
    em = _call(fn, name, ex)
    again = em(mix, x0.clone(), sigmas, seeding.generator(5))
    _require(_close(out, again, 0.0), f"{name} ({ex}) is not reproducible with the same "
             "generator: draw the noise with torch.randn(..., generator=generator)")
    other = em(mix, x0.clone(), sigmas, seeding.generator(6))
    _require(not _close(out, other, 1e-6), f"{name} ({ex}) gives the same samples for two "
             "different generators: it adds no noise, or not from the generator")

    def matches(got: torch.Tensor, sig: torch.Tensor, **kw: Any) -> bool:
        return any(_close(got, _em(mix, x0, sig, seeding.generator(5), **v, **kw), 1e-8)
                   for v in _EM_VALID)

    if matches(out, sigmas):
        got_cut = em(mix, x0.clone(), cut, seeding.generator(5))
        if not matches(got_cut, cut):
            _require(not matches(got_cut, cut, tweedie="index"), f"{name} ({ex}) applies "
                     "Tweedie's denoiser on the last step of a schedule that stops above 0 "
                     "(Part F uses sigmas[:j + 1], and would plot denoised means): use it "
                     "only on a step to sigma_{i+1} == 0, not on the last index")
            raise AssertionError(f"{name} ({ex}) is wrong on a schedule that stops above 0 "
                                 "(Part F uses sigmas[:j + 1])")
        _ok(f"{name}: one call per step, an accepted update, reproducible")
        return
    for kw, hint in (
        (dict(noise_at="next"), "the noise is scaled with sigma_{i+1}: its standard deviation "
         "is sqrt(2 sigma_i h), at the START of the step"),
        (dict(std="h"), "the noise's standard deviation is sqrt(2 sigma_i h), not "
         "proportional to h: Brownian increments grow like the square root of the step"),
        (dict(drift="1h"), "the drift is the probability-flow ODE's (h sigma_i score): the "
         "reverse SDE's drift is twice that, 2 h sigma_i score"),
        (dict(tweedie="never"), "the last step (to sigma = 0) adds noise: make it the "
         "noise-free x + sigma_{N-1}^2 score (Tweedie's denoiser)"),
        (dict(float32=True), "the noise is drawn in float32: pass dtype=x.dtype to torch.randn "
         "so that the draws match float64 ones from the same generator"),
    ):
        if _close(out, _em(mix, x0, sigmas, seeding.generator(5), **kw), 1e-8):
            raise AssertionError(f"{name} ({ex}): {hint}")
    # The spread on a Gaussian tells a wrong drift or noise scale from a different drawing order.
    s2 = 0.25
    xg = 10.0 * torch.randn(4000, 2, generator=seeding.generator(2), dtype=torch.float64)
    var = float(em(_GaussScore(s2), xg, diffusion.edm_sigmas(200, 0.002, 10.0),
                   seeding.generator(4)).var())
    _require(abs(var / s2 - 1) < 0.15, f"{name}'s ({ex}) samples of N(0, {s2} I) have variance "
             f"{var:.3f}: the drift must be 2 h sigma_i score (twice the ODE's) and the noise "
             "sqrt(2 sigma_i h) z, with h = sigma_i - sigma_{i+1}")
    raise AssertionError(f"{name} ({ex}) samples a Gaussian with the right variance but differs "
                         "from the accepted updates with the same generator (drift 2 h sigma_i "
                         "s or (sigma_i^2 - sigma_{i+1}^2) s, noise sqrt(2 sigma_i h) z or "
                         "sqrt(sigma_i^2 - sigma_{i+1}^2) z) by up to "
                         f"{float((out - _em(mix, x0, sigmas, seeding.generator(5))).abs().max()):.3g}"
                         ": draw z = torch.randn(x.shape, generator=generator, dtype=x.dtype) "
                         "once per noisy step, so that the check can compare draw for draw")


# ----------------------------------------------------------------------------------------------
# Exercise 5: a distance with a known floor; exercise 6: observed orders
# ----------------------------------------------------------------------------------------------


def _grid_tv_variant(samples: torch.Tensor, log_prob: Callable, lim: float = 4.5,
                     bins: int = 60, norm_inside: bool = False, outside: bool = True,
                     half: bool = True, area: bool = True, corner: bool = False,
                     transpose: bool = False) -> float:
    """TV between the samples' histogram on a bins x bins grid of [-lim, lim]^2 and the exact
    cell probabilities, the mass outside counted as one more cell; optionally with one of the
    common mistakes (the defaults are right)."""
    edges = torch.linspace(-lim, lim, bins + 1, dtype=torch.float64)
    centres = edges[:-1] if corner else (edges[:-1] + edges[1:]) / 2
    gx, gy = torch.meshgrid(centres, centres, indexing="xy" if transpose else "ij")
    p = torch.exp(log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 0.0))
    if area:
        p = p * (edges[1] - edges[0]) ** 2  # density x cell area
    x = samples.detach().to(torch.float64)
    inside = ((x > -lim) & (x < lim)).all(dim=1)
    idx = ((x[inside] + lim) / (2 * lim) * bins).long().clamp(0, bins - 1)
    counts = torch.bincount(idx[:, 0] * bins + idx[:, 1], minlength=bins * bins).double()
    q = counts / (counts.sum() if norm_inside else len(x))  # fraction of ALL samples
    tv = (q - p).abs().sum() + (((1 - q.sum()) - (1 - p.sum())).abs() if outside else 0.0)
    return float(0.5 * tv if half else tv)


_TV_MISTAKES = (
    (dict(norm_inside=True), "the histogram is normalised by the number of samples inside the "
     "grid: q_c is the fraction of ALL samples (the rest is the outside cell)"),
    (dict(outside=False), "the mass outside the grid is missing: add |q_out - p_out| with "
     "q_out = 1 - sum q_c and p_out = 1 - sum p_c"),
    (dict(half=False), "the factor 1/2 is missing: TV = 1/2 sum |q - p|"),
    (dict(area=False), "the cell probability is the density times the cell AREA, not the "
     "density alone"),
    (dict(corner=True), "the density is taken at a corner of each cell: take it at the cell's "
     "centre"),
    (dict(transpose=True), "p and q list the cells in different orders (x and y swapped): "
     "build the centres with torch.meshgrid(..., indexing='ij'), the order of histogramdd"),
)


def check_grid_tv(grid_tv: Callable) -> None:
    """Exercise 5: ``grid_tv(samples, log_prob)`` against the reference on the checks' own
    mixture (its exact samples, and the same spread out so that some leave the grid)."""
    ex = "Exercise 5"
    tv = _call(grid_tv, "grid_tv", ex)
    log_prob = _MixLogProb()
    x = _mix_sample(4000, 11)
    for pts, what in ((x, "exact samples"), (1.8 * x, "samples partly outside the grid")):
        got = tv(pts.clone(), log_prob)
        _require(isinstance(got, (float, int, np.floating, torch.Tensor))
                 and np.size(got) == 1, f"grid_tv ({ex}) should return one number, got "
                 f"{type(got).__name__}")
        got = float(got)
        want = _grid_tv_variant(pts, log_prob)
        if abs(got - want) < 1e-6 + 1e-3 * want:
            continue
        for kw, hint in _TV_MISTAKES:
            wrong = _grid_tv_variant(pts, log_prob, **kw)
            if abs(got - wrong) < 1e-6 + 1e-3 * wrong:
                raise AssertionError(f"grid_tv ({ex}) gives {got:.4f} for {what}, the "
                                     f"reference {want:.4f}: {hint}")
        _require(0.0 <= got <= 1.0, f"grid_tv ({ex}) returned {got:.4g} for {what}: a total "
                 "variation lies in [0, 1]")
        raise AssertionError(f"grid_tv ({ex}) gives {got:.4f} for {what}, the reference "
                             f"{want:.4f}: the histogram must be normalised by the number of "
                             "ALL samples (not of those inside the grid), the cell probability "
                             "is the density at the cell centre x cell area, and TV = 1/2 sum "
                             "|q - p| including the mass outside the grid as one more cell")
    got = float(tv(x.clone(), log_prob))
    _require(float(tv(x + 3.0, log_prob)) > got + 0.3,
             f"grid_tv ({ex}) barely changes when the samples are shifted by 3: it is not "
             "comparing the samples with the exact density")
    _ok(f"grid_tv: the reference ({got:.4f} for 4000 exact samples of another mixture)")


def check_orders(observed_order: Callable, euler_ode: Callable, heun_ode: Callable) -> None:
    """Exercise 6: ``observed_order(nfe, err) -> float``, minus the slope of log(err) against
    log(nfe) by least squares; then the orders of the student's own samplers, measured by the
    check with it on a Gaussian whose ODE solution is known (Euler about 1, Heun about 2)."""
    ex = "Exercise 6"
    order = _call(observed_order, "observed_order", ex)
    nfe = np.array([8.0, 16.0, 32.0, 64.0, 128.0])
    wiggle = np.exp(0.05 * np.array([1.0, -1.0, 0.5, 0.0, -0.5]))  # not an exact power law
    err = 3.0 * nfe**-1.7 * wiggle
    want = float(-np.polyfit(np.log(nfe), np.log(err), 1)[0])
    got = order(nfe.copy(), err.copy())
    _require(np.size(got) == 1, f"observed_order ({ex}) should return one number, got "
             f"{np.shape(got)}: np.polyfit returns [slope, intercept]")
    got = float(np.asarray(got).reshape(-1)[0])
    if abs(got - want) > 1e-8:
        swapped = float(np.polyfit(np.log(err), np.log(nfe), 1)[0])
        for wrong, hint in (
            (-want, "the order is MINUS the slope (the error falls as NFE grows)"),
            (swapped, "log(err) goes on the y axis: np.polyfit(log(nfe), log(err), 1)"),
            (-swapped, "log(err) goes on the y axis: np.polyfit(log(nfe), log(err), 1)"),
        ):
            _require(abs(got - wrong) > 1e-6, f"observed_order ({ex}) gives {got:.4f} for "
                     f"errors that fall like NFE^-{want:.3f}: {hint}")
        raise AssertionError(f"observed_order ({ex}) gives {got:.4f} for errors that fall like "
                             f"NFE^-{want:.3f}: fit a line to (log nfe, log err) with "
                             "np.polyfit(..., 1) and return minus its slope")
    # The orders of the student's own samplers, measured by the check (not typed in).
    e = _ode_order(_call(euler_ode, "euler_ode", "Exercise 2"), order)
    h = _ode_order(_call(heun_ode, "heun_ode", "Exercise 3"), order, heun=True)
    _require(0.7 < e < 1.4 and 1.5 < h < 2.8, f"your samplers' observed orders on a Gaussian "
             f"are {e:.2f} (Euler) and {h:.2f} (Heun), expected about 1 and 2: run the check "
             "of exercises 2-3 again")
    _ok(f"observed_order: your samplers' orders: Euler {e:.2f}, Heun {h:.2f} (a Gaussian)")


# ----------------------------------------------------------------------------------------------
# Exercise 7: a score that is wrong at some noise levels; Part D's measurements
# ----------------------------------------------------------------------------------------------


def check_perturbed_score(perturbed_score: Callable, score: Score) -> None:
    """Exercise 7: ``perturbed_score(score, factor, sigma_lo, sigma_hi)`` returns a score that is
    ``factor * score`` for ``sigma_lo <= sigma <= sigma_hi`` and the exact score elsewhere."""
    ex = "Exercise 7"
    make = _call(perturbed_score, "perturbed_score", ex)
    x = _points(16, seed=7)
    f = make(score, 1.5, 0.5, 2.0)
    _require(callable(f), f"perturbed_score ({ex}) should return a function f(x, sigma)")
    fc = _call(f, "the perturbed score", ex)
    cases = ((0.1, 1.0), (0.5, 1.5), (1.0, 1.5), (2.0, 1.5), (3.0, 1.0))
    first = {}
    for sigma, factor in cases:
        arg = x.clone()
        got = _tensor(fc(arg, sigma), tuple(x.shape), f"the perturbed score at sigma = {sigma}")
        _require(torch.equal(arg, x), f"the perturbed score ({ex}) changed its input x in "
                 f"place at sigma = {sigma}: compute a new tensor (factor * score(x, sigma))")
        want = factor * score(x, sigma)
        if not _close(got, want, 1e-10):
            fresh = make(score, 1.5, 0.5, 2.0)(x.clone(), sigma)
            _require(not _close(fresh, want, 1e-10), f"the perturbed score ({ex}) at sigma = "
                     f"{sigma} is right on a fresh function but wrong after the calls made "
                     "before it: the returned function must not change factor, sigma_lo, "
                     "sigma_hi or anything else it closes over (no nonlocal assignment)")
        _require(_close(got, want, 1e-10), f"at sigma = {sigma} the perturbed score ({ex}) "
                 f"should be {factor} x the exact score (the window is sigma_lo <= sigma <= "
                 "sigma_hi, both ends included; outside it the score is exact)")
        first[sigma] = got.clone()
    for sigma, _ in reversed(cases):
        _require(_close(fc(x.clone(), sigma), first[sigma], 1e-12),
                 f"the perturbed score ({ex}) at sigma = {sigma} depends on the calls made "
                 "before it: the returned function must not change factor, sigma_lo, "
                 "sigma_hi or anything else it closes over")
    g = make(score, 0.5, 0.5, 2.0)
    _require(_close(g(x.clone(), 1.0), 0.5 * score(x, 1.0), 1e-10)
             and _close(fc(x.clone(), 1.0), first[1.0], 1e-12),
             f"two perturbed scores share their state ({ex}): each call of perturbed_score "
             "must return an independent function (no module-level variables)")
    _ok("perturbed_score: scaled inside the window, exact outside")


def _floor_bound(tvs: Any, floor: Any, n_se: float) -> tuple[float, float, float]:
    tvs, floor = np.asarray(tvs, dtype=float), np.asarray(floor, dtype=float)
    sd = float(floor.std(ddof=1))
    se = sd * math.sqrt(1 / tvs.size + 1 / floor.size)  # s.e. of mean(tvs) - mean(floor)
    return float(tvs.mean() - floor.mean()), sd, se


def check_near_floor(name: str, tvs: Any, floor: Any, n_se: float = 5.0) -> None:
    """Part D: a sampler's grid TVs (one per seed) are at the floor's level.

    ``floor``: the TVs of >= 8 independent sets of exact samples of the same size. The mean of
    ``tvs`` must be within ``n_se`` standard errors of the floor's mean, the standard error of
    a difference of two means estimated from the floor's own spread.
    """
    tvs_a, floor_a = np.asarray(tvs, dtype=float), np.asarray(floor, dtype=float)
    _require(floor_a.ndim == 1 and floor_a.size >= 8, "the floor needs at least 8 sets of exact "
             f"samples to estimate its spread, got {floor_a.size}")
    _require(tvs_a.ndim == 1 and tvs_a.size >= 2, f"{name}: give one TV per seed (>= 2 seeds)")
    gap, sd, se = _floor_bound(tvs_a, floor_a, n_se)
    _require(gap < n_se * se, f"{name}: mean TV {tvs_a.mean():.4f} is {gap / se:.1f} standard "
             f"errors above the floor {floor_a.mean():.4f} (floor s.d. {sd:.4f}): it is not "
             "at the floor; use more steps, or check the sampler")
    _ok(f"{name}: {gap / se:+.1f} standard errors from the floor (bound {n_se:.0f})")


# ----------------------------------------------------------------------------------------------
# Exercise 8: the probability-flow ODE's likelihood
# ----------------------------------------------------------------------------------------------


def check_log_likelihood(log_likelihood: Callable) -> None:
    """Exercise 8: ``log_likelihood(score, x, sigma_min, sigma_max, n_steps) -> (n,)`` is
    log p_sigma_min(x) to a few hundredths of a nat, on the checks' own mixture (its exact
    score is passed in; the answer is compared with its exact log-density)."""
    ex = "Exercise 8"
    ll = _call(log_likelihood, "ode_log_likelihood", ex)
    x = _points(40, seed=4, scale=1.5)
    arg = x.clone()
    got = _tensor(ll(_MixScore(), arg, 0.01, 40.0, 200), (40,), "ode_log_likelihood")
    _require(torch.equal(arg, x), f"ode_log_likelihood ({ex}) changed its input x in place: "
             "write x = x + ... in the integration loop")
    want = _mix_log_prob(x, 0.01)
    err = (got.detach() - want).abs()
    prior_gap = math.log(40.0**2)  # what forgetting the prior's variance costs in 2-D
    diff = got.detach() - want
    for gap, hint in (
        (prior_gap, "off by about log(sigma_max^2): the prior at sigma_max is "
                    "N(0, sigma_max^2 I), not N(0, I)"),
        (prior_gap / 2, "off by about log(sigma_max): the prior's normalisation in d = 2 "
                        "dimensions is -d log(sigma_max) - (d / 2) log(2 pi)"),
    ):
        if min(float((diff - gap).abs().mean()), float((diff + gap).abs().mean())) < 0.1:
            raise AssertionError(f"ode_log_likelihood ({ex}) is {hint}")
    _require(float(err.mean()) < 0.05, f"ode_log_likelihood ({ex}) is off by "
             f"{float(err.mean()):.3f} nats on average: log p_sigma_min(x) = log N(x(sigma_max); "
             "0, sigma_max^2 I) + the integral from sigma_min to sigma_max of div f(x(sigma), "
             "sigma), f = -sigma score, along the ODE solution started at x at sigma_min and "
             "integrated UP to sigma_max: check the direction, the sign of the integral and "
             "the step grid")
    _ok(f"log_likelihood: within {float(err.max()):.3f} nats of the exact log-density")
