"""Work-arounds for coffea behaviour that breaks valid zcalib inputs.

coffea's ``Runner`` keys every input file by ``md5(bytes("dataset;path;tree", "ascii"))``
(``coffea.util._hash``), so a non-ASCII character in a file path or a dataset name
(``/data/Zée/run.root``, a dataset called ``données``) fails with ``UnicodeEncodeError``
before any event is read. :func:`install` replaces that key by the same md5 of the UTF-8
bytes: identical for ASCII names (the key never changes for existing inputs), defined for
every other name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

__all__ = ["install", "utf8_hash"]


def utf8_hash(items: Iterable[Any]) -> int:
    """coffea's persistent key of ``items``, over UTF-8 instead of ASCII bytes.

    Example:
        >>> from coffea.util import _hash
        >>> utf8_hash(("data", "/d/a.root", "selected")) == _hash(("data", "/d/a.root", "selected"))
        True
    """
    digest = hashlib.md5(";".join(str(x) for x in items).encode("utf-8"))
    return int(digest.hexdigest()[:16], base=16)


def install() -> None:
    """Use :func:`utf8_hash` wherever coffea's executors key files (idempotent)."""
    from coffea.processor import executor

    executor._hash = utf8_hash
