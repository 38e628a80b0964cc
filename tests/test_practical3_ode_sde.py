"""Practical 3's check cells catch the plausible wrong implementations, with the right message.

Each exercise has a correct implementation here (written independently of the notebook) that
its check must accept, and a list of wrong ones ("mutants") that it must reject with a message
that names the cause.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coursekit.diffusion import NoisedGaussianMixture
from coursekit.practicals import practical3_ode_sde as checks

W = torch.tensor([0.45, 0.35, 0.20], dtype=torch.float64)
M = torch.tensor([[-2.0, -0.5], [2.0, -0.5], [0.0, 2.5]], dtype=torch.float64)
C = torch.stack([torch.tensor([[0.30, 0.15], [0.15, 0.20]]),
                 torch.tensor([[0.15, -0.10], [-0.10, 0.25]]),
                 torch.tensor([[0.40, 0.00], [0.00, 0.05]])]).double()
EXACT = NoisedGaussianMixture(W.numpy(), M.numpy(), C.numpy())


# ------------------------------------------------------------------ exercise 1

def log_prob_ok(x, sigma, extra=None, stable=True, const=True):
    cov = C + (sigma**2 if extra is None else extra(sigma)) * torch.eye(2, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(M, covariance_matrix=cov)
    comp = dist.log_prob(x[:, None, :])  # (n, K)
    if not const:
        comp = comp + math.log(2 * math.pi)
    if stable:
        return torch.logsumexp(torch.log(W) + comp, dim=1)
    return torch.log((W * comp.exp()).sum(1))


def score_ok(x, sigma):
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(log_prob_ok(y, sigma).sum(), y)
    return g


def score_plain_average(x, sigma):
    cov = C + sigma**2 * torch.eye(2, dtype=torch.float64)
    comps = [(M[k] - x) @ torch.linalg.inv(cov[k]) for k in range(3)]
    return sum(comps) / 3


def _run_ex1(log_prob, score):
    checks.check_noised_mixture(log_prob, score, W, M, C)


def test_ex1_accepts_correct():
    _run_ex1(log_prob_ok, score_ok)


@pytest.mark.parametrize("log_prob, message", [
    (lambda x, s: log_prob_ok(x, s, extra=lambda s: 0.0), "noise is missing"),
    (lambda x, s: log_prob_ok(x, s, extra=lambda s: s), "sigma \\* I"),
    (lambda x, s: log_prob_ok(x, s, stable=False), "logsumexp"),
    (lambda x, s: log_prob_ok(x, s, const=False), "off by a constant"),
])
def test_ex1_log_prob_mutants(log_prob, message):
    with pytest.raises(AssertionError, match=message):
        _run_ex1(log_prob, score_ok)


@pytest.mark.parametrize("score, message", [
    (lambda x, s: -score_ok(x, s), "points away"),
    (score_plain_average, "responsibility"),
    (lambda x, s: score_ok(x, math.sqrt(s)), "not the gradient|differs"),
    (lambda x, s: score_ok(x, s)[:, [1, 0]], "not the gradient|differs"),
])
def test_ex1_score_mutants(score, message):
    with pytest.raises(AssertionError, match=message):
        _run_ex1(log_prob_ok, score)


def test_stub_says_which_exercise():
    def stub(x, s):
        raise NotImplementedError("Exercise 1: the log-density of the noised mixture")

    with pytest.raises(NotImplementedError, match="Exercise 1"):
        _run_ex1(stub, score_ok)


# ------------------------------------------------------------------ exercises 2-4

def euler(score, x, sigmas, slope_sign=-1.0, at_end=False, step="diff"):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        where = b if at_end else a
        d = slope_sign * where * score(x, where)
        h = (b - a) if step == "diff" else -a
        x = x + h * d
    return x


def heun(score, x, sigmas, correct=True, last=False, slope_at_start=False):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        d = -a * score(x, a)
        xe = x + (b - a) * d
        if correct and (b > 0 or last):
            d2 = -b * score(x if slope_at_start else xe, b)
            xe = x + (b - a) * 0.5 * (d + d2)
        x = xe
    return x


def em(score, x, sigmas, generator, drift=2.0, noise="sqrt", last_noise=False,
       same_noise=False, use_generator=True):
    s = [float(v) for v in sigmas]
    z0 = None
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0 and not last_noise:
            x = x + a**2 * sc
            continue
        h = a - b
        if same_noise and z0 is not None:
            z = z0
        else:
            z = torch.randn(x.shape, generator=generator if use_generator else None,
                            dtype=x.dtype)
            z0 = z
        std = math.sqrt(2 * a * h) if noise == "sqrt" else h
        x = x + drift * h * a * sc + std * z
    return x


def test_samplers_accept_correct():
    checks.check_samplers(euler, heun, em)


@pytest.mark.parametrize("sampler, message", [
    (lambda sc, x, s: euler(sc, x, s, slope_sign=1.0), "spread out|differs"),
    (lambda sc, x, s: euler(sc, x, s, at_end=True), "sigma = 0"),
    (lambda sc, x, s: euler(sc, x, s, step="sigma"), "differs|order"),
])
def test_euler_mutants(sampler, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(euler_ode=sampler)


@pytest.mark.parametrize("sampler, message", [
    (lambda sc, x, s: heun(sc, x, s, correct=False), "same result as Euler"),
    (lambda sc, x, s: heun(sc, x, s, last=True), "sigma = 0"),
    (lambda sc, x, s: heun(sc, x, s, slope_at_start=True), "differs from Heun"),
])
def test_heun_mutants(sampler, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(heun_ode=sampler)


@pytest.mark.parametrize("sampler, message", [
    (lambda sc, x, s, g: em(sc, x, s, g, drift=1.0), "twice"),
    (lambda sc, x, s, g: em(sc, x, s, g, noise="linear"), "square root"),
    (lambda sc, x, s, g: em(sc, x, s, g, use_generator=False), "reproducible"),
    (lambda sc, x, s, g: em(sc, x, s, g, last_noise=True), "last step"),
    (lambda sc, x, s, g: em(sc, x, s, g, same_noise=True), "differs|variance"),
    (lambda sc, x, s, g: euler(sc, x, s), "no noise"),
])
def test_em_mutants(sampler, message):
    torch.manual_seed(123)  # the generator-ignoring mutant draws from the global stream
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(euler_maruyama=sampler)


# ------------------------------------------------------------------ exercise 5

def tv_ok(x, log_prob, lim=4.5, bins=60, norm="all", outside=True, half=True, area=True):
    edges = torch.linspace(-lim, lim, bins + 1, dtype=torch.float64)
    ctr = (edges[:-1] + edges[1:]) / 2
    gx, gy = torch.meshgrid(ctr, ctr, indexing="ij")
    p = log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 0.0).exp()
    if area:
        p = p * (edges[1] - edges[0]) ** 2
    h = torch.histogramdd(x, bins=[edges, edges]).hist.reshape(-1)
    q = h / (len(x) if norm == "all" else h.sum())
    tv = (q - p).abs().sum() + ((1 - q.sum()) - (1 - p.sum())).abs() * (1 if outside else 0)
    return float(tv * (0.5 if half else 1.0))


def _sample(n, seed):
    return torch.as_tensor(EXACT.sample(n, rng=seed))


def test_grid_tv_accepts_correct():
    checks.check_grid_tv(tv_ok, EXACT.log_prob, _sample)
    # ... and the reference matches an independent computation with numpy's histogram2d.
    x = _sample(3000, 0)
    edges = np.linspace(-4.5, 4.5, 61)
    h, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=[edges, edges])
    c = (edges[:-1] + edges[1:]) / 2
    gx, gy = np.meshgrid(c, c, indexing="ij")
    p = np.exp(EXACT.log_prob(np.stack([gx.ravel(), gy.ravel()], 1), 0.0)) * (9 / 60) ** 2
    q = h.ravel() / len(x)
    want = 0.5 * (np.abs(q - p).sum() + abs((1 - q.sum()) - (1 - p.sum())))
    assert checks.reference_grid_tv(x, EXACT.log_prob) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("kw", [dict(norm="inside"), dict(outside=False), dict(half=False),
                                dict(area=False)])
def test_grid_tv_mutants(kw):
    with pytest.raises(AssertionError, match="grid_tv"):
        checks.check_grid_tv(lambda x, lp: tv_ok(x, lp, **kw), EXACT.log_prob, _sample)


# ------------------------------------------------------------------ exercise 6

def test_orders():
    checks.check_orders(1.02, 2.05)
    for e, h in ((-1.0, -2.0), (0.05, 0.1), (1.0, 1.0), (2.0, 2.0)):
        with pytest.raises(AssertionError, match="order"):
            checks.check_orders(e, h)


# ------------------------------------------------------------------ exercise 7

def perturbed_ok(score, f, lo, hi, inclusive=True, inside=True, additive=False):
    def wrong(x, s):
        inwin = (lo <= s <= hi) if inclusive else (lo < s < hi)
        if inwin == inside:
            return score(x, s) + f if additive else f * score(x, s)
        return score(x, s)

    return wrong


def test_perturbed_score():
    checks.check_perturbed_score(perturbed_ok, EXACT.score)
    for kw in (dict(inclusive=False), dict(inside=False), dict(additive=True)):
        with pytest.raises(AssertionError, match="perturbed score"):
            checks.check_perturbed_score(lambda *a, kw=kw: perturbed_ok(*a, **kw), EXACT.score)


# ------------------------------------------------------------------ exercise 8

def divergence_ok(f, x, mode="trace"):
    x = x.detach().requires_grad_(True)
    out = f(x)
    jac = torch.stack([torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)[0]
                       for j in range(x.shape[1])], dim=1)  # (n, out j, in i)
    if mode == "trace":
        return jac.diagonal(dim1=1, dim2=2).sum(1).detach()
    if mode == "sum":
        return jac.sum((1, 2)).detach()
    return jac[:, 0, 0].detach()


def loglik_ok(score, x, smin, smax, n, prior_var=True, sign=1.0):
    grid = [float(v) for v in torch.logspace(math.log10(smin), math.log10(smax), n + 1,
                                             dtype=torch.float64)]
    acc = torch.zeros(x.shape[0], dtype=torch.float64)

    def f(y, s):
        return -s * score(y, s)

    for a, b in zip(grid[:-1], grid[1:], strict=True):
        h = b - a
        d, da = f(x, a), divergence_ok(lambda y, a=a: f(y, a), x)
        xe = x + h * d
        d2, db = f(xe, b), divergence_ok(lambda y, b=b: f(y, b), xe)
        x = x + 0.5 * h * (d + d2)
        acc = acc + 0.5 * h * (da + db)
    var = smax**2 if prior_var else 1.0
    lp = -0.5 * x.pow(2).sum(1) / var - math.log(var) - math.log(2 * math.pi)
    return lp + sign * acc


def test_divergence():
    checks.check_divergence(divergence_ok)
    for mode, message in (("sum", "diagonal"), ("first", "trace")):
        with pytest.raises(AssertionError, match=message):
            checks.check_divergence(lambda f, x, mode=mode: divergence_ok(f, x, mode))


def test_log_likelihood():
    checks.check_log_likelihood(loglik_ok, EXACT.log_prob, EXACT.score)
    with pytest.raises(AssertionError, match="sigma_max\\^2"):
        checks.check_log_likelihood(lambda *a: loglik_ok(*a, prior_var=False),
                                    EXACT.log_prob, EXACT.score)
    with pytest.raises(AssertionError, match="nats"):
        checks.check_log_likelihood(lambda *a: loglik_ok(*a, sign=-1.0),
                                    EXACT.log_prob, EXACT.score)



# ------------------------------------------------------------------ more mutants (review)
# Wrong implementations a student plausibly writes; each must be caught by the check of its
# exercise with a message that names the cause.

def _score_parts(x, sigma, resp_cov, comp_cov, logdet=True):
    eye = torch.eye(2, dtype=torch.float64)
    diff = M[None] - x[:, None, :]  # (n, K, 2)
    comp = torch.einsum("kij,nkj->nki", torch.linalg.inv(comp_cov + 0 * eye), diff)
    dist = torch.distributions.MultivariateNormal(M, covariance_matrix=resp_cov)
    log_t = torch.log(W) + dist.log_prob(x[:, None, :])
    if not logdet:
        log_t = log_t + 0.5 * torch.logdet(resp_cov)
    return (torch.softmax(log_t, 1)[:, :, None] * comp).sum(1)


def score_clean_responsibilities(x, sigma):
    noisy = C + sigma**2 * torch.eye(2, dtype=torch.float64)
    return _score_parts(x, sigma, C, noisy)


def score_clean_components(x, sigma):
    noisy = C + sigma**2 * torch.eye(2, dtype=torch.float64)
    return _score_parts(x, sigma, noisy, C)


def score_no_logdet(x, sigma):
    noisy = C + sigma**2 * torch.eye(2, dtype=torch.float64)
    return _score_parts(x, sigma, noisy, noisy, logdet=False)


def log_prob_cholesky_logdet(x, sigma):
    # log det taken as the sum of the log-diagonal of the Cholesky factor (half of it).
    cov = C + sigma**2 * torch.eye(2, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    half = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    comp = torch.distributions.MultivariateNormal(M, covariance_matrix=cov).log_prob(
        x[:, None, :]) + 0.5 * torch.logdet(cov) - 0.5 * half
    return torch.logsumexp(torch.log(W) + comp, dim=1)


@pytest.mark.parametrize("log_prob, score, message", [
    (log_prob_ok, score_clean_responsibilities, "responsibilities .* clean covariances"),
    (log_prob_ok, score_clean_components, "component scores use the clean"),
    (log_prob_ok, score_no_logdet, "log det"),
    (log_prob_cholesky_logdet, score_ok, "log-determinant"),
])
def test_ex1_more_mutants(log_prob, score, message):
    with pytest.raises(AssertionError, match=message):
        _run_ex1(log_prob, score)


def euler_no_sigma(score, x, sigmas):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        x = x + (b - a) * (-score(x, a))  # forgot the factor sigma in the slope
    return x


def heun_wrong_sigma(score, x, sigmas, where="start"):
    # The second slope evaluated at the Euler point but at the wrong noise level (or with the
    # wrong factor), a typo-level mistake in the averaging.
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        d = -a * score(x, a)
        xe = x + (b - a) * d
        if b > 0:
            d2 = -a * score(xe, b) if where == "factor" else -b * score(xe, a)
            xe = x + (b - a) * 0.5 * (d + d2)
        x = xe
    return x


def heun_correct_from_euler_point(score, x, sigmas):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        d = -a * score(x, a)
        xe = x + (b - a) * d
        if b > 0:
            xe = xe + (b - a) * 0.5 * (d + -b * score(xe, b))  # from x', not from x_i
        x = xe
    return x


@pytest.mark.parametrize("kw, message", [
    (dict(euler_ode=euler_no_sigma), "spread out|slope"),
    (dict(heun_ode=heun_wrong_sigma), "differs from Heun"),
    (dict(heun_ode=lambda sc, x, s: heun_wrong_sigma(sc, x, s, "factor")), "differs from Heun"),
    (dict(heun_ode=heun_correct_from_euler_point), "differs from Heun"),
])
def test_ode_more_mutants(kw, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(**kw)


def em_noise_next(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + 2 * (a - b) * a * sc + math.sqrt(2 * b * (a - b)) * z  # sigma_{i+1}
    return x


def em_score_at_end(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, b)  # the drift at the END of the step (sigma_N = 0 on the last one)
        if b == 0:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + 2 * (a - b) * a * sc + math.sqrt(2 * a * (a - b)) * z
    return x


def em_float32_noise(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator)  # float32 draws
        x = x + 2 * (a - b) * a * sc + math.sqrt(2 * a * (a - b)) * z
    return x


def em_drift_wrong_sign(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x - 2 * (a - b) * a * sc + math.sqrt(2 * a * (a - b)) * z  # pushes away
    return x


@pytest.mark.parametrize("sampler, message", [
    (em_noise_next, "sigma_\\{i\\+1\\}"),
    (em_score_at_end, "sigma = 0"),
    (em_float32_noise, "float32"),
    (em_drift_wrong_sign, "NaN|variance|drift"),
])
def test_em_more_mutants(sampler, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(euler_maruyama=sampler)


def tv_corner(x, log_prob, lim=4.5, bins=60):
    edges = torch.linspace(-lim, lim, bins + 1, dtype=torch.float64)
    gx, gy = torch.meshgrid(edges[:-1], edges[:-1], indexing="ij")  # corners, not centres
    p = log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 0.0).exp()
    p = p * (edges[1] - edges[0]) ** 2
    q = torch.histogramdd(x, bins=[edges, edges]).hist.reshape(-1) / len(x)
    return float(0.5 * ((q - p).abs().sum() + ((1 - q.sum()) - (1 - p.sum())).abs()))


def tv_swapped_axes(x, log_prob, lim=4.5, bins=60):
    edges = torch.linspace(-lim, lim, bins + 1, dtype=torch.float64)
    ctr = (edges[:-1] + edges[1:]) / 2
    gx, gy = torch.meshgrid(ctr, ctr, indexing="xy")  # numpy's default order
    p = log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), 0.0).exp()
    p = p * (edges[1] - edges[0]) ** 2
    q = torch.histogramdd(x, bins=[edges, edges]).hist.reshape(-1) / len(x)
    return float(0.5 * ((q - p).abs().sum() + ((1 - q.sum()) - (1 - p.sum())).abs()))


@pytest.mark.parametrize("grid_tv, message", [
    (lambda x, lp: tv_ok(x, lp, norm="inside"), "ALL samples"),
    (lambda x, lp: tv_ok(x, lp, outside=False), "outside the grid is missing"),
    (lambda x, lp: tv_ok(x, lp, half=False), "1/2"),
    (lambda x, lp: tv_ok(x, lp, area=False), "AREA"),
    (tv_corner, "centre"),
    (tv_swapped_axes, "swapped"),
])
def test_grid_tv_named_mutants(grid_tv, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_grid_tv(grid_tv, EXACT.log_prob, _sample)


def perturbed_nonlocal(score, factor, lo, hi):
    def wrong(x, s):
        nonlocal factor
        if not lo <= s <= hi:
            factor = 1.0  # "reset" the factor: it stays reset for every later call
        return factor * score(x, s)

    return wrong


def perturbed_in_place(score, factor, lo, hi):
    def wrong(x, s):
        if lo <= s <= hi:
            x *= factor  # scales the caller's tensor in place
            return score(x / factor, s) * factor
        return score(x, s)

    return wrong


_SHARED = {}


def perturbed_global(score, factor, lo, hi):
    _SHARED.update(factor=factor, lo=lo, hi=hi)  # module-level state shared by every copy

    def wrong(x, s):
        inside = _SHARED["lo"] <= s <= _SHARED["hi"]
        return (_SHARED["factor"] if inside else 1.0) * score(x, s)

    return wrong


@pytest.mark.parametrize("perturbed, message", [
    (perturbed_nonlocal, "wrong after the calls made before it"),
    (perturbed_in_place, "in place"),
    (perturbed_global, "share their state"),
    (lambda sc, f, lo, hi: (lambda x, s: sc(x, f * s if lo <= s <= hi else s)), "should be"),
])
def test_perturbed_more_mutants(perturbed, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_perturbed_score(perturbed, EXACT.score)


def divergence_hutchinson(f, x):
    x = x.detach().requires_grad_(True)
    v = torch.randn_like(x)
    (g,) = torch.autograd.grad((f(x) * v).sum(), x)
    return (g * v).sum(1).detach()  # v^T J v: unbiased, not exact


def test_divergence_hutchinson():
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="Hutchinson"):
        checks.check_divergence(divergence_hutchinson)


def loglik_downwards(score, x, smin, smax, n):
    # Integrates DOWN from sigma_max, as when sampling, starting from the data point.
    grid = torch.logspace(math.log10(smax), math.log10(smin), n + 1, dtype=torch.float64)
    s = [float(v) for v in grid]
    acc = torch.zeros(x.shape[0], dtype=torch.float64)
    for a, b in zip(s[:-1], s[1:], strict=True):
        h = b - a
        x_new = x + h * (-a * score(x, a))
        acc = acc + h * divergence_ok(lambda y, a=a: -a * score(y, a), x)
        x = x_new
    lp = -0.5 * x.pow(2).sum(1) / smax**2 - 2 * math.log(smax) - math.log(2 * math.pi)
    return lp + acc


def loglik_half_logdet(score, x, smin, smax, n):
    return loglik_ok(score, x, smin, smax, n) + math.log(smax)  # -log(smax), not -2 log(smax)


def loglik_div_of_score(score, x, smin, smax, n):
    # The divergence of the score, not of f = -sigma score.
    grid = [float(v) for v in torch.logspace(math.log10(smin), math.log10(smax), n + 1,
                                             dtype=torch.float64)]
    acc = torch.zeros(x.shape[0], dtype=torch.float64)
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        h = b - a
        d = -a * score(x, a)
        xe = x + h * d
        x = x + 0.5 * h * (d - b * score(xe, b))
        acc = acc + 0.5 * h * (divergence_ok(lambda y, a=a: score(y, a), x)
                               + divergence_ok(lambda y, b=b: score(y, b), xe))
    lp = -0.5 * x.pow(2).sum(1) / smax**2 - 2 * math.log(smax) - math.log(2 * math.pi)
    return lp + acc


@pytest.mark.parametrize("loglik, message", [
    (loglik_downwards, "UP to sigma_max"),
    (loglik_half_logdet, "log\\(sigma_max\\):"),
    (loglik_div_of_score, "nats"),
])
def test_log_likelihood_more_mutants(loglik, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_log_likelihood(loglik, EXACT.log_prob, EXACT.score)


def test_handout_order_guards():
    # Run before exercise 6 (or 2-5), the later cells say which exercise to do first.
    with pytest.raises(AssertionError, match="exercise 6 first"):
        checks.check_orders(None, None)
    with pytest.raises(AssertionError, match="Exercises 2-5: not done yet"):
        checks.require_done("Exercises 2-5", floor=1.0, orders=None)
    checks.require_done("Exercises 2-5", floor=1.0, orders=2.0)
