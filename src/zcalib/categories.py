"""Single-lepton category schemes: loading (legacy TSV and YAML), validation, assignment.

A category is a box in (run, |η| or signed η_SC, R9, Et, gain, any other per-lepton
column). A scheme holds *scale* categories (derived for data) and *smear* categories (derived
for MC). Each lepton is assigned to one *cell*: the
non-empty intersection of one scale and one smear category. Pair regions are built over cells
as ``(min(c_i, c_j), max(c_i, c_j))`` (see ``DESIGN.md``).

The legacy TSV (pymin) reads::

    #type   etaMin  etaMax  r9Min   r9Max   gain    etMin   etMax
    scale   0.      1.      0.      0.96    -1      -1      -1

with ``-1`` meaning "no cut". Optional ``runMin runMax`` columns may precede ``etaMin``.
A header naming other columns is read by name: ``scEtaMin scEtaMax`` (signed supercluster η)
and ``<column>Min <column>Max`` for any per-lepton input column; in those ``-1`` is a value
and ``*`` (or ``-inf``/``inf``) means "no cut". The YAML equivalent::

    schema_version: 1
    scale:
      - {eta: [0, 1], r9: [0, 0.96]}
      - {sceta: [-2.5, -1.566], columns: {Electron_pfRelIso03_all: [0, 0.1]}}
    smear:
      - {eta: [0, 1], r9: [0, 0.96]}

Gaps or overlaps inside the covered domain raise :class:`~zcalib.exceptions.InvalidCategories`
naming the offending ranges. The only gap that is allowed is the ECAL barrel/endcap crack in
|η| (1.4442-1.566), which no electron category covers (in signed η: on both sides).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zcalib._jit import jitted
from zcalib.exceptions import InvalidCategories

__all__ = [
    "CRACK",
    "VARIABLES",
    "Category",
    "CategoryScheme",
    "Cell",
    "load_categories",
    "region_code",
    "region_pair",
    "scheme_from_dict",
]

#: The ECAL barrel/endcap transition in |η|: electrons there are outside every category.
CRACK: tuple[float, float] = (1.4442, 1.566)
#: Variables with a fixed name a category may cut on, in the order used for
#: (de)serialisation; any other per-lepton input column can be cut on by name (``columns``).
VARIABLES: tuple[str, ...] = ("run", "eta", "sceta", "r9", "et", "gain")
_GAINS = (1, 6, 12)
_GAINS_ORDER = (12, 6, 1)
#: the continuous variables with a fixed name (``gain`` is discrete)
_FIXED = ("run", "eta", "sceta", "r9", "et")
#: a column name: an identifier that is not one of :data:`VARIABLES`
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_INF = math.inf
_NO_CUT = (-_INF, _INF)

Kind = Literal["scale", "smear"]


@dataclass(frozen=True)
class Category:
    """One single-lepton category: half-open ranges ``[lo, hi)`` per variable.

    Run ranges are inclusive ``[min, max]`` in files and stored here as ``[min, max + 1)``.

    ``eta`` is a range in |η| and ``sceta`` one in signed η (supercluster η when available);
    ``columns`` holds ranges in other per-lepton input columns, by column name (sorted). A
    range of ``(-inf, inf)`` means no cut; ``gain`` is ``None`` for no cut or one of 12, 6, 1.
    """

    kind: Kind
    index: int
    run: tuple[float, float] = _NO_CUT
    eta: tuple[float, float] = _NO_CUT
    r9: tuple[float, float] = _NO_CUT
    et: tuple[float, float] = _NO_CUT
    gain: int | None = None
    sceta: tuple[float, float] = _NO_CUT
    columns: tuple[tuple[str, tuple[float, float]], ...] = ()

    def __post_init__(self) -> None:
        # one spelling per category: columns sorted by name, "no cut" ranges left out
        kept = tuple(sorted((n, r) for n, r in self.columns if tuple(r) != _NO_CUT))
        object.__setattr__(self, "columns", kept)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The ranges of the legacy variables (run, |η|, R9, Et), by variable name."""
        return {"run": self.run, "eta": self.eta, "r9": self.r9, "et": self.et}

    def cuts(self) -> dict[str, tuple[float, float]]:
        """Every continuous range: the fixed variables (:data:`VARIABLES` but ``gain``), then
        the ``columns`` this category cuts on, by name."""
        out = {
            "run": self.run,
            "eta": self.eta,
            "sceta": self.sceta,
            "r9": self.r9,
            "et": self.et,
        }
        out.update(self.columns)
        return out

    def cut(self, name: str) -> tuple[float, float]:
        """The range in variable or column ``name`` (``(-inf, inf)``: no cut)."""
        return self.cuts().get(name, _NO_CUT)

    @property
    def is_legacy(self) -> bool:
        """True when the category cuts only on the legacy variables (run, |η|, R9, Et, gain)."""
        return self.sceta == _NO_CUT and not self.columns

    def label(self) -> str:
        """A short human-readable label, e.g. ``scale[3] |eta| 1.566-2 r9 0-0.96``."""
        parts = [f"{self.kind}[{self.index}]"]
        for name, (lo, hi) in self.cuts().items():
            if (lo, hi) != _NO_CUT:
                shown = {"eta": "|eta|", "sceta": "eta"}.get(name, name)
                hi_shown = hi - 1 if name == "run" else hi  # runs are inclusive in files
                parts.append(f"{shown} {_fmt(lo)}-{_fmt(hi_shown)}")
        if self.gain is not None:
            parts.append(f"gain {self.gain}")
        return " ".join(parts)

    def legacy_row(self) -> list[float | int]:
        """Values in the pymin column order ``run_min run_max eta_min eta_max r9_min r9_max
        et_min et_max gain`` with ``-1`` for "no cut"."""

        def lim(v: float) -> float:
            return -1 if math.isinf(v) else v

        return [
            lim(self.run[0]),
            lim(self.run[1] - 1),
            lim(self.eta[0]),
            lim(self.eta[1]),
            lim(self.r9[0]),
            lim(self.r9[1]),
            lim(self.et[0]),
            lim(self.et[1]),
            -1 if self.gain is None else self.gain,
        ]

    def contains(
        self,
        *,
        abs_eta: NDArray[np.floating[Any]],
        r9: NDArray[np.floating[Any]],
        et: NDArray[np.floating[Any]],
        gain: NDArray[np.integer[Any]],
        run: NDArray[np.integer[Any]],
        sceta: NDArray[np.floating[Any]] | None = None,
        columns: Mapping[str, NDArray[Any]] | None = None,
    ) -> NDArray[np.bool_]:
        """Boolean mask of the leptons inside this category (half-open ranges).

        ``sceta`` and ``columns`` are needed only when the category cuts on them.
        """
        values: dict[str, Any] = {"run": run, "eta": abs_eta, "sceta": sceta, "r9": r9, "et": et}
        values.update(columns or {})
        mask = np.ones(len(abs_eta), dtype=bool)
        for name, (lo, hi) in self.cuts().items():
            if (lo, hi) == _NO_CUT and name not in ("eta", "r9", "et", "run"):
                continue
            x = values.get(name)
            if x is None:
                msg = f"{self.label()}: cuts on {name!r}, but no {name} values were given"
                raise ValueError(msg)
            mask &= (x >= lo) & (x < hi)
        if self.gain is not None:
            mask &= gain == self.gain
        return mask


@dataclass(frozen=True)
class Cell:
    """Intersection of one scale and one smear category (the unit pairs are built from)."""

    index: int
    scale: int
    smear: int


@dataclass(frozen=True)
class CategoryScheme:
    """A validated set of scale and smear categories and the cells they form.

    Attributes:
        scale: Scale categories (data corrections), in file order.
        smear: Smear categories (MC corrections), in file order. If the file defines none,
            a single inclusive smear category with the scale coverage is used.
        cells: Non-empty scale x smear intersections; leptons are assigned to cells.
        source: Where the scheme was loaded from (for messages and provenance).
    """

    scale: tuple[Category, ...]
    smear: tuple[Category, ...]
    cells: tuple[Cell, ...] = field(default=())
    source: str = "<memory>"

    @property
    def n_cells(self) -> int:
        """Number of cells (leptons' category indices run over ``range(n_cells)``)."""
        return len(self.cells)

    @property
    def n_regions(self) -> int:
        """Number of possible pair regions ``(i <= j)``."""
        n = self.n_cells
        return n * (n + 1) // 2

    @property
    def uses_run(self) -> bool:
        """True when any category cuts on the run number."""
        return any(c.run != _NO_CUT for c in (*self.scale, *self.smear))

    @property
    def uses_gain(self) -> bool:
        """True when any category cuts on the seed gain."""
        return any(c.gain is not None for c in (*self.scale, *self.smear))

    @property
    def columns(self) -> tuple[str, ...]:
        """The per-lepton input columns (beyond the fixed variables) the categories cut on,
        sorted: what a reader must read for this scheme."""
        return tuple(sorted({n for c in (*self.scale, *self.smear) for n, _ in c.columns}))

    @property
    def variables(self) -> tuple[str, ...]:
        """The continuous variables some category cuts on (fixed ones first, then columns)."""
        cats = (*self.scale, *self.smear)
        fixed = tuple(v for v in _FIXED if any(c.cut(v) != _NO_CUT for c in cats))
        return fixed + self.columns

    def cell_scale_index(self) -> NDArray[np.int64]:
        """Scale-category index of each cell."""
        return np.array([c.scale for c in self.cells], dtype=np.int64)

    def cell_smear_index(self) -> NDArray[np.int64]:
        """Smear-category index of each cell."""
        return np.array([c.smear for c in self.cells], dtype=np.int64)

    def assign(
        self,
        *,
        abs_eta: NDArray[np.floating[Any]] | None = None,
        r9: NDArray[np.floating[Any]] | None = None,
        et: NDArray[np.floating[Any]] | None = None,
        gain: NDArray[np.integer[Any]] | None = None,
        run: NDArray[np.integer[Any]] | None = None,
        sceta: NDArray[np.floating[Any]] | None = None,
        columns: Mapping[str, NDArray[Any]] | None = None,
    ) -> NDArray[np.int64]:
        """Cell index of each lepton, ``-1`` for leptons outside every category.

        One search per variable the categories cut on and one table look-up (compiled),
        whatever the number of categories; the arrays are read where they are (no copy when
        they are contiguous float64).

        Args:
            abs_eta: |η| of each lepton (flat numpy array); if not given, ``|sceta|``.
            r9: R9 of each lepton.
            et: transverse energy of each lepton [GeV].
            gain: seed gain (12/6/1) of each lepton; required if a category cuts on gain.
            run: run number of each lepton; required if a category cuts on run.
            sceta: signed η of each lepton; required if a category cuts on ``sceta``.
            columns: other per-lepton columns by name; those in :attr:`columns` are required.

        Returns:
            int64 array of cell indices.

        Raises:
            ValueError: a variable the categories cut on is not given.
        """
        eta = abs_eta if abs_eta is not None else sceta
        given: dict[str, Any] = {"run": run, "eta": eta, "sceta": sceta, "r9": r9, "et": et}
        given.update(columns or {})
        variables = self.variables
        missing = [v for v in variables if given.get(v) is None]
        if missing or (self.uses_gain and gain is None):
            need = ", ".join([*missing, *(["gain"] if self.uses_gain and gain is None else [])])
            msg = f"{self.source}: the categories cut on {need}, but no values were given"
            raise ValueError(msg)
        n = np.size(next(x for x in (gain, eta, sceta, r9, et, run) if x is not None))
        if gain is None:
            gain = np.full(n, 12, dtype=np.int64)
        codes = {"eta": 0 if abs_eta is not None else 1, "sceta": 2, "r9": 3, "et": 4, "run": 5}
        codes.update({c: 6 + k for k, c in enumerate(self.columns)})
        extra = [_float64(given[c]) for c in self.columns]
        edges, offsets, strides, lut = self._grid()
        return jitted(_assign_loop)(  # type: ignore[no-any-return]
            *(_float64(x) for x in (abs_eta, sceta, r9, et, run)),
            np.stack(extra) if extra else np.zeros((0, n)),
            np.array([codes[v] for v in variables], dtype=np.int64),
            np.ascontiguousarray(gain, dtype=np.int64),
            edges,
            offsets,
            strides,
            lut,
            self.uses_gain,
        )

    def _grid(
        self,
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Lookup table of cell indices over the grid of all category edges (cached).

        Categories tile the grid (checked at load time), so each grid box belongs to at most
        one scale and one smear category: assigning a lepton is one ``searchsorted`` per
        variable cut on and one table look-up, whatever the number of categories. Returns the
        concatenated edges of :attr:`variables`, their offsets, the strides of the flat table
        (one per variable, then the gain's) and the flat table.
        """
        cached = self.__dict__.get("_grid_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        cats = (*self.scale, *self.smear)
        variables = self.variables
        edges = {
            name: np.array(
                sorted({v for c in cats for v in c.cut(name)} - {-_INF, _INF}),
                dtype=np.float64,
            )
            for name in variables
        }
        # representative point of every slot: midpoints inside, outside slots are marked -1
        mids = {}
        for name in variables:
            e = edges[name]
            inner = 0.5 * (e[:-1] + e[1:])
            mids[name] = np.concatenate([[e[0] - 1.0], inner, [e[-1] + 1.0]])
        gains = np.array([*_GAINS_ORDER, -1] if self.uses_gain else [12])
        mesh = np.meshgrid(*(mids[n] for n in variables), gains, indexing="ij")
        points = {n: m.ravel() for n, m in zip(variables, mesh, strict=False)}
        size = mesh[-1].size
        zeros = np.zeros(size)
        flat = self._assign_slow(
            run=points.get("run", zeros),
            abs_eta=points.get("eta", zeros),
            sceta=points.get("sceta", zeros),
            r9=points.get("r9", zeros),
            et=points.get("et", zeros),
            gain=mesh[-1].ravel(),
            columns={c: points[c] for c in self.columns},
        )
        shape = mesh[-1].shape
        strides = np.array(
            [int(np.prod(shape[k + 1 :])) for k in range(len(shape))], dtype=np.int64
        )
        offsets = np.cumsum([0, *(len(edges[n]) for n in variables)]).astype(np.int64)
        all_edges = np.concatenate([edges[n] for n in variables]) if variables else np.zeros(0)
        grid = (all_edges, offsets, strides, flat)
        object.__setattr__(self, "_grid_cache", grid)
        return grid

    def _assign_slow(self, **kw: Any) -> NDArray[np.int64]:
        """Reference assignment by testing every category (used to build the grid)."""
        n = len(kw["abs_eta"])
        scale_idx = np.full(n, -1, dtype=np.int64)
        for cat in self.scale:
            scale_idx[cat.contains(**kw)] = cat.index
        smear_idx = np.full(n, -1, dtype=np.int64)
        for cat in self.smear:
            smear_idx[cat.contains(**kw)] = cat.index
        lookup = np.full((len(self.scale) + 1, len(self.smear) + 1), -1, dtype=np.int64)
        for cell in self.cells:
            lookup[cell.scale, cell.smear] = cell.index
        out = lookup[scale_idx, smear_idx]
        out[(scale_idx < 0) | (smear_idx < 0)] = -1
        return out

    def to_yaml_dict(self) -> dict[str, Any]:
        """The scheme as a YAML-serialisable dict (the format :func:`load_categories` reads)."""

        def one(c: Category) -> dict[str, Any]:
            d: dict[str, Any] = {}
            for name in _FIXED:
                rng = c.cut(name)
                if rng != _NO_CUT:
                    hi = rng[1] - 1 if name == "run" else rng[1]  # runs: inclusive in files
                    d[name] = [_json_num(rng[0]), _json_num(hi)]
            if c.gain is not None:
                d["gain"] = c.gain
            if c.columns:
                d["columns"] = {n: [_json_num(lo), _json_num(hi)] for n, (lo, hi) in c.columns}
            return d

        return {
            "schema_version": 1,
            "scale": [one(c) for c in self.scale],
            "smear": [one(c) for c in self.smear],
        }


#: Up to this many edges of a variable, :func:`_assign_loop` counts the edges below a value
#: (no unpredictable branches: measured 35 % faster than bisection on |η| × R9 edges).
_LINEAR_SEARCH = 32


def _float64(x: Any) -> NDArray[np.float64]:
    """A flat float64 array of ``x`` (a view if it is one), empty for ``None``."""
    if x is None:
        return np.zeros(0)
    return np.ascontiguousarray(np.ravel(x), dtype=np.float64)


def _assign_loop(
    abs_eta: NDArray[np.float64],
    sceta: NDArray[np.float64],
    r9: NDArray[np.float64],
    et: NDArray[np.float64],
    run: NDArray[np.float64],
    extra: NDArray[np.float64],
    codes: NDArray[np.int64],
    gain: NDArray[np.int64],
    edges: NDArray[np.float64],
    offsets: NDArray[np.int64],
    strides: NDArray[np.int64],
    lut: NDArray[np.int64],
    use_gain: bool,
) -> NDArray[np.int64]:  # pragma: no cover
    """Cell of each lepton: one search per variable and one table look-up.

    Variable ``v`` of the grid is read from ``codes[v]``: 0 ``abs_eta``, 1 ``|sceta|``,
    2 ``sceta``, 3 ``r9``, 4 ``et``, 5 ``run``, ``6 + j`` row ``j`` of ``extra``.
    """
    n = len(gain)
    k = len(codes)
    out = np.empty(n, np.int64)
    for i in range(n):
        idx = 0
        for v in range(k):
            c = codes[v]
            if c == 0:
                x = abs_eta[i]
            elif c == 1:
                x = abs(sceta[i])
            elif c == 2:
                x = sceta[i]
            elif c == 3:
                x = r9[i]
            elif c == 4:
                x = et[i]
            elif c == 5:
                x = run[i]
            else:
                x = extra[c - 6, i]
            # np.searchsorted(edges, x, side="right"), NaN after the last edge: the number
            # of edges <= x, counted without branches for a few edges, else by bisection
            lo, hi = offsets[v], offsets[v + 1]
            if np.isnan(x):
                s = hi - lo
            elif hi - lo <= _LINEAR_SEARCH:
                s = 0
                for m in range(lo, hi):
                    s += edges[m] <= x
            else:
                base = lo
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if edges[mid] <= x:
                        lo = mid + 1
                    else:
                        hi = mid
                s = lo - base
            idx += s * strides[v]
        g = 0
        if use_gain:
            g = 3
            if gain[i] == 12:
                g = 0
            elif gain[i] == 6:
                g = 1
            elif gain[i] == 1:
                g = 2
        out[i] = lut[idx + g]
    return out


def region_code(ci: NDArray[np.int64], cj: NDArray[np.int64], n_cells: int) -> NDArray[np.int64]:
    """Encode the unordered cell pair of each lepton pair as ``min*n_cells + max``.

    Pairs with a lepton outside every category (index ``-1``) get ``-1``.
    """
    lo = np.minimum(ci, cj)
    hi = np.maximum(ci, cj)
    code = lo * n_cells + hi
    code[(lo < 0)] = -1
    return code


def region_pair(code: int, n_cells: int) -> tuple[int, int]:
    """Decode a region code into its ``(i, j)`` cell pair with ``i <= j``."""
    return divmod(int(code), n_cells)


# --------------------------------------------------------------------------- loading


class _CategoryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: tuple[int, int] | None = Field(None, description="Inclusive run range [min, max].")
    eta: tuple[float, float] | None = Field(None, description="|eta| range [min, max).")
    sceta: tuple[float, float] | None = Field(
        None,
        description="Signed supercluster eta range [min, max) (EE- and EE+ apart); a "
        "category list cuts on either eta or sceta.",
    )
    r9: tuple[float, float] | None = Field(None, description="R9 range [min, max).")
    et: tuple[float, float] | None = Field(None, description="Et range [min, max) in GeV.")
    gain: Literal[12, 6, 1] | None = Field(None, description="Seed gain (12, 6 or 1).")
    columns: dict[str, tuple[float, float]] | None = Field(
        None,
        description="Ranges [min, max) in other per-lepton input columns, by column name: an "
        "ECALELF branch, a NanoAOD Electron_* branch, a column_map 'columns' key, a Parquet "
        "column.",
    )


class _SchemeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(1, description="Version of the categories format.")
    scale: list[_CategoryModel] = Field(description="Scale categories (derived for data).")
    smear: list[_CategoryModel] = Field(
        default_factory=list, description="Smear categories (derived for MC)."
    )


def scheme_from_dict(raw: dict[str, Any], *, source: str = "<memory>") -> CategoryScheme:
    """Build a validated scheme from its YAML dict (the inverse of ``to_yaml_dict``)."""
    scale, smear = _categories_from_dict(raw, source=source)
    return build_scheme(scale, smear, source=source)


def load_categories(path: str | Path) -> CategoryScheme:
    """Load and validate a category scheme from a legacy TSV or a YAML file.

    Args:
        path: ``.tsv``/``.dat``/``.txt`` (pymin format) or ``.yaml``/``.yml``.

    Returns:
        The validated :class:`CategoryScheme`.

    Raises:
        InvalidCategories: unreadable file, malformed rows, bad ranges, gaps or overlaps.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "cats.yaml"
        >>> _ = p.write_text("scale:\\n  - {eta: [0, 1.4442]}\\n  - {eta: [1.566, 2.5]}\\n")
        >>> scheme = load_categories(p)
        >>> (len(scheme.scale), len(scheme.smear), scheme.n_cells)
        (2, 1, 2)
    """
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: categories file not found"
        raise InvalidCategories(msg)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{p}: cannot read categories file ({err.__class__.__name__}: {err})"
        raise InvalidCategories(msg) from None
    if p.suffix.lower() in {".yaml", ".yml"}:
        scale, smear = _parse_yaml(text, p)
    else:
        scale, smear = _parse_tsv(text, p)
    return build_scheme(scale, smear, source=str(p))


def build_scheme(
    scale: Sequence[Category], smear: Sequence[Category], *, source: str = "<memory>"
) -> CategoryScheme:
    """Validate scale/smear categories and form their cells.

    Raises:
        InvalidCategories: empty scale list, inverted ranges, bad column names, |η| and signed
            η mixed in one list, gaps or overlaps.
    """
    if not scale:
        msg = f"{source}: no scale categories defined (need at least one 'scale' row)"
        raise InvalidCategories(msg)
    for cat in (*scale, *smear):
        for name, (lo, hi) in cat.cuts().items():
            if not lo < hi:
                msg = (
                    f"{source}: {cat.kind} category {cat.index} has an empty or inverted "
                    f"{name} range [{_fmt(lo)}, {_fmt(hi)}); min must be < max"
                )
                raise InvalidCategories(msg)
        for name, _ in cat.columns:
            if name in VARIABLES or name == "abs_eta" or not _COLUMN_NAME.fullmatch(name):
                msg = (
                    f"{source}: {cat.kind} category {cat.index}: column name {name!r} is not "
                    f"allowed; use an input column name (letters, digits, '_', '.') other "
                    f"than {', '.join(VARIABLES)}"
                )
                raise InvalidCategories(msg)
    _check_tiling(scale, source)
    if not smear:
        smear = [_inclusive_like(scale)]
    else:
        _check_tiling(smear, source)
        _check_same_domain(scale, smear, source)
    cells: list[Cell] = []
    for s in scale:
        for m in smear:
            if _intersects(s, m):
                cells.append(Cell(index=len(cells), scale=s.index, smear=m.index))
    return CategoryScheme(scale=tuple(scale), smear=tuple(smear), cells=tuple(cells), source=source)


def _span(cats: Sequence[Category], name: str) -> tuple[float, float]:
    rngs = [c.cut(name) for c in cats]
    return (min(r[0] for r in rngs), max(r[1] for r in rngs))


def _inclusive_like(cats: Sequence[Category]) -> Category:
    names = sorted({n for c in cats for n, _ in c.columns})
    return Category(
        kind="smear",
        index=0,
        run=_span(cats, "run"),
        eta=_span(cats, "eta"),
        sceta=_span(cats, "sceta"),
        r9=_span(cats, "r9"),
        et=_span(cats, "et"),
        columns=tuple((n, _span(cats, n)) for n in names),
    )


def _parse_yaml(text: str, p: Path) -> tuple[list[Category], list[Category]]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        msg = f"{p}: malformed YAML{where}: {problem}"
        raise InvalidCategories(msg) from None
    return _categories_from_dict(raw, source=str(p))


def _categories_from_dict(raw: Any, *, source: str) -> tuple[list[Category], list[Category]]:
    p = source
    if not isinstance(raw, dict):
        msg = f"{p}: expected a mapping with keys 'scale' and 'smear', got {type(raw).__name__}"
        raise InvalidCategories(msg)
    try:
        model = _SchemeModel.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = f"{p}: field '{loc}': {first['msg']} (got {first.get('input')!r})"
        raise InvalidCategories(msg) from None

    def conv(kind: Kind, items: list[_CategoryModel]) -> list[Category]:
        out = []
        for i, m in enumerate(items):
            out.append(
                Category(
                    kind=kind,
                    index=i,
                    run=(float(m.run[0]), float(m.run[1]) + 1) if m.run else _NO_CUT,
                    eta=m.eta if m.eta else _NO_CUT,
                    sceta=m.sceta if m.sceta else _NO_CUT,
                    r9=m.r9 if m.r9 else _NO_CUT,
                    et=m.et if m.et else _NO_CUT,
                    gain=m.gain,
                    columns=tuple(sorted((m.columns or {}).items())),
                )
            )
        return out

    return conv("scale", model.scale), conv("smear", model.smear)


#: the columns of the legacy (pymin) TSV layouts, read by position
_LEGACY_TSV = {"type", "runMin", "runMax", "etaMin", "etaMax", "r9Min", "r9Max", "gain"} | {
    "etMin",
    "etMax",
}


def _parse_tsv(text: str, p: Path) -> tuple[list[Category], list[Category]]:
    lines = text.splitlines()
    header = next(
        (ln.strip().lstrip("#").split() for ln in lines if ln.strip().startswith("#")), None
    )
    if header is not None and not set(header) <= _LEGACY_TSV:
        return _parse_tsv_by_name(lines, header, p)
    legacy = ["type", "etaMin", "etaMax", "r9Min", "r9Max", "gain", "etMin", "etMax"]
    out: dict[str, list[Category]] = {"scale": [], "smear": []}
    for lineno, fields in _data_rows(lines):
        has_run = len(fields) == 10 or (header is not None and "runMin" in header)
        expected = 10 if has_run else 8
        if len(fields) != expected:
            msg = (
                f"{p}:{lineno}: expected {expected} columns "
                f"(type{' runMin runMax' if has_run else ''} etaMin etaMax r9Min r9Max gain "
                f"etMin etMax), got {len(fields)}"
            )
            raise InvalidCategories(msg)
        try:
            [float(x) for x in fields[1:]]
        except ValueError:
            msg = f"{p}:{lineno}: non-numeric value in {fields[1:]}"
            raise InvalidCategories(msg) from None
        names = [legacy[0], "runMin", "runMax", *legacy[1:]] if has_run else legacy
        row = dict(zip(names, fields, strict=True))
        _add_row(out, row, ["run", "eta", "r9", "et"][0 if has_run else 1 :], p, lineno)
    return out["scale"], out["smear"]


def _data_rows(lines: list[str]) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of the rows of a TSV (blank and ``#`` lines skipped)."""
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield lineno, stripped.split()


def _tsv_gain(raw: float, p: Path, lineno: int) -> int | None:
    gain: int | None = None if raw == -1 else int(raw)
    if gain is not None and (gain not in _GAINS or gain != raw):
        msg = f"{p}:{lineno}: column 'gain' is {raw:g}; allowed: 12, 6, 1 or -1 (no cut)"
        raise InvalidCategories(msg)
    return gain


def _parse_tsv_by_name(
    lines: list[str], header: list[str], p: Path
) -> tuple[list[Category], list[Category]]:
    """A TSV whose header names its columns: ``type``, ``gain`` and ``<var>Min <var>Max``
    pairs (``run``, ``eta``, ``scEta``, ``r9``, ``et`` or any input column). Legacy variables
    keep ``-1`` = no cut; in ``scEta`` and other columns ``-1`` is a value and ``*`` means no
    cut on that side."""
    if header[0] != "type":
        msg = f"{p}: the header must start with 'type', got {header[0]!r}"
        raise InvalidCategories(msg)
    pairs: list[str] = []
    for name in header[1:]:
        if name == "gain":
            continue
        base = name[:-3]
        if name.endswith("Min") and base and f"{base}Max" in header:
            pairs.append(base)
        elif not (name.endswith("Max") and f"{base}Min" in header):
            msg = (
                f"{p}: header column {name!r} is not allowed; use 'type', 'gain' and "
                "'<variable>Min <variable>Max' pairs (run, eta, scEta, r9, et or a column name)"
            )
            raise InvalidCategories(msg)
    out: dict[str, list[Category]] = {"scale": [], "smear": []}
    for lineno, fields in _data_rows(lines):
        if len(fields) != len(header):
            msg = f"{p}:{lineno}: expected {len(header)} columns ({' '.join(header)}), got {len(fields)}"
            raise InvalidCategories(msg)
        _add_row(out, dict(zip(header, fields, strict=True)), pairs, p, lineno)
    return out["scale"], out["smear"]


def _add_row(
    out: dict[str, list[Category]], row: dict[str, str], pairs: list[str], p: Path, lineno: int
) -> None:
    """Append the category of one TSV row (by column name) to ``out[type]``."""
    kind = row["type"]
    if kind not in ("scale", "smear"):
        msg = f"{p}:{lineno}: column 'type' is {kind!r}; allowed: 'scale', 'smear'"
        raise InvalidCategories(msg)
    cuts: dict[str, tuple[float, float]] = {}
    for base in pairs:
        lo_s, hi_s = row[f"{base}Min"], row[f"{base}Max"]
        try:
            lo = -_INF if lo_s == "*" else float(lo_s)
            hi = _INF if hi_s == "*" else float(hi_s)
        except ValueError:
            msg = (
                f"{p}:{lineno}: column '{base}Min/{base}Max' is {lo_s!r}/{hi_s!r}; "
                "allowed: numbers or '*' (no cut)"
            )
            raise InvalidCategories(msg) from None
        # pymin's variables: -1 = no cut; signed eta and input columns: -1 is a value
        cuts[base] = _rng(lo, hi) if base in ("run", "eta", "r9", "et") else (lo, hi)
    gain = None
    if "gain" in row:
        try:
            gain = _tsv_gain(float(row["gain"]), p, lineno)
        except ValueError:
            msg = f"{p}:{lineno}: column 'gain' is {row['gain']!r}; allowed: 12, 6, 1 or -1"
            raise InvalidCategories(msg) from None
    run = cuts.pop("run", _NO_CUT)
    if run != _NO_CUT:
        run = (run[0], run[1] + 1)  # inclusive run ranges are stored half-open
    target = out[kind]
    target.append(
        Category(
            kind=kind,  # type: ignore[arg-type]
            index=len(target),
            run=run,
            eta=cuts.pop("eta", _NO_CUT),
            sceta=cuts.pop("scEta", _NO_CUT),
            r9=cuts.pop("r9", _NO_CUT),
            et=cuts.pop("et", _NO_CUT),
            gain=gain,
            columns=tuple(sorted(cuts.items())),
        )
    )


def _rng(lo: float, hi: float) -> tuple[float, float]:
    """pymin convention: ``-1`` means no cut on that side (both ``-1``: no cut at all)."""
    return (-_INF if lo == -1 else lo, _INF if hi == -1 else hi)


def _in_crack(lo: float, hi: float) -> bool:
    """Whether the signed-η interval ``[lo, hi)`` lies inside the crack on either side."""
    return (lo >= CRACK[0] and hi <= CRACK[1]) or (lo >= -CRACK[1] and hi <= -CRACK[0])


def _signed_eta(cat: Category) -> list[tuple[float, float]]:
    """The signed-η intervals a category covers (its |η| range on both sides)."""
    if cat.sceta != _NO_CUT:
        return [cat.sceta]
    if cat.eta == _NO_CUT:
        return [_NO_CUT]
    lo, hi = cat.eta
    return [(lo, hi), (-hi, -lo)]


def _intersects(a: Category, b: Category) -> bool:
    names = ({"run", "r9", "et"} | {n for n, _ in (*a.columns, *b.columns)}) - {"eta"}
    for name in names:
        alo, ahi = a.cut(name)
        blo, bhi = b.cut(name)
        if max(alo, blo) >= min(ahi, bhi):
            return False
    if a.gain is not None and b.gain is not None and a.gain != b.gain:
        return False
    # η: in signed η (|η| ranges on both sides); an overlap only inside the crack, which is
    # uncovered, is not an intersection
    for alo, ahi in _signed_eta(a):
        for blo, bhi in _signed_eta(b):
            lo, hi = max(alo, blo), min(ahi, bhi)
            if lo < hi and not _in_crack(lo, hi):
                return True
    return False


def _check_tiling(cats: Sequence[Category], source: str) -> None:
    """Every grid cell of the union of edges is covered exactly once (crack excepted).

    Coverage is counted on the grid of all category edges in one array (each category adds
    1 to the grid boxes it spans), so the check costs one slice per category, not one test
    per (box, category); the first offending box (in run, |η|, η, R9, Et, columns, gain
    order) is named.
    """
    kind = cats[0].kind
    if any(c.eta != _NO_CUT for c in cats) and any(c.sceta != _NO_CUT for c in cats):
        msg = (
            f"{source}: {kind} categories cut on both |eta| ('eta') and signed eta ('sceta'); "
            f"use one of them in the {kind} list"
        )
        raise InvalidCategories(msg)
    columns = sorted({n for c in cats for n, _ in c.columns})
    names = [*_FIXED, *columns]
    edges = {n: sorted({v for c in cats for v in c.cut(n)}) for n in names}
    gains: list[int | None] = [None] if all(c.gain is None for c in cats) else list(_GAINS)
    slot = {n: {v: i for i, v in enumerate(edges[n])} for n in names}
    count = np.zeros([len(edges[n]) - 1 for n in names] + [len(gains)], dtype=np.int64)
    for c in cats:
        span: list[Any] = [slice(slot[n][c.cut(n)[0]], slot[n][c.cut(n)[1]]) for n in names]
        span.append(slice(None) if c.gain is None else gains.index(c.gain))
        count[tuple(span)] += 1
    crack = np.zeros(count.shape, dtype=bool)
    for axis in (names.index("eta"), names.index("sceta")):
        iv = list(itertools.pairwise(edges[names[axis]]))
        inside = np.array([_in_crack(lo, hi) for lo, hi in iv], dtype=bool)
        shape = [1] * count.ndim
        shape[axis] = len(iv)
        crack |= inside.reshape(shape)
    bad = (count != 1) & ~crack
    if not bad.any():
        return
    first = np.argwhere(bad)[0]
    box = {n: (edges[n][first[k]], edges[n][first[k] + 1]) for k, n in enumerate(names)}
    gain = gains[first[-1]]
    mid = {n: _mid(*box[n]) for n in names}
    owners = [
        c
        for c in cats
        if all(c.cut(n)[0] <= mid[n] < c.cut(n)[1] for n in names)
        and (c.gain is None or gain is None or c.gain == gain)
    ]
    shown = {"eta": "|eta|", "sceta": "eta"}
    where = ", ".join(
        f"{shown.get(n, n)} [{_fmt(box[n][0])}, {_fmt(box[n][1])})"
        for n in names
        if box[n] != _NO_CUT
    )
    if gain is not None:
        where += f", gain {gain}"
    if len(owners) > 1:
        idx = ", ".join(str(c.index) for c in owners)
        msg = f"{source}: {kind} categories {idx} overlap in {where}"
        raise InvalidCategories(msg)
    msg = f"{source}: gap in {kind} categories: no category covers {where}"
    raise InvalidCategories(msg)


def _abs_eta_span(cats: Sequence[Category]) -> tuple[float, float]:
    """The |η| range a category list covers (from its |η| or signed-η ranges)."""
    if any(c.sceta != _NO_CUT for c in cats):
        lo, hi = _span(cats, "sceta")
        if lo < 0 < hi:
            return (0.0, max(-lo, hi))
        return (min(abs(lo), abs(hi)), max(abs(lo), abs(hi)))
    return _span(cats, "eta")


def _check_same_domain(scale: Sequence[Category], smear: Sequence[Category], source: str) -> None:
    columns = sorted({n for c in (*scale, *smear) for n, _ in c.columns})
    for name in ("run", "eta", "sceta", "r9", "et", *columns):
        if name == "eta":
            a, b = _abs_eta_span(scale), _abs_eta_span(smear)
            shown = "|eta|"
        elif name == "sceta":
            signed = [any(c.sceta != _NO_CUT for c in x) for x in (scale, smear)]
            if not all(signed):
                continue  # compared in |eta|
            a, b = _span(scale, name), _span(smear, name)
            shown = "eta"
        else:
            a, b = _span(scale, name), _span(smear, name)
            shown = name
        if a != b:
            msg = (
                f"{source}: scale categories cover {shown} [{_fmt(a[0])}, {_fmt(a[1])}) but "
                f"smear categories cover [{_fmt(b[0])}, {_fmt(b[1])}); both must cover the same "
                "range"
            )
            raise InvalidCategories(msg)


def _mid(lo: float, hi: float) -> float:
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(lo):
        return hi - 1.0
    if math.isinf(hi):
        return lo + 1.0
    return 0.5 * (lo + hi)


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:g}"


def _json_num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v
