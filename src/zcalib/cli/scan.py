"""``zcalib scan``: 1D NLL scans around the minimum."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import (
    Default,
    add_fit_options,
    add_refit_options,
    refit_inputs,
)

#: The library function the defaults come from.
SCANS = "zcalib.validation.scans:run_scans"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sc = sub.add_parser(
        "scan",
        help="1D NLL scans of every fitted scale and smearing around the minimum",
        description="Fit the histograms, then scan the likelihood of each parameter around the "
        "minimum (others fixed at the minimum, or profiled with --profile) and draw "
        "it with the Hessian parabola. Writes scan_*.png, nll_scans.png and "
        "scans.json to --out (pymin --plot / --scan-nll).",
        epilog="Example: zcalib scan --histograms output/demo/histograms.npz "
        "--categories configs/cats_eta_r9.tsv --out output/demo/scans",
        formatter_class=fmt,
    )
    sc.add_argument("--histograms", type=Path, required=True, help="saved histograms (.npz)")
    add_refit_options(sc)
    sc.add_argument("--out", type=Path, required=True, help="output folder")
    sc.add_argument(
        "--points", type=int, default=Default(SCANS, "n_points"), help="points per scan"
    )
    sc.add_argument(
        "--width",
        type=float,
        default=Default(SCANS, "n_sigma"),
        help="scan half-width in Hessian errors",
    )
    sc.add_argument(
        "--profile",
        action="store_true",
        help="re-minimise the other parameters at each point (default: fixed)",
    )
    sc.add_argument(
        "--parameters",
        nargs="+",
        default=None,
        metavar="NAME",
        help="parameters to scan, e.g. 'scale[0]' 'smear[3]' (default: all)",
    )
    add_fit_options(sc)
    sc.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.validation import run_scans

    hset, scheme, config = refit_inputs(args)
    run = run_scans(
        hset,
        args.out,
        config=config,
        scheme=scheme,
        n_points=args.points,
        n_sigma=args.width,
        mode="profiled" if args.profile else "fixed",
        parameters=args.parameters,
    )
    for s in run.scans:
        lo, hi = s.crossing
        crossing = (
            f"scan -{s.best - lo:.2g}/+{hi - s.best:.2g}"
            if lo is not None and hi is not None
            else "scan: no crossing"
        )
        echo(f"{s.parameter}: {s.best:.6f} ± {s.sigma:.2g} (Hessian), {crossing}")
    echo(f"wrote {len(run.paths)} files to {args.out}")
    return EXIT_OK
