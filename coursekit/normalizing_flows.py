"""Normalizing flows: a monotone 1-D flow and RealNVP-style affine coupling layers.

A flow is a bijection ``F: X -> Z`` (the *normalizing* direction, data to latent)
whose inverse ``F^{-1}`` is the *generative* direction. With a latent density ``q``
(here the standard normal), the change-of-variables formula (slides, Eq. 1)

    p_hat(x) = q(F(x)) |det Jac_F(x)|,   i.e.   log p_hat(x) = log q(F(x)) + log|det Jac_F(x)|

gives an exact density. Every module here follows the same interface:

- ``forward(x) -> (z, log_det)``: ``z = F(x)`` and ``log|det Jac_F(x)|``, shape ``(n,)``;
- ``inverse(z) -> x``: ``x = F^{-1}(z)``;
- ``log_prob(x)``: ``log p_hat(x)``, shape ``(n,)`` (density estimation, three steps);
- ``sample(n, generator=None)``: ``x = F^{-1}(z)`` with ``z ~ N(0, I)`` (generation, two steps).

References: Dinh et al. 2015 (NICE), Dinh et al. 2017 (RealNVP), Rezende & Mohamed 2015,
Papamakarios et al. 2021 and Kobyzev et al. 2020 (reviews).
"""

from __future__ import annotations

import torch
from torch import nn

from coursekit.numerics import standard_normal_log_prob
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_positive,
    check_positive_int,
    module_dtype_device,
)

__all__ = ["AffineCoupling", "Monotone1d", "RealNVP"]


class _Flow(nn.Module):
    """Shared density-estimation and generation procedures on top of forward / inverse."""

    dim: int

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Density estimation (three steps): ``x -> (F(x), log|det J|) -> log q(F(x)) + log|det J|``.

        Args:
            x: (n, dim) points.

        Returns:
            (n,) log-densities ``log p_hat(x)`` (Eq. 1 in log form).
        """
        # Any float dtype, NumPy or torch, is moved to the model's dtype and device.
        x = as_tensor(x, "x", like=self, shape=(None, self.dim))
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, generator: GeneratorLike = None) -> torch.Tensor:
        """Generation (two steps): draw ``z ~ N(0, I)``, return ``F^{-1}(z)`` of shape (n, dim).

        Args:
            n: number of samples.
            generator: a ``torch.Generator``, an int seed or None (a seed drawn from
                torch's global state); ``z`` is drawn on the model's device.
        """
        n = check_positive_int(n, "n")
        dtype, device = module_dtype_device(self)
        gen = as_generator(generator, "generator", device=device)
        z = torch.randn(n, self.dim, generator=gen, dtype=dtype, device=device)
        return self.inverse(z)


class Monotone1d(_Flow):
    """A 1-D flow ``F(x) = a x + b + sum_k w_k tanh(s_k (x - c_k))`` with ``a, w_k, s_k > 0``.

    ``F`` is strictly increasing (``F'(x) = a + sum_k w_k s_k (1 - tanh^2) > 0``) and goes to
    ``+-inf`` like ``a x``, so it is a bijection of the real line. Its inverse has no closed
    form; since ``|F(x) - a x - b| <= W = sum_k w_k``, the root of ``F(x) = z`` lies in
    ``[(z - b - W)/a, (z - b + W)/a]`` and bisection finds it to float precision.

    Each tanh term is a smoothed step: a steep step at ``c_k`` stretches the neighbourhood of
    ``c_k`` in latent space, which is how the flow puts density on the modes of the data.

    Args:
        n_components: number of tanh terms K.
    """

    def __init__(self, n_components: int = 8) -> None:
        super().__init__()
        k = check_positive_int(n_components, "n_components")
        self.dim = 1
        # Unconstrained parameters; positivity comes from exp/softplus in the properties below.
        self.log_a = nn.Parameter(torch.tensor(0.0))
        self.b = nn.Parameter(torch.tensor(0.0))
        self.raw_w = nn.Parameter(torch.full((k,), -2.0))
        self.raw_s = nn.Parameter(torch.zeros(k))
        self.c = nn.Parameter(torch.linspace(-3.0, 3.0, k))

    def _params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.log_a.exp()
        w = nn.functional.softplus(self.raw_w)
        s = nn.functional.softplus(self.raw_s)
        return a, w, s

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalizing direction. ``x: (n, 1)`` -> ``z: (n, 1)``, ``log_det = log F'(x): (n,)``."""
        x = as_tensor(x, "x", like=self, shape=(None, 1))
        a, w, s = self._params()
        u = s * (x - self.c)  # (n, K)
        th = torch.tanh(u)
        z = a * x + self.b + (w * th).sum(dim=1, keepdim=True)
        deriv = a + (w * s * (1.0 - th.pow(2))).sum(dim=1)  # (n,), > 0 by construction
        return z, deriv.log()

    @torch.no_grad()
    def inverse(self, z: torch.Tensor, n_iter: int = 60) -> torch.Tensor:
        """Generative direction by bisection. ``z: (n, 1)`` -> ``x: (n, 1)``.

        60 halvings shrink the bracket of width ``2W/a`` by ``2^-60``: below float64 resolution.
        """
        z = as_tensor(z, "z", like=self, shape=(None, 1))
        n_iter = check_positive_int(n_iter, "n_iter")
        a, w, _ = self._params()
        half_width = w.sum() / a
        centre = (z - self.b) / a
        lo, hi = centre - half_width, centre + half_width
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            above = self(mid)[0] > z  # F is increasing: the root is left of mid
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        return 0.5 * (lo + hi)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling layer (Dinh et al. 2017), normalizing direction ``x -> z``.

    With a binary ``mask`` m (1 = coordinate passed through unchanged),

        z = m * x + (1 - m) * (x * exp(s(m * x)) + t(m * x)),

    where ``s, t`` are the outputs of one MLP that only sees the unchanged coordinates. The
    Jacobian is triangular (up to a permutation) with diagonal ``exp(s)`` on the changed
    coordinates, so ``log|det J| = sum_{i: m_i = 0} s_i`` costs nothing. The inverse is explicit:
    ``x = m * z + (1 - m) * (z - t(m * z)) * exp(-s(m * z))`` (note ``m * z = m * x``).

    The log-scale is bounded, ``s = scale_bound * tanh(raw)``, so a single layer can never
    stretch or squash by more than ``exp(scale_bound)``: this keeps early training stable.
    The last linear layer starts at zero, so a fresh layer is the identity.

    Args:
        mask: (dim,) tensor of 0/1.
        hidden: width of the two hidden layers of the MLP.
        scale_bound: bound on ``|s|``.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, scale_bound: float = 2.0) -> None:
        super().__init__()
        mask = as_tensor(mask, "mask", dtype=torch.get_default_dtype(), detach=True)
        if mask.ndim != 1 or not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask: expected a 1-D tensor of zeros and ones, got {mask}")
        if mask.sum() == 0 or mask.sum() == mask.numel():
            raise ValueError("mask: needs at least one 1 (conditioning) and one 0 (transformed)")
        hidden = check_positive_int(hidden, "hidden")
        self.scale_bound = check_positive(scale_bound, "scale_bound")
        self.dim = mask.numel()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Linear(self.dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * self.dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x_cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x_cond).chunk(2, dim=1)
        free = 1.0 - self.mask
        # Only the transformed coordinates get a scale and a shift.
        return self.scale_bound * torch.tanh(raw_s) * free, t * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (n, dim)`` -> ``z: (n, dim)``, ``log|det J|: (n,)``."""
        x = as_tensor(x, "x", like=self, shape=(None, self.dim))
        s, t = self._scale_shift(x * self.mask)
        z = x * s.exp() + t  # masked coordinates: s = t = 0, so z = x there
        return z, s.sum(dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (n, dim)`` -> ``x: (n, dim)``, exact inverse of :meth:`forward`."""
        z = as_tensor(z, "z", like=self, shape=(None, self.dim))
        s, t = self._scale_shift(z * self.mask)
        return (z - t) * (-s).exp()


class RealNVP(_Flow):
    """A stack of ``n_layers`` affine coupling layers with alternating masks.

    ``F = f_L o ... o f_1 o a`` (normalizing direction), so ``log|det Jac_F|`` is the sum of the
    layers' log-determinants (chain rule) and ``F^{-1} = a^{-1} o f_1^{-1} o ... o f_L^{-1}``.
    Consecutive layers use complementary masks so that every coordinate gets transformed.
    The first map ``a(x) = (x - loc) * exp(-log_scale)`` is a learned elementwise affine
    layer (like Glow's actnorm): it lets the flow match the data's location and scale in a
    few steps instead of spending coupling layers on it. It starts as the identity.

    Args:
        dim: data dimension d >= 2.
        n_layers: number of coupling layers.
        hidden: hidden width of each coupling MLP.
        scale_bound: bound on each layer's log-scale (see :class:`AffineCoupling`).
    """

    def __init__(self, dim: int, n_layers: int, hidden: int = 64, scale_bound: float = 2.0) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim", minimum=2)
        n_layers = check_positive_int(n_layers, "n_layers")
        self.loc = nn.Parameter(torch.zeros(self.dim))
        self.log_scale = nn.Parameter(torch.zeros(self.dim))
        base = (torch.arange(self.dim) % 2).to(torch.get_default_dtype())  # 0,1,0,1,...
        self.layers = nn.ModuleList(
            AffineCoupling(base if i % 2 == 0 else 1.0 - base, hidden, scale_bound)
            for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (n, dim)`` -> ``z = F(x): (n, dim)``, ``log|det Jac_F(x)|: (n,)``."""
        x = as_tensor(x, "x", like=self, shape=(None, self.dim))
        x = (x - self.loc) * (-self.log_scale).exp()
        log_det = (-self.log_scale).sum().expand(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``z: (n, dim)`` -> ``x = F^{-1}(z): (n, dim)``."""
        z = as_tensor(z, "z", like=self, shape=(None, self.dim))
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z * self.log_scale.exp() + self.loc
