"""Check cells of the practicals: test a student's code and say what to fix.

Each ``check_*`` function runs a student's function or module on inputs
whose answer is known (shapes, a closed form, a reference library, a
gradient that must flow) and raises an ``AssertionError`` whose message says
what is wrong and how to fix it; it returns quietly (with a short summary
line printed) when everything holds. The failures are raised explicitly, not
with ``assert`` statements, so that they also fire under ``python -O``.

Practical 1 (Building and training a VAE) uses, in order:
:func:`check_encoder`, :func:`check_decoder`, :func:`check_reparameterize`,
:func:`check_gaussian_kl`, :func:`check_elbo`, :func:`check_training`,
:func:`check_reconstructions`, :func:`check_samples`, :func:`check_latent_grid`.

The conventions checked are those of the practical (and of :mod:`coursekit.vae`):
images ``(n, 1, 8, 8)`` in ``[0, 1]``; an encoder returns ``(mu, logvar)``,
each ``(n, latent_dim)``; a decoder returns *logits* ``(n, 1, 8, 8)``;
``log p(x | z)`` is minus the binary cross-entropy summed over the 64 pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGE_SHAPE = (1, 8, 8)


def _require(condition: Any, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` holds."""
    if not bool(condition):
        raise AssertionError(message)


def _ok(what: str) -> None:
    print(f"OK  {what}")


def _is_tensor(x: Any, name: str) -> None:
    _require(isinstance(x, Tensor), f"{name} should be a torch.Tensor, got {type(x).__name__}")


def _fake_images(n: int, seed: int = 0) -> Tensor:
    """(n, 1, 8, 8) random images in [0, 1]: the checks need no data set."""
    g = torch.Generator().manual_seed(seed)
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


# ---------------------------------------------------------------------------------------------
# Exercise 1 and 2: encoder and decoder
# ---------------------------------------------------------------------------------------------


def check_encoder(encoder_cls: Callable[..., nn.Module], latent_dims: Sequence[int] = (2, 3)) -> None:
    """Check an encoder class: ``encoder_cls(latent_dim)(x) -> (mu, logvar)``.

    Verifies, for each ``latent_dim`` in ``latent_dims``: the output is a pair
    of (n, latent_dim) finite tensors; ``mu`` depends on the input; each
    example is encoded independently of the rest of the batch; a gradient
    reaches every parameter.
    """
    x = _fake_images(6)
    for d in latent_dims:
        torch.manual_seed(0)
        encoder = encoder_cls(d)
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


def check_decoder(decoder_cls: Callable[..., nn.Module], latent_dims: Sequence[int] = (2, 3)) -> None:
    """Check a decoder class: ``decoder_cls(latent_dim)(z) -> logits`` of shape (n, 1, 8, 8).

    Verifies the shape, that the outputs are unbounded logits (not
    probabilities), that they depend on ``z``, and that a gradient reaches
    every parameter and ``z`` itself.
    """
    for d in latent_dims:
        torch.manual_seed(0)
        decoder = decoder_cls(d)
        _require(isinstance(decoder, nn.Module), f"Decoder({d}) should be a torch.nn.Module")
        z = torch.randn(6, d, generator=torch.Generator().manual_seed(1), requires_grad=True)
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


def check_reparameterize(reparameterize: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``reparameterize(mu, logvar) -> z = mu + exp(logvar / 2) * eps``.

    Verifies the shape; that the draws are random; their mean and standard
    deviation on 100,000 draws (5-sigma bounds, so a correct implementation
    fails with probability < 1e-6); that a tiny variance returns ``mu``; and
    the exact gradients dz/dmu = 1 and dz/dlogvar = (z - mu) / 2, which only
    hold when the noise is outside the computation graph (the trick).
    """
    n = 100_000
    mu0 = torch.tensor([1.0, -2.0])
    std0 = torch.tensor([2.0, 0.5])
    mu = mu0.expand(n, 2).clone()
    logvar = (2 * std0.log()).expand(n, 2).clone()
    torch.manual_seed(0)
    z = reparameterize(mu, logvar)
    _is_tensor(z, "z")
    _require(z.shape == mu.shape, f"z has shape {tuple(z.shape)}, expected {tuple(mu.shape)} (the shape of mu)")
    _require(torch.isfinite(z).all(), "z contains NaN or inf")
    _require(z.std(0).min() > 0, "z does not vary: draw the noise eps ~ N(0, I) (torch.randn_like)")
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
        raise AssertionError(
            f"the standard deviation of z is {std.tolist()}, expected {std0.tolist()} "
            f"(mu = {mu0.tolist()}, logvar = {(2 * std0.log()).tolist()}).{hint}"
        )
    mean_err = (z.mean(0) - mu0).abs()
    _require((mean_err < 5 * std0 / math.sqrt(n)).all(), (
        f"the mean of z is {z.mean(0).tolist()}, expected mu = {mu0.tolist()}: z = mu + std * eps"
    ))
    _require(not torch.equal(reparameterize(mu[:5], logvar[:5]), reparameterize(mu[:5], logvar[:5])),
             "two calls return the same z: draw fresh noise at every call")
    tiny = reparameterize(mu[:5], torch.full_like(mu[:5], -40.0))
    _require(torch.allclose(tiny, mu[:5], atol=1e-6), (
        "with logvar = -40 (std ~ 2e-9) z should equal mu"
    ))
    # Gradients: the trick makes z a differentiable function of (mu, logvar).
    m = mu[:1000].clone().requires_grad_(True)
    lv = logvar[:1000].clone().requires_grad_(True)
    z = reparameterize(m, lv)
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
        "dz/dlogvar should be 0.5 * std * eps = (z - mu) / 2: is std = exp(0.5 * logvar) and "
        "is eps drawn without gradient (torch.randn_like)?"
    ))
    _ok("reparameterize: mean and std within 5 sigma on 1e5 draws, exact gradients in mu and logvar")


# ---------------------------------------------------------------------------------------------
# Exercise 4: the KL term
# ---------------------------------------------------------------------------------------------


def reference_gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, by ``torch.distributions``: (n, d) -> (n,)."""
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, p).sum(-1)


def check_gaussian_kl(gaussian_kl: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``gaussian_kl(mu, logvar) -> (n,)`` against ``torch.distributions.kl_divergence``.

    Verifies the per-example shape, the known values KL = 0 at the prior and
    KL = d / 2 for mu = 1, logvar = 0 in d dimensions, agreement with the
    reference to 1e-5 on random inputs, and that a gradient flows.
    """
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 3, generator=g)
    logvar = torch.randn(7, 3, generator=g)
    kl = gaussian_kl(mu, logvar)
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
    ones = gaussian_kl(torch.ones(2, 3), torch.zeros(2, 3))
    if not torch.allclose(ones, torch.full((2,), 1.5), atol=1e-5):
        hint = " (twice the answer: the closed form has a factor 1/2)" if torch.allclose(
            ones, torch.full((2,), 3.0)) else ""
        raise AssertionError(f"for mu = 1, logvar = 0 in 3 dimensions KL = 3/2, got {ones.tolist()}{hint}")
    ref = reference_gaussian_kl(mu, logvar)
    if not torch.allclose(kl, ref, rtol=1e-5, atol=1e-6):
        hint = ""
        if torch.allclose(kl, 2 * ref, rtol=1e-4):
            hint = " Yours is twice the reference: the factor 1/2 is missing."
        elif (kl < 0).any():
            hint = " A KL divergence is never negative: check the signs of the terms."
        raise AssertionError(
            f"gaussian_kl disagrees with torch.distributions.kl_divergence: max difference "
            f"{(kl - ref).abs().max().item():.3g}. Closed form: "
            f"0.5 * sum_j (exp(logvar_j) + mu_j^2 - 1 - logvar_j).{hint}"
        )
    try:  # the course's own implementation, when present, must agree too
        from coursekit.vae import gaussian_kl as coursekit_kl
    except ImportError:
        coursekit_kl = None
    if coursekit_kl is not None:
        _require(torch.allclose(kl, coursekit_kl(mu, logvar), rtol=1e-5, atol=1e-6),
                 "gaussian_kl disagrees with coursekit.vae.gaussian_kl")
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
    """A test encoder with a (nearly) deterministic posterior: logvar = -30, so z = mu to 3e-7."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.mu = nn.Linear(64, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu = self.mu(x.flatten(1))
        return mu, torch.full_like(mu, -30.0)


def _reference_elbo(x: Tensor, mu: Tensor, logvar: Tensor, logits: Tensor, beta: float) -> Tensor:
    rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return rec - beta * reference_gaussian_kl(mu, logvar)


def check_elbo(
    elbo: Callable[..., Tensor],
    encoder_cls: Callable[..., nn.Module],
    decoder_cls: Callable[..., nn.Module],
) -> None:
    """Check ``elbo(x, encoder, decoder, beta=1.0) -> (n,)``, the per-example ELBO.

    With an encoder whose posterior is a point (logvar = -30) the single-sample
    ELBO is deterministic, so it must equal the reference
    ``-BCE(decoder(mu), x) - beta * KL`` for beta in {0, 0.5, 1}. It must also be
    <= 0 (both terms are), and send gradients to the student's encoder and decoder.
    """
    d = 2
    x = _fake_images(8, seed=1)
    torch.manual_seed(0)
    enc = _PinnedEncoder(d)
    dec = decoder_cls(d)
    with torch.no_grad():
        mu, logvar = enc(x)
        logits = dec(mu)
    for beta in (0.0, 1.0, 0.5):  # beta = 0 first: the reconstruction term alone
        out = elbo(x, enc, dec, beta=beta)
        _is_tensor(out, "the ELBO")
        _require(out.shape == (8,), (
            f"elbo returned shape {tuple(out.shape)}, expected (8,) for 8 images: return one "
            "value per example (the training loop takes the mean)"
        ))
        ref = _reference_elbo(x, mu, logvar, logits, beta)
        if not torch.allclose(out.detach(), ref, atol=1e-3, rtol=1e-5):
            full = _reference_elbo(x, mu, logvar, logits, 1.0)
            if torch.allclose(out.detach(), -ref, atol=1e-3, rtol=1e-5):
                hint = "you returned the loss (minus the ELBO); return the ELBO itself"
            elif beta != 1.0 and torch.allclose(out.detach(), full, atol=1e-3, rtol=1e-5):
                hint = ("the result does not depend on beta: multiply the KL term by beta "
                        "(ELBO = log p(x|z) - beta * KL)")
            elif beta == 0.0:
                rec = _reference_elbo(x, mu, logvar, logits, 0.0)
                hint = (
                    "with beta = 0 only the reconstruction term is left, and it is wrong: "
                    "log p(x|z) = -binary_cross_entropy_with_logits(logits, x, reduction='none') "
                    f"summed over the 64 pixels (expected e.g. {rec[0].item():.3f}, got "
                    f"{out[0].item():.3f})"
                )
            else:
                hint = ("the reconstruction term is right (beta = 0 passed) but the KL term is "
                        "off: ELBO = log p(x|z) - beta * gaussian_kl(mu, logvar)")
            raise AssertionError(
                f"elbo with beta = {beta} differs from the reference by "
                f"{(out.detach() - ref).abs().max().item():.3g}: {hint}"
            )
    torch.manual_seed(1)
    enc_s, dec_s = encoder_cls(d), decoder_cls(d)
    out = elbo(x, enc_s, dec_s)
    _require((out <= 1e-6).all(), "the ELBO should be <= 0 here (log p(x|z) <= 0 and KL >= 0)")
    (-out.mean()).backward()
    _all_parameters_get_gradients(enc_s, "your Encoder (through elbo)")
    _all_parameters_get_gradients(dec_s, "your Decoder (through elbo)")
    _ok("elbo: matches the reference for beta in {0, 0.5, 1}, is <= 0, gradients reach "
        "encoder and decoder")


# ---------------------------------------------------------------------------------------------
# Exercise 6: training
# ---------------------------------------------------------------------------------------------


def independent_pixels_nll(x_fit: Tensor, x_eval: Tensor | None = None) -> float:
    """Mean negative log-likelihood of the *no-latent* baseline: independent Bernoulli pixels.

    Each pixel gets the probability equal to its mean over ``x_fit``; the
    returned value is the mean over ``x_eval`` (default ``x_fit``) of the
    cross-entropy summed over pixels. A VAE's negative ELBO must beat it: the
    VAE contains this model (a decoder that ignores z, with q = p and KL = 0).
    """
    x_eval = x_fit if x_eval is None else x_eval
    p = x_fit.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)
    return F.binary_cross_entropy(p.expand_as(x_eval), x_eval, reduction="none").flatten(1).sum(1).mean().item()


def check_training(history: Sequence[float], n_steps: int, baseline: float) -> None:
    """Check a training history: one finite loss per step, decreasing, ending below ``baseline``.

    Args:
        history: the loss (negative ELBO, averaged over the batch) at each step.
        n_steps: the number of steps asked for.
        baseline: :func:`independent_pixels_nll` of the training set.
    """
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


def check_reconstructions(recon: Tensor, x: Tensor, max_ratio: float = 0.7) -> None:
    """Check reconstructions of ``x``: images in [0, 1], squared error well below the mean image's.

    The mean image of ``x`` is the best reconstruction that ignores the
    input; a working autoencoder must beat it by a clear factor
    (``max_ratio``: its mean squared error at most that fraction of the mean image's).
    """
    _check_images(recon, x.shape[0], "the reconstructions")
    _require(not recon.requires_grad, "wrap the reconstruction in torch.no_grad() (no training here)")
    err = (recon - x).pow(2).mean().item()
    base = (x.mean(0, keepdim=True) - x).pow(2).mean().item()
    _require(err <= max_ratio * base, (
        f"the reconstructions' squared error {err:.4f} is not below {max_ratio} x {base:.4f}, "
        "the error of predicting the mean image: use the posterior mean mu (no sampling) and the "
        "trained encoder/decoder"
    ))
    _ok(f"reconstructions: mean squared error {err:.4f} vs {base:.4f} for the mean image")


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


def check_samples(
    sample: Callable[..., Tensor], decoder: nn.Module, latent_dim: int,
    n: int = 500, min_classes: int = 8, min_share: float = 0.02,
) -> Tensor:
    """Check ``sample(decoder, n, latent_dim, generator=None) -> (n, 1, 8, 8)`` images.

    Verifies shape and range, that a generator makes draws reproducible and
    different seeds give different draws, and *coverage*: a digit classifier
    trained on the data must find at least ``min_classes`` of the 10 digits,
    each in at least ``min_share`` of ``n`` samples. Returns the samples.
    """
    s1 = sample(decoder, n, latent_dim, generator=torch.Generator().manual_seed(0))
    _check_images(s1, n, "the samples")
    s2 = sample(decoder, n, latent_dim, generator=torch.Generator().manual_seed(0))
    s3 = sample(decoder, n, latent_dim, generator=torch.Generator().manual_seed(1))
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
        f"(counts {counts.tolist()}); expected at least {min_classes}: sample z ~ N(0, I) "
        "from the prior, and is the model trained?"
    ))
    _ok(f"samples: reproducible with a generator; {covered}/10 digit classes each in >= "
        f"{min_share:.0%} of {n} samples (counts {counts.tolist()})")
    return s1


def check_latent_grid(
    latent_grid: Callable[..., Tensor], decoder: nn.Module, n: int = 5, lim: float = 2.0
) -> None:
    """Check ``latent_grid(decoder, n, lim) -> (n * n, 1, 8, 8)``, decoded 2-D grid of codes.

    Row ``r`` (top to bottom) has ``z_2`` from ``+lim`` down to ``-lim``,
    column ``c`` has ``z_1`` from ``-lim`` to ``+lim`` (as in a scatter plot):
    image ``r * n + c`` must equal ``sigmoid(decoder([z_1[c], z_2[r]]))``.
    """
    grid = latent_grid(decoder, n, lim)
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
