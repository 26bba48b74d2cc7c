"""Benchmark of the scale/smearing fit on synthetic histograms.

Cases:
    (a) 8 scale x 8 smear categories (configs/cats_eta_r9.tsv): 8 cells, 36 regions.
    (b) 50 scale (10 |η| x 5 R9) x 10 smear (5 |η| x 2 R9) categories, every scale category
        inside one smear category: 50 cells, 1275 regions.

For each case: wall time of ``fit_histograms`` (best of ``--repeat``), minimiser
evaluations, time per NLL+gradient evaluation, per NLL-only and per Hessian evaluation,
peak memory of the fit (tracemalloc) and the process peak RSS, plus the recovery of the
injected values (max |pull|, max |Δscale|). Targets: (a) <= 2 s, (b) <= 30 s.

Usage::

    python benchmarks/bench_fit.py --out benchmarks/results/fit.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from zcalib.categories import Category, CategoryScheme, build_scheme, load_categories
from zcalib.fit import FitConfig, fit_histograms, synthetic_histograms
from zcalib.fit.fitter import problem_from_histograms

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"a": 2.0, "b": 30.0}


def scheme_large() -> CategoryScheme:
    """10 |η| x 5 R9 scale categories inside 5 |η| x 2 R9 smear categories."""
    inf = float("inf")
    eta_scale = [0.0, 0.3, 0.6, 0.9, 1.2, 1.4442, 1.566, 1.7, 1.9, 2.1, 2.3, 2.5]
    r9_scale = [-inf, 0.8, 0.9, 0.94, 0.96, inf]
    eta_smear = [0.0, 0.6, 1.2, 1.4442, 1.566, 1.9, 2.5]
    r9_smear = [-inf, 0.94, inf]

    def cats(kind: str, etas: list[float], r9s: list[float]) -> list[Category]:
        out: list[Category] = []
        for lo, hi in itertools.pairwise(etas):
            if (lo, hi) == (1.4442, 1.566):
                continue
            for rlo, rhi in itertools.pairwise(r9s):
                out.append(Category(kind, len(out), eta=(lo, hi), r9=(rlo, rhi)))  # type: ignore[arg-type]
        return out

    return build_scheme(
        cats("scale", eta_scale, r9_scale), cats("smear", eta_smear, r9_smear), source="bench-50x10"
    )


def run_case(
    name: str,
    scheme: CategoryScheme,
    n_data: int,
    n_mc: int,
    repeat: int,
    seed: int,
    mc_stat_likelihood: str = "noise-corrected",
    mc_stat: str = "bootstrap",
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    truth_s = 1.0 + rng.uniform(-0.01, 0.01, len(scheme.scale))
    truth_m = rng.uniform(0.008, 0.02, len(scheme.smear))
    t0 = time.perf_counter()
    hset = synthetic_histograms(
        scheme, n_data=n_data, n_mc=n_mc, scales=truth_s, smears=truth_m, seed=seed
    )
    t_gen = time.perf_counter() - t0
    cfg = FitConfig(mc_stat_likelihood=mc_stat_likelihood, mc_stat=mc_stat)  # type: ignore[arg-type]

    walls = []
    result = None
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        result = fit_histograms(hset, cfg)
        walls.append(time.perf_counter() - t0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert result is not None
    # the same fit with the linear (sandwich) MC-statistics errors, for the cost ratio
    t0 = time.perf_counter()
    fit_histograms(hset, cfg.with_overrides(mc_stat="sandwich"))
    wall_sandwich = time.perf_counter() - t0

    # per-evaluation timings on the same problem
    prob, _ = problem_from_histograms(hset, cfg)
    theta = prob.theta_from_values(result.scale_values(), result.smear_values())

    def per_call(fn: Any, n: int) -> float:
        fn(theta)
        t = time.perf_counter()
        for _ in range(n):
            fn(theta)
        return (time.perf_counter() - t) / n

    n_rep = 50 if len(prob.codes) < 200 else 10
    t_nll = per_call(prob.nll, n_rep)
    t_grad = per_call(prob.nll_grad, n_rep)
    t_hess = per_call(prob.hessian, max(3, n_rep // 5))

    pulls_s = [(c.value - t) / c.total_stat for c, t in zip(result.scales, truth_s, strict=True)]
    pulls_m = [(c.value - t) / c.total_stat for c, t in zip(result.smears, truth_m, strict=True)]
    delta_s = [abs(c.value - t) for c, t in zip(result.scales, truth_s, strict=True)]
    return {
        "case": name,
        "scale_categories": len(scheme.scale),
        "smear_categories": len(scheme.smear),
        "cells": scheme.n_cells,
        "regions_used": len(result.regions_used),
        "regions_dropped": len(result.regions_dropped),
        "parameters": len(result.parameters),
        "n_data": n_data,
        "n_mc": n_mc,
        "generate_s": t_gen,
        "fit_wall_s": min(walls),
        "fit_wall_all_s": walls,
        "mc_stat": mc_stat,
        "mc_stat_likelihood": mc_stat_likelihood,
        "fit_wall_sandwich_s": wall_sandwich,
        "errors_cost_ratio_vs_sandwich": min(walls) / wall_sandwich,
        "timings": result.timings,
        "status": result.status,
        "n_eval": result.n_eval,
        "edm": result.edm,
        "nll_s": t_nll,
        "nll_grad_s": t_grad,
        "hessian_s": t_hess,
        "fit_peak_tracemalloc_mb": peak / 2**20,
        "target_s": TARGETS[name],
        "meets_target": min(walls) <= TARGETS[name],
        "pull_scale_mean": float(np.mean(pulls_s)),
        "pull_scale_std": float(np.std(pulls_s, ddof=1)),
        "pull_smear_mean": float(np.mean(pulls_m)),
        "pull_smear_std": float(np.std(pulls_m, ddof=1)),
        "max_abs_pull_scale": float(np.max(np.abs(pulls_s))),
        "max_abs_pull_smear": float(np.max(np.abs(pulls_m))),
        "max_abs_delta_scale": float(np.max(delta_s)),
        "median_scale_stat": float(np.median([c.stat for c in result.scales])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fit.json")
    ap.add_argument("--repeat", type=int, default=3, help="fits per case (best time reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cases", default="ab", help="which cases to run (subset of 'ab')")
    ap.add_argument(
        "--mc-stat-likelihood",
        default="noise-corrected",
        choices=["noise-corrected", "none", "bb-lite"],
        help="likelihood",
    )
    ap.add_argument(
        "--mc-stat", default="bootstrap", choices=["bootstrap", "sandwich", "none"], help="errors"
    )
    ap.add_argument("--n-data-b", type=int, default=3_000_000)
    ap.add_argument("--n-mc-b", type=int, default=12_000_000)
    args = ap.parse_args(argv)

    results = []
    if "a" in args.cases:
        small = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
        results.append(
            run_case(
                "a",
                small,
                300_000,
                1_200_000,
                args.repeat,
                args.seed,
                args.mc_stat_likelihood,
                args.mc_stat,
            )
        )
    if "b" in args.cases:
        results.append(
            run_case(
                "b",
                scheme_large(),
                args.n_data_b,
                args.n_mc_b,
                args.repeat,
                args.seed,
                args.mc_stat_likelihood,
                args.mc_stat,
            )
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    header = (
        f"{'case':4} {'cats':>7} {'regions':>8} {'params':>6} {'fit [s]':>8} {'n_eval':>6} "
        f"{'nll [ms]':>8} {'grad [ms]':>9} {'hess [ms]':>9} {'peak MB':>8} {'target':>6} "
        f"{'sandwich [s]':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['case']:4} {r['scale_categories']:>3}x{r['smear_categories']:<3} "
            f"{r['regions_used']:>8} {r['parameters']:>6} {r['fit_wall_s']:>8.3f} "
            f"{r['n_eval']:>6} {1e3 * r['nll_s']:>8.2f} {1e3 * r['nll_grad_s']:>9.2f} "
            f"{1e3 * r['hessian_s']:>9.2f} {r['fit_peak_tracemalloc_mb']:>8.1f} "
            f"{'ok' if r['meets_target'] else 'MISS':>6} {r['fit_wall_sandwich_s']:>12.3f}"
        )
    print(f"process peak RSS: {rss_mb:.0f} MB")
    payload = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "process_peak_rss_mb": rss_mb,
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
