"""Plot categories for data/MC validation plots (pyval's plot-category files), TSV or YAML.

A plot category names one plot: its style, the variable drawn, and cuts on the leading and
the subleading lepton (ordered by corrected Et). The pyval TSV reads::

    style   name            variable          eta0          r90          et0      eta1          r91          et1
    paper   EbEb_inclusive  invMass_ECAL_ele  (0,1.4442)    (-1,-1)      (-1,-1)  (0,1.4442)    (-1,-1)      (-1,-1)

with ``(min,max)`` tuples; ``-1`` means no cut on that side and ``(-1,-1)`` no cut at all
(``eta`` is |η_SC|, ``r9`` is R9, ``et`` the corrected Et in GeV; ranges are half-open
``[min, max)``). The header line (optionally starting with ``#``) may be omitted; other
``#`` lines are comments. The YAML equivalent::

    schema_version: 1
    plots:
      - name: EbEb_inclusive
        style: paper
        variable: invMass_ECAL_ele
        lead: {eta: [0, 1.4442]}
        sublead: {eta: [0, 1.4442]}
        range: [80, 100]     # optional: x range (default per variable)
      - name: EEminus_EEminus
        lead: {sceta: [-2.5, -1.566]}     # signed η_SC (YAML only; -1 is a value here)
        sublead: {sceta: [-2.5, -1.566]}
        bins: 40             # optional: number of bins (default: --binning)

Styles: ``paper`` (data vs corrected MC, ratio pad) and ``crosscheck`` (the same plus the
uncorrected data and unsmeared MC). Names must be unique and usable as file names.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "plots.tsv"
    >>> _ = p.write_text("paper EB invMass_ECAL_ele (0,1.4442) (-1,-1) (-1,-1) "
    ...                  "(0,1.4442) (-1,-1) (-1,-1)\\n")
    >>> [(c.name, c.lead.eta) for c in load_plot_categories(p)]
    [('EB', (0.0, 1.4442))]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zcalib.config import format_validation_error, load_yaml
from zcalib.exceptions import InvalidConfig

__all__ = [
    "STYLES",
    "LeptonCuts",
    "PlotCategory",
    "load_plot_categories",
    "plot_categories_from_dict",
]

#: Plot styles understood by :func:`zcalib.validation.plots.plot_data_mc`.
STYLES: tuple[str, ...] = ("paper", "crosscheck")
_TSV_COLUMNS = ("style", "name", "variable", "eta0", "r90", "et0", "eta1", "r91", "et1")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_INF = math.inf

Range = tuple[float, float]
_NO_CUT: Range = (-_INF, _INF)


def _fmt(v: float) -> str:
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:g}"


@dataclass(frozen=True)
class LeptonCuts:
    """Cuts on one lepton of the pair: half-open ranges, ``(-inf, inf)`` = no cut.

    Attributes:
        eta: |η_SC| range.
        r9: R9 range.
        et: corrected Et range [GeV].
        sceta: signed η_SC range (EE− and EE+ apart).
    """

    eta: Range = _NO_CUT
    r9: Range = _NO_CUT
    et: Range = _NO_CUT
    sceta: Range = _NO_CUT

    def ranges(self) -> dict[str, Range]:
        """The ranges by variable name (``eta``, ``r9``, ``et``, ``sceta``)."""
        return {"eta": self.eta, "r9": self.r9, "et": self.et, "sceta": self.sceta}

    @property
    def is_open(self) -> bool:
        """True when nothing is cut."""
        return all(r == _NO_CUT for r in self.ranges().values())

    def mask(
        self,
        abs_eta: NDArray[np.floating[Any]],
        r9: NDArray[np.floating[Any]],
        et: NDArray[np.floating[Any]],
        sc_eta: NDArray[np.floating[Any]] | None = None,
    ) -> NDArray[np.bool_]:
        """Boolean mask of the leptons passing these cuts (``sc_eta``: signed η_SC, needed
        when the cuts hold a ``sceta`` range)."""
        out = np.ones(np.shape(abs_eta), dtype=bool)
        pairs = [(self.eta, abs_eta), (self.r9, r9), (self.et, et)]
        if self.sceta != _NO_CUT:
            if sc_eta is None:
                msg = "LeptonCuts.mask: a signed-eta (sceta) cut needs the signed eta_SC"
                raise ValueError(msg)
            pairs.append((self.sceta, sc_eta))
        for (lo, hi), x in pairs:
            if lo > -_INF:
                out &= x >= lo
            if hi < _INF:
                out &= x < hi
        return out

    def describe(self) -> str:
        """Short text such as ``|η| 0-1.4442, R9 ≥ 0.96`` (empty when nothing is cut)."""
        parts = []
        for name, shown in (("eta", "|η|"), ("sceta", "η"), ("r9", "R9"), ("et", "E_T")):
            lo, hi = self.ranges()[name]
            if (lo, hi) == _NO_CUT:
                continue
            if math.isinf(lo):
                parts.append(f"{shown} < {_fmt(hi)}")
            elif math.isinf(hi):
                parts.append(f"{shown} ≥ {_fmt(lo)}")
            else:
                parts.append(f"{shown} {_fmt(lo)}–{_fmt(hi)}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, list[float | None]]:
        """JSON-ready cuts (``None`` for an open side); open variables are left out."""
        return {
            k: [None if math.isinf(lo) else lo, None if math.isinf(hi) else hi]
            for k, (lo, hi) in self.ranges().items()
            if (lo, hi) != _NO_CUT
        }


@dataclass(frozen=True)
class PlotCategory:
    """One validation plot.

    Attributes:
        style: ``paper`` or ``crosscheck``.
        name: unique name (used for file names and titles).
        variable: variable to draw (``invMass_ECAL_ele``/``mass``, a derived variable or an
            input branch, see :mod:`zcalib.validation.plots`).
        lead: cuts on the leading lepton (by corrected Et).
        sublead: cuts on the subleading lepton.
        range: x range, ``None`` for the variable's default.
        bins: number of bins, ``None`` for the global ``--binning``.
        source: where the category was defined (``file:line``), for messages.
    """

    style: Literal["paper", "crosscheck"]
    name: str
    variable: str
    lead: LeptonCuts = LeptonCuts()
    sublead: LeptonCuts = LeptonCuts()
    range: Range | None = None
    bins: int | None = None
    source: str = "<memory>"

    def describe(self) -> str:
        """Text describing the cuts (for plot annotations)."""
        lead, sub = self.lead.describe(), self.sublead.describe()
        if lead == sub:
            return f"both: {lead}" if lead else "inclusive"
        parts = []
        if lead:
            parts.append(f"lead: {lead}")
        if sub:
            parts.append(f"sublead: {sub}")
        return "; ".join(parts)

    def title(self) -> str:
        """The physics title drawn on the plot (the name is only the file name).

        Example:
            >>> eb = LeptonCuts(eta=(0.0, 1.4442))
            >>> PlotCategory("paper", "EbEb_inclusive", "mass", eb, eb).title()
            'both electrons |η| 0–1.4442'
            >>> PlotCategory("paper", "x", "mass", eb, LeptonCuts(r9=(0.96, math.inf))).title()
            'leading |η| 0–1.4442 × subleading R9 ≥ 0.96'
            >>> PlotCategory("paper", "inclusive", "mass").title()
            'all pairs'
        """
        lead, sub = self.lead.describe(), self.sublead.describe()
        if lead == sub:
            return f"both electrons {lead}" if lead else "all pairs"
        return f"leading {lead or 'any'} × subleading {sub or 'any'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "style": self.style,
            "variable": self.variable,
            "lead": self.lead.to_dict(),
            "sublead": self.sublead.to_dict(),
            "range": list(self.range) if self.range is not None else None,
            "bins": self.bins,
        }


# --------------------------------------------------------------------------- YAML models
class _CutsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    eta: tuple[float, float] | None = Field(
        None, description="|eta_SC| range [min, max); -1 = open."
    )
    r9: tuple[float, float] | None = Field(None, description="R9 range [min, max); -1 = open.")
    et: tuple[float, float] | None = Field(
        None, description="Corrected Et range [min, max) in GeV; -1 = open."
    )
    sceta: tuple[float, float] | None = Field(
        None, description="Signed eta_SC range [min, max) (-1 is a value, not 'open')."
    )


class _PlotModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Unique plot name (file-name safe).")
    style: Literal["paper", "crosscheck"] = Field("paper", description="Plot style.")
    variable: str = Field("invMass_ECAL_ele", min_length=1, description="Variable to draw.")
    lead: _CutsModel = Field(default_factory=_CutsModel, description="Leading-lepton cuts.")
    sublead: _CutsModel = Field(default_factory=_CutsModel, description="Subleading cuts.")
    range: tuple[float, float] | None = Field(None, description="x range [lo, hi].")
    bins: int | None = Field(None, gt=0, description="Number of bins.")

    @field_validator("style", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(1, description="Version of the plot-category format.")
    plots: list[_PlotModel] = Field(min_length=1, description="The plot categories.")


def _range(lo: float, hi: float, what: str, where: str) -> Range:
    """pyval convention: ``-1`` = no cut on that side; checks ``min < max``."""
    rng = (-_INF if lo == -1 else float(lo), _INF if hi == -1 else float(hi))
    if not rng[0] < rng[1]:
        msg = f"{where}: {what} range ({lo:g},{hi:g}) is empty or inverted; min must be < max"
        raise InvalidConfig(msg)
    return rng


def _cuts(model: _CutsModel, where: str, which: str) -> LeptonCuts:
    out: dict[str, Range] = {}
    for name in ("eta", "r9", "et"):
        value = getattr(model, name)
        out[name] = (
            _NO_CUT if value is None else _range(value[0], value[1], f"{which} {name}", where)
        )
    if model.sceta is not None:
        lo, hi = (float(x) for x in model.sceta)
        if not lo < hi:
            msg = f"{where}: {which} sceta range ({lo:g},{hi:g}) is empty or inverted; min must be < max"
            raise InvalidConfig(msg)
        out["sceta"] = (lo, hi)
    return LeptonCuts(**out)


def plot_categories_from_dict(raw: Any, *, source: str = "<memory>") -> list[PlotCategory]:
    """Validate a YAML-style dict (``{"plots": [...]}``) into plot categories.

    Raises:
        InvalidConfig: unknown keys, bad values, duplicate or unsafe names.
    """
    if not isinstance(raw, dict):
        msg = f"{source}: expected a mapping with a 'plots' list, got {type(raw).__name__}"
        raise InvalidConfig(msg)
    try:
        model = _FileModel.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error(source, err)) from None
    cats = []
    for i, p in enumerate(model.plots):
        where = f"{source}: plots[{i}] ({p.name})"
        rng = None
        if p.range is not None:
            if not p.range[0] < p.range[1]:
                msg = f"{where}: range {list(p.range)} is empty or inverted; need lo < hi"
                raise InvalidConfig(msg)
            rng = (float(p.range[0]), float(p.range[1]))
        cats.append(
            PlotCategory(
                style=p.style,
                name=p.name,
                variable=p.variable,
                lead=_cuts(p.lead, where, "lead"),
                sublead=_cuts(p.sublead, where, "sublead"),
                range=rng,
                bins=p.bins,
                source=f"{source}: plots[{i}]",
            )
        )
    _check_names(cats, source)
    return cats


def _check_names(cats: list[PlotCategory], source: str) -> None:
    seen: dict[str, str] = {}
    for c in cats:
        if not _NAME_RE.match(c.name):
            msg = (
                f"{c.source}: plot name {c.name!r} is not usable as a file name; allowed "
                "characters: letters, digits and _ . + -"
            )
            raise InvalidConfig(msg)
        if c.name in seen:
            msg = f"{source}: plot name {c.name!r} is used twice ({seen[c.name]} and {c.source})"
            raise InvalidConfig(msg)
        seen[c.name] = c.source


_TOKEN = re.compile(r"\([^)]*\)|\S+")
_TUPLE = re.compile(r"^\(\s*([^,\s]+)\s*,\s*([^,\s]+)\s*\)$")


def _parse_tuple(token: str, column: str, where: str) -> tuple[float, float]:
    m = _TUPLE.match(token)
    if m is None:
        msg = f"{where}: column '{column}' is {token!r}; expected a (min,max) tuple such as (0,1.4442) or (-1,-1)"
        raise InvalidConfig(msg)
    try:
        return float(m.group(1)), float(m.group(2))
    except ValueError:
        msg = f"{where}: column '{column}' is {token!r}; min and max must be numbers"
        raise InvalidConfig(msg) from None


def _parse_tsv(text: str, source: str) -> list[PlotCategory]:
    cats: list[PlotCategory] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            continue  # comment, or the header "#style name variable ..."
        tokens = _TOKEN.findall(stripped)
        if tokens[0].lower() == "style":
            continue  # header without '#'
        where = f"{source}:{lineno}"
        if len(tokens) != len(_TSV_COLUMNS):
            msg = (
                f"{where}: expected {len(_TSV_COLUMNS)} columns ({' '.join(_TSV_COLUMNS)}), "
                f"got {len(tokens)}"
            )
            raise InvalidConfig(msg)
        style: Any = tokens[0].lower()
        if style not in STYLES:
            msg = f"{where}: column 'style' is {tokens[0]!r}; allowed: {', '.join(STYLES)}"
            raise InvalidConfig(msg)
        cuts = []
        for k, column in enumerate(_TSV_COLUMNS[3:], start=3):
            lo, hi = _parse_tuple(tokens[k], column, where)
            cuts.append(_range(lo, hi, column, where))
        cats.append(
            PlotCategory(
                style=style,
                name=tokens[1],
                variable=tokens[2],
                lead=LeptonCuts(eta=cuts[0], r9=cuts[1], et=cuts[2]),
                sublead=LeptonCuts(eta=cuts[3], r9=cuts[4], et=cuts[5]),
                source=where,
            )
        )
    if not cats:
        msg = f"{source}: no plot categories defined (need at least one row: {' '.join(_TSV_COLUMNS)})"
        raise InvalidConfig(msg)
    _check_names(cats, source)
    return cats


def load_plot_categories(path: str | Path) -> list[PlotCategory]:
    """Load plot categories from a pyval TSV or the equivalent YAML.

    Args:
        path: ``.tsv``/``.dat``/``.txt`` (pyval format) or ``.yaml``/``.yml``.

    Returns:
        The plot categories, in file order.

    Raises:
        InvalidConfig: missing or unreadable file, wrong column count, malformed tuples,
            unknown style, empty or inverted ranges, duplicate or unsafe names.
    """
    p = Path(path)
    if p.suffix.lower() in {".yaml", ".yml"}:
        return plot_categories_from_dict(load_yaml(p), source=str(p))
    if not p.is_file():
        msg = f"{p}: plot-categories file not found"
        raise InvalidConfig(msg)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{p}: cannot read plot-categories file ({err.__class__.__name__}: {err})"
        raise InvalidConfig(msg) from None
    return _parse_tsv(text, str(p))
