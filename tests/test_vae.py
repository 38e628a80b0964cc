"""Tests of coursekit.vae against torch.distributions, quadrature and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Normal, kl_divergence

from coursekit import vae
from coursekit.data import load_digits


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits("train")
    return x[:64], y[:64]


# --- closed forms ------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = 2 * torch.randn(50, 6, generator=g, dtype=torch.float64)
    logvar = 3 * torch.randn(50, 6, generator=g, dtype=torch.float64)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    assert vae.gaussian_kl(mu, logvar).shape == (50,)
    torch.testing.assert_close(vae.gaussian_kl(mu, logvar), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([[0.5, -1.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.5, 0.0]], dtype=torch.float64)
    z = vae.VAE.reparameterize(mu, logvar, 200_000, g)[:, 0]  # (m, d)
    log_ratio = vae.gaussian_log_prob(z, mu, logvar) - vae.gaussian_log_prob(z)
    se = log_ratio.std() / math.sqrt(len(log_ratio))
    # Monte Carlo mean within 5 standard errors of the closed form.
    assert abs(log_ratio.mean() - vae.gaussian_kl(mu, logvar)[0]) < 5 * se


def test_gaussian_kl_zero_at_prior_and_stable_at_edges():
    assert vae.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0
    tiny = torch.full((1, 2), 1e-7, dtype=torch.float64)
    # expm1 keeps the tiny-KL regime accurate: KL ~ logvar^2 / 4 per dimension.
    torch.testing.assert_close(vae.gaussian_kl(torch.zeros_like(tiny), tiny),
                               torch.tensor([2 * 1e-14 / 4], dtype=torch.float64), rtol=1e-6, atol=0)
    assert torch.isfinite(vae.gaussian_kl(torch.zeros(1, 2), torch.tensor([[-30.0, 30.0]]))).all()


def test_gaussian_kl_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        vae.gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 4))


def test_log_probs_match_torch_distributions():
    g = torch.Generator().manual_seed(2)
    z, mu, logvar = (torch.randn(7, 3, generator=g, dtype=torch.float64) for _ in range(3))
    ref = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(vae.gaussian_log_prob(z, mu, logvar), ref)
    torch.testing.assert_close(vae.gaussian_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    logits = 5 * torch.randn(7, 1, 8, 8, generator=g, dtype=torch.float64)
    x = (torch.rand(7, 1, 8, 8, generator=g) < 0.5).double()
    ref = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(vae.bernoulli_log_prob(logits, x), ref)
    # Saturated logits stay finite (computed from logits, not from sigmoid then log).
    assert torch.isfinite(vae.bernoulli_log_prob(torch.full((1, 1, 8, 8), 200.0), torch.zeros(1, 1, 8, 8))).all()


# --- ELBO and IWAE -----------------------------------------------------------------------------


def test_elbo_le_iwae_k_le_iwae_kprime_le_log_px(digits):
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=1, hidden=(16,)).double()
    x = digits[0][:4].double()
    log_px = model.log_px_quadrature(x, n_grid=8001, limit=12.0)
    g = torch.Generator().manual_seed(3)
    reps = 4000
    xr = x.repeat(reps, 1, 1, 1)
    with torch.no_grad():
        estimates = {
            "elbo": model.elbo(xr, generator=g).view(reps, -1),
            1: model.iwae(xr, 1, generator=g).view(reps, -1),
            5: model.iwae(xr, 5, generator=g).view(reps, -1),
            50: model.iwae(xr, 50, generator=g).view(reps, -1),
        }
    mean = {k: v.mean(0) for k, v in estimates.items()}
    se = {k: v.std(0) / math.sqrt(reps) for k, v in estimates.items()}
    # iwae(x, 1) and the ELBO have the same expectation (5 standard errors).
    assert torch.all((mean[1] - mean["elbo"]).abs() < 5 * torch.sqrt(se[1] ** 2 + se["elbo"] ** 2))
    # The bounds are ordered (each gap is many standard errors here) and below log p(x).
    assert torch.all(mean["elbo"] + 5 * se["elbo"] < mean[5])
    assert torch.all(mean[5] < mean[50])
    assert torch.all(mean[50] < log_px + 5 * se[50])
    # The tightest bound is close to log p(x) (a 1-D posterior is easy to cover with 50 samples).
    assert torch.all(log_px - mean[50] < 0.1 * (log_px - mean["elbo"]) + 5 * se[50])


@pytest.mark.parametrize("d", [1, 2])
def test_quadrature_matches_linear_gaussian_closed_form(d):
    # A linear-Gaussian decoder p(x|z) = N(Wz + b, s^2 I) with z ~ N(0, I) has the closed form
    # p(x) = N(b, W W^T + s^2 I) (scipy): an independent reference for the quadrature.
    rng = np.random.default_rng(d)
    w, b, s2 = rng.normal(size=(3, d)), rng.normal(size=3), 0.3
    x = rng.normal(size=(5, 3))
    ref = stats.multivariate_normal(b, w @ w.T + s2 * np.eye(3)).logpdf(x)

    def log_lik(z):  # (G, d) -> (G, 5)
        mean = z.numpy() @ w.T + b  # (G, 3)
        sq = ((x[None] - mean[:, None]) ** 2).sum(-1)
        return torch.from_numpy(-0.5 * sq / s2 - 1.5 * math.log(2 * math.pi * s2))

    got = vae.log_marginal_quadrature(log_lik, d, n_grid=2001 if d == 1 else 301, limit=9.0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)


def test_log_px_quadrature_is_exact_for_a_decoder_that_ignores_z(digits):
    # With the decoder's last layer weights at 0, p(x|z) = Bernoulli(sigmoid(bias)) for every
    # z, so log p(x) = log p(x|z): torch.distributions gives the reference.
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=2, hidden=(16,))
    last = model.decoder.net[-1]
    torch.nn.init.zeros_(last.weight)
    x = digits[0][:3]
    bern = Bernoulli(logits=last.bias.detach().double().view(1, 1, 8, 8), validate_args=False)
    ref = bern.log_prob(x.double())  # grey levels: x log p + (1 - x) log(1 - p)
    got = model.log_px_quadrature(x, n_grid=200, limit=8.0)
    torch.testing.assert_close(got.double(), ref.flatten(1).sum(1), rtol=1e-6, atol=1e-4)
    with pytest.raises(ValueError, match="latent_dim"):
        vae.VAE().log_px_quadrature(x)


def test_nearest_distance(digits):
    x = digits[0]
    assert torch.equal(vae.nearest_distance(x[:5], x), torch.zeros(5))
    ref = torch.cdist(x[:5].flatten(1), x[5:].flatten(1)).min(1).values
    torch.testing.assert_close(vae.nearest_distance(x[:5], x[5:]), ref)


def test_iwae_chunking_gives_the_same_distribution(digits):
    torch.manual_seed(0)
    model = vae.VAE().double()
    x = digits[0][:2].double()
    with torch.no_grad():
        a = model.iwae(x.repeat(500, 1, 1, 1), 20, chunk_size=10_000_000,
                       generator=torch.Generator().manual_seed(0)).view(500, 2)
        b = model.iwae(x.repeat(500, 1, 1, 1), 20, chunk_size=1000,
                       generator=torch.Generator().manual_seed(1)).view(500, 2)
    for j in range(2):
        assert stats.ks_2samp(a[:, j].numpy(), b[:, j].numpy()).pvalue > 1e-3


def test_logvar_is_clamped_and_elbo_finite(digits):
    model = vae.VAE()
    with torch.no_grad():
        model.encoder.net[-1].bias.fill_(1e4)  # an exploded encoder output
    mu, logvar = model.encode(digits[0])
    assert logvar.max() <= vae.LOGVAR_MAX and torch.isfinite(model.elbo(digits[0])).all()
    assert torch.isfinite(model.iwae(digits[0], 10)).all()


def test_loss_uses_beta(digits):
    torch.manual_seed(0)
    model = vae.VAE(beta=0.0)
    g = lambda: torch.Generator().manual_seed(0)
    log_px_z, kl = model.elbo_terms(digits[0], generator=g())
    torch.testing.assert_close(model.loss(digits[0], generator=g()), (-log_px_z).mean())
    model.beta = 4.0
    torch.testing.assert_close(model.loss(digits[0], generator=g()), (-log_px_z + 4 * kl).mean())


def test_fit_decreases_loss_and_sample_shapes(digits):
    model = vae.VAE(latent_dim=2)
    history = vae.fit(model, digits[0], n_steps=60, batch_size=32, show_progress=False)
    assert len(history) == 60 and np.mean(history[-10:]) < np.mean(history[:10])
    s = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert model.reconstruct(digits[0]).shape == digits[0].shape


def test_autoencoder(digits):
    ae = vae.Autoencoder(latent_dim=3)
    history = vae.fit(ae, digits[0], n_steps=60, batch_size=32, show_progress=False)
    assert np.mean(history[-10:]) < np.mean(history[:10])
    assert ae.encode(digits[0]).shape == (64, 3) and ae(digits[0]).shape == (64, 1, 8, 8)


# --- conditional VAE ---------------------------------------------------------------------------


def test_conditional_vae_shapes_and_labels(digits):
    x, y = digits
    model = vae.ConditionalVAE()
    mu, logvar = model.encode(x, y)
    assert mu.shape == (64, 8) and model.elbo(x, y).shape == (64,) and model.iwae(x, 3, y).shape == (64,)
    labels = torch.arange(10).repeat(3)
    s = model.sample(labels, generator=torch.Generator().manual_seed(0))
    assert s.shape == (30, 1, 8, 8)
    # The label matters: the same z decoded with two labels gives two images.
    z = torch.zeros(1, 8)
    assert not torch.allclose(model.decode(z, torch.tensor([0])), model.decode(z, torch.tensor([1])))
    history = vae.fit(model, x, y, n_steps=20, batch_size=32, show_progress=False)
    assert len(history) == 20


def test_conditional_vae_bad_labels(digits):
    x, y = digits
    model = vae.ConditionalVAE()
    with pytest.raises(ValueError, match="0..9"):
        model.sample(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="0..9"):
        model.elbo(x, torch.full((64,), -1))
    with pytest.raises(ValueError, match="integer"):
        model.sample(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(64,\)"):
        model.elbo(x, y[:10])
    with pytest.raises(ValueError, match="needs labels"):
        model.elbo(x)
    with pytest.raises(ValueError, match="needs the training labels"):
        vae.fit(model, x, n_steps=1)
    with pytest.raises(ValueError, match="unconditional"):
        vae.VAE().elbo(x, y)


# --- VQ-VAE ------------------------------------------------------------------------------------


def test_vq_quantization_picks_nearest_code(digits):
    torch.manual_seed(0)
    model = vae.VQVAE()
    z_e = model.encode(digits[0])
    z_q, idx = model.quantize(z_e)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, model.code_dim)
    ref = torch.cdist(flat, model.codebook).argmin(1)
    assert torch.equal(idx.flatten(), ref)
    torch.testing.assert_close(z_q.permute(0, 2, 3, 1).reshape(-1, model.code_dim), model.codebook[ref])
    assert idx.shape == (64, 4, 4)


def test_vq_straight_through_gradient_reaches_encoder(digits):
    torch.manual_seed(0)
    model = vae.VQVAE()
    logits, z_e, z_q, _ = model(digits[0])
    # The reconstruction term alone (no commitment term) must send a gradient to the encoder.
    vae.bernoulli_log_prob(logits, digits[0]).sum().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(gr is not None for gr in grads) and sum(gr.abs().sum() for gr in grads) > 0
    # ... and nothing to the codebook (argmin is not differentiable; the codebook term moves it).
    assert model.codebook.grad is None or model.codebook.grad.abs().sum() == 0


def test_vq_loss_terms_and_dead_code_reset(digits):
    torch.manual_seed(0)
    model = vae.VQVAE(n_codes=8, usage_decay=0.8)  # a short memory: dead within ~15 steps
    with torch.no_grad():
        model.codebook[3] = 1e3  # far from every encoder output: never chosen
    t = model.loss_terms(digits[0])
    torch.testing.assert_close(t["codebook"], t["commitment"])  # equal values, different gradients
    vae.fit(model, digits[0], n_steps=60, batch_size=32, show_progress=False)
    assert model.codebook[3].abs().max() < 1e2  # the dead code was re-initialised
    assert sum(model.history["reset_codes"]) >= 1 and len(model.history["perplexity"]) == 60
    assert 1.0 <= model.history["perplexity"][-1] <= 8.0
    decoded = model.decode_indices(model.codes(digits[0]))
    torch.testing.assert_close(decoded, model.reconstruct(digits[0]))


def test_perplexity_matches_scipy_entropy():
    idx = torch.tensor([0, 0, 1, 2, 2, 2, 5])
    counts = np.bincount(idx.numpy(), minlength=8)
    assert math.isclose(vae.perplexity(idx, 8), math.exp(stats.entropy(counts)), rel_tol=1e-6)
    assert math.isclose(vae.perplexity(torch.arange(8), 8), 8.0, rel_tol=1e-6)


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [torch.zeros(4, 64), torch.zeros(4, 1, 28, 28), torch.zeros(4, 8, 8)])
def test_wrong_image_shape_names_expected_shape(bad):
    for call in (lambda: vae.VAE().elbo(bad), lambda: vae.Autoencoder().encode(bad),
                 lambda: vae.VQVAE().encode(bad)):
        with pytest.raises(ValueError, match=r"\(n, 1, 8, 8\)"):
            call()


def test_other_bad_inputs(digits):
    x = digits[0]
    model = vae.VAE()
    with pytest.raises(ValueError, match="k"):
        model.iwae(x, 0)
    with pytest.raises(ValueError, match="beta"):
        vae.VAE(beta=-1.0)
    with pytest.raises(ValueError, match="beta"):
        model.beta = float("nan")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.elbo(2 * x)
    with pytest.raises(ValueError, match="NaN"):
        model.elbo(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="latent"):
        model.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="n"):
        model.sample(0)
    with pytest.raises(ValueError, match="indices"):
        vae.VQVAE().embed(torch.full((1, 4, 4), 99))
