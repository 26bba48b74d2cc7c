"""``zcalib pipeline``: the whole derivation chain from a pipeline YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_NOT_CLOSED, EXIT_OK
from zcalib.cli._console import echo


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    pl = sub.add_parser(
        "pipeline",
        help="run the whole derivation chain from a pipeline YAML (cached, resumable)",
        description="Run every step of a pipeline YAML in dependency order. Finished steps are "
        "cached by a hash of their inputs and skipped on rerun; an interrupted run "
        "resumes. Outputs: <output>/<step>/ and <output>/final/.",
        epilog="Examples:\n  zcalib pipeline configs/pipeline_demo.yaml\n"
        "  zcalib pipeline configs/pipeline_demo.yaml --force step3\n"
        "  zcalib pipeline configs/pipeline_demo.yaml --stop-after time_stability\n"
        "  zcalib pipeline configs/pipeline_demo.yaml --recipe dask_cluster/slurm.yaml",
        formatter_class=fmt,
    )
    pl.add_argument("config", type=Path, help="pipeline YAML")
    pl.add_argument(
        "--force",
        nargs="+",
        default=[],
        metavar="STEP",
        help="rerun these steps (and every step depending on them)",
    )
    pl.add_argument("--stop-after", metavar="STEP", help="stop once this step is done")
    pl.add_argument(
        "--executor",
        choices=("iterative", "futures", "dask"),
        default=None,
        help="override the config's executor (results do not depend on it)",
    )
    pl.add_argument("--workers", type=int, default=None, help="override the worker count")
    pl.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="Dask cluster recipe YAML (dask_cluster/: local, scheduler, htcondor, slurm); "
        "one cluster serves every event loop of the pipeline (overrides run.recipe)",
    )
    pl.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars of the event loops (shown by default, as in every command)",
    )
    pl.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with code {EXIT_NOT_CLOSED} when the chain does not close (the verdict of "
        "its closure step(s)); a pipeline without closure step is then an error",
    )
    pl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.chain import load_pipeline, run_pipeline

    override: dict[str, Any] = {"progress": not args.no_progress}
    if args.executor is not None:
        override["executor"] = args.executor
    if args.workers is not None:
        override["workers"] = args.workers
    if args.recipe is not None:
        override["recipe"] = str(args.recipe.resolve())
    res = run_pipeline(
        load_pipeline(args.config),
        force=tuple(args.force),
        stop_after=args.stop_after,
        run_override=override,
        strict=args.strict,
    )
    for name, out in res.steps.items():
        state = "ran" if out.ran else "cached"
        echo(f"{name:>16} [{out.type}] {state} ({out.wall_time_s:.1f} s)")
    if res.final:
        echo(f"wrote {', '.join(str(p) for p in res.final.values())}")
    else:
        echo(f"stopped after {args.stop_after}: no final outputs yet")
    echo(
        f"pipeline: {len(res.ran)} step(s) ran, {len(res.skipped)} cached, {res.wall_time_s:.1f} s"
    )
    if args.strict and res.closes is False:
        sys.stderr.write(f"zcalib: the chain does not close (--strict): exit {EXIT_NOT_CLOSED}\n")
        return EXIT_NOT_CLOSED
    return EXIT_OK
