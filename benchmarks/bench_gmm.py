"""Benchmark: coursekit's hand-written EM and samplers against scikit-learn and NumPy.

Run ``python benchmarks/bench_gmm.py`` (about a minute).  A script, not a test: timings
depend on the machine and its load, so nothing here asserts.

1. ``coursekit.gmm.fit_em`` vs ``sklearn.mixture.GaussianMixture`` (full covariances), on
   the same data with the same ``tol``, ``max_iter`` and ``reg_covar``, each with its own
   k-means initialisation (k-means++ seeding + Lloyd), seeds 0 .. R-1; plus scikit-learn
   started from coursekit's initial mixture (same start: pure EM speed and path), and
   coursekit with ``n_init=3`` (the best of three EM runs, still within scikit-learn's time).
   Data: 10 000 points in 2-D from a 5-component mixture, K = 5; the 1 797 8x8 digits
   (64-D, pixels in [0, 1]), K = 10.  Reported: median over the R runs of the final mean
   training log-likelihood (LL, nats per point; also its mean over the runs: different
   seeds end in different local optima) and of the wall time (initialisation included).
2. ``coursekit.sampling.box_muller`` (with the uniforms drawn by NumPy) vs
   ``Generator.standard_normal``, and ``coursekit.sampling.sample_mvn`` vs
   ``Generator.multivariate_normal``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from coursekit import gmm
from coursekit.data import load_digits

TOL, MAX_ITER, REG = 1e-6, 200, 1e-6


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    return float(np.median([_timed(fn)[0] for _ in range(repeats)]))


def data_2d() -> np.ndarray:
    truth = gmm.GaussianMixture(
        [0.3, 0.25, 0.2, 0.15, 0.1],
        [[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [-3.0, -3.0], [4.0, 4.0]],
        [[[1.0, 0.3], [0.3, 0.5]], [[0.5, 0.0], [0.0, 1.5]], [[1.0, -0.6], [-0.6, 1.0]],
         [[0.3, 0.0], [0.0, 0.3]], [[2.0, 0.5], [0.5, 0.4]]],
    )
    return truth.sample(10_000, rng=0)[0]


def data_digits() -> np.ndarray:
    images, _ = load_digits("all")
    return images.reshape(len(images), -1).double().numpy()


def bench_em(name: str, x: np.ndarray, k: int, repeats: int) -> list[dict]:
    rows = {"coursekit fit_em": [], "sklearn GaussianMixture": [], "sklearn, same start": [],
            "coursekit fit_em, n_init=3": []}
    for seed in range(repeats):
        t, (model, hist) = _timed(lambda s=seed: gmm.fit_em(
            x, k, max_iter=MAX_ITER, tol=TOL, reg=REG, rng=s))
        rows["coursekit fit_em"].append((model.score(x), t, len(hist)))
        # Best of three EM runs (scikit-learn's n_init does the same; its default is 1).
        t, (model, hist) = _timed(lambda s=seed: gmm.fit_em(
            x, k, max_iter=MAX_ITER, tol=TOL, reg=REG, rng=s, n_init=3))
        rows["coursekit fit_em, n_init=3"].append((model.score(x), t, len(hist)))

        def sk_fit(seed=seed, **init):
            sk = SkGaussianMixture(k, covariance_type="full", tol=TOL, max_iter=MAX_ITER,
                                   reg_covar=REG, init_params="kmeans", random_state=seed, **init)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                return sk.fit(x)

        t, sk = _timed(sk_fit)
        rows["sklearn GaussianMixture"].append((sk.score(x), t, sk.n_iter_))
        start = gmm.initialize(x, k, reg=REG, rng=seed)
        t, sk = _timed(lambda s=start: sk_fit(
            weights_init=s.weights, means_init=s.means, precisions_init=np.linalg.inv(s.covariances)))
        rows["sklearn, same start"].append((sk.score(x), t, sk.n_iter_))
    out = []
    for method, runs in rows.items():
        ll, t, it = (np.median([r[i] for r in runs]) for i in range(3))
        out.append({"data": name, "method": method, "ll": ll, "time": t, "iters": it,
                    "ll_mean": np.mean([r[0] for r in runs])})
    ref = out[1]
    for row in out:
        row["time_ratio"] = row["time"] / ref["time"]
        row["ll_diff"] = row["ll"] - ref["ll"]
    return out


def bench_samplers(repeats: int) -> list[tuple[str, float, float]]:
    try:
        from coursekit import sampling
    except ImportError:  # the module of chapters 1-5 is not there yet
        print("coursekit.sampling not found: sampler rows skipped")
        return []
    rng = np.random.default_rng(0)
    n = 1_000_000

    def bm():
        u1 = 1.0 - rng.random(n // 2)  # (0, 1]: log(u1) is finite
        u2 = rng.random(n // 2)
        return sampling.box_muller(u1, u2)

    rows = [(f"box_muller, n = {n:,}", _median_time(bm, repeats),
             _median_time(lambda: rng.standard_normal(n), repeats))]
    d, m = 10, 200_000
    a = rng.standard_normal((d, d))
    cov, mean = a @ a.T / d + np.eye(d), np.arange(d, dtype=float)
    rows.append((f"sample_mvn, d = {d}, n = {m:,}",
                 _median_time(lambda: sampling.sample_mvn(mean, cov, m, rng), repeats),
                 _median_time(lambda: rng.multivariate_normal(mean, cov, m), repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args()

    rows = bench_em("2-D, n = 10,000, K = 5", data_2d(), 5, args.repeats)
    rows += bench_em("digits 64-D, n = 1,797, K = 10", data_digits(), 10, args.repeats)
    print(f"EM, full covariances (tol={TOL:g}, max_iter={MAX_ITER}, reg={REG:g}); "
          f"median of {args.repeats} seeds; ratio = time / sklearn's time")
    header = (f"{'data':<32} {'method':<27} {'LL median':>10} {'- sklearn':>10} {'LL mean':>9} "
              f"{'iters':>6} {'time [s]':>9} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['data']:<32} {r['method']:<27} {r['ll']:>10.4f} {r['ll_diff']:>+10.4f} "
              f"{r['ll_mean']:>9.4f} "
              f"{r['iters']:>6.0f} {r['time']:>9.3f} {r['time_ratio']:>6.2f}")
    samplers = bench_samplers(args.repeats)
    if samplers:
        print()
        header = f"{'sampler':<32} {'coursekit [ms]':>15} {'numpy [ms]':>11} {'ratio':>6}"
        print(header)
        print("-" * len(header))
        for name, ours, ref in samplers:
            print(f"{name:<32} {1e3 * ours:>15.1f} {1e3 * ref:>11.1f} {ours / ref:>6.2f}")


if __name__ == "__main__":
    main()
