"""Set-up checks of input files, before any event is processed.

Opening a ROOT file reads only its header and directory, so every file of every dataset is
checked up front: it exists (URLs such as ``root://`` are opened where they are), is a ROOT
file, holds the tree, the tree holds the branches the format needs with the types and shapes
it reads (float kinematics, integer ids/gains/run numbers, per-electron arrays where the
format has them), and it has entries. Parquet skims are checked the same way (footer
readable, columns present and typed, rows > 0) and their provenance record is read. The same
physical file listed twice among the data, or among the MC (directly, through a symlink or a
hard link, in one dataset or in two), is an error naming both paths: it would be counted
twice. The same file as data *and* MC is allowed (a closure of the simulation on itself).

Every file is checked, and *all* failures are collected: :func:`check_inputs` raises one
:class:`~zcalib.exceptions.InputError` listing every bad file (one line per file naming the
file, the tree or branch, and what is allowed); :func:`preflight` returns the bad files
instead, so a run with ``skip_bad_files`` can drop them and report them.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import uproot

from zcalib.config import DatasetConfig, is_url
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.io._base import Kind, Layout
from zcalib.io.formats import (
    get_format,
    optional_branches,
    required_branches,
)

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


def preflight(
    cfg: DatasetConfig, *, allow_empty: bool = False, columns: tuple[str, ...] = ()
) -> PreflightResult:
    """Check every input file of ``cfg``, collecting failures instead of raising.

    Args:
        cfg: the dataset description.
        allow_empty: accept trees with zero entries instead of counting them as bad.
        columns: per-lepton columns a category scheme cuts on (their branches must exist in
            every file and hold numbers in the format's per-lepton layout).

    Returns:
        The good files and the bad ones (with the entries their header announces).

    Raises:
        InputError: the good files of a dataset disagree on their optional branches, or one
            physical file is listed twice.
        InvalidConfig: a category column the format cannot name.
    """
    check_unique_files(cfg)
    infos: list[FileInfo] = []
    bad: list[BadFile] = []
    needed = required_branches(cfg.format, cfg.column_map)
    optional = optional_branches(cfg.format, cfg.column_map)
    expected = branch_types(cfg)
    category = category_branches(cfg, columns)
    for b in category:
        expected[b] = ("number", get_format(cfg.format).lepton_layout)
    for ds in cfg.datasets:
        tree = cfg.tree_of(ds)
        seen_optional: set[tuple[tuple[str, str], ...]] = set()
        for f in ds.files:
            try:
                if get_format(cfg.format).reader == "parquet":
                    info = _check_parquet(
                        f,
                        ds.name,
                        tree,
                        needed,
                        optional,
                        expected,
                        allow_empty=allow_empty,
                        category=category,
                    )
                else:
                    info = _check_file(
                        f,
                        ds.name,
                        tree,
                        needed,
                        optional,
                        expected,
                        fmt=cfg.format,
                        allow_empty=allow_empty,
                        category=category,
                    )
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


def category_branches(cfg: DatasetConfig, columns: tuple[str, ...]) -> dict[str, str]:
    """``{branch: column}``: the branches holding the per-lepton columns a category scheme
    cuts on (what :meth:`~zcalib.io._base.InputFormat.column_branches` names).

    Raises:
        InvalidConfig: the format cannot name a column (message says what is allowed).
    """
    form = get_format(cfg.format)
    out: dict[str, str] = {}
    for name in columns:
        try:
            branches = form.column_branches(name, cfg.column_map)
        except ValueError as err:
            msg = f"{cfg.format} input: {err}"
            raise InvalidConfig(msg) from None
        out.update(dict.fromkeys(branches, name))
    return out


#: where the per-lepton columns of each format live (messages)
_COLUMN_PLACES = {
    "ecalelf": "per-electron array branches of the tree",
    "nanoaod": "Electron_* branches",
    "flat": "the branches the column_map's 'columns' names",
    "parquet": "<column>_1/<column>_2 columns of the skim",
}


def _missing_category_branch(
    path: str, where: str, keys: set[str], category: dict[str, str], fmt: str
) -> str | None:
    """The message for the first category-column branch a file lacks (``None``: none)."""
    import difflib

    for b, name in category.items():
        if b not in keys:
            near = difflib.get_close_matches(b, sorted(keys), n=3)
            hint = f" (similar: {', '.join(near)})" if near else ""
            return (
                f"{path}: {where} has no branch '{b}' for category column '{name}'{hint}; "
                f"allowed: {_COLUMN_PLACES.get(fmt, 'branches of the file')}"
            )
    return None


def check_unique_files(cfg: DatasetConfig) -> None:
    """Refuse one physical file listed twice among the datasets of one kind (data or MC): its
    events would be counted twice. One file used as data and as MC is allowed (closure).

    Local files are compared by device and inode (a symlink or hard link is the same file),
    URLs by their normalised form (case-insensitive scheme and host, ``//`` runs collapsed).

    Raises:
        InputError: naming both paths and their datasets.
    """
    seen: dict[Any, tuple[str, str]] = {}
    for ds in cfg.datasets:
        for f in ds.files:
            identity = _identity(f)
            if identity is None:
                continue
            key = (ds.kind, identity)
            if key in seen:
                first, first_ds = seen[key]
                where = (
                    f"dataset '{ds.name}'"
                    if first_ds == ds.name
                    else f"datasets '{first_ds}' and '{ds.name}'"
                )
                msg = (
                    f"{first} and {f} are the same file (listed twice, or through a symlink "
                    f"or hard link) in {where}; its events would be counted twice: list each "
                    "input file once"
                )
                raise InputError(msg)
            seen[key] = (f, ds.name)


def _identity(path: str) -> Any:
    """What makes two paths the same file; ``None`` when unknown (a missing local file)."""
    if is_url(path):
        u = urlsplit(path)
        clean = posixpath.normpath("/" + u.path.lstrip("/"))
        return ("url", u.scheme.lower(), u.netloc.lower(), clean, u.query)
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return ("local", st.st_dev, st.st_ino)


# ------------------------------------------------------------------ branch types and shapes
#: What each kind accepts, in messages.
_ALLOWED = {
    "float": "floating point (float32, float64)",
    "int": "integer (int8-int64, uint8-uint64)",
    "number": "a number (integer or floating point, not bool)",
}
_LAYOUT_TEXT = {
    "scalar": "one value per event",
    "array": "a fixed-size per-electron array such as [3]",
    "jagged": "a variable-length per-electron list",
}


def branch_types(cfg: DatasetConfig) -> dict[str, tuple[Kind, Layout]]:
    """``{branch: (kind, layout)}`` the reader of ``cfg.format`` expects of each branch it reads
    (each format module says it: :meth:`~zcalib.io._base.InputFormat.branch_types`).

    Example:
        >>> cfg = DatasetConfig(datasets=[{"name": "d", "kind": "data", "files": ["d.root"]}])
        >>> branch_types(cfg)["energy_ECAL_ele"], branch_types(cfg)["runNumber"]
        (('float', 'array'), ('int', 'scalar'))
    """
    return get_format(cfg.format).branch_types(cfg.column_map)


def _dtype_kind(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iu":
        return "int"
    return "bool" if dtype.kind == "b" else str(dtype)


def _type_problem(
    branch: str, dtype: np.dtype[Any] | None, layout: Layout, want: tuple[Kind, Layout], fmt: str
) -> str | None:
    """Why a branch of this dtype and layout cannot be read as ``want`` (``None``: it can)."""
    kind, want_layout = want
    if dtype is None:
        return f"branch '{branch}' has a type zcalib cannot read; expected {_ALLOWED[kind]}"
    got = _dtype_kind(dtype)
    ok = got == kind or (kind == "number" and got in ("float", "int"))
    if not ok:
        return (
            f"branch '{branch}' is {dtype.name}; the {fmt} format needs {_ALLOWED[kind]} "
            "(wrong types bias or empty the histograms)"
        )
    if layout != want_layout:
        return (
            f"branch '{branch}' holds {_LAYOUT_TEXT[layout]}; the {fmt} format needs "
            f"{_LAYOUT_TEXT[want_layout]}"
        )
    return None


def _root_branch_type(branch: Any) -> tuple[np.dtype[Any] | None, Layout]:
    """The element dtype and layout of a TTree branch from its uproot interpretation."""
    interp = branch.interpretation
    content = getattr(interp, "content", None)
    if content is not None and hasattr(content, "to_dtype"):
        return np.dtype(content.to_dtype), "jagged"
    to_dtype = getattr(interp, "to_dtype", None)
    if to_dtype is None:
        return None, "scalar"
    dt = np.dtype(to_dtype)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return np.dtype(base), "array" if len(shape) == 1 and shape[0] >= 2 else "scalar"
    return dt, "scalar"


def _check_exists(path: str, dataset: str, expected: str) -> None:
    if is_url(path):
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
    expected: dict[str, tuple[Kind, Layout]],
    *,
    fmt: str,
    allow_empty: bool,
    category: dict[str, str],
) -> FileInfo:
    _check_exists(path, dataset, f"a ROOT file with tree '{tree}'")
    try:
        fh = uproot.open(path)
    except Exception as err:  # noqa: BLE001  (uproot raises many types for bad files)
        raise _Bad(_open_failure(path, tree, err)) from None
    with fh:
        if not is_url(path):
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
        lacks = _missing_category_branch(path, f"tree '{tree}'", keys, category, fmt)
        if lacks:
            raise _Bad(lacks, entries)
        missing = [b for b in needed if b not in keys]
        if missing:
            msg = (
                f"{path}: tree '{tree}' lacks branch(es) {', '.join(missing)} needed by the format"
            )
            raise _Bad(msg, entries)
        if entries == 0 and not allow_empty:
            msg = f"{path}: tree '{tree}' has no entries"
            raise _Bad(msg, 0)
        for b, want in expected.items():
            if b in keys:
                problem = _type_problem(b, *_root_branch_type(obj[b]), want, fmt)
                if problem:
                    msg = f"{path}: tree '{tree}': {problem}"
                    raise _Bad(msg, entries)
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
    expected: dict[str, tuple[Kind, Layout]],
    *,
    allow_empty: bool,
    category: dict[str, str],
) -> FileInfo:
    import pyarrow.parquet as pq

    _check_exists(path, dataset, "a Parquet pair skim (zcalib skim)")
    try:
        if is_url(path):
            import fsspec

            with fsspec.open(path, "rb") as remote:
                pf = pq.ParquetFile(remote.read())
        else:
            pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001  (pyarrow raises several types)
        msg = f"{path}: not a readable Parquet file ({_short(err)}); expected a zcalib pair skim"
        raise _Bad(msg) from None
    rows = int(pf.metadata.num_rows)
    columns = set(pf.schema_arrow.names)
    lacks = _missing_category_branch(path, "Parquet skim", columns, category, "parquet")
    if lacks:
        raise _Bad(lacks.replace("no branch", "no column", 1), rows)
    missing = [c for c in needed if c not in columns]
    if missing:
        msg = f"{path}: Parquet skim lacks column(s) {', '.join(missing)} needed by the format"
        raise _Bad(msg, rows)
    for c, want in expected.items():
        if c in columns:
            problem = _type_problem(c, *_arrow_type(pf.schema_arrow.field(c).type), want, "parquet")
            if problem:
                msg = f"{path}: Parquet skim: {problem.replace('branch', 'column', 1)}"
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


def _arrow_type(t: Any) -> tuple[np.dtype[Any] | None, Layout]:
    import pyarrow as pa

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _arrow_type(t.value_type)[0], "jagged"
    try:
        return np.dtype(t.to_pandas_dtype()), "scalar"
    except (NotImplementedError, TypeError):
        return None, "scalar"


def _open_failure(path: str, tree: str, err: BaseException) -> str:
    """The one-line reason a ROOT file could not be opened."""
    if is_url(path):
        text = str(err)
        scheme = path.split("://", 1)[0]
        if (
            scheme in ("root", "xroot")
            and ("fsspec_xrootd" in text or "XRootD" in text)
            and (isinstance(err, ImportError) or "pip install" in text)
        ):
            return (
                f"{path}: reading {scheme}:// URLs needs the XRootD client: "
                "pip install 'zcalib[remote]' (xrootd, fsspec-xrootd)"
            )
        return f"{path}: cannot open remote file ({_short(err)}); expected a ROOT file with tree '{tree}'"
    return (
        f"{path}: not a readable ROOT file ({_short(err)}); expected a ROOT file with tree '{tree}'"
    )


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{err.__class__.__name__}: {first}"[:200]
