"""Processor throughput vs. a raw uproot read of the same branches, and executor scaling.

Usage::

    .venv/bin/python benchmarks/bench_processor.py [--n-mc 2000000] [--out benchmarks/results/processor.json]

Generates (once, cached in ``benchmarks/.data``) demo MC in ECALELF format, then measures in
one run:

* raw read: ``uproot`` reading exactly the branches the processor needs, in the same chunks;
* the processor on the iterative executor (one process);
* the processor on a local Dask cluster with 1 and 2 worker processes.

The raw read and the iterative processor run ``--repeat`` times, interleaved, in one process
(after one warm-up run that compiles the numba kernels); CPU and wall times are recorded for
each and the ratio is taken from the fastest of each (the least disturbed by other jobs on
the machine). The load average is recorded with the results.

Prints events/s and the ratios (processor / raw read, 2 workers / 1 worker), writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import uproot

from zcalib.categories import load_categories
from zcalib.cluster import dask_client
from zcalib.config import dataset_config_from_files
from zcalib.generate import generate
from zcalib.runner import RunOptions, build_histograms, load_weight

ROOT = Path(__file__).resolve().parents[1]


def raw_read(path: Path, branches: list[str], chunksize: int) -> tuple[float, float]:
    """(wall, CPU) seconds to read ``branches`` of ``path`` with uproot in chunks (numpy)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in uproot.iterate(f"{path}:selected", branches, step_size=chunksize, library="np"):
        pass
    return time.perf_counter() - t0, time.process_time() - c0


def processor_branches(scheme: Any, cfg: Any, weights: tuple[Any, ...]) -> list[str]:
    """The branches the processor reads from the MC dataset (its own list)."""
    from zcalib.io.preflight import check_inputs
    from zcalib.processors.zee import ZeeProcessor

    info = check_inputs(cfg)[0]
    proc = ZeeProcessor(
        fmt="ecalelf",
        categories=scheme.to_yaml_dict(),
        kinds={info.dataset: "mc"},
        available={info.dataset: dict(info.optional)},
        weights=weights,
    )
    return proc.branches(info.dataset)


def demo_mc(n_mc: int) -> Path:
    """Demo MC in ECALELF format, generated once into ``benchmarks/.data``."""
    mc = ROOT / "benchmarks" / ".data" / f"mc_{n_mc}" / "mc.root"
    if not mc.is_file():
        generate(mc.parent, n_data=1000, n_mc=n_mc, seed=11, fmt="ecalelf")
    return mc


def demo_setup(mc: Path) -> tuple[Any, Any, tuple[Any, ...]]:
    """The 8-category scheme, the dataset description of ``mc`` and the pile-up weight."""
    scheme = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
    cfg = dataset_config_from_files(mc=[str(mc)])
    return scheme, cfg, (load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-mc", type=int, default=2_000_000)
    ap.add_argument("--chunksize", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "processor.json")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    mc = demo_mc(args.n_mc)
    n = uproot.open(mc)["selected"].num_entries
    scheme, cfg, weights = demo_setup(mc)
    branches = processor_branches(scheme, cfg, weights)
    iterative = RunOptions(executor="iterative", chunksize=args.chunksize, progress=False)

    build_histograms(cfg, scheme, weights=weights, options=iterative)  # compile, warm caches
    runs: dict[str, list[list[float]]] = {"raw_uproot": [], "iterative": []}
    for _ in range(args.repeat):
        runs["raw_uproot"].append(list(raw_read(mc, branches, args.chunksize)))
        t0, c0 = time.perf_counter(), time.process_time()
        build_histograms(cfg, scheme, weights=weights, options=iterative)
        runs["iterative"].append([time.perf_counter() - t0, time.process_time() - c0])
    results: dict[str, float] = {
        "raw_uproot_s": min(w for w, _ in runs["raw_uproot"]),
        "iterative_s": min(w for w, _ in runs["iterative"]),
    }
    cpu = {k: min(c for _, c in v) for k, v in runs.items()}
    # Dask: the cluster is started before timing (start-up is measured separately)
    for workers in (1, 2):
        t_start = time.perf_counter()
        with dask_client(workers=workers) as client:
            client.wait_for_workers(workers)
            results[f"dask_{workers}w_startup_s"] = time.perf_counter() - t_start
            t0 = time.perf_counter()
            build_histograms(
                cfg,
                scheme,
                weights=weights,
                options=RunOptions(
                    executor="dask", client=client, chunksize=args.chunksize, progress=False
                ),
            )
            results[f"dask_{workers}w_s"] = time.perf_counter() - t0

    rate = {
        k.replace("_s", "_events_per_s"): n / v for k, v in results.items() if "startup" not in k
    }
    ratios = {
        "iterative_vs_raw_read": results["raw_uproot_s"] / results["iterative_s"],
        "iterative_vs_raw_read_cpu": cpu["raw_uproot"] / cpu["iterative"],
        "dask_2w_vs_1w": results["dask_1w_s"] / results["dask_2w_s"],
    }
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": n,
        "chunksize": args.chunksize,
        "branches": branches,
        "seconds": results,
        "cpu_seconds": cpu,
        "runs_wall_cpu_s": runs,
        "load_average": os.getloadavg(),
        "events_per_s": rate,
        "ratios": ratios,
        "peak_rss_client_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print_and_write(report, args.out)


def print_and_write(report: dict[str, Any], out: Path) -> None:
    """Print the seconds (with events/s, except start-up times) and ratios; write the JSON."""
    n = report["events"]
    print(f"events: {n:,}  chunksize: {report['chunksize']:,}")
    for k, v in report["seconds"].items():
        rate_txt = "" if "startup" in k else f"   {n / v:12,.0f} events/s"
        print(f"  {k:<24} {v:8.2f} s{rate_txt}")
    for k, v in report["cpu_seconds"].items():
        print(f"  {k + ' CPU':<24} {v:8.2f} s")
    for k, v in report["ratios"].items():
        print(f"  {k:<24} {v:6.2f}")
    print(f"  load average {report['load_average']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
