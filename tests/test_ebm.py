"""coursekit.ebm: Langevin dynamics, grid normalization, the likelihood gradient, training."""

import math

import numpy as np
import pytest
import torch

from coursekit import ebm


def gaussian_energy(mean, sigma2):
    mean = torch.as_tensor(mean, dtype=torch.float64)
    return lambda x: (x - mean).pow(2).sum(dim=1) / (2 * sigma2)


def test_langevin_matches_closed_form_ula_stationary_moments():
    sigma2, eta, n = 2.0, 0.5, 20000
    energy = gaussian_energy([1.0, -1.0], sigma2)
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(n, 2, dtype=torch.float64)
    # contraction 1 - eta/sigma2 = 0.75 per step: 150 steps forget x0 to 0.75^150 ~ 1e-19
    x = ebm.langevin(energy, x0, eta, 150, generator=g)
    v_ula = ebm.ula_gaussian_variance(sigma2, eta)
    assert v_ula == pytest.approx(sigma2 / (1 - eta / (2 * sigma2)))
    var = x.var(dim=0).numpy()
    se = v_ula * math.sqrt(2.0 / (n - 1))  # standard error of a Gaussian sample variance
    assert np.all(np.abs(var - v_ula) < 5 * se), (var, v_ula)
    assert np.all(np.abs(var - sigma2) > 10 * se)  # the step-size bias is real and detected
    mean_se = math.sqrt(v_ula / n)
    assert np.all(np.abs(x.mean(dim=0).numpy() - [1.0, -1.0]) < 5 * mean_se)


def test_langevin_without_noise_is_gradient_descent_to_the_minimum():
    energy = gaussian_energy([0.5, 2.0], 1.0)
    x0 = torch.randn(10, 2, dtype=torch.float64) * 3
    x = ebm.langevin(energy, x0, 0.1, 400, noise=False)
    assert torch.allclose(x, torch.tensor([[0.5, 2.0]], dtype=torch.float64).expand(10, 2), atol=1e-12)
    # one step equals x - eta * grad E exactly
    x1 = ebm.langevin(energy, x0, 0.1, 1, noise=False)
    assert torch.allclose(x1, x0 - 0.1 * (x0 - torch.tensor([0.5, 2.0], dtype=torch.float64)))


def test_langevin_chain_and_reproducibility():
    energy = gaussian_energy([0.0, 0.0], 1.0)
    x0 = torch.zeros(4, 2, dtype=torch.float64)
    a, chain = ebm.langevin(energy, x0, 0.1, 5, return_chain=True,
                            generator=torch.Generator().manual_seed(3))
    b = ebm.langevin(energy, x0, 0.1, 5, generator=torch.Generator().manual_seed(3))
    assert chain.shape == (6, 4, 2) and torch.equal(chain[0], x0) and torch.equal(chain[-1], a)
    assert torch.equal(a, b)


def test_langevin_gradient_clipping_bounds_the_drift():
    energy = gaussian_energy([100.0, -100.0], 1.0)  # huge gradients at the origin
    x0 = torch.zeros(5, 2, dtype=torch.float64)
    x1 = ebm.langevin(energy, x0, 0.1, 1, noise=False, clip_energy_grad=0.5)
    assert torch.allclose((x1 - x0).abs(), torch.full_like(x0, 0.05))


def test_langevin_does_not_touch_model_gradients():
    model = ebm.EnergyMLP(2, 8, spectral=False)
    ebm.langevin(model, torch.zeros(3, 2), 0.01, 3)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"step_size": 0.0}, "step_size"),
        ({"step_size": -1.0}, "step_size"),
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"noise_scale": -1.0}, "noise_scale"),
        ({"clip_energy_grad": 0.0}, "clip_energy_grad"),
    ],
)
def test_langevin_bad_arguments(kwargs, match):
    args = {"step_size": 0.1, "n_steps": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        ebm.langevin(gaussian_energy([0, 0], 1.0), torch.zeros(3, 2, dtype=torch.float64), **args)


def test_langevin_bad_inputs():
    energy = gaussian_energy([0, 0], 1.0)
    with pytest.raises(ValueError, match="x0"):
        ebm.langevin(energy, torch.zeros(3), 0.1, 2)
    with pytest.raises(ValueError, match="x0"):
        ebm.langevin(energy, torch.full((3, 2), float("nan")), 0.1, 2)
    with pytest.raises(ValueError, match="energy"):
        ebm.langevin(lambda x: x, torch.zeros(3, 2), 0.1, 2)  # (n, d) instead of (n,)
    with pytest.raises(ValueError, match="diverged"):
        ebm.langevin(lambda x: -(x ** 4).sum(1), torch.ones(3, 2), 1.0, 50, noise=False)


def test_ula_gaussian_variance_validates():
    with pytest.raises(ValueError, match="diverges"):
        ebm.ula_gaussian_variance(1.0, 2.0)
    assert ebm.ula_gaussian_variance(1.0, 1e-8) == pytest.approx(1.0, rel=1e-7)


def test_grid_log_partition_of_a_gaussian_is_analytic():
    sigma2 = 0.7
    energy = gaussian_energy([0.3, -0.2], sigma2)
    log_z = ebm.grid_log_partition(energy, lim=6.0, n=300, dtype=torch.float64)
    assert log_z.item() == pytest.approx(math.log(2 * math.pi * sigma2), abs=1e-9)
    # log-sum-exp: a constant shift of 1000 in the energy shifts log Z by -1000, no overflow
    shifted = ebm.grid_log_partition(lambda x: energy(x) - 1000.0, lim=6.0, n=300,
                                     dtype=torch.float64)
    assert torch.isfinite(shifted) and shifted.item() == pytest.approx(log_z.item() + 1000.0, abs=1e-9)


def test_grid_points_and_bad_arguments():
    pts, area = ebm.grid_points(1.0, 4)
    assert pts.shape == (16, 2) and area == pytest.approx(0.25)
    assert torch.allclose(pts[:4, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    with pytest.raises(ValueError, match="lim"):
        ebm.grid_points(0.0, 4)
    with pytest.raises(ValueError, match="n"):
        ebm.grid_points(1.0, 1)


def test_likelihood_gradient_identity_on_the_grid():
    # grad_theta log p(x) = -grad E(x) + E_p[grad E], with both sides computed on the grid:
    # the left by autograd through the grid log Z, the right by weighting grad E with p on the grid.
    torch.manual_seed(0)
    model = ebm.EnergyMLP(2, 8, spectral=False).double()
    x = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    params = list(model.parameters())
    lhs = torch.autograd.grad(
        ebm.grid_log_prob(model, x, lim=5.0, n=80).sum(), params)
    pts, _ = ebm.grid_points(5.0, 80, torch.float64)
    e = model(pts)
    w = torch.softmax(-e, dim=0).detach()  # p on the grid cells
    expect = torch.autograd.grad((w * e).sum(), params)  # E_p[grad E]
    at_x = torch.autograd.grad(model(x).sum(), params)
    for a, b, c in zip(lhs, at_x, expect, strict=True):
        assert torch.allclose(a, -b + c, atol=1e-10)


def test_spectral_norm_bounds_the_energy_gradient():
    torch.manual_seed(0)
    model = ebm.EnergyMLP(2, 32, n_hidden=2, spectral=True, out_scale=3.0)
    for _ in range(100):  # each call in training mode runs one power iteration
        model(torch.zeros(1, 2))
    model.eval()
    x = 4 * torch.randn(2000, 2)
    g = ebm.energy_grad(model, x)
    silu_lip = 1.1  # max of SiLU's derivative is ~1.0998
    assert g.norm(dim=1).max() <= 3.0 * silu_lip ** 2 * 1.01


def test_train_ebm_runs_and_returns_histories():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(512, 2, generator=g) * 0.5 + torch.tensor([1.0, 0.0])
    model = ebm.EnergyMLP(2, 16, spectral=False)
    hist = ebm.train_ebm(model, data, n_steps=30, batch_size=64, langevin_steps=5,
                         step_size=0.05, buffer_size=128, generator=g, lr=3e-3)
    assert set(hist) == {"loss", "E(data)", "E(samples)"}
    assert len(hist["loss"]) == 30 and np.all(np.isfinite(hist["loss"]))
    assert model.buffer.shape == (128, 2)
    # the data energy went down relative to the samples' (the contrastive gap is negative)
    gap = np.mean(hist["E(data)"][-10:]) - np.mean(hist["E(samples)"][-10:])
    assert gap < 0
    short = ebm.train_ebm(ebm.EnergyMLP(2, 8), data, n_steps=3, batch_size=32, langevin_steps=2,
                          persistent=False, generator=g)
    assert len(short["loss"]) == 3
    with pytest.raises(ValueError, match="reinit_prob"):
        ebm.train_ebm(model, data, n_steps=1, reinit_prob=1.5)
    with pytest.raises(ValueError, match="data"):
        ebm.train_ebm(model, data[:, 0], n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        ebm.train_ebm(model, data, n_steps=0)


def test_contrastive_divergence_loss_gradient_is_data_minus_model_expectation():
    # A linear energy E(x) = w.x: the loss gradient in w is mean(x) - mean(u) exactly
    # (energy_reg = 0), the likelihood gradient with E_model replaced by the samples u.
    lin = torch.nn.Linear(3, 1, bias=False).double()
    energy = lambda x: lin(x).squeeze(-1)
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randn(40, 3, generator=g, dtype=torch.float64) + 1
    ebm.contrastive_divergence_loss(energy, x, u).backward()
    torch.testing.assert_close(lin.weight.grad[0], x.mean(0) - u.mean(0))
    # the square term: d/dw reg (mean (w.x)^2 + mean (w.u)^2) = 2 reg (mean (w.x) x + ...)
    lin.weight.grad = None
    ebm.contrastive_divergence_loss(energy, x, u, energy_reg=0.5).backward()
    w = lin.weight.detach()[0]
    ref = x.mean(0) - u.mean(0) + ((x @ w)[:, None] * x).mean(0) + ((u @ w)[:, None] * u).mean(0)
    torch.testing.assert_close(lin.weight.grad[0], ref)
    with pytest.raises(ValueError, match="energy_reg"):
        ebm.contrastive_divergence_loss(energy, x, u, energy_reg=-1)
