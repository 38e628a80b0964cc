"""Check cells of Practical 3 (Comparing ODE and SDE samplers in small dimensions).

Each ``check_*`` function runs a student's function on inputs whose answer is known (the exact
noised mixture of :class:`coursekit.diffusion.NoisedGaussianMixture`, the reference samplers of
:mod:`coursekit.diffusion`, finite differences, a Gaussian whose probability-flow ODE has a
closed-form solution) and raises an ``AssertionError`` whose message names the likely cause;
it prints a short ``OK`` line when everything holds. The failures are raised explicitly, not
with ``assert``, so that they also fire under ``python -O``. Every check is written against a
list of plausible wrong implementations (``tests/test_practical3_ode_sde.py``) and fails for each.

A check run before its exercise lets the stub's ``NotImplementedError("Exercise N: ...")``
through unchanged, so the message says which exercise to do first. The checks never reseed a
global generator: their own draws use local ``torch.Generator`` objects.

Conventions of the practical: points ``x`` are ``(n, 2)`` float64 tensors; a noise level
``sigma`` is a Python float >= 0; a *score* is a callable ``score(x, sigma) -> (n, 2)``; noise
levels ``sigmas`` are a decreasing 1-D float64 tensor that ends at 0 (EDM's schedule,
:func:`coursekit.diffusion.edm_sigmas`); the variance-exploding noising is ``x = y + sigma n``.

Practical 3 uses, in order: :func:`check_noised_mixture` (exercise 1),
:func:`check_samplers` (exercises 2-4), :func:`check_grid_tv` (5), :func:`check_orders` (6),
:func:`check_perturbed_score` (7), :func:`check_divergence` and :func:`check_log_likelihood` (8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from coursekit import diffusion, seeding
from coursekit.practicals.checks import ok as _ok
from coursekit.practicals.checks import require as _require
from coursekit.practicals.checks import require_done  # noqa: F401  (the notebook calls it)

Score = Callable[[torch.Tensor, float], torch.Tensor]


def _tensor(out: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    _require(isinstance(out, torch.Tensor), f"{what} should return a torch.Tensor, got "
             f"{type(out).__name__}")
    _require(tuple(out.shape) == shape, f"{what} should return shape {shape}, got "
             f"{tuple(out.shape)}")
    _require(bool(torch.isfinite(out).all()), f"{what} returned NaN or infinite values")
    return out


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return bool(torch.allclose(a, b, rtol=tol, atol=tol))


def test_mixture() -> diffusion.NoisedGaussianMixture:
    """The checks' own 2-D mixture: three anisotropic components, unequal weights."""
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    covs = np.stack([np.diag([0.3**2, 0.6**2]), np.diag([0.5**2, 0.2**2]), 0.25**2 * np.eye(2)])
    return diffusion.NoisedGaussianMixture(weights, means, covs)


def _points(n: int = 64, seed: int = 0, scale: float = 2.5) -> torch.Tensor:
    g = seeding.generator(seed)
    return scale * torch.randn(n, 2, generator=g, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Exercise 1: the noised mixture's log-density and score
# ----------------------------------------------------------------------------------------------


def _wrong_mixture(weights, means, covs, how: str) -> Callable[[torch.Tensor, float], Any]:
    """Reference log-densities of the common mistakes, to name the one a student made."""
    covs = np.asarray(covs, dtype=float)

    def log_prob(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if how == "sigma_not_squared":
            extra = sigma
        elif how == "no_noise":
            extra = 0.0
        else:  # "noise_on_std": (std + sigma)^2 per axis on the diagonal only
            extra = None
        if extra is None:
            c = covs.copy()
            for k in range(len(c)):
                sd = np.sqrt(np.diag(c[k]))
                c[k] = c[k] + np.diag((sd + sigma) ** 2 - sd**2)
        else:
            c = covs + extra * np.eye(covs.shape[1])
        return diffusion.NoisedGaussianMixture(weights, means, c).log_prob(x, 0.0)

    return log_prob


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


def check_noised_mixture(log_prob: Callable, score: Callable, weights: Any, means: Any,
                         covariances: Any) -> None:
    """Exercise 1: ``log_prob(x, sigma) -> (n,)`` and ``score(x, sigma) -> (n, 2)``.

    Compared with the exact noised mixture (components N(mu_k, Sigma_k + sigma^2 I)) at several
    noise levels, far from the data (log-sum-exp), and the score with the finite differences
    of the student's own log-density.
    """
    w = np.asarray(weights, dtype=float)
    m = np.asarray(means, dtype=float)
    c = np.asarray(covariances, dtype=float)
    ref = diffusion.NoisedGaussianMixture(w, m, c)
    x = _points()
    for sigma in (0.0, 0.3, 1.0, 4.0):
        got = _tensor(log_prob(x.clone(), sigma), (x.shape[0],), f"log_prob(x, {sigma})")
        want = ref.log_prob(x, sigma)
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
            if _close(got, _wrong_mixture(w, m, c, how)(x, sigma), 1e-8):
                raise AssertionError(f"log_prob at sigma = {sigma}: {hint}")
        if _close(got - want, (got - want).mean().expand_as(got), 1e-8):
            raise AssertionError(f"log_prob at sigma = {sigma} is off by a constant "
                                 f"({float((got - want).mean()):.4g}): check the "
                                 "normalisation (-log(2 pi) - 0.5 log det) and the weights")
        raise AssertionError(f"log_prob at sigma = {sigma} differs from the exact noised "
                             f"mixture by up to {float((got - want).abs().max()):.3g}: check "
                             "the Mahalanobis term (x - mu_k)^T (Sigma_k + sigma^2 I)^-1 "
                             "(x - mu_k), the log-determinant of Sigma_k + sigma^2 I (twice "
                             "the sum of the log-diagonal of its Cholesky factor) and the "
                             "log-weights")
    far = torch.tensor([[40.0, -35.0], [-60.0, 60.0]], dtype=torch.float64)
    got = log_prob(far, 0.1)
    _require(isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
             "log_prob far from the data is -inf or NaN: combine the components with "
             "torch.logsumexp of the log-weights plus the log-densities, not log(sum(exp))")
    _require(_close(got, ref.log_prob(far, 0.1), 1e-8),
             "log_prob far from the data is inaccurate: use torch.logsumexp")
    _ok("log_prob: the exact noised mixture at sigma = 0, 0.3, 1, 4, stable far away")

    for sigma in (0.0, 0.5, 2.0):
        got = _tensor(score(x.clone(), sigma), tuple(x.shape), f"score(x, {sigma})")
        want = ref.score(x, sigma)
        if _close(got, want, 1e-7):
            continue
        if _close(got, -want, 1e-7):
            raise AssertionError(f"score at sigma = {sigma} points away from the modes: the "
                                 "score of N(mu, S) is S^-1 (mu - x), not S^-1 (x - mu)")
        # A plain average of the component scores forgets the responsibilities.
        comps = []
        for k in range(len(w)):
            s_k = torch.as_tensor(c[k] + sigma**2 * np.eye(2))
            comps.append((torch.as_tensor(m[k]) - x) @ torch.linalg.inv(s_k))
        if _close(got, sum(comps) / len(comps), 1e-7) or _close(
                got, sum(wk * ck for wk, ck in zip(w, comps, strict=True)), 1e-7):
            raise AssertionError(f"score at sigma = {sigma}: each component's score must be "
                                 "weighted by its responsibility gamma_k(x), the posterior "
                                 "probability of component k given x at this noise level")
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
                raise AssertionError(f"score at sigma = {sigma}: {hint}")
        h = 1e-5
        fd = torch.stack([(log_prob(x + h * e, sigma) - log_prob(x - h * e, sigma)) / (2 * h)
                          for e in torch.eye(2, dtype=torch.float64)], dim=1)
        if not _close(got, fd, 1e-4):
            raise AssertionError(f"score at sigma = {sigma} is not the gradient of your "
                                 "log_prob (finite differences disagree by "
                                 f"{float((got - fd).abs().max()):.3g})")
        raise AssertionError(f"score at sigma = {sigma} differs from the exact score by up to "
                             f"{float((got - want).abs().max()):.3g}")
    _ok("score: equals the exact score and the finite differences of log_prob")


# ----------------------------------------------------------------------------------------------
# Exercises 2-4: Euler and Heun for the probability-flow ODE, Euler-Maruyama for the SDE
# ----------------------------------------------------------------------------------------------


class _Counter:
    """A score that counts its calls and refuses sigma = 0 (where the ODE's slope is 0/0)."""

    def __init__(self, score: Score) -> None:
        self.score, self.calls, self.at_zero = score, 0, 0

    def __call__(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        self.calls += 1
        if float(sigma) == 0.0:
            self.at_zero += 1
        return self.score(x, float(sigma))


def _denoiser(score: Score) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """Tweedie: D(x; sigma) = x + sigma^2 score(x, sigma), for the reference samplers."""
    return lambda x, sigma: x + sigma**2 * score(x, sigma)


def _gaussian_score(s2: float) -> Score:
    """Score of N(0, s2 I) noised to sigma: -x / (s2 + sigma^2)."""
    return lambda x, sigma: -x / (s2 + sigma**2)


def _ode_order(sampler: Callable, n_list=(8, 16, 32, 64)) -> float:
    """Observed order of a PF-ODE sampler on N(0, s^2 I), whose exact solution is a scaling."""
    s2, smax = 0.25, 10.0
    x0 = smax * torch.randn(256, 2, generator=seeding.generator(3),
                            dtype=torch.float64)
    exact = x0 * math.sqrt(s2 / (s2 + smax**2))  # x(0) = x(smax) sqrt(s^2 / (s^2 + smax^2))
    errs = []
    for n in n_list:
        out = sampler(_gaussian_score(s2), x0.clone(), diffusion.edm_sigmas(n, 0.002, smax))
        errs.append(float((out - exact).norm(dim=1).mean()))
    slope = -np.polyfit(np.log(n_list), np.log(errs), 1)[0]
    return float(slope)


def _em_variant(score: Score, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator,
                noise_at: str = "cur", noise: str = "sqrt", drift: float = 2.0,
                last_noise: bool = False, float32: bool = False) -> torch.Tensor:
    """Euler-Maruyama with one of the common mistakes (the defaults are the right update)."""
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0 and not last_noise:
            x = x + a**2 * sc  # Tweedie's denoiser on the last step
            continue
        h = a - b
        z = torch.randn(x.shape, generator=generator,
                        dtype=torch.float32 if float32 else x.dtype)
        std = math.sqrt(2 * (a if noise_at == "cur" else b) * h) if noise == "sqrt" else h
        x = x + drift * h * a * sc + std * z  # drift: 2 h sigma_i score
    return x


def check_samplers(euler_ode: Callable | None = None, heun_ode: Callable | None = None,
                   euler_maruyama: Callable | None = None) -> None:
    """Exercises 2-4: each sampler given is compared with the reference update of the practical.

    - ``euler_ode(score, x, sigmas)``: N score calls, equal to the reference Euler steps, first
      order on a Gaussian whose ODE solution is known;
    - ``heun_ode(score, x, sigmas)``: 2N - 1 calls (no correction on the last step to 0),
      equal to EDM's Algorithm 1, second order;
    - ``euler_maruyama(score, x, sigmas, generator)``: N calls, equal to the reference with the
      same generator, reproducible, and with the right spread on a Gaussian.
    """
    mix = test_mixture()
    x0 = 20.0 * torch.randn(128, 2, generator=seeding.generator(1),
                            dtype=torch.float64)
    sigmas = diffusion.edm_sigmas(12, 0.002, 20.0)
    n = len(sigmas) - 1
    if euler_ode is not None:
        count = _Counter(mix.score)
        out = _tensor(euler_ode(count, x0.clone(), sigmas), tuple(x0.shape), "euler_ode")
        _require(count.calls == n, f"euler_ode called the score {count.calls} times for "
                 f"{n} steps: Euler makes exactly one call per step")
        _require(count.at_zero == 0, "euler_ode called the score at sigma = 0: the slope of "
                 "a step is taken at its start, sigma_i > 0")
        want = diffusion.euler_sample(_denoiser(mix.score), x0.clone(), sigmas)
        if not _close(out, want, 1e-8):
            spread = float(out.std() / want.std())
            _require(spread < 5.0, f"euler_ode's samples are {spread:.0f} times too spread "
                     "out: the ODE's slope is dx/dsigma = -sigma * score(x, sigma), and the "
                     "step sigma_{i+1} - sigma_i is negative")
            raise AssertionError("euler_ode differs from x <- x + (sigma_{i+1} - sigma_i) * "
                                 "(-sigma_i * score(x, sigma_i)) by up to "
                                 f"{float((out - want).abs().max()):.3g}: check the slope "
                                 "(-sigma * score) and the step (sigma_{i+1} - sigma_i < 0)")
        order = _ode_order(euler_ode)
        _require(0.7 < order < 1.4, f"euler_ode's observed order is {order:.2f}, not about 1")
        _ok(f"euler_ode: one call per step, the reference update, order {order:.2f}")
    if heun_ode is not None:
        count = _Counter(mix.score)
        out = _tensor(heun_ode(count, x0.clone(), sigmas), tuple(x0.shape), "heun_ode")
        euler = diffusion.euler_sample(_denoiser(mix.score), x0.clone(), sigmas)
        _require(not _close(out, euler, 1e-8), "heun_ode gives the same result as Euler: the "
                 "correction step (average of the slopes at both ends) is missing")
        _require(count.at_zero == 0, "heun_ode evaluated the score at sigma = 0: skip the "
                 "correction on the last step (to sigma = 0), where the slope is 0/0")
        _require(count.calls == 2 * n - 1, f"heun_ode called the score {count.calls} times for "
                 f"{n} steps: Heun makes 2 calls per step except the last (2N - 1)")
        want = diffusion.heun_sample(_denoiser(mix.score), x0.clone(), sigmas)
        _require(_close(out, want, 1e-8), "heun_ode differs from Heun's method by up to "
                 f"{float((out - want).abs().max()):.3g}: the corrected step is x_i + "
                 "(sigma_{i+1} - sigma_i) (d_i + d'_{i+1}) / 2, with d' the slope at the Euler "
                 "point x' and at sigma_{i+1}")
        order = _ode_order(heun_ode)
        _require(1.6 < order < 2.6, f"heun_ode's observed order is {order:.2f}, not about 2")
        _ok(f"heun_ode: 2N - 1 calls, EDM's Algorithm 1, order {order:.2f}")
    if euler_maruyama is not None:
        count = _Counter(mix.score)
        out = _tensor(euler_maruyama(count, x0.clone(), sigmas,
                                     seeding.generator(5)),
                      tuple(x0.shape), "euler_maruyama")
        _require(count.calls == n, f"euler_maruyama called the score {count.calls} times for "
                 f"{n} steps: one call per step")
        _require(count.at_zero == 0, "euler_maruyama called the score at sigma = 0: the drift "
                 "of a step uses the score at its start, sigma_i > 0")
        again = euler_maruyama(mix.score, x0.clone(), sigmas, seeding.generator(5))
        _require(_close(out, again, 0.0), "euler_maruyama is not reproducible with the same "
                 "generator: draw the noise with torch.randn(..., generator=generator)")
        other = euler_maruyama(mix.score, x0.clone(), sigmas, seeding.generator(6))
        _require(not _close(out, other, 1e-6), "euler_maruyama gives the same samples for two "
                 "different generators: it adds no noise, or not from the generator")
        want = diffusion.euler_maruyama(_denoiser(mix.score), x0.clone(), sigmas,
                                        generator=seeding.generator(5))
        if not _close(out, want, 1e-8):
            for kw, hint in (
                (dict(noise_at="next"), "the noise is scaled with sigma_{i+1}: its standard "
                 "deviation is sqrt(2 sigma_i h), at the START of the step"),
                (dict(noise="h"), "the noise's standard deviation is sqrt(2 sigma_i h), not "
                 "proportional to h: Brownian increments grow like the square root of the step"),
                (dict(drift=1.0), "the drift is the probability-flow ODE's (h sigma_i score): "
                 "the reverse SDE's drift is twice that, 2 h sigma_i score"),
                (dict(last_noise=True), "the last step (to sigma = 0) adds noise: make it the "
                 "noise-free x + sigma_{N-1}^2 score (Tweedie's denoiser)"),
                (dict(float32=True), "the noise is drawn in float32: pass dtype=x.dtype to "
                 "torch.randn so that the draws match float64 ones from the same generator"),
            ):
                ref = _em_variant(mix.score, x0.clone(), sigmas,
                                  seeding.generator(5), **kw)
                if _close(out, ref, 1e-8):
                    raise AssertionError(f"euler_maruyama: {hint}")
            # The spread on a Gaussian tells a wrong drift or noise scale from a wrong order.
            s2 = 0.25
            xg = 10.0 * torch.randn(4000, 2, generator=seeding.generator(2),
                                    dtype=torch.float64)
            sg = diffusion.edm_sigmas(200, 0.002, 10.0)
            var = float(euler_maruyama(_gaussian_score(s2), xg, sg,
                                       seeding.generator(4)).var())
            _require(abs(var / s2 - 1) < 0.15, f"euler_maruyama's samples of N(0, {s2} I) have "
                     f"variance {var:.3f}: the drift must be 2 h sigma_i score (twice the "
                     "ODE's) and the noise sqrt(2 sigma_i h) z, with h = sigma_i - sigma_{i+1}")
            raise AssertionError("euler_maruyama differs from the reference update by up to "
                                 f"{float((out - want).abs().max()):.3g}: draw one "
                                 "torch.randn(x.shape, generator=generator, dtype=x.dtype) per "
                                 "step, in order, and make the last step (to sigma = 0) the "
                                 "noise-free x + sigma^2 score")
        _ok("euler_maruyama: one call per step, the reference update, reproducible")


# ----------------------------------------------------------------------------------------------
# Exercise 5: a distance with a known floor; exercise 6: observed orders
# ----------------------------------------------------------------------------------------------


def reference_grid_tv(samples: torch.Tensor, log_prob: Callable, lim: float = 4.5,
                      bins: int = 60) -> float:
    """TV between the samples' histogram on a bins x bins grid of [-lim, lim]^2 and the exact
    cell probabilities (density at the cell centre times its area), the mass outside the grid
    counted as one more cell."""
    return _grid_tv_variant(samples, log_prob, lim, bins)


def _grid_tv_variant(samples: torch.Tensor, log_prob: Callable, lim: float = 4.5,
                     bins: int = 60, norm_inside: bool = False, outside: bool = True,
                     half: bool = True, area: bool = True, corner: bool = False,
                     transpose: bool = False) -> float:
    """The grid TV, optionally with one of the common mistakes (the defaults are right)."""
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


def check_grid_tv(grid_tv: Callable, log_prob: Callable, sample: Callable) -> None:
    """Exercise 5: ``grid_tv(samples, log_prob)`` against the reference, and its floor.

    ``sample(n, seed)`` draws n exact samples of the mixture (the floor's data).
    """
    x = sample(4000, 11)
    # The same samples spread out by 1.8: a fifth of them then leave the grid.
    for pts, what in ((x, "exact samples"), (1.8 * x, "samples partly outside the grid")):
        got = float(grid_tv(pts, log_prob))
        want = reference_grid_tv(pts, log_prob)
        if abs(got - want) < 1e-6 + 1e-3 * want:
            continue
        for kw, hint in _TV_MISTAKES:
            wrong = _grid_tv_variant(pts, log_prob, **kw)
            if abs(got - wrong) < 1e-6 + 1e-3 * wrong:
                raise AssertionError(f"grid_tv gives {got:.4f} for {what}, the reference "
                                     f"{want:.4f}: {hint}")
        _require(0.0 <= got <= 1.0, f"grid_tv returned {got:.4g} for {what}: a total "
                 "variation lies in [0, 1]")
        raise AssertionError(f"grid_tv gives {got:.4f} for {what}, the reference {want:.4f}: "
                             "the histogram must be normalised by the number of ALL samples "
                             "(not of those inside the grid), the cell probability is the "
                             "density at the cell centre x cell area, and TV = 1/2 sum "
                             "|q - p| including the mass outside the grid as one more cell")
    got, want = float(grid_tv(x, log_prob)), reference_grid_tv(x, log_prob)
    far = x + 3.0
    _require(float(grid_tv(far, log_prob)) > got + 0.3,
             "grid_tv barely changes when the samples are shifted by 3: it is not comparing "
             "the samples with the exact density")
    _ok(f"grid_tv: equals the reference ({want:.4f} for 4000 exact samples)")


def check_orders(euler_order: float, heun_order: float) -> None:
    """Exercise 6: the measured orders of convergence of the ODE samplers."""
    _require(euler_order is not None and heun_order is not None,
             "no orders measured yet: do exercise 6 first (it needs exercises 2 and 3)")
    _require(0.7 < float(euler_order) < 1.4, f"an observed order {float(euler_order):.2f} for "
             "Euler: expected about 1. Measure the error against an accurate solution from "
             "the same starting noise (not against data), at several step counts, and fit "
             "the slope of log(error) against log(NFE) with a minus sign")
    _require(1.5 < float(heun_order) < 2.8, f"an observed order {float(heun_order):.2f} for "
             "Heun: expected about 2. Use NFE = 2N - 1 for Heun, the same starting noise, and "
             "step counts where the error is well above the reference solution's own error")
    _ok(f"observed orders: Euler {float(euler_order):.2f}, Heun {float(heun_order):.2f}")


# ----------------------------------------------------------------------------------------------
# Exercise 7: a score that is wrong at some noise levels
# ----------------------------------------------------------------------------------------------


def check_perturbed_score(perturbed_score: Callable, score: Score) -> None:
    """Exercise 7: ``perturbed_score(score, factor, sigma_lo, sigma_hi)`` returns a score that is
    ``factor * score`` for ``sigma_lo <= sigma <= sigma_hi`` and the exact score elsewhere."""
    x = _points(16, seed=7)
    f = perturbed_score(score, 1.5, 0.5, 2.0)
    _require(callable(f), "perturbed_score should return a function f(x, sigma)")
    cases = ((0.1, 1.0), (0.5, 1.5), (1.0, 1.5), (2.0, 1.5), (3.0, 1.0))
    first = {}
    for sigma, factor in cases:
        arg = x.clone()
        got = _tensor(f(arg, sigma), tuple(x.shape), f"the perturbed score at sigma = {sigma}")
        _require(torch.equal(arg, x), f"the perturbed score changed its input x in place at "
                 f"sigma = {sigma}: compute a new tensor (factor * score(x, sigma))")
        want = factor * score(x, sigma)
        if not _close(got, want, 1e-10):
            fresh = perturbed_score(score, 1.5, 0.5, 2.0)(x.clone(), sigma)
            _require(not _close(fresh, want, 1e-10), f"the perturbed score at sigma = {sigma} "
                     "is right on a fresh function but wrong after the calls made before it: "
                     "the returned function must not change factor, sigma_lo, sigma_hi or "
                     "anything else it closes over (no nonlocal assignment)")
        _require(_close(got, want, 1e-10), f"at sigma = {sigma} the perturbed score should be "
                 f"{factor} x the exact score (the window is sigma_lo <= sigma <= sigma_hi, "
                 "both ends included; outside it the score is exact)")
        first[sigma] = got.clone()
    # The same calls in the opposite order must give the same values: a function that changes
    # a variable of its enclosing scope (nonlocal, a list, an attribute) fails here.
    for sigma, _ in reversed(cases):
        _require(_close(f(x.clone(), sigma), first[sigma], 1e-12),
                 f"the perturbed score at sigma = {sigma} depends on the calls made before "
                 "it: the returned function must not change factor, sigma_lo, sigma_hi or "
                 "anything else it closes over")
    g = perturbed_score(score, 0.5, 0.5, 2.0)
    _require(_close(g(x.clone(), 1.0), 0.5 * score(x, 1.0), 1e-10)
             and _close(f(x.clone(), 1.0), first[1.0], 1e-12),
             "two perturbed scores share their state: each call of perturbed_score must "
             "return an independent function (no module-level variables)")
    _ok("perturbed_score: scaled inside the window, exact outside")


# ----------------------------------------------------------------------------------------------
# Exercise 8: the probability-flow ODE's likelihood
# ----------------------------------------------------------------------------------------------


def check_divergence(divergence: Callable) -> None:
    """Exercise 8a: ``divergence(f, x) -> (n,)``, the exact trace of the Jacobian of f at x."""
    a = torch.tensor([[1.5, -0.4], [0.7, -2.0]], dtype=torch.float64)
    x = _points(10, seed=2)
    got = _tensor(divergence(lambda y: y @ a.T + torch.sin(y), x.clone()), (10,), "divergence")
    want = a.trace() + torch.cos(x).sum(dim=1)  # tr(A) + sum_j cos(x_j)
    again = divergence(lambda y: y @ a.T + torch.sin(y), x.clone())
    _require(_close(got, again, 1e-12), "divergence gives different values on two calls with "
             "the same input: a random estimate (Hutchinson's v^T J v) is unbiased but noisy; "
             "the likelihood needs the exact trace: in 2-D take one gradient per coordinate")
    _require(not _close(got, (a.sum() + torch.cos(x).sum(dim=1)), 1e-9),
             "divergence sums every entry of the Jacobian: keep only the diagonal, "
             "d f_j / d x_j")
    _require(_close(got, want, 1e-9), "divergence differs from the trace of the Jacobian by up "
             f"to {float((got - want).abs().max()):.3g}: for each coordinate j, take the "
             "gradient of f(x)[:, j].sum() with respect to x and keep its column j")
    _ok("divergence: the exact trace of the Jacobian")


def check_log_likelihood(log_likelihood: Callable, log_prob: Callable, score: Score) -> None:
    """Exercise 8b: ``log_likelihood(score, x, sigma_min, sigma_max, n_steps) -> (n,)`` is
    log p_sigma_min(x) to a few hundredths of a nat (compared with the exact log-density)."""
    x = _points(40, seed=4, scale=1.5)
    got = _tensor(log_likelihood(score, x.clone(), 0.01, 40.0, 200), (40,), "log_likelihood")
    want = log_prob(x, 0.01)
    err = (got - want).abs()
    prior_gap = math.log(40.0**2) - 0.0  # what forgetting the prior's variance costs in 2-D
    if float((got - want - prior_gap).abs().mean()) < 0.1 or \
       float((got - want + prior_gap).abs().mean()) < 0.1:
        raise AssertionError("log_likelihood is off by about log(sigma_max^2): the prior at "
                             "sigma_max is N(0, sigma_max^2 I), not N(0, I)")
    if float((got - want - prior_gap / 2).abs().mean()) < 0.1 or \
       float((got - want + prior_gap / 2).abs().mean()) < 0.1:
        raise AssertionError("log_likelihood is off by about log(sigma_max): the prior's "
                             "normalisation in d = 2 dimensions is -d log(sigma_max) - "
                             "(d / 2) log(2 pi)")
    _require(float(err.mean()) < 0.05, f"log_likelihood is off by {float(err.mean()):.3f} nats "
             "on average: log p_sigma_min(x) = log N(x(sigma_max); 0, sigma_max^2 I) + the "
             "integral from sigma_min to sigma_max of div f(x(sigma), sigma), f = -sigma "
             "score, along the ODE solution started at x at sigma_min and integrated UP to "
             "sigma_max: check the direction, the sign of the integral and the step grid")
    _ok(f"log_likelihood: within {float(err.max()):.3f} nats of the exact log-density")
