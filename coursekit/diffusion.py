"""Diffusion models: the exact noised Gaussian mixture, schedules, samplers, likelihoods, networks.

Lecture 3 of the slides ("Diffusion models: DDPM to EDM, score-based and classifier guidance").
Everything is parametrised by the noise level sigma of the **variance-exploding** (VE) form

    x = y + sigma n,   y ~ p_data,  n ~ N(0, I),   p_sigma = p_data * N(0, sigma^2 I),

which is the form of Karras et al. (2022, "EDM"). The DDPM chain of Ho et al. (2020) is the
same family seen through the change of variables x_VE = x_t / sqrt(abar_t),
sigma_t^2 = (1 - abar_t) / abar_t (:func:`vp_sigmas`, :func:`eps_from_denoiser`).

- :class:`NoisedGaussianMixture`: when p_data is a Gaussian mixture, p_sigma is again one
  (component k becomes N(mu_k, Sigma_k + sigma^2 I)), so its log-density, its score and its
  ideal denoiser D(x; sigma) = E[y | x] (Tweedie) are known exactly. Every sampler can be run
  with the exact score first: its error is then pure discretisation error.
- Schedules: :func:`linear_betas` (DDPM), :func:`edm_sigmas` (EDM eq. 5).
- Samplers: :func:`ddpm_sample` (ancestral, Ho et al. Algorithm 2), :func:`ddim_sample`
  (Song, Meng & Ermon 2021), :func:`euler_sample` (probability-flow ODE, Euler),
  :func:`heun_sample` (EDM Algorithm 2, with churn), :func:`euler_maruyama` (reverse SDE),
  :func:`langevin_corrector` (predictor-corrector, Song et al. 2021).
- Sample quality: :func:`grid_tv` (total variation between the samples' histogram and the
  exact cell probabilities, :func:`grid_cell_probabilities`) and its floor for exact samples
  of the same size, :func:`grid_tv_floor`: a divergence that collapse cannot fool.
- :func:`pf_ode_log_likelihood`: log p_sigma_min(x) by the instantaneous change of variables
  along the probability-flow ODE (exact divergence by autograd).
- Networks and losses: :class:`NoiseConditionalMLP` (a small MLP with a noise embedding and an
  optional class label), :class:`EDMDenoiser` (EDM preconditioning), :func:`edm_loss`
  (weighting and log-normal sigma), :class:`DDPMEpsModel` and :func:`ddpm_loss`
  (epsilon-prediction), :func:`guided_denoiser` (classifier-free guidance).

Conventions: a *denoiser* is a callable ``denoiser(x, sigma)`` with x: (n, ...) and sigma a
float (or an (n,) tensor), returning the estimate of y with x's shape; the probability-flow ODE
in sigma is dx/dsigma = (x - D(x; sigma)) / sigma. An *epsilon model* is ``eps_model(x, t)``
with t the 0-based integer index into ``betas``.

References: Sohl-Dickstein et al. 2015; Ho et al. 2020; Song & Ermon 2019; Song et al. 2021;
Song, Meng & Ermon 2021; Karras et al. 2022; Dhariwal & Nichol 2021; Ho & Salimans 2022.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

from coursekit.divergences import total_variation
from coursekit.gmm import GaussianMixture
from coursekit.numerics import LOG_2PI
from coursekit.validation import (
    GeneratorLike,
    RngLike,
    as_generator,
    as_rng,
    as_tensor,
    check_array,
    check_callable,
    check_finite,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

Denoiser = Callable[[torch.Tensor, Any], torch.Tensor]
EpsModel = Callable[[torch.Tensor, Any], torch.Tensor]


# --------------------------------------------------------------------------------------
# The exact noised Gaussian mixture
# --------------------------------------------------------------------------------------


class NoisedGaussianMixture:
    """A Gaussian mixture p(y) = sum_k pi_k N(y | mu_k, Sigma_k) seen through VE noise.

    For x = y + sigma n with n ~ N(0, I) independent of y,

        p_sigma(x) = sum_k pi_k N(x | mu_k, Sigma_k + sigma^2 I),

    so the log-density, the score grad_x log p_sigma(x) and the ideal denoiser

        D(x; sigma) = E[y | x] = x + sigma^2 grad_x log p_sigma(x)      (Tweedie's formula)

    are exact. ``sigma = 0`` is the data distribution itself (Lecture 1's mixture).

    Implementation: each Sigma_k is validated (symmetric positive definite, by Cholesky, in
    :class:`coursekit.gmm.GaussianMixture`) and diagonalised once, Sigma_k = U_k diag(lam_k)
    U_k^T; then Sigma_k + sigma^2 I = U_k diag(lam_k + sigma^2) U_k^T for every sigma, so no
    factorisation is repeated per noise level and everything stays differentiable in x and
    sigma. Mixture sums use log-sum-exp.

    The methods accept NumPy arrays (computed in float64, NumPy returned) or torch tensors
    (computed in the tensor's dtype and device, tensors returned, differentiable).

    Args:
        weights: (K,) probability vector pi.
        means: (K, d) means mu_k.
        covariances: (K, d, d) symmetric positive-definite Sigma_k.
    """

    def __init__(self, weights: Any, means: Any, covariances: Any) -> None:
        self.mixture = GaussianMixture(weights, means, covariances)  # validates everything
        self.weights = self.mixture.weights
        self.means = self.mixture.means
        self.covariances = self.mixture.covariances
        lam, u = np.linalg.eigh(self.covariances)  # (K, d), (K, d, d): Sigma_k = U diag(lam) U^T
        self._lam = torch.from_numpy(np.clip(lam, 0.0, None))
        self._u = torch.from_numpy(u)
        self._mu = torch.from_numpy(self.means)
        with np.errstate(divide="ignore"):
            self._logw = torch.from_numpy(np.log(self.weights))

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """d, the dimension of the data space."""
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"NoisedGaussianMixture(n_components={self.n_components}, dim={self.dim})"

    def subset(self, components: Sequence[int] | int) -> NoisedGaussianMixture:
        """The mixture restricted to some components, weights renormalised: p(y | class).

        With one class per component (or a set of components per class), this is the
        class-conditional distribution used for guidance.
        """
        idx = np.atleast_1d(np.asarray(components))
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"components: expected component indices, got {components!r}")
        if idx.min() < 0 or idx.max() >= self.n_components:
            raise ValueError(
                f"components: indices must lie in [0, {self.n_components - 1}], got {idx.tolist()}"
            )
        w = self.weights[idx]
        if w.sum() <= 0:
            raise ValueError("components: the selected components all have weight 0")
        return NoisedGaussianMixture(w / w.sum(), self.means[idx], self.covariances[idx])

    # -- conversions -----------------------------------------------------------------------

    def _inputs(self, x: Any, sigma: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """x -> (n, d) tensor, sigma -> (n,) tensor of the same dtype/device; NumPy flag."""
        is_numpy = not isinstance(x, torch.Tensor)
        if is_numpy:
            xt = as_tensor(x, "x", dtype=torch.float64, shape=(None, self.dim))
        else:
            xt = as_tensor(x, "x", shape=(None, self.dim))
        n = xt.shape[0]
        if isinstance(sigma, torch.Tensor):
            s = sigma.to(dtype=xt.dtype, device=xt.device)
        else:
            try:
                arr = np.asarray(check_array(sigma, "sigma"), dtype=np.float64)
            except ValueError as err:
                raise ValueError(
                    f"sigma: expected a number >= 0 or one per row of x, shape ({n},): {err}"
                ) from None
            s = torch.as_tensor(arr, dtype=xt.dtype, device=xt.device)
        if s.ndim != 0 and s.shape != (n,):
            raise ValueError(
                f"sigma: expected a number or one value per row of x, shape ({n},), "
                f"got shape {tuple(s.shape)}"
            )
        if not bool(torch.isfinite(s.detach()).all()) or bool((s.detach() < 0).any()):
            raise ValueError("sigma: noise levels must be finite and >= 0")
        return xt, s, is_numpy

    @staticmethod
    def _out(t: torch.Tensor, is_numpy: bool) -> Any:
        return t.detach().cpu().numpy() if is_numpy else t

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kw = {"dtype": like.dtype, "device": like.device}
        return self._logw.to(**kw), self._mu.to(**kw), self._u.to(**kw), self._lam.to(**kw)

    def _terms(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """log pi_k N(x | mu_k, Sigma_k + s^2 I): (n, K); projections z and variances."""
        logw, mu, u, lam = self._params(x)
        diff = x[:, None, :] - mu[None]  # (n, K, d)      x - mu_k
        z = torch.einsum("nkd,kde->nke", diff, u)  # (n, K, d)      U_k^T (x - mu_k)
        # One noise level for all rows (the samplers' case): (1, K, d), else (n, K, d).
        s2 = (s * s).reshape(-1, 1, 1)  # (1 or n, 1, 1)
        var = lam[None] + s2  # (1|n, K, d)    eigenvalues of Sigma_k + s^2 I
        if bool((var.detach() <= 0).any()):
            raise ValueError(
                "sigma: sigma = 0 needs positive-definite covariances (a singular component "
                "has no density); use sigma > 0"
            )
        maha = (z * z / var).sum(-1)  # (n, K)         Mahalanobis distance
        logdet = torch.log(var).sum(-1)  # (1|n, K)       log |Sigma_k + s^2 I|
        log_joint = logw - 0.5 * (maha + logdet + self.dim * LOG_2PI)  # (n, K)
        return log_joint, z, var, u

    # -- densities -------------------------------------------------------------------------

    def log_joint(self, x: Any, sigma: Any = 0.0) -> Any:
        """(n, K) terms log pi_k + log N(x_n | mu_k, Sigma_k + sigma_n^2 I).

        Args:
            x: (n, d) points. sigma: a number >= 0 or (n,) noise levels.
        """
        xt, s, is_numpy = self._inputs(x, sigma)
        return self._out(self._terms(xt, s)[0], is_numpy)

    def log_prob(self, x: Any, sigma: Any = 0.0) -> Any:
        """(n,) log p_sigma(x_n) = LSE_k(log pi_k + log N(x_n | mu_k, Sigma_k + sigma_n^2 I))."""
        xt, s, is_numpy = self._inputs(x, sigma)
        return self._out(torch.logsumexp(self._terms(xt, s)[0], dim=1), is_numpy)

    def responsibilities(self, x: Any, sigma: Any = 0.0) -> Any:
        """(n, K) posteriors P(k | x_n) under p_sigma: the exact classifier of a labelled mixture."""
        xt, s, is_numpy = self._inputs(x, sigma)
        return self._out(torch.softmax(self._terms(xt, s)[0], dim=1), is_numpy)

    def class_log_prob(self, x: Any, sigma: Any, classes: Sequence[int] | int) -> Any:
        """(n,) log P(class | x_n) at noise level sigma, a class being a set of components.

        Its gradient in x is the exact classifier-guidance term (Dhariwal & Nichol 2021).
        """
        comps = np.atleast_1d(np.asarray(classes))
        if (comps.ndim != 1 or comps.size == 0 or not np.issubdtype(comps.dtype, np.integer)
                or comps.min() < 0 or comps.max() >= self.n_components):
            raise ValueError(
                f"classes: expected component indices in [0, {self.n_components - 1}], "
                f"got {classes!r}"
            )
        xt, s, is_numpy = self._inputs(x, sigma)
        lj = self._terms(xt, s)[0]  # (n, K)
        idx = torch.as_tensor(comps, device=xt.device)
        out = torch.logsumexp(lj[:, idx], dim=1) - torch.logsumexp(lj, dim=1)
        return self._out(out, is_numpy)

    def score(self, x: Any, sigma: Any = 0.0) -> Any:
        """(n, d) exact score grad_x log p_sigma(x).

        grad log p_sigma(x) = sum_k gamma_k(x) (-(Sigma_k + sigma^2 I)^{-1} (x - mu_k)),
        gamma the responsibilities under p_sigma.
        """
        xt, s, is_numpy = self._inputs(x, sigma)
        log_joint, z, var, u = self._terms(xt, s)
        gamma = torch.softmax(log_joint, dim=1)  # (n, K)         responsibilities
        comp = -torch.einsum("nke,kde->nkd", z / var, u)  # (n, K, d)      component scores
        return self._out(torch.einsum("nk,nkd->nd", gamma, comp), is_numpy)

    def denoise(self, x: Any, sigma: Any) -> Any:
        """(n, d) ideal denoiser D(x; sigma) = E[y | x] = x + sigma^2 grad log p_sigma(x) (Tweedie).

        Computed as sum_k gamma_k(x) E[y | x, k] with
        E[y | x, k] = mu_k + Sigma_k (Sigma_k + sigma^2 I)^{-1} (x - mu_k).
        """
        xt, s, is_numpy = self._inputs(x, sigma)
        log_joint, z, var, u = self._terms(xt, s)
        gamma = torch.softmax(log_joint, dim=1)  # (n, K)
        lam = self._params(xt)[3]  # (K, d)         eigenvalues of Sigma_k
        post = torch.einsum("nke,kde->nkd", z * lam / var, u) + self._params(xt)[1]  # (n, K, d)
        return self._out(torch.einsum("nk,nkd->nd", gamma, post), is_numpy)

    def sample(
        self, n: int, sigma: Any = 0.0, *, rng: RngLike = None, return_labels: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Draw x = y + sigma n, y from the mixture (Algorithm 3 of Lecture 1), n ~ N(0, I).

        Args:
            n: number of points.
            sigma: a number >= 0 or (n,) noise levels.
            rng: NumPy Generator, int seed or None.
            return_labels: also return the (n,) component of each point.

        Returns:
            x: (n, d) float64 array (and the labels).
        """
        n = check_positive_int(n, "n")
        rng = as_rng(rng, "rng")
        s = check_array(sigma, "sigma")
        if s.ndim not in (0, 1) or (s.ndim == 1 and s.shape != (n,)):
            raise ValueError(f"sigma: expected a number or shape ({n},), got shape {s.shape}")
        if np.any(s < 0):
            raise ValueError("sigma: noise levels must be >= 0")
        y, labels = self.mixture.sample(n, rng=rng)
        x = y + np.reshape(s, (-1, 1)) * rng.standard_normal(y.shape)
        return (x, labels) if return_labels else x


def example_mixture() -> NoisedGaussianMixture:
    """The book's 2-D test mixture for Lecture 3: six components, one per class.

    Five anisotropic Gaussians on a ring of radius 3 plus a round one at the centre, unequal
    weights (0.1 to 0.3) and component scales from 0.15 to 0.6: separated modes (what makes
    sampling hard) and thin directions (what makes discretisation error visible).
    """
    angles = np.arange(5) * 2 * np.pi / 5 + np.pi / 2
    means = np.concatenate([3.0 * np.stack([np.cos(angles), np.sin(angles)], 1), [[0.0, 0.0]]])
    covs = []
    for a, (long, short) in zip(angles, [(0.6, 0.15), (0.5, 0.2), (0.6, 0.15), (0.4, 0.3),
                                         (0.5, 0.15)], strict=False):
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # tangent = long axis
        covs.append(r @ np.diag([short**2, long**2]) @ r.T)
    covs.append(0.3**2 * np.eye(2))
    weights = np.array([0.25, 0.15, 0.1, 0.2, 0.1, 0.2])
    return NoisedGaussianMixture(weights, means, np.stack(covs))


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """(T,) float64 linear schedule beta_t of Ho et al. (2020), beta_0 = beta_start .. beta_end."""
    T = check_positive_int(T, "T")
    b0, b1 = check_positive(beta_start, "beta_start"), check_positive(beta_end, "beta_end")
    if not (b0 < 1 and b1 < 1):
        raise ValueError(f"beta_start, beta_end: expected values in (0, 1), got {b0}, {b1}")
    return torch.linspace(b0, b1, T, dtype=torch.float64)


def _check_betas(betas: Any) -> torch.Tensor:
    b = as_tensor(betas, "betas", dtype=torch.float64, ndim=1, detach=True)
    if bool(((b <= 0) | (b >= 1)).any()):
        raise ValueError("betas: every beta_t must lie in (0, 1)")
    return b


def alpha_bars(betas: Any) -> torch.Tensor:
    """(T,) abar_t = prod_{s <= t} (1 - beta_s), float64."""
    return torch.cumprod(1.0 - _check_betas(betas), dim=0)


def vp_sigmas(betas: Any) -> torch.Tensor:
    """(T,) VE noise levels of the DDPM steps: sigma_t = sqrt((1 - abar_t) / abar_t).

    x_t = sqrt(abar_t) (x_0 + sigma_t eps), so x_t / sqrt(abar_t) is the VE variable.
    """
    ab = alpha_bars(betas)
    return torch.sqrt((1.0 - ab) / ab)


def edm_sigmas(
    n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> torch.Tensor:
    """(n_steps + 1,) float64 noise levels of Karras et al. (2022), eq. 5, then a final 0.

    sigma_i = (sigma_max^{1/rho} + i/(N-1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho,
    i = 0 .. N-1, so sigma_0 = sigma_max and sigma_{N-1} = sigma_min; sigma_N = 0.
    ``n_steps = 1`` gives [sigma_max, 0].
    """
    n = check_positive_int(n_steps, "n_steps")
    lo, hi = check_positive(sigma_min, "sigma_min"), check_positive(sigma_max, "sigma_max")
    if lo >= hi:
        raise ValueError(f"sigma_min: must be < sigma_max, got {lo} >= {hi}")
    rho = check_positive(rho, "rho")
    if n == 1:
        return torch.tensor([hi, 0.0], dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64)
    # eq. 5 with sigma_max^{1/rho} factored out: hi * (1 + i/(N-1) ((lo/hi)^{1/rho} - 1))^rho,
    # so that a small rho cannot overflow sigma_max^{1/rho}
    s = hi * (1 + i / (n - 1) * ((lo / hi) ** (1 / rho) - 1)) ** rho
    s[0], s[-1] = hi, lo  # exact endpoints (the power can be off by one ulp)
    return torch.cat([s, s.new_zeros(1)])


def _check_sigmas(sigmas: Any) -> list[float]:
    s = as_tensor(sigmas, "sigmas", dtype=torch.float64, ndim=1, detach=True)
    if s.numel() < 2:
        raise ValueError(f"sigmas: expected at least 2 noise levels, got {s.numel()}")
    if bool((s < 0).any()) or bool((s[1:] >= s[:-1]).any()):
        raise ValueError("sigmas: expected strictly decreasing noise levels >= 0 (e.g. edm_sigmas)")
    return [float(v) for v in s]


# --------------------------------------------------------------------------------------
# DDPM / VP helpers
# --------------------------------------------------------------------------------------


def _prepare_x(x: Any, model: Any, name: str = "denoiser") -> torch.Tensor:
    check_callable(model, name)
    like = model if isinstance(model, nn.Module) else None
    if like is None:
        owner = getattr(model, "__self__", None)  # a bound method of a Module
        like = owner if isinstance(owner, nn.Module) else None
    return as_tensor(x, "x", like=like, detach=True)


def _fits(x: torch.Tensor, net: Any, name: str) -> torch.Tensor:
    # The caller's batch must fit a NoiseConditionalMLP's ``dim`` (else its forward names "x").
    dim = getattr(net, "dim", None)
    if dim is not None and x[0].numel() != dim:
        raise ValueError(f"{name}: expected rows of {dim} values, got shape {tuple(x.shape)}")
    return x


def _randn(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)


def _check_out(out: Any, x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(np.asarray(out), dtype=x.dtype, device=x.device)
    if out.shape != x.shape:
        raise ValueError(f"{name}: returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name}: returned NaN or infinite values")
    return out


def eps_from_denoiser(denoiser: Denoiser, betas: Any) -> EpsModel:
    """An epsilon model eps(x_t, t) for the DDPM chain from a VE denoiser D(x; sigma).

    With x_VE = x_t / sqrt(abar_t) and sigma_t^2 = (1 - abar_t) / abar_t,
    eps = (x_VE - D(x_VE; sigma_t)) / sigma_t = -sigma_t grad log p_sigma_t(x_VE).
    ``t`` is an int or an (n,) integer tensor.
    """
    check_callable(denoiser, "denoiser")
    sig = vp_sigmas(betas)
    ab = alpha_bars(betas)

    def eps_model(x: torch.Tensor, t: Any) -> torch.Tensor:
        if isinstance(t, torch.Tensor) and t.ndim == 1:
            s = sig.to(x.device)[t.long()].to(x.dtype)  # (n,)
            shape = (-1,) + (1,) * (x.ndim - 1)
            xv = x / ab.to(x.device)[t.long()].to(x.dtype).sqrt().view(shape)
            return (xv - denoiser(xv, s)) / s.view(shape)
        t = int(t)
        s, a = float(sig[t]), float(ab[t])
        xv = x / math.sqrt(a)
        return (xv - denoiser(xv, s)) / s

    return eps_model


def q_sample(x0: Any, t: Any, betas: Any, *, generator: GeneratorLike = None) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. eq. 4).

    Args:
        x0: (n, ...) clean data. t: an int or (n,) integer steps (0-based). betas: (T,).
    """
    x0 = as_tensor(x0, "x0")
    ab = alpha_bars(betas).to(device=x0.device, dtype=x0.dtype)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    steps = as_tensor(t, "t", dtype=torch.float64, ndim=(0, 1), min_rows=0, detach=True)
    if bool(((steps != steps.round()) | (steps < 0) | (steps >= len(ab))).any()) or (
            steps.numel() not in (1, len(x0))):  # never wrapped (-1) nor truncated (2.7)
        raise ValueError(f"t: expected an int or one integer step in [0, {len(ab) - 1}] per "
                         f"row of x0 ({len(x0)}), got {t!r:.60}")
    a = ab[steps.long().to(x0.device)]
    a = a.view(shape) if a.ndim == 1 else a
    g = as_generator(generator, "generator", device=x0.device)
    return a.sqrt() * x0 + (1 - a).sqrt() * _randn(x0, g)


@torch.no_grad()
def ddpm_sample(
    eps_model: EpsModel,
    x: Any,
    betas: Any,
    *,
    variance: str = "beta",
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Ancestral sampling of DDPM (Ho et al. 2020, Algorithm 2), from x = x_T to x_0.

    For t = T-1, ..., 0 (0-based):
        x <- (x - beta_t / sqrt(1 - abar_t) eps(x, t)) / sqrt(alpha_t) + s_t z,
    with z ~ N(0, I) and no noise at t = 0; s_t^2 = beta_t (``variance="beta"``) or the
    posterior variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (``"posterior"``).

    Args:
        eps_model: eps_model(x, t) with t a Python int, returns the predicted noise (x's shape).
        x: (n, ...) starting points x_T (usually N(0, I)).
        betas: (T,) schedule (:func:`linear_betas`).
        variance: "beta" or "posterior".
        generator: torch generator for the noise.

    Returns:
        (n, ...) samples x_0; T model calls.
    """
    x = _prepare_x(x, eps_model, "eps_model")
    b = _check_betas(betas)
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance: expected 'beta' or 'posterior', got {variance!r}")
    g = as_generator(generator, "generator", device=x.device)
    ab = torch.cumprod(1 - b, 0)
    for t in range(len(b) - 1, -1, -1):
        eps = _check_out(eps_model(x, t), x, "eps_model")
        beta, a = float(b[t]), float(ab[t])
        x = (x - beta / math.sqrt(1 - a) * eps) / math.sqrt(1 - beta)  # posterior mean
        if t > 0:
            var = beta if variance == "beta" else beta * (1 - float(ab[t - 1])) / (1 - a)
            x = x + math.sqrt(var) * _randn(x, g)
    return x


def ddim_timesteps(T: int, n_steps: int, spacing: str = "trailing") -> list[int]:
    """The n_steps model steps (0-based, decreasing) that DDIM visits out of T.

    ``"trailing"``: round(T - i T / n) - 1 for i = 0 .. n-1 (halves rounded up), starting at
    T - 1 (the step x_T belongs to) and ending at round(T / n) - 1 >= 0;
    ``"leading"``: the original 0, T//n, 2 T//n, ... reversed, which starts at T - T//n and
    never sees the last steps (a mismatch with x_T ~ N(0, I); Lin et al. 2024).

    Both are computed in integer arithmetic: a float ``arange(T, 0, -T / n)`` accumulates
    rounding and, for some n (61, 103, 121, ... of T = 1000), yields one more value, -1.
    """
    T = check_positive_int(T, "T")
    n = check_positive_int(n_steps, "n_steps")
    if n > T:
        raise ValueError(f"n_steps: expected at most T = {T} steps, got {n}")
    if spacing == "trailing":
        # round(T (n - i) / n) = floor((2 T (n - i) + n) / (2 n)), exactly, in integers; the
        # values are >= T/n >= 1 apart, so they stay strictly decreasing after rounding.
        ts = [(2 * T * (n - i) + n) // (2 * n) - 1 for i in range(n)]
    elif spacing == "leading":
        ts = (np.arange(n) * (T // n))[::-1]
    else:
        raise ValueError(f"spacing: expected 'trailing' or 'leading', got {spacing!r}")
    return [int(v) for v in ts]


@torch.no_grad()
def ddim_sample(
    eps_model: EpsModel,
    x: Any,
    betas: Any,
    n_steps: int,
    *,
    eta: float = 0.0,
    spacing: str = "trailing",
    final_alpha_bar_one: bool = True,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """DDIM sampling (Song, Meng & Ermon 2021, eq. 12) with ``n_steps`` model calls.

    At step t with previous step t' (next in the list, or "-1" after the last one):
        x0_hat = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t),
        s = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t'),
        x <- sqrt(abar_t') x0_hat + sqrt(1 - abar_t' - s^2) eps + s z.
    After the last model step abar_t' = 1 (the output is x0_hat itself); with
    ``final_alpha_bar_one=False`` it is abar_0 instead (the pitfall: the result is then still
    at the noise level of step 0). eta = 0 is deterministic; eta = 1 with n_steps = T is
    DDPM ancestral sampling with the posterior variance beta~_t, draw for draw the same as
    ``ddpm_sample(..., variance="posterior")`` with a generator seeded alike (not the default
    ``variance="beta"``).

    Args:
        eps_model: eps_model(x, t), t a Python int.
        x: (n, ...) starting points x_T ~ N(0, I).
        betas: (T,) schedule.
        n_steps: model calls (<= T).
        eta: >= 0, the stochasticity.
        spacing: "trailing" (default) or "leading" (:func:`ddim_timesteps`).
        final_alpha_bar_one: abar_prev = 1 at the last step (correct).
        generator: torch generator (used when eta > 0).
    """
    x = _prepare_x(x, eps_model, "eps_model")
    b = _check_betas(betas)
    eta = check_nonnegative(eta, "eta")
    ts = ddim_timesteps(len(b), n_steps, spacing)
    ab = torch.cumprod(1 - b, 0)
    g = as_generator(generator, "generator", device=x.device)
    for i, t in enumerate(ts):
        if i + 1 < len(ts):
            a_prev = float(ab[ts[i + 1]])
        else:
            a_prev = 1.0 if final_alpha_bar_one else float(ab[0])
        a = float(ab[t])
        eps = _check_out(eps_model(x, t), x, "eps_model")
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)  # predicted x_0
        s = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - s * s, 0.0)) * eps
        if s > 0:
            x = x + s * _randn(x, g)
    return x


# --------------------------------------------------------------------------------------
# VE samplers (sigma(t) = t): Euler, Heun (EDM Algorithm 2), Euler-Maruyama
# --------------------------------------------------------------------------------------


def _denoise(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    return _check_out(denoiser(x, sigma), x, "denoiser")


@torch.no_grad()
def euler_sample(denoiser: Denoiser, x: Any, sigmas: Any) -> torch.Tensor:
    """Euler's method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma.

    x <- x + (sigma_{i+1} - sigma_i) (x - D(x; sigma_i)) / sigma_i, for i = 0 .. N-1;
    one denoiser call per step (N calls). The last step to sigma = 0 returns D(x; sigma_{N-1}).

    Args:
        denoiser: denoiser(x, sigma) with sigma a float.
        x: (n, ...) points at noise level sigmas[0] (e.g. sigma_max * N(0, I)).
        sigmas: (N + 1,) strictly decreasing levels (:func:`edm_sigmas`).
    """
    x = _prepare_x(x, denoiser)
    s = _check_sigmas(sigmas)
    for s_cur, s_next in zip(s[:-1], s[1:], strict=True):
        d = (x - _denoise(denoiser, x, s_cur)) / s_cur  # dx/dsigma
        x = x + (s_next - s_cur) * d
    return x


@torch.no_grad()
def heun_sample(
    denoiser: Denoiser,
    x: Any,
    sigmas: Any,
    *,
    churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """The EDM sampler (Karras et al. 2022, Algorithm 2): Heun's method with optional churn.

    For i = 0 .. N-1:
        gamma = min(churn / N, sqrt(2) - 1) if s_min <= sigma_i <= s_max else 0;
        sigma_hat = (1 + gamma) sigma_i;  x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) s_noise z;
        d = (x_hat - D(x_hat; sigma_hat)) / sigma_hat;  x' = x_hat + (sigma_{i+1} - sigma_hat) d;
        if sigma_{i+1} != 0: d' = (x' - D(x'; sigma_{i+1})) / sigma_{i+1},
                             x' = x_hat + (sigma_{i+1} - sigma_hat) (d + d') / 2.
    With churn = 0 it is the deterministic Heun (Algorithm 1). 2N - 1 denoiser calls when the
    levels end at 0 (no correction on the last step). Note the cap: churn >= (sqrt(2) - 1) N
    gives the maximal gamma = sqrt(2) - 1 at every step in [s_min, s_max] (EDM's ImageNet-64
    setting, churn = 40 with N = 256, gives gamma = 0.156).

    Args:
        denoiser: denoiser(x, sigma), sigma a float.
        x: (n, ...) points at noise level sigmas[0].
        sigmas: (N + 1,) strictly decreasing levels, usually ending at 0.
        churn, s_min, s_max, s_noise: EDM's S_churn, S_tmin, S_tmax, S_noise.
        generator: torch generator for the churn noise.
    """
    x = _prepare_x(x, denoiser)
    s = _check_sigmas(sigmas)
    churn = check_nonnegative(churn, "churn")
    s_min = check_nonnegative(s_min, "s_min")
    s_noise = check_nonnegative(s_noise, "s_noise")
    if not (isinstance(s_max, (int, float)) and s_max >= s_min):
        raise ValueError(f"s_max: expected a number >= s_min = {s_min}, got {s_max!r}")
    n = len(s) - 1
    g = as_generator(generator, "generator", device=x.device) if churn > 0 else None
    for s_cur, s_next in zip(s[:-1], s[1:], strict=True):
        gamma = min(churn / n, math.sqrt(2) - 1) if s_min <= s_cur <= s_max else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:  # add noise: raise the level from sigma_i to sigma_hat
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * _randn(x, g)
        d = (x - _denoise(denoiser, x, s_hat)) / s_hat  # Euler slope at sigma_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:  # second-order correction (trapezoid)
            d2 = (x_next - _denoise(denoiser, x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d2)
        x = x_next
    return x


@torch.no_grad()
def euler_maruyama(
    denoiser: Denoiser, x: Any, sigmas: Any, *, generator: GeneratorLike = None
) -> torch.Tensor:
    """Euler-Maruyama on the reverse-time VE SDE with sigma(t) = t (Song et al. 2021, eq. 6).

    Forward SDE dx = sqrt(2 sigma) dw; reverse: dx = -2 sigma grad log p_sigma(x) dsigma
    + sqrt(2 sigma) dw (sigma decreasing). With grad log p = (D - x) / sigma^2, a step
    from sigma_i to sigma_{i+1} = sigma_i - h is
        x <- x + 2 h (D(x; sigma_i) - x) / sigma_i + sqrt(2 sigma_i h) z.
    The last step to sigma = 0 is the deterministic x <- D(x; sigma_{N-1}) (adding noise of
    variance 2 sigma^2 there would leave the samples noisier than they started). N calls.
    """
    x = _prepare_x(x, denoiser)
    s = _check_sigmas(sigmas)
    g = as_generator(generator, "generator", device=x.device)
    for s_cur, s_next in zip(s[:-1], s[1:], strict=True):
        den = _denoise(denoiser, x, s_cur)
        if s_next == 0:
            x = den
            continue
        h = s_cur - s_next
        x = x + 2 * h * (den - x) / s_cur + math.sqrt(2 * s_cur * h) * _randn(x, g)
    return x


@torch.no_grad()
def langevin_corrector(
    denoiser: Denoiser,
    x: Any,
    sigma: float,
    *,
    n_steps: int = 1,
    snr: float = 0.16,
    step_size: float | None = None,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Langevin corrector steps at a fixed noise level (Song et al. 2021, Algorithm 4).

    x <- x + eps s(x) + sqrt(2 eps) z with s = (D(x; sigma) - x) / sigma^2: the unadjusted
    Langevin algorithm of Lecture 1 (:func:`coursekit.ebm.langevin`) on p_sigma. The step is
    ``step_size`` if given, else the signal-to-noise rule eps = 2 (snr ||z|| / ||s||)^2 with
    both norms averaged over the batch (as in Song et al.'s code: a per-sample ratio would
    explode for a point sitting on a mode, where s = 0).
    """
    x = _prepare_x(x, denoiser)
    sigma = check_positive(sigma, "sigma")
    n_steps = check_positive_int(n_steps, "n_steps")
    snr = check_positive(snr, "snr")
    if step_size is not None:
        step_size = check_positive(step_size, "step_size")
    g = as_generator(generator, "generator", device=x.device)
    for _ in range(n_steps):
        score = (_denoise(denoiser, x, sigma) - x) / sigma**2  # grad log p_sigma
        z = _randn(x, g)
        if step_size is None:
            zn = z.flatten(1).norm(dim=1).mean()
            sn = score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            step = float(2 * (snr * zn / sn) ** 2)
        else:
            step = step_size
        x = x + step * score + math.sqrt(2 * step) * z
    return x


def solve_pf_ode(
    denoiser: Denoiser,
    x: Any,
    sigma_start: float,
    sigma_end: float = 0.0,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> torch.Tensor:
    """An accurate solution of the probability-flow ODE (the reference for pointwise errors).

    Integrates dx/du = x - D(x; e^u), u = log sigma, from sigma_start down to sigma_end with
    scipy's adaptive 8th-order Dormand-Prince method (DOP853) at tolerance rtol/atol, all
    rows as one system. For sigma_end = 0 it integrates to 1e-6 sigma_start and finishes
    with x <- D(x; sigma) (the ODE's remaining motion is O(sigma^2)).

    Args:
        denoiser: denoiser(x, sigma), sigma a float. x: (n, ...) points at sigma_start.

    Returns:
        (n, ...) float64 solution at sigma_end.
    """
    check_callable(denoiser, "denoiser")
    x = as_tensor(x, "x", dtype=torch.float64, detach=True)
    hi = check_positive(sigma_start, "sigma_start")
    end = check_nonnegative(sigma_end, "sigma_end")
    rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
    if not (0 <= end < hi):
        raise ValueError(f"sigma_end: expected 0 <= sigma_end < sigma_start, got {sigma_end}")
    lo = end if end > 0 else 1e-6 * hi
    shape = x.shape

    def rhs(u: float, flat: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(flat).reshape(shape)
        with torch.no_grad():
            f = xt - _check_out(denoiser(xt, math.exp(u)), xt, "denoiser").to(torch.float64)
        return f.numpy().ravel()

    sol = solve_ivp(rhs, (math.log(hi), math.log(lo)), x.numpy().ravel(), method="DOP853",
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_pf_ode: the ODE solver failed: {sol.message}")
    out = torch.from_numpy(sol.y[:, -1].copy()).reshape(shape)
    if end == 0:
        with torch.no_grad():
            out = _check_out(denoiser(out, lo), out, "denoiser").to(torch.float64)
    return out


# --------------------------------------------------------------------------------------
# Sample quality: a divergence with a known floor
# --------------------------------------------------------------------------------------


def _grid_bounds(mixture: NoisedGaussianMixture, sigma: float, lim: float | None) -> np.ndarray:
    """(d, 2) box of the grid: [-lim, lim] per axis, or mu_kj -/+ 5 sd_kj over all k."""
    if lim is not None:
        lim = check_positive(lim, "lim")
        return np.tile([-lim, lim], (mixture.dim, 1))
    sd = np.sqrt(np.diagonal(mixture.covariances, axis1=1, axis2=2) + sigma**2)  # (K, d)
    # 5 sd of every component: the mass outside the box is < 1e-5 (it is counted anyway).
    return np.stack([(mixture.means - 5 * sd).min(0), (mixture.means + 5 * sd).max(0)], 1)


def grid_cell_probabilities(
    mixture: NoisedGaussianMixture, *, sigma: float = 0.0, bins: int = 30,
    lim: float | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Exact probabilities P_sigma(cell) of the cells of a regular grid (d = 1 or 2).

    Each cell's probability is the integral of p_sigma over it, by Gauss-Legendre quadrature
    in every cell: at least 8 nodes per axis, at most a quarter of the thinnest component's
    standard deviation apart, so the error (~1e-15) is far below any Monte Carlo error. (The
    density at the cell's centre times its area is not, for components as thin as a cell.)

    Args:
        mixture: the mixture. sigma: its noise level (0: the data distribution).
        bins: cells per axis. lim: the grid is [-lim, lim]^d; None: a box covering 5 standard
            deviations of every component.

    Returns:
        probs: (bins,) or (bins, bins) cell probabilities (they sum to P(box) <= 1);
        edges: d arrays (bins + 1,) of cell edges.
    """
    if not isinstance(mixture, NoisedGaussianMixture):
        raise TypeError(f"mixture: expected a NoisedGaussianMixture, got {type(mixture).__name__}")
    if mixture.dim > 2:
        raise ValueError(f"mixture: the grid divergence needs d = 1 or 2, got d = {mixture.dim}")
    sigma = check_nonnegative(sigma, "sigma")
    bins = check_positive_int(bins, "bins")
    box = _grid_bounds(mixture, sigma, lim)
    s_min = math.sqrt(float(np.linalg.eigvalsh(mixture.covariances).min()) + sigma**2)
    width = float((box[:, 1] - box[:, 0]).max()) / bins
    n_nodes = max(8, math.ceil(4 * width / s_min))
    gl_x, gl_w = np.polynomial.legendre.leggauss(n_nodes)  # nodes/weights on [-1, 1]
    edges, nodes, weights = [], [], []
    for lo, hi in box:
        e = np.linspace(lo, hi, bins + 1)
        h = e[1] - e[0]
        edges.append(e)
        nodes.append((0.5 * (e[:-1] + e[1:])[:, None] + 0.5 * h * gl_x).ravel())  # (bins*m,)
        weights.append(np.tile(0.5 * h * gl_w, bins))  # (bins*m,)
    grids = np.meshgrid(*nodes, indexing="ij")
    pts = np.stack([g.ravel() for g in grids], 1)  # (N, d)   all quadrature nodes
    dens = np.exp(mixture.log_prob(pts, sigma)).reshape(grids[0].shape)
    for axis, w in enumerate(weights):  # tensor-product quadrature, one axis at a time
        dens = np.moveaxis(np.moveaxis(dens, axis, -1) * w, -1, axis)
    probs = dens.reshape(sum(((bins, n_nodes),) * mixture.dim, ())).sum(
        axis=tuple(range(1, 2 * mixture.dim, 2)))  # sum the nodes of each cell
    return probs, edges


def grid_tv(
    samples: Any, mixture: NoisedGaussianMixture, *, sigma: float = 0.0, bins: int = 30,
    lim: float | None = None,
) -> float:
    """Total variation between the samples' histogram and the exact law on a grid.

    TV = 1/2 (sum_cells |q_c - P_c| + |q_out - P_out|), q_c the fraction of ALL samples in
    cell c, P_c the exact cell probability (:func:`grid_cell_probabilities`), and the mass
    outside the grid counted as one more cell. Unlike the mean log-density of the samples,
    which every sample sitting on a mode improves, it is a divergence between the laws of the
    binned variables: 0 only if the histogram is exact, so collapse and over-contraction
    both raise it. A finite sample of the true law does not score 0 but
    :func:`grid_tv_floor` (about sqrt(cells / n)): compare with that floor, two-sided.

    Args:
        samples: (n, d) samples (array or tensor). mixture: the target; sigma: its noise level.
        bins, lim: the grid (:func:`grid_cell_probabilities`).

    Returns:
        the distance, in [0, 1].
    """
    probs, edges = grid_cell_probabilities(mixture, sigma=sigma, bins=bins, lim=lim)
    x = check_array(samples, "samples", ndim=2, min_rows=1)
    if x.shape[1] != mixture.dim:
        raise ValueError(f"samples: expected shape (n, {mixture.dim}), got {x.shape}")
    return _grid_tv(x, probs, edges)


def _grid_tv(x: np.ndarray, probs: np.ndarray, edges: list[np.ndarray]) -> float:
    """grid_tv of checked (n, d) samples against precomputed cell probabilities."""
    bins = probs.shape[0]
    # Cell index per axis; points on or beyond an outer edge go to the outside cell.
    idx = np.stack([np.searchsorted(e, x[:, j], side="right") - 1
                    for j, e in enumerate(edges)], 1)  # (n, d)
    inside = np.all((idx >= 0) & (idx < bins), axis=1)
    flat = np.ravel_multi_index(tuple(idx[inside].T), probs.shape)
    q = np.bincount(flat, minlength=probs.size) / len(x)  # fraction of ALL samples
    p = probs.ravel()
    p_out = max(1.0 - float(p.sum()), 0.0)  # quadrature can exceed 1 by ~1e-12
    return total_variation(np.append(p, p_out), np.append(q, 1.0 - inside.mean()))


def grid_tv_floor(
    mixture: NoisedGaussianMixture, n: int, *, sigma: float = 0.0, bins: int = 30,
    lim: float | None = None, n_repeats: int = 20, rng: RngLike = None,
) -> tuple[float, float]:
    """The floor of :func:`grid_tv`: its mean and standard deviation over exact samples.

    ``n_repeats`` samples of size ``n`` are drawn from the mixture itself and scored; a
    sampler whose score lies within a few standard deviations of this mean is
    indistinguishable from exact at this sample size and grid. (Each count is Binomial(n,
    P_c), so the mean is also 1/2 sum_c E|X_c/n - P_c|, which the tests use as a check.)

    Returns:
        (mean, standard deviation) of the TV of n exact samples.
    """
    probs, edges = grid_cell_probabilities(mixture, sigma=sigma, bins=bins, lim=lim)
    n = check_positive_int(n, "n")
    n_repeats = check_positive_int(n_repeats, "n_repeats", minimum=2)
    rng = as_rng(rng, "rng")
    tvs = [_grid_tv(mixture.sample(n, sigma, rng=rng), probs, edges) for _ in range(n_repeats)]
    return float(np.mean(tvs)), float(np.std(tvs, ddof=1))


# --------------------------------------------------------------------------------------
# Likelihood by the probability-flow ODE
# --------------------------------------------------------------------------------------


def _ode_and_div(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, ...]:
    """f = dx/dlog(sigma) = x - D(x; sigma) and its exact divergence (autograd, d passes)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        f = xg - denoiser(xg, sigma)  # (n, d)
        if f.shape != x.shape:
            raise ValueError(f"denoiser: returned shape {tuple(f.shape)}, expected {tuple(x.shape)}")
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for j in range(x.shape[1]):  # one backward pass per coordinate: d of them
            (gj,) = torch.autograd.grad(f[:, j].sum(), xg, retain_graph=j + 1 < x.shape[1])
            div = div + gj[:, j]
    return f.detach(), div.detach()


def pf_ode_log_likelihood(
    denoiser: Denoiser,
    x: Any,
    *,
    sigma_min: float,
    sigma_max: float,
    n_steps: int,
    return_latent: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log p_sigma_min(x) per row by the instantaneous change of variables (Song et al. 2021).

    In u = log sigma the probability-flow ODE reads dx/du = f(x, u) = x - D(x; e^u), and
    along its solution d log p_sigma(x(u)) / du = -div_x f. Integrating from sigma_min to
    sigma_max with Heun's method on a grid uniform in log sigma (second order, so the error
    falls as 1/n_steps^2),

        log p_sigma_min(x) = log N(x(sigma_max); 0, sigma_max^2 I) + int div_x f du,

    the prior being p_sigma_max approximated by N(0, sigma_max^2 I) (exact as sigma_max grows
    past the data's scale). The divergence is exact (d autograd passes): fine in small d.

    Args:
        denoiser: differentiable denoiser(x, sigma), sigma a float.
        x: (n, d) points at noise level sigma_min.
        sigma_min, sigma_max: 0 < sigma_min < sigma_max.
        n_steps: Heun steps: 2 n_steps + 1 denoiser evaluations, each with its divergence
            (one at the start, then a predictor and a corrector slope per step).
        return_latent: also return x(sigma_max).

    Returns:
        (n,) log-densities (and the (n, d) latents).
    """
    x = _prepare_x(x, denoiser)
    if x.ndim != 2:
        raise ValueError(f"x: expected shape (n, d), got {tuple(x.shape)}")
    lo, hi = check_positive(sigma_min, "sigma_min"), check_positive(sigma_max, "sigma_max")
    if lo >= hi:
        raise ValueError(f"sigma_min: must be < sigma_max, got {lo} >= {hi}")
    n_steps = check_positive_int(n_steps, "n_steps")
    us = np.linspace(math.log(lo), math.log(hi), n_steps + 1)
    delta = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)  # int div f du
    f, div = _ode_and_div(denoiser, x, math.exp(us[0]))
    for u0, u1 in zip(us[:-1], us[1:], strict=True):
        h = u1 - u0
        x_pred = x + h * f  # Euler predictor
        f2, div2 = _ode_and_div(denoiser, x_pred, math.exp(u1))
        x = x + 0.5 * h * (f + f2)  # trapezoid corrector
        delta = delta + 0.5 * h * (div + div2)
        f, div = _ode_and_div(denoiser, x, math.exp(u1))
    d = x.shape[1]
    log_prior = -0.5 * (x * x).sum(1) / hi**2 - d * math.log(hi) - 0.5 * d * LOG_2PI
    out = log_prior + delta
    return (out, x) if return_latent else out


# --------------------------------------------------------------------------------------
# Networks, preconditioning, losses
# --------------------------------------------------------------------------------------


class NoiseConditionalMLP(nn.Module):
    """A small MLP F(x, c[, label]) with a Fourier embedding of the noise conditioning c.

    x: (n, ...) is flattened to (n, dim); c: a float or (n,) (e.g. EDM's c_noise = log(sigma)/4);
    label: optional (n,) class indices in [0, n_classes], index ``n_classes`` meaning "no label"
    (classifier-free guidance). Output: x's shape.

    Args:
        dim: number of input features (2 for the toys, 64 for the 8x8 digits).
        hidden: width. n_layers: hidden layers. emb_dim: size of the noise embedding.
        n_classes: 0 for an unconditional model.
    """

    def __init__(
        self, dim: int, *, hidden: int = 128, n_layers: int = 3, emb_dim: int = 32,
        n_classes: int = 0,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        hidden = check_positive_int(hidden, "hidden")
        n_layers = check_positive_int(n_layers, "n_layers")
        emb_dim = check_positive_int(emb_dim, "emb_dim", minimum=2)
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=0)
        # Fixed frequencies spread over two decades: c_noise in ~[-2, 2] is resolved finely.
        self.register_buffer("freqs", torch.logspace(-1, 1.2, emb_dim // 2) * math.pi)
        n_emb = 2 * (emb_dim // 2)  # cos and sin of each frequency
        self.label_emb = nn.Embedding(self.n_classes + 1, n_emb) if self.n_classes else None
        width = self.dim + n_emb
        self.inp = nn.Linear(width, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers - 1))
        self.out = nn.Linear(hidden, self.dim)

    def forward(self, x: torch.Tensor, c: Any, label: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        h = x.reshape(shape[0], -1)  # (n, dim)
        if h.shape[1] != self.dim:
            raise ValueError(f"x: expected {self.dim} features per row, got shape {tuple(shape)}")
        c = torch.as_tensor(c, dtype=h.dtype, device=h.device).expand(shape[0])  # (n,)
        ang = c[:, None] * self.freqs  # (n, emb/2)
        emb = torch.cat([ang.cos(), ang.sin()], dim=1)  # (n, emb)
        if self.label_emb is not None:
            if label is None:
                label = torch.full((shape[0],), self.n_classes, device=h.device)
            label = torch.as_tensor(label, device=h.device)
            if (label.is_floating_point() or label.shape != (shape[0],)
                    or bool(((label < 0) | (label > self.n_classes)).any())):
                raise ValueError(f"label: expected ({shape[0]},) integer classes in 0..{self.n_classes}"
                                 f" (n_classes = no label), got {label.dtype} {tuple(label.shape)}")
            emb = emb + self.label_emb(label.long())
        elif label is not None:
            raise ValueError("label: this network has n_classes = 0 (unconditional)")
        h = torch.nn.functional.silu(self.inp(torch.cat([h, emb], dim=1)))  # (n, hidden)
        for layer in self.hidden:
            h = torch.nn.functional.silu(layer(h))  # (n, hidden)
        return self.out(h).reshape(shape)


class EDMDenoiser(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1 and eq. 7) around a network F.

    D(x; sigma) = c_skip x + c_out F(c_in x, c_noise[, label]) with
        c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
        c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
        c_in = 1 / sqrt(sigma^2 + sigma_data^2),   c_noise = log(sigma) / 4,
    so F's input and training target both have unit variance at every noise level.

    Args:
        net: F(x, c_noise[, label]), e.g. :class:`NoiseConditionalMLP`.
        sigma_data: standard deviation of the data (per coordinate).
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.sigma_data = check_positive(sigma_data, "sigma_data")

    def forward(self, x: Any, sigma: Any, label: torch.Tensor | None = None) -> torch.Tensor:
        x = as_tensor(x, "x", like=self)
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if not bool(((s > 0) & torch.isfinite(s)).all()):
            raise ValueError("sigma: the denoiser needs finite noise levels > 0")
        s = s.expand(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))  # (n, 1, ...)
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / (s**2 + sd2).sqrt()
        c_in = 1 / (s**2 + sd2).sqrt()
        c_noise = s.log().flatten() / 4  # (n,)
        args = (c_in * x, c_noise) if label is None else (c_in * x, c_noise, label)
        return c_skip * x + c_out * self.net(*args)


def edm_loss(
    denoiser: EDMDenoiser,
    y: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    p_uncond: float = 0.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """EDM training loss (Karras et al. 2022, eq. 8 with Table 1's choices).

    ln sigma ~ N(p_mean, p_std^2); lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2;
    loss = mean lambda(sigma) ||D(y + sigma n; sigma) - y||^2 / dim. With ``labels`` and
    ``p_uncond`` > 0, each label is replaced by the "no label" index with that probability
    (classifier-free guidance's label dropout, Ho & Salimans 2022).
    """
    if not isinstance(denoiser, EDMDenoiser):
        raise TypeError(f"denoiser: expected an EDMDenoiser, got {type(denoiser).__name__}")
    y = _fits(as_tensor(y, "y", like=denoiser), denoiser.net, "y")
    p_mean, p_std = check_finite(p_mean, "p_mean"), check_positive(p_std, "p_std")
    if not 0 <= check_nonnegative(p_uncond, "p_uncond") <= 1:
        raise ValueError(f"p_uncond: expected a probability, got {p_uncond}")
    g = as_generator(generator, "generator", device=y.device)
    n = y.shape[0]
    shape = (-1,) + (1,) * (y.ndim - 1)
    ln_s = p_mean + p_std * torch.randn(n, generator=g, dtype=y.dtype, device=y.device)
    s = ln_s.exp()  # (n,)          log-normal noise levels
    noisy = y + s.view(shape) * _randn(y, g)
    sd = denoiser.sigma_data
    weight = (s**2 + sd**2) / (s * sd) ** 2  # (n,)          lambda(sigma)
    if labels is not None:
        lab = as_tensor(labels, "labels", dtype=torch.float64, shape=(n,), detach=True)
        n_cls = getattr(denoiser.net, "n_classes", math.inf)
        if bool(((lab != lab.round()) | (lab < 0) | (lab > n_cls)).any()):
            raise ValueError(f"labels: expected (n,) class indices in [0, {n_cls}] (the last "
                             "one: no label)")
        labels = lab.long().to(y.device)
        if p_uncond > 0:
            n_cls = denoiser.net.n_classes
            drop = torch.rand(n, generator=g, device=y.device) < p_uncond
            labels = torch.where(drop, torch.full_like(labels, n_cls), labels)
        out = denoiser(noisy, s, labels)
    else:
        out = denoiser(noisy, s)
    err = ((out - y) ** 2).flatten(1).mean(1)  # (n,)
    return (weight * err).mean()


class DDPMEpsModel(nn.Module):
    """An epsilon-prediction model eps(x_t, t) for a DDPM schedule, around a network F.

    F(x_t, c) with the conditioning c = log(sigma_t) / 4, sigma_t the VE level of step t
    (:func:`vp_sigmas`), so one network family serves both the DDPM and the EDM chapters.
    """

    def __init__(self, net: nn.Module, betas: Any) -> None:
        super().__init__()
        self.net = check_callable(net, "net")
        self.register_buffer("log_sigmas", vp_sigmas(betas).log().float())

    def forward(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).long()
        c = self.log_sigmas[t].to(x.dtype) / 4
        return self.net(x, c)


def ddpm_loss(eps_model: nn.Module, x0: torch.Tensor, betas: Any, *,
              generator: GeneratorLike = None) -> torch.Tensor:
    """Ho et al.'s simplified loss E_{t, x0, eps} ||eps - eps_theta(sqrt(abar_t) x0 +
    sqrt(1 - abar_t) eps, t)||^2 (per coordinate), t uniform on 0 .. T-1."""
    x0 = _fits(as_tensor(x0, "x0", like=eps_model), getattr(eps_model, "net", None), "x0")
    ab = alpha_bars(betas).to(device=x0.device, dtype=x0.dtype)
    g = as_generator(generator, "generator", device=x0.device)
    t = torch.randint(0, len(ab), (x0.shape[0],), generator=g, device=x0.device)
    a = ab[t].view((-1,) + (1,) * (x0.ndim - 1))
    eps = _randn(x0, g)
    pred = eps_model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t)
    return ((pred - eps) ** 2).mean()


def guided_denoiser(cond: Denoiser, uncond: Denoiser, w: float) -> Denoiser:
    """Guided denoiser D_w = D_c + w (D_c - D_u) (Ho & Salimans 2022; w = 0: no guidance).

    In score terms: grad log p(x|c) + w (grad log p(x|c) - grad log p(x)), i.e. the score of
    p(x|c)^{1+w} p(x)^{-w} at each noise level (which is NOT the noised tilted density).
    The other convention writes the weight as w' = 1 + w (w' = 1: no guidance).
    """
    w = check_finite(w, "w")
    check_callable(cond, "cond"), check_callable(uncond, "uncond")

    def denoiser(x: torch.Tensor, sigma: Any) -> torch.Tensor:
        dc = cond(x, sigma)
        return dc + w * (dc - uncond(x, sigma))

    return denoiser
