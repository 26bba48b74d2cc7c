"""Et categories (issue 14): migration bias, Et-dependent truth, smooth curves, thresholds.

Studies on generated samples, each over several seeds:

* ``flat``: data with NO Et dependence (the demo's |η| × R9 truth) fitted in
  |η| × R9 × Et (0-35-45-inf) with ``mc_stat_likelihood="none"`` (the issue's case), in the
  modes of :data:`MODES` (migration-free categories, the default; the same with the Et
  thresholds on ``Et·m_Z/m_ee``; categories on the raw lepton Et, the previous behaviour),
  and as a closure fit (MC smeared ahead with the injected |η| × R9 smearings, scales only).
  Pulls of every (cell, Et bin) against the |η| × R9 truth.
* ``refit``: the ``flat`` samples through :func:`zcalib.api.run_step` (the default of an
  Et step): the free fit, then the scales refitted on MC smeared ahead by its smearings.
* ``smooth``: data whose scales and smearings depend on the true Et (``EtDependence``),
  fitted in |η| × 6 Et bins: pulls against the truth at each bin's mean Et (scales; σ² for
  smearings), then the smooth curves (power / sqrt_inverse) against the truth.
* ``binned``: data with scales and smearings injected in true-Et bins (|η| × 3 Et bins),
  fitted in the same bins: pulls against the injected bin values (both threshold modes).
* ``offset``: data scales ±2 % from 1, |η| × 3 Et bins, both threshold modes.

Usage::

    python benchmarks/et_study.py --seeds 3 --out benchmarks/results/et_study.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from math import inf
from pathlib import Path
from typing import Any

import numpy as np

from zcalib.categories import Category, build_scheme
from zcalib.config import dataset_config_from_files
from zcalib.fit import FitConfig, fit_histograms
from zcalib.fit.smooth import fit_smooth, mean_category_et
from zcalib.generate import EtDependence, default_categories, default_truth, generate
from zcalib.physics import Z_MASS
from zcalib.processors import zee
from zcalib.runner import RunOptions, build_histograms

ETAS = ((0.0, 1.0), (1.0, 1.4442), (1.566, 2.0), (2.0, 2.5))
OPTS = RunOptions(executor="iterative", chunksize=200_000, progress=False)


def scheme_of(etas: Any, edges: Any, r9s: Any = ((-inf, inf),)) -> Any:
    bins = list(zip((-inf, *edges), (*edges, inf), strict=True))

    def cats(kind: str) -> list[Category]:
        cells = [(e, r, t) for r in r9s for e in etas for t in bins]
        return [Category(kind, i, eta=e, r9=r, et=t) for i, (e, r, t) in enumerate(cells)]  # type: ignore[arg-type]

    return build_scheme(cats("scale"), cats("smear"))


def fill_fit(
    sample: Any, scheme: Any, cfg: FitConfig, corrections: tuple[Any, ...] = ()
) -> tuple[Any, Any]:
    dcfg = dataset_config_from_files(data=[str(sample.data)], mc=[str(sample.mc)], fmt="ecalelf")
    hset = build_histograms(dcfg, scheme, options=OPTS, corrections=corrections, smear_seed=1)
    return hset, fit_histograms(hset, cfg, scheme=scheme)


def truth_smearing(scheme: Any, smears: Any) -> tuple[Any, ...]:
    """The MC smearing step of the injected |η| × R9 smearings (MC smeared ahead, as the
    pipeline's closure fits smear it with the previous step's smearings)."""
    from correctionlib import schemav2

    from zcalib.corrections import build_smear_correction
    from zcalib.processors.zee import CorrectionStep

    corr = build_smear_correction(
        "truth_smear", scheme, smears, np.zeros(len(smears)), description="injected"
    )
    cset = schemav2.CorrectionSet(schema_version=2, corrections=[corr])
    return (CorrectionStep("truth_smear", cset.model_dump_json(exclude_unset=True), "smear"),)


#: Et categorisation and Et thresholds of each mode: ``migration-free`` is the default
#: (categories on ``Et·m_Z/m_ee``, thresholds on the lepton Et), ``category-threshold`` also
#: cuts the thresholds on ``Et·m_Z/m_ee``, ``raw-et`` categorises on the lepton Et (the
#: behaviour before issue 14).
MODES = {
    "migration-free": (True, False),
    "category-threshold": (True, True),
    "raw-et": (False, False),
}


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    """Emulate an Et treatment by patching the processor module (iterative executor only)."""
    categories, thresholds = MODES[name]
    original = zee.category_et, zee._THRESHOLD_REFERENCE_MASS
    if not categories:
        zee.category_et = lambda et, _mass: et  # type: ignore[assignment]
    if thresholds:
        zee._THRESHOLD_REFERENCE_MASS = Z_MASS
    try:
        yield
    finally:
        zee.category_et, zee._THRESHOLD_REFERENCE_MASS = original


def per_bin(pulls: Any, n_bins: int) -> dict[str, Any]:
    """Mean pull per Et bin and the pulls of the lowest Et bin, cell by cell."""
    p = np.reshape(pulls, (-1, n_bins))
    return {
        "mean_pull_per_et_bin": p.mean(axis=0).tolist(),
        "lowest_et_bin": p[:, 0].tolist(),
        "all": p.tolist(),
    }


def summary(p: list[float]) -> dict[str, float]:
    a = np.asarray(p)
    if not len(a):
        return {"n": 0}
    return {
        "n": len(a),
        "mean": float(a.mean()),
        "width": float(a.std()),
        "max_abs": float(np.abs(a).max()),
    }


def flat(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    base = default_categories()
    etas = sorted({c.eta for c in base.scale})
    r9s = sorted({c.r9 for c in base.scale})
    scheme = scheme_of(etas, (35.0, 45.0), r9s)
    truth, truth_smears = default_truth(base)
    want = [
        truth[next(b.index for b in base.scale if b.eta == c.eta and b.r9 == c.r9)]
        for c in scheme.scale
    ]
    sample = generate(tmp / f"flat{seed}", n_data=n[0], n_mc=n[1], seed=seed)
    out = {}
    for name in MODES:
        with mode(name):
            _, res = fill_fit(sample, scheme, FitConfig(mc_stat_likelihood="none"))
        pulls = [(c.value - w) / c.total_stat for c, w in zip(res.scales, want, strict=True)]
        out[name] = {"status": res.status, "pulls": summary(pulls), **per_bin(pulls, 3)}
    # MC smeared ahead with the injected smearings, scales only (a closure fit)
    cfg = FitConfig(mc_stat_likelihood="none", fix_smears=True)
    _, res = fill_fit(sample, scheme, cfg, truth_smearing(base, truth_smears))
    pulls = [(c.value - w) / c.total_stat for c, w in zip(res.scales, want, strict=True)]
    out["mc-smeared-closure"] = {"status": res.status, "pulls": summary(pulls), **per_bin(pulls, 3)}
    return out


def refit(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    """The ``flat`` samples through :func:`zcalib.api.run_step`, the default of a step: the
    free fit on unsmeared MC (first pass), then the Et-binned scales refitted on MC smeared
    ahead by the first pass's smearings, smearings held. Pulls of both against the truth."""
    from zcalib.api import run_step
    from zcalib.runner import EventLoop

    base = default_categories()
    etas = sorted({c.eta for c in base.scale})
    r9s = sorted({c.r9 for c in base.scale})
    scheme = scheme_of(etas, (35.0, 45.0), r9s)
    truth, _ = default_truth(base)
    want = np.array(
        [truth[next(b.index for b in base.scale if b.eta == c.eta and b.r9 == c.r9)]
         for c in scheme.scale]
    )  # fmt: skip
    sample = generate(tmp / f"flat{seed}", n_data=n[0], n_mc=n[1], seed=seed)
    dcfg = dataset_config_from_files(data=[str(sample.data)], mc=[str(sample.mc)], fmt="ecalelf")
    t0 = time.perf_counter()
    done = run_step(
        EventLoop(dcfg, options=OPTS, smear_seed=1),
        scheme,
        FitConfig(mc_stat_likelihood="none"),
        tmp / f"refit{seed}",
        step="et",
    )
    wall = time.perf_counter() - t0
    record = json.loads((tmp / f"refit{seed}" / "fit_result.json").read_text())
    rec = record.get("et_scales_refit")
    out: dict[str, Any] = {"status": done.result.status, "wall_time_s": wall}
    if rec is None:
        return out
    for name in ("first_pass", "refit"):
        v, e = np.array(rec[f"{name}_scales"]), np.array(rec[f"{name}_scale_errors"])
        pulls = ((v - want) / e).tolist()
        out[name] = {"pulls": summary(pulls), **per_bin(pulls, 3)}
    out["error_ratio_refit_over_first"] = summary(
        (np.array(rec["refit_scale_errors"]) / np.array(rec["first_pass_scale_errors"])).tolist()
    )
    return out


def smooth(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    scales, smears = [1.002, 0.997, 1.004, 0.999], [0.006, 0.009, 0.012, 0.014]
    dep = EtDependence(scale_amplitude=0.006, scale_power=1.5, smear_b=0.005)
    injected = build_scheme(
        [Category("scale", i, eta=e) for i, e in enumerate(ETAS)],
        [Category("smear", i, eta=e) for i, e in enumerate(ETAS)],
    )
    sample = generate(tmp / f"smooth{seed}", n_data=n[0], n_mc=n[1], seed=seed, categories=injected,
                      truth_scales=scales, truth_smears=smears, et_dependence=dep)  # fmt: skip
    scheme = scheme_of(ETAS, (30.0, 36.0, 40.0, 44.0, 50.0))
    hset, res = fill_fit(sample, scheme, FitConfig())

    def truth(kind: str, cell: int, et: Any) -> Any:
        s, m = dep.apply(
            np.full(np.shape(et), scales[cell]), np.full(np.shape(et), smears[cell]), np.asarray(et)
        )
        return s if kind == "scale" else m

    out: dict[str, Any] = {"status": res.status}
    if res.status != "converged":  # no curves from a failed fit (its covariance is not usable)
        return out
    for kind, fits in (("scale", res.scales), ("smear", res.smears)):
        et = mean_category_et(hset, scheme, kind)
        p = [
            (c.value - truth(kind, k // 6, et[k])) / c.total_stat if kind == "scale"
            else (c.value**2 - truth(kind, k // 6, et[k]) ** 2) / c.sq_error
            for k, c in enumerate(fits)
        ]  # fmt: skip
        out[f"binned_{kind}"] = {
            **summary(p),
            "mean_pull_per_et_bin": np.reshape(p, (-1, 6)).mean(0).tolist(),
        }
    for form in ("power", "linear"):
        sm = fit_smooth(res, scheme, hset, scale_form=form)  # type: ignore[arg-type]
        pulls: dict[str, list[float]] = {"scale": [], "smear": []}
        for kind in ("scale", "smear"):
            et = mean_category_et(hset, scheme, kind)
            for idx, curve in getattr(sm, kind):
                if curve.status != "converged":
                    continue
                x = et[list(idx)]
                pulls[kind] += list((curve(x) - truth(kind, idx[0] // 6, x)) / curve.error(x))
        out[f"curves_{form}"] = {
            "failures": sm.failures(),
            "scale_pulls_at_bin_means": summary(pulls["scale"]),
            "smear_pulls_at_bin_means": summary(pulls["smear"]),
        }
    return out


def truth_bins(
    tag: str, seed: int, tmp: Path, n: tuple[int, int], truth: tuple[list[float], list[float]]
) -> dict[str, Any]:
    """Scales and smearings injected in true-Et bins (|η| × 3 Et bins), fitted in the same
    bins with the Et thresholds on the lepton Et and on ``Et·m_Z/m_ee``: pulls against the
    injected values."""
    scheme = scheme_of(ETAS, (35.0, 45.0))
    tsc, tsm = truth
    sample = generate(tmp / f"{tag}{seed}", n_data=n[0], n_mc=n[1], seed=seed, categories=scheme,
                      truth_scales=tsc, truth_smears=tsm)  # fmt: skip
    out = {}
    for name in ("migration-free", "category-threshold"):
        with mode(name):
            _, res = fill_fit(sample, scheme, FitConfig())
        ps = [(c.value - t) / c.total_stat for c, t in zip(res.scales, tsc, strict=True)]
        pm = [(c.value**2 - t * t) / c.sq_error for c, t in zip(res.smears, tsm, strict=True)]
        out[name] = {
            "status": res.status,
            "scale": {**summary(ps), **per_bin(ps, 3)},
            "smear": {**summary(pm), **per_bin(pm, 3)},
        }
    return out


def binned(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    """Et-dependent truth in true-Et bins."""
    tsc = [1.0 + 0.004 * (k % 3 - 1) + [0.002, -0.003, 0.004, -0.001][k // 3] for k in range(12)]
    tsm = [[0.008, 0.011, 0.016, 0.018][k // 3] + 0.003 * (1 - k % 3) for k in range(12)]
    return truth_bins("binned", seed, tmp, n, (tsc, tsm))


def offset(seed: int, tmp: Path, n: tuple[int, int]) -> dict[str, Any]:
    """Data scales far from 1 (±2 %, no Et dependence): a threshold on the raw Et selects
    different events in data and in the shifted MC template."""
    tsc = [[0.98, 1.02, 0.975, 1.025][k // 3] for k in range(12)]
    tsm = [[0.008, 0.011, 0.016, 0.018][k // 3] for k in range(12)]
    return truth_bins("offset", seed, tmp, n, (tsc, tsm))


STUDIES = {"flat": flat, "refit": refit, "smooth": smooth, "binned": binned, "offset": offset}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--n-data", type=int, default=200_000)
    ap.add_argument("--n-mc", type=int, default=400_000)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/et_study.json"))
    ap.add_argument(
        "--studies",
        default="flat,refit,smooth,binned,offset",
        help="comma-separated; others kept from --out",
    )
    args = ap.parse_args()
    n = (args.n_data, args.n_mc)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"n_data": n[0], "n_mc": n[1], "studies": {}}
    if args.out.is_file():
        result["studies"] = json.loads(args.out.read_text()).get("studies", {})
    chosen = set(args.studies.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for name, study in STUDIES.items():
            if name not in chosen:
                continue
            result["studies"][name] = {
                str(s): study(s, Path(tmp), n)
                for s in range(args.first_seed, args.first_seed + args.seeds)
            }
            print(name, json.dumps(result["studies"][name], indent=1), flush=True)
    result["wall_time_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
