"""Tests of coursekit.gan against independent references (scipy, torch, closed forms)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, special, stats

from coursekit import gan

KEYS = ("kl", "reverse_kl", "pearson", "squared_hellinger", "jensen_shannon", "gan",
        "total_variation")

# f'(u) written out by hand: the optimal critic T*(x) = f'(p(x) / q(x)) (Nowozin et al., eq. 5).
F_PRIME = {
    "kl": lambda u: np.log(u) + 1.0,
    "reverse_kl": lambda u: -1.0 / u,
    "pearson": lambda u: 2.0 * (u - 1.0),
    "squared_hellinger": lambda u: 1.0 - 1.0 / np.sqrt(u),
    "jensen_shannon": lambda u: np.log(2.0 * u / (u + 1.0)),
    "gan": lambda u: np.log(u / (u + 1.0)),
    "total_variation": lambda u: 0.5 * np.sign(u - 1.0),
}

# The inverse of each output activation, written out by hand: v = g_f^{-1}(T).
INV_ACT = {
    "kl": lambda t: t,
    "reverse_kl": lambda t: -np.log(-t),
    "pearson": lambda t: t,
    "squared_hellinger": lambda t: -np.log1p(-t),
    "jensen_shannon": lambda t: -np.log(np.expm1(np.log(2.0) - t)),
    "gan": lambda t: -np.log(np.expm1(-t)),
    "total_variation": lambda t: np.arctanh(np.clip(2.0 * t, -1 + 1e-12, 1 - 1e-12)),
}

P = stats.norm(0.0, 1.0)   # the "data"
Q = stats.norm(0.7, 1.3)   # the "model"


def df_quadrature(key: str) -> float:
    """D_f(P || Q) = int q f(p / q) by scipy quadrature (f written out here, not gan's)."""
    f = {
        "kl": lambda u: special.xlogy(u, u),
        "reverse_kl": lambda u: -np.log(u),
        "pearson": lambda u: (u - 1.0) ** 2,
        "squared_hellinger": lambda u: (np.sqrt(u) - 1.0) ** 2,
        "jensen_shannon": lambda u: special.xlogy(u, u) - special.xlogy(u + 1, (u + 1) / 2),
        "gan": lambda u: special.xlogy(u, u) - special.xlogy(u + 1, u + 1),
        "total_variation": lambda u: 0.5 * np.abs(u - 1.0),
    }[key]
    val, _ = integrate.quad(lambda x: Q.pdf(x) * f(P.pdf(x) / Q.pdf(x)), -15, 15, limit=200,
                            points=[0.0, 1.0])
    return val


# ----------------------------------------------------------------------------------- table


def test_keys_and_f_at_one():
    assert tuple(gan.F_DIVERGENCES) == KEYS
    for key, div in gan.F_DIVERGENCES.items():
        want = -math.log(4.0) if key == "gan" else 0.0
        assert float(div.f(np.array(1.0))) == pytest.approx(want, abs=1e-12), key


@pytest.mark.parametrize("key", KEYS)
def test_conjugate_matches_numerical_supremum(key):
    div = gan.F_DIVERGENCES[key]
    # points of dom f* reached by the activation
    ts = div.activation(np.linspace(-2.0, 2.0, 9))
    for t in ts:
        res = optimize.minimize_scalar(lambda u, t=t: -(t * u - float(div.f(np.array(u)))),
                                       bounds=(1e-10, 200.0), method="bounded",
                                       options={"xatol": 1e-10})
        assert float(div.conjugate(np.array(t))) == pytest.approx(-res.fun, abs=2e-6), (key, t)


@pytest.mark.parametrize("key", KEYS)
def test_activation_lands_in_domain_and_conjugate_is_inf_outside(key):
    div = gan.F_DIVERGENCES[key]
    v = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    t = div.activation(v)
    lo, hi = div.domain
    assert bool(((t >= lo) & (t <= hi)).all())
    out = div.conjugate(t).sum()
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(v.grad).all()
    if math.isfinite(hi):
        assert np.isinf(div.conjugate(np.array([hi + 0.5])))[0]


@pytest.mark.parametrize("key", KEYS)
def test_numpy_and_torch_agree(key):
    div = gan.F_DIVERGENCES[key]
    u = np.linspace(0.1, 4, 7)
    v = np.linspace(-2, 2, 7)
    for fn, x in ((div.f, u), (div.activation, v), (div.conjugate, div.activation(v))):
        np.testing.assert_allclose(fn(torch.from_numpy(x)).numpy(), fn(x), rtol=1e-12)


@pytest.mark.parametrize("key", KEYS)
def test_bound_is_tight_at_optimal_critic_and_below_elsewhere(key):
    div = gan.F_DIVERGENCES[key]
    d = df_quadrature(key)

    def bound(tfun):
        a, _ = integrate.quad(lambda x: P.pdf(x) * tfun(x), -15, 15, limit=200)
        b, _ = integrate.quad(lambda x: Q.pdf(x) * float(div.conjugate(np.array(tfun(x)))),
                              -15, 15, limit=200)
        return a - b

    t_star = lambda x: F_PRIME[key](P.pdf(x) / Q.pdf(x))  # noqa: E731
    assert bound(t_star) == pytest.approx(d, rel=1e-5, abs=1e-7), key
    # any other critic in the domain gives less
    for shift in (0.3, -0.3):
        t_other = lambda x, s=shift: div.activation(INV_ACT[key](t_star(x)) + s)  # noqa: E731
        assert bound(t_other) < d, (key, shift)


@pytest.mark.parametrize("key", KEYS)
def test_variational_bound_monte_carlo(key):
    rng = np.random.default_rng(0)
    xp, xq = P.rvs(200_000, random_state=rng), Q.rvs(200_000, random_state=rng)
    v = lambda x: INV_ACT[key](F_PRIME[key](P.pdf(x) / Q.pdf(x)))  # noqa: E731
    vp = np.clip(v(xp), -30, 30)
    vq = np.clip(v(xq), -30, 30)
    est = gan.variational_bound(key, torch.from_numpy(vp), torch.from_numpy(vq)).item()
    assert est == pytest.approx(df_quadrature(key), abs=0.03), key


def test_jensen_shannon_and_gan_relation():
    # D_JS-key = 2 JSD and D_gan = 2 JSD - log 4 (scipy's jensenshannon is sqrt(JSD), base e)
    xs = np.linspace(-15, 15, 200_001)
    p, q = P.pdf(xs), Q.pdf(xs)
    jsd = integrate.trapezoid(0.5 * special.xlogy(p, 2 * p / (p + q))
                              + 0.5 * special.xlogy(q, 2 * q / (p + q)), xs)
    assert df_quadrature("jensen_shannon") == pytest.approx(2 * jsd, rel=1e-6)
    assert df_quadrature("gan") == pytest.approx(2 * jsd - math.log(4), rel=1e-6)
    assert df_quadrature("kl") == pytest.approx(
        math.log(1.3) + (1 + 0.7**2) / (2 * 1.3**2) - 0.5, rel=1e-7)


# f*(g_f(v)) written by hand per row, from the tables' f* and g_f, in float64 (scipy's
# log_expit for the two logistic rows): the reference for the library's closed forms.
CONJ_ACT_REF = {
    "kl": lambda v: np.exp(v - 1.0),
    "reverse_kl": lambda v: v - 1.0,
    "pearson": lambda v: v**2 / 4.0 + v,
    "squared_hellinger": lambda v: np.expm1(v),
    "jensen_shannon": lambda v: -np.log(2.0) - special.log_expit(-v),
    "gan": lambda v: -special.log_expit(-v),
    "total_variation": lambda v: np.tanh(v) / 2.0,
}
# and its derivative in v, for the gradient the generator receives
CONJ_ACT_GRAD_REF = {
    "kl": lambda v: np.exp(v - 1.0),
    "reverse_kl": lambda v: np.ones_like(v),
    "pearson": lambda v: v / 2.0 + 1.0,
    "squared_hellinger": lambda v: np.exp(v),
    "jensen_shannon": lambda v: special.expit(v),
    "gan": lambda v: special.expit(v),
    "total_variation": lambda v: (1.0 - np.tanh(v) ** 2) / 2.0,
}


@pytest.mark.parametrize("key", KEYS)
def test_conjugate_of_activation_is_the_composition(key):
    # where the composition is well conditioned (float64, |v| <= 12) the closed form in v
    # equals f*(g_f(v)) of the table, and the hand-written reference
    div = gan.F_DIVERGENCES[key]
    v = np.linspace(-12.0, 12.0, 49)
    got = div.conjugate_of_activation(v)
    np.testing.assert_allclose(got, div.conjugate(div.activation(v)), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got, CONJ_ACT_REF[key](v), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("key", KEYS)
def test_conjugate_of_activation_large_logits_float32(key):
    # Item 4 of issue 22: in float32 the composition f*(g_f(v)) is inf or NaN from v ~ 17 on
    # (JS, Hellinger, GAN) or at v = +-1000 (reverse KL). The closed form must give the
    # float64 value rounded to float32: finite except where the value itself overflows
    # float32 (e^(v - 1), e^v - 1 above ~88), and a finite gradient wherever it is finite.
    div = gan.F_DIVERGENCES[key]
    v64 = np.array([-1000.0, -100.0, -30.0, -17.0, 0.0, 17.0, 30.0, 80.0, 100.0, 1000.0])
    with np.errstate(over="ignore"):
        want = CONJ_ACT_REF[key](v64)
        want_grad = CONJ_ACT_GRAD_REF[key](v64)
    out = div.conjugate_of_activation(torch.tensor(v64, dtype=torch.float32))
    assert out.dtype == torch.float32
    overflow = np.abs(want) > np.finfo(np.float32).max
    assert not np.isnan(out.detach().numpy()).any(), key
    np.testing.assert_array_equal(np.isinf(out.detach().numpy()), overflow, err_msg=key)
    np.testing.assert_allclose(out.detach().numpy()[~overflow], want[~overflow], rtol=1e-6,
                               atol=1e-6, err_msg=key)
    ok = ~overflow
    v_ok = torch.tensor(v64[ok], dtype=torch.float32, requires_grad=True)
    div.conjugate_of_activation(v_ok).sum().backward()
    g = v_ok.grad.numpy()
    assert np.isfinite(g).all(), key
    # (atol: float32's epsilon; torch differentiates expm1 as result + 1, which rounds to 0
    # at v = -17 where the true slope is 4e-8)
    np.testing.assert_allclose(g, want_grad[ok], rtol=1e-5, atol=1.2e-7, err_msg=key)
    # the rows whose value at +-1000 is representable are finite there
    if key not in ("kl", "squared_hellinger"):
        assert np.isfinite(out.detach().numpy()).all(), key
    # the losses use it: the generator's loss at huge logits is finite (or +-inf only for
    # the two exponential rows at +1000), never NaN
    for sign in (-1.0, 1.0):
        lv = gan.f_gan_generator_loss(torch.full((4,), sign * 1000.0), key)
        assert not torch.isnan(lv), (key, sign)
        assert torch.isfinite(lv) or (sign > 0 and key in ("kl", "squared_hellinger"))


def test_unknown_divergence_lists_keys():
    with pytest.raises(ValueError, match="valid keys: kl, reverse_kl"):
        gan.get_divergence("hellinger")
    with pytest.raises(ValueError, match="divergence"):
        gan.f_gan_critic_loss(torch.zeros(3), torch.zeros(3), "js")


# ----------------------------------------------------------------------------------- losses


def test_losses_against_torch_references():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(50, generator=g) * 3, torch.randn(40, generator=g) * 3
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ref = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    assert torch.allclose(gan.discriminator_loss(real, fake), ref, atol=1e-6)
    d = torch.sigmoid(fake)
    assert torch.allclose(gan.generator_loss_saturating(fake), torch.log(1 - d).mean(), atol=1e-5)
    assert torch.allclose(gan.generator_loss_nonsaturating(fake), -torch.log(d).mean(), atol=1e-5)
    assert torch.allclose(gan.wgan_critic_loss(real, fake), fake.mean() - real.mean())
    assert torch.allclose(gan.wgan_generator_loss(fake), -fake.mean())
    # the GAN row of the f-GAN table is the discriminator loss (Nowozin et al., Sec. 2.4)
    assert torch.allclose(gan.f_gan_critic_loss(real, fake, "gan"), ref, atol=1e-5)


def _generator_gradient_against_fixed_d_star(loss_fn, mu0, s0):
    """d/d(mu, s) of E_{x ~ N(mu, s^2)}[loss(V*(x))] at (mu0, s0), V* = log p - log q0 fixed.

    P = N(0, 1) is the data, Q = N(mu, s^2) the model, x = mu + s z. The per-sample slope
    d loss / dx is taken by torch autograd through the library's loss on one logit, the
    expectation over z ~ N(0, 1) by scipy quadrature.
    """

    def dloss_dx(x: float) -> float:
        xt = torch.tensor([x], dtype=torch.float64, requires_grad=True)
        v = -xt**2 / 2 + (xt - mu0) ** 2 / (2 * s0**2) + math.log(s0)   # log p - log q0
        loss_fn(v).backward()
        return xt.grad.item()

    def expect(weight):
        val, _ = integrate.quad(lambda z: stats.norm.pdf(z) * dloss_dx(mu0 + s0 * z) * weight(z),
                                -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)
        return val

    return np.array([expect(lambda z: 1.0), expect(lambda z: z)])  # dx/dmu = 1, dx/ds = z


def _jsd_gaussians(mu, s):
    """JSD(N(0, 1), N(mu, s^2)) in nats, by quadrature (the usual JSD, at most log 2)."""
    p, q = stats.norm(0, 1), stats.norm(mu, s)

    def integrand(x):
        px, qx = p.pdf(x), q.pdf(x)
        m = (px + qx) / 2
        return 0.5 * special.xlogy(px, px / m) + 0.5 * special.xlogy(qx, qx / m)

    return integrate.quad(integrand, -15, 15, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


def test_nonsaturating_gradient_is_reverse_kl_minus_two_jsd():
    # Arjovsky & Bottou (2017), Thm 2.5: against D* (held fixed), the non-saturating loss's
    # gradient is that of KL(Q || P) - 2 JSD(P, Q); the minimax loss's is that of 2 JSD
    # (Goodfellow et al. 2014, Thm 1, by the envelope theorem). P = N(0, 1), Q = N(3, 1).
    mu0, s0 = 3.0, 1.0
    ns = _generator_gradient_against_fixed_d_star(gan.generator_loss_nonsaturating, mu0, s0)
    mm = _generator_gradient_against_fixed_d_star(gan.generator_loss_saturating, mu0, s0)
    h = 1e-4   # central differences of the JSD (quadrature error ~1e-13 / h)
    grad_jsd = np.array([
        (_jsd_gaussians(mu0 + h, s0) - _jsd_gaussians(mu0 - h, s0)) / (2 * h),
        (_jsd_gaussians(mu0, s0 + h) - _jsd_gaussians(mu0, s0 - h)) / (2 * h),
    ])
    # KL(N(mu, s^2) || N(0, 1)) = (s^2 + mu^2 - 1) / 2 - log s: gradient (mu, s - 1 / s)
    grad_kl = np.array([mu0, s0 - 1.0 / s0])
    np.testing.assert_allclose(ns, grad_kl - 2 * grad_jsd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mm, 2 * grad_jsd, rtol=1e-6, atol=1e-7)
    # Not the same direction: here the two losses even disagree on the sign of ds (the
    # non-saturating one narrows Q, mode-seeking; the minimax one widens it).
    assert ns[1] > 0.4 and mm[1] < -0.4
    assert ns @ mm / (np.linalg.norm(ns) * np.linalg.norm(mm)) < 0.5


def test_saturation():
    # a discriminator that rejects the sample (V = -10): the minimax loss has a vanishing
    # gradient, the non-saturating one does not
    v = torch.tensor([-10.0], requires_grad=True)
    gan.generator_loss_saturating(v).backward()
    g_sat = v.grad.abs().item()
    v.grad = None
    gan.generator_loss_nonsaturating(v).backward()
    assert g_sat < 1e-4 and v.grad.abs().item() > 0.99


# ------------------------------------------------------------------------ Lipschitz constraints


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_gradient_penalty_linear_critic(shape):
    torch.manual_seed(0)
    d = math.prod(shape)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 1)).double()
    w = critic[1].weight
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape)
    gp = gan.gradient_penalty(critic, real, fake, generator=0)
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-12)
    gp.backward()   # differentiable in the critic's weights: d/dw (|w| - 1)^2
    np.testing.assert_allclose(w.grad.numpy(), (2 * (1 - 1 / w.norm()) * w).detach().numpy(),
                               rtol=1e-10)


def test_gradient_penalty_quadratic_critic_and_alpha():
    class Half(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x):
            return 0.5 * (x**2).sum(1) + self.dummy

    x = torch.randn(100, 3, dtype=torch.float64)
    # gradient of |x|^2/2 is x; real = fake makes x_hat = x whatever alpha
    want = ((x.norm(dim=1) - 1) ** 2).mean()
    assert gan.gradient_penalty(Half(), x, x, generator=1).item() == pytest.approx(want.item())
    # real = 0, fake = e1: x_hat = (1 - alpha) e1, gradient norm 1 - alpha, penalty alpha^2;
    # E[alpha^2] = 1/3 for alpha ~ U[0, 1]
    e1 = torch.zeros(20_000, 3, dtype=torch.float64)
    e1[:, 0] = 1
    gp = gan.gradient_penalty(Half(), torch.zeros_like(e1), e1, generator=2).item()
    assert abs(gp - 1 / 3) < 5 * math.sqrt(4 / 45 / 20_000)


def test_gradient_penalty_bad_inputs():
    critic = gan.Critic()
    with pytest.raises(ValueError, match="fake: expected the shape of real"):
        gan.gradient_penalty(critic, torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(TypeError, match="critic"):
        gan.gradient_penalty(lambda x: x, torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="real"):
        gan.gradient_penalty(critic, torch.full((4, 2), float("nan")), torch.zeros(4, 2))


def test_r1_penalty_closed_forms():
    # Linear critic w.x + b: the gradient is w everywhere, R1 = |w|^2, d/dw = 2 w.
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1)).double()
    w = critic[1].weight
    r1 = gan.r1_penalty(critic, torch.randn(16, 3, 4))
    assert r1.item() == pytest.approx(w.norm().item() ** 2, rel=1e-12)
    r1.backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * w.detach().numpy(), rtol=1e-12)

    # Quadratic critic x^T A x / 2: the gradient is A x, R1 = mean |A x|^2 (not the squared
    # mean norm, nor the mean norm: both differ for this batch).
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)

    class Quadratic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

        def forward(self, x):
            return 0.5 * ((x @ a) * x).sum(1) + self.dummy

    x = torch.randn(50, 2, dtype=torch.float64)
    want = (x @ a).pow(2).sum(1).mean().item()
    assert gan.r1_penalty(Quadratic(), x).item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(TypeError, match="critic"):
        gan.r1_penalty(lambda v: v, x)
    with pytest.raises(ValueError, match="real"):
        gan.r1_penalty(Quadratic(), torch.full((4, 2), float("inf")))


def test_train_gan_adds_half_r1_to_the_critic_loss():
    # One step with r1_weight = gamma: the recorded critic loss exceeds the plain one by
    # gamma / 2 * R1 at the real batch the step drew (same seed, same batch, same weights).
    x = np.random.default_rng(0).standard_normal((300, 2))

    def one_step(gamma):
        torch.manual_seed(0)
        g, c = gan.Generator(hidden=(16,)), gan.Critic(hidden=(16,))
        c0 = copy.deepcopy(c)
        h = gan.train_gan(g, c, x, n_steps=1, batch_size=32, generator=4, r1_weight=gamma,
                          show_progress=False)
        return h["critic"][0], c0

    plain, c0 = one_step(0.0)
    with_r1, _ = one_step(3.0)
    gen = torch.Generator().manual_seed(4)
    real = torch.as_tensor(x, dtype=torch.float32)[torch.randint(0, 300, (32,), generator=gen)]
    assert with_r1 - plain == pytest.approx(1.5 * gan.r1_penalty(c0, real).item(), rel=1e-4)
    for bad in (-1.0, math.nan, "x"):
        with pytest.raises(ValueError, match="r1_weight"):
            gan.train_gan(gan.Generator(), gan.Critic(), x, r1_weight=bad)


def test_spectral_norm_power_iteration():
    w = torch.randn(20, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma, u = gan.spectral_norm(w, n_iter=200, generator=0)
    assert sigma.item() == pytest.approx(torch.linalg.matrix_norm(w, 2).item(), rel=1e-8)
    assert u.shape == (20,)


def test_spectral_norm_critic_is_one_lipschitz_per_layer():
    torch.manual_seed(0)
    critic = gan.Critic(spectral_norm=True)
    for _ in range(30):  # each training-mode forward runs one power iteration
        critic(torch.randn(8, 2))
    for m in critic.modules():
        if isinstance(m, torch.nn.Linear):
            assert torch.linalg.matrix_norm(m.weight.detach(), 2).item() == pytest.approx(
                1.0, abs=1e-3)


def test_spectral_norm_critic_what_holds():
    # What torch's spectral normalisation guarantees (Critic docstring): sigma_hat = u^T W v
    # <= sigma(W), so every normalised layer has spectral norm >= 1 (not <= 1), and the
    # critic's gradient norm is at most the product of the layers' norms. While the
    # weights move (one power iteration per step), the layers' norms exceed 1.
    torch.manual_seed(0)
    critic = gan.Critic(hidden=(32, 32), spectral_norm=True)
    opt = torch.optim.Adam(critic.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    worst = 1.0
    for _ in range(20):
        x = torch.randn(64, 2, generator=g)
        loss = -critic(x * 3).mean() + critic(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sigmas = [torch.linalg.matrix_norm(m.weight.detach(), 2).item()
                  for m in critic.modules() if isinstance(m, torch.nn.Linear)]
        assert min(sigmas) >= 1.0 - 1e-5, sigmas
        worst = max(worst, max(sigmas))
    assert worst > 1.01   # the estimate lags: not a hard bound of 1
    critic.eval()         # freeze u, v: the same normalised weights for every forward
    sigmas = [torch.linalg.matrix_norm(m.weight.detach(), 2).item()
              for m in critic.modules() if isinstance(m, torch.nn.Linear)]
    x = torch.randn(20_000, 2, generator=g) * 3
    grad_max = gan.critic_gradient_norms(critic, x).max().item()
    assert grad_max <= math.prod(sigmas) * (1 + 1e-5)


def test_clip_weights():
    critic = gan.Critic()
    gan.clip_weights(critic, 0.01)
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.01
    with pytest.raises(ValueError, match="clip"):
        gan.clip_weights(critic, 0.0)


# ------------------------------------------------------------------------------------- DRS


def test_drs_accept_prob_edges():
    logits = np.array([5.0, 5.0 - 1e-12, 0.0, -1e4, 7.0])
    p = gan.drs_accept_prob(logits, 5.0)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert p[0] == pytest.approx(1.0, abs=2e-6) and p[4] == p[0]  # Delta > 0 clamps to 0
    assert p[3] == 0.0 or p[3] < 1e-300
    # independent reference: the formula evaluated naively where it is well conditioned
    d = np.array([-0.5, -2.0, -8.0])
    for gamma in (0.0, 1.5, -1.0):
        f = d - np.log(1 - np.exp(d - 1e-6)) - gamma
        np.testing.assert_allclose(gan.drs_accept_prob(d, 0.0, gamma=gamma), 1 / (1 + np.exp(-f)),
                                   rtol=1e-12)
    # tensors: same values, finite gradients even at Delta = 0
    v = torch.tensor(logits, requires_grad=True)
    pt = gan.drs_accept_prob(v, torch.tensor(5.0))
    pt.sum().backward()
    np.testing.assert_allclose(pt.detach().numpy(), p, rtol=1e-12)
    assert torch.isfinite(v.grad).all()


def test_drs_accept_prob_closed_form():
    # The docstring's closed form, e^D / (e^D + e^gamma (1 - e^(D - eps))), against the
    # definition sigmoid(F) of Azadi et al., Alg. 1, evaluated naively in float64
    # where it is well conditioned; eps large enough that e^D / (1 - e^-eps) (> 1) is ruled
    # out.
    delta = np.linspace(-20.0, -1e-3, 41)
    for eps in (1e-6, 0.1, 1.0):
        for gamma in (0.0, 1.5, -2.0):
            f = delta - np.log(1.0 - np.exp(delta - eps)) - gamma
            definition = 1.0 / (1.0 + np.exp(-f))
            closed = np.exp(delta) / (np.exp(delta) + np.exp(gamma) * (1 - np.exp(delta - eps)))
            np.testing.assert_allclose(closed, definition, rtol=1e-12)
            got = gan.drs_accept_prob(delta + 3.0, 3.0, gamma=gamma, eps=eps)
            np.testing.assert_allclose(got, closed, rtol=1e-12)
        # gamma = 0: e^D / (1 + e^D (1 - e^-eps)), within a factor 1 - eps of e^D
        p0 = gan.drs_accept_prob(delta, 0.0, eps=eps)
        np.testing.assert_allclose(p0, np.exp(delta) / (1 + np.exp(delta) * -np.expm1(-eps)),
                                   rtol=1e-12)
        assert np.all(p0 <= np.exp(delta)) and np.all(p0 >= np.exp(delta) * (1 - eps))
    # a logit above the maximum is clamped to Delta = 0: p = 1 / (2 - e^-eps)
    assert gan.drs_accept_prob(np.array([9.0]), 0.0, eps=0.5)[0] == pytest.approx(
        1 / (2 - math.exp(-0.5)), rel=1e-12)


def test_drs_accept_prob_bad_inputs():
    with pytest.raises(ValueError, match="eps"):
        gan.drs_accept_prob(np.zeros(3), 0.0, eps=0.0)
    with pytest.raises(ValueError, match="gamma"):
        gan.drs_accept_prob(np.zeros(3), 0.0, gamma=float("nan"))
    with pytest.raises(ValueError, match="logits"):
        gan.drs_accept_prob(np.array([np.nan]), 0.0)
    with pytest.raises(ValueError, match="max_logit"):
        gan.drs_accept_prob(np.zeros(3), np.zeros(2))


def test_drs_sample_is_exact_rejection_sampling():
    # proposal N(0, 1), target N(0, 0.5^2), optimal logit log p - log q (max at 0, ratio 2)
    target = stats.norm(0, 0.5)
    gen = torch.Generator().manual_seed(0)

    def propose(m):
        return torch.randn(m, 1, generator=gen, dtype=torch.float64)

    def logit(x):
        x = x[:, 0].numpy()
        return torch.from_numpy(target.logpdf(x) - stats.norm.logpdf(x))

    x, rate = gan.drs_sample(propose, logit, 20_000, max_logit=math.log(2.0), generator=1)
    assert x.shape == (20_000, 1)
    assert stats.kstest(x[:, 0].numpy(), target.cdf).pvalue > 1e-3
    assert rate == pytest.approx(0.5, abs=0.02)  # 1 / M with M = 2
    # burn-in estimate of the max is below the true max and close to it
    m = gan.estimate_max_logit(propose, logit, 20_000)
    assert math.log(2.0) - 1e-3 < m <= math.log(2.0)


def test_drs_sample_gamma_quantile_and_errors():
    gen = torch.Generator().manual_seed(0)
    propose = lambda m: torch.randn(m, 2, generator=gen)  # noqa: E731
    logit = lambda x: -x.pow(2).sum(1)  # noqa: E731
    _, r0 = gan.drs_sample(propose, logit, 500, generator=0)
    _, r1 = gan.drs_sample(propose, logit, 500, gamma_quantile=0.9, generator=0)
    assert r1 < r0
    with pytest.raises(ValueError, match="gamma_quantile"):
        gan.drs_sample(propose, logit, 10, gamma_quantile=1.5)
    with pytest.raises(ValueError, match="max_batches"):
        gan.drs_sample(propose, logit, 10**6, max_batches=2, batch_size=10, max_logit=0.0)


# ------------------------------------------------------------------------------ mode metrics


def test_mode_metrics_hand_built():
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array([[0.0, 0.5], [0.0, -2.9], [10.0, 1.0], [5.0, 5.0]])
    m = gan.mode_metrics(samples, centers, 1.0)
    assert m["high_quality_fraction"] == 0.75
    assert m["modes_captured"] == 2
    h = np.array([2 / 3, 1 / 3])
    assert m["mode_kl"] == pytest.approx(np.sum(h * np.log(h * 3)), rel=1e-12)
    balanced = gan.mode_metrics(centers, centers, 1.0)
    assert balanced["mode_kl"] == pytest.approx(0.0, abs=1e-15) and balanced["modes_captured"] == 3
    none = gan.mode_metrics(np.array([[5.0, 5.0]]), centers, 1.0)
    assert none == {"high_quality_fraction": 0.0, "modes_captured": 0,
                    "mode_kl": pytest.approx(math.log(3))}


def test_mode_metrics_perfect_sampler_chi_square():
    centers, std = gan.toy_modes("grid25")
    rng = np.random.default_rng(0)
    n = 200_000
    x = centers[rng.integers(0, 25, n)] + std * rng.standard_normal((n, 2))
    m = gan.mode_metrics(x, centers, std)
    p = stats.chi2.cdf(9.0, df=2)      # P(|z|^2 < 3^2) for a 2-D standard normal
    assert p == pytest.approx(1 - math.exp(-4.5), rel=1e-12)
    assert abs(m["high_quality_fraction"] - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert m["modes_captured"] == 25 and m["mode_kl"] < 1e-3


def test_mode_metrics_bad_inputs():
    c = np.zeros((3, 2))
    with pytest.raises(ValueError, match="threshold"):
        gan.mode_metrics(np.zeros((4, 2)), c, 1.0, threshold=0.0)
    with pytest.raises(ValueError, match=r"centers: expected shape \(k, 2\)"):
        gan.mode_metrics(np.zeros((4, 2)), np.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match="std"):
        gan.mode_metrics(np.zeros((4, 2)), c, -1.0)
    with pytest.raises(ValueError, match="samples"):
        gan.mode_metrics(np.full((4, 2), np.nan), c, 1.0)
    with pytest.raises(ValueError, match="name"):
        gan.toy_modes("moons")


def test_toy_modes_match_data():
    from coursekit import data

    for name in ("eight_gaussians", "grid25"):
        centers, std = gan.toy_modes(name)
        x = data.toy_2d(name, 20_000, 0)
        m = gan.mode_metrics(x, centers, std)
        assert m["modes_captured"] == len(centers)
        assert m["high_quality_fraction"] > 0.98


def test_between_modes_fraction_hand_built():
    centers = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 10.0]])
    # d2 - d1 on the segment [0, 4] x {0}: |4 - 2x|; the band |4 - 2x| < 2 is 1 < x < 3.
    x = np.array([[0.5, 0.0], [1.5, 0.0], [2.0, 0.0], [2.9, 0.0], [3.5, 0.0], [0.0, 9.0]])
    assert gan.between_modes_fraction(x, centers, 1.0) == pytest.approx(3 / 6)
    assert gan.between_modes_fraction(x, centers, 0.5) == pytest.approx(1 / 6)  # 1.5 < x < 2.5
    # Samples on the centres are never between modes; samples on a bisector always are.
    assert gan.between_modes_fraction(centers, centers, 1.0) == 0.0
    assert gan.between_modes_fraction(np.array([[2.0, -7.0]]), centers, 0.01) == 1.0


def test_between_modes_fraction_uniform_circle_closed_form():
    # On the circle through the ring's centres, at angle phi from the bisector of two
    # neighbours (pi/4 apart), d2 - d1 = 4 R cos(pi/16) sin(phi/2): the band is
    # |phi| < 2 asin(sigma / (2 R cos(pi/16))), 16 such half-bands around the circle.
    centers, std = gan.toy_modes("eight_gaussians")
    r = float(np.linalg.norm(centers[0]))
    phi = 2 * math.asin(std / (2 * r * math.cos(math.pi / 16)))
    want = 16 * phi / (2 * math.pi)
    rng = np.random.default_rng(0)
    n = 200_000
    a = rng.uniform(0, 2 * math.pi, n)
    got = gan.between_modes_fraction(r * np.stack([np.cos(a), np.sin(a)], 1), centers, std)
    assert abs(got - want) < 5 * math.sqrt(want * (1 - want) / n)
    assert want > 0.3  # the uniform circle is far above the exact mixture's floor (below)


def test_between_modes_fraction_exact_mixture_floor():
    # The floor: P(between) under the ring's exact mixture, by quadrature of its density
    # on a fine grid (SciPy's multivariate normal), against Monte Carlo draws of the toy.
    from coursekit import data

    centers, std = gan.toy_modes("eight_gaussians")
    t = np.linspace(-4.5, 4.5, 1501)
    h = t[1] - t[0]
    xx, yy = np.meshgrid(t, t, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel()], 1)
    dens = sum(stats.multivariate_normal(c, std**2 * np.eye(2)).pdf(pts) for c in centers) / 8
    d = np.sort(np.sqrt(((pts[:, None] - centers[None]) ** 2).sum(-1)), 1)
    p = float((dens * (d[:, 1] - d[:, 0] < 2 * std)).sum() * h * h)
    assert 0.03 < p < 0.06
    n = 5000
    se = math.sqrt(p * (1 - p) / n)
    for seed in range(20):
        got = gan.between_modes_fraction(data.toy_2d("eight_gaussians", n, seed), centers, std)
        assert abs(got - p) < 5 * se, seed


def test_grid_metrics_reject_a_uniform_square():
    # The grid's 3-sigma balls (radius 0.15) are far narrower than its spacing (2): a sampler
    # spreading its mass uniformly over the square is rejected by the high-quality fraction
    # (expected 16 pi 0.15^2 / 64 = 1.8 %: the balls of the 12 edge modes are half inside the
    # square, those of the 4 corners a quarter) and puts ~10 % of its points between modes.
    centers, std = gan.toy_modes("grid25")
    x = np.random.default_rng(0).uniform(-4, 4, (20_000, 2))
    m = gan.mode_metrics(x, centers, std)
    p = (9 + 12 / 2 + 4 / 4) * math.pi * (3 * std) ** 2 / 64
    assert abs(m["high_quality_fraction"] - p) < 5 * math.sqrt(p * (1 - p) / 20_000)
    assert gan.between_modes_fraction(x, centers, std) > 0.03
    exact = centers[np.random.default_rng(1).integers(0, 25, 20_000)]
    assert gan.between_modes_fraction(exact, centers, std) == 0.0


def test_between_modes_fraction_bad_inputs():
    c = np.zeros((3, 2))
    with pytest.raises(ValueError, match="width"):
        gan.between_modes_fraction(np.zeros((4, 2)), c, 1.0, width=0.0)
    with pytest.raises(ValueError, match="centers"):
        gan.between_modes_fraction(np.zeros((4, 2)), np.zeros((1, 2)), 1.0)
    with pytest.raises(ValueError, match=r"centers: expected shape \(k, 2\)"):
        gan.between_modes_fraction(np.zeros((4, 2)), np.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match="std"):
        gan.between_modes_fraction(np.zeros((4, 2)), c, -1.0)


# -------------------------------------------------------------------------- models, training


def test_models_shapes_and_reproducible_sampling():
    g = gan.Generator()
    assert g.sample(5, generator=0).shape == (5, 2)
    assert torch.equal(g.sample(5, generator=3), g.sample(5, generator=3))
    dg, dc = gan.DigitGenerator(), gan.DigitCritic()
    x = dg.sample(4, generator=0)
    assert x.shape == (4, 1, 8, 8) and bool(((x >= 0) & (x <= 1)).all())
    assert dc(x).shape == (4,)
    assert gan.Critic()(np.zeros((3, 2))).shape == (3,)   # NumPy input accepted
    with pytest.raises(ValueError, match="x: expected shape"):
        gan.Critic()(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="output"):
        gan.Generator(output="tanh")


@pytest.mark.parametrize("loss", ["nonsaturating", "saturating", "wgan_gp", "wgan_clip", "f_gan"])
def test_train_gan_runs_and_is_deterministic(loss):
    x = np.random.default_rng(0).standard_normal((500, 2))
    kw = {"divergence": "kl"} if loss == "f_gan" else {}

    def run():
        torch.manual_seed(0)
        g, c = gan.Generator(hidden=(16,)), gan.Critic(hidden=(16,))
        h = gan.train_gan(g, c, x, loss=loss, n_steps=20, batch_size=32, generator=0,
                          show_progress=False, **kw)
        return h, c

    h1, c = run()
    h2, _ = run()
    assert len(h1["critic"]) == len(h1["generator"]) == 20
    assert h1 == h2
    if loss == "wgan_clip":
        assert max(p.abs().max().item() for p in c.parameters()) <= 0.01


def test_train_gan_bad_inputs():
    g, c = gan.Generator(), gan.Critic()
    with pytest.raises(ValueError, match="loss: expected one of"):
        gan.train_gan(g, c, np.zeros((10, 2)), loss="hinge")
    with pytest.raises(ValueError, match="valid keys"):
        gan.train_gan(g, c, np.zeros((10, 2)), loss="f_gan", divergence="js")
    with pytest.raises(ValueError, match="data"):
        gan.train_gan(g, c, np.zeros((10, 3)) * np.nan)
    with pytest.raises(ValueError, match="lr_schedule: expected one of"):
        gan.train_gan(g, c, np.zeros((10, 2)), lr_schedule="cosine")
    for bad in (0.0, -1.0, math.inf, math.nan, "big"):
        with pytest.raises(ValueError, match="scale"):
            gan.Generator(scale=bad)
        with pytest.raises(ValueError, match="scale"):
            gan.Critic(scale=bad)
    with pytest.raises(ValueError, match="scale: only for output='linear'"):
        gan.Generator(output="sigmoid", out_shape=(4,), scale=2.0)


def test_scaled_pair_is_the_unscaled_pair_on_standardised_data():
    # Generator(scale=s) against Critic(scale=s) on x must be the very same computation as the
    # unscaled pair on x / s: the same losses, and samples s times the unscaled samples.
    s = 2.5
    x = 4.0 * np.random.default_rng(1).standard_normal((400, 2))

    def run(scale, data):
        torch.manual_seed(3)
        g = gan.Generator(hidden=(16, 16), scale=scale)
        c = gan.Critic(hidden=(16, 16), scale=scale)
        h = gan.train_gan(g, c, data, n_steps=30, batch_size=64, generator=0,
                          show_progress=False)
        with torch.no_grad():
            return h, g.sample(100, generator=5)

    h_scaled, y_scaled = run(s, x)
    h_plain, y_plain = run(1.0, x / s)
    np.testing.assert_allclose(h_scaled["critic"], h_plain["critic"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_scaled["generator"], h_plain["generator"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_scaled, s * y_plain, rtol=1e-4, atol=1e-4)
    # Unscaled network, scaled output: the scale multiplies (Generator) / divides (Critic).
    g = gan.Generator(hidden=(8,), scale=3.0)
    z = torch.randn(5, 2)
    torch.testing.assert_close(g(z), 3.0 * g.net(z))
    c = gan.Critic(hidden=(8,), scale=3.0)
    torch.testing.assert_close(c(z), c.net(z / 3.0).squeeze(-1))


def test_linear_lr_schedule_decays_to_zero(monkeypatch):
    # Record the learning rate at every optimizer step: with lr_schedule="linear" the k-th
    # generator step (k = 0..n-1) and the critic steps before it use lr * (1 - k / n).
    made: list[torch.optim.Optimizer] = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.lrs: list[float] = []
            made.append(self)

        def step(self, closure=None):
            self.lrs.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    g, c = gan.Generator(hidden=(8,)), gan.Critic(hidden=(8,))
    n = 10
    gan.train_gan(g, c, np.zeros((50, 2)) + 1.0, n_steps=n, n_critic=2, lr_g=2e-3, lr_d=1e-3,
                  batch_size=8, generator=0, show_progress=False, lr_schedule="linear")
    opt_g, opt_d = made   # train_gan creates the generator's optimizer first
    assert [p for grp in opt_g.param_groups for p in grp["params"]] == list(g.parameters())
    lrs_g, lrs_d = opt_g.lrs, opt_d.lrs
    k = np.arange(n)
    np.testing.assert_allclose(lrs_g, 2e-3 * (1 - k / n), rtol=1e-12)
    np.testing.assert_allclose(lrs_d, np.repeat(1e-3 * (1 - k / n), 2), rtol=1e-12)


# ------------------------------------------------------------------ certified Lipschitz bound


def test_lipschitz_upper_bound_closed_forms_and_sampled_gradients():
    # A linear critic w . x / scale: the bound is exactly |w| / scale, its gradient norm.
    torch.manual_seed(0)
    c = gan.Critic(hidden=(), scale=2.0)
    w = c.net[0].weight.detach()
    assert gan.lipschitz_upper_bound(c) == pytest.approx(w.norm().item() / 2.0, rel=1e-6)
    # A deep critic: never below the largest gradient norm seen (a lower bound of L), also
    # with spectral normalisation, and reading it leaves the critic's state unchanged.
    for sn in (False, True):
        c = gan.Critic(hidden=(32, 32), spectral_norm=sn)
        x = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(1)) * 4
        c.eval()
        g_max = gan.critic_gradient_norms(c, x).max().item()
        c.train()
        before = copy.deepcopy(c.state_dict())
        b = gan.lipschitz_upper_bound(c)
        after = c.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before) and c.training
        assert g_max <= b * (1 + 1e-6)
    with pytest.raises(TypeError, match="critic"):
        gan.lipschitz_upper_bound(torch.nn.Linear(2, 1))

    class Tanh(gan.Critic):
        def __init__(self):
            super().__init__(hidden=(4,))
            self.net[1] = torch.nn.Tanh()

    with pytest.raises(TypeError, match="critic: no Lipschitz bound for a layer Tanh"):
        gan.lipschitz_upper_bound(Tanh())


def test_kantorovich_rubinstein_with_the_certified_bound():
    # For any critic f, (E_P f - E_Q f) / Lip(f) <= W_1(P, Q), so with the certified bound
    # B >= Lip(f) the estimate (E_P f - E_Q f) / B is a lower bound of W_1 for every critic.
    # P = N(1.5, 1), Q = N(0, 1): W_1 = 1.5 (checked against scipy).
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    n = 200_000
    xp, xq = 1.5 + rng.standard_normal(n), rng.standard_normal(n)
    assert wasserstein_distance(xp, xq) == pytest.approx(1.5, abs=0.02)
    tp, tq = torch.from_numpy(xp[:, None]).float(), torch.from_numpy(xq[:, None]).float()

    def ratio(c):
        with torch.no_grad():
            fp, fq = c(tp), c(tq)
        b = gan.lipschitz_upper_bound(c)
        se = math.sqrt((fp.var().item() + fq.var().item()) / n)   # of the difference of means
        return (fp.mean() - fq.mean()).item() / b, 5 * se / b

    # f(x) = x through one LeakyReLU(0.2) layer: W1 = (1, -1)^T, W2 = (1, -1) / 1.2, so
    # leaky(x) - leaky(-x) = 1.2 x. Lip f = 1, and the product bound is
    # |W1| |W2| = sqrt(2) sqrt(2) / 1.2 = 5/3 (a bound, not the constant).
    c = gan.Critic(in_shape=(1,), hidden=(2,))
    with torch.no_grad():
        c.net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        c.net[0].bias.zero_()
        c.net[2].weight.copy_(torch.tensor([[1.0, -1.0]]) / 1.2)
        c.net[2].bias.zero_()
    assert gan.lipschitz_upper_bound(c) == pytest.approx(5 / 3, rel=1e-6)
    r, tol = ratio(c)
    assert r == pytest.approx(1.5 * 3 / 5, abs=tol) and r <= 1.5
    for seed in range(5):   # random critics: below W_1 too
        torch.manual_seed(seed)
        r, tol = ratio(gan.Critic(in_shape=(1,), hidden=(16, 16)))
        assert abs(r) <= 1.5 + tol
