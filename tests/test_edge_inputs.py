"""Bad input to the networks' forward methods that the conventions sweep exempts (issue 21).

The sweep in test_conventions.py exempts ``forward`` methods (they are called by swept
functions); these tests cover the inputs that a student can still hand them directly and
that used to give NaN or a silently reinterpreted answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coursekit import diffusion as df


@pytest.mark.parametrize("sigma", [float("nan"), float("inf"), -1.0, 0.0,
                                   [1.0, float("nan"), 1.0, 1.0]])
def test_edm_denoiser_rejects_non_finite_or_non_positive_sigma(sigma):
    denoiser = df.EDMDenoiser(df.NoiseConditionalMLP(2, hidden=8))
    with pytest.raises(ValueError, match="sigma"):
        denoiser(torch.zeros(4, 2), torch.as_tensor(sigma))


def test_edm_denoiser_accepts_positive_sigma():
    denoiser = df.EDMDenoiser(df.NoiseConditionalMLP(2, hidden=8))
    out = denoiser(torch.zeros(4, 2), torch.tensor([0.01, 1.0, 80.0, 1e-3]))
    assert out.shape == (4, 2) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("label", [
    torch.tensor([0.5, 1.0, 2.0, 0.0]),   # float: would be truncated to 0
    np.array([0.0, 1.0, 2.0, 1.0]),       # float array, even with integral values
    torch.tensor([0, -1, 2, 0]),           # negative index
    torch.tensor([0, 1, 4, 0]),            # beyond the "no label" index 3
    torch.tensor([0, 1, 2]),               # wrong length
])
def test_noise_conditional_mlp_rejects_bad_labels(label):
    net = df.NoiseConditionalMLP(2, hidden=8, n_classes=3)
    with pytest.raises(ValueError, match="label"):
        net(torch.zeros(4, 2), 0.5, label)


def test_noise_conditional_mlp_accepts_classes_and_the_null_label():
    net = df.NoiseConditionalMLP(2, hidden=8, n_classes=3)
    a = net(torch.zeros(4, 2), 0.5, torch.tensor([0, 1, 2, 3]))  # 3 = "no label"
    b = net(torch.zeros(4, 2), 0.5)                                # None = "no label"
    assert torch.equal(a[3], b[3])
