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
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit.utils import train
from coursekit.validation import check_positive_int

#: Shape of one digit image, as returned by :func:`coursekit.data.load_digits`.
IMAGE_SHAPE: tuple[int, int, int] = (1, 8, 8)
N_CLASSES = 10
#: The encoder's log-variance is clamped to this range: exp(-10) ~ 4.5e-5 is a far smaller
#: posterior variance than any useful code needs, exp(6) ~ 400 far above the prior's 1; outside
#: it, exp(logvar) under/overflows or the KL gradient explodes.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 6.0
LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _check_images(x: Any, name: str = "x", shape: Sequence[int] = IMAGE_SHAPE) -> Tensor:
    """Check that ``x`` is a float tensor of shape (n, *shape) with finite values in [0, 1]."""
    shape = tuple(shape)
    expected = "(n, " + ", ".join(str(s) for s in shape) + ")"
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise ValueError(
            f"{name}: expected images of shape {expected} (the 8x8 digits of "
            f"coursekit.data.load_digits), got {tuple(x.shape)}"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(
            f"{name}: pixel values must lie in [0, 1] (Bernoulli decoder), got range "
            f"[{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    return x


def _check_labels(y: Any, n: int | None, n_classes: int, name: str = "labels") -> Tensor:
    """Check that ``y`` is an integer tensor of shape (n,) with entries in [0, n_classes)."""
    if not isinstance(y, Tensor):
        y = torch.as_tensor(y)
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


def _check_beta(beta: Any) -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta: expected a number >= 0, got {beta!r}") from None
    if not math.isfinite(b) or b < 0:
        raise ValueError(f"beta: expected a finite number >= 0, got {beta!r}")
    return b


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
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise ValueError("mu, logvar: expected torch tensors")
    if mu.shape != logvar.shape or mu.ndim == 0:
        raise ValueError(
            f"mu, logvar: expected two tensors of the same shape (..., d), got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    # expm1(logvar) - logvar = exp(logvar) - 1 - logvar without cancellation near logvar = 0.
    return 0.5 * (torch.expm1(logvar) - logvar + mu.pow(2)).sum(-1)


def gaussian_log_prob(z: Tensor, mu: Tensor | None = None, logvar: Tensor | None = None) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension.

    ``mu`` and ``logvar`` default to 0 (the standard normal prior). Shapes broadcast:
    z (..., d), mu and logvar (..., d) -> (...,).
    """
    if mu is None:
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    if logvar is None:
        logvar = torch.zeros_like(mu)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) of the Bernoulli decoder, summed over all pixels.

    Args:
        logits: (..., 1, 8, 8) decoder outputs (any trailing image shape).
        x: (..., 1, 8, 8) targets in [0, 1] (broadcast against ``logits``).

    Returns:
        (...,) minus the binary cross-entropy, computed from logits (stable for large |logits|).
    """
    logits, x = torch.broadcast_tensors(logits, x)
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
        in_features = math.prod(image_shape) + self.n_classes
        self.net = _mlp([in_features, *hidden, self.out_features])

    def forward(self, x: Tensor, y_onehot: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.n_classes:
            h = torch.cat([h, y_onehot], dim=1)
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
        if self.n_classes:
            z = torch.cat([z, y_onehot], dim=-1)
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
        return self.encoder(_check_images(x))

    def decode(self, z: Tensor) -> Tensor:
        """z (n, latent_dim) -> reconstructions x_hat (n, 1, 8, 8) in [0, 1]."""
        _check_latents(z, self.latent_dim)
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Per-example ``||x - g(f(x))||^2``: (n,)."""
        return (self.forward(x) - x).pow(2).flatten(1).sum(1)

    def loss(self, x: Tensor) -> Tensor:
        """Mean squared reconstruction error over the batch (a scalar to minimise)."""
        return self.reconstruction_error(x).mean()


def _check_latents(z: Any, latent_dim: int, name: str = "z") -> Tensor:
    if not isinstance(z, Tensor) or z.ndim < 1 or z.shape[-1] != latent_dim:
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{name}: expected latent codes of shape (n, {latent_dim}), got {got}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
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
        self.beta = _check_beta(beta)
        self.encoder = Encoder(2 * self.latent_dim, hidden, self.n_classes)
        self.decoder = Decoder(self.latent_dim, tuple(reversed(hidden)), self.n_classes)

    # beta is a property so that setting it later is validated too.
    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = _check_beta(value)

    # -- conditioning (used by ConditionalVAE; a plain VAE takes no labels) -------------------
    def _onehot(self, y: Tensor | None, n: int) -> Tensor | None:
        if self.n_classes == 0:
            if y is not None:
                raise ValueError("labels: this VAE is unconditional; use ConditionalVAE")
            return None
        if y is None:
            raise ValueError(f"labels: a ConditionalVAE needs labels of shape ({n},)")
        y = _check_labels(y, n, self.n_classes)
        return F.one_hot(y, self.n_classes).float()

    # -- the model ------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The encoder's Gaussian: x (n, 1, 8, 8) -> mu (n, d), logvar (n, d) (clamped)."""
        x = _check_images(x)
        h = self.encoder(x, self._onehot(y, x.shape[0]))
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's Bernoulli logits: z (..., n, d) -> logits (..., n, 1, 8, 8).

        ``sigmoid(decode(z))`` are the pixel means (the images one shows).
        """
        z = _check_latents(z, self.latent_dim)
        onehot = self._onehot(y, z.shape[-2]) if z.ndim >= 2 else self._onehot(y, 1)
        if onehot is not None and z.ndim > 2:
            onehot = onehot.expand(*z.shape[:-1], self.n_classes)
        return self.decoder(z, onehot)

    @staticmethod
    def reparameterize(
        mu: Tensor, logvar: Tensor, n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The reparameterization trick: ``z = mu + sigma * eps``, ``eps ~ N(0, I)``.

        Returns (n, d), or (n_samples, n, d) when ``n_samples`` is given. Gradients flow to
        ``mu`` and ``logvar`` because the randomness sits in ``eps`` only.
        """
        shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
        eps = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def elbo_terms(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The two terms of the ELBO, per example, with one reparameterized sample.

        Returns:
            log_px_z: (n,) single-sample estimate of ``E_q[log p_theta(x | z)]``;
            kl: (n,) closed-form ``KL(q_phi(z | x) || p(z))``.
        """
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar, generator=generator)
        return bernoulli_log_prob(self.decode(z, y), x), gaussian_kl(mu, logvar)

    def elbo(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Per-example ELBO (beta = 1): ``E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x)``.

        One reparameterized sample for the expectation, the KL in closed form. Shape (n,).
        """
        log_px_z, kl = self.elbo_terms(x, y, generator)
        return log_px_z - kl

    def loss(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """The training loss: batch mean of ``-E_q[log p(x|z)] + beta * KL`` (a scalar)."""
        log_px_z, kl = self.elbo_terms(x, y, generator)
        return (-log_px_z + self.beta * kl).mean()

    def iwae(
        self, x: Tensor, k: int, y: Tensor | None = None,
        generator: torch.Generator | None = None, chunk_size: int = 2**16,
    ) -> Tensor:
        """Importance-weighted bound (Burda et al., 2016), per example: shape (n,).

        ``IWAE_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)`` i.i.d.
        Its expectation increases with k, equals the ELBO's at k = 1 and tends to
        ``log p(x)``.  Computed with a running log-sum-exp over chunks of samples, so any k
        fits in memory.
        """
        k = check_positive_int(k, "k")
        mu, logvar = self.encode(x, y)
        n = x.shape[0]
        per_chunk = max(1, min(k, chunk_size // max(n, 1)))
        total = torch.full((n,), -math.inf, dtype=mu.dtype, device=mu.device)
        done = 0
        while done < k:
            m = min(per_chunk, k - done)
            z = self.reparameterize(mu, logvar, m, generator)  # (m, n, d)
            log_w = (
                bernoulli_log_prob(self.decode(z, y), x)  # log p(x | z)
                + gaussian_log_prob(z)  # log p(z)
                - gaussian_log_prob(z, mu, logvar)  # log q(z | x)
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
            raise ValueError(f"log_px_quadrature: latent_dim must be 1 or 2, got {self.latent_dim}")
        if self.n_classes:
            raise ValueError("log_px_quadrature: only for an unconditional VAE")
        x = _check_images(x).double().flatten(1)  # (n, 64)
        n_grid = check_positive_int(n_grid, "n_grid", minimum=2)
        t = torch.linspace(-limit, limit, n_grid, dtype=torch.float64)
        z = torch.cartesian_prod(*[t] * self.latent_dim).view(-1, self.latent_dim)  # (G, d)
        # A float64 copy of the decoder: the sum runs over up to 10^5 grid points.
        logits = copy.deepcopy(self.decoder).double()(z).flatten(1)  # (G, 64)
        # Bernoulli: x log s + (1 - x) log(1 - s) = x * logit + log sigmoid(-logit), so all
        # (grid point, image) pairs come from one matrix product.
        log_px_z = logits @ x.T + F.logsigmoid(-logits).sum(1, keepdim=True)  # (G, n)
        log_joint = log_px_z + gaussian_log_prob(z)[:, None]
        log_px = torch.logsumexp(log_joint, 0) + self.latent_dim * math.log(t[1] - t[0])
        return log_px.to(next(self.parameters()).dtype)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Pixel means decoded from the encoder's mean: (n, 1, 8, 8) in [0, 1]."""
        mu, _ = self.encode(x, y)
        return torch.sigmoid(self.decode(mu, y))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """New images: ``z ~ N(0, I)``, then the decoder's pixel means. Shape (n, 1, 8, 8).

        (Drawing Bernoulli pixels on top would give binary images; like most papers we show
        the means.)
        """
        if self.n_classes:
            raise ValueError("sample: a ConditionalVAE samples with sample(labels)")
        n = check_positive_int(n, "n")
        z = torch.randn(n, self.latent_dim, generator=generator)
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
    def sample(self, labels: Any, generator: torch.Generator | None = None) -> Tensor:  # type: ignore[override]
        """Images of the requested classes: labels (n,) ints -> pixel means (n, 1, 8, 8)."""
        labels = _check_labels(labels, None, self.n_classes)
        z = torch.randn(labels.shape[0], self.latent_dim, generator=generator)
        return torch.sigmoid(self.decode(z, labels))


def nearest_distance(images: Tensor, reference: Tensor) -> Tensor:
    """Euclidean distance from each image to its nearest image in ``reference``.

    A simple measure of how far generated images lie from the data manifold (and, when the
    distance is 0, of copying).  images (n, 1, 8, 8), reference (m, 1, 8, 8) -> (n,).
    """
    images, reference = _check_images(images, "images"), _check_images(reference, "reference")
    return torch.cdist(images.flatten(1), reference.flatten(1)).min(dim=1).values


# ----------------------------------------------------------------------------------------------
# VQ-VAE
# ----------------------------------------------------------------------------------------------


def perplexity(indices: Tensor, n_codes: int) -> float:
    """exp(entropy) of the empirical code histogram: the effective number of codes in use.

    Between 1 (one code used) and ``n_codes`` (all used equally often).
    """
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
        self.commitment = _check_beta(commitment)
        self.dead_threshold = float(dead_threshold)
        self.usage_decay = float(usage_decay)
        flat = self.code_dim * self.grid[0] * self.grid[1]
        self.encoder = Encoder(flat, hidden)
        self.decoder = Decoder(flat, tuple(reversed(hidden)))
        self.codebook = nn.Parameter(torch.randn(self.n_codes, self.code_dim))
        self.register_buffer("usage", torch.full((self.n_codes,), 1.0 / self.n_codes))
        self.history: dict[str, list[float]] = {"perplexity": [], "reset_codes": []}

    def encode(self, x: Tensor) -> Tensor:
        """Continuous encoder outputs z_e: x (n, 1, 8, 8) -> (n, D, 4, 4)."""
        return self.encoder(_check_images(x)).view(-1, self.code_dim, *self.grid)

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest-code quantization of z_e (n, D, h, w).

        Returns:
            z_q: (n, D, h, w) the chosen codebook vectors (no straight-through here);
            indices: (n, h, w) int64, the index of the nearest code at each position.
        """
        if z_e.ndim != 4 or z_e.shape[1] != self.code_dim:
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
        if indices.dtype.is_floating_point or indices.ndim != 3:
            raise ValueError(f"indices: expected an integer tensor (n, h, w), got {indices.dtype} "
                             f"{tuple(indices.shape)}")
        if indices.min() < 0 or indices.max() >= self.n_codes:
            raise ValueError(f"indices: codes must lie in 0..{self.n_codes - 1}")
        return self.codebook[indices].permute(0, 3, 1, 2)

    def decode(self, z_q: Tensor) -> Tensor:
        """Quantised latents (n, D, 4, 4) -> Bernoulli logits (n, 1, 8, 8)."""
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
        logits, z_e, z_q, indices = self.forward(x)
        return {
            "recon": -bernoulli_log_prob(logits, x),
            "codebook": (z_e.detach() - z_q).pow(2).flatten(1).sum(1),
            "commitment": (z_e - z_q.detach()).pow(2).flatten(1).sum(1),
            "indices": indices,
            "z_e": z_e,
        }

    def loss(self, x: Tensor) -> Tensor:
        """Batch mean of recon + codebook + commitment * commitment-term; monitors the codebook."""
        t = self.loss_terms(x)
        if self.training:
            self._monitor_codebook(t["indices"], t["z_e"].detach())
        return (t["recon"] + t["codebook"] + self.commitment * t["commitment"]).mean()

    @torch.no_grad()
    def _monitor_codebook(self, indices: Tensor, z_e: Tensor) -> None:
        counts = torch.bincount(indices.flatten(), minlength=self.n_codes).float()
        self.usage.mul_(self.usage_decay).add_((1 - self.usage_decay) * counts / counts.sum())
        self.history["perplexity"].append(perplexity(indices, self.n_codes))
        dead = torch.nonzero(self.usage < self.dead_threshold / self.n_codes).flatten()
        if len(dead):
            flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            pick = torch.randint(0, flat.shape[0], (len(dead),), device=flat.device)
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
    seed: int = 0,
    desc: str | None = None,
    show_progress: bool = True,
) -> list[float]:
    """Train an :class:`Autoencoder`, :class:`VAE`, :class:`ConditionalVAE` or :class:`VQVAE`.

    Minimises ``model.loss(batch)`` (``model.loss(batch, labels)`` for a conditional model)
    with Adam through :func:`coursekit.train` (tqdm bar), on mini-batches drawn from
    ``images`` (n, 1, 8, 8) [and ``labels`` (n,)].  The reparameterization noise comes from
    torch's global generator, seeded with ``seed`` here so that a run is reproducible.

    Returns:
        the loss after each step (list of floats).
    """
    images = _check_images(images, "images")
    conditional = getattr(model, "n_classes", 0) > 0
    if conditional:
        if labels is None:
            raise ValueError("labels: a conditional model needs the training labels")
        labels = _check_labels(labels, images.shape[0], model.n_classes)
    elif labels is not None:
        raise ValueError("labels: this model is unconditional; pass labels=None")
    torch.manual_seed(seed)
    model.train()
    index = torch.arange(images.shape[0])

    def loss_fn(batch_idx: Tensor) -> Tensor:
        if conditional:
            return model.loss(images[batch_idx], labels[batch_idx])
        return model.loss(images[batch_idx])

    history = train(
        loss_fn, model.parameters(), index, n_steps=n_steps, batch_size=batch_size, lr=lr,
        generator=torch.Generator().manual_seed(seed), desc=desc or type(model).__name__,
        show_progress=show_progress,
    )
    model.eval()
    return history
