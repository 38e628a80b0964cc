"""Benchmark: diffusion samplers against NFE, with the exact score of a 2-D Gaussian mixture.

Run ``python benchmarks/bench_diffusion.py`` (a few minutes; ``--quick`` for a smaller run).
A script, not a test: nothing asserts, the figures go to the README.

1. **Exact score** (``diffusion.example_mixture()``; its denoiser is exact, so every error
   is discretisation error). For DDPM ancestral (linear betas, T = 1000 and sub-schedules),
   DDIM (eta = 0, trailing), Euler and Heun on the EDM grid (rho = 7, sigma in [0.002, 80]):
   - quality: mean log p(samples) under the true mixture minus E[log p] of true samples
     (0 is perfect; negative = samples in low-density places); standard error printed;
   - pointwise error (deterministic samplers): mean ||x - x_ref|| with x_ref the accurate
     solution of the probability-flow ODE from the same start (scipy DOP853, rtol 1e-10);
   - the smallest NFE at which Heun's quality matches DDPM-1000 (within 2 standard errors),
     and the observed order of convergence of Euler and Heun (slope of log median error
     against log N between consecutive N).
2. **Learned denoiser**: an EDM-preconditioned ``NoiseConditionalMLP`` trained on samples of
   the mixture for a fixed budget of steps (wall time reported, target <= 20 s), then Heun
   at 35 NFE: its quality gap to the exact score's at the same NFE (target < 0.1 nats).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import coursekit as ck
from coursekit import diffusion as df


def quality(mix: df.NoisedGaussianMixture, x: torch.Tensor, ref: float) -> tuple[float, float]:
    lp = mix.log_prob(x.detach().double().numpy())
    return float(lp.mean() - ref), float(lp.std() / math.sqrt(len(lp)))


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
    args = ap.parse_args()
    ck.seed_everything(0)
    mix = df.example_mixture()
    n = 4000 if args.quick else 20_000
    n_ref_pts = 1000 if args.quick else 4000
    ref = float(mix.log_prob(mix.sample(1_000_000, rng=123)).mean())
    print(f"E[log p] of true samples: {ref:.4f} nats (1e6 samples)")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)

    # --- DDPM ancestral and DDIM (VP chain) ----------------------------------------
    betas = df.linear_betas()
    eps = df.eps_from_denoiser(mix.denoise, betas)
    rows = []
    t0 = time.perf_counter()
    x_ddpm = df.ddpm_sample(eps, z, betas, generator=2)
    q_ddpm, se_ddpm = quality(mix, x_ddpm, ref)
    rows.append(("DDPM ancestral", 1000, q_ddpm, se_ddpm, float("nan")))
    print(f"DDPM-1000: quality {q_ddpm:+.4f} ± {se_ddpm:.4f} ({time.perf_counter() - t0:.1f} s)")
    for T in ([100, 250] if args.quick else [50, 100, 250, 500]):
        # a shorter chain with the same beta range (beta scaled to keep abar_T)
        b = df.linear_betas(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)
        x = df.ddpm_sample(df.eps_from_denoiser(mix.denoise, b), z, b, generator=2)
        rows.append(("DDPM ancestral", T, *quality(mix, x, ref), float("nan")))

    ab = df.alpha_bars(betas)
    sig_vp = df.vp_sigmas(betas)
    x_ve = z[:n_ref_pts] / ab[-1].sqrt()  # the DDIM start in VE variables
    ref_ddim = df.solve_pf_ode(mix.denoise, x_ve, float(sig_vp[-1]))
    for steps in [10, 20, 50, 100, 200]:
        x = df.ddim_sample(eps, z, betas, steps)
        err = float((x[:n_ref_pts] - ref_ddim).norm(dim=1).mean())
        rows.append(("DDIM (eta=0)", steps, *quality(mix, x, ref), err))

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
            rows.append((name, nfe(N), *quality(mix, x, ref), float(d.mean())))
    for N in [35, 140]:
        x = df.euler_maruyama(mix.denoise, x0, df.edm_sigmas(N), generator=3)
        rows.append(("Euler-Maruyama", N, *quality(mix, x, ref), float("nan")))

    print("\n| sampler | NFE | quality (nats) | ± s.e. | mean pointwise error |")
    print("|---|---:|---:|---:|---:|")
    for name, nfe, q, se, err in rows:
        e = "" if math.isnan(err) else f"{err:.2e}"
        print(f"| {name} | {nfe} | {q:+.4f} | {se:.4f} | {e} |")

    heun = [(nfe, q, se) for name, nfe, q, se, _ in rows if name == "Heun"]
    match = next((nfe for nfe, q, se in heun
                  if q >= q_ddpm - 2 * math.hypot(se, se_ddpm)), None)
    print(f"\nSmallest Heun NFE matching DDPM-1000 (within 2 s.e.): {match}")
    for name in ("Euler", "Heun"):
        e = np.array(med[name])
        orders = np.diff(np.log(e)) / -np.diff(np.log(steps_list))
        print(f"Observed order of {name} (median pointwise error vs N, N = "
              f"{steps_list}): " + ", ".join(f"{o:.2f}" for o in orders))

    # --- a learned denoiser ---------------------------------------------------------
    den, secs, cpu, hist = train_denoiser(mix, 2000)
    with torch.no_grad():
        xl = df.heun_sample(den, x0.float(), df.edm_sigmas(18))
        xe = df.heun_sample(mix.denoise, x0, df.edm_sigmas(18))
    ql, sel = quality(mix, xl, ref)
    qe, _ = quality(mix, xe, ref)
    print(f"\nLearned denoiser: trained {secs:.1f} s wall, {cpu:.1f} s CPU "
          f"(final loss {np.mean(hist[-100:]):.3f}); "
          f"Heun 35 NFE quality {ql:+.4f} ± {sel:.4f} vs exact score {qe:+.4f}: "
          f"gap {qe - ql:.4f} nats")


if __name__ == "__main__":
    main()
