"""Truncation sampling: draw the latent from N(0, 0.7^2 I) instead of N(0, I).

By the project's contract, sample() returns latent vectors z of shape (n, 16); the
evaluator computes the images with its own SharedGenerator and this folder's model.pt.
"""

import torch

from coursekit.project import LATENT_DIM


def sample(model, n, generator):
    return 0.7 * torch.randn(n, LATENT_DIM, generator=generator)
