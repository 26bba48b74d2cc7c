"""Input formats: which branches each format needs and how to turn events into leptons.

Four formats are understood:

``ecalelf``
    ECALELF ``selected`` trees with fixed-size ``[3]`` per-electron arrays (slots 0 and 1
    are the pair). ``gainSeedSC`` is an index (0 = gain 12, 1 = gain 6, 2 = gain 1),
    ``eleID`` a bitmask (medium = 0x08, tight = 0x10).
``nanoaod``
    NanoAOD ``Events`` with the jagged ``Electron`` collection; the supercluster η is
    ``eta + deltaEtaSC``; ``seedGain`` stores 12/6/1; ``cutBased`` 0-4.
``flat``
    Any flat ntuple with one branch per lepton and variable (``E1, eta1, ..., E2, ...``),
    described by a :class:`ColumnMap` in the dataset description.
``parquet``
    Pair skims written by :func:`zcalib.skim.skim` (one row per selected pair, columns
    ``energy_1, energy_2, eta_1, ...`` as listed in :data:`SKIM_LEPTON_COLUMNS` and
    :data:`SKIM_EVENT_COLUMNS`); read through coffea's ``format="parquet"``. The ``id_1/id_2``
    columns hold the working points each lepton passes as :data:`ID_BITS`.

Every format is reduced to the same :class:`Leptons` record (numpy arrays for the two
leptons of the candidate pair), so selection, categorisation and filling are shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import awkward as ak
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_TREES",
    "FORMATS",
    "ID_BITS",
    "SKIM_EVENT_COLUMNS",
    "SKIM_LEPTON_COLUMNS",
    "ColumnMap",
    "EventBranch",
    "FormatName",
    "IdLevel",
    "Leptons",
    "event_branch",
    "extract_leptons",
    "optional_branches",
    "required_branches",
]

FormatName = Literal["ecalelf", "nanoaod", "flat", "parquet"]
IdLevel = Literal["none", "loose", "medium", "tight"]
FORMATS: tuple[str, ...] = ("ecalelf", "nanoaod", "flat", "parquet")
#: Parquet has no trees; its entry is a placeholder coffea's fileset needs.
DEFAULT_TREES: dict[str, str] = {
    "ecalelf": "selected",
    "nanoaod": "Events",
    "flat": "events",
    "parquet": "pairs",
}

#: Working points passed by a lepton, as bits of the skim ``id_1``/``id_2`` columns.
ID_BITS: dict[str, int] = {"none": 0, "loose": 1, "medium": 2, "tight": 4}
#: Per-lepton skim columns (suffixed ``_1``/``_2``), in file order.
SKIM_LEPTON_COLUMNS: tuple[str, ...] = (
    "energy",
    "eta",
    "sc_eta",
    "phi",
    "r9",
    "gain",
    "charge",
    "id",
)
#: Per-pair skim columns; ``lumi``, ``event`` and ``npu`` only when the source has them.
SKIM_EVENT_COLUMNS: tuple[str, ...] = ("run", "lumi", "event", "weight", "npu", "mass")

_ECALELF_GAIN = np.array([12, 6, 1], dtype=np.int64)
_ECALELF_ID_BITS = {"none": 0, "medium": 0x08, "tight": 0x10}
_NANO_ID = {"none": 0, "loose": 2, "medium": 3, "tight": 4}


class ColumnMap(BaseModel):
    """Branch names of a flat ntuple, one pair ``[lepton1, lepton2]`` per variable.

    Either ``energy`` or ``pt`` must be given (the other is derived with η). Variables that
    are absent get neutral values (R9 = 1, gain = 12, ID passes, charge 0); a category scheme
    or selection that needs them then fails at set-up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    energy: tuple[str, str] | None = Field(None, description="Lepton energies [GeV].")
    pt: tuple[str, str] | None = Field(None, description="Lepton transverse momenta [GeV].")
    eta: tuple[str, str] = Field(description="Lepton pseudorapidities.")
    sc_eta: tuple[str, str] | None = Field(
        None, description="Supercluster η (categories); defaults to `eta`."
    )
    phi: tuple[str, str] = Field(description="Lepton azimuths.")
    r9: tuple[str, str] | None = Field(None, description="Lepton R9.")
    gain: tuple[str, str] | None = Field(None, description="Seed gain, stored as 12/6/1.")
    charge: tuple[str, str] | None = Field(None, description="Lepton charges.")
    run: str | None = Field(None, description="Run number branch.")
    lumi: str | None = Field(None, description="Luminosity-block branch.")
    event: str | None = Field(None, description="Event number branch.")
    weight: str | None = Field(None, description="MC generator weight branch.")
    npu: str | None = Field(None, description="MC true pile-up branch.")

    def branches(self) -> tuple[list[str], list[str]]:
        """(per-lepton branches, per-event branches) named by this map."""
        per_lepton = [
            b
            for pair in (
                self.energy,
                self.pt,
                self.eta,
                self.sc_eta,
                self.phi,
                self.r9,
                self.gain,
                self.charge,
            )
            if pair is not None
            for b in pair
        ]
        per_event = [b for b in (self.run, self.lumi, self.event) if b is not None]
        return per_lepton, per_event


@dataclass
class Leptons:
    """The candidate lepton pair of each event, as flat numpy arrays of shape ``(n, 2)``.

    Attributes hold float64 (kinematics) or int64 (gain, charge, ids) arrays; ``valid``
    marks pair slots that are filled (jagged inputs with fewer than two selected leptons);
    ``has_pair`` marks events with at least two leptons before any ID (``None``: all);
    ``id_bits`` the working points each lepton passes (:data:`ID_BITS`; for skims).
    ``run``, ``lumi`` and ``event`` are 0 when the input has no such branch (ECALELF lists
    without ``lumiBlock``/``eventNumber``, flat ntuples whose column map names none, skims of
    such inputs): :func:`event_branch` tells whether they were read.
    """

    energy: NDArray[np.float64]
    eta: NDArray[np.float64]
    sc_eta: NDArray[np.float64]
    phi: NDArray[np.float64]
    r9: NDArray[np.float64]
    gain: NDArray[np.int64]
    id_pass: NDArray[np.bool_]
    charge: NDArray[np.int64]
    valid: NDArray[np.bool_]
    run: NDArray[np.int64]
    lumi: NDArray[np.int64]
    event: NDArray[np.int64]
    weight: NDArray[np.float64]
    npu: NDArray[np.float64] | None = None
    has_pair: NDArray[np.bool_] | None = None
    id_bits: NDArray[np.int64] | None = None

    @property
    def et(self) -> NDArray[np.float64]:
        """Transverse energy ``E / cosh(η_SC)`` of each lepton."""
        return self.energy / np.cosh(self.sc_eta)

    def __len__(self) -> int:
        return len(self.energy)


def required_branches(fmt: str, column_map: ColumnMap | None = None) -> list[str]:
    """Branches that must exist for ``fmt`` (MC-only and optional ones excluded)."""
    if fmt == "ecalelf":
        return [
            "runNumber",
            "R9Ele",
            "etaEle",
            "phiEle",
            "energy_ECAL_ele",
            "gainSeedSC",
            "eleID",
        ]
    if fmt == "nanoaod":
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
    if fmt == "parquet":
        return [f"{c}_{i}" for c in SKIM_LEPTON_COLUMNS for i in (1, 2)] + ["run", "weight"]
    if column_map is None:
        msg = "the 'flat' format needs a column_map"
        raise ValueError(msg)
    per_lepton, per_event = column_map.branches()
    return per_lepton + per_event


def optional_branches(fmt: str, column_map: ColumnMap | None = None) -> dict[str, str]:
    """Optional branches by role (``weight``, ``npu``, ``sc_eta``, ``event``, ...)."""
    if fmt == "ecalelf":
        return {
            "sc_eta": "etaSCEle",
            "charge": "chargeEle",
            "event": "eventNumber",
            "lumi": "lumiBlock",
            "weight": "mcGenWeight",
            "npu": "nPU",
        }
    if fmt == "nanoaod":
        return {"weight": "genWeight", "npu": "Pileup_nTrueInt"}
    if fmt == "parquet":
        return {"weight": "weight", "npu": "npu", "lumi": "lumi", "event": "event"}
    assert column_map is not None
    return {k: v for k, v in (("weight", column_map.weight), ("npu", column_map.npu)) if v}


EventBranch = Literal["run", "lumi", "event"]


def event_branch(
    fmt: str,
    role: EventBranch,
    available: Mapping[str, str],
    column_map: ColumnMap | None = None,
) -> str | None:
    """The branch (column) read for ``run``, ``lumi`` or ``event``, ``None`` if the input has none.

    Without a branch :func:`extract_leptons` fills the :class:`Leptons` attribute with 0.

    Args:
        fmt: the input format.
        role: ``run``, ``lumi`` or ``event``.
        available: optional branches present in the input, by role (see
            :func:`optional_branches`).
        column_map: branch names for the ``flat`` format.

    Example:
        >>> event_branch("ecalelf", "lumi", {}) is None
        True
        >>> event_branch("ecalelf", "lumi", {"lumi": "lumiBlock"})
        'lumiBlock'
        >>> event_branch("nanoaod", "lumi", {})
        'luminosityBlock'
    """
    if fmt == "nanoaod":
        return {"run": "run", "lumi": "luminosityBlock", "event": "event"}[role]
    if fmt == "flat":
        return None if column_map is None else getattr(column_map, role)
    if role == "run":
        return "runNumber" if fmt == "ecalelf" else "run"
    return available.get(role)


def _np(x: Any, dtype: Any) -> NDArray[Any]:
    return np.asarray(ak.to_numpy(x), dtype=dtype)


def _first2(column: Any, dtype: Any) -> NDArray[Any]:
    """Slots 0 and 1 of a fixed-size ``[3]`` ECALELF branch (sliced in numpy: no copy of the
    whole awkward RegularArray)."""
    return np.asarray(ak.to_numpy(column)[:, :2], dtype=dtype)


def _pair(events: Any, names: tuple[str, str], dtype: Any) -> NDArray[Any]:
    return np.stack([_np(events[names[0]], dtype), _np(events[names[1]], dtype)], axis=1)


def extract_leptons(
    events: Any,
    fmt: str,
    *,
    id_level: str,
    available: Mapping[str, str],
    column_map: ColumnMap | None = None,
    max_leptons_nano: int = 2,
) -> Leptons:
    """Build the :class:`Leptons` record of a chunk of coffea events.

    Args:
        events: a coffea NanoEvents array (BaseSchema for ecalelf/flat, NanoAODSchema for
            nanoaod).
        fmt: the input format.
        id_level: electron working point required (``none``, ``loose``, ``medium``,
            ``tight``).
        available: optional branches present in the input, by role (see
            :func:`optional_branches`).
        column_map: branch names for the ``flat`` format.
        max_leptons_nano: unused beyond 2 (the two leading selected electrons form the pair).

    Returns:
        The lepton record; for NanoAOD the pair is the two highest-pt electrons passing the
        ID (others do not form pairs).
    """
    del max_leptons_nano
    n = len(events)
    if fmt == "ecalelf":
        energy = _first2(events["energy_ECAL_ele"], np.float64)
        eta = _first2(events["etaEle"], np.float64)
        sc_eta = (
            _np(events[available["sc_eta"]][:, :2], np.float64) if "sc_eta" in available else eta
        )
        gain_idx = _first2(events["gainSeedSC"], np.int64)
        gain = np.where(
            (gain_idx >= 0) & (gain_idx <= 2), _ECALELF_GAIN[np.clip(gain_idx, 0, 2)], -1
        )
        bits = _ECALELF_ID_BITS[id_level]
        ele_id = _first2(events["eleID"], np.int64)
        id_pass = (ele_id & bits) == bits
        ecal_bits = np.zeros(ele_id.shape, dtype=np.int64)
        ecal_bits[(ele_id & 0x08) == 0x08] |= ID_BITS["medium"]
        ecal_bits[(ele_id & 0x10) == 0x10] |= ID_BITS["tight"]
        charge = (
            _np(events[available["charge"]][:, :2], np.int64)
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
            run=_np(events["runNumber"], np.int64),
            lumi=_event_int(events, available.get("lumi"), n),
            event=_event_int(events, available.get("event"), n),
            weight=_weight(events, available.get("weight"), n),
            npu=_np(events[available["npu"]], np.float64) if "npu" in available else None,
            id_bits=ecal_bits,
        )
    if fmt == "nanoaod":
        ele = events.Electron
        n_all = _np(ak.num(ele, axis=1), np.int64)
        ele = ele[ele.cutBased >= _NANO_ID[id_level]]
        ele = ele[ak.argsort(ele.pt, axis=1, ascending=False)]
        padded = ak.pad_none(ele, 2, axis=1, clip=True)
        id_pass = ~_np(ak.fill_none(ak.is_none(padded, axis=1), True), bool)
        # the pair is formed from electrons passing the ID; events with two electrons at all
        # count for the "two_leptons" cut, those with two passing ones for "id"

        def col(name: str, dtype: Any, fill: float) -> NDArray[Any]:
            return _np(ak.fill_none(padded[name], fill), dtype)

        pt = col("pt", np.float64, 0.0)
        eta = col("eta", np.float64, 0.0)
        sc_eta = eta + col("deltaEtaSC", np.float64, 0.0)
        cut_based = col("cutBased", np.int64, 0)
        nano_bits = np.zeros(cut_based.shape, dtype=np.int64)
        for wp in ("loose", "medium", "tight"):
            nano_bits[cut_based >= _NANO_ID[wp]] |= ID_BITS[wp]
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
            run=_np(events.run, np.int64),
            lumi=_np(events.luminosityBlock, np.int64),
            event=_np(events.event, np.int64),
            weight=_weight(events, available.get("weight"), n),
            npu=_np(_field(events, available["npu"]), np.float64) if "npu" in available else None,
            id_bits=np.where(id_pass, nano_bits, 0),
        )
    if fmt == "flat":
        assert column_map is not None
        cm = column_map
        eta = _pair(events, cm.eta, np.float64)
        if cm.energy is not None:
            energy = _pair(events, cm.energy, np.float64)
        else:
            assert cm.pt is not None
            energy = _pair(events, cm.pt, np.float64) * np.cosh(eta)
        ones = np.ones((n, 2))
        return Leptons(
            energy=energy,
            eta=eta,
            sc_eta=_pair(events, cm.sc_eta, np.float64) if cm.sc_eta else eta,
            phi=_pair(events, cm.phi, np.float64),
            r9=_pair(events, cm.r9, np.float64) if cm.r9 else ones,
            gain=_pair(events, cm.gain, np.int64) if cm.gain else np.full((n, 2), 12, np.int64),
            id_pass=np.ones((n, 2), dtype=bool),
            charge=_pair(events, cm.charge, np.int64) if cm.charge else np.zeros((n, 2), np.int64),
            valid=np.ones((n, 2), dtype=bool),
            run=_event_int(events, cm.run, n),
            lumi=_event_int(events, cm.lumi, n),
            event=_event_int(events, cm.event, n),
            weight=_weight(events, cm.weight, n),
            npu=_np(events[cm.npu], np.float64) if cm.npu else None,
            id_bits=np.full((n, 2), ID_BITS["loose"] | ID_BITS["medium"] | ID_BITS["tight"]),
        )
    if fmt == "parquet":
        return _skim_leptons(events, id_level, available, n)
    msg = f"unknown input format {fmt!r}; allowed: {', '.join(FORMATS)}"
    raise ValueError(msg)


def _skim_leptons(events: Any, id_level: str, available: Mapping[str, str], n: int) -> Leptons:
    """The lepton record of a pair skim (one row per pair, columns ``<var>_1``/``<var>_2``)."""

    def pair(name: str, dtype: Any) -> NDArray[Any]:
        return _pair(events, (f"{name}_1", f"{name}_2"), dtype)

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
        run=_np(events["run"], np.int64),
        lumi=_event_int(events, available.get("lumi"), n),
        event=_event_int(events, available.get("event"), n),
        weight=_weight(events, available.get("weight"), n),
        npu=_np(events[available["npu"]], np.float64) if "npu" in available else None,
        id_bits=id_bits,
    )


def _field(events: Any, name: str) -> Any:
    """A top-level branch, or ``Collection_field`` as NanoAODSchema exposes it."""
    if name in events.fields:
        return events[name]
    prefix, _, rest = name.partition("_")
    return events[prefix][rest]


def _event_int(events: Any, name: str | None, n: int) -> NDArray[np.int64]:
    if name is None:
        return np.zeros(n, dtype=np.int64)
    return _np(events[name], np.int64)


def _weight(events: Any, name: str | None, n: int) -> NDArray[np.float64]:
    if name is None:
        return np.ones(n, dtype=np.float64)
    return _np(events[name], np.float64)


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
