"""One-step tests of coursekit.gan.train_gan and of the samplers around it.

Each test builds a network small enough (linear or quadratic, known weights) that the
gradient a player receives can be derived by hand, and compares the gradient train_gan
applies with that derivation (issue 22, "Benchmarks and checks that can fail").
"""

from __future__ import annotations

import math

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


# ------------------------------------------------------------------ one step, every pairing


class LinearGenerator(nn.Module):
    """``G(z) = A z + c`` (float64), recording every latent batch it is given."""

    latent_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[0.8, -0.3], [0.2, 1.1]], dtype=torch.float64))
        self.c = nn.Parameter(torch.tensor([0.5, -0.25], dtype=torch.float64))
        self.seen: list[torch.Tensor] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(z.detach().clone())
        return z @ self.A.T + self.c


class RecordingCritic(nn.Module):
    """``V(x) = w . x + b``, or ``a |x|^2 / 2 + w . x + b`` when ``a`` is given (float64).

    Records ``(x, w, b, a)`` (detached copies) at every call.
    """

    def __init__(self, w=(0.7, -0.4), b: float = 0.1, a: float | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(float(b), dtype=torch.float64))
        self.a = None if a is None else nn.Parameter(torch.tensor(float(a), dtype=torch.float64))
        self.calls: list[tuple] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = None if self.a is None else self.a.detach().clone()
        self.calls.append((x.detach().clone(), self.w.detach().clone(),
                           self.b.detach().clone(), a))
        v = x @ self.w + self.b
        return v if self.a is None else v + 0.5 * self.a * (x**2).sum(1)


def _record_adam(monkeypatch) -> list:
    """Patch torch.optim.Adam so that each optimizer records its gradients at every step."""
    made: list = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            params = list(params)
            super().__init__(params, **kwargs)
            self.grads: list[list[torch.Tensor]] = []
            made.append(self)

        def step(self, closure=None):
            self.grads.append([p.grad.detach().clone() for p in self.param_groups[0]["params"]])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    return made


def _sig(v):
    return torch.sigmoid(v)


# dL/dV per sample (before the 1/m of the mean) for the f-GAN rows: the critic's term on
# real data is -g_f(V) (d: -g_f'(V)), on fakes +f*(g_f(V)) (d: (f* o g_f)'(V)). Hand-derived
# from the tables' g_f and f* (Nowozin et al. 2016, Table 2).
ACT_PRIME = {
    "kl": lambda v: torch.ones_like(v),
    "reverse_kl": lambda v: torch.exp(-v),
    "pearson": lambda v: torch.ones_like(v),
    "squared_hellinger": lambda v: torch.exp(-v),
    "jensen_shannon": lambda v: _sig(-v),
    "gan": lambda v: _sig(-v),
    "total_variation": lambda v: (1 - torch.tanh(v) ** 2) / 2,
}
CONJ_ACT_PRIME = {
    "kl": lambda v: torch.exp(v - 1),
    "reverse_kl": lambda v: torch.ones_like(v),
    "pearson": lambda v: v / 2 + 1,
    "squared_hellinger": lambda v: torch.exp(v),
    "jensen_shannon": lambda v: _sig(v),
    "gan": lambda v: _sig(v),
    "total_variation": lambda v: (1 - torch.tanh(v) ** 2) / 2,
}


def _critic_slopes(loss: str, key: str | None, v_real, v_fake):
    """dL_critic/dV on the real and the fake batch (means included)."""
    n, m = len(v_real), len(v_fake)
    if loss in ("nonsaturating", "saturating"):       # softplus(-V_r) + softplus(V_f)
        return -_sig(-v_real) / n, _sig(v_fake) / m
    if loss == "f_gan":
        return -ACT_PRIME[key](v_real) / n, CONJ_ACT_PRIME[key](v_fake) / m
    return -torch.ones(n, dtype=v_real.dtype) / n, torch.ones(m, dtype=v_fake.dtype) / m


def _generator_slope(loss: str, key: str | None, v, objective: str = "saddle"):
    """dL_generator/dV on the generated batch (mean included)."""
    m = len(v)
    if loss == "f_gan" and objective == "nonsaturating":   # -g_f(V)
        return -ACT_PRIME[key](v) / m
    if loss == "nonsaturating":                        # softplus(-V)
        return -_sig(-v) / m
    if loss == "saturating":                           # -softplus(V)
        return -_sig(v) / m
    if loss == "f_gan":                                # -f*(g_f(V))
        return -CONJ_ACT_PRIME[key](v) / m
    return -torch.ones(m, dtype=v.dtype) / m           # -V


PAIRINGS = [("nonsaturating", None, None), ("saturating", None, None),
            ("wgan_gp", None, None), ("wgan_clip", None, None)] + [
    ("f_gan", k, obj) for k in gan.F_DIVERGENCES for obj in ("saddle", "nonsaturating")]


def _split_calls(critic: RecordingCritic, real_rows: torch.Tensor, fake: torch.Tensor):
    """Find, among the critic's recorded calls, the one on data rows and the one on ``fake``."""
    real_call = fake_call = None
    for call in critic.calls:
        x = call[0]
        if x.shape == fake.shape and torch.equal(x, fake):
            fake_call = call
        elif (torch.cdist(x, real_rows).min(dim=1).values == 0).all():
            real_call = call
    assert real_call is not None and fake_call is not None
    return real_call, fake_call


@pytest.mark.parametrize("loss, key, objective", PAIRINGS)
def test_train_gan_one_step_gradients(monkeypatch, loss, key, objective):
    # One train_gan step with a linear critic V(x) = w . x + b and a linear generator
    # G(z) = A z + c: the gradients the two optimizers receive equal the hand-derived ones,
    #   critic:    dL/dw = sum_i s_i x_i over both batches, dL/db = sum_i s_i,
    #   generator: dL/dA = sum_j t_j w' z_j^T, dL/dc = sum_j t_j w'  (w': after the critic's
    #              update, since the generator step follows it),
    # with s, t the per-sample slopes dL/dV of the pairing's losses.
    made = _record_adam(monkeypatch)
    torch.manual_seed(0)
    g, c = LinearGenerator(), RecordingCritic()
    data = np.random.default_rng(0).integers(-3, 4, size=(40, 2)).astype(float)
    gp_weight = 0.7
    gan.train_gan(g, c, data, loss=loss, divergence=key, f_gan_objective=objective,
                  n_steps=1, batch_size=16, gp_weight=gp_weight, clip=10.0, generator=0,
                  show_progress=False)
    opt_g, opt_d = made
    assert len(opt_d.grads) == 1 and len(opt_g.grads) == 1
    # the critic's step saw a real batch (rows of the data) and G(z_1), with the
    # generator's initial weights A0, c0 (recorded inputs)
    z1, z2 = g.seen
    A0 = torch.tensor([[0.8, -0.3], [0.2, 1.1]], dtype=torch.float64)
    c0 = torch.tensor([0.5, -0.25], dtype=torch.float64)
    (xr, w0, b0, _), (xf, _, _, _) = _split_calls(c, torch.as_tensor(data), z1 @ A0.T + c0)
    sr, sf = _critic_slopes(loss, key, xr @ w0 + b0, xf @ w0 + b0)
    grad_w = sr @ xr + sf @ xf
    grad_b = sr.sum() + sf.sum()
    if loss == "wgan_gp":
        # a linear critic's input gradient is w everywhere: penalty (|w| - 1)^2
        grad_w = grad_w + gp_weight * 2 * (1 - 1 / w0.norm()) * w0
    got_w, got_b = opt_d.grads[0]
    torch.testing.assert_close(got_w, grad_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_b, grad_b, rtol=1e-10, atol=1e-12)
    # the generator's step: V(G(z_2)), G with A0, c0, the critic after its update
    xg, w1, b1, _ = c.calls[-1]
    torch.testing.assert_close(xg, z2 @ A0.T + c0)
    if loss != "wgan_clip":   # (clipping with c = 10 changes nothing here)
        assert not torch.equal(w1, w0)
    t = _generator_slope(loss, key, xg @ w1 + b1, objective or "saddle")
    got_A, got_c = opt_g.grads[0]
    torch.testing.assert_close(got_A, torch.outer(w1, t @ z2), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_c, t.sum() * w1, rtol=1e-10, atol=1e-12)


def test_train_gan_gradient_penalty_at_the_interpolates(monkeypatch):
    # With a quadratic critic V(x) = a |x|^2 / 2 + w . x + b the input gradient a x + w
    # depends on the point, so the penalty's gradient tells where it was taken. The
    # critic must be evaluated at x_hat_i = alpha_i r_i + (1 - alpha_i) f_i, one
    # alpha_i ~ U[0, 1] per pair (Gulrajani et al. 2017, Alg. 1): not at the real or the
    # fake points, not at one alpha for the whole batch, and the gradient received is
    # the WGAN term plus lambda d/d(a, w) mean (|a x_hat + w| - 1)^2.
    from scipy import stats

    made = _record_adam(monkeypatch)
    torch.manual_seed(0)
    g, c = LinearGenerator(), RecordingCritic(a=0.5)
    data = np.random.default_rng(1).integers(-3, 4, size=(200, 2)).astype(float)
    lam = 0.7
    gan.train_gan(g, c, data, loss="wgan_gp", n_steps=1, batch_size=256, gp_weight=lam,
                  generator=0, show_progress=False)
    opt_g, opt_d = made
    A0 = torch.tensor([[0.8, -0.3], [0.2, 1.1]], dtype=torch.float64)
    c0 = torch.tensor([0.5, -0.25], dtype=torch.float64)
    fake = g.seen[0] @ A0.T + c0
    (xr, w0, b0, a0), (xf, _, _, _) = _split_calls(c, torch.as_tensor(data), fake)
    others = [call[0] for call in c.calls[:-1]
              if not (torch.equal(call[0], xr) or torch.equal(call[0], xf))]
    assert len(others) == 1, "the critic must be called once at the interpolates"
    xh = others[0]
    # x_hat_i on the segment [f_i, r_i]: alpha_i by least squares, zero residual
    d = xr - xf
    alpha = ((xh - xf) * d).sum(1) / (d * d).sum(1).clamp_min(1e-300)
    resid = xh - (xf + alpha[:, None] * d)
    assert resid.abs().max().item() < 1e-12
    alpha = alpha.numpy()
    assert ((alpha >= 0) & (alpha <= 1)).all()
    assert stats.kstest(alpha, "uniform").pvalue > 1e-3
    # the critic's gradient: WGAN term + lambda * penalty, both derived by hand
    n = len(xr)
    gx = a0 * xh + w0                                   # (n, 2) input gradients at x_hat
    norms = gx.norm(dim=1)
    k = 2 * (norms - 1) / norms / n                     # d/d(gx) of mean (|gx| - 1)^2, / gx
    grad_w = xf.mean(0) - xr.mean(0) + lam * (k[:, None] * gx).sum(0)
    grad_a = (0.5 * (xf**2).sum(1)).mean() - (0.5 * (xr**2).sum(1)).mean() \
        + lam * (k * (gx * xh).sum(1)).sum()
    got_w, got_b, got_a = opt_d.grads[0]
    torch.testing.assert_close(got_w, grad_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_a, grad_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_b, torch.zeros((), dtype=torch.float64), atol=1e-12,
                               rtol=0)


@pytest.mark.parametrize("key", list(gan.F_DIVERGENCES))
def test_f_gan_generator_loss_sign(key):
    # The generator minimises -E_Q[f*(g_f(V))] (Nowozin et al., eq. 6: min over the
    # generator of the bound). Its gradient in V is -(f* o g_f)'(V) / m, negative for
    # V > -2 in every row (Pearson's t^2 / 4 + t decreases below -2): the loss falls as
    # the critic's output on the fakes rises, i.e. the generator moves towards what the
    # critic rates as data.
    v = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    loss = gan.f_gan_generator_loss(v, key)
    loss.backward()
    torch.testing.assert_close(v.grad, -CONJ_ACT_PRIME[key](v.detach()) / len(v))
    assert (v.grad[v.detach() > -2] < 0).all()
    lo = gan.f_gan_generator_loss(torch.zeros(4), key)
    hi = gan.f_gan_generator_loss(torch.ones(4), key)
    assert hi < lo
    # and it is the bound's only generator-dependent term: bound = E_P[g_f] + loss
    real = torch.linspace(-1, 2, 7, dtype=torch.float64)
    bound = gan.variational_bound(key, real, v.detach())
    torch.testing.assert_close(bound, gan.F_DIVERGENCES[key].activation(real).mean()
                               + gan.f_gan_generator_loss(v.detach(), key))
    if key == "gan":   # the GAN row's saddle-point loss is the minimax (saturating) loss
        torch.testing.assert_close(gan.f_gan_generator_loss(v.detach(), "gan"),
                                   gan.generator_loss_saturating(v.detach()))


@pytest.mark.parametrize("key", list(gan.F_DIVERGENCES))
def test_f_gan_nonsaturating_objective(key):
    # Nowozin et al., Sec. 3.2: the generator maximises E_Q[g_f(V)]; per-sample weight
    # g_f'(V) instead of (f* o g_f)'(V) (e^(V - 1) for KL). For the GAN row it is the
    # non-saturating loss -E log D.
    v = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    gan.f_gan_generator_loss(v, key, objective="nonsaturating").backward()
    torch.testing.assert_close(v.grad, -ACT_PRIME[key](v.detach()) / len(v))
    if key == "gan":
        torch.testing.assert_close(
            gan.f_gan_generator_loss(v.detach(), "gan", objective="nonsaturating"),
            gan.generator_loss_nonsaturating(v.detach()))
    with pytest.raises(ValueError, match="objective"):
        gan.f_gan_generator_loss(v, key, objective="minimax")


def test_train_gan_f_gan_objective_bad_inputs():
    g, c, x = gan.Generator(hidden=(4,)), gan.Critic(hidden=(4,)), np.zeros((10, 2))
    with pytest.raises(ValueError, match="f_gan_objective: only used with loss='f_gan'"):
        gan.train_gan(g, c, x, f_gan_objective="saddle")
    with pytest.raises(ValueError, match="f_gan_objective: expected one of"):
        gan.train_gan(g, c, x, loss="f_gan", divergence="kl", f_gan_objective="logD")


# ---------------------------------------------------------------------------- DRS burn-in


class CountingSampler:
    """Proposals 0, 1, 2, ... (1-D); all have logit 0 except proposal number ``high``."""

    def __init__(self, high: int) -> None:
        self.high, self.drawn = high, 0

    def __call__(self, m: int) -> torch.Tensor:
        idx = torch.arange(self.drawn, self.drawn + m, dtype=torch.float64)
        self.drawn += m
        return idx[:, None]

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, 0] == self.high, 5.0, 0.0).to(torch.float64)


def test_drs_sample_runs_its_burn_in():
    # The only logit 5 is proposal 150, inside a 1,000-sample burn-in; every proposal DRS
    # then judges has logit 0, so Delta = -5 and the acceptance rate is
    # e^-5 / (1 + e^-5 (1 - e^-eps)). Skipping the burn-in (max = the first batch's max,
    # 0) would accept nearly everything.
    s = CountingSampler(high=150)
    x, rate = gan.drs_sample(s, s.logit, 100, n_burn_in=1_000, batch_size=100, generator=0)
    assert s.drawn >= 1_000 + len(x)
    assert (x[:, 0] >= 1_000).all()     # proposals are fresh: none of the burn-in's
    p = math.exp(-5) / (1 + math.exp(-5) * -math.expm1(-1e-6))
    n_prop = s.drawn - 1_000
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n_prop)
    # the burn-in alone
    s2 = CountingSampler(high=150)
    assert gan.estimate_max_logit(s2, s2.logit, 1_000, batch_size=100) == 5.0
    assert s2.drawn == 1_000


def test_drs_refuses_a_sampler_that_reseeds():
    # Issue 22, item 6: a sampler that reseeds on every call returns the same batch each
    # time; the "10,000-sample burn-in" would then be the same samples five times.
    def reseeding(m):
        return torch.randn(m, 2, generator=torch.Generator().manual_seed(99))

    def logit(x):
        return -x.pow(2).sum(1)

    with pytest.raises(ValueError, match="sample_fn: two calls returned the same samples"):
        gan.estimate_max_logit(reseeding, logit, 10_000)
    with pytest.raises(ValueError, match="sample_fn"):
        gan.drs_sample(reseeding, logit, 100, generator=0)
    with pytest.raises(ValueError, match="sample_fn"):   # given max_logit: the proposals
        gan.drs_sample(reseeding, logit, 10**5, max_logit=0.0, batch_size=100, generator=0)
    with pytest.raises(TypeError, match="sample_fn"):
        gan.estimate_max_logit(3, logit, 10)
    with pytest.raises(TypeError, match="logit_fn"):
        gan.estimate_max_logit(reseeding, "D", 10)


def test_drs_with_a_generator_module_draws_one_stream():
    # A Generator module as sample_fn is sampled through one torch generator: the burn-in
    # is exactly the maximum over n_burn_in consecutive draws of that stream.
    torch.manual_seed(0)
    g, d = gan.Generator(hidden=(8,)), gan.Critic(hidden=(8,))
    got = gan.estimate_max_logit(g, d, 5_000, batch_size=1_000,
                                 generator=torch.Generator().manual_seed(7))
    ref = torch.Generator().manual_seed(7)
    with torch.no_grad():
        want = max(d(g.sample(1_000, generator=ref)).max().item() for _ in range(5))
    assert got == want
    x, rate = gan.drs_sample(g, d, 500, n_burn_in=2_000, batch_size=500, generator=3)
    assert x.shape == (500, 2) and 0 < rate <= 1
    assert len(torch.unique(x, dim=0)) == 500


# ------------------------------------------------------------------------------ Dirac-GAN
# P = delta_0, the generator delta_theta, the critic V(x) = psi x (Mescheder et al. 2018).
# With the course's losses, per step of size h (s = sigmoid(psi theta) for the GAN
# losses, s = 1 for WGAN; the R1 term adds -h gamma psi to the critic's move):
#   critic:    psi <- psi - h theta s        generator:  theta <- theta + h psi s


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


@pytest.mark.parametrize("loss", ["saturating", "wgan"])
def test_dirac_gan_simultaneous_spirals_outwards(loss):
    # Simultaneous steps: |x_{k+1}|^2 = |x_k|^2 (1 + h^2 s_k^2) exactly, so the radius grows
    # at every step (the continuous flow would keep it constant).
    h = 0.1
    p = gan.dirac_gan_trajectory("simultaneous", 300, h, loss=loss, start=(1.0, 0.5))
    r2 = (p**2).sum(1)
    s = _sigmoid(p[:-1, 0] * p[:-1, 1]) if loss == "saturating" else np.ones(300)
    np.testing.assert_allclose(r2[1:] / r2[:-1], 1 + h**2 * s**2, rtol=1e-12)
    assert np.all(np.diff(r2) > 0)
    if loss == "wgan":   # linear: |x_k| = |x_0| (1 + h^2)^(k / 2)
        np.testing.assert_allclose(r2, r2[0] * (1 + h**2) ** np.arange(301), rtol=1e-10)


def test_dirac_gan_alternating_circles_without_converging():
    # Alternating steps (critic first), WGAN: x_{k+1} = M x_k, M = [[1 - h^2, h], [-h, 1]],
    # det M = 1: the map keeps Q = theta^2 + psi^2 - h theta psi fixed, so the radius stays
    # in [sqrt(Q / (1 + h/2)), sqrt(Q / (1 - h/2))] for ever: no spiral, no convergence.
    h = 0.1
    p = gan.dirac_gan_trajectory("alternating", 400, h, loss="wgan", start=(1.0, 0.5))
    m = np.array([[1 - h**2, h], [-h, 1.0]])
    want = np.stack([np.linalg.matrix_power(m, k) @ p[0] for k in range(401)])
    np.testing.assert_allclose(p, want, rtol=1e-10, atol=1e-12)
    q = p[:, 0] ** 2 + p[:, 1] ** 2 - h * p[:, 0] * p[:, 1]
    np.testing.assert_allclose(q, q[0], rtol=1e-12)
    r = np.hypot(p[:, 0], p[:, 1])
    assert r.min() >= math.sqrt(q[0] / (1 + h / 2)) - 1e-12
    assert r.max() <= math.sqrt(q[0] / (1 - h / 2)) + 1e-12
    # the GAN loss (no exact invariant): measured, the radius stays within 3 % of its start
    # over 600 steps (1.38-1.42 from 1.414 over 2,000 steps in the run)
    p = gan.dirac_gan_trajectory("alternating", 600, h, loss="saturating")
    r = np.hypot(p[:, 0], p[:, 1])
    assert np.all(np.abs(r / r[0] - 1) < 0.03)


@pytest.mark.parametrize("method", ["simultaneous", "alternating"])
def test_dirac_gan_r1_converges(method):
    # R1 (gamma / 2 psi^2 on the critic) makes the equilibrium attracting. WGAN: linear,
    # x_{k+1} = M x_k with the matrix below, spectral radius < 1, so x_k -> 0 geometrically.
    h, gamma = 0.1, 1.0
    p = gan.dirac_gan_trajectory(method, 400, h, "r1", loss="wgan", gamma=gamma)
    if method == "simultaneous":   # psi' = (1 - h g) psi - h theta; theta' = theta + h psi
        m = np.array([[1.0, h], [-h, 1 - h * gamma]])
    else:                          # theta' = theta + h psi' with the new psi
        m = np.array([[1 - h**2, h * (1 - h * gamma)], [-h, 1 - h * gamma]])
    want = np.stack([np.linalg.matrix_power(m, k) @ p[0] for k in range(401)])
    np.testing.assert_allclose(p, want, rtol=1e-9, atol=1e-14)
    rho = max(abs(np.linalg.eigvals(m)))
    assert rho < 1 and np.hypot(*p[-1]) < 1e-6
    # The GAN loss: near 0 the dynamics are those of the linearisation, s = 1/2 (the
    # corrections are O(|x|^2)): from step 400 on, x_k follows M^(k - 400) x_400.
    # (gamma = 0.5: with gamma = 1 the simultaneous matrix has a double eigenvalue, whose
    # Jordan block adds a polynomial factor k to the geometric decay)
    gamma = 0.5
    p = gan.dirac_gan_trajectory(method, 800, h, "r1", loss="saturating", gamma=gamma)
    if method == "simultaneous":
        m = np.array([[1.0, h / 2], [-h / 2, 1 - h * gamma]])
    else:
        m = np.array([[1 - h**2 / 4, h / 2 * (1 - h * gamma)], [-h / 2, 1 - h * gamma]])
    rho = max(abs(np.linalg.eigvals(m)))
    assert rho < 1 and np.hypot(*p[-1]) < 1e-6
    for k in (410, 600, 800):
        np.testing.assert_allclose(p[k], np.linalg.matrix_power(m, k - 400) @ p[400],
                                   rtol=1e-5, atol=1e-14)


def test_dirac_gan_gradient_penalty_does_not_converge():
    # The WGAN-GP penalty gamma (|psi| - 1)^2 pulls the critic's slope to 1, not 0, so the
    # equilibrium (0, 0) is not attracting (Mescheder et al., Sec. 3): measured, the
    # trajectory from (1, 1) stays at distance > 1 from it.
    for loss in ("wgan", "saturating"):
        for gamma in (0.3, 1.0):
            p = gan.dirac_gan_trajectory("simultaneous", 300, 0.1, "wgan_gp", loss=loss,
                                         gamma=gamma)
            assert np.hypot(*p[-1]) > 1.0, (loss, gamma)


def test_dirac_gan_bad_inputs():
    assert gan.dirac_gan_trajectory(n_steps=3).shape == (4, 2)
    np.testing.assert_array_equal(
        gan.dirac_gan_trajectory("alternating", 20, reg="r1", gamma=0.0),
        gan.dirac_gan_trajectory("alternating", 20))
    for kwargs, name in [({"method": "sgd"}, "method"), ({"reg": "r2"}, "reg"),
                         ({"loss": "hinge"}, "loss"), ({"n_steps": 0}, "n_steps"),
                         ({"lr": -0.1}, "lr"), ({"gamma": -1.0}, "gamma"),
                         ({"start": (1.0, 2.0, 3.0)}, "start"),
                         ({"start": (math.nan, 1.0)}, "start")]:
        with pytest.raises(ValueError, match=name):
            gan.dirac_gan_trajectory(**kwargs)


# ------------------------------------------------------------------------- the loss table


def test_loss_pair_is_the_docstring_table():
    # Each named loss resolves to the pair of public loss functions train_gan documents.
    real = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    fake = torch.tensor([-0.5, 0.7], dtype=torch.float64)
    expected = {
        "nonsaturating": (gan.discriminator_loss(real, fake), gan.generator_loss_nonsaturating(fake)),
        "saturating": (gan.discriminator_loss(real, fake), gan.generator_loss_saturating(fake)),
        "wgan_gp": (gan.wgan_critic_loss(real, fake), gan.wgan_generator_loss(fake)),
        "wgan_clip": (gan.wgan_critic_loss(real, fake), gan.wgan_generator_loss(fake)),
    }
    for name, (d_ref, g_ref) in expected.items():
        d_loss, g_loss = gan.loss_pair(name)
        assert torch.equal(d_loss(real, fake), d_ref) and torch.equal(g_loss(fake), g_ref), name
    for objective in ("saddle", "nonsaturating"):
        d_loss, g_loss = gan.loss_pair("f_gan", "kl", objective)
        assert torch.equal(d_loss(real, fake), gan.f_gan_critic_loss(real, fake, "kl"))
        assert torch.equal(g_loss(fake), gan.f_gan_generator_loss(fake, "kl", objective=objective))
    # the default f-GAN objective is the saddle point's
    assert torch.equal(gan.loss_pair("f_gan", "kl")[1](fake),
                       gan.f_gan_generator_loss(fake, "kl", objective="saddle"))


@pytest.mark.parametrize("args, match", [
    (("hinge",), "loss"),
    (("wgan_gp", "kl"), "divergence"),
    (("nonsaturating", None, "saddle"), "f_gan_objective"),
    (("f_gan", None), "divergence"),
    (("f_gan", "kl", "minimax"), "f_gan_objective"),
])
def test_loss_pair_rejects_bad_names(args, match):
    with pytest.raises(ValueError, match=match):
        gan.loss_pair(*args)


# ------------------------------------------------------------ optimal budgeted rejection


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [1.0, 1.3, 2.0, 5.0, 37.0])
def test_obrs_constant_meets_the_budget_exactly(seed, budget):
    # water-filling by hand against SciPy's root finder on the budget equation
    from scipy.optimize import brentq

    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=200)
    logits[:20] = logits[20:40]                       # ties must not matter
    log_c = gan.obrs_log_constant(logits, budget)
    accept = gan.obrs_accept_prob(logits, log_c)
    assert abs(accept.mean() - 1.0 / budget) < 1e-12
    if budget > 1:
        ref = brentq(lambda t: np.minimum(1.0, np.exp(logits + t)).mean() - 1.0 / budget,
                     -logits.max() - 10, -logits.min() + 10, xtol=1e-14)
        assert abs(log_c - ref) < 1e-9
    else:
        assert np.all(accept == 1.0)
    torch_accept = gan.obrs_accept_prob(torch.as_tensor(logits), log_c)
    assert torch.allclose(torch_accept, torch.as_tensor(accept), rtol=0, atol=1e-15)


def test_obrs_is_the_optimal_acceptance_for_tv_and_kl():
    # Verine et al.: among acceptance functions a in [0, 1]^m with E_q[a] = 1/K, min(1, c r)
    # minimises every f-divergence D_f(P || P_a), P_a = a q / E_q[a]. Checked on a
    # 6-point space against a linear program (TV) and a convex solver (forward KL).
    from scipy.optimize import linprog, minimize

    p = np.array([0.30, 0.25, 0.20, 0.15, 0.06, 0.04])
    q = np.array([0.05, 0.10, 0.15, 0.20, 0.25, 0.25])
    for budget in (1.5, 3.0):
        # the budget equation holds in expectation under q, not over the 6 points: solve it
        # on q-weighted "samples" by repeating each point in proportion to q
        reps = np.round(q * 2000).astype(int)
        log_c = gan.obrs_log_constant(np.repeat(np.log(p / q), reps), budget)
        a = gan.obrs_accept_prob(np.log(p / q), log_c)
        assert abs(a @ q - 1 / budget) < 1e-12
        tv_obrs = 0.5 * np.abs(p - budget * a * q).sum()
        m = len(p)   # LP over (a, t): min sum t, t >= |p - K a q|, q.a = 1/K, 0 <= a <= 1
        c = np.r_[np.zeros(m), np.ones(m)]
        kq = np.diag(budget * q)
        a_ub = np.block([[-kq, -np.eye(m)], [kq, -np.eye(m)]])
        b_ub = np.r_[-p, p]
        lp = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=np.r_[q, np.zeros(m)][None], b_eq=[1 / budget],
                     bounds=[(0, 1)] * m + [(0, None)] * m)
        assert lp.success and abs(tv_obrs - 0.5 * lp.fun) < 1e-9

        def kl(av, budget=budget):
            pa = budget * av * q
            return float(np.sum(p * np.log(p / pa)))

        best = minimize(kl, np.full(m, 1 / budget), method="SLSQP", bounds=[(1e-9, 1)] * m,
                        constraints=[{"type": "eq", "fun": lambda av, k=budget: av @ q - 1 / k}],
                        options={"ftol": 1e-14, "maxiter": 500})
        assert best.success and kl(a) <= best.fun + 1e-8


def test_obrs_sample_accepts_one_in_k_and_tilts_toward_the_data():
    # Proposals N(0, 1), data N(1, 1): log p/p_hat = x - 1/2 exactly. The accepted law is
    # a(x) q(x) / E_q[a]; its mean is computed by quadrature and the sample mean must match
    # within 5 standard errors, and the acceptance rate must be 1/K within 5 s.e.
    from scipy import integrate, stats

    budget, n = 4.0, 4000
    samples, rate = gan.obrs_sample(lambda m, generator=None: torch.randn(m, 1, generator=generator,
                                                                           dtype=torch.float64),
                                    lambda x: x[:, 0] - 0.5, n, budget, n_burn_in=20_000,
                                    generator=0)
    log_c = gan.obrs_log_constant(np.random.default_rng(1).normal(size=400_000) - 0.5, budget)

    def a(x):
        return np.minimum(1.0, np.exp(x - 0.5 + log_c))

    z = integrate.quad(lambda x: a(x) * stats.norm.pdf(x), -12, 12)[0]
    mean = integrate.quad(lambda x: x * a(x) * stats.norm.pdf(x), -12, 12)[0] / z
    sd = np.sqrt(integrate.quad(lambda x: (x - mean) ** 2 * a(x) * stats.norm.pdf(x), -12, 12)[0] / z)
    assert samples.shape == (n, 1)
    # + 0.01: c_K is fitted on 20,000 burn-in proposals, an error of its own
    assert abs(samples[:, 0].mean().item() - mean) < 5 * sd / np.sqrt(n) + 0.01
    assert abs(rate - 1 / budget) < 5 * np.sqrt(0.25 * 0.75 / (n * budget)) + 0.01


@pytest.mark.parametrize("budget", [0.5, 0.0, -2.0, float("nan"), "4"])
def test_obrs_rejects_a_budget_below_one(budget):
    with pytest.raises(ValueError, match="budget"):
        gan.obrs_log_constant(np.zeros(5), budget)
