"""Autoregressive models: the chain rule, ancestral sampling, MADE, PixelCNN, a character LM.

Everything here follows Lecture 1, part III ("Autoregressive models"):

- the chain-rule factorization  p(x) = prod_i p(x_i | x_<i)  on a small discrete joint
  (:func:`chain_rule_conditionals`, :func:`joint_from_conditionals`);
- Algorithm 6, ancestral sampling (:func:`ancestral_sample`);
- a masked autoencoder for binary vectors, MADE (:class:`MADE`), trained with teacher forcing;
- masked convolutions and a small PixelCNN over integer class maps
  (:class:`MaskedConv2d`, :class:`PixelCNN`);
- the decoding heuristics temperature / top-k / nucleus (top-p) (:func:`sample_logits`,
  :func:`top_k_filter`, :func:`top_p_filter`), used by the character language model of
  :mod:`coursekit.language_model`.

NumPy for the exact discrete tables, torch for everything trained by gradient descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.numerics import LOG_2PI
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_array,
    check_positive,
    check_positive_int,
    module_dtype_device,
)

__all__ = [
    "MADE",
    "MaskedConv2d",
    "PixelCNN",
    "ancestral_sample",
    "chain_rule_conditionals",
    "filtered_probs",
    "joint_from_conditionals",
    "sample_logits",
    "top_k_filter",
    "top_p_filter",
]


# ---------------------------------------------------------------------------------------------
# The chain rule on an explicit joint table (NumPy)
# ---------------------------------------------------------------------------------------------


def _check_joint(joint: np.ndarray) -> np.ndarray:
    p = check_array(joint, "joint", finite=False)
    if p.ndim < 1 or p.size == 0:
        raise ValueError(f"joint: expected a non-empty table with one axis per variable, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("joint: entries must be finite and non-negative")
    if abs(p.sum() - 1.0) > 1e-8:
        raise ValueError(f"joint: entries must sum to 1, got {p.sum():.10g}")
    return p


def _check_order(order: Sequence[int] | None, d: int) -> list[int]:
    if order is None:
        return list(range(d))
    arr = np.asarray(order) if not isinstance(order, (str, bytes)) else np.asarray([])
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"order: expected a permutation of 0..{d - 1}, got {order!r:.80}")
    order = [int(o) for o in arr]
    if sorted(order) != list(range(d)):
        raise ValueError(f"order: expected a permutation of 0..{d - 1}, got {order}")
    return order


def chain_rule_conditionals(joint: np.ndarray, order: Sequence[int] | None = None) -> list[np.ndarray]:
    """The exact conditionals p(x_{s_i} | x_{s_1}, ..., x_{s_{i-1}}) of a discrete joint.

    Slide "Likelihood decomposition": for any ordering s of the d variables,
    p(x) = prod_i p(x_{s_i} | x_{s_<i}).  The i-th conditional is the ratio of two
    marginals, p(x_{s_<=i}) / p(x_{s_<i}).

    Args:
        joint: (K_1, ..., K_d) table of probabilities, one axis per variable.
        order: a permutation s of 0..d-1 (default: the natural order 0, 1, ..., d-1).

    Returns:
        d arrays; the i-th has one axis per variable s_1, ..., s_i (in that order), and its
        last axis sums to 1.  Where the prefix has probability 0 the conditional is set to
        uniform (any choice gives the same joint there).
    """
    p = _check_joint(joint)
    order = _check_order(order, p.ndim)
    p = np.transpose(p, order)  # axis i is now variable s_i
    conds = []
    for i in range(p.ndim):
        # marginal of the first i+1 variables in the chosen order: sum out the rest
        marg = p.sum(axis=tuple(range(i + 1, p.ndim))) if i + 1 < p.ndim else p
        prefix = marg.sum(axis=-1, keepdims=True)
        safe = np.where(prefix > 0, prefix, 1.0)
        cond = np.where(prefix > 0, marg / safe, 1.0 / marg.shape[-1])
        conds.append(cond)
    return conds


def joint_from_conditionals(
    conditionals: Sequence[np.ndarray], order: Sequence[int] | None = None
) -> np.ndarray:
    """Multiply the chain-rule factors back into the joint table (the product of Eq. chain rule).

    Args:
        conditionals: as returned by :func:`chain_rule_conditionals`.
        order: the ordering those conditionals use.

    Returns:
        (K_1, ..., K_d) joint table, axes in the natural variable order.
    """
    d = len(conditionals)
    if d == 0:
        raise ValueError("conditionals: expected at least one factor")
    order = _check_order(order, d)
    prod = np.asarray(conditionals[0], dtype=float)
    for i in range(1, d):
        c = np.asarray(conditionals[i], dtype=float)
        if c.ndim != i + 1:
            raise ValueError(f"conditionals[{i}]: expected {i + 1} axes, got shape {c.shape}")
        prod = prod[..., None] * c  # broadcast the prefix table over the new variable
    return np.transpose(prod, np.argsort(order))


# ---------------------------------------------------------------------------------------------
# Algorithm 6: ancestral sampling
# ---------------------------------------------------------------------------------------------


def ancestral_sample(
    conditional_logits: Callable[[torch.Tensor, int], torch.Tensor],
    d: int,
    n: int,
    *,
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Algorithm 6 (autoregressive ancestral sampling): draw x_1, ..., x_d one after the other.

    Args:
        conditional_logits: called as ``f(x, i)`` with the partial samples ``x`` of shape
            (n, d) (entries >= i are still 0 and must be ignored) and the position ``i``;
            returns the (n, K) logits of p(x_i | x_<i).
        d: number of variables.
        n: number of samples.
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state).
        device: where the samples live (the model's device; default the CPU).

    Returns:
        (n, d) int64 tensor of samples.  The loop makes exactly d sequential calls: the
        O(d) cost of the slides.
    """
    if not callable(conditional_logits):
        raise TypeError("conditional_logits: expected a callable f(x, i) -> (n, K) logits")
    d = check_positive_int(d, "d")
    n = check_positive_int(n, "n")
    device = torch.device(device) if device is not None else torch.device("cpu")
    generator = as_generator(generator, "generator", device=device)
    x = torch.zeros(n, d, dtype=torch.long, device=device)
    for i in range(d):
        logits = conditional_logits(x, i)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"conditional_logits: returned {got}, expected shape ({n}, K)")
        x[:, i] = sample_logits(logits, generator=generator)
    return x


# ---------------------------------------------------------------------------------------------
# Decoding heuristics: temperature, top-k, nucleus (top-p)
# ---------------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    # -inf is a legitimate logit (a token with probability 0): only NaN and +inf are refused.
    logits = as_tensor(logits, "logits", finite=False, min_rows=0)
    if logits.ndim < 1 or logits.shape[-1] == 0 or logits.numel() == 0:
        raise ValueError(
            f"logits: expected a non-empty tensor of shape (..., K) with K >= 1, got "
            f"{tuple(logits.shape)}"
        )
    if torch.isnan(logits).any() or (logits == math.inf).any():
        raise ValueError("logits: contains NaN or +inf")
    if (logits == -math.inf).all(dim=-1).any():
        raise ValueError("logits: a row is entirely -inf (no token has positive probability)")
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row and set the others to -inf (Fan et al., 2018).

    Args:
        logits: (..., K).  k: integer >= 1 (k >= K keeps everything).

    Returns:
        (..., K) logits; exactly min(k, K) finite entries per row (ties broken by index).
    """
    logits = _check_logits(logits)
    k = check_positive_int(k, "top_k")
    if k >= logits.shape[-1]:
        return logits.clone()
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, torch.topk(logits, k, dim=-1).indices, True)
    return logits.masked_fill(~keep, -math.inf)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al., 2020): keep the smallest set of tokens with mass >= p.

    Sorting the probabilities in decreasing order, the smallest set with mass >= p is a
    prefix of that order: token j is kept when the mass strictly before it is < p.

    Args:
        logits: (..., K).  p: in (0, 1]; p = 1 keeps every token.

    Returns:
        (..., K) logits with the tokens outside the nucleus set to -inf.
    """
    logits = _check_logits(logits)
    p = _check_top_p(p)
    if p == 1.0:
        return logits.clone()
    probs = torch.softmax(logits.double(), dim=-1)  # double: the cumulative sum is compared to p
    sorted_probs, idx = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep_sorted = mass_before < p  # the first token always has mass_before = 0 < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def _check_top_p(p: float) -> float:
    try:
        v = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"top_p: expected a number in (0, 1], got {p!r}") from None
    if not (0.0 < v <= 1.0):
        raise ValueError(f"top_p: expected a number in (0, 1], got {p!r}")
    return v


def filtered_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution :func:`sample_logits` draws from: softmax(filter(logits / T)).

    Temperature is applied first, then top-k, then top-p (top-p is computed on the
    distribution renormalised over the top-k survivors), as in common LM libraries.

    Returns:
        (..., K) probabilities, exactly 0 outside the kept set.
    """
    logits = _check_logits(logits)
    temperature = check_positive(temperature, "temperature")
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return torch.softmax(z, dim=-1)


def sample_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """Draw one token per row of ``logits`` with temperature, top-k and nucleus sampling.

    T -> 0 tends to greedy decoding (argmax), T = 1 is the model's distribution, T > 1
    flattens it.  top-k and top-p truncate the tail (heuristics, not maximum likelihood).

    Args:
        logits: (..., K) unnormalised log-probabilities.
        temperature: > 0.
        top_k: integer >= 1 or None.
        top_p: in (0, 1] or None.
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state); on the device of ``logits``.

    Returns:
        (...) int64 tensor of sampled indices.
    """
    probs = filtered_probs(logits, temperature, top_k, top_p)
    generator = as_generator(generator, "generator", device=probs.device)
    flat = probs.reshape(-1, probs.shape[-1])
    draws = torch.multinomial(flat.float(), 1, generator=generator)
    return draws.reshape(probs.shape[:-1])


# ---------------------------------------------------------------------------------------------
# MADE: a masked autoencoder for binary vectors (teacher forcing in one pass)
# ---------------------------------------------------------------------------------------------


class MADE(nn.Module):
    """A one-hidden-layer MADE (Germain et al., 2015) for d binary variables, natural order.

    The weight masks make output i depend on inputs j < i only, so one forward pass
    returns all d conditionals logit p(x_i = 1 | x_<i) at once: teacher forcing with
    causal masking.

    Args:
        d: number of binary variables.  hidden: width of the hidden layer.
    """

    def __init__(self, d: int, hidden: int = 256) -> None:
        super().__init__()
        self.d = check_positive_int(d, "d", minimum=2)
        hidden = check_positive_int(hidden, "hidden")
        # degree of hidden unit k: it may look at inputs 0..m_k (Germain et al.'s m(k)),
        # cycled over 0..d-2 so that every degree is present.
        m_hidden = torch.arange(hidden) % (d - 1)
        m_in = torch.arange(d)
        self.register_buffer("mask_in", (m_hidden[:, None] >= m_in[None, :]).float())  # (h, d)
        self.register_buffer("mask_out", (m_in[:, None] > m_hidden[None, :]).float())  # (d, h)
        self.lin_in = nn.Linear(d, hidden)
        self.lin_out = nn.Linear(hidden, d)
        # direct input -> output connections, strictly lower-triangular (as in NADE/FVSBN)
        self.direct = nn.Parameter(torch.zeros(d, d))
        self.register_buffer("mask_direct", torch.tril(torch.ones(d, d), diagonal=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, d) float in {0, 1}  ->  (n, d) logits of p(x_i = 1 | x_<i)."""
        x = as_tensor(x, "x", like=self, shape=(None, self.d))
        h = F.relu(F.linear(x, self.lin_in.weight * self.mask_in, self.lin_in.bias))
        return (F.linear(h, self.lin_out.weight * self.mask_out, self.lin_out.bias)
                + x @ (self.direct * self.mask_direct).T)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) binary -> (n,) exact log p(x) = sum_i log p(x_i | x_<i)."""
        x = as_tensor(x, "x", like=self, shape=(None, self.d))
        if bool(((x != 0) & (x != 1)).any()):
            raise ValueError("x: expected binary values in {0, 1}")
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: GeneratorLike = None,
               n_steps: int | None = None) -> torch.Tensor:
        """Algorithm 6 with one forward pass per variable.

        Args:
            n: number of samples.  n_steps: draw only x_1..x_{n_steps} (default all d).

        Returns:
            (n, n_steps) float tensor in {0, 1}.
        """
        steps = self.d if n_steps is None else check_positive_int(n_steps, "n_steps")
        if steps > self.d:
            raise ValueError(f"n_steps: at most d = {self.d}, got {steps}")

        dtype, device = module_dtype_device(self)

        def cond(x: torch.Tensor, i: int) -> torch.Tensor:
            full = torch.zeros(x.shape[0], self.d, dtype=dtype, device=device)
            full[:, : x.shape[1]] = x.to(dtype)
            logit = self(full)[:, i]
            return torch.stack([torch.zeros_like(logit), logit], dim=1)  # logits of (0, 1)

        return ancestral_sample(cond, steps, n, generator=generator, device=device).to(dtype)


# ---------------------------------------------------------------------------------------------
# PixelCNN
# ---------------------------------------------------------------------------------------------


class MaskedConv2d(nn.Conv2d):
    """A ``Conv2d`` whose kernel only sees the pixels before the centre in raster order.

    Mask type "A" also hides the centre pixel (first layer: the output at pixel i must not
    see x_i itself); type "B" keeps it (later layers: position i already only carries
    information about x_<i).  van den Oord et al. (2016).

    Args:
        mask_type: "A" or "B".
        in_channels, out_channels, kernel_size: as for ``torch.nn.Conv2d`` (odd kernel).
        **conv2d_kwargs: passed on to ``torch.nn.Conv2d`` (padding defaults to "same").
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], **conv2d_kwargs) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type: expected 'A' or 'B', got {mask_type!r}")
        ks = (kernel_size if isinstance(kernel_size, (tuple, list)) and len(kernel_size) == 2
              else (kernel_size, kernel_size))
        kh, kw = (check_positive_int(k, "kernel_size") for k in ks)
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        if kh % 2 == 0 or kw % 2 == 0 or kh < 1 or kw < 1:
            raise ValueError(f"kernel_size: expected odd sizes, got {kernel_size}")
        conv2d_kwargs.setdefault("padding", (kh // 2, kw // 2))
        super().__init__(in_channels, out_channels, (kh, kw), **conv2d_kwargs)
        self.mask_type = mask_type
        mask = torch.ones(kh, kw)
        mask[kh // 2, kw // 2 + (mask_type == "B"):] = 0  # right of (and for A, at) the centre
        mask[kh // 2 + 1:, :] = 0  # rows below the centre
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, in_channels, H, W) -> (n, out_channels, H, W)."""
        x = as_tensor(x, "x", like=self.weight, ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels (n, {self.in_channels}, H, W),"
                             f" got {tuple(x.shape)}")
        # mask at every call: the masked weights also get zero gradient, so they never matter
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class PixelCNN(nn.Module):
    """A small PixelCNN over integer class maps (van den Oord et al., 2016).

    p(x) = prod_i Categorical(x_i; softmax(logits_i(x_<i))), pixels in raster order.  The
    input is a map of classes in {0, ..., n_classes - 1}, one-hot encoded internally, so
    the same model serves binarized digits (n_classes = 2) and VQ-VAE code maps
    (n_classes = codebook size).

    Args:
        n_classes: number of discrete values per pixel (>= 2).
        hidden: channels of the hidden layers.
        n_layers: number of type-B 3x3 layers after the type-A first layer.
        kernel_size: odd kernel size of the type-A first layer.
    """

    def __init__(self, n_classes: int = 2, hidden: int = 64, n_layers: int = 4,
                 kernel_size: int = 5) -> None:
        super().__init__()
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        hidden = check_positive_int(hidden, "hidden")
        n_layers = check_positive_int(n_layers, "n_layers", minimum=0)
        layers: list[nn.Module] = [MaskedConv2d("A", self.n_classes, hidden, kernel_size), nn.ReLU()]
        for _ in range(n_layers):
            layers += [MaskedConv2d("B", hidden, hidden, 3), nn.ReLU()]
        # 1x1 convolutions see only the current position: they keep causality
        layers += [nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, self.n_classes, 1)]
        self.net = nn.Sequential(*layers)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        # Class maps are integers: as_tensor (which makes floats) does not apply; a NumPy
        # array is accepted and the map is moved to the model's device.
        if not isinstance(x, torch.Tensor) and isinstance(x, (np.ndarray, list, tuple)):
            x = torch.as_tensor(np.asarray(x))
        if isinstance(x, torch.Tensor):
            x = x.to(self.net[0].weight.device)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1 or x.shape[0] == 0:
            raise ValueError(f"x: expected a tensor of shape (n, 1, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.is_floating_point():
            if not bool(torch.isfinite(x).all()) or not torch.equal(x, x.round()):
                raise ValueError("x: expected integer class labels (got non-integer floats)")
            x = x.long()
        if x.min() < 0 or x.max() >= self.n_classes:
            raise ValueError(f"x: class labels must lie in 0..{self.n_classes - 1}, "
                             f"got range [{int(x.min())}, {int(x.max())}]")
        return x

    def forward_onehot(self, h: torch.Tensor) -> torch.Tensor:
        """h: (n, n_classes, H, W) one-hot (float)  ->  (n, n_classes, H, W) logits."""
        h = as_tensor(h, "h", like=self, ndim=4)
        if h.shape[1] != self.n_classes:
            raise ValueError(f"h: expected shape (n, {self.n_classes}, H, W), got {tuple(h.shape)}")
        return self.net(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 1, H, W) integer classes  ->  (n, n_classes, H, W) logits of p(x_i | x_<i)."""
        x = self._check_x(x)
        h = F.one_hot(x[:, 0], self.n_classes).permute(0, 3, 1, 2).to(self.net[0].weight.dtype)
        return self.net(h)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 1, H, W) integer classes  ->  (n,) exact log p(x) (nats), one forward pass."""
        x = self._check_x(x)
        logp = torch.log_softmax(self(x), dim=1)  # (n, C, H, W)
        return logp.gather(1, x).sum(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int] = (8, 8),
               generator: GeneratorLike = None, *,
               temperature: float = 1.0) -> torch.Tensor:
        """Algorithm 6 in raster order: H*W forward passes, one pixel drawn after each.

        Args:
            n: number of images.  shape: (H, W).  generator: torch generator (reproducible).
            temperature: > 0, as in :func:`sample_logits` (1 = the model's distribution).

        Returns:
            (n, 1, H, W) int64 class map.
        """
        n = check_positive_int(n, "n")
        if not isinstance(shape, (tuple, list)) or len(shape) != 2:
            raise ValueError(f"shape: expected (H, W), got {shape!r}")
        H, W = (check_positive_int(s, "shape") for s in shape)
        temperature = check_positive(temperature, "temperature")
        device = next(self.parameters()).device
        generator = as_generator(generator, "generator", device=device)
        x = torch.zeros(n, 1, H, W, dtype=torch.long, device=device)
        for r in range(H):
            for c in range(W):
                logits = self(x)[:, :, r, c]  # (n, C): depends on pixels before (r, c) only
                x[:, 0, r, c] = sample_logits(logits, temperature, generator=generator)
        return x


# ---------------------------------------------------------------------------------------------
# Continuous autoregressive model: mixture-of-Gaussians conditionals (a masked MDN)
# ---------------------------------------------------------------------------------------------


class GaussianMixtureAR(nn.Module):
    """An autoregressive density on R^d with mixture-of-Gaussians conditionals.

    p(x) = prod_i sum_k pi_ik(x_<i) N(x_i; mu_ik(x_<i), s_ik(x_<i)^2), natural order.
    A MADE-style masked MLP (Germain et al., 2015) outputs, for every i, the K mixture
    logits, means and log-scales of p(x_i | x_<i) in one pass (teacher forcing); the
    conditional of x_1 depends on nothing but the biases. A mixture-density output
    (Bishop, 1994) lets each conditional be multimodal, as PixelCNN++'s mixture of
    logistics does for pixels (Salimans et al., 2017).

    Args:
        d: dimension (>= 1).  n_components: K, mixture components per conditional.
        hidden: width of the two hidden layers.
    """

    #: log-scales are clamped here: exp(-7) ~ 1e-3 and exp(5) ~ 150 (no 0 or overflow).
    LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 5.0

    def __init__(self, d: int = 2, n_components: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.d = check_positive_int(d, "d")
        self.k = check_positive_int(n_components, "n_components")
        hidden = check_positive_int(hidden, "hidden")
        # degrees (Germain et al.'s m(k)): hidden unit of degree m sees inputs 0..m;
        # output i sees hidden units of degree < i; for d = 1 nothing is seen.
        m_in = torch.arange(self.d)
        m_hid = torch.arange(hidden) % max(self.d - 1, 1)
        m_out = torch.arange(self.d).repeat_interleave(3 * self.k)    # (3dK,)
        self.register_buffer("mask1", (m_hid[:, None] >= m_in[None]).float())  # (h, d)
        self.register_buffer("mask2", (m_hid[:, None] >= m_hid[None]).float())  # (h, h)
        self.register_buffer("mask3", (m_out[:, None] > m_hid[None]).float())  # (3dK, h)
        self.lin1 = nn.Linear(self.d, hidden)
        self.lin2 = nn.Linear(hidden, hidden)
        self.lin3 = nn.Linear(hidden, 3 * self.d * self.k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (n, d) -> (logits, means, log_scales), each (n, d, K): p(x_i | x_<i)."""
        x = as_tensor(x, "x", like=self, shape=(None, self.d))
        h = F.relu(F.linear(x, self.lin1.weight * self.mask1, self.lin1.bias))  # (n, h)
        h = F.relu(F.linear(h, self.lin2.weight * self.mask2, self.lin2.bias))  # (n, h)
        out = F.linear(h, self.lin3.weight * self.mask3, self.lin3.bias)      # (n, 3dK)
        logits, means, log_scales = out.view(-1, self.d, 3, self.k).unbind(2)  # (n, d, K)
        log_scales = log_scales.clamp(self.LOG_SCALE_MIN, self.LOG_SCALE_MAX)
        return logits, means, log_scales

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, d) -> (n,) exact log p(x) = sum_i log sum_k pi_ik N(x_i; mu_ik, s_ik^2)."""
        x = as_tensor(x, "x", like=self, shape=(None, self.d))
        logits, means, log_scales = self(x)                              # (n, d, K)
        z = (x[..., None] - means) * torch.exp(-log_scales)              # (n, d, K)
        log_normal = -0.5 * z.pow(2) - log_scales - 0.5 * LOG_2PI
        log_cond = torch.logsumexp(torch.log_softmax(logits, -1) + log_normal, -1)
        return log_cond.sum(dim=1)                                        # (n,)

    @torch.no_grad()
    def sample(self, n: int, *, generator: GeneratorLike = None) -> torch.Tensor:
        """Algorithm 6: draw x_1, then x_2 | x_1, ...; d forward passes.

        Returns:
            (n, d) samples on the model's device and dtype.
        """
        n = check_positive_int(n, "n")
        dtype, device = module_dtype_device(self)
        generator = as_generator(generator, "generator", device=device)
        x = torch.zeros(n, self.d, dtype=dtype, device=device)
        for i in range(self.d):
            logits, means, log_scales = (t[:, i] for t in self(x))       # (n, K) each
            comp = torch.multinomial(torch.softmax(logits, -1), 1,
                                     generator=generator)               # (n, 1)
            eps = torch.randn(n, generator=generator, dtype=dtype, device=device)
            x[:, i] = (means.gather(1, comp)[:, 0]
                       + log_scales.gather(1, comp)[:, 0].exp() * eps)
        return x


# ---------------------------------------------------------------------------------------------
# Colour channels in PixelCNN: masks between channel groups at the centre pixel
# ---------------------------------------------------------------------------------------------


def channel_groups(channels: int, n_colors: int = 3, name: str = "channels") -> torch.Tensor:
    """The colour group of each channel: contiguous blocks, (channels,) in 0..n_colors-1.

    Channel c of a layer with C = n_colors * m channels belongs to colour c // m (the first
    m channels carry R, the next m G, ...).
    """
    channels = check_positive_int(channels, name)
    n_colors = check_positive_int(n_colors, "n_colors")
    if channels % n_colors:
        raise ValueError(f"{name}: expected a multiple of n_colors = {n_colors}, "
                         f"got {channels}")
    return torch.arange(channels) // (channels // n_colors)


class ColorMaskedConv2d(MaskedConv2d):
    """A masked convolution for colour images, ordered pixel by pixel and R, G, B inside.

    The order is x_{1,R}, x_{1,G}, x_{1,B}, x_{2,R}, ...  (van den Oord et al., 2016,
    Sec. 3.4): positions before the centre are fully visible, positions after it hidden,
    and at the centre an output channel of colour g sees input colours h < g (type "A")
    or h <= g (type "B"). Input and output channels are split in ``n_colors`` contiguous
    groups (:func:`channel_groups`).

    Args:
        mask_type: "A" or "B".  in_channels, out_channels: multiples of ``n_colors``.
        kernel_size: odd.  n_colors: number of colour channels (3 for RGB).
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], n_colors: int = 3,
                 **conv2d_kwargs) -> None:
        super().__init__(mask_type, in_channels, out_channels, kernel_size,
                         **conv2d_kwargs)
        g_in = channel_groups(in_channels, n_colors, "in_channels")       # (C_in,)
        g_out = channel_groups(out_channels, n_colors, "out_channels")    # (C_out,)
        kh, kw = self.kernel_size
        mask = self.mask.expand(out_channels, in_channels, kh, kw).clone()
        centre = g_in[None] < g_out[:, None]                  # type A: earlier colours
        if mask_type == "B":
            centre = g_in[None] <= g_out[:, None]             # type B: and its own
        mask[:, :, kh // 2, kw // 2] = centre.float()
        self.mask = mask                                      # (C_out, C_in, kh, kw)
