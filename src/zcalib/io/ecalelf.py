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


def _leptons_loop(
    energy: NDArray[Any],
    eta: NDArray[Any],
    sc_eta: NDArray[Any],
    phi: NDArray[Any],
    r9: NDArray[Any],
    gain_index: NDArray[Any],
    ele_id: NDArray[Any],
    charge: NDArray[Any],
    id_mask: int,
    medium: int,
    tight: int,
) -> tuple[NDArray[Any], ...]:  # pragma: no cover
    """Slots 0 and 1 of the ``[3]`` branches in one pass: float64 kinematics, gains as
    12/6/1 (-1: unknown index), the ID decision for ``id_mask``, the working points as
    :data:`ID_BITS` (``medium``, ``tight``) and the charges (zeros when ``charge`` is empty)."""
    n = energy.shape[0]
    e_out = np.empty((n, 2))
    eta_out = np.empty((n, 2))
    sc_out = np.empty((n, 2))
    phi_out = np.empty((n, 2))
    r9_out = np.empty((n, 2))
    gain = np.empty((n, 2), np.int64)
    id_pass = np.empty((n, 2), np.bool_)
    bits = np.empty((n, 2), np.int64)
    q = np.zeros((n, 2), np.int64)
    has_charge = charge.shape[0] == n
    for i in range(n):
        for j in range(2):
            e_out[i, j] = energy[i, j]
            eta_out[i, j] = eta[i, j]
            sc_out[i, j] = sc_eta[i, j]
            phi_out[i, j] = phi[i, j]
            r9_out[i, j] = r9[i, j]
            g = np.int64(gain_index[i, j])
            gain[i, j] = 12 if g == 0 else (6 if g == 1 else (1 if g == 2 else -1))
            word = np.int64(ele_id[i, j])
            id_pass[i, j] = (word & id_mask) == id_mask
            b = 0
            if word & 0x08:
                b |= medium
            if word & 0x10:
                b |= tight
            bits[i, j] = b
            if has_charge:
                q[i, j] = charge[i, j]
    return e_out, eta_out, sc_out, phi_out, r9_out, gain, id_pass, bits, q


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
    ) -> Leptons:
        """Slots 0 and 1 of every per-electron branch (one compiled pass over them)."""
        n = len(events)
        eta = _numpy(events["etaEle"])
        charge = (
            _numpy(events[available["charge"]])
            if "charge" in available
            else np.zeros((0, 3), dtype=np.int32)
        )
        energy, eta2, sc_eta, phi, r9, gain, id_pass, id_bits, q = jitted(_leptons_loop)(
            _numpy(events["energy_ECAL_ele"]),
            eta,
            _numpy(events[available["sc_eta"]]) if "sc_eta" in available else eta,
            _numpy(events["phiEle"]),
            _numpy(events["R9Ele"]),
            _numpy(events["gainSeedSC"]),
            _numpy(events["eleID"]),
            charge,
            _ID_BITS[id_level],
            ID_BITS["medium"],
            ID_BITS["tight"],
        )
        return Leptons(
            energy=energy,
            eta=eta2,
            sc_eta=sc_eta,
            phi=phi,
            r9=r9,
            gain=gain,
            id_pass=id_pass,
            charge=q,
            valid=np.ones((n, 2), dtype=bool),
            id_bits=id_bits,
            **event_columns(events, n, run="runNumber", **optional_fields(available)),
        )


ECALELF = EcalelfFormat()
