"""Markov chain Monte Carlo with a Metropolis correction: MALA and Hamiltonian Monte Carlo.

The unadjusted Langevin algorithm (:func:`coursekit.ebm.langevin`) is biased for any
finite step: its chain converges to a law that is not ``p ∝ exp(-E)``. Adding a
Metropolis–Hastings accept/reject step removes the bias exactly, whatever the step size;
the price is that rejected proposals leave the chain where it was (slower mixing at large
steps). Two such samplers:

- MALA (Metropolis-adjusted Langevin; Roberts & Tweedie 1996): the ULA step as a
  proposal, ``x' = x - eta grad E(x) + sqrt(2 eta) xi``, accepted with probability

      min(1, exp(-E(x')) q(x | x') / (exp(-E(x)) q(x' | x))),
      q(x' | x) = N(x'; x - eta grad E(x), 2 eta I);

- HMC (Duane et al. 1987; Neal 2011): draw a momentum ``v ~ N(0, I)``, follow
  ``L`` leapfrog steps of the Hamiltonian ``H(x, v) = E(x) + |v|^2 / 2`` with step ``h``,
  accept the end point with probability ``min(1, exp(H(x, v) - H(x', v')))``. Leapfrog is
  reversible and volume preserving, so this is a Metropolis step with a symmetric
  proposal; long trajectories move far at the cost of ``L`` gradients.

:func:`effective_sample_size` measures mixing: ``n / tau`` with ``tau`` the integrated
autocorrelation time (Geyer's initial positive sequence estimator).

Energies are callables mapping an ``(n, d)`` tensor to an ``(n,)`` tensor; every sampler
runs one chain per row of ``x0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from coursekit.ebm import energy_grad
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_array,
    check_positive,
    check_positive_int,
)

Energy = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class MCMCResult:
    """The output of a sampler.

    Attributes:
        x: (n, d) final states.
        chain: (n_steps + 1, n, d) every state including ``x0`` (None unless asked for).
        accept_rate: (n,) fraction of accepted proposals per chain.
        n_grad: number of gradient evaluations per chain (the cost).
    """

    x: torch.Tensor
    chain: torch.Tensor | None
    accept_rate: torch.Tensor
    n_grad: int


def _start(energy: Energy, x0: Any) -> torch.Tensor:
    """``x0`` as an (n, d) tensor (a copy), in the energy's dtype and device for a model."""
    if not callable(energy):
        raise TypeError(f"energy: expected a callable (n, d) -> (n,), got {type(energy).__name__}")
    like = energy if isinstance(energy, torch.nn.Module) else None
    return as_tensor(x0, "x0", like=like, ndim=2, detach=True).clone()


def _energy(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        e = energy(x)
    if e.shape != (x.shape[0],):
        raise ValueError(
            f"energy: expected an output of shape ({x.shape[0]},), got {tuple(e.shape)}"
        )
    return e


def _accept(log_ratio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Metropolis test: accept with probability min(1, exp(log_ratio)); (n,) bool."""
    u = torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype,
                   device=log_ratio.device)
    # log u < log_ratio  <=>  u < exp(log_ratio); a NaN ratio (overflow) is a rejection
    return torch.log(u) < torch.nan_to_num(log_ratio, nan=-math.inf)


def mala(
    energy: Energy,
    x0: Any,
    step_size: float,
    n_steps: int,
    *,
    return_chain: bool = False,
    generator: GeneratorLike = None,
) -> MCMCResult:
    """Metropolis-adjusted Langevin algorithm: the ULA step, then accept or reject.

    Args:
        energy: maps (n, d) to (n,); differentiable in x.
        x0: (n, d) starting points, one chain per row (any float dtype).
        step_size: eta > 0 of the Langevin proposal.
        n_steps: number of proposals per chain.
        return_chain: also keep every state.
        generator: torch generator, int seed or None.

    Returns:
        an :class:`MCMCResult` (one gradient per step).
    """
    x = _start(energy, x0)
    eta = check_positive(step_size, "step_size")
    n_steps = check_positive_int(n_steps, "n_steps")
    gen = as_generator(generator, "generator", device=x.device)
    e, g = _energy(energy, x), energy_grad(energy, x)
    accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    chain = [x] if return_chain else None

    def log_q(to: torch.Tensor, frm: torch.Tensor, g_frm: torch.Tensor) -> torch.Tensor:
        # log N(to; frm - eta grad E(frm), 2 eta I), up to a constant that cancels
        return -(to - frm + eta * g_frm).pow(2).sum(1) / (4 * eta)

    for _ in range(n_steps):
        xi = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        prop = x - eta * g + math.sqrt(2 * eta) * xi          # (n, d) ULA proposal
        e_p, g_p = _energy(energy, prop), energy_grad(energy, prop)
        log_ratio = (e - e_p) + log_q(x, prop, g_p) - log_q(prop, x, g)
        ok = _accept(log_ratio, gen)                          # (n,)
        x = torch.where(ok[:, None], prop, x)
        e = torch.where(ok, e_p, e)
        g = torch.where(ok[:, None], g_p, g)
        accepted += ok.to(x.dtype)
        if chain is not None:
            chain.append(x)
    return MCMCResult(x, torch.stack(chain) if chain is not None else None,
                      accepted / n_steps, n_steps)


def hmc(
    energy: Energy,
    x0: Any,
    step_size: float,
    n_leapfrog: int,
    n_steps: int,
    *,
    return_chain: bool = False,
    generator: GeneratorLike = None,
) -> MCMCResult:
    """Hamiltonian Monte Carlo with an identity mass matrix (Neal 2011, Fig. 2).

    One step: ``v ~ N(0, I)``; ``L`` leapfrog steps of size ``h``,

        v <- v - (h/2) grad E(x);  x <- x + h v;  v <- v - (h/2) grad E(x)

    (the inner half steps merged); accept ``(x', v')`` with probability
    ``min(1, exp(H(x, v) - H(x', v')))``, ``H = E(x) + |v|^2 / 2``.

    Args:
        energy: maps (n, d) to (n,); differentiable in x.
        x0: (n, d) starting points, one chain per row (any float dtype).
        step_size: leapfrog step h > 0.
        n_leapfrog: leapfrog steps per proposal, L >= 1.
        n_steps: number of proposals per chain.
        return_chain: also keep every state (after each proposal).
        generator: torch generator, int seed or None.

    Returns:
        an :class:`MCMCResult` (``L`` gradients per step; the gradient at the
        current state is carried over from the previous step).
    """
    x = _start(energy, x0)
    h = check_positive(step_size, "step_size")
    n_leapfrog = check_positive_int(n_leapfrog, "n_leapfrog")
    n_steps = check_positive_int(n_steps, "n_steps")
    gen = as_generator(generator, "generator", device=x.device)
    e, g = _energy(energy, x), energy_grad(energy, x)
    accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    chain = [x] if return_chain else None
    for _ in range(n_steps):
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        h0 = e + 0.5 * v.pow(2).sum(1)                        # (n,) H(x, v)
        xp, vp, gp = x, v - 0.5 * h * g, g                    # first half kick
        for i in range(n_leapfrog):
            xp = xp + h * vp                                  # drift
            gp = energy_grad(energy, xp)
            # full kick between drifts, half kick at the end
            vp = vp - (h if i < n_leapfrog - 1 else 0.5 * h) * gp
        ep = _energy(energy, xp)
        h1 = ep + 0.5 * vp.pow(2).sum(1)                      # (n,) H(x', v')
        ok = _accept(h0 - h1, gen)
        x = torch.where(ok[:, None], xp, x)
        e = torch.where(ok, ep, e)
        g = torch.where(ok[:, None], gp, g)
        accepted += ok.to(x.dtype)
        if chain is not None:
            chain.append(x)
    return MCMCResult(x, torch.stack(chain) if chain is not None else None,
                      accepted / n_steps, n_steps * n_leapfrog)


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    """Autocorrelation of x (T, m) at lags 0..T-1, pooled over the m chains.

    Centred on the grand mean of all chains, not on each chain's own mean: chains stuck
    in different modes then show a high autocorrelation, as they should, and the
    estimate has no downward bias from re-centring each short chain.
    """
    t = x.shape[0]
    x = x - x.mean()                                   # grand mean
    size = 1 << (2 * t - 1).bit_length()              # zero padding: no circular wrap
    f = np.fft.rfft(x, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:t]     # (T, m) lag sums
    acov = acov.sum(axis=1) / (x.shape[1] * np.arange(t, 0, -1))  # mean per pair
    return acov / acov[0]


def effective_sample_size(chain: Any) -> float:
    """Effective sample size of a scalar summary recorded along parallel chains.

    ``ESS = m T / tau`` with ``tau = 1 + 2 sum_k rho_k`` the integrated autocorrelation
    time, ``rho_k`` pooled over the chains around their grand mean (the chains are
    assumed to target the same law, as in the multi-chain ESS of Vehtari et al. 2021),
    truncated with Geyer's initial positive sequence: sums of consecutive pairs
    ``rho_{2j} + rho_{2j+1}`` are added while positive (Geyer 1992).

    Args:
        chain: (T,) one chain or (T, m) m parallel chains of the same statistic
            (NumPy array or tensor), T >= 4.

    Returns:
        the effective number of independent draws among the ``m T`` values.
    """
    x = check_array(chain, "chain", ndim=(1, 2))
    if x.ndim == 1:
        x = x[:, None]
    t, m = x.shape
    if t < 4:
        raise ValueError(f"chain: expected at least 4 steps, got {t}")
    if np.all(x.var(axis=0) == 0):
        raise ValueError("chain: the statistic is constant along every chain (no variance)")
    rho = _autocorrelation(x)
    tau = -1.0                                         # = 1 + 2 sum_{k>=1} rho_k
    for j in range(t // 2):
        pair = rho[2 * j] + rho[2 * j + 1]
        if pair <= 0:
            break
        tau += 2.0 * pair
    # antithetic chains can make tau < 1; cap the ESS at m T log10(m T) as Stan does
    tau = max(tau, 1.0 / math.log10(max(m * t, 10)))
    return float(m * t / tau)
