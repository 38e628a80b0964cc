"""Shared test settings."""

import pytest
import torch

from coursekit import diffusion as df


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids thread start-up and sync costs on a busy CPU
    (the notebooks get the same setting from ``coursekit.seed_everything``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def mix() -> df.NoisedGaussianMixture:
    """The 2-D, 3-component test mixture of tests/test_diffusion.py and test_flow_matching.py:
    unequal weights, correlated covariances of both signs, separated means."""
    weights = [0.3, 0.5, 0.2]
    means = [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]]
    covariances = [
        [[0.3, 0.1], [0.1, 0.2]],
        [[0.5, 0.0], [0.0, 0.1]],
        [[0.2, -0.05], [-0.05, 0.4]],
    ]
    return df.NoisedGaussianMixture(weights, means, covariances)
