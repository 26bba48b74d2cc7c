"""``zcalib assemble``: the final payload of a chain of finished steps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    asm = sub.add_parser(
        "assemble",
        help="the final payload of a chain of finished steps (what the pipeline writes to final/)",
        description="Fold the outputs of finished steps (zcalib fit / time-stability folders, or "
        "correctionlib files), in execution order, into the final EGM payload exactly as "
        "`zcalib pipeline` writes final/: corrections.json (every scale step stacked in the "
        "compound, the smearing of the latest step), the combined scales.dat, smearings.dat, "
        "and assemble.json. A step is named after its folder (NAME=PATH to rename).",
        epilog="Example:\n  zcalib assemble output/time_stability output/step2 output/step3 "
        "--out output/final",
        formatter_class=fmt,
    )
    asm.add_argument(
        "steps", nargs="+", metavar="STEP", help="step folders (or NAME=PATH), in execution order"
    )
    asm.add_argument("--out", type=Path, required=True, help="output folder")
    asm.add_argument(
        "--era", default=None, help="era of the payload names (default: the fit steps' era)"
    )
    asm.add_argument(
        "--smear-seed",
        type=int,
        default=None,
        help="seed of EGMRandomGenerator (default: the one recorded by the step providing "
        "the smearing)",
    )
    asm.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.chain.assemble import assemble

    paths = assemble(args.steps, args.out, era=args.era, seed=args.smear_seed)
    echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK
