"""Energy-based models: Langevin sampling, grid normalization, contrastive-divergence training.

An energy-based model (EBM) is a density known up to its normalizing constant,

    p_theta(x) = exp(-E_theta(x)) / Z(theta),   Z(theta) = int exp(-E_theta(u)) du,

so ``log p_theta(x) = -E_theta(x) - log Z(theta)`` and (slides, "Training")

    grad_theta log p_theta(x) = -grad_theta E_theta(x) + E_{u ~ p_theta}[grad_theta E_theta(u)].

In 2-D, ``Z`` can be computed on a grid (:func:`grid_log_partition`); in general it cannot,
and the expectation is estimated with samples from a Markov chain, here the unadjusted
Langevin algorithm (:func:`langevin`). :func:`train_ebm` puts the two together (contrastive
divergence with short-run or persistent chains).

Energies are callables mapping an ``(n, d)`` tensor to an ``(n,)`` tensor.

References: LeCun et al. 2006; Hinton 2002; Welling & Teh 2011; Roberts & Tweedie 1996;
Du & Mordatch 2019; Nijkamp et al. 2019; Miyato et al. 2018; Song & Kingma 2021.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from coursekit.utils import train
from coursekit.validation import (
    GeneratorLike,
    as_generator,
    as_tensor,
    check_nonnegative,
    check_positive,
    check_positive_int,
    module_dtype_device,
)

Energy = Callable[[torch.Tensor], torch.Tensor]


def _points(energy: Energy, x: object, name: str) -> torch.Tensor:
    """``x`` as an (n, d) tensor, in the energy's dtype and device when it is a model."""
    if not callable(energy):
        raise TypeError(f"energy: expected a callable (n, d) -> (n,), got {type(energy).__name__}")
    like = energy if isinstance(energy, nn.Module) else None
    return as_tensor(x, name, like=like, ndim=2)


def energy_grad(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    """``grad_x E(x)`` by autograd, shape (n, d), without touching the energy's parameters.

    ``torch.autograd.grad`` with ``inputs=x`` only differentiates with respect to ``x``, so a
    sampling chain never accumulates gradients into the model's ``.grad`` fields.
    """
    x = _points(energy, x, "x")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x)
        if e.shape != (x.shape[0],):
            raise ValueError(f"energy: expected an output of shape ({x.shape[0]},), got {tuple(e.shape)}")
        (g,) = torch.autograd.grad(e.sum(), x)
    return g


def langevin(
    energy: Energy,
    x0: torch.Tensor,
    step_size: float,
    n_steps: int,
    *,
    noise: bool = True,
    return_chain: bool = False,
    generator: GeneratorLike = None,
    noise_scale: float = 1.0,
    clip_energy_grad: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Unadjusted Langevin algorithm (ULA): ``x <- x - eta grad E(x) + sqrt(2 eta) xi``.

    For small ``eta`` and many steps the chain's law approaches ``p(x) ∝ exp(-E(x))``; for a
    finite ``eta`` it is biased (no Metropolis correction; Roberts & Tweedie 1996). With
    ``noise=False`` the update is plain gradient descent on ``E``.

    Args:
        energy: maps (n, d) to (n,) energies; differentiable in x.
        x0: (n, d) starting points, one chain per row.
        step_size: eta > 0.
        n_steps: number of updates, >= 1.
        noise: add the Gaussian term (False: gradient descent).
        return_chain: also return every state.
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state) for the noise, on the device of the chains.
        noise_scale: multiplies the noise term (1 = exact Langevin; < 1 is the "cold"
            sampler used to train EBMs, Du & Mordatch 2019; Nijkamp et al. 2019).
        clip_energy_grad: if set, clip each coordinate of ``grad E`` to
            ``[-clip_energy_grad, clip_energy_grad]``
            (a stabilization trick for learned energies).

    Returns:
        x: (n, d) final states; with ``return_chain``, also chain: (n_steps + 1, n, d)
        including ``x0``.
    """
    x0 = _points(energy, x0, "x0")
    eta = check_positive(step_size, "step_size")
    n_steps = check_positive_int(n_steps, "n_steps")
    noise_scale = check_nonnegative(noise_scale, "noise_scale")
    generator = as_generator(generator, "generator", device=x0.device)
    if clip_energy_grad is not None:
        clip_energy_grad = check_positive(clip_energy_grad, "clip_energy_grad")
    x = x0.detach().clone()
    chain = [x] if return_chain else None
    sigma = noise_scale * math.sqrt(2.0 * eta)
    for _ in range(n_steps):
        g = energy_grad(energy, x)
        if clip_energy_grad is not None:
            g = g.clamp(-clip_energy_grad, clip_energy_grad)
        x = x - eta * g
        if noise:
            xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + sigma * xi
        if not torch.isfinite(x).all():
            raise ValueError("langevin: the chain diverged (non-finite state); lower step_size")
        if chain is not None:
            chain.append(x)
    if return_chain:
        return x, torch.stack(chain)
    return x


def ula_gaussian_variance(sigma2: float, step_size: float) -> float:
    """Stationary variance of ULA on ``E(x) = x^2 / (2 sigma2)`` (exact, per coordinate).

    The chain is the AR(1) process ``x' = (1 - eta/sigma2) x + sqrt(2 eta) xi``; its stationary
    variance ``v`` solves ``v = (1 - eta/sigma2)^2 v + 2 eta``, i.e.
    ``v = sigma2 / (1 - eta / (2 sigma2))``: too large by a factor that -> 1 as eta -> 0.
    Stable only for ``eta < 2 sigma2``.
    """
    sigma2 = check_positive(sigma2, "sigma2")
    eta = check_positive(step_size, "step_size")
    if eta >= 2.0 * sigma2:
        raise ValueError(f"step_size: ULA on this Gaussian diverges for step_size >= {2 * sigma2}")
    return sigma2 / (1.0 - eta / (2.0 * sigma2))


def grid_points(
    lim: float = 4.0, n: int = 200, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, float]:
    """Cell centres of an ``n x n`` grid over ``[-lim, lim]^2`` and the area of one cell.

    Returns:
        points: (n * n, 2) tensor of ``dtype`` (row-major, x_1 varying fastest);
        cell_area: ``(2 lim / n)^2``.
    """
    lim = check_positive(lim, "lim")
    n = check_positive_int(n, "n", minimum=2)
    h = 2.0 * lim / n
    ticks = -lim + h * (torch.arange(n, dtype=dtype) + 0.5)  # midpoints
    yy, xx = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1), h * h


def grid_log_partition(
    energy: Energy, lim: float = 4.0, n: int = 200, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``log Z = log int exp(-E(x)) dx`` over ``[-lim, lim]^2`` by the midpoint rule.

    ``log Z ≈ logsumexp_j(-E(x_j)) + log(cell area)``: the log-sum-exp never overflows, even
    for energies of size 1e3. Differentiable in the energy's parameters (used to check the
    likelihood gradient). Accurate when the mass outside the box is negligible.

    Returns:
        a 0-dim tensor.
    """
    if not callable(energy):
        raise TypeError(f"energy: expected a callable (n, 2) -> (n,), got {type(energy).__name__}")
    points, area = grid_points(lim, n, dtype)
    if isinstance(energy, nn.Module):
        points = points.to(module_dtype_device(energy)[1])  # the grid lives with the model
    e = energy(points)
    if e.shape != (points.shape[0],):
        raise ValueError(f"energy: expected an output of shape ({points.shape[0]},), got {tuple(e.shape)}")
    return torch.logsumexp(-e, dim=0) + math.log(area)


def grid_log_prob(energy: Energy, x: torch.Tensor, lim: float = 4.0, n: int = 200) -> torch.Tensor:
    """Grid-normalized log-density ``-E(x) - log Z`` at ``x: (m, 2)``; returns (m,).

    The grid has the dtype of ``x``.
    """
    x = _points(energy, x, "x")
    if x.shape[1] != 2:
        raise ValueError(f"x: expected points of shape (m, 2) (a 2-D grid), got {tuple(x.shape)}")
    return -energy(x) - grid_log_partition(energy, lim, n, x.dtype)


class EnergyMLP(nn.Module):
    """A small energy network ``E_theta: R^d -> R`` (an MLP with SiLU activations).

    SiLU is smooth, so ``grad_x E`` (what Langevin uses) is continuous. With
    ``spectral=True`` every linear layer is spectrally normalized (Miyato et al. 2018):
    its largest singular value is 1, so E is Lipschitz and its landscape cannot develop the
    cliffs that make Langevin chains explode; ``out_scale`` (a learned scalar) restores the
    range of energies. On small 2-D problems with a short training budget the unconstrained
    network (the default) learns faster; spectral normalization pays off on larger models.

    Args:
        dim: input dimension.
        hidden: hidden width.
        n_hidden: number of hidden layers.
        spectral: apply spectral normalization.
        out_scale: initial value of the learned output scale (the Lipschitz bound of E
            when ``spectral``).
    """

    def __init__(
        self, dim: int = 2, hidden: int = 64, n_hidden: int = 2, spectral: bool = False,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        dim = check_positive_int(dim, "dim")
        hidden = check_positive_int(hidden, "hidden")
        n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.dim = dim
        sizes = [dim] + [hidden] * n_hidden + [1]
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            lin = nn.Linear(sizes[i], sizes[i + 1])
            layers.append(spectral_norm(lin) if spectral else lin)
            if i < len(sizes) - 2:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)
        self.log_out_scale = nn.Parameter(torch.tensor(math.log(check_positive(out_scale, "out_scale"))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (n, dim)`` -> energies ``(n,)``."""
        x = as_tensor(x, "x", like=self, shape=(None, self.dim), min_rows=0)
        return self.log_out_scale.exp() * self.net(x).squeeze(-1)


def contrastive_divergence_loss(
    energy: Energy, x: torch.Tensor, u: torch.Tensor, energy_reg: float = 0.0
) -> torch.Tensor:
    """The EBM training loss of one step: ``mean E(x) - mean E(u) + reg (mean E(x)^2 + mean E(u)^2)``.

    Its gradient in the parameters is the negative log-likelihood gradient
    ``E_data[grad E] - E_model[grad E]`` with the model expectation replaced by the samples
    ``u`` (the slides' "practical gradient step"); the square term keeps the energies near 0
    so that they cannot drift off together (Du & Mordatch 2019).

    Args:
        energy: the energy network, (n, d) -> (n,).
        x: (n, d) data; u: (m, d) samples from the model (Langevin chains), not differentiated.
        energy_reg: the weight of the square term, >= 0.

    Returns:
        the loss, a scalar tensor.
    """
    energy_reg = check_nonnegative(energy_reg, "energy_reg")
    x, u = _points(energy, x, "x"), _points(energy, u, "u")
    if u.shape[1] != x.shape[1]:
        raise ValueError(f"u: expected {x.shape[1]} coordinates per row like x, got {u.shape[1]}")
    return _cd_loss(energy(x), energy(u.detach()), energy_reg)


def _cd_loss(e_data: torch.Tensor, e_model: torch.Tensor, energy_reg: float) -> torch.Tensor:
    # One forward pass per step in train_ebm: a spectrally normalised energy updates its power
    # iteration at every forward, so the energies are computed once and shared.
    return e_data.mean() - e_model.mean() + energy_reg * (
        e_data.pow(2).mean() + e_model.pow(2).mean())


def train_ebm(
    model: nn.Module,
    data: torch.Tensor,
    *,
    n_steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    langevin_steps: int = 20,
    step_size: float = 0.01,
    noise_scale: float = 1.0,
    persistent: bool = True,
    buffer_size: int = 4096,
    reinit_prob: float = 0.05,
    init_lim: float = 4.0,
    energy_reg: float = 0.1,
    clip_energy_grad: float | None = None,
    clip_grad: float | None = 1.0,
    generator: GeneratorLike = None,
    desc: str = "training EBM",
    show_progress: bool = True,
) -> dict[str, list[float]]:
    """Contrastive-divergence training: pull energy down on data, push it up on model samples.

    One step (the slides' "practical gradient step"):

    1. take a mini-batch of data ``x`` and negative samples ``u`` from Langevin chains on the
       current energy (``langevin_steps`` steps; started from a replay buffer of past samples
       when ``persistent``, with probability ``reinit_prob`` from uniform noise on
       ``[-init_lim, init_lim]^d``; otherwise all from noise: "short-run" chains);
    2. loss ``mean E(x) - mean E(u) + energy_reg * mean(E(x)^2 + E(u)^2)``: its gradient is
       the negative log-likelihood gradient ``grad E(x) - E_{p_theta}[grad E]`` with the
       expectation replaced by the chains' samples; the square term keeps energies small so
       that they cannot drift off together (Du & Mordatch 2019);
    3. an Adam step (betas (0, 0.999)), with the parameter gradient norm clipped to
       ``clip_grad``, through the shared loop :func:`coursekit.utils.train` (tqdm bar;
       mini-batches drawn without replacement, reshuffled every epoch).

    Args:
        model: energy network, (n, d) -> (n,).
        data: (N, d) training points (tensor or array, any float dtype).
        n_steps: number of parameter updates.
        langevin_steps, step_size, noise_scale, clip_energy_grad: passed to :func:`langevin`.
        clip_grad: None or a number > 0, the bound on the parameters' gradient norm (the
            same argument as in :func:`coursekit.utils.train`).
        generator: a ``torch.Generator``, an int seed or None (a seed drawn from torch's
            global state) for batches, chain initializations and noise.

    Returns:
        histories: ``{"loss": ..., "E(data)": ..., "E(samples)": ...}`` (one float per step).
        The final chain states are stored as ``model.buffer`` (a (buffer_size, d) tensor).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module energy, got {type(model).__name__}")
    data = as_tensor(data, "data", like=model, ndim=2, detach=True)
    n_steps = check_positive_int(n_steps, "n_steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    langevin_steps = check_positive_int(langevin_steps, "langevin_steps")
    step_size = check_positive(step_size, "step_size")
    noise_scale = check_nonnegative(noise_scale, "noise_scale")
    buffer_size = check_positive_int(buffer_size, "buffer_size")
    init_lim = check_positive(init_lim, "init_lim")
    reinit_prob = check_nonnegative(reinit_prob, "reinit_prob")
    if reinit_prob > 1.0:
        raise ValueError(f"reinit_prob: expected a probability in [0, 1], got {reinit_prob}")
    energy_reg = check_nonnegative(energy_reg, "energy_reg")
    if clip_energy_grad is not None:
        clip_energy_grad = check_positive(clip_energy_grad, "clip_energy_grad")
    lr = check_positive(lr, "lr")
    dtype, device = module_dtype_device(model)
    generator = as_generator(generator, "generator", device=device)
    # utils.train shuffles on the CPU; on a GPU its generator is seeded from ours.
    shuffle = generator if device.type == "cpu" else torch.Generator().manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item()))
    d = data.shape[1]

    def noise_init(m: int) -> torch.Tensor:
        u = torch.rand(m, d, generator=generator, dtype=dtype, device=device)
        return init_lim * (2.0 * u - 1.0)  # uniform on [-init_lim, init_lim]^d

    buffer = noise_init(buffer_size)
    hist: dict[str, list[float]] = {"loss": [], "E(data)": [], "E(samples)": []}

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        if persistent:
            idx = torch.randint(buffer_size, (m,), generator=generator, device=device)
            start = buffer[idx]
            fresh = torch.rand(m, generator=generator, dtype=dtype, device=device) < reinit_prob
            start[fresh] = noise_init(int(fresh.sum()))
        else:
            idx, start = None, noise_init(m)
        # Inside `cached()`, parametrized weights (spectral norm) are computed once per chain
        # instead of at every Langevin step; computing them under no_grad keeps the chain's
        # graphs small (the chain needs gradients in x only).
        with parametrize.cached():
            with torch.no_grad():
                model(start[:1])
            u = langevin(model, start, step_size, langevin_steps, noise_scale=noise_scale,
                         clip_energy_grad=clip_energy_grad, generator=generator)
        if idx is not None:
            buffer[idx] = u
        e_data, e_model = model(x), model(u)
        hist["E(data)"].append(e_data.mean().item())
        hist["E(samples)"].append(e_model.mean().item())
        return _cd_loss(e_data, e_model, energy_reg)  # contrastive_divergence_loss

    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.0, 0.999))
    hist["loss"] = train(
        loss_fn, optimizer, data, n_steps=n_steps, batch_size=batch_size, clip_grad=clip_grad,
        generator=shuffle, desc=desc, show_progress=show_progress,
    )
    model.buffer = buffer
    return hist
