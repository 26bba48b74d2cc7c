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
from collections.abc import Sequence
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

    f = sub.add_parser(
        "fit",
        help="fit scales and smearings (from ntuples, or from saved histograms)",
        description="Fill histograms (or load --histograms), fit, and write correctionlib JSON, "
                    "legacy .dat files and fit_result.json to --out.",
        epilog="Examples:\n  zcalib fit --data d.root --mc m.root --categories "
               "configs/cats_eta_r9.tsv --out output/step2\n  zcalib fit --histograms "
               "output/hists.npz --categories configs/cats_eta_r9.tsv --out output/refit",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_options(f)
    f.add_argument("--histograms", type=Path, help="refit saved histograms (.npz)")
    f.add_argument("--categories", type=Path, required=True, help="categories TSV or YAML")
    f.add_argument("--out", type=Path, required=True, help="output folder")
    f.add_argument("--step", default="step", help="step name used in output names")
    _add_fit_options(f)
    _add_run_options(f)
    f.set_defaults(func=_cmd_fit)

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
    i.add_argument("--categories", type=Path, required=True, help="categories TSV or YAML")
    i.add_argument("--truth", type=Path, help="JSON with 'scale' and 'smear' lists to inject "
                   "(default: a fixed pattern of ±0.5%% scales and 1%% smearings)")
    i.add_argument("--toys", type=int, default=1, help="number of toys (independent seeds)")
    i.add_argument("--seed", type=int, default=0, help="master seed of the toys")
    i.add_argument("--out", type=Path, required=True, help="output folder")
    _add_fit_options(i)
    i.set_defaults(func=_cmd_inject)

    d = sub.add_parser(
        "demo",
        help="the main job: generate demo data, fill on a local Dask cluster, fit, report",
        description="Generate demo Z->ee data if absent, fill histograms on a local Dask "
                    "cluster, fit the 8-category |eta| x R9 scheme, write output/demo/ and print "
                    "derived vs injected values with pulls.",
        epilog="Example: zcalib demo --out output/demo --workers 2",
    )
    d.add_argument("--out", type=Path, default=Path("output/demo"), help="output folder")
    d.add_argument("--n-data", type=int, default=400_000, help="data pairs to generate")
    d.add_argument("--n-mc", type=int, default=1_200_000, help="MC pairs to generate")
    d.add_argument("--seed", type=int, default=1, help="generator seed")
    d.add_argument("--workers", type=int, default=2, help="local Dask worker processes")
    d.add_argument("--executor", choices=("iterative", "futures", "dask"), default="dask")
    d.add_argument("--scheduler", default=None, help="use an existing Dask scheduler")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=_cmd_demo)
    return parser


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fit")
    g.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=(80.0, 100.0),
                   help="mass window of the likelihood [GeV] (default 80 100)")
    g.add_argument("--bin-width", type=float, default=0.25, help="data bin width [GeV]")
    g.add_argument("--min-data", type=float, default=100.0,
                   help="drop regions with fewer data pairs in the window")
    g.add_argument("--min-mc", type=float, default=200.0,
                   help="drop regions with fewer effective MC entries in the window")
    g.add_argument("--start-style", choices=("scan", "random", "specify"), default="scan",
                   help="how the minimiser starts (scan: 1D scans; specify: --start-file)")
    g.add_argument("--start-file", type=Path,
                   help="only-step/legacy file with start values (with --start-style specify)")
    g.add_argument("--fix-scales", action="store_true", help="fit smearings only")
    g.add_argument("--ignore", type=int, nargs="+", default=[], metavar="INDEX",
                   help="scale-category indices to ignore (held at 1, their regions dropped)")
    g.add_argument("--mc-stat", choices=("sandwich", "bootstrap", "none"), default="sandwich",
                   help="MC-statistics error method")
    g.add_argument("--fit-seed", type=int, default=0, help="seed for random starts/bootstrap")


def _setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(show_path=False, show_time=False, markup=False, rich_tracebacks=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("zcalib").setLevel(min(level, logging.INFO))

    def only_ours(record: logging.LogRecord) -> bool:
        # third-party INFO chatter (distributed's scheduler start-up...) only with -vv
        return record.name.startswith("zcalib") or record.levelno >= max(level, logging.WARNING)

    handler.addFilter(only_ours)


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


def fit_config(args: argparse.Namespace, scheme: Any) -> Any:
    """:class:`~zcalib.fit.FitConfig` from parsed CLI arguments."""
    from zcalib.corrections import read_legacy_for_scheme
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import FitConfig

    kw: dict[str, Any] = {
        "window": tuple(args.window),
        "bin_width": args.bin_width,
        "min_data": args.min_data,
        "min_mc": args.min_mc,
        "start": args.start_style,
        "fix_scales": args.fix_scales,
        "ignore_scales": tuple(args.ignore),
        "mc_stat": args.mc_stat,
        "seed": args.fit_seed,
    }
    if args.start_style == "specify":
        if args.start_file is None:
            msg = "--start-style specify needs --start-file (an only-step or scales file)"
            raise InvalidConfig(msg)
        values, _ = read_legacy_for_scheme(args.start_file, scheme, kind="scale")
        kw["start_scales"] = tuple(float(v) for v in values)
    try:
        return FitConfig(**kw)
    except ValueError as err:
        raise InvalidConfig(str(err)) from None


def _cmd_fit(args: argparse.Namespace) -> int:
    from zcalib.categories import load_categories
    from zcalib.derive import write_outputs
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import fit_histograms
    from zcalib.histograms import load_histograms, save_histograms

    scheme = load_categories(args.categories)
    config = fit_config(args, scheme)
    if args.histograms is not None:
        if args.data or args.mc or args.datasets:
            msg = "give either --histograms or input files (--data/--mc/--datasets), not both"
            raise InvalidConfig(msg)
        hset = load_histograms(args.histograms)
    else:
        hset = fill_histograms(args, args.categories)
        save_histograms(hset, args.out / "histograms.npz")
    result = fit_histograms(hset, config, scheme=scheme)
    paths = write_outputs(result, scheme, args.out, step=args.step, hset=hset,
                          extra={"command": "fit", "fit_config": config.to_dict()})
    _print_fit(result)
    _echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    if not result.converged:
        _echo(f"WARNING: fit did not converge: {result.message}")
        return EXIT_INPUT
    return EXIT_OK


def _cmd_inject(args: argparse.Namespace) -> int:
    from zcalib._atomic import atomic_write_text
    from zcalib.categories import load_categories
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import inject
    from zcalib.histograms import load_histograms

    scheme = load_categories(args.categories)
    config = fit_config(args, scheme)
    hset = load_histograms(args.histograms)
    if args.toys < 1:
        msg = f"--toys must be >= 1, got {args.toys}"
        raise InvalidConfig(msg)
    if args.truth is not None:
        try:
            truth = json.loads(args.truth.read_text())
            scales, smears = truth["scale"], truth["smear"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            msg = f"{args.truth}: expected JSON with lists 'scale' and 'smear' ({err})"
            raise InvalidConfig(msg) from None
    else:
        pattern = (1.005, 0.995, 1.003, 0.997)
        scales = [pattern[k % 4] for k in range(len(scheme.scale))]
        smears = [0.01] * len(scheme.smear)
    res = inject(hset, scales, smears, n_toys=args.toys, seed=args.seed, config=config,
                 scheme=scheme)
    summary = res.to_dict()
    atomic_write_text(args.out / "injection.json", _dump(summary))
    _print_injection(res, scheme)
    _echo(f"wrote {args.out / 'injection.json'} ({res.n_toys} toys, {res.n_failed} failed, "
          f"{res.wall_time:.1f} s)")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from zcalib.derive import comparison_rows, run_demo

    demo = run_demo(args.out, n_data=args.n_data, n_mc=args.n_mc, seed=args.seed,
                    workers=args.workers, executor=args.executor, scheduler=args.scheduler,
                    progress=not args.no_progress)
    _print_fit(demo.result)
    _print_comparison(comparison_rows(demo.result, demo.truth))
    t = demo.timings
    _echo(f"timings: generate {t['generate_s']:.1f} s, histograms {t['histograms_s']:.1f} s, "
          f"fit {t['fit_s']:.2f} s")
    _echo(f"wrote {', '.join(str(p) for p in demo.outputs.values())}")
    return EXIT_OK if demo.result.converged else EXIT_INPUT


def _print_fit(result: Any) -> None:
    from rich.console import Console

    used, dropped = len(result.regions_used), len(result.regions_dropped)
    Console(highlight=False).print(
        f"fit {result.status}: {result.message} | {result.n_eval} evaluations, "
        f"{result.wall_time:.2f} s, {used} regions used, {dropped} dropped", markup=False)


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="derived vs injected (error = stat ⊕ MC stat)")
    for col in ("category", "injected", "derived", "error", "diff", "pull"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for r in rows:
        table.add_row(r["label"], f"{r['injected']:.5f}", f"{r['derived']:.5f}",
                      f"{r['error']:.5f}", f"{r['diff']:+.5f}", f"{r['pull']:+.2f}")
    Console().print(table)


def _print_injection(res: Any, scheme: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    bias = res.bias()
    pulls = res.pull_summary()
    table = Table(title=f"injection test: {res.n_toys} toy(s)")
    for col in ("category", "injected", "bias", "pull mean", "pull width"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for kind, cats, truth in (("scale", scheme.scale, res.truth_scales),
                              ("smear", scheme.smear, res.truth_smears)):
        for k, cat in enumerate(cats):
            table.add_row(cat.label(), f"{truth[k]:.5f}", f"{bias[kind][k]:+.5f}",
                          f"{pulls[kind]['mean'][k]:+.2f}", f"{pulls[kind]['width'][k]:.2f}")
    Console().print(table)


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
