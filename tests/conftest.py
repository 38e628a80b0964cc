"""Shared test settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids thread start-up and sync costs on a busy CPU
    (the notebooks get the same setting from ``coursekit.seed_everything``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
