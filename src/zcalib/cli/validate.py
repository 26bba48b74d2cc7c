"""``zcalib validate``: corrected data vs smeared MC plots (pyval)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import (
    Default,
    add_config_option,
    add_input_options,
    add_run_options,
    calibration_config,
    dataset_config,
    run_options,
)

#: The library settings the plot-label defaults come from.
LABELS = "zcalib.validation.plots:PlotLabels"


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    v = sub.add_parser(
        "validate",
        help="data (scales applied) vs MC (smearings applied) plots per plot category (pyval)",
        description="Draw corrected data against smeared MC for every plot category of a pyval "
        "TSV or YAML file (ratio pad, stat. and correction bands, chi2/ndf). Mass "
        "plots whose cuts follow the histogram cells come from --histograms; any "
        "other variable or cut is filled from the ntuples (--data/--mc). Writes "
        "<name>.png and validation.json to --out.",
        epilog="Examples:\n  zcalib validate --histograms output/demo/histograms.npz "
        "--corrections output/demo/corrections.json \\\n"
        "      --plot-cats configs/plot_cats_standard.tsv --out output/demo/validation "
        "--scan\n  zcalib validate --data d.root --mc m.root --corrections "
        "output/demo/corrections.json \\\n"
        "      --plot-cats configs/plot_cats_kinematics.tsv --out output/demo/kinematics "
        "--lumi-label '59.7 fb$^{-1}$ (13 TeV) 2018'",
        formatter_class=fmt,
    )
    add_input_options(v)
    v.add_argument("--plot-cats", type=Path, required=True, help="plot categories TSV or YAML")
    v.add_argument("--histograms", type=Path, help="pair-mass histograms of the derivation")
    v.add_argument(
        "--corrections",
        type=Path,
        help="correctionlib file of the derivation (scales for data, smearings for MC)",
    )
    add_config_option(v)
    v.add_argument("--out", type=Path, required=True, help="output folder")
    v.add_argument(
        "--lumi-label", default=Default(LABELS, "lumi_label"), help="label right above the plot"
    )
    v.add_argument(
        "--data-title", default=Default(LABELS, "data_title"), help="legend entry of the data"
    )
    v.add_argument("--mc-title", default=Default(LABELS, "mc_title"), help="legend entry of the MC")
    v.add_argument("--cms-text", default=Default(LABELS, "exp_text"), help="text after 'CMS'")
    v.add_argument(
        "--binning",
        type=int,
        default=Default("zcalib.validation.plots:run_validation", "binning"),
        help="bins per plot",
    )
    v.add_argument(
        "--smear-seed",
        type=int,
        default=None,
        help="MC smearing seed (default: --config's, else the histograms' seed, else 0)",
    )
    v.add_argument(
        "--scan",
        action="store_true",
        help="also write NLL scans of the fit to OUT/scans (needs --histograms)",
    )
    add_run_options(v)
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.histograms import load_histograms
    from zcalib.validation import PlotLabels, load_plot_categories, run_validation

    calib = calibration_config(args)  # a bad --config fails here, before any work
    plots = load_plot_categories(args.plot_cats)
    hset = load_histograms(args.histograms) if args.histograms is not None else None
    ntuples = args.datasets is not None or bool(args.data or args.mc)
    cfg = dataset_config(args, calib) if ntuples else None
    steps = load_correction_steps(args.corrections) if args.corrections is not None else []
    labels = PlotLabels(
        lumi_label=args.lumi_label,
        data_title=args.data_title,
        mc_title=args.mc_title,
        exp_text=args.cms_text,
    )
    res = run_validation(
        plots,
        args.out,
        histograms=hset,
        datasets=cfg,
        corrections=steps,
        weights=calib.load_weights() if ntuples else (),
        labels=labels,
        binning=args.binning,
        selection=calib.selection,
        options=run_options(args) if ntuples else None,
        # --smear-seed, else --config's, else (None) the histograms' seed, else 0
        smear_seed=calib.smear_seed
        if args.smear_seed is not None or args.calibration_config is not None
        else None,
        scan=args.scan,
    )
    for rec in res.plots:
        echo(f"{rec['name']}: chi2/ndf = {rec['chi2']:.1f}/{rec['ndf']} ({rec['source']})")
    for rec in res.skipped:
        echo(f"skipped {rec['name']}: {rec['reason']}")
    echo(f"wrote {len(res.plots)} plot(s) and {res.summary_path}")
    return EXIT_OK
