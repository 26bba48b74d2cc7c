"""Smooth Et dependence of the fitted scales and smearings (a post-fit on binned results).

An Et-binned fit (categories that cut on Et, :func:`zcalib.physics.category_et`) gives one
value per (|η| × R9 cell, Et bin). This module fits, in each cell, a smooth curve through
those values at the **mean Et of each bin** (the Et categories mapped back to Et, as IJazZ2.0
does; the processor records the per-cell Et sums in ``HistogramSet.metadata["cell_et"]``),
with the fit's covariance of the binned values, by least squares (iminuit/Migrad + Hesse):

=================  =====================================  ==================================
form               curve                                   parameters
=================  =====================================  ==================================
``power``          ``c + a · ((Et/45)^b − 1) / b``         ``a, b, c`` (scales)
``linear``         ``a + b · (Et/45 − 1)``                 ``a, b`` (scales)
``sqrt_inverse``   ``√(a² + b/Et)``                        ``a, b``, fitted in σ² (smearings)
=================  =====================================  ==================================

``power`` is IJazZ2.0's response ``A·(Et/45)^b + C`` written with ``A = a/b``,
``C = c − a/b``: ``c`` is the value and ``a`` the slope in ``ln Et`` at 45 GeV, ``b`` the
curvature (``b → 0``: ``c + a·ln(Et/45)``). The same curves, but ``a`` and ``c`` stay
determined when ``b`` is not, so the covariance is well defined on a handful of Et bins.
Smearings are fitted in σ² (``a² + b/Et`` is linear in ``a²`` and ``b``), whose errors are
Gaussian even at σ = 0 (``CategoryFit.sq_error``). The curve is evaluated with Et clamped to
the range of the bin means (no extrapolation beyond the measured bins). Each curve is written
as a correctionlib ``Formula`` of ``pt`` (:func:`curve_formula`) with its propagated
uncertainty (:func:`error_formula`), see :mod:`zcalib.corrections.smooth`.

Example:
    >>> import numpy as np
    >>> x = np.array([30.0, 40.0, 50.0, 70.0])
    >>> c = fit_curve("linear", x, 1.0 + 0.01 * (x / 45 - 1), np.diag(np.full(4, 1e-8)))
    >>> c.status, [round(v, 4) for v in c.values]
    ('converged', [1.0, 0.01])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from zcalib.exceptions import FitError

if TYPE_CHECKING:
    from zcalib.categories import Category, CategoryScheme
    from zcalib.fit.result import FitResult
    from zcalib.histograms import HistogramSet

__all__ = [
    "FORMS",
    "SmoothCurve",
    "SmoothForm",
    "SmoothResult",
    "curve_formula",
    "curve_map",
    "error_formula",
    "et_groups",
    "fit_curve",
    "fit_smooth",
    "mean_category_et",
]

SmoothForm = Literal["power", "linear", "sqrt_inverse"]
#: Forms allowed per kind of correction.
FORMS: dict[str, tuple[str, ...]] = {
    "scale": ("power", "linear"),
    "smear": ("sqrt_inverse",),
}
_PARAMS: dict[str, tuple[str, ...]] = {
    "power": ("a", "b", "c"),
    "linear": ("a", "b"),
    "sqrt_inverse": ("a", "b"),
}
_ET0 = 45.0  # GeV, the reference Et of the forms
_B_LIMIT = 6.0  # |b| of the power form
_POWER_B_STARTS = (-4.0, -2.0, -0.5, 0.5, 2.0, 4.0)


@dataclass(frozen=True)
class SmoothCurve:
    """One fitted curve of one cell.

    Attributes:
        form: the form (module table).
        values: fitted parameters, in the form's order.
        covariance: their covariance (Hesse).
        et_range: Et range of the bin means; the curve is constant beyond it.
        points: ``(mean Et, value, error)`` of the binned values fitted (smearings: σ and
            the error of σ²).
        chi2: χ² at the minimum; ``ndof``: points minus parameters.
        status: ``"converged"`` or ``"failed"``; ``message`` says why.
        label: the cell (its non-Et ranges).
    """

    form: SmoothForm
    values: tuple[float, ...]
    covariance: NDArray[np.float64]
    et_range: tuple[float, float]
    points: tuple[tuple[float, float, float], ...]
    chi2: float
    ndof: int
    status: Literal["converged", "failed"]
    message: str
    label: str = ""

    def __call__(self, et: Any) -> NDArray[np.float64]:
        """The curve at ``et`` (clamped to ``et_range``)."""
        return _model(self.form, _clamp(et, self.et_range), self.values)

    def error(self, et: Any) -> NDArray[np.float64]:
        """Propagated uncertainty of the curve at ``et`` (smearings: of σ, from σ²)."""
        x = _clamp(et, self.et_range)
        jac = _jacobian(self.form, x, self.values)
        var = np.einsum("i...,ij,j...->...", jac, self.covariance, jac)
        sd = np.asarray(np.sqrt(np.clip(var, 0.0, None)), dtype=np.float64)
        if self.form == "sqrt_inverse":
            return np.asarray(sd / (2.0 * np.maximum(self(et), 1e-6)), dtype=np.float64)
        return sd

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record (``fit_result.json``)."""
        return {
            "label": self.label,
            "form": self.form,
            "formula": _TEXT[self.form],
            "parameters": dict(zip(_PARAMS[self.form], self.values, strict=True)),
            "covariance": self.covariance.tolist(),
            "et_range": list(self.et_range),
            "points": [list(p) for p in self.points],
            "chi2": self.chi2,
            "ndof": self.ndof,
            "status": self.status,
            "message": self.message,
        }


_TEXT = {
    "power": "c + a*((pt/45)^b - 1)/b",
    "linear": "a + b*(pt/45 - 1)",
    "sqrt_inverse": "sqrt(a^2 + b/pt)",
}


@dataclass(frozen=True)
class SmoothResult:
    """Smooth curves of one fit: one per cell of the scale and of the smear categories.

    Attributes:
        scale: ``(categories of the cell, curve)`` per scale cell (categories: indices in
            Et order).
        smear: the same for the smear cells.
    """

    scale: tuple[tuple[tuple[int, ...], SmoothCurve], ...]
    smear: tuple[tuple[tuple[int, ...], SmoothCurve], ...]

    @property
    def converged(self) -> bool:
        """Every curve converged."""
        return all(c.status == "converged" for _, c in (*self.scale, *self.smear))

    def failures(self) -> list[str]:
        """One line per failed curve."""
        return [
            f"{c.label}: {c.message}"
            for _, c in (*self.scale, *self.smear)
            if c.status != "converged"
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record."""
        return {
            kind: [{"categories": list(idx), **c.to_dict()} for idx, c in getattr(self, kind)]
            for kind in ("scale", "smear")
        }


# --------------------------------------------------------------------------- mapping back


def mean_category_et(hset: HistogramSet, scheme: CategoryScheme, kind: str) -> NDArray[np.float64]:
    """Mean Et of the selected leptons in each scale (``kind="scale"``, from data) or smear
    (``"smear"``, from MC) category, from the processor's per-cell sums.

    Raises:
        FitError: the histograms carry no per-cell Et sums (filled before they existed) or
            a category holds no lepton.
    """
    sums = hset.metadata.get("cell_et") or {}
    want = "data" if kind == "scale" else "mc"
    rows = [np.asarray(v, dtype=np.float64) for ds, v in sums.items() if hset.kinds.get(ds) == want]
    if not rows:
        msg = (
            f"the histograms hold no per-cell Et sums of the {want} datasets "
            "(metadata 'cell_et'); refill them with this zcalib version"
        )
        raise FitError(msg)
    total = np.sum(rows, axis=0)
    if total.shape != (3, scheme.n_cells):
        msg = f"per-cell Et sums have shape {total.shape}; expected (3, {scheme.n_cells})"
        raise FitError(msg)
    cell_cat = scheme.cell_scale_index() if kind == "scale" else scheme.cell_smear_index()
    cats = scheme.scale if kind == "scale" else scheme.smear
    n = np.bincount(cell_cat, weights=total[0], minlength=len(cats))
    s = np.bincount(cell_cat, weights=total[1], minlength=len(cats))
    empty = [c.label() for c in cats if n[c.index] <= 0]
    if empty:
        msg = f"no selected lepton in {kind} categories: {', '.join(empty)}"
        raise FitError(msg)
    return np.asarray(s / n, dtype=np.float64)


def et_groups(cats: Sequence[Category]) -> list[tuple[str, tuple[int, ...]]]:
    """Categories grouped by everything but Et (the cells of the smooth fit), each group's
    indices in increasing Et; groups of one category are left out."""
    groups: dict[tuple[Any, ...], list[Category]] = {}
    for c in cats:
        groups.setdefault((c.run, c.eta, c.r9, c.gain), []).append(c)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: c.et[0])
        out.append((_cell_label(members[0]), tuple(c.index for c in members)))
    return out


def _cell_label(cat: Category) -> str:
    parts = []
    for name, (lo, hi) in cat.ranges().items():
        if name != "et" and (lo, hi) != (-math.inf, math.inf):
            parts.append(f"{'|eta|' if name == 'eta' else name} {lo:g}-{hi:g}")
    if cat.gain is not None:
        parts.append(f"gain {cat.gain}")
    return " ".join(parts) or "inclusive"


# --------------------------------------------------------------------------- fitting


def _clamp(et: Any, rng: tuple[float, float]) -> NDArray[np.float64]:
    return np.clip(np.asarray(et, dtype=np.float64), rng[0], rng[1])


def _model(form: str, x: NDArray[np.float64], p: Sequence[float]) -> NDArray[np.float64]:
    if form == "power":
        return np.asarray(p[2] + p[0] * _box_cox(x / _ET0, p[1]), dtype=np.float64)
    if form == "linear":
        return np.asarray(p[0] + p[1] * (x / _ET0 - 1.0), dtype=np.float64)
    return np.asarray(np.sqrt(np.clip(_sq_model(x, p), 0.0, None)), dtype=np.float64)


_SMALL_B = 1e-5  # below: the b -> 0 limits (series), as in the formulas


def _box_cox(u: NDArray[np.float64], b: float) -> NDArray[np.float64]:
    """``(u^b − 1)/b``, ``ln u`` at ``b = 0`` (the same expression as the formula)."""
    if abs(b) < _SMALL_B:
        return np.asarray(np.log(u) * (1.0 + 0.5 * b * np.log(u)), dtype=np.float64)
    return np.asarray((u**b - 1.0) / b, dtype=np.float64)


def _box_cox_db(u: NDArray[np.float64], b: float) -> NDArray[np.float64]:
    """``d/db (u^b − 1)/b``."""
    lu = np.log(u)
    if abs(b) < _SMALL_B:
        return np.asarray(0.5 * lu * lu, dtype=np.float64)
    return np.asarray((u**b * lu * b - (u**b - 1.0)) / (b * b), dtype=np.float64)


def _sq_model(x: NDArray[np.float64], p: Sequence[float]) -> NDArray[np.float64]:
    return np.asarray(p[0] * p[0] + p[1] / x, dtype=np.float64)


def _jacobian(form: str, x: NDArray[np.float64], p: Sequence[float]) -> NDArray[np.float64]:
    """d(curve)/d(params); for ``sqrt_inverse`` of σ² (the fitted quantity)."""
    if form == "power":
        u = x / _ET0
        return np.stack([_box_cox(u, p[1]), p[0] * _box_cox_db(u, p[1]), np.ones_like(x)])
    if form == "linear":
        return np.stack([np.ones_like(x), x / _ET0 - 1.0])
    return np.stack([2.0 * p[0] * np.ones_like(x), 1.0 / x])


def fit_curve(
    form: SmoothForm,
    et: NDArray[np.float64],
    values: NDArray[np.float64],
    covariance: NDArray[np.float64],
    *,
    label: str = "",
) -> SmoothCurve:
    """Fit one curve to binned values by χ² with their full covariance.

    Args:
        form: ``power``/``linear`` (values are scales) or ``sqrt_inverse`` (values are σ²
            and ``covariance`` theirs).
        et: mean Et of each bin [GeV].
        values: binned values.
        covariance: their covariance.
        label: for messages.

    Returns:
        The curve; ``failed`` (with the reason) when Migrad/Hesse are not valid, a
        parameter ends at a limit, or there are fewer points than parameters.
    """
    from iminuit import Minuit

    x = np.asarray(et, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    names = _PARAMS[form]
    rng = (float(x.min()), float(x.max()))
    points = tuple(
        (float(a), float(b), float(math.sqrt(max(c, 0.0))))
        for a, b, c in zip(x, y, np.diag(covariance), strict=True)
    )
    if len(x) < len(names):
        return SmoothCurve(
            form, (math.nan,) * len(names), np.full((len(names),) * 2, np.nan), rng, points,
            math.nan, len(x) - len(names), "failed",
            f"{len(x)} Et bins for {len(names)} parameters of {form!r}", label,
        )  # fmt: skip
    if not np.all(np.isfinite(covariance)):
        # e.g. a failed binned fit (written with --write-failed): its covariance has NaNs
        return SmoothCurve(
            form, (math.nan,) * len(names), np.full((len(names),) * 2, np.nan), rng, points,
            math.nan, len(x) - len(names), "failed",
            "the covariance of the binned values is not finite (a failed binned fit?)", label,
        )  # fmt: skip
    inv = np.linalg.pinv(covariance)

    def chi2(*p: float) -> float:
        model = _sq_model(x, p) if form == "sqrt_inverse" else _model(form, x, p)
        r = y - model
        return float(r @ inv @ r)

    start, limits = _start(form, x, y)

    def minimise(begin: list[float]) -> Any:
        mm = Minuit(chi2, *begin, name=names)
        mm.errordef = Minuit.LEAST_SQUARES
        for n, lim in limits.items():
            mm.limits[n] = lim
        mm.migrad()
        return mm

    # the power form's χ² can have several minima in b: start from a few and keep the best
    b_starts = _POWER_B_STARTS if form == "power" else (None,)
    runs = [minimise(start if b is None else [start[0], b, start[2]]) for b in b_starts]
    m = min(runs, key=lambda r: (not r.valid, r.fval))
    m.hesse()
    p = tuple(float(v) for v in m.values)
    # at a limit: within 5 % of its error (Migrad stops short of a bound it runs into)
    at_limit = [
        n
        for n, lim in limits.items()
        if any(
            math.isfinite(b) and abs(m.values[n] - b) < max(0.05 * m.errors[n], 1e-6) for b in lim
        )
        and not (form == "sqrt_inverse" and n == "a")  # a = 0: the physical limit of a smearing
    ]
    reasons = []
    if not m.valid:
        reasons.append("Migrad minimum not valid")
    if not m.accurate:
        reasons.append("covariance not accurate")
    if at_limit:
        reasons.append(f"parameter(s) at a limit: {', '.join(at_limit)}")
    ndof = len(x) - len(names)
    status: Literal["converged", "failed"] = "failed" if reasons else "converged"
    message = "; ".join(reasons) if reasons else f"chi2/ndof {m.fval:.2f}/{ndof}"
    cov = np.asarray(m.covariance, dtype=np.float64) if m.covariance is not None else None
    if cov is None:
        cov = np.full((len(names),) * 2, np.nan)
    return SmoothCurve(form, p, cov, rng, points, float(m.fval), ndof, status, message, label)


def _start(
    form: str, x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[list[float], dict[str, tuple[float, float]]]:
    slope, at45 = np.polyfit(x / _ET0 - 1.0, y, 1) if len(x) > 1 else (0.0, float(y[0]))
    if form == "power":
        return [float(slope), 0.5, float(at45)], {"b": (-_B_LIMIT, _B_LIMIT)}
    if form == "linear":
        return [float(at45), float(slope)], {}
    # σ² = a² + b/x: linear least squares gives the start
    design = np.stack([np.ones_like(x), 1.0 / x], axis=1)
    a2, b = np.linalg.lstsq(design, y, rcond=None)[0]
    return [math.sqrt(max(float(a2), 1e-8)), float(b)], {"a": (0.0, math.inf)}


def fit_smooth(
    result: FitResult,
    scheme: CategoryScheme,
    hset: HistogramSet,
    *,
    scale_form: SmoothForm | None = "power",
    smear_form: SmoothForm | None = "sqrt_inverse",
) -> SmoothResult:
    """Smooth curves in Et for every cell of an Et-binned fit (module docstring).

    Args:
        result: the binned fit (its values, errors and covariance).
        scheme: its categories (cells: categories equal but for Et).
        hset: the histograms it was fitted on (mean Et per category).
        scale_form: form of the scale curves (``None``: none fitted).
        smear_form: form of the smearing curves (``None``: none fitted).

    Raises:
        FitError: a form not allowed for its kind, no category cuts on Et, or no per-cell
            Et sums in the histograms.
    """
    out: dict[str, list[tuple[tuple[int, ...], SmoothCurve]]] = {"scale": [], "smear": []}
    for kind, form in (("scale", scale_form), ("smear", smear_form)):
        if form is None:
            continue
        if form not in FORMS[kind]:
            msg = f"{kind} smooth form {form!r} is not allowed; allowed: {', '.join(FORMS[kind])}"
            raise FitError(msg)
        cats = scheme.scale if kind == "scale" else scheme.smear
        groups = et_groups(cats)
        if not groups:
            msg = (
                f"no {kind} categories differ in Et only (source {scheme.source}); a smooth "
                "Et curve needs at least two Et bins in a cell"
            )
            raise FitError(msg)
        mean_et = mean_category_et(hset, scheme, kind)
        fits = result.scales if kind == "scale" else result.smears
        cov_all = _covariance(result, kind)
        for label, idx in groups:
            if any(fits[i].state != "fitted" for i in idx):
                continue  # held fixed (e.g. smearings of a closure step): stays binned
            sel = list(idx)
            values = np.array([fits[i].value for i in sel])
            cov = cov_all[np.ix_(sel, sel)]
            if kind == "smear":
                values = values * values
            curve = fit_curve(form, mean_et[sel], values, cov, label=f"{kind} {label}")
            out[kind].append((idx, curve))
    return SmoothResult(scale=tuple(out["scale"]), smear=tuple(out["smear"]))


def _covariance(result: FitResult, kind: str) -> NDArray[np.float64]:
    """Covariance of the binned values (smearings: of σ², with the σ² errors on the diagonal
    and the correlations of the fit's covariance)."""
    fits = result.scales if kind == "scale" else result.smears
    n = len(fits)
    err = np.array(
        [f.total_stat if kind == "scale" else f.sq_error for f in fits], dtype=np.float64
    )
    corr = np.eye(n)
    pos = {name: k for k, name in enumerate(result.parameters)}
    idx = [pos.get(f"{kind}[{i}]") for i in range(n)]
    cov = result.covariance
    if cov.size:
        for a in range(n):
            for b in range(n):
                ia, ib = idx[a], idx[b]
                if a == b or ia is None or ib is None:
                    continue
                d = cov[ia, ia] * cov[ib, ib]
                if d > 0 and math.isfinite(d):
                    corr[a, b] = cov[ia, ib] / math.sqrt(d)
    err = np.where(np.isfinite(err) & (err > 0), err, np.nan)
    if np.isnan(err).any():
        bad = [fits[i].label for i in np.flatnonzero(np.isnan(err))]
        msg = f"no finite error for {kind} categories {', '.join(bad)}; cannot fit a smooth curve"
        raise FitError(msg)
    return np.asarray(corr * np.outer(err, err), dtype=np.float64)


# --------------------------------------------------------------------------- formulas


def _num(v: float) -> str:
    return repr(float(v))


def _x(curve: SmoothCurve) -> str:
    lo, hi = curve.et_range
    return f"min(max(x,{_num(lo)}),{_num(hi)})"


def curve_formula(curve: SmoothCurve) -> str:
    """The curve as a TFormula expression of ``x`` (= pt, clamped to the fitted range)."""
    x = _x(curve)
    p = curve.values
    if curve.form == "power":
        return f"{_num(p[2])}+{_num(p[0])}*{_box_cox_text(f'{x}/{_ET0!r}', p[1])}"
    if curve.form == "linear":
        return f"{_num(p[0])}+{_num(p[1])}*({x}/{_ET0!r}-1)"
    return f"sqrt(max({_num(p[0] * p[0])}+{_num(p[1])}/{x},0))"


def _box_cox_text(u: str, b: float) -> str:
    if abs(b) < _SMALL_B:
        return f"(log({u})*(1+{_num(0.5 * b)}*log({u})))"
    return f"((pow({u},{_num(b)})-1)/{_num(b)})"


def _box_cox_db_text(u: str, b: float) -> str:
    if abs(b) < _SMALL_B:
        return f"(0.5*log({u})*log({u}))"
    pw = f"pow({u},{_num(b)})"
    return f"(({pw}*log({u})*{_num(b)}-({pw}-1))/{_num(b * b)})"


def error_formula(curve: SmoothCurve) -> str:
    """The curve's propagated uncertainty ``√(Jᵀ C J)`` as a TFormula of ``x``."""
    x = _x(curve)
    p = curve.values
    if curve.form == "power":
        u = f"{x}/{_ET0!r}"
        jac = [_box_cox_text(u, p[1]), f"{_num(p[0])}*{_box_cox_db_text(u, p[1])}", "1"]
    elif curve.form == "linear":
        jac = ["1", f"({x}/{_ET0!r}-1)"]
    else:
        jac = [_num(2.0 * p[0]), f"1/{x}"]
    terms = []
    c = curve.covariance
    for i in range(len(jac)):
        for j in range(i, len(jac)):
            coef = c[i, j] * (1.0 if i == j else 2.0)
            if coef != 0.0:
                terms.append(f"{_num(coef)}*({jac[i]})*({jac[j]})")
    var = "+".join(terms) if terms else "0"
    if curve.form == "sqrt_inverse":
        return f"sqrt(max({var},0))/(2*max({curve_formula(curve)},1e-6))"
    return f"sqrt(max({var},0))"


def curve_map(result: SmoothResult) -> Mapping[str, Mapping[int, SmoothCurve]]:
    """``{kind: {category index: its cell's curve}}``."""
    return {
        kind: {i: c for idx, c in getattr(result, kind) for i in idx} for kind in ("scale", "smear")
    }
