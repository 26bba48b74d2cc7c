"""Flat ntuples: one branch per lepton and variable (``E1, eta1, ..., E2, ...``), named by a
:class:`~zcalib.io._base.ColumnMap` in the dataset description."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zcalib.io._base import (
    ID_BITS,
    KIND_OF_ROLE,
    ColumnMap,
    EventBranch,
    InputFormat,
    Kind,
    Layout,
    Leptons,
    event_columns,
    pair_cols,
)

__all__ = ["FLAT", "FlatFormat"]


def _need(column_map: ColumnMap | None) -> ColumnMap:
    if column_map is None:
        msg = "the 'flat' format needs a column_map"
        raise ValueError(msg)
    return column_map


class FlatFormat(InputFormat):
    """Flat ntuples (see the module docstring)."""

    name = "flat"
    default_tree = "events"
    reads_columns = True

    def required(self, column_map: ColumnMap | None = None) -> list[str]:
        """Every branch the column map names (except weight and pile-up)."""
        per_lepton, per_event = _need(column_map).branches()
        return per_lepton + per_event

    def branch_types(self, column_map: ColumnMap | None = None) -> dict[str, tuple[Kind, Layout]]:
        """Every branch the column map names holds one value per event, typed by its role."""
        out: dict[str, tuple[Kind, Layout]] = {}
        if column_map is None:
            return out
        # category columns (``columns``) are checked where a scheme cuts on them
        for role, value in column_map.model_dump(exclude={"columns"}).items():
            names = [value] if isinstance(value, str) else list(value or ())
            out.update(dict.fromkeys(names, (KIND_OF_ROLE[role], "scalar")))
        return out

    def optional(self, column_map: ColumnMap | None = None) -> dict[str, str]:
        """``weight`` and ``npu`` when the column map names them."""
        cm = _need(column_map)
        return {k: v for k, v in (("weight", cm.weight), ("npu", cm.npu)) if v}

    def event_branch(
        self, role: EventBranch, available: Mapping[str, str], column_map: ColumnMap | None
    ) -> str | None:
        """The branch the column map names for ``role``."""
        return None if column_map is None else getattr(column_map, role)

    def lacks(self, role: EventBranch, column_map: ColumnMap | None) -> str:
        """``the column_map names no 'lumi' branch``."""
        return f"the column_map names no '{role}' branch"

    def has_event_ids(self, available: Mapping[str, str], column_map: ColumnMap | None) -> bool:
        """When the column map names an event-number branch."""
        return column_map is not None and bool(column_map.event)

    def source(self, role: str, column_map: ColumnMap | None) -> str:
        """``E1/E2``: the two branches of a lepton quantity."""
        names = getattr(column_map, role, None) if column_map is not None else None
        return "/".join(names or (role, role))

    def extract(
        self,
        events: Any,
        *,
        id_level: str,
        available: Mapping[str, str],
        column_map: ColumnMap | None,
        columns: tuple[str, ...] = (),
    ) -> Leptons:
        """Read the branches the column map names; absent ones get neutral values."""
        cm = _need(column_map)
        n = len(events)
        eta = pair_cols(events, cm.eta, np.float64)
        if cm.energy is not None:
            energy = pair_cols(events, cm.energy, np.float64)
        else:
            assert cm.pt is not None
            energy = pair_cols(events, cm.pt, np.float64) * np.cosh(eta)
        ones = np.ones((n, 2))
        return Leptons(
            energy=energy,
            eta=eta,
            sc_eta=pair_cols(events, cm.sc_eta, np.float64) if cm.sc_eta else eta,
            phi=pair_cols(events, cm.phi, np.float64),
            r9=pair_cols(events, cm.r9, np.float64) if cm.r9 else ones,
            gain=(
                pair_cols(events, cm.gain, np.int64) if cm.gain else np.full((n, 2), 12, np.int64)
            ),
            id_pass=np.ones((n, 2), dtype=bool),
            charge=(
                pair_cols(events, cm.charge, np.int64) if cm.charge else np.zeros((n, 2), np.int64)
            ),
            valid=np.ones((n, 2), dtype=bool),
            **event_columns(
                events, n, run=cm.run, lumi=cm.lumi, event=cm.event, weight=cm.weight, npu=cm.npu
            ),
            id_bits=np.full((n, 2), ID_BITS["loose"] | ID_BITS["medium"] | ID_BITS["tight"]),
            columns={c: pair_cols(events, cm.columns[c], np.float64) for c in columns},
        )

    def column_branches(self, name: str, column_map: ColumnMap | None) -> tuple[str, ...]:
        """The two branches ``columns: {name: [b1, b2]}`` of the column map names."""
        cm = _need(column_map)
        if name not in cm.columns:
            named = ", ".join(sorted(cm.columns)) or "none"
            msg = (
                f"category column {name!r} is not in the column_map's 'columns' (named: "
                f"{named}); add {name}: [branch1, branch2] there"
            )
            raise ValueError(msg)
        return cm.columns[name]


FLAT = FlatFormat()
