"""Build and write correctionlib (schema v2) payloads following the CMS EGM conventions.

One correction per derivation step:

* data **scale** (:func:`build_scale_correction`): output ``scale``; a string input ``syst``
  with keys ``scale``, ``escale`` (absolute uncertainty, ``sqrt(stat² + syst²)``),
  ``scale_up = scale + escale`` and ``scale_down = scale - escale``;
* MC **smear** (:func:`build_smear_correction`): output ``smear``; keys ``smear``, ``esmear``,
  ``smear_up = smear + esmear`` and ``smear_down = max(smear - esmear, 0)``.

These are one step with its own uncertainty; :mod:`zcalib.corrections.egm` assembles them into
the payload analysts use. Their inputs are the CMS EGM Run-3 signatures, fixed whatever the
categories cut on (inputs not cut on are declared and ignored), ``syst`` first, every
numeric input ``real``::

    scale:  syst, run, ScEta, r9, AbsScEta, pt, seedGain      (SCALE_INPUTS)
    smear:  syst, pt, r9, AbsScEta                            (SMEAR_INPUTS)

The tree is ``Category(syst) -> [Binning(seedGain) ->] MultiBinning(run, AbsScEta, r9, pt)``
(a variable is binned only where the categories differ in it) with ``flow: "clamp"``; the
``seedGain`` binning (``[0.5, 3.5, 9, 12.5)`` for gains 1, 6, 12) has ``flow: "error"``. The
multibinning grid is the union of the category edges (run ranges, inclusive ``[min, max]``
in files, are stored half-open ``[min, max + 1)`` by :class:`~zcalib.categories.Category`
and become the bin edges ``min, max + 1``). Infinite edges ("no cut" on one side) become
finite outer edges (run 0 / 1000000, |η| 0 / 5, R9 0 / 10, pt 0 / 14000) which, with
clamping, extend the outer bins to infinity. Each grid cell gets the value of the category
containing its representative point (the midpoint; the lower edge for ``run``), using the
same test as :meth:`zcalib.categories.CategoryScheme.assign`, so evaluating the correction
reproduces the lepton categorisation of the fit. Cells that no category covers (the
barrel/endcap crack |η| 1.4442-1.566) are neutral: scale ``1`` with ``escale = 0`` (EGM
convention), smear ``0`` with ``esmear = 0``. A smearing whose categories cut on run or gain
cannot be expressed in the smear signature and is refused. Payload numbers are rounded to 15
significant digits, which correctionlib's JSON parser reads back exactly (with the 17 digits
of a full ``repr`` it can be one unit in the last place off), so evaluation returns bit for
bit the stored values.

:func:`build_compound` stacks scale steps into a ``compound_corrections`` entry
(``input_op``/``output_op`` ``"*"``, ``inputs_update: ["pt"]``): step *k* sees
``pt * s_1 * ... * s_{k-1}`` and the output is ``s_1 * ... * s_n``. The same ``syst`` key is
passed to every step; :mod:`zcalib.corrections.egm` pins the steps at nominal and ends the
stack with the total uncertainty, so that ``escale`` means the stack's total uncertainty.

:func:`write_correction_set` validates the set (pydantic schema, as ``correction validate``
does, and a load by the correctionlib C++ evaluator) and writes it atomically, gzipped when
the path ends with ``.json.gz``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import correctionlib
import numpy as np
import pydantic
from correctionlib import schemav2
from correctionlib.highlevel import model_auto, open_auto
from correctionlib.JSONEncoder import dumps as _pretty_dumps
from numpy.typing import ArrayLike, NDArray

from zcalib._atomic import atomic_open
from zcalib.categories import Category, CategoryScheme
from zcalib.exceptions import InputError, OutputError
from zcalib.outputs import run_tag

__all__ = [
    "INPUT_ORDER",
    "PILEUP_INPUTS",
    "SCALE_SYST_KEYS",
    "SMEAR_SYST_KEYS",
    "build_compound",
    "build_pileup_correction",
    "build_scale_correction",
    "build_smear_correction",
    "payload_problem",
    "validate_file",
    "write_correction_set",
]

log = logging.getLogger(__name__)

Kind = Literal["scale", "smear"]

#: ``syst`` keys of a data scale correction, in payload order.
SCALE_SYST_KEYS: tuple[str, ...] = ("scale", "escale", "scale_up", "scale_down")
#: ``syst`` keys of an MC smear correction, in payload order.
SMEAR_SYST_KEYS: tuple[str, ...] = ("smear", "esmear", "smear_up", "smear_down")
#: Order of the inputs of a compound: the EGM signature, then inputs beyond it (``lumi``).
INPUT_ORDER: tuple[str, ...] = (
    "syst",
    "run",
    "ScEta",
    "r9",
    "AbsScEta",
    "pt",
    "seedGain",
    "lumi",
)
#: Inputs of the pile-up weight correction, in order.
PILEUP_INPUTS: tuple[str, ...] = ("NumTrueInteractions", "weights")

#: category variable -> (correctionlib input name, type, description)
_INPUTS: dict[str, tuple[str, Literal["int", "real"], str]] = {
    "run": ("run", "real", "Run number (a real: analysts pass doubles; MC uses run 1)"),
    "eta": ("AbsScEta", "real", "Absolute pseudorapidity of the supercluster, |eta_SC|"),
    "sceta": ("ScEta", "real", "Pseudorapidity of the supercluster, eta_SC (signed)"),
    "r9": ("r9", "real", "R9 of the supercluster (full 5x5)"),
    "et": ("pt", "real", "Transverse momentum (Et) of the lepton [GeV]"),
    "gain": ("seedGain", "real", "Gain of the seed crystal: 12, 6 or 1 (a real)"),
}
#: the inputs of a data scale step and of the compound, in call order (EGM Run-3 signature)
SCALE_INPUTS: tuple[str, ...] = ("syst", "run", "ScEta", "r9", "AbsScEta", "pt", "seedGain")
#: the inputs of the MC smearing-and-systematics correction, in call order
SMEAR_INPUTS: tuple[str, ...] = ("syst", "pt", "r9", "AbsScEta")
_DESCRIPTIONS: dict[str, str] = {
    **{v[0]: v[2] for v in _INPUTS.values()},
    "ScEta": "Pseudorapidity of the supercluster, eta_SC (signed)",
    "lumi": "Luminosity block (a real; run bins splitting runs)",
}
#: seedGain bin edges: gain 1 in [0.5, 3.5), 6 in [3.5, 9), 12 in [9, 12.5); others raise
GAIN_EDGES: tuple[float, ...] = (0.5, 3.5, 9.0, 12.5)
_BINNED = ("run", "eta", "sceta", "r9", "et")
_GAINS = (12, 6, 1)
#: finite outer edges replacing -inf / +inf (clamping extends the outer bins anyway)
_OUTER: dict[str, tuple[float, float]] = {
    "run": (0.0, 1_000_000.0),
    "eta": (0.0, 5.0),
    "sceta": (-5.0, 5.0),
    "r9": (0.0, 10.0),
    "et": (0.0, 14000.0),
}
_INF = math.inf


# --------------------------------------------------------------------------- data / MC steps


def build_scale_correction(
    name: str,
    scheme: CategoryScheme | Sequence[Category],
    values: ArrayLike,
    stat_errors: ArrayLike,
    syst_errors: ArrayLike | None = None,
    *,
    description: str,
    version: int = 1,
) -> schemav2.Correction:
    """Build the data energy-scale correction of one derivation step.

    Args:
        name: Correction name (unique in the correction set), e.g. ``"step2_scale"``.
        scheme: The category scheme (its ``scale`` categories are used) or the categories.
        values: Scale of each category (``values[i]`` belongs to the i-th category).
        stat_errors: Statistical uncertainty of each scale (absolute).
        syst_errors: Systematic uncertainty of each scale (absolute); zeros if omitted.
        description: Human-readable description stored in the payload.
        version: Payload version (increase on bug fixes).

    Returns:
        The correction, output ``scale``, inputs as described in the module docstring.

    Raises:
        ValueError: the number of values does not match the number of categories.
        OutputError: a non-finite or non-positive scale, or a negative/non-finite error.

    Example:
        >>> from zcalib.categories import Category, build_scheme
        >>> cats = [Category("scale", 0, eta=(0, 1.4442)), Category("scale", 1, eta=(1.566, 2.5))]
        >>> corr = build_scale_correction(
        ...     "s", build_scheme(cats, []), [1.01, 0.99], [1e-3, 2e-3], description="demo"
        ... )
        >>> [v.name for v in corr.inputs]
        ['syst', 'run', 'ScEta', 'r9', 'AbsScEta', 'pt', 'seedGain']
        >>> corr.to_evaluator().evaluate("scale_up", 1.0, 2.0, 0.9, 2.0, 40.0, 12.0)
        0.992
    """
    cats = tuple(scheme.scale) if isinstance(scheme, CategoryScheme) else tuple(scheme)
    return _build_step(name, "scale", cats, values, stat_errors, syst_errors, description, version)


def build_smear_correction(
    name: str,
    scheme: CategoryScheme | Sequence[Category],
    values: ArrayLike,
    stat_errors: ArrayLike,
    syst_errors: ArrayLike | None = None,
    *,
    description: str,
    version: int = 1,
) -> schemav2.Correction:
    """Build the MC additional-smearing correction of one derivation step.

    Same layout as :func:`build_scale_correction` with output ``smear`` and ``syst`` keys
    ``smear``, ``esmear``, ``smear_up``, ``smear_down`` (``smear_down`` clipped at 0).

    Args:
        name: Correction name, e.g. ``"step2_smear"``.
        scheme: The category scheme (its ``smear`` categories are used) or the categories.
        values: Relative smearing of each category (``>= 0``).
        stat_errors: Statistical uncertainty of each smearing (absolute).
        syst_errors: Systematic uncertainty of each smearing (absolute); zeros if omitted.
        description: Human-readable description stored in the payload.
        version: Payload version.

    Returns:
        The correction.

    Example:
        >>> from zcalib.categories import Category
        >>> cats = [Category("smear", 0, eta=(0, 1.4442)), Category("smear", 1, eta=(1.566, 2.5))]
        >>> corr = build_smear_correction("m", cats, [0.01, 0.02], [0.02, 0.001],
        ...                               description="demo")
        >>> corr.to_evaluator().evaluate("smear_down", 40.0, 0.9, 0.5)
        0.0
    """
    cats = tuple(scheme.smear) if isinstance(scheme, CategoryScheme) else tuple(scheme)
    return _build_step(name, "smear", cats, values, stat_errors, syst_errors, description, version)


def _build_step(
    name: str,
    kind: Kind,
    cats: tuple[Category, ...],
    values: ArrayLike,
    stat_errors: ArrayLike,
    syst_errors: ArrayLike | None,
    description: str,
    version: int,
) -> schemav2.Correction:
    if not cats:
        msg = f"cannot build correction {name!r}: no {kind} categories"
        raise ValueError(msg)
    val = _as_vector(values, len(cats), f"{kind} values", name)
    stat = _as_vector(stat_errors, len(cats), "stat errors", name)
    syst = (
        np.zeros(len(cats))
        if syst_errors is None
        else _as_vector(syst_errors, len(cats), "syst errors", name)
    )
    err_name = "e" + kind
    for i, cat in enumerate(cats):
        ok = math.isfinite(val[i]) and (val[i] > 0 if kind == "scale" else val[i] >= 0)
        if not ok:
            allowed = "a finite number > 0" if kind == "scale" else "a finite number >= 0"
            msg = (
                f"cannot build correction {name!r}: {kind} of {cat.label()} is {float(val[i])!r}; "
                f"allowed: {allowed}"
            )
            raise OutputError(msg)
        for what, arr in (("stat", stat), ("syst", syst)):
            if not (math.isfinite(arr[i]) and arr[i] >= 0):
                msg = (
                    f"cannot build correction {name!r}: {what} error of {cat.label()} is "
                    f"{float(arr[i])!r}; allowed: a finite number >= 0"
                )
                raise OutputError(msg)
    err = np.sqrt(stat**2 + syst**2)
    if kind == "scale":
        table = {"scale": val, "escale": err, "scale_up": val + err, "scale_down": val - err}
        neutral = {"scale": 1.0, "escale": 0.0, "scale_up": 1.0, "scale_down": 1.0}
        keys = SCALE_SYST_KEYS
    else:
        down = np.maximum(val - err, 0.0)
        table = {"smear": val, "esmear": err, "smear_up": val + err, "smear_down": down}
        neutral = dict.fromkeys(SMEAR_SYST_KEYS, 0.0)
        keys = SMEAR_SYST_KEYS
    _refuse_columns(name, kind, cats)
    grid = _Grid.from_categories(cats)
    signature = SCALE_INPUTS if kind == "scale" else SMEAR_INPUTS
    unusable = [_INPUTS[v][0] for v in grid.variables if _INPUTS[v][0] not in signature]
    if unusable:
        msg = (
            f"cannot build correction {name!r}: the {kind} categories cut on "
            f"{', '.join(unusable)}, which the EGM {kind} signature ({', '.join(signature)}) "
            "does not take; allowed cuts: "
            + ", ".join(v for v in ("run", "AbsScEta", "r9", "pt", "seedGain") if v in signature)
        )
        raise OutputError(msg)
    content = [
        schemav2.CategoryItem(key=key, value=grid.node(table[key], neutral[key])) for key in keys
    ]
    inputs = signature_variables(
        signature,
        f"Variation: {', '.join(keys)} ({err_name} is the absolute uncertainty)",
    )
    output_desc = (
        "Multiplicative correction of the data electron energy, E_corr = scale * E"
        if kind == "scale"
        else "Relative Gaussian smearing of the MC electron energy, E' = E * (1 + smear * z)"
    )
    return schemav2.Correction(
        name=name,
        description=description,
        version=version,
        inputs=inputs,
        output=schemav2.Variable(name=kind, type="real", description=output_desc),
        data=schemav2.Category(nodetype="category", input="syst", content=content),
    )


def signature_variables(
    names: Sequence[str], syst_description: str, *, first: str = "syst"
) -> list[schemav2.Variable]:
    """The ``schemav2.Variable`` list of a signature: ``first`` a string, every other real."""
    return [
        schemav2.Variable(name=n, type="string", description=syst_description)
        if n == first
        else schemav2.Variable(name=n, type="real", description=_DESCRIPTIONS[n])
        for n in names
    ]


def _as_vector(values: ArrayLike, n: int, what: str, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        msg = (
            f"cannot build correction {name!r}: {what} have shape {arr.shape}, "
            f"expected ({n},) (one per category)"
        )
        raise ValueError(msg)
    return arr


class _Grid:
    """Union grid of a list of categories and the category owning each grid cell."""

    def __init__(
        self,
        variables: tuple[str, ...],
        edges: dict[str, list[float]],
        owners: dict[int | None, NDArray[np.int64]],
    ) -> None:
        self.variables = variables  # used variables, incl. "gain" (last) if used
        self.edges = edges
        self.owners = owners  # gain (or None) -> flat C-ordered owner index per cell

    @classmethod
    def from_categories(cls, cats: Sequence[Category]) -> _Grid:
        # a variable binned only where the categories differ in it (one shared range is no
        # dependence: with clamping, its single bin would extend to infinity anyway)
        binned = tuple(v for v in _BINNED if len({c.cut(v) for c in cats}) > 1)
        use_gain = any(c.gain is not None for c in cats)
        edges = {v: _finite_edges(v, cats) for v in binned}
        reps = {v: _representatives(v, edges[v]) for v in binned}
        if binned:
            mesh = np.meshgrid(*(reps[v] for v in binned), indexing="ij")
            points = {v: m.ravel() for v, m in zip(binned, mesh, strict=True)}
        else:
            points = {}
        n = int(np.prod([len(reps[v]) for v in binned])) if binned else 1

        def col(v: str) -> NDArray[Any]:
            if v in points:
                found: NDArray[Any] = points[v]
                return found
            inside = _representatives(v, _finite_edges(v, cats))[0]  # the shared range
            return np.full(n, inside, dtype=np.int64 if v == "run" else np.float64)

        owners: dict[int | None, NDArray[np.int64]] = {}
        for gain in _GAINS if use_gain else (None,):
            owner = np.full(n, -1, dtype=np.int64)
            gains = np.full(n, 12 if gain is None else gain, dtype=np.int64)
            for i, cat in enumerate(cats):
                mask = cat.contains(
                    abs_eta=col("eta"),
                    sceta=col("sceta"),
                    r9=col("r9"),
                    et=col("et"),
                    gain=gains,
                    run=col("run").astype(np.int64),
                )
                owner[mask] = i  # like CategoryScheme.assign: the last match wins
            owners[gain] = owner
        used = {int(i) for o in owners.values() for i in o if i >= 0}
        for i, cat in enumerate(cats):
            if i not in used:
                log.warning(
                    "%s owns no cell of the correction grid; its value is unused", cat.label()
                )
        variables = binned + (("gain",) if use_gain else ())
        return cls(variables, {v: edges[v] for v in binned}, owners)

    def node(
        self,
        values: NDArray[np.float64],
        neutral: float,
        leaf: Callable[[int], schemav2.Content | None] | None = None,
    ) -> schemav2.Content:
        """The content tree; ``leaf(i)``, when given and not ``None``, replaces the number of
        category ``i`` (a formula node, :mod:`zcalib.corrections.smooth`)."""
        binned = [v for v in self.variables if v != "gain"]

        def one(i: int) -> schemav2.Content:
            node = leaf(i) if leaf is not None and i >= 0 else None
            if node is not None:
                return node
            return _stored(values[i]) if i >= 0 else float(neutral)

        def fill(owner: NDArray[np.int64]) -> schemav2.Content:
            content = [one(int(i)) for i in owner]
            if not binned:
                return content[0]
            edges: list[Any] = [self.edges[v] for v in binned]
            return schemav2.MultiBinning(
                nodetype="multibinning",
                inputs=[_INPUTS[v][0] for v in binned],
                edges=edges,
                content=list(content),
                flow="clamp",
            )

        if "gain" not in self.variables:
            return fill(self.owners[None])
        return schemav2.Binning(
            nodetype="binning",
            input=_INPUTS["gain"][0],
            edges=list(GAIN_EDGES),
            content=[fill(self.owners[g]) for g in (1, 6, 12)],
            flow="error",
        )


def _refuse_columns(name: str, kind: Kind, cats: Sequence[Category]) -> None:
    """Categories on input columns that are no EGM input cannot be written (docs/categories.md).

    The EGM signature is fixed (analysts' calls do not change with the categories), so a
    step categorised in another column has no payload: its values stay in ``fit_result.json``.
    """
    problem = _column_problem(kind, cats)
    if problem:
        msg = f"cannot build correction {name!r}: {problem}"
        raise OutputError(msg)


def _column_problem(kind: Kind, cats: Sequence[Category]) -> str | None:
    columns = sorted({n for c in cats for n, _ in c.columns})
    if not columns:
        return None
    return (
        f"the {kind} categories cut on the input column(s) {', '.join(columns)}, which are "
        "no input of the EGM signature; allowed category variables in a payload: run, eta "
        "(AbsScEta), sceta (ScEta), r9, et (pt), gain (seedGain)"
    )


def payload_problem(scheme: CategoryScheme) -> str | None:
    """Why a step with these categories cannot be written as an EGM payload (``None``: it
    can): a category on an input column that is no EGM input, or smear categories cut on an
    input ``EGMSmearAndSyst`` does not take (signed η, run, gain). Checked at set-up."""
    for kind, cats in (("scale", scheme.scale), ("smear", scheme.smear)):
        problem = _column_problem(kind, cats)  # type: ignore[arg-type]
        if problem:
            return problem
    binned = [v for v in _BINNED if len({c.cut(v) for c in scheme.smear}) > 1]
    binned += ["gain"] if any(c.gain is not None for c in scheme.smear) else []
    unusable = [_INPUTS[v][0] for v in binned if _INPUTS[v][0] not in SMEAR_INPUTS]
    if unusable:
        return (
            f"the smear categories cut on {', '.join(unusable)}, which EGMSmearAndSyst "
            f"({', '.join(SMEAR_INPUTS)}) does not take; allowed cuts: eta, r9, et"
        )
    return None


def _stored(x: float) -> float:
    """``x`` rounded to 15 significant digits (and at most 22 decimals).

    correctionlib parses JSON with rapidjson in normal-precision mode, which reads numbers
    of up to 15 significant digits and decimal exponents down to -22 exactly but can be one
    unit in the last place off for the 17 digits of a full ``repr``. Rounding first makes
    the evaluator return bit for bit the number written.
    """
    if x == 0 or not math.isfinite(x):
        return float(x)
    return round(float(x), min(14 - math.floor(math.log10(abs(x))), 22))


def _finite_edges(var: str, cats: Sequence[Category]) -> list[float]:
    raw: set[float] = set()
    for c in cats:
        lo, hi = c.cut(var)
        raw.update((float(lo), float(hi)))  # run ranges are stored half-open already
    finite = sorted(x for x in raw if math.isfinite(x))
    out_lo, out_hi = _OUTER[var]
    edges = list(finite)
    if -_INF in raw or not edges:
        edges.insert(0, out_lo if not edges or out_lo < edges[0] else edges[0] - 1.0)
    if _INF in raw or len(edges) < 2:
        edges.append(out_hi if out_hi > edges[-1] else edges[-1] + 1.0)
    return [_stored(x) for x in edges]


def _representatives(var: str, edges: list[float]) -> NDArray[Any]:
    lo = np.asarray(edges[:-1], dtype=np.float64)
    hi = np.asarray(edges[1:], dtype=np.float64)
    if var == "run":
        return lo.astype(np.int64)  # every run in [lo, hi) shares the same categories
    mid: NDArray[np.float64] = 0.5 * (lo + hi)
    return mid


# --------------------------------------------------------------------------- compound


def build_compound(
    name: str,
    steps: Sequence[schemav2.Correction],
    *,
    description: str = "",
) -> schemav2.CompoundCorrection:
    """Stack data scale steps into one compound correction (EGM convention).

    The compound inputs are the EGM signature :data:`SCALE_INPUTS` (present whatever the
    steps use) followed by step inputs beyond it (``lumi`` of a time-stability step whose
    run bins split runs), in the order of :data:`INPUT_ORDER` (correctionlib looks each
    step's inputs up by name, so a name must have the same type in every step). Evaluating it
    returns ``s_1 * s_2 * ... * s_n`` where step *k* is evaluated at
    ``pt * s_1 * ... * s_{k-1}``.

    Args:
        name: Name of the compound correction (distinct from the step names).
        steps: The step corrections, in application order; all must be in the same set.
        description: Human-readable description.

    Returns:
        The compound correction.

    Raises:
        ValueError: no steps, or an input with different types in two steps.

    Example:
        >>> from zcalib.categories import Category
        >>> s1 = build_scale_correction("s1", [Category("scale", 0, eta=(0, 2.5))], [1.1], [0],
        ...                             description="step 1")
        >>> build_compound("all", [s1]).stack
        ['s1']
    """
    if not steps:
        msg = f"compound correction {name!r} needs at least one step"
        raise ValueError(msg)
    variables: dict[str, schemav2.Variable] = {}
    owner: dict[str, str] = {}
    for step in steps:
        for var in step.inputs:
            known = variables.get(var.name)
            if known is not None and known.type != var.type:
                msg = (
                    f"compound correction {name!r}: input {var.name!r} is {known.type} in "
                    f"{owner[var.name]!r} but {var.type} in {step.name!r}; "
                    "an input must have the same type in every step"
                )
                raise ValueError(msg)
            if known is None:
                variables[var.name] = var
                owner[var.name] = step.name
    for fixed in signature_variables(
        SCALE_INPUTS, "Variation: scale, escale, scale_up, scale_down"
    ):
        known = variables.get(fixed.name)
        if known is not None and known.type != fixed.type:
            msg = (
                f"compound correction {name!r}: input {fixed.name!r} is {known.type} in "
                f"{owner[fixed.name]!r}; the EGM signature needs {fixed.type}"
            )
            raise ValueError(msg)
        variables.setdefault(fixed.name, fixed)
    if variables["pt"].type != "real":
        msg = f"compound correction {name!r}: input 'pt' must be real (it is updated)"
        raise ValueError(msg)
    rank = {n: i for i, n in enumerate(INPUT_ORDER)}
    ordered = sorted(variables, key=lambda n: (rank.get(n, len(rank)), list(variables).index(n)))
    return schemav2.CompoundCorrection(
        name=name,
        description=description,
        inputs=[variables[n] for n in ordered],
        output=schemav2.Variable(
            name="scale", type="real", description="Product of the step scales"
        ),
        inputs_update=["pt"],
        input_op="*",
        output_op="*",
        stack=[s.name for s in steps],
    )


# --------------------------------------------------------------------------- pile-up


def build_pileup_correction(
    mc_hist: Any,
    data_hist_nominal: Any,
    data_up: Any,
    data_down: Any,
    *,
    edges: Sequence[float] | None = None,
    max_weight: float = 10.0,
    name: str = "pileup",
    description: str | None = None,
    version: int = 1,
) -> schemav2.Correction:
    """Build pile-up weights ``w(n) = P_data(n) / P_mc(n)`` as a correction.

    The profiles are normalised to unit sum over the bins. Where the MC profile is empty
    the weight is 0 (no MC event lives there). Weights above ``max_weight`` are capped (the
    far tail where MC statistics vanish); capped bins are logged. The weights are not
    renormalised after capping, so ``sum_n P_mc(n) w(n)`` falls short of 1 by the capped
    data probability (negligible for sensible profiles).

    Inputs are ``NumTrueInteractions`` (real: the true mean number of interactions,
    NanoAOD ``Pileup_nTrueInt``) and ``weights`` (string: ``nominal``, ``up``, ``down``);
    the output is ``weight``. Binning with ``flow: "clamp"``.

    Args:
        mc_hist: MC pile-up profile: a 1D ``hist.Hist`` or an array of bin contents.
        data_hist_nominal: Data profile for the nominal minimum-bias cross section.
        data_up: Data profile for the upward-varied cross section.
        data_down: Data profile for the downward-varied cross section.
        edges: Bin edges for array profiles (default: integer bins ``0, 1, ..., N``);
            ignored for ``hist.Hist`` profiles (their axis edges are used).
        max_weight: Cap on the weights.
        name: Correction name.
        description: Payload description (a default one is generated).
        version: Payload version.

    Returns:
        The correction.

    Raises:
        ValueError: profiles with different binnings, negative contents or zero sum.

    Example:
        >>> corr = build_pileup_correction([1, 3], [2, 2], [1, 3], [3, 1])
        >>> [round(corr.to_evaluator().evaluate(0.5, k), 3) for k in ("nominal", "up", "down")]
        [2.0, 1.0, 3.0]
    """
    profiles = {
        "mc": _profile(mc_hist, edges, "mc_hist"),
        "nominal": _profile(data_hist_nominal, edges, "data_hist_nominal"),
        "up": _profile(data_up, edges, "data_up"),
        "down": _profile(data_down, edges, "data_down"),
    }
    ref_edges = profiles["mc"][1]
    for key, (vals, e) in profiles.items():
        if len(e) != len(ref_edges) or not np.allclose(e, ref_edges, rtol=0, atol=1e-9):
            msg = f"pile-up profile {key!r} has a different binning than the MC profile"
            raise ValueError(msg)
        if len(vals) != len(ref_edges) - 1:
            msg = f"pile-up profile {key!r} has {len(vals)} bins for {len(e) - 1} edges"
            raise ValueError(msg)
    p_mc = profiles["mc"][0] / profiles["mc"][0].sum()
    content = []
    for key in ("nominal", "up", "down"):
        p_data = profiles[key][0] / profiles[key][0].sum()
        w = np.divide(p_data, p_mc, out=np.zeros_like(p_data), where=p_mc > 0)
        capped = w > max_weight
        if capped.any():
            log.info(
                "pile-up weights %s: %d bins capped at %g (sum of capped P_data %.3g)",
                key,
                int(capped.sum()),
                max_weight,
                float(p_data[capped].sum()),
            )
        w = np.minimum(w, max_weight)
        content.append(
            schemav2.CategoryItem(
                key=key,
                value=schemav2.Binning(
                    nodetype="binning",
                    input=PILEUP_INPUTS[0],
                    edges=[_stored(x) for x in ref_edges],
                    content=[_stored(x) for x in w],
                    flow="clamp",
                ),
            )
        )
    return schemav2.Correction(
        name=name,
        description=description
        or f"Pile-up weights P_data(n)/P_mc(n), capped at {max_weight:g}; 0 where P_mc = 0",
        version=version,
        inputs=[
            schemav2.Variable(
                name=PILEUP_INPUTS[0],
                type="real",
                description="True mean number of interactions (Pileup_nTrueInt)",
            ),
            schemav2.Variable(
                name=PILEUP_INPUTS[1], type="string", description="nominal, up or down"
            ),
        ],
        output=schemav2.Variable(name="weight", type="real", description="Event weight"),
        data=schemav2.Category(nodetype="category", input=PILEUP_INPUTS[1], content=content),
    )


def _profile(
    h: Any, edges: Sequence[float] | None, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if hasattr(h, "axes") and hasattr(h, "values"):
        if len(h.axes) != 1:
            msg = f"pile-up profile {what!r} must be one-dimensional, got {len(h.axes)} axes"
            raise ValueError(msg)
        vals = np.asarray(h.values(), dtype=np.float64)
        e = np.asarray(h.axes[0].edges, dtype=np.float64)
    else:
        vals = np.asarray(h, dtype=np.float64)
        if vals.ndim != 1:
            msg = f"pile-up profile {what!r} must be one-dimensional, got shape {vals.shape}"
            raise ValueError(msg)
        e = (
            np.arange(len(vals) + 1, dtype=np.float64)
            if edges is None
            else np.asarray(edges, dtype=np.float64)
        )
    if not np.all(np.isfinite(vals)) or np.any(vals < 0) or vals.sum() <= 0:
        msg = f"pile-up profile {what!r} must have finite, non-negative contents with sum > 0"
        raise ValueError(msg)
    return vals, e


# --------------------------------------------------------------------------- output


def write_correction_set(
    path: str | Path,
    corrections: Sequence[schemav2.Correction],
    compounds: Sequence[schemav2.CompoundCorrection] = (),
    *,
    description: str,
    run_id: bool = True,
) -> Path:
    """Validate a correction set and write it atomically as JSON (gzip for ``.json.gz``).

    Validation is the pydantic schema check of ``correction validate`` plus a load by the
    correctionlib C++ evaluator (which also checks compound stacks). A failure while
    writing leaves no file (and keeps any previous file at ``path`` untouched).

    Args:
        path: Output path ending with ``.json`` or ``.json.gz``.
        corrections: The corrections.
        compounds: Compound corrections referring to ``corrections`` by name.
        description: Description of the set; ``(zcalib run <id>)`` of the current run
            (:mod:`zcalib.outputs`) is appended unless it names one already.
        run_id: Name the run at all (``False`` for payloads kept in a repository and
            rebuilt byte for byte, such as the demo pile-up weights).

    Returns:
        The path written.

    Raises:
        OutputError: bad suffix, invalid set, or the file cannot be written.

    Example:
        >>> import tempfile, pathlib
        >>> from zcalib.categories import Category
        >>> s1 = build_scale_correction("s1", [Category("scale", 0, eta=(0, 2.5))], [1.1], [0],
        ...                             description="step 1")
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "scales.json"
        >>> write_correction_set(p, [s1], description="demo").name
        'scales.json'
    """
    p = Path(path)
    gz = p.name.endswith(".json.gz")
    if not (gz or p.name.endswith(".json")):
        msg = f"{p}: correction set must be written to a .json or .json.gz file"
        raise OutputError(msg)
    if run_id and "zcalib run " not in description:
        description = f"{description} ({run_tag()})".lstrip()
    try:
        cset = schemav2.CorrectionSet(
            schema_version=2, description=description, corrections=list(corrections)
        )
        if compounds:  # set only when present: an unset field is left out of the JSON
            cset = schemav2.CorrectionSet(
                schema_version=2,
                description=description,
                corrections=list(corrections),
                compound_corrections=list(compounds),
            )
    except pydantic.ValidationError as err:
        msg = f"{p}: invalid correction set: {_first_error(err)}"
        raise OutputError(msg) from None
    text = _pretty_dumps(cset) + "\n"
    _check_text(text, str(p), OutputError)
    with atomic_open(p, "wb") as raw:
        fh: IO[bytes] = raw  # type: ignore[assignment]
        if gz:
            with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as zfh:
                for chunk in _chunks(text):
                    zfh.write(chunk.encode())
        else:
            for chunk in _chunks(text):
                fh.write(chunk.encode())
    log.debug("wrote %d corrections and %d compounds to %s", len(corrections), len(compounds), p)
    return p


def _chunks(text: str, size: int = 1 << 16) -> Iterator[str]:
    """The serialised payload in pieces (written one by one)."""
    for start in range(0, len(text), size):
        yield text[start : start + size]


def validate_file(path: str | Path) -> schemav2.CorrectionSet:
    """Validate a correctionlib file as ``correction validate`` does, and load it.

    Runs the schema check of the ``correction validate`` CLI
    (``model_auto(open_auto(path))``), requires schema version 2, and loads the file with
    the C++ evaluator.

    Args:
        path: A ``.json`` or ``.json.gz`` correction set.

    Returns:
        The validated schema-v2 model.

    Raises:
        InputError: unreadable file or invalid content (the first problem is named).

    Example:
        >>> import tempfile, pathlib
        >>> from zcalib.categories import Category
        >>> s1 = build_scale_correction("s1", [Category("scale", 0, eta=(0, 2.5))], [1.1], [0],
        ...                             description="step 1")
        >>> p = write_correction_set(pathlib.Path(tempfile.mkdtemp()) / "s.json", [s1],
        ...                          description="demo")
        >>> [c.name for c in validate_file(p).corrections]
        ['s1']
    """
    p = Path(path)
    try:
        text = open_auto(str(p))
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
        msg = f"{p}: cannot read correction set ({err})"
        raise InputError(msg) from None
    return _check_text(text, str(p), InputError)


def _check_text(
    text: str, where: str, exc: type[InputError | OutputError]
) -> schemav2.CorrectionSet:
    try:
        model = model_auto(text)
    except pydantic.ValidationError as err:
        msg = f"{where}: invalid correction set: {_first_error(err)}"
        raise exc(msg) from None
    except (ValueError, json.JSONDecodeError) as err:
        msg = f"{where}: invalid correction set: {err}"
        raise exc(msg) from None
    if not isinstance(model, schemav2.CorrectionSet):
        msg = f"{where}: schema version {model.schema_version}; allowed: 2"
        raise exc(msg)
    try:
        correctionlib.CorrectionSet.from_string(text)
    except (RuntimeError, ValueError) as err:
        msg = f"{where}: correctionlib cannot load the correction set: {err}"
        raise exc(msg) from None
    return model


def _first_error(err: pydantic.ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"])
    return f"{loc}: {first['msg']}" + (
        f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    )
