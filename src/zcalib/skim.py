"""Pair skims: apply the pair preselection once and keep only the needed columns, in Parquet.

``zcalib skim`` (pymin's pruner, without its TSV) reads the original ntuples with the same
coffea ``Runner`` as the histogram step (any executor, retries, ``skip_bad_files``), keeps the
pairs passing the preselection and writes one row per pair::

    energy_1 energy_2 eta_1 eta_2 sc_eta_1 sc_eta_2 phi_1 phi_2 r9_1 r9_2   floats
    gain_1 gain_2 (12/6/1)  charge_1 charge_2  id_1 id_2 (ID_BITS)           small ints
    run [lumi] [event] weight [npu] mass                                      per pair

(``lumi``, ``event`` and ``npu`` only when the source has them; zstd-compressed). Values are
exactly those the processor computes from the original input — float32 where the source
stores float32, float64 where the processor computes them (NanoAOD E = pt·cosh η) — so
histograms filled from a skim (``format: parquet``) equal those filled from the original
files.

The preselection is the histogram selection made *looser* by ``margin`` (default 5 %) on the
energy-dependent cuts (Et thresholds, mass window), so prior scale corrections applied when
filling cannot move a pair across a skim cut. A histogram selection over a skim may only be
tighter than the skim's (checked when filling).

With ``corrections`` (``zcalib skim --corrections``) the prior steps are applied as when
filling (data scales, MC smearings keyed on event identity), the preselection is made on the
corrected energies and the skims hold them (``energy`` then float64); the provenance names
the steps, and filling from such a skim refuses to apply one of them a second time.

Layout of the output folder::

    <out>/<dataset>/<source stem>.parquet        one skim per source file
    <out>/<dataset>/<source stem>.parquet.json   its provenance (sidecar) + SHA-256
    <out>/skim.json                              every file's provenance, skipped files
    <out>/datasets.yaml                          dataset description (format: parquet)
    <out>/skim.metrics.json                      run metrics

The provenance record (source path, entries, fingerprint, selection, cutflow, Σw, zcalib
version) is also stored in each Parquet file's key-value metadata under ``zcalib.skim``.
Workers write per-chunk part files into ``<out>/.parts-*`` (the folder must be shared with
the workers), merged per source file at the end; every output is written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zcalib._atomic import atomic_open, atomic_write_text
from zcalib.config import DatasetConfig, SelectionConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import MassBinning
from zcalib.io.fingerprint import file_fingerprint
from zcalib.io.formats import ID_BITS
from zcalib.io.preflight import SKIM_METADATA_KEY, FileInfo
from zcalib.metrics import write_metrics, zcalib_version
from zcalib.outputs import RUN_ID_FIELD, current_run_id, run_tag
from zcalib.processors.skim import (
    _COMPRESSION,
    ROW_GROUP_SIZE,
    SKIM_CUTS,
    SkimProcessor,
)
from zcalib.processors.zee import CorrectionStep
from zcalib.runner import EventLoop, RunOptions

__all__ = ["SKIM_CUTS", "SkimFile", "SkimProcessor", "SkimResult", "skim", "skim_selection"]

log = logging.getLogger(__name__)

SKIM_FORMAT_VERSION = 1


def skim_selection(
    selection: SelectionConfig, binning: MassBinning, margin: float
) -> tuple[SelectionConfig, MassBinning]:
    """The preselection of a skim: ``selection`` with Et cuts and mass window looser by
    ``margin`` (relative).

    Example:
        >>> sel, mb = skim_selection(SelectionConfig(), MassBinning(), 0.05)
        >>> sel.min_et_lead, round(mb.lo, 6), round(mb.hi, 6)
        (23.75, 57.0, 126.0)
    """
    if not 0.0 <= margin < 1.0:
        msg = f"skim margin must be in [0, 1), got {margin}"
        raise InvalidConfig(msg)
    sel = selection.with_overrides(
        min_et_lead=selection.min_et_lead * (1.0 - margin),
        min_et_sublead=selection.min_et_sublead * (1.0 - margin),
    )
    mb = MassBinning(
        n_bins=binning.n_bins, lo=binning.lo * (1.0 - margin), hi=binning.hi * (1.0 + margin)
    )
    return sel, mb


@dataclass(frozen=True)
class SkimFile:
    """One skim written (one per source file).

    Attributes:
        path: the Parquet file.
        dataset: its dataset.
        source: the original input file.
        rows: pairs written.
        entries: entries of the source that were read.
        provenance: the provenance record (also in the file's key-value metadata).
    """

    path: Path
    dataset: str
    source: str
    rows: int
    entries: int
    provenance: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class SkimResult:
    """What :func:`skim` wrote.

    Attributes:
        files: the skims, one per source file.
        datasets_yaml: dataset description of the skims (``format: parquet``).
        record: ``skim.json`` (provenance of every file, skipped inputs).
        metrics: the run metrics (also in ``skim.metrics.json``).
        skipped_files: input files (or chunks) skipped with ``skip_bad_files``.
    """

    files: list[SkimFile]
    datasets_yaml: Path
    record: Path
    metrics: dict[str, Any]
    skipped_files: list[dict[str, Any]]


def skim(
    cfg: DatasetConfig,
    out_dir: str | Path,
    *,
    selection: SelectionConfig | None = None,
    binning: MassBinning | None = None,
    margin: float = 0.05,
    options: RunOptions | None = None,
    corrections: Sequence[CorrectionStep] = (),
    smear_seed: int = 0,
) -> SkimResult:
    """Write Parquet pair skims of every input file of ``cfg`` into ``out_dir``.

    Args:
        cfg: the dataset description of the original ntuples.
        out_dir: output folder (created; existing skims of the same names are replaced).
        selection: the histogram selection the skim must serve (default selection).
        binning: the histogram mass binning (its window, widened by ``margin``, is cut on).
        margin: relative loosening of the Et thresholds and the mass window.
        options: executor, chunking, retries, ``skip_bad_files`` (checkpoints are not used).
        corrections: prior correction steps applied in order before the preselection (data
            scales, MC smearings, as when filling histograms); the skims then hold the
            corrected energies, and their provenance names the steps.
        smear_seed: seed of the MC smearing random numbers (with smear steps).

    Returns:
        The files written and their provenance.

    Raises:
        InputError: bad input files (all listed) unless ``skip_bad_files``; bad values.
        InvalidConfig: bad options.

    Example:
        >>> res = skim(cfg, "skims/")                                  # doctest: +SKIP
        >>> hs = build_histograms(load_dataset_config(res.datasets_yaml), scheme)  # doctest: +SKIP
    """
    opts = options or RunOptions()
    sel_hist = selection or SelectionConfig()
    sel, mb = skim_selection(sel_hist, binning or MassBinning(), margin)
    loop = EventLoop(
        cfg,
        options=opts,
        selection=sel,
        binning=mb,
        corrections=tuple(corrections),
        smear_seed=smear_seed,
    )
    loop.check()
    out = Path(out_dir)
    parts_dir = out / f".parts-{uuid.uuid4().hex[:12]}"
    try:
        done = loop.run(
            SkimProcessor,
            parts_dir=str(parts_dir.resolve()),
            prepare=lambda _: parts_dir.mkdir(parents=True, exist_ok=True),
        )
        pre, proc, run = done.pre, done.proc, done.run
        t_start, t_checks, t_run = done.t_start, done.t_checks, done.t_run
        infos = pre.files
        skipped = [b.record() for b in pre.bad]
        errors = set(run.out["errors"])
        failed = run.out.get("failed", set())
        if opts.skip_bad_files:
            errors -= {f"{f} (entries {a}-{b}): {r}" for _, f, a, b, r in failed}
            skipped += _failed_records(failed)
        elif failed:
            errors |= {f"{f} (entries {a}-{b}): {r}" for _, f, a, b, r in failed}
        if errors:
            ordered = sorted(errors)
            more = f" (and {len(ordered) - 1} more)" if len(ordered) > 1 else ""
            raise InputError(ordered[0] + more)
        applied = {
            "corrections": [
                {"name": c.name, "kind": c.kind, "source": c.source} for c in corrections
            ],
            "smear_seed": smear_seed if any(c.kind == "smear" for c in corrections) else None,
        }
        files = _merge(out, proc, infos, run.out, cfg, sel, mb, margin, failed, applied)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)

    n_events = sum(f.entries for f in files)
    metrics = run.metrics_record(
        events=n_events,
        chunksize=opts.chunksize,
        wall_time_s=time.perf_counter() - t_start,
        wall_time_checks_s=t_checks,
        wall_time_fill_s=t_run,
        skipped_files=skipped,
        extra={"rows_written": sum(f.rows for f in files)},
    )
    write_metrics(out / "skim.metrics.json", metrics)
    if opts.metrics_path is not None:
        write_metrics(opts.metrics_path, metrics)
    datasets_yaml = _write_datasets_yaml(out, cfg, files)
    record = out / "skim.json"
    atomic_write_text(
        record,
        json.dumps(
            {
                RUN_ID_FIELD: current_run_id(),
                "format": "zcalib-skim-set",
                "format_version": SKIM_FORMAT_VERSION,
                "zcalib_version": zcalib_version(),
                "selection": sel.model_dump(),
                "mass_window": [mb.lo, mb.hi],
                "margin": margin,
                **applied,
                "files": [
                    {
                        "path": str(f.path.relative_to(out)),
                        "sha256": _sha256(f.path),
                        **f.provenance,
                    }
                    for f in files
                ],
                "skipped_files": skipped,
                "datasets_yaml": datasets_yaml.name,
            },
            indent=2,
        )
        + "\n",
    )
    if skipped:
        log.warning(
            "skim: skipped %d bad input file(s): %s",
            len(skipped),
            "; ".join(f"{r['path']} ({r['reason']})" for r in skipped),
        )
    log.info(
        "skimmed %d events into %d pairs (%d files) in %.1f s",
        n_events,
        sum(f.rows for f in files),
        len(files),
        t_run,
    )
    return SkimResult(
        files=files,
        datasets_yaml=datasets_yaml,
        record=record,
        metrics=metrics,
        skipped_files=skipped,
    )


def _failed_records(failed: set[tuple[str, str, int, int, str]]) -> list[dict[str, Any]]:
    by_file: dict[str, dict[str, Any]] = {}
    for dataset, filename, start, stop, reason in sorted(failed):
        rec = by_file.setdefault(
            filename, {"path": filename, "dataset": dataset, "reason": [], "entries_lost": 0}
        )
        rec["reason"].append(f"entries {start}-{stop}: {reason}")
        rec["entries_lost"] += stop - start
    return [{**r, "reason": "; ".join(r["reason"])} for r in by_file.values()]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "dataset"


def _merge(
    out: Path,
    proc: SkimProcessor,
    infos: list[FileInfo],
    result: Mapping[str, Any],
    cfg: DatasetConfig,
    sel: SelectionConfig,
    mb: MassBinning,
    margin: float,
    failed: set[tuple[str, str, int, int, str]],
    applied: Mapping[str, Any],
) -> list[SkimFile]:
    """Merge the part files of each source file into its skim, with provenance."""
    import pyarrow.parquet as pq

    parts: dict[tuple[str, str], list[tuple[int, int, str, int]]] = {}
    for dataset, filename, start, stop, path, rows in result["parts"]:
        parts.setdefault((dataset, filename), []).append((start, stop, path, rows))
    kinds = cfg.kinds()
    used: set[Path] = set()
    files: list[SkimFile] = []
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    for info in infos:
        key = (info.dataset, info.path)
        chunks = sorted(parts.get(key, []))
        lost = sorted((a, b, r) for d, f, a, b, r in failed if (d, f) == key)
        if not chunks and not lost:
            continue  # not processed (maxchunks)
        folder = out / _safe_name(info.dataset)
        target = folder / f"{Path(info.path).stem}.parquet"
        if target in used:
            target = folder / f"{Path(info.path).stem}-{file_fingerprint(info.path)[:8]}.parquet"
        used.add(target)
        rows = sum(c[3] for c in chunks)
        entries = sum(b - a for a, b, _, _ in chunks)
        cutflow = result["cutflow"].get(info.path, {})
        provenance = {
            RUN_ID_FIELD: current_run_id(),
            "format": "zcalib-skim",
            "format_version": SKIM_FORMAT_VERSION,
            "zcalib_version": zcalib_version(),
            "created": created,
            "source": {
                "path": info.path,
                "dataset": info.dataset,
                "kind": kinds[info.dataset],
                "format": cfg.format,
                "tree": info.treename,
                "entries": info.entries,
                "entries_read": entries,
                "fingerprint": file_fingerprint(info.path),
                "size_bytes": Path(info.path).stat().st_size if "://" not in info.path else None,
            },
            "selection": sel.model_dump(),
            "mass_window": [mb.lo, mb.hi],
            "margin": margin,
            **applied,
            "cuts": list(SKIM_CUTS),
            "cutflow": {c: int(cutflow.get(c, 0)) for c in ("all", *SKIM_CUTS)},
            "sumw": float(result["sumw"].get(info.path, 0.0)),
            "rows": rows,
            "columns": proc.columns(info.dataset),
            "has_event_ids": "event" in proc.event_columns(info.dataset),
            "id_bits": {k: v for k, v in ID_BITS.items() if v},
            "skipped_chunks": [[a, b, r] for a, b, r in lost],
        }
        schema = proc.schema(info.dataset).with_metadata(
            {SKIM_METADATA_KEY: json.dumps(provenance)}
        )
        with (
            atomic_open(target, "wb") as fh,
            pq.ParquetWriter(fh, schema, compression=_COMPRESSION) as writer,
        ):
            for _, _, path, n in chunks:
                if n:
                    writer.write_table(
                        pq.read_table(path).replace_schema_metadata(schema.metadata),
                        row_group_size=ROW_GROUP_SIZE,
                    )
        atomic_write_text(
            target.with_name(target.name + ".json"),
            json.dumps({"path": target.name, "sha256": _sha256(target), **provenance}, indent=2)
            + "\n",
        )
        files.append(
            SkimFile(
                path=target,
                dataset=info.dataset,
                source=info.path,
                rows=rows,
                entries=entries,
                provenance=provenance,
            )
        )
    return files


def _write_datasets_yaml(out: Path, cfg: DatasetConfig, files: list[SkimFile]) -> Path:
    datasets = []
    for ds in cfg.datasets:
        mine = [f for f in files if f.dataset == ds.name]
        keep = [str(f.path.relative_to(out)) for f in mine if f.rows > 0]
        for f in mine:
            if f.rows == 0:
                log.warning(
                    "%s: no pair passed the skim selection; left out of %s", f.path, "datasets.yaml"
                )
        if not keep:
            continue
        entry: dict[str, Any] = {"name": ds.name, "kind": ds.kind, "files": keep}
        if ds.metadata:
            entry["metadata"] = dict(ds.metadata)
        datasets.append(entry)
    path = out / "datasets.yaml"
    text = f"# written by zcalib skim ({run_tag()})\n" + yaml.safe_dump(
        {"schema_version": 1, "format": "parquet", "datasets": datasets}, sort_keys=False
    )
    atomic_write_text(path, text)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
