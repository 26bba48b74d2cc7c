"""Each CLI default lives in one place: the library's (issue 15).

Every option of every subcommand whose default is not empty (``None``, ``False``, ``[]``)
has a library counterpart in :data:`LIBRARY` (the parsed default must equal it) or is
declared CLI-only in :data:`CLI_ONLY`; a new option with a literal default fails here
until it is classified, and a library default changed without the CLI fails too.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from zcalib.api import apply, run_step
from zcalib.calibration import CalibrationConfig
from zcalib.chain.run_divide import run_divide
from zcalib.chain.time_stability import time_stability
from zcalib.cli import build_parser
from zcalib.corrections.legacy import combine
from zcalib.derive import run_demo
from zcalib.fit import FitConfig
from zcalib.fit.inject import inject
from zcalib.generate import generate
from zcalib.runner import RunOptions
from zcalib.skim import skim
from zcalib.stats.workspace import StatsConfig
from zcalib.validation.lineshape import LineshapeConfig
from zcalib.validation.plots import PlotLabels, run_validation
from zcalib.validation.scans import run_scans


def _param(fn: Callable[..., Any], name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


_FIT, _RUN = FitConfig(), RunOptions()
#: The fit options (``add_fit_options``) and FitConfig.
FIT = {
    "bin_width": _FIT.bin_width,
    "min_data": _FIT.min_data,
    "min_mc": _FIT.min_mc,
    "start_style": _FIT.start,
    "mc_stat": _FIT.mc_stat,
    "mc_stat_likelihood": _FIT.mc_stat_likelihood,
    "fit_seed": _FIT.seed,
}
#: The event-loop options (``add_run_options``) and RunOptions.
RUN = {
    "executor": _RUN.executor,
    "workers": _RUN.workers,
    "chunksize": _RUN.chunksize,
    "retries": _RUN.retries,
}
_LABELS, _STATS, _LINESHAPE = PlotLabels(), StatsConfig(), LineshapeConfig()
_EVENT_LOOP = (
    "skim",
    "run-divide",
    "time-stability",
    "histograms",
    "fit",
    "apply",
    "validate",
    "lineshape",
    "systematics",
    "stats",
)

#: (command, option dest) -> the library's default.
LIBRARY: dict[tuple[str, str], Any] = {
    **{(c, d): v for c in ("fit", "inject", "scan", "systematics") for d, v in FIT.items()},
    **{(c, d): v for c in _EVENT_LOOP for d, v in RUN.items()},
    ("generate", "n_data"): _param(run_demo, "n_data"),
    ("generate", "n_mc"): _param(run_demo, "n_mc"),
    ("generate", "seed"): _param(generate, "seed"),
    ("generate", "fmt"): _param(generate, "fmt"),
    ("generate", "drift"): _param(generate, "drift"),
    ("skim", "margin"): _param(skim, "margin"),
    ("run-divide", "min_events"): _param(run_divide, "min_events"),
    ("run-divide", "granularity"): _param(run_divide, "granularity"),
    ("time-stability", "window"): _param(time_stability, "window"),
    ("time-stability", "name"): _param(time_stability, "name"),
    ("fit", "step"): _param(run_step, "step"),
    ("systematics", "step"): _param(run_step, "step"),
    ("combine", "error"): _param(combine, "error"),
    ("apply", "input_format"): _param(apply, "input_format"),
    ("apply", "collection"): _param(apply, "collection"),
    ("inject", "toys"): _param(inject, "n_toys"),
    ("inject", "seed"): _param(inject, "seed"),
    ("scan", "points"): _param(run_scans, "n_points"),
    ("scan", "width"): _param(run_scans, "n_sigma"),
    ("validate", "lumi_label"): _LABELS.lumi_label,
    ("validate", "data_title"): _LABELS.data_title,
    ("validate", "mc_title"): _LABELS.mc_title,
    ("validate", "cms_text"): _LABELS.exp_text,
    ("validate", "binning"): _param(run_validation, "binning"),
    ("lineshape", "window"): _LINESHAPE.window,
    ("lineshape", "mode"): _LINESHAPE.mode,
    ("lineshape", "min_events"): _LINESHAPE.min_events,
    ("lineshape", "variation"): _LINESHAPE.data_variation,
    ("stats", "window"): _STATS.window,
    ("stats", "bin_width"): _STATS.bin_width,
    ("stats", "regions"): _STATS.regions,
    ("stats", "variation"): _STATS.data_variation,
    ("demo", "out"): _param(run_demo, "out_dir"),
    ("demo", "n_data"): _param(run_demo, "n_data"),
    ("demo", "n_mc"): _param(run_demo, "n_mc"),
    ("demo", "seed"): _param(run_demo, "seed"),
    ("demo", "workers"): _param(run_demo, "workers"),
    ("demo", "executor"): _param(run_demo, "executor"),
}
#: Options whose default is the CLI's own: ``--mc-smearing auto`` (the command decides).
CLI_ONLY = {"mc_smearing"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _parsed_defaults(name: str, p: argparse.ArgumentParser) -> argparse.Namespace:
    """``zcalib NAME`` parsed with only its required arguments (each given as ``1``)."""
    argv = [name]
    for a in p._actions:
        if a.option_strings and a.required:
            argv += [a.option_strings[0], "1"]
        elif not a.option_strings and a.nargs != 0:
            argv.append("1")
    return build_parser().parse_args(argv)


def _non_empty(a: argparse.Action) -> bool:
    d = a.default
    return bool(
        a.option_strings
        and not isinstance(a, argparse._HelpAction | argparse._StoreTrueAction)
        and not isinstance(a, argparse._CountAction)
        and d is not None
        and d is not False
        and d != argparse.SUPPRESS
        and not (isinstance(d, list | tuple) and not d)
    )


def test_every_cli_default_is_the_library_default():
    """The parsed default of every option with a library counterpart equals the library's
    value (and type); every other non-empty default is declared CLI-only."""
    seen = set()
    for name, p in _subparsers().items():
        args = _parsed_defaults(name, p)
        for a in filter(_non_empty, p._actions):
            if a.dest in CLI_ONLY:
                continue
            key = (name, a.dest)
            assert key in LIBRARY, f"{name} {a.option_strings[0]}: default without a library row"
            got, want = getattr(args, a.dest), LIBRARY[key]
            assert (got, type(got)) == (want, type(want)), f"{name} {a.option_strings[0]}"
            seen.add(key)
    assert seen == set(LIBRARY)  # no stale row


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("fit", f"(default: {_FIT.bin_width})"),
        ("fit", "else {:g} {:g})".format(*CalibrationConfig.model_fields["window"].default)),
        ("stats", "(default: {} {})".format(*_STATS.window)),
        ("lineshape", f"(default: {_LINESHAPE.min_events})"),
        ("run-divide", f"(default: {_param(run_divide, 'min_events')})"),
    ],
)
def test_help_shows_the_library_default(command, shown):
    text = " ".join(_subparsers()[command].format_help().split())
    assert shown in text


def test_help_imports_no_physics_module():
    """``zcalib <command> --help`` shows the library defaults without importing the modules
    that own them (read from their source): no coffea, numba, numpy or fitter import, so
    help is instant (it took ~2-3 s when FitConfig's defaults imported zcalib.fit)."""
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from zcalib.cli import build_parser\n"
        "p = build_parser()\n"
        "subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))\n"
        "text = ''.join(sp.format_help() for sp in subs.choices.values())\n"
        "heavy = ('coffea', 'numba', 'numpy', 'dask', 'scipy', 'correctionlib', 'zcalib.fit')\n"
        "print(len(subs.choices), sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert int(out[0]) >= 18
    assert out[1].strip() == "[]"


def test_static_defaults_follow_module_constants():
    """A default spelled as a module constant imported from another module
    (``window: ... = DEFAULT_WINDOW``) is followed to its value."""
    from zcalib.cli._options import _static_default
    from zcalib.config import DEFAULT_WINDOW

    assert _static_default("zcalib.fit.config:FitConfig", "window") == DEFAULT_WINDOW
    assert _static_default("zcalib.runner:RunOptions", "workers") == RunOptions().workers
