"""ECALELF ``selected`` trees: fixed-size ``[3]`` per-electron arrays (slots 0 and 1 are the pair).

``gainSeedSC`` is an index (0 = gain 12, 1 = gain 6, 2 = gain 1), ``eleID`` a bitmask
(medium = 0x08, tight = 0x10); ``lumiBlock``, ``eventNumber``, ``etaSCEle``, ``chargeEle``,
``mcGenWeight`` and ``nPU`` are optional.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from numpy.typing import NDArray

from zcalib._jit import jitted
from zcalib.io._base import (
    ID_BITS,
    ColumnMap,
    EventBranch,
    InputFormat,
    Leptons,
    event_columns,
    optional_fields,
)

__all__ = ["ECALELF", "EcalelfFormat"]

_ID_BITS = {"none": 0, "medium": 0x08, "tight": 0x10}
_EVENT_BRANCHES = {"run": "runNumber", "lumi": "lumiBlock", "event": "eventNumber"}


def _numpy(column: Any) -> NDArray[Any]:
    """A fixed-size ``[3]`` ECALELF branch as a numpy ``(n, 3)`` array (no copy if numpy)."""
    return column if isinstance(column, np.ndarray) else ak.to_numpy(column)


def _slots(column: NDArray[Any]) -> NDArray[np.float64]:  # pragma: no cover
    """Slots 0 and 1 of a ``(n, 3)`` branch as a float64 ``(n, 2)`` array (compiled: a
    third of numpy's ``astype`` of the strided slice)."""
    n = column.shape[0]
    out = np.empty((n, 2))
    for i in range(n):
        out[i, 0] = column[i, 0]
        out[i, 1] = column[i, 1]
    return out


def _gain_id_loop(
    gain_index: NDArray[Any], ele_id: NDArray[Any], id_mask: int, medium: int, tight: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]:  # pragma: no cover
    """Gains as 12/6/1 (-1: unknown index), the ID decision for ``id_mask`` and the working
    points as :data:`ID_BITS` (``medium``, ``tight``) of slots 0 and 1, in one pass."""
    n = gain_index.shape[0]
    gain = np.empty((n, 2), np.int64)
    id_pass = np.empty((n, 2), np.bool_)
    bits = np.empty((n, 2), np.int64)
    for i in range(n):
        for j in range(2):
            g = gain_index[i, j]
            gain[i, j] = 12 if g == 0 else (6 if g == 1 else (1 if g == 2 else -1))
            word = np.int64(ele_id[i, j])
            id_pass[i, j] = (word & id_mask) == id_mask
            b = 0
            if word & 0x08:
                b |= medium
            if word & 0x10:
                b |= tight
            bits[i, j] = b
    return gain, id_pass, bits


class EcalelfFormat(InputFormat):
    """ECALELF ntuples (see the module docstring)."""

    name = "ecalelf"
    default_tree = "selected"
    reads_columns = True
    id_levels = ("none", "medium", "tight")
    id_field = "ECALELF eleID"
    sources: ClassVar[dict[str, str]] = {
        "energy": "energy_ECAL_ele",
        "eta": "etaEle",
        "phi": "phiEle",
        "r9": "R9Ele",
    }
    lepton_layout = "array"
    lepton_roles: ClassVar[dict[str, str]] = {
        "energy_ECAL_ele": "energy",
        "etaEle": "eta",
        "etaSCEle": "sc_eta",
        "phiEle": "phi",
        "R9Ele": "r9",
        "gainSeedSC": "gain",
        "eleID": "id",
        "chargeEle": "charge",
    }
    event_roles: ClassVar[dict[str, str]] = {
        "runNumber": "run",
        "lumiBlock": "lumi",
        "eventNumber": "event",
        "mcGenWeight": "weight",
        "nPU": "npu",
    }

    def required(self, column_map: ColumnMap | None = None) -> list[str]:
        """Branches every ECALELF file must have."""
        del column_map
        return ["runNumber", "R9Ele", "etaEle", "phiEle", "energy_ECAL_ele", "gainSeedSC", "eleID"]

    def optional(self, column_map: ColumnMap | None = None) -> dict[str, str]:
        """Optional branches by role."""
        del column_map
        return {
            "sc_eta": "etaSCEle",
            "charge": "chargeEle",
            "event": "eventNumber",
            "lumi": "lumiBlock",
            "weight": "mcGenWeight",
            "npu": "nPU",
        }

    def event_branch(
        self, role: EventBranch, available: Mapping[str, str], column_map: ColumnMap | None
    ) -> str | None:
        """``runNumber`` always; ``lumiBlock``/``eventNumber`` when the file has them."""
        if role == "run":
            return "runNumber"
        return available.get(role)

    def lacks(self, role: EventBranch, column_map: ColumnMap | None) -> str:
        """``the file has no 'lumiBlock' branch``."""
        return f"the file has no '{_EVENT_BRANCHES[role]}' branch"

    def extract(
        self,
        events: Any,
        *,
        id_level: str,
        available: Mapping[str, str],
        column_map: ColumnMap | None,
        columns: tuple[str, ...] = (),
    ) -> Leptons:
        """Slots 0 and 1 of every per-electron branch (compiled passes over them)."""
        n = len(events)
        slots = jitted(_slots)
        eta = slots(_numpy(events["etaEle"]))
        sc_eta = slots(_numpy(events[available["sc_eta"]])) if "sc_eta" in available else eta
        gain, id_pass, id_bits = jitted(_gain_id_loop)(
            _numpy(events["gainSeedSC"]),
            _numpy(events["eleID"]),
            _ID_BITS[id_level],
            ID_BITS["medium"],
            ID_BITS["tight"],
        )
        charge = (
            np.asarray(_numpy(events[available["charge"]])[:, :2], dtype=np.int64)
            if "charge" in available
            else np.zeros((n, 2), np.int64)
        )
        return Leptons(
            energy=slots(_numpy(events["energy_ECAL_ele"])),
            eta=eta,
            sc_eta=sc_eta,
            phi=slots(_numpy(events["phiEle"])),
            r9=slots(_numpy(events["R9Ele"])),
            gain=gain,
            id_pass=id_pass,
            charge=charge,
            valid=np.ones((n, 2), dtype=bool),
            id_bits=id_bits,
            **event_columns(events, n, run="runNumber", **optional_fields(available)),
            columns={c: np.asarray(_numpy(events[c])[:, :2], dtype=np.float64) for c in columns},
        )


ECALELF = EcalelfFormat()
