"""Practical 3's check cells catch the plausible wrong implementations, with the right message.

Each exercise has a correct implementation here (written independently of the notebook) that
its check must accept, and a list of wrong ones ("mutants") that it must reject with a message
that names the cause and the exercise; answers that call coursekit.diffusion (or the checks'
private reference code) are rejected as well.

Seed benchmark of the solution notebook (every check accepts the correct solution):
``benchmarks/check_seeds.py book/practicals/practical3_ode_sde.ipynb --seeds 10 --jobs 1``
passed 10/10 seeds (native kernel, 2026-12-07, mean 142 s per run on the loaded 2-core machine);
``--seeds 2 --kernels default avx2`` passed 4/4 runs (mean 119 s).
The high-noise claim of Part D (SDE TV < ODE TV / 2) held in 30/30 single-seed runs of the same
measurement with coursekit.diffusion's samplers (largest ratio 0.34); Heun at 127 calls was
1.0e-3 above the floor on average there, Euler-Maruyama at 128 steps 4.5e-3 (not asserted).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coursekit import diffusion
from coursekit.diffusion import NoisedGaussianMixture, edm_sigmas
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
    # autograd that keeps the graph (exercise 8 differentiates the score again)
    with torch.enable_grad():
        y = x if x.requires_grad else x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(log_prob_ok(y, sigma).sum(), y, create_graph=True)
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

    with pytest.raises(AssertionError, match="Exercise 1: not done yet"):
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
    checks.check_grid_tv(tv_ok)
    # ... and the reference matches an independent computation with numpy's histogram2d.
    x = _sample(3000, 0)
    edges = np.linspace(-4.5, 4.5, 61)
    h, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=[edges, edges])
    c = (edges[:-1] + edges[1:]) / 2
    gx, gy = np.meshgrid(c, c, indexing="ij")
    p = np.exp(EXACT.log_prob(np.stack([gx.ravel(), gy.ravel()], 1), 0.0)) * (9 / 60) ** 2
    q = h.ravel() / len(x)
    want = 0.5 * (np.abs(q - p).sum() + abs((1 - q.sum()) - (1 - p.sum())))
    assert checks._grid_tv_variant(x, EXACT.log_prob) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("kw", [dict(norm="inside"), dict(outside=False), dict(half=False),
                                dict(area=False)])
def test_grid_tv_mutants(kw):
    with pytest.raises(AssertionError, match="grid_tv"):
        checks.check_grid_tv(lambda x, lp: tv_ok(x, lp, **kw))


# ------------------------------------------------------------------ exercise 6

def order_ok(nfe, err):
    return -np.polyfit(np.log(nfe), np.log(err), 1)[0]


def test_orders_accept_correct():
    checks.check_orders(order_ok, euler, heun)


@pytest.mark.parametrize("order, message", [
    (lambda nfe, err: np.polyfit(np.log(nfe), np.log(err), 1)[0], "MINUS"),
    (lambda nfe, err: -np.polyfit(np.log(err), np.log(nfe), 1)[0], "y axis"),
    (lambda nfe, err: np.polyfit(np.log(nfe), np.log(err), 1), "one number"),
    (lambda nfe, err: -np.polyfit(nfe, err, 1)[0], "minus its slope"),
    (lambda nfe, err: 1.0, "Exercise 6"),  # a number typed in
])
def test_orders_mutants(order, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_orders(order, euler, heun)


def test_orders_are_measured_on_the_students_samplers():
    # A correct fit but a first-order "Heun" (no correction): the check measures the samplers.
    with pytest.raises(AssertionError, match="expected about 1 and 2"):
        checks.check_orders(order_ok, euler, lambda sc, x, s: heun(sc, x, s, correct=False))


# ------------------------------------------------------------------ exercise 7

def perturbed_ok(score, f, lo, hi, inclusive=True, inside=True, additive=False):
    def wrong(x, s):
        inwin = (lo <= s <= hi) if inclusive else (lo < s < hi)
        if inwin == inside:
            return score(x, s) + f if additive else f * score(x, s)
        return score(x, s)

    return wrong


def test_perturbed_score():
    checks.check_perturbed_score(perturbed_ok, score_ok)
    for kw in (dict(inclusive=False), dict(inside=False), dict(additive=True)):
        with pytest.raises(AssertionError, match="perturbed score"):
            checks.check_perturbed_score(lambda *a, kw=kw: perturbed_ok(*a, **kw), score_ok)


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


def test_log_likelihood():
    checks.check_log_likelihood(loglik_ok)
    with pytest.raises(AssertionError, match="sigma_max\\^2"):
        checks.check_log_likelihood(lambda *a: loglik_ok(*a, prior_var=False))
    with pytest.raises(AssertionError, match="nats"):
        checks.check_log_likelihood(lambda *a: loglik_ok(*a, sign=-1.0))



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
        checks.check_grid_tv(grid_tv)


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
        checks.check_perturbed_score(perturbed, score_ok)


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
        checks.check_log_likelihood(loglik)


def test_handout_order_guards():
    # Run before exercise 6 (or 2-5), the later cells say which exercise to do first.
    with pytest.raises(AssertionError, match="Exercise 6 first"):
        checks.check_orders(None, euler, heun)
    with pytest.raises(AssertionError, match="Exercises 2-5: not done yet"):
        checks.require_done("Exercises 2-5", floor=1.0, orders=None)
    checks.require_done("Exercises 2-5", floor=1.0, orders=2.0)


# ------------------------------------------------------------------ second edition (issue 23)
# Answers that call the library, in-place updates, index-based last steps, the accepted
# Euler-Maruyama variants, globals changed in place, a score without a graph, torch errors.

def _tweedie(score):
    return lambda x, s: x + s**2 * score(x, s)


@pytest.mark.parametrize("log_prob, score", [
    (EXACT.log_prob, score_ok),
    (log_prob_ok, EXACT.score),
    (lambda x, s: NoisedGaussianMixture(W.numpy(), M.numpy(), C.numpy()).log_prob(x, s),
     score_ok),
    (lambda x, s: checks._mix_log_prob(x, s, W.numpy(), M.numpy(), C.numpy()), score_ok),
])
def test_ex1_library_is_not_an_answer(log_prob, score):
    with pytest.raises(AssertionError, match="Exercise 1.*calls (coursekit.diffusion|the checks)"):
        _run_ex1(log_prob, score)


@pytest.mark.parametrize("kw, message", [
    (dict(euler_ode=lambda sc, x, s: diffusion.euler_sample(_tweedie(sc), x, s)), "Exercise 2"),
    (dict(heun_ode=lambda sc, x, s: diffusion.heun_sample(_tweedie(sc), x, s)), "Exercise 3"),
    (dict(euler_maruyama=lambda sc, x, s, g: diffusion.euler_maruyama(
        _tweedie(sc), x, s, generator=g)), "Exercise 4"),
    (dict(heun_ode=lambda sc, x, s: checks._heun(sc, x, s)), "Exercise 3"),
])
def test_samplers_library_is_not_an_answer(kw, message):
    with pytest.raises(AssertionError, match=f"{message}.*calls"):
        checks.check_samplers(**kw)


def test_grid_tv_and_likelihood_library_is_not_an_answer():
    with pytest.raises(AssertionError, match="Exercise 5.*calls the checks"):
        checks.check_grid_tv(lambda x, lp: checks._grid_tv_variant(x, lp))
    with pytest.raises(AssertionError, match="Exercise 5.*calls coursekit.diffusion"):
        checks.check_grid_tv(lambda x, lp: diffusion.grid_tv(x, EXACT, bins=60, lim=4.5))

    def via_library(score, x, smin, smax, n):
        return diffusion.pf_ode_log_likelihood(_tweedie(score), x, sigma_min=smin,
                                               sigma_max=smax, n_steps=n)

    with pytest.raises(AssertionError, match="Exercise 8.*calls coursekit.diffusion"):
        checks.check_log_likelihood(via_library)


def test_library_guard_restores_the_previous_profiler():
    import sys

    def mine(frame, event, arg):
        return None

    sys.setprofile(mine)
    try:
        checks.check_grid_tv(tv_ok)
        assert sys.getprofile() is mine
    finally:
        sys.setprofile(None)


def euler_in_place(score, x, sigmas):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        x += (b - a) * (-a * score(x, a))
    return x


def heun_in_place(score, x, sigmas):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        d = -a * score(x, a)
        x_next = x
        x_next += (b - a) * d  # moves x as well
        if b > 0:
            x_next = x + (b - a) * 0.5 * (d - b * score(x_next, b))
        x = x_next
    return x


def em_in_place(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0:
            x.add_(a**2 * sc)
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x.add_(2 * (a - b) * a * sc + math.sqrt(2 * a * (a - b)) * z)
    return x


@pytest.mark.parametrize("kw, message", [
    (dict(euler_ode=euler_in_place), "euler_ode` \\(Exercise 2\\) changed its input x in place"),
    (dict(heun_ode=heun_in_place), "heun_ode` \\(Exercise 3\\) changed its input x in place"),
    (dict(euler_maruyama=em_in_place), "euler_maruyama` \\(Exercise 4\\) changed its input"),
])
def test_samplers_in_place(kw, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(**kw)


def heun_skip_by_index(score, x, sigmas):
    s = [float(v) for v in sigmas]
    for i, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)):
        d = -a * score(x, a)
        xe = x + (b - a) * d
        if i < len(s) - 2:
            xe = x + (b - a) * 0.5 * (d - b * score(xe, b))
        x = xe
    return x


def em_tweedie_by_index(score, x, sigmas, generator):
    s = [float(v) for v in sigmas]
    for i, (a, b) in enumerate(zip(s[:-1], s[1:], strict=True)):
        sc = score(x, a)
        if i == len(s) - 2:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + 2 * (a - b) * a * sc + math.sqrt(2 * a * (a - b)) * z
    return x


@pytest.mark.parametrize("kw, message", [
    (dict(heun_ode=heun_skip_by_index), "last index"),
    (dict(euler_maruyama=em_tweedie_by_index), "last index"),
])
def test_last_step_by_index(kw, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_samplers(**kw)


def em_variant(score, x, sigmas, generator, drift="2h", std="exact"):
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        if b == 0:
            x = x + a**2 * sc
            continue
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        gain = 2 * (a - b) * a if drift == "2h" else a**2 - b**2
        sd = math.sqrt(a**2 - b**2) if std == "exact" else math.sqrt(2 * a * (a - b))
        x = x + gain * sc + sd * z
    return x


def em_ancestral_no_special_case(score, x, sigmas, generator):
    # The ancestral step x + (s_i^2 - s_{i+1}^2) score + sqrt(s_i^2 - s_{i+1}^2) z is
    # Tweedie's denoiser on the step to 0 by itself; it still draws z there.
    s = [float(v) for v in sigmas]
    for a, b in zip(s[:-1], s[1:], strict=True):
        sc = score(x, a)
        v = a**2 - b**2
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if b > 0 else 0.0
        x = x + v * sc + math.sqrt(v) * z * (b > 0)
    return x


@pytest.mark.parametrize("sampler", [
    em_variant,  # the exact increment variance sqrt(s_i^2 - s_{i+1}^2)
    lambda sc, x, s, g: em_variant(sc, x, s, g, drift="diff"),  # ancestral
    lambda sc, x, s, g: em_variant(sc, x, s, g, drift="diff", std="2h"),
    em_ancestral_no_special_case,
])
def test_em_accepts_valid_variants(sampler):
    checks.check_samplers(euler_maruyama=sampler)


def test_ex1_global_changed_in_place_is_named_and_repaired():
    covs = C.clone()

    def log_prob_mutating(x, sigma):
        cov = covs
        cov += sigma**2 * torch.eye(2, dtype=torch.float64)  # changes the global
        dist = torch.distributions.MultivariateNormal(M, covariance_matrix=cov)
        return torch.logsumexp(torch.log(W) + dist.log_prob(x[:, None, :]), dim=1)

    with pytest.raises(AssertionError, match="changed COVS in place"):
        checks.check_noised_mixture(log_prob_mutating, score_ok, W, M, covs)
    assert torch.equal(covs, C)  # the check put the notebook's covariances back


def score_detached(x, sigma):
    y = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(log_prob_ok(y, sigma).sum(), y)
    return g


def score_autograd_graph(x, sigma):
    with torch.enable_grad():
        y = x if x.requires_grad else x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(log_prob_ok(y, sigma).sum(), y, create_graph=True)
    return g


def test_ex1_score_without_graph():
    with pytest.raises(AssertionError, match="no graph back to x"):
        _run_ex1(log_prob_ok, score_detached)
    _run_ex1(log_prob_ok, score_autograd_graph)  # autograd with create_graph is fine


def test_ex1_broadcasting_error_is_a_hint():
    def log_prob_no_axes(x, sigma):
        diff = x - M  # (n, 2) - (3, 2)
        return -0.5 * diff.pow(2).sum(1)

    with pytest.raises(AssertionError, match="Exercise 1.*broadcast"):
        _run_ex1(log_prob_no_axes, score_ok)


def _heun_tvs(n_steps, seeds=range(6), n=4000):
    out = []
    for s in seeds:
        x = 40.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(s),
                               dtype=torch.float64)
        y = diffusion.heun_sample(_tweedie(EXACT.score), x, edm_sigmas(n_steps, sigma_max=40.0))
        out.append(checks._grid_tv_variant(y, EXACT.log_prob))
    return out


def test_near_floor_rejects_heun_at_31_calls_and_accepts_127():
    floor = [checks._grid_tv_variant(_sample(4000, 100 + k), EXACT.log_prob) for k in range(20)]
    checks.check_near_floor("Heun, 127 calls", _heun_tvs(64), floor)
    with pytest.raises(AssertionError, match="standard errors above the floor"):
        checks.check_near_floor("Heun, 31 calls", _heun_tvs(16), floor)
    with pytest.raises(AssertionError, match="at least 8"):
        checks.check_near_floor("Heun", _heun_tvs(64), floor[:3])
