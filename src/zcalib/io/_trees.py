"""Tree headers read once per file and process, not once per chunk.

coffea's ``Runner`` opens the file of every chunk and reads its tree header (the metadata of
every branch: 8-10 ms for the 15 branches of a demo ECALELF tree, more for production trees)
before calling the processor. uproot looks a tree up in the file's *object cache* before
reading it, keyed by the file's UUID and the position of the tree's key (a rewritten file
never matches). :data:`OPEN_TREES` is one such cache for all the files opened in a process,
handed to coffea as ``uproot_options={"object_cache": OPEN_TREES}`` (:func:`uproot_options`).
It holds, per thread, the trees of the last few files the processor read through a file it
keeps open (:meth:`OpenTrees.pin`), so that coffea's later chunks of those files find their
tree there. Objects read through coffea's own per-chunk files are not kept (those files
close with the chunk).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["OPEN_TREES", "OpenTrees", "uproot_options"]

#: Files (and their trees) kept open per process.
_KEEP = 2


class OpenTrees(MutableMapping[str, Any]):
    """uproot object cache holding the trees of the files pinned by :meth:`pin`.

    Each thread sees only the files it pinned itself (a Dask worker may run several
    threads): a file is closed when the thread that pinned it pins newer ones, never while
    another thread reads through it. Pickles as a reference to the process's own
    :data:`OPEN_TREES` (coffea ships its uproot options to Dask and futures workers).
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_open_trees, ())

    @property
    def _files(self) -> OrderedDict[str, tuple[Any, str, Any]]:
        """This thread's pinned files: ``{path: (file, cache key, tree)}``, oldest first."""
        files = getattr(self._local, "files", None)
        if files is None:
            files = self._local.files = OrderedDict()
        return files

    def _trees(self) -> dict[str, Any]:
        return {key: tree for _, key, tree in self._files.values()}

    def __getitem__(self, key: str) -> Any:
        return self._trees()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        """Objects read through coffea's per-chunk files are not kept."""

    def __delitem__(self, key: str) -> None:
        for path, (fh, k, _) in list(self._files.items()):
            if k == key:
                del self._files[path]
                fh.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self._trees())

    def __len__(self) -> int:
        return len(self._files)

    def clear(self) -> None:
        """Close this thread's pinned files."""
        while self._files:
            _, (fh, _, _) = self._files.popitem()
            fh.close()

    def pin(self, tree: Any, metadata: Mapping[str, Any]) -> Any:
        """The chunk's tree, read through a file kept open when the file has more chunks.

        Args:
            tree: the tree coffea read for the chunk (or found here).
            metadata: coffea's chunk metadata (file, tree name, entry range).

        Returns:
            The pinned tree of the same file (same UUID), or ``tree`` itself for a file read
            in one chunk, a remote file, or a file that changed since coffea opened it.
        """
        import uproot

        path = str(metadata["filename"])
        files = self._files
        have = files.get(path)
        if have is not None and have[2].file.uuid == tree.file.uuid:
            files.move_to_end(path)
            return have[2]
        one_chunk = int(metadata["entrystop"]) - int(metadata["entrystart"]) >= tree.num_entries
        if one_chunk or ("://" in path and not path.startswith("file://")):
            return tree
        name = str(metadata["treename"])
        fh = uproot.open({path: None}, object_cache=None, array_cache=None)
        pinned = fh[name]
        if pinned.file.uuid != tree.file.uuid:  # the file changed since coffea opened it
            fh.close()
            return tree
        if have is not None:
            del files[path]
            have[0].close()
        files[path] = (fh, fh.key(name).cache_key, pinned)
        while len(files) > _KEEP:
            _, (old, _, _) = files.popitem(last=False)
            old.close()
        return pinned


#: The process's shared tree cache (see the module docstring).
OPEN_TREES = OpenTrees()


def _open_trees() -> OpenTrees:
    return OPEN_TREES


def uproot_options() -> dict[str, Any]:
    """The ``uproot_options`` coffea's ``Runner.run`` opens every chunk's file with."""
    return {"object_cache": OPEN_TREES}
