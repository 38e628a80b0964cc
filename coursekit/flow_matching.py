"""Flow matching and rectified flow, on the exact Gaussian-mixture harness of Lecture 3.

The linear interpolant between data and noise (t = 0 data, t = 1 noise),

    x_t = (1 - t) x_0 + t eps,   x_0 ~ p_data,  eps ~ N(0, I) independent,

has a marginal p_t that is transported by the velocity field

    v(x, t) = E[eps - x_0 | x_t = x]                                   (the marginal velocity)

(Lipman et al. 2023, "flow matching", with the optimal-transport conditional path and
sigma_min = 0; Liu et al. 2023, "rectified flow", with time reversed). Integrating
dx/dt = v(x, t) from t = 1 (pure noise) down to t = 0 turns N(0, I) into p_data.

- When p_data = sum_k pi_k N(mu_k, Sigma_k) (a :class:`coursekit.diffusion.NoisedGaussianMixture`),
  p_t is again a Gaussian mixture, component k being N((1 - t) mu_k, (1 - t)^2 Sigma_k + t^2 I),
  so :func:`marginal_log_prob` and :func:`exact_velocity` are exact: a sampler run with them
  has pure discretisation error, as in the diffusion chapters.
- :func:`sample_ode`: Euler or Heun from t = 1 to t = 0 on a uniform grid.
- :func:`cfm_loss`: the conditional flow-matching loss E ||v_theta(x_t, t) - (eps - x_0)||^2,
  whose minimiser is the marginal velocity (Lipman et al. 2023, Theorem 2).

Relation with the VE diffusion of :mod:`coursekit.diffusion`: x_t / (1 - t) = x_0 + sigma eps
with sigma = t / (1 - t), so E[x_0 | x_t = x] = D(x / (1 - t); t / (1 - t)) and
v(x, t) = (x - E[x_0 | x_t = x]) / t: the same denoiser, another time variable.

Like :class:`~coursekit.diffusion.NoisedGaussianMixture`, the exact functions take NumPy
arrays (computed in float64, NumPy returned) or tensors (computed in their dtype and device,
tensors returned, differentiable).

References: Lipman, Chen, Ben-Hamu, Nickel & Le (2023); Liu, Gong & Liu (2023);
Albergo & Vanden-Eijnden (2023).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from coursekit.diffusion import NoisedGaussianMixture
from coursekit.numerics import LOG_2PI
from coursekit.validation import GeneratorLike, as_generator, as_tensor, check_positive_int

__all__ = ["cfm_loss", "exact_velocity", "marginal_log_prob", "sample_ode"]

Velocity = Callable[[torch.Tensor, Any], torch.Tensor]


# --------------------------------------------------------------------------------------
# The exact marginals and velocity of a Gaussian mixture
# --------------------------------------------------------------------------------------


def _inputs(mixture: Any, x: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """x -> (n, d) tensor, t -> (n,) tensor of the same dtype/device in (0, 1]; NumPy flag."""
    if not isinstance(mixture, NoisedGaussianMixture):
        raise TypeError(
            f"mixture: expected a diffusion.NoisedGaussianMixture, got {type(mixture).__name__}"
        )
    is_numpy = not isinstance(x, torch.Tensor)
    xt = as_tensor(x, "x", dtype=torch.float64 if is_numpy else None, shape=(None, mixture.dim))
    n = xt.shape[0]
    if t.is_complex() if isinstance(t, torch.Tensor) else np.iscomplexobj(t):
        raise ValueError("t: expected real times in (0, 1], got complex values")
    if isinstance(t, torch.Tensor):
        tt = t.to(dtype=xt.dtype, device=xt.device)
    else:
        try:
            arr = np.asarray(t, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"t: expected a number in (0, 1] or one per row of x, got {t!r}") from None
        tt = torch.as_tensor(arr, dtype=xt.dtype, device=xt.device)
    if tt.ndim == 0:
        tt = tt.expand(n)
    if tt.shape != (n,):
        raise ValueError(
            f"t: expected a number or one time per row of x, shape ({n},), got shape "
            f"{tuple(tt.shape)}"
        )
    td = tt.detach()
    if not bool(torch.isfinite(td).all()) or bool(((td <= 0) | (td > 1)).any()):
        bad = td[~(torch.isfinite(td) & (td > 0) & (td <= 1))][0].item()
        raise ValueError(
            f"t: expected times in (0, 1] (t = 0 is the data, t = 1 the noise), got {bad}"
        )
    return xt, tt, is_numpy


def _components(
    mixture: NoisedGaussianMixture, x: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, K) log pi_k N(x | (1-t) mu_k, C_k(t)) and (n, K, d) E[eps - x_0 | x_t = x, k].

    Sigma_k = U_k diag(lam_k) U_k^T, so C_k(t) = (1-t)^2 Sigma_k + t^2 I = U_k diag(var) U_k^T
    with var = (1-t)^2 lam + t^2: one eigendecomposition serves every t.
    """
    kw = {"dtype": x.dtype, "device": x.device}
    lam_np, u_np = np.linalg.eigh(mixture.covariances)  # (K, d), (K, d, d)
    lam = torch.as_tensor(np.clip(lam_np, 0.0, None), **kw)
    u = torch.as_tensor(u_np, **kw)
    mu = torch.as_tensor(mixture.means, **kw)  # (K, d)
    with np.errstate(divide="ignore"):
        logw = torch.as_tensor(np.log(mixture.weights), **kw)  # (K,)
    s = (1 - t)[:, None, None]  # (n, 1, 1)    1 - t
    tt = t[:, None, None]  # (n, 1, 1)    t
    z = torch.einsum("nkd,kde->nke", x[:, None, :] - s * mu[None], u)  # U^T (x - (1-t) mu_k)
    var = s**2 * lam[None] + tt**2  # (n, K, d)    eigenvalues of C_k(t)
    maha = (z * z / var).sum(-1)  # (n, K)
    log_joint = logw - 0.5 * (maha + torch.log(var).sum(-1) + mixture.dim * LOG_2PI)  # (n, K)
    # E[eps - x0 | x, k] = (t I - (1-t) Sigma_k) C_k^{-1} (x - (1-t) mu_k) - mu_k: the
    # Gaussian conditional mean, Cov(eps - x0, x_t | k) = t I - (1-t) Sigma_k. Written this
    # way there is no division by t, so it stays accurate as t -> 0.
    gain = (tt - s * lam[None]) / var  # (n, K, d)
    vel = torch.einsum("nke,kde->nkd", z * gain, u) - mu[None]  # (n, K, d)
    return log_joint, vel


def marginal_log_prob(mixture: NoisedGaussianMixture, x: Any, t: Any) -> Any:
    """(n,) log p_t(x) of the linear interpolant x_t = (1 - t) x_0 + t eps.

    For p_data = sum_k pi_k N(mu_k, Sigma_k),

        p_t(x) = sum_k pi_k N(x | (1 - t) mu_k, (1 - t)^2 Sigma_k + t^2 I),

    summed by log-sum-exp (p_1 = N(0, I)).

    Args:
        mixture: the data distribution, a :class:`~coursekit.diffusion.NoisedGaussianMixture`.
        x: (n, d) points (array or tensor).
        t: a time in (0, 1] or (n,) times, one per row.

    Returns:
        (n,) log-densities: a NumPy array for NumPy ``x``, else a tensor (differentiable).
    """
    xt, tt, is_numpy = _inputs(mixture, x, t)
    out = torch.logsumexp(_components(mixture, xt, tt)[0], dim=1)
    return out.detach().cpu().numpy() if is_numpy else out


def exact_velocity(mixture: NoisedGaussianMixture, x: Any, t: Any) -> Any:
    """(n, d) marginal velocity v(x, t) = E[eps - x_0 | x_t = x] of the linear interpolant.

    With gamma_k(x) the responsibilities under p_t (Lipman et al. 2023, eq. 8: the marginal
    field is the posterior average of the conditional fields eps - x_0),

        v(x, t) = sum_k gamma_k(x) [(t I - (1-t) Sigma_k) C_k(t)^{-1} (x - (1-t) mu_k) - mu_k],
        C_k(t) = (1-t)^2 Sigma_k + t^2 I;

    equivalently v = (x - E[x_0 | x_t = x]) / t. It satisfies the continuity equation
    d p_t / dt + div(p_t v) = 0, so dx/dt = v carries p_1 = N(0, I) to p_0 = p_data.

    Args:
        mixture: the data distribution. x: (n, d) points. t: a time in (0, 1] or (n,) times.

    Returns:
        (n, d) velocities: NumPy for NumPy ``x``, else a tensor (differentiable).
    """
    xt, tt, is_numpy = _inputs(mixture, x, t)
    log_joint, vel = _components(mixture, xt, tt)
    gamma = torch.softmax(log_joint, dim=1)  # (n, K)       responsibilities under p_t
    out = torch.einsum("nk,nkd->nd", gamma, vel)
    return out.detach().cpu().numpy() if is_numpy else out


# --------------------------------------------------------------------------------------
# Sampling and training
# --------------------------------------------------------------------------------------


def _like(model: Any) -> nn.Module | None:
    if isinstance(model, nn.Module):
        return model
    owner = getattr(model, "__self__", None)  # a bound method of a Module
    return owner if isinstance(owner, nn.Module) else None


def _call(velocity: Velocity, x: torch.Tensor, t: Any) -> torch.Tensor:
    out = velocity(x, t)
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(np.asarray(out), dtype=x.dtype, device=x.device)
    if out.shape != x.shape:
        raise ValueError(f"velocity: returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError("velocity: returned NaN or infinite values")
    return out.to(x.dtype)


@torch.no_grad()
def sample_ode(velocity: Velocity, x1: Any, n_steps: int, method: str = "euler") -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 1 (noise) to t = 0 (data) on a uniform grid.

    t_i = 1 - i / N, h = -1 / N. Euler: x <- x + h v(x, t_i) (N calls, error O(1/N)).
    Heun (the explicit trapezoid rule, as in EDM's Algorithm 1): x' = x + h v(x, t_i), then
    x <- x + h (v(x, t_i) + v(x', t_{i+1})) / 2, except on the last step, which ends at
    t = 0 and keeps the Euler value (2N - 1 calls, error O(1/N^2)).

    Args:
        velocity: velocity(x, t) with x: (n, ...) and t a float in (0, 1], returning x's
            shape, e.g. ``lambda x, t: exact_velocity(mixture, x, t)`` or a trained network.
        x1: (n, ...) starting points at t = 1, usually N(0, I) draws.
        n_steps: N, the number of steps.
        method: "euler" or "heun".

    Returns:
        (n, ...) tensor of samples at t = 0.
    """
    if not callable(velocity):
        raise TypeError(f"velocity: expected a callable velocity(x, t), got {type(velocity).__name__}")
    x = as_tensor(x1, "x1", like=_like(velocity), detach=True)
    n = check_positive_int(n_steps, "n_steps")
    if method not in ("euler", "heun"):
        raise ValueError(f"method: expected 'euler' or 'heun', got {method!r}")
    ts = [1.0 - i / n for i in range(n)] + [0.0]
    for t_cur, t_next in zip(ts[:-1], ts[1:], strict=True):
        h = t_next - t_cur  # < 0: time runs backwards
        v = _call(velocity, x, t_cur)
        x_next = x + h * v
        if method == "heun" and t_next > 0:
            x_next = x + 0.5 * h * (v + _call(velocity, x_next, t_next))
        x = x_next
    return x


def cfm_loss(model: Any, x0: Any, generator: GeneratorLike = None) -> torch.Tensor:
    """Conditional flow-matching loss (Lipman et al. 2023, eq. 23 with sigma_min = 0; Liu et al.
    2023, eq. 1 with time reversed).

        t ~ U(0, 1],  eps ~ N(0, I),  x_t = (1 - t) x_0 + t eps,
        loss = E ||model(x_t, t) - (eps - x_0)||^2 / dim.

    Its gradient equals that of E ||model(x_t, t) - v(x_t, t)||^2 (Lipman et al., Theorem 2):
    the two losses differ by a constant, so the minimiser is the marginal velocity
    :func:`exact_velocity`, and that constant, E Var(eps - x_0 | x_t) / dim, is the smallest
    value the loss can reach.

    Args:
        model: model(x_t, t) with x_t: (n, ...) and t: (n,) times, returning x_t's shape
            (a ``torch.nn.Module`` sets the dtype and device).
        x0: (n, ...) data.
        generator: torch generator (None, int seed or ``torch.Generator``) for t and eps.

    Returns:
        the scalar loss (differentiable in the model's parameters).
    """
    if not callable(model):
        raise TypeError(f"model: expected a callable model(x, t), got {type(model).__name__}")
    x0 = as_tensor(x0, "x0", like=_like(model), ndim=tuple(range(2, 8)))
    g = as_generator(generator, "generator", device=x0.device)
    n = x0.shape[0]
    # 1 - U[0, 1) lies in (0, 1]: the times where the marginal velocity is defined.
    t = 1 - torch.rand(n, generator=g, dtype=x0.dtype, device=x0.device)  # (n,)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype, device=x0.device)  # (n, ...)
    tb = t.view((-1,) + (1,) * (x0.ndim - 1))  # (n, 1, ...)
    xt = (1 - tb) * x0 + tb * eps  # (n, ...)     the interpolant
    pred = model(xt, t)
    if not isinstance(pred, torch.Tensor) or pred.shape != x0.shape:
        shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
        raise ValueError(f"model: returned {shape}, expected a tensor of shape {tuple(x0.shape)}")
    return ((pred - (eps - x0)) ** 2).mean()
