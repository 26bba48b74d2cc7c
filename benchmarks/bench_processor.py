"""Processor throughput vs. a raw uproot read of the same branches, and executor scaling.

Usage::

    .venv/bin/python benchmarks/bench_processor.py [--n-mc 2000000] [--out benchmarks/results/processor.json]

Generates (once, cached in ``benchmarks/.data``) demo MC in ECALELF format, then measures in
one run:

* raw read: ``uproot`` reading exactly the branches the processor needs, in the same chunks;
* the processor on the iterative executor (one process);
* the processor on a local Dask cluster with 1 and 2 worker processes.

Prints events/s and the ratios (processor / raw read, 2 workers / 1 worker), writes JSON.
"""

from __future__ import annotations

import argparse
import json
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
from zcalib.io.formats import optional_branches, required_branches
from zcalib.runner import RunOptions, build_histograms, load_weight

ROOT = Path(__file__).resolve().parents[1]


def raw_read(path: Path, branches: list[str], chunksize: int) -> float:
    """Seconds to read ``branches`` of ``path`` with uproot in chunks (numpy arrays)."""
    t0 = time.perf_counter()
    for _ in uproot.iterate(f"{path}:selected", branches, step_size=chunksize, library="np"):
        pass
    return time.perf_counter() - t0


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
    args = ap.parse_args()

    mc = demo_mc(args.n_mc)
    n = uproot.open(mc)["selected"].num_entries
    scheme, cfg, weights = demo_setup(mc)
    branches = required_branches("ecalelf") + [
        b for role, b in optional_branches("ecalelf").items() if role in ("sc_eta", "weight", "npu")
    ]

    results: dict[str, float] = {}
    results["raw_uproot_s"] = raw_read(mc, branches, args.chunksize)
    t0 = time.perf_counter()
    build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=args.chunksize, progress=False),
    )
    results["iterative_s"] = time.perf_counter() - t0
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
        "dask_2w_vs_1w": results["dask_1w_s"] / results["dask_2w_s"],
    }
    report = {
        "events": n,
        "chunksize": args.chunksize,
        "branches": branches,
        "seconds": results,
        "events_per_s": rate,
        "ratios": ratios,
        "peak_rss_client_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
    }
    print_and_write(report, args.out)


def print_and_write(report: dict[str, Any], out: Path) -> None:
    """Print the seconds (with events/s, except start-up times) and ratios; write the JSON."""
    n = report["events"]
    print(f"events: {n:,}  chunksize: {report['chunksize']:,}")
    for k, v in report["seconds"].items():
        rate_txt = "" if "startup" in k else f"   {n / v:12,.0f} events/s"
        print(f"  {k:<24} {v:8.2f} s{rate_txt}")
    for k, v in report["ratios"].items():
        print(f"  {k:<24} {v:6.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
