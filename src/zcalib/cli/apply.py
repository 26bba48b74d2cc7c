"""``zcalib apply``: correct data / smear MC leptons with a payload."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import Default, add_run_options, run_options

#: The library function the defaults come from.
APPLY = "zcalib.api:apply"


def add_parser(sub: Any) -> None:
    a = sub.add_parser(
        "apply",
        help="correct data / smear MC leptons with a payload (Parquet, per chunk)",
        description="Apply a zcalib payload (EGM layout) to NanoAOD or ECALELF files, using "
        "only the payload: corrected data pt/energy with scale_up/down, smeared MC pt/energy "
        "(EGMRandomGenerator) with smear_up/down and scale_up/down. One Parquet file per chunk "
        "under OUT/data and OUT/mc, and OUT/apply.json.",
        epilog="Examples:\n  zcalib apply output/pipeline_demo/final/corrections.json --data "
        "d.root --mc m.root --input-format ecalelf --out output/applied\n  zcalib apply "
        "step/corrections.json --mc nano.root --collection Pho --out output/applied",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("payload", type=Path, help="correctionlib file written by zcalib")
    a.add_argument("--data", nargs="+", default=[], help="data files (scales applied)")
    a.add_argument("--mc", nargs="+", default=[], help="MC files (smearing applied)")
    a.add_argument(
        "--input-format",
        choices=("nanoaod", "ecalelf"),
        default=Default(APPLY, "input_format"),
        help="input format",
    )
    a.add_argument("--treename", default=None, help="tree name (default Events / selected)")
    a.add_argument(
        "--collection",
        choices=("Ele", "Pho"),
        default=Default(APPLY, "collection"),
        help="Ele: Electron_* and the Ele corrections; Pho: Photon_* (NanoAOD)",
    )
    a.add_argument(
        "--era", default=None, help="era of the payload names (default: the payload's only era)"
    )
    a.add_argument("--out", type=Path, required=True, help="output folder")
    add_run_options(a)
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from zcalib.api import apply

    opts = replace(run_options(args), checkpoint_dir=None, resume=False, metrics_path=None)
    res = apply(
        args.payload,
        args.out,
        data=args.data,
        mc=args.mc,
        input_format=args.input_format,
        collection=args.collection,
        era=args.era,
        treename=args.treename,
        options=opts,
    )
    for ds, n in res.leptons.items():
        echo(f"{ds}: {n} leptons in {len(res.parts[ds])} Parquet file(s) under {args.out / ds}")
    echo(f"wrote {res.manifest}")
    return EXIT_OK
