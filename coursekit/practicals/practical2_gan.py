"""Check cells of Practical 2 (Training a GAN): test a student's code and say what to fix.

Each ``check_*`` function runs a student's function on inputs whose answer is
known (a closed form, an independent reference computed here with torch
autograd, scikit-learn or SciPy) and raises an ``AssertionError`` whose
message says what is wrong and how to fix it; it prints one ``OK`` line when
everything holds. Failures are raised explicitly (not with ``assert``) so
that they also fire under ``python -O``.

Each check takes the student's function(s) as arguments (the convention of
:mod:`coursekit.practicals.checks`): a check run before its exercise (``None``)
or on a stub that still raises ``NotImplementedError`` says which exercise to do
first; torch errors that usual mistakes produce become hints. A failure names
the exercise and the cause, never the solution's code (a test greps the
messages for code).

Exercises and their checks, in the order of the practical:

1. ``optimal_discriminator``, ``value_at_optimum`` -- :func:`check_optimal_discriminator`
2. ``discriminator_loss`` -- :func:`check_discriminator_loss`
3. ``generator_loss`` -- :func:`check_generator_loss`
4. ``train_step`` -- :func:`check_train_step`
5. ``train_gan`` -- :func:`check_train_gan`, then :func:`check_ring_samples` (modes,
   high-quality fraction and the fraction between modes, which rejects a uniform circle)
6. ``nearest_neighbour_distances``, ``class_counts`` -- :func:`check_digit_metrics`
7. ``gradient_penalty`` -- :func:`check_gradient_penalty`
8. ``wgan_critic_loss``, ``wgan_generator_loss`` -- :func:`check_wgan_losses`
9. ``drs_accept_prob`` -- :func:`check_drs_accept_prob`

Conventions (those of the practical and of :mod:`coursekit.gan`): a
discriminator returns *logits* of shape ``(n,)``; a generator has an attribute
``latent_dim`` and maps ``z`` of shape ``(n, latent_dim)`` to samples; losses
are scalars to *minimise*, averaged over each batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit import seeding
from coursekit.practicals.checks import ok as _ok
from coursekit.practicals.checks import require as _require
from coursekit.practicals.checks import student

EXERCISES = {
    "optimal_discriminator": 1,
    "value_at_optimum": 1,
    "discriminator_loss": 2,
    "generator_loss": 3,
    "train_step": 4,
    "train_gan": 5,
    "nearest_neighbour_distances": 6,
    "class_counts": 6,
    "gradient_penalty": 7,
    "wgan_critic_loss": 8,
    "wgan_generator_loss": 8,
    "drs_accept_prob": 9,
}


def _student(fn: Any, name: str) -> Callable:
    """The student's function, wrapped by the shared convention, with this practical's hints."""
    return student(fn, name, f"Exercise {EXERCISES[name]}", hints=_TORCH_ERRORS)


#: Torch errors that the usual mistakes produce, and what they mean here.
_TORCH_ERRORS = (
    ("does not require grad and does not have a grad_fn",
     "the loss you call .backward() on has no graph: the tensor it comes from was detached "
     "(.detach(), .item(), torch.no_grad()). In the generator step the fake batch G(z) must "
     "NOT be detached: only the discriminator step detaches it"),
    ("One of the differentiated Tensors",
     "the gradient is taken with respect to the interpolates, so they must require a "
     "gradient: detach them from real and fake, then mark them as requiring one, before "
     "calling the critic"),
    ("appears to not have been used in the graph",
     "the critic was not evaluated on x_hat itself: compute critic(x_hat) and differentiate "
     "it with respect to that same x_hat"),
    ("grad can be implicitly created only for scalar outputs",
     "autograd differentiates a scalar: sum the critic's outputs over the batch before "
     "differentiating (each sample keeps its own gradient), and average losses"),
    ("modified by an inplace operation",
     "a parameter was changed by optimizer.step() between computing a loss and calling its "
     ".backward(): do the discriminator step completely (loss, backward, step), then "
     "compute the generator's loss with the updated D"),
    ("backward through the graph a second time",
     "backward ran twice through the same graph: compute the fake batch for the discriminator "
     "step with .detach(), and a new forward pass (G(z), D(...)) for the generator step"),
    ("mat1 and mat2 shapes cannot be multiplied",
     "a network got an input of the wrong width: the noise has one row per real sample "
     "and G.latent_dim columns"),
    ("must match the size of tensor",
     "shapes do not broadcast: alpha should have one value per sample and size-1 "
     "dimensions after it, so that it broadcasts over points and images alike"),
)


def _f(x: Any) -> float:
    """A Python float of a scalar (tensor or number), without autograd warnings."""
    return float(x.detach()) if isinstance(x, Tensor) else float(x)


def _tensor(x: Any, what: str) -> Tensor:
    _require(isinstance(x, Tensor), f"{what} should be a torch.Tensor, got {type(x).__name__}")
    return x


def _scalar(x: Any, what: str) -> Tensor:
    _tensor(x, what)
    _require(x.ndim == 0, (
        f"{what} should be a scalar (0-d tensor), got shape {tuple(x.shape)}: average over the "
        "batch with .mean()"
    ))
    return x


def _close(a: Tensor | float, b: Tensor | float, tol: float = 1e-5) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


# ---------------------------------------------------------------------------------------------
# Exercise 1: the optimal discriminator and the value of the game at it (pen and paper)
# ---------------------------------------------------------------------------------------------


def _gaussian_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def reference_jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) of two densities on a uniform grid, by SciPy.

    ``scipy.spatial.distance.jensenshannon`` returns the square root of the JSD of the
    normalised vectors, which is the JSD of the densities up to the grid's quadrature error.
    """
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(p, q)) ** 2


def check_optimal_discriminator(
    optimal_discriminator: Callable, value_at_optimum: Callable
) -> None:
    """Check ``optimal_discriminator(p, q)`` and ``value_at_optimum(p, q, dx)``.

    ``optimal_discriminator`` maps density values ``p, q`` (arrays of the same
    shape) to ``D* = p / (p + q)``; ``value_at_optimum`` returns the Riemann sum
    of ``p log D* + q log(1 - D*)`` over a uniform grid of spacing ``dx``, i.e.
    ``V(D*, G)``. Verified: D* on known values; V(D*) = -log 4 + 2 JSD with the
    JSD from SciPy on two Gaussians; V = -log 4 for p = q; V = 0 for disjoint
    supports (where the densities are exactly 0: 0 log 0 = 0, no NaN).
    """
    d_star = _student(optimal_discriminator, "optimal_discriminator")
    value = _student(value_at_optimum, "value_at_optimum")
    p = np.array([0.5, 0.2, 1.0, 3.0])
    q = np.array([0.5, 0.6, 0.0, 1.0])
    with np.errstate(all="ignore"):
        got = np.asarray(d_star(p, q), dtype=float)
        ratio = p / q
    want = np.array([0.5, 0.25, 1.0, 0.75])
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-12):
        hint = ""
        if got.shape == want.shape and np.allclose(got, 1 - want):
            hint = (" You returned the probability of 'fake': D*(x) is the probability that "
                    "x is real.")
        elif got.shape == want.shape and np.allclose(got, ratio):
            hint = (" You returned the density ratio p / q, which is not a probability: "
                    "maximise p log D + q log(1 - D) over D in (0, 1) pointwise.")
        raise AssertionError(
            f"optimal_discriminator(p={p.tolist()}, q={q.tolist()}) returned {got.tolist()}, "
            f"expected {want.tolist()}.{hint}"
        )

    x = np.linspace(-12.0, 12.0, 4801)
    dx = float(x[1] - x[0])
    cases = {
        "two Gaussians N(0, 1) and N(1.5, 0.7^2)": (_gaussian_pdf(x, 0.0, 1.0), _gaussian_pdf(x, 1.5, 0.7)),
        "p = q = N(0, 1)": (_gaussian_pdf(x, 0.0, 1.0), _gaussian_pdf(x, 0.0, 1.0)),
        "disjoint uniforms U[-3, -1] and U[1, 3]": (
            np.where((x >= -3) & (x <= -1), 0.5, 0.0), np.where((x >= 1) & (x <= 3), 0.5, 0.0)),
    }
    for name, (pp, qq) in cases.items():
        with np.errstate(all="ignore"):
            v = value(pp, qq, dx)
        v = _f(v)
        _require(math.isfinite(v), (
            f"value_at_optimum on {name} returned {v}: where p = 0 (or q = 0) the term "
            "p log D* is 0 (0 log 0 = 0); use scipy.special.xlogy(p, D) or np.where, and do not "
            "evaluate D* where p + q = 0"
        ))
        want_v = -math.log(4.0) + 2 * reference_jsd(pp * dx, qq * dx)
        if abs(v - want_v) > 1e-4:
            hint = ""
            if abs(v * dx - want_v) < 1e-3:
                hint = " It is 1/dx times too large: multiply the sum by the grid spacing dx."
            elif abs(-v - want_v) < 1e-4:
                hint = " It has the wrong sign: V = E_p[log D*] + E_q[log(1 - D*)] (no minus)."
            elif abs(v * math.log(2) - want_v) < 1e-3:
                hint = " It is in bits: use the natural log (np.log)."
            raise AssertionError(
                f"value_at_optimum on {name}: got {v:.6f}, but -log 4 + 2 JSD = {want_v:.6f} "
                f"(JSD by SciPy).{hint}"
            )
    _ok("optimal discriminator on known values; V(D*) = -log 4 + 2 JSD on three pairs of "
        "densities (Gaussians, equal, disjoint supports)")


# ---------------------------------------------------------------------------------------------
# Exercises 2 and 3: the losses
# ---------------------------------------------------------------------------------------------


def _softplus(v: float) -> float:
    """log(1 + e^v) in plain Python floats, stable for large |v| (independent of torch)."""
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _ref_d_loss(real: list[float], fake: list[float]) -> float:
    """-mean log sigmoid(real) - mean log(1 - sigmoid(fake)), closed form."""
    return sum(_softplus(-r) for r in real) / len(real) + sum(_softplus(f) for f in fake) / len(fake)


def check_discriminator_loss(discriminator_loss: Callable) -> None:
    """Check ``discriminator_loss(real_logits, fake_logits) -> scalar`` (to minimise).

    The loss is ``-mean_i log D(x_i) - mean_j log(1 - D(G(z_j)))`` with
    ``D = sigmoid(logit)``: the binary cross-entropy with label 1 for real and 0
    for fake, i.e. minus the GAN value V(D, G). Verified against the closed form on
    batches of *different* sizes (catches sums, and a mean over the concatenated
    batch), at logits of +-1000 (must be exact and finite: no log of a sigmoid),
    the gradient by autograd, and :func:`coursekit.gan.discriminator_loss` when present.
    """
    loss_fn = _student(discriminator_loss, "discriminator_loss")
    real = [0.0, 2.0, -1.0]
    fake = [0.5, -3.0, 1.0, -0.2, 4.0]
    r, f = torch.tensor(real), torch.tensor(fake)
    out = _scalar(loss_fn(r, f), "discriminator_loss(real_logits, fake_logits)")
    want = _ref_d_loss(real, fake)
    if not _close(out, want):
        got = _f(out)
        wrongs = {
            "real and fake are swapped: real samples get label 1 (the term softplus(-logit)), "
            "fake ones label 0 (the term softplus(logit))": _ref_d_loss(fake, real),
            "the sign is flipped: this is the value V(D, G) that D maximises; the loss to "
            "minimise is -V": -want,
            "it is a sum over the samples: average each term over its batch (.mean())":
                sum(_softplus(-v) for v in real) + sum(_softplus(v) for v in fake),
            "it is the mean over the concatenated batch: average the real and the fake terms "
            "separately and add them (the batches may differ in size)":
                (sum(_softplus(-v) for v in real) + sum(_softplus(v) for v in fake))
                / (len(real) + len(fake)),
            "only the real term is there: add the fake term mean(log(1 - D(fake)))":
                sum(_softplus(-v) for v in real) / len(real),
            "only the fake term is there: add the real term mean(log D(real))":
                sum(_softplus(v) for v in fake) / len(fake),
            "it looks like the probabilities were used as logits (a sigmoid applied twice?): "
            "the inputs are logits": _ref_d_loss([1 / (1 + math.exp(-v)) for v in real],
                                                  [1 / (1 + math.exp(-v)) for v in fake]),
        }
        hint = next((h for h, v in wrongs.items() if abs(v - got) < 1e-4), (
            "use -log D(x) = softplus(-logit) and -log(1 - D(x)) = softplus(logit), "
            "each averaged over its batch"))
        raise AssertionError(
            f"discriminator_loss(real={real}, fake={fake}) = {got:.6f}, expected "
            f"{want:.6f}: {hint}"
        )
    huge_r = torch.tensor([1000.0, -1000.0])
    huge_f = torch.tensor([-1000.0, 1000.0])
    big = loss_fn(huge_r, huge_f)
    _require(torch.isfinite(big), (
        f"discriminator_loss at logits of +-1000 is {_f(big)}: log(sigmoid(x)) overflows. "
        "Use F.softplus (log(1 + e^x)) or F.binary_cross_entropy_with_logits on the logits"
    ))
    _require(abs(_f(big) - 1000.0) < 1e-3, (
        f"discriminator_loss at logits of +-1000 is {_f(big):.4f}, expected exactly 1000 "
        "(-log sigmoid(-1000) = 1000). F.binary_cross_entropy on probabilities clamps the log "
        "at -100; work on the logits: F.softplus or F.binary_cross_entropy_with_logits"
    ))
    rg = r.clone().requires_grad_(True)
    fg = f.clone().requires_grad_(True)
    out = loss_fn(rg, fg)
    _require(out.requires_grad, (
        "discriminator_loss carries no gradient: keep everything in torch (no .item(), "
        ".numpy(), math.log or torch.no_grad())"
    ))
    out.backward()
    want_r = -torch.sigmoid(-r) / len(real)  # d/dr softplus(-r)/n
    want_f = torch.sigmoid(f) / len(fake)
    _require(rg.grad is not None and torch.allclose(rg.grad, want_r, atol=1e-6)
             and fg.grad is not None and torch.allclose(fg.grad, want_f, atol=1e-6), (
        "the gradient of discriminator_loss with respect to the logits is wrong (did you "
        "detach part of the computation?)"
    ))
    try:
        from coursekit.gan import discriminator_loss as reference
    except ImportError:  # pragma: no cover - the course module is optional here
        reference = None
    if reference is not None:
        _require(_close(loss_fn(r, f), reference(r, f)),
                 "discriminator_loss disagrees with coursekit.gan.discriminator_loss")
    _ok("discriminator_loss: closed form on batches of different sizes, exact and finite at "
        "logits of +-1000, gradient by autograd")


def check_generator_loss(generator_loss: Callable) -> None:
    """Check ``generator_loss(fake_logits, saturating=False) -> scalar`` (to minimise).

    Non-saturating (default): ``-mean log D(G(z)) = mean softplus(-logit)``;
    saturating (the minimax game): ``mean log(1 - D(G(z))) = -mean softplus(logit)``.
    Verified against the closed forms, at logits of +-1000 (finite and exact), and
    through the gradients at a confidently rejected fake (logit -10): about -1/n
    per sample for the non-saturating loss, about -e^-10/n for the saturating one.
    """
    loss_fn = _student(generator_loss, "generator_loss")
    fake = [0.5, -3.0, 1.0, -0.2]
    f = torch.tensor(fake)
    n = len(fake)
    ns_want = sum(_softplus(-v) for v in fake) / n
    sat_want = -sum(_softplus(v) for v in fake) / n
    ns = _scalar(loss_fn(f), "generator_loss(fake_logits)")
    sat = _scalar(loss_fn(f, saturating=True), "generator_loss(fake_logits, saturating=True)")
    for label, got, want, other in (("non-saturating (default)", ns, ns_want, sat_want),
                                    ("saturating", sat, sat_want, ns_want)):
        g = _f(got)
        if abs(g - want) < 1e-5:
            continue
        if abs(g - other) < 1e-5:
            hint = ("you returned the other loss: saturating=False (the default) is "
                    "-mean log D(G(z)) = mean softplus(-logit); saturating=True is "
                    "mean log(1 - D(G(z))) = -mean softplus(logit)")
        elif abs(g + want) < 1e-5:
            hint = ("the sign is flipped: the generator *minimises* this loss (it wants "
                    "D(G(z)) large)")
        elif abs(g - n * want) < 1e-4:
            hint = "it is a sum: average over the batch (.mean())"
        else:
            hint = "see the formulas in the exercise; work on logits with F.softplus"
        raise AssertionError(
            f"generator_loss, {label}, on logits {fake}: got {g:.6f}, expected {want:.6f}: {hint}"
        )
    huge = torch.tensor([-1000.0, 1000.0])
    for sat_flag, want in ((False, 500.0), (True, -500.0)):
        v = loss_fn(huge, saturating=sat_flag)
        _require(torch.isfinite(v) and abs(_f(v) - want) < 1e-3, (
            f"generator_loss(saturating={sat_flag}) at logits [-1000, 1000] is {_f(v)}, "
            f"expected {want}: a log of a sigmoid under- or overflows (or F.binary_cross_entropy "
            "clamps the log at -100). Work on logits with F.softplus"
        ))
    rejected = torch.full((4,), -10.0)
    grads = {}
    for sat_flag in (False, True):
        z = rejected.clone().requires_grad_(True)
        out = loss_fn(z, saturating=sat_flag)
        _require(out.requires_grad, (
            "generator_loss carries no gradient: keep everything in torch (no .item(), .numpy())"
        ))
        out.backward()
        grads[sat_flag] = z.grad
    want_ns = -torch.sigmoid(-rejected) / 4
    want_sat = -torch.sigmoid(rejected) / 4
    _require(torch.allclose(grads[False], want_ns, rtol=1e-4, atol=1e-9)
             and torch.allclose(grads[True], want_sat, rtol=1e-3, atol=1e-9), (
        "the gradients of generator_loss at a rejected fake (logit -10) are wrong: expected "
        "about -1/n (non-saturating) and -e^-10/n (saturating) per sample"
    ))
    try:
        from coursekit.gan import generator_loss_nonsaturating, generator_loss_saturating
    except ImportError:  # pragma: no cover - the course module is optional here
        pass
    else:
        _require(_close(loss_fn(f), generator_loss_nonsaturating(f))
                 and _close(loss_fn(f, saturating=True), generator_loss_saturating(f)),
                 "generator_loss disagrees with coursekit.gan's generator losses")
    _ok("generator_loss: both closed forms, finite at logits of +-1000, gradients at a rejected "
        "fake (the saturating one vanishes)")


# ---------------------------------------------------------------------------------------------
# Exercise 4: one training step
# ---------------------------------------------------------------------------------------------


class _TinyGenerator(nn.Module):
    """z (n, 3) -> x (n, 2): a small test generator with a ``latent_dim`` attribute."""

    latent_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class _TinyCritic(nn.Module):
    """x (n, 2) -> (n,) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def _ref_gan_d_loss(d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    return F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()


def _ref_gan_g_loss(d: nn.Module, fake: Tensor) -> Tensor:
    return F.softplus(-d(fake)).mean()


def _build(cls: type[nn.Module], seed: int) -> nn.Module:
    """A test network whose parameters come from a local generator.

    The default initialisation draws from torch's global generator; it runs inside
    ``fork_rng`` so that a check leaves the notebook's random stream as it was.
    """
    with torch.random.fork_rng(devices=[]):
        module = cls()
    return _init(module, seed)


def _init(module: nn.Module, seed: int) -> nn.Module:
    """Set every parameter from a local generator (never the global one)."""
    g = seeding.generator(seed)
    with torch.no_grad():
        for p in module.parameters():  # overwrite the default init
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    return module


def _flat(module: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _grads(loss: Tensor, module: nn.Module) -> Tensor:
    g = torch.autograd.grad(loss, list(module.parameters()), allow_unused=True)
    return torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten()
                      for gi, p in zip(g, module.parameters(), strict=True)])


def _wgan_d(d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """A second pair of losses (WGAN's, no penalty): a step that ignores its loss arguments
    and hard-codes the GAN losses moves the networks differently under these."""
    return d(fake).mean() - d(real).mean()


def _wgan_g(d: nn.Module, fake: Tensor) -> Tensor:
    return -d(fake).mean()


def _grad_state(module: nn.Module) -> Tensor:
    """What is left in ``.grad`` (zeros where None): the gradients a next step inherits."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten()
                      for p in module.parameters()])


def _noise(seed: int, n: int, reuse: bool) -> tuple[Tensor, Tensor]:
    gen = seeding.generator(seed)
    z1 = torch.randn(n, _TinyGenerator.latent_dim, generator=gen)
    z2 = z1 if reuse else torch.randn(n, _TinyGenerator.latent_dim, generator=gen)
    return z1, z2


_EX4 = "Exercise 4 (train_step)"
_EX5 = "Exercise 5 (train_gan)"


def _check_one_step(step: Callable, gs: nn.Module, ds: nn.Module, opt_g: Any, opt_d: Any,
                    real: Tensor, noise_seed: int, lr: float, losses: tuple[Callable, Callable],
                    when: str) -> None:
    """Run the student's step once from the current state and compare it with one exact SGD
    step for D, then one for G with the updated D; diagnose the usual mistakes."""
    d_loss, g_loss = losses
    theta_d, theta_g = _flat(ds), _flat(gs)
    left_d, left_g = _grad_state(ds), _grad_state(gs)  # inherited from the previous step
    d0, g0 = copy.deepcopy(ds), copy.deepcopy(gs)
    z1, _ = _noise(noise_seed, len(real), False)
    gd = _grads(d_loss(d0, real, g0(z1).detach()), d0)
    d1 = copy.deepcopy(d0)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta_d - lr * gd, d1.parameters())

    def g_after(z2: Tensor, critic: nn.Module) -> Tensor:
        return theta_g - lr * _grads(g_loss(critic, g0(z2)), g0)

    out = step(gs, ds, opt_g, opt_d, real.clone(), d_loss, g_loss,
               generator=seeding.generator(noise_seed))
    _require(isinstance(out, tuple | list) and len(out) == 2, (
        f"{_EX4} should return a pair (discriminator loss, generator loss), got {out!r}"
    ))
    d_val, g_val = out
    _require(isinstance(d_val, float) and isinstance(g_val, float), (
        f"{_EX4} should return the two losses as Python floats (not tensors), got "
        f"({type(d_val).__name__}, {type(g_val).__name__})"
    ))
    got_d, got_g = _flat(ds), _flat(gs)
    if not torch.allclose(got_d, _flat(d1), atol=1e-5):
        diag = {
            "D did not change: its loss was not backpropagated or its optimizer not stepped":
                theta_d,
            "D's update used stale gradients (left over from the previous step): zero D's "
            "gradients before backpropagating its loss": theta_d - lr * (gd + left_d),
            "real and fake are swapped in the discriminator step: the loss takes the real "
            "batch first": theta_d - lr * _grads(d_loss(d0, g0(z1).detach(), real), d0),
        }
        hint = next((h for h, v in diag.items()
                     if not torch.equal(v, _flat(d1)) and torch.allclose(got_d, v, atol=1e-5)),
                    None)
        if hint is None:
            hint = ("D's parameters differ from one SGD step on the discriminator loss of "
                    "the real batch and a detached fake batch made from the first noise "
                    "draw: update D once, on its own loss only, before the generator step")
        raise AssertionError(f"{_EX4}, discriminator update {when}: {hint}")
    with torch.no_grad():
        want_d_val = d_loss(d0, real, g0(z1)).item()
    _require(abs(d_val - want_d_val) < 1e-4, (
        f"{_EX4}: the first value returned should be the discriminator loss computed before "
        "D's update, as a float"
    ))
    z2 = _noise(noise_seed, len(real), False)[1]
    fresh, reused = g_after(z2, d1), g_after(_noise(noise_seed, len(real), True)[1], d1)
    if not (torch.allclose(got_g, fresh, atol=1e-5) or torch.allclose(got_g, reused, atol=1e-5)):
        g_grad = _grads(g_loss(d1, g0(z2)), g0)
        leak = _grads(d_loss(d0, real, g0(z1)), g0)  # D-loss gradient w.r.t. G
        g_mid = copy.deepcopy(g0)  # G after a (wrong) step on the discriminator loss
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(theta_g - lr * leak, g_mid.parameters())
        after_mid = _flat(g_mid) - lr * _grads(g_loss(d1, g_mid(z2)), g_mid)
        diag = {
            "G did not change: nothing reached the generator. The fake batch of the "
            "generator step must keep its graph (only the discriminator step detaches it), "
            "and G's optimizer must step": theta_g,
            "G's update used stale gradients (left over from the previous step): zero G's "
            "gradients before backpropagating its loss": theta_g - lr * (g_grad + left_g),
            "G's update also contains the gradient of the discriminator loss: the fake batch "
            "of the discriminator step must be detached, or G's gradients zeroed right "
            "before the generator's backward pass": theta_g - lr * (g_grad + leak),
            "G's update contains the discriminator loss's gradient and stale gradients: "
            "detach the fake batch in the D step and zero G's gradients":
                theta_g - lr * (g_grad + leak + left_g),
            "G was updated against the discriminator as it was before its update: do the D "
            "step first, then compute the generator's loss with the updated D":
                g_after(z2, d0),
            "G moved in the wrong direction: it should *minimise* its loss":
                theta_g + lr * g_grad,
            "G was also stepped on the discriminator loss: the discriminator step must "
            "change D only": after_mid,
        }
        hint = next((h for h, v in diag.items()
                     if not torch.equal(v, fresh) and torch.allclose(got_g, v, atol=1e-5)), (
            "G's parameters differ from one SGD step on the generator loss of a fresh fake "
            "batch, evaluated by the updated D"))
        raise AssertionError(f"{_EX4}, generator update {when}: {hint}")


def check_train_step(train_step: Callable, seed: int = 0) -> None:
    """Check ``train_step(G, D, opt_g, opt_d, real, d_loss, g_loss, *, update_g=True, generator=None)``.

    One alternating step: draw ``z`` (``(n, G.latent_dim)``, with ``generator``), update D
    once on ``d_loss(D, real, G(z).detach())``, then (if ``update_g``) draw fresh noise and
    update G once on ``g_loss(D, G(z))`` with the *updated* D. Returns the two loss values
    as floats (``None`` for G when ``update_g`` is False).

    With SGD optimizers (no momentum) the parameters after a step have a closed form,
    computed here by autograd on copies. Two steps are run in a row from clean gradients,
    so that gradients left over by the first step show in the second (wherever the
    student zeroes them: before each backward pass or at the end of the step); the step
    is also run with a second pair of losses (WGAN's), so that a step that ignores its
    ``d_loss``/``g_loss`` arguments fails; mismatches are diagnosed by comparing with the
    results of the usual mistakes.
    """
    step = _student(train_step, "train_step")
    lr = 0.1
    g0, d0 = _build(_TinyGenerator, seed), _build(_TinyCritic, seed + 10)
    real = torch.randn(16, 2, generator=seeding.generator(seed + 1)) + 2.0
    real2 = torch.randn(16, 2, generator=seeding.generator(seed + 5)) - 1.0
    gan_losses = (_ref_gan_d_loss, _ref_gan_g_loss)

    gs, ds = copy.deepcopy(g0), copy.deepcopy(d0)
    opt_g = torch.optim.SGD(gs.parameters(), lr=lr)
    opt_d = torch.optim.SGD(ds.parameters(), lr=lr)
    _check_one_step(step, gs, ds, opt_g, opt_d, real, seed + 2, lr, gan_losses,
                    "(first step)")
    _check_one_step(step, gs, ds, opt_g, opt_d, real2, seed + 3, lr, gan_losses,
                    "(second step in a row)")

    # The losses come from the arguments: the same step with WGAN's losses.
    gw, dw = copy.deepcopy(g0), copy.deepcopy(d0)
    opt_gw = torch.optim.SGD(gw.parameters(), lr=lr)
    opt_dw = torch.optim.SGD(dw.parameters(), lr=lr)
    z1, _ = _noise(seed + 2, len(real), False)
    # D after one step on the GAN losses: what a step with hard-coded losses would give.
    d_gan = _flat(d0) - lr * _grads(_ref_gan_d_loss(d0, real, g0(z1).detach()), d0)
    try:
        _check_one_step(step, gw, dw, opt_gw, opt_dw, real, seed + 2, lr,
                        (_wgan_d, _wgan_g), "(with WGAN's losses passed in)")
    except AssertionError as err:
        if torch.allclose(_flat(dw), d_gan, atol=1e-5):
            raise AssertionError(
                f"{_EX4}: with other losses passed as d_loss and g_loss (WGAN's), the "
                "discriminator moved as under the GAN losses: train_step must call the loss "
                "functions it receives (Part 6 reuses it for WGAN-GP), not fixed ones"
            ) from None
        raise err

    # update_g=False: D moves, G must not.
    gs2, ds2 = copy.deepcopy(g0), copy.deepcopy(d0)
    opt_g2 = torch.optim.SGD(gs2.parameters(), lr=lr)
    opt_d2 = torch.optim.SGD(ds2.parameters(), lr=lr)
    out2 = step(gs2, ds2, opt_g2, opt_d2, real.clone(), _ref_gan_d_loss, _ref_gan_g_loss,
                update_g=False, generator=seeding.generator(seed + 2))
    _require(isinstance(out2, tuple | list) and len(out2) == 2 and out2[1] is None, (
        f"{_EX4}: with update_g=False train_step should return (discriminator loss, None)"
    ))
    _require(torch.equal(_flat(gs2), _flat(g0)), (
        f"{_EX4}: with update_g=False the generator changed: the discriminator step must "
        "not update G"
    ))
    _require(torch.allclose(_flat(ds2), d_gan, atol=1e-5), (
        f"{_EX4}: with update_g=False the discriminator step differs from the one with "
        "update_g=True"
    ))
    _ok("train_step: two steps in a row match one SGD step each for D then G (no stale "
        "gradients), the loss functions passed in are used, update_g=False leaves G alone")


# ---------------------------------------------------------------------------------------------
# Exercise 5: the training loop
# ---------------------------------------------------------------------------------------------


class _Spy:
    """Records the calls of a train_step (the batches, the optimizers, update_g)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, G, D, opt_g, opt_d, real, d_loss, g_loss, *, update_g=True,
                 generator=None):
        self.calls.append(dict(G=G, D=D, opt_g=opt_g, opt_d=opt_d, real=real.detach().clone(),
                               update_g=update_g, generator=generator, d_loss=d_loss,
                               g_loss=g_loss))
        return 0.5, (0.25 if update_g else None)


def check_train_gan(train_gan: Callable) -> None:
    """Check ``train_gan(G, D, data, d_loss, g_loss, *, n_steps, batch_size, lr_g, lr_d,
    n_critic=1, generator=None, step=train_step) -> {"d": [...], "g": [...]}``.

    The loop is run with a spy in place of ``step`` on data whose rows are numbered,
    so the check sees every batch: ``n_steps * n_critic`` calls, G updated on every
    ``n_critic``-th; two Adam optimizers, each over its own network's parameters with
    its own learning rate; batches of the right size, drawn from the data, different
    at each step, together covering the whole data set (not one fixed batch, not the
    first rows only); reproducible with a seeded generator; one history entry per call.
    """
    loop = _student(train_gan, "train_gan")
    n, bs, n_steps = 200, 20, 30
    data = torch.stack([torch.arange(n, dtype=torch.float32), -torch.arange(n, dtype=torch.float32)], 1)

    def run(seed: int, n_critic: int) -> tuple[_Spy, Any, nn.Module, nn.Module]:
        G, D = _build(_TinyGenerator, 0), _build(_TinyCritic, 1)
        spy = _Spy()
        hist = loop(G, D, data, _ref_gan_d_loss, _ref_gan_g_loss, n_steps=n_steps,
                    batch_size=bs, lr_g=1e-3, lr_d=3e-3, n_critic=n_critic,
                    generator=seeding.generator(seed), step=spy)
        return spy, hist, G, D

    spy, hist, G, D = run(0, 1)
    calls = spy.calls
    _require(len(calls) == n_steps, (
        f"with n_steps={n_steps} and n_critic=1 the loop called step {len(calls)} times, "
        f"expected {n_steps} ({_EX5}): call the function passed as step, not train_step "
        "itself"
    ))
    c0 = calls[0]
    _require(isinstance(c0["opt_g"], torch.optim.Adam) and isinstance(c0["opt_d"], torch.optim.Adam),
             f"{_EX5}: use torch.optim.Adam for both networks (the practical's choice)")
    _require(c0["G"] is G and c0["D"] is D, "pass the networks G and D themselves to step")
    for name, opt, net, lr in (("opt_g", c0["opt_g"], G, 1e-3), ("opt_d", c0["opt_d"], D, 3e-3)):
        params = {id(p) for group in opt.param_groups for p in group["params"]}
        _require(params == {id(p) for p in net.parameters()}, (
            f"{name} should optimise exactly the parameters of {'G' if net is G else 'D'} "
            "(one optimizer per network): are the optimizers swapped, or one optimizer shared?"
        ))
        _require(all(abs(gr["lr"] - lr) < 1e-12 for gr in opt.param_groups), (
            f"{name} has learning rate {opt.param_groups[0]['lr']}, expected {lr} "
            "(lr_g for G, lr_d for D)"
        ))
    _require(all(c["opt_g"] is c0["opt_g"] for c in calls), (
        "create the optimizers once, before the loop (a new Adam at every step forgets its "
        "moment estimates)"
    ))
    for name in ("opt_g", "opt_d"):
        betas = tuple(c0[name].param_groups[0]["betas"])
        _require(np.allclose(betas, (0.5, 0.9)), (
            f"{_EX5}: {name} has Adam betas {betas}, expected (0.5, 0.9): with the default "
            "(0.9, 0.999) the momentum keeps pushing G after D has moved, and the runs of "
            "Parts 4-6 (whose thresholds were measured over seeds with (0.5, 0.9)) behave "
            "differently"
        ))
    _require(all(c["update_g"] for c in calls), "with n_critic=1 every step updates G")
    for i, c in enumerate(calls):
        b = c["real"]
        _require(tuple(b.shape) == (bs, 2), (
            f"step {i} got a batch of shape {tuple(b.shape)}, expected ({bs}, 2) "
            "(batch_size rows of the data)"
        ))
        idx = b[:, 0].round().long()
        _require(torch.equal(b[:, 1], -b[:, 0]) and ((idx >= 0) & (idx < n)).all(), (
            f"step {i} got a batch that is not made of rows of data (transformed or noise?)"
        ))
    batches = [c["real"][:, 0].round().long() for c in calls]
    _require(len({tuple(sorted(b.tolist())) for b in batches}) > 1, (
        f"{_EX5}: every step got the same batch: draw a new random mini-batch of the data "
        "at every step, with the generator passed in"
    ))
    seen = torch.unique(torch.cat(batches))
    # 30 batches of 20 from 200 rows with replacement miss ~5 % of rows; epochs miss none.
    _require(len(seen) >= 0.8 * n, (
        f"over {n_steps} steps of {bs} rows the batches saw only {len(seen)} of the {n} data "
        f"rows ({_EX5}): sample the batches from the whole data set (not its first rows, "
        "not a few fixed batches)"
    ))
    _require(isinstance(hist, dict) and set(hist) >= {"d", "g"}, (
        "train_gan should return a dict of loss histories {'d': [...], 'g': [...]}"
    ))
    _require(len(hist["d"]) == n_steps and len(hist["g"]) == n_steps, (
        f"the histories should hold one value per step ({n_steps}), got "
        f"{len(hist['d'])} and {len(hist['g'])}"
    ))
    spy_b, *_ = run(0, 1)
    _require(all(torch.equal(a["real"], b["real"]) for a, b in zip(calls, spy_b.calls, strict=False)), (
        f"{_EX5}: two runs with the same seeded generator saw different batches: draw the "
        "batches with the generator passed in (not torch's global one)"
    ))
    spy_c, *_ = run(1, 1)
    _require(not all(torch.equal(a["real"], b["real"]) for a, b in zip(calls, spy_c.calls, strict=False)), (
        f"{_EX5}: different seeds give the same batches: draw the batches with the "
        "generator passed in"
    ))
    _require(all(c["generator"] is not None for c in calls), (
        f"{_EX5}: pass the generator on to step, so that the noise is reproducible too"
    ))
    spy5, hist5, *_ = run(0, 5)
    flags = [c["update_g"] for c in spy5.calls]
    _require(len(flags) == 5 * n_steps, (
        f"{_EX5}: with n_critic=5 and n_steps={n_steps} step should be called "
        f"{5 * n_steps} times (n_critic discriminator updates per generator update), got "
        f"{len(flags)}"
    ))
    # Any schedule with exactly one generator update in each block of n_critic calls.
    per_block = np.asarray(flags, dtype=int).reshape(n_steps, 5).sum(1)
    _require((per_block == 1).all(), (
        f"{_EX5}: with n_critic=5, update_g should be True once in every block of 5 "
        f"consecutive calls; the blocks had {sorted(set(per_block.tolist()))} generator "
        "updates"
    ))
    blocks = [spy5.calls[5 * k:5 * k + 5] for k in range(n_steps)]
    same = sum(all(torch.equal(b[0]["real"], c["real"]) for c in b[1:]) for b in blocks)
    _require(same == 0, (
        f"{_EX5}: in {same} of {n_steps} blocks of n_critic=5 calls, the same real batch was "
        "used for every critic step: draw a fresh mini-batch before every call of step, "
        "not once per generator update"
    ))
    _require(len(hist5["d"]) == 5 * n_steps, (
        f"{_EX5}: with n_critic=5 the critic's history should hold one value per call of "
        f"step ({5 * n_steps}), got {len(hist5['d'])}: record the discriminator loss on "
        "every step, not only on generator steps"
    ))
    _require(len(hist5["g"]) == n_steps, (
        f"{_EX5}: with n_critic=5 the generator history should hold one value per generator "
        f"update ({n_steps}), got {len(hist5['g'])}"
    ))
    _ok("train_gan: one Adam per network with its learning rate, fresh reproducible batches "
        "covering the data, n_critic discriminator steps per generator step")


#: The ring check's bar on the fraction of samples between two modes
#: (:func:`coursekit.gan.between_modes_fraction`, band of one std): the ring's exact mixture
#: puts 4.5 % there, a uniform circle through the centres 32 %, the practical's GAN (three
#: hidden layers of 64, 2,000 steps) 6.5-17.8 % over the notebook's seeds 0-9.
MAX_BETWEEN_MODES = 0.27


def check_ring_samples(samples: Any, *, min_modes: int = 8, min_quality: float = 0.5,
                       max_between: float = MAX_BETWEEN_MODES) -> dict:
    """Check samples of a GAN trained on the 8-Gaussian ring.

    Three measures, each able to say "bad": the modes captured and the high-quality
    fraction of :func:`coursekit.gan.mode_metrics` (an untrained or collapsed generator
    fails them), and the fraction of samples between two modes
    (:func:`coursekit.gan.between_modes_fraction`): the ring's 3-sigma balls are about half
    the spacing of the modes wide, so a uniform circle through the centres scores 96 %
    high quality and 8/8 modes, but puts 32 % of its points between modes (the exact
    mixture: 4.5 %). Returns the metrics, with ``between_modes``.
    """
    from coursekit.gan import between_modes_fraction, mode_metrics, toy_modes

    x = _tensor(torch.as_tensor(samples), "the samples")
    _require(x.ndim == 2 and x.shape[1] == 2, f"samples should be (n, 2), got {tuple(x.shape)}")
    _require(torch.isfinite(x).all(), (
        "the samples contain NaN or inf: training diverged (Exercises 2-5: losses, step, loop)"
    ))
    centers, std = toy_modes("eight_gaussians")
    xs = x.detach().double().numpy()
    m = mode_metrics(xs, centers, std)
    m["between_modes"] = between_modes_fraction(xs, centers, std)
    where = ("the losses, the step and the loop (Exercises 2-5) passed their checks, so "
             "compare your loop's settings with the exercise's (optimizers, batch size, "
             "number of steps)")
    _require(m["high_quality_fraction"] >= min_quality, (
        f"only {m['high_quality_fraction']:.1%} of the GAN's samples lie within 3 std of a "
        f"mode (expected >= {min_quality:.0%}; exact samples: 98.9 %): the generator did not "
        f"learn the ring; {where}"
    ))
    _require(m["modes_captured"] >= min_modes, (
        f"the GAN captured {m['modes_captured']} of 8 modes (expected >= {min_modes}), with "
        f"mode KL {m['mode_kl']:.2f} nats: mode collapse; {where}"
    ))
    _require(m["between_modes"] <= max_between, (
        f"{m['between_modes']:.1%} of the GAN's samples lie between two modes (expected <= "
        f"{max_between:.0%}; exact samples 4.5 %, a uniform circle 32 %): the samples are "
        f"spread along the ring instead of gathered on its 8 modes; {where}"
    ))
    _ok(f"ring: {m['modes_captured']}/8 modes, {m['high_quality_fraction']:.1%} high "
        f"quality, {m['between_modes']:.1%} between modes, KL {m['mode_kl']:.3f}")
    return m


# ---------------------------------------------------------------------------------------------
# Exercises 7 and 8: WGAN-GP
# ---------------------------------------------------------------------------------------------


class _QuadraticCritic(nn.Module):
    """f(x) = 0.5 * s * ||x||^2 summed over all non-batch dims, + 0 * a linear layer.

    Its gradient at x is s * x, so ||grad f(x_hat)|| = s * ||x_hat||: the penalty's
    value at the recorded interpolates is known in closed form. It records its inputs.
    """

    def __init__(self, scale: float = 0.7) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.detach().clone())
        return 0.5 * self.scale * x.flatten(1).pow(2).sum(1)


class _LinearCritic(nn.Module):
    """f(x) = w . flatten(x) + b: gradient w everywhere."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.w + self.b


def check_gradient_penalty(gradient_penalty: Callable) -> None:
    """Check ``gradient_penalty(critic, real, fake, generator=None) -> scalar``.

    ``mean_i (||grad_x critic(x_hat_i)||_2 - 1)^2`` at ``x_hat_i = a_i real_i + (1 - a_i) fake_i``
    with one ``a_i ~ U[0, 1]`` per sample and the norm over all non-batch dimensions.
    Verified: on a linear critic, ``(||w|| - 1)^2`` exactly, for 2-D points and for images
    (n, 1, 8, 8); on a quadratic critic that records its inputs, every input lies on its
    segment [fake_i, real_i], the a_i are uniform (KS test) and differ across the batch,
    and the value equals the closed form at the recorded points; the penalty is
    differentiable with respect to the critic's parameters (``create_graph=True``) with
    the right gradient; a seeded generator makes it reproducible.
    """
    gp = _student(gradient_penalty, "gradient_penalty")
    gen = seeding.generator(0)
    # Linear critic: the gradient is w everywhere.
    # ||w|| > 1 for the points, < 1 for the images: a one-sided penalty shows on the images.
    for shape, size in (((2,), 2.5), ((1, 8, 8), 0.4)):
        d = math.prod(shape)
        w = torch.randn(d, generator=gen)
        w = w * (size / w.norm())
        critic = _LinearCritic(w)
        real = torch.randn(32, *shape, generator=gen)
        fake = torch.randn(32, *shape, generator=gen) + 1.0
        out = _scalar(gp(critic, real, fake, generator=seeding.generator(1)),
                      "gradient_penalty(...)")
        want = (w.norm() - 1) ** 2
        if not _close(out, want, 1e-4):
            got = _f(out)
            norm = float(w.norm())
            wrongs = {
                "you penalise the squared norm: use (||grad|| - 1)^2, not (||grad||^2 - 1)^2":
                    (norm**2 - 1) ** 2,
                "you take |.| instead of the square: (||grad|| - 1)^2": abs(norm - 1),
                "it is a sum over the batch: take the mean": 32 * float(want),
                "the norm was taken over the whole batch at once: take one norm per sample, "
                "over all its non-batch dimensions": (math.sqrt(32) * norm - 1) ** 2,
                "the gradient is not normalised per sample: ||grad||_2 over the non-batch "
                "dimensions, then (norm - 1)^2": float(((w.abs() - 1) ** 2).mean()),
                "one-sided penalty (max(0, ||grad|| - 1))^2: the WGAN-GP penalty is two-sided":
                    max(0.0, norm - 1) ** 2,
            }
            hint = next((h for h, v in wrongs.items() if abs(v - got) < 1e-3 * max(1, abs(v))), (
                "the penalty is the batch mean of (gradient norm - 1)^2, one norm per sample "
                "over its non-batch dimensions"))
            raise AssertionError(
                f"gradient_penalty on a linear critic f(x) = w.x + b (inputs of shape "
                f"{(32, *shape)}): got {got:.6f}, expected (||w|| - 1)^2 = {float(want):.6f}: {hint}"
            )
    # Quadratic critic: the penalty depends on where the interpolates are.
    n = 2000
    real = torch.randn(n, 2, generator=gen) + torch.tensor([3.0, 0.0])
    fake = torch.randn(n, 2, generator=gen) - torch.tensor([0.0, 2.0])
    critic = _QuadraticCritic()
    out = gp(critic, real, fake, generator=seeding.generator(2))
    _scalar(out, "gradient_penalty(...)")
    _require(critic.inputs, "the critic was never called on the interpolates")
    x_hat = critic.inputs[-1]
    _require(tuple(x_hat.shape) == (n, 2), (
        f"the critic was called on a batch of shape {tuple(x_hat.shape)}, expected ({n}, 2): "
        "evaluate it on the interpolates x_hat (one per pair real_i, fake_i)"
    ))
    # Solve x_hat = a real + (1 - a) fake for a, per sample (least squares), and check the residual.
    diff = real - fake
    a = ((x_hat - fake) * diff).sum(1) / diff.pow(2).sum(1)
    resid = (x_hat - (a[:, None] * real + (1 - a[:, None]) * fake)).norm(dim=1)
    _require(resid.max() < 1e-4, (
        "the critic was evaluated at points that are not on the segments between real_i and "
        "fake_i: each interpolate mixes one real sample and its fake with one random "
        "weight alpha, the same for all its coordinates"
    ))
    _require(a.min() >= -1e-6 and a.max() <= 1 + 1e-6, (
        f"alpha ranges over [{a.min():.2f}, {a.max():.2f}]: draw it uniformly in [0, 1] "
        "(torch.rand, not torch.randn)"
    ))
    for end, which in ((1.0, "real"), (0.0, "fake")):
        _require(not torch.allclose(a, torch.full_like(a, end), atol=1e-6), (
            f"the critic's gradient was taken at the {which} samples themselves: take it at "
            "random points on the segments between real and fake samples"
        ))
    _require(a.std() > 0.1, (
        "every sample got the same alpha: draw one alpha per sample"
    ))
    from scipy.stats import kstest

    pval = kstest(a.numpy(), "uniform").pvalue
    # A correct uniform sampler fails this with probability 1e-4.
    _require(pval > 1e-4, (
        f"alpha is not uniform on [0, 1] (KS p-value {pval:.1e} on {n} values): torch.rand"
    ))
    s = critic.scale.item()
    want = ((s * x_hat.norm(dim=1) - 1) ** 2).mean()
    _require(_close(out, want, 1e-4), (
        f"gradient_penalty on the critic f(x) = 0.35 ||x||^2 is {out.item():.5f}, but at the points "
        f"it evaluated the critic (||grad f|| = 0.7 ||x_hat||) the penalty is {float(want):.5f}: "
        "take the gradient at the interpolates themselves, the very tensor the critic was "
        "called on"
    ))
    _require(out.requires_grad, (
        "the penalty carries no gradient to the critic's parameters: the input gradient must "
        "itself be differentiable (autograd must build a graph for it) so that the critic's "
        "optimizer can minimise the penalty"
    ))
    (g_scale,) = torch.autograd.grad(out, critic.scale)
    r = x_hat.norm(dim=1)
    want_g = (2 * (s * r - 1) * r).mean()  # d/ds mean (s ||x|| - 1)^2
    _require(_close(g_scale, want_g, 1e-3), (
        "the gradient of the penalty with respect to the critic's parameters is wrong: is the "
        "input gradient differentiable, and are the interpolates detached from real and fake "
        "before they are marked as requiring a gradient?"
    ))
    o1 = gp(_QuadraticCritic(), real[:50], fake[:50], generator=seeding.generator(5))
    o2 = gp(_QuadraticCritic(), real[:50], fake[:50], generator=seeding.generator(5))
    o3 = gp(_QuadraticCritic(), real[:50], fake[:50], generator=seeding.generator(6))
    _require(_close(o1, o2, 1e-7) and not _close(o1, o3, 1e-7), (
        "the penalty is not reproducible with a seeded generator: draw alpha uniformly with "
        "the generator passed in"
    ))
    _ok("gradient_penalty: (||w|| - 1)^2 on linear critics (2-D and images), uniform per-sample "
        "interpolates, closed form on a quadratic critic, differentiable in the critic")


def _check_penalty_location(c_loss: Callable) -> None:
    """On a quadratic critic f(x) = 0.35 ||x||^2 (gradient norm 0.7 ||x||), the penalty
    depends on where it is evaluated: compare ``wgan_critic_loss`` at gp_weight 1 minus its
    Wasserstein term with the expected penalty at uniform interpolates (quadrature over
    alpha per pair), within 5 standard errors of the alpha draws."""
    gen = seeding.generator(3)
    n = 4000
    real = 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64) + torch.tensor([3.0, 0.0])
    fake = 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64) - torch.tensor([0.0, 2.0])
    critic = _QuadraticCritic().double()
    s = critic.scale.item()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)  # the global stream is restored on exit
        got = _f(c_loss(critic, real, fake, gp_weight=1.0))
    with torch.no_grad():
        got -= float(critic(fake).mean() - critic(real).mean())
    nodes, weights = np.polynomial.legendre.leggauss(64)
    a = torch.as_tensor((nodes + 1) / 2)  # (64,) alpha on [0, 1]; weights sum to 2
    w = torch.as_tensor(weights / 2)
    pts = a[:, None, None] * real + (1 - a[:, None, None]) * fake  # (64, n, 2)
    pen = (s * pts.norm(dim=2) - 1) ** 2  # (64, n)
    mean_i = (w[:, None] * pen).sum(0)  # (n,) E_alpha per pair
    var_i = (w[:, None] * pen**2).sum(0) - mean_i**2
    want = float(mean_i.mean())
    se = float(var_i.mean().sqrt()) / math.sqrt(n)
    if abs(got - want) > 5 * se:
        at = {"real samples": real, "fake samples": fake}
        hint = next((f"the penalty was evaluated at the {k} instead of at random points "
                     "between real and fake samples" for k, v in at.items()
                     if abs(got - float(((s * v.norm(dim=1) - 1) ** 2).mean())) < 1e-3),
                    "the penalty term differs from the gradient penalty at random "
                    "interpolates between each real sample and its fake")
        raise AssertionError(
            f"wgan_critic_loss (Exercise 8) on a quadratic critic, gp_weight=1: the penalty "
            f"term is {got:.4f}, expected {want:.4f} +- {5 * se:.4f}: {hint}. Call your "
            "gradient_penalty of Exercise 7 with the real and the fake batch"
        )


def check_wgan_losses(wgan_critic_loss: Callable,
                      wgan_generator_loss: Callable) -> None:
    """Check ``wgan_critic_loss(D, real, fake, gp_weight=...)`` and ``wgan_generator_loss(D, fake)``.

    Critic loss: ``mean D(fake) - mean D(real) + gp_weight * penalty`` (minus the
    Kantorovich-Rubinstein estimate, plus the penalty); generator loss: ``-mean D(fake)``.
    Checked on a linear critic, where the penalty is ``(||w|| - 1)^2`` exactly.
    """
    # The student's losses draw alpha from torch's global stream (no generator argument):
    # run them on a fork of it, so that the notebook's stream is left as it was.
    with torch.random.fork_rng(devices=[]):
        _check_wgan_losses(wgan_critic_loss, wgan_generator_loss)


def _check_wgan_losses(wgan_critic_loss: Callable, wgan_generator_loss: Callable) -> None:
    c_loss = _student(wgan_critic_loss, "wgan_critic_loss")
    g_loss = _student(wgan_generator_loss, "wgan_generator_loss")
    gen = seeding.generator(0)
    w = torch.tensor([1.5, -0.8])
    critic = _LinearCritic(w)
    real = torch.randn(40, 2, generator=gen) + 2.0
    fake = torch.randn(30, 2, generator=gen)
    pen = float((w.norm() - 1) ** 2)
    with torch.no_grad():
        kr = float(critic(real).mean() - critic(fake).mean())
    for lam in (0.0, 1.0, 10.0):
        try:
            got = _f(c_loss(critic, real[:30], fake, gp_weight=lam))
        except TypeError as err:
            raise AssertionError(f"wgan_critic_loss should accept gp_weight=...: {err}") from None
        with torch.no_grad():
            kr30 = float(critic(real[:30]).mean() - critic(fake).mean())
        want = -kr30 + lam * pen
        if abs(got - want) > 1e-4:
            if abs(got - (kr30 + lam * pen)) < 1e-4:
                hint = ("the sign of the Wasserstein term is flipped: the critic *maximises* "
                        "mean D(real) - mean D(fake), so its loss is mean D(fake) - mean D(real)")
            elif lam == 0.0:
                hint = "without the penalty the loss is mean D(fake) - mean D(real)"
            elif abs(got - (-kr30 + pen)) < 1e-4:
                hint = "the penalty is not multiplied by gp_weight"
            elif abs(got + kr30) < 1e-4:
                hint = "the penalty is missing: add gp_weight times your gradient penalty"
            else:
                hint = ("the critic's loss is minus the Wasserstein estimate plus gp_weight "
                        "times the penalty (Exercise 8's formula)")
            raise AssertionError(
                f"wgan_critic_loss on a linear critic with gp_weight={lam}: got {got:.5f}, "
                f"expected {want:.5f}: {hint}"
            )
    del kr
    _check_penalty_location(c_loss)
    got = _f(g_loss(critic, fake))
    with torch.no_grad():
        want = -float(critic(fake).mean())
    _require(abs(got - want) < 1e-5, (
        f"wgan_generator_loss = {got:.5f}, expected -mean D(fake) = {want:.5f}"
        + (": the sign is flipped (the generator wants high critic scores)"
           if abs(got + want) < 1e-5 else "")
    ))
    f = fake.clone().requires_grad_(True)
    g_loss(critic, f).backward()
    _require(f.grad is not None and torch.allclose(f.grad, -w.expand(30, 2) / 30, atol=1e-6), (
        "no (or a wrong) gradient reaches the fake samples through wgan_generator_loss: do not "
        "detach the fake batch here"
    ))
    _ok("WGAN-GP losses: critic loss = mean D(fake) - mean D(real) + gp_weight * penalty, "
        "generator loss = -mean D(fake)")


# ---------------------------------------------------------------------------------------------
# Exercise 9: discriminator rejection sampling
# ---------------------------------------------------------------------------------------------


def _ref_accept(delta: float, gamma: float, eps: float) -> float:
    """sigma(F) with F = delta - log(1 - exp(delta - eps)) - gamma, in plain floats (delta <= 0)."""
    f = delta - math.log(-math.expm1(delta - eps)) - gamma
    return 1 / (1 + math.exp(-f)) if f > -700 else 0.0


def check_drs_accept_prob(drs_accept_prob: Callable) -> None:
    """Check ``drs_accept_prob(logits, max_logit, gamma=0.0, eps=1e-6) -> (n,)`` probabilities.

    Azadi et al. (2019): ``p = sigmoid(F)``, ``F = Delta - log(1 - exp(Delta - eps)) - gamma``,
    ``Delta = logits - max_logit`` clamped at 0 (a logit above the estimated maximum is
    treated as the maximum). Verified against the formula in float64 (plain Python),
    at the edges (Delta = 0, Delta = -1000, logits above the maximum: finite, in [0, 1]),
    monotone in the logit and decreasing in gamma, and against
    :func:`coursekit.gan.drs_accept_prob` when present.
    """
    acc = _student(drs_accept_prob, "drs_accept_prob")
    deltas = [0.0, -1e-3, -0.5, -2.0, -7.0, -30.0]
    m = 1.7
    logits = torch.tensor([m + d for d in deltas], dtype=torch.float64)
    for gamma in (0.0, 2.0, -1.0):
        got = _tensor(acc(logits, m, gamma=gamma), "drs_accept_prob(...)")
        _require(got.shape == logits.shape, (
            f"drs_accept_prob returned shape {tuple(got.shape)}, expected {tuple(logits.shape)} "
            "(one probability per logit)"
        ))
        want = torch.tensor([_ref_accept(d, gamma, 1e-6) for d in deltas], dtype=torch.float64)
        if not torch.allclose(got.double(), want, rtol=1e-4, atol=1e-9):
            g = got.double()
            if torch.allclose(g, torch.tensor([_ref_accept(d, -gamma, 1e-6) for d in deltas],
                                               dtype=torch.float64), rtol=1e-4, atol=1e-9):
                hint = "gamma has the wrong sign: F = ... - gamma (larger gamma rejects more)"
            elif torch.allclose(g, torch.exp(torch.tensor(deltas, dtype=torch.float64)), rtol=1e-3):
                hint = ("you returned exp(Delta), the plain rejection-sampling ratio: apply the "
                        "sigmoid to F = Delta - log(1 - exp(Delta - eps)) - gamma")
            elif not torch.isfinite(g).all():
                hint = ("NaN or inf: log(1 - exp(Delta - eps)) loses everything near "
                        "Delta = 0 when computed as written; compute 1 - exp(.) with a "
                        "function made for small arguments")
            else:
                hint = ("see the acceptance probability of the exercise: the sigmoid of F, "
                        "with Delta the logit minus the estimated maximum")
            raise AssertionError(
                f"drs_accept_prob at Delta = {deltas}, gamma = {gamma}: got "
                f"{[round(v, 6) for v in g.tolist()]}, expected "
                f"{[round(v, 6) for v in want.tolist()]}: {hint}"
            )
    edge = torch.tensor([m, m + 5.0, m - 1000.0, m + 1e-9])
    got = acc(edge, m)
    _require(torch.isfinite(got).all() and (got >= 0).all() and (got <= 1).all(), (
        f"drs_accept_prob at Delta = [0, +5, -1000, +1e-9] gave {got.tolist()}: probabilities "
        "must be finite and in [0, 1]. A logit above the estimated maximum counts as the "
        "maximum (Delta is never above 0), and 1 - exp(u) near u = 0 needs a function made "
        "for it (exp minus one), not a subtraction"
    ))
    _require(got[0] > 0.999 and got[1] > 0.999 and got[3] > 0.999, (
        f"a sample at (or above) the maximum logit should be accepted with probability ~1, got "
        f"{got[[0, 1, 3]].tolist()}"
    ))
    _require(got[2] < 1e-12, f"a sample 1000 below the maximum logit should be rejected, got {got[2]}")
    grid = torch.linspace(m - 20, m, 200, dtype=torch.float64)
    p0 = acc(grid, m)
    _require((p0.diff() >= -1e-12).all(), "the acceptance probability should grow with the logit")
    _require((acc(grid, m, gamma=1.0) <= p0 + 1e-12).all(), (
        "a larger gamma should lower every acceptance probability (F = ... - gamma)"
    ))
    try:
        from coursekit.gan import drs_accept_prob as reference
    except ImportError:  # pragma: no cover
        reference = None
    if reference is not None:
        _require(torch.allclose(p0, reference(grid, m), rtol=1e-6, atol=1e-12),
                 "drs_accept_prob disagrees with coursekit.gan.drs_accept_prob")
    _ok("drs_accept_prob: the formula for three gammas, finite at the edges, monotone in the "
        "logit, decreasing in gamma")


# ---------------------------------------------------------------------------------------------
# Exercise 6: judging the digit samples
# ---------------------------------------------------------------------------------------------


def check_digit_metrics(nearest_neighbour_distances: Callable,
                        class_counts: Callable) -> None:
    """Check ``nearest_neighbour_distances(x, reference) -> (n,)`` and ``class_counts(images, classifier) -> (10,)``.

    The distances (Euclidean, over the 64 pixels) are compared with scikit-learn's
    ``NearestNeighbors``; a point of ``x`` that is also in ``reference`` must get 0 (the
    set is not the same as ``x``: no leave-one-out). The counts are compared with
    ``np.bincount`` of the classifier's predictions, with all 10 classes present (zeros too).
    """
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

    nn_d = _student(nearest_neighbour_distances, "nearest_neighbour_distances")
    counts_fn = _student(class_counts, "class_counts")
    gen = seeding.generator(0)
    ref = torch.rand(50, 1, 8, 8, generator=gen)
    x = torch.rand(7, 1, 8, 8, generator=gen)
    x[3] = ref[11]
    got = torch.as_tensor(nn_d(x, ref)).double()
    want = NearestNeighbors(n_neighbors=1).fit(ref.flatten(1).numpy()).kneighbors(
        x.flatten(1).numpy())[0][:, 0]
    want = torch.as_tensor(want).double()
    _require(got.shape == (7,), (
        f"nearest_neighbour_distances returned shape {tuple(got.shape)}, expected (7,): one "
        "distance per row of x (the minimum over the reference set)"
    ))
    # 1e-2: torch.cdist computes |a|^2 + |b|^2 - 2 a.b in float32 for these sizes, whose
    # rounding leaves up to ~3e-3 at a zero distance; every mistake below is off by > 0.5.
    if not torch.allclose(got, want, atol=1e-2):
        hint = ""
        if torch.allclose(got, want**2, atol=1e-2):
            hint = " These are squared distances: take the square root."
        elif got[3] > 1e-2:
            hint = (" A point that is in the reference set must get distance 0: do not drop "
                    "the closest match.")
        elif torch.allclose(got, want.mean() * torch.ones(7).double(), atol=1e-3):
            hint = " Return one distance per point, not the average."
        raise AssertionError(
            f"nearest_neighbour_distances differs from scikit-learn's NearestNeighbors by up to "
            f"{(got - want).abs().max():.3g}.{hint} Flatten the images to (n, 64); each row of x "
            "gets its smallest Euclidean distance to the rows of reference"
        )
    y = torch.arange(50) % 10
    y[y == 9] = 1  # no 9 at all: its count must be 0 (and a bincount is too short)
    clf = KNeighborsClassifier(n_neighbors=1).fit(ref.flatten(1).numpy(), y.numpy())
    images = torch.cat([ref[:40], x])
    got_c = np.asarray(counts_fn(images, clf))
    want_c = np.bincount(clf.predict(images.flatten(1).numpy()), minlength=10)
    _require(got_c.shape == (10,), (
        f"class_counts returned shape {got_c.shape}, expected (10,): one count per class, "
        "including the classes that never occur (count 0)"
    ))
    _require(np.array_equal(got_c, want_c), (
        f"class_counts returned {got_c.tolist()}, expected {want_c.tolist()}: the classifier "
        "was fitted on flattened images (one row of 64 pixels each): predict on the images "
        "flattened the same way and count each class"
    ))
    _ok("nearest_neighbour_distances matches scikit-learn; class_counts counts all 10 classes")
