"""Event-loop scaling on Dask: 1 vs 2 workers, memory per worker, Parquet skim vs ROOT.

Usage::

    .venv/bin/python benchmarks/bench_scaling.py [--n-mc 10000000] [--chunksize 250000]
        [--memory-copies 2] [--out benchmarks/results/scaling.json]

Generates (once, cached in ``benchmarks/.data``) ``--n-mc`` demo MC events in ECALELF format,
then measures, on local Dask clusters of worker processes (one thread each), with the pile-up
weight and its up/down variations filled in the same pass:

* **scaling**: events/s of ``build_histograms`` with 1 and 2 workers (workers warmed up
  first, cluster start-up excluded) and the ratio;
* **memory**: peak resident memory of each worker while processing ``--memory-copies`` x
  ``--n-mc`` events (the same file listed under several dataset names), from the workers'
  own ``getrusage`` peak and from the scheduler's worker memory metrics sampled every 0.2 s;
* **skims**: ``zcalib skim`` of the file, then histogram filling from the Parquet skim vs the
  original ROOT file (2 workers), and a raw column read (pyarrow vs uproot) of the same
  quantities; file sizes.

Prints numbers and ratios and writes JSON (``benchmarks/results/scaling.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uproot

from zcalib.categories import load_categories
from zcalib.cluster import dask_client
from zcalib.config import DatasetConfig, dataset_config_from_files, load_dataset_config
from zcalib.generate import generate
from zcalib.io.formats import optional_branches, required_branches
from zcalib.runner import RunOptions, build_histograms, load_weight
from zcalib.skim import skim

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


@contextlib.contextmanager
def sample_memory(client: Any, interval: float = 0.2) -> Iterator[dict[str, int]]:
    """Peak worker memory (bytes) as the scheduler reports it, sampled in a thread."""
    peak: dict[str, int] = {}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            for w in client.scheduler_info()["workers"].values():
                mem = int(w.get("metrics", {}).get("memory", 0))
                name = str(w.get("name"))
                peak[name] = max(peak.get(name, 0), mem)
            stop.wait(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def warm_up(client: Any, cfg: DatasetConfig, scheme: Any, weights: Any) -> None:
    """Import everything and JIT-compile on every worker (one small chunk per worker)."""
    n = len(client.scheduler_info()["workers"])
    build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(client=client, chunksize=20_000, maxchunks=2 * n, progress=False),
    )


def fill(client: Any, cfg: DatasetConfig, scheme: Any, weights: Any, chunksize: int) -> dict:
    t0 = time.perf_counter()
    hs = build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(client=client, chunksize=chunksize, progress=False),
    )
    wall = time.perf_counter() - t0
    run = hs.metadata["run"]
    return {
        "events": run["events"],
        "wall_s": wall,
        "fill_s": run["wall_time_fill_s"],
        "events_per_s": run["events"] / run["wall_time_fill_s"],
        "metrics": run["metrics"],
    }


def raw_reads(root_file: Path, skim_file: Path, chunksize: int) -> dict[str, float]:
    """Seconds to read the processor's quantities: uproot (ROOT) vs pyarrow (skim)."""
    import pyarrow.parquet as pq

    branches = required_branches("ecalelf") + [
        b
        for role, b in optional_branches("ecalelf").items()
        if role in ("sc_eta", "charge", "event", "lumi", "weight", "npu")
    ]
    t0 = time.perf_counter()
    for _ in uproot.iterate(f"{root_file}:selected", branches, step_size=chunksize, library="np"):
        pass
    t_root = time.perf_counter() - t0
    t0 = time.perf_counter()
    pf = pq.ParquetFile(skim_file)
    for _ in pf.iter_batches(batch_size=chunksize):
        pass
    t_skim = time.perf_counter() - t0
    return {"root_uproot_s": t_root, "skim_pyarrow_s": t_skim}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-mc", type=int, default=10_000_000)
    ap.add_argument("--chunksize", type=int, default=250_000)
    ap.add_argument(
        "--memory-copies",
        type=int,
        default=2,
        help="list the file this many times for the memory measurement",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling.json")
    ap.add_argument(
        "--parts",
        nargs="+",
        choices=("scaling", "memory", "skim"),
        default=["scaling", "memory", "skim"],
        help="what to measure (other parts of an existing --out are kept)",
    )
    args = ap.parse_args()
    t_start = time.perf_counter()

    data_dir = ROOT / "benchmarks" / ".data" / f"scaling_mc_{args.n_mc}"
    mc = data_dir / "mc.root"
    t0 = time.perf_counter()
    if not mc.is_file():
        print(f"generating {args.n_mc:,} MC events into {data_dir} (cached) ...", flush=True)
        generate(data_dir, n_data=1000, n_mc=args.n_mc, seed=11, fmt="ecalelf")
    t_generate = time.perf_counter() - t0
    n = uproot.open(mc)["selected"].num_entries
    scheme = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
    weights = (load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),)
    cfg = dataset_config_from_files(mc=[str(mc)])
    report: dict[str, Any] = {
        "events": n,
        "chunksize": args.chunksize,
        "file_bytes": mc.stat().st_size,
        "generate_s": t_generate,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
    }

    if args.out.is_file() and set(args.parts) != {"scaling", "memory", "skim"}:
        previous = json.loads(args.out.read_text())
        report = {
            **{k: previous[k] for k in ("scaling", "memory", "skim") if k in previous},
            **report,
        }
    if "scaling" in args.parts:
        measure_scaling(args, cfg, scheme, weights, report)
    if "memory" in args.parts:
        measure_memory(args, mc, scheme, weights, cfg, report)
    if "skim" in args.parts:
        measure_skims(args, mc, data_dir, n, scheme, weights, cfg, report)

    report["total_wall_s"] = time.perf_counter() - t_start
    report["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out} (total {report['total_wall_s']:.0f} s)")


def measure_scaling(
    args: Any, cfg: DatasetConfig, scheme: Any, weights: Any, report: dict[str, Any]
) -> None:
    """events/s with 1 and 2 workers."""
    scaling: dict[str, Any] = {"load_average_before": os.getloadavg()}
    for workers in (1, 2):
        with dask_client(workers=workers, memory_limit="4GiB") as client:
            warm_up(client, cfg, scheme, weights)
            res = fill(client, cfg, scheme, weights, args.chunksize)
        scaling[f"{workers}_workers"] = res
        print(
            f"{workers} worker(s): {res['events']:,} events in {res['fill_s']:.1f} s "
            f"-> {res['events_per_s']:,.0f} events/s",
            flush=True,
        )
    speedup = scaling["2_workers"]["events_per_s"] / scaling["1_workers"]["events_per_s"]
    scaling["speedup_2_vs_1"] = speedup
    print(f"speed-up 2 vs 1 workers: {speedup:.2f}x", flush=True)
    report["scaling"] = scaling


def measure_memory(
    args: Any, mc: Path, scheme: Any, weights: Any, cfg: DatasetConfig, report: dict[str, Any]
) -> None:
    """Peak memory per worker over copies x n events."""
    big = DatasetConfig.model_validate(
        {
            "format": "ecalelf",
            "datasets": [
                {"name": f"mc_{i}", "kind": "mc", "files": [str(mc)]}
                for i in range(args.memory_copies)
            ],
        }
    )
    with dask_client(workers=2, memory_limit="4GiB") as client:
        warm_up(client, cfg, scheme, weights)
        with sample_memory(client) as sampled:
            res = fill(client, big, scheme, weights, args.chunksize)
    per_worker = res["metrics"]["per_worker"]
    memory = {
        "load_average_before": os.getloadavg(),
        "events": res["events"],
        "fill_s": res["fill_s"],
        "events_per_s": res["events_per_s"],
        "peak_rss_bytes_per_worker": {k: v["peak_rss_bytes"] for k, v in per_worker.items()},
        "sampled_peak_bytes_per_worker": sampled,
        "bounded_below_2GiB": max(
            [v["peak_rss_bytes"] for v in per_worker.values()] + list(sampled.values())
        )
        < 2 * GIB,
    }
    report["memory"] = memory
    print(
        f"memory: {res['events']:,} events in {res['fill_s']:.1f} s; peak RSS per worker "
        + ", ".join(
            f"{k}: {v / GIB:.2f} GiB" for k, v in memory["peak_rss_bytes_per_worker"].items()
        )
        + "; sampled "
        + ", ".join(f"{k}: {v / GIB:.2f} GiB" for k, v in sampled.items()),
        flush=True,
    )


def measure_skims(
    args: Any,
    mc: Path,
    data_dir: Path,
    n: int,
    scheme: Any,
    weights: Any,
    cfg: DatasetConfig,
    report: dict[str, Any],
) -> None:
    """Write a skim, then fill from it and from the ROOT file."""
    skim_dir = data_dir / "skim"
    with dask_client(workers=2, memory_limit="4GiB") as client:
        warm_up(client, cfg, scheme, weights)
        t0 = time.perf_counter()
        res_skim = skim(
            cfg,
            skim_dir,
            options=RunOptions(client=client, chunksize=args.chunksize, progress=False),
        )
        t_skim = time.perf_counter() - t0
        skim_cfg = load_dataset_config(res_skim.datasets_yaml)
        from_root = fill(client, cfg, scheme, weights, args.chunksize)
        from_skim = fill(client, skim_cfg, scheme, weights, args.chunksize)
    skim_file = res_skim.files[0].path
    reads = raw_reads(mc, skim_file, args.chunksize)
    skims = {
        "load_average_before": os.getloadavg(),
        "skim_write_s": t_skim,
        "rows": res_skim.files[0].rows,
        "skim_bytes": skim_file.stat().st_size,
        "root_bytes": mc.stat().st_size,
        "fill_from_root_s": from_root["fill_s"],
        "fill_from_skim_s": from_skim["fill_s"],
        "fill_speedup_skim_vs_root": from_root["fill_s"] / from_skim["fill_s"],
        "source_events_per_s_root": n / from_root["fill_s"],
        "source_events_per_s_skim": n / from_skim["fill_s"],
        **reads,
        "raw_read_speedup_skim_vs_root": reads["root_uproot_s"] / reads["skim_pyarrow_s"],
    }
    report["skim"] = skims
    print(
        f"skim: {n:,} events -> {skims['rows']:,} pairs in {t_skim:.1f} s; "
        f"{skims['root_bytes'] / 2**20:,.0f} MiB ROOT -> {skims['skim_bytes'] / 2**20:,.0f} "
        "MiB Parquet",
        flush=True,
    )
    print(
        f"fill from ROOT {skims['fill_from_root_s']:.1f} s, from skim "
        f"{skims['fill_from_skim_s']:.1f} s -> {skims['fill_speedup_skim_vs_root']:.2f}x; raw "
        f"read uproot {reads['root_uproot_s']:.1f} s vs pyarrow {reads['skim_pyarrow_s']:.1f} s "
        f"-> {skims['raw_read_speedup_skim_vs_root']:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
