"""``zcalib skim``: Parquet pair skims with provenance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo, echo_run_summary
from zcalib.cli._options import (
    add_config_option,
    add_input_options,
    add_run_options,
    calibration_config,
    dataset_config,
    run_options,
)


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "skim",
        help="write Parquet pair skims (preselection + needed columns) with provenance",
        description="Apply the pair preselection (looser by --margin on Et and mass) and write "
        "one Parquet file per input file (one row per pair), a provenance record "
        "per file and a datasets.yaml to fill histograms from.",
        epilog="Example: zcalib skim --data d.root --mc m.root --out skims/ && zcalib "
        "histograms --datasets skims/datasets.yaml --categories "
        "configs/cats_eta_r9.tsv --out hists.npz",
    )
    add_input_options(s)
    add_config_option(s)
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="relative loosening of the Et cuts and mass window (default 0.05)",
    )
    add_run_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from zcalib.skim import skim

    opts = dataclasses.replace(run_options(args), metrics_path=args.metrics)
    res = skim(
        dataset_config(args),
        args.out,
        selection=calibration_config(args).selection(),
        margin=args.margin,
        options=opts,
    )
    rows = sum(f.rows for f in res.files)
    events = sum(f.entries for f in res.files)
    echo(
        f"wrote {len(res.files)} skim(s): {rows:,} pairs from {events:,} events; "
        f"use --datasets {res.datasets_yaml}"
    )
    echo_run_summary(
        {
            "metrics": res.metrics,
            "metrics_path": args.out / "skim.metrics.json",
            "dashboard": res.metrics.get("dashboard"),
        }
    )
    return EXIT_OK
