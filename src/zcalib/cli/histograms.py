"""``zcalib histograms``: fill the per-category-pair mass histograms."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import console, echo, echo_run_summary
from zcalib.cli._options import (
    CATEGORIES_HELP,
    add_config_option,
    add_input_options,
    add_prior_options,
    add_run_options,
    fill_histograms,
)


def add_parser(sub: Any) -> None:
    h = sub.add_parser(
        "histograms",
        help="fill per-category-pair mass histograms (coffea processor)",
        description="Run the dielectron processor and save the histograms (.npz).",
        epilog="Example: zcalib histograms --data d.root --mc m.root "
        "--categories configs/cats_eta_r9.tsv --out hists.npz",
    )
    add_input_options(h)
    h.add_argument("--categories", type=Path, default=None, help=CATEGORIES_HELP)
    add_config_option(h)
    h.add_argument("--out", type=Path, required=True, help="output histogram file (.npz)")
    add_prior_options(h, smears_by_default=False)
    add_run_options(h)
    h.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.histograms import save_histograms

    hset = fill_histograms(args)
    save_histograms(hset, args.out)
    _print_cutflow(hset.cutflow)
    run = hset.metadata["run"]
    echo(
        f"wrote {args.out}: {run['events']} events in {run['wall_time_fill_s']:.1f} s "
        f"({run['events_per_s']:.0f} events/s, executor {run['executor']})"
    )
    echo_run_summary(run)
    return EXIT_OK


def _print_cutflow(cutflow: dict[str, dict[str, int]]) -> None:
    from rich.table import Table

    table = Table(title="cutflow (events)")
    cuts = list(next(iter(cutflow.values())).keys()) if cutflow else []
    table.add_column("cut")
    for ds in cutflow:
        table.add_column(ds, justify="right")
    for cut in cuts:
        table.add_row(cut, *(str(cutflow[ds].get(cut, "")) for ds in cutflow))
    console().print(table)
