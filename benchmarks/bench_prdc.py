"""Benchmark: ``coursekit.metrics.prdc`` against the ``prdc`` package (Naeem et al., 2020).

Run ``python benchmarks/bench_prdc.py`` (about half a minute).  A script, not a test:
timings depend on the machine and its load, so only the *equality* of the results is
asserted.  Both are timed on the same float64 features (real: N(0, I), fake: N(0.2, I),
5 000 x 64 each by default, k = 5), median of ``--repeats`` runs, alternating the two so
that a load change hits both.  Reported: the median times, their ratio
(package / coursekit: > 1 means coursekit is faster) and the peak size of one distance
block held by coursekit versus the package's three dense N x M matrices.
``--quantised`` rounds the features to integers (``rint(2 x)``), where distances tie and
the results must still be equal (both are exact there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
from prdc import compute_prdc

from coursekit import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quantised", action="store_true", help="integer features (ties)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    real = rng.standard_normal((args.n, args.d))
    fake = rng.standard_normal((args.n, args.d)) + 0.2
    if args.quantised:
        real, fake = np.rint(2 * real), np.rint(2 * fake)

    times: dict[str, list[float]] = {"coursekit": [], "prdc": []}
    ours = ref = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = metrics.prdc(real, fake, nearest_k=args.k)
        times["coursekit"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints the sizes
            ref = compute_prdc(real, fake, nearest_k=args.k)
        times["prdc"].append(time.perf_counter() - t0)
    for key in ours:
        assert abs(ours[key] - float(ref[key])) <= 1e-12, (key, ours[key], ref[key])
    t_ours, t_ref = np.median(times["coursekit"]), np.median(times["prdc"])
    block = metrics._block_rows(2 * args.n, None) * 2 * args.n
    kind = "integer" if args.quantised else "float"
    print(f"{kind} features: {args.n} x {args.d} real and fake, k = {args.k}, "
          f"median of {args.repeats} runs")
    print("results equal to 1e-12:", {k: round(v, 4) for k, v in ours.items()})
    print(f"coursekit.metrics.prdc : {t_ours:7.3f} s   (distance blocks of "
          f"<= {block * 8 / 2**20:.0f} MiB)")
    print(f"prdc.compute_prdc      : {t_ref:7.3f} s   (three {args.n} x {args.n} matrices, "
          f"{3 * args.n * args.n * 8 / 2**20:.0f} MiB)")
    print(f"speed ratio (prdc / coursekit): {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
