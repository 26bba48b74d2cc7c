"""Fill cost vs. the number of categories, and the processor vs. a raw uproot read.

Usage::

    .venv/bin/python benchmarks/bench_categories.py [--n-data 400000] [--n-mc 1200000]
        [--out benchmarks/results/categories.json]

Generates (once, cached in ``benchmarks/.data``) demo data and MC in ECALELF format, then, in
one run and on the same events:

* fills the pair-mass histograms (iterative executor, pile-up weight with up/down
  variations) with schemes of 8, 72, 264, 330 and 528 cells (|η| × R9 × Et scale
  categories), each in a fresh process, recording the fill wall time, the peak RSS of that
  process (the worker), the populated regions and the bytes the histograms hold;
* fills every scheme again, ``--repeat`` rounds interleaved in one process (fastest of
  each): the steadier CPU ratio on a shared machine;
* reads the branches the processor reads with ``uproot.iterate`` in the same chunks (raw
  read) and compares the processor time with it.

Prints a table and the ratios (fill time vs. the 8-cell one, processor / raw read), writes
JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: |η| bins (crack excluded), R9 and Et edges of each scheme: cells = |η| x R9 x Et bins.
ETA8 = (0.0, 0.35, 0.7, 1.0, 1.2, 1.4442, 1.566, 1.8, 2.1, 2.5)
ETA5 = (0.0, 0.5, 1.0, 1.4442, 1.566, 2.0, 2.5)
ETA4 = (0.0, 1.0, 1.4442, 1.566, 2.0, 2.5)
R9_2 = (0.0, 0.96, 10.0)
R9_3 = (0.0, 0.9, 0.96, 10.0)
ET1 = (0.0, 1.0e4)


def _et(n: int) -> tuple[float, ...]:
    """``n`` Et bins: 20-75 GeV in equal steps, below and above open-ended."""
    inner = [20.0 + i * 55.0 / (n - 2) for i in range(n - 1)] if n > 2 else [40.0]
    return (0.0, *inner, 1.0e4)


SCHEMES: dict[int, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    8: (ETA4, R9_2, ET1),
    72: (ETA8, R9_3, _et(3)),
    264: (ETA8, R9_3, _et(11)),
    330: (ETA5, R9_3, _et(22)),
    528: (ETA8, R9_3, _et(22)),
}


def scheme_dict(cells: int) -> dict[str, Any]:
    """Scale categories |η| x R9 x Et (crack excluded); one inclusive smear category."""
    eta, r9, et = SCHEMES[cells]
    cats = [
        {"eta": [a, b], "r9": [r, s], "et": [e, f]}
        for a, b in itertools.pairwise(eta)
        if not (a == 1.4442 and b == 1.566)
        for r, s in itertools.pairwise(r9)
        for e, f in itertools.pairwise(et)
    ]
    return {"schema_version": 1, "scale": cats}


def one(cells: int, data: Path, mc: Path, chunksize: int) -> dict[str, Any]:
    """Fill the histograms of one scheme (run in a fresh process)."""
    from zcalib.categories import scheme_from_dict
    from zcalib.config import dataset_config_from_files
    from zcalib.histograms import PairCounts
    from zcalib.runner import RunOptions, build_histograms, checked_inputs, load_weight

    t0 = time.perf_counter()
    scheme = scheme_from_dict(scheme_dict(cells), source=f"{cells} cells")
    t_scheme = time.perf_counter() - t0
    assert scheme.n_cells == cells, (scheme.n_cells, cells)
    cfg = dataset_config_from_files(data=[str(data)], mc=[str(mc)])
    weights = (load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),)
    opts = RunOptions(executor="iterative", chunksize=chunksize, progress=False)
    # warm-up on one small chunk with another scheme: imports and compiled kernels are
    # one-time costs of a process, not of a fill (the scheme's own set-up is measured)
    warm = scheme_from_dict(scheme_dict(8 if cells != 8 else 72), source="warm-up")
    build_histograms(
        cfg, warm, weights=weights, options=RunOptions(**{**vars(opts), "maxchunks": 1})
    )
    cpu0 = time.process_time()
    checked_inputs(cfg, skip_bad_files=False, weights=weights)  # what build_histograms redoes
    cpu_checks = time.process_time() - cpu0
    merge = [0.0]  # CPU seconds spent accumulating chunk outputs (coffea adds PairCounts)
    iadd = PairCounts.__iadd__

    def timed_iadd(self: PairCounts, other: PairCounts) -> PairCounts:
        c0 = time.process_time()
        try:
            return iadd(self, other)
        finally:
            merge[0] += time.process_time() - c0

    PairCounts.__iadd__ = timed_iadd  # type: ignore[method-assign]
    cpu0 = time.process_time()
    hs = build_histograms(cfg, scheme, weights=weights, options=opts)
    cpu = time.process_time() - cpu0 - cpu_checks
    PairCounts.__iadd__ = iadd  # type: ignore[method-assign]
    run = hs.metadata["run"]
    counts = hs.counts
    return {
        "cells": cells,
        "possible_regions": scheme.n_regions,
        "populated_regions": len(hs.regions),
        "stored_bins": sum(len(b.keys) for b in counts.blocks.values()),
        "blocks": [list(k) for k in counts.blocks],
        "histogram_mb": counts.nbytes() / 2**20,
        "scheme_build_s": t_scheme,
        "fill_s": run["wall_time_fill_s"],
        "fill_cpu_s": cpu,
        "merge_cpu_s": merge[0],
        "checks_s": run["wall_time_checks_s"],
        "events": run["events"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "selected": {d: cf.get("mass") for d, cf in hs.cutflow.items()},
    }


def interleaved(cells: list[int], data: Path, mc: Path, chunksize: int, repeat: int) -> Any:
    """Fill CPU seconds of every scheme, ``repeat`` rounds interleaved in one process (after
    a warm-up): each scheme meets the same machine load, so the ratios are steadier than
    those of the one-process-per-scheme runs."""
    from zcalib.categories import scheme_from_dict
    from zcalib.config import dataset_config_from_files
    from zcalib.runner import RunOptions, build_histograms, load_weight

    cfg = dataset_config_from_files(data=[str(data)], mc=[str(mc)])
    weights = (load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),)
    opts = RunOptions(executor="iterative", chunksize=chunksize, progress=False)
    schemes = {c: scheme_from_dict(scheme_dict(c), source=f"{c} cells") for c in cells}
    warm = RunOptions(**{**vars(opts), "maxchunks": 1})
    build_histograms(cfg, schemes[cells[0]], weights=weights, options=warm)
    cpu: dict[int, list[float]] = {c: [] for c in cells}
    for _ in range(repeat):
        for c in cells:
            c0 = time.process_time()
            build_histograms(cfg, schemes[c], weights=weights, options=opts)
            cpu[c].append(time.process_time() - c0)
    return cpu


def processor_branches(data: Path, mc: Path) -> dict[Path, list[str]]:
    """The branches the processor reads from each file (its own list, per dataset kind)."""
    from zcalib.categories import scheme_from_dict
    from zcalib.config import dataset_config_from_files
    from zcalib.io.preflight import check_inputs
    from zcalib.processors.zee import ZeeProcessor
    from zcalib.runner import load_weight

    cfg = dataset_config_from_files(data=[str(data)], mc=[str(mc)])
    infos = check_inputs(cfg)
    proc = ZeeProcessor(
        fmt="ecalelf",
        categories=scheme_from_dict(scheme_dict(8)).to_yaml_dict(),
        kinds={ds.name: ds.kind for ds in cfg.datasets},
        available={i.dataset: dict(i.optional) for i in infos},
        weights=(load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),),
    )
    return {Path(i.path): proc.branches(i.dataset) for i in infos}


def raw_read(branches: dict[Path, list[str]], chunksize: int) -> tuple[float, float]:
    """Wall and CPU seconds to read each file's ``branches`` with uproot in chunks (numpy)."""
    import uproot

    t0, c0 = time.perf_counter(), time.process_time()
    for p, names in branches.items():
        for _ in uproot.iterate(f"{p}:selected", names, step_size=chunksize, library="np"):
            pass
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-data", type=int, default=400_000)
    ap.add_argument("--n-mc", type=int, default=1_200_000)
    ap.add_argument("--chunksize", type=int, default=200_000)
    ap.add_argument("--cells", type=int, nargs="*", default=sorted(SCHEMES))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--interleaved", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the interleaved check")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "categories.json")
    args = ap.parse_args()

    data_dir = ROOT / "benchmarks" / ".data" / f"cats_{args.n_data}_{args.n_mc}"
    data, mc = data_dir / "data.root", data_dir / "mc.root"
    if args.one is not None:
        print(json.dumps(one(args.one, data, mc, args.chunksize)))
        return
    if args.interleaved:
        print(json.dumps(interleaved(args.cells, data, mc, args.chunksize, args.repeat)))
        return
    if not (data.is_file() and mc.is_file()):
        from zcalib.generate import generate

        generate(data_dir, n_data=args.n_data, n_mc=args.n_mc, seed=12, fmt="ecalelf")

    # what the processor reads from each file
    branches = processor_branches(data, mc)
    rows = []
    t_raw = raw_read(branches, args.chunksize)
    for cells in args.cells:
        cmd = [sys.executable, __file__, "--one", str(cells), "--n-data", str(args.n_data)]
        cmd += ["--n-mc", str(args.n_mc), "--chunksize", str(args.chunksize)]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"{r['cells']:5d} cells  {r['populated_regions']:6d}/{r['possible_regions']:6d} "
            f"regions  fill {r['fill_s']:7.2f} s ({r['fill_cpu_s']:6.2f} s CPU, merge "
            f"{r['merge_cpu_s']:5.2f} s)  "
            f"peak RSS {r['peak_rss_mb']:7.0f} MB  "
            f"histograms {r['histogram_mb']:7.1f} MB",
            flush=True,
        )
    cmd = [sys.executable, __file__, "--interleaved", "--repeat", str(args.repeat)]
    cmd += ["--n-data", str(args.n_data), "--n-mc", str(args.n_mc)]
    cmd += ["--chunksize", str(args.chunksize), "--cells", *map(str, args.cells)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
    same_process = {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
    t_raw_again = raw_read(branches, args.chunksize)
    raw_wall = min(t_raw[0], t_raw_again[0])
    raw_cpu = min(t_raw[1], t_raw_again[1])
    base = next(r for r in rows if r["cells"] == min(args.cells))
    fastest = {c: min(v) for c, v in same_process.items()}
    for r in rows:
        r["interleaved_fill_cpu_s"] = same_process[r["cells"]]
        r["interleaved_cpu_vs_smallest"] = fastest[r["cells"]] / fastest[base["cells"]]
        r["fill_cpu_vs_smallest"] = r["fill_cpu_s"] / base["fill_cpu_s"]
        r["fill_wall_vs_smallest"] = r["fill_s"] / base["fill_s"]
        r["processor_vs_raw_read_cpu"] = raw_cpu / r["fill_cpu_s"]
        r["processor_vs_raw_read_wall"] = raw_wall / r["fill_s"]
    events = base["events"]
    report = {
        "events": events,
        "n_data": args.n_data,
        "n_mc": args.n_mc,
        "chunksize": args.chunksize,
        "executor": "iterative (one process per scheme)",
        "weights": ["pileup (nominal, up, down)"],
        "raw_read_branches": {p.name: b for p, b in branches.items()},
        "raw_read_wall_s": [t_raw[0], t_raw_again[0]],
        "raw_read_cpu_s": [t_raw[1], t_raw_again[1]],
        "schemes": rows,
        "load_average": os.getloadavg(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(
        f"events: {events:,}  chunksize: {args.chunksize:,}  raw read: {raw_wall:.2f} s wall,"
        f" {raw_cpu:.2f} s CPU"
    )
    for r in rows:
        print(
            f"  {r['cells']:4d} cells: fill CPU x{r['fill_cpu_vs_smallest']:.2f} (wall "
            f"x{r['fill_wall_vs_smallest']:.2f}) of the {base['cells']}-cell fill; processor / "
            f"raw read {r['processor_vs_raw_read_cpu']:.2f} (CPU), "
            f"{r['processor_vs_raw_read_wall']:.2f} (wall); interleaved in one process: "
            f"fill CPU x{r['interleaved_cpu_vs_smallest']:.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
