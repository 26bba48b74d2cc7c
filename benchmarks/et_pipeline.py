"""The shipped derivation (configs/pipeline_derivation.yaml) on data with Et-dependent
injected smearings (issue 14): does the final payload's smearing recover the truth?

Generates data as the pipeline's ``generate:`` block does (1 % drift, gains 6 and 1
populated) plus a smooth dependence on the true Et (``EtDependence``), runs the shipped
chain on them unchanged (``datasets:`` instead of ``generate:``), then evaluates
``EGMSmearAndSyst_ElePTsplit`` of ``final/corrections.json`` at the mean Et of each
(|η| × R9 cell, Et bin) of the Et step and compares it with the injected smearing there
(pulls in σ², errors of the Et step's fit), and reports the closure verdict.

Usage::

    python benchmarks/et_pipeline.py --seeds 2 --out benchmarks/results/et_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import correctionlib
import numpy as np
import yaml

from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline
from zcalib.config import dataset_config_from_files
from zcalib.fit.smooth import mean_category_et
from zcalib.generate import EtDependence, default_categories, default_truth, generate
from zcalib.histograms import load_histograms

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "pipeline_derivation.yaml"
#: the injected Et dependence: smear(Et) = sqrt(smear^2 + B/Et), scale 1 + A((Et/45)^P - 1)
DEP = EtDependence(scale_amplitude=0.004, scale_power=-1.0, smear_b=0.006)


def pipeline_file(tmp: Path, datasets: Path) -> Path:
    """The shipped pipeline reading ``datasets`` instead of generating, output in ``tmp``."""
    raw = yaml.safe_load(SHIPPED.read_text())
    shipped = load_pipeline(SHIPPED)
    raw.pop("generate")
    raw["datasets"] = str(datasets)
    raw["output"] = str(tmp / "out")
    for step in raw["steps"]:
        if "categories" in step:
            step["categories"] = str(shipped.resolve(step["categories"]))
    for w in raw.get("mc_weights", []):
        w["file"] = str(shipped.resolve(w["file"]))
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def one(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    gen = yaml.safe_load(SHIPPED.read_text())["generate"]
    sample = generate(tmp / "data", n_data=n[0], n_mc=n[1], seed=seed, drift=gen["drift"],
                      gain_thresholds=tuple(gen["gain_thresholds"]), et_dependence=DEP)  # fmt: skip
    cfg = dataset_config_from_files(data=[str(sample.data)], mc=[str(sample.mc)], fmt="ecalelf")
    datasets = tmp / "datasets.yaml"
    datasets.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    t0 = time.perf_counter()
    res = run_pipeline(load_pipeline(pipeline_file(tmp, datasets)))
    wall = time.perf_counter() - t0
    out = res.output
    base = default_categories()
    scales, smears = default_truth(base)
    hset = load_histograms(out / "et" / "histograms.npz")
    scheme = hset.scheme()
    et = mean_category_et(hset, scheme, "smear")
    fit = json.loads((out / "et" / "fit_result.json").read_text())
    fitted = [c for c in fit["categories"] if c["kind"] == "smear"]
    cset = correctionlib.CorrectionSet.from_file(str(res.final["corrections"]))
    ev = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    rows = []
    for cat, f, x in zip(scheme.smear, fitted, et, strict=True):
        cell = next(b.index for b in base.smear if b.eta == cat.eta and b.r9 == cat.r9)
        truth = float(DEP.apply(np.array([scales[cell]]), np.array([smears[cell]]),
                                np.array([x]))[1][0])  # fmt: skip
        eta, r9 = 0.5 * (cat.eta[0] + cat.eta[1]), min(0.5 * (cat.r9[0] + cat.r9[1]), 0.98)
        payload = float(ev.evaluate("smear", float(x), r9, eta))
        rows.append({
            "category": f["label"], "mean_et": float(x), "truth": truth, "payload": payload,
            "fit": f["value"], "sq_error": f["sq_error"],
            "pull_sq": (payload**2 - truth**2) / f["sq_error"] if f["sq_error"] else None,
        })  # fmt: skip
    pulls = np.array([r["pull_sq"] for r in rows if r["pull_sq"] is not None])
    per_bin = pulls.reshape(-1, 3) if len(pulls) == len(rows) else pulls[None, :]
    closure = json.loads((out / "closure" / "closure.json").read_text())
    truth_lo = np.array([r["truth"] for r in rows]).reshape(-1, 3)
    return {
        "wall_time_s": wall,
        "closes": closure["closes"],
        "verdict": closure["verdict"],
        "et_refit": fit.get("et_scales_refit", {}).get("status"),
        "smear_pulls": {
            "n": len(pulls),
            "mean": float(pulls.mean()),
            "width": float(pulls.std()),
            "max_abs": float(np.abs(pulls).max()),
            "mean_per_et_bin": per_bin.mean(axis=0).tolist(),
        },
        "injected_rise_low_over_high_et": float((truth_lo[:, 0] / truth_lo[:, 2]).mean()),
        "payload_matches_fit": all(abs(r["payload"] - r["fit"]) < 1e-12 for r in rows),
        "rows": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--n-data", type=int, default=300_000)
    ap.add_argument("--n-mc", type=int, default=900_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/et_pipeline.json"))
    args = ap.parse_args()
    result: dict[str, Any] = {"n_data": args.n_data, "n_mc": args.n_mc, "seeds": {}}
    for s in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            r = one(s, Path(tmp), (args.n_data, args.n_mc))
        result["seeds"][str(s)] = r
        print(s, json.dumps({k: v for k, v in r.items() if k != "rows"}, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
