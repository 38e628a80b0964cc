"""One-step tests of coursekit.gan.train_gan and of the samplers around it.

Each test builds a network small enough (linear or quadratic, known weights) that the
gradient a player receives can be derived by hand, and compares the gradient train_gan
applies with that derivation (issue 22, "Benchmarks and checks that can fail").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from coursekit import gan


class Affine(nn.Module):
    """A critic ``V(x) = w . x + b`` with given weights (float64)."""

    def __init__(self, w, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).clone())
        self.b = nn.Parameter(torch.tensor(float(b), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


# ------------------------------------------------------------------------- large logits


@pytest.mark.parametrize("key, logit", [("jensen_shannon", 1000.0), ("gan", 1000.0),
                                        ("reverse_kl", 1000.0), ("squared_hellinger", 50.0),
                                        ("pearson", -1000.0), ("total_variation", 1000.0)])
def test_train_gan_f_gan_survives_large_logits(key, logit):
    # A critic that outputs a huge logit everywhere (weights 0, bias = logit): every term of
    # the f-GAN losses is representable in float32, so train_gan must run, not abort with
    # "the losses became non-finite" (issue 22, item 4: f*(g_f(V)) overflowed from V ~ 17).
    torch.manual_seed(0)
    g = gan.Generator(hidden=(4,))
    c = Affine([0.0, 0.0], logit).float()
    x = np.random.default_rng(0).standard_normal((64, 2))
    h = gan.train_gan(g, c, x, loss="f_gan", divergence=key, n_steps=2, batch_size=8,
                      lr_d=1e-6, generator=0, show_progress=False)
    assert np.isfinite(h["critic"]).all() and np.isfinite(h["generator"]).all()
    # the generator's loss is -f*(g_f(logit)) (the critic is constant, so exactly that)
    want = {"jensen_shannon": lambda v: v - np.log(2.0), "gan": lambda v: v,
            "reverse_kl": lambda v: v - 1.0, "squared_hellinger": np.expm1,
            "pearson": lambda v: v**2 / 4 + v, "total_variation": lambda v: 0.5}[key](logit)
    assert -h["generator"][0] == pytest.approx(want, rel=1e-5)
