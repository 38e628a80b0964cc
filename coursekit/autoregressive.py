"""Autoregressive models: the chain rule, ancestral sampling, MADE, PixelCNN, a character LM.

Everything here follows Lecture 1, part III ("Autoregressive models"):

- the chain-rule factorization  p(x) = prod_i p(x_i | x_<i)  on a small discrete joint
  (:func:`chain_rule_conditionals`, :func:`joint_from_conditionals`);
- Algorithm 6, ancestral sampling (:func:`ancestral_sample`);
- a masked autoencoder for binary vectors, MADE (:class:`MADE`), trained with teacher forcing;
- masked convolutions and a small PixelCNN over integer class maps
  (:class:`MaskedConv2d`, :class:`PixelCNN`);
- a character-level causal Transformer (:class:`CharVocab`, :class:`CharTransformer`,
  :func:`generate`) and the decoding heuristics temperature / top-k / nucleus (top-p)
  (:func:`sample_logits`, :func:`top_k_filter`, :func:`top_p_filter`).

NumPy for the exact discrete tables, torch for everything trained by gradient descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.validation import check_positive, check_positive_int

__all__ = [
    "BOOK_TEXT_FILES",
    "FALLBACK_TEXT",
    "CharTransformer",
    "CharVocab",
    "MADE",
    "MaskedConv2d",
    "PixelCNN",
    "ancestral_sample",
    "bernoulli_baseline_log_prob",
    "bits_per_dim",
    "chain_rule_conditionals",
    "filtered_probs",
    "generate",
    "joint_from_conditionals",
    "load_book_text",
    "sample_logits",
    "sequence_log_prob",
    "text_windows",
    "top_k_filter",
    "top_p_filter",
]


# ---------------------------------------------------------------------------------------------
# The chain rule on an explicit joint table (NumPy)
# ---------------------------------------------------------------------------------------------


def _check_joint(joint: np.ndarray) -> np.ndarray:
    p = np.asarray(joint, dtype=float)
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
    order = [int(o) for o in order]
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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Algorithm 6 (autoregressive ancestral sampling): draw x_1, ..., x_d one after the other.

    Args:
        conditional_logits: called as ``f(x, i)`` with the partial samples ``x`` of shape
            (n, d) (entries >= i are still 0 and must be ignored) and the position ``i``;
            returns the (n, K) logits of p(x_i | x_<i).
        d: number of variables.
        n: number of samples.
        generator: torch generator (reproducible draws).

    Returns:
        (n, d) int64 tensor of samples.  The loop makes exactly d sequential calls: the
        O(d) cost of the slides.
    """
    d = check_positive_int(d, "d")
    n = check_positive_int(n, "n")
    x = torch.zeros(n, d, dtype=torch.long)
    for i in range(d):
        logits = conditional_logits(x, i)
        if logits.ndim != 2 or logits.shape[0] != n:
            raise ValueError(f"conditional_logits returned shape {tuple(logits.shape)}, expected (n, K)")
        x[:, i] = sample_logits(logits, generator=generator)
    return x


# ---------------------------------------------------------------------------------------------
# Decoding heuristics: temperature, top-k, nucleus (top-p)
# ---------------------------------------------------------------------------------------------


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 1 or logits.shape[-1] == 0:
        raise ValueError("logits: expected a torch.Tensor of shape (..., K) with K >= 1")
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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row of ``logits`` with temperature, top-k and nucleus sampling.

    T -> 0 tends to greedy decoding (argmax), T = 1 is the model's distribution, T > 1
    flattens it.  top-k and top-p truncate the tail (heuristics, not maximum likelihood).

    Args:
        logits: (..., K) unnormalised log-probabilities.
        temperature: > 0.
        top_k: integer >= 1 or None.
        top_p: in (0, 1] or None.
        generator: torch generator (reproducible draws).

    Returns:
        (...) int64 tensor of sampled indices.
    """
    probs = filtered_probs(logits, temperature, top_k, top_p)
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
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x: expected shape (n, {self.d}), got {tuple(x.shape)}")
        h = F.relu(F.linear(x, self.lin_in.weight * self.mask_in, self.lin_in.bias))
        return (F.linear(h, self.lin_out.weight * self.mask_out, self.lin_out.bias)
                + x @ (self.direct * self.mask_direct).T)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) binary -> (n,) exact log p(x) = sum_i log p(x_i | x_<i)."""
        x = x.float()
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(dim=1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None,
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

        def cond(x: torch.Tensor, i: int) -> torch.Tensor:
            full = torch.zeros(x.shape[0], self.d)
            full[:, : x.shape[1]] = x.float()
            logit = self(full)[:, i]
            return torch.stack([torch.zeros_like(logit), logit], dim=1)  # logits of (0, 1)

        return ancestral_sample(cond, steps, n, generator=generator).float()


def bernoulli_baseline_log_prob(train: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) under independent Bernoulli pixels fitted on ``train`` (the simple baseline).

    The pixel frequencies use add-one (Laplace) smoothing, (count + 1) / (n + 2), so that a
    pixel never seen "on" in training does not give log 0 on the test set.

    Args:
        train: (n, ...) binary training data.  x: (m, ...) binary data to score.

    Returns:
        (m,) log-probabilities (nats).
    """
    train = train.reshape(train.shape[0], -1).double()
    x = x.reshape(x.shape[0], -1).double()
    if train.shape[1] != x.shape[1]:
        raise ValueError(f"x: expected {train.shape[1]} values per example, got {x.shape[1]}")
    p = (train.sum(dim=0) + 1.0) / (train.shape[0] + 2.0)
    return (x * p.log() + (1 - x) * (1 - p).log()).sum(dim=1)


def bits_per_dim(log_prob: torch.Tensor, n_dims: int) -> float:
    """Average negative log-likelihood in bits per dimension: -mean(log p) / (D ln 2)."""
    n_dims = check_positive_int(n_dims, "n_dims")
    return float(-log_prob.double().mean() / (n_dims * math.log(2.0)))


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
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
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
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x: expected a tensor of shape (n, 1, H, W), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.is_floating_point():
            if not torch.equal(x, x.round()):
                raise ValueError("x: expected integer class labels (got non-integer floats)")
            x = x.long()
        if x.min() < 0 or x.max() >= self.n_classes:
            raise ValueError(f"x: class labels must lie in 0..{self.n_classes - 1}, "
                             f"got range [{int(x.min())}, {int(x.max())}]")
        return x

    def forward_onehot(self, h: torch.Tensor) -> torch.Tensor:
        """h: (n, n_classes, H, W) one-hot (float)  ->  (n, n_classes, H, W) logits."""
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
               generator: torch.Generator | None = None, *,
               temperature: float = 1.0) -> torch.Tensor:
        """Algorithm 6 in raster order: H*W forward passes, one pixel drawn after each.

        Args:
            n: number of images.  shape: (H, W).  generator: torch generator (reproducible).
            temperature: > 0, as in :func:`sample_logits` (1 = the model's distribution).

        Returns:
            (n, 1, H, W) int64 class map.
        """
        n = check_positive_int(n, "n")
        if len(shape) != 2:
            raise ValueError(f"shape: expected (H, W), got {shape}")
        H, W = (check_positive_int(s, "shape") for s in shape)
        device = next(self.parameters()).device
        x = torch.zeros(n, 1, H, W, dtype=torch.long, device=device)
        for r in range(H):
            for c in range(W):
                logits = self(x)[:, :, r, c]  # (n, C): depends on pixels before (r, c) only
                x[:, 0, r, c] = sample_logits(logits.cpu(), temperature, generator=generator).to(device)
        return x


# ---------------------------------------------------------------------------------------------
# A character-level causal Transformer
# ---------------------------------------------------------------------------------------------

#: The book's own Markdown pages, relative to the folder ``book/`` (the text the LM learns).
BOOK_TEXT_FILES = ("index.md", "course/outline.md", "course/project.md")

#: A short text of the project, used when the book's pages are absent (e.g. on Colab).
FALLBACK_TEXT = """\
# Generative models

A generative model is a recipe for drawing new examples that look like the data. We are given
samples from an unknown distribution P, and we want a model whose samples resemble the data,
cover all of it, are new, are random, and, when possible, come with a likelihood.

The course starts from sampling itself: pseudo-random numbers, the linear congruential
generator, the Box-Muller transform and the inverse of a cumulative distribution function.
Then comes the Gaussian mixture model, fitted by gradient descent and by the EM algorithm.

The second part asks what makes a good generative model, and how to compare two
distributions: the Kullback-Leibler divergence, the total variation distance and the
Wasserstein distance.

The third part visits the families of models. An autoregressive model writes the density as a
product of conditionals and samples one variable after the other. A normalizing flow maps the
data to a simple distribution with an invertible network and counts the change of volume with
a Jacobian determinant. An energy-based model only needs an energy, and pays for it with a
partition function that nobody can compute.

The fourth part builds autoencoders and variational autoencoders, which learn a latent space,
an encoder and a decoder, and train them with the evidence lower bound.

Every chapter is a notebook that runs on a laptop in under a minute. Every claim is followed by
a check, an assertion that fails when the claim or the code is wrong. Run it, change it, break
it, and run it again.

## How to read the book

Read a chapter from top to bottom. Each section states one idea, derives it in a few lines,
runs the code that implements it, and checks the result with an assertion. When a check
passes, the claim holds for the numbers on the page; when you change the code and a check
fails, the message tells you which claim broke. The figures show what the numbers mean: the
samples of a model next to the data, the loss of a training run, the density of a model on a
grid.

The code of the book lives in a small package, coursekit. A chapter calls it for everything
that another chapter also needs: the data sets, the samplers, the models, the training loop
and the plots. The package has its own tests, and every hand-written algorithm is compared
with a library that does the same job.

## Sampling

To sample is to produce numbers that behave as if they came from a given distribution. A
computer cannot flip a coin, so it uses a pseudo-random generator: a deterministic sequence
that passes statistical tests of randomness. The linear congruential generator multiplies the
previous state by a constant, adds another, and keeps the remainder modulo a large number. It
is fast and simple, and it has flaws that a good test reveals. Modern generators such as PCG64
have longer periods and better statistics.

From uniform numbers we build the others. The inverse of a cumulative distribution function
maps a uniform number to a number with that distribution. The Box-Muller transform maps two
uniform numbers to two independent Gaussian numbers. A Gaussian vector with a given mean and
covariance is a linear map of a standard Gaussian vector, through a Cholesky factor of the
covariance. A Gaussian mixture is sampled in two steps: first the component, then the point.

## Learning a distribution

A model is fitted by maximum likelihood: we choose the parameters that make the data most
probable. For a Gaussian mixture the likelihood can be climbed by gradient descent, or by the
EM algorithm, which alternates between the responsibilities of the components for each point
and the weighted means and covariances of the components. The likelihood of the data never
decreases along the EM iterations.

Maximum likelihood is the same as minimizing the Kullback-Leibler divergence from the data to
the model. The forward divergence covers every mode of the data; the reverse divergence picks
one mode and ignores the others. Other distances compare samples directly: the total variation
distance, and the Wasserstein distance, which measures how far mass has to move.

## Families of models

An autoregressive model predicts one variable at a time from the previous ones. A language
model predicts the next character or the next word; a PixelCNN predicts the next pixel of an
image. Training is a sum of classification losses, one per position, and a mask keeps every
prediction from seeing the future. Sampling draws the variables in order, one after the other,
so it is slow when there are many of them.

A normalizing flow is an invertible network. In one direction it maps data to noise and gives
the exact density through the change of variables formula; in the other it maps noise to data
and gives samples in one pass. The determinant of the Jacobian must be cheap, which is why the
layers are built from simple couplings.

An energy-based model assigns a low energy to likely points and a high energy to unlikely ones.
The density is the exponential of minus the energy, divided by a normalizing constant that is
an integral over the whole space. Training pushes the energy down on the data and up on the
samples of the model, and the samples come from Langevin dynamics, a noisy gradient descent on
the energy.

## Autoencoders

An autoencoder compresses a point to a short code and decodes it back. A variational
autoencoder makes the code random: the encoder gives a distribution over codes, the decoder a
distribution over points, and training maximizes a lower bound on the likelihood of the data.
New points are sampled by decoding random codes.
"""


def load_book_text(book_dir: str | Path | None = "..") -> str:
    """The text of the book's own Markdown pages, or :data:`FALLBACK_TEXT` when they are absent.

    Args:
        book_dir: the folder ``book/`` of the repository (from a chapter notebook, ``".."``).

    Returns:
        the concatenated pages (one blank line between them).
    """
    if book_dir is not None:
        paths = [Path(book_dir) / f for f in BOOK_TEXT_FILES]
        if all(p.is_file() for p in paths):
            return "\n\n".join(p.read_text(encoding="utf-8") for p in paths)
    return FALLBACK_TEXT


class CharVocab:
    """A character vocabulary: the sorted set of characters of a text, with encode / decode."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("text: expected a non-empty string")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """str of length T -> (T,) int64 token indices."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"text: characters not in the vocabulary: {unknown!r}")
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, tokens: torch.Tensor | Sequence[int]) -> str:
        """(T,) token indices -> str."""
        return "".join(self.chars[int(t)] for t in tokens)


class CharTransformer(nn.Module):
    """A tiny decoder-only Transformer (Vaswani et al., 2017) with a causal mask.

    logits[:, t] parametrises p(w_{t+1} | w_{<=t}): position t attends to positions <= t
    only, so one forward pass gives every next-token distribution of a sequence at once
    (teacher forcing).

    Args:
        vocab_size: number of tokens.  context: longest sequence it reads.
        d_model, n_heads, n_layers: width, attention heads and depth.
    """

    def __init__(self, vocab_size: int, context: int = 64, d_model: int = 64,
                 n_heads: int = 4, n_layers: int = 2) -> None:
        super().__init__()
        self.vocab_size = check_positive_int(vocab_size, "vocab_size")
        self.context = check_positive_int(context, "context")
        d_model = check_positive_int(d_model, "d_model")
        n_heads = check_positive_int(n_heads, "n_heads")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(self.context, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, check_positive_int(n_layers, "n_layers"),
                                            enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (n, T) int64 with T <= context  ->  (n, T, vocab_size) next-token logits."""
        if idx.ndim != 2 or idx.shape[1] > self.context or idx.shape[1] == 0:
            raise ValueError(f"idx: expected shape (n, T) with 1 <= T <= {self.context}, "
                             f"got {tuple(idx.shape)}")
        T = idx.shape[1]
        h = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        # -inf above the diagonal: position t cannot attend to any s > t
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing cross-entropy (nats per token) of a (n, T+1) batch of windows."""
        logits = self(batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), batch[:, 1:].reshape(-1))


def text_windows(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """All overlapping windows of ``length`` tokens: (T,) -> (T - length + 1, length)."""
    length = check_positive_int(length, "length")
    if tokens.ndim != 1 or tokens.shape[0] < length:
        raise ValueError(f"tokens: expected a 1-D tensor of at least {length} tokens")
    return tokens.unfold(0, length, 1)


@torch.no_grad()
def sequence_log_prob(model: CharTransformer, tokens: torch.Tensor,
                      batch_size: int = 256) -> torch.Tensor:
    """log p(w_t | w_<t) for t = 2..T of one long sequence (nats), each token conditioned on
    the (up to) ``model.context`` tokens before it: exactly what :func:`generate` uses.

    Args:
        tokens: (T,) int64.

    Returns:
        (T - 1,) log-probabilities of tokens 2..T.
    """
    if tokens.ndim != 1 or tokens.shape[0] < 2:
        raise ValueError("tokens: expected a 1-D tensor of at least 2 tokens")
    model.eval()
    C = min(model.context, tokens.shape[0] - 1)
    # the first window predicts targets 1..C from prefixes of lengths 1..C (teacher forcing)
    logp = torch.log_softmax(model(tokens[None, :C])[0], dim=-1)
    parts = [logp.gather(1, tokens[1 : C + 1, None])[:, 0]]
    # every later target j sees exactly the C tokens before it: the last position of a window
    targets = tokens[C + 1 :]
    if targets.numel() == 0:
        return parts[0]
    windows = text_windows(tokens[1:-1], C)  # window k = tokens[k+1 : k+1+C] predicts k+1+C
    for s in range(0, windows.shape[0], batch_size):
        logits = model(windows[s : s + batch_size])[:, -1]
        lp = torch.log_softmax(logits, dim=-1)
        parts.append(lp.gather(1, targets[s : s + batch_size, None])[:, 0])
    return torch.cat(parts)


@torch.no_grad()
def generate(
    model: CharTransformer,
    vocab: CharVocab,
    prompt: str,
    n_new: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> str:
    """Continue ``prompt`` by ``n_new`` characters with Algorithm 6 (one token per pass).

    Args:
        greedy: take the argmax at every step instead of sampling (the T -> 0 limit).
        temperature, top_k, top_p, generator: as in :func:`sample_logits`.

    Returns:
        the prompt followed by the ``n_new`` generated characters.
    """
    n_new = check_positive_int(n_new, "n_new", minimum=0)
    if not prompt:
        raise ValueError("prompt: expected at least one character")
    model.eval()
    idx = vocab.encode(prompt)
    for _ in range(n_new):
        logits = model(idx[-model.context:][None])[0, -1]  # (V,): p(w_{t+1} | last context tokens)
        if greedy:
            nxt = logits.argmax()
        else:
            nxt = sample_logits(logits, temperature, top_k, top_p, generator=generator)
        idx = torch.cat([idx, nxt.reshape(1)])
    return vocab.decode(idx)
