"""pymin's text formats for scales and smearings: writers, readers, matching and combining.

Scales file (one row per category, tab-separated)::

    #run_min  run_max  eta_min  eta_max  r9_min  r9_max  et_min  et_max  gain  scale  err

Smearings file: the same columns with ``smear`` instead of ``scale``. ``-1`` means "no
cut" on that side (``-1 -1``: no cut at all); ``gain`` is 12, 6, 1 or ``-1`` (no cut).
Run ranges are inclusive ``[run_min, run_max]`` in the files (pymin applies
``run.between(min, max)``) and half-open ``[run_min, run_max + 1)`` in
:class:`~zcalib.categories.Category`; the other ranges are ``[min, max)``.

The "only_step" format (pymin ``--only-step``)::

    runmin  runmax  etamin  etamax  r9min  r9max  etmin  etmax  gain  scaleOrSmear  unc

has the same columns but pymin writes "no cut" as explicit bounds: runs ``000000 999999``,
R9 ``0 10``, Et ``0 14000`` and gain ``0``. :func:`write_only_step` writes that convention;
the reader accepts both (``0`` is read as "no gain cut", and matching against a scheme
treats the explicit bounds as "no cut", see :func:`read_legacy_for_scheme`).

Readers skip blank lines and ``#`` comments, accept a first line of column names, split on
any whitespace and raise :class:`~zcalib.exceptions.InputError` naming ``file:line``, the
column, the bad value and what is allowed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zcalib._atomic import atomic_write_text
from zcalib.categories import Category, CategoryScheme
from zcalib.exceptions import InputError
from zcalib.outputs import run_tag

__all__ = [
    "LegacyTable",
    "combine",
    "read_legacy",
    "read_legacy_for_scheme",
    "write_legacy",
    "write_only_step",
]

log = logging.getLogger(__name__)

Kind = Literal["scale", "smear"]

_BOX_COLUMNS = (
    "run_min",
    "run_max",
    "eta_min",
    "eta_max",
    "r9_min",
    "r9_max",
    "et_min",
    "et_max",
    "gain",
)
_ONLY_STEP_HEADER = (
    "runmin",
    "runmax",
    "etamin",
    "etamax",
    "r9min",
    "r9max",
    "etmin",
    "etmax",
    "gain",
    "scaleOrSmear",
    "unc",
)
_HEADER_STARTS = {"run_min", "runmin", "runMin"}
_GAINS = (12, 6, 1)
_INF = math.inf
#: pymin's explicit "no cut" bounds as written in files (runs inclusive)
_EXPLICIT = {"run": (0.0, 999999.0), "r9": (0.0, 10.0), "et": (0.0, 14000.0)}
#: physical domain of each variable (runs half-open, as stored in Category): bounds at or
#: beyond it are equivalent to "no cut"
_DOMAIN = {
    "run": (0.0, 1000000.0),
    "eta": (0.0, _INF),
    "r9": (0.0, 10.0),
    "et": (0.0, 14000.0),
}
_TOL = 5e-5  # pymin rounds bounds to 4 decimals


def _columns(kind: Kind) -> tuple[str, ...]:
    return (*_BOX_COLUMNS, kind, "err")


@dataclass(frozen=True)
class LegacyTable:
    """The rows of a legacy scales/smearings file.

    Attributes:
        boxes: The category box of each row (``Category.index`` is the row number).
        values: Scale or smearing of each row.
        errors: Uncertainty of each row.
        kind: ``"scale"`` or ``"smear"``.
        source: File the rows were read from (for messages).
        lines: Line number of each row in ``source`` (0 for rows built in memory).
    """

    boxes: tuple[Category, ...]
    values: NDArray[np.float64]
    errors: NDArray[np.float64]
    kind: Kind
    source: str = "<memory>"
    lines: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.boxes)


# --------------------------------------------------------------------------- writing


def write_legacy(
    path: str | Path,
    categories: CategoryScheme | Sequence[Category],
    values: ArrayLike,
    errors: ArrayLike,
    *,
    kind: Kind = "scale",
    header: bool = True,
) -> Path:
    """Write a pymin scales (``kind="scale"``) or smearings (``kind="smear"``) file.

    Args:
        path: Output file (written atomically).
        categories: A scheme (its ``scale`` or ``smear`` categories, following ``kind``) or
            the categories themselves.
        values: Value of each category, in category order.
        errors: Uncertainty of each category.
        kind: ``"scale"`` or ``"smear"`` (names the value column).
        header: Write a ``#``-comment line of column names first (pymin's ``combine``
            reads files without comment support: use ``header=False`` for it).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "scales.dat"
        >>> _ = write_legacy(p, [Category("scale", 0, eta=(0, 1.4442))], [1.002], [0.0001])
        >>> print(p.read_text().splitlines()[1].replace("\\t", " "))
        -1 -1 0 1.4442 -1 -1 -1 -1 -1 1.002 0.0001
    """
    cats = _categories_of(categories, kind)
    lines = ["#" + "\t".join(_columns(kind))] if header else []
    lines += _rows(cats, values, errors, explicit=False)
    if header:
        lines.append(f"# {run_tag()}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_only_step(
    path: str | Path,
    categories: CategoryScheme | Sequence[Category],
    values: ArrayLike,
    errors: ArrayLike,
    *,
    kind: Kind = "scale",
    header: bool = True,
) -> Path:
    """Write a pymin "only_step" file (``--only-step`` / ``--combine-files`` input).

    "No cut" is written as pymin's explicit bounds: runs ``0 999999``, R9 ``0 10``,
    Et ``0 14000``, gain ``0`` (|η| keeps ``-1``; pymin has no convention for it).

    Args:
        path: Output file (written atomically).
        categories: A scheme or the categories.
        values: Scale or smearing of each category.
        errors: Uncertainty of each category.
        kind: Which categories of a scheme to use.
        header: Write the ``#runmin runmax ... scaleOrSmear unc`` comment line first.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "step.tsv"
        >>> _ = write_only_step(p, [Category("scale", 0, eta=(0, 1.4442))], [1.002], [1e-4])
        >>> print(p.read_text().splitlines()[1].replace("\\t", " "))
        0 999999 0 1.4442 0 10 0 14000 0 1.002 0.0001
    """
    cats = _categories_of(categories, kind)
    lines = ["#" + "\t".join(_ONLY_STEP_HEADER)] if header else []
    lines += _rows(cats, values, errors, explicit=True)
    if header:  # the run that wrote it, as in the .dat files (a comment line pymin skips)
        lines.append(f"# {run_tag()}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def _categories_of(
    categories: CategoryScheme | Sequence[Category], kind: Kind
) -> tuple[Category, ...]:
    if isinstance(categories, CategoryScheme):
        return categories.scale if kind == "scale" else categories.smear
    return tuple(categories)


def _rows(
    cats: Sequence[Category], values: ArrayLike, errors: ArrayLike, *, explicit: bool
) -> list[str]:
    val = np.asarray(values, dtype=np.float64)
    err = np.asarray(errors, dtype=np.float64)
    if val.shape != (len(cats),) or err.shape != (len(cats),):
        msg = (
            f"values {val.shape} and errors {err.shape} must have shape ({len(cats)},) "
            "(one per category)"
        )
        raise ValueError(msg)
    out = []
    for cat, v, e in zip(cats, val, err, strict=True):
        fields = [_fmt(x) for x in _box_row(cat, explicit=explicit)]
        fields += [_fmt(float(v)), _fmt(float(e))]
        out.append("\t".join(fields))
    return out


def _box_row(cat: Category, *, explicit: bool) -> list[float]:
    row: list[float] = []
    for var in ("run", "eta", "r9", "et"):
        lo, hi = cat.ranges()[var]
        if var == "run":
            hi -= 1  # half-open in memory, inclusive in files (inf stays inf)
        default = _EXPLICIT.get(var) if explicit else None
        row.append((default[0] if default else -1.0) if math.isinf(lo) else lo)
        row.append((default[1] if default else -1.0) if math.isinf(hi) else hi)
    row.append(float(cat.gain) if cat.gain is not None else (0.0 if explicit else -1.0))
    return row


def _fmt(v: float) -> str:
    """Shortest exact text of a number (integers without a decimal point)."""
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


# --------------------------------------------------------------------------- reading


def read_legacy(path: str | Path, *, kind: Kind = "scale") -> LegacyTable:
    """Read a pymin scales, smearings or only_step file.

    Args:
        path: The file.
        kind: ``"scale"`` (values must be > 0) or ``"smear"`` (values must be >= 0).

    Returns:
        The rows as a :class:`LegacyTable` (boxes with ``-1`` read as "no cut" and gain
        ``-1``/``0`` as no gain cut).

    Raises:
        InputError: missing file or a malformed line (``file:line``, column, value and what
            is allowed are named).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "scales.dat"
        >>> _ = p.write_text("-1\\t-1\\t0\\t1.4442\\t-1\\t-1\\t-1\\t-1\\t-1\\t1.002\\t1e-4\\n")
        >>> t = read_legacy(p)
        >>> (t.boxes[0].eta, float(t.values[0]))
        ((0.0, 1.4442), 1.002)
    """
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: {kind}s file not found"
        raise InputError(msg)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{p}: cannot read {kind}s file ({err.__class__.__name__}: {err})"
        raise InputError(msg) from None
    cols = _columns(kind)
    boxes: list[Category] = []
    values: list[float] = []
    errors: list[float] = []
    lines: list[int] = []
    seen_data = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if not seen_data and fields[0] in _HEADER_STARTS:
            seen_data = True
            continue  # a line of column names
        seen_data = True
        where = f"{p}:{lineno}"
        if len(fields) != len(cols):
            msg = f"{where}: expected {len(cols)} columns ({' '.join(cols)}), got {len(fields)}"
            raise InputError(msg)
        nums: list[float] = []
        for name, raw in zip(cols, fields, strict=True):
            try:
                x = float(raw)
            except ValueError:
                x = math.nan
            if not math.isfinite(x):
                allowed = "a number (-1 = no cut)" if name in _BOX_COLUMNS else "a finite number"
                msg = f"{where}: column '{name}' is {raw!r}; allowed: {allowed}"
                raise InputError(msg)
            nums.append(x)
        boxes.append(_box_from_row(nums, kind, len(boxes), where))
        value, unc = nums[9], nums[10]
        if not (value > 0 if kind == "scale" else value >= 0):
            allowed = "a number > 0" if kind == "scale" else "a number >= 0"
            msg = f"{where}: column '{kind}' is {fields[9]}; allowed: {allowed}"
            raise InputError(msg)
        if unc < 0:
            msg = f"{where}: column 'err' is {fields[10]}; allowed: a number >= 0"
            raise InputError(msg)
        values.append(value)
        errors.append(unc)
        lines.append(lineno)
    if not boxes:
        msg = f"{p}: no rows (expected columns {' '.join(cols)})"
        raise InputError(msg)
    return LegacyTable(
        boxes=tuple(boxes),
        values=np.asarray(values, dtype=np.float64),
        errors=np.asarray(errors, dtype=np.float64),
        kind=kind,
        source=str(p),
        lines=tuple(lines),
    )


def _box_from_row(nums: list[float], kind: Kind, index: int, where: str) -> Category:
    ranges: dict[str, tuple[float, float]] = {}
    for k, var in enumerate(("run", "eta", "r9", "et")):
        lo_raw, hi_raw = nums[2 * k], nums[2 * k + 1]
        lo = -_INF if lo_raw == -1 else lo_raw
        hi = _INF if hi_raw == -1 else hi_raw
        if var == "run":
            for col, x in ((_BOX_COLUMNS[0], lo), (_BOX_COLUMNS[1], hi)):
                if math.isfinite(x) and (not float(x).is_integer() or x < 0):
                    msg = f"{where}: column '{col}' is {_fmt(x)}; allowed: a run number or -1"
                    raise InputError(msg)
        elif (math.isfinite(lo) and lo < 0) or (math.isfinite(hi) and hi < 0):
            col = _BOX_COLUMNS[2 * k] if math.isfinite(lo) and lo < 0 else _BOX_COLUMNS[2 * k + 1]
            bad = lo if col.endswith("min") else hi
            msg = f"{where}: column '{col}' is {_fmt(bad)}; allowed: a number >= 0 or -1 (no cut)"
            raise InputError(msg)
        ok = lo <= hi if var == "run" else lo < hi
        if not ok:
            rule = "min must be <= max" if var == "run" else "min must be < max"
            msg = (
                f"{where}: {var} range [{_fmt(lo_raw)}, {_fmt(hi_raw)}] is empty or "
                f"inverted; {rule}"
            )
            raise InputError(msg)
        ranges[var] = (lo, hi + 1) if var == "run" else (lo, hi)  # runs: store half-open
    gain_raw = nums[8]
    if gain_raw in (-1, 0):
        gain = None
    elif gain_raw in _GAINS:
        gain = int(gain_raw)
    else:
        msg = f"{where}: column 'gain' is {_fmt(gain_raw)}; allowed: 12, 6, 1 or -1 (no cut)"
        raise InputError(msg)
    return Category(
        kind=kind,
        index=index,
        run=ranges["run"],
        eta=ranges["eta"],
        r9=ranges["r9"],
        et=ranges["et"],
        gain=gain,
    )


# --------------------------------------------------------------------------- matching


def read_legacy_for_scheme(
    path: str | Path, scheme: CategoryScheme, *, kind: Kind = "scale"
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Read a legacy file and order its rows by the categories of a scheme.

    Every category of ``scheme`` (``scale`` or ``smear`` following ``kind``) must match
    exactly one row and every row one category; rows may come in any order. Ranges match
    when equal within 5e-5 after mapping bounds at or beyond the physical domain to "no
    cut" (run 0/999999, |η| 0, R9 0/10, Et 0/14000), so pymin's explicit bounds equal
    ``-1``; gain ``-1``/``0`` equal no gain cut.

    Args:
        path: The file.
        scheme: The category scheme.
        kind: ``"scale"`` or ``"smear"``.

    Returns:
        ``(values, errors)`` with ``values[i]`` belonging to the i-th category.

    Raises:
        InputError: malformed file, wrong number of rows, a row matching no category, two
            rows for one category, or a category without a row.
    """
    table = read_legacy(path, kind=kind)
    cats = scheme.scale if kind == "scale" else scheme.smear
    src = table.source
    if len(table) != len(cats):
        msg = (
            f"{src}: {len(table)} rows but the scheme {scheme.source} has {len(cats)} "
            f"{kind} categories; the file must have one row per category"
        )
        raise InputError(msg)
    values = np.full(len(cats), np.nan)
    errors = np.full(len(cats), np.nan)
    taken: dict[int, int] = {}
    for row, box in enumerate(table.boxes):
        line = table.lines[row]
        match = [i for i, c in enumerate(cats) if _same_box(box, c)]
        if not match:
            msg = (
                f"{src}:{line}: row ({_describe(box)}) matches no {kind} category of "
                f"{scheme.source}"
            )
            raise InputError(msg)
        i = match[0]
        if i in taken:
            msg = (
                f"{src}:{line}: row ({_describe(box)}) repeats line {taken[i]} ({cats[i].label()})"
            )
            raise InputError(msg)
        taken[i] = line
        values[i] = table.values[row]
        errors[i] = table.errors[row]
    return values, errors


def _canonical(var: str, rng: tuple[float, float]) -> tuple[float, float]:
    lo, hi = rng
    dlo, dhi = _DOMAIN[var]
    return (-_INF if lo <= dlo else lo, _INF if hi >= dhi else hi)


def _close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= _TOL


def _same_box(a: Category, b: Category) -> bool:
    for var in ("run", "eta", "r9", "et"):
        ca = _canonical(var, a.ranges()[var])
        cb = _canonical(var, b.ranges()[var])
        if not (_close(ca[0], cb[0]) and _close(ca[1], cb[1])):
            return False
    return a.gain == b.gain


def _describe(box: Category) -> str:
    """The box as written in files (inclusive runs), e.g. ``run 1-100 |eta| 0-1``."""
    parts = []
    for var, (lo, hi) in box.ranges().items():
        if (lo, hi) == (-_INF, _INF):
            continue
        last = hi - 1 if var == "run" else hi  # inclusive runs in files
        shown = "|eta|" if var == "eta" else var
        parts.append(f"{shown} {_fmt_bound(lo)}-{_fmt_bound(last)}")
    if box.gain is not None:
        parts.append(f"gain {box.gain}")
    return " ".join(parts) or "no cuts"


def _fmt_bound(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return _fmt(v)


# --------------------------------------------------------------------------- combining


def combine(
    scales_file: str | Path,
    only_step_file: str | Path,
    out: str | Path | None = None,
    *,
    error: Literal["step", "quadrature"] = "step",
) -> LegacyTable:
    """Fold the scales of one step into a base scales file (pymin ``--combine-files``).

    For every base row (outer loop, in file order) and step row (inner loop) whose boxes
    are *nested* in every variable (per variable: equal ranges, or one range inside the
    other; gains equal or one of them without gain cut), one output row is written with the
    intersection box (the narrower range of each variable) and the product of the two
    scales. Differences from pymin:

    * a step row that partially overlaps a base row (overlapping but not nested) is an
      error, because the product is then not constant over the step category (pymin drops
      such pairs silently, leaving holes);
    * a base row that no step row overlaps is kept unchanged (factor 1) with a warning
      (pymin drops it).

    Args:
        scales_file: The base scales (e.g. the run-dependent step-1 file).
        only_step_file: The step's scales (only_step or scales format).
        out: If given, the combined table is also written there (scales format).
        error: ``"step"`` keeps the step uncertainty (pymin); ``"quadrature"`` propagates
            both, ``sqrt((s_step e_base)² + (s_base e_step)²)``.

    Returns:
        The combined rows.

    Raises:
        InputError: malformed files or partially overlapping categories.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> base = write_legacy(d / "b.dat", [Category("scale", 0, run=(1, 10), eta=(0, 2.5))],
        ...                     [1.01], [0.001])
        >>> step = write_only_step(d / "s.tsv", [Category("scale", 0, eta=(0, 1)),
        ...                        Category("scale", 1, eta=(1, 2.5))], [1.1, 0.9], [0.01, 0.02])
        >>> t = combine(base, step)
        >>> [(b.run, b.eta, round(float(v), 4)) for b, v in zip(t.boxes, t.values)]
        [((1.0, 10.0), (0.0, 1.0), 1.111), ((1.0, 10.0), (1.0, 2.5), 0.909)]
    """
    base = read_legacy(scales_file, kind="scale")
    step = read_legacy(only_step_file, kind="scale")
    boxes: list[Category] = []
    values: list[float] = []
    errors: list[float] = []
    for b_row, b in enumerate(base.boxes):
        hits = 0
        for s_row, s in enumerate(step.boxes):
            relation = _relation(b, s)
            if relation == "disjoint":
                continue
            if relation == "partial":
                msg = (
                    f"{step.source}:{step.lines[s_row]}: row ({_describe(s)}) partially "
                    f"overlaps {base.source}:{base.lines[b_row]} ({_describe(b)}); step "
                    "categories must be nested in or contain the base categories"
                )
                raise InputError(msg)
            hits += 1
            sb, eb = float(base.values[b_row]), float(base.errors[b_row])
            ss, es = float(step.values[s_row]), float(step.errors[s_row])
            boxes.append(_intersection(b, s, len(boxes)))
            values.append(sb * ss)
            errors.append(es if error == "step" else math.hypot(ss * eb, sb * es))
        if hits == 0:
            log.warning(
                "%s:%d (%s) overlaps no row of %s; kept unchanged",
                base.source,
                base.lines[b_row],
                _describe(b),
                step.source,
            )
            boxes.append(_intersection(b, b, len(boxes)))
            values.append(float(base.values[b_row]))
            errors.append(float(base.errors[b_row]))
    table = LegacyTable(
        boxes=tuple(boxes),
        values=np.asarray(values, dtype=np.float64),
        errors=np.asarray(errors, dtype=np.float64),
        kind="scale",
        source=f"combine({base.source}, {step.source})",
        lines=(0,) * len(boxes),
    )
    if out is not None:
        write_legacy(out, table.boxes, table.values, table.errors, kind="scale")
    return table


def _relation(a: Category, b: Category) -> Literal["disjoint", "nested", "partial"]:
    nested = True
    for var in ("run", "eta", "r9", "et"):
        alo, ahi = _canonical(var, a.ranges()[var])
        blo, bhi = _canonical(var, b.ranges()[var])
        if max(alo, blo) >= min(ahi, bhi) - _TOL:
            return "disjoint"
        a_in_b = alo >= blo - _TOL and ahi <= bhi + _TOL
        b_in_a = blo >= alo - _TOL and bhi <= ahi + _TOL
        nested &= a_in_b or b_in_a
    if a.gain is not None and b.gain is not None and a.gain != b.gain:
        return "disjoint"
    return "nested" if nested else "partial"


def _intersection(a: Category, b: Category, index: int) -> Category:
    def narrow(var: str) -> tuple[float, float]:
        (alo, ahi), (blo, bhi) = a.ranges()[var], b.ranges()[var]
        ca, cb = _canonical(var, (alo, ahi)), _canonical(var, (blo, bhi))
        lo = alo if ca[0] >= cb[0] else blo
        hi = ahi if ca[1] <= cb[1] else bhi
        return (lo, hi)

    return Category(
        kind="scale",
        index=index,
        run=narrow("run"),
        eta=narrow("eta"),
        r9=narrow("r9"),
        et=narrow("et"),
        gain=a.gain if a.gain is not None else b.gain,
    )
