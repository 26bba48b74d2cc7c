"""``zcalib inject``: method accuracy from injected pseudo-data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import console, echo
from zcalib.cli._options import (
    Default,
    add_fit_options,
    add_refit_options,
    refit_inputs,
)

#: The library function the defaults come from.
INJECT = "zcalib.fit.inject:inject"


def add_parser(sub: Any) -> None:
    i = sub.add_parser(
        "inject",
        help="method accuracy: inject scales/smearings into MC pseudo-data and refit",
        description="Build pseudo-data from the MC template with injected scales/smearings, "
        "refit, report bias and pulls per category (pymin --test-method-accuracy).",
        epilog="Example: zcalib inject --histograms output/demo/histograms.npz "
        "--categories configs/cats_eta_r9.tsv --truth output/demo/data/truth.json "
        "--toys 30 --out output/inject",
    )
    i.add_argument("--histograms", type=Path, required=True, help="saved histograms (.npz)")
    add_refit_options(i)
    i.add_argument(
        "--truth",
        type=Path,
        help="JSON with 'scale' and 'smear' lists to inject "
        "(default: a fixed pattern of ±0.5%% scales and 1%% smearings)",
    )
    i.add_argument(
        "--toys",
        type=int,
        default=Default(INJECT, "n_toys"),
        help="number of toys (independent seeds)",
    )
    i.add_argument(
        "--seed", type=int, default=Default(INJECT, "seed"), help="master seed of the toys"
    )
    i.add_argument("--out", type=Path, required=True, help="output folder")
    i.add_argument("--no-progress", action="store_true", help="hide the progress bar of the toys")
    add_fit_options(i)
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import inject
    from zcalib.fit.inject import injection_truth, write_injection

    hset, scheme, config = refit_inputs(args)
    if args.toys < 1:
        msg = f"--toys must be >= 1, got {args.toys}"
        raise InvalidConfig(msg)
    scales, smears = injection_truth(scheme, args.truth)
    res = inject(
        hset,
        scales,
        smears,
        n_toys=args.toys,
        seed=args.seed,
        config=config,
        scheme=scheme,
        progress=not args.no_progress,
    )
    path = write_injection(res, args.out / "injection.json")
    _print_injection(res, scheme)
    echo(f"wrote {path} ({res.n_toys} toys, {res.n_failed} failed, {res.wall_time:.1f} s)")
    return EXIT_OK


def _print_injection(res: Any, scheme: Any) -> None:
    from rich.table import Table

    bias = res.bias()
    pulls = res.pull_summary()
    table = Table(title=f"injection test: {res.n_toys} toy(s)")
    for col in ("category", "injected", "bias", "pull mean", "pull width"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for kind, cats, truth in (
        ("scale", scheme.scale, res.truth_scales),
        ("smear", scheme.smear, res.truth_smears),
    ):
        for k, cat in enumerate(cats):
            table.add_row(
                cat.label(),
                f"{truth[k]:.5f}",
                f"{bias[kind][k]:+.5f}",
                f"{pulls[kind]['mean'][k]:+.2f}",
                f"{pulls[kind]['width'][k]:.2f}",
            )
    console().print(table)
