"""What every input format shares: the :class:`Leptons` record, the flat-ntuple
:class:`ColumnMap`, the skim column layout, and the :class:`InputFormat` interface that each
format module (``ecalelf``, ``nanoaod``, ``flat``, ``parquet``) implements.

A format is one object: which branches it needs and may have, where the event identity
(run, lumi, event) lives, how a chunk of coffea events becomes a :class:`Leptons` record,
which NanoEvents schema and coffea reader it uses, and how to read a few columns of a file
directly (run coverage, plot ranges). Adding a format is one module plus one line in the
registry (:data:`zcalib.io.formats.FORMATS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import awkward as ak
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ID_BITS",
    "KIND_OF_ROLE",
    "READ_BYTES_KEY",
    "SKIM_EVENT_COLUMNS",
    "SKIM_LEPTON_COLUMNS",
    "ColumnChunk",
    "ColumnMap",
    "EventBranch",
    "IdLevel",
    "InputFormat",
    "Kind",
    "Layout",
    "Leptons",
    "coffea_tree",
]

IdLevel = Literal["none", "loose", "medium", "tight"]
EventBranch = Literal["run", "lumi", "event"]
#: The value type a branch must have: floating point, integer, or either (not bool).
Kind = Literal["float", "int", "number"]
#: How a branch holds its values: one per event, a fixed-size per-electron array (``[3]``),
#: or a variable-length per-electron list.
Layout = Literal["scalar", "array", "jagged"]

#: The value type of each lepton or event quantity (role), whatever the format.
KIND_OF_ROLE: dict[str, Kind] = {
    "energy": "float",
    "pt": "float",
    "eta": "float",
    "sc_eta": "float",
    "phi": "float",
    "r9": "float",
    "mass": "float",
    "gain": "int",
    "id": "int",
    "charge": "int",
    "run": "int",
    "lumi": "int",
    "event": "int",
    "count": "int",
    "weight": "number",
    "npu": "number",
}

#: Processor-output key carrying the bytes a chunk read outside coffea's own reader (Parquet
#: row groups, direct column reads); the runner adds them to coffea's ``bytesread``.
READ_BYTES_KEY = "_bytes_read"
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
    columns: dict[str, tuple[str, str]] = Field(
        default_factory=dict,
        description="More per-lepton columns, by the name categories use for them "
        "(`columns:` of a category): `{name: [branch1, branch2]}`; read only when a "
        "category scheme cuts on them.",
    )

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
    such inputs): :meth:`InputFormat.event_branch` tells whether they were read.
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
    #: the category columns read (``InputFormat.extract(columns=...)``), ``(n, 2)`` float64
    columns: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @property
    def et(self) -> NDArray[np.float64]:
        """Transverse energy ``E / cosh(η_SC)`` of each lepton."""
        return self.energy / np.cosh(self.sc_eta)

    def __len__(self) -> int:
        return len(self.energy)


class InputFormat:
    """One input format (subclassed once per module of :mod:`zcalib.io`).

    Attributes:
        name: the format name used in dataset descriptions.
        default_tree: tree read when the dataset description names none.
        reader: coffea's reader (``root`` or ``parquet``).
        id_levels: electron working points the format can express.
        event_ids_always: the event identity (run, lumi, event) is always present.
    """

    name: ClassVar[str]
    default_tree: ClassVar[str]
    reader: ClassVar[Literal["root", "parquet"]] = "root"
    id_levels: ClassVar[tuple[str, ...]] = ("none", "loose", "medium", "tight")
    event_ids_always: ClassVar[bool] = False
    #: What the ID working point is read from (for messages).
    id_field: ClassVar[str] = "the electron ID"
    #: Chunks of this format can be read as plain numpy columns (:meth:`read_chunk`).
    reads_columns: ClassVar[bool] = False
    #: Branch feeding each checked lepton quantity (for error messages).
    sources: ClassVar[dict[str, str]] = {}
    #: Per-lepton branches read, by branch name: the quantity (role) each holds.
    lepton_roles: ClassVar[dict[str, str]] = {}
    #: Per-event branches read, by branch name: the quantity (role) each holds.
    event_roles: ClassVar[dict[str, str]] = {}
    #: How the per-lepton branches hold the electrons (category columns included).
    lepton_layout: ClassVar[Layout] = "scalar"

    def required(self, column_map: ColumnMap | None = None) -> list[str]:
        """Branches that must exist (MC-only and optional ones excluded)."""
        raise NotImplementedError

    def optional(self, column_map: ColumnMap | None = None) -> dict[str, str]:
        """Optional branches by role (``weight``, ``npu``, ``sc_eta``, ``event``, ...)."""
        raise NotImplementedError

    def branch_types(self, column_map: ColumnMap | None = None) -> dict[str, tuple[Kind, Layout]]:
        """``{branch: (kind, layout)}`` this reader expects of each branch it may read
        (checked by the pre-flight, :mod:`zcalib.io.preflight`)."""
        del column_map
        out = {b: (KIND_OF_ROLE[r], self.lepton_layout) for b, r in self.lepton_roles.items()}
        out.update({b: (KIND_OF_ROLE[r], "scalar") for b, r in self.event_roles.items()})
        return out

    def event_branch(
        self, role: EventBranch, available: Mapping[str, str], column_map: ColumnMap | None
    ) -> str | None:
        """The branch read for ``run``, ``lumi`` or ``event``; ``None`` if the input has none."""
        if role == "run":
            return "run"
        return available.get(role)

    def lacks(self, role: EventBranch, column_map: ColumnMap | None) -> str:
        """How to say that the input has no branch for ``role`` (for messages)."""
        del column_map
        return f"the file has no '{role}' branch"

    def has_event_ids(self, available: Mapping[str, str], column_map: ColumnMap | None) -> bool:
        """Whether events carry their (run, lumi, event) identity (smearing keys)."""
        del column_map
        return self.event_ids_always or "event" in available

    def source(self, role: str, column_map: ColumnMap | None) -> str:
        """The branch name(s) of a checked lepton quantity, for messages."""
        del column_map
        return self.sources.get(role, role)

    def column_branches(self, name: str, column_map: ColumnMap | None) -> tuple[str, ...]:
        """The branches holding per-lepton column ``name`` of a category scheme.

        Raises:
            ValueError: the format cannot name such a column (message says what is allowed).
        """
        del column_map
        return (name,)

    def extract(
        self,
        events: Any,
        *,
        id_level: str,
        available: Mapping[str, str],
        column_map: ColumnMap | None,
        columns: tuple[str, ...] = (),
    ) -> Leptons:
        """The :class:`Leptons` record of a chunk of coffea events, with the per-lepton
        ``columns`` a category scheme cuts on in :attr:`Leptons.columns`."""
        raise NotImplementedError

    def schema(self) -> Any:
        """The NanoEvents schema class coffea builds the events with."""
        from coffea.nanoevents import BaseSchema

        return BaseSchema

    def read_chunk(
        self, metadata: Mapping[str, Any], columns: list[str], tree: Any = None
    ) -> ColumnChunk:
        """Read ``columns`` of one chunk (coffea's per-chunk ``metadata``) as numpy arrays.

        A direct ``uproot`` read of exactly the branches a processor needs, at the cost of a
        raw read, instead of materialising coffea's lazy arrays one by one.

        Args:
            metadata: coffea's chunk metadata (file, tree, entry range).
            columns: the branches to read.
            tree: the ``uproot`` tree coffea already opened and read for this chunk
                (:func:`coffea_tree`): read without opening the file or reading the tree's
                header again, and coffea counts the bytes (``nbytes`` is 0 then). ``None``:
                open the file.
        """
        import uproot

        start, stop = int(metadata["entrystart"]), int(metadata["entrystop"])
        if tree is not None:
            arrays = tree.arrays(columns, entry_start=start, entry_stop=stop, library="np")
            return ColumnChunk(dict(arrays), metadata, stop - start, 0)
        with uproot.open(str(metadata["filename"])) as fh:
            tree = fh[str(metadata["treename"])]
            arrays = tree.arrays(columns, entry_start=start, entry_stop=stop, library="np")
            nbytes = int(fh.file.source.num_requested_bytes)
        return ColumnChunk(dict(arrays), metadata, stop - start, nbytes)

    def branch_names(self, path: str, tree: str) -> set[str]:
        """Names of the top-level branches (columns) of one file."""
        import uproot

        with uproot.open(path) as fh:
            return {str(k) for k in fh[tree].keys(recursive=False)}

    def read(
        self, path: str, tree: str, columns: list[str], entry_stop: int | None = None
    ) -> dict[str, Any]:
        """Read a few columns of one file directly (awkward arrays), outside the event loop."""
        import uproot

        with uproot.open(path) as fh:
            arrays = fh[tree].arrays(columns, entry_stop=entry_stop, library="ak")
        return {c: arrays[c] for c in columns}


class ColumnChunk:
    """A chunk's branches as numpy arrays, indexable like coffea's events (``chunk[name]``).

    Attributes:
        metadata: coffea's per-chunk metadata (dataset, file, entry range).
        nbytes: bytes requested from the file while reading.
    """

    def __init__(
        self, arrays: dict[str, Any], metadata: Mapping[str, Any], n: int, nbytes: int
    ) -> None:
        self._arrays = arrays
        self.metadata = metadata
        self._n = n
        self.nbytes = nbytes

    @property
    def fields(self) -> list[str]:
        """The branches read."""
        return list(self._arrays)

    def __getitem__(self, name: str) -> Any:
        return self._arrays[name]

    def __len__(self) -> int:
        return self._n


def coffea_tree(events: Any) -> Any:
    """The ``uproot`` tree to read a chunk of coffea events through, ``None`` if unknown.

    coffea's ``Runner`` opens every chunk's file and reads its tree header (every branch's
    metadata) before calling ``process``; reading the needed branches through that tree
    costs no second open and no second header read. The tree is the one coffea's
    NanoEvents mapping keeps for the chunk (``NanoEventsFactory.from_root`` stores it there
    "to save a double-open"); if that coffea internal changes, the tree is looked up in the
    file coffea opened. For a file read in several chunks, the tree of a file kept open
    is returned instead (:meth:`zcalib.io._trees.OpenTrees.pin`): coffea's later chunks of
    the file then find their tree without reading the header again.
    """
    import uproot

    from zcalib.io._trees import OPEN_TREES

    attrs = getattr(events, "attrs", None)
    factory = attrs.get("@events_factory") if isinstance(attrs, Mapping) else None
    handle = getattr(factory, "file_handle", None)
    if not isinstance(handle, uproot.ReadOnlyDirectory):
        return None
    name = str(events.metadata["treename"]).strip("/")
    mapping: Any = getattr(factory, "_mapping", None)
    try:  # the mapping's cache only: a miss must not open the file again
        cached = list(mapping._cache.values())
    except Exception:  # noqa: BLE001  (another coffea: fall back to the file handle)
        cached = []
    found = [
        t
        for t in cached
        if isinstance(t, uproot.TTree)
        and t.file.uuid == handle.file.uuid
        and t.object_path.strip("/").split(";")[0] == name
    ]
    return OPEN_TREES.pin(found[0] if found else handle[name], events.metadata)


# ------------------------------------------------------------------ helpers of the formats
def np_col(x: Any, dtype: Any) -> NDArray[Any]:
    """A flat awkward/NanoEvents (or numpy) column as a numpy array of ``dtype``."""
    if isinstance(x, np.ndarray):
        return x.astype(dtype, copy=False)
    return np.asarray(ak.to_numpy(x), dtype=dtype)


def pair_cols(events: Any, names: tuple[str, str], dtype: Any) -> NDArray[Any]:
    """Two per-event branches stacked as the ``(n, 2)`` lepton pair."""
    return np.stack([np_col(events[names[0]], dtype), np_col(events[names[1]], dtype)], axis=1)


def event_int(events: Any, name: str | None, n: int) -> NDArray[np.int64]:
    """An integer per-event branch, zeros when the input has none."""
    if name is None:
        return np.zeros(n, dtype=np.int64)
    return np_col(events[name], np.int64)


def optional_fields(available: Mapping[str, str]) -> dict[str, str | None]:
    """``lumi``, ``event``, ``weight``, ``npu`` branches of ``available`` (``None`` if absent)."""
    return {role: available.get(role) for role in ("lumi", "event", "weight", "npu")}


def event_columns(
    events: Any,
    n: int,
    *,
    run: str | None,
    lumi: str | None,
    event: str | None,
    weight: str | None,
    npu: str | None,
) -> dict[str, Any]:
    """The per-event fields of :class:`Leptons` read from the named branches (``None``: the
    input has none; zeros, unit weights, no pile-up)."""
    return {
        "run": event_int(events, run, n),
        "lumi": event_int(events, lumi, n),
        "event": event_int(events, event, n),
        "weight": event_weight(events, weight, n),
        "npu": np_col(events[npu], np.float64) if npu else None,
    }


def event_weight(events: Any, name: str | None, n: int) -> NDArray[np.float64]:
    """The generator weight, ones when the input has none."""
    if name is None:
        return np.ones(n, dtype=np.float64)
    return np_col(events[name], np.float64)
