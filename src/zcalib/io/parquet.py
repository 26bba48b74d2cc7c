"""Pair skims written by :func:`zcalib.skim.skim`: one row per selected pair, columns
``energy_1, energy_2, eta_1, ...`` (:data:`~zcalib.io._base.SKIM_LEPTON_COLUMNS`) and
:data:`~zcalib.io._base.SKIM_EVENT_COLUMNS`. The ``id_1/id_2`` columns hold the working
points each lepton passes as :data:`~zcalib.io._base.ID_BITS`.

Chunks are read by :class:`ParquetChunkReader` (only the row groups of the chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from coffea import processor
from numpy.typing import NDArray

from zcalib.io._base import (
    ID_BITS,
    KIND_OF_ROLE,
    READ_BYTES_KEY,
    SKIM_EVENT_COLUMNS,
    SKIM_LEPTON_COLUMNS,
    ColumnMap,
    EventBranch,
    InputFormat,
    Kind,
    Layout,
    Leptons,
    event_columns,
    optional_fields,
    pair_cols,
)

__all__ = ["PARQUET", "ParquetChunkReader", "ParquetFormat"]


class ParquetFormat(InputFormat):
    """Parquet pair skims (see the module docstring)."""

    name = "parquet"
    #: Parquet has no trees; its entry is a placeholder coffea's fileset needs.
    default_tree = "pairs"
    reader: ClassVar[Literal["root", "parquet"]] = "parquet"
    sources: ClassVar[dict[str, str]] = {
        "energy": "energy_1/energy_2",
        "eta": "eta_1/eta_2",
        "phi": "phi_1/phi_2",
        "r9": "r9_1/r9_2",
    }

    def required(self, column_map: ColumnMap | None = None) -> list[str]:
        """Every lepton column, ``run`` and ``weight``."""
        del column_map
        return [f"{c}_{i}" for c in SKIM_LEPTON_COLUMNS for i in (1, 2)] + ["run", "weight"]

    def branch_types(self, column_map: ColumnMap | None = None) -> dict[str, tuple[Kind, Layout]]:
        """Every skim column holds one value per row (pair)."""
        del column_map
        out: dict[str, tuple[Kind, Layout]] = {
            f"{c}_{i}": (KIND_OF_ROLE[c], "scalar") for c in SKIM_LEPTON_COLUMNS for i in (1, 2)
        }
        out.update({c: (KIND_OF_ROLE[c], "scalar") for c in SKIM_EVENT_COLUMNS})
        return out

    def optional(self, column_map: ColumnMap | None = None) -> dict[str, str]:
        """``npu``, ``lumi``, ``event`` when the source had them."""
        del column_map
        return {"weight": "weight", "npu": "npu", "lumi": "lumi", "event": "event"}

    def lacks(self, role: EventBranch, column_map: ColumnMap | None) -> str:
        """``the file has no 'lumi' column``."""
        return f"the file has no '{role}' column"

    def extract(
        self,
        events: Any,
        *,
        id_level: str,
        available: Mapping[str, str],
        column_map: ColumnMap | None,
        columns: tuple[str, ...] = (),
    ) -> Leptons:
        """The lepton record of a pair skim (one row per pair)."""
        n = len(events)

        def pair(name: str, dtype: Any) -> NDArray[Any]:
            return pair_cols(events, (f"{name}_1", f"{name}_2"), dtype)

        need = ID_BITS[id_level]
        id_bits = pair("id", np.int64)
        return Leptons(
            energy=pair("energy", np.float64),
            eta=pair("eta", np.float64),
            sc_eta=pair("sc_eta", np.float64),
            phi=pair("phi", np.float64),
            r9=pair("r9", np.float64),
            gain=pair("gain", np.int64),
            id_pass=(id_bits & need) == need,
            charge=pair("charge", np.int64),
            valid=np.ones((n, 2), dtype=bool),
            id_bits=id_bits,
            **event_columns(events, n, run="run", **optional_fields(available)),
            columns={c: pair(c, np.float64) for c in columns},
        )

    def column_branches(self, name: str, column_map: ColumnMap | None) -> tuple[str, ...]:
        """The skim columns ``<name>_1`` and ``<name>_2``."""
        del column_map
        return (f"{name}_1", f"{name}_2")

    def branch_names(self, path: str, tree: str) -> set[str]:
        """Column names of the Parquet file."""
        import pyarrow.parquet as pq

        del tree
        return set(pq.read_schema(path).names)

    def read(
        self, path: str, tree: str, columns: list[str], entry_stop: int | None = None
    ) -> dict[str, Any]:
        """Read columns with pyarrow (awkward arrays)."""
        import awkward as ak
        import pyarrow.parquet as pq

        del tree
        table = pq.read_table(path, columns=columns)
        out = {c: ak.from_arrow(table.column(c)) for c in columns}
        return {c: a[:entry_stop] if entry_stop is not None else a for c, a in out.items()}


PARQUET = ParquetFormat()


class _Columns(dict):  # type: ignore[type-arg]
    """A column mapping with the ``metadata`` coffea's ``from_preloaded`` needs."""

    metadata: dict[str, Any]


class ParquetChunkReader(processor.ProcessorABC):  # type: ignore[misc]
    """Read a Parquet chunk's rows with pyarrow, then run the real processor on them.

    coffea 2026.9 reads Parquet input through ``Runner(format="parquet")``, but its column
    source reads a *whole column of the file* for every chunk and slices it, so the cost of a
    file grows with (rows x chunks). This wrapper leaves coffea's lazy events untouched (no
    column of them is ever read) and instead reads only the row groups that overlap the
    chunk's entry range, and only the skim columns, with ``pyarrow``; it builds NanoEvents
    with the same record layout (``NanoEventsFactory.from_preloaded``, ``BaseSchema``, the same
    metadata) and calls the inner processor's ``process`` on them. Chunking, executors,
    retries, checkpoints and metrics stay coffea's.

    Args:
        inner: the processor to run (``ZeeProcessor``, the skimmer).
    """

    def __init__(self, inner: processor.ProcessorABC) -> None:
        self.inner = inner
        self._files: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "_files": {}}

    def _file(self, path: str) -> Any:
        import pyarrow.parquet as pq

        pf = self._files.get(path)
        if pf is None:
            if len(self._files) > 8:
                self._files.clear()
            pf = self._files[path] = pq.ParquetFile(path)
        return pf

    def process(self, events: Any) -> Any:
        """Read rows ``entrystart..entrystop`` of the chunk's file and process them."""
        import awkward as ak
        from coffea.nanoevents import BaseSchema, NanoEventsFactory

        meta = dict(events.metadata)
        path = str(meta["filename"])
        start, stop = int(meta.get("entrystart") or 0), int(meta.get("entrystop") or 0)
        pf = self._file(path)
        names = set(pf.schema_arrow.names)
        columns = [c for c in PARQUET.required() if c in names] + [
            c for c in PARQUET.optional().values() if c in names
        ]
        for name in getattr(self.inner, "category_columns", ()):  # the categories' columns
            columns += [c for c in PARQUET.column_branches(name, None) if c in names]
        groups, offset, first, nbytes = [], 0, None, 0
        md = pf.metadata
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            lo, hi = offset, offset + rg.num_rows
            offset = hi
            if hi <= start or lo >= stop:
                continue
            if first is None:
                first = lo
            groups.append(i)
            for j in range(rg.num_columns):
                if rg.column(j).path_in_schema in columns:
                    nbytes += rg.column(j).total_compressed_size
        table = pf.read_row_groups(groups, columns=columns, use_threads=False)
        table = table.slice(start - (first or 0), stop - start)
        source = _Columns(
            {name: ak.Array(table.column(name).to_numpy()) for name in table.column_names}
        )
        source.metadata = {
            "uuid": str(meta.get("fileuuid") or path),
            "num_rows": len(table),
            "object_path": "pairs",
        }
        chunk = NanoEventsFactory.from_preloaded(
            source, schemaclass=BaseSchema, metadata=meta
        ).events()
        out = self.inner.process(chunk)
        out[READ_BYTES_KEY] = nbytes
        return out

    def postprocess(self, accumulator: Any) -> Any:
        """Delegate to the inner processor."""
        return self.inner.postprocess(accumulator)
