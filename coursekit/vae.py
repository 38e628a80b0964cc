"""Autoencoders and variational autoencoders on the 8x8 digits (Lecture 1, part IV).

Everything here is sized for the scikit-learn digits of :func:`coursekit.data.load_digits`:
images of shape ``(n, 1, 8, 8)`` with values in ``[0, 1]``.

The course's architecture (the course project asks every group to use it) is defined once:

- :class:`Encoder`: an MLP ``x (n, 1, 8, 8) [+ one-hot label] -> (n, out_features)``;
- :class:`Decoder`: an MLP ``z (n, latent_dim) [+ one-hot label] -> logits (n, 1, 8, 8)``;

The VQ-VAE reuses the same pair, with the encoder's output reshaped into a 4x4 map of
``code_dim``-dimensional vectors (convolutions would be the usual choice; on a CPU they are
several times slower for these tiny images).

**Decoder likelihood.** All models use a *Bernoulli decoder with continuous targets*:
``log p_theta(x | z) = sum_pixels [x log s + (1 - x) log(1 - s)]`` with ``s = sigmoid(logits)``,
i.e. minus the binary cross-entropy.  For grey levels in ``[0, 1]`` this is not a normalised
density over ``[0, 1]^64``, so the "log-likelihoods" below (ELBO, IWAE) compare models that share
this decoder; they are not nats of a density on the pixel cube.  Its advantages: no variance to
learn (no collapse on the always-black border pixels) and sharp decoded means.

Models:

- :class:`Autoencoder`: deterministic encoder/decoder, squared-error reconstruction (slides
  "Autoencoder");
- :class:`VAE`: Gaussian encoder ``q_phi(z|x) = N(mu, diag(exp(logvar)))``, prior ``N(0, I)``,
  Bernoulli decoder; ``elbo`` (slides' ELBO), ``iwae`` (Burda et al., 2016), ``beta`` (beta-VAE);
- :class:`ConditionalVAE`: one-hot label fed to encoder and decoder (Sohn et al., 2015);
- :class:`VQVAE`: codebook, nearest-code quantization, straight-through gradient, commitment
  loss (van den Oord et al., 2017), with codebook usage monitored and dead codes re-initialised.

:func:`fit` trains any of them with :func:`coursekit.train` (tqdm bar, loss history).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit.numerics import LOG_2PI
from coursekit.utils import train
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_nonnegative,
    check_positive,
    check_positive_int,
    module_dtype_device,
)

#: Shape of one digit image, as returned by :func:`coursekit.data.load_digits`.
IMAGE_SHAPE: tuple[int, int, int] = (1, 8, 8)
N_CLASSES = 10
#: The encoder's log-variance is clamped to this range: exp(-10) ~ 4.5e-5 is a far smaller
#: posterior variance than any useful code needs, exp(6) ~ 400 far above the prior's 1; outside
#: it, exp(logvar) under/overflows or the KL gradient explodes.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 6.0


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _check_images(
    x: Any, name: str = "x", shape: Sequence[int] = IMAGE_SHAPE,
    like: nn.Module | Tensor | None = None, dtype: torch.dtype | None = None,
) -> Tensor:
    """``x`` through the shared :func:`~coursekit.validation.as_tensor` (shape (n, *shape),
    finite, moved to ``like``'s dtype and device), plus the Bernoulli range [0, 1]."""
    x = as_tensor(x, name, like=like, dtype=dtype, shape=(None, *tuple(shape)))
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name}: pixel values must lie in [0, 1] (Bernoulli decoder), got range "
            f"[{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def _check_labels(y: Any, n: int | None, n_classes: int, name: str = "labels") -> Tensor:
    """Check that ``y`` is an integer tensor of shape (n,) with entries in [0, n_classes)."""
    if not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected integer class labels, got {type(y).__name__}") from None
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if y.ndim != 1 or (n is not None and y.shape[0] != n) or y.shape[0] == 0:
        want = f"({n},)" if n is not None else "(n,) with n >= 1"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(y.shape)}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"{name}: class labels must lie in 0..{n_classes - 1}, got range "
            f"[{y.min().item()}, {y.max().item()}]"
        )
    return y.long()


# ----------------------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------------------


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)), per example, in closed form.

    The slides' "typical formula": ``KL = 1/2 sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2)``.

    Args:
        mu: (..., d) means.
        logvar: (..., d) log-variances (same shape as ``mu``).

    Returns:
        (...,) the KL divergence in nats, summed over the last (latent) dimension.
    """
    mu = as_tensor(mu, "mu", min_rows=0)
    logvar = as_tensor(logvar, "logvar", like=mu, min_rows=0)
    if mu.shape != logvar.shape or mu.ndim == 0:
        raise ValueError(
            f"mu, logvar: expected two tensors of the same shape (..., d), got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    return _gaussian_kl(mu, logvar)


def _gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    # expm1(logvar) - logvar = exp(logvar) - 1 - logvar without cancellation near logvar = 0.
    return 0.5 * (torch.expm1(logvar) - logvar + mu.pow(2)).sum(-1)  # (...,)


def gaussian_log_prob(z: Tensor, mu: Tensor | None = None, logvar: Tensor | None = None) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension.

    ``mu`` and ``logvar`` default to 0 (the standard normal prior). Shapes broadcast:
    z (..., d), mu and logvar (..., d) -> (...,).
    """
    z = as_tensor(z, "z", min_rows=0)
    if z.ndim == 0:
        raise ValueError("z: expected shape (..., d), got a scalar")
    if mu is None:
        return _gaussian_log_prob(z)
    mu = as_tensor(mu, "mu", like=z, min_rows=0)
    logvar = torch.zeros_like(mu) if logvar is None else as_tensor(logvar, "logvar", like=z,
                                                                    min_rows=0)
    try:
        torch.broadcast_shapes(z.shape, mu.shape, logvar.shape)
    except RuntimeError:
        raise ValueError(f"z, mu, logvar: shapes {tuple(z.shape)}, {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)} do not broadcast") from None
    return _gaussian_log_prob(z, mu, logvar)


def _gaussian_log_prob(z: Tensor, mu: Tensor | None = None, logvar: Tensor | None = None
                       ) -> Tensor:
    if mu is None:  # the prior N(0, I)
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)  # (...,)


def log_marginal_quadrature(
    log_likelihood: Any, latent_dim: int, n_grid: int = 300, limit: float = 5.0
) -> Tensor:
    """``log p(x) = log int p(x | z) N(z; 0, I) dz`` by a Riemann sum on a grid (d <= 2).

    The grid is ``linspace(-limit, limit, n_grid)`` per axis (float64), each point weighing
    the cell volume ``h^d``; the prior's mass outside the box is below ``2d * Phi(-limit)``.

    Args:
        log_likelihood: maps grid points z (G, d) to log p(x_j | z) of shape (G, n).
        latent_dim: d, 1 or 2.
        n_grid: points per axis (>= 2).  limit: half-width of the box (> 0).

    Returns:
        (n,) float64 log-densities, by a log-sum-exp over the grid (no underflow).
    """
    if not callable(log_likelihood):
        raise TypeError("log_likelihood: expected a callable z (G, d) -> (G, n)")
    latent_dim = check_positive_int(latent_dim, "latent_dim")
    if latent_dim > 2:
        raise ValueError(f"latent_dim: quadrature needs 1 or 2 dimensions, got {latent_dim}")
    n_grid = check_positive_int(n_grid, "n_grid", minimum=2)
    limit = check_positive(limit, "limit")
    t = torch.linspace(-limit, limit, n_grid, dtype=torch.float64)
    z = torch.cartesian_prod(*[t] * latent_dim).view(-1, latent_dim)  # (G, d)
    log_lik = as_tensor(log_likelihood(z), "log_likelihood(z)", dtype=torch.float64,
                        finite=False)
    if log_lik.ndim != 2 or log_lik.shape[0] != z.shape[0]:
        raise ValueError(f"log_likelihood: expected an output of shape ({z.shape[0]}, n), "
                         f"got {tuple(log_lik.shape)}")
    log_joint = log_lik + gaussian_log_prob(z)[:, None].to(log_lik.device)  # (G, n)
    return torch.logsumexp(log_joint, 0) + latent_dim * math.log(float(t[1] - t[0]))


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) of the Bernoulli decoder, summed over all pixels.

    Args:
        logits: (..., 1, 8, 8) decoder outputs (any trailing image shape).
        x: (..., 1, 8, 8) targets in [0, 1] (broadcast against ``logits``).

    Returns:
        (...,) minus the binary cross-entropy, computed from logits (stable for large |logits|).
    """
    logits = as_tensor(logits, "logits", min_rows=0)
    x = as_tensor(x, "x", like=logits, min_rows=0)
    if logits.ndim < 3 or x.ndim < 3:
        raise ValueError(f"logits, x: expected images (..., C, H, W), got shapes "
                         f"{tuple(logits.shape)} and {tuple(x.shape)}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())
        if lo < 0 or hi > 1:
            raise ValueError(f"x: Bernoulli targets must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    try:
        torch.broadcast_shapes(logits.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"logits, x: shapes {tuple(logits.shape)} and {tuple(x.shape)} do not "
                         "broadcast") from None
    return _bernoulli_log_prob(logits, x)


def _bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    logits, x = torch.broadcast_tensors(logits, x)  # (..., C, H, W) both
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-3).sum(-1)


# ----------------------------------------------------------------------------------------------
# The course's architecture
# ----------------------------------------------------------------------------------------------


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())  # smooth activation: smooth latent spaces and traversals
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """The course's encoder: an MLP from an image (and optionally a one-hot label) to features.

    ``x (n, 1, 8, 8)`` is flattened to 64 values, concatenated with ``y (n, n_classes)`` when
    ``n_classes > 0``, and mapped through ``hidden`` SiLU layers to ``(n, out_features)``.
    A VAE uses ``out_features = 2 * latent_dim`` (mean and log-variance).
    """

    def __init__(
        self, out_features: int, hidden: Sequence[int] = (256, 128), n_classes: int = 0,
        image_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__()
        self.out_features = check_positive_int(out_features, "out_features")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=0)
        self.image_shape = tuple(image_shape)
        in_features = math.prod(image_shape) + self.n_classes
        self.net = _mlp([in_features, *hidden, self.out_features])

    def forward(self, x: Tensor, y_onehot: Tensor | None = None) -> Tensor:
        """x (n, *image_shape) [+ y_onehot (n, n_classes)] -> features (n, out_features)."""
        x = as_tensor(x, "x", like=self, shape=(None, *self.image_shape))
        h = x.flatten(1)
        if self.n_classes:
            y_onehot = as_tensor(y_onehot, "y_onehot", like=self,
                                 shape=(x.shape[0], self.n_classes))
            h = torch.cat([h, y_onehot], dim=1)
        elif y_onehot is not None:
            raise ValueError("y_onehot: this encoder takes no label (n_classes = 0)")
        return self.net(h)


class Decoder(nn.Module):
    """The course's decoder: an MLP from a latent code (and optionally a label) to pixel logits.

    ``z (n, latent_dim)`` [+ ``y (n, n_classes)``] -> logits ``(n, 1, 8, 8)``; the Bernoulli
    means are ``sigmoid(logits)``.
    """

    def __init__(
        self, latent_dim: int, hidden: Sequence[int] = (128, 256), n_classes: int = 0,
        image_shape: Sequence[int] = IMAGE_SHAPE,
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=0)
        self.image_shape = tuple(image_shape)
        self.net = _mlp([self.latent_dim + self.n_classes, *hidden, math.prod(image_shape)])

    def forward(self, z: Tensor, y_onehot: Tensor | None = None) -> Tensor:
        """z (..., latent_dim) [+ y_onehot (..., n_classes)] -> logits (..., *image_shape)."""
        z = _check_latents(z, self.latent_dim, like=self)
        if self.n_classes:
            y_onehot = as_tensor(y_onehot, "y_onehot", like=self, min_rows=0,
                                 shape=(*z.shape[:-1], self.n_classes))
            z = torch.cat([z, y_onehot], dim=-1)
        elif y_onehot is not None:
            raise ValueError("y_onehot: this decoder takes no label (n_classes = 0)")
        return self.net(z).unflatten(-1, self.image_shape)


# ----------------------------------------------------------------------------------------------
# Autoencoder
# ----------------------------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """A deterministic autoencoder (slides "Autoencoder"): ``z = f_phi(x)``, ``x_hat = g_theta(z)``.

    Trained with the slides' objective ``E_x || x - g_theta(f_phi(x)) ||^2`` (squared error
    summed over pixels); the decoder's output goes through a sigmoid so that ``x_hat`` lies in
    [0, 1] like the data.
    """

    def __init__(self, latent_dim: int = 8, hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.encoder = Encoder(self.latent_dim, hidden)
        self.decoder = Decoder(self.latent_dim, tuple(reversed(hidden)))

    def encode(self, x: Tensor) -> Tensor:
        """x (n, 1, 8, 8) -> codes z (n, latent_dim)."""
        return self.encoder(_check_images(x, like=self))

    def decode(self, z: Tensor) -> Tensor:
        """z (n, latent_dim) -> reconstructions x_hat (n, 1, 8, 8) in [0, 1]."""
        z = _check_latents(z, self.latent_dim, like=self)
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Per-example ``||x - g(f(x))||^2``: (n,)."""
        x = _check_images(x, like=self)
        return (self.forward(x) - x).pow(2).flatten(1).sum(1)

    def loss(self, x: Tensor) -> Tensor:
        """Mean squared reconstruction error over the batch (a scalar to minimise)."""
        return self.reconstruction_error(x).mean()


def _check_latents(z: Any, latent_dim: int, name: str = "z",
                   like: nn.Module | None = None) -> Tensor:
    z = as_tensor(z, name, like=like, min_rows=0)
    if z.ndim < 1 or z.shape[-1] != latent_dim or (z.ndim > 1 and z.shape[-2] == 0):
        raise ValueError(
            f"{name}: expected latent codes of shape (n, {latent_dim}), got {tuple(z.shape)}"
        )
    return z


# ----------------------------------------------------------------------------------------------
# Variational autoencoder
# ----------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """The variational autoencoder of Kingma & Welling (2014) for the 8x8 digits.

    - encoder ``q_phi(z | x) = N(mu_phi(x), diag(exp(logvar_phi(x))))`` (an :class:`Encoder`
      with ``2 * latent_dim`` outputs; the log-variance is clamped to
      ``[LOGVAR_MIN, LOGVAR_MAX]``);
    - prior ``p(z) = N(0, I)``;
    - decoder ``p_theta(x | z)``: independent Bernoulli pixels with logits ``decode(z)`` (a
      :class:`Decoder`), evaluated on the continuous grey levels (see the module docstring).

    ``VAE()`` is the course's default model: ``latent_dim = 8``, hidden layers (256, 128).

    Args:
        latent_dim: dimension d of z.
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        beta: weight of the KL term in :meth:`loss` (beta-VAE, Higgins et al. 2017); 1 is the
            plain VAE, 0 a (stochastic) autoencoder.  :meth:`elbo` always uses beta = 1.
        n_classes: 0 for an unconditional model; see :class:`ConditionalVAE`.
    """

    def __init__(
        self, latent_dim: int = 8, hidden: Sequence[int] = (256, 128), beta: float = 1.0,
        n_classes: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=0)
        self.beta = check_nonnegative(beta, "beta")
        self.encoder = Encoder(2 * self.latent_dim, hidden, self.n_classes)
        self.decoder = Decoder(self.latent_dim, tuple(reversed(hidden)), self.n_classes)

    # beta is a property so that setting it later is validated too.
    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = check_nonnegative(value, "beta")

    # -- conditioning (used by ConditionalVAE; a plain VAE takes no labels) -------------------
    def _onehot(self, y: Tensor | None, n: int) -> Tensor | None:
        if self.n_classes == 0:
            if y is not None:
                raise ValueError("y: this VAE is unconditional (use ConditionalVAE for labels)")
            return None
        if y is None:
            raise ValueError(f"y: a ConditionalVAE needs labels y of shape ({n},)")
        y = _check_labels(y, n, self.n_classes, name="y")
        dtype, device = module_dtype_device(self)
        return F.one_hot(y.to(device), self.n_classes).to(dtype)

    # -- the model ------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The encoder's Gaussian: x (n, 1, 8, 8) -> mu (n, d), logvar (n, d) (clamped)."""
        x = _check_images(x, like=self)
        return self._encode(x, self._onehot(y, x.shape[0]))

    def _encode(self, x: Tensor, onehot: Tensor | None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x, onehot).chunk(2, dim=-1)  # (n, d) each
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's Bernoulli logits: z (..., n, d) -> logits (..., n, 1, 8, 8).

        ``sigmoid(decode(z))`` are the pixel means (the images one shows).
        """
        z = _check_latents(z, self.latent_dim, like=self)
        return self._decode(z, self._onehot(y, z.shape[-2]) if z.ndim >= 2 else self._onehot(y, 1))

    def _decode(self, z: Tensor, onehot: Tensor | None) -> Tensor:
        if onehot is not None and z.ndim > 2:  # (n, C) labels for (m, n, d) codes
            onehot = onehot.expand(*z.shape[:-1], self.n_classes)
        return self.decoder(z, onehot)  # (..., n, 1, 8, 8) logits

    @staticmethod
    def reparameterize(
        mu: Tensor, logvar: Tensor, n_samples: int | None = None,
        generator: GeneratorLike = None,
    ) -> Tensor:
        """The reparameterization trick: ``z = mu + sigma * eps``, ``eps ~ N(0, I)``.

        Returns (n, d), or (n_samples, n, d) when ``n_samples`` is given. Gradients flow to
        ``mu`` and ``logvar`` because the randomness sits in ``eps`` only. ``generator``: a
        ``torch.Generator``, an int seed or None (a seed drawn from torch's global state).
        """
        mu = as_tensor(mu, "mu", ndim=(1, 2, 3), min_rows=0)
        logvar = as_tensor(logvar, "logvar", like=mu, min_rows=0)
        if logvar.shape != mu.shape:
            raise ValueError(f"logvar: expected the shape of mu {tuple(mu.shape)}, got {tuple(logvar.shape)}")
        if n_samples is not None:
            n_samples = check_positive_int(n_samples, "n_samples")
        return VAE._reparameterize(mu, logvar, n_samples,
                                   as_generator(generator, "generator", device=mu.device))

    @staticmethod
    def _reparameterize(mu: Tensor, logvar: Tensor, n_samples: int | None,
                        generator: torch.Generator) -> Tensor:
        shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps  # (..., n, d)

    def elbo_terms(
        self, x: Tensor, y: Tensor | None = None, generator: GeneratorLike = None
    ) -> tuple[Tensor, Tensor]:
        """The two terms of the ELBO, per example, with one reparameterized sample.

        Returns:
            log_px_z: (n,) single-sample estimate of ``E_q[log p_theta(x | z)]``;
            kl: (n,) closed-form ``KL(q_phi(z | x) || p(z))``.
        """
        x = _check_images(x, like=self)                           # checked once, here
        onehot = self._onehot(y, x.shape[0])
        mu, logvar = self._encode(x, onehot)                      # (n, d) each
        gen = as_generator(generator, "generator", device=mu.device)
        z = self._reparameterize(mu, logvar, None, gen)           # (n, d)
        return _bernoulli_log_prob(self._decode(z, onehot), x), _gaussian_kl(mu, logvar)

    def elbo(
        self, x: Tensor, y: Tensor | None = None, generator: GeneratorLike = None
    ) -> Tensor:
        """Per-example ELBO (beta = 1): ``E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x)``.

        One reparameterized sample for the expectation, the KL in closed form. Shape (n,).
        """
        log_px_z, kl = self.elbo_terms(x, y, generator)
        return log_px_z - kl

    def loss(
        self, x: Tensor, y: Tensor | None = None, generator: GeneratorLike = None
    ) -> Tensor:
        """The training loss: batch mean of ``-E_q[log p(x|z)] + beta * KL`` (a scalar)."""
        log_px_z, kl = self.elbo_terms(x, y, generator)
        return (-log_px_z + self.beta * kl).mean()

    def iwae(
        self, x: Tensor, k: int, y: Tensor | None = None,
        generator: GeneratorLike = None, chunk_size: int = 2**16,
    ) -> Tensor:
        """Importance-weighted bound (Burda et al., 2016), per example: shape (n,).

        ``IWAE_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)`` i.i.d.
        Its expectation increases with k, equals the ELBO's at k = 1 and tends to
        ``log p(x)``.  Computed with a running log-sum-exp over chunks of samples, so any k
        fits in memory.
        """
        k = check_positive_int(k, "k")
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        x = _check_images(x, like=self)
        onehot = self._onehot(y, x.shape[0])
        mu, logvar = self._encode(x, onehot)
        generator = as_generator(generator, "generator", device=mu.device)
        n = x.shape[0]
        per_chunk = max(1, min(k, chunk_size // max(n, 1)))
        total = torch.full((n,), -math.inf, dtype=mu.dtype, device=mu.device)
        done = 0
        while done < k:
            m = min(per_chunk, k - done)
            z = self._reparameterize(mu, logvar, m, generator)  # (m, n, d)
            log_w = (
                _bernoulli_log_prob(self._decode(z, onehot), x)  # log p(x | z)
                + _gaussian_log_prob(z)  # log p(z)
                - _gaussian_log_prob(z, mu, logvar)  # log q(z | x)
            )  # (m, n)
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            done += m
        return total - math.log(k)

    @torch.no_grad()
    def log_px_quadrature(self, x: Tensor, n_grid: int = 300, limit: float = 5.0) -> Tensor:
        """Exact ``log p_theta(x) = log int p_theta(x|z) p(z) dz`` by quadrature (d <= 2 only).

        A midpoint rule on the regular grid ``[-limit, limit]^d`` with ``n_grid`` points per
        axis (float64); the prior's mass outside the box is below ``2d * Phi(-limit)``.  Used
        as the ground truth that the ELBO and IWAE bounds must stay below.  Unconditional
        models only.  Returns (n,).
        """
        if self.latent_dim > 2:
            raise ValueError(f"latent_dim: log_px_quadrature needs 1 or 2, got {self.latent_dim}")
        if self.n_classes:
            raise ValueError("log_px_quadrature: only for an unconditional VAE")
        dtype, device = module_dtype_device(self)
        x = _check_images(x, dtype=torch.float64).flatten(1)  # (n, 64)
        # A float64 copy of the decoder: the sum runs over up to 10^5 grid points.
        decoder = copy.deepcopy(self.decoder).double().to(x.device)

        def log_px_z(z: Tensor) -> Tensor:  # (G, d) -> (G, n)
            logits = decoder(z).flatten(1)  # (G, 64)
            # Bernoulli: x log s + (1 - x) log(1 - s) = x * logit + log sigmoid(-logit), so
            # all (grid point, image) pairs come from one matrix product.
            return logits @ x.T + F.logsigmoid(-logits).sum(1, keepdim=True)

        log_px = log_marginal_quadrature(log_px_z, self.latent_dim, n_grid, limit)
        return log_px.to(dtype=dtype, device=device)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel means decoded from the encoder's mean: (n, 1, 8, 8) in [0, 1]."""
        mu, _ = self.encode(x, y)
        return torch.sigmoid(self.decode(mu, y))

    @torch.no_grad()
    def sample(self, n: int, generator: GeneratorLike = None) -> Tensor:
        """New images: ``z ~ N(0, I)``, then the decoder's pixel means. Shape (n, 1, 8, 8).

        (Drawing Bernoulli pixels on top would give binary images; like most papers we show
        the means.)
        """
        if self.n_classes:
            raise ValueError("n: a ConditionalVAE samples with sample(labels)")
        n = check_positive_int(n, "n")
        dtype, device = module_dtype_device(self)
        g = as_generator(generator, "generator", device=device)
        z = torch.randn(n, self.latent_dim, generator=g, dtype=dtype, device=device)
        return torch.sigmoid(self.decode(z))


class ConditionalVAE(VAE):
    """Class-conditional VAE (Sohn et al., 2015): ``q_phi(z | x, y)``, ``p_theta(x | z, y)``.

    The one-hot label is concatenated to the encoder's input and to the decoder's input; the
    prior stays ``N(0, I)``. Every method of :class:`VAE` takes the labels ``y`` (n,) as
    second argument, and ``sample(labels)`` draws the requested digits.
    """

    def __init__(
        self, n_classes: int = N_CLASSES, latent_dim: int = 8, hidden: Sequence[int] = (256, 128),
        beta: float = 1.0,
    ) -> None:
        super().__init__(latent_dim, hidden, beta, check_positive_int(n_classes, "n_classes"))

    @torch.no_grad()
    def sample(self, labels: Any, generator: GeneratorLike = None) -> Tensor:  # type: ignore[override]
        """Images of the requested classes: labels (n,) ints -> pixel means (n, 1, 8, 8)."""
        labels = _check_labels(labels, None, self.n_classes)
        dtype, device = module_dtype_device(self)
        g = as_generator(generator, "generator", device=device)
        labels = labels.to(device)
        z = torch.randn(labels.shape[0], self.latent_dim, generator=g, dtype=dtype, device=device)
        return torch.sigmoid(self.decode(z, labels))


def nearest_distance(images: Tensor, reference: Tensor) -> Tensor:
    """Euclidean distance from each image to its nearest image in ``reference``.

    A simple measure of how far generated images lie from the data manifold (and, when the
    distance is 0, of copying).  images (n, 1, 8, 8), reference (m, 1, 8, 8) -> (n,).
    """
    images = _check_images(images, "images")
    reference = _check_images(reference, "reference", like=images)
    return torch.cdist(images.flatten(1), reference.flatten(1)).min(dim=1).values


# ----------------------------------------------------------------------------------------------
# VQ-VAE
# ----------------------------------------------------------------------------------------------


def perplexity(indices: Tensor, n_codes: int) -> float:
    """exp(entropy) of the empirical code histogram: the effective number of codes in use.

    Between 1 (one code used) and ``n_codes`` (all used equally often).
    """
    n_codes = check_positive_int(n_codes, "n_codes")
    if not isinstance(indices, Tensor):
        arr = np.asarray(indices)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices: expected integer code indices, got {type(indices).__name__}"
                            f" of dtype {arr.dtype}")
        indices = torch.from_numpy(arr)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool or indices.numel() == 0:
        raise ValueError(f"indices: expected a non-empty integer tensor, got {indices.dtype} "
                         f"{tuple(indices.shape)}")
    if indices.min() < 0 or indices.max() >= n_codes:
        raise ValueError(f"indices: codes must lie in 0..{n_codes - 1}")
    counts = torch.bincount(indices.flatten(), minlength=n_codes).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp())


class VQVAE(nn.Module):
    """Vector-quantised VAE (van den Oord et al., 2017) with a 4x4 map of discrete codes.

    The course's :class:`Encoder` outputs ``16 * D`` numbers, read as a map ``z_e`` of shape
    (n, D, 4, 4); each of its 16 vectors is replaced by the nearest of ``n_codes`` codebook
    vectors ``e_k`` (Euclidean distance), giving ``z_q``; the :class:`Decoder` sees ``z_q``
    through the straight-through estimator ``z_e + sg(z_q - z_e)`` (Bengio et al., 2013), so
    the decoder's gradient is copied onto the encoder.  Loss per example:

        -log p(x | z_q) + ||sg(z_e) - e||^2 + commitment * ||z_e - sg(e)||^2

    (sums over positions and dimensions; ``commitment = 0.25`` as in the paper).

    Codebook health: in training mode every :meth:`loss` call updates an exponential moving
    average of each code's usage; codes whose share falls below ``dead_threshold / n_codes``
    are *dead* and are re-initialised on randomly chosen encoder outputs of the current batch
    (so they sit where the encoder's outputs live and get used again).  The batch perplexity
    and the number of re-initialised codes are appended to ``self.history``.
    """

    def __init__(
        self, n_codes: int = 32, code_dim: int = 4, grid: tuple[int, int] = (4, 4),
        hidden: Sequence[int] = (256, 128), commitment: float = 0.25,
        dead_threshold: float = 0.03, usage_decay: float = 0.95,
    ) -> None:
        super().__init__()
        self.n_codes = check_positive_int(n_codes, "n_codes", minimum=2)
        self.code_dim = check_positive_int(code_dim, "code_dim")
        self.grid = (check_positive_int(grid[0], "grid[0]"), check_positive_int(grid[1], "grid[1]"))
        self.commitment = check_nonnegative(commitment, "commitment")
        self.dead_threshold = check_nonnegative(dead_threshold, "dead_threshold")
        self.usage_decay = check_nonnegative(usage_decay, "usage_decay")
        if self.usage_decay >= 1.0:
            raise ValueError(f"usage_decay: expected a number in [0, 1), got {usage_decay!r}")
        flat = self.code_dim * self.grid[0] * self.grid[1]
        self.encoder = Encoder(flat, hidden)
        self.decoder = Decoder(flat, tuple(reversed(hidden)))
        self.codebook = nn.Parameter(torch.randn(self.n_codes, self.code_dim))
        self.register_buffer("usage", torch.full((self.n_codes,), 1.0 / self.n_codes))
        self.history: dict[str, list[float]] = {"perplexity": [], "reset_codes": []}

    def encode(self, x: Tensor) -> Tensor:
        """Continuous encoder outputs z_e: x (n, 1, 8, 8) -> (n, D, 4, 4)."""
        return self.encoder(_check_images(x, like=self)).view(-1, self.code_dim, *self.grid)

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest-code quantization of z_e (n, D, h, w).

        Returns:
            z_q: (n, D, h, w) the chosen codebook vectors (no straight-through here);
            indices: (n, h, w) int64, the index of the nearest code at each position.
        """
        z_e = as_tensor(z_e, "z_e", like=self, ndim=4)
        if z_e.shape[1] != self.code_dim:
            raise ValueError(
                f"z_e: expected shape (n, {self.code_dim}, h, w), got {tuple(z_e.shape)}"
            )
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)  # (n*h*w, D)
        # ||a - e||^2 = ||a||^2 - 2 a.e + ||e||^2, one matrix product for all pairs.
        dist = (
            flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T
            + self.codebook.pow(2).sum(1)
        )
        indices = dist.argmin(1).view(z_e.shape[0], *z_e.shape[2:])
        return self.embed(indices), indices

    def embed(self, indices: Tensor) -> Tensor:
        """Code map (n, h, w) of indices -> codebook vectors (n, D, h, w)."""
        if (not isinstance(indices, Tensor) or indices.dtype.is_floating_point
                or indices.ndim != 3 or not indices.numel()):
            raise ValueError(f"indices: expected a non-empty integer tensor (n, h, w), got "
                             f"{indices!r:.60}")
        if indices.min() < 0 or indices.max() >= self.n_codes:
            raise ValueError(f"indices: codes must lie in 0..{self.n_codes - 1}")
        return self.codebook[indices].permute(0, 3, 1, 2)

    def decode(self, z_q: Tensor) -> Tensor:
        """Quantised latents (n, D, 4, 4) -> Bernoulli logits (n, 1, 8, 8)."""
        z_q = as_tensor(z_q, "z_q", like=self, shape=(None, self.code_dim, *self.grid))
        return self.decoder(z_q.flatten(1))

    @torch.no_grad()
    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code map (n, 4, 4) -> pixel means (n, 1, 8, 8) in [0, 1]."""
        return torch.sigmoid(self.decode(self.embed(indices)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns (logits (n,1,8,8), z_e, z_q, indices (n,4,4)); logits use the straight-through z."""
        z_e = self.encode(x)
        z_q, indices = self.quantize(z_e)
        z_st = z_e + (z_q - z_e).detach()  # forward: z_q; backward: identity onto z_e
        return self.decode(z_st), z_e, z_q, indices

    def loss_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Per-example terms: 'recon' (-log p(x|z_q)), 'codebook', 'commitment'; and 'indices'."""
        x = _check_images(x, like=self)
        logits, z_e, z_q, indices = self.forward(x)
        return {
            "recon": -bernoulli_log_prob(logits, x),
            "codebook": (z_e.detach() - z_q).pow(2).flatten(1).sum(1),
            "commitment": (z_e - z_q.detach()).pow(2).flatten(1).sum(1),
            "indices": indices,
            "z_e": z_e,
        }

    def loss(self, x: Tensor, generator: GeneratorLike = None) -> Tensor:
        """Batch mean of recon + codebook + commitment * commitment-term; monitors the codebook.

        ``generator`` (a ``torch.Generator``, an int seed or None: a seed drawn from torch's
        global state) picks the encoder outputs on which dead codes are re-initialised.
        """
        t = self.loss_terms(x)
        if self.training:
            self._monitor_codebook(t["indices"], t["z_e"].detach(), generator)
        return (t["recon"] + t["codebook"] + self.commitment * t["commitment"]).mean()

    @torch.no_grad()
    def _monitor_codebook(self, indices: Tensor, z_e: Tensor,
                          generator: GeneratorLike = None) -> None:
        counts = torch.bincount(indices.flatten(), minlength=self.n_codes).float()
        self.usage.mul_(self.usage_decay).add_((1 - self.usage_decay) * counts / counts.sum())
        self.history["perplexity"].append(perplexity(indices, self.n_codes))
        dead = torch.nonzero(self.usage < self.dead_threshold / self.n_codes).flatten()
        if len(dead):
            flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            g = as_generator(generator, "generator", device=flat.device)
            pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device, generator=g)
            self.codebook.data[dead] = flat[pick]
            # Give revived codes an average usage, so they have time to win data.
            self.usage[dead] = 1.0 / self.n_codes
        self.history["reset_codes"].append(float(len(dead)))

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """The code map of each image: x (n, 1, 8, 8) -> indices (n, 4, 4)."""
        return self.quantize(self.encode(x))[1]

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel means decoded from the quantised codes: (n, 1, 8, 8)."""
        return torch.sigmoid(self.forward(x)[0])


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    n_steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    generator: GeneratorLike = None,
    desc: str | None = None,
    show_progress: bool = True,
) -> list[float]:
    """Train an :class:`Autoencoder`, :class:`VAE`, :class:`ConditionalVAE` or :class:`VQVAE`.

    Minimises ``model.loss(batch)`` (``model.loss(batch, labels)`` for a conditional model)
    with Adam through :func:`coursekit.train` (tqdm bar), on mini-batches drawn from
    ``images`` (n, 1, 8, 8) [and ``labels`` (n,)].

    Args:
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state, which ``seed_everything`` seeds). It draws the mini-batches and,
            for a VAE, the reparameterization noise: the same seed gives the same run.
            (No global generator is reseeded.)

    Returns:
        the loss after each step (list of floats).
    """
    if not isinstance(model, nn.Module) or not callable(getattr(model, "loss", None)):
        raise TypeError(f"model: expected a coursekit.vae model with a loss(), got {type(model).__name__}")
    images = _check_images(images, "images", like=model)
    conditional = getattr(model, "n_classes", 0) > 0
    if conditional:
        if labels is None:
            raise ValueError("labels: a conditional model needs the training labels")
        labels = _check_labels(labels, images.shape[0], model.n_classes)
    elif labels is not None:
        raise ValueError("labels: this model is unconditional; pass labels=None")
    _, device = module_dtype_device(model)
    g = as_generator(generator, "generator", device=device)
    # utils.train shuffles on the CPU; on a GPU its generator is seeded from ours.
    shuffle = g if device.type == "cpu" else torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=g, device=device).item()))
    # The VAEs draw their noise from g; a deterministic model (autoencoder, VQ-VAE) has none.
    kw = {"generator": g} if "generator" in inspect.signature(model.loss).parameters else {}
    if conditional:
        labels = labels.to(device)
    model.train()
    index = torch.arange(images.shape[0])

    def loss_fn(batch_idx: Tensor) -> Tensor:
        if conditional:
            return model.loss(images[batch_idx], labels[batch_idx], **kw)
        return model.loss(images[batch_idx], **kw)

    history = train(
        loss_fn, model.parameters(), index, n_steps=n_steps, batch_size=batch_size, lr=lr,
        generator=shuffle, desc=desc or type(model).__name__, show_progress=show_progress,
    )
    model.eval()
    return history


# ----------------------------------------------------------------------------------------------
# A convolutional VQ-VAE: a spatial map of codes
# ----------------------------------------------------------------------------------------------


class ConvVQVAE(VQVAE):
    """A :class:`VQVAE` whose encoder and decoder are convolutional (van den Oord et al., 2017).

    The MLP of :class:`VQVAE` outputs 16 vectors that are merely *read* as a 4x4 grid; here
    code ``(r, c)`` is computed from an image patch around pixels ``(2r, 2c)`` only, so the
    code map is spatial: neighbouring codes describe neighbouring patches, which is what an
    autoregressive prior over the map (a PixelCNN) exploits.

    Encoder, x: (n, 1, 8, 8) -> z_e: (n, D, 4, 4):
        conv 3x3 (1 -> hidden), ReLU, conv 4x4 stride 2 pad 1 (8x8 -> 4x4), ReLU,
        conv 1x1 (hidden -> D).  Code (r, c) sees pixel rows/cols 2r-2 .. 2r+3 (6x6).
    Decoder, z_q: (n, D, 4, 4) -> logits: (n, 1, 8, 8):
        conv 3x3 (D -> hidden), ReLU, transposed conv 4x4 stride 2 pad 1 (4x4 -> 8x8),
        ReLU, conv 3x3 (hidden -> 1).

    Args:
        n_codes, code_dim, commitment, dead_threshold, usage_decay: as for :class:`VQVAE`.
        hidden: channels of the hidden convolutions.
    """

    def __init__(
        self, n_codes: int = 32, code_dim: int = 4, hidden: int = 16,
        commitment: float = 0.25, dead_threshold: float = 0.03, usage_decay: float = 0.95,
    ) -> None:
        super().__init__(n_codes, code_dim, (4, 4), (8,), commitment, dead_threshold,
                         usage_decay)
        hidden = check_positive_int(hidden, "hidden")
        d = self.code_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU(),             # (n, h, 8, 8)
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),  # (n, h, 4, 4)
            nn.Conv2d(hidden, d, 1),                                   # (n, D, 4, 4)
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(d, hidden, 3, padding=1), nn.ReLU(),             # (n, h, 4, 4)
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.ReLU(),  # 8x8
            nn.Conv2d(hidden, 1, 3, padding=1),                        # (n, 1, 8, 8)
        )

    def encode(self, x: Tensor) -> Tensor:
        """Continuous encoder outputs z_e: x (n, 1, 8, 8) -> (n, D, 4, 4), one per patch."""
        return self.encoder(_check_images(x, like=self))

    def decode(self, z_q: Tensor) -> Tensor:
        """Quantised code map (n, D, 4, 4) -> Bernoulli logits (n, 1, 8, 8)."""
        z_q = as_tensor(z_q, "z_q", like=self, shape=(None, self.code_dim, *self.grid))
        return self.decoder(z_q)
