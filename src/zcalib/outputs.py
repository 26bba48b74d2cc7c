"""A derivation folder written as a unit: one run id, checked before any work.

Every command that writes a folder runs inside :func:`output_run`:

* the folder's writability is checked **before** any work (a read-only or missing parent,
  a path under a file: one-line :class:`~zcalib.exceptions.OutputError`, nothing run);
* temporary files a killed run left there are removed
  (:func:`zcalib._atomic.clean_stale_temporaries`);
* a **run id** (``20261203T124500Z-3fa91c``: UTC time and 24 random bits) is current while
  the run writes; each output carries it where its format has room for it: a ``run_id``
  field in JSON records (``fit_result.json``, ``validation.json``, ``scans.json``,
  metrics, ``pipeline.json``, ``systematics.json``, ``lineshape.json``, ``stats.json``,
  ``time_stability.json``, ``truth.json``...), ``zcalib run <id>`` in the correctionlib
  description (:func:`~zcalib.corrections.write_correction_set` adds it to every payload) and
  in a ``#`` comment line of the legacy ``.dat`` files, TSV tables and YAML outputs, a
  ``zcalib run`` text chunk in PNGs, the histogram header of ``.npz`` files and a
  ``zcalib_run_id`` string in generated ROOT files.

  Two outputs have no room for it and carry none: the pyhf ``workspace.json`` (its schema
  forbids extra keys) and pymin's run-divide ``run_bins.dat`` (no comment lines); the
  ``run_bins.yaml`` written with the latter carries the id of both.

:func:`check_one_run` reads them back: a folder whose own files (subfolders are their own
units, e.g. ``validation/`` written later by ``zcalib validate``) come from two runs is
refused by ``zcalib report`` with a one-line message naming both files and run ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import gzip
import json
import logging
import re
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zcalib._atomic import clean_stale_temporaries, temporary_sibling
from zcalib.exceptions import InputError, InvalidConfig, OutputError

__all__ = [
    "RUN_ID_FIELD",
    "check_one_run",
    "check_step_name",
    "check_writable",
    "current_run_id",
    "file_run_id",
    "new_run_id",
    "output_run",
    "restamp",
    "run_tag",
    "stamp",
    "without_run_ids",
]

log = logging.getLogger(__name__)

#: A step name: part of file names inside the output folder (``<step>_scales.dat``), of the
#: pipeline's step folders and of correction names (``EGMScale_<step>_<era>``). The one rule
#: of ``zcalib fit/systematics --step``, pipeline step names and ``--corrections NAME=PATH``.
STEP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_step_name(step: str, field: str = "step") -> str:
    """Return ``step`` if it is a plain name (:data:`STEP_NAME`); else raise
    :class:`~zcalib.exceptions.InvalidConfig` naming ``field``, the value and what is allowed.

    Step names go into file and folder names under the output folder, so one such as
    ``../../x`` would write outside it.
    """
    if not isinstance(step, str) or not STEP_NAME.fullmatch(step):
        msg = (
            f"{field} {step!r}: not a plain name (it is used in file names inside the output "
            "folder and in correction names); allowed: letters, digits and _, starting with "
            "a letter"
        )
        raise InvalidConfig(msg)
    return step


#: The JSON field of the run id.
RUN_ID_FIELD = "run_id"
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
_TAGGED = re.compile(r"zcalib run (" + _RUN_ID.pattern + r")")
#: Suffixes that make an output path a file (its folder is the parent) rather than a folder.
_FILE_SUFFIXES = frozenset(
    {".npz", ".json", ".gz", ".dat", ".txt", ".html", ".yaml", ".yml", ".root", ".parquet"}
)

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("zcalib_run_id", default=None)


def new_run_id() -> str:
    """A fresh run id: UTC time to the second and 24 random bits.

    Example:
        >>> bool(_RUN_ID.fullmatch(new_run_id()))
        True
    """
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


@functools.cache
def _process_run_id() -> str:
    return new_run_id()


def current_run_id() -> str:
    """The id of the run in progress (:func:`output_run`).

    Outside one (library calls from a script or notebook), the id of this process: what one
    Python session writes into a folder is one run.
    """
    return _CURRENT.get() or _process_run_id()


def run_tag() -> str:
    """``"zcalib run <id>"`` of the current run, for free-text fields (descriptions, comments)."""
    return f"zcalib run {current_run_id()}"


def stamp(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with the current run id as its first field (``run_id``)."""
    return {
        RUN_ID_FIELD: current_run_id(),
        **{k: v for k, v in record.items() if k != RUN_ID_FIELD},
    }


def output_folder(out: str | Path) -> Path:
    """The folder an output path writes into: ``out`` itself, or its parent for a file."""
    p = Path(out)
    return p.parent if p.suffix.lower() in _FILE_SUFFIXES else p


def check_writable(folder: str | Path) -> bool:
    """Create ``folder`` if needed and check that a file can be created in it.

    Returns:
        Whether the folder was created by this call.

    Raises:
        OutputError: it cannot be created or written (names the folder and the reason).
    """
    d = Path(folder)
    existed = d.is_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"{d}: output folder cannot be created ({err.strerror or err}); nothing was run"
        raise OutputError(msg) from None
    try:
        probe = temporary_sibling(d / ".zcalib-write-check")
    except OutputError:
        msg = f"{d}: output folder is not writable; nothing was run"
        raise OutputError(msg) from None
    probe.unlink(missing_ok=True)
    return not existed


@contextlib.contextmanager
def output_run(out: str | Path | None, *, fresh: bool = False) -> Iterator[str]:
    """Run one command's writes into ``out`` as one run; yields the run id.

    Checks that the output folder (``out``, or its parent when ``out`` names a file) can be
    written before anything else, removes the temporary files of killed runs there, and
    makes the run id current: a new one with ``fresh`` (each CLI command is a run), else
    the process's (library calls of one Python session are one run). A folder created here
    and left empty by a failed run is removed again. Nested calls join the outer run.

    Raises:
        OutputError: the output folder cannot be written.
    """
    active = _CURRENT.get()
    if active is not None:
        yield active
        return
    folder = output_folder(out) if out is not None else None
    created = False
    if folder is not None:
        created = check_writable(folder)
        clean_stale_temporaries(folder)
    run_id = new_run_id() if fresh else _process_run_id()
    token = _CURRENT.set(run_id)
    try:
        yield run_id
    except BaseException:
        if created and folder is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty: no partial output
        raise
    finally:
        _CURRENT.reset(token)


def restamp(text: str) -> str:
    """A legacy text file's content copied into this run: its ``# zcalib run`` comment
    lines replaced by one of the current run.

    Example:
        >>> restamp("#h\n1 2\n# zcalib run 20260101T000000Z-abcdef\n").count("zcalib run")
        1
    """
    kept = [line for line in text.splitlines() if not _TAGGED.search(line)]
    return "\n".join([*kept, f"# {run_tag()}"]) + "\n"


def without_run_ids(data: bytes) -> bytes:
    """``data`` with every run id removed (to hash outputs by their physics content).

    Example:
        >>> without_run_ids(b'{"run_id": "20260101T000000Z-abcdef", "a": 1}')
        b'{"run_id": "", "a": 1}'
    """
    return re.sub(_RUN_ID.pattern.encode(), b"", data)


# ----------------------------------------------------------------------------- reading back
def _json_run_id(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        obj = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    except (OSError, EOFError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    rid = obj.get(RUN_ID_FIELD)
    if isinstance(rid, str):
        return rid
    desc = obj.get("description")  # correctionlib payloads
    m = _TAGGED.search(desc) if isinstance(desc, str) else None
    return m.group(1) if m else None


def _npz_run_id(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z, z.open("header.npy") as fh:
            import numpy as np

            header = json.loads(np.lib.format.read_array(fh, allow_pickle=False).tobytes())
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    rid = header.get(RUN_ID_FIELD) if isinstance(header, dict) else None
    return rid if isinstance(rid, str) else None


def _parquet_run_id(path: Path) -> str | None:
    """The run id in the provenance record of a zcalib Parquet skim."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from zcalib.io.preflight import SKIM_METADATA_KEY

    try:
        meta = pq.read_schema(path).metadata or {}
        record = json.loads(meta.get(SKIM_METADATA_KEY.encode(), b"{}"))
    except (OSError, pa.ArrowException, ValueError):
        return None
    rid = record.get(RUN_ID_FIELD) if isinstance(record, dict) else None
    return rid if isinstance(rid, str) else None


def _png_run_id(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}) or {}
    except (OSError, UnidentifiedImageError):
        return None
    rid = str(text.get("zcalib run", ""))
    return rid if _RUN_ID.fullmatch(rid) else None


def _text_run_id(path: Path) -> str | None:
    """The ``zcalib run`` tag in the first or last 4 KiB of a text file."""
    try:
        with path.open("rb") as fh:
            size = path.stat().st_size
            head = fh.read(min(size, 4096))
            fh.seek(max(0, size - 4096))
            text = (head + b"\n" + fh.read()).decode("utf-8", "replace")
    except OSError:
        return None
    m = _TAGGED.search(text)
    return m.group(1) if m else None


def _root_run_id(path: Path) -> str | None:
    """The ``zcalib_run_id`` string of a ROOT file zcalib wrote (``generate``)."""
    import uproot

    try:
        with uproot.open(path) as f:
            if "zcalib_run_id" not in f:
                return None
            rid = str(f["zcalib_run_id"])
    except (OSError, ValueError, KeyError):
        return None
    return rid if _RUN_ID.fullmatch(rid) else None


def file_run_id(path: str | Path) -> str | None:
    """The run id an output file carries, ``None`` if it has none (or is not an output)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json" or p.name.endswith(".json.gz"):
        return _json_run_id(p)
    if suffix == ".npz":
        return _npz_run_id(p)
    if suffix == ".png":
        return _png_run_id(p)
    if suffix in (".dat", ".tsv", ".yaml", ".yml"):
        return _text_run_id(p)
    if suffix == ".root":
        return _root_run_id(p)
    if suffix == ".parquet":
        return _parquet_run_id(p)
    return None


def check_one_run(folder: str | Path) -> str | None:
    """Check that the files directly in ``folder`` come from one run; return its id.

    Files without a run id (older outputs, files added by hand) are not compared.

    Raises:
        InputError: two run ids; the message names a file of each.
    """
    d = Path(folder)
    seen: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or p.is_symlink() or not p.is_file():
            continue
        rid = file_run_id(p)
        if rid is None or rid in seen:
            continue
        seen[rid] = p
        if len(seen) == 2:
            (a, pa), (b, pb) = seen.items()
            msg = (
                f"{d}: files of two runs: {pa.name} (run {a}) and {pb.name} (run {b}); "
                "rerun the command into an empty folder"
            )
            raise InputError(msg)
    return next(iter(seen), None)
