"""``zcalib systematics``: systematic errors from refits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_FIT_FAILED, EXIT_OK
from zcalib.cli._console import console, echo
from zcalib.cli._options import (
    Default,
    add_fit_options,
    add_input_options,
    add_run_options,
    calibration_config,
    dataset_config,
    fit_config,
    mc_weights,
    run_options,
    selection_from,
)


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    sy = sub.add_parser(
        "systematics",
        help="systematic errors from refits with varied window, R9 boundary, Et, ID",
        description="Fit (zcalib fit's outputs), then refit with each configured variation "
        "(mass window: refit; selection and category boundaries: refill + refit, on one "
        "cluster), take per source the largest shift per category and combine the sources; "
        "write systematics.json and corrections.json with escale/esmear = stat (+) MC stat "
        "(+) syst.",
        epilog="Example: zcalib systematics --data d.root --mc m.root --categories "
        "configs/cats_eta_r9.tsv --config syst.yaml --out output/step --step step1",
        formatter_class=fmt,
    )
    add_input_options(sy)
    sy.add_argument("--histograms", type=Path, help="nominal histograms (.npz; else filled)")
    sy.add_argument("--categories", type=Path, required=True, help="categories TSV or YAML")
    sy.add_argument(
        "--config",
        type=Path,
        help="systematics YAML (variations, combine); default: two windows, R9 "
        "boundary 0.96->0.95, Et 30/25, tight ID",
    )
    sy.add_argument("--selection", type=Path, help="nominal pair selection YAML")
    sy.add_argument("--out", type=Path, required=True, help="output folder")
    sy.add_argument(
        "--step",
        default=Default("zcalib.api:run_step", "step"),
        help="step name used in the correction names",
    )
    add_fit_options(sy)
    add_run_options(sy)
    sy.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The nominal fit and its systematics refits through :func:`zcalib.api.run_step` (the
    one writer of a step's payload, one cluster for the nominal fill and every refill)."""
    from zcalib.api import run_step
    from zcalib.categories import load_categories
    from zcalib.derive import check_step_name
    from zcalib.exceptions import InvalidConfig
    from zcalib.histograms import load_histograms
    from zcalib.runner import EventLoop
    from zcalib.validation.systematics import SystematicsConfig, load_systematics_config

    check_step_name(args.step, "--step")  # before any work
    calib = calibration_config(args)
    scheme = load_categories(args.categories)
    config = load_systematics_config(args.config) if args.config else SystematicsConfig()
    fcfg = fit_config(args, scheme)
    inputs = bool(args.data or args.mc or args.datasets)
    if args.histograms is not None and not inputs and config.refills():
        msg = (
            f"variations {', '.join(config.refills())} refill the histograms: give the inputs "
            "(--data/--mc or --datasets) with --histograms, or only window/smearing variations"
        )
        raise InvalidConfig(msg)
    loop = None  # --histograms alone: refits only (window, smearing variations)
    if args.histograms is None or inputs:
        loop = EventLoop(
            dataset_config(args, calib),
            options=run_options(args),
            selection=selection_from(args),
            binning=calib.mass_binning(),
            weights=mc_weights(args),
            smear_seed=calib.smear_seed,
        )
    source: Any = load_histograms(args.histograms) if args.histograms is not None else loop
    done = run_step(
        source,
        scheme,
        fcfg,
        args.out,
        step=args.step,
        names=calib.payload_names(),
        systematics=config,
        refills=loop if args.histograms is not None else None,
        extra={
            "command": "systematics",
            "fit_config": fcfg.to_dict(),
            "calibration_config": calib.to_dict(),
        },
    )
    if done.syst is not None:
        _print_systematics(done.syst)
    echo(f"wrote {', '.join(str(p) for p in done.paths.values())}")
    if done.failure is not None:
        sys.stderr.write(f"zcalib: {done.failure} (no correction payload, no systematics)\n")
        return EXIT_FIT_FAILED
    return EXIT_OK


def _print_systematics(res: Any) -> None:
    from rich.table import Table

    table = Table(title=f"systematics ({res.combine} of sources)")
    for col in ("category", "value", "stat", "syst", *res.scale_by_source):
        table.add_column(col, justify="left" if col == "category" else "right")
    for fits, syst, by in (
        (res.nominal.scales, res.scale_syst, res.scale_by_source),
        (res.nominal.smears, res.smear_syst, res.smear_by_source),
    ):
        for k, c in enumerate(fits):
            table.add_row(
                c.label,
                f"{c.value:.5f}",
                f"{c.total_stat:.5f}",
                f"{syst[k]:.5f}",
                *(f"{v[k]:.5f}" for v in by.values()),
            )
    console().print(table)
