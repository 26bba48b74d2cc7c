"""The ``zcalib`` command line: one subcommand per pipeline stage, in pipeline order.

Each subcommand loads and validates its inputs, then makes one library call. Exit codes:
0 success, 1 invalid input (any :class:`~zcalib.exceptions.ZcalibError`, or bad usage),
2 internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from zcalib.exceptions import ZcalibError

__all__ = ["main"]

log = logging.getLogger("zcalib")

EXIT_OK, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("event loop")
    g.add_argument("--executor", choices=("iterative", "futures", "dask"), default="dask",
                   help="coffea executor (default: dask, a local cluster unless --scheduler)")
    g.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    g.add_argument("--chunksize", type=int, default=100_000, help="events per chunk")
    g.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    g.add_argument("--maxchunks", type=int, default=None,
                   help="process at most N chunks per file (quick debugging)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--datasets", type=Path, help="dataset description YAML")
    g.add_argument("--data", nargs="+", default=[], help="data ROOT files")
    g.add_argument("--mc", nargs="+", default=[], help="MC ROOT files")
    g.add_argument("--input-format", choices=("ecalelf", "nanoaod", "flat"), default="ecalelf",
                   help="format of --data/--mc files (default ecalelf)")
    g.add_argument("--treename", default=None, help="tree name (default per format)")
    g.add_argument("--mc-weight", action="append", default=[], metavar="NAME=FILE[:CORRECTION]",
                   help="MC weight from a correctionlib file, e.g. "
                        "pileup=corrections/pileup_demo.json (repeatable)")
    g.add_argument("--id", dest="id_level", choices=("none", "loose", "medium", "tight"),
                   default="medium", help="electron ID working point (default medium)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="zcalib",
        description="Derive lepton energy scales (data) and smearings (MC) from Z->ll events.",
        epilog="Example: zcalib demo   (generates demo data, fills histograms on a local Dask "
               "cluster, fits, writes output/demo/)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser(
        "generate",
        help="generate demo Z->ee ntuples (data.root, mc.root, truth.json)",
        description="Generate realistic Z->ee demo ntuples as TTrees.",
        epilog="Example: zcalib generate --out demo_data --n-data 400000 --n-mc 1200000 --seed 1",
    )
    g.add_argument("--out", type=Path, required=True, help="output folder")
    g.add_argument("--n-data", type=int, default=400_000, help="data events (pairs)")
    g.add_argument("--n-mc", type=int, default=1_200_000, help="MC events (pairs)")
    g.add_argument("--seed", type=int, default=1, help="random seed")
    g.add_argument("--format", dest="fmt", choices=("ecalelf", "nanoaod"), default="ecalelf")
    g.add_argument("--drift", type=float, default=0.0,
                   help="total relative linear drift of data energies across the run range")
    g.set_defaults(func=_cmd_generate)

    h = sub.add_parser(
        "histograms",
        help="fill per-category-pair mass histograms (coffea processor)",
        description="Run the dielectron processor and save the histograms (.npz).",
        epilog="Example: zcalib histograms --data d.root --mc m.root "
               "--categories configs/cats_eta_r9.tsv --out hists.npz",
    )
    _add_input_options(h)
    h.add_argument("--categories", type=Path, required=True, help="categories TSV or YAML")
    h.add_argument("--out", type=Path, required=True, help="output histogram file (.npz)")
    _add_run_options(h)
    h.set_defaults(func=_cmd_histograms)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# Later pipeline stages register themselves here (fit, demo, inject, ...).
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def _setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(show_path=False, show_time=False, markup=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("zcalib").setLevel(min(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zcalib`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        rc: int = args.func(args)
    except ZcalibError as err:
        if args.debug:
            raise
        sys.stderr.write(f"zcalib: error: {err}\n")
        return EXIT_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("zcalib: interrupted\n")
        return EXIT_INTERNAL
    except Exception as err:
        if args.debug:
            raise
        sys.stderr.write(
            f"zcalib: internal error: {err.__class__.__name__}: {err}\n"
            "(rerun with --debug for the traceback and report it)\n"
        )
        return EXIT_INTERNAL
    return rc


# ---------------------------------------------------------------------------- commands
def _cmd_generate(args: argparse.Namespace) -> int:
    from zcalib.generate import generate

    t0 = time.perf_counter()
    res = generate(args.out, n_data=args.n_data, n_mc=args.n_mc, seed=args.seed, fmt=args.fmt,
                   drift=args.drift)
    _echo(f"wrote {res.data}, {res.mc}, {res.truth} "
          f"in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def run_options(args: argparse.Namespace) -> Any:
    """:class:`~zcalib.runner.RunOptions` from parsed CLI arguments."""
    from zcalib.exceptions import InvalidConfig
    from zcalib.runner import RunOptions

    if args.workers < 1:
        msg = f"--workers must be >= 1, got {args.workers}"
        raise InvalidConfig(msg)
    return RunOptions(
        executor="dask" if args.scheduler else args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        scheduler=args.scheduler,
        maxchunks=args.maxchunks,
        progress=not args.no_progress,
    )


def dataset_config(args: argparse.Namespace) -> Any:
    """The dataset description from ``--datasets`` or ``--data/--mc``."""
    from zcalib.config import dataset_config_from_files, load_dataset_config
    from zcalib.exceptions import InvalidConfig

    if args.datasets is not None:
        if args.data or args.mc:
            msg = "give either --datasets or --data/--mc, not both"
            raise InvalidConfig(msg)
        return load_dataset_config(args.datasets)
    return dataset_config_from_files(data=args.data, mc=args.mc, fmt=args.input_format,
                                     treename=args.treename)


def mc_weights(args: argparse.Namespace) -> tuple[Any, ...]:
    """MC weight specs from ``--mc-weight NAME=FILE[:CORRECTION]``."""
    from zcalib.exceptions import InvalidConfig
    from zcalib.runner import load_weight

    out = []
    for item in args.mc_weight:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            msg = f"--mc-weight {item!r}: expected NAME=FILE[:CORRECTION]"
            raise InvalidConfig(msg)
        path, _, corr = rest.partition(":")
        out.append(load_weight(name, path, corr or None))
    return tuple(out)


def fill_histograms(args: argparse.Namespace, categories: Path) -> Any:
    """Load inputs and categories from CLI arguments and fill the histograms."""
    from zcalib.categories import load_categories
    from zcalib.config import SelectionConfig
    from zcalib.runner import build_histograms

    scheme = load_categories(categories)
    cfg = dataset_config(args)
    opts = run_options(args)
    weights = mc_weights(args)
    return build_histograms(cfg, scheme, options=opts, weights=weights,
                            selection=SelectionConfig(id_level=args.id_level))


def _cmd_histograms(args: argparse.Namespace) -> int:
    from zcalib.histograms import save_histograms

    hset = fill_histograms(args, args.categories)
    save_histograms(hset, args.out)
    _print_cutflow(hset.cutflow)
    run = hset.metadata["run"]
    _echo(f"wrote {args.out}: {run['events']} events in {run['wall_time_fill_s']:.1f} s "
          f"({run['events_per_s']:.0f} events/s, executor {run['executor']})")
    return EXIT_OK


def _print_cutflow(cutflow: dict[str, dict[str, int]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cutflow (events)")
    cuts = list(next(iter(cutflow.values())).keys()) if cutflow else []
    table.add_column("cut")
    for ds in cutflow:
        table.add_column(ds, justify="right")
    for cut in cuts:
        table.add_row(cut, *(str(cutflow[ds].get(cut, "")) for ds in cutflow))
    Console().print(table)


def _echo(text: str) -> None:
    from rich.console import Console

    Console(highlight=False).print(text, markup=False)


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
