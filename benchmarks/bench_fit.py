"""Benchmark of the scale/smearing fit (default settings: noise-corrected likelihood,
bootstrap MC-statistics errors) on schemes from the demo to production size.

Cases:
    (a) 8 scale x 8 smear categories (demo, configs/cats_eta_r9.tsv), 300k data / 1.2M MC
        pairs filled event by event: 36 regions. Target: fit with errors <= 0.3 s.
    (b) 66 scale (11 |η| x 2 R9 x 3 Et) x 8 smear (4 |η| x 2 R9) cells, 2M data / 6M MC
        pairs filled event by event (the generator's Et): ~1500-2000 regions. Target <= 5 s.
    (c) 330 scale (11 |η| x 2 R9 x 15 Et) x 20 smear (10 |η| x 2 R9) cells, 5M data / 15M
        MC pairs synthesised at histogram level (``expected_region_arrays``: filling 20M
        events per run is too slow on the shared 2-core machine): ~15k regions used.
        Target <= 60 s and < 2 GB.

For each case: the default fit (Newton minimiser) alternating with ``minimizer="lbfgs"``
(the former minimiser) for the old/new ratio; wall and CPU time (``time.process_time``) of the fit (best of ``--repeat``,
without tracemalloc)
split into set-up, start scans, minimisation and errors; evaluations; wall and CPU time per
NLL, NLL+gradient and Hessian evaluation and per region (the growth figure); peak memory of
the fit (tracemalloc) and process RSS; the 1-minute load average before and after each
case (the machine is shared: compare ratios within one run); recovery of the injected
values (pulls).

Usage::

    python benchmarks/bench_fit.py --out benchmarks/results/fit.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from zcalib.categories import CategoryScheme, load_categories
from zcalib.fit import FitConfig, build_problem, fit_arrays, synthetic_histograms
from zcalib.fit.synthetic import (
    ET_3,
    ETA_11,
    PARENT_ETA,
    PARENT_R9,
    expected_region_arrays,
    fit_inputs,
    grid_scheme,
)

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"a": 0.3, "b": 5.0, "c": 60.0}
_ET_15 = (0.0, 31.0, 33.0, 35.0, 37.0, 39.0, 41.0, 43.0, 45.0, 47.0, 49.0, 52.0, 56.0, 62.0, 72.0)


def scheme_b() -> CategoryScheme:
    """66 scale cells (11 |η| x 2 R9 x 3 Et) inside the 8 |η| x R9 smear cells."""
    return grid_scheme(ETA_11, PARENT_R9, ET_3, smear_eta=PARENT_ETA)


def scheme_c() -> CategoryScheme:
    """330 scale cells (11 |η| x 2 R9 x 15 Et) inside 20 smear cells (10 |η| x 2 R9)."""
    et = tuple(itertools.pairwise((*_ET_15, float("inf"))))
    smear_eta = ((0.0, 0.4), *ETA_11[2:])
    return grid_scheme(ETA_11, PARENT_R9, et, smear_eta=smear_eta)


def case_arrays(name: str, seed: int) -> tuple[CategoryScheme, dict[str, Any], Any, Any, float]:
    """Scheme, fit_arrays keywords, truth and synthesis time of a case."""
    scheme = {
        "a": lambda: load_categories(ROOT / "configs" / "cats_eta_r9.tsv"),
        "b": scheme_b,
        "c": scheme_c,
    }[name]()
    rng = np.random.default_rng(seed)
    truth_s = 1.0 + rng.uniform(-0.01, 0.01, len(scheme.scale))
    truth_m = rng.uniform(0.008, 0.02, len(scheme.smear))
    t0 = time.perf_counter()
    if name == "c":
        arr = expected_region_arrays(
            scheme,
            n_data=5e6,
            n_mc=15e6,
            scales=truth_s,
            smears=truth_m,
            seed=seed,
            min_expected=100.0,
        )
    else:
        nd, nm = {"a": (300_000, 1_200_000), "b": (2_000_000, 6_000_000)}[name]
        hs = synthetic_histograms(
            scheme, n_data=nd, n_mc=nm, scales=truth_s, smears=truth_m, seed=seed
        )
        arr = fit_inputs(hs, scheme)
    return scheme, arr, truth_s, truth_m, time.perf_counter() - t0


def unpopulated(arr: dict[str, Any], cfg_window: tuple[float, float]) -> tuple[int, ...]:
    """Scale categories without a region of >= 100 data pairs in the window (a production
    scheme merges such cells; here they are held at 1 with ``ignore_scales``)."""
    edges = arr["mass_edges"]
    inside = (edges[:-1] >= cfg_window[0]) & (edges[1:] <= cfg_window[1])
    ok = arr["data"][:, inside].sum(axis=1) >= 100
    n_cells = len(arr["cell_scale"])
    codes = np.asarray(arr["regions"])[ok]
    covered = set(arr["cell_scale"][codes // n_cells]) | set(arr["cell_scale"][codes % n_cells])
    return tuple(int(a) for a in range(int(arr["cell_scale"].max()) + 1) if a not in covered)


def run_case(
    name: str, repeat: int, seed: int, mc_stat: str = "bootstrap", sandwich: bool = True
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    scheme, arr, truth_s, truth_m, t_gen = case_arrays(name, seed)
    n_data, n_mc = float(arr["data"].sum()), float(arr["mc_w"].sum())
    cfg = FitConfig(mc_stat=mc_stat, ignore_scales=unpopulated(arr, cfg_window=(80.0, 100.0)))  # type: ignore[arg-type]

    # timed fits without tracemalloc (it slows every allocation), then one traced fit for
    # the peak memory
    # the default (Newton) and the former (L-BFGS-B) minimiser alternate, so that both see
    # the same load; best of `repeat` each
    walls, cpus, walls_old, cpus_old = [], [], [], []
    timings: list[dict[str, float]] = []
    timings_old: list[dict[str, float]] = []
    result = old = None
    cfg_old = cfg.with_overrides(minimizer="lbfgs")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fit_arrays(**arr, config=cfg)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        timings.append(result.timings)
        t0, c0 = time.perf_counter(), time.process_time()
        old = fit_arrays(**arr, config=cfg_old)
        walls_old.append(time.perf_counter() - t0)
        cpus_old.append(time.process_time() - c0)
        timings_old.append(old.timings)
    assert result is not None
    assert old is not None
    wall_lbfgs = min(walls_old)
    cpu_lbfgs = cpus_old[int(np.argmin(walls_old))]
    tracemalloc.start()
    fit_arrays(**arr, config=cfg)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    d_scale = max(
        abs(a.value - b.value) / a.stat
        for a, b in zip(result.scales, old.scales, strict=True)
        if a.state == "fitted"
    )
    # the same fit with the linear (sandwich) MC-statistics errors, for the cost ratio
    wall_sandwich = float("nan")
    if sandwich:
        t0 = time.perf_counter()
        fit_arrays(**arr, config=cfg.with_overrides(mc_stat="sandwich"))
        wall_sandwich = time.perf_counter() - t0

    # per-evaluation timings on the same problem
    prob = build_problem(config=cfg, warn=False, **arr)
    theta = prob.theta_from_values(result.scale_values(), result.smear_values())

    prob.set_reference(theta)

    def per_call(fn: Any, n: int) -> tuple[float, float]:
        fn(theta)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn(theta)
        return (time.perf_counter() - t) / n, (time.process_time() - c) / n

    n_rep = 50 if len(prob.codes) < 200 else 10 if len(prob.codes) < 5000 else 3
    t_nll, c_nll = per_call(prob.nll, n_rep)
    t_grad, c_grad = per_call(prob.nll_grad, n_rep)
    t_hess, c_hess = per_call(prob.hessian, max(3, n_rep // 5))

    pulls_s = [
        (c.value - t) / c.total_stat
        for c, t in zip(result.scales, truth_s, strict=True)
        if c.state == "fitted"
    ]
    pulls_m = [
        (c.value**2 - t**2) / c.sq_error for c, t in zip(result.smears, truth_m, strict=True)
    ]
    delta_s = [
        abs(c.value - t) for c, t in zip(result.scales, truth_s, strict=True) if c.state == "fitted"
    ]
    return {
        "case": name,
        "scale_categories": len(scheme.scale),
        "smear_categories": len(scheme.smear),
        "cells": scheme.n_cells,
        "regions_used": len(result.regions_used),
        "regions_dropped": len(result.regions_dropped),
        "parameters": len(result.parameters),
        "ignored_scale_categories": len(cfg.ignore_scales),
        "n_data": n_data,
        "n_mc": n_mc,
        "generate_s": t_gen,
        "fit_wall_s": min(walls),
        "fit_wall_all_s": walls,
        "fit_cpu_s": cpus[int(np.argmin(walls))],
        "fit_cpu_all_s": cpus,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": os.getloadavg()[0],
        "mc_stat": mc_stat,
        "mc_stat_likelihood": cfg.mc_stat_likelihood,
        "minimizer": cfg.minimizer,
        "lbfgs_fit_wall_s": wall_lbfgs,
        "lbfgs_fit_cpu_s": cpu_lbfgs,
        "lbfgs_fit_wall_all_s": walls_old,
        "lbfgs_fit_cpu_all_s": cpus_old,
        "lbfgs_timings": timings_old[int(np.argmin(walls_old))],
        "lbfgs_n_eval": old.n_eval,
        "lbfgs_status": old.status,
        "newton_vs_lbfgs_wall_ratio": min(walls) / wall_lbfgs,
        "newton_vs_lbfgs_cpu_ratio": cpus[int(np.argmin(walls))] / cpu_lbfgs,
        "newton_vs_lbfgs_max_scale_shift_stat": d_scale,
        "newton_vs_lbfgs_delta_nll": result.nll - old.nll,
        "fit_wall_sandwich_s": wall_sandwich if sandwich else None,
        "errors_cost_ratio_vs_sandwich": min(walls) / wall_sandwich if sandwich else None,
        "timings": timings[int(np.argmin(walls))],  # of the best fit
        "status": result.status,
        "n_eval": result.n_eval,
        "edm": result.edm,
        "nll_s": t_nll,
        "nll_grad_s": t_grad,
        "nll_grad_per_region_us": 1e6 * t_grad / len(prob.codes),
        "nll_per_region_us": 1e6 * t_nll / len(prob.codes),
        "hessian_s": t_hess,
        "nll_cpu_s": c_nll,
        "nll_grad_cpu_s": c_grad,
        "hessian_cpu_s": c_hess,
        "nll_grad_cpu_per_region_us": 1e6 * c_grad / len(prob.codes),
        "hessian_cpu_per_region_us": 1e6 * c_hess / len(prob.codes),
        "fit_peak_tracemalloc_mb": peak / 2**20,
        "target_s": TARGETS[name],
        "meets_target": min(walls) <= TARGETS[name] and (name != "c" or peak / 2**30 < 2.0),
        "errors_to_minimise_ratio": (
            timings[int(np.argmin(walls))]["errors"] / timings[int(np.argmin(walls))]["minimise"]
        ),
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
    ap.add_argument("--cases", default="abc", help="which cases to run (subset of 'abc')")
    ap.add_argument(
        "--mc-stat", default="bootstrap", choices=["bootstrap", "sandwich", "none"], help="errors"
    )
    ap.add_argument(
        "--sandwich-cases",
        default="ab",
        help="cases also fitted with sandwich errors for the cost ratio (c doubles the run)",
    )
    ap.add_argument(
        "--figure-only",
        action="store_true",
        help="redraw the cost-per-region figure from --out without fitting",
    )
    args = ap.parse_args(argv)
    if args.figure_only:
        png = args.out.with_name(args.out.stem + "_cost_per_region.png")
        cost_figure(json.loads(args.out.read_text())["cases"], png)
        print(f"wrote {png}")
        return 0

    results = []
    for name in args.cases:
        r = run_case(
            name,
            args.repeat if name != "c" else 1,
            args.seed,
            args.mc_stat,
            sandwich=name in args.sandwich_cases,
        )
        results.append(r)
        print(
            f"case {name}: {r['fit_wall_s']:.2f} s wall, {r['fit_cpu_s']:.2f} s CPU "
            f"({r['timings']}), {r['nll_grad_cpu_per_region_us']:.0f} us CPU/region per "
            f"NLL+grad, load {r['loadavg_1min_before']:.1f} -> {r['loadavg_1min_after']:.1f}; "
            f"L-BFGS-B {r['lbfgs_fit_wall_s']:.2f} s wall, {r['lbfgs_fit_cpu_s']:.2f} s CPU "
            f"({r['lbfgs_timings']}, {r['lbfgs_n_eval']} evaluations vs {r['n_eval']}), "
            f"Newton/L-BFGS-B wall {r['newton_vs_lbfgs_wall_ratio']:.2f} CPU "
            f"{r['newton_vs_lbfgs_cpu_ratio']:.2f}, max shift "
            f"{r['newton_vs_lbfgs_max_scale_shift_stat']:.2g} stat, ΔNLL "
            f"{r['newton_vs_lbfgs_delta_nll']:.2g}",
            flush=True,
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    header = (
        f"{'case':4} {'cats':>7} {'regions':>8} {'params':>6} {'fit [s]':>8} {'n_eval':>6} "
        f"{'nll [ms]':>8} {'grad [ms]':>9} {'hess [ms]':>9} {'peak MB':>8} {'target':>6} "
        f"{'sandwich [s]':>12} {'us/region':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['case']:4} {r['scale_categories']:>3}x{r['smear_categories']:<3} "
            f"{r['regions_used']:>8} {r['parameters']:>6} {r['fit_wall_s']:>8.3f} "
            f"{r['n_eval']:>6} {1e3 * r['nll_s']:>8.2f} {1e3 * r['nll_grad_s']:>9.2f} "
            f"{1e3 * r['hessian_s']:>9.2f} {r['fit_peak_tracemalloc_mb']:>8.1f} "
            f"{'ok' if r['meets_target'] else 'MISS':>6} {r['fit_wall_sandwich_s'] or float('nan'):>12.3f} "
            f"{r['nll_grad_per_region_us']:>9.1f}"
        )
    print(f"process peak RSS: {rss_mb:.0f} MB")
    payload = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "process_peak_rss_mb": rss_mb,
        "cases": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    png = args.out.with_name(args.out.stem + "_cost_per_region.png")
    cost_figure(results, png)
    print(f"wrote {png}")
    return 0 if all(r["meets_target"] for r in results) else 1


def cost_figure(results: list[dict[str, Any]], path: Path) -> None:
    """Side-by-side bars: CPU time per region of one NLL, NLL + gradient and Hessian
    evaluation at the minimum, per case (a flat profile means the cost grows with the number
    of regions and nothing else)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    kinds = (
        ("nll_cpu_s", "NLL"),
        ("nll_grad_cpu_s", "NLL + gradient"),
        ("hessian_cpu_s", "Hessian"),
    )
    x = np.arange(len(results))
    for k, (key, label) in enumerate(kinds):
        per = [1e6 * r[key] / r["regions_used"] for r in results]
        bars = ax.bar(x + (k - 1) * 0.27, per, 0.27, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(
        x,
        [
            f"{r['case']}: {r['scale_categories']}+{r['smear_categories']}\n{r['regions_used']} regions"
            for r in results
        ],
    )
    ax.set_ylabel("CPU per region [µs]")
    ax.set_title("Likelihood cost per region (bench_fit.py)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
