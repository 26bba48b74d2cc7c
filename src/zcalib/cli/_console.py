"""What the commands print: the rich console, one-line messages, result tables shared by commands."""

from __future__ import annotations

import sys
from typing import Any

PIPE_WIDTH = 160


def console() -> Any:
    """A rich console as wide as the terminal; written to a pipe or file, ``$COLUMNS`` wide,
    else :data:`PIPE_WIDTH` (rich's default of 80 columns cuts category labels)."""
    import os

    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return Console(highlight=False, width=width)


def print_fit(result: Any, *, table: bool = True) -> None:
    from zcalib.api import fit_table

    out = console()
    if table:
        out.print(fit_table(result))
    used, dropped = len(result.regions_used), len(result.regions_dropped)
    out.print(
        f"fit {result.message} | {result.n_eval} evaluations, "
        f"{result.wall_time:.2f} s, {used} regions used, {dropped} dropped",
        markup=False,
        soft_wrap=True,
    )


ECHO = {"quiet": False}


def echo(text: str) -> None:
    if ECHO["quiet"]:
        return
    console().print(text, markup=False, soft_wrap=True)


def echo_run_summary(run: dict[str, Any]) -> None:
    """The one-line metrics summary, where the metrics went, and the Dask dashboard."""
    from zcalib.metrics import summary_line

    if run.get("metrics"):
        where = f" (metrics: {run['metrics_path']})" if run.get("metrics_path") else ""
        echo(summary_line(run["metrics"]) + where)
    if run.get("dashboard"):
        echo(f"Dask dashboard: {run['dashboard']}")
