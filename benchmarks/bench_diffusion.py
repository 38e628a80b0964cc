"""Benchmark: diffusion samplers against NFE, with the exact score of a 2-D Gaussian mixture.

Run ``python benchmarks/bench_diffusion.py`` (a few minutes; ``--quick`` for a smaller run).
A script, not a test: nothing asserts, the figures go to the README.

1. **Exact score** (``diffusion.example_mixture()``; its denoiser is exact, so every error
   is discretisation error). For DDPM ancestral (linear betas, T = 1000 and sub-schedules),
   DDIM (eta = 0, trailing), Euler and Heun on the EDM grid (rho = 7, sigma in [0.002, 80]),
   flow matching's ODE (``flow_matching.sample_ode`` with the exact velocity, Euler and Heun
   on a uniform grid in t) at the same NFE, and at equal cost (43 calls) Euler-Maruyama,
   predictor-corrector and Heun:
   - quality: ``diffusion.grid_tv``, the total variation between the samples' histogram
     (30 x 30 grid) and the exact cell probabilities, against its floor (mean and s.d. of the
     TV of exact samples of the same size, ``diffusion.grid_tv_floor``). "z" is
     (TV - floor) / s.d.: |z| < 3 is indistinguishable from exact at this sample size. It is
     a divergence: collapse and over-contraction score far above the floor (the old
     E_q[log p] - E_p[log p] rated samples on the means +1.0 nats *better* than data);
   - pointwise error (deterministic samplers): mean ||x - x_ref|| with x_ref the accurate
     solution of the probability-flow ODE from the same start (scipy DOP853, rtol 1e-10);
   - the smallest Heun NFE at the floor (z < 3) and the observed order of convergence of
     Euler and Heun (slope of log median error against log N between consecutive N).
2. **Learned denoiser**: an EDM-preconditioned ``NoiseConditionalMLP`` trained on samples of
   the mixture for a fixed budget of steps (wall time reported, target <= 20 s), then Heun
   at 35 NFE: its TV against the exact score's at the same NFE.

``--seeds K`` repeats the sampler comparisons at 43 calls over K noise seeds (z per seed).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import coursekit as ck
from coursekit import diffusion as df
from coursekit import flow_matching as fm


class Quality:
    """grid_tv of samples against the exact mixture, with the floor for samples of size n."""

    def __init__(self, mix: df.NoisedGaussianMixture, n: int, n_repeats: int = 20) -> None:
        self.mix = mix
        self.floor, self.sd = df.grid_tv_floor(mix, n, n_repeats=n_repeats, rng=123)

    def __call__(self, x: torch.Tensor) -> tuple[float, float]:
        """(TV, z) with z = (TV - floor) / floor s.d."""
        tv = df.grid_tv(x.detach().double(), self.mix)
        return tv, (tv - self.floor) / self.sd


def pc_sample(den, x: torch.Tensor, sigmas: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Predictor-corrector (Song et al. 2021, Algorithm 2, VE): one Euler-Maruyama step, then
    one Langevin corrector step at the new level; the last step (to sigma = 0) is Tweedie's
    denoiser, as in ``euler_maruyama``. 2N - 1 calls for N steps."""
    s = sigmas.tolist()
    for s_cur, s_next in zip(s[:-1], s[1:], strict=True):
        if s_next == 0:
            return den(x, s_cur)
        x = df.euler_maruyama(den, x, [s_cur, s_next], generator=g)
        x = df.langevin_corrector(den, x, s_next, generator=g)
    return x


def equal_cost(mix, quality: Quality, n: int, seed: int) -> dict[str, tuple[float, float]]:
    """Euler-Maruyama, predictor-corrector and Heun at 43 denoiser calls, one noise seed."""
    g = torch.Generator().manual_seed(seed)
    x0 = 80.0 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return {
        "Euler-Maruyama": quality(df.euler_maruyama(mix.denoise, x0, df.edm_sigmas(43),
                                                    generator=g)),
        "predictor-corrector": quality(pc_sample(mix.denoise, x0, df.edm_sigmas(22), g)),
        "Heun": quality(df.heun_sample(mix.denoise, x0, df.edm_sigmas(22))),
    }


def train_denoiser(mix: df.NoisedGaussianMixture, n_steps: int = 2000, seed: int = 0):
    """EDM-preconditioned MLP (64 wide, 4 layers), batch 1024, Adam with a one-cycle schedule
    peaking at 1e-2, ln sigma ~ N(0, 1). Returns the denoiser, wall and CPU seconds, history."""
    ck.seed_everything(seed)
    sd = float(np.sqrt(np.trace(mix.mixture.covariance()) / mix.dim))
    den = df.EDMDenoiser(df.NoiseConditionalMLP(2, hidden=64, n_layers=4), sigma_data=sd)
    data = torch.tensor(mix.sample(50_000, rng=seed), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(den.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=n_steps)

    def loss_fn(batch):
        if opt.state:  # one schedule step after each optimizer step
            sched.step()
        return df.edm_loss(den, batch, p_mean=0.0, p_std=1.0, generator=g)

    t0, c0 = time.perf_counter(), time.process_time()
    hist = ck.train(loss_fn, opt, data, n_steps=n_steps, batch_size=1024, generator=g,
                    show_progress=False)
    return den, time.perf_counter() - t0, time.process_time() - c0, hist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer samples and NFEs")
    ap.add_argument("--seeds", type=int, default=0, help="repeat the 43-call comparison")
    args = ap.parse_args()
    ck.seed_everything(0)
    mix = df.example_mixture()
    n = 4000 if args.quick else 20_000
    n_ref_pts = 1000 if args.quick else 4000
    t0 = time.perf_counter()
    quality = Quality(mix, n)
    print(f"grid TV floor of {n} exact samples: {quality.floor:.4f} ± {quality.sd:.4f} "
          f"(20 repeats, {time.perf_counter() - t0:.1f} s)")
    x_ex, lab = mix.sample(n, rng=7, return_labels=True)
    mu = mix.means[lab]
    for name, xb in (("exact samples", x_ex), ("all on their means", mu),
                     ("shrunk 20 % to their means", mu + 0.8 * (x_ex - mu))):
        tv, z = quality(torch.tensor(xb))
        print(f"  {name}: TV {tv:.4f} (z = {z:+.1f})")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)

    # --- DDPM ancestral and DDIM (VP chain) ----------------------------------------
    betas = df.linear_betas()
    eps = df.eps_from_denoiser(mix.denoise, betas)
    rows = []
    t0 = time.perf_counter()
    x_ddpm = df.ddpm_sample(eps, z, betas, generator=2)
    tv_ddpm, z_ddpm = quality(x_ddpm)
    rows.append(("DDPM ancestral", 1000, tv_ddpm, z_ddpm, float("nan")))
    print(f"DDPM-1000: TV {tv_ddpm:.4f}, z = {z_ddpm:+.1f} ({time.perf_counter() - t0:.1f} s)")
    for T in ([100, 250] if args.quick else [50, 100, 250, 500]):
        # a shorter chain with the same beta range (beta scaled to keep abar_T)
        b = df.linear_betas(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)
        x = df.ddpm_sample(df.eps_from_denoiser(mix.denoise, b), z, b, generator=2)
        rows.append(("DDPM ancestral", T, *quality(x), float("nan")))

    ab = df.alpha_bars(betas)
    sig_vp = df.vp_sigmas(betas)
    x_ve = z[:n_ref_pts] / ab[-1].sqrt()  # the DDIM start in VE variables
    ref_ddim = df.solve_pf_ode(mix.denoise, x_ve, float(sig_vp[-1]))
    for steps in [10, 20, 50, 100, 200]:
        x = df.ddim_sample(eps, z, betas, steps)
        err = float((x[:n_ref_pts] - ref_ddim).norm(dim=1).mean())
        rows.append(("DDIM (eta=0)", steps, *quality(x), err))
    for steps in [10, 50]:
        x = df.ddim_sample(eps, z, betas, steps, eta=1.0, generator=2)
        rows.append(("DDIM (eta=1)", steps, *quality(x), float("nan")))

    # --- Euler and Heun on the EDM grid ---------------------------------------------
    x0 = 80.0 * z
    ref_edm = df.solve_pf_ode(mix.denoise, x0[:n_ref_pts], 80.0)
    steps_list = [5, 9, 13, 18, 25, 35, 50, 70, 100, 140]
    med = {"Euler": [], "Heun": []}
    for name, fn, nfe in (("Euler", df.euler_sample, lambda N: N),
                          ("Heun", df.heun_sample, lambda N: 2 * N - 1)):
        for N in steps_list:
            x = fn(mix.denoise, x0, df.edm_sigmas(N))
            d = (x[:n_ref_pts] - ref_edm).norm(dim=1)
            med[name].append(float(d.median()))
            rows.append((name, nfe(N), *quality(x), float(d.mean())))
    # flow matching's ODE (linear interpolant, exact velocity, uniform grid in t) from the
    # same N(0, I) draws, at the NFE of the EDM rows
    def vel(x: torch.Tensor, t: float) -> torch.Tensor:
        return fm.exact_velocity(mix, x, t)

    for name, method, nfe in (("Flow matching Euler", "euler", lambda N: N),
                              ("Flow matching Heun", "heun", lambda N: 2 * N - 1)):
        for N in steps_list:
            rows.append((name, nfe(N), *quality(fm.sample_ode(vel, z, N, method)), float("nan")))
    for N in [35, 140]:
        x = df.euler_maruyama(mix.denoise, x0, df.edm_sigmas(N), generator=3)
        rows.append(("Euler-Maruyama", N, *quality(x), float("nan")))

    print("\n| sampler | NFE | grid TV | z vs floor | mean pointwise error |")
    print("|---|---:|---:|---:|---:|")
    for name, nfe, tv, zz, err in rows:
        e = "" if math.isnan(err) else f"{err:.2e}"
        print(f"| {name} | {nfe} | {tv:.4f} | {zz:+.1f} | {e} |")
    print(f"(floor {quality.floor:.4f} ± {quality.sd:.4f}: z = (TV - floor) / s.d.)")

    heun = [(nfe, zz) for name, nfe, _, zz, _ in rows if name == "Heun"]
    at_floor = next((nfe for nfe, zz in heun if zz < 3), None)
    print(f"\nSmallest Heun NFE at the floor (z < 3): {at_floor}; DDPM-1000 z = {z_ddpm:+.1f}")
    for name in ("Euler", "Heun"):
        e = np.array(med[name])
        orders = np.diff(np.log(e)) / -np.diff(np.log(steps_list))
        print(f"Observed order of {name} (median pointwise error vs N, N = "
              f"{steps_list}): " + ", ".join(f"{o:.2f}" for o in orders))

    # --- equal cost: 43 calls -----------------------------------------------------------
    seeds = range(max(args.seeds, 1))
    runs = [equal_cost(mix, quality, n, 10 + s) for s in seeds]
    print(f"\nAt 43 denoiser calls (grid TV, z vs floor; {len(runs)} seed(s)):")
    for name in runs[0]:
        zs = [r[name][1] for r in runs]
        tvs = [r[name][0] for r in runs]
        print(f"  {name}: TV {np.mean(tvs):.4f}, z " + ", ".join(f"{v:+.1f}" for v in zs))

    # --- a learned denoiser ---------------------------------------------------------
    den, secs, cpu, hist = train_denoiser(mix, 2000)
    with torch.no_grad():
        xl = df.heun_sample(den, x0.float(), df.edm_sigmas(18))
        xe = df.heun_sample(mix.denoise, x0, df.edm_sigmas(18))
    tl, zl = quality(xl)
    te, ze = quality(xe)
    print(f"\nLearned denoiser: trained {secs:.1f} s wall, {cpu:.1f} s CPU "
          f"(final loss {np.mean(hist[-100:]):.3f}); Heun 35 NFE grid TV {tl:.4f} "
          f"(z = {zl:+.1f}) vs exact score {te:.4f} (z = {ze:+.1f})")


if __name__ == "__main__":
    main()
