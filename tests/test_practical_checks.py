"""The practicals' check helpers accept correct code and reject typical mistakes with advice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit import practical_checks as checks
from coursekit.data import load_digits

# ---------------------------------------------------------------------------------------------
# Correct implementations (the practical's conventions) and broken variants
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 64),
                                 nn.Unflatten(1, (1, 8, 8)))

    def forward(self, z):
        return self.net(z)


def reparameterize(mu, logvar):
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(std)


def gaussian_kl(mu, logvar):
    return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar).sum(-1)


def elbo(x, encoder, decoder, beta=1.0):
    mu, logvar = encoder(x)
    logits = decoder(reparameterize(mu, logvar))
    rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    return rec - beta * gaussian_kl(mu, logvar)


def test_correct_code_passes(capsys):
    checks.check_encoder(Encoder)
    checks.check_decoder(Decoder)
    checks.check_reparameterize(reparameterize)
    checks.check_gaussian_kl(gaussian_kl)
    checks.check_elbo(elbo, Encoder, Decoder)
    assert capsys.readouterr().out.count("OK") == 5


# --- encoder / decoder mistakes ---------------------------------------------------------------


class NoFlatten(Encoder):
    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU())


class HardCoded(Encoder):
    def __init__(self, latent_dim: int):
        super().__init__(2)


class SameHeads(Encoder):
    def forward(self, x):
        h = self.mu(self.body(x))
        return h, h


class PlainList(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.layers = [nn.Flatten(), nn.Linear(64, 2 * latent_dim)]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x.chunk(2, dim=-1)


class BatchMixing(Encoder):
    def forward(self, x):
        mu, logvar = super().forward(x)
        return mu - mu.mean(0), logvar


@pytest.mark.parametrize("bad, hint", [
    (NoFlatten, "flatten"),
    (HardCoded, "hard-coded"),
    (SameHeads, "identical"),
    (PlainList, "ModuleList"),
    (BatchMixing, "batch"),
])
def test_encoder_mistakes(bad, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_encoder(bad)


class SigmoidDecoder(Decoder):
    def forward(self, z):
        return torch.sigmoid(self.net(z))


class FlatDecoder(Decoder):
    def forward(self, z):
        return self.net(z).flatten(1)


class DetachedDecoder(Decoder):
    def forward(self, z):
        return self.net(z.detach())


@pytest.mark.parametrize("bad, hint", [
    (SigmoidDecoder, "logits"),
    (FlatDecoder, r"\(6, 1, 8, 8\)"),
    (DetachedDecoder, "back to z"),
])
def test_decoder_mistakes(bad, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_decoder(bad)


# --- sampling / KL / ELBO mistakes ------------------------------------------------------------


@pytest.mark.parametrize("bad, hint", [
    (lambda mu, lv: mu + lv.exp() * torch.randn_like(mu), "variance"),
    (lambda mu, lv: mu + torch.randn_like(mu), "multiply the noise"),
    (lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)), "torch.normal"),
    (lambda mu, lv: mu + torch.exp(0.5 * lv), "does not vary"),
    (lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.randn(mu.shape[1]), "does not vary"),
])
def test_reparameterize_mistakes(bad, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_reparameterize(bad)


@pytest.mark.parametrize("bad, hint", [
    (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv), r"sum over the latent"),
    (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(-1).mean(), "one value per example"),
    (lambda mu, lv: (lv.exp() + mu**2 - 1 - lv).sum(-1), "factor 1/2"),
    (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 + lv).sum(-1), "disagrees"),
])
def test_kl_mistakes(bad, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_gaussian_kl(bad)


def test_reference_kl_matches_the_closed_form():
    mu, logvar = torch.randn(50, 4), torch.randn(50, 4)
    torch.testing.assert_close(checks.reference_gaussian_kl(mu, logvar), gaussian_kl(mu, logvar))


def _loss_not_elbo(x, e, d, beta=1.0):
    return -elbo(x, e, d, beta)


def _mean_pixels(x, e, d, beta=1.0):
    mu, lv = e(x)
    logits = d(reparameterize(mu, lv))
    rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean((1, 2, 3))
    return rec - beta * gaussian_kl(mu, lv)


def _no_beta(x, e, d, beta=1.0):
    return elbo(x, e, d, 1.0)


def _double_kl(x, e, d, beta=1.0):
    return elbo(x, e, d, beta) - beta * gaussian_kl(*e(x))


def _batch_mean(x, e, d, beta=1.0):
    return elbo(x, e, d, beta).mean()


@pytest.mark.parametrize("bad, hint", [
    (_loss_not_elbo, "minus the ELBO"),
    (_mean_pixels, "summed over the 64 pixels"),
    (_no_beta, "does not depend on beta"),
    (_double_kl, "KL term is off"),
    (_batch_mean, "one value per example"),
])
def test_elbo_mistakes(bad, hint):
    with pytest.raises(AssertionError, match=hint):
        checks.check_elbo(bad, Encoder, Decoder)


# --- training and inspection ------------------------------------------------------------------


def test_training_check():
    checks.check_training([30.0] * 10 + [20.0] * 10, 20, baseline=27.0)
    with pytest.raises(AssertionError, match="one loss per step"):
        checks.check_training([30.0] * 5, 20, baseline=27.0)
    with pytest.raises(AssertionError, match="did not decrease"):
        checks.check_training([20.0] * 20, 20, baseline=27.0)
    with pytest.raises(AssertionError, match="not below"):
        checks.check_training([40.0] * 10 + [28.0] * 10, 20, baseline=27.0)
    with pytest.raises(AssertionError, match="NaN"):
        checks.check_training([30.0] * 19 + [float("nan")], 20, baseline=27.0)


def test_independent_pixels_baseline_is_the_best_constant_model():
    x, _ = load_digits("train")
    base = checks.independent_pixels_nll(x)
    # Any other constant pixel probability does worse (the mean minimises the cross-entropy).
    p = x.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4)
    for shift in (-0.05, 0.05):
        q = (p + shift).clamp(1e-4, 1 - 1e-4).expand_as(x)
        assert F.binary_cross_entropy(q, x, reduction="none").sum((1, 2, 3)).mean() > base


def test_reconstruction_check():
    x, _ = load_digits("test")
    checks.check_reconstructions(x.clone(), x)  # perfect reconstructions
    with pytest.raises(AssertionError, match="mean image"):
        checks.check_reconstructions(x.mean(0, keepdim=True).expand_as(x).clone(), x)
    with pytest.raises(AssertionError, match="sigmoid"):
        checks.check_reconstructions(x * 2 - 1, x)


def _data_sampler(decoder, n, latent_dim, generator=None):
    """A perfect 'model': returns training digits chosen at random."""
    x, _ = load_digits("train")
    return x[torch.randint(0, len(x), (n,), generator=generator)]


def test_sample_check():
    checks.check_samples(_data_sampler, None, 2)
    with pytest.raises(AssertionError, match="same seeded generator"):
        checks.check_samples(lambda d, n, m, generator=None: _data_sampler(d, n, m), None, 2)

    def only_ones(decoder, n, latent_dim, generator=None):
        x, y = load_digits("train")
        ones = x[y == 1]
        return ones[torch.randint(0, len(ones), (n,), generator=generator)]

    with pytest.raises(AssertionError, match="only 1 digit classes"):
        checks.check_samples(only_ones, None, 2)


def test_digit_classifier_is_accurate():
    x, y = load_digits("test")
    assert checks.digit_classifier().score(x.flatten(1).numpy(), y.numpy()) > 0.95


def test_latent_grid_check():
    torch.manual_seed(0)
    decoder = Decoder(2)

    def grid(dec, n, lim):
        ticks = torch.linspace(-lim, lim, n)
        z1, z2 = torch.meshgrid(ticks, ticks.flip(0), indexing="xy")
        with torch.no_grad():
            return torch.sigmoid(dec(torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)))

    def transposed(dec, n, lim):
        ticks = torch.linspace(-lim, lim, n)
        z1, z2 = torch.meshgrid(ticks, ticks, indexing="ij")
        with torch.no_grad():
            return torch.sigmoid(dec(torch.stack([z1.reshape(-1), z2.reshape(-1)], 1)))

    checks.check_latent_grid(grid, decoder)
    with pytest.raises(AssertionError, match="should decode z"):
        checks.check_latent_grid(transposed, decoder)
