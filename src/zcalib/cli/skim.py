"""``zcalib skim``: Parquet pair skims with provenance."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo, echo_run_summary
from zcalib.cli._options import (
    Default,
    add_config_option,
    add_input_options,
    add_prior_options,
    add_run_options,
    calibration_config,
    dataset_config,
    prior_corrections,
    run_options,
)


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "skim",
        help="write Parquet pair skims (preselection + needed columns) with provenance",
        description="Apply the pair preselection (looser by --margin on Et and mass) and write "
        "one Parquet file per input file (one row per pair), a provenance record "
        "per file and a datasets.yaml to fill histograms from. With --corrections the prior "
        "steps are applied first (as when filling) and the skims hold the corrected energies.",
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
        default=Default("zcalib.skim:skim", "margin"),
        help="relative loosening of the Et cuts and mass window",
    )
    add_prior_options(s, smears_by_default=False)
    add_run_options(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from zcalib.exceptions import InvalidConfig
    from zcalib.skim import skim

    cfg = calibration_config(args)
    if args.corrections:
        steps, zweights = prior_corrections(args, smears_by_default=False)
        if zweights:
            msg = (
                f"--corrections: Z weights ({', '.join(w.name for w in zweights)}) are MC "
                "weights a skim does not hold: give that step to `zcalib histograms` or "
                "`zcalib fit` (--corrections) filling from the skims"
            )
            raise InvalidConfig(msg)
    else:
        steps = cfg.load_corrections()
    opts = dataclasses.replace(run_options(args), metrics_path=args.metrics)
    res = skim(
        dataset_config(args, cfg),
        args.out,
        selection=cfg.selection,
        binning=cfg.mass_binning(),
        margin=args.margin,
        options=opts,
        corrections=steps,
        smear_seed=cfg.smear_seed,
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
