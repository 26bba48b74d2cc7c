"""Set-up checks of input files, before any event is processed.

Opening a ROOT file reads only its header and directory, so every file of every dataset is
checked up front: it exists, is a ROOT file, holds the tree, the tree holds the branches the
format needs, and it has entries. Failures raise :class:`~zcalib.exceptions.InputError` with
one line naming the file, the tree or branch, and what is allowed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import uproot

from zcalib.config import DatasetConfig
from zcalib.exceptions import InputError
from zcalib.io.formats import optional_branches, required_branches

__all__ = ["FileInfo", "check_inputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileInfo:
    """What the pre-flight learnt about one input file."""

    path: str
    dataset: str
    treename: str
    entries: int
    optional: tuple[tuple[str, str], ...]


def check_inputs(cfg: DatasetConfig, *, allow_empty: bool = False) -> list[FileInfo]:
    """Check every input file of ``cfg``; return what was found.

    Args:
        cfg: the dataset description.
        allow_empty: accept trees with zero entries (they are skipped) instead of failing.

    Raises:
        InputError: unreadable/non-ROOT/truncated file, missing tree or branch, empty tree,
            or datasets whose files disagree on which optional branches they hold.
    """
    infos: list[FileInfo] = []
    needed = required_branches(cfg.format, cfg.column_map)
    optional = optional_branches(cfg.format, cfg.column_map)
    for ds in cfg.datasets:
        tree = cfg.tree_of(ds)
        seen_optional: set[tuple[tuple[str, str], ...]] = set()
        for f in ds.files:
            info = _check_file(f, ds.name, tree, needed, optional, allow_empty=allow_empty)
            infos.append(info)
            seen_optional.add(info.optional)
        if len(seen_optional) > 1:
            msg = (
                f"dataset '{ds.name}': files differ in optional branches "
                f"({' vs '.join(str(dict(s)) for s in seen_optional)}); all files of a dataset "
                "must have the same branches"
            )
            raise InputError(msg)
    return infos


def _check_file(
    path: str,
    dataset: str,
    tree: str,
    needed: list[str],
    optional: dict[str, str],
    *,
    allow_empty: bool,
) -> FileInfo:
    if "://" not in path:
        p = Path(path)
        if not p.is_file():
            msg = f"{path}: input file not found (dataset '{dataset}')"
            raise InputError(msg)
        if p.stat().st_size == 0:
            msg = f"{path}: file is empty (0 bytes); expected a ROOT file with tree '{tree}'"
            raise InputError(msg)
    try:
        fh = uproot.open(path)
    except Exception as err:  # noqa: BLE001  (uproot raises many types for bad files)
        msg = (
            f"{path}: not a readable ROOT file ({_short(err)}); "
            f"expected a ROOT file with tree '{tree}'"
        )
        raise InputError(msg) from None
    with fh:
        if "://" not in path:
            size = Path(path).stat().st_size
            end = int(getattr(fh.file, "fEND", 0) or 0)
            if end > size:
                msg = (
                    f"{path}: file is truncated or corrupt: {size} bytes on disk but the ROOT "
                    f"header says {end}"
                )
                raise InputError(msg)
        try:
            obj = fh[tree]
        except Exception:  # noqa: BLE001
            trees = sorted(
                {k.split(";")[0] for k, c in fh.classnames().items() if c in ("TTree", "TNtuple")}
            )
            allowed = ", ".join(trees) if trees else "none"
            msg = f"{path}: no tree '{tree}' (trees in this file: {allowed})"
            raise InputError(msg) from None
        if not isinstance(obj, uproot.TTree):
            msg = (
                f"{path}: '{tree}' is a {type(obj).__name__}, not a TTree "
                "(write ntuples with uproot's mktree/extend, not file[name] = ...)"
            )
            raise InputError(msg)
        keys = set(obj.keys())
        missing = [b for b in needed if b not in keys]
        if missing:
            msg = f"{path}: tree '{tree}' lacks branch(es) {', '.join(missing)} needed by the format"
            raise InputError(msg)
        entries = int(obj.num_entries)
        if entries == 0 and not allow_empty:
            msg = f"{path}: tree '{tree}' has no entries"
            raise InputError(msg)
        found = tuple(sorted((role, b) for role, b in optional.items() if b in keys))
        try:
            # reading the last basket of one needed branch catches truncated files here
            if entries:
                obj[needed[0]].array(entry_start=entries - 1, entry_stop=entries, library="np")
        except Exception as err:  # noqa: BLE001
            msg = f"{path}: file is truncated or corrupt: cannot read branch '{needed[0]}' ({_short(err)})"
            raise InputError(msg) from None
    return FileInfo(path=path, dataset=dataset, treename=tree, entries=entries, optional=found)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"{err.__class__.__name__}: {first}"[:200]
