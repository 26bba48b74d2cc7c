"""The event loop on 1 and 2 SLURM worker jobs: the same events, one run.

Usage::

    .venv/bin/python benchmarks/bench_slurm.py [--n-mc 2000000] [--out benchmarks/results/slurm.json]

Starts the private single-node SLURM of the tests (``tests/slurm/conftest.py``: munged,
slurmctld, slurmd on 127.0.0.1; ``make slurm`` installs the Debian packages), then fills the
histograms of the same generated MC (cached in ``benchmarks/.data``) through a ``kind: slurm``
recipe with ``jobs: 1`` and ``jobs: 2`` (1 core, 3 GB each, the venv activated in the job
prologue). The jobs are submitted and their workers connected before the timing starts; the
time from ``sbatch`` to connected workers is listed separately. As a reference under the same
machine load, the same fill on a local cluster of 1 and 2 worker processes. Prints seconds,
events/s and the 2-job / 1-job speed-ups, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uproot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' SLURM fixture class

from bench_processor import demo_mc, demo_setup, print_and_write
from tests.slurm.conftest import Slurm

from zcalib.cluster import dask_client
from zcalib.runner import RunOptions, build_histograms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-mc", type=int, default=2_000_000)
    ap.add_argument("--chunksize", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "slurm.json")
    args = ap.parse_args()

    mc = demo_mc(args.n_mc)  # the sample of bench_processor.py
    n = uproot.open(mc)["selected"].num_entries
    scheme, cfg, weights = demo_setup(mc)

    seconds: dict[str, float] = {}
    load: dict[str, float] = {}
    cutflows = []

    def fill(client: Any, key: str) -> None:
        load[key] = os.getloadavg()[0]
        t0 = time.perf_counter()
        hs = build_histograms(
            cfg,
            scheme,
            weights=weights,
            options=RunOptions(
                executor="dask", client=client, chunksize=args.chunksize, progress=False
            ),
        )
        seconds[key] = time.perf_counter() - t0
        cutflows.append(hs.cutflow)

    # the reference under the same load: a local cluster of 1 and 2 worker processes
    for workers in (1, 2):
        with dask_client(workers=workers) as client:
            client.wait_for_workers(workers)
            fill(client, f"local_{workers}w_s")
    with tempfile.TemporaryDirectory(prefix="zcalib-bench-slurm-") as tmp:
        slurm = Slurm(Path(tmp))
        try:
            slurm.start()
            os.environ["SLURM_CONF"] = str(slurm.conf)
            for jobs in (1, 2):
                recipe = slurm.recipe(jobs=jobs, adapt=None)
                t_submit = time.perf_counter()
                with dask_client(recipe=recipe) as client:
                    client.wait_for_workers(jobs, timeout=300)
                    seconds[f"slurm_{jobs}job_startup_s"] = time.perf_counter() - t_submit
                    fill(client, f"slurm_{jobs}job_s")
                slurm.wait_idle(120)
        finally:
            slurm.close()
    assert all(c == cutflows[0] for c in cutflows), "the runs selected different events"

    rate = {
        k.replace("_s", "_events_per_s"): n / v for k, v in seconds.items() if "startup" not in k
    }
    ratios = {
        "slurm_2job_vs_1job": seconds["slurm_1job_s"] / seconds["slurm_2job_s"],
        "local_2w_vs_1w": seconds["local_1w_s"] / seconds["local_2w_s"],
        "slurm_1job_vs_local_1w": seconds["local_1w_s"] / seconds["slurm_1job_s"],
    }
    report = {
        "events": n,
        "chunksize": args.chunksize,
        "seconds": seconds,
        "events_per_s": rate,
        "ratios": ratios,
        "load_average_1min_at_start": load,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print_and_write(report, args.out)


if __name__ == "__main__":
    main()
