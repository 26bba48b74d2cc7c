"""Single-lepton category schemes: loading (legacy TSV and YAML), validation, assignment.

A category is a box in (run, |η|, R9, Et, gain). A scheme holds *scale* categories (derived
for data) and *smear* categories (derived for MC). Each lepton is assigned to one *cell*: the
non-empty intersection of one scale and one smear category. Pair regions are built over cells
as ``(min(c_i, c_j), max(c_i, c_j))`` (see ``DESIGN.md``).

The legacy TSV (pymin) reads::

    #type   etaMin  etaMax  r9Min   r9Max   gain    etMin   etMax
    scale   0.      1.      0.      0.96    -1      -1      -1

with ``-1`` meaning "no cut". Optional ``runMin runMax`` columns may precede ``etaMin``.
The YAML equivalent::

    schema_version: 1
    scale:
      - {eta: [0, 1], r9: [0, 0.96]}
    smear:
      - {eta: [0, 1], r9: [0, 0.96]}

Gaps or overlaps inside the covered domain raise :class:`~zcalib.exceptions.InvalidCategories`
naming the offending ranges. The only gap that is allowed is the ECAL barrel/endcap crack in
|η| (1.4442-1.566), which no electron category covers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
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
#: Variables a category may cut on, in the order used for (de)serialisation.
VARIABLES: tuple[str, ...] = ("run", "eta", "r9", "et", "gain")
_GAINS = (1, 6, 12)
_GAINS_ORDER = (12, 6, 1)
_GRID_VARS = ("run", "eta", "r9", "et")
_INF = math.inf

Kind = Literal["scale", "smear"]


@dataclass(frozen=True)
class Category:
    """One single-lepton category: half-open ranges ``[lo, hi)`` per variable.

    Run ranges are inclusive ``[min, max]`` in files and stored here as ``[min, max + 1)``.

    ``eta`` is a range in |η| (supercluster η when available). A range of
    ``(-inf, inf)`` means no cut; ``gain`` is ``None`` for no cut or one of 12, 6, 1.
    """

    kind: Kind
    index: int
    run: tuple[float, float] = (-_INF, _INF)
    eta: tuple[float, float] = (-_INF, _INF)
    r9: tuple[float, float] = (-_INF, _INF)
    et: tuple[float, float] = (-_INF, _INF)
    gain: int | None = None

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The continuous ranges of this category, by variable name."""
        return {"run": self.run, "eta": self.eta, "r9": self.r9, "et": self.et}

    def label(self) -> str:
        """A short human-readable label, e.g. ``scale[3] |eta| 1.566-2 r9 0-0.96``."""
        parts = [f"{self.kind}[{self.index}]"]
        for name, (lo, hi) in self.ranges().items():
            if (lo, hi) != (-_INF, _INF):
                shown = "|eta|" if name == "eta" else name
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
    ) -> NDArray[np.bool_]:
        """Boolean mask of the leptons inside this category (half-open ranges)."""
        mask = (abs_eta >= self.eta[0]) & (abs_eta < self.eta[1])
        mask &= (r9 >= self.r9[0]) & (r9 < self.r9[1])
        mask &= (et >= self.et[0]) & (et < self.et[1])
        mask &= (run >= self.run[0]) & (run < self.run[1])
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
        return any(c.run != (-_INF, _INF) for c in (*self.scale, *self.smear))

    def cell_scale_index(self) -> NDArray[np.int64]:
        """Scale-category index of each cell."""
        return np.array([c.scale for c in self.cells], dtype=np.int64)

    def cell_smear_index(self) -> NDArray[np.int64]:
        """Smear-category index of each cell."""
        return np.array([c.smear for c in self.cells], dtype=np.int64)

    def assign(
        self,
        *,
        abs_eta: NDArray[np.floating[Any]],
        r9: NDArray[np.floating[Any]],
        et: NDArray[np.floating[Any]],
        gain: NDArray[np.integer[Any]] | None = None,
        run: NDArray[np.integer[Any]] | None = None,
    ) -> NDArray[np.int64]:
        """Cell index of each lepton, ``-1`` for leptons outside every category.

        Args:
            abs_eta: |η| of each lepton (flat numpy array).
            r9: R9 of each lepton.
            et: transverse energy of each lepton [GeV].
            gain: seed gain (12/6/1) of each lepton; required if a category cuts on gain.
            run: run number of each lepton; required if a category cuts on run.

        Returns:
            int64 array of cell indices.
        """
        n = len(abs_eta)
        if gain is None:
            gain = np.full(n, 12, dtype=np.int64)
        if run is None:
            run = np.zeros(n, dtype=np.int64)
        edges, lut = self._grid()
        return jitted(_assign_loop)(  # type: ignore[no-any-return]
            np.asarray(run, dtype=np.float64),
            np.asarray(abs_eta, dtype=np.float64),
            np.asarray(r9, dtype=np.float64),
            np.asarray(et, dtype=np.float64),
            np.asarray(gain, dtype=np.int64),
            edges["run"],
            edges["eta"],
            edges["r9"],
            edges["et"],
            lut,
        )

    def _grid(self) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.int64]]:
        """Lookup table of cell indices over the grid of all category edges (cached).

        Categories tile the grid (checked at load time), so each grid box belongs to at most
        one scale and one smear category: assigning a lepton is one ``searchsorted`` per
        variable and one table look-up, whatever the number of categories.
        """
        cached = self.__dict__.get("_grid_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        cats = (*self.scale, *self.smear)
        edges = {
            name: np.array(
                sorted({v for c in cats for v in c.ranges()[name]} - {-_INF, _INF}),
                dtype=np.float64,
            )
            for name in _GRID_VARS
        }
        uses_gain = any(c.gain is not None for c in cats)
        # representative point of every slot: midpoints inside, outside slots are marked -1
        mids = {}
        for name in _GRID_VARS:
            e = edges[name]
            inner = 0.5 * (e[:-1] + e[1:]) if len(e) > 1 else np.zeros(0)
            lo = e[0] - 1.0 if len(e) else 0.0
            hi = e[-1] + 1.0 if len(e) else 0.0
            mids[name] = np.concatenate([[lo], inner, [hi]]) if len(e) else np.array([0.0])
        gains = np.array([*_GAINS_ORDER, -1] if uses_gain else [12])
        mesh = np.meshgrid(*(mids[n] for n in _GRID_VARS), gains, indexing="ij")
        flat = self._assign_slow(
            run=mesh[0].ravel(),
            abs_eta=mesh[1].ravel(),
            r9=mesh[2].ravel(),
            et=mesh[3].ravel(),
            gain=mesh[4].ravel(),
        )
        lut = flat.reshape(mesh[0].shape)
        object.__setattr__(self, "_grid_cache", (edges, lut))
        return edges, lut

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
            for name, rng in c.ranges().items():
                if rng != (-_INF, _INF):
                    hi = rng[1] - 1 if name == "run" else rng[1]  # runs: inclusive in files
                    d[name] = [_json_num(rng[0]), _json_num(hi)]
            if c.gain is not None:
                d["gain"] = c.gain
            return d

        return {
            "schema_version": 1,
            "scale": [one(c) for c in self.scale],
            "smear": [one(c) for c in self.smear],
        }


def _assign_loop(
    run: NDArray[np.float64],
    abs_eta: NDArray[np.float64],
    r9: NDArray[np.float64],
    et: NDArray[np.float64],
    gain: NDArray[np.int64],
    e_run: NDArray[np.float64],
    e_eta: NDArray[np.float64],
    e_r9: NDArray[np.float64],
    e_et: NDArray[np.float64],
    lut: NDArray[np.int64],
) -> NDArray[np.int64]:  # pragma: no cover
    """Cell of each lepton: one binary search per variable and one table look-up."""
    n = len(abs_eta)
    out = np.empty(n, np.int64)
    gains = lut.shape[4] > 1
    for i in range(n):
        # np.searchsorted(edges, v, side="right"); NaN after the last edge; no edges: 0
        a = len(e_run) if np.isnan(run[i]) else np.searchsorted(e_run, run[i], side="right")
        b = len(e_eta) if np.isnan(abs_eta[i]) else np.searchsorted(e_eta, abs_eta[i], "right")
        c = len(e_r9) if np.isnan(r9[i]) else np.searchsorted(e_r9, r9[i], side="right")
        d = len(e_et) if np.isnan(et[i]) else np.searchsorted(e_et, et[i], side="right")
        g = 0
        if gains:
            g = 3
            if gain[i] == 12:
                g = 0
            elif gain[i] == 6:
                g = 1
            elif gain[i] == 1:
                g = 2
        out[i] = lut[a, b, c, d, g]
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
    r9: tuple[float, float] | None = Field(None, description="R9 range [min, max).")
    et: tuple[float, float] | None = Field(None, description="Et range [min, max) in GeV.")
    gain: Literal[12, 6, 1] | None = Field(None, description="Seed gain (12, 6 or 1).")


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
        InvalidCategories: empty scale list, inverted ranges, gaps or overlaps.
    """
    if not scale:
        msg = f"{source}: no scale categories defined (need at least one 'scale' row)"
        raise InvalidCategories(msg)
    for cat in (*scale, *smear):
        for name, (lo, hi) in cat.ranges().items():
            if not lo < hi:
                msg = (
                    f"{source}: {cat.kind} category {cat.index} has an empty or inverted "
                    f"{name} range [{_fmt(lo)}, {_fmt(hi)}); min must be < max"
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


def _inclusive_like(cats: Sequence[Category]) -> Category:
    def span(name: str) -> tuple[float, float]:
        rngs = [c.ranges()[name] for c in cats]
        return (min(r[0] for r in rngs), max(r[1] for r in rngs))

    return Category(
        kind="smear", index=0, run=span("run"), eta=span("eta"), r9=span("r9"), et=span("et")
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
                    run=(float(m.run[0]), float(m.run[1]) + 1) if m.run else (-_INF, _INF),
                    eta=m.eta if m.eta else (-_INF, _INF),
                    r9=m.r9 if m.r9 else (-_INF, _INF),
                    et=m.et if m.et else (-_INF, _INF),
                    gain=m.gain,
                )
            )
        return out

    return conv("scale", model.scale), conv("smear", model.smear)


def _parse_tsv(text: str, p: Path) -> tuple[list[Category], list[Category]]:
    scale: list[Category] = []
    smear: list[Category] = []
    header: list[str] | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if header is None:
                header = stripped.lstrip("#").split()
            continue
        fields = stripped.split()
        has_run = len(fields) == 10 or (header is not None and "runMin" in header)
        expected = 10 if has_run else 8
        if len(fields) != expected:
            msg = (
                f"{p}:{lineno}: expected {expected} columns "
                f"(type{' runMin runMax' if has_run else ''} etaMin etaMax r9Min r9Max gain "
                f"etMin etMax), got {len(fields)}"
            )
            raise InvalidCategories(msg)
        kind = fields[0]
        if kind not in ("scale", "smear"):
            msg = f"{p}:{lineno}: column 'type' is {kind!r}; allowed: 'scale', 'smear'"
            raise InvalidCategories(msg)
        try:
            nums = [float(x) for x in fields[1:]]
        except ValueError:
            msg = f"{p}:{lineno}: non-numeric value in {fields[1:]}"
            raise InvalidCategories(msg) from None
        run: tuple[float, float] = (-_INF, _INF)
        if has_run:
            run = _rng(nums[0], nums[1])
            run = (run[0], run[1] + 1)  # inclusive run ranges are stored half-open
            nums = nums[2:]
        gain_raw = nums[4]
        gain: int | None = None if gain_raw == -1 else int(gain_raw)
        if gain is not None and gain not in _GAINS:
            msg = f"{p}:{lineno}: column 'gain' is {gain_raw:g}; allowed: 12, 6, 1 or -1 (no cut)"
            raise InvalidCategories(msg)
        target = scale if kind == "scale" else smear
        target.append(
            Category(
                kind=kind,  # type: ignore[arg-type]
                index=len(target),
                run=run,
                eta=_rng(nums[0], nums[1]),
                r9=_rng(nums[2], nums[3]),
                et=_rng(nums[5], nums[6]),
                gain=gain,
            )
        )
    return scale, smear


def _rng(lo: float, hi: float) -> tuple[float, float]:
    """pymin convention: ``-1`` means no cut on that side (both ``-1``: no cut at all)."""
    return (-_INF if lo == -1 else lo, _INF if hi == -1 else hi)


def _intersects(a: Category, b: Category) -> bool:
    for name in ("run", "eta", "r9", "et"):
        alo, ahi = a.ranges()[name]
        blo, bhi = b.ranges()[name]
        if max(alo, blo) >= min(ahi, bhi):
            return False
    if a.gain is not None and b.gain is not None and a.gain != b.gain:
        return False
    # the crack is uncovered: an eta overlap only inside it is not an intersection
    lo = max(a.eta[0], b.eta[0])
    hi = min(a.eta[1], b.eta[1])
    return not (lo >= CRACK[0] and hi <= CRACK[1])


def _check_tiling(cats: Sequence[Category], source: str) -> None:
    """Every grid cell of the union of edges is covered exactly once (crack excepted).

    Coverage is counted on the grid of all category edges in one array (each category adds
    1 to the grid boxes it spans), so the check costs one slice per category, not one test
    per (box, category); the first offending box (in run, |η|, R9, Et, gain order) is named.
    """
    names = ("run", "eta", "r9", "et")
    edges = {n: sorted({v for c in cats for v in c.ranges()[n]}) for n in names}
    gains: list[int | None] = [None] if all(c.gain is None for c in cats) else list(_GAINS)
    kind = cats[0].kind
    slot = {n: {v: i for i, v in enumerate(edges[n])} for n in names}
    count = np.zeros([len(edges[n]) - 1 for n in names] + [len(gains)], dtype=np.int64)
    for c in cats:
        rng = c.ranges()
        span: list[Any] = [slice(slot[n][rng[n][0]], slot[n][rng[n][1]]) for n in names]
        span.append(slice(None) if c.gain is None else gains.index(c.gain))
        count[tuple(span)] += 1
    eta_iv = list(itertools.pairwise(edges["eta"]))
    crack = np.array([lo >= CRACK[0] and hi <= CRACK[1] for lo, hi in eta_iv], dtype=bool)
    bad = (count != 1) & ~crack[None, :, None, None, None]
    if not bad.any():
        return
    first = np.argwhere(bad)[0]
    box = {n: (edges[n][first[k]], edges[n][first[k] + 1]) for k, n in enumerate(names)}
    gain = gains[first[4]]
    mid = {n: _mid(*box[n]) for n in names}
    owners = [
        c
        for c in cats
        if all(c.ranges()[n][0] <= mid[n] < c.ranges()[n][1] for n in names)
        and (c.gain is None or gain is None or c.gain == gain)
    ]
    where = ", ".join(
        f"{'|eta|' if n == 'eta' else n} [{_fmt(box[n][0])}, {_fmt(box[n][1])})"
        for n in names
        if box[n] != (-_INF, _INF)
    )
    if gain is not None:
        where += f", gain {gain}"
    if len(owners) > 1:
        idx = ", ".join(str(c.index) for c in owners)
        msg = f"{source}: {kind} categories {idx} overlap in {where}"
        raise InvalidCategories(msg)
    msg = f"{source}: gap in {kind} categories: no category covers {where}"
    raise InvalidCategories(msg)


def _check_same_domain(scale: Sequence[Category], smear: Sequence[Category], source: str) -> None:
    for name in ("run", "eta", "r9", "et"):
        a = (min(c.ranges()[name][0] for c in scale), max(c.ranges()[name][1] for c in scale))
        b = (min(c.ranges()[name][0] for c in smear), max(c.ranges()[name][1] for c in smear))
        if a != b:
            msg = (
                f"{source}: scale categories cover {name} [{_fmt(a[0])}, {_fmt(a[1])}) but smear "
                f"categories cover [{_fmt(b[0])}, {_fmt(b[1])}); both must cover the same range"
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
