"""How honest is the page's "mean ± sd over K fresh sets"? Measured against further fresh seeds.

For the example baseline (fixed weights), each repetition draws the page's K = 5 fresh sets of
n = 1,000 samples (one evaluation), then M further fresh sets with other seeds. It records

- how often a further fresh set falls within the page's mean ± sd;
- how often the mean of the M further sets falls within mean ± 2 sd / sqrt(K) (the interval
  behind the page's "*").

If the sd over the K sets is the spread of a new draw and a metric is roughly normal, the first
is P(|t_4| <= 1 / sqrt(1 + 1/K)) = 0.587 and the second P(|t_4| <= 2 / sqrt(1 + K/M)) = 0.822
for K = 5, M = 10 (t_4: the sd is estimated from 5 values; the further mean has its own
spread). Frequencies far below these say the page's intervals are too narrow.

Run from the repository root (a few minutes):

    python project/coverage_benchmark.py --reps 10 --further 10
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from coursekit import project


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--further", type=int, default=10)
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = project._load_generator(
        (project.example_submissions() / "baseline" / "model.pt").read_bytes())
    ref = project._reference()
    metrics = ("fid", "precision", "recall", "density", "coverage")

    def one_set(seed: int) -> dict:
        z = torch.randn(args.n, project.LATENT_DIM, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            x = model(z).numpy()
        return project.compute_metrics(x, reference=ref)

    within_sd = {m: [] for m in metrics}
    mean_covered = {m: [] for m in metrics}
    seed = 10_000
    for _ in range(args.reps):
        page = [one_set(seed + k) for k in range(args.sets)]
        further = [one_set(seed + args.sets + j) for j in range(args.further)]
        seed += args.sets + args.further
        for m in metrics:
            v = np.array([s[m] for s in page])
            mu, sd = v.mean(), v.std(ddof=1)
            f = np.array([s[m] for s in further])
            within_sd[m] += list(np.abs(f - mu) <= sd)
            mean_covered[m].append(abs(f.mean() - mu) <= 2 * sd / np.sqrt(args.sets))
    out = {m: {"fresh_set_within_mean_pm_sd": float(np.mean(within_sd[m])),
               "further_mean_within_2se": float(np.mean(mean_covered[m]))} for m in metrics}
    from scipy import stats

    k, m_ = args.sets, args.further
    out["expected_if_honest"] = {
        "fresh_set_within_mean_pm_sd": float(2 * stats.t.cdf(1 / np.sqrt(1 + 1 / k), k - 1) - 1),
        "further_mean_within_2se": float(2 * stats.t.cdf(2 / np.sqrt(1 + k / m_), k - 1) - 1)}
    out["setting"] = vars(args)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
