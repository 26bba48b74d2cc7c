"""The input-format registry: one module per format, one table mapping names to them.

Four formats are understood (see each module):

``ecalelf`` (:mod:`zcalib.io.ecalelf`)
    ECALELF ``selected`` trees with fixed-size ``[3]`` per-electron arrays.
``nanoaod`` (:mod:`zcalib.io.nanoaod`)
    NanoAOD ``Events`` with the jagged ``Electron`` collection.
``flat`` (:mod:`zcalib.io.flat`)
    Any flat ntuple with one branch per lepton and variable, described by a
    :class:`ColumnMap` in the dataset description.
``parquet`` (:mod:`zcalib.io.parquet`)
    Pair skims written by :func:`zcalib.skim.skim` (one row per selected pair).

Every format is reduced to the same :class:`Leptons` record (numpy arrays for the two
leptons of the candidate pair), so selection, categorisation and filling are shared. Adding
a format is one module implementing :class:`~zcalib.io._base.InputFormat` and one entry in
:data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from zcalib.io._base import (
    ID_BITS,
    SKIM_EVENT_COLUMNS,
    SKIM_LEPTON_COLUMNS,
    ColumnMap,
    EventBranch,
    IdLevel,
    InputFormat,
    Leptons,
)
from zcalib.io.ecalelf import ECALELF
from zcalib.io.flat import FLAT
from zcalib.io.nanoaod import NANOAOD, nanoaod_schema
from zcalib.io.parquet import PARQUET

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
    "InputFormat",
    "Leptons",
    "event_branch",
    "extract_leptons",
    "get_format",
    "nanoaod_schema",
    "optional_branches",
    "required_branches",
]

FormatName = Literal["ecalelf", "nanoaod", "flat", "parquet"]

#: The registry: format name → its :class:`InputFormat`.
FORMATS: dict[str, InputFormat] = {f.name: f for f in (ECALELF, NANOAOD, FLAT, PARQUET)}
#: Tree read when a dataset description names none, per format.
DEFAULT_TREES: dict[str, str] = {name: f.default_tree for name, f in FORMATS.items()}


def get_format(name: str) -> InputFormat:
    """The registered format ``name``.

    Raises:
        ValueError: unknown format (the message lists the known ones).
    """
    fmt = FORMATS.get(name)
    if fmt is None:
        msg = f"unknown input format {name!r}; allowed: {', '.join(FORMATS)}"
        raise ValueError(msg)
    return fmt


def required_branches(fmt: str, column_map: ColumnMap | None = None) -> list[str]:
    """Branches that must exist for ``fmt`` (MC-only and optional ones excluded)."""
    return get_format(fmt).required(column_map)


def optional_branches(fmt: str, column_map: ColumnMap | None = None) -> dict[str, str]:
    """Optional branches by role (``weight``, ``npu``, ``sc_eta``, ``event``, ...)."""
    return get_format(fmt).optional(column_map)


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
    return get_format(fmt).event_branch(role, available, column_map)


def extract_leptons(
    events: Any,
    fmt: str,
    *,
    id_level: str,
    available: Mapping[str, str],
    column_map: ColumnMap | None = None,
) -> Leptons:
    """Build the :class:`Leptons` record of a chunk of coffea events.

    Args:
        events: a coffea NanoEvents array (the format's schema).
        fmt: the input format.
        id_level: electron working point required (``none``, ``loose``, ``medium``,
            ``tight``).
        available: optional branches present in the input, by role (see
            :func:`optional_branches`).
        column_map: branch names for the ``flat`` format.

    Returns:
        The lepton record; for NanoAOD the pair is the two highest-pt electrons passing the
        ID (others do not form pairs).
    """
    return get_format(fmt).extract(
        events, id_level=id_level, available=available, column_map=column_map
    )
