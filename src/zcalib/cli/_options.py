"""Option groups shared by several commands, and the library objects they describe."""

from __future__ import annotations

import argparse
import ast
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Owners of the library defaults of CLI options (``"module:object"``, see :class:`Default`).
FIT_CONFIG = "zcalib.fit.config:FitConfig"
CALIBRATION_CONFIG = "zcalib.calibration:CalibrationConfig"
RUN_OPTIONS = "zcalib.runner:RunOptions"


@dataclass(frozen=True)
class Default:
    """The default of a CLI option where the library defines it: field or parameter
    ``name`` of ``owner`` (``"module:object"``: a pydantic model, a dataclass or a function),
    so each default lives in one place. The module is imported only when the value is
    needed (parsing, ``--help``): building the parser stays light. The parser replaces it
    by :attr:`value` (``zcalib.cli._Parser``); ``--help`` shows the value."""

    owner: str
    name: str

    @property
    def value(self) -> Any:
        return library_default(self.owner, self.name)

    def __str__(self) -> str:
        """The value as a user writes it (``80 100`` for a window)."""
        v = self.value
        return " ".join(map(_shown, v)) if isinstance(v, list | tuple) else _shown(v)


def _shown(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@functools.cache
def library_default(owner: str, name: str) -> Any:
    """Default of field or parameter ``name`` of ``owner`` (``"module:object"``).

    Read from the owner's source when the default is a literal or a module constant
    (:func:`_static_default`): ``--help`` and parsing then import no physics module
    (``zcalib fit --help`` without coffea, numba or the fitter). Otherwise (a computed
    default) the owner is imported and asked.
    """
    try:
        return _static_default(owner, name)
    except _NotStatic:
        return _imported_default(owner, name)


def _imported_default(owner: str, name: str) -> Any:
    import dataclasses
    import importlib
    import inspect

    module, _, attr = owner.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if hasattr(obj, "model_fields"):  # pydantic model
        return obj.model_fields[name].get_default(call_default_factory=True)
    if dataclasses.is_dataclass(obj):
        field = {f.name: f for f in dataclasses.fields(obj)}[name]
        if field.default is dataclasses.MISSING:
            return field.default_factory()  # type: ignore[operator]
        return field.default
    return inspect.signature(obj).parameters[name].default


@functools.cache
def library_constant(module: str, name: str) -> Any:
    """Module constant ``name`` of ``module``, read from its source when it is a literal
    (see :func:`library_default`), else imported."""
    try:
        return _constant(ast.Name(name), module)
    except _NotStatic:
        import importlib

        return getattr(importlib.import_module(module), name)


class _NotStatic(Exception):
    """The default is computed: import the owner to know it."""


@functools.cache
def _module_tree(module: str) -> ast.Module:
    """The parsed source of a zcalib module, found without importing it (nor its package)."""
    import zcalib

    base = Path(zcalib.__file__).parent.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if module.startswith("zcalib.") and path.is_file():
            return ast.parse(path.read_text(encoding="utf-8"))
    raise _NotStatic(module)


def _static_default(owner: str, name: str) -> Any:
    """The default of ``name`` in the source of ``owner``: a pydantic or dataclass field
    (``x: T = v``, ``Field(v, ...)``, ``field(default=v)``) or a function parameter, whose
    value is a literal or a constant of the module (followed through ``from ... import``).
    Field validators do not touch defaults, so the value is the one the class holds.

    Raises:
        _NotStatic: anything else (a computed default, a default factory).
    """
    module, _, attr = owner.partition(":")
    tree = _module_tree(module)
    node = next((n for n in tree.body if getattr(n, "name", None) == attr), None)
    if isinstance(node, ast.FunctionDef):
        a = node.args
        params = [*a.posonlyargs, *a.args]
        pairs = list(zip(params[len(params) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d]
        expr = next((d for p, d in pairs if p.arg == name), None)
    elif isinstance(node, ast.ClassDef):
        expr = next(
            (
                n.value
                for n in node.body
                if isinstance(n, ast.AnnAssign)
                and isinstance(n.target, ast.Name)
                and n.target.id == name
            ),
            None,
        )
        if isinstance(expr, ast.Call):  # Field(default, ...) / field(default=...)
            kw = {k.arg: k.value for k in expr.keywords}
            expr = expr.args[0] if expr.args else kw.get("default")
    else:
        expr = None
    if expr is None:
        raise _NotStatic(owner, name)
    return _constant(expr, module)


def _constant(expr: ast.expr, module: str) -> Any:
    """A literal, or a module constant (assigned once at the top level, or imported)."""
    if isinstance(expr, ast.Tuple):
        return tuple(_constant(e, module) for e in expr.elts)
    if isinstance(expr, ast.Name):
        for n in _module_tree(module).body:
            if isinstance(n, ast.AnnAssign | ast.Assign) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if any(isinstance(t, ast.Name) and t.id == expr.id for t in targets):
                    return _constant(n.value, module)
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                for alias in n.names:
                    if (alias.asname or alias.name) == expr.id:
                        return _constant(ast.Name(alias.name), n.module)
        raise _NotStatic(expr.id)
    try:
        return ast.literal_eval(expr)
    except ValueError:
        raise _NotStatic(ast.dump(expr)) from None


def resolve_defaults(ns: argparse.Namespace) -> argparse.Namespace:
    """``ns`` with every :class:`Default` left by the parser replaced by its value."""
    for key, value in vars(ns).items():
        if isinstance(value, Default):
            setattr(ns, key, value.value)
    return ns


def library_help(action: argparse.Action, owner: str, name: str) -> None:
    """Let the help of ``action`` (an option defaulting to ``None``) name the library's
    default as ``%(library)s``."""
    action.library = Default(owner, name)  # type: ignore[attr-defined]


def add_global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
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


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("event loop")
    g.add_argument(
        "--executor",
        choices=("iterative", "futures", "dask"),
        default=Default(RUN_OPTIONS, "executor"),
        help="coffea executor (dask: a local cluster unless --scheduler)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=Default(RUN_OPTIONS, "workers"),
        help="local worker processes",
    )
    g.add_argument(
        "--chunksize", type=int, default=Default(RUN_OPTIONS, "chunksize"), help="events per chunk"
    )
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
    g.add_argument(
        "--retries",
        type=int,
        default=Default(RUN_OPTIONS, "retries"),
        help="retries of a failed chunk",
    )
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


def add_input_options(p: argparse.ArgumentParser) -> None:
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
#: CalibrationConfig only (these options default to ``None``). ``a.b`` is the field ``b`` of the
#: nested model ``a`` (``selection.id_level``: the other selection fields are kept).
CONFIG_FIELDS: dict[str, str] = {
    "input_format": "input_format",
    "treename": "treename",
    "id_level": "selection.id_level",
    "categories": "categories",
    "mc_weight": "mc_weights",
    "fit_window": "window",
    "smear_seed": "smear_seed",
    "era": "era",
}


CATEGORIES_HELP = (
    "categories TSV or YAML (default: --config's, else the histograms' with --histograms, "
    "else the built-in 8-category |eta| x R9 scheme)"
)


def add_config_option(p: argparse.ArgumentParser) -> None:
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


def add_refit_options(p: argparse.ArgumentParser) -> None:
    """``--categories`` (optional) and ``--config`` of a command refitting saved histograms."""
    p.add_argument(
        "--categories",
        type=Path,
        default=None,
        help="categories TSV or YAML (default: --config's, else the histograms' own)",
    )
    add_config_option(p)


def refit_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(histograms, scheme, fit config)`` of a command that refits ``--histograms``
    (``scan``, ``inject``). The scheme is ``--categories`` or ``--config``'s, else the one the
    histograms were filled with; a bad ``--config`` fails before the histograms are read."""
    from zcalib.histograms import load_histograms

    calib = calibration_config(args)
    hset = load_histograms(args.histograms)
    scheme = calib.scheme() if calib.categories is not None else hset.scheme()
    return hset, scheme, fit_config(args, scheme)


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
        value = str(value) if isinstance(value, Path) else value
        section, _, key = name.rpartition(".")
        if section:
            given.setdefault(section, {})[key] = value
        else:
            given[name] = value
    return base.with_overrides(**given) if given else base


def add_prior_options(p: argparse.ArgumentParser, *, smears_by_default: bool) -> None:
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
    """The prior corrections and Z weights of ``--corrections`` (see :func:`add_prior_options`)."""
    from zcalib.chain.assemble import _prior

    mode = args.mc_smearing
    smear = mode == "latest" or (mode == "auto" and smears_by_default)
    return _prior(args.corrections, smear_mc=smear)


def add_era_option(p: argparse.ArgumentParser) -> None:
    egm = "zcalib.corrections.egm"
    eras, default_era = library_constant(egm, "ERAS"), library_constant(egm, "DEFAULT_ERA")
    p.add_argument(
        "--era",
        default=None,
        metavar="ERA",
        help="era in the payload names, e.g. EGMScale_Compound_Ele_<era> (default: --config's, "
        f"else {default_era}; one of {', '.join(eras)})",
    )


#: ``--smooth-scale`` / ``--smooth-smear`` forms (:data:`zcalib.fit.smooth.FORMS`).
SMOOTH_FORMS = {"scale": ("power", "linear"), "smear": ("sqrt_inverse",)}


def add_smooth_options(p: argparse.ArgumentParser) -> None:
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


def add_fit_options(p: argparse.ArgumentParser) -> None:
    """The fit options; their defaults are :class:`~zcalib.fit.FitConfig`'s (the window:
    :class:`~zcalib.calibration.CalibrationConfig`'s ``window``)."""
    g = p.add_argument_group("fit")
    window = g.add_argument(
        "--window",
        dest="fit_window",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="mass window of the likelihood [GeV] (default: --config's window, else %(library)s)",
    )
    library_help(window, CALIBRATION_CONFIG, "window")
    g.add_argument(
        "--bin-width",
        type=float,
        default=Default(FIT_CONFIG, "bin_width"),
        help="data bin width [GeV]",
    )
    g.add_argument(
        "--min-data",
        type=float,
        default=Default(FIT_CONFIG, "min_data"),
        help="drop regions with fewer data pairs in the window",
    )
    g.add_argument(
        "--min-mc",
        type=float,
        default=Default(FIT_CONFIG, "min_mc"),
        help="drop regions with fewer effective MC entries in the window",
    )
    g.add_argument(
        "--start-style",
        choices=("scan", "random", "specify"),
        default=Default(FIT_CONFIG, "start"),
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
        default=Default(FIT_CONFIG, "mc_stat"),
        help="MC-statistics error method (bootstrap: replicas of fluctuated templates, "
        "reliable for smearings; sandwich: linear propagation, faster)",
    )
    g.add_argument(
        "--mc-stat-likelihood",
        choices=("noise-corrected", "none", "bb-lite"),
        default=Default(FIT_CONFIG, "mc_stat_likelihood"),
        help="template-statistics treatment in the likelihood (noise-corrected removes the "
        "upward smearing bias from MC noise; none: plain multinomial NLL)",
    )
    g.add_argument(
        "--fit-seed",
        type=int,
        default=Default(FIT_CONFIG, "seed"),
        help="seed for random starts/bootstrap",
    )


def run_options(args: argparse.Namespace) -> Any:
    """:class:`~zcalib.runner.RunOptions` from parsed CLI arguments, mapped as the
    pipeline's ``run:`` (:meth:`zcalib.chain.config.RunSettings.options`)."""
    from zcalib.chain.config import RunSettings
    from zcalib.exceptions import InvalidConfig

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
    settings = RunSettings.model_construct(  # checked by RunOptions.check (its messages)
        executor=args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        scheduler=args.scheduler,
        recipe=recipe,
        progress=not args.no_progress,
    )
    return settings.options(
        Path(),
        maxchunks=args.maxchunks,
        retries=getattr(args, "retries", library_default(RUN_OPTIONS, "retries")),
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


def fit_config(args: argparse.Namespace, scheme: Any) -> Any:
    """:class:`~zcalib.fit.FitConfig` from parsed CLI arguments."""
    from zcalib.corrections import read_legacy_for_scheme
    from zcalib.exceptions import InvalidConfig
    from zcalib.fit import FitConfig
    from zcalib.fit.config import parse_ignored

    kw: dict[str, Any] = {
        "window": tuple(calibration_config(args).window),
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


def selection_from(args: argparse.Namespace) -> Any:
    """The pair selection: ``--selection`` YAML, else the defaults with ``--id``."""
    from pydantic import ValidationError

    from zcalib.config import SelectionConfig, format_validation_error, load_yaml
    from zcalib.exceptions import InvalidConfig

    if getattr(args, "selection", None) is None:
        return calibration_config(args).selection
    raw = load_yaml(args.selection)
    if not isinstance(raw, dict):
        msg = f"{args.selection}: expected a mapping of selection fields"
        raise InvalidConfig(msg)
    try:
        return SelectionConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error(str(args.selection), err)) from None


def histograms_or_inputs(args: argparse.Namespace, steps: Sequence[Any] = ()) -> Any:
    """``--histograms`` if given, else fill from the inputs: categories, selection (unless
    ``--selection``), binning, MC weights and smearing seed of :func:`calibration_config`
    (``--categories`` or ``--config``'s required)."""
    from zcalib.exceptions import InvalidConfig
    from zcalib.histograms import load_histograms
    from zcalib.runner import build_histograms

    cfg = calibration_config(args)  # a bad --config fails here, before any work
    if args.histograms is not None:
        if args.data or args.mc or args.datasets:
            msg = "give either --histograms or input files (--data/--mc/--datasets), not both"
            raise InvalidConfig(msg)
        return load_histograms(args.histograms)
    if cfg.categories is None:
        msg = "filling histograms from inputs needs --categories (or give --histograms)"
        raise InvalidConfig(msg)
    return build_histograms(
        dataset_config(args, cfg),
        cfg.scheme(),
        options=run_options(args),
        weights=cfg.load_weights(),
        selection=selection_from(args),
        binning=cfg.mass_binning(),
        corrections=tuple(steps),
        smear_seed=cfg.smear_seed,
    )


def chain_loop(args: argparse.Namespace) -> Any:
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
        selection=cfg.selection,
        weights=(*cfg.load_weights(), *zweights),
        corrections=steps,
        smear_seed=cfg.smear_seed,
    )
