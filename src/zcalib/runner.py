"""Run the dielectron processor over a dataset description and return a HistogramSet.

This is the event loop of a derivation step: set-up checks (every file, tree and branch) →
coffea ``Runner`` on the iterative, futures or Dask executor → accumulated histograms,
cutflow and metrics. Everything downstream works on the returned histograms only.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from coffea import processor
from coffea.nanoevents import BaseSchema

from zcalib.categories import CategoryScheme
from zcalib.config import DatasetConfig, SelectionConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import HistogramSet, MassBinning
from zcalib.io.formats import nanoaod_schema
from zcalib.io.preflight import check_inputs
from zcalib.processors.zee import CorrectionStep, WeightSpec, ZeeProcessor, merge_cutflows

__all__ = ["EXECUTORS", "RunOptions", "build_histograms", "file_fingerprint", "load_weight"]

log = logging.getLogger(__name__)

Executor = Literal["iterative", "futures", "dask"]
EXECUTORS: tuple[str, ...] = ("iterative", "futures", "dask")


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
    """

    executor: Executor = "dask"
    workers: int = 2
    chunksize: int = 100_000
    scheduler: str | None = None
    maxchunks: int | None = None
    progress: bool = True
    client: Any = field(default=None, compare=False)


def load_weight(name: str, path: str | Path, correction: str | None = None) -> WeightSpec:
    """Read a correctionlib payload used as an MC weight (e.g. pile-up).

    Raises:
        InvalidConfig: the file is missing, not a correction set, or lacks the correction.
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
    return WeightSpec(name=name, payload=text, correction=corr, source=str(p))


def file_fingerprint(path: str) -> str:
    """blake2b of the file's size and first and last MiB (fast, for provenance)."""
    if "://" in path:
        return "remote"
    p = Path(path)
    h = hashlib.blake2b(digest_size=16)
    size = p.stat().st_size
    h.update(str(size).encode())
    with p.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (1 << 20):
            fh.seek(max(size - (1 << 20), 1 << 20))
            h.update(fh.read(1 << 20))
    return h.hexdigest()


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
        options: executor and chunking.
        selection: pair selection (defaults: Et > 25/20 GeV, medium ID, |η_SC| < 2.5).
        binning: fine mass binning of the histograms.
        weights: MC weights evaluated with correctionlib (nominal, up, down in one pass).
        corrections: prior scale (data) and smear (MC) steps; their variations
            (``scale_up/down``, ``smear_up/down``, ``uncorrected``) are filled in the same pass.
        smear_seed: seed of the counter-based random numbers used for MC smearing.

    Returns:
        The filled :class:`HistogramSet` (histogram, kinds, cutflow, provenance metadata).

    Raises:
        InputError: a file fails the set-up checks or holds bad values (NaN/inf).
        InvalidConfig: bad options (unknown executor, ID level the format cannot express).
    """
    opts = options or RunOptions()
    sel = selection or SelectionConfig()
    mb = binning or MassBinning()
    if opts.executor not in EXECUTORS:
        msg = f"unknown executor {opts.executor!r}; allowed: {', '.join(EXECUTORS)}"
        raise InvalidConfig(msg)
    if cfg.format == "ecalelf" and sel.id_level == "loose":
        msg = "id_level 'loose' is not available in ECALELF eleID; allowed: none, medium, tight"
        raise InvalidConfig(msg)
    if opts.chunksize <= 0:
        msg = f"chunksize must be positive, got {opts.chunksize}"
        raise InvalidConfig(msg)
    _check_scheme_inputs(cfg, scheme)

    t0 = time.perf_counter()
    infos = check_inputs(cfg)
    available: dict[str, dict[str, str]] = {}
    for info in infos:
        available[info.dataset] = dict(info.optional)
    if weights:
        for ds in cfg.datasets:
            if ds.kind == "mc":
                for spec in weights:
                    if spec.variable not in available.get(ds.name, {}):
                        msg = (
                            f"dataset '{ds.name}': MC weight '{spec.name}' ({spec.source}) needs "
                            f"the '{spec.variable}' branch, which {ds.files[0]} lacks"
                        )
                        raise InputError(msg)
    t_checks = time.perf_counter() - t0

    proc = ZeeProcessor(
        fmt=cfg.format,
        categories=scheme.to_yaml_dict(),
        kinds=cfg.kinds(),
        available=available,
        selection=sel,
        binning=mb,
        column_map=cfg.column_map,
        weights=weights,
        corrections=corrections,
        smear_seed=smear_seed,
    )
    fileset = {
        ds.name: {
            "files": {f: cfg.tree_of(ds) for f in ds.files},
            "metadata": {"kind": ds.kind, **ds.metadata},
        }
        for ds in cfg.datasets
    }
    schema = nanoaod_schema() if cfg.format == "nanoaod" else BaseSchema
    t1 = time.perf_counter()
    out, metrics = _run(fileset, proc, schema, opts)
    t_run = time.perf_counter() - t1
    if out["errors"]:
        errors = sorted(out["errors"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)

    n_events = sum(i.entries for i in infos)
    metadata = {
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
        "format": cfg.format,
        "selection": sel.model_dump(),
        "binning": {"n_bins": mb.n_bins, "lo": mb.lo, "hi": mb.hi},
        "weights": [{"name": w.name, "source": w.source, "correction": w.correction}
                    for w in weights],
        "corrections": [{"name": c.name, "kind": c.kind, "source": c.source}
                        for c in corrections],
        "smear_seed": smear_seed,
        "categories_source": scheme.source,
        "sumw": out["sumw"],
        "run": {
            "executor": "dask" if opts.scheduler else opts.executor,
            "workers": opts.workers,
            "chunksize": opts.chunksize,
            "events": n_events,
            "wall_time_checks_s": t_checks,
            "wall_time_fill_s": t_run,
            "events_per_s": n_events / t_run if t_run > 0 else None,
            "coffea_metrics": {k: v for k, v in (metrics or {}).items()
                               if isinstance(v, int | float)},
        },
    }
    log.info("filled histograms from %d events in %.2f s (%.0f events/s)",
             n_events, t_run, n_events / max(t_run, 1e-9))
    return HistogramSet(
        hist=out["hist"],
        categories=scheme.to_yaml_dict(),
        kinds=cfg.kinds(),
        cutflow=merge_cutflows(out["cutflow"]),
        metadata=metadata,
    )


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


def _run(
    fileset: dict[str, Any], proc: ZeeProcessor, schema: Any, opts: RunOptions
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    def runner(executor: Any) -> processor.Runner:
        return processor.Runner(
            executor=executor,
            pre_executor=processor.IterativeExecutor(status=opts.progress, desc="Preprocessing"),
            schema=schema,
            chunksize=opts.chunksize,
            maxchunks=opts.maxchunks,
            savemetrics=True,
        )

    if opts.executor == "dask" or opts.scheduler:
        from zcalib.cluster import dask_client

        if opts.client is not None:
            ex = processor.DaskExecutor(client=opts.client, status=opts.progress)
            return _call(runner(ex), fileset, proc)
        with dask_client(scheduler=opts.scheduler, workers=opts.workers) as client:
            ex = processor.DaskExecutor(client=client, status=opts.progress)
            return _call(runner(ex), fileset, proc)
    if opts.executor == "futures":
        ex = processor.FuturesExecutor(workers=opts.workers, status=opts.progress)
    else:
        ex = processor.IterativeExecutor(status=opts.progress)
    return _call(runner(ex), fileset, proc)


def _call(
    run: processor.Runner, fileset: dict[str, Any], proc: ZeeProcessor
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        result = run(fileset, proc, treename=None)
    except Exception as err:
        msg = _find_message(err)
        if msg is not None:
            raise InputError(msg) from None
        raise
    if isinstance(result, tuple):
        out, metrics = result
    else:
        out, metrics = result, None
    return out, metrics


def _find_message(err: BaseException) -> str | None:
    """The one-line cause of a failure inside coffea (file read errors), if recognisable."""
    text = str(err)
    if "Failed processing file" in text or "Failed creating nanoevents" in text:
        return text.splitlines()[0][:500]
    return None
