"""Atomic file output: write to a temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from zcalib.exceptions import OutputError

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]


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
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as err:
        msg = f"{p}: cannot create output ({err.strerror or err})"
        raise OutputError(msg) from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        Path(tmp).replace(p)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        msg = f"{p}: cannot write output ({err.strerror or err})"
        raise OutputError(msg) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
