"""Generative adversarial networks: losses, f-divergences, Lipschitz critics, rejection sampling.

The code behind Lecture 2 and Practical 2 (a GAN is an implicit model: a push-forward
``x = G_theta(z)`` of a latent law, trained against a critic instead of a likelihood).

- :data:`F_DIVERGENCES`: the f-divergences of Nowozin et al. (2016), Tables 1-2: the
  generator ``f``, its Fenchel conjugate ``f*`` and the critic's output activation ``g_f``;
  :func:`variational_bound` is the lower bound ``E_P[g_f(V)] - E_Q[f*(g_f(V))] <= D_f(P || Q)``.
- losses on logits (Goodfellow et al. 2014; Arjovsky et al. 2017; Nowozin et al. 2016):
  :func:`discriminator_loss`, :func:`generator_loss_saturating`,
  :func:`generator_loss_nonsaturating`, :func:`wgan_critic_loss`, :func:`wgan_generator_loss`,
  :func:`f_gan_critic_loss`, :func:`f_gan_generator_loss`;
- Lipschitz constraints: :func:`gradient_penalty` (Gulrajani et al. 2017),
  :func:`clip_weights` (Arjovsky et al. 2017), :func:`spectral_norm` by power iteration
  (Miyato et al. 2018; the critic itself uses ``torch.nn.utils.parametrizations.spectral_norm``);
  the zero-centred :func:`r1_penalty` on real data (Mescheder et al. 2018);
  :func:`lipschitz_upper_bound`, a certified bound for the Kantorovich-Rubinstein estimate;
- models: :class:`Generator`, :class:`Critic` (MLPs for 2-D toys), :class:`DigitGenerator`,
  :class:`DigitCritic` (MLPs for the 8x8 digits), and the alternating loop :func:`train_gan`;
- the Dirac-GAN's training dynamics (Mescheder et al. 2018): :func:`dirac_gan_trajectory`;
- discriminator rejection sampling (Azadi et al. 2019): :func:`drs_accept_prob`,
  :func:`estimate_max_logit`, :func:`drs_sample`;
- evaluation on mixtures of Gaussians: :func:`mode_metrics`, :func:`toy_modes`.

Conventions: D_f(P || Q) = int q f(p / q) dx with P the data and Q the model, as in
Nowozin et al.; logits are the critic's raw outputs ``V(x)``, ``D(x) = sigmoid(V(x))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import special
from torch import Tensor, nn

from coursekit.utils import progress
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_array,
    check_callable,
    check_finite,
    check_nonnegative,
    check_positive,
    check_positive_int,
)

ArrayOrTensor = np.ndarray | Tensor

# ----------------------------------------------------------------------------------------------
# f-divergences (Nowozin et al. 2016, Tables 1 and 2)
# ----------------------------------------------------------------------------------------------

_LOG2 = math.log(2.0)


def _is_t(x: Any) -> bool:
    return isinstance(x, Tensor)


def _arr(x: Any) -> ArrayOrTensor:
    """A tensor stays a tensor (gradients flow); anything else becomes a float array."""
    return x if _is_t(x) else np.asarray(x, dtype=float)


def _log(x):
    return torch.log(x) if _is_t(x) else np.log(x)


def _exp(x):
    return torch.exp(x) if _is_t(x) else np.exp(x)


def _expm1(x):
    return torch.expm1(x) if _is_t(x) else np.expm1(x)


def _xlogy(x, y):
    # x log y with 0 log 0 = 0 (the limit), for f at u = 0
    return torch.special.xlogy(x, y) if _is_t(x) else special.xlogy(x, y)


def _softplus(x):
    # log(1 + e^x) without overflow
    return F.softplus(x) if _is_t(x) else np.logaddexp(0.0, x)


def _where(c, a, b):
    return torch.where(c, a, b) if _is_t(c) else np.where(c, a, b)


def _inf_like(x):
    return torch.full_like(x, math.inf) if _is_t(x) else np.full_like(x, np.inf)


def _outside(t, high: float, value):
    """``value`` where ``t < high`` (the domain of f*), +inf elsewhere (f* = +inf there)."""
    inside = t < high
    # Evaluate the formula on a safe point outside the domain so that no NaN (or NaN
    # gradient) is ever produced; the result there is replaced by +inf.
    safe = _where(inside, t, t * 0 + (high - 1.0))
    return _where(inside, value(safe), _inf_like(t))


def _kl_f(u):
    return _xlogy(u, u)


def _rkl_f(u):
    return -_log(u)


def _pearson_f(u):
    return (u - 1.0) ** 2


def _hellinger_f(u):
    return (u**0.5 - 1.0) ** 2


def _js_f(u):
    return _xlogy(u, u) - _xlogy(u + 1.0, (u + 1.0) / 2.0)


def _gan_f(u):
    return _xlogy(u, u) - _xlogy(u + 1.0, u + 1.0)


def _tv_f(u):
    return 0.5 * abs(u - 1.0)


def _kl_conj(t):
    return _exp(t - 1.0)


def _rkl_conj(t):
    return _outside(t, 0.0, lambda s: -1.0 - _log(-s))


def _pearson_conj(t):
    return 0.25 * t**2 + t


def _hellinger_conj(t):
    return _outside(t, 1.0, lambda s: s / (1.0 - s))


def _js_conj(t):
    # -log(2 - e^t) = -log 2 - log(1 - e^(t - log 2)), stable near the edge of the domain
    return _outside(t, _LOG2, lambda s: -_LOG2 - _log(-_expm1(s - _LOG2)))


def _gan_conj(t):
    # -log(1 - e^t) = -log(-expm1(t)), stable near t = 0
    return _outside(t, 0.0, lambda s: -_log(-_expm1(s)))


def _tv_conj(t):
    inside = abs(t) <= 0.5
    return _where(inside, t, _inf_like(t))


def _identity(v):
    return v


# f*(g_f(v)) written directly in the logit v. Composing the two functions in floating point
# fails long before the true value is out of range: in float32, g_f(v) rounds onto the edge
# of dom f* (JS: log 2 - softplus(-v) == log 2 for v >~ 17; Hellinger: 1 - e^-v == 1), where
# f* is +inf, or g_f itself overflows (reverse KL: -e^-v = -inf at v = -1000). The closed
# forms below are finite wherever the value itself is representable.


def _kl_conj_act(v):
    return _exp(v - 1.0)                   # e^(v - 1): overflows only when the value does


def _rkl_conj_act(v):
    return v - 1.0                         # -1 - log(e^-v)


def _pearson_conj_act(v):
    return v * (0.25 * v + 1.0)            # v^2 / 4 + v


def _hellinger_conj_act(v):
    return _expm1(v)                       # (1 - e^-v) / e^-v = e^v - 1


def _js_conj_act(v):
    return _softplus(v) - _LOG2            # -log(2 - 2 sigmoid(v)) = softplus(v) - log 2


def _gan_conj_act(v):
    return _softplus(v)                    # -log(1 - sigmoid(v)) = softplus(v)


def _tv_conj_act(v):
    return _tv_act(v)                      # f*(t) = t on [-1/2, 1/2]


def _rkl_act(v):
    return -_exp(-v)


def _hellinger_act(v):
    return 1.0 - _exp(-v)


def _js_act(v):
    return _LOG2 - _softplus(-v)


def _gan_act(v):
    return -_softplus(-v)


def _tv_act(v):
    return 0.5 * (torch.tanh(v) if _is_t(v) else np.tanh(v))


@dataclass(frozen=True)
class FDivergence:
    """One row of Nowozin et al.'s Tables 1-2.

    Attributes:
        name: the divergence's name, for tables and legends.
        f: the generator ``f(u)``, convex on ``u > 0`` (``u >= 0`` where it extends);
            ``D_f(P || Q) = int q f(p / q)``.
        conjugate: the Fenchel conjugate ``f*(t) = sup_u (t u - f(u))``; ``+inf`` outside
            its domain.
        activation: the output activation ``g_f: R -> dom f*`` applied to the critic's raw
            output ``v``.
        domain: the open interval ``(low, high)`` on which ``f*`` is finite (closed for TV).
        formula: the divergence in LaTeX, for the table.
        conjugate_activation: ``f*(g_f(v))`` written directly in terms of the logit ``v``
            (finite wherever its value is representable; see
            :meth:`conjugate_of_activation`); None: the composition is used.
    """

    name: str
    f: Callable[[ArrayOrTensor], ArrayOrTensor]
    conjugate: Callable[[ArrayOrTensor], ArrayOrTensor]
    activation: Callable[[ArrayOrTensor], ArrayOrTensor]
    domain: tuple[float, float]
    formula: str
    conjugate_activation: Callable[[ArrayOrTensor], ArrayOrTensor] | None = None

    def __call__(self, u: Any) -> ArrayOrTensor:
        """``f(u)``, elementwise (arrays or tensors)."""
        return self.f(_arr(u))

    def conjugate_of_activation(self, v: Any) -> ArrayOrTensor:
        """``f*(g_f(v))`` elementwise, for logits ``v`` of any shape (arrays or tensors).

        The term the model's samples contribute to the f-GAN bound. It is computed from
        ``v`` in one closed form per row (e.g. ``softplus(v) - log 2`` for Jensen-Shannon,
        ``expm1(v)`` for squared Hellinger), so it stays finite, with a finite gradient,
        for logits like +-1000 in float32, where ``conjugate(activation(v))`` gives inf
        or NaN; it is inf only where the value itself exceeds the dtype (``e^(v - 1)``
        for KL and ``e^v - 1`` for Hellinger above about 88 in float32).
        """
        v = as_tensor(v, "v", min_rows=0) if _is_t(v) else check_array(v, "v")
        if self.conjugate_activation is None:
            return self.conjugate(self.activation(v))
        return self.conjugate_activation(v)


def _wrap(fn: Callable) -> Callable:
    def elementwise(x: Any) -> ArrayOrTensor:
        return fn(_arr(x))

    elementwise.__name__ = fn.__name__.strip("_")
    elementwise.__doc__ = fn.__doc__
    return elementwise


#: The f-divergences of the f-GAN paper (Nowozin et al. 2016, Tables 1-2), keyed by name.
#: ``jensen_shannon`` uses the table's conjugate ``-log(2 - e^t)``, whose generator
#: ``u log u - (u + 1) log((u + 1) / 2)`` gives ``D_f = 2 JSD`` (twice the usual JSD);
#: ``gan`` gives ``2 JSD - log 4`` (so ``f(1) = -log 4``).
F_DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "Kullback-Leibler", _wrap(_kl_f), _wrap(_kl_conj), _wrap(_identity),
        (-math.inf, math.inf), r"\int p \log \frac{p}{q}", _wrap(_kl_conj_act)),
    "reverse_kl": FDivergence(
        "reverse KL", _wrap(_rkl_f), _wrap(_rkl_conj), _wrap(_rkl_act),
        (-math.inf, 0.0), r"\int q \log \frac{q}{p}", _wrap(_rkl_conj_act)),
    "pearson": FDivergence(
        "Pearson chi^2", _wrap(_pearson_f), _wrap(_pearson_conj), _wrap(_identity),
        (-math.inf, math.inf), r"\int \frac{(q - p)^2}{q}", _wrap(_pearson_conj_act)),
    "squared_hellinger": FDivergence(
        "squared Hellinger", _wrap(_hellinger_f), _wrap(_hellinger_conj),
        _wrap(_hellinger_act), (-math.inf, 1.0), r"\int (\sqrt{p} - \sqrt{q})^2",
        _wrap(_hellinger_conj_act)),
    "jensen_shannon": FDivergence(
        "Jensen-Shannon (x2)", _wrap(_js_f), _wrap(_js_conj), _wrap(_js_act),
        (-math.inf, _LOG2), r"\int p \log \frac{2p}{p + q} + q \log \frac{2q}{p + q}",
        _wrap(_js_conj_act)),
    "gan": FDivergence(
        "GAN", _wrap(_gan_f), _wrap(_gan_conj), _wrap(_gan_act), (-math.inf, 0.0),
        r"\int p \log \frac{2p}{p + q} + q \log \frac{2q}{p + q} - \log 4",
        _wrap(_gan_conj_act)),
    "total_variation": FDivergence(
        "total variation", _wrap(_tv_f), _wrap(_tv_conj), _wrap(_tv_act), (-0.5, 0.5),
        r"\frac12 \int |p - q|", _wrap(_tv_conj_act)),
}


def get_divergence(key: str, name: str = "divergence") -> FDivergence:
    """``F_DIVERGENCES[key]`` with an error that lists the valid keys."""
    if isinstance(key, FDivergence):
        return key
    if not isinstance(key, str) or key not in F_DIVERGENCES:
        raise ValueError(
            f"{name}: unknown f-divergence {key!r}; valid keys: {', '.join(F_DIVERGENCES)}"
        )
    return F_DIVERGENCES[key]


def variational_bound(divergence: str | FDivergence, real_v: Any, fake_v: Any) -> Tensor:
    """The f-GAN lower bound ``E_P[g_f(V)] - E_Q[f*(g_f(V))] <= D_f(P || Q)`` (Nowozin eq. 6).

    Args:
        divergence: a key of :data:`F_DIVERGENCES` (or the entry itself).
        real_v: (n,) raw critic outputs ``V(x)`` on samples of P (the data).
        fake_v: (m,) raw critic outputs on samples of Q (the model).

    Returns:
        a scalar tensor (differentiable): the Monte Carlo estimate of the bound.
    """
    div = get_divergence(divergence)
    real_v = as_tensor(real_v, "real_v", ndim=1)
    fake_v = as_tensor(fake_v, "fake_v", ndim=1, dtype=real_v.dtype, device=real_v.device)
    # f*(g_f(V)) in one closed form of V: finite for large logits (FDivergence docstring)
    return div.activation(real_v).mean() - div.conjugate_of_activation(fake_v).mean()


# ----------------------------------------------------------------------------------------------
# Losses on the critic's logits
# ----------------------------------------------------------------------------------------------


def _logits(x: Any, name: str) -> Tensor:
    t = as_tensor(x, name, ndim=(1, 2))
    if t.ndim == 2 and t.shape[1] != 1:  # (n, 2) logits are not 2n logits
        raise ValueError(f"{name}: expected (n,) or (n, 1) scores, got shape {tuple(t.shape)}")
    return t.reshape(-1)


def discriminator_loss(real_logits: Any, fake_logits: Any) -> Tensor:
    """Binary cross-entropy of the discriminator, ``-E_P[log D(x)] - E_Q[log(1 - D(x))]``.

    With ``D = sigmoid(V)``: ``log D = -softplus(-V)`` and ``log(1 - D) = -softplus(V)``
    (stable for any logit). Minimising it maximises the GAN value V(D, G) (Goodfellow eq. 1).

    Args:
        real_logits: (n,) logits on data; fake_logits: (m,) logits on generated samples.
    """
    real = _logits(real_logits, "real_logits")
    fake = _logits(fake_logits, "fake_logits")
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss_saturating(fake_logits: Any) -> Tensor:
    """The minimax generator loss ``E_Q[log(1 - D(G(z)))] = -E softplus(V)`` (to minimise).

    Its gradient vanishes when the discriminator confidently rejects the samples
    (``V -> -inf``): the "saturating" loss of Goodfellow et al. (2014), Section 3.
    """
    return -F.softplus(_logits(fake_logits, "fake_logits")).mean()


def generator_loss_nonsaturating(fake_logits: Any) -> Tensor:
    """The non-saturating generator loss ``-E_Q[log D(G(z))] = E softplus(-V)`` (to minimise).

    Goodfellow et al.'s (2014) replacement for :func:`generator_loss_saturating`: its
    gradient does not vanish when the discriminator rejects the samples. It is *not* the
    minimax game with larger gradients. Per sample, ``d/dV`` is ``-(1 - D)`` here and ``-D``
    for the minimax loss, so the samples are weighted differently and the two gradients
    point in different directions. Against the optimal discriminator
    ``D* = p / (p + p_hat_theta)`` held fixed, the minimax loss's gradient in theta is that
    of ``2 JSD(P, P_hat_theta)``, and this loss's is that of
    ``KL(P_hat_theta || P) - 2 JSD(P, P_hat_theta)`` (Arjovsky & Bottou 2017, Thm 2.5): a
    reverse KL, which is mode-seeking, minus a JSD term, which pushes away from the data.
    Both gradients vanish at ``P_hat_theta = P``.

    Args:
        fake_logits: (m,) logits ``V(G(z))`` on generated samples.
    """
    return F.softplus(-_logits(fake_logits, "fake_logits")).mean()


def wgan_critic_loss(real_scores: Any, fake_scores: Any) -> Tensor:
    """Minus the Kantorovich-Rubinstein estimate: ``E_Q[f(x)] - E_P[f(x)]`` (to minimise)."""
    return _logits(fake_scores, "fake_scores").mean() - _logits(real_scores, "real_scores").mean()


def wgan_generator_loss(fake_scores: Any) -> Tensor:
    """The WGAN generator loss ``-E_Q[f(G(z))]`` (to minimise)."""
    return -_logits(fake_scores, "fake_scores").mean()


def f_gan_critic_loss(real_v: Any, fake_v: Any, divergence: str | FDivergence) -> Tensor:
    """Minus the variational bound (:func:`variational_bound`): the critic maximises the bound."""
    return -variational_bound(divergence, _logits(real_v, "real_v"), _logits(fake_v, "fake_v"))


F_GAN_OBJECTIVES = ("saddle", "nonsaturating")


def f_gan_generator_loss(
    fake_v: Any, divergence: str | FDivergence, *, objective: str = "saddle"
) -> Tensor:
    """The f-GAN generator's loss on the critic's raw outputs (to minimise).

    - ``"saddle"``: the generator's part of the bound, ``-E_Q[f*(g_f(V(G(z))))]``: the
      generator minimises the bound (the saddle-point objective of Nowozin et al., eq. 6;
      ``E_P[g_f(V)]`` does not depend on it). Its gradient weights each sample by
      ``(f* o g_f)'(V)``: ``e^(V - 1)`` for KL, so the samples the critic already rates
      highly dominate the update.
    - ``"nonsaturating"``: ``-E_Q[g_f(V(G(z)))]``, the objective Nowozin et al. use in
      practice (Sec. 3.2), which generalises the non-saturating loss: for the ``"gan"``
      row it is :func:`generator_loss_nonsaturating`. Per-sample weight ``g_f'(V)``
      (1 for KL).

    Args:
        fake_v: (m,) raw critic outputs ``V(G(z))`` on generated samples.
        divergence: a key of :data:`F_DIVERGENCES` (or the entry itself).
        objective: ``"saddle"`` or ``"nonsaturating"``.

    Returns:
        a scalar tensor.
    """
    div = get_divergence(divergence)
    if objective not in F_GAN_OBJECTIVES:
        raise ValueError(
            f"objective: expected one of {', '.join(F_GAN_OBJECTIVES)}, got {objective!r}"
        )
    v = _logits(fake_v, "fake_v")
    if objective == "nonsaturating":
        return -div.activation(v).mean()
    return -div.conjugate_of_activation(v).mean()


# ----------------------------------------------------------------------------------------------
# Lipschitz constraints
# ----------------------------------------------------------------------------------------------


def gradient_penalty(
    critic: nn.Module, real: Any, fake: Any, *, generator: GeneratorLike = None
) -> Tensor:
    """The WGAN-GP penalty ``E[(||grad_x critic(x_hat)||_2 - 1)^2]`` (Gulrajani et al. 2017, eq. 3).

    ``x_hat = alpha * real + (1 - alpha) * fake`` with one ``alpha ~ U[0, 1]`` per sample;
    the norm is taken over all non-batch dimensions. The result is differentiable with
    respect to the critic's parameters (``create_graph=True``), to be added to its loss.

    Args:
        critic: maps (n, ...) to (n,) or (n, 1) scores.
        real, fake: (n, ...) batches of the same shape (``fake`` is detached: the penalty
            constrains the critic, not the generator).
        generator: torch generator (or seed) for ``alpha``.

    Returns:
        a scalar tensor.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic: expected a torch.nn.Module, got {type(critic).__name__}")
    real = as_tensor(real, "real", like=critic, detach=True)
    fake = as_tensor(fake, "fake", like=critic, detach=True)
    if real.shape != fake.shape:
        raise ValueError(
            f"fake: expected the shape of real {tuple(real.shape)}, got {tuple(fake.shape)}"
        )
    gen = as_generator(generator, "generator", device=real.device)
    n = real.shape[0]
    alpha = torch.rand((n,) + (1,) * (real.ndim - 1), generator=gen,
                       dtype=real.dtype, device=real.device)      # (n, 1, ...) one per sample
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (n, ...) interpolates
    scores = critic(x_hat).reshape(n, -1).sum()                  # sum: grads are per-sample
    (grad,) = torch.autograd.grad(scores, x_hat, create_graph=True)  # (n, ...)
    norms = grad.flatten(1).norm(dim=1)                          # (n,) ||grad||_2
    return ((norms - 1.0) ** 2).mean()


def _in_shape(critic: Any) -> tuple[int | None, ...] | None:
    # (n, *in_shape) for a Critic: a batch that does not fit is named by the caller's argument
    return (None, *critic.in_shape) if hasattr(critic, "in_shape") else None


def r1_penalty(critic: nn.Module, real: Any) -> Tensor:
    """The R1 penalty ``E_P ||grad_x critic(x)||_2^2`` on real data (Mescheder et al. 2018).

    A zero-centred penalty: the discriminator is pushed to be flat on the data, which damps
    the oscillations of GAN training near equilibrium (the paper adds ``gamma / 2`` times
    this to the discriminator's loss). Differentiable with respect to the critic's
    parameters (``create_graph=True``).

    Args:
        critic: maps (n, ...) to (n,) or (n, 1) scores.
        real: (n, ...) a batch of data.

    Returns:
        a scalar tensor.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic: expected a torch.nn.Module, got {type(critic).__name__}")
    x = as_tensor(real, "real", like=critic, detach=True, shape=_in_shape(critic))
    x = x.clone().requires_grad_(True)
    scores = critic(x).reshape(x.shape[0], -1).sum()           # sum: grads are per-sample
    (grad,) = torch.autograd.grad(scores, x, create_graph=True)  # (n, ...)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def critic_gradient_norms(critic: nn.Module, x: Any) -> Tensor:
    """``||grad_x critic(x)||_2`` at each point: (n, ...) -> (n,) (detached)."""
    check_callable(critic, "critic")
    x = as_tensor(x, "x", like=critic, detach=True).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x)
    return grad.flatten(1).norm(dim=1).detach()


def lipschitz_upper_bound(critic: nn.Module) -> float:
    """A certified upper bound on the Lipschitz constant of a :class:`Critic` (l2 norms).

    ``prod_l ||W_l||_2 / scale``: each linear layer is ``||W_l||_2``-Lipschitz (its exact
    largest singular value, not a power-iteration estimate), LeakyReLU / ReLU are
    1-Lipschitz, and the input is divided by ``scale``. Unlike the largest gradient norm
    seen on samples (:func:`critic_gradient_norms`), which can only under-estimate the
    Lipschitz constant ``L``, this bound ``B >= L`` makes the Kantorovich-Rubinstein
    estimate a certified lower bound: ``(E_P f - E_Q f) / B <= W_1(P, Q)``.

    Args:
        critic: a :class:`Critic` (or :class:`DigitCritic`): its ``net`` holds only linear
            layers (spectrally normalised or not) and (Leaky)ReLU activations.

    Returns:
        the bound, a float (the layers are read in eval mode, so spectral normalisation
        runs no extra power iteration and the critic's state is unchanged).
    """
    net = getattr(critic, "net", None)
    if not isinstance(critic, nn.Module) or not isinstance(net, nn.Sequential):
        raise TypeError(
            f"critic: expected a coursekit Critic (an MLP in .net), got {type(critic).__name__}"
        )
    was_training = critic.training
    critic.eval()   # a training-mode access to a spectral-normalised weight iterates u, v
    try:
        bound = 1.0 / float(getattr(critic, "scale", 1.0))
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, nn.Linear):
                    bound *= float(torch.linalg.matrix_norm(layer.weight.double(), ord=2))
                elif isinstance(layer, nn.LeakyReLU) and abs(layer.negative_slope) <= 1.0:
                    continue
                elif not isinstance(layer, (nn.ReLU, nn.Identity)):
                    raise TypeError(
                        f"critic: no Lipschitz bound for a layer {type(layer).__name__}; "
                        "expected Linear and (Leaky)ReLU layers"
                    )
    finally:
        critic.train(was_training)
    return bound


def clip_weights(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``module`` to ``[-clip, clip]`` in place (Arjovsky et al. 2017)."""
    clip = check_positive(clip, "clip")
    with torch.no_grad():
        for p in module.parameters():
            p.clamp_(-clip, clip)


def spectral_norm(
    weight: Any, *, n_iter: int = 20, u: Tensor | None = None, generator: GeneratorLike = None
) -> tuple[Tensor, Tensor]:
    """The largest singular value of ``weight`` by power iteration (Miyato et al. 2018, Alg. 1).

    ``v <- W^T u / ||W^T u||``, ``u <- W v / ||W v||``, ``sigma = u^T W v``.

    Args:
        weight: (m, k) matrix (a conv kernel is flattened to ``(out, -1)``).
        n_iter: number of power iterations.
        u: (m,) start vector (e.g. the previous call's, as the paper does once per step);
            drawn at random when None.
        generator: torch generator (or seed) for the random start.

    Returns:
        sigma: scalar tensor; u: (m,) the left singular vector estimate (detached).
    """
    w = as_tensor(weight, "weight", ndim=(2, 3, 4, 5), min_rows=1)
    w = w.reshape(w.shape[0], -1)                                   # (m, k)
    n_iter = check_positive_int(n_iter, "n_iter")
    if u is None:
        gen = as_generator(generator, "generator", device=w.device)
        u = torch.randn(w.shape[0], generator=gen, dtype=w.dtype, device=w.device)
    else:
        u = as_tensor(u, "u", like=w, shape=(w.shape[0],), detach=True)
    with torch.no_grad():
        for _ in range(n_iter):
            v = F.normalize(w.T @ u, dim=0, eps=1e-12)              # (k,)
            u = F.normalize(w @ v, dim=0, eps=1e-12)                # (m,)
    sigma = u @ (w @ v)                                             # u^T W v, differentiable in W
    return sigma, u


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def _mlp(sizes: Sequence[int], act: Callable[[], nn.Module], sn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = nn.Linear(a, b)
        if sn:
            lin = nn.utils.parametrizations.spectral_norm(lin)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(check_positive_int(h, "hidden") for h in hidden)
    except TypeError:
        raise ValueError(f"hidden: expected a sequence of widths, got {hidden!r}") from None
    return sizes


class Generator(nn.Module):
    """An MLP generator ``G_theta: z (n, latent_dim) -> x (n, *out_shape)``, with z ~ N(0, I).

    ReLU hidden layers; the output is linear (2-D toys) or goes through a sigmoid
    (``output="sigmoid"``: images in [0, 1]). No batch norm (small batches of a 2-D toy
    make its statistics noisy).

    ``scale`` (linear output only) multiplies the network's output: with ``scale`` set to
    the data's standard deviation, the network works in standardised units, where its
    default initialisation and a learning rate of 1e-3 suit it, while samples come out in
    the data's units. Training ``Generator(scale=s)`` against ``Critic(scale=s)`` on ``x``
    is the same computation as training the unscaled pair on ``x / s``.
    """

    def __init__(
        self, latent_dim: int = 2, out_shape: Sequence[int] = (2,),
        hidden: Sequence[int] = (128, 128, 128), output: str = "linear",
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.out_shape = tuple(check_positive_int(s, "out_shape") for s in out_shape)
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output: expected 'linear' or 'sigmoid', got {output!r}")
        self.output = output
        self.scale = check_positive(scale, "scale")
        if output == "sigmoid" and self.scale != 1.0:
            raise ValueError("scale: only for output='linear' (a sigmoid output is in [0, 1])")
        self.net = _mlp([self.latent_dim, *_hidden(hidden), math.prod(self.out_shape)], nn.ReLU)

    def forward(self, z: Tensor) -> Tensor:
        """z: (n, latent_dim) -> x: (n, *out_shape)."""
        z = as_tensor(z, "z", like=self, shape=(None, self.latent_dim))
        x = self.net(z)
        if self.output == "sigmoid":
            x = torch.sigmoid(x)
        elif self.scale != 1.0:
            x = self.scale * x
        return x.unflatten(-1, self.out_shape)

    def sample(self, n: int, generator: GeneratorLike = None) -> Tensor:
        """``n`` samples ``G(z)``, ``z ~ N(0, I)`` drawn on the model's device: (n, *out_shape)."""
        n = check_positive_int(n, "n")
        p = next(self.parameters())
        gen = as_generator(generator, "generator", device=p.device)
        z = torch.randn(n, self.latent_dim, generator=gen, dtype=p.dtype, device=p.device)
        return self(z)


class Critic(nn.Module):
    """An MLP critic / discriminator ``V_phi: x (n, *in_shape) -> (n,)`` raw scores (logits).

    LeakyReLU(0.2) hidden layers and a linear output: the same network is a GAN
    discriminator (``D = sigmoid(V)``), an f-GAN critic (``T = g_f(V)``) or a WGAN critic.
    ``spectral_norm=True`` wraps every linear layer in torch's spectral normalisation
    (Miyato et al. 2018): ``W`` is divided by a power-iteration estimate
    ``sigma_hat = u^T W v``, refined by one iteration per training-mode forward pass. As
    ``u`` and ``v`` are unit vectors, ``sigma_hat <= sigma(W)``: each normalised layer has
    spectral norm ``sigma(W) / sigma_hat >= 1``, equal to 1 only once the iteration has
    converged. The network's Lipschitz constant is at most the product of these ratios
    (LeakyReLU is 1-Lipschitz), so it is approximately, not at most, 1. Ratios
    of a few percent per layer above 1 are common while the weights are moving.
    No batch norm: it makes each score depend on the rest of the batch, which breaks the
    per-sample gradient penalty and the per-sample logits of rejection sampling.
    ``scale`` divides the input (see :class:`Generator`: the pair then works in
    standardised units).
    """

    def __init__(
        self, in_shape: Sequence[int] = (2,), hidden: Sequence[int] = (128, 128, 128),
        spectral_norm: bool = False, scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(check_positive_int(s, "in_shape") for s in in_shape)
        self.scale = check_positive(scale, "scale")
        self.net = _mlp([math.prod(self.in_shape), *_hidden(hidden), 1],
                        lambda: nn.LeakyReLU(0.2), sn=bool(spectral_norm))

    def forward(self, x: Tensor) -> Tensor:
        """x: (n, *in_shape) -> (n,) scores."""
        x = as_tensor(x, "x", like=self, shape=(None, *self.in_shape))
        if self.scale != 1.0:
            x = x / self.scale
        return self.net(x.flatten(1)).squeeze(-1)


class DigitGenerator(Generator):
    """The course's GAN generator for the 8x8 digits: ``z (n, 16) -> x (n, 1, 8, 8)`` in [0, 1]."""

    def __init__(self, latent_dim: int = 16, hidden: Sequence[int] = (128, 256)) -> None:
        super().__init__(latent_dim, (1, 8, 8), hidden, output="sigmoid")


class DigitCritic(Critic):
    """The course's GAN critic for the 8x8 digits: ``x (n, 1, 8, 8) -> (n,)`` scores."""

    def __init__(self, hidden: Sequence[int] = (256, 128), spectral_norm: bool = False) -> None:
        super().__init__((1, 8, 8), hidden, spectral_norm)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

#: The loss pairs of :func:`train_gan`: name -> (critic's loss on (real, fake) scores,
#: generator's loss on fake scores). ``"f_gan"`` is completed by :func:`loss_pair`.
LOSS_PAIRS: dict[str, tuple[Callable[[Any, Any], Tensor], Callable[[Any], Tensor]]] = {
    "nonsaturating": (discriminator_loss, generator_loss_nonsaturating),
    "saturating": (discriminator_loss, generator_loss_saturating),
    "wgan_gp": (wgan_critic_loss, wgan_generator_loss),     # + gp_weight * gradient_penalty
    "wgan_clip": (wgan_critic_loss, wgan_generator_loss),   # + clip_weights after each step
}
LOSSES = (*LOSS_PAIRS, "f_gan")


def loss_pair(
    loss: str, divergence: str | FDivergence | None = None, f_gan_objective: str | None = None
) -> tuple[Callable[[Any, Any], Tensor], Callable[[Any], Tensor]]:
    """The two losses of a named GAN: ``(critic_loss(real_v, fake_v), generator_loss(fake_v))``.

    The table of :func:`train_gan` in code: :data:`LOSS_PAIRS` for the fixed pairs; for
    ``loss="f_gan"``, :func:`f_gan_critic_loss` and :func:`f_gan_generator_loss` with the
    chosen ``divergence`` (a key of :data:`F_DIVERGENCES`) and ``f_gan_objective``
    (``"saddle"``, the default, or ``"nonsaturating"``), which only ``"f_gan"`` takes.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {loss!r}")
    if loss != "f_gan":
        if divergence is not None or f_gan_objective is not None:
            name = "divergence" if divergence is not None else "f_gan_objective"
            raise ValueError(f"{name}: only used with loss='f_gan'")
        return LOSS_PAIRS[loss]
    div = get_divergence(divergence)
    objective = "saddle" if f_gan_objective is None else f_gan_objective
    if objective not in F_GAN_OBJECTIVES:
        raise ValueError(f"f_gan_objective: expected one of {', '.join(F_GAN_OBJECTIVES)}, "
                         f"got {objective!r}")
    return (partial(f_gan_critic_loss, divergence=div),
            partial(f_gan_generator_loss, divergence=div, objective=objective))
LR_SCHEDULES = ("constant", "linear")


def train_gan(
    generator_net: Generator,
    critic: nn.Module,
    data: Any,
    *,
    loss: str = "nonsaturating",
    divergence: str | None = None,
    f_gan_objective: str | None = None,
    n_steps: int = 2000,
    batch_size: int = 256,
    lr_g: float = 1e-3,
    lr_d: float = 1e-3,
    betas: tuple[float, float] = (0.5, 0.9),
    n_critic: int = 1,
    gp_weight: float = 0.1,
    clip: float = 0.01,
    r1_weight: float = 0.0,
    lr_schedule: str = "constant",
    generator: GeneratorLike = None,
    desc: str = "GAN",
    show_progress: bool = True,
    callback: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Alternating GAN training (Goodfellow et al. 2014, Algorithm 1) with a tqdm bar.

    Each step: ``n_critic`` critic updates on a fresh data mini-batch and fresh samples,
    then one generator update. Adam for both. The loss pairs (:data:`LOSS_PAIRS`,
    :func:`loss_pair`):

    ============== =============================================== =============================
    ``loss``       critic minimises                                generator minimises
    ============== =============================================== =============================
    nonsaturating  :func:`discriminator_loss`                      ``-E log D(G(z))``
    saturating     :func:`discriminator_loss`                      ``E log(1 - D(G(z)))``
    wgan_gp        :func:`wgan_critic_loss` + gp_weight * GP       :func:`wgan_generator_loss`
    wgan_clip      :func:`wgan_critic_loss`, weights clipped        :func:`wgan_generator_loss`
    f_gan          :func:`f_gan_critic_loss` (``divergence``)      :func:`f_gan_generator_loss`
                                                                   (``f_gan_objective``)
    ============== =============================================== =============================

    Args:
        generator_net: the generator (has ``latent_dim`` and ``sample``).
        critic: maps (n, ...) to (n,) scores.
        data: (N, ...) training set (array or tensor), sampled with replacement.
        divergence: for ``loss="f_gan"``: a key of :data:`F_DIVERGENCES`.
        f_gan_objective: for ``loss="f_gan"``: the generator's objective,
            ``"saddle"`` (default) or ``"nonsaturating"`` (see :func:`f_gan_generator_loss`).
        n_steps: number of generator updates.
        gp_weight: lambda of the gradient penalty (Gulrajani et al. use 10; a small 2-D
            critic with lr 1e-3 trains faster with 0.1-1).
        clip: weight-clipping bound c for ``wgan_clip``.
        r1_weight: gamma >= 0 of the R1 penalty: ``gamma / 2 *`` :func:`r1_penalty` on
            the real batch is added to the critic's loss (0: none).
        lr_schedule: ``"constant"``, or ``"linear"``: both learning rates decay linearly
            from their initial values to 0 over the ``n_steps`` generator steps (the
            critic's updates of step k use the same factor ``1 - k / n_steps``), which
            lets the two players settle at the end of a short run.
        generator: torch generator (or seed) for the batches, the latents and the penalty.
        callback: called as ``callback(step)`` after each generator step (e.g. to take
            snapshots of the samples); it must not draw from ``generator``.

    Returns:
        ``{"critic": [...], "generator": [...]}``: the losses after each generator step
        (the critic's is the last of its ``n_critic`` updates).
    """
    critic_loss, generator_loss = loss_pair(loss, divergence, f_gan_objective)
    n_steps = check_positive_int(n_steps, "n_steps")
    n_critic = check_positive_int(n_critic, "n_critic")
    batch_size = check_positive_int(batch_size, "batch_size")
    gp_weight, clip = check_positive(gp_weight, "gp_weight"), check_positive(clip, "clip")
    r1_weight = check_nonnegative(r1_weight, "r1_weight")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, "
                         f"got {lr_schedule!r}")
    x = as_tensor(data, "data", like=critic, detach=True, shape=_in_shape(critic))
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(check_nonnegative(b, "betas") < 1 for b in betas)):
        raise ValueError(f"betas: expected Adam's two numbers in [0, 1), got {betas!r}")
    p = next(generator_net.parameters())
    gen = as_generator(generator, "generator", device=x.device)
    opt_g = torch.optim.Adam(generator_net.parameters(), lr=check_positive(lr_g, "lr_g"),
                             betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=check_positive(lr_d, "lr_d"), betas=betas)
    schedulers = []
    if lr_schedule == "linear":
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 - k / n_steps)
                      for opt in (opt_g, opt_d)]
    history: dict[str, list[float]] = {"critic": [], "generator": []}

    def fake_batch() -> Tensor:
        z = torch.randn(batch_size, generator_net.latent_dim, generator=gen,
                        dtype=p.dtype, device=p.device)
        return generator_net(z)

    bar = progress(range(n_steps), desc=desc, disable=not show_progress)
    for step in bar:
        for _ in range(n_critic):
            real = x[torch.randint(0, x.shape[0], (batch_size,), generator=gen, device=x.device)]
            with torch.no_grad():
                fake = fake_batch()
            d_loss = critic_loss(critic(real), critic(fake))
            if loss == "wgan_gp":
                d_loss = d_loss + gp_weight * gradient_penalty(critic, real, fake, generator=gen)
            if r1_weight > 0.0:
                d_loss = d_loss + 0.5 * r1_weight * r1_penalty(critic, real)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if loss == "wgan_clip":
                clip_weights(critic, clip)
        g_loss = generator_loss(critic(fake_batch()))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for scheduler in schedulers:
            scheduler.step()
        if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
            raise ValueError(
                f"the losses became non-finite at step {step}: lower lr_g/lr_d or check the "
                "critic's output activation"
            )
        history["critic"].append(d_loss.item())
        history["generator"].append(g_loss.item())
        if callback is not None:
            callback(step)
        if (step + 1) % 50 == 0:
            bar.set_postfix(d=f"{np.mean(history['critic'][-50:]):.3f}",
                            g=f"{np.mean(history['generator'][-50:]):.3f}")
    return history


# ----------------------------------------------------------------------------------------------
# The Dirac-GAN (Mescheder et al. 2018)
# ----------------------------------------------------------------------------------------------

DIRAC_METHODS = ("simultaneous", "alternating")
DIRAC_LOSSES = ("saturating", "nonsaturating", "wgan")
DIRAC_REGS = ("none", "r1", "wgan_gp")


class _DiracCritic(nn.Module):
    """The Dirac-GAN's critic ``V_psi(x) = psi x``: (n, 1) -> (n,) logits."""

    def __init__(self, psi: float) -> None:
        super().__init__()
        self.psi = nn.Parameter(torch.tensor(float(psi), dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.psi * x[:, 0]


def dirac_gan_trajectory(
    method: str = "simultaneous",
    n_steps: int = 200,
    lr: float = 0.1,
    reg: str = "none",
    *,
    loss: str = "saturating",
    gamma: float = 1.0,
    start: Sequence[float] = (1.0, 1.0),
) -> np.ndarray:
    """Gradient steps on the Dirac-GAN, the smallest GAN that fails to converge.

    The data are a point mass at 0, the generator a point mass at ``theta`` and the critic
    linear, ``V_psi(x) = psi x`` (Mescheder et al. 2018, Sec. 2.2); the unique equilibrium is
    ``(theta, psi) = (0, 0)``. Each step computes the players' gradients with the very loss
    functions :func:`train_gan` uses, on the batches ``real = [0]``, ``fake = [theta]``, and
    moves each player by plain gradient descent with step ``lr``:

    - ``"simultaneous"``: both gradients at ``(theta_k, psi_k)``;
    - ``"alternating"``: the critic first, then the generator against the updated critic
      (the order of :func:`train_gan` with ``n_critic = 1``).

    Without regularisation the continuous-time flow circles the equilibrium at a constant
    radius; simultaneous steps spiral outwards (the squared radius grows by the factor
    ``1 + lr^2 s^2`` per step, with ``s = sigmoid(psi theta)`` for the GAN losses and 1 for
    WGAN), alternating steps keep circling without converging. ``reg="r1"`` adds
    ``gamma / 2 *`` :func:`r1_penalty` (here ``gamma psi^2 / 2``) to the critic's loss and
    converges to the equilibrium for small enough ``lr`` (a zero-centred penalty);
    ``reg="wgan_gp"`` adds ``gamma *`` :func:`gradient_penalty` (here
    ``gamma (|psi| - 1)^2``), whose target ``|psi| = 1`` is not the equilibrium's critic,
    and does not converge (Mescheder et al., Sec. 3): from (1, 1) it keeps oscillating
    for small gamma, or comes to rest with a flat critic (``psi ~ 0``) and the generator
    off the data, at ``theta ~ 2 gamma`` (WGAN) or ``4 gamma`` (GAN losses).

    Args:
        method: ``"simultaneous"`` or ``"alternating"``.
        n_steps: number of steps.
        lr: step size > 0 of both players.
        reg: ``"none"``, ``"r1"`` or ``"wgan_gp"``.
        loss: ``"saturating"`` (the minimax game: :func:`discriminator_loss` and
            :func:`generator_loss_saturating`), ``"nonsaturating"``
            (:func:`generator_loss_nonsaturating` for the generator) or ``"wgan"``
            (:func:`wgan_critic_loss`, :func:`wgan_generator_loss`).
        gamma: weight >= 0 of the regulariser.
        start: ``(theta_0, psi_0)``.

    Returns:
        (n_steps + 1, 2) array: ``(theta_k, psi_k)`` for k = 0 .. n_steps.
    """
    if method not in DIRAC_METHODS:
        raise ValueError(f"method: expected one of {', '.join(DIRAC_METHODS)}, got {method!r}")
    if reg not in DIRAC_REGS:
        raise ValueError(f"reg: expected one of {', '.join(DIRAC_REGS)}, got {reg!r}")
    if loss not in DIRAC_LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(DIRAC_LOSSES)}, got {loss!r}")
    n_steps = check_positive_int(n_steps, "n_steps")
    lr = check_positive(lr, "lr")
    gamma = check_nonnegative(gamma, "gamma")
    start_arr = check_array(start, "start", ndim=1)
    if start_arr.shape != (2,):
        raise ValueError(f"start: expected (theta_0, psi_0), got shape {start_arr.shape}")
    theta0, psi0 = (float(s) for s in start_arr)
    critic = _DiracCritic(psi0)
    theta = torch.tensor(float(theta0), dtype=torch.float64, requires_grad=True)
    real = torch.zeros(1, 1, dtype=torch.float64)                  # (1, 1) the data: x = 0

    def critic_grad() -> Tensor:
        fake = theta.detach().reshape(1, 1)                        # (1, 1) the generator's point
        real_v, fake_v = critic(real), critic(fake)                # (1,), (1,) logits
        if loss == "wgan":
            d_loss = wgan_critic_loss(real_v, fake_v)
        else:
            d_loss = discriminator_loss(real_v, fake_v)
        if reg == "r1":
            d_loss = d_loss + 0.5 * gamma * r1_penalty(critic, real)
        elif reg == "wgan_gp":
            d_loss = d_loss + gamma * gradient_penalty(critic, real, fake, generator=0)
        (g,) = torch.autograd.grad(d_loss, critic.psi)
        return g

    def generator_grad() -> Tensor:
        fake_v = critic(theta.reshape(1, 1))                       # (1,) V_psi(theta)
        if loss == "wgan":
            g_loss = wgan_generator_loss(fake_v)
        elif loss == "nonsaturating":
            g_loss = generator_loss_nonsaturating(fake_v)
        else:
            g_loss = generator_loss_saturating(fake_v)
        (g,) = torch.autograd.grad(g_loss, theta)
        return g

    path = np.empty((n_steps + 1, 2))
    path[0] = theta0, psi0
    for k in range(n_steps):
        try:
            if method == "simultaneous":
                g_psi, g_theta = critic_grad(), generator_grad()   # both at (theta_k, psi_k)
                with torch.no_grad():
                    critic.psi -= lr * g_psi
                    theta -= lr * g_theta
            else:
                g_psi = critic_grad()
                with torch.no_grad():
                    critic.psi -= lr * g_psi                       # the critic moves first
                g_theta = generator_grad()                         # against the new critic
                with torch.no_grad():
                    theta -= lr * g_theta
        except ValueError:  # a logit psi * theta (or a penalty) beyond float64: the losses refuse it
            path[k + 1] = np.inf
        else:
            path[k + 1] = theta.item(), critic.psi.item()
        if not np.isfinite(path[k + 1]).all():  # a spiral that outgrew float64
            raise ValueError(f"lr: the trajectory overflowed float64 after {k} steps "
                             f"(lr = {lr}); use a smaller lr or fewer n_steps")
    return path


# ----------------------------------------------------------------------------------------------
# Discriminator rejection sampling (Azadi et al. 2019)
# ----------------------------------------------------------------------------------------------


def drs_accept_prob(
    logits: Any, max_logit: Any, *, gamma: float = 0.0, eps: float = 1e-6
) -> ArrayOrTensor:
    """Acceptance probability of discriminator rejection sampling (Azadi et al. 2019, Alg. 1).

    ``p = sigmoid(F)``, ``F = Delta - log(1 - exp(Delta - eps)) - gamma``, ``Delta = logits -
    max_logit``. In closed form,
    ``p = e^Delta / (e^Delta + e^gamma (1 - e^(Delta - eps)))``; for ``gamma = 0``,
    ``p = e^Delta / (1 + e^Delta (1 - e^-eps))``, which is ``e^Delta`` up to a relative
    error of at most ``eps`` (at ``Delta = 0``, ``p = 1 / (2 - e^-eps) ~ 1 - eps``).
    With the optimal discriminator's logit ``log p_data - log p_g`` and the true maximum,
    ``e^Delta`` is the exact rejection-sampling ratio ``p_data / (M p_g)``. ``gamma``
    shifts F (larger gamma: fewer acceptances, sharper selection); ``eps`` keeps the log
    finite at ``Delta = 0``. ``Delta > 0`` (a logit above the estimated maximum) is
    clamped to 0: accepted with probability ``1 / (2 - e^-eps)``.

    Args:
        logits: (n,) discriminator logits (array or tensor; the result has the same kind).
        max_logit: scalar, the (estimated) maximum logit over generated samples.
        gamma: finite real shift.
        eps: > 0.

    Returns:
        (n,) acceptance probabilities in [0, 1].
    """
    eps, gamma = check_positive(eps, "eps"), check_finite(gamma, "gamma")
    m = float(check_array(max_logit, "max_logit", ndim=0))
    if _is_t(logits):
        v = as_tensor(logits, "logits", ndim=1)
        delta = (v - m).clamp(max=0.0)                          # (n,) Delta <= 0
        f = delta - torch.log(-torch.expm1(delta - eps)) - gamma  # (n,) F of Alg. 1
        return torch.sigmoid(f)
    v = check_array(logits, "logits", ndim=1, min_rows=1)
    delta = np.minimum(v - m, 0.0)
    f = delta - np.log(-np.expm1(delta - eps)) - gamma
    return special.expit(f)


class _FreshSampler:
    """``sample_fn(m)`` for DRS, refusing a sampler that repeats itself.

    A module with a ``sample`` method (a :class:`Generator`) is sampled through one torch
    generator, so successive calls continue one random stream. A plain callable is called
    as it is; if two successive calls of the same size return the same samples (a sampler
    that reseeds itself on every call), the burn-in would look at the same points again
    and again and DRS would re-propose them: that is an error, not a silent bias.
    """

    def __init__(self, sample_fn: Any, gen: torch.Generator | None) -> None:
        if isinstance(sample_fn, nn.Module) and callable(getattr(sample_fn, "sample", None)):
            self._draw = lambda m: sample_fn.sample(m, generator=gen)
        elif callable(sample_fn):
            self._draw = sample_fn
        else:
            raise TypeError(
                "sample_fn: expected a callable m -> (m, ...) samples or a generator module "
                f"with a sample method, got {type(sample_fn).__name__}"
            )
        self._last: Tensor | None = None

    def __call__(self, m: int) -> Tensor:
        x = as_tensor(self._draw(m), "sample_fn(m)", detach=True)
        if self._last is not None and self._last.shape == x.shape and torch.equal(self._last, x):
            raise ValueError(
                "sample_fn: two calls returned the same samples; each call must draw fresh "
                "ones (keep one torch.Generator across calls instead of reseeding inside "
                "sample_fn, or pass the generator module itself with generator=seed)"
            )
        self._last = x
        return x


def _sampler_generator(sample_fn: Any, generator: GeneratorLike) -> torch.Generator:
    """One torch generator on the device where ``sample_fn`` (if a module) draws."""
    device = torch.device("cpu")
    if isinstance(sample_fn, nn.Module):
        p = next(iter(sample_fn.parameters()), None)
        device = p.device if p is not None else device
    return as_generator(generator, "generator", device=device)


@torch.no_grad()
def estimate_max_logit(
    sample_fn: Callable[[int], Any] | nn.Module, logit_fn: Callable[[Tensor], Tensor],
    n_burn_in: int = 10_000, *, batch_size: int = 2_000, generator: GeneratorLike = None,
) -> float:
    """The burn-in estimate of ``max_x V(x)`` over generated samples (Azadi et al., Alg. 1).

    The burn-in looks at ``n_burn_in`` *distinct* samples, drawn ``batch_size`` at a time:
    a sampler that returns the same batch twice raises a ValueError.

    Args:
        sample_fn: ``sample_fn(m)`` returns ``m`` fresh generated samples (array or
            tensor), or a generator module with ``sample(m, generator=...)`` (e.g. a
            :class:`Generator`), then sampled through one torch generator.
        logit_fn: maps (m, ...) samples to (m,) logits.
        n_burn_in: number of samples looked at.
        batch_size: samples per call of ``sample_fn``.
        generator: torch generator (or seed) for a module ``sample_fn`` (unused otherwise).

    Returns:
        the largest logit seen (a float; it is below the true maximum).
    """
    check_callable(sample_fn, "sample_fn"), check_callable(logit_fn, "logit_fn")
    n_burn_in = check_positive_int(n_burn_in, "n_burn_in")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not callable(logit_fn):
        raise TypeError(f"logit_fn: expected a callable, got {type(logit_fn).__name__}")
    draw = _FreshSampler(sample_fn, _sampler_generator(sample_fn, generator))
    return _burn_in(draw, logit_fn, n_burn_in, batch_size)


def _burn_in(draw: _FreshSampler, logit_fn: Callable, n_burn_in: int, batch_size: int) -> float:
    best = -math.inf
    done = 0
    while done < n_burn_in:
        m = min(batch_size, n_burn_in - done)
        v = as_tensor(logit_fn(draw(m)), "logit_fn(x)", ndim=1)
        best = max(best, float(v.max()))
        done += m
    return best


@torch.no_grad()
def drs_sample(
    sample_fn: Callable[[int], Any] | nn.Module,
    logit_fn: Callable[[Tensor], Tensor],
    n: int,
    *,
    max_logit: float | None = None,
    n_burn_in: int = 10_000,
    gamma: float = 0.0,
    gamma_quantile: float | None = None,
    eps: float = 1e-6,
    batch_size: int = 2_000,
    max_batches: int = 1_000,
    generator: GeneratorLike = None,
) -> tuple[Tensor, float]:
    """Discriminator rejection sampling (Azadi et al. 2019, Algorithm 1).

    Proposals come from ``sample_fn``; each is accepted with probability
    :func:`drs_accept_prob` of its logit. The maximum logit is estimated by burn-in
    (:func:`estimate_max_logit`, on samples distinct from the proposals) when not given,
    and raised whenever a proposal beats it.

    Args:
        sample_fn: ``sample_fn(m)`` returns ``m`` fresh proposals (array or tensor), or a
            generator module with ``sample(m, generator=...)``; successive calls must
            return different samples (a sampler that reseeds itself raises a ValueError).
        logit_fn: maps (m, ...) proposals to (m,) logits.
        n: number of samples wanted.
        max_logit: the maximum logit if known; None: estimated by burn-in.
        n_burn_in: number of burn-in samples (when ``max_logit`` is None).
        gamma: shift of F; ignored when ``gamma_quantile`` is set.
        gamma_quantile: if set (in (0, 1)), gamma is the ``gamma_quantile``-quantile of F
            in each batch (the paper's choice, with 0.95 or 0.8).
        eps: > 0, see :func:`drs_accept_prob`.
        batch_size: proposals per call of ``sample_fn``.
        max_batches: give up (ValueError) after this many batches of proposals.
        generator: torch generator (or seed) for the uniform draws, and for the latents
            when ``sample_fn`` is a module (one stream for both).

    Returns:
        samples: (n, ...) accepted proposals; acceptance_rate: accepted / proposed.
    """
    check_callable(sample_fn, "sample_fn"), check_callable(logit_fn, "logit_fn")
    n = check_positive_int(n, "n")
    batch_size = check_positive_int(batch_size, "batch_size")
    max_batches = check_positive_int(max_batches, "max_batches")
    eps = check_positive(eps, "eps")
    if gamma_quantile is not None and not 0.0 < float(gamma_quantile) < 1.0:
        raise ValueError(f"gamma_quantile: expected a number in (0, 1), got {gamma_quantile!r}")
    gen = _sampler_generator(sample_fn, generator)
    draw = _FreshSampler(sample_fn, gen)
    if max_logit is None:
        n_burn_in = check_positive_int(n_burn_in, "n_burn_in")
        max_logit = _burn_in(draw, logit_fn, n_burn_in, batch_size)
    m = check_finite(max_logit, "max_logit")
    kept: list[Tensor] = []
    n_kept = n_prop = 0
    for _ in range(max_batches):
        x = draw(batch_size)
        v = as_tensor(logit_fn(x), "logit_fn(x)", ndim=1).to(torch.float64).cpu()
        m = max(m, float(v.max()))                              # Algorithm 1: update the max
        g = gamma
        if gamma_quantile is not None:
            delta = v - m
            f = delta - torch.log(-torch.expm1(delta - eps))
            g = float(torch.quantile(f, float(gamma_quantile)))
        p = drs_accept_prob(v, m, gamma=g, eps=eps)               # (b,)
        u = torch.rand(v.shape, generator=gen, dtype=v.dtype, device=gen.device).cpu()
        accept = u < p
        kept.append(x[accept.to(x.device)])
        n_kept += int(accept.sum())
        n_prop += v.shape[0]
        if n_kept >= n:
            break
    else:
        raise ValueError(
            f"max_batches: only {n_kept} of {n} samples accepted after {n_prop} proposals; "
            "lower gamma or raise max_batches"
        )
    return torch.cat(kept)[:n], n_kept / n_prop


# ----------------------------------------------------------------------------------------------
# Optimal budgeted rejection sampling (Verine et al. 2024)
# ----------------------------------------------------------------------------------------------


def obrs_log_constant(logits: Any, budget: float) -> float:
    """``log c_K`` of optimal budgeted rejection sampling (OBRS; Verine et al. 2024).

    With a budget of K proposals per accepted sample (acceptance rate 1/K), the acceptance
    function ``a(x) = min(1, c_K r(x))``, ``r = p / p_hat`` the density ratio, minimises
    *every* f-divergence ``D_f(P || P_hat_a)`` between the data and the law of the accepted
    samples ``P_hat_a ~ a p_hat`` among acceptance functions with ``E_P_hat[a] = 1/K``; c_K
    is set by that constraint. DRS instead uses ``r / max r``: optimal only with an
    unlimited budget. Here the expectation is the mean over the n given proposals, whose
    log-ratios are ``logits`` (a GAN's discriminator logit estimates ``log p / p_hat``).

    Computed exactly by water-filling: sort the ratios in decreasing order; if the j
    largest are accepted surely, ``c = (n/K - j) / sum_{i > j} r_(i)``, and the j for which
    ``c r_(j) >= 1 >= c r_(j+1)`` is the answer (``sum_i min(1, c r_i)`` increases with c).

    Args:
        logits: (n,) log density ratios of the proposals (array or tensor), finite.
        budget: K >= 1 (K = 1 accepts everything: ``c = 1 / min r``).

    Returns:
        ``log c_K`` (a float).
    """
    v = check_array(logits, "logits", ndim=1, min_rows=1)
    k = _real_at_least_one(budget, "budget")
    l_sorted = np.sort(v)[::-1]                                   # (n,) decreasing
    n = l_sorted.size
    target = n / k                                                # accepted proposals
    # suffix[j] = log sum_{i >= j} r_(i) (0-based): the unsaturated mass if j are saturated
    suffix = np.logaddexp.accumulate(l_sorted[::-1])[::-1]        # (n,)
    for j in range(min(n, int(math.ceil(target)))):
        log_c = math.log(target - j) - suffix[j]
        if l_sorted[j] + log_c <= 1e-12:                          # the (j+1)-th is not saturated
            return float(log_c)
    return float(-l_sorted[-1])                                   # K = 1: all saturated


def _real_at_least_one(value: Any, name: str) -> float:
    v = check_positive(value, name)
    if v < 1.0:
        raise ValueError(f"{name}: expected a budget K >= 1 (acceptance rate 1/K), got {value!r}")
    return v


def obrs_accept_prob(logits: Any, log_constant: float) -> ArrayOrTensor:
    """OBRS acceptance probabilities ``min(1, c_K r(x)) = exp(min(0, logit + log c_K))``.

    Args:
        logits: (n,) log density ratios (array or tensor; the result has the same kind).
        log_constant: ``log c_K`` from :func:`obrs_log_constant`.

    Returns:
        (n,) probabilities in (0, 1].
    """
    log_c = check_finite(log_constant, "log_constant")
    if _is_t(logits):
        return torch.exp((as_tensor(logits, "logits", ndim=1) + log_c).clamp(max=0.0))
    return np.exp(np.minimum(check_array(logits, "logits", ndim=1) + log_c, 0.0))


@torch.no_grad()
def obrs_sample(
    sample_fn: Callable[[int], Any] | nn.Module,
    logit_fn: Callable[[Tensor], Tensor],
    n: int,
    budget: float,
    *,
    n_burn_in: int = 10_000,
    batch_size: int = 2_000,
    max_batches: int = 1_000,
    generator: GeneratorLike = None,
) -> tuple[Tensor, float]:
    """Optimal budgeted rejection sampling (Verine et al. 2024) from a generator.

    ``c_K`` is fitted on ``n_burn_in`` burn-in proposals (:func:`obrs_log_constant`), then
    each fresh proposal is accepted with probability :func:`obrs_accept_prob` of its logit;
    the acceptance rate is then 1/K up to the burn-in's sampling error.

    Args:
        sample_fn, logit_fn, batch_size, max_batches, generator: as in :func:`drs_sample`.
        n: number of samples wanted.
        budget: K >= 1 proposals per accepted sample.
        n_burn_in: proposals used to fit c_K.

    Returns:
        samples: (n, ...) accepted proposals; acceptance_rate: accepted / proposed.
    """
    check_callable(sample_fn, "sample_fn"), check_callable(logit_fn, "logit_fn")
    n, k = check_positive_int(n, "n"), _real_at_least_one(budget, "budget")
    n_burn_in = check_positive_int(n_burn_in, "n_burn_in")
    batch_size = check_positive_int(batch_size, "batch_size")
    max_batches = check_positive_int(max_batches, "max_batches")
    gen = _sampler_generator(sample_fn, generator)
    draw = _FreshSampler(sample_fn, gen)
    burn = [as_tensor(logit_fn(draw(min(batch_size, n_burn_in - d))), "logit_fn(x)", ndim=1)
            for d in range(0, n_burn_in, batch_size)]
    log_c = obrs_log_constant(torch.cat(burn).to(torch.float64).cpu(), k)
    kept: list[Tensor] = []
    n_kept = n_prop = 0
    for _ in range(max_batches):
        x = draw(batch_size)
        v = as_tensor(logit_fn(x), "logit_fn(x)", ndim=1).to(torch.float64).cpu()
        u = torch.rand(v.shape, generator=gen, dtype=v.dtype, device=gen.device).cpu()
        accept = u < obrs_accept_prob(v, log_c)                   # (b,)
        kept.append(x[accept.to(x.device)])
        n_kept += int(accept.sum())
        n_prop += v.shape[0]
        if n_kept >= n:
            break
    else:
        raise ValueError(f"max_batches: only {n_kept} of {n} samples accepted after "
                         f"{n_prop} proposals; raise max_batches")
    return torch.cat(kept)[:n], n_kept / n_prop


# ----------------------------------------------------------------------------------------------
# Mode metrics on Gaussian-mixture toys
# ----------------------------------------------------------------------------------------------


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """The centers and the per-coordinate std of the mixture toys of :func:`coursekit.data.toy_2d`.

    Returns:
        centers: (8, 2) for ``"eight_gaussians"`` (radius 4 / 1.414), (25, 2) for
        ``"grid25"``; std: 0.5 / 1.414 and 0.05.
    """
    if name == "eight_gaussians":
        a = np.arange(8) * (np.pi / 4)
        return 4.0 * np.stack([np.cos(a), np.sin(a)], axis=1) / 1.414, 0.5 / 1.414
    if name == "grid25":
        t = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        xx, yy = np.meshgrid(t, t, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel()], axis=1), 0.05
    raise ValueError(f"name: expected 'eight_gaussians' or 'grid25', got {name!r}")


def _samples_and_centers(
    samples: Any, centers: Any, min_centers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked samples (n, d), centers (k, d) and their (n, k) squared distances."""
    x = check_array(samples, "samples", ndim=2, min_rows=1)
    c = check_array(centers, "centers", ndim=2, min_rows=min_centers)
    if c.shape[1] != x.shape[1]:
        raise ValueError(
            f"centers: expected shape (k, {x.shape[1]}) to match samples {x.shape}, got {c.shape}"
        )
    return x, c, ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)


def mode_metrics(
    samples: Any, centers: Any, std: float, *, threshold: float = 3.0
) -> dict[str, float]:
    """Mode coverage and sample quality on a mixture of isotropic Gaussians (VEEGAN's metrics).

    A sample is *high quality* when its Euclidean distance to the nearest center is below
    ``threshold * std``. (A perfect 2-D sampler puts only ``1 - exp(-threshold^2 / 2)``
    of its points there: 98.9 % for 3 sigma.)

    Args:
        samples: (n, d); centers: (k, d); std: the components' standard deviation;
        threshold: > 0, in units of std.

    Returns:
        ``high_quality_fraction`` (in [0, 1]); ``modes_captured`` (number of centers nearest
        to at least one high-quality sample); ``mode_kl``: ``KL(h || uniform)`` in nats,
        where h is the distribution of the high-quality samples over the centers
        (0 = perfectly balanced; ``log k`` when there is no high-quality sample, the
        value of a single mode).
    """
    x, c, d2 = _samples_and_centers(samples, centers, min_centers=1)
    std = check_positive(std, "std")
    threshold = check_positive(threshold, "threshold")
    nearest = d2.argmin(1)                                       # (n,)
    hq = np.sqrt(d2[np.arange(len(x)), nearest]) < threshold * std  # (n,) within the ball
    k = c.shape[0]
    counts = np.bincount(nearest[hq], minlength=k)               # (k,)
    if counts.sum() == 0:
        mode_kl = math.log(k)
    else:
        h = counts / counts.sum()
        mode_kl = float(np.sum(special.xlogy(h, h * k)))         # KL(h || 1/k)
    return {
        "high_quality_fraction": float(hq.mean()),
        "modes_captured": int((counts > 0).sum()),
        "mode_kl": float(mode_kl),
    }


def between_modes_fraction(
    samples: Any, centers: Any, std: float, *, width: float = 1.0
) -> float:
    """Fraction of the samples that lie *between* two modes rather than on one.

    A sample is between modes when its distances d1 <= d2 to its two nearest centers differ
    by less than ``2 * width * std``: on the segment joining the two centers, that is the
    band of half-width ``width * std`` around their bisector. Exact samples of the mixture
    put little mass there when the modes are well separated (8-Gaussian ring of
    :func:`toy_modes`, width 1: about 4.5 %), while a sampler that smears its mass along
    the ring puts much more (a uniform circle through the centers: about 34 %). It complements
    :func:`mode_metrics`, whose 3-sigma balls on the ring are about half the spacing
    between modes wide, so that a uniform circle scores 96 % "high quality" and 8/8 modes.

    Args:
        samples: (n, d); centers: (k, d) with k >= 2; std: the components' standard
        deviation; width: > 0, the band's half-width in units of std.

    Returns:
        the fraction, in [0, 1].
    """
    *_, d2 = _samples_and_centers(samples, centers, min_centers=2)
    std = check_positive(std, "std")
    width = check_positive(width, "width")
    two = np.sqrt(np.partition(d2, 1, axis=1)[:, :2])            # (n, 2) the two smallest
    gap = np.abs(two[:, 1] - two[:, 0])                          # (n,) d2 - d1 >= 0
    return float(np.mean(gap < 2.0 * width * std))
