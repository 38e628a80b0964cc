"""One home for the simple baselines that every image model must beat.

The *independent-pixel* model treats the D pixels of an image as independent Bernoulli
variables, p(x) = prod_i p_i^{x_i} (1 - p_i)^{1 - x_i}, with p_i the (smoothed) frequency of
pixel i being on in the training set. It is the model with no dependence at all between
pixels: an autoregressive model (PixelCNN) or a latent-variable model (a VAE whose decoder
ignores z) contains it, so its negative log-likelihood is the bar they must clear.

The frequencies use add-one (Laplace) smoothing, p_i = (sum_n x_ni + 1) / (n + 2): the
posterior mean of p_i under a uniform prior, so that a pixel never on in the training set
does not get probability 0 (log 0 = -inf on the test set). Both the PixelCNN chapter and
Practical 1 use this one definition.
"""

from __future__ import annotations

from typing import Any

import torch

from coursekit.validation import as_tensor

__all__ = ["independent_pixels_log_prob", "independent_pixels_nll", "independent_pixels_probs"]


def _flat(x: Any, name: str) -> torch.Tensor:
    t = as_tensor(x, name, dtype=torch.float64, detach=True)
    if t.ndim < 2:
        raise ValueError(
            f"{name}: expected a batch of images of shape (n, ...) with at least 2 dimensions, "
            f"got shape {tuple(t.shape)}"
        )
    t = t.reshape(t.shape[0], -1)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError(
            f"{name}: pixel values must lie in [0, 1] (binary images), got values in "
            f"[{t.min().item():.3g}, {t.max().item():.3g}]"
        )
    return t


def independent_pixels_probs(x_fit: Any) -> torch.Tensor:
    """The smoothed pixel frequencies p_i = (sum_n x_ni + 1) / (n + 2).

    Args:
        x_fit: (n, ...) images with values in [0, 1] (tensor or array).

    Returns:
        (D,) float64 probabilities in (0, 1), D = the number of values per image.
    """
    t = _flat(x_fit, "x_fit")
    return (t.sum(dim=0) + 1.0) / (t.shape[0] + 2.0)


def independent_pixels_log_prob(x_fit: Any, x_eval: Any | None = None) -> torch.Tensor:
    """log p(x) of each image of ``x_eval`` under independent Bernoulli pixels fitted on ``x_fit``.

    log p(x) = sum_i x_i log p_i + (1 - x_i) log(1 - p_i), with the smoothed p_i of
    :func:`independent_pixels_probs`.

    Args:
        x_fit: (n, ...) training images with values in [0, 1].
        x_eval: (m, ...) images to score, with the same number of values per image
            (None: ``x_fit``).

    Returns:
        (m,) float64 log-probabilities in nats, on ``x_eval``'s device.
    """
    p = independent_pixels_probs(x_fit)
    x = _flat(x_fit if x_eval is None else x_eval, "x_fit" if x_eval is None else "x_eval")
    if x.shape[1] != p.shape[0]:
        raise ValueError(
            f"x_eval: expected {p.shape[0]} values per image (like x_fit), got {x.shape[1]}"
        )
    p = p.to(x.device)
    return x @ p.log() + (1.0 - x) @ torch.log1p(-p)


def independent_pixels_nll(x_fit: Any, x_eval: Any | None = None) -> float:
    """Mean negative log-likelihood (nats per image) of the independent-pixel baseline.

    Args:
        x_fit: (n, ...) training images with values in [0, 1].
        x_eval: (m, ...) images to score (None: ``x_fit``, the training NLL).

    Returns:
        -(1/m) sum_j log p(x_j), a float. Divide by D ln 2 for bits per dimension.
    """
    return float(-independent_pixels_log_prob(x_fit, x_eval).mean())
