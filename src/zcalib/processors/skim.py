"""The skimmer's processor: select pairs and write them as Parquet part files.

Used by :func:`zcalib.skim.skim` (which merges the parts per source file); see there for the
skim layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zcalib._atomic import atomic_open
from zcalib.io.formats import SKIM_LEPTON_COLUMNS, Leptons, get_format
from zcalib.processors.zee import ZeeProcessor, pair_selection

__all__ = ["ROW_GROUP_SIZE", "SKIM_CUTS", "SkimProcessor"]

#: Cuts a skim applies, in cutflow order (the processor's CUTS without ``categorised``).
SKIM_CUTS: tuple[str, ...] = ("two_leptons", "id", "eta", "et", "charge", "mass")
#: Rows per Parquet row group: the unit a chunk reads (see ``runner.ParquetChunkReader``).
ROW_GROUP_SIZE = 65_536
_COMPRESSION = "zstd"

_INT_TYPES = {"gain": "int16", "charge": "int8", "id": "int8"}
#: Quantities a format stores as float32, so float32 keeps them exactly (the processor's
#: float64 values are conversions of them); computed ones (NanoAOD E = pt cosh η,
#: η_SC = η + Δη_SC) stay float64. ``mass`` is informational (the reader recomputes it).
_FLOAT32_EXACT = {
    "ecalelf": {"energy", "eta", "sc_eta", "phi", "r9", "weight", "npu", "mass"},
    "nanoaod": {"eta", "phi", "r9", "weight", "npu", "mass"},
}


@dataclass
class SkimProcessor(ZeeProcessor):
    """Select pairs and write them as Parquet part files (one per chunk).

    Reuses :class:`ZeeProcessor`'s lepton extraction, value checks and pair selection; the
    category scheme is not used. Output per chunk::

        {"cutflow": {file: {cut: n}}, "sumw": {file: Σw before selection},
         "parts": {(dataset, file, start, stop, part_path, rows)},
         "errors": {...}, "failed": {...}}

    Args:
        parts_dir: folder (shared with the workers) for the part files.
    """

    parts_dir: str = ""

    def event_columns(self, dataset: str) -> list[str]:
        """Per-pair columns written for ``dataset`` (``lumi``/``event``/``npu`` if present)."""
        available = self.available.get(dataset, {})
        form = get_format(self.fmt)
        have = set(available)
        have |= {r for r in ("lumi", "event") if form.event_branch(r, available, self.column_map)}
        if self.fmt == "flat" and self.column_map is not None and self.column_map.npu:
            have.add("npu")
        cols = ["run"]
        cols += [c for c in ("lumi", "event") if c in have]
        cols.append("weight")
        if "npu" in have:
            cols.append("npu")
        cols.append("mass")
        return cols

    def columns(self, dataset: str) -> list[str]:
        """Every column of the skim of ``dataset``, in file order."""
        lep = [f"{c}_{i}" for c in SKIM_LEPTON_COLUMNS for i in (1, 2)]
        return lep + self.event_columns(dataset)

    def schema(self, dataset: str) -> Any:
        """The Arrow schema of the skim of ``dataset``."""
        import pyarrow as pa

        fields = []
        for name in self.columns(dataset):
            base = name.rsplit("_", 1)[0] if name[-2:] in ("_1", "_2") else name
            if base in _INT_TYPES:
                fields.append(pa.field(name, _INT_TYPES[base]))
            elif base in ("run", "lumi", "event"):
                fields.append(pa.field(name, pa.int64()))
            elif base in _FLOAT32_EXACT.get(self.fmt, {"mass"}) and not (
                base == "energy" and self.corrections
            ):  # corrected energies are computed: float64
                fields.append(pa.field(name, pa.float32()))
            else:
                fields.append(pa.field(name, pa.float64()))
        return pa.schema(fields)

    @staticmethod
    def _cutflow_key(meta: Mapping[str, Any]) -> str:
        """Skims keep one cutflow per file (their provenance)."""
        return str(meta.get("filename", "?"))

    def process(self, events: Any) -> dict[str, Any]:
        """Select the pairs of one chunk and write them to a part file."""
        meta = events.metadata
        dataset = meta["dataset"]
        filename = str(meta.get("filename", "?"))
        start, stop = int(meta.get("entrystart") or 0), int(meta.get("entrystop") or 0)
        out: dict[str, Any] = {
            "cutflow": {filename: {"all": len(events)}},
            "sumw": {filename: 0.0},
            "parts": set(),
            "errors": set(),
            "failed": set(),
        }
        lep = self._read_chunk(events, out)
        if lep is None:
            return out
        kind = self.kinds[dataset]
        out["sumw"][filename] = float(lep.weight.sum()) if kind == "mc" else float(len(lep))
        # prior corrections (data scales, MC smearings) applied, as when filling histograms
        energy = self._energy_variations(lep, kind, meta)["nominal"]
        mass, sel = pair_selection(lep, energy, self.selection, self.binning)
        cut = np.ones(len(lep), dtype=bool)
        for name in SKIM_CUTS:
            cut = cut & sel.all(name)
            out["cutflow"][filename][name] = int(cut.sum())
        rows = int(cut.sum())
        path = ""
        if rows:
            table = self._table(lep, energy, mass, cut, dataset)
            digest = hashlib.blake2b(f"{dataset}\0{filename}".encode(), digest_size=8).hexdigest()
            p = Path(self.parts_dir) / f"{digest}-{start}-{stop}.parquet"
            _write_table(table, p)
            path = str(p)
        out["parts"].add((dataset, filename, start, stop, path, rows))
        return out

    def _table(self, lep: Leptons, energy: Any, mass: Any, cut: Any, dataset: str) -> Any:
        import pyarrow as pa

        schema = self.schema(dataset)
        id_bits = lep.id_bits if lep.id_bits is not None else np.zeros_like(lep.gain)
        per_lepton = {
            "energy": energy,
            "eta": lep.eta,
            "sc_eta": lep.sc_eta,
            "phi": lep.phi,
            "r9": lep.r9,
            "gain": lep.gain,
            "charge": lep.charge,
            "id": id_bits,
        }
        per_event = {
            "run": lep.run,
            "lumi": lep.lumi,
            "event": lep.event,
            "weight": lep.weight,
            "npu": lep.npu,
            "mass": mass,
        }
        arrays = []
        for f in schema:
            name = f.name
            if name[-2:] in ("_1", "_2"):
                values = per_lepton[name[:-2]][cut, int(name[-1]) - 1]
            else:
                values = per_event[name][cut]
            arrays.append(pa.array(np.asarray(values).astype(f.type.to_pandas_dtype())))
        return pa.Table.from_arrays(arrays, schema=schema)


def _write_table(table: Any, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    import pyarrow.parquet as pq

    if metadata:
        table = table.replace_schema_metadata(dict(metadata))
    with atomic_open(path, "wb") as fh:
        pq.write_table(table, fh, compression=_COMPRESSION)
