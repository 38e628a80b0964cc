"""Truncation sampling: draw the latent from N(0, 0.7^2 I) instead of N(0, I)."""

import torch

from coursekit.project import LATENT_DIM


def sample(model, n, generator):
    z = 0.7 * torch.randn(n, LATENT_DIM, generator=generator)
    return model(z)
