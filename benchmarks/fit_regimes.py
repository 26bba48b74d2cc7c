"""Regime matrix of the fit likelihoods and toy validation of the MC-statistics errors.

Part 1, regime x likelihood (``--samples`` generated samples per regime, data and MC from
the project's generator ``zcalib.fit.synthetic``, truth injected in the 4 x 2 parent
|η| x R9 bins; fitted scales are compared with their parent's truth):

* ``dense``: 8 + 8 demo scheme, 300k data, MC = 4 x data;
* ``mc~data``: 8 + 8, 300k data, MC = data;
* ``sparse-fine``: 40 scale (8 |η| x 5 R9) + 8 smear cells, 400k data, MC = 3 x data;
* ``neg-30%``: 8 + 8, 100k data, 1.6M MC with 30 % negative weights;
* ``eta-r9-et``: 66 scale (11 |η| x 2 R9 x 3 Et) + 8 smear cells, 600k data, MC = 3 x data.

For each: fits converged / failed / with a parameter at a bound, mean and width of the
scale pulls and of the smearing pulls in σ² (``(σ̂² − σ²_true)/err(σ²)``).

Part 2, MC-statistics errors against toys that fluctuate the *template* only: one data
sample, ``--toys`` MC templates drawn (Poisson) from a 5x larger parent MC histogram, each
fitted with the default errors; pull = (θ_k − mean θ)/mc_stat_k, width should be ~1
(``dense`` and ``sparse-fine`` schemes).

Usage::

    python benchmarks/fit_regimes.py --out benchmarks/results/fit_regimes.json
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

from zcalib.categories import CategoryScheme
from zcalib.fit import FitConfig, fit_arrays, synthetic_histograms
from zcalib.fit import synthetic as syn

ROOT = Path(__file__).resolve().parents[1]
TRUTH_SCALES = np.array([1.006, 0.995, 1.003, 0.990, 1.009, 0.998, 1.012, 0.993])
TRUTH_SMEARS = np.array([0.009, 0.016, 0.020, 0.013, 0.010, 0.012, 0.018, 0.015])
LIKELIHOODS = ("noise-corrected", "none", "bb-lite")


def schemes() -> dict[str, CategoryScheme]:
    return {
        "parent": syn.grid_scheme(syn.PARENT_ETA, syn.PARENT_R9),
        "fine": syn.grid_scheme(syn.FINE_ETA, syn.FINE_R9),
        "et": syn.grid_scheme(syn.ETA_11, syn.PARENT_R9, syn.ET_3),
    }


#: regime -> (scheme, n_data, n_mc, negative fraction)
REGIMES: dict[str, tuple[str, int, int, float]] = {
    "dense": ("parent", 300_000, 1_200_000, 0.0),
    "mc~data": ("parent", 300_000, 300_000, 0.0),
    "sparse-fine": ("fine", 400_000, 1_200_000, 0.0),
    "neg-30%": ("parent", 100_000, 1_600_000, 0.3),
    "eta-r9-et": ("et", 600_000, 1_800_000, 0.0),
}


def pulls(res: Any, truth_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sc = np.array(
        [(c.value - t) / c.total_stat for c, t in zip(res.scales, truth_scales, strict=True)]
    )
    sm = np.array(
        [(c.value**2 - t**2) / c.sq_error for c, t in zip(res.smears, TRUTH_SMEARS, strict=True)]
    )
    return sc, sm


def regime_matrix(
    n_samples: int,
    regimes: tuple[str, ...] = tuple(REGIMES),
    likelihoods: tuple[str, ...] = LIKELIHOODS,
) -> list[dict[str, Any]]:
    sch = schemes()
    rows = []
    for regime in regimes:
        name, nd, nm, neg = REGIMES[regime]
        scheme = sch[name]
        truth = TRUTH_SCALES[syn.parent_scale_index(scheme, sch["parent"])]
        acc: dict[str, dict[str, Any]] = {
            lik: {"sc": [], "sm": [], "conv": 0, "bound": 0, "wall": [], "cpu": []}
            for lik in likelihoods
        }
        for k in range(n_samples):
            hs = synthetic_histograms(
                scheme,
                n_data=nd,
                n_mc=nm,
                scales=TRUTH_SCALES,
                smears=TRUTH_SMEARS,
                seed=500 + k,
                truth_scheme=sch["parent"],
                negative_fraction=neg,
            )
            arr = syn.fit_inputs(hs, scheme)
            for lik in likelihoods:
                cfg = FitConfig(mc_stat_likelihood=lik)  # type: ignore[arg-type]
                c0 = time.process_time()
                res = fit_arrays(**arr, config=cfg)
                a = acc[lik]
                a["cpu"].append(time.process_time() - c0)
                a["conv"] += res.converged
                a["bound"] += any(c.at_bound for c in (*res.scales, *res.smears))
                a["wall"].append(res.wall_time)
                sc, sm = pulls(res, truth)
                a["sc"].extend(sc.tolist())
                a["sm"].extend(sm.tolist())
        for lik, a in acc.items():
            sc, sm = np.array(a["sc"]), np.array(a["sm"])
            row = {
                "regime": regime,
                "likelihood": lik,
                "samples": n_samples,
                "converged": a["conv"],
                "with_parameter_at_bound": a["bound"],
                "scale_pull_mean": float(sc.mean()),
                "scale_pull_width": float(sc.std(ddof=1)),
                "smear_sq_pull_mean": float(sm.mean()),
                "smear_sq_pull_width": float(sm.std(ddof=1)),
                "fit_wall_s_mean": float(np.mean(a["wall"])),
                "fit_cpu_s_mean": float(np.mean(a["cpu"])),
            }
            rows.append(row)
            print(
                f"{regime:>12} {lik:>16}: converged {a['conv']}/{n_samples}, at bound "
                f"{a['bound']}, scale pulls {row['scale_pull_mean']:+.2f} ± "
                f"{row['scale_pull_width']:.2f}, smear σ² pulls {row['smear_sq_pull_mean']:+.2f}"
                f" ± {row['smear_sq_pull_width']:.2f}, {row['fit_wall_s_mean']:.2f} s",
                flush=True,
            )
    return rows


def template_toys(name: str, nd: int, nm: int, n_toys: int) -> dict[str, Any]:
    """MC-stat pulls over toys that fluctuate only the template (data fixed)."""
    sch = schemes()
    scheme = sch[name]
    hs = synthetic_histograms(
        scheme,
        n_data=nd,
        n_mc=5 * nm,
        scales=TRUTH_SCALES,
        smears=TRUTH_SMEARS,
        seed=77,
        truth_scheme=sch["parent"],
        mc_weights=False,
    )
    arr = syn.fit_inputs(hs, scheme)
    parent = arr["mc_w"] / 5.0
    rng = np.random.default_rng(78)
    vals, mc_err, t_min, t_err = [], [], [], []
    for _ in range(n_toys):
        t = rng.poisson(parent).astype(float)
        res = fit_arrays(**{**arr, "mc_w": t, "mc_w2": t.copy()})
        if not res.converged:
            continue
        v = [c.value for c in res.scales] + [c.value**2 for c in res.smears]
        e = [c.mc_stat for c in res.scales] + [
            2.0 * max(c.value, 1e-12) * c.mc_stat for c in res.smears
        ]
        vals.append(v)
        mc_err.append(e)
        t_min.append(res.timings["minimise"])
        t_err.append(res.timings["errors"])
    v, e = np.array(vals), np.array(mc_err)
    k = len(v)
    p = (v - v.mean(axis=0)) / e * np.sqrt(k / (k - 1))
    ns = len(scheme.scale)
    spread = v.std(axis=0, ddof=1)
    out = {
        "scheme": name,
        "n_data": nd,
        "n_mc": nm,
        "toys_converged": k,
        "toys": n_toys,
        "scale_pull_width": float(p[:, :ns].std()),
        "smear_sq_pull_width": float(p[:, ns:].std()),
        "scale_ratio_mean_err_to_spread": float((e[:, :ns].mean(axis=0) / spread[:ns]).mean()),
        "smear_ratio_mean_err_to_spread": float((e[:, ns:].mean(axis=0) / spread[ns:]).mean()),
        "minimise_s_median": float(np.median(t_min)),
        "errors_s_median": float(np.median(t_err)),
    }
    print(
        f"toys {name}: {k}/{n_toys} converged; MC-stat pull width scales "
        f"{out['scale_pull_width']:.2f}, smearings (σ²) {out['smear_sq_pull_width']:.2f}; "
        f"errors {out['errors_s_median']:.2f} s vs minimise {out['minimise_s_median']:.2f} s",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fit_regimes.json")
    ap.add_argument("--samples", type=int, default=3, help="samples per regime")
    ap.add_argument("--toys", type=int, default=20, help="template toys per scheme")
    ap.add_argument("--part", choices=("all", "matrix", "toys"), default="all")
    ap.add_argument(
        "--regimes", default=",".join(REGIMES), help="comma-separated regimes of the matrix"
    )
    ap.add_argument(
        "--likelihoods", default=",".join(LIKELIHOODS), help="comma-separated likelihoods"
    )
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    payload: dict[str, Any] = {}
    if args.out.exists():
        payload = json.loads(args.out.read_text())
    if args.part in ("all", "matrix"):
        rows = regime_matrix(
            args.samples, tuple(args.regimes.split(",")), tuple(args.likelihoods.split(","))
        )
        keys = {(r["regime"], r["likelihood"]) for r in rows}
        kept = [r for r in payload.get("regimes", []) if (r["regime"], r["likelihood"]) not in keys]
        payload["regimes"] = kept + rows
    if args.part in ("all", "toys"):
        payload["template_toys"] = [
            template_toys("parent", 300_000, 1_200_000, args.toys),
            template_toys("fine", 400_000, 1_200_000, args.toys),
        ]
    payload["wall_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
