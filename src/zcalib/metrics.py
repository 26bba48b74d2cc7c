"""Run metrics: what an event loop did, how fast, on which workers, with how much memory.

Every ``histograms`` (and ``skim``) run produces a metrics record, written as JSON next to
the output (``<folder>/run.metrics.json``, ``<file>.metrics.json``) — like the Analysis Grand Challenge's ``track_metrics``:
events, chunks and chunk size, wall and process time, events/s overall and per worker, bytes
read, peak memory per worker, chunks restored from checkpoints and skipped input files.

Per-worker numbers come from :class:`TrackedProcessor`, a thin wrapper around the real
processor that adds, per chunk, which worker ran it, how long ``process`` took and the
worker process's peak resident memory (``VmHWM``, else ``getrusage``). They travel in the
processor output like everything else, so they are the same on every executor.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coffea import processor

from zcalib._atomic import atomic_write_text

__all__ = [
    "WORKERS_KEY",
    "TrackedProcessor",
    "build_metrics",
    "default_metrics_path",
    "summary_line",
    "worker_id",
    "write_metrics",
    "zcalib_version",
]

log = logging.getLogger(__name__)

#: Key of the per-worker statistics in the processor output (removed by the runner).
WORKERS_KEY = "_workers"


def zcalib_version() -> str:
    """The installed zcalib version (``unknown`` when run from an uninstalled tree)."""
    from importlib import metadata

    try:
        return metadata.version("zcalib")
    except metadata.PackageNotFoundError:
        return "unknown"


def worker_id() -> str:
    """Name of the Dask worker running this code, else ``host:pid``."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"
    return str(w.name) if w.name is not None else str(w.address)


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process.

    Linux: ``VmHWM`` of ``/proc/self/status`` (the high-water mark of this process's own
    memory; ``ru_maxrss`` would include the parent's peak for processes started by
    fork + exec, as Dask nannies start workers). Elsewhere ``getrusage`` ``ru_maxrss``.
    """
    try:
        with Path("/proc/self/status").open() as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class TrackedProcessor(processor.ProcessorABC):  # type: ignore[misc]
    """Wrap a processor to record per-worker chunks, events, process time and peak memory.

    Args:
        inner: the processor doing the work; its output must be a dict.

    The output gains ``{WORKERS_KEY: {worker: {"chunks", "events", "process_s",
    "peak_rss_bytes": [bytes]}}}`` (a list so that accumulation keeps every sample; the
    maximum is taken at the end).
    """

    def __init__(self, inner: processor.ProcessorABC) -> None:
        self.inner = inner

    def process(self, events: Any) -> Any:
        """Run the inner processor on one chunk and record where and how long."""
        t0 = time.perf_counter()
        out = self.inner.process(events)
        dt = time.perf_counter() - t0
        out[WORKERS_KEY] = {
            worker_id(): {
                "chunks": 1,
                "events": len(events),
                "process_s": dt,
                "peak_rss_bytes": [_peak_rss_bytes()],
            }
        }
        return out

    def postprocess(self, accumulator: Any) -> Any:
        """Delegate to the inner processor."""
        return self.inner.postprocess(accumulator)


def default_metrics_path(out: str | Path) -> Path:
    """Where a run's metrics go by default: inside the output.

    ``<folder>/run.metrics.json`` for an output folder, ``<stem>.metrics.json`` beside an
    output file (``hists.npz`` → ``hists.metrics.json``).

    Example:
        >>> default_metrics_path("out/fit").as_posix(), default_metrics_path("h.npz").as_posix()
        ('out/fit/run.metrics.json', 'h.metrics.json')
    """
    from zcalib.outputs import output_folder

    p = Path(out)
    if output_folder(p) == p:
        return p / "run.metrics.json"
    return p.with_name(f"{p.stem}.metrics.json")


def build_metrics(
    *,
    coffea_metrics: Mapping[str, Any] | None,
    workers: Mapping[str, Mapping[str, Any]],
    events: int,
    wall_time_s: float,
    wall_time_checks_s: float,
    wall_time_fill_s: float,
    executor: str,
    chunksize: int,
    n_workers: int | None,
    dashboard: str | None,
    skipped_files: list[dict[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics record of a run (JSON-ready).

    Args:
        coffea_metrics: ``Runner(savemetrics=True)`` metrics (entries, processtime,
            bytesread, columns, chunks) plus ``checkpointed`` (chunks restored).
        workers: per-worker statistics gathered by :class:`TrackedProcessor`.
        events: events processed (excluding skipped chunks).
        wall_time_s: wall time of the whole call.
        wall_time_checks_s: wall time of the set-up checks.
        wall_time_fill_s: wall time of the event loop.
        executor: ``iterative``, ``futures`` or ``dask``.
        chunksize: target events per chunk.
        n_workers: workers available (Dask: as seen by the scheduler).
        dashboard: the Dask dashboard link, if any.
        skipped_files: records of skipped input files.
        extra: more keys to store.

    Returns:
        A dict; see ``docs/cluster.md`` for the field list.
    """
    cm = dict(coffea_metrics or {})
    per_worker: dict[str, dict[str, Any]] = {}
    for name, w in sorted(workers.items()):
        peak = max(w.get("peak_rss_bytes") or [0])
        ps = float(w.get("process_s", 0.0))
        per_worker[name] = {
            "chunks": int(w.get("chunks", 0)),
            "events": int(w.get("events", 0)),
            "process_time_s": ps,
            "events_per_s": w.get("events", 0) / ps if ps > 0 else None,
            "peak_rss_bytes": int(peak),
        }
    bytes_read = cm.get("bytesread")
    process_time = float(cm.get("processtime", 0.0) or 0.0)
    used = max(len(per_worker), 1)
    rate = events / wall_time_fill_s if wall_time_fill_s > 0 else None
    columns = cm.get("columns") or []
    out: dict[str, Any] = {
        "format": "zcalib-metrics",
        "format_version": 1,
        "executor": executor,
        "workers": n_workers,
        "workers_used": len(per_worker),
        "dashboard": dashboard,
        "chunksize": chunksize,
        "chunks": int(cm.get("chunks", 0) or 0),
        "chunks_from_checkpoint": int(cm.get("checkpointed", 0) or 0),
        "events": int(events),
        "events_skipped": sum(int(s.get("entries_lost") or 0) for s in skipped_files),
        "wall_time_s": wall_time_s,
        "wall_time_checks_s": wall_time_checks_s,
        "wall_time_fill_s": wall_time_fill_s,
        "process_time_s": process_time,
        "events_per_s": rate,
        "events_per_s_per_worker": rate / used if rate is not None else None,
        "bytes_read": int(bytes_read) if bytes_read is not None else None,
        "bytes_read_per_s": (
            bytes_read / wall_time_fill_s
            if bytes_read is not None and wall_time_fill_s > 0
            else None
        ),
        "columns_read": sorted(str(c) for c in columns),
        "peak_rss_bytes_max": max((w["peak_rss_bytes"] for w in per_worker.values()), default=None),
        "per_worker": per_worker,
        "skipped_files": list(skipped_files),
    }
    if extra:
        out.update(extra)
    return out


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write the metrics record atomically as JSON; returns the path."""
    from zcalib.outputs import stamp

    text = json.dumps(stamp(metrics), indent=2, sort_keys=True, default=str)
    p = atomic_write_text(path, text + "\n")
    log.info("wrote metrics %s", p)
    return p


def summary_line(metrics: Mapping[str, Any]) -> str:
    """One line: events, wall time, rate, workers, peak memory, skipped files.

    Example:
        >>> summary_line({"events": 1000, "wall_time_fill_s": 2.0, "events_per_s": 500.0,
        ...               "workers_used": 2, "chunks": 4, "chunks_from_checkpoint": 0,
        ...               "peak_rss_bytes_max": 300 * 2**20, "skipped_files": []})
        '1,000 events in 2.0 s (500 events/s) on 2 worker(s), 4 chunks, peak memory 300 MiB/worker'
    """
    rate = metrics.get("events_per_s")
    text = (
        f"{metrics.get('events', 0):,} events in {metrics.get('wall_time_fill_s', 0.0):.1f} s "
        f"({rate:,.0f} events/s)"
        if rate is not None
        else f"{metrics.get('events', 0):,} events"
    )
    text += f" on {metrics.get('workers_used', 0)} worker(s), {metrics.get('chunks', 0)} chunks"
    restored = metrics.get("chunks_from_checkpoint") or 0
    if restored:
        text += f" ({restored} from checkpoints)"
    peak = metrics.get("peak_rss_bytes_max")
    if peak:
        text += f", peak memory {peak / 2**20:,.0f} MiB/worker"
    skipped = metrics.get("skipped_files") or []
    if skipped:
        text += f", {len(skipped)} bad file(s) skipped"
    return text
