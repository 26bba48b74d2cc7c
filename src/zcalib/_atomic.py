"""Atomic file output: write to a temporary file in the target folder, then rename.

Temporary files are named ``.<name>.<pid>.<random>.tmp`` (``.tmp.root`` for ROOT files), so a
later run can tell the leftovers of a killed process (its pid no longer runs) from the files
another run is writing right now: :func:`clean_stale_temporaries`.

Inside :func:`written_together`, the renames are deferred to the end of the block: the files
of one output set appear together, or (an error, a full disk) none of them does.

After :func:`mark_interrupted` (the command's Ctrl-C handler calls it) no rename happens: a
``KeyboardInterrupt`` raised by a signal handler can land in a ``__del__`` or a callback, where
Python only prints it ("Exception ignored in ..."), and the run would go on to publish its
outputs. The rename refuses instead, so an interrupted run writes nothing whichever frame the
interrupt hit.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from zcalib.exceptions import OutputError

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale_temporaries",
    "interrupted",
    "mark_interrupted",
    "temporary_sibling",
    "written_together",
]

log = logging.getLogger(__name__)

#: ``.<name>.<pid>.<mkstemp random>.tmp[.root]``
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp(?:\.root)?")

#: Pending ``(temporary, final)`` renames of the innermost :func:`written_together` block.
_PENDING: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "zcalib_pending_renames", default=None
)


#: Set by the command's SIGINT handler: this process publishes no more output.
_INTERRUPTED = threading.Event()


def mark_interrupted(value: bool = True) -> None:
    """Record (or, with ``False``, forget) a Ctrl-C: later renames raise ``KeyboardInterrupt``."""
    if value:
        _INTERRUPTED.set()
    else:
        _INTERRUPTED.clear()


def interrupted() -> bool:
    """Whether :func:`mark_interrupted` was called in this process (and not forgotten)."""
    return _INTERRUPTED.is_set()


def _refuse_if_interrupted() -> None:
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def temporary_sibling(path: str | Path, suffix: str = ".tmp") -> Path:
    """Create (empty) and return a temporary file next to ``path``, named after this process.

    Raises:
        OutputError: the folder cannot be created or written.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=suffix, dir=p.parent)
    except OSError as err:
        msg = f"{p}: cannot create output ({err.strerror or err})"
        raise OutputError(msg) from None
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final`` now, or at the end of the enclosing written_together."""
    pending = _PENDING.get()
    if pending is None:
        _refuse_if_interrupted()
        tmp.replace(final)
    else:
        pending.append((tmp, final))


@contextlib.contextmanager
def written_together() -> Iterator[None]:
    """Defer the renames of every atomic write inside the block to its successful end.

    On an exception (an :class:`OutputError` for a full disk, Ctrl-C...) the temporary files
    are removed and no output of the block appears, so a folder never holds half of a new
    output set next to half of an old one.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with written_together():
        ...     _ = atomic_write_text(d / "a.txt", "a")
        ...     (d / "a.txt").exists()
        False
        >>> (d / "a.txt").read_text()
        'a'
    """
    outer = _PENDING.get()
    if outer is not None:  # nested: the outermost block publishes
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _PENDING.reset(token)
    try:
        _refuse_if_interrupted()
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in pending:
        tmp.replace(final)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[str] | IO[bytes]]:
    """Open a temporary sibling of ``path``; on success rename it onto ``path``.

    A crash or exception inside the ``with`` block leaves no file at ``path`` (and removes
    the temporary file), so readers never see a half-written output.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_open(p) as fh:
        ...     _ = fh.write("hello")
        >>> p.read_text()
        'hello'
    """
    p = Path(path)
    tmp = temporary_sibling(p)
    try:
        with tmp.open(mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        _publish(tmp, p)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        msg = f"{p}: cannot write output ({err.strerror or err})"
        raise OutputError(msg) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_open(path, "w") as fh:
        fh.write(text)  # type: ignore[call-overload]
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)  # type: ignore[arg-type]
    return Path(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files a killed zcalib process left in ``folder``; return them.

    Only files named as :func:`temporary_sibling` names them whose process no longer runs
    are removed: a concurrent run's files in progress are kept. Not recursive.
    """
    d = Path(folder)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = _TEMP.fullmatch(p.name)
        if m is None or _running(int(m["pid"])) or not p.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
            log.info("removed %s (left by a killed run, pid %s)", p, m["pid"])
    return removed
