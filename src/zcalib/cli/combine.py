"""``zcalib combine``: fold a step's scales into a scales file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import Default


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    cb = sub.add_parser(
        "combine",
        help="fold a step's scales into a scales file (pymin --combine-files)",
        description="Multiply the scales of a step (only-step or scales file) into a base "
        "scales file row by row for nested categories; write the combined file.",
        epilog="Example: zcalib combine --scales output/time_stability/"
        "time_stability_scales.dat --only-step output/step2/step2_only_step.tsv "
        "--out output/combined_scales.dat",
        formatter_class=fmt,
    )
    cb.add_argument("--scales", type=Path, required=True, help="base scales file")
    cb.add_argument("--only-step", type=Path, required=True, help="the step's scales file")
    cb.add_argument(
        "--error",
        choices=("step", "quadrature"),
        default=Default("zcalib.corrections.legacy:combine", "error"),
        help="keep the step error (pymin) or combine both in quadrature",
    )
    cb.add_argument("--out", type=Path, required=True, help="combined scales file")
    cb.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.corrections import combine

    table = combine(args.scales, args.only_step, args.out, error=args.error)
    echo(f"wrote {args.out} ({len(table)} rows)")
    return EXIT_OK
