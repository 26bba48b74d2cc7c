"""Time of ``zcalib <command> --help``: library defaults read from source vs. imported.

Usage::

    .venv/bin/python benchmarks/bench_cli_help.py [--repeat 5]
        [--out benchmarks/results/cli_help.json]

The CLI shows each option's default as the library defines it (``cli._options.Default``).
The defaults are read from the owners' source (``library_default``: literals and module
constants), so ``--help`` imports no physics module. For the comparison, each command's help
is also run after importing the owners of its defaults (``zcalib.fit``, ``zcalib.runner``,
``zcalib.api``, ``zcalib.calibration``, ``zcalib.corrections.egm``: what building the help
cost when the defaults were imported). Each variant is a fresh process; rounds are
interleaved and the fastest of ``--repeat`` is kept (a shared machine). Prints a table and
the ratios, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("fit", "systematics", "histograms", "pipeline", "stats")
#: the modules that owned the defaults of those commands' help before they were read from source
OWNERS = (
    "zcalib.fit",
    "zcalib.runner",
    "zcalib.api",
    "zcalib.calibration",
    "zcalib.corrections.egm",
    "zcalib.stats.workspace",
)


def _run(command: str, *, imported: bool) -> float:
    pre = "".join(f"import {m}; " for m in OWNERS) if imported else ""
    code = f"{pre}from zcalib.cli import main; main(['{command}', '--help'])"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "120"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or "usage: zcalib" not in proc.stdout:
        msg = f"{command} --help failed: {proc.stderr[-500:]}"
        raise RuntimeError(msg)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cli_help.json")
    args = ap.parse_args()
    best: dict[tuple[str, bool], float] = {}
    for _ in range(args.repeat):
        for command in COMMANDS:
            for imported in (False, True):
                t = _run(command, imported=imported)
                key = (command, imported)
                best[key] = min(best.get(key, float("inf")), t)
    rows: list[dict[str, Any]] = []
    print(f"{'command':<12} {'help [s]':>9} {'with owners imported [s]':>25} {'ratio':>7}")
    for command in COMMANDS:
        light, heavy = best[(command, False)], best[(command, True)]
        rows.append(
            {
                "command": command,
                "help_s": light,
                "owners_imported_s": heavy,
                "ratio": light / heavy,
            }
        )
        print(f"{command:<12} {light:9.2f} {heavy:25.2f} {light / heavy:7.2f}")
    record = {
        "benchmark": "cli_help",
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
