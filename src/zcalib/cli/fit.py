"""``zcalib fit``: fit scales and smearings, write the payloads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_FIT_FAILED, EXIT_OK
from zcalib.cli._console import echo, print_fit
from zcalib.cli._options import (
    CATEGORIES_HELP,
    Default,
    add_config_option,
    add_era_option,
    add_fit_options,
    add_input_options,
    add_prior_options,
    add_run_options,
    add_smooth_options,
    calibration_config,
    fill_histograms,
    fit_config,
)


def add_parser(sub: Any) -> None:
    f = sub.add_parser(
        "fit",
        help="fit scales and smearings (from ntuples, or from saved histograms)",
        description="Fill histograms (or load --histograms), fit, and write correctionlib JSON, "
        "legacy .dat files and fit_result.json to --out. A failed fit (a parameter at a "
        "fit-range bound, EDM or gradient test failed, Hessian not positive definite) writes "
        "only fit_result.json and exits with code 3 (see --write-failed).",
        epilog="Examples:\n  zcalib fit --data d.root --mc m.root --categories "
        "configs/cats_eta_r9.tsv --out output/step2\n  zcalib fit --histograms "
        "output/hists.npz --categories configs/cats_eta_r9.tsv --out output/refit",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_options(f)
    f.add_argument("--histograms", type=Path, help="refit saved histograms (.npz)")
    f.add_argument("--categories", type=Path, default=None, help=CATEGORIES_HELP)
    add_config_option(f)
    f.add_argument("--out", type=Path, required=True, help="output folder")
    f.add_argument(
        "--step",
        default=Default("zcalib.api:run_step", "step"),
        help="step name used in output names",
    )
    add_era_option(f)
    f.add_argument(
        "--write-failed",
        action="store_true",
        help="also write the correction payload of a failed fit (marked FAILED FIT); by "
        "default a failed fit writes only fit_result.json and exits with code 3",
    )
    add_prior_options(f, smears_by_default=False)
    add_fit_options(f)
    add_smooth_options(f)
    add_run_options(f)
    f.set_defaults(func=run)


def _check_smooth_options(args: argparse.Namespace, scheme: Any, categories: str) -> None:
    """``--smooth-scale/--smooth-smear`` need Et-binned cells (the pipeline's check)."""
    from zcalib.derive import check_smooth

    check_smooth(
        scheme,
        args.smooth_scale,
        args.smooth_smear,
        where="--smooth-{kind}",
        categories=categories,
        unset="leave out --smooth-{kind}",
    )


def run(args: argparse.Namespace) -> int:
    from zcalib.api import run_step
    from zcalib.corrections.egm import check_era
    from zcalib.derive import check_step_name

    if args.era is not None:
        check_era(args.era, "--era")  # before any work
    check_step_name(args.step, "--step")
    from zcalib.exceptions import InvalidConfig
    from zcalib.histograms import load_histograms

    calib = calibration_config(args)
    if args.histograms is not None:
        if args.data or args.mc or args.datasets:
            msg = "give either --histograms or input files (--data/--mc/--datasets), not both"
            raise InvalidConfig(msg)
        if args.corrections:
            msg = (
                "--corrections applies while filling: give them to `zcalib histograms`, or "
                "fill here from input files instead of --histograms"
            )
            raise InvalidConfig(msg)
        hset = load_histograms(args.histograms)
        scheme = calib.scheme() if calib.categories is not None else hset.scheme()
        config = fit_config(args, scheme)
        _check_smooth_options(
            args, scheme, calib.categories or f"the categories of {args.histograms}"
        )
    else:
        scheme = calib.scheme()
        config = fit_config(args, scheme)  # checked before the fill
        _check_smooth_options(args, scheme, calib.categories or "the built-in categories")
        hset = fill_histograms(args)
    done = run_step(
        hset,
        scheme,
        config,
        args.out,
        step=args.step,
        names=calib.payload_names(),
        extra={
            "command": "fit",
            "fit_config": config.to_dict(),
            "calibration_config": calib.to_dict(),
        },
        smooth=(args.smooth_scale, args.smooth_smear),
        write_failed=args.write_failed,
        save_histograms=args.histograms is None,
    )
    print_fit(done.result)
    echo(f"wrote {', '.join(str(p) for p in done.paths.values())}")
    if done.failure is not None:
        kept = "payload written marked FAILED" if args.write_failed else "no correction payload"
        sys.stderr.write(f"zcalib: {done.failure} ({kept})\n")
        return EXIT_FIT_FAILED
    return EXIT_OK
