"""The event loop of the chain's own processors (counts, run-bin masses, Z kinematics).

Same set-up checks as :func:`zcalib.runner.build_histograms` (every file, tree and branch
before any event is processed; MC weight branches), then the processor runs through
:func:`zcalib.runner.run_processor` on the requested executor. Also: reading only the
``run``/``lumi`` branches of the data (run-coverage checks before the event loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from coffea.nanoevents import BaseSchema
from numpy.typing import NDArray

from zcalib.categories import CategoryScheme
from zcalib.config import DatasetConfig, SelectionConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import MassBinning
from zcalib.io.formats import nanoaod_schema, optional_branches
from zcalib.processors.runs import pack_run_lumi
from zcalib.processors.zee import CorrectionStep, WeightSpec
from zcalib.runner import RunOptions, checked_inputs, run_processor

__all__ = ["ChainLoop", "data_run_keys", "eta_scheme", "run_loop"]

log = logging.getLogger(__name__)


class ChainLoop:
    """What every chain event loop shares: inputs, selection, binning, weights, corrections.

    Attributes:
        cfg: dataset description.
        options: executor options.
        selection: pair selection.
        binning: fine mass binning.
        weights: MC weights (nominal applied; pile-up, Z pT × |y|...).
        corrections: prior data scale steps and the MC smear step.
        smear_seed: seed of the MC smearing random numbers.
    """

    def __init__(
        self,
        cfg: DatasetConfig,
        *,
        options: RunOptions | None = None,
        selection: SelectionConfig | None = None,
        binning: MassBinning | None = None,
        weights: tuple[WeightSpec, ...] = (),
        corrections: tuple[CorrectionStep, ...] = (),
        smear_seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.options = options or RunOptions(executor="iterative", progress=False)
        self.selection = selection or SelectionConfig()
        self.binning = binning or MassBinning()
        self.weights = weights
        self.corrections = corrections
        self.smear_seed = smear_seed

    def with_corrections(self, corrections: tuple[CorrectionStep, ...]) -> ChainLoop:
        """A copy with other prior corrections."""
        return ChainLoop(
            self.cfg,
            options=self.options,
            selection=self.selection,
            binning=self.binning,
            weights=self.weights,
            corrections=corrections,
            smear_seed=self.smear_seed,
        )

    def only(self, kind: str) -> DatasetConfig:
        """The dataset description restricted to datasets of one kind (``data``/``mc``)."""
        datasets = tuple(d for d in self.cfg.datasets if d.kind == kind)
        if not datasets:
            msg = f"the dataset description has no {kind} dataset; this step needs one"
            raise InvalidConfig(msg)
        return self.cfg.model_copy(update={"datasets": datasets})


def eta_scheme(eta_bins: tuple[tuple[float, float], ...], source: str) -> CategoryScheme:
    """A scheme with one scale category per |η| bin (the pairs' ``categorised`` cut)."""
    from zcalib.categories import scheme_from_dict

    return scheme_from_dict({"scale": [{"eta": list(b)} for b in eta_bins]}, source=source)


def run_loop(
    loop: ChainLoop,
    cfg: DatasetConfig,
    proc_cls: type,
    scheme: CategoryScheme,
    **extra: Any,
) -> dict[str, Any]:
    """Run one of the chain processors over ``cfg`` and return its accumulated output.

    Args:
        loop: shared settings.
        cfg: the datasets to read (e.g. only the data).
        proc_cls: the processor class (a ``ZeeProcessor`` subclass).
        scheme: category scheme (its ``categorised`` cut applies).
        **extra: processor-specific fields.

    Raises:
        InputError: files fail the set-up checks, hold bad values, or cannot be read.
    """
    opts = loop.options
    opts.check()
    t0 = time.perf_counter()
    pre, available = checked_inputs(
        cfg, skip_bad_files=False, weights=loop.weights, corrections=loop.corrections
    )
    kinds = cfg.kinds()
    proc = proc_cls(
        fmt=cfg.format,
        categories=scheme.to_yaml_dict(),
        kinds=kinds,
        available=available,
        selection=loop.selection,
        binning=loop.binning,
        column_map=cfg.column_map,
        weights=loop.weights,
        corrections=loop.corrections,
        smear_seed=loop.smear_seed,
        **extra,
    )
    fileset: dict[str, Any] = {}
    for ds in cfg.datasets:
        files = [i.path for i in pre.files if i.dataset == ds.name]
        fileset[ds.name] = {
            "files": dict.fromkeys(files, cfg.tree_of(ds)),
            "metadata": {"kind": ds.kind},
        }
    schema = nanoaod_schema() if cfg.format == "nanoaod" else BaseSchema
    run = run_processor(fileset, proc, fmt=cfg.format, schema=schema, options=opts)
    errors = sorted(run.out.get("errors", ()))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)
    n = int((run.metrics or {}).get("entries", 0))
    log.info("%s: %d events in %.2f s", proc_cls.__name__, n, time.perf_counter() - t0)
    return run.out


def data_run_keys(cfg: DatasetConfig) -> dict[str, NDArray[np.int64]]:
    """Unique packed ``(run, lumi)`` keys of every data file, reading only those branches.

    Files without a luminosity-block branch get lumi 0. Used to check run coverage before
    the event loop.

    Returns:
        ``{file path: sorted unique keys}`` for the data files.

    Raises:
        InputError: a file cannot be read or lacks the run branch.
    """
    out: dict[str, NDArray[np.int64]] = {}
    for ds in cfg.datasets:
        if ds.kind != "data":
            continue
        run_b, lumi_b = _run_branches(cfg)
        for path in ds.files:
            out[path] = _keys_of(path, cfg.tree_of(ds), run_b, lumi_b, cfg.format)
    return out


def _run_branches(cfg: DatasetConfig) -> tuple[str, str | None]:
    if cfg.format == "ecalelf":
        return "runNumber", optional_branches("ecalelf")["lumi"]
    if cfg.format == "nanoaod":
        return "run", "luminosityBlock"
    if cfg.format == "parquet":
        return "run", "lumi"
    cm = cfg.column_map
    if cm is None or cm.run is None:
        msg = "the column_map has no 'run' branch; run bins need run numbers"
        raise InvalidConfig(msg)
    return cm.run, cm.lumi


def _keys_of(path: str, tree: str, run_b: str, lumi_b: str | None, fmt: str) -> NDArray[np.int64]:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            names = pq.ParquetFile(path).schema_arrow.names
            cols = [run_b] + ([lumi_b] if lumi_b and lumi_b in names else [])
            table = pq.read_table(path, columns=cols)
            arrays: Mapping[str, Any] = {c: table.column(c).to_numpy() for c in cols}
        else:
            import uproot

            with uproot.open(path) as fh:
                t = fh[tree]
                cols = [run_b] + ([lumi_b] if lumi_b and lumi_b in t else [])
                arrays = t.arrays(cols, library="np")
    except Exception as err:  # noqa: BLE001  (uproot/pyarrow raise many types)
        msg = f"{path}: cannot read the run numbers ({err.__class__.__name__}: {err})"
        raise InputError(msg) from None
    run = np.asarray(arrays[run_b], dtype=np.int64)
    lumi = (
        np.asarray(arrays[lumi_b], dtype=np.int64)
        if lumi_b and lumi_b in arrays
        else np.zeros(len(run), np.int64)
    )
    return np.unique(pack_run_lumi(run, lumi))
