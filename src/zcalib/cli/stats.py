"""``zcalib stats``: statistical validation with cabinetry/pyhf."""

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
STATS = "zcalib.stats.workspace:StatsConfig"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    st = sub.add_parser(
        "stats",
        help="statistical validation with cabinetry/pyhf: pulls, goodness of fit, plots",
        description="Build a HistFactory workspace (data vs MC per region, free normalisations, "
        "MC stat, scale/smear shape nuisances whose steps are the derived "
        "escale/esmear), fit it with cabinetry and write stats.json, "
        "workspace.json and plots/stats/*.png to --out.",
        epilog="Examples:\n  zcalib stats --data d.root --mc m.root --categories "
        "configs/cats_eta_r9.tsv --corrections output/step/corrections.json "
        "--out output/step\n  (add --variation uncorrected for the comparison before "
        "correction: stats_uncorrected.json)",
        formatter_class=fmt,
    )
    add_input_options(st)
    st.add_argument(
        "--histograms",
        type=Path,
        help="histograms (.npz) already filled with the --corrections applied (checked "
        "against their recorded provenance)",
    )
    st.add_argument(
        "--categories", type=Path, help="categories TSV or YAML (with inputs; default: --config's)"
    )
    add_config_option(st)
    st.add_argument(
        "--corrections",
        type=Path,
        help="the derivation's correctionlib file: applied when filling from "
        "inputs, and its escale/esmear are the nuisance steps",
    )
    st.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: a subfolder of the derivation (DIR/stats), which the report includes",
    )
    st.add_argument(
        "--variation",
        choices=("nominal", "uncorrected"),
        default=Default(STATS, "data_variation"),
        help="compare corrected (nominal) or uncorrected data and MC",
    )
    st.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=Default(STATS, "window"),
        help="mass window [GeV]",
    )
    st.add_argument(
        "--bin-width", type=float, default=Default(STATS, "bin_width"), help="bin width [GeV]"
    )
    st.add_argument(
        "--regions",
        default=Default(STATS, "regions"),
        help="'diagonal' (same-category regions), 'all', or comma-separated codes",
    )
    st.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    add_run_options(st)
    st.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.stats import StatsConfig, run_stats
    from zcalib.stats.fit import check_filled_with
    from zcalib.stats.workspace import parse_regions

    config = StatsConfig(
        window=tuple(args.window),
        bin_width=args.bin_width,
        regions=parse_regions(args.regions, "--regions"),
        data_variation=args.variation,
        mc_variation=args.variation,
    )
    steps: tuple[Any, ...] = ()
    if args.corrections is not None:
        steps = tuple(load_correction_steps(args.corrections))
    hset = histograms_or_inputs(args, () if args.histograms is not None else steps)
    if args.histograms is not None and args.corrections is not None:
        check_filled_with(hset, args.histograms, args.corrections, steps)
    name = "stats" if args.variation == "nominal" else f"stats_{args.variation}"
    res = run_stats(
        hset,
        args.out,
        config=config,
        corrections=args.corrections,
        plots=not args.no_plots,
        name=name,
    )
    _print_stats(res)
    echo(f"wrote {res.outputs['stats']}")
    return EXIT_OK


def _print_stats(res: Any) -> None:
    from rich.table import Table

    table = Table(
        title=f"cabinetry/pyhf validation: GOF p = {res.gof_pvalue:.3g} "
        f"({res.n_dof} dof); compatible: {'yes' if res.compatible else 'NO'}"
    )
    for col in ("nuisance", "pull", "post-fit unc.", "significance", "step"):
        table.add_column(col, justify="left" if col == "nuisance" else "right")
    for p in res.pulls:
        table.add_row(
            p.name + (" (at bound)" if p.at_bound else ""),
            f"{p.pull:+.2f}",
            f"{p.uncertainty:.2f}",
            f"{p.significance:+.1f}",
            f"{p.step:.2e}",
        )
    console().print(table)
