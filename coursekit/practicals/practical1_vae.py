"""Check cells of Practical 1 (Building and training a VAE): test a student's code, say what to fix.

Each ``check_*`` function runs a student's function or class on inputs whose
answer is known (a closed form, a quadrature, a reference library, a
gradient that must flow, a recording probe) and raises an ``AssertionError``
whose message names the likely cause; it returns quietly (with a short
``OK`` line printed) when everything holds. The failures are raised
explicitly, not with ``assert`` statements, so that they also fire under
``python -O``. Every check is written against a list of plausible wrong
implementations (``tests/test_practical1_vae.py``) and fails for each.

A check run before its exercise says which exercise to do first: the stubs
of the handout raise ``NotImplementedError("Exercise N: ...")``, which the
checks let through unchanged, and a name that is not defined yet (a cell not
run) becomes an ``AssertionError`` saying which cell to run.

Randomness: the checks never reseed a global generator behind the caller's
back. Where a student's code draws from torch's global generator (it calls
``torch.randn_like``), the check runs it inside :func:`_seeded`, which saves
the global state, seeds it, and restores it on exit, so the caller's stream
is the same before and after the check and the check's verdict does not
depend on it. The checks' own draws use local ``torch.Generator`` objects.

Practical 1 uses, in order: :func:`check_encoder` (exercise 1),
:func:`check_decoder` (2), :func:`check_reparameterize` (3),
:func:`check_kl_1d` and :func:`check_gaussian_kl` (4), :func:`check_elbo`
(5), :func:`check_train_vae` and :func:`check_training` (6),
:func:`check_reconstruct` (7), :func:`check_samples` (8),
:func:`check_latent_grid` (9), :func:`check_mc_kl` (10),
:func:`check_log_px_grid` and :func:`check_iwae` (11),
:func:`check_cb_log_norm` (12), :func:`check_active_units` (13),
:func:`check_conditional_samples` (14, optional).

The conventions checked are those of the practical (and of :mod:`coursekit.vae`):
images ``(n, 1, 8, 8)`` in ``[0, 1]``; an encoder returns ``(mu, logvar)``,
each ``(n, latent_dim)``; a decoder returns *logits* ``(n, 1, 8, 8)``;
``log p(x | z)`` is minus the binary cross-entropy summed over the 64 pixels.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit import seeding
from coursekit.practicals.checks import ok as _ok
from coursekit.practicals.checks import require as _require
from coursekit.practicals.checks import require_done, student
from coursekit.validation import as_generator, as_tensor

IMAGE_SHAPE = (1, 8, 8)


def _is_tensor(x: Any, name: str) -> None:
    _require(isinstance(x, Tensor), f"{name} should be a torch.Tensor, got {type(x).__name__}")


@contextlib.contextmanager
def _counting_optimizers() -> Iterator[list[int]]:
    """Count the torch optimizers (Adam, SGD, ...) created inside the block.

    Every torch optimizer calls ``torch.optim.Optimizer.__init__``; it is wrapped for the
    duration of the block and restored afterwards, even on error.
    """
    count = [0]
    original = torch.optim.Optimizer.__init__

    def counting(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        count[0] += 1
        original(self, *args, **kwargs)

    torch.optim.Optimizer.__init__ = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        torch.optim.Optimizer.__init__ = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global generator seeded, then restore the caller's state.

    The student's code draws its noise from the global generator
    (``torch.randn_like``); seeding it makes the check deterministic, and
    ``fork_rng`` puts the caller's state back afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        seeding.manual_seed(seed)
        yield


def _keeps_global_rng(check: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a check so that torch's global generator is the same before and after it.

    The student's modules draw their initial weights and noise from it; the check's own
    layers too (``nn.Linear`` initialises itself at random before we overwrite it).
    """
    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            return check(*args, **kwargs)

    return wrapper


def _call(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """Call the student's ``fn`` through the shared wrapper (not-done, NameError, torch hints).

    Practical 1's stubs name their exercise in their ``NotImplementedError``; the wrapper
    quotes it.
    """
    return student(fn, what, f"the exercise that writes `{what}`")(*args, **kwargs)


def _fake_images(n: int, seed: int = 0) -> Tensor:
    """(n, 1, 8, 8) random images in [0, 1]: the checks need no data set."""
    g = seeding.generator(seed)
    return torch.rand(n, *IMAGE_SHAPE, generator=g)


def _all_parameters_get_gradients(module: nn.Module, name: str) -> None:
    params = list(module.named_parameters())
    _require(params, (
        f"{name} has no parameters: create its layers in __init__ and store them as attributes "
        "(self.net = nn.Sequential(...)); layers kept in a plain Python list are invisible "
        "to the optimizer (use nn.ModuleList)"
    ))
    missing = [p_name for p_name, p in params if p.grad is None]
    _require(not missing, (
        f"{name}: no gradient reached the parameters {missing}. Are these layers used in "
        "forward? Did you call .detach(), .item(), .numpy() or torch.no_grad() on the way?"
    ))


def _standard_normal_ks(e: Tensor) -> float:
    """p-value of the Kolmogorov-Smirnov test of the flat sample ``e`` against N(0, 1) (scipy)."""
    from scipy import stats

    return float(stats.kstest(e.detach().double().flatten().numpy(), "norm").pvalue)


# ---------------------------------------------------------------------------------------------
# Exercise 1 and 2: encoder and decoder
# ---------------------------------------------------------------------------------------------


@_keeps_global_rng
def check_encoder(encoder_cls: Callable[..., nn.Module], latent_dims: Sequence[int] = (2, 3)) -> None:
    """Check an encoder class: ``encoder_cls(latent_dim)(x) -> (mu, logvar)``.

    Verifies, for each ``latent_dim`` in ``latent_dims``: the output is a pair
    of (n, latent_dim) finite tensors; ``mu`` depends on the input; each
    example is encoded independently of the rest of the batch; a gradient
    reaches every parameter.
    """
    x = _fake_images(6)
    for d in latent_dims:
        with _seeded(0):
            encoder = _call(encoder_cls, d, what=f"Encoder({d})")
        _require(isinstance(encoder, nn.Module), (
            f"Encoder({d}) should be a torch.nn.Module (class Encoder(nn.Module), "
            "with super().__init__() first in __init__)"
        ))
        try:
            out = encoder(x)
        except RuntimeError as err:
            raise AssertionError(
                f"Encoder({d}) failed on images of shape {tuple(x.shape)}: {err}\n"
                "Hint: flatten the (n, 1, 8, 8) images to (n, 64) first (x.flatten(1) or "
                "nn.Flatten())."
            ) from err
        _require(isinstance(out, tuple | list) and len(out) == 2, (
            f"Encoder({d}) should return a pair (mu, logvar), got {type(out).__name__}"
            + (f" of length {len(out)}" if isinstance(out, tuple | list) else "")
        ))
        mu, logvar = out
        _is_tensor(mu, "mu")
        _is_tensor(logvar, "logvar")
        for name, t in (("mu", mu), ("logvar", logvar)):
            _require(tuple(t.shape) == (6, d), (
                f"Encoder({d}): {name} has shape {tuple(t.shape)}, expected (6, {d}) for a "
                f"batch of 6 images; is latent_dim used (not a hard-coded number)?"
            ))
            _require(torch.isfinite(t).all(), f"Encoder({d}): {name} contains NaN or inf")
        _require((mu[0] - mu[1]).abs().max() > 1e-6, (
            f"Encoder({d}): two different images get the same mu: is the input used?"
        ))
        _require(not torch.allclose(mu, logvar), (
            "mu and logvar are identical: use two output layers (or split one output of size "
            "2 * latent_dim in two halves with .chunk(2, dim=-1))"
        ))
        encoder.eval()
        with torch.no_grad():
            alone = encoder(x[:1])[0]
            batch = encoder(x)[0][:1]
        _require(torch.allclose(alone, batch, atol=1e-5), (
            f"Encoder({d}): encoding an image alone gives a different mu than inside a batch; "
            "each image should be encoded on its own (no mixing across the batch dimension)"
        ))
        encoder.train()
        mu, logvar = encoder(x)
        (mu.sum() + logvar.sum()).backward()
        _all_parameters_get_gradients(encoder, f"Encoder({d})")
    _ok(f"encoder: outputs (n, latent_dim) pairs for latent_dim in {tuple(latent_dims)}, "
        "gradients reach every parameter")


@_keeps_global_rng
def check_decoder(decoder_cls: Callable[..., nn.Module], latent_dims: Sequence[int] = (2, 3)) -> None:
    """Check a decoder class: ``decoder_cls(latent_dim)(z) -> logits`` of shape (n, 1, 8, 8).

    Verifies the shape, that the outputs are unbounded logits (not
    probabilities), that they depend on ``z``, and that a gradient reaches
    every parameter and ``z`` itself.
    """
    for d in latent_dims:
        with _seeded(0):
            decoder = _call(decoder_cls, d, what=f"Decoder({d})")
        _require(isinstance(decoder, nn.Module), f"Decoder({d}) should be a torch.nn.Module")
        z = torch.randn(6, d, generator=seeding.generator(1), requires_grad=True)
        try:
            logits = decoder(z)
        except RuntimeError as err:
            raise AssertionError(
                f"Decoder({d}) failed on latent codes of shape {tuple(z.shape)}: {err}\n"
                f"Hint: the first layer takes latent_dim = {d} inputs."
            ) from err
        _is_tensor(logits, "the decoder's output")
        _require(tuple(logits.shape) == (6, *IMAGE_SHAPE), (
            f"Decoder({d}) returned shape {tuple(logits.shape)}, expected (6, 1, 8, 8); "
            "reshape the 64 outputs with .view(-1, 1, 8, 8) (or nn.Unflatten(1, (1, 8, 8)))"
        ))
        _require(torch.isfinite(logits).all(), f"Decoder({d}): the output contains NaN or inf")
        _require(logits.min() < 0 or logits.max() > 1, (
            f"Decoder({d}): all outputs lie in [0, 1]: return logits (any real number), not "
            "probabilities; the loss applies the sigmoid itself (binary_cross_entropy_with_logits)"
        ))
        _require((logits[0] - logits[1]).abs().max() > 1e-6, (
            f"Decoder({d}): two different codes z give the same image: is z used?"
        ))
        logits.sum().backward()
        _all_parameters_get_gradients(decoder, f"Decoder({d})")
        _require(z.grad is not None and z.grad.abs().sum() > 0, (
            f"Decoder({d}): no gradient flows back to z; the encoder could not learn"
        ))
    _ok(f"decoder: logits of shape (n, 1, 8, 8) for latent_dim in {tuple(latent_dims)}, "
        "gradients reach every parameter and z")


# ---------------------------------------------------------------------------------------------
# Exercise 3: reparameterized sampling
# ---------------------------------------------------------------------------------------------


@_keeps_global_rng
def check_reparameterize(reparameterize: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``reparameterize(mu, logvar) -> z = mu + exp(logvar / 2) * eps``, eps ~ N(0, I).

    Verifies the shape; that the draws are random, fresh at every call, and
    independent across rows (no noise shared by the batch) and across
    coordinates; their mean and standard deviation on 100,000 draws (5-sigma
    bounds); that the standardised noise is Gaussian (Kolmogorov-Smirnov
    p-value > 1e-6: uniform noise with the right mean and variance fails); that a
    tiny variance returns ``mu``; and the exact gradients dz/dmu = 1 and
    dz/dlogvar = (z - mu) / 2, which hold only when the noise is outside the
    computation graph (the trick). Runs under :func:`_seeded` (deterministic,
    and the caller's global generator is left as it was).
    """
    n = 100_000
    mu0 = torch.tensor([1.0, -2.0])
    std0 = torch.tensor([2.0, 0.5])
    mu = mu0.expand(n, 2).clone()
    logvar = (2 * std0.log()).expand(n, 2).clone()
    with _seeded(0):
        z = _call(reparameterize, mu, logvar, what="reparameterize")
        _is_tensor(z, "z")
        _require(z.shape == mu.shape, (
            f"z has shape {tuple(z.shape)}, expected {tuple(mu.shape)} (the shape of mu): one "
            "draw per row"
        ))
        _require(torch.isfinite(z).all(), "z contains NaN or inf")
        z = z.detach()
        _require(z.std(0).min() > 0, (
            "z does not vary across the rows of the batch: every example must get its own "
            "noise; draw eps ~ N(0, I) with the shape of mu (torch.randn_like(std)), not one "
            "draw shared by the batch"
        ))
        std = z.std(0)
        # Sample std of n normal draws has relative standard error ~ 1/sqrt(2n).
        rel = (std / std0 - 1).abs()
        if not (rel < 5 / math.sqrt(2 * n)).all():
            hint = ""
            if torch.allclose(std, std0**2, rtol=0.02):
                hint = " It equals the variance exp(logvar): use std = exp(0.5 * logvar)."
            elif torch.allclose(std, torch.ones(2), rtol=0.02):
                hint = " It is 1: multiply the noise by std = exp(0.5 * logvar)."
            elif torch.allclose(std, 2 * std0.log().abs(), rtol=0.02):
                hint = " It equals |logvar|: use std = exp(0.5 * logvar)."
            elif torch.allclose(std, std0 / math.sqrt(12), rtol=0.02):
                hint = (" It is std / sqrt(12), the spread of uniform noise: torch.rand_like "
                        "draws from U(0, 1); use torch.randn_like (a standard normal).")
            raise AssertionError(
                f"the standard deviation of z is {std.tolist()}, expected {std0.tolist()} "
                f"(mu = {mu0.tolist()}, logvar = {(2 * std0.log()).tolist()}).{hint}"
            )
        mean_err = (z.mean(0) - mu0).abs()
        if not (mean_err < 5 * std0 / math.sqrt(n)).all():
            hint = ""
            if torch.allclose(z.mean(0) - mu0, 0.5 * std0, rtol=0.02):
                hint = (" The offset is std / 2, the mean of uniform noise: use torch.randn_like "
                        "(mean 0), not torch.rand_like.")
            raise AssertionError(
                f"the mean of z is {z.mean(0).tolist()}, expected mu = {mu0.tolist()}: "
                f"z = mu + std * eps with eps ~ N(0, I).{hint}"
            )
        eps = (z - mu0) / std0
        corr = torch.corrcoef(eps.T)[0, 1].item()
        _require(abs(corr) < 5 / math.sqrt(n), (
            f"the two coordinates of z are correlated ({corr:.3f}): they share one noise "
            "value; draw eps with the full shape of mu (torch.randn_like(std))"
        ))
        p = _standard_normal_ks(eps)
        _require(p > 1e-6, (
            f"the noise (z - mu) / std is not standard normal (Kolmogorov-Smirnov p-value "
            f"{p:.1e}): draw eps with torch.randn_like, not torch.rand_like (uniform) or "
            "another distribution"
        ))
        first = _call(reparameterize, mu[:5], logvar[:5], what="reparameterize")
        second = _call(reparameterize, mu[:5], logvar[:5], what="reparameterize")
        _require(not torch.equal(first, second),
                 "two calls return the same z: draw fresh noise at every call")
        tiny = _call(reparameterize, mu[:5], torch.full_like(mu[:5], -40.0), what="reparameterize")
        _require(torch.allclose(tiny, mu[:5], atol=1e-6), (
            "with logvar = -40 (std ~ 2e-9) z should equal mu"
        ))
        # Gradients: the trick makes z a differentiable function of (mu, logvar).
        m = mu[:1000].clone().requires_grad_(True)
        lv = logvar[:1000].clone().requires_grad_(True)
        z = _call(reparameterize, m, lv, what="reparameterize")
    _require(z.requires_grad, (
        "z carries no gradient: torch.normal(mu, std) and sampling from "
        "torch.distributions.Normal(...).sample() cut the graph. Write z = mu + std * eps "
        "with eps = torch.randn_like(std)"
    ))
    z.sum().backward()
    _require(m.grad is not None and torch.allclose(m.grad, torch.ones_like(m)), (
        "dz/dmu should be exactly 1: write z = mu + std * eps with eps = torch.randn_like(std) "
        "(torch.normal(mu, std) and Normal(...).sample() do not pass the gradient along)"
    ))
    _require(lv.grad is not None and torch.allclose(lv.grad, 0.5 * (z - m).detach(), atol=1e-5), (
        "dz/dlogvar should be 0.5 * std * eps = (z - mu) / 2: is std = exp(0.5 * logvar), not "
        "detached, and is eps drawn without gradient (torch.randn_like)?"
    ))
    _ok("reparameterize: fresh Gaussian noise per example and coordinate, mean and std within "
        "5 sigma on 1e5 draws, exact gradients in mu and logvar")


# ---------------------------------------------------------------------------------------------
# Exercise 4: the KL term (pen and paper, then code)
# ---------------------------------------------------------------------------------------------


def _kl_1d_quad(m: float, s: float) -> float:
    """KL(N(m, s^2) || N(0, 1)) by numerical integration of q log(q / p) (scipy.integrate.quad)."""
    from scipy import integrate, stats

    q = stats.norm(m, s)

    def integrand(t: float) -> float:
        return q.pdf(t) * (q.logpdf(t) - stats.norm.logpdf(t))

    value, _ = integrate.quad(integrand, m - 12 * s, m + 12 * s, epsabs=1e-11, epsrel=1e-11,
                              limit=200)
    return value


@_keeps_global_rng
def check_kl_1d(kl_1d: Callable[[float, float], Any]) -> None:
    """Check the pen-and-paper result ``kl_1d(m, s) = KL(N(m, s^2) || N(0, 1))`` (s: a std).

    Compared with a numerical integration of ``q log(q / p)`` (scipy) at a few
    (m, s), to 1e-6.
    """
    cases = [(0.0, 1.0), (1.0, 1.0), (0.0, 0.5), (-1.5, 2.0), (0.7, 0.3)]
    for m, s in cases:
        got = _call(kl_1d, m, s, what="kl_1d")
        try:
            got = float(got)
        except (TypeError, ValueError) as err:
            raise AssertionError(f"kl_1d({m}, {s}) should return a number, got {got!r}") from err
        want = _kl_1d_quad(m, s)
        if not abs(got - want) < 1e-6:
            hint = ""
            if abs(got - 2 * want) < 1e-6:
                hint = " (twice the answer: the factor 1/2 is missing)"
            elif (m, s) == (0.0, 0.5) and abs(got - (0.5 * (0.5 + 0 - 1) - math.log(0.5))) < 1e-6:
                hint = " (s enters squared: s^2 in the variance term, log s^2 = 2 log s)"
            raise AssertionError(
                f"kl_1d(m={m}, s={s}) = {got:.6f}, but integrating q log(q/p) gives "
                f"{want:.6f}{hint}. Write log q - log p for the two Gaussian densities and "
                "take the expectation under q: E[t] = m, E[t^2] = m^2 + s^2."
            )
    _ok("kl_1d: the derived closed form matches numerical integration (scipy) to 1e-6")


def reference_gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, by ``torch.distributions``: (n, d) -> (n,)."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(-1)


@_keeps_global_rng
def check_gaussian_kl(gaussian_kl: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``gaussian_kl(mu, logvar) -> (n,)`` against ``torch.distributions.kl_divergence``.

    Verifies the per-example shape, the known values KL = 0 at the prior and
    KL = d / 2 for mu = 1, logvar = 0 in d dimensions, agreement with the
    reference to 1e-5 on random inputs (with hints for a missing 1/2, a mean
    over the latent dimensions, a wrong sign), and that a gradient flows.
    """
    g = seeding.generator(0)
    mu = torch.randn(7, 3, generator=g)
    logvar = torch.randn(7, 3, generator=g)
    kl = _call(gaussian_kl, mu, logvar, what="gaussian_kl")
    _is_tensor(kl, "the KL")
    if kl.shape == (7, 3):
        raise AssertionError("the KL has shape (n, d) = (7, 3): sum over the latent dimension "
                             "(.sum(-1)) to get one value per example")
    _require(kl.shape == (7,), (
        f"the KL has shape {tuple(kl.shape)}, expected (7,) (one value per example): do not "
        "average or sum over the batch here"
    ))
    zero = gaussian_kl(torch.zeros(4, 3), torch.zeros(4, 3))
    _require(torch.allclose(zero, torch.zeros(4), atol=1e-6), (
        f"KL(N(0, I) || N(0, I)) should be 0, got {zero.tolist()}"
    ))
    ref = reference_gaussian_kl(mu, logvar)
    if not torch.allclose(kl, ref, rtol=1e-5, atol=1e-6):
        hint = ""
        if torch.allclose(kl, 2 * ref, rtol=1e-4):
            hint = " Yours is twice the reference: the factor 1/2 is missing."
        elif torch.allclose(kl, ref / 3, rtol=1e-4):
            hint = (" Yours is the reference divided by d = 3: you averaged over the latent "
                    "dimensions; sum them (.sum(-1)).")
        elif (kl < 0).any():
            hint = " A KL divergence is never negative: check the signs of the terms."
        raise AssertionError(
            f"gaussian_kl disagrees with torch.distributions.kl_divergence: max difference "
            f"{(kl - ref).abs().max().item():.3g}. Closed form: "
            f"0.5 * sum_j (exp(logvar_j) + mu_j^2 - 1 - logvar_j).{hint}"
        )
    m = mu.clone().requires_grad_(True)
    lv = logvar.clone().requires_grad_(True)
    gaussian_kl(m, lv).sum().backward()
    _require(m.grad is not None and lv.grad is not None, "no gradient flows through the KL")
    _require(torch.allclose(m.grad, mu, atol=1e-5), "dKL/dmu should equal mu")
    _ok("gaussian_kl: per-example shape, KL = 0 at the prior, matches torch.distributions to 1e-5")


# ---------------------------------------------------------------------------------------------
# Exercise 5: the ELBO
# ---------------------------------------------------------------------------------------------


class _PinnedEncoder(nn.Module):
    """A fixed test encoder with a *substantial* posterior variance.

    mu = A x + a and logvar = B x + b with fixed weights (a local generator): the
    log-variances sit near linspace(-1.2, 0.7, d), so the standard deviations
    are about 0.55 to 1.4 and a code that decodes mu instead of a draw of z, or
    draws z with the wrong spread, gives a measurably different ELBO.
    """

    def __init__(self, latent_dim: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = seeding.generator(seed)
        self.mu = nn.Linear(64, latent_dim)
        self.logvar = nn.Linear(64, latent_dim)
        with torch.no_grad():
            self.mu.weight.copy_(0.15 * torch.randn(latent_dim, 64, generator=g))
            # centred on x = 0.5 (the middle of the fake images)
            self.mu.bias.copy_(0.3 * torch.randn(latent_dim, generator=g)
                               - 0.5 * self.mu.weight.sum(1))
            self.logvar.weight.copy_(0.02 * torch.randn(latent_dim, 64, generator=g))
            self.logvar.bias.copy_(torch.linspace(-1.2, 0.7, latent_dim)
                                   - 0.5 * self.logvar.weight.sum(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)
        return self.mu(h), self.logvar(h)


class _PinnedDecoder(nn.Module):
    """A fixed test decoder: logits = W z + b, with strongly z-dependent logits (scale)."""

    def __init__(self, latent_dim: int = 2, seed: int = 1, scale: float = 1.5) -> None:
        super().__init__()
        g = seeding.generator(seed)
        self.lin = nn.Linear(latent_dim, 64)
        with torch.no_grad():
            self.lin.weight.copy_(scale * torch.randn(64, latent_dim, generator=g))
            self.lin.bias.copy_(0.5 * torch.randn(64, generator=g))

    def forward(self, z: Tensor) -> Tensor:
        return self.lin(z).unflatten(-1, IMAGE_SHAPE)


def _log_px_given_z(decoder: _PinnedDecoder, x: Tensor, z: Tensor) -> Tensor:
    """log p(x | z) for every (image, code) pair: x (n, 1, 8, 8), z (n, G, d) -> (n, G), float64."""
    w = decoder.lin.weight.detach().double()  # (64, d)
    b = decoder.lin.bias.detach().double()  # (64,)
    logits = z.double() @ w.T + b  # (n, G, 64)
    xf = x.double().flatten(1)[:, None, :]  # (n, 1, 64)
    # Bernoulli on grey levels: x * l - softplus(l), summed over the pixels.
    return (xf * logits - F.softplus(logits)).sum(-1)


def _gauss_hermite(mu: Tensor, logvar: Tensor, n_nodes: int = 40) -> tuple[Tensor, Tensor]:
    """Nodes z (n, G, d) and weights (G,) with sum_g w_g f(z_g) = E_{N(mu, diag e^logvar)}[f]."""
    t, w = np.polynomial.hermite.hermgauss(n_nodes)
    t, w = torch.from_numpy(t), torch.from_numpy(w / math.sqrt(math.pi))
    d = mu.shape[1]
    grid = torch.cartesian_prod(*[t] * d).view(-1, d)  # (G, d)
    weights = torch.cartesian_prod(*[w] * d).view(-1, d).prod(1)  # (G,)
    std = torch.exp(0.5 * logvar.double())
    z = mu.double()[:, None, :] + math.sqrt(2) * std[:, None, :] * grid  # (n, G, d)
    return z, weights


def _reconstruction_moments(
    decoder: _PinnedDecoder, x: Tensor, mu: Tensor, logvar: Tensor
) -> tuple[Tensor, Tensor]:
    """E_q[log p(x|z)] and its standard deviation under q, per image (Gauss-Hermite, exact)."""
    z, w = _gauss_hermite(mu, logvar)
    f = _log_px_given_z(decoder, x, z)  # (n, G)
    mean = f @ w
    var = (f - mean[:, None]).pow(2) @ w
    return mean, var.clamp_min(0).sqrt()


def _elbo_hint(r_mean: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, dec: _PinnedDecoder,
               ref_mean: Tensor, tol: Tensor) -> str:
    """Name the likely cause when the reconstruction term has the wrong expectation."""
    def near(target: Tensor) -> bool:
        return bool(((r_mean - target).abs() < tol).all())

    if near(ref_mean / 64):
        return ("it is the right value divided by 64: sum the binary cross-entropy over the "
                "64 pixels (.sum(dim=(1, 2, 3))), do not average it")
    at_mu = _log_px_given_z(dec, x, mu[:, None, :])[:, 0]
    if near(at_mu):
        return ("it equals log p(x | mu): you decode the encoder's mean instead of a draw "
                "z = reparameterize(mu, logvar)")
    prior, _ = _reconstruction_moments(dec, x, torch.zeros_like(mu), torch.zeros_like(logvar))
    if near(prior):
        return ("it matches z drawn from the prior N(0, I): draw z from the encoder's "
                "q(z|x) = N(mu, diag(exp(logvar))), z = mu + exp(0.5 * logvar) * eps")
    wide, _ = _reconstruction_moments(dec, x, mu, 2 * logvar)
    if near(wide):
        return ("it matches a std of exp(logvar) (the variance): use std = "
                "exp(0.5 * logvar)")
    return ("z must be a draw from q(z|x) = N(mu, diag(exp(logvar))) via reparameterize, "
            "decoded, and log p(x|z) = -binary_cross_entropy_with_logits(logits, x, "
            "reduction='none') summed over the 64 pixels")


@_keeps_global_rng
def check_elbo(
    elbo: Callable[..., Tensor],
    encoder_cls: Callable[..., nn.Module],
    decoder_cls: Callable[..., nn.Module],
    n_draws: int = 2000,
) -> None:
    """Check ``elbo(x, encoder, decoder, beta=1.0) -> (n,)``, the single-sample ELBO per image.

    With a fixed encoder whose posterior has a substantial variance (standard
    deviations 0.55 to 1.4) and a fixed linear decoder:

    1. the shape is (n,), and the same torch seed gives the same values;
    2. the KL part: with the same noise, ``elbo(beta) - elbo(0) = -beta * KL``
       (closed form, torch.distributions), for beta in {1, 0.5};
    3. the reconstruction part (beta = 0), on ``n_draws`` copies of each image in
       one call: the copies must differ (a fresh z per example), their mean must
       match ``E_q[log p(x|z)]`` computed exactly by Gauss-Hermite quadrature
       (5 standard errors), and their spread the exact standard deviation
       (within 15 %; the sample sd of 2000 draws is within about 3 % at 1 sigma);
       decoding ``mu`` instead of a draw, drawing from the prior, or using
       the wrong std all fail here;
    4. with beta = 0 a gradient reaches logvar and mu through the draw;
    5. with the student's own Encoder/Decoder the ELBO is <= 0 and gradients
       reach every parameter.
    """
    d, n = 2, 6
    x = _fake_images(n, seed=1)
    enc, dec = _PinnedEncoder(d), _PinnedDecoder(d)
    with torch.no_grad():
        mu, logvar = enc(x)
    kl_ref = reference_gaussian_kl(mu, logvar)
    with _seeded(0):
        out1 = _call(elbo, x, enc, dec, beta=1.0, what="elbo")
    _is_tensor(out1, "the ELBO")
    _require(out1.shape == (n,), (
        f"elbo returned shape {tuple(out1.shape)}, expected ({n},) for {n} images: return one "
        "value per example (the training loop takes the mean)"
    ))
    out1 = out1.detach()
    with _seeded(0):
        again = elbo(x, enc, dec, beta=1.0).detach()
        # ... and the same noise again for beta = 0 and 0.5.
    with _seeded(0):
        out0 = elbo(x, enc, dec, beta=0.0).detach()
    with _seeded(0):
        out_half = elbo(x, enc, dec, beta=0.5).detach()
    _require(torch.allclose(out1, again), (
        "elbo gives different values under the same torch.manual_seed: draw the noise with "
        "torch.randn_like (through reparameterize), from torch's generator"
    ))
    _require((out0 <= 1e-4).all(), (
        f"with beta = 0 your elbo is positive ({out0.max().item():.2f}), but log p(x|z) <= 0: "
        "you returned the loss (minus the ELBO); return the ELBO itself"
    ))
    diff = out1 - out0  # the noise is the same: this is -KL exactly
    if torch.allclose(diff, torch.zeros_like(diff), atol=1e-5):
        raise AssertionError("the result does not depend on beta: multiply the KL term by beta "
                             "(ELBO = log p(x|z) - beta * KL)")
    if not torch.allclose(diff, -kl_ref, atol=1e-3, rtol=1e-4):
        if torch.allclose(diff, kl_ref, atol=1e-3, rtol=1e-4):
            hint = "the KL is added: subtract it, ELBO = log p(x|z) - beta * KL"
        elif torch.allclose(diff, -2 * kl_ref, atol=1e-3, rtol=1e-4):
            hint = "the KL is counted twice"
        elif torch.allclose(diff, -kl_ref / d, atol=1e-3, rtol=1e-4):
            hint = "the KL is averaged over the latent dimensions: sum them"
        elif torch.allclose(diff, -kl_ref.mean().expand(n), atol=1e-3, rtol=1e-4):
            hint = "the KL is averaged over the batch: keep one KL per example"
        else:
            hint = "use the closed form gaussian_kl(mu, logvar) of exercise 4"
        raise AssertionError(
            "the KL term is off: with the same noise, elbo(beta=1) - elbo(beta=0) should be "
            f"-KL = {(-kl_ref).tolist()}, got {diff.tolist()}: {hint}"
        )
    _require(torch.allclose(out_half - out0, -0.5 * kl_ref, atol=1e-3, rtol=1e-4), (
        "elbo(beta=0.5) - elbo(beta=0) should be -0.5 * KL: multiply the KL term by beta"
    ))

    # 3. The reconstruction term: many copies of each image, one call.
    xr = x.repeat_interleave(n_draws, 0)  # (n * n_draws, 1, 8, 8)
    with _seeded(1), torch.no_grad():
        r = elbo(xr, enc, dec, beta=0.0).detach().double().view(n, n_draws)
    ref_mean, ref_sd = _reconstruction_moments(dec, x, mu, logvar)
    r_mean, r_sd = r.mean(1), r.std(1)
    if (r_sd < 1e-6).all():
        at_mu = _log_px_given_z(dec, x, mu[:, None, :])[:, 0]
        if torch.allclose(r[:, 0], at_mu, atol=1e-3, rtol=1e-5):
            raise AssertionError(
                "your ELBO is deterministic and equals log p(x | mu) - beta * KL: you decode the "
                "encoder's mean mu instead of a sampled z. Draw z = reparameterize(mu, logvar) "
                "and decode z (with this encoder's std of 0.5 to 1.4 the difference is "
                f"{(ref_mean - at_mu).abs().max().item():.1f} nats)"
            )
        raise AssertionError(
            f"{n_draws} copies of the same image all get the same ELBO: draw a fresh eps for "
            "every example (torch.randn_like(std) has the shape of mu), not one per batch"
        )
    tol = 5 * ref_sd / math.sqrt(n_draws) + 1e-3
    if not ((r_mean - ref_mean).abs() < tol).all():
        raise AssertionError(
            f"with beta = 0, the average of your ELBO over {n_draws} draws is "
            f"{r_mean[0].item():.2f} for the first test image, but E_q[log p(x|z)] is "
            f"{ref_mean[0].item():.2f} (exact, by quadrature; 5 standard errors = "
            f"{tol[0].item():.2f}): {_elbo_hint(r_mean, x, mu, logvar, dec, ref_mean, tol)}"
        )
    ratio = r_sd / ref_sd
    _require(((ratio > 0.85) & (ratio < 1.15)).all(), (
        f"the spread of your single-sample estimate is {r_sd[0].item():.2f} for the first test "
        f"image, expected {ref_sd[0].item():.2f} (exact): draw one z per image, "
        "z = mu + exp(0.5 * logvar) * eps with eps ~ N(0, I)"
    ))

    # 4. The gradient reaches mu and logvar through the draw (beta = 0: no KL path).
    enc_g = _PinnedEncoder(d)
    with _seeded(2):
        elbo(x, enc_g, dec, beta=0.0).mean().backward()
    g_lv, g_mu = enc_g.logvar.bias.grad, enc_g.mu.bias.grad
    _require(g_lv is not None and g_lv.abs().max() > 1e-6, (
        "with beta = 0 no gradient reaches logvar: the reconstruction term must use the drawn "
        "z = mu + std * eps (not mu, not std.detach(), not torch.normal, which cuts the graph)"
    ))
    _require(g_mu is not None and g_mu.abs().max() > 1e-6, (
        "no gradient reaches mu through the reconstruction term: z = mu + std * eps keeps "
        "z differentiable (torch.normal(mu, std) and Normal(...).sample() do not)"
    ))

    # 5. The student's own networks.
    with _seeded(3):
        enc_s, dec_s = encoder_cls(d), decoder_cls(d)
        out = elbo(x, enc_s, dec_s)
    _require((out <= 1e-6).all(), "the ELBO should be <= 0 here (log p(x|z) <= 0 and KL >= 0)")
    (-out.mean()).backward()
    _all_parameters_get_gradients(enc_s, "your Encoder (through elbo)")
    _all_parameters_get_gradients(dec_s, "your Decoder (through elbo)")
    _ok(f"elbo: KL part exact for beta in {{0.5, 1}}; over {n_draws} draws per image the "
        "reconstruction term has the exact mean and spread of E_q[log p(x|z)]; gradients "
        "reach mu, logvar, the encoder and the decoder")


# ---------------------------------------------------------------------------------------------
# Exercise 6: training
# ---------------------------------------------------------------------------------------------


class _RecordingEncoder(nn.Module):
    """Wraps an encoder and records which training images it is shown (id stored in pixel 0)."""

    def __init__(self, inner: nn.Module, n_data: int) -> None:
        super().__init__()
        self.inner = inner
        self.n_data = n_data
        self.seen: list[Tensor] = []
        self.batch_sizes: list[int] = []

    def forward(self, x: Tensor) -> Any:
        ids = (x.detach().flatten(1)[:, 0] * (self.n_data - 1)).round().long()
        self.seen.append(ids)
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner(x)


def _id_images(n: int, seed: int = 5) -> Tensor:
    """(n, 1, 8, 8) fake images whose first pixel i / (n - 1) identifies image i."""
    x = _fake_images(n, seed=seed)
    x[:, 0, 0, 0] = torch.arange(n) / (n - 1)
    return x


@_keeps_global_rng
def check_train_vae(
    train_vae: Callable[..., Sequence[float]],
    encoder_cls: Callable[..., nn.Module],
    decoder_cls: Callable[..., nn.Module],
    n_data: int = 400, n_steps: int = 12, batch_size: int = 32,
) -> None:
    """Check the mechanics of ``train_vae(encoder, decoder, data, n_steps, batch_size=, lr=, seed=)``.

    A short run on ``n_data`` fake images whose first pixel identifies them,
    with the encoder wrapped in a recorder and hooks on every parameter:

    - one loss per step, finite and positive (the loss is minus the ELBO);
    - every step sees a mini-batch of ``batch_size`` images, and the run sees a
      good part of the data (12 random batches of 32 out of 400 cover about 63 %
      of it; one batch reused covers 8 %: the threshold is 35 %);
    - the batches come from the ``seed`` (the same seed gives the same batches
      even when torch's global generator differs);
    - every gradient step starts from fresh gradients (``zero_grad``): after each
      ``backward`` a parameter's ``.grad`` equals the gradient just computed,
      not a sum with the previous steps' (checked by a tensor hook and a
      post-accumulate-grad hook);
    - every parameter of the encoder and of the decoder changes (the optimizer
      holds both and ``step`` is called);
    - ``beta`` reaches the ELBO (with beta = 1000 the first loss is larger);
    - the optimizer is created once, not at every step (optimizer constructions are
      counted: a new Adam at every step forgets its moment estimates, so every step is a
      first step of size ~lr, which the losses alone do not reveal in a short run).
    """
    data = _id_images(n_data)
    fresh: dict[str, Tensor] = {}
    stale: list[str] = []
    n_optimizers: list[int] = []

    def run(global_seed: int, beta: float = 1.0,
            ) -> tuple[_RecordingEncoder, nn.Module, Any, dict[str, Tensor]]:
        with _seeded(global_seed):
            enc = _RecordingEncoder(_call(encoder_cls, 2, what="Encoder"), n_data)
            dec = _call(decoder_cls, 2, what="Decoder")
            before = {f"enc.{k}": v.detach().clone() for k, v in enc.named_parameters()}
            before |= {f"dec.{k}": v.detach().clone() for k, v in dec.named_parameters()}
            named = [(f"enc.{k}", v) for k, v in enc.named_parameters()]
            named += [(f"dec.{k}", v) for k, v in dec.named_parameters()]
            handles = []
            for name, p in named:
                handles.append(p.register_hook(
                    lambda g, name=name: fresh.__setitem__(name, g.detach().clone())))

                def after(p: Tensor, name: str = name) -> None:
                    if p.grad is not None and name in fresh and not torch.allclose(
                            p.grad, fresh[name], rtol=1e-4, atol=1e-7):
                        stale.append(name)

                handles.append(p.register_post_accumulate_grad_hook(after))
            try:
                with _counting_optimizers() as count:
                    history = _call(train_vae, enc, dec, data, n_steps, batch_size=batch_size,
                                    lr=1e-3, beta=beta, seed=0, what="train_vae")
                n_optimizers.append(count[0])
            finally:
                for h in handles:
                    h.remove()
        return enc, dec, history, before

    enc, dec, history, before = run(0)
    require_done("Exercise 6 (return the history from train_vae)", history=history)
    try:
        h = np.asarray([float(v) for v in history])
    except (TypeError, ValueError) as err:
        raise AssertionError(
            "train_vae should return a list of floats, one loss per step: append loss.item()"
        ) from err
    _require(len(h) == n_steps, (
        f"train_vae returned {len(h)} losses for n_steps = {n_steps}: append loss.item() "
        "once per step"
    ))
    _require(np.isfinite(h).all(), "the recorded loss is NaN or inf")
    _require((h > 0).all(), (
        f"the recorded losses are negative (first: {h[0]:.2f}): the loss is MINUS the mean "
        "ELBO, loss = -elbo(...).mean(), which is positive; minimising the ELBO itself "
        "trains the model to be worse"
    ))
    _require(enc.batch_sizes and all(b == batch_size for b in enc.batch_sizes), (
        f"each step should encode one mini-batch of batch_size = {batch_size} images, the "
        f"encoder saw batches of sizes {sorted(set(enc.batch_sizes))}"
    ))
    seen = torch.cat(enc.seen).unique().numel()
    _require(seen >= 0.35 * n_data, (
        f"in {n_steps} steps of {batch_size} images your training saw only {seen} of the "
        f"{n_data} images ({seen / n_data:.0%}; random batches would cover about 63 %): draw "
        "new random indices at every step, inside the loop: idx = torch.randint(0, n, "
        "(batch_size,), generator=generator), then data[idx]"
    ))
    params = {f"enc.{k}": v for k, v in enc.named_parameters()}
    params |= {f"dec.{k}": v for k, v in dec.named_parameters()}
    frozen = [k for k, v in params.items() if torch.equal(v.detach(), before[k])]
    _require(not frozen, (
        f"these parameters never changed during training: {frozen[:4]}. Give the optimizer "
        "the parameters of BOTH the encoder and the decoder, and call optimizer.step() after "
        "loss.backward()"
    ))
    _require(not stale, (
        "the gradients accumulate across steps (parameters whose .grad was the sum of this "
        f"step's gradient and older ones: {sorted(set(stale))[:3]}...): call "
        "optimizer.zero_grad() at every step, before loss.backward()"
    ))
    # One optimizer for both networks, or one each, is fine; one per step is the bug.
    _require(n_optimizers[0] < n_steps, (
        f"train_vae created {n_optimizers[0]} optimizers in {n_steps} steps: create the "
        "optimizer once, before the loop. A new Adam at every step forgets its running "
        "averages of the gradients, so every step is a first step"
    ))
    enc2, _, _, _ = run(1)  # another global seed: the batches must come from `seed` alone
    same = len(enc2.seen) == len(enc.seen) and all(
        torch.equal(a, b) for a, b in zip(enc.seen, enc2.seen, strict=True))
    _require(same, (
        "two runs with the same seed drew different mini-batches: draw the indices with "
        "torch.randint(..., generator=generator) (the generator made from seed)"
    ))
    _, _, heavy, _ = run(0, beta=1000.0)  # same batches and noise, a huge KL weight
    _require(float(heavy[0]) > float(h[0]) + 1.0, (
        f"with beta = 1000 the first loss ({float(heavy[0]):.2f}) is the same as with beta = 1 "
        f"({h[0]:.2f}): train_vae ignores beta; pass it on, elbo(..., beta=beta)"
    ))
    _ok(f"train_vae: {n_steps} positive losses, mini-batches of {batch_size} covering "
        f"{seen / n_data:.0%} of the data, reproducible from the seed, fresh gradients at "
        "every step, every parameter updated, one optimizer for the whole run")


@_keeps_global_rng
def check_training(history: Sequence[float] | None, n_steps: int, baseline: float) -> None:
    """Check a training history: one finite loss per step, decreasing, ending below ``baseline``.

    Args:
        history: the loss (negative ELBO, averaged over the batch) at each step.
        n_steps: the number of steps asked for.
        baseline: ``coursekit.baselines.independent_pixels_nll`` of the training set.
    """
    require_done("Exercise 6 (train_vae)", history=history)
    h = np.asarray(history, dtype=float)
    _require(h.ndim == 1 and len(h) == n_steps, (
        f"the history should hold one loss per step ({n_steps}), got shape {h.shape}: append "
        "loss.item() once per step"
    ))
    _require(np.isfinite(h).all(), "the loss became NaN or inf: lower the learning rate?")
    k = max(1, n_steps // 10)
    first, last = h[:k].mean(), h[-k:].mean()
    _require(last < first, (
        f"the loss did not decrease (first 10 %: {first:.2f}, last 10 %: {last:.2f}): do you call "
        "optimizer.zero_grad(), loss.backward() and optimizer.step() at every step, and minimise "
        "MINUS the ELBO?"
    ))
    _require(last < baseline, (
        f"after training the loss {last:.2f} is not below {baseline:.2f}, the loss of a model "
        "that ignores z (independent pixels): train longer, or check the ELBO"
    ))
    _ok(f"training: loss went from {first:.2f} to {last:.2f} (independent pixels: {baseline:.2f})")


# ---------------------------------------------------------------------------------------------
# Exercises 7-9: reconstructions, samples, latent space
# ---------------------------------------------------------------------------------------------


def _check_images(images: Any, n: int, what: str) -> Tensor:
    _is_tensor(images, what)
    _require(tuple(images.shape) == (n, *IMAGE_SHAPE), (
        f"{what} have shape {tuple(images.shape)}, expected ({n}, 1, 8, 8)"
    ))
    _require(torch.isfinite(images).all(), f"{what} contain NaN or inf")
    _require(images.min() >= 0 and images.max() <= 1, (
        f"{what} should be probabilities in [0, 1]: apply torch.sigmoid to the decoder's logits"
    ))
    return images


@_keeps_global_rng
def check_reconstruct(
    reconstruct: Callable[..., Tensor], encoder: nn.Module, decoder: nn.Module, x: Tensor,
    max_ratio: float = 0.7,
) -> Tensor:
    """Check ``reconstruct(x, encoder, decoder)``: the decoded posterior mean, as probabilities.

    Verifies shape and range, that no gradient is kept, that two calls agree
    (no sampling), that it equals ``sigmoid(decoder(mu))``, and that its squared
    error is at most ``max_ratio`` times the error of the mean image (the best
    reconstruction that ignores the input). Returns the reconstructions.
    """
    x = as_tensor(x, "x", like=encoder, ndim=4, detach=True)
    with _seeded(0):
        recon = _call(reconstruct, x, encoder, decoder, what="reconstruct")
    with _seeded(1):
        again = reconstruct(x, encoder, decoder)
    _check_images(recon, x.shape[0], "the reconstructions")
    _require(not recon.requires_grad, "wrap the reconstruction in torch.no_grad() (no training here)")
    _require(torch.equal(recon, again), (
        "two calls give different reconstructions: decode the posterior mean mu, do not sample z"
    ))
    with torch.no_grad():
        want = torch.sigmoid(decoder(encoder(x)[0]))
    _require(torch.allclose(recon, want, atol=1e-5), (
        "the reconstructions should be torch.sigmoid(decoder(mu)) with mu the encoder's mean"
    ))
    err = (recon - x).pow(2).mean().item()
    base = (x.mean(0, keepdim=True) - x).pow(2).mean().item()
    _require(err <= max_ratio * base, (
        f"the reconstructions' squared error {err:.4f} is not below {max_ratio} x {base:.4f}, "
        "the error of predicting the mean image: is the model trained?"
    ))
    _ok(f"reconstructions: deterministic, sigmoid(decoder(mu)), squared error {err:.4f} vs "
        f"{base:.4f} for the mean image")
    return recon


@functools.lru_cache(maxsize=1)
def digit_classifier():
    """A 5-nearest-neighbour classifier of the 8x8 training digits (scikit-learn), fitted once.

    About 98 % accurate on the test digits, and instant to fit (a logistic regression is as
    accurate but takes seconds on a loaded CPU).
    """
    from sklearn.neighbors import KNeighborsClassifier

    from coursekit.data import load_digits

    x, y = load_digits("train")
    return KNeighborsClassifier(n_neighbors=5).fit(x.flatten(1).numpy(), y.numpy())


class _ProbeDecoder(nn.Module):
    """A fixed linear decoder that records the codes it is given."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        g = seeding.generator(7)
        self.lin = nn.Linear(latent_dim, 64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(64, latent_dim, generator=g))
        self.codes: list[Tensor] = []

    def forward(self, z: Tensor) -> Tensor:
        self.codes.append(z.detach().clone())
        return self.lin(z).unflatten(-1, IMAGE_SHAPE)


def _check_prior_draws(sample: Callable[..., Tensor], latent_dim: int, n: int = 20_000) -> None:
    """The codes that ``sample`` decodes must be n i.i.d. N(0, I) draws (5-sigma bounds, KS)."""
    probe = _ProbeDecoder(latent_dim)
    with _seeded(0):
        images = _call(sample, probe, n, latent_dim, generator=seeding.generator(0),
                       what="sample")
    _check_images(images, n, "the samples")
    _require(probe.codes, "sample never calls the decoder: decode z ~ N(0, I)")
    z = torch.cat(probe.codes)
    _require(tuple(z.shape) == (n, latent_dim), (
        f"sample decoded codes of shape {tuple(z.shape)}, expected ({n}, {latent_dim}): "
        "z = torch.randn(n, latent_dim, generator=generator)"
    ))
    std, mean = z.std(0), z.mean(0)
    if not ((std - 1).abs() < 5 / math.sqrt(2 * n)).all():
        hint = ""
        if ((std - 1 / math.sqrt(12)).abs() < 0.01).all():
            hint = " (uniform noise: torch.rand draws from U(0, 1); use torch.randn)"
        raise AssertionError(
            f"the codes you decode have standard deviation {[round(s, 3) for s in std.tolist()]}"
            f", but the prior is N(0, I) (std 1): wrong prior scale{hint}; draw "
            "z = torch.randn(n, latent_dim, generator=generator) without rescaling"
        )
    _require((mean.abs() < 5 / math.sqrt(n)).all(), (
        f"the codes you decode have mean {[round(m, 3) for m in mean.tolist()]}, but the prior "
        "N(0, I) has mean 0: z = torch.randn(n, latent_dim, generator=generator)"
    ))
    p = _standard_normal_ks(z)
    _require(p > 1e-6, (
        f"the codes are not standard normal (Kolmogorov-Smirnov p-value {p:.1e}): use "
        "torch.randn, not torch.rand or another distribution"
    ))
    if latent_dim > 1:
        corr = torch.corrcoef(z.T) - torch.eye(latent_dim)
        _require(corr.abs().max() < 5 / math.sqrt(n), (
            "the coordinates of the codes are correlated: draw all n x latent_dim numbers "
            "independently (torch.randn(n, latent_dim, ...))"
        ))
    with torch.no_grad():
        want = torch.sigmoid(probe.lin(z)).unflatten(-1, IMAGE_SHAPE)
    _require(torch.allclose(images, want, atol=1e-5), (
        "the samples should be the pixel probabilities torch.sigmoid(decoder(z)) of the "
        "decoded codes"
    ))


@_keeps_global_rng
def check_samples(
    sample: Callable[..., Tensor], decoder: nn.Module, latent_dim: int,
    n: int = 500, min_classes: int = 8, min_share: float = 0.02,
) -> Tensor:
    """Check ``sample(decoder, n, latent_dim, generator=None) -> (n, 1, 8, 8)`` images.

    Verifies, with a probe decoder that records its input, that the decoded
    codes are i.i.d. N(0, I) (mean, std within 5 sigma on 20,000 draws, KS test,
    no correlation: a wrong prior scale fails) and that the output is
    ``sigmoid(decoder(z))``; that a generator makes draws reproducible and
    different seeds give different draws; and *coverage*: a digit classifier
    trained on the data must find at least ``min_classes`` of the 10 digits in
    the trained model's samples, each in at least ``min_share`` of ``n``
    samples. Returns the samples.
    """
    _check_prior_draws(sample, max(latent_dim, 2))
    with _seeded(0):
        s1 = _call(sample, decoder, n, latent_dim, generator=seeding.generator(0),
                   what="sample")
    _check_images(s1, n, "the samples")
    with _seeded(1):
        s2 = sample(decoder, n, latent_dim, generator=seeding.generator(0))
        s3 = sample(decoder, n, latent_dim, generator=seeding.generator(1))
    _require(torch.equal(s1, s2), (
        "two calls with the same seeded generator give different samples: pass the "
        "generator to torch.randn(..., generator=generator)"
    ))
    _require(not torch.equal(s1, s3), "different seeds give identical samples: draw z at random")
    pred = digit_classifier().predict(s1.flatten(1).numpy())
    counts = np.bincount(pred, minlength=10)
    covered = int((counts >= min_share * n).sum())
    _require(covered >= min_classes, (
        f"a digit classifier recognises only {covered} digit classes in your samples "
        f"(counts {counts.tolist()}); expected at least {min_classes}: is the model trained?"
    ))
    _ok(f"samples: codes are N(0, I) draws, reproducible with a generator; {covered}/10 digit "
        f"classes each in >= {min_share:.0%} of {n} samples")
    return s1


@_keeps_global_rng
def check_latent_grid(
    latent_grid: Callable[..., Tensor], decoder: nn.Module, n: int = 5, lim: float = 2.0
) -> None:
    """Check ``latent_grid(decoder, n, lim) -> (n * n, 1, 8, 8)``, decoded 2-D grid of codes.

    Row ``r`` (top to bottom) has ``z_2`` from ``+lim`` down to ``-lim``,
    column ``c`` has ``z_1`` from ``-lim`` to ``+lim`` (as in a scatter plot):
    image ``r * n + c`` must equal ``sigmoid(decoder([z_1[c], z_2[r]]))``.
    """
    grid = _call(latent_grid, decoder, n, lim, what="latent_grid")
    _check_images(grid, n * n, "the grid images")
    ticks = torch.linspace(-lim, lim, n)
    with torch.no_grad():
        for r, c in ((0, 0), (0, n - 1), (n - 1, 0), (n // 2, n // 3)):
            z = torch.tensor([[ticks[c].item(), -ticks[r].item()]])
            want = torch.sigmoid(decoder(z))[0]
            _require(torch.allclose(grid[r * n + c], want, atol=1e-5), (
                f"image {r * n + c} (row {r}, column {c}) should decode z = "
                f"({ticks[c].item():.2f}, {-ticks[r].item():.2f}): z_1 grows left to right, "
                "z_2 decreases top to bottom (torch.linspace(-lim, lim, n))"
            ))
    _ok(f"latent grid: {n} x {n} images, each the decoded code at its grid position")


# ---------------------------------------------------------------------------------------------
# Exercise 10: Monte Carlo vs closed-form KL
# ---------------------------------------------------------------------------------------------


def mc_kl_variance(mu: Tensor, logvar: Tensor) -> Tensor:
    """Exact variance of the one-sample estimate log q(z) - log p(z), z ~ q, per example: (n,).

    Per coordinate, with z = mu + s e: log q - log p = -log s + mu^2 / 2 + mu s e
    + (s^2 - 1) e^2 / 2, whose variance is mu^2 s^2 + (s^2 - 1)^2 / 2 (Var e^2 = 2,
    Cov(e, e^2) = 0); the coordinates are independent, so the variances add.
    """
    s2 = logvar.exp()
    return (mu.pow(2) * s2 + 0.5 * (s2 - 1).pow(2)).sum(-1)


@_keeps_global_rng
def check_mc_kl(mc_kl: Callable[..., Tensor], n: int = 20_000) -> None:
    """Check ``mc_kl(mu, logvar, k, generator=None) -> (n,)``: the k-sample Monte Carlo KL.

    The estimate is the average over k draws z ~ q of log q(z) - log p(z). On n
    identical rows: its mean must match the closed-form KL (5 standard errors)
    and its variance the exact variance :func:`mc_kl_variance` / k (within
    10 %, about 5 standard errors of a sample variance at n = 20,000), for
    k = 1 and 10; the generator must make it reproducible.
    """
    mu0 = torch.tensor([[1.0, -0.5]])
    lv0 = torch.tensor([[-1.0, 0.6]])
    mu, logvar = mu0.expand(n, 2).clone(), lv0.expand(n, 2).clone()
    kl = reference_gaussian_kl(mu0, lv0).item()
    var1 = mc_kl_variance(mu0, lv0).item()
    with _seeded(0):
        est = _call(mc_kl, mu, logvar, 1, generator=seeding.generator(0),
                    what="mc_kl")
    _is_tensor(est, "the Monte Carlo KL")
    _require(tuple(est.shape) == (n,), (
        f"mc_kl returned shape {tuple(est.shape)}, expected ({n},): one estimate per example, "
        "summed over the latent dimensions and averaged over the k draws"
    ))
    with _seeded(1):
        again = mc_kl(mu, logvar, 1, generator=seeding.generator(0))
    _require(torch.equal(est, again), (
        "the same seeded generator gives different estimates: draw eps with "
        "torch.randn(..., generator=generator)"
    ))
    for k in (1, 10):
        with _seeded(2):
            e = mc_kl(mu, logvar, k, generator=seeding.generator(k)).detach().double()
        m, v = e.mean().item(), e.var().item()
        se = math.sqrt(var1 / k / n)
        if abs(m - kl) > 5 * se:
            hint = ""
            if abs(m + kl) < 5 * se:
                hint = " It is minus the KL: the estimate is log q(z) - log p(z), not the reverse."
            raise AssertionError(
                f"with k = {k} the average of your estimates is {m:.4f}, but the KL is "
                f"{kl:.4f} (5 standard errors: {5 * se:.4f}): average log q(z|x) - log p(z) "
                "over z ~ q (both log-densities with their constants, summed over the "
                f"coordinates).{hint}"
            )
        _require(abs(v / (var1 / k) - 1) < 0.1, (
            f"with k = {k} the variance of your estimate is {v:.4f}, expected "
            f"{var1 / k:.4f} (exact): draw k independent z per example and average the k "
            "values of log q - log p (the variance falls as 1/k)"
        ))
    _ok(f"mc_kl: unbiased and with the exact variance {var1:.3f} / k for k in (1, 10), "
        "reproducible with a generator")


# ---------------------------------------------------------------------------------------------
# Exercise 11: the IWAE bound against the exact log p(x) (2-D latent)
# ---------------------------------------------------------------------------------------------


def _log_px_gauss_hermite(decoder: _PinnedDecoder, x: Tensor, n_nodes: int = 80) -> Tensor:
    """log p(x) = log E_{p(z)}[p(x|z)] by Gauss-Hermite under the prior (float64): (n,)."""
    d = decoder.lin.in_features
    z, w = _gauss_hermite(torch.zeros(x.shape[0], d), torch.zeros(x.shape[0], d), n_nodes)
    return torch.logsumexp(_log_px_given_z(decoder, x, z) + w.log(), dim=1)


def _log_px_midpoint(decoder: _PinnedDecoder, x: Tensor, n_grid: int = 300,
                     limit: float = 6.0) -> Tensor:
    """log p(x) by the midpoint rule on [-limit, limit]^2 (float64): (n,)."""
    t = torch.linspace(-limit, limit, n_grid + 1, dtype=torch.float64)
    t = (t[1:] + t[:-1]) / 2
    z = torch.cartesian_prod(t, t)  # (G, 2)
    log_prior = -0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)  # (G,)
    out = []
    for i in range(x.shape[0]):
        lp = _log_px_given_z(decoder, x[i:i + 1], z[None])[0]  # (G,)
        out.append(torch.logsumexp(lp + log_prior, 0) + 2 * math.log(t[1] - t[0]))
    return torch.stack(out)


def _log_px_same_grid(decoder: _PinnedDecoder, x: Tensor, n_grid: int, limit: float) -> Tensor:
    """The exercise's own rule (grid of ``torch.linspace(-limit, limit, n_grid)`` in both axes,
    cell area step^2) in float64: the reference for a decoder so sharp that any two quadrature
    rules differ by more than the tolerance, where only the summation in logs is checked."""
    t = torch.linspace(-limit, limit, n_grid, dtype=torch.float64)
    z = torch.cartesian_prod(t, t)  # (G, 2)
    log_prior = -0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)  # (G,)
    lp = _log_px_given_z(decoder, x, z[None].expand(x.shape[0], -1, -1))  # (n, G)
    return torch.logsumexp(lp + log_prior, 1) + 2 * math.log(t[1] - t[0])


@_keeps_global_rng
def check_log_px_grid(log_px_grid: Callable[..., Tensor]) -> None:
    """Check ``log_px_grid(x, decoder, n_grid=200, limit=5.0) -> (n,)``: exact log p(x), 2-D latent.

    Compared, for a fixed linear decoder, with Gauss-Hermite quadrature under
    the prior (a different rule, 80 x 80 nodes) to 1e-3 nats; and for a decoder
    that ignores z, log p(x) = log p(x | z) (up to the prior mass outside the box).
    """
    x = _fake_images(4, seed=3)
    dec = _PinnedDecoder(2, scale=0.7)
    with torch.no_grad():
        got = _call(log_px_grid, x, dec, n_grid=200, limit=5.0, what="log_px_grid")
    _is_tensor(got, "log p(x)")
    _require(tuple(got.shape) == (4,), f"log_px_grid returned shape {tuple(got.shape)}, expected (4,)")
    _require(torch.isfinite(got).all(), (
        "log p(x) is -inf or NaN: exp(log p(x|z)) underflows; sum the grid with "
        "torch.logsumexp over log p(x|z) + log p(z) + log(cell area)"
    ))
    want = _log_px_gauss_hermite(dec, x)
    diff = (got.double() - want)
    if not (diff.abs() < 1e-3).all():
        step = 10.0 / 199
        hint = ""
        if torch.allclose(diff, torch.full_like(diff, -2 * math.log(step)), atol=1e-2):
            hint = " The difference is -2 log(step): multiply by the cell area (add 2 log(step))."
        elif torch.allclose(diff, torch.full_like(diff, math.log(200**2)), atol=1e-2):
            hint = (" The difference is log(n_grid^2): you averaged over the grid instead of "
                    "integrating against the prior density.")
        raise AssertionError(
            f"log_px_grid differs from Gauss-Hermite quadrature by up to {diff.abs().max():.3g} "
            "nats: log p(x) = logsumexp_g [log p(x|z_g) + log N(z_g; 0, I)] + log(cell area), "
            f"with z_g on the grid t = torch.linspace(-limit, limit, n_grid) in both axes.{hint}"
        )
    sharp = _PinnedDecoder(2, scale=0.7)
    with torch.no_grad():
        sharp.lin.bias.mul_(20)  # log p(x|z) ~ -300 nats: exp() underflows in float32
        got_sharp = log_px_grid(x, sharp, n_grid=200, limit=5.0)
    _require(torch.isfinite(got_sharp).all(), (
        "log p(x) is -inf or NaN for a decoder whose log p(x|z) is about -300 nats: exp() "
        "underflows; stay in logs and sum the grid with torch.logsumexp"
    ))
    want_sharp = _log_px_same_grid(sharp, x, n_grid=200, limit=5.0)
    _require(torch.allclose(got_sharp.double(), want_sharp, atol=1e-2), (
        "for a decoder whose log p(x|z) is about -300 nats log_px_grid is off: sum the grid "
        "with torch.logsumexp"
    ))
    flat = _PinnedDecoder(2)
    with torch.no_grad():
        flat.lin.weight.zero_()
        got_flat = log_px_grid(x, flat, n_grid=200, limit=5.0)
        want_flat = _log_px_given_z(flat, x, torch.zeros(4, 1, 2))[:, 0]
    _require(torch.allclose(got_flat.double(), want_flat, atol=1e-3), (
        "for a decoder that ignores z, log p(x) must equal log p(x | z): the prior density "
        "on the grid times the cell area should sum to 1"
    ))
    _ok("log_px_grid: matches Gauss-Hermite quadrature to 1e-3 nats")


@_keeps_global_rng
def check_iwae(iwae_bound: Callable[..., Tensor], n_rep: int = 1000) -> None:
    """Check ``iwae_bound(x, encoder, decoder, k, generator=None) -> (n,)``.

    IWAE_k = log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q i.i.d. With a fixed
    encoder (a poor posterior) and decoder, on ``n_rep`` repetitions of each of
    4 images: for k = 1 its mean equals the ELBO's (exact by quadrature, 5
    standard errors); for k = 50 it is higher than for k = 1 by more than 5
    standard errors, and its mean stays below the exact log p(x) (midpoint rule
    on a 300 x 300 grid) up to 5 standard errors. The generator makes it
    reproducible.
    """
    x = _fake_images(4, seed=2)
    enc, dec = _PinnedEncoder(2), _PinnedDecoder(2)
    with torch.no_grad():
        mu, logvar = enc(x)
    rec, _ = _reconstruction_moments(dec, x, mu, logvar)
    elbo_exact = rec - reference_gaussian_kl(mu, logvar).double()
    log_px = _log_px_midpoint(dec, x)
    with _seeded(0), torch.no_grad():
        one = _call(iwae_bound, x, enc, dec, 3, generator=seeding.generator(0),
                    what="iwae_bound")
        again = iwae_bound(x, enc, dec, 3, generator=seeding.generator(0))
    _is_tensor(one, "the IWAE bound")
    _require(tuple(one.shape) == (4,), f"iwae_bound returned shape {tuple(one.shape)}, expected (4,)")
    _require(torch.equal(one, again), (
        "the same seeded generator gives different values: draw eps with "
        "torch.randn(..., generator=generator)"
    ))
    xr = x.repeat(n_rep, 1, 1, 1)  # (n_rep * 4, 1, 8, 8)
    means, ses = {}, {}
    for k, reps in ((1, n_rep), (50, n_rep // 5)):
        with _seeded(1), torch.no_grad():
            v = iwae_bound(xr[: 4 * reps], enc, dec, k,
                           generator=seeding.generator(k)).double().view(reps, 4)
        means[k], ses[k] = v.mean(0), v.std(0) / math.sqrt(reps)
    if not ((means[1] - elbo_exact).abs() < 5 * ses[1] + 1e-3).all():
        raise AssertionError(
            f"with k = 1 the IWAE bound should be the ELBO on average: got "
            f"{means[1][0].item():.2f} for the first image, the exact ELBO is "
            f"{elbo_exact[0].item():.2f}. log w = log p(x|z) + log N(z; 0, I) - "
            "log N(z; mu, diag(exp(logvar))), with the Gaussians' constants"
        )
    gain = means[50] - means[1]
    if not (gain > 5 * (ses[1] + ses[50])).all():
        raise AssertionError(
            f"IWAE with k = 50 ({means[50][0].item():.2f}) is not above k = 1 "
            f"({means[1][0].item():.2f}): average the weights, not the log-weights, "
            "log (1/k) sum_i w_i = logsumexp(log w) - log k, with k independent draws"
        )
    over = means[50] - log_px
    if not (over < 5 * ses[50] + 1e-3).all():
        hint = ""
        if ((over - math.log(50)).abs() < 0.5).all():
            hint = " It is above by about log k: subtract log k after the logsumexp."
        raise AssertionError(
            f"IWAE with k = 50 ({means[50][0].item():.2f}) is above the exact log p(x) "
            f"({log_px[0].item():.2f}): it must be a lower bound.{hint}"
        )
    _ok(f"iwae_bound: ELBO at k = 1, higher at k = 50 by {gain.mean().item():.2f} nats on "
        "average, below the exact log p(x)")


# ---------------------------------------------------------------------------------------------
# Exercise 12: a properly normalised likelihood on grey levels
# ---------------------------------------------------------------------------------------------


@_keeps_global_rng
def check_cb_log_norm(cb_log_norm: Callable[[Tensor], Tensor]) -> None:
    """Check ``cb_log_norm(logits) -> log C(lambda)``, the continuous Bernoulli's log-normaliser.

    The density on [0, 1] is C(lambda) lambda^x (1 - lambda)^(1 - x), lambda = sigmoid(logit).
    Compared, elementwise and to 1e-4, with ``torch.distributions.ContinuousBernoulli``
    (its log_prob plus the binary cross-entropy), on logits from -15 to 15
    including 0 and values within 1e-3 of it, where the closed form is 0 / 0.
    """
    logits = torch.tensor([-15.0, -5.0, -1.0, -0.01, -1e-4, 0.0, 1e-4, 0.003, 0.5, 2.0, 15.0],
                          dtype=torch.float64)
    x = torch.full_like(logits, 0.3)
    want = (torch.distributions.ContinuousBernoulli(logits=logits).log_prob(x)
            + F.binary_cross_entropy_with_logits(logits, x, reduction="none"))
    got = _call(cb_log_norm, logits, what="cb_log_norm")
    _is_tensor(got, "log C")
    _require(got.shape == logits.shape, (
        f"cb_log_norm returned shape {tuple(got.shape)}, expected {tuple(logits.shape)} "
        "(one value per logit)"
    ))
    bad = ~torch.isfinite(got)
    _require(not bad.any(), (
        f"log C is NaN or inf at logits {logits[bad].tolist()}: at logit 0 (lambda = 1/2) the "
        "formula is 0/0, its limit is log 2; write C = logit / tanh(logit / 2) and use "
        "log 2 + logit^2 / 12 where |logit| < 1e-2 (torch.where)"
    ))
    err = (got.double() - want).abs()
    _require((err < 1e-4).all(), (
        f"log C differs from torch.distributions.ContinuousBernoulli by up to "
        f"{err.max().item():.3g} (at logit {logits[err.argmax()].item():g}): "
        "C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = logit / tanh(logit / 2)"
    ))
    _ok("cb_log_norm: matches torch.distributions.ContinuousBernoulli to 1e-4, stable at 0")


# ---------------------------------------------------------------------------------------------
# Exercise 13: active units and KL per dimension
# ---------------------------------------------------------------------------------------------


class _UnitsEncoder(nn.Module):
    """4-D test encoder: coordinates 0 and 2 carry information, 1 is constant, 3 nearly so."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([2.0, 0.0, 1.0, 0.1]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)[:, :4] - 0.5  # (n, 4), variance 1/12 per coordinate
        mu = h * self.scale + torch.tensor([0.0, 0.3, -0.2, 0.0])
        logvar = torch.tensor([-3.0, 0.0, -2.0, -0.01]).expand_as(mu)
        return mu, logvar


@_keeps_global_rng
def check_active_units(
    active_units: Callable[..., int], kl_per_dim: Callable[..., Tensor]
) -> None:
    """Check ``active_units(encoder, x, threshold=0.01) -> int`` and ``kl_per_dim(encoder, x) -> (m,)``.

    A unit (latent coordinate) is active when the posterior mean varies with x:
    Var_x(mu_j(x)) > threshold (Burda et al., 2016). The test encoder has
    Var(mu) = (0.33, 0, 0.083, 0.00083): 2 active units at 0.01, 3 at 1e-4.
    ``kl_per_dim`` is the mean over x of each coordinate's KL (closed form).
    """
    x = _fake_images(2000, seed=4)
    enc = _UnitsEncoder()
    with torch.no_grad():
        mu, logvar = enc(x)
    var = mu.var(0)
    want = int((var > 0.01).sum())
    got = _call(active_units, enc, x, what="active_units")
    _require(isinstance(got, int | np.integer) or (isinstance(got, Tensor) and got.numel() == 1),
             f"active_units should return an int, got {type(got).__name__}")
    got = int(got)
    if got != want:
        hint = ""
        if got == int((var.sqrt() > 0.01).sum()):
            hint = " (you thresholded the standard deviation: use the variance)"
        elif got == int((logvar.exp().mean(0) > 0.01).sum()):
            hint = " (you used the posterior variance exp(logvar): use the variance of mu over x)"
        raise AssertionError(
            f"active_units found {got} active units, expected {want}: count the coordinates j "
            f"with Var over the images of mu_j(x) > threshold{hint}"
        )
    _require(int(active_units(enc, x, threshold=1e-4)) == int((var > 1e-4).sum()),
             "active_units ignores its threshold argument")
    kl = _call(kl_per_dim, enc, x, what="kl_per_dim")
    _is_tensor(kl, "the KL per dimension")
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
        torch.distributions.Normal(0.0, 1.0)).mean(0)
    _require(tuple(kl.shape) == (4,), (
        f"kl_per_dim returned shape {tuple(kl.shape)}, expected (4,): average over the images, "
        "one value per latent coordinate"
    ))
    _require(torch.allclose(kl.detach(), ref, rtol=1e-4, atol=1e-5), (
        f"kl_per_dim gives {kl.tolist()}, expected {ref.tolist()}: "
        "0.5 * (exp(logvar) + mu^2 - 1 - logvar), averaged over the images (dim 0), "
        "not summed over the coordinates"
    ))
    _ok("active_units and kl_per_dim: right count at two thresholds, KL per coordinate matches "
        "torch.distributions")


# ---------------------------------------------------------------------------------------------
# Exercise 14 (optional): a conditional VAE
# ---------------------------------------------------------------------------------------------


@_keeps_global_rng
def check_conditional_samples(
    sample_conditional: Callable[..., Tensor], decoder: nn.Module, latent_dim: int,
    n_per_class: int = 50, min_accuracy: float = 0.8,
) -> float:
    """Check ``sample_conditional(decoder, labels, latent_dim, generator=None) -> (n, 1, 8, 8)``.

    Draws ``n_per_class`` samples of each digit; a digit classifier trained on
    the data must recognise the requested digit in at least ``min_accuracy``
    of them; the generator must make the draws reproducible. Returns the accuracy.
    """
    require_done("Exercise 14 (train the conditional VAE)", decoder=decoder)
    labels = torch.arange(10).repeat(n_per_class)
    with _seeded(0):
        s1 = _call(sample_conditional, decoder, labels, latent_dim,
                   generator=as_generator(0), what="sample_conditional")
        s2 = sample_conditional(decoder, labels, latent_dim, generator=as_generator(0))
    _check_images(s1, len(labels), "the conditional samples")
    _require(torch.equal(s1, s2), (
        "the same seeded generator gives different samples: pass it to torch.randn"
    ))
    pred = digit_classifier().predict(s1.flatten(1).numpy())
    acc = float((pred == labels.numpy()).mean())
    _require(acc >= min_accuracy, (
        f"a digit classifier recognises the requested digit in only {acc:.0%} of your "
        f"samples (expected >= {min_accuracy:.0%}): does the decoder receive the one-hot "
        "label, in training and in sampling?"
    ))
    _ok(f"conditional samples: the requested digit is recognised in {acc:.0%} of "
        f"{len(labels)} samples")
    return acc
