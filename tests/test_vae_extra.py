"""Tests of the convolutional VQ-VAE (coursekit.vae.ConvVQVAE)."""

import pytest
import torch

from coursekit import data, vae


def _model(seed=0):
    torch.manual_seed(seed)
    return vae.ConvVQVAE(n_codes=16, code_dim=3, hidden=8)


def test_each_code_sees_its_own_patch_only():
    # Reference: the receptive field of conv 3x3 (pad 1) then conv 4x4 (stride 2, pad 1),
    # computed by hand: code (r, c) sees pixel rows and columns 2r-2 .. 2r+3.
    m = _model()
    x = torch.rand(1, 1, 8, 8)
    jac = torch.autograd.functional.jacobian(m.encode, x)     # (1, D, 4, 4, 1, 1, 8, 8)
    seen = jac.abs().sum(dim=(0, 1, 4, 5)) > 0                  # (4, 4, 8, 8)
    idx = torch.arange(8)
    for r in range(4):
        for c in range(4):
            rows = (idx >= 2 * r - 2) & (idx <= 2 * r + 3)
            cols = (idx >= 2 * c - 2) & (idx <= 2 * c + 3)
            window = rows[:, None] & cols[None]
            assert not torch.any(seen[r, c] & ~window)
            assert seen[r, c, 2 * r, 2 * c]


def test_shapes_and_ranges():
    m = _model()
    x, _ = data.load_digits("test")
    x = x[:5]
    logits, z_e, z_q, idx = m(x)
    assert logits.shape == (5, 1, 8, 8) and z_e.shape == (5, 3, 4, 4)
    assert idx.shape == (5, 4, 4) and idx.max() < 16
    img = m.decode_indices(idx)
    assert img.shape == (5, 1, 8, 8) and img.min() >= 0 and img.max() <= 1
    assert torch.allclose(m.decode(m.embed(idx)), logits, atol=1e-6)


def test_quantization_is_the_nearest_code():
    m = _model()
    z_e = torch.randn(7, 3, 4, 4)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(m.quantize(z_e)[1].flatten(), torch.cdist(flat, m.codebook).argmin(1))


def test_straight_through_gradient_is_the_decoder_gradient_at_z_q():
    m = _model()
    x, _ = data.load_digits("test")
    x = x[:8]
    z_e = m.encode(x).detach().requires_grad_(True)
    z_q, _ = m.quantize(z_e)
    recon = -vae.bernoulli_log_prob(m.decode(z_e + (z_q - z_e).detach()), x).sum()
    (g_st,) = torch.autograd.grad(recon, z_e)
    leaf = z_q.detach().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(-vae.bernoulli_log_prob(m.decode(leaf), x).sum(), leaf)
    assert torch.allclose(g_st, g_ref, atol=1e-6) and g_ref.abs().max() > 0


def test_training_lowers_the_loss_and_uses_the_codebook():
    x, _ = data.load_digits("train")
    m = _model()
    hist = vae.fit(m, x[:400], n_steps=150, lr=3e-3, generator=0, show_progress=False)
    assert sum(hist[-20:]) / 20 < 0.7 * sum(hist[:5]) / 5
    assert m.codes(x[:400]).unique().numel() >= 12


def test_bad_inputs():
    m = _model()
    with pytest.raises(ValueError, match="z_q"):
        m.decode(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match="x"):
        m.encode(torch.zeros(2, 1, 7, 7))
    with pytest.raises(ValueError, match="hidden"):
        vae.ConvVQVAE(hidden=0)
