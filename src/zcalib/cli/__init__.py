"""The ``zcalib`` command line: one subcommand per pipeline stage, in pipeline order.

Each subcommand loads and validates its inputs, then makes one library call. Exit codes:
0 success, 1 invalid input (any :class:`~zcalib.exceptions.ZcalibError`, or bad usage),
2 internal error, 3 a fit that ran but failed (no correction payload written), 4
``pipeline --strict`` on a chain that does not close, 130 interrupted (Ctrl-C; one line, local Dask workers closed without tracebacks).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from zcalib.cli._console import ECHO, PIPE_WIDTH, console
from zcalib.cli._options import (
    CONFIG_FIELDS,
    SMOOTH_FORMS,
    Default,
    add_global_options,
    resolve_defaults,
)
from zcalib.exceptions import FitFailed, ZcalibError
from zcalib.outputs import output_run

__all__ = [
    "CONFIG_FIELDS",
    "EXIT_FIT_FAILED",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_CLOSED",
    "EXIT_OK",
    "PIPELINE_ORDER",
    "PIPE_WIDTH",
    "SMOOTH_FORMS",
    "build_parser",
    "main",
]

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

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, rest = super().parse_known_args(args, namespace)
        return resolve_defaults(ns), rest


class _DefaultsInHelp(argparse.HelpFormatter):
    """Every option's default in its help unless the help already states it (``None``,
    ``False`` and empty defaults are not shown; a library's :class:`Default` shows its value)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if isinstance(default, Default):
            default = default.value
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


#: Subcommands in pipeline order (how `zcalib --help` lists them: argparse lists them in the
#: order they are registered). Each is the module ``zcalib.cli.<name>`` (``-`` as ``_``) with
#: ``add_parser(subparsers)`` and the handler ``run(args) -> exit code``.
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


def _command(name: str) -> Any:
    """The module of subcommand ``name`` (imported when the parser is built: the modules
    import the exit codes from here)."""
    import importlib

    return importlib.import_module(f"zcalib.cli.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="zcalib",
        description="Derive lepton energy scales (data) and smearings (MC) from Z->ll events.",
        epilog="Example: zcalib demo   (generates demo data, fills histograms on a local Dask "
        "cluster, fits, writes output/demo/)",
    )
    parser.add_argument("--version", action="version", version=f"zcalib {_version()}")
    add_global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in PIPELINE_ORDER:
        _command(name).add_parser(subparsers)
    with_defaults: dict[Any, Any] = {
        argparse.HelpFormatter: _DefaultsInHelp,
        argparse.RawDescriptionHelpFormatter: _RawDefaultsInHelp,
    }
    for p in (parser, *subparsers.choices.values()):
        if p is not parser:
            add_global_options(p, top=False)
        p.formatter_class = with_defaults.get(p.formatter_class, p.formatter_class)
    return parser


def _version() -> str:
    import zcalib

    return str(zcalib.__version__)


def _setup_logging(verbose: int, *, quiet: bool = False) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(
        console=console(), show_path=False, show_time=False, markup=False, rich_tracebacks=False
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
    ECHO["quiet"] = args.quiet
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
