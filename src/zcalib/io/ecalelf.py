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

from zcalib.io._base import (
    ID_BITS,
    ColumnMap,
    EventBranch,
    InputFormat,
    Leptons,
    event_columns,
    np_col,
    optional_fields,
)

__all__ = ["ECALELF", "EcalelfFormat"]

_GAIN = np.array([12, 6, 1], dtype=np.int64)
_ID_BITS = {"none": 0, "medium": 0x08, "tight": 0x10}
_EVENT_BRANCHES = {"run": "runNumber", "lumi": "lumiBlock", "event": "eventNumber"}


def _first2(column: Any, dtype: Any) -> NDArray[Any]:
    """Slots 0 and 1 of a fixed-size ``[3]`` ECALELF branch (sliced in numpy: no copy of the
    whole awkward RegularArray)."""
    values = column if isinstance(column, np.ndarray) else ak.to_numpy(column)
    return np.asarray(values[:, :2], dtype=dtype)


class EcalelfFormat(InputFormat):
    """ECALELF ntuples (see the module docstring)."""

    name = "ecalelf"
    default_tree = "selected"
    reads_columns = True
    id_levels = ("none", "medium", "tight")
    id_field = "ECALELF eleID"
    column_layout = "array"
    sources: ClassVar[dict[str, str]] = {
        "energy": "energy_ECAL_ele",
        "eta": "etaEle",
        "phi": "phiEle",
        "r9": "R9Ele",
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
        """Slots 0 and 1 of every per-electron branch."""
        n = len(events)
        energy = _first2(events["energy_ECAL_ele"], np.float64)
        eta = _first2(events["etaEle"], np.float64)
        sc_eta = (
            np_col(events[available["sc_eta"]][:, :2], np.float64) if "sc_eta" in available else eta
        )
        gain_idx = _first2(events["gainSeedSC"], np.int64)
        gain = np.where((gain_idx >= 0) & (gain_idx <= 2), _GAIN[np.clip(gain_idx, 0, 2)], -1)
        bits = _ID_BITS[id_level]
        ele_id = _first2(events["eleID"], np.int64)
        id_pass = (ele_id & bits) == bits
        ecal_bits = np.zeros(ele_id.shape, dtype=np.int64)
        ecal_bits[(ele_id & 0x08) == 0x08] |= ID_BITS["medium"]
        ecal_bits[(ele_id & 0x10) == 0x10] |= ID_BITS["tight"]
        charge = (
            np_col(events[available["charge"]][:, :2], np.int64)
            if "charge" in available
            else np.zeros((n, 2), np.int64)
        )
        return Leptons(
            energy=energy,
            eta=eta,
            sc_eta=sc_eta,
            phi=_first2(events["phiEle"], np.float64),
            r9=_first2(events["R9Ele"], np.float64),
            gain=gain,
            id_pass=id_pass,
            charge=charge,
            valid=np.ones((n, 2), dtype=bool),
            id_bits=ecal_bits,
            **event_columns(events, n, run="runNumber", **optional_fields(available)),
            columns={c: _first2(events[c], np.float64) for c in columns},
        )


ECALELF = EcalelfFormat()
