"""Set-up checks of input files, before any event is processed.

Opening a ROOT file reads only its header and directory, so every file of every dataset is
checked up front: it exists, is a ROOT file, holds the tree, the tree holds the branches the
format needs, and it has entries. Parquet skims are checked the same way (footer readable,
columns present, rows > 0) and their provenance record is read.

Every file is checked, and *all* failures are collected: :func:`check_inputs` raises one
:class:`~zcalib.exceptions.InputError` listing every bad file (one line per file naming the
file, the tree or branch, and what is allowed); :func:`preflight` returns the bad files
instead, so a run with ``skip_bad_files`` can drop them and report them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uproot

from zcalib.config import DatasetConfig
from zcalib.exceptions import InputError
from zcalib.io.formats import optional_branches, required_branches

__all__ = [
    "SKIM_METADATA_KEY",
    "BadFile",
    "FileInfo",
    "PreflightResult",
    "bad_files_message",
    "check_inputs",
    "preflight",
]

log = logging.getLogger(__name__)

#: Key of the provenance record in the key-value metadata of zcalib Parquet skims.
SKIM_METADATA_KEY = "zcalib.skim"


@dataclass(frozen=True)
class FileInfo:
    """What the pre-flight learnt about one input file.

    Attributes:
        path: the file.
        dataset: dataset it belongs to.
        treename: tree read (a placeholder for Parquet).
        entries: entries (rows) in the file.
        optional: optional branches found, as ``(role, branch)`` pairs.
        skim: the provenance record of a zcalib Parquet skim (``None`` otherwise).
    """

    path: str
    dataset: str
    treename: str
    entries: int
    optional: tuple[tuple[str, str], ...]
    skim: dict[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class BadFile:
    """An input file that failed the checks.

    Attributes:
        path: the file.
        dataset: dataset it belongs to.
        message: the one-line error (starts with the path).
        entries: entries the tree header (or Parquet footer) announces, ``None`` if unreadable.
    """

    path: str
    dataset: str
    message: str
    entries: int | None

    @property
    def reason(self) -> str:
        """The message without the leading ``<path>: ``."""
        prefix = f"{self.path}: "
        return self.message.removeprefix(prefix)

    def record(self) -> dict[str, Any]:
        """``{"path", "dataset", "reason", "entries_lost"}`` for run metadata."""
        return {
            "path": self.path,
            "dataset": self.dataset,
            "reason": self.reason,
            "entries_lost": self.entries,
        }


@dataclass(frozen=True)
class PreflightResult:
    """Good files (with what was found) and bad files (with why)."""

    files: list[FileInfo]
    bad: list[BadFile]


class _Bad(Exception):
    def __init__(self, message: str, entries: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.entries = entries


def bad_files_message(bad: list[BadFile]) -> str:
    """The error for failed files: the one-line message for one file, a list for several."""
    if len(bad) == 1:
        return bad[0].message
    lines = "\n".join(f"  {b.message}" for b in bad)
    return (
        f"{len(bad)} input files failed the checks (skip_bad_files / --skip-bad-files drops "
        f"them and reports them):\n{lines}"
    )


def check_inputs(
    cfg: DatasetConfig, *, allow_empty: bool = False, skip_bad_files: bool = False
) -> list[FileInfo]:
    """Check every input file of ``cfg``; return what was found.

    Args:
        cfg: the dataset description.
        allow_empty: accept trees with zero entries (they are skipped) instead of failing.
        skip_bad_files: drop failed files (logged as warnings) instead of raising.

    Raises:
        InputError: one or more unreadable/non-ROOT/truncated files, missing trees or
            branches, empty trees (all of them listed), or datasets whose files disagree on
            which optional branches they hold.
    """
    res = preflight(cfg, allow_empty=allow_empty)
    if res.bad:
        if not skip_bad_files:
            raise InputError(bad_files_message(res.bad))
        for b in res.bad:
            log.warning("skipping bad input file: %s", b.message)
    return res.files


def preflight(cfg: DatasetConfig, *, allow_empty: bool = False) -> PreflightResult:
    """Check every input file of ``cfg``, collecting failures instead of raising.

    Args:
        cfg: the dataset description.
        allow_empty: accept trees with zero entries instead of counting them as bad.

    Returns:
        The good files and the bad ones (with the entries their header announces).

    Raises:
        InputError: the good files of a dataset disagree on their optional branches.
    """
    infos: list[FileInfo] = []
    bad: list[BadFile] = []
    needed = required_branches(cfg.format, cfg.column_map)
    optional = optional_branches(cfg.format, cfg.column_map)
    for ds in cfg.datasets:
        tree = cfg.tree_of(ds)
        seen_optional: set[tuple[tuple[str, str], ...]] = set()
        for f in ds.files:
            try:
                if cfg.format == "parquet":
                    info = _check_parquet(
                        f, ds.name, tree, needed, optional, allow_empty=allow_empty
                    )
                else:
                    info = _check_file(f, ds.name, tree, needed, optional, allow_empty=allow_empty)
            except _Bad as err:
                bad.append(
                    BadFile(path=f, dataset=ds.name, message=err.message, entries=err.entries)
                )
                continue
            infos.append(info)
            seen_optional.add(info.optional)
        if len(seen_optional) > 1:
            msg = (
                f"dataset '{ds.name}': files differ in optional branches "
                f"({' vs '.join(str(dict(s)) for s in seen_optional)}); all files of a dataset "
                "must have the same branches"
            )
            raise InputError(msg)
    return PreflightResult(files=infos, bad=bad)


def _check_exists(path: str, dataset: str, expected: str) -> None:
    if "://" in path:
        return
    p = Path(path)
    if not p.is_file():
        msg = f"{path}: input file not found (dataset '{dataset}')"
        raise _Bad(msg)
    if p.stat().st_size == 0:
        msg = f"{path}: file is empty (0 bytes); expected {expected}"
        raise _Bad(msg)


def _check_file(
    path: str,
    dataset: str,
    tree: str,
    needed: list[str],
    optional: dict[str, str],
    *,
    allow_empty: bool,
) -> FileInfo:
    _check_exists(path, dataset, f"a ROOT file with tree '{tree}'")
    try:
        fh = uproot.open(path)
    except Exception as err:  # noqa: BLE001  (uproot raises many types for bad files)
        msg = (
            f"{path}: not a readable ROOT file ({_short(err)}); "
            f"expected a ROOT file with tree '{tree}'"
        )
        raise _Bad(msg) from None
    with fh:
        if "://" not in path:
            size = Path(path).stat().st_size
            end = int(getattr(fh.file, "fEND", 0) or 0)
            if end > size:
                msg = (
                    f"{path}: file is truncated or corrupt: {size} bytes on disk but the ROOT "
                    f"header says {end}"
                )
                raise _Bad(msg, _entries_if_readable(fh, tree))
        try:
            obj = fh[tree]
        except Exception:  # noqa: BLE001
            trees = sorted(
                {k.split(";")[0] for k, c in fh.classnames().items() if c in ("TTree", "TNtuple")}
            )
            allowed = ", ".join(trees) if trees else "none"
            msg = f"{path}: no tree '{tree}' (trees in this file: {allowed})"
            raise _Bad(msg) from None
        if not isinstance(obj, uproot.TTree):
            msg = (
                f"{path}: '{tree}' is a {type(obj).__name__}, not a TTree "
                "(write ntuples with uproot's mktree/extend, not file[name] = ...)"
            )
            raise _Bad(msg)
        entries = int(obj.num_entries)
        keys = set(obj.keys())
        missing = [b for b in needed if b not in keys]
        if missing:
            msg = (
                f"{path}: tree '{tree}' lacks branch(es) {', '.join(missing)} needed by the format"
            )
            raise _Bad(msg, entries)
        if entries == 0 and not allow_empty:
            msg = f"{path}: tree '{tree}' has no entries"
            raise _Bad(msg, 0)
        found = tuple(sorted((role, b) for role, b in optional.items() if b in keys))
        try:
            # reading the last basket of one needed branch catches truncated files here
            if entries:
                obj[needed[0]].array(entry_start=entries - 1, entry_stop=entries, library="np")
        except Exception as err:  # noqa: BLE001
            msg = f"{path}: file is truncated or corrupt: cannot read branch '{needed[0]}' ({_short(err)})"
            raise _Bad(msg, entries) from None
    return FileInfo(path=path, dataset=dataset, treename=tree, entries=entries, optional=found)


def _entries_if_readable(fh: Any, tree: str) -> int | None:
    try:
        return int(fh[tree].num_entries)
    except Exception:  # noqa: BLE001
        return None


def _check_parquet(
    path: str,
    dataset: str,
    tree: str,
    needed: list[str],
    optional: dict[str, str],
    *,
    allow_empty: bool,
) -> FileInfo:
    import pyarrow.parquet as pq

    _check_exists(path, dataset, "a Parquet pair skim (zcalib skim)")
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001  (pyarrow raises several types)
        msg = f"{path}: not a readable Parquet file ({_short(err)}); expected a zcalib pair skim"
        raise _Bad(msg) from None
    rows = int(pf.metadata.num_rows)
    columns = set(pf.schema_arrow.names)
    missing = [c for c in needed if c not in columns]
    if missing:
        msg = f"{path}: Parquet skim lacks column(s) {', '.join(missing)} needed by the format"
        raise _Bad(msg, rows)
    if rows == 0 and not allow_empty:
        msg = f"{path}: Parquet skim has no rows"
        raise _Bad(msg, 0)
    skim = None
    kv = pf.schema_arrow.metadata or {}
    raw = kv.get(SKIM_METADATA_KEY.encode())
    if raw is not None:
        try:
            skim = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            msg = f"{path}: unreadable '{SKIM_METADATA_KEY}' provenance record ({err})"
            raise _Bad(msg, rows) from None
    found = tuple(sorted((role, c) for role, c in optional.items() if c in columns))
    return FileInfo(
        path=path, dataset=dataset, treename=tree, entries=rows, optional=found, skim=skim
    )


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{err.__class__.__name__}: {first}"[:200]
