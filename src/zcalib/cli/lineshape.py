"""``zcalib lineshape``: Breit-Wigner x Crystal Ball cross-check."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import console, echo
from zcalib.cli._options import (
    Default,
    add_config_option,
    add_input_options,
    add_run_options,
    histograms_or_inputs,
)

#: The library settings the defaults come from.
LINESHAPE = "zcalib.validation.lineshape:LineshapeConfig"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ls = sub.add_parser(
        "lineshape",
        help="cross-check: Breit-Wigner x Crystal Ball fits of the Z peak per category",
        description="Fit BW (PDG mass/width) x Crystal Ball to data and MC per same-category "
        "region (or inclusively), report peak and width and the scale/smearing they "
        "imply next to the template fit; data-only inputs are compared with the "
        "PDG Z mass. Writes lineshape.json and plots/lineshape/*.png to --out.",
        epilog="Examples:\n  zcalib lineshape --histograms output/demo/histograms.npz "
        "--out output/demo\n  zcalib lineshape --datasets dimuon.yaml --categories "
        "muons.yaml --selection dimuon_selection.yaml --mode inclusive --out out/mu",
        formatter_class=fmt,
    )
    add_input_options(ls)
    ls.add_argument("--histograms", type=Path, help="saved histograms (.npz) instead of inputs")
    ls.add_argument(
        "--categories", type=Path, help="categories TSV or YAML (with inputs; default: --config's)"
    )
    add_config_option(ls)
    ls.add_argument(
        "--selection",
        type=Path,
        help="pair selection YAML (SelectionConfig fields, e.g. opposite_charge)",
    )
    ls.add_argument("--out", type=Path, required=True, help="output folder")
    ls.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=Default(LINESHAPE, "window"),
        help="fit window [GeV]",
    )
    ls.add_argument(
        "--mode",
        choices=("categories", "inclusive"),
        default=Default(LINESHAPE, "mode"),
        help="one fit per same-category region, or one inclusive fit",
    )
    ls.add_argument(
        "--min-events",
        type=float,
        default=Default(LINESHAPE, "min_events"),
        help="regions with fewer events are not fitted",
    )
    ls.add_argument(
        "--variation",
        choices=("nominal", "uncorrected"),
        default=Default(LINESHAPE, "data_variation"),
        help="data/MC variation fitted",
    )
    ls.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    add_run_options(ls)
    ls.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.exceptions import InvalidConfig
    from zcalib.validation.lineshape import LineshapeConfig, run_lineshape

    try:
        config = LineshapeConfig(
            window=tuple(args.window),
            mode=args.mode,
            min_events=args.min_events,
            data_variation=args.variation,
            mc_variation=args.variation,
        )
    except ValueError as err:
        raise InvalidConfig(str(err)) from None
    hset = histograms_or_inputs(args)
    res = run_lineshape(hset, args.out, config=config, plots=not args.no_plots)
    _print_lineshape(res)
    echo(f"wrote {res.outputs['lineshape']}")
    return EXIT_OK


def _print_lineshape(res: Any) -> None:
    import math

    from rich.table import Table

    table = Table(title="lineshape (BW x CB) vs template fit")
    for col in (
        "region",
        "peak data",
        "peak MC",
        "sigma data",
        "scale",
        "template",
        "pull",
        "smear",
        "template",
        "pull",
    ):
        table.add_column(col, justify="left" if col == "region" else "right")

    def f(v: float, spec: str = ".4f") -> str:
        return "-" if math.isnan(v) else format(v, spec)

    for r in res.rows:
        table.add_row(
            r.name,
            f"{r.data.peak:.3f}±{r.data.peak_err:.3f}",
            f(r.mc.peak, ".3f") if r.mc else "-",
            f"{r.data.sigma:.3f}",
            f"{r.scale:.4f}±{r.scale_err:.4f}",
            f(r.template_scale),
            f(r.scale_pull, "+.2f"),
            f(r.smear),
            f(r.template_smear),
            f(r.smear_pull, "+.2f"),
        )
    console().print(table)
