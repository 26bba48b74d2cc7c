"""NanoAOD ``Events``: the jagged ``Electron`` collection.

The supercluster η is ``eta + deltaEtaSC``; ``seedGain`` stores 12/6/1; ``cutBased`` 0-4.
The pair is formed from the two highest-pt electrons passing the ID.
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
    event_weight,
    np_col,
)

__all__ = ["NANOAOD", "NanoaodFormat", "nanoaod_schema"]

_ID = {"none": 0, "loose": 2, "medium": 3, "tight": 4}
_EVENT_BRANCHES = {"run": "run", "lumi": "luminosityBlock", "event": "event"}


def _field(events: Any, name: str) -> Any:
    """A top-level branch, or ``Collection_field`` as NanoAODSchema exposes it."""
    if name in events.fields:
        return events[name]
    prefix, _, rest = name.partition("_")
    return events[prefix][rest]


def nanoaod_schema() -> Any:
    """coffea's NanoAODSchema with its per-file content warnings silenced.

    Real NanoAOD files trigger RuntimeWarnings while the schema is built (missing
    cross-reference indices of collections zcalib never reads, replaced mass branches);
    they say nothing about the electrons used here, so they are not shown.
    """
    import warnings

    from coffea.nanoevents import NanoAODSchema

    class _QuietNanoAODSchema(NanoAODSchema):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                super().__init__(*args, **kwargs)

    return _QuietNanoAODSchema


class NanoaodFormat(InputFormat):
    """NanoAOD (see the module docstring)."""

    name = "nanoaod"
    default_tree = "Events"
    event_ids_always = True
    sources: ClassVar[dict[str, str]] = {
        "energy": "Electron_pt",
        "eta": "Electron_eta",
        "phi": "Electron_phi",
        "r9": "Electron_r9",
    }
    lepton_layout = "jagged"
    lepton_roles: ClassVar[dict[str, str]] = {
        "Electron_pt": "pt",
        "Electron_eta": "eta",
        "Electron_deltaEtaSC": "eta",
        "Electron_phi": "phi",
        "Electron_r9": "r9",
        "Electron_seedGain": "gain",
        "Electron_cutBased": "id",
        "Electron_charge": "charge",
    }
    event_roles: ClassVar[dict[str, str]] = {
        "run": "run",
        "luminosityBlock": "lumi",
        "event": "event",
        "nElectron": "count",
        "genWeight": "weight",
        "Pileup_nTrueInt": "npu",
    }

    def required(self, column_map: ColumnMap | None = None) -> list[str]:
        """Branches every NanoAOD file must have."""
        del column_map
        return [
            "run",
            "luminosityBlock",
            "event",
            "nElectron",
            "Electron_pt",
            "Electron_eta",
            "Electron_deltaEtaSC",
            "Electron_phi",
            "Electron_r9",
            "Electron_seedGain",
            "Electron_cutBased",
            "Electron_charge",
        ]

    def optional(self, column_map: ColumnMap | None = None) -> dict[str, str]:
        """Optional branches by role."""
        del column_map
        return {"weight": "genWeight", "npu": "Pileup_nTrueInt"}

    def event_branch(
        self, role: EventBranch, available: Mapping[str, str], column_map: ColumnMap | None
    ) -> str | None:
        """``run``, ``luminosityBlock``, ``event`` (always present)."""
        return _EVENT_BRANCHES[role]

    def schema(self) -> Any:
        """coffea's NanoAODSchema (quiet)."""
        return nanoaod_schema()

    def extract(
        self,
        events: Any,
        *,
        id_level: str,
        available: Mapping[str, str],
        column_map: ColumnMap | None,
        columns: tuple[str, ...] = (),
    ) -> Leptons:
        """The two leading electrons passing the ID."""
        n = len(events)
        ele = events.Electron
        n_all = np_col(ak.num(ele, axis=1), np.int64)
        ele = ele[ele.cutBased >= _ID[id_level]]
        ele = ele[ak.argsort(ele.pt, axis=1, ascending=False)]
        padded = ak.pad_none(ele, 2, axis=1, clip=True)
        id_pass = ~np_col(ak.fill_none(ak.is_none(padded, axis=1), True), bool)
        # the pair is formed from electrons passing the ID; events with two electrons at all
        # count for the "two_leptons" cut, those with two passing ones for "id"

        def col(name: str, dtype: Any, fill: float) -> NDArray[Any]:
            return np_col(ak.fill_none(padded[name], fill), dtype)

        pt = col("pt", np.float64, 0.0)
        eta = col("eta", np.float64, 0.0)
        sc_eta = eta + col("deltaEtaSC", np.float64, 0.0)
        cut_based = col("cutBased", np.int64, 0)
        nano_bits = np.zeros(cut_based.shape, dtype=np.int64)
        for wp in ("loose", "medium", "tight"):
            nano_bits[cut_based >= _ID[wp]] |= ID_BITS[wp]
        return Leptons(
            energy=pt * np.cosh(eta),
            eta=eta,
            sc_eta=sc_eta,
            phi=col("phi", np.float64, 0.0),
            r9=col("r9", np.float64, 0.0),
            gain=col("seedGain", np.int64, 12),
            id_pass=id_pass,
            charge=col("charge", np.int64, 0),
            valid=id_pass,
            has_pair=n_all >= 2,
            run=np_col(events.run, np.int64),
            lumi=np_col(events.luminosityBlock, np.int64),
            event=np_col(events.event, np.int64),
            weight=event_weight(events, available.get("weight"), n),
            npu=(
                np_col(_field(events, available["npu"]), np.float64) if "npu" in available else None
            ),
            id_bits=np.where(id_pass, nano_bits, 0),
            columns={c: col(c.removeprefix("Electron_"), np.float64, np.nan) for c in columns},
        )

    def column_branches(self, name: str, column_map: ColumnMap | None) -> tuple[str, ...]:
        """``Electron_<field>`` branches only (the pair is formed from the electrons)."""
        del column_map
        if not name.startswith("Electron_"):
            msg = (
                f"category column {name!r} is not allowed; NanoAOD columns are Electron_* branches"
            )
            raise ValueError(msg)
        return (name,)


NANOAOD = NanoaodFormat()
