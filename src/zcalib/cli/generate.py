"""``zcalib generate``: demo Z->ee ntuples."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from zcalib.cli import EXIT_OK
from zcalib.cli._console import echo
from zcalib.cli._options import Default

#: The library functions the defaults come from (the event counts: the demo's).
GENERATE = "zcalib.generate:generate"
DEMO = "zcalib.derive:run_demo"


def add_parser(sub: Any) -> None:
    g = sub.add_parser(
        "generate",
        help="generate demo Z->ee ntuples (data.root, mc.root, truth.json)",
        description="Generate realistic Z->ee demo ntuples as TTrees.",
        epilog="Example: zcalib generate --out demo_data --n-data 400000 --n-mc 1200000 --seed 1",
    )
    g.add_argument("--out", type=Path, required=True, help="output folder")
    g.add_argument(
        "--n-data", type=int, default=Default(DEMO, "n_data"), help="data events (pairs)"
    )
    g.add_argument("--n-mc", type=int, default=Default(DEMO, "n_mc"), help="MC events (pairs)")
    g.add_argument("--seed", type=int, default=Default(GENERATE, "seed"), help="random seed")
    g.add_argument(
        "--format",
        dest="fmt",
        choices=("ecalelf", "nanoaod"),
        default=Default(GENERATE, "fmt"),
        help="ntuple format",
    )
    g.add_argument(
        "--drift",
        type=float,
        default=Default(GENERATE, "drift"),
        help="total relative linear drift of data energies across the run range",
    )
    g.add_argument(
        "--gain-thresholds",
        default=None,
        metavar="G6,G1",
        help="barrel seed-crystal energies [GeV] above which the seed switches to gain 6 and "
        "to gain 1 (endcap ones scale with them), e.g. 35,50 for a third of the barrel "
        "electrons in each gain (default: 150,1600)",
    )
    g.add_argument(
        "--et-dependence",
        default=None,
        metavar="KEY=VALUE,...",
        help="inject a smooth dependence on the true Et on top of the category values: "
        "scale_k(Et) = scale_k (1 + A ((Et/45)^P - 1)), smear_l(Et) = sqrt(smear_l^2 + B/Et); "
        "keys A (|A| < 0.2, default 0), P (|P| <= 5, default 1), B [GeV] (0..1, default 0), "
        "e.g. A=0.01,P=-1,B=0.009 (default: none)",
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zcalib.generate import generate, parse_et_dependence, parse_gain_thresholds

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if args.gain_thresholds is not None:
        extra["gain_thresholds"] = parse_gain_thresholds(args.gain_thresholds, "--gain-thresholds")
    if args.et_dependence is not None:
        extra["et_dependence"] = parse_et_dependence(args.et_dependence, "--et-dependence")
    res = generate(
        args.out,
        n_data=args.n_data,
        n_mc=args.n_mc,
        seed=args.seed,
        fmt=args.fmt,
        drift=args.drift,
        **extra,
    )
    echo(f"wrote {res.data}, {res.mc}, {res.truth} in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK
