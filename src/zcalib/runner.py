"""Run the dielectron processor over a dataset description and return a HistogramSet.

This is the event loop of a derivation step: set-up checks (every file, tree and branch) →
coffea ``Runner`` on the iterative, futures or Dask executor → accumulated histograms,
cutflow and metrics. Everything downstream works on the returned histograms only.

Fault tolerance:

* **retries**: failed tasks are retried (``RunOptions.retries``; Dask retries the task on
  another worker, and recomputes the chunks a lost worker held — distributed does this).
* **bad input files**: by default the run fails with one error listing *every* bad file.
  With ``skip_bad_files`` the bad files (pre-flight failures, and files whose chunks cannot
  be read during the run) are dropped, logged as warnings and listed in
  ``HistogramSet.metadata["skipped_files"]`` as ``{"path", "dataset", "reason",
  "entries_lost"}`` — never silently.
* **resumable runs**: with ``checkpoint_dir`` every finished chunk is stored (atomically) as
  a small ``.npz`` keyed by the file fingerprint, tree, entry range and a hash of the
  processor configuration; ``resume=True`` reloads them instead of recomputing
  (coffea ``Runner(checkpointer=...)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from coffea import processor
from coffea.processor.checkpointer import CheckpointerABC
from coffea.processor.executor import WorkItem
from pydantic import BaseModel

from zcalib._atomic import atomic_open
from zcalib.categories import CategoryScheme
from zcalib.config import DatasetConfig, SelectionConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import HistogramSet, MassBinning, PairCounts
from zcalib.io import coffea_compat
from zcalib.io._base import READ_BYTES_KEY
from zcalib.io.fingerprint import file_fingerprint
from zcalib.io.formats import get_format
from zcalib.io.parquet import ParquetChunkReader
from zcalib.io.preflight import FileInfo, bad_files_message, preflight
from zcalib.metrics import WORKERS_KEY, TrackedProcessor, build_metrics, write_metrics
from zcalib.processors.zee import (
    CorrectionStep,
    WeightSpec,
    ZeeProcessor,
    merge_cutflows,
    missing_event_input,
)

__all__ = [
    "EXECUTORS",
    "ChunkCheckpointer",
    "EventLoop",
    "LoopRun",
    "ParquetChunkReader",
    "ProcessorRun",
    "RunOptions",
    "build_histograms",
    "checked_inputs",
    "default_checkpoint_dir",
    "file_fingerprint",
    "load_weight",
    "processor_hash",
    "run_processor",
]

log = logging.getLogger(__name__)
coffea_compat.install()  # non-ASCII paths and dataset names

Executor = Literal["iterative", "futures", "dask"]
EXECUTORS: tuple[str, ...] = ("iterative", "futures", "dask")


def _skippable() -> tuple[type[BaseException], ...]:
    """Exceptions (anywhere in the cause chain) after which coffea skips a chunk or file when
    ``skip_bad_files`` is set: I/O errors and what uproot/pyarrow raise for corrupt files.
    Read errors inside the processor are reported through its ``failed`` output instead."""
    from uproot.deserialization import DeserializationError

    return (OSError, ValueError, DeserializationError)


_ID_RANK = {"none": 0, "loose": 1, "medium": 2, "tight": 3}


@dataclass(frozen=True)
class RunOptions:
    """How to run the event loop.

    Attributes:
        executor: ``iterative`` (one process), ``futures`` (local process pool) or ``dask``.
        workers: number of local worker processes (futures, local Dask cluster).
        chunksize: events per chunk.
        scheduler: address of an existing Dask scheduler (implies ``executor="dask"``).
        maxchunks: process at most this many chunks per file (debugging, like pymin --debug).
        progress: show progress bars.
        client: an existing ``distributed.Client`` to use (programmatic use).
        recipe: a cluster recipe (YAML path or model, see ``dask_cluster/``; implies dask).
        retries: retries of a failed task (chunk) before the run fails.
        skip_bad_files: drop unreadable files and chunks, report them in the metadata.
        checkpoint_dir: store every finished chunk here (resumable runs).
        resume: reuse the chunks already stored in ``checkpoint_dir``.
        metrics_path: write the run metrics JSON here.
    """

    executor: Executor = "dask"
    workers: int = 2
    chunksize: int = 100_000
    scheduler: str | None = None
    maxchunks: int | None = None
    progress: bool = True
    client: Any = field(default=None, compare=False)
    recipe: Any = None
    retries: int = 3
    skip_bad_files: bool = False
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    metrics_path: str | Path | None = None

    @property
    def uses_dask(self) -> bool:
        """Whether the run goes through a Dask client."""
        return (
            self.executor == "dask"
            or bool(self.scheduler)
            or self.recipe is not None
            or self.client is not None
        )

    def check(self) -> None:
        """Raise :class:`InvalidConfig` for inconsistent options (naming the option)."""
        if self.executor not in EXECUTORS:
            msg = f"unknown executor {self.executor!r}; allowed: {', '.join(EXECUTORS)}"
            raise InvalidConfig(msg)
        if self.chunksize <= 0:
            msg = f"chunksize must be positive, got {self.chunksize}"
            raise InvalidConfig(msg)
        if self.workers < 1:
            msg = f"workers must be >= 1, got {self.workers}"
            raise InvalidConfig(msg)
        if self.retries < 0:
            msg = f"retries must be >= 0, got {self.retries}"
            raise InvalidConfig(msg)
        if self.resume and self.checkpoint_dir is None:
            msg = "resume needs a checkpoint_dir (--checkpoint-dir) holding the finished chunks"
            raise InvalidConfig(msg)
        if self.scheduler and self.recipe is not None:
            msg = "give either a scheduler address or a cluster recipe, not both"
            raise InvalidConfig(msg)
        if isinstance(self.recipe, str | Path):
            from zcalib.cluster import load_recipe

            load_recipe(self.recipe)  # a bad recipe fails at set-up, before any file is read


def load_weight(name: str, path: str | Path, correction: str | None = None) -> WeightSpec:
    """Read a correctionlib payload used as an MC weight (e.g. pile-up).

    Raises:
        InvalidConfig: the file is missing, not a correction set, lacks the correction, or
            the correction's inputs do not match the weight (checked by name, see
            :func:`zcalib.corrections.apply.bind_weight`).
    """
    import correctionlib

    p = Path(path)
    if not p.is_file():
        msg = f"{p}: MC weight payload '{name}' not found"
        raise InvalidConfig(msg)
    text = p.read_text()
    try:
        cset = correctionlib.CorrectionSet.from_string(text)
    except Exception as err:  # noqa: BLE001
        msg = f"{p}: not a valid correctionlib JSON ({err.__class__.__name__}: {err})"
        raise InvalidConfig(msg) from None
    corr = correction or name
    if corr not in list(cset.keys()):
        msg = f"{p}: no correction '{corr}' (available: {', '.join(cset.keys())})"
        raise InvalidConfig(msg)
    from zcalib.corrections.apply import bind_weight

    return bind_weight(WeightSpec(name=name, payload=text, correction=corr, source=str(p)))


def checked_inputs(
    cfg: DatasetConfig,
    *,
    skip_bad_files: bool,
    weights: tuple[WeightSpec, ...] = (),
    corrections: tuple[CorrectionStep, ...] = (),
    columns: tuple[str, ...] = (),
) -> tuple[Any, dict[str, dict[str, str]]]:
    """Pre-flight every input file; fail (or, with ``skip_bad_files``, warn) on bad ones.

    Args:
        cfg: dataset description.
        columns: per-lepton columns the category scheme cuts on (checked in every file).
        skip_bad_files: drop bad files (with a warning) instead of failing.
        weights: MC weights (their branch inputs must exist in every MC file).
        corrections: correction steps; a step keyed on ``run``/``lumi`` needs that branch in
            every file it applies to (data for scale steps, MC for smear steps).

    Returns:
        The pre-flight result and the optional branches present per dataset.

    Raises:
        InputError: bad files without ``skip_bad_files``, no readable file at all, an MC
            dataset lacking a branch that an MC weight needs, or a file lacking the
            luminosity-block (run) branch a correction step is keyed on.
    """
    pre = preflight(cfg, columns=columns)
    if pre.bad and not skip_bad_files:
        raise InputError(bad_files_message(pre.bad))
    for b in pre.bad:
        log.warning("skipping bad input file (skip_bad_files): %s", b.message)
    if not pre.files:
        msg = f"no readable input files: all {len(pre.bad)} failed the checks"
        raise InputError(msg)
    available = {info.dataset: dict(info.optional) for info in pre.files}
    for ds in cfg.datasets:
        if ds.kind != "mc" or ds.name not in available:
            continue
        first = next(i.path for i in pre.files if i.dataset == ds.name)
        for spec in weights:
            for var in spec.branch_inputs:
                if var not in available[ds.name]:
                    msg = (
                        f"dataset '{ds.name}': MC weight '{spec.name}' ({spec.source}) "
                        f"needs the '{var}' branch, which {first} lacks"
                    )
                    raise InputError(msg)
    kinds = cfg.kinds()
    for info in pre.files if corrections else ():
        missing = missing_event_input(
            corrections, kinds[info.dataset], cfg.format, dict(info.optional), cfg.column_map
        )
        if missing:
            msg = f"{info.path} (dataset '{info.dataset}'): {missing}"
            raise InputError(msg)
    return pre, available


@dataclass(frozen=True)
class EventLoop:
    """One event loop over a dataset description: the value every pass is run from.

    Histograms (:func:`build_histograms`), the chain's processors
    (:func:`zcalib.chain._events.run_loop`), skims (:func:`zcalib.skim.skim`) and validation
    plots (:func:`zcalib.validation.plots.fill_validation_histograms`) all describe their
    pass as an ``EventLoop`` and call :meth:`run` with their processor class.

    Attributes:
        cfg: the dataset description (files, format, data/MC).
        options: executor, chunking, fault tolerance, checkpoints, metrics.
        selection: pair selection.
        binning: fine mass binning.
        weights: MC weights (correctionlib) with their up/down variations.
        corrections: prior data scale steps and MC smear steps.
        smear_seed: seed of the counter-based MC smearing random numbers.
    """

    cfg: DatasetConfig
    options: RunOptions = field(default_factory=RunOptions)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    binning: MassBinning = field(default_factory=MassBinning)
    weights: tuple[WeightSpec, ...] = ()
    corrections: tuple[CorrectionStep, ...] = ()
    smear_seed: int = 0

    def replace(self, **changes: Any) -> EventLoop:
        """A copy with some fields changed (``loop.replace(corrections=...)``)."""
        return dataclasses.replace(self, **changes)

    def with_corrections(self, corrections: tuple[CorrectionStep, ...]) -> EventLoop:
        """A copy with other prior corrections."""
        return self.replace(corrections=corrections)

    def only(self, kind: str) -> DatasetConfig:
        """The dataset description restricted to datasets of one kind (``data``/``mc``)."""
        datasets = tuple(d for d in self.cfg.datasets if d.kind == kind)
        if not datasets:
            msg = f"the dataset description has no {kind} dataset; this step needs one"
            raise InvalidConfig(msg)
        return self.cfg.model_copy(update={"datasets": datasets})

    def check(self) -> None:
        """Set-up checks that need no file: run options, ID level the format can express.

        Raises:
            InvalidConfig: naming the option and what is allowed.
        """
        self.options.check()
        form = get_format(self.cfg.format)
        if self.selection.id_level not in form.id_levels:
            msg = (
                f"id_level '{self.selection.id_level}' is not available in {form.id_field}; "
                f"allowed: {', '.join(form.id_levels)}"
            )
            raise InvalidConfig(msg)

    def run(
        self,
        proc_cls: type[Any],
        *,
        scheme: CategoryScheme | None = None,
        skip_bad_files: bool | None = None,
        checkpoint: bool = False,
        prepare: Any = None,
        **extra: Any,
    ) -> LoopRun:
        """Pre-flight every input, build the processor and run it (the one run entry).

        Args:
            proc_cls: a :class:`~zcalib.processors.zee.ZeeProcessor` (sub)class.
            scheme: the category scheme (``None``: the processor does not categorise).
            skip_bad_files: override ``options.skip_bad_files`` for the pre-flight.
            checkpoint: store/reuse per-chunk outputs in ``options.checkpoint_dir``.
            prepare: called with the pre-flight's good files before the processor runs
                (extra set-up checks of a pass, output folders).
            **extra: processor-specific fields.

        Returns:
            The pre-flight result, the processor, its run and the timings.

        Raises:
            InputError: files fail the set-up checks, or cannot be read.
            InvalidConfig: bad options.
        """
        t_start = time.perf_counter()
        self.check()
        cfg, opts = self.cfg, self.options
        skip = opts.skip_bad_files if skip_bad_files is None else skip_bad_files
        pre, available = checked_inputs(
            cfg,
            skip_bad_files=skip,
            weights=self.weights,
            corrections=self.corrections,
            columns=scheme.columns if scheme is not None else (),
        )
        if prepare is not None:
            prepare(pre.files)
        t_checks = time.perf_counter() - t_start
        proc = proc_cls(
            fmt=cfg.format,
            categories=scheme.to_yaml_dict() if scheme is not None else {},
            kinds=cfg.kinds(),
            available=available,
            selection=self.selection,
            binning=self.binning,
            column_map=cfg.column_map,
            weights=self.weights,
            corrections=self.corrections,
            smear_seed=self.smear_seed,
            **extra,
        )
        checkpointer = None
        if checkpoint and opts.checkpoint_dir is not None:
            checkpointer = ChunkCheckpointer(
                opts.checkpoint_dir, processor_hash(proc), self.binning, resume=opts.resume
            )
        t1 = time.perf_counter()
        run = run_processor(
            _fileset(cfg, pre.files),
            proc,
            fmt=cfg.format,
            schema=get_format(cfg.format).schema(),
            options=opts,
            checkpointer=checkpointer,
        )
        return LoopRun(
            pre=pre,
            available=available,
            proc=proc,
            run=run,
            t_start=t_start,
            t_checks=t_checks,
            t_run=time.perf_counter() - t1,
        )


@dataclass
class LoopRun:
    """What :meth:`EventLoop.run` returns.

    Attributes:
        pre: the pre-flight result (good and bad files).
        available: optional branches present per dataset.
        proc: the processor that ran.
        run: the processor run (accumulated output, metrics, chunks).
        t_start: ``time.perf_counter()`` when the loop started.
        t_checks: wall time of the set-up checks [s].
        t_run: wall time of the event loop [s].
    """

    pre: Any
    available: dict[str, dict[str, str]]
    proc: Any
    run: ProcessorRun
    t_start: float
    t_checks: float
    t_run: float

    def raise_errors(self, handled: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Raise the processor's bad-content errors (first one, and how many more)."""
        errors = sorted(set(self.run.out.get("errors", ())) - set(handled))
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise InputError(errors[0] + more)


def build_histograms(
    cfg: DatasetConfig,
    scheme: CategoryScheme,
    *,
    options: RunOptions | None = None,
    selection: SelectionConfig | None = None,
    binning: MassBinning | None = None,
    weights: tuple[WeightSpec, ...] = (),
    corrections: tuple[CorrectionStep, ...] = (),
    smear_seed: int = 0,
) -> HistogramSet:
    """Fill the pair-mass histograms of every dataset in ``cfg``.

    Args:
        cfg: dataset description (files, format, data/MC).
        scheme: the category scheme leptons are assigned to.
        options: executor, chunking, fault tolerance, checkpoints, metrics.
        selection: pair selection (defaults: Et > 25/20 GeV, medium ID, |η_SC| < 2.5).
        binning: fine mass binning of the histograms.
        weights: MC weights evaluated with correctionlib (nominal, up, down in one pass).
        corrections: prior scale (data) and smear (MC) steps; their variations
            (``scale_up/down``, ``smear_up/down``, ``uncorrected``) are filled in the same pass.
        smear_seed: seed of the counter-based random numbers used for MC smearing.

    Returns:
        The filled :class:`HistogramSet` (histogram, kinds, cutflow, provenance metadata,
        ``metadata["skipped_files"]`` and the run metrics in ``metadata["run"]``).

    Raises:
        InputError: files fail the set-up checks (all are listed) or hold bad values
            (NaN/inf); unreadable chunks unless ``skip_bad_files``; a file lacking the
            luminosity-block (or run) branch a correction step is keyed on.
        InvalidConfig: bad options (unknown executor, ID level the format cannot express,
            a selection looser than the one a Parquet skim was made with).
    """
    opts = options or RunOptions()
    sel = selection or SelectionConfig()
    mb = binning or MassBinning()
    loop = EventLoop(
        cfg,
        options=opts,
        selection=sel,
        binning=mb,
        weights=weights,
        corrections=corrections,
        smear_seed=smear_seed,
    )
    loop.check()
    _check_scheme_inputs(cfg, scheme)

    def check_skims(infos: list[FileInfo]) -> None:
        if cfg.format == "parquet":
            _check_skims(infos, cfg, sel, mb, corrections)

    done = loop.run(ZeeProcessor, scheme=scheme, checkpoint=True, prepare=check_skims)
    pre, run, t_start, t_checks, t_run = done.pre, done.run, done.t_start, done.t_checks, done.t_run
    infos = pre.files
    out = run.out

    skipped = [b.record() for b in pre.bad]
    lost_events = 0
    errors = set(out["errors"])
    if opts.skip_bad_files:
        runtime, errors = _runtime_losses(run, infos, errors)
        skipped += runtime
        lost_events = sum(int(r["entries_lost"] or 0) for r in runtime)
    if errors:
        ordered = sorted(errors)
        more = f" (and {len(ordered) - 1} more)" if len(ordered) > 1 else ""
        raise InputError(ordered[0] + more)
    if skipped:
        lost = sum(int(r["entries_lost"] or 0) for r in skipped)
        unknown = sum(r["entries_lost"] is None for r in skipped)
        log.warning(
            "skipped %d bad input file(s), %d events lost%s: %s",
            len(skipped),
            lost,
            f" (+ {unknown} file(s) with unknown entries)" if unknown else "",
            "; ".join(f"{r['path']} ({r['reason']})" for r in skipped),
        )

    n_events = int((run.metrics or {}).get("entries", 0)) - lost_events
    sumw = dict(out["sumw"])
    if cfg.format == "parquet":
        sumw = _skim_sumw(infos, sumw, skipped)
    metrics = run.metrics_record(
        events=n_events,
        chunksize=opts.chunksize,
        wall_time_s=time.perf_counter() - t_start,
        wall_time_checks_s=t_checks,
        wall_time_fill_s=t_run,
        skipped_files=skipped,
    )
    metadata: dict[str, Any] = {
        "inputs": [
            {
                "path": i.path,
                "dataset": i.dataset,
                "tree": i.treename,
                "entries": i.entries,
                "fingerprint": file_fingerprint(i.path),
            }
            for i in infos
        ],
        "skipped_files": skipped,
        "format": cfg.format,
        "selection": sel.model_dump(),
        "binning": {"n_bins": mb.n_bins, "lo": mb.lo, "hi": mb.hi},
        "weights": [
            {"name": w.name, "source": w.source, "correction": w.correction} for w in weights
        ],
        "corrections": [{"name": c.name, "kind": c.kind, "source": c.source} for c in corrections],
        "smear_seed": smear_seed,
        "categories_source": scheme.source,
        "sumw": sumw,
        "cell_et": {ds: np.asarray(v).tolist() for ds, v in out.get("cell_et", {}).items()},
        "run": {
            "executor": run.executor,
            "workers": run.n_workers if run.n_workers is not None else opts.workers,
            "chunksize": opts.chunksize,
            "events": n_events,
            "wall_time_checks_s": t_checks,
            "wall_time_fill_s": t_run,
            "events_per_s": n_events / t_run if t_run > 0 else None,
            "dashboard": run.dashboard,
            "chunks": metrics["chunks"],
            "chunks_from_checkpoint": metrics["chunks_from_checkpoint"],
            "coffea_metrics": {
                k: v for k, v in (run.metrics or {}).items() if isinstance(v, int | float)
            },
            "metrics": metrics,
            "metrics_path": str(opts.metrics_path) if opts.metrics_path is not None else None,
        },
    }
    if cfg.format == "parquet":
        metadata["skims"] = [
            {"path": i.path, "source": (i.skim or {}).get("source")} for i in infos
        ]
    if opts.metrics_path is not None:
        write_metrics(opts.metrics_path, metrics)
    log.info(
        "filled histograms from %d events in %.2f s (%.0f events/s)",
        n_events,
        t_run,
        n_events / max(t_run, 1e-9),
    )
    return HistogramSet(
        counts=out["counts"],
        categories=scheme.to_yaml_dict(),
        kinds=cfg.kinds(),
        cutflow=merge_cutflows(out["cutflow"]),
        metadata=metadata,
    )


def default_checkpoint_dir(out: str | Path) -> Path:
    """``<out>.checkpoints`` next to an output (``h.npz`` → ``h.checkpoints/``)."""
    p = Path(out)
    return p.with_name(f"{p.stem if p.suffix else p.name}.checkpoints")


def _fileset(cfg: DatasetConfig, infos: list[FileInfo]) -> dict[str, Any]:
    """coffea fileset of the files that passed the checks (datasets without any are left out)."""
    good: dict[str, list[str]] = {}
    for i in infos:
        good.setdefault(i.dataset, []).append(i.path)
    fileset: dict[str, Any] = {}
    for ds in cfg.datasets:
        if ds.name not in good:
            log.warning(
                "dataset '%s': no readable file left; it is missing from the histograms", ds.name
            )
            continue
        fileset[ds.name] = {
            "files": {f: cfg.tree_of(ds) for f in good[ds.name]},
            "metadata": {"kind": ds.kind, **ds.metadata},
        }
    return fileset


def _check_scheme_inputs(cfg: DatasetConfig, scheme: CategoryScheme) -> None:
    cats = (*scheme.scale, *scheme.smear)
    inf = (float("-inf"), float("inf"))
    if cfg.format == "flat" and cfg.column_map is not None:
        cm = cfg.column_map
        if cm.r9 is None and any(c.r9 != inf for c in cats):
            msg = f"{scheme.source}: categories cut on r9 but the column_map has no 'r9'"
            raise InvalidConfig(msg)
        if cm.gain is None and any(c.gain is not None for c in cats):
            msg = f"{scheme.source}: categories cut on gain but the column_map has no 'gain'"
            raise InvalidConfig(msg)
        if cm.run is None and scheme.uses_run:
            msg = f"{scheme.source}: categories cut on run but the column_map has no 'run'"
            raise InvalidConfig(msg)


def _check_skims(
    infos: list[FileInfo],
    cfg: DatasetConfig,
    sel: SelectionConfig,
    mb: MassBinning,
    corrections: tuple[CorrectionStep, ...],
) -> None:
    """A selection over a Parquet skim may only be tighter than the skim's own."""
    kinds = cfg.kinds()
    for info in infos:
        prov = info.skim
        if prov is None:
            continue
        s = prov.get("selection", {})
        source = prov.get("source", {})
        problems: list[tuple[str, Any, Any]] = []
        for name, looser in (
            ("min_et_lead", lambda a, b: a < b),
            ("min_et_sublead", lambda a, b: a < b),
            ("max_abs_eta", lambda a, b: a > b),
            ("exclude_crack", lambda a, b: b and not a),
            ("opposite_charge", lambda a, b: b and not a),
        ):
            if name in s and looser(getattr(sel, name), s[name]):
                problems.append((name, s[name], getattr(sel, name)))
        if "id_level" in s and _ID_RANK[sel.id_level] < _ID_RANK.get(s["id_level"], 0):
            problems.append(("id_level", s["id_level"], sel.id_level))
        window = prov.get("mass_window")
        if window and (mb.lo < window[0] or mb.hi > window[1]):
            problems.append(("mass window", tuple(window), (mb.lo, mb.hi)))
        if problems:
            name, made, given = problems[0]
            msg = (
                f"{info.path}: skim made with {name}={made!r}; a selection over a skim can only "
                f"be tighter (got {name}={given!r})"
            )
            raise InvalidConfig(msg)
        if source.get("format") == "ecalelf" and sel.id_level == "loose":
            msg = (
                f"{info.path}: skim of ECALELF input: id_level 'loose' is not available; "
                "allowed: none, medium, tight"
            )
            raise InvalidConfig(msg)
        applied = {(c.get("name"), c.get("kind")) for c in prov.get("corrections", [])}
        twice = [c for c in corrections if (c.name, c.kind) in applied]
        if twice:
            msg = (
                f"{info.path}: skim made with correction '{twice[0].name}' ({twice[0].kind}) "
                "already applied; filling would apply it a second time: leave it out of the "
                "corrections"
            )
            raise InvalidConfig(msg)
        kind = source.get("kind")
        if kind is not None and kind != kinds[info.dataset]:
            msg = (
                f"{info.path}: skim of {kind} events listed in dataset '{info.dataset}' of "
                f"kind {kinds[info.dataset]}"
            )
            raise InvalidConfig(msg)
        if (
            any(c.kind == "smear" for c in corrections)
            and kinds[info.dataset] == "mc"
            and not prov.get("has_event_ids", True)
        ):
            log.warning(
                "%s: skim without event ids: MC smearing uses random numbers keyed on "
                "skim rows, not those of the original files",
                info.path,
            )


def _skim_sumw(
    infos: list[FileInfo], sumw: dict[str, float], skipped: list[dict[str, Any]]
) -> dict[str, float]:
    """Σw before selection from the skims' provenance (what the original files held)."""
    out = dict(sumw)
    lost = {r["dataset"] for r in skipped}
    by_ds: dict[str, list[FileInfo]] = {}
    for i in infos:
        by_ds.setdefault(i.dataset, []).append(i)
    for ds, files in by_ds.items():
        if ds in lost or any(i.skim is None or "sumw" not in i.skim for i in files):
            continue
        out[ds] = float(sum(float(i.skim["sumw"]) for i in files if i.skim is not None))
    return out


def _runtime_losses(
    run: ProcessorRun, infos: list[FileInfo], errors: set[str]
) -> tuple[list[dict[str, Any]], set[str]]:
    """Skipped-file records for chunks that failed during the run, and the errors left.

    A chunk is lost when the processor reported it unreadable (``failed``) or when coffea
    skipped it (missing from the processed set); a file coffea could not open at all has no
    chunks.
    """
    failed = run.out.get("failed", set())
    lost: dict[str, dict[str, Any]] = {}

    def add(path: str, dataset: str, n: int | None, reason: str) -> None:
        rec = lost.setdefault(
            path, {"path": path, "dataset": dataset, "reason": [], "entries_lost": 0}
        )
        if reason not in rec["reason"]:
            rec["reason"].append(reason)
        if n is None or rec["entries_lost"] is None:
            rec["entries_lost"] = None
        else:
            rec["entries_lost"] += n

    handled = set()
    for dataset, filename, start, stop, reason in sorted(failed):
        add(filename, dataset, stop - start, f"entries {start}-{stop}: {reason}")
        handled.add(f"{filename} (entries {start}-{stop}): {reason}")

    def cause(path: str) -> str:
        said = [m.split("The last exception was: ", 1)[-1] for m in run.skip_messages if path in m]
        return f" ({said[0]})" if said else " (see the worker logs)"

    for item in sorted(set(run.chunks) - run.processed, key=lambda c: (c.filename, c.entrystart)):
        add(
            item.filename,
            item.dataset,
            len(item),
            f"entries {item.entrystart}-{item.entrystop}: chunk could not be read after "
            f"retries{cause(item.filename)}",
        )
    chunked = {c.filename for c in run.chunks}
    for info in infos:
        if info.path not in chunked and run.maxchunks is None:
            add(
                info.path,
                info.dataset,
                info.entries,
                "file could not be opened during the run, after passing the set-up checks"
                + cause(info.path),
            )
    records = []
    for rec in lost.values():
        rec["reason"] = "; ".join(rec["reason"])
        log.warning(
            "skipping unreadable input (skip_bad_files): %s: %s", rec["path"], rec["reason"]
        )
        records.append(rec)
    return records, errors - handled


# ------------------------------------------------------------------------ execution
@dataclass
class ProcessorRun:
    """What :func:`run_processor` returns.

    Attributes:
        out: the accumulated processor output (per-worker statistics removed).
        metrics: coffea's metrics (``entries``, ``processtime``, ``bytesread``, ``columns``,
            ``chunks``) plus ``checkpointed`` (chunks restored from checkpoints).
        chunks: every work item that was scheduled.
        processed: the work items that returned an output.
        workers: per-worker statistics (see :class:`zcalib.metrics.TrackedProcessor`).
        executor: executor name.
        n_workers: workers available (Dask), else the local worker count.
        dashboard: the Dask dashboard link, if any.
        maxchunks: the ``maxchunks`` limit used.
        skip_messages: coffea's "Skipping bad file" messages (in-process executors).
    """

    out: dict[str, Any]
    metrics: dict[str, Any]
    chunks: list[Any]
    processed: set[Any]
    workers: dict[str, dict[str, Any]]
    executor: str
    n_workers: int | None = None
    dashboard: str | None = None
    maxchunks: int | None = None
    skip_messages: list[str] = field(default_factory=list)

    def metrics_record(
        self,
        *,
        events: int,
        chunksize: int,
        wall_time_s: float,
        wall_time_checks_s: float,
        wall_time_fill_s: float,
        skipped_files: list[dict[str, Any]],
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The metrics record of this run (:func:`zcalib.metrics.build_metrics`)."""
        return build_metrics(
            coffea_metrics=self.metrics,
            workers=self.workers,
            events=events,
            wall_time_s=wall_time_s,
            wall_time_checks_s=wall_time_checks_s,
            wall_time_fill_s=wall_time_fill_s,
            executor=self.executor,
            chunksize=chunksize,
            n_workers=self.n_workers,
            dashboard=self.dashboard,
            skipped_files=skipped_files,
            extra=extra,
        )


def run_processor(
    fileset: dict[str, Any],
    proc: processor.ProcessorABC,
    *,
    fmt: str,
    schema: Any,
    options: RunOptions,
    checkpointer: CheckpointerABC | None = None,
) -> ProcessorRun:
    """Run a processor with coffea's ``Runner`` on the executor ``options`` asks for.

    Args:
        fileset: coffea fileset ``{dataset: {"files": {path: tree}, "metadata": {...}}}``.
        proc: the processor (its output must be a dict).
        fmt: input format (``parquet`` uses coffea's Parquet reader, anything else ROOT).
        schema: the NanoEvents schema class.
        options: executor, workers, chunking, retries, skip_bad_files.
        checkpointer: a coffea checkpointer (per-chunk outputs).

    Returns:
        The accumulated output, metrics, scheduled and processed chunks, worker statistics.

    Raises:
        InputError: a file could not be read (coffea's one-line cause).
    """
    opts = options
    reader = get_format(fmt).reader
    tracked = TrackedProcessor(ParquetChunkReader(proc) if reader == "parquet" else proc)

    def make_runner(executor: Any) -> processor.Runner:
        return processor.Runner(
            executor=executor,
            pre_executor=processor.IterativeExecutor(status=opts.progress, desc="Preprocessing"),
            schema=schema,
            chunksize=opts.chunksize,
            maxchunks=opts.maxchunks,
            savemetrics=True,
            skipbadfiles=_skippable() if opts.skip_bad_files else False,
            format=reader,
            checkpointer=checkpointer,
        )

    if opts.uses_dask:
        from zcalib.cluster import dask_client

        if opts.client is not None:
            return _run_dask(make_runner, fileset, tracked, opts, opts.client)
        with dask_client(
            recipe=opts.recipe, scheduler=opts.scheduler, workers=opts.workers
        ) as client:
            return _run_dask(make_runner, fileset, tracked, opts, client)
    if opts.executor == "futures":
        ex: Any = processor.FuturesExecutor(
            workers=opts.workers, status=opts.progress, retries=opts.retries
        )
    else:
        ex = processor.IterativeExecutor(status=opts.progress, retries=opts.retries)
    run = _call(make_runner(ex), fileset, tracked, opts)
    run.executor = opts.executor
    run.n_workers = opts.workers if opts.executor == "futures" else 1
    return run


def _run_dask(
    make_runner: Any, fileset: dict[str, Any], proc: Any, opts: RunOptions, client: Any
) -> ProcessorRun:
    ex = processor.DaskExecutor(client=client, status=opts.progress, retries=opts.retries)
    n_start = len(client.scheduler_info()["workers"])
    run = _call(make_runner(ex), fileset, proc, opts)
    run.executor = "dask"
    run.n_workers = max(n_start, len(client.scheduler_info()["workers"]))
    run.dashboard = client.dashboard_link
    return run


def _call(
    run: processor.Runner, fileset: dict[str, Any], proc: Any, opts: RunOptions
) -> ProcessorRun:
    skip_messages: list[str] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with _coffea_bars(opts.progress):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    chunks = list(run.preprocess(fileset, treename=None))
                    if not chunks:
                        msg = "no chunks to process: every input file failed to open"
                        raise InputError(msg)
                    wrapped = run.run(chunks, proc, **_run_options(run))
            finally:
                # sorted once recording has stopped: re-emitting a warning while
                # catch_warnings(record=True) is active appends it to the list being read
                skip_messages = _sort_warnings(caught)
    except InputError:
        raise
    except Exception as err:
        found = _find_message(err)
        if found is not None:
            raise InputError(found) from None
        if opts.skip_bad_files and "No chunks returned results" in str(err):
            msg = "no chunk could be read: every input file is unreadable (skip_bad_files)"
            raise InputError(msg) from None
        raise
    out = wrapped["out"]
    workers = out.pop(WORKERS_KEY, {}) if isinstance(out, dict) else {}
    metrics = dict(wrapped.get("metrics") or {})
    read_bytes = out.pop(READ_BYTES_KEY, None) if isinstance(out, dict) else None
    if read_bytes is not None:
        metrics["bytesread"] = metrics.get("bytesread", 0) + read_bytes
    return ProcessorRun(
        out=out,
        metrics=metrics,
        chunks=chunks,
        processed=set(wrapped.get("processed") or ()),
        workers=workers,
        executor=opts.executor,
        maxchunks=opts.maxchunks,
        skip_messages=skip_messages,
    )


def _run_options(run: processor.Runner) -> dict[str, Any]:
    """``Runner.run`` options: ROOT files opened with the shared tree cache
    (:mod:`zcalib.io._trees`: each file's tree header read once per process)."""
    from zcalib.io._trees import uproot_options

    return {"uproot_options": uproot_options()} if run.format == "root" else {}


@contextlib.contextmanager
def _coffea_bars(show: bool) -> Iterator[None]:
    """Silence coffea's progress bars unless ``show``.

    coffea's executors draw their rich bars even with ``status=False`` (the ``disable``
    flag they pass to ``Progress.add_task`` is ignored), which floods batch logs; all bars
    go through ``coffea.util.coffea_console``, so it is muted for the run.
    """
    from coffea.util import coffea_console as console

    before = console.quiet
    console.quiet = before or not show
    try:
        yield
    finally:
        console.quiet = before


def _sort_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """coffea's "Skipping bad file" warnings become log lines (and skip reasons); other
    warnings are re-emitted unchanged."""
    skipped = []
    for w in caught:
        text = str(w.message)
        if text.startswith("Skipping bad file"):
            log.warning("coffea: %s", " ".join(text.split()))
            skipped.append(" ".join(text.split()))
        elif text.startswith("Performed attempt"):
            log.info("coffea: %s", text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return skipped


def _find_message(err: BaseException) -> str | None:
    """The one-line cause of a failure inside coffea (file read errors), if recognisable."""
    text = str(err)
    if (
        "Failed processing file" in text
        or "Failed creating nanoevents" in text
        or "Failed to open file" in text
    ):
        return text.splitlines()[0][:500]
    return None


# ------------------------------------------------------------------------ checkpoints
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted(_jsonable(v) for v in obj)
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return repr(obj)


def processor_hash(proc: Any) -> str:
    """A hash of everything that determines a processor's output (its dataclass fields).

    Two processors with the same hash fill the same histograms from the same chunk, so a
    stored chunk may be reused; any change (selection, categories, binning, weights,
    corrections, seed, zcalib version) gives a new hash.
    """
    from zcalib.metrics import zcalib_version

    state = {
        "processor": type(proc).__name__,
        "fields": _jsonable(proc),
        "zcalib": zcalib_version(),
        "checkpoint_format": _CHECKPOINT_VERSION,
    }
    text = json.dumps(state, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_CHECKPOINT_VERSION = 3  # 3: per-cell Et sums (cell_et)


class ChunkCheckpointer(CheckpointerABC):  # type: ignore[misc]
    """Per-chunk outputs stored as ``.npz`` files (no pickle), for resumable runs.

    A chunk's key is its dataset, file (path, ROOT UUID and content fingerprint), tree,
    entry range and the processor hash, so a stored chunk is only reused for exactly the same
    work. Files are written atomically; unreadable ones are recomputed. Chunks that reported
    errors are never stored.

    Args:
        directory: where the chunk files live (must be shared with the workers).
        config_hash: :func:`processor_hash` of the processor.
        binning: the mass binning of the histograms.
        resume: load existing chunk files (otherwise they are only written).
    """

    def __init__(
        self, directory: str | Path, config_hash: str, binning: MassBinning, *, resume: bool
    ) -> None:
        self.directory = str(Path(directory).resolve())
        self.config_hash = config_hash
        self.binning = binning
        self.resume = resume
        self._fingerprints: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fingerprints"] = {}
        return state

    def path(self, metadata: Mapping[str, Any]) -> Path:
        """The chunk file of a work item (from coffea's per-chunk metadata)."""
        filename = str(metadata["filename"])
        fp = self._fingerprints.get(filename)
        if fp is None:
            fp = self._fingerprints[filename] = file_fingerprint(filename)
        key = json.dumps(
            [
                self.config_hash,
                metadata["dataset"],
                filename,
                metadata.get("fileuuid", ""),
                fp,
                metadata["treename"],
            ]
        )
        digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
        name = (
            f"{Path(filename).stem}-{digest}-{metadata['entrystart']}-{metadata['entrystop']}.npz"
        )
        return Path(self.directory) / self.config_hash[:16] / name

    def load(self, metadata: Any, processor_instance: Any) -> Any:
        """The stored output of this chunk, or ``None`` to compute it."""
        del processor_instance
        if not self.resume:
            return None
        p = self.path(metadata)
        if not p.is_file():
            return None
        try:
            # the handle is ours: np.load leaks it when the file is not a readable zip
            with p.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
                header = json.loads(npz["header"].tobytes().decode())
                arrays = {k: npz[k] for k in npz.files if k != "header"}
            return self._restore(header, arrays, metadata)
        except Exception as err:  # noqa: BLE001  (a damaged chunk file is recomputed)
            log.warning("%s: unreadable checkpoint, recomputing the chunk (%s)", p, err)
            return None

    def save(self, output: Any, metadata: Any, processor_instance: Any) -> None:
        """Store a finished chunk (not if it reported errors)."""
        del processor_instance
        out = output.get("out", {}) if isinstance(output, Mapping) else {}
        if not isinstance(out, Mapping) or "counts" not in out:
            return
        if out.get("errors") or out.get("failed"):
            return
        counts = out.get("counts")
        if not isinstance(counts, PairCounts):
            return
        m = output.get("metrics", {})
        header = {
            "format": "zcalib-chunk",
            "format_version": _CHECKPOINT_VERSION,
            "config_hash": self.config_hash,
            "blocks": [[d, v] for d, v in counts.blocks],
            "cutflow": out.get("cutflow", {}),
            "sumw": out.get("sumw", {}),
            "cell_et": {ds: np.asarray(v).tolist() for ds, v in out.get("cell_et", {}).items()},
            "entries": int(
                m.get("entries", int(metadata["entrystop"]) - int(metadata["entrystart"]))
            ),
            "columns": sorted(str(c) for c in m.get("columns", ())),
        }
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(header).encode(), np.uint8),
        }
        for i, block in enumerate(counts.blocks.values()):
            arrays[f"keys_{i}"] = block.keys
            arrays[f"sumw_{i}"] = block.sumw
            arrays[f"sumw2_{i}"] = block.sumw2
        p = self.path(metadata)
        with atomic_open(p, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    def _restore(
        self, header: dict[str, Any], arrays: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        from zcalib.histograms import _Block

        if header.get("format") != "zcalib-chunk" or header.get("config_hash") != self.config_hash:
            msg = "not a chunk file of this configuration"
            raise ValueError(msg)
        counts = PairCounts(self.binning)
        for i, (d, v) in enumerate(header["blocks"]):
            keys = np.asarray(arrays[f"keys_{i}"], dtype=np.int64)
            sumw = np.asarray(arrays[f"sumw_{i}"], dtype=np.float64)
            sumw2 = np.asarray(arrays[f"sumw2_{i}"], dtype=np.float64)
            if not keys.shape == sumw.shape == sumw2.shape:
                msg = f"block {i} has inconsistent array shapes"
                raise ValueError(msg)
            counts.blocks[(str(d), str(v))] = _Block(keys, sumw, sumw2)
        fileuuid = str(metadata.get("fileuuid") or "")
        item = WorkItem(
            metadata["dataset"],
            metadata["filename"],
            metadata["treename"],
            int(metadata["entrystart"]),
            int(metadata["entrystop"]),
            uuid.UUID(fileuuid).bytes if fileuuid else b"",
        )
        return {
            "out": {
                "counts": counts,
                "cutflow": header["cutflow"],
                "sumw": header["sumw"],
                "cell_et": {ds: np.asarray(v) for ds, v in header.get("cell_et", {}).items()},
                "errors": set(),
                "failed": set(),
                WORKERS_KEY: {},
            },
            "metrics": {
                "entries": header["entries"],
                "processtime": 0.0,
                "columns": set(header["columns"]),
                "checkpointed": 1,
            },
            "processed": {item},
        }
