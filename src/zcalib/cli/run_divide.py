"""``zcalib run-divide``: contiguous run bins."""

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
RUN_DIVIDE = "zcalib.chain.run_divide:run_divide"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    rd = sub.add_parser(
        "run-divide",
        help="contiguous run bins with at least --min-events selected pairs each",
        description="Count selected data pairs per (run, lumi) and divide the data into "
        "contiguous run bins; writes OUT (YAML) and the pymin .dat next to it.",
        epilog="Example: zcalib run-divide --data demo/data.root --min-events 10000 "
        "--out output/run_bins.yaml",
        formatter_class=fmt,
    )
    add_input_options(rd)
    rd.add_argument(
        "--min-events",
        type=int,
        default=Default(RUN_DIVIDE, "min_events"),
        help="minimum selected pairs per bin",
    )
    rd.add_argument(
        "--granularity",
        choices=("run", "lumi"),
        default=Default(RUN_DIVIDE, "granularity"),
        help="run: bins end at run boundaries; lumi: may split runs",
    )
    add_config_option(rd)
    add_prior_options(rd, smears_by_default=True)
    rd.add_argument("--out", type=Path, required=True, help="output YAML (and .dat)")
    add_run_options(rd)
    rd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.chain import run_divide

    bins = run_divide(
        chain_loop(args), min_events=args.min_events, granularity=args.granularity, out=args.out
    )
    pairs = [b.pairs or 0 for b in bins.bins]
    echo(
        f"{len(bins)} run bins ({bins.granularity} granularity), {min(pairs)}-{max(pairs)} "
        f"selected pairs each; wrote {args.out} and {args.out.with_suffix('.dat')}"
    )
    return EXIT_OK
