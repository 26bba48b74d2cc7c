"""Controlled smearing closure: how often a fit finds residual smearing where there is none.

Data are generated with the default injected scales and smearings; the MC is smeared in the
processor with exactly the injected smearings (and the data corrected with exactly the
injected scales), so every true residual is 1 (scales) and 0 (smearings). Each sample is
fitted with every likelihood option; an unbiased fit puts about half of the smearings at 0
and the others on a half-normal in ``σ²/err(σ²)`` (mean 0.8, nothing above 3).

Usage::

    python benchmarks/closure_study.py --samples 6 --out benchmarks/results/closure.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from zcalib.config import dataset_config_from_files
from zcalib.corrections.steps import load_correction_steps
from zcalib.corrections.writer import (
    build_scale_correction,
    build_smear_correction,
    write_correction_set,
)
from zcalib.fit import FitConfig, fit_histograms
from zcalib.generate import default_categories, default_truth, generate
from zcalib.runner import RunOptions, build_histograms

ROOT = Path(__file__).resolve().parents[1]
MODES = ("none", "noise-corrected", "bb-lite")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--n-data", type=int, default=120_000)
    ap.add_argument("--n-mc", type=int, default=360_000)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".data" / "closure")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "closure.json")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)

    scheme = default_categories()
    scales, smears = default_truth(scheme)
    args.work.mkdir(parents=True, exist_ok=True)
    truth = write_correction_set(
        args.work / "truth.json",
        [
            build_scale_correction(
                "truth_scale", scheme, scales, [0.0] * len(scales), description="truth"
            ),
            build_smear_correction(
                "truth_smear", scheme, smears, [0.0] * len(smears), description="truth"
            ),
        ],
        description="injected truth of the closure study",
    )
    steps = tuple(load_correction_steps(truth))
    opts = RunOptions(executor="iterative", progress=False, chunksize=400_000)
    sig: dict[str, list[float]] = {m: [] for m in MODES}
    pulls: dict[str, list[float]] = {m: [] for m in MODES}
    t0 = time.perf_counter()
    for k in range(args.samples):
        seed = 21 + k
        g = generate(args.work / f"s{seed}", n_data=args.n_data, n_mc=args.n_mc, seed=seed)
        cfg = dataset_config_from_files(data=[str(g.data)], mc=[str(g.mc)])
        hset = build_histograms(cfg, scheme, corrections=steps, smear_seed=seed, options=opts)
        for mode in MODES:
            res = fit_histograms(hset, FitConfig(mc_stat_likelihood=mode))  # type: ignore[arg-type]
            sig[mode] += [c.zero_significance for c in res.smears]
            pulls[mode] += [(c.value - 1.0) / c.total_stat for c in res.scales]
        print(f"sample {k + 1}/{args.samples} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    rows = []
    print(
        f"{'likelihood':16} {'at 0':>6} {'mean z (others)':>16} {'above 3σ':>9} {'scale pull sd':>14}"
    )
    for mode in MODES:
        z = np.array(sig[mode])
        p = np.array(pulls[mode])
        row: dict[str, Any] = {
            "mc_stat_likelihood": mode,
            "n": int(z.size),
            "fraction_at_zero": float(np.mean(z == 0)),
            "mean_significance_nonzero": float(z[z > 0].mean()) if (z > 0).any() else 0.0,
            "n_above_3": int(np.sum(z > 3)),
            "max_significance": float(z.max()),
            "scale_pull_mean": float(p.mean()),
            "scale_pull_sd": float(p.std(ddof=1)),
        }
        rows.append(row)
        print(
            f"{mode:16} {row['fraction_at_zero']:>6.2f} {row['mean_significance_nonzero']:>16.2f} "
            f"{row['n_above_3']:>5}/{row['n']:<3} {row['scale_pull_sd']:>14.2f}"
        )
    payload = {
        "python": sys.version.split()[0],
        "samples": args.samples,
        "n_data": args.n_data,
        "n_mc": args.n_mc,
        "wall_s": time.perf_counter() - t0,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
