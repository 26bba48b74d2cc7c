"""``zcalib time-stability``: scales per run bin x |eta| bin."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import (
    Default,
    add_config_option,
    add_input_options,
    add_prior_options,
    add_run_options,
    chain_loop,
)

#: The library function the defaults come from.
TIME_STABILITY = "zcalib.chain.time_stability:time_stability"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ts = sub.add_parser(
        "time-stability",
        help="scales per run bin x |eta| bin from median(MC)/median(data), with a plot",
        description="Derive the time-stability step: a correctionlib scale step with inputs "
        "run and AbsScEta (run, lumi and AbsScEta when the run bins split runs at a "
        "luminosity block), the legacy scales file (a run/lumi TSV for bins splitting runs), "
        "time_stability.json and the peak-vs-run plot (before/after) in --out.",
        epilog="Example: zcalib time-stability --data d.root --mc m.root --run-bins "
        "output/run_bins.yaml --out output/time_stability",
        formatter_class=fmt,
    )
    add_input_options(ts)
    ts.add_argument("--run-bins", type=Path, required=True, help="run bins (YAML or .dat)")
    ts.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=Default(TIME_STABILITY, "window"),
        help="mass window of the medians [GeV]",
    )
    add_config_option(ts)
    add_prior_options(ts, smears_by_default=True)
    ts.add_argument("--name", default=Default(TIME_STABILITY, "name"), help="correction name")
    ts.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the second pass (peaks after the correction)",
    )
    ts.add_argument("--out", type=Path, required=True, help="output folder")
    add_run_options(ts)
    ts.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.chain import load_run_bins, time_stability

    bins = load_run_bins(args.run_bins)
    res, paths = time_stability(
        chain_loop(args),
        bins,
        args.out,
        window=tuple(args.window),
        name=args.name,
        validate=not args.no_validate,
    )
    chi = res.chi2()
    text = (
        f"peak flatness chi2/ndf before {chi['before']['total_chi2']:.1f}/"
        f"{chi['before']['total_ndf']}"
    )
    if "after" in chi:
        text += f", after {chi['after']['total_chi2']:.1f}/{chi['after']['total_ndf']}"
    echo(f"{len(bins)} run bins x {len(res.eta_bins)} |eta| bins: {text}")
    echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK
