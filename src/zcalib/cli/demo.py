"""``zcalib demo``: the main job on generated demo data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import console, echo, print_fit
from zcalib.cli._options import Default

#: The library function the defaults come from.
DEMO = "zcalib.derive:run_demo"


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="the main job: generate demo data, fill on a local Dask cluster, fit, report",
        description="Generate demo Z->ee data if absent, fill histograms on a local Dask "
        "cluster, fit the 8-category |eta| x R9 scheme, write output/demo/ and print "
        "derived vs injected values with pulls.",
        epilog="Example: zcalib demo --out output/demo --workers 2",
    )
    d.add_argument("--out", type=Path, default=Default(DEMO, "out_dir"), help="output folder")
    d.add_argument(
        "--n-data", type=int, default=Default(DEMO, "n_data"), help="data pairs to generate"
    )
    d.add_argument("--n-mc", type=int, default=Default(DEMO, "n_mc"), help="MC pairs to generate")
    d.add_argument("--seed", type=int, default=Default(DEMO, "seed"), help="generator seed")
    d.add_argument(
        "--workers", type=int, default=Default(DEMO, "workers"), help="local Dask worker processes"
    )
    d.add_argument(
        "--executor",
        choices=("iterative", "futures", "dask"),
        default=Default(DEMO, "executor"),
        help="coffea executor",
    )
    d.add_argument("--scheduler", default=None, help="use an existing Dask scheduler")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.derive import comparison_rows, run_demo

    demo = run_demo(
        args.out,
        n_data=args.n_data,
        n_mc=args.n_mc,
        seed=args.seed,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )
    print_fit(demo.result, table=False)  # the derived-vs-injected table follows
    _print_comparison(comparison_rows(demo.result, demo.truth))
    t = demo.timings
    echo(
        f"timings: generate {t['generate_s']:.1f} s, histograms {t['histograms_s']:.1f} s, "
        f"fit {t['fit_s']:.2f} s, plots + scans + report {t['validation_s']:.1f} s"
    )
    echo(f"wrote {', '.join(str(p) for p in demo.outputs.values())}")
    return EXIT_OK


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="derived vs injected (error = stat ⊕ MC stat)")
    for col in ("category", "injected", "derived", "error", "diff", "pull"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for r in rows:
        table.add_row(
            r["label"],
            f"{r['injected']:.5f}",
            f"{r['derived']:.5f}",
            f"{r['error']:.5f}",
            f"{r['diff']:+.5f}",
            f"{r['pull']:+.2f}",
        )
    console().print(table)
