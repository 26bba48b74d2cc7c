"""``zcalib report``: one self-contained HTML page of a derivation folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser(
        "report",
        help="one self-contained HTML page of a derivation folder",
        description="Write DIR/report.html: fit status and tables with errors, validation and "
        "NLL-scan summaries, every other JSON result, every PNG embedded, and the "
        "provenance of fit_result.json. Opens offline (no external resources).",
        epilog="Example: zcalib report output/demo",
        formatter_class=fmt,
    )
    r.add_argument("directory", type=Path, help="derivation folder")
    r.add_argument("--out", type=Path, default=None, help="HTML file (default DIR/report.html)")
    r.add_argument("--title", default=None, help="page title")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.validation import write_report

    path = write_report(args.directory, args.out, title=args.title)
    echo(f"wrote {path}")
    return EXIT_OK
