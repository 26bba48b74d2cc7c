"""Content fingerprints of input files: what the pipeline cache and checkpoints are keyed on.

A local file's fingerprint hashes its *whole* content (xxh3-128, the non-cryptographic hash
uproot already depends on; about 2 GB/s on one core, see ``benchmarks/bench_fingerprint.py``),
so any change of content, anywhere in the file, gives a new fingerprint and a cache miss.
The result is memoised per process on the file's identity and status (device, inode, size,
modification and status-change times, which every write updates), so a pipeline, or a
worker writing checkpoints chunk by chunk, hashes each file once.

A URL (``root://``, ``https://``...) is not downloaded: its fingerprint hashes what the
server reports about it (size, modification time, checksum when the protocol gives one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xxhash

from zcalib.config import is_url

__all__ = ["file_fingerprint"]

_BLOCK = 1 << 22
_MEMO: dict[tuple[Any, ...], str] = {}
_MEMO_MAX = 4096


def file_fingerprint(path: str) -> str:
    """A 32-hex-digit fingerprint of a file's content (of a URL's server metadata).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.bin"
        >>> _ = p.write_bytes(b"abc" * 1000)
        >>> a = file_fingerprint(str(p))
        >>> _ = p.write_bytes(b"abc" * 500 + b"abd" + b"abc" * 499)
        >>> a == file_fingerprint(str(p)), len(a)
        (False, 32)
    """
    if is_url(path):
        return _remote_fingerprint(path)
    st = Path(path).stat()
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    found = _MEMO.get(key)
    if found is not None:
        return found
    h = xxhash.xxh3_128()
    with Path(path).open("rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    digest = h.hexdigest()
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = digest
    return digest


def _remote_fingerprint(url: str) -> str:
    """Hash of the size, modification time and checksum the server reports for ``url``."""
    import fsspec

    fs, where = fsspec.core.url_to_fs(url)
    info = fs.info(where)
    record: dict[str, Any] = {
        k: info.get(k) for k in ("size", "mtime", "modify_time", "LastModified", "ETag")
    }
    try:
        record["checksum"] = fs.checksum(where)
    except (NotImplementedError, OSError, ValueError):
        record["checksum"] = None
    text = json.dumps([url, record], sort_keys=True, default=str)
    return xxhash.xxh3_128_hexdigest(text.encode())
