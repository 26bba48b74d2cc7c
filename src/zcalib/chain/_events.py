"""The event loop of the chain's own processors (counts, run-bin masses, Z kinematics).

Every chain pass is an :class:`zcalib.runner.EventLoop` run (the same set-up checks and
executors as the histogram step). Also: reading only the
``run``/``lumi`` branches of the data (run-coverage checks before the event loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zcalib.categories import CategoryScheme
from zcalib.config import DatasetConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.io.formats import get_format
from zcalib.processors.runs import pack_run_lumi
from zcalib.runner import EventLoop

__all__ = ["ChainLoop", "data_run_keys", "eta_scheme", "run_loop", "signed_eta"]

log = logging.getLogger(__name__)


#: The chain's event loops are :class:`zcalib.runner.EventLoop` values (the old name).
ChainLoop = EventLoop


def eta_scheme(eta_bins: tuple[tuple[float, float], ...], source: str) -> CategoryScheme:
    """A scheme with one scale category per η bin (the pairs' ``categorised`` cut): |η|
    bins, or signed-η bins when an edge is negative (:func:`signed_eta`)."""
    from zcalib.categories import scheme_from_dict

    key = "sceta" if signed_eta(eta_bins) else "eta"
    return scheme_from_dict({"scale": [{key: list(b)} for b in eta_bins]}, source=source)


def signed_eta(eta_bins: Sequence[tuple[float, float]]) -> bool:
    """Whether η bins are signed η_SC (an edge below 0, e.g. EE− ``[-2.5, -1.566]``) rather
    than |η_SC|.

    Example:
        >>> signed_eta([(0.0, 1.4442), (1.566, 2.5)]), signed_eta([(-2.5, -1.566), (1.566, 2.5)])
        (False, True)
    """
    return any(lo < 0 for lo, _ in eta_bins)


def run_loop(
    loop: EventLoop,
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
    done = loop.replace(cfg=cfg).run(proc_cls, scheme=scheme, skip_bad_files=False, **extra)
    done.raise_errors()
    n = int((done.run.metrics or {}).get("entries", 0))
    log.info("%s: %d events in %.2f s", proc_cls.__name__, n, time.perf_counter() - done.t_start)
    return done.run.out


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
    form = get_format(cfg.format)
    run = form.event_branch("run", {}, cfg.column_map)
    if run is None:
        msg = "the column_map has no 'run' branch; run bins need run numbers"
        raise InvalidConfig(msg)
    return run, form.event_branch("lumi", form.optional(cfg.column_map), cfg.column_map)


def _keys_of(path: str, tree: str, run_b: str, lumi_b: str | None, fmt: str) -> NDArray[np.int64]:
    form = get_format(fmt)
    try:
        names = form.branch_names(path, tree)
        cols = [run_b] + ([lumi_b] if lumi_b and lumi_b in names else [])
        arrays: Mapping[str, Any] = form.read(path, tree, cols)
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
