"""Cost of the double-Gaussian smearing kernel against the single Gaussian, in one run.

The demo scheme (8 scale x 8 smear categories, configs/cats_eta_r9.tsv) with 200k data / 800k
MC pairs synthesised at histogram level (``expected_region_arrays``, double-Gaussian truth
``(0.2, 2.0)``): 36 regions. For each ``smearing`` model: the best-of-5 time of one
likelihood evaluation with gradient and Hessian (the default noise-corrected likelihood),
and the best-of-3 wall time of a whole fit (``mc_stat="sandwich"``). The machine is
shared: compare the ratios, not the absolute numbers.

Usage::

    python benchmarks/bench_double_gaussian.py --out benchmarks/results/double_gaussian.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from zcalib.categories import load_categories
from zcalib.fit import FitConfig, fit_arrays
from zcalib.fit.problem import build_problem
from zcalib.fit.synthetic import expected_region_arrays

ROOT = Path(__file__).resolve().parents[1]
SMEARS = (0.009, 0.016, 0.020, 0.013, 0.010, 0.012, 0.018, 0.015)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    scheme = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
    arrays = expected_region_arrays(
        scheme, n_data=200_000, n_mc=800_000, smears=SMEARS, seed=3, double_gaussian=(0.2, 2.0)
    )
    out: dict[str, Any] = {"load_before": os.getloadavg()[0], "models": {}}
    for model in ("gaussian", "double-gaussian"):
        cfg = FitConfig(smearing=model, mc_stat="sandwich")
        problem = build_problem(**arrays, config=cfg, warn=False)
        m = problem.model
        rng = np.random.default_rng(0)
        best = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(20):
                mu = rng.normal(0.0, 1e-3, m.n_regions)
                s2 = (0.006 + 0.001 * rng.random(m.n_regions)) ** 2
                m.objective.evaluate(mu, s2, 2)
            best.append((time.perf_counter() - t0) / 20)
        fits = []
        for _ in range(3):
            t0 = time.perf_counter()
            res = fit_arrays(**arrays, config=cfg)
            fits.append(time.perf_counter() - t0)
        out["models"][model] = {
            "regions": m.n_regions,
            "hessian_eval_ms": 1e3 * min(best),
            "fit_wall_s": min(fits),
            "status": res.status,
        }
        print(
            f"{model:16s} {m.n_regions} regions: value+gradient+Hessian "
            f"{1e3 * min(best):.2f} ms, fit {min(fits):.2f} s ({res.status})"
        )
    g, d = out["models"]["gaussian"], out["models"]["double-gaussian"]
    out["ratio_hessian_eval"] = d["hessian_eval_ms"] / g["hessian_eval_ms"]
    out["ratio_fit_wall"] = d["fit_wall_s"] / g["fit_wall_s"]
    out["load_after"] = os.getloadavg()[0]
    print(
        f"double/single: evaluation {out['ratio_hessian_eval']:.2f}x, fit {out['ratio_fit_wall']:.2f}x"
        f" (load {out['load_before']:.1f} -> {out['load_after']:.1f})"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
