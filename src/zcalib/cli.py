"""The ``zcalib`` command line: one subcommand per pipeline stage, in pipeline order.

Each subcommand loads and validates its inputs, then makes one library call. Exit codes:
0 success, 1 invalid input (any :class:`~zcalib.exceptions.ZcalibError`, or bad usage),
2 internal error, 3 a fit that ran but failed (no correction payload written), 4
``pipeline --strict`` on a chain that does not close, 130 interrupted (Ctrl-C; one line, local Dask workers closed without tracebacks).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from zcalib.exceptions import FitFailed, ZcalibError
from zcalib.outputs import output_run

__all__ = ["main"]

log = logging.getLogger("zcalib")

EXIT_OK, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2
#: A fit ran but failed (parameters at a range bound, EDM/gradient test, Hessian not
#: positive definite): no correction payload is written (unless --write-failed).
EXIT_FIT_FAILED = 3
#: ``zcalib pipeline --strict``: the chain does not close (a closure step's verdict).
EXIT_NOT_CLOSED = 4
#: Interrupted (Ctrl-C, SIGINT): 128 + 2, the shells' convention; one line on stderr.
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}\n")


class _DefaultsInHelp(argparse.HelpFormatter):
    """Every option's default in its help unless the help already states it (``None``,
    ``False`` and empty defaults are not shown)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
        ):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _RawDefaultsInHelp(_DefaultsInHelp, argparse.RawDescriptionHelpFormatter):
    """:class:`_DefaultsInHelp` keeping the description and epilog as written."""


def _add_global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``/``--debug``, accepted before and after the subcommand (on a subcommand
    they default to SUPPRESS, so they do not reset what was given before it)."""
    g = p.add_argument_group("general") if not top else p
    kw: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    g.add_argument(
        "-v", "--verbose", action="count", help="more logging (-vv: debug)", **({"default": 0} | kw)
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only warnings, errors and result tables (no progress bars or 'wrote' lines)",
        **kw,
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors", **kw)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("event loop")
    g.add_argument(
        "--executor",
        choices=("iterative", "futures", "dask"),
        default="dask",
        help="coffea executor (default: dask, a local cluster unless --scheduler)",
    )
    g.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    g.add_argument("--chunksize", type=int, default=100_000, help="events per chunk")
    g.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler, e.g. tcp://127.0.0.1:8786",
    )
    g.add_argument(
        "--maxchunks",
        type=int,
        default=None,
        help="process at most N chunks per file (quick debugging)",
    )
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="Dask cluster recipe YAML: local, scheduler, htcondor, slurm (see dask_cluster/)",
    )
    g.add_argument("--retries", type=int, default=3, help="retries of a failed chunk (default 3)")
    g.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="skip unreadable input files and list them in the output metadata "
        "(skipped_files) instead of failing",
    )
    g.add_argument(
        "--metrics",
        type=Path,
        default=None,
        metavar="PATH",
        help="run metrics JSON (default: inside --out: DIR/run.metrics.json, "
        "h.npz -> h.metrics.json)",
    )
    g.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="store every finished chunk here, so the run can be resumed",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="reuse the chunks in --checkpoint-dir (default <out>.checkpoints)",
    )


def _add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--datasets", type=Path, help="dataset description YAML")
    g.add_argument("--data", nargs="+", default=[], help="data ROOT files")
    g.add_argument("--mc", nargs="+", default=[], help="MC ROOT files")
    g.add_argument(
        "--input-format",
        choices=("ecalelf", "nanoaod", "flat", "parquet"),
        default=None,
        help="format of --data/--mc files (default: --config's, else ecalelf)",
    )
    g.add_argument("--treename", default=None, help="tree name (default per format)")
    g.add_argument(
        "--mc-weight",
        action="append",
        default=[],
        metavar="NAME=FILE[:CORRECTION]",
        help="MC weight from a correctionlib file, e.g. "
        "pileup=corrections/pileup_demo.json (repeatable)",
    )
    g.add_argument(
        "--id",
        dest="id_level",
        choices=("none", "loose", "medium", "tight"),
        default=None,
        help="electron ID working point (default: --config's, else the format's: medium; "
        "none for flat ntuples)",
    )


#: The one table from CLI options (argparse ``dest``) to :class:`~zcalib.calibration.
#: CalibrationConfig` fields. An option given on the command line replaces the field of
#: ``--config`` (or of the defaults); an option left out keeps it. Defaults live in
#: CalibrationConfig only (these options default to ``None``).
CONFIG_FIELDS: dict[str, str] = {
    "input_format": "input_format",
    "treename": "treename",
    "id_level": "working_point",
    "categories": "categories",
    "mc_weight": "mc_weights",
    "fit_window": "mass_window",
    "smear_seed": "smear_seed",
    "era": "era",
}


_CATEGORIES_HELP = (
    "categories TSV or YAML (default: --config's, else the histograms' with --histograms, "
    "else the built-in 8-category |eta| x R9 scheme)"
)


def _add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        dest="calibration_config",
        type=Path,
        default=None,
        metavar="YAML",
        help="CalibrationConfig YAML (input format, selection, categories, binning, fit "
        "window, MC weights, prior corrections, smearing seed, era); options given on the "
        "command line replace its fields (see zcalib.cli.CONFIG_FIELDS)",
    )


def calibration_config(args: argparse.Namespace) -> Any:
    """The :class:`~zcalib.calibration.CalibrationConfig` of a command: ``--config`` (or the
    defaults) with the options given on the command line (:data:`CONFIG_FIELDS`)."""
    from zcalib.calibration import CalibrationConfig, load_calibration_config

    path = getattr(args, "calibration_config", None)
    base = load_calibration_config(path) if path is not None else CalibrationConfig()
    given: dict[str, Any] = {}
    for dest, name in CONFIG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is None or (isinstance(value, list) and not value):
            continue
        given[name] = str(value) if isinstance(value, Path) else value
    return base.with_overrides(**given) if given else base


def _add_prior_options(p: argparse.ArgumentParser, *, smears_by_default: bool) -> None:
    """``--corrections`` (repeatable), ``--mc-smearing``, ``--smear-seed``: the corrections of
    finished steps applied while filling, as a pipeline step applies its dependencies'."""
    auto = "latest" if smears_by_default else "none"
    g = p.add_argument_group("prior corrections (chaining single steps)")
    g.add_argument(
        "--corrections",
        action="append",
        default=[],
        metavar="STEP",
        help="a finished step applied before filling: its folder (zcalib fit / time-stability "
        "--out), its corrections.json, any correctionlib file, or NAME=PATH; repeatable, "
        "in execution order (data scales of every step in order; MC smearing per "
        "--mc-smearing)",
    )
    g.add_argument(
        "--mc-smearing",
        choices=("auto", "latest", "none"),
        default="auto",
        help="smear MC with the smearing of the latest --corrections step providing one "
        f"(latest) or not (none); auto: {auto}, as the pipeline's "
        + (
            "time-stability / run-divide steps"
            if smears_by_default
            else "fit steps (the fit "
            "derives the full smearing from unsmeared MC; latest: a closure fit)"
        ),
    )
    g.add_argument(
        "--smear-seed",
        type=int,
        default=None,
        help="seed of the MC smearing random numbers, recorded in the payload's "
        "EGMRandomGenerator (default: --config's, else 0)",
    )


def prior_corrections(args: argparse.Namespace, *, smears_by_default: bool) -> tuple[Any, Any]:
    """The prior corrections and Z weights of ``--corrections`` (see :func:`_add_prior_options`)."""
    from zcalib.chain.assemble import _prior

    mode = args.mc_smearing
    smear = mode == "latest" or (mode == "auto" and smears_by_default)
    return _prior(args.corrections, smear_mc=smear)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="zcalib",
        description="Derive lepton energy scales (data) and smearings (MC) from Z->ll events.",
        epilog="Example: zcalib demo   (generates demo data, fills histograms on a local Dask "
        "cluster, fits, writes output/demo/)",
    )
    parser.add_argument("--version", action="version", version=f"zcalib {_version()}")
    _add_global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub = _InPipelineOrder()

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
    g.add_argument(
        "--format",
        dest="fmt",
        choices=("ecalelf", "nanoaod"),
        default="ecalelf",
        help="ntuple format",
    )
    g.add_argument(
        "--drift",
        type=float,
        default=0.0,
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
    g.set_defaults(func=_cmd_generate)

    h = sub.add_parser(
        "histograms",
        help="fill per-category-pair mass histograms (coffea processor)",
        description="Run the dielectron processor and save the histograms (.npz).",
        epilog="Example: zcalib histograms --data d.root --mc m.root "
        "--categories configs/cats_eta_r9.tsv --out hists.npz",
    )
    _add_input_options(h)
    h.add_argument("--categories", type=Path, default=None, help=_CATEGORIES_HELP)
    _add_config_option(h)
    h.add_argument("--out", type=Path, required=True, help="output histogram file (.npz)")
    _add_prior_options(h, smears_by_default=False)
    _add_run_options(h)
    h.set_defaults(func=_cmd_histograms)

    s = sub.add_parser(
        "skim",
        help="write Parquet pair skims (preselection + needed columns) with provenance",
        description="Apply the pair preselection (looser by --margin on Et and mass) and write "
        "one Parquet file per input file (one row per pair), a provenance record "
        "per file and a datasets.yaml to fill histograms from.",
        epilog="Example: zcalib skim --data d.root --mc m.root --out skims/ && zcalib "
        "histograms --datasets skims/datasets.yaml --categories "
        "configs/cats_eta_r9.tsv --out hists.npz",
    )
    _add_input_options(s)
    _add_config_option(s)
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="relative loosening of the Et cuts and mass window (default 0.05)",
    )
    _add_run_options(s)
    s.set_defaults(func=_cmd_skim)

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
    _add_input_options(f)
    f.add_argument("--histograms", type=Path, help="refit saved histograms (.npz)")
    f.add_argument("--categories", type=Path, default=None, help=_CATEGORIES_HELP)
    _add_config_option(f)
    f.add_argument("--out", type=Path, required=True, help="output folder")
    f.add_argument("--step", default="step", help="step name used in output names")
    _add_era_option(f)
    f.add_argument(
        "--write-failed",
        action="store_true",
        help="also write the correction payload of a failed fit (marked FAILED FIT); by "
        "default a failed fit writes only fit_result.json and exits with code 3",
    )
    _add_prior_options(f, smears_by_default=False)
    _add_fit_options(f)
    _add_smooth_options(f)
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
    i.add_argument(
        "--truth",
        type=Path,
        help="JSON with 'scale' and 'smear' lists to inject "
        "(default: a fixed pattern of ±0.5%% scales and 1%% smearings)",
    )
    i.add_argument("--toys", type=int, default=1, help="number of toys (independent seeds)")
    i.add_argument("--seed", type=int, default=0, help="master seed of the toys")
    i.add_argument("--out", type=Path, required=True, help="output folder")
    i.add_argument("--no-progress", action="store_true", help="hide the progress bar of the toys")
    _add_fit_options(i)
    i.set_defaults(func=_cmd_inject)

    _add_validation_parsers(sub)  # lineshape, systematics, stats
    _add_plot_parsers(sub)  # validate, scan, report
    _add_chain_parsers(sub)  # run-divide, time-stability, combine, pipeline
    _add_apply_parser(sub)  # apply

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
    sub.add_to(subparsers)
    with_defaults: dict[Any, Any] = {
        argparse.HelpFormatter: _DefaultsInHelp,
        argparse.RawDescriptionHelpFormatter: _RawDefaultsInHelp,
    }
    for p in (parser, *subparsers.choices.values()):
        if p is not parser:
            _add_global_options(p, top=False)
        p.formatter_class = with_defaults.get(p.formatter_class, p.formatter_class)
    return parser


def _version() -> str:
    import zcalib

    return str(zcalib.__version__)


#: Subcommands in pipeline order (how `zcalib --help` lists them).
PIPELINE_ORDER = (
    "generate",
    "skim",
    "run-divide",
    "time-stability",
    "histograms",
    "fit",
    "combine",
    "assemble",
    "pipeline",
    "apply",
    "inject",
    "scan",
    "validate",
    "lineshape",
    "systematics",
    "stats",
    "report",
    "demo",
)


class _InPipelineOrder:
    """Stands in for argparse's subparsers while the subcommands are defined (in the groups
    that suit the code), then adds them in :data:`PIPELINE_ORDER`, the order ``--help`` lists
    them: argparse lists subcommands in the order they are added, so nothing is re-sorted.
    Each subcommand is defined on a parser of its own, added with ``parents=[it]``."""

    def __init__(self) -> None:
        self._defined: dict[str, tuple[argparse.ArgumentParser, dict[str, Any]]] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        own = _Parser(add_help=False)
        self._defined[name] = (own, kwargs)
        return own

    def add_to(self, subparsers: Any) -> None:
        """Add every subcommand (those not in PIPELINE_ORDER last, as defined)."""
        rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
        for name in sorted(self._defined, key=lambda n: rank.get(n, len(rank))):
            own, kwargs = self._defined[name]
            subparsers.add_parser(name, parents=[own], **kwargs)


# ----------------------------------------------------------------- payloads: --era, apply
def _add_era_option(p: argparse.ArgumentParser) -> None:
    from zcalib.corrections.egm import DEFAULT_ERA, ERAS

    p.add_argument(
        "--era",
        default=None,
        metavar="ERA",
        help="era in the payload names, e.g. EGMScale_Compound_Ele_<era> (default: --config's, "
        f"else {DEFAULT_ERA}; one of {', '.join(ERAS)})",
    )


def _add_apply_parser(sub: Any) -> None:
    a = sub.add_parser(
        "apply",
        help="correct data / smear MC leptons with a payload (Parquet, per chunk)",
        description="Apply a zcalib payload (EGM layout) to NanoAOD or ECALELF files, using "
        "only the payload: corrected data pt/energy with scale_up/down, smeared MC pt/energy "
        "(EGMRandomGenerator) with smear_up/down and scale_up/down. One Parquet file per chunk "
        "under OUT/data and OUT/mc, and OUT/apply.json.",
        epilog="Examples:\n  zcalib apply output/pipeline_demo/final/corrections.json --data "
        "d.root --mc m.root --input-format ecalelf --out output/applied\n  zcalib apply "
        "step/corrections.json --mc nano.root --collection Pho --out output/applied",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("payload", type=Path, help="correctionlib file written by zcalib")
    a.add_argument("--data", nargs="+", default=[], help="data files (scales applied)")
    a.add_argument("--mc", nargs="+", default=[], help="MC files (smearing applied)")
    a.add_argument(
        "--input-format", choices=("nanoaod", "ecalelf"), default="nanoaod", help="input format"
    )
    a.add_argument("--treename", default=None, help="tree name (default Events / selected)")
    a.add_argument(
        "--collection",
        choices=("Ele", "Pho"),
        default="Ele",
        help="Ele: Electron_* and the Ele corrections; Pho: Photon_* (NanoAOD)",
    )
    a.add_argument(
        "--era", default=None, help="era of the payload names (default: the payload's only era)"
    )
    a.add_argument("--out", type=Path, required=True, help="output folder")
    _add_run_options(a)
    a.set_defaults(func=_cmd_apply)


def _cmd_apply(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from zcalib.api import apply

    opts = replace(run_options(args), checkpoint_dir=None, resume=False, metrics_path=None)
    res = apply(
        args.payload,
        args.out,
        data=args.data,
        mc=args.mc,
        input_format=args.input_format,
        collection=args.collection,
        era=args.era,
        treename=args.treename,
        options=opts,
    )
    for ds, n in res.leptons.items():
        _echo(f"{ds}: {n} leptons in {len(res.parts[ds])} Parquet file(s) under {args.out / ds}")
    _echo(f"wrote {res.manifest}")
    return EXIT_OK


#: ``--smooth-scale`` / ``--smooth-smear`` forms (:data:`zcalib.fit.smooth.FORMS`).
SMOOTH_FORMS = {"scale": ("power", "linear"), "smear": ("sqrt_inverse",)}


def _add_smooth_options(p: argparse.ArgumentParser) -> None:
    """A pipeline fit step's ``smooth: {scale, smear}`` (docs/fit.md, smooth Et curves)."""
    g = p.add_argument_group("smooth Et curves (categories with Et bins)")
    g.add_argument(
        "--smooth-scale",
        choices=SMOOTH_FORMS["scale"],
        default=None,
        help="write the scales as a curve of Et per cell: power c + a((pt/45)^b - 1)/b, "
        "linear a + b(pt/45 - 1) (default: binned scales)",
    )
    g.add_argument(
        "--smooth-smear",
        choices=SMOOTH_FORMS["smear"],
        default=None,
        help="write the smearings as a curve of Et per cell: sqrt_inverse sqrt(a^2 + b/pt) "
        "(default: binned smearings)",
    )


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fit")
    g.add_argument(
        "--window",
        dest="fit_window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="mass window of the likelihood [GeV] (default: --config's mass_window, else 80 100)",
    )
    g.add_argument("--bin-width", type=float, default=0.5, help="data bin width [GeV]")
    g.add_argument(
        "--min-data",
        type=float,
        default=100.0,
        help="drop regions with fewer data pairs in the window",
    )
    g.add_argument(
        "--min-mc",
        type=float,
        default=200.0,
        help="drop regions with fewer effective MC entries in the window",
    )
    g.add_argument(
        "--start-style",
        choices=("scan", "random", "specify"),
        default="scan",
        help="how the minimiser starts (scan: 1D scans; specify: --start-file)",
    )
    g.add_argument(
        "--start-file",
        type=Path,
        help="only-step/legacy file with start values (with --start-style specify)",
    )
    g.add_argument("--fix-scales", action="store_true", help="fit smearings only")
    g.add_argument(
        "--ignore",
        nargs="+",
        default=[],
        metavar="CATEGORY",
        help="categories held fixed, their regions dropped: scale[i] (held at 1) or smear[i] "
        "(held at 0) as the fit names them, or a scale index i; e.g. --ignore 'smear[3]' for "
        "a category without data",
    )
    g.add_argument(
        "--mc-stat",
        choices=("bootstrap", "sandwich", "none"),
        default="bootstrap",
        help="MC-statistics error method (bootstrap: replicas of fluctuated templates, "
        "reliable for smearings; sandwich: linear propagation, faster)",
    )
    g.add_argument(
        "--mc-stat-likelihood",
        choices=("noise-corrected", "none", "bb-lite"),
        default="noise-corrected",
        help="template-statistics treatment in the likelihood (noise-corrected removes the "
        "upward smearing bias from MC noise; none: plain multinomial NLL)",
    )
    g.add_argument("--fit-seed", type=int, default=0, help="seed for random starts/bootstrap")


def _setup_logging(verbose: int, *, quiet: bool = False) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(
        console=_console(), show_path=False, show_time=False, markup=False, rich_tracebacks=False
    )
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("zcalib").setLevel(logging.WARNING if quiet else min(level, logging.INFO))

    def only_ours(record: logging.LogRecord) -> bool:
        # third-party INFO chatter (distributed's scheduler start-up...) only with -vv
        return record.name.startswith("zcalib") or record.levelno >= max(level, logging.WARNING)

    handler.addFilter(only_ours)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zcalib`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("give -v/--verbose or -q/--quiet, not both")
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    _ECHO["quiet"] = args.quiet
    _setup_logging(args.verbose, quiet=args.quiet)
    import signal
    import threading

    from zcalib._atomic import interrupted, mark_interrupted

    mark_interrupted(False)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:  # started with interrupts ignored (nohup, `&`): keep
            previous = None
        else:
            signal.signal(signal.SIGINT, _interrupted)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_swallowed_interrupt
    try:
        rc = _run(args)
        if interrupted() and rc != EXIT_INTERRUPTED:
            # the KeyboardInterrupt landed where Python swallows it (a __del__, a callback)
            # and the run went on; it published nothing (_atomic refuses), so say so
            sys.stderr.write(f"zcalib: interrupted (exit code {EXIT_INTERRUPTED})\n")
            rc = EXIT_INTERRUPTED
        return rc
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        mark_interrupted(False)  # an in-process caller (a notebook) writes again afterwards
        logging.disable(logging.NOTSET)


def _quiet_swallowed_interrupt(unraisable: Any) -> None:
    """``sys.unraisablehook``: a Ctrl-C that landed in a ``__del__`` prints no traceback (the
    command reports the interrupt itself); anything else goes to Python's default hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def _interrupted(_signum: int, _frame: Any) -> None:
    """SIGINT (Ctrl-C): stop the run. The shutdown that follows (clusters, workers, event
    loops closing) is no news to the user: its log records are dropped, and the command
    prints one line (:data:`EXIT_INTERRUPTED`). The interrupt is also recorded, so no output
    is published even if the ``KeyboardInterrupt`` lands where Python swallows it."""
    from zcalib._atomic import mark_interrupted

    mark_interrupted()
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    """Run the subcommand; map exceptions to one-line messages and exit codes."""
    try:
        with output_run(
            getattr(args, "out", None), fresh=True
        ):  # writability checked before any work
            rc: int = args.func(args)
    except FitFailed as err:
        if args.debug:
            raise
        sys.stderr.write(f"zcalib: {err}\n")
        return EXIT_FIT_FAILED
    except ZcalibError as err:
        if args.debug:
            raise
        sys.stderr.write(f"zcalib: error: {err}\n")
        return EXIT_INPUT
    except KeyboardInterrupt:
        sys.stderr.write(f"zcalib: interrupted (exit code {EXIT_INTERRUPTED})\n")
        return EXIT_INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        lost = _scheduler_lost(err, args)
        if lost is not None:
            sys.stderr.write(f"zcalib: error: {lost}\n")
            return EXIT_INPUT
        sys.stderr.write(
            f"zcalib: internal error: {err.__class__.__name__}: {err}\n"
            "(rerun with --debug for the traceback and report it)\n"
        )
        return EXIT_INTERNAL
    return rc


def _scheduler_lost(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for a run whose Dask scheduler went away (``None``: another error).

    distributed reports the loss as cancelled futures or closed comms once the client gives
    up reconnecting; the finished chunks survive in the checkpoint folder, so the hint is
    ``--resume``.
    """
    if "distributed" not in sys.modules:
        return None
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    chain: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    cause = next((c for c in chain if isinstance(c, FutureCancelledError | CommClosedError)), None)
    if cause is None:
        return None
    where = getattr(args, "scheduler", None) or getattr(args, "recipe", None) or "local cluster"
    checkpoints = getattr(args, "checkpoint_dir", None)
    if checkpoints is None and getattr(args, "resume", False) and getattr(args, "out", None):
        from zcalib.runner import default_checkpoint_dir

        checkpoints = default_checkpoint_dir(args.out)
    if checkpoints is not None:
        hint = (
            f"the chunks finished so far are kept in {checkpoints}: restart the cluster and "
            "rerun the same command with --resume"
        )
    else:
        hint = (
            "restart the cluster and rerun the same command; with --checkpoint-dir DIR the "
            "finished chunks are kept and --resume reuses them after such a loss"
        )
    return (
        f"lost the Dask scheduler ({where}) during the run "
        f"({cause.__class__.__name__}); no output was written; {hint}"
    )


# ---------------------------------------------------------------------------- commands
def _cmd_generate(args: argparse.Namespace) -> int:
    from zcalib.generate import generate

    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if args.gain_thresholds is not None:
        extra["gain_thresholds"] = _gain_thresholds(args.gain_thresholds)
    if args.et_dependence is not None:
        extra["et_dependence"] = _et_dependence(args.et_dependence)
    res = generate(
        args.out,
        n_data=args.n_data,
        n_mc=args.n_mc,
        seed=args.seed,
        fmt=args.fmt,
        drift=args.drift,
        **extra,
    )
    _echo(f"wrote {res.data}, {res.mc}, {res.truth} in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _gain_thresholds(text: str) -> tuple[float, float]:
    """``--gain-thresholds G6,G1``: two seed energies [GeV], 0 < G6 < G1."""
    from zcalib.exceptions import InvalidConfig

    try:
        g6, g1 = (float(v) for v in text.split(","))
    except ValueError:
        g6 = g1 = float("nan")
    if not (0 < g6 < g1 < float("inf")):
        msg = (
            f"--gain-thresholds {text!r}; allowed: two seed energies [GeV] G6,G1 with "
            "0 < G6 < G1, e.g. 35,50"
        )
        raise InvalidConfig(msg)
    return g6, g1


#: ``--et-dependence`` keys -> :class:`~zcalib.generate.EtDependence` fields.
_ET_KEYS = {"A": "scale_amplitude", "P": "scale_power", "B": "smear_b"}


def _et_dependence(text: str) -> Any:
    """``--et-dependence A=..,P=..,B=..`` (any subset, each key once) as an
    :class:`~zcalib.generate.EtDependence` (whose range checks name the field)."""
    from zcalib.exceptions import InvalidConfig
    from zcalib.generate import EtDependence

    allowed = "KEY=VALUE pairs separated by commas, keys A, P, B (e.g. A=0.01,P=-1,B=0.009)"
    kw: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or key not in _ET_KEYS or _ET_KEYS[key] in kw or math.isnan(number):
            msg = f"--et-dependence {text!r}: bad item {item!r}; allowed: {allowed}"
            raise InvalidConfig(msg)
        kw[_ET_KEYS[key]] = number
    try:
        return EtDependence(**kw)
    except InvalidConfig as err:
        detail = str(err)
        for key, field in _ET_KEYS.items():
            detail = detail.replace(f"et_dependence.{field}:", f"{key} ({field}):")
        msg = f"--et-dependence {text!r}: {detail}"
        raise InvalidConfig(msg) from None


def run_options(args: argparse.Namespace) -> Any:
    """:class:`~zcalib.runner.RunOptions` from parsed CLI arguments."""
    from zcalib.exceptions import InvalidConfig
    from zcalib.runner import RunOptions

    if args.workers < 1:
        msg = f"--workers must be >= 1, got {args.workers}"
        raise InvalidConfig(msg)
    from zcalib.metrics import default_metrics_path
    from zcalib.runner import default_checkpoint_dir

    out = getattr(args, "out", None)
    recipe = getattr(args, "recipe", None)
    checkpoint_dir = getattr(args, "checkpoint_dir", None)
    resume = getattr(args, "resume", False)
    if resume and checkpoint_dir is None and out is not None:
        checkpoint_dir = default_checkpoint_dir(out)
    metrics = getattr(args, "metrics", None)
    return RunOptions(
        executor="dask" if args.scheduler or recipe else args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        scheduler=args.scheduler,
        maxchunks=args.maxchunks,
        progress=not args.no_progress,
        recipe=recipe,
        retries=getattr(args, "retries", 3),
        skip_bad_files=getattr(args, "skip_bad_files", False),
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        metrics_path=metrics if metrics is not None or out is None else default_metrics_path(out),
    )


def dataset_config(args: argparse.Namespace, config: Any = None) -> Any:
    """The dataset description from ``--datasets`` or ``--data/--mc`` (these in the input
    format of ``config``, default :func:`calibration_config`)."""
    from zcalib.config import load_dataset_config
    from zcalib.exceptions import InvalidConfig

    if args.datasets is not None:
        if args.data or args.mc:
            msg = "give either --datasets or --data/--mc, not both"
            raise InvalidConfig(msg)
        return load_dataset_config(args.datasets)
    cfg = config if config is not None else calibration_config(args)
    return cfg.dataset_config(data=args.data, mc=args.mc)


def mc_weights(args: argparse.Namespace) -> tuple[Any, ...]:
    """MC weight specs of ``--mc-weight NAME=FILE[:CORRECTION]`` (or ``--config``'s), read
    by :class:`~zcalib.calibration.McWeight` (the one parser of this form)."""
    return tuple(calibration_config(args).load_weights())


def fill_histograms(args: argparse.Namespace) -> Any:
    """Fill the histograms of a command: inputs, selection, categories, binning, MC weights,
    prior corrections (``--corrections``, else ``--config``'s) and smearing seed from
    :func:`calibration_config`."""
    from zcalib.api import histograms
    from zcalib.config import load_dataset_config

    cfg = calibration_config(args)
    if args.datasets is not None and not (args.data or args.mc):
        ds = load_dataset_config(args.datasets)
        if args.input_format is None and args.calibration_config is None:
            # the datasets YAML names its format (and a flat ntuple's column map)
            cfg = cfg.with_overrides(
                input_format=ds.format,
                column_map=ds.column_map.model_dump() if ds.column_map is not None else None,
            )
        cfg.check_datasets(ds)
    else:
        ds = dataset_config(args, cfg)
    steps, zweights = (
        prior_corrections(args, smears_by_default=False) if args.corrections else (None, ())
    )
    return histograms(ds, cfg, options=run_options(args), corrections=steps, weights=zweights).hset


def _cmd_histograms(args: argparse.Namespace) -> int:
    from zcalib.histograms import save_histograms

    hset = fill_histograms(args)
    save_histograms(hset, args.out)
    _print_cutflow(hset.cutflow)
    run = hset.metadata["run"]
    _echo(
        f"wrote {args.out}: {run['events']} events in {run['wall_time_fill_s']:.1f} s "
        f"({run['events_per_s']:.0f} events/s, executor {run['executor']})"
    )
    _echo_run_summary(run)
    return EXIT_OK


def _echo_run_summary(run: dict[str, Any]) -> None:
    """The one-line metrics summary, where the metrics went, and the Dask dashboard."""
    from zcalib.metrics import summary_line

    if run.get("metrics"):
        where = f" (metrics: {run['metrics_path']})" if run.get("metrics_path") else ""
        _echo(summary_line(run["metrics"]) + where)
    if run.get("dashboard"):
        _echo(f"Dask dashboard: {run['dashboard']}")


def _cmd_skim(args: argparse.Namespace) -> int:
    import dataclasses

    from zcalib.skim import skim

    opts = dataclasses.replace(run_options(args), metrics_path=args.metrics)
    res = skim(
        dataset_config(args),
        args.out,
        selection=calibration_config(args).selection(),
        margin=args.margin,
        options=opts,
    )
    rows = sum(f.rows for f in res.files)
    events = sum(f.entries for f in res.files)
    _echo(
        f"wrote {len(res.files)} skim(s): {rows:,} pairs from {events:,} events; "
        f"use --datasets {res.datasets_yaml}"
    )
    _echo_run_summary(
        {
            "metrics": res.metrics,
            "metrics_path": args.out / "skim.metrics.json",
            "dashboard": res.metrics.get("dashboard"),
        }
    )
    return EXIT_OK


def fit_config(args: argparse.Namespace, scheme: Any) -> Any:
    """:class:`~zcalib.fit.FitConfig` from parsed CLI arguments."""
    from zcalib.corrections import read_legacy_for_scheme
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import FitConfig
    from zcalib.fit.config import parse_ignored

    kw: dict[str, Any] = {
        "window": tuple(calibration_config(args).mass_window),
        "bin_width": args.bin_width,
        "min_data": args.min_data,
        "min_mc": args.min_mc,
        "start": args.start_style,
        "fix_scales": args.fix_scales,
        **parse_ignored(args.ignore, "--ignore"),
        "mc_stat": args.mc_stat,
        "mc_stat_likelihood": args.mc_stat_likelihood,
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


def _cmd_fit(args: argparse.Namespace) -> int:
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
    _print_fit(done.result)
    _echo(f"wrote {', '.join(str(p) for p in done.paths.values())}")
    if done.failure is not None:
        kept = "payload written marked FAILED" if args.write_failed else "no correction payload"
        sys.stderr.write(f"zcalib: {done.failure} ({kept})\n")
        return EXIT_FIT_FAILED
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
    summary = res.to_dict()
    atomic_write_text(args.out / "injection.json", _dump(summary))
    _print_injection(res, scheme)
    _echo(
        f"wrote {args.out / 'injection.json'} ({res.n_toys} toys, {res.n_failed} failed, "
        f"{res.wall_time:.1f} s)"
    )
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from zcalib.derive import comparison_rows, run_demo

    demo = run_demo(
        args.out,
        n_data=args.n_data,
        n_mc=args.n_mc,
        seed=args.seed,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        progress=not args.no_progress,
    )
    _print_fit(demo.result, table=False)  # the derived-vs-injected table follows
    _print_comparison(comparison_rows(demo.result, demo.truth))
    t = demo.timings
    _echo(
        f"timings: generate {t['generate_s']:.1f} s, histograms {t['histograms_s']:.1f} s, "
        f"fit {t['fit_s']:.2f} s, plots + scans + report {t['validation_s']:.1f} s"
    )
    _echo(f"wrote {', '.join(str(p) for p in demo.outputs.values())}")
    return EXIT_OK


#: Width of tables written to a pipe or file (a log, CI): rich would cut them at 80 columns.
PIPE_WIDTH = 160


def _console() -> Any:
    """A rich console as wide as the terminal; written to a pipe or file, ``$COLUMNS`` wide,
    else :data:`PIPE_WIDTH` (rich's default of 80 columns cuts category labels)."""
    import os

    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return Console(highlight=False, width=width)


def _print_fit(result: Any, *, table: bool = True) -> None:
    from zcalib.api import fit_table

    console = _console()
    if table:
        console.print(fit_table(result))
    used, dropped = len(result.regions_used), len(result.regions_dropped)
    console.print(
        f"fit {result.message} | {result.n_eval} evaluations, "
        f"{result.wall_time:.2f} s, {used} regions used, {dropped} dropped",
        markup=False,
        soft_wrap=True,
    )


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="derived vs injected (error = stat ⊕ MC stat)")
    for col in ("category", "injected", "derived", "error", "diff", "pull"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for r in rows:
        table.add_row(
            r["label"],
            f"{r['injected']:.5f}",
            f"{r['derived']:.5f}",
            f"{r['error']:.5f}",
            f"{r['diff']:+.5f}",
            f"{r['pull']:+.2f}",
        )
    _console().print(table)


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
    _console().print(table)


def _print_cutflow(cutflow: dict[str, dict[str, int]]) -> None:
    from rich.table import Table

    table = Table(title="cutflow (events)")
    cuts = list(next(iter(cutflow.values())).keys()) if cutflow else []
    table.add_column("cut")
    for ds in cutflow:
        table.add_column(ds, justify="right")
    for cut in cuts:
        table.add_row(cut, *(str(cutflow[ds].get(cut, "")) for ds in cutflow))
    _console().print(table)


#: ``--quiet`` (set by :func:`main`): :func:`_echo` prints nothing.
_ECHO = {"quiet": False}


def _echo(text: str) -> None:
    if _ECHO["quiet"]:
        return
    _console().print(text, markup=False, soft_wrap=True)


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


# ----------------------------------------------------- lineshape, systematics, stats
def _add_validation_parsers(sub: Any) -> None:
    """The ``lineshape``, ``systematics`` and ``stats`` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    ls = sub.add_parser(
        "lineshape",
        help="cross-check: Breit-Wigner x Crystal Ball fits of the Z peak per category",
        description="Fit BW (PDG mass/width) x Crystal Ball to data and MC per same-category "
        "region (or inclusively), report peak and width and the scale/smearing they "
        "imply next to the template fit; data-only inputs are compared with the "
        "PDG Z mass. Writes lineshape.json and plots/lineshape/*.png to --out.",
        epilog="Examples:\n  zcalib lineshape --histograms output/demo/histograms.npz "
        "--out output/demo\n  zcalib lineshape --datasets dimuon.yaml --categories "
        "muons.yaml --selection dimuon_selection.yaml --mode inclusive --out out/mu",
        formatter_class=fmt,
    )
    _add_input_options(ls)
    ls.add_argument("--histograms", type=Path, help="saved histograms (.npz) instead of inputs")
    ls.add_argument("--categories", type=Path, help="categories TSV or YAML (with inputs)")
    ls.add_argument(
        "--selection",
        type=Path,
        help="pair selection YAML (SelectionConfig fields, e.g. opposite_charge)",
    )
    ls.add_argument("--out", type=Path, required=True, help="output folder")
    ls.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=(75.0, 105.0),
        help="fit window [GeV] (default 75 105)",
    )
    ls.add_argument(
        "--mode",
        choices=("categories", "inclusive"),
        default="categories",
        help="one fit per same-category region, or one inclusive fit",
    )
    ls.add_argument(
        "--min-events",
        type=float,
        default=200.0,
        help="regions with fewer events are not fitted (default 200)",
    )
    ls.add_argument(
        "--variation",
        choices=("nominal", "uncorrected"),
        default="nominal",
        help="data/MC variation fitted (default nominal)",
    )
    ls.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    _add_run_options(ls)
    ls.set_defaults(func=_cmd_lineshape)

    sy = sub.add_parser(
        "systematics",
        help="systematic errors from refits with varied window, R9 boundary, Et, ID",
        description="Refit with each configured variation (mass window: refit; selection and "
        "category boundaries: refill + refit), take per source the largest shift "
        "per category and combine the sources; write systematics.json and "
        "corrections.json with escale/esmear = stat (+) syst.",
        epilog="Example: zcalib systematics --data d.root --mc m.root --categories "
        "configs/cats_eta_r9.tsv --config syst.yaml --out output/step --step step1",
        formatter_class=fmt,
    )
    _add_input_options(sy)
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
    sy.add_argument("--step", default="step", help="step name used in the correction names")
    _add_fit_options(sy)
    _add_run_options(sy)
    sy.set_defaults(func=_cmd_systematics)

    st = sub.add_parser(
        "stats",
        help="statistical validation with cabinetry/pyhf: pulls, goodness of fit, plots",
        description="Build a HistFactory workspace (data vs MC per region, free normalisations, "
        "MC stat, scale/smear shape nuisances whose steps are the derived "
        "escale/esmear), fit it with cabinetry and write stats.json, "
        "workspace.json and plots/stats/*.png to --out.",
        epilog="Examples:\n  zcalib stats --data d.root --mc m.root --categories "
        "configs/cats_eta_r9.tsv --corrections output/step/corrections.json "
        "--out output/step\n  (add --variation uncorrected for the comparison before "
        "correction: stats_uncorrected.json)",
        formatter_class=fmt,
    )
    _add_input_options(st)
    st.add_argument(
        "--histograms",
        type=Path,
        help="histograms (.npz) already filled with the --corrections applied (checked "
        "against their recorded provenance)",
    )
    st.add_argument("--categories", type=Path, help="categories TSV or YAML (with inputs)")
    st.add_argument(
        "--corrections",
        type=Path,
        help="the derivation's correctionlib file: applied when filling from "
        "inputs, and its escale/esmear are the nuisance steps",
    )
    st.add_argument("--out", type=Path, required=True, help="output folder (derivation folder)")
    st.add_argument(
        "--variation",
        choices=("nominal", "uncorrected"),
        default="nominal",
        help="compare corrected (nominal) or uncorrected data and MC",
    )
    st.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=(80.0, 100.0),
        help="mass window [GeV] (default 80 100)",
    )
    st.add_argument("--bin-width", type=float, default=1.0, help="bin width [GeV] (default 1)")
    st.add_argument(
        "--regions",
        default="diagonal",
        help="'diagonal' (same-category regions), 'all', or comma-separated codes",
    )
    st.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    _add_run_options(st)
    st.set_defaults(func=_cmd_stats)


def _selection_from(args: argparse.Namespace) -> Any:
    """The pair selection: ``--selection`` YAML, else the defaults with ``--id``."""
    from pydantic import ValidationError

    from zcalib.config import SelectionConfig, format_validation_error, load_yaml
    from zcalib.exceptions import InvalidConfig

    if getattr(args, "selection", None) is None:
        return calibration_config(args).selection()
    raw = load_yaml(args.selection)
    if not isinstance(raw, dict):
        msg = f"{args.selection}: expected a mapping of selection fields"
        raise InvalidConfig(msg)
    try:
        return SelectionConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error(str(args.selection), err)) from None


def _histograms_or_inputs(args: argparse.Namespace, steps: Sequence[Any] = ()) -> Any:
    """``--histograms`` if given, else fill from the inputs (``--categories`` required)."""
    from zcalib.categories import load_categories
    from zcalib.exceptions import InvalidConfig
    from zcalib.histograms import load_histograms
    from zcalib.runner import build_histograms

    if args.histograms is not None:
        if args.data or args.mc or args.datasets:
            msg = "give either --histograms or input files (--data/--mc/--datasets), not both"
            raise InvalidConfig(msg)
        return load_histograms(args.histograms)
    if args.categories is None:
        msg = "filling histograms from inputs needs --categories (or give --histograms)"
        raise InvalidConfig(msg)
    return build_histograms(
        dataset_config(args),
        load_categories(args.categories),
        options=run_options(args),
        weights=mc_weights(args),
        selection=_selection_from(args),
        corrections=tuple(steps),
    )


def _cmd_lineshape(args: argparse.Namespace) -> int:
    from zcalib.exceptions import InvalidConfig
    from zcalib.validation.lineshape import LineshapeConfig, run_lineshape

    try:
        config = LineshapeConfig(
            window=tuple(args.window),
            mode=args.mode,
            min_events=args.min_events,
            data_variation=args.variation,
            mc_variation=args.variation,
        )
    except ValueError as err:
        raise InvalidConfig(str(err)) from None
    hset = _histograms_or_inputs(args)
    res = run_lineshape(hset, args.out, config=config, plots=not args.no_plots)
    _print_lineshape(res)
    _echo(f"wrote {res.outputs['lineshape']}")
    return EXIT_OK


def _cmd_systematics(args: argparse.Namespace) -> int:
    from zcalib.categories import load_categories
    from zcalib.derive import check_step_name
    from zcalib.histograms import load_histograms
    from zcalib.runner import build_histograms
    from zcalib.validation.systematics import (
        SystematicsConfig,
        load_systematics_config,
        run_systematics,
    )

    check_step_name(args.step, "--step")  # before any work
    scheme = load_categories(args.categories)
    config = load_systematics_config(args.config) if args.config else SystematicsConfig()
    fcfg = fit_config(args, scheme)
    cfg = dataset_config(args)
    selection = _selection_from(args)
    opts, weights = run_options(args), mc_weights(args)
    from zcalib.cluster import one_cluster

    with one_cluster(opts) as opts:  # one cluster: nominal fill and every refill
        if args.histograms is not None:
            hset = load_histograms(args.histograms)
        else:
            hset = build_histograms(cfg, scheme, options=opts, weights=weights, selection=selection)
        res = run_systematics(
            hset,
            dataset_config=cfg,
            scheme=scheme,
            config=config,
            fit_config=fcfg,
            selection=selection,
            options=opts,
            weights=weights,
            out_dir=args.out,
            step=args.step,
        )
    _print_systematics(res)
    _echo(f"wrote {', '.join(res.outputs.values())}")
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.exceptions import InvalidConfig
    from zcalib.stats import StatsConfig, run_stats

    regions: Any = args.regions
    if regions not in ("diagonal", "all"):
        try:
            regions = tuple(int(x) for x in str(regions).split(",") if x.strip())
        except ValueError:
            msg = (
                f"--regions {args.regions!r}: allowed: 'diagonal', 'all' or comma-separated "
                "region codes"
            )
            raise InvalidConfig(msg) from None
    config = StatsConfig(
        window=tuple(args.window),
        bin_width=args.bin_width,
        regions=regions,
        data_variation=args.variation,
        mc_variation=args.variation,
    )
    steps: tuple[Any, ...] = ()
    if args.corrections is not None:
        steps = tuple(load_correction_steps(args.corrections))
    hset = _histograms_or_inputs(args, () if args.histograms is not None else steps)
    if args.histograms is not None and args.corrections is not None:
        _check_filled_with(hset, args.histograms, args.corrections, steps)
    name = "stats" if args.variation == "nominal" else f"stats_{args.variation}"
    res = run_stats(
        hset,
        args.out,
        config=config,
        corrections=args.corrections,
        plots=not args.no_plots,
        name=name,
    )
    _print_stats(res)
    _echo(f"wrote {res.outputs['stats']}")
    return EXIT_OK


def _check_filled_with(
    hset: Any, histograms: Path, corrections: Path, steps: Sequence[Any]
) -> None:
    """Refuse ``stats --histograms H --corrections C`` unless H was filled with C applied.

    Histograms cannot be corrected after the fill (the corrections act per lepton), so the
    provenance recorded at fill (``metadata["corrections"]``) must name the same corrections,
    in order, and the same file when its recorded path still exists.
    """
    from zcalib.exceptions import InvalidConfig

    recorded = list(hset.metadata.get("corrections", []))
    names = [(c.get("name"), c.get("kind")) for c in recorded]
    wanted = [(s.name, s.kind) for s in steps]
    sources = [Path(str(c.get("source", ""))) for c in recorded]
    other_file = any(src.is_file() and not src.samefile(corrections) for src in sources if str(src))
    if names == wanted and not other_file:
        return
    done = (
        "without corrections"
        if not recorded
        else "with " + ", ".join(f"{n} ({k})" for n, k in names) + f" from {sources[0]}"
    )
    msg = (
        f"{histograms}: filled {done}, not with the corrections of {corrections}; "
        "stats compares histograms filled with them applied: give the inputs "
        "(--data/--mc/--datasets with --categories) instead of --histograms"
    )
    raise InvalidConfig(msg)


def _print_lineshape(res: Any) -> None:
    import math

    from rich.table import Table

    table = Table(title="lineshape (BW x CB) vs template fit")
    for col in (
        "region",
        "peak data",
        "peak MC",
        "sigma data",
        "scale",
        "template",
        "pull",
        "smear",
        "template",
        "pull",
    ):
        table.add_column(col, justify="left" if col == "region" else "right")

    def f(v: float, spec: str = ".4f") -> str:
        return "-" if math.isnan(v) else format(v, spec)

    for r in res.rows:
        table.add_row(
            r.name,
            f"{r.data.peak:.3f}±{r.data.peak_err:.3f}",
            f(r.mc.peak, ".3f") if r.mc else "-",
            f"{r.data.sigma:.3f}",
            f"{r.scale:.4f}±{r.scale_err:.4f}",
            f(r.template_scale),
            f(r.scale_pull, "+.2f"),
            f(r.smear),
            f(r.template_smear),
            f(r.smear_pull, "+.2f"),
        )
    _console().print(table)


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
    _console().print(table)


def _print_stats(res: Any) -> None:
    from rich.table import Table

    table = Table(
        title=f"cabinetry/pyhf validation: GOF p = {res.gof_pvalue:.3g} "
        f"({res.n_dof} dof); compatible: {'yes' if res.compatible else 'NO'}"
    )
    for col in ("nuisance", "pull", "post-fit unc.", "significance", "step"):
        table.add_column(col, justify="left" if col == "nuisance" else "right")
    for p in res.pulls:
        table.add_row(
            p.name + (" (at bound)" if p.at_bound else ""),
            f"{p.pull:+.2f}",
            f"{p.uncertainty:.2f}",
            f"{p.significance:+.1f}",
            f"{p.step:.2e}",
        )
    _console().print(table)


# ----------------------------------------------------- validate, scan, report
def _add_plot_parsers(sub: Any) -> None:
    """The ``validate`` (pyval), ``scan`` (NLL scans) and ``report`` (HTML) subcommands."""
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
    _add_input_options(v)
    v.add_argument("--plot-cats", type=Path, required=True, help="plot categories TSV or YAML")
    v.add_argument("--histograms", type=Path, help="pair-mass histograms of the derivation")
    v.add_argument(
        "--corrections",
        type=Path,
        help="correctionlib file of the derivation (scales for data, smearings for MC)",
    )
    v.add_argument("--out", type=Path, required=True, help="output folder")
    v.add_argument("--lumi-label", default="(13 TeV)", help="label right above the plot")
    v.add_argument("--data-title", default="Data", help="legend entry of the data")
    v.add_argument("--mc-title", default="Simulation", help="legend entry of the MC")
    v.add_argument("--cms-text", default="Work in progress", help="text after 'CMS'")
    v.add_argument("--binning", type=int, default=40, help="bins per plot (default 40)")
    v.add_argument(
        "--smear-seed",
        type=int,
        default=None,
        help="MC smearing seed (default: the histograms' seed, else 0)",
    )
    v.add_argument(
        "--scan",
        action="store_true",
        help="also write NLL scans of the fit to OUT/scans (needs --histograms)",
    )
    _add_run_options(v)
    v.set_defaults(func=_cmd_validate)

    sc = sub.add_parser(
        "scan",
        help="1D NLL scans of every fitted scale and smearing around the minimum",
        description="Fit the histograms, then scan the likelihood of each parameter around the "
        "minimum (others fixed at the minimum, or profiled with --profile) and draw "
        "it with the Hessian parabola. Writes scan_*.png, nll_scans.png and "
        "scans.json to --out (pymin --plot / --scan-nll).",
        epilog="Example: zcalib scan --histograms output/demo/histograms.npz "
        "--categories configs/cats_eta_r9.tsv --out output/demo/scans",
        formatter_class=fmt,
    )
    sc.add_argument("--histograms", type=Path, required=True, help="saved histograms (.npz)")
    sc.add_argument("--categories", type=Path, required=True, help="categories TSV or YAML")
    sc.add_argument("--out", type=Path, required=True, help="output folder")
    sc.add_argument("--points", type=int, default=31, help="points per scan (default 31)")
    sc.add_argument(
        "--width", type=float, default=3.0, help="scan half-width in Hessian errors (default 3)"
    )
    sc.add_argument(
        "--profile",
        action="store_true",
        help="re-minimise the other parameters at each point (default: fixed)",
    )
    sc.add_argument(
        "--parameters",
        nargs="+",
        default=None,
        metavar="NAME",
        help="parameters to scan, e.g. 'scale[0]' 'smear[3]' (default: all)",
    )
    _add_fit_options(sc)
    sc.set_defaults(func=_cmd_scan)

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
    r.set_defaults(func=_cmd_report)


def _cmd_validate(args: argparse.Namespace) -> int:
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.histograms import load_histograms
    from zcalib.validation import PlotLabels, load_plot_categories, run_validation

    plots = load_plot_categories(args.plot_cats)
    hset = load_histograms(args.histograms) if args.histograms is not None else None
    ntuples = args.datasets is not None or bool(args.data or args.mc)
    cfg = dataset_config(args) if ntuples else None
    steps = load_correction_steps(args.corrections) if args.corrections is not None else []
    seed = args.smear_seed
    if seed is None:
        seed = int((hset.metadata.get("smear_seed") or 0) if hset is not None else 0)
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
        weights=mc_weights(args) if ntuples else (),
        labels=labels,
        binning=args.binning,
        selection=calibration_config(args).selection(),
        options=run_options(args) if ntuples else None,
        smear_seed=seed,
        scan=args.scan,
    )
    for rec in res.plots:
        _echo(f"{rec['name']}: chi2/ndf = {rec['chi2']:.1f}/{rec['ndf']} ({rec['source']})")
    for rec in res.skipped:
        _echo(f"skipped {rec['name']}: {rec['reason']}")
    _echo(f"wrote {len(res.plots)} plot(s) and {res.summary_path}")
    return EXIT_OK


def _cmd_scan(args: argparse.Namespace) -> int:
    from zcalib.categories import load_categories
    from zcalib.histograms import load_histograms
    from zcalib.validation import run_scans

    scheme = load_categories(args.categories)
    config = fit_config(args, scheme)
    hset = load_histograms(args.histograms)
    run = run_scans(
        hset,
        args.out,
        config=config,
        scheme=scheme,
        n_points=args.points,
        n_sigma=args.width,
        mode="profiled" if args.profile else "fixed",
        parameters=args.parameters,
    )
    for s in run.scans:
        lo, hi = s.crossing
        crossing = (
            f"scan -{s.best - lo:.2g}/+{hi - s.best:.2g}"
            if lo is not None and hi is not None
            else "scan: no crossing"
        )
        _echo(f"{s.parameter}: {s.best:.6f} ± {s.sigma:.2g} (Hessian), {crossing}")
    _echo(f"wrote {len(run.paths)} files to {args.out}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from zcalib.validation import write_report

    path = write_report(args.directory, args.out, title=args.title)
    _echo(f"wrote {path}")
    return EXIT_OK


# ----------------------------------------------- run-divide, time-stability, combine, pipeline
def _add_chain_parsers(sub: Any) -> None:
    """The derivation-chain subcommands (``zcalib.chain``)."""
    fmt = argparse.RawDescriptionHelpFormatter
    rd = sub.add_parser(
        "run-divide",
        help="contiguous run bins with at least --min-events selected pairs each",
        description="Count selected data pairs per (run, lumi) and divide the data into "
        "contiguous run bins; writes OUT (YAML) and the pymin .dat next to it.",
        epilog="Example: zcalib run-divide --data demo/data.root --min-events 10000 "
        "--out output/run_bins.yaml",
        formatter_class=fmt,
    )
    _add_input_options(rd)
    rd.add_argument(
        "--min-events",
        type=int,
        default=10_000,
        help="minimum selected pairs per bin (default 10000)",
    )
    rd.add_argument(
        "--granularity",
        choices=("run", "lumi"),
        default="run",
        help="run: bins end at run boundaries; lumi: may split runs (default run)",
    )
    _add_config_option(rd)
    _add_prior_options(rd, smears_by_default=True)
    rd.add_argument("--out", type=Path, required=True, help="output YAML (and .dat)")
    _add_run_options(rd)
    rd.set_defaults(func=_cmd_run_divide)

    ts = sub.add_parser(
        "time-stability",
        help="scales per run bin x |eta| bin from median(MC)/median(data), with a plot",
        description="Derive the time-stability step: a correctionlib scale step with inputs "
        "run and AbsScEta (run, lumi and AbsScEta when the run bins split runs at a "
        "luminosity block), the legacy scales file (a run/lumi TSV for bins splitting runs), "
        "time_stability.json and the peak-vs-run plot (before/after) in --out.",
        epilog="Example: zcalib time-stability --data d.root --mc m.root --run-bins "
        "output/run_bins.yaml --out output/time_stability",
        formatter_class=fmt,
    )
    _add_input_options(ts)
    ts.add_argument("--run-bins", type=Path, required=True, help="run bins (YAML or .dat)")
    ts.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=(80.0, 100.0),
        help="mass window of the medians [GeV] (default 80 100)",
    )
    _add_config_option(ts)
    _add_prior_options(ts, smears_by_default=True)
    ts.add_argument("--name", default="time_stability_scale", help="correction name")
    ts.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the second pass (peaks after the correction)",
    )
    ts.add_argument("--out", type=Path, required=True, help="output folder")
    _add_run_options(ts)
    ts.set_defaults(func=_cmd_time_stability)

    cb = sub.add_parser(
        "combine",
        help="fold a step's scales into a scales file (pymin --combine-files)",
        description="Multiply the scales of a step (only-step or scales file) into a base "
        "scales file row by row for nested categories; write the combined file.",
        epilog="Example: zcalib combine --scales output/time_stability/"
        "time_stability_scales.dat --only-step output/step2/step2_only_step.tsv "
        "--out output/combined_scales.dat",
        formatter_class=fmt,
    )
    cb.add_argument("--scales", type=Path, required=True, help="base scales file")
    cb.add_argument("--only-step", type=Path, required=True, help="the step's scales file")
    cb.add_argument(
        "--error",
        choices=("step", "quadrature"),
        default="step",
        help="keep the step error (pymin) or combine both in quadrature",
    )
    cb.add_argument("--out", type=Path, required=True, help="combined scales file")
    cb.set_defaults(func=_cmd_combine)

    asm = sub.add_parser(
        "assemble",
        help="the final payload of a chain of finished steps (what the pipeline writes to final/)",
        description="Fold the outputs of finished steps (zcalib fit / time-stability folders, or "
        "correctionlib files), in execution order, into the final EGM payload exactly as "
        "`zcalib pipeline` writes final/: corrections.json (every scale step stacked in the "
        "compound, the smearing of the latest step), the combined scales.dat, smearings.dat, "
        "and assemble.json. A step is named after its folder (NAME=PATH to rename).",
        epilog="Example:\n  zcalib assemble output/time_stability output/step2 output/step3 "
        "--out output/final",
        formatter_class=fmt,
    )
    asm.add_argument(
        "steps", nargs="+", metavar="STEP", help="step folders (or NAME=PATH), in execution order"
    )
    asm.add_argument("--out", type=Path, required=True, help="output folder")
    asm.add_argument(
        "--era", default=None, help="era of the payload names (default: the fit steps' era)"
    )
    asm.add_argument(
        "--smear-seed",
        type=int,
        default=None,
        help="seed of EGMRandomGenerator (default: the one recorded by the step providing "
        "the smearing)",
    )
    asm.set_defaults(func=_cmd_assemble)

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
    pl.set_defaults(func=_cmd_pipeline)


def _loop_from(args: argparse.Namespace) -> Any:
    """The event loop of ``run-divide``/``time-stability``: inputs, selection, MC weights,
    prior corrections (``--corrections``, else ``--config``'s) and smearing seed of
    :func:`calibration_config`, as :func:`fill_histograms`."""
    from zcalib.chain import ChainLoop

    cfg = calibration_config(args)
    if args.corrections:
        steps, zweights = prior_corrections(args, smears_by_default=True)
    else:
        steps, zweights = cfg.load_corrections(), ()
    return ChainLoop(
        dataset_config(args, cfg),
        options=run_options(args),
        selection=cfg.selection(),
        weights=(*cfg.load_weights(), *zweights),
        corrections=steps,
        smear_seed=cfg.smear_seed,
    )


def _cmd_run_divide(args: argparse.Namespace) -> int:
    from zcalib.chain import run_divide

    bins = run_divide(
        _loop_from(args), min_events=args.min_events, granularity=args.granularity, out=args.out
    )
    pairs = [b.pairs or 0 for b in bins.bins]
    _echo(
        f"{len(bins)} run bins ({bins.granularity} granularity), {min(pairs)}-{max(pairs)} "
        f"selected pairs each; wrote {args.out} and {args.out.with_suffix('.dat')}"
    )
    return EXIT_OK


def _cmd_time_stability(args: argparse.Namespace) -> int:
    from zcalib.chain import load_run_bins, time_stability

    bins = load_run_bins(args.run_bins)
    res, paths = time_stability(
        _loop_from(args),
        bins,
        args.out,
        window=tuple(args.window),
        name=args.name,
        validate=not args.no_validate,
    )
    chi = res.chi2()
    text = (
        f"peak flatness chi2/ndf before {chi['before']['total_chi2']:.1f}/"
        f"{chi['before']['total_ndf']}"
    )
    if "after" in chi:
        text += f", after {chi['after']['total_chi2']:.1f}/{chi['after']['total_ndf']}"
    _echo(f"{len(bins)} run bins x {len(res.eta_bins)} |eta| bins: {text}")
    _echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK


def _cmd_combine(args: argparse.Namespace) -> int:
    from zcalib.corrections import combine

    table = combine(args.scales, args.only_step, args.out, error=args.error)
    _echo(f"wrote {args.out} ({len(table)} rows)")
    return EXIT_OK


def _cmd_assemble(args: argparse.Namespace) -> int:
    from zcalib.chain.assemble import assemble

    paths = assemble(args.steps, args.out, era=args.era, seed=args.smear_seed)
    _echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK


def _cmd_pipeline(args: argparse.Namespace) -> int:
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
        _echo(f"{name:>16} [{out.type}] {state} ({out.wall_time_s:.1f} s)")
    if res.final:
        _echo(f"wrote {', '.join(str(p) for p in res.final.values())}")
    else:
        _echo(f"stopped after {args.stop_after}: no final outputs yet")
    _echo(
        f"pipeline: {len(res.ran)} step(s) ran, {len(res.skipped)} cached, {res.wall_time_s:.1f} s"
    )
    if args.strict and res.closes is False:
        sys.stderr.write(f"zcalib: the chain does not close (--strict): exit {EXIT_NOT_CLOSED}\n")
        return EXIT_NOT_CLOSED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
