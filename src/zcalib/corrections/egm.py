"""The CMS EGM Run-3 layout of zcalib's correctionlib payloads.

Every payload zcalib delivers (``zcalib fit``, the pipeline's ``final/corrections.json``, the
API's :func:`zcalib.api.write_corrections`) holds, for an era ``<era>`` and a collection
``<P>`` (``Ele`` or ``Pho``):

``EGMScale_Compound_<P>_<era>`` (compound, data)
    ``evaluate(syst, run, ScEta, r9, AbsScEta, pt, seedGain)`` with ``syst`` one of
    ``scale``, ``escale``, ``scale_up``, ``scale_down``. The stack is the data-scale steps
    ``EGMScale_<step>_<era>`` in application order, then ``EGMScaleUnc_<P>_<era>``
    (``input_op``/``output_op`` ``"*"``, ``inputs_update: ["pt"]``: step *k* sees
    ``pt * s_1 ... s_{k-1}``).
``EGMScale_<step>_<era>`` (one per step)
    The step's scale; **every** ``syst`` key returns the nominal scale: the steps are pinned
    at nominal in the stack, the uncertainty is carried by the last element.
``EGMScaleUnc_<P>_<era>``
    ``scale → 1``, ``escale → r``, ``scale_up → 1 + r``, ``scale_down → 1 - r``, where
    ``r = sqrt(sum_k (e_k / s_k)^2)`` is the total relative uncertainty of the stacked
    correction, ``e_k`` being step *k*'s uncertainty (stat ⊕ MC stat ⊕ syst) evaluated where
    the stack evaluates step *k*. So the compound returns ``S = prod s_k`` for ``scale``,
    ``S·r`` (the absolute total uncertainty) for ``escale`` and ``S·(1 ± r)`` for
    ``scale_up``/``scale_down``. Its grid is the union of the steps' bin edges in every
    input but pt; its pt (the corrected pt the stack hands its last element) is binned per
    cell at the images of the steps' pt edges through the stack, so ``r`` is exact except
    where a step's own scale jumps by ``Δ`` at one of its pt edges: within ``±Δ/2`` of the
    mapped edge (a few per mille) the corrected pt cannot tell the two sides apart and the
    mean image is the boundary.
``EGMSmearAndSyst_<P>PTsplit_<era>`` (MC)
    ``evaluate(syst, pt, r9, AbsScEta)`` with ``smear``, ``esmear``, ``smear_up``,
    ``smear_down`` (``max(smear - esmear, 0)``) and the scale uncertainty for MC, relative
    as EGM's: ``escale`` (the largest ``r`` over run, seed gain and the sign of eta_SC at
    that (pt, r9, |eta_SC|)), ``scale_up = 1 + escale``, ``scale_down = 1 - escale``.
``EGMRandomGenerator``
    The counter-based random numbers of the MC smearing (:mod:`zcalib.rng`), the same
    definition zcalib's processor uses.

Every numeric input is ``real`` (analysts pass doubles; correctionlib's Python wrapper also
takes integer arrays for real inputs, not integer scalars). Inputs a step does not cut on
are present and ignored, so the signatures never change with the categories. Binned inputs
use ``flow: "clamp"`` (values beyond the outer edges take the outer bins); ``seedGain``, when
a step cuts on it, is binned ``[0.5, 3.5, 9, 12.5)`` for gains 1, 6, 12 with
``flow: "error"`` (an ECALELF gain *index* 0/1/2 passed by mistake raises instead of being
read as gain 1). ``run`` bins are ``[min, max + 1)``; MC events (run 1) fall in the first
run bin through clamping.

Accepted era names: :data:`ERAS`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import correctionlib
import numpy as np
from correctionlib import schemav2
from numpy.typing import NDArray

from zcalib.corrections.writer import (
    GAIN_EDGES,
    SCALE_INPUTS,
    SCALE_SYST_KEYS,
    SMEAR_INPUTS,
    SMEAR_SYST_KEYS,
    _stored,
    build_compound,
    signature_variables,
)
from zcalib.exceptions import InvalidConfig, OutputError
from zcalib.rng import RNG_NAME, random_generator

__all__ = [
    "DEFAULT_ERA",
    "ERAS",
    "MC_SYST_KEYS",
    "PARTICLES",
    "SMEAR_MODEL_MARK",
    "EgmNames",
    "ScaleSource",
    "build_scale_uncertainty",
    "build_smear_and_syst",
    "check_era",
    "egm_corrections",
    "particle_of",
    "payload_inputs",
    "pin_at_nominal",
    "smear_model_note",
    "smear_model_of",
    "used_inputs",
]

log = logging.getLogger(__name__)

#: Era names accepted in payload names (EGM's spelling: ``BPIX`` in capitals).
ERAS: tuple[str, ...] = (
    "2016preVFP",
    "2016postVFP",
    "2017",
    "2018",
    "2022preEE",
    "2022postEE",
    "2023preBPIX",
    "2023postBPIX",
    "2024",
    "2025",
)
#: Era used when none is given.
DEFAULT_ERA = "2022preEE"
#: Collections of the payload names.
PARTICLES: tuple[str, ...] = ("Ele", "Pho")
#: ``syst`` keys of ``EGMSmearAndSyst``, in payload order.
MC_SYST_KEYS: tuple[str, ...] = (*SMEAR_SYST_KEYS, "escale", "scale_up", "scale_down")
_UNC_OUTPUT = "scale_unc_factor"
#: where an input a correction does not bin is evaluated (any value gives the same result)
_DEFAULTS = {
    "run": 1.0,
    "lumi": 1.0,
    "ScEta": 0.5,
    "AbsScEta": 0.5,
    "r9": 0.95,
    "pt": 40.0,
    "seedGain": 12.0,
}
_GAIN_VALUES = (1.0, 6.0, 12.0)


def check_era(era: str, where: str = "era") -> str:
    """Return ``era`` if it is one of :data:`ERAS`, else raise naming the allowed names."""
    if era not in ERAS:
        msg = f"{where}: unknown era {era!r}; allowed: {', '.join(ERAS)}"
        raise InvalidConfig(msg)
    return era


def particle_of(collection: str | None) -> str:
    """``Pho`` for a photon collection (``Photon``/``Pho``), else ``Ele``."""
    return "Pho" if collection in ("Photon", "Pho") else "Ele"


@dataclass(frozen=True)
class EgmNames:
    """The correction names of one payload.

    Example:
        >>> n = EgmNames("2022preEE", "Ele")
        >>> n.compound, n.smear, n.step("step2")
        ('EGMScale_Compound_Ele_2022preEE', 'EGMSmearAndSyst_ElePTsplit_2022preEE', \
'EGMScale_step2_2022preEE')
    """

    era: str = DEFAULT_ERA
    particle: str = "Ele"

    def __post_init__(self) -> None:
        check_era(self.era)
        if self.particle not in PARTICLES:
            msg = f"unknown collection {self.particle!r}; allowed: {', '.join(PARTICLES)}"
            raise InvalidConfig(msg)

    @property
    def compound(self) -> str:
        """The data-scale compound."""
        return f"EGMScale_Compound_{self.particle}_{self.era}"

    @property
    def smear(self) -> str:
        """The MC smearing-and-systematics correction."""
        return f"EGMSmearAndSyst_{self.particle}PTsplit_{self.era}"

    @property
    def uncertainty(self) -> str:
        """The last element of the compound stack (total relative scale uncertainty)."""
        return f"EGMScaleUnc_{self.particle}_{self.era}"

    @property
    def rng(self) -> str:
        """The random-number generator."""
        return RNG_NAME

    def step(self, step: str) -> str:
        """The scale correction of one step."""
        return f"EGMScale_{step}_{self.era}"


# --------------------------------------------------------------------------- tree helpers


def used_inputs(node: Any) -> set[str]:
    """Names of the inputs a correction's tree actually reads (a model, dict or node)."""
    found: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            if isinstance(n.get("input"), str):
                found.add(n["input"])
            for key in ("inputs", "variables"):
                if isinstance(n.get(key), list) and n.get("nodetype") is not None:
                    found.update(x for x in n[key] if isinstance(x, str))
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(node.model_dump() if hasattr(node, "model_dump") else node)
    return found


def payload_inputs(payload: str | Mapping[str, Any], name: str) -> tuple[str, ...]:
    """Inputs that correction or compound ``name`` of a payload (JSON text or its parsed
    dict) reads, in declaration order (``()`` when not found or not JSON)."""
    try:
        raw = json.loads(payload) if isinstance(payload, str) else payload
    except ValueError:
        return ()
    if not isinstance(raw, dict):
        return ()
    by_name = {c.get("name"): c for c in raw.get("corrections", []) if isinstance(c, dict)}
    compound = next(
        (c for c in raw.get("compound_corrections") or [] if c.get("name") == name), None
    )
    if compound is not None:
        declared = [str(v.get("name")) for v in compound.get("inputs", [])]
        read: set[str] = set()
        for step in compound.get("stack", []):
            read |= used_inputs(by_name.get(step, {}).get("data", {}))
    elif name in by_name:
        declared = [str(v.get("name")) for v in by_name[name].get("inputs", [])]
        read = used_inputs(by_name[name].get("data", {}))
    else:
        return ()
    return tuple(n for n in declared if n in read)


def _edges_of(*corrections: schemav2.Correction) -> dict[str, list[float]]:
    """Bin edges per input over the (multi)binning nodes of the corrections."""
    edges: dict[str, set[float]] = {}

    def expand(e: Any) -> list[float]:
        if isinstance(e, dict):  # UniformBinning
            n, lo, hi = int(e["n"]), float(e["low"]), float(e["high"])
            return [lo + (hi - lo) * i / n for i in range(n + 1)]
        return [float(x) for x in e]

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            kind = n.get("nodetype")
            if kind == "binning":
                edges.setdefault(n["input"], set()).update(expand(n["edges"]))
            elif kind == "multibinning":
                for name, e in zip(n["inputs"], n["edges"], strict=True):
                    edges.setdefault(name, set()).update(expand(e))
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    for corr in corrections:
        walk(corr.data.model_dump() if hasattr(corr.data, "model_dump") else corr.data)
    out = {k: sorted(x for x in v if math.isfinite(x)) for k, v in edges.items()}
    if "ScEta" in out and "AbsScEta" in out:  # one signed axis serves both
        absolute = out.pop("AbsScEta")
        out["ScEta"] = sorted({*out["ScEta"], *absolute, *(-x for x in absolute)})
    return out


def pin_at_nominal(corr: schemav2.Correction, name: str) -> schemav2.Correction:
    """A copy of a scale step (``syst`` category with key ``scale``) whose every key
    returns the nominal scale, renamed ``name``.

    Raises:
        OutputError: the correction's top node is not a ``syst`` category with ``scale``.
    """
    data = corr.data
    nominal = None
    if isinstance(data, schemav2.Category) and data.input == "syst":
        nominal = next((i.value for i in data.content if i.key == "scale"), None)
    if nominal is None:
        msg = (
            f"correction {corr.name!r}: cannot be stacked in the EGM compound; its top node "
            "must be a category on 'syst' with a 'scale' key"
        )
        raise OutputError(msg)
    content = [schemav2.CategoryItem(key=k, value=nominal) for k in SCALE_SYST_KEYS]
    known = {v.name: v for v in corr.inputs}
    fixed = signature_variables(SCALE_INPUTS, "Variation: scale, escale, scale_up, scale_down")
    inputs = [known.get(v.name, v) for v in fixed]
    inputs += [v for v in corr.inputs if v.name not in SCALE_INPUTS]
    return schemav2.Correction(
        name=name,
        description=(
            f"{corr.description or corr.name}. Every syst key returns the nominal scale (the "
            "steps are pinned at nominal; the stacked uncertainty is the compound's last "
            "element)"
        ),
        version=corr.version,
        inputs=inputs,
        output=schemav2.Variable(
            name="scale", type="real", description="Multiplicative scale of the data energy"
        ),
        data=schemav2.Category(nodetype="category", input="syst", content=content),
    )


def _evaluator(
    corrections: Sequence[schemav2.Correction],
    compounds: Sequence[schemav2.CompoundCorrection] = (),
) -> Any:
    cset = schemav2.CorrectionSet(
        schema_version=2, corrections=list(corrections), compound_corrections=list(compounds)
    )
    return correctionlib.CorrectionSet.from_string(cset.model_dump_json(exclude_unset=True))


def _call(ev: Any, inputs: Sequence[str], key: str, arrays: Mapping[str, NDArray[Any]]) -> Any:
    args: list[Any] = []
    for name in inputs:
        if name in ("syst", "distribution"):
            args.append(key)
        else:
            args.append(np.ascontiguousarray(arrays[name], dtype=np.float64))
    return np.asarray(ev.evaluate(*args), dtype=np.float64)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ScaleSource:
    """One data-scale step (or a stack of pinned steps) with its own uncertainty.

    Attributes:
        label: for messages.
        pinned: the corrections it contributes to the compound stack (every key nominal).
        evaluate: ``(syst, arrays by input name) -> values`` with the step's own meaning
            (``scale``: its scale; ``escale``: its absolute uncertainty).
        edges: bin edges per input it cuts on.
    """

    label: str
    pinned: tuple[schemav2.Correction, ...]
    evaluate: Callable[[str, Mapping[str, NDArray[Any]]], NDArray[np.float64]]
    edges: Mapping[str, Sequence[float]]

    @classmethod
    def from_correction(cls, corr: schemav2.Correction, name: str) -> ScaleSource:
        """A step built with its own uncertainty (``escale`` absolute), pinned as ``name``."""
        ev = _evaluator([corr])[corr.name]
        inputs = tuple(v.name for v in corr.inputs)
        return cls(
            label=corr.name,
            pinned=(pin_at_nominal(corr, name),),
            evaluate=lambda key, arrays: _call(ev, inputs, key, arrays),
            edges=_edges_of(corr),
        )

    @classmethod
    def from_payload(cls, payload: str, name: str, rename: str) -> ScaleSource:
        """The correction or compound ``name`` of a payload (JSON text).

        A compound (a zcalib payload) contributes its pinned stack (without its uncertainty
        element) and is evaluated whole; a correction is pinned and renamed ``rename``.
        """
        model = schemav2.CorrectionSet.model_validate_json(payload)
        by_name = {c.name: c for c in model.corrections}
        if name in by_name:
            return cls.from_correction(by_name[name], rename)
        compound = next((c for c in model.compound_corrections or () if c.name == name), None)
        if compound is None:
            msg = f"no correction or compound named {name!r} in the payload"
            raise OutputError(msg)
        stack = [by_name[s] for s in compound.stack]
        pinned = tuple(c for c in stack if c.output.name != _UNC_OUTPUT)
        ev = _evaluator(stack, [compound]).compound[name]
        inputs = tuple(v.name for v in compound.inputs)
        return cls(
            label=name,
            pinned=pinned,
            evaluate=lambda key, arrays: _call(ev, inputs, key, arrays),
            edges=_edges_of(*stack),
        )


# --------------------------------------------------------------------------- grids


def _representatives(var: str, edges: Sequence[float]) -> NDArray[np.float64]:
    if var == "seedGain":
        return np.array(_GAIN_VALUES)
    e = np.asarray(edges, dtype=np.float64)
    if var in ("run", "lumi"):
        return e[:-1].copy()  # integral values: the whole bin [lo, hi) shares its values
    mid: NDArray[np.float64] = 0.5 * (e[:-1] + e[1:])
    return mid


def _mesh(axes: Mapping[str, NDArray[np.float64]]) -> dict[str, NDArray[np.float64]]:
    if not axes:
        return {}
    grids = np.meshgrid(*axes.values(), indexing="ij")
    return {k: g.ravel() for k, g in zip(axes, grids, strict=True)}


def _with_defaults(points: Mapping[str, NDArray[np.float64]], n: int) -> dict[str, Any]:
    arrays = {k: np.full(n, v) for k, v in _DEFAULTS.items()}
    arrays.update(points)
    if "ScEta" in points:
        arrays["AbsScEta"] = np.abs(points["ScEta"])
    elif "AbsScEta" in points:
        arrays["ScEta"] = points["AbsScEta"].copy()
    return arrays


def _relative_total(
    sources: Sequence[ScaleSource], arrays: Mapping[str, NDArray[np.float64]], *, raw: bool = False
) -> NDArray[np.float64]:
    """``sqrt(sum_k (e_k/s_k)^2)`` along the stack at ``arrays["pt"]`` (the raw pt when
    ``raw``; else the corrected pt, inverted by fixed-point iteration)."""
    final_pt = np.asarray(arrays["pt"], dtype=np.float64)
    raw_pt = final_pt.copy()
    for _ in range(0 if raw else 4):  # raw pt whose corrected pt is the representative point
        pt = raw_pt.copy()
        for src in sources:
            pt = pt * src.evaluate("scale", {**arrays, "pt": pt})
        raw_pt = raw_pt * final_pt / pt
    raw = raw_pt  # type: ignore[assignment]
    total = np.zeros_like(raw_pt)
    pt = raw_pt
    for src in sources:
        here = {**arrays, "pt": pt}
        s = src.evaluate("scale", here)
        e = src.evaluate("escale", here)
        total += (e / s) ** 2
        pt = pt * s
    out: NDArray[np.float64] = np.sqrt(total)
    return out


def _tree(
    table: Mapping[str, NDArray[np.float64]],
    keys: Sequence[str],
    axes: Mapping[str, Sequence[float]],
) -> schemav2.Category:
    """:func:`_tree_of` for a table of numbers per key."""
    return _tree_of(lambda k: [_stored(float(x)) for x in table[k]], keys, axes)


def _tree_of(
    content: Callable[[str], list[Any]],
    keys: Sequence[str],
    axes: Mapping[str, Sequence[float]],
) -> schemav2.Category:
    """``Category(syst) -> [Binning(seedGain)] -> MultiBinning(others, clamp)`` of values
    laid out C-ordered over ``axes`` (seedGain first when present)."""
    binned = [v for v in axes if v != "seedGain"]
    n_other = int(np.prod([len(axes[v]) - 1 for v in binned])) if binned else 1

    def leaf(values: list[Any]) -> Any:
        if not binned:
            return values[0]
        return schemav2.MultiBinning(
            nodetype="multibinning",
            inputs=binned,
            edges=[[_stored(float(x)) for x in axes[v]] for v in binned],
            content=values,
            flow="clamp",
        )

    def node(values: list[Any]) -> Any:
        if "seedGain" not in axes:
            return leaf(values)
        parts = [values[g * n_other : (g + 1) * n_other] for g in range(len(_GAIN_VALUES))]
        return schemav2.Binning(
            nodetype="binning",
            input="seedGain",
            edges=list(GAIN_EDGES),
            content=[leaf(p) for p in parts],
            flow="error",
        )

    return schemav2.Category(
        nodetype="category",
        input="syst",
        content=[schemav2.CategoryItem(key=k, value=node(content(k))) for k in keys],
    )


def _axes(edges: Mapping[str, Sequence[float]], order: Sequence[str]) -> dict[str, list[float]]:
    """Edges of the binned inputs in ``order`` (seedGain first, with its fixed edges)."""
    out: dict[str, list[float]] = {}
    if "seedGain" in edges:
        out["seedGain"] = list(GAIN_EDGES)
    for v in order:
        if v != "seedGain" and v in edges and len(edges[v]) >= 2:
            out[v] = list(edges[v])
    return out


def build_scale_uncertainty(
    name: str, sources: Sequence[ScaleSource], *, description: str = ""
) -> schemav2.Correction:
    """The last element of the compound: the total relative uncertainty of the stack.

    Args:
        name: correction name.
        sources: the steps in stack order.
        description: appended to the generated description.

    Returns:
        The correction (module docstring); its output is named ``scale_unc_factor``.
    """
    merged: dict[str, set[float]] = {}
    for src in sources:
        for var, e in src.edges.items():
            merged.setdefault(var, set()).update(e)
    extra = sorted(v for v in merged if v not in SCALE_INPUTS)
    pt_edges = sorted(merged.pop("pt", set()))
    axes = _axes({k: sorted(v) for k, v in merged.items()}, [*SCALE_INPUTS[1:], *extra])
    points = _mesh({v: _representatives(v, e) for v, e in axes.items()})
    n = len(next(iter(points.values()))) if points else 1
    arrays = _with_defaults(points, n)
    if len(pt_edges) < 2:  # no step cuts on pt
        r = _relative_total(sources, arrays)
        leaves: list[Any] = [None] * n
        tables = {"escale": r}
    else:
        leaves = [
            _pt_leaf(sources, {k: v[i : i + 1] for k, v in arrays.items()}, pt_edges)
            for i in range(n)
        ]
        tables = {}
    if any(not np.all(np.isfinite(leaf[1])) for leaf in leaves if leaf is not None) or (
        tables and not np.all(np.isfinite(tables["escale"]))
    ):
        msg = f"cannot build {name!r}: non-finite total scale uncertainty"
        raise OutputError(msg)

    def value(key: str, r: Any) -> Any:
        return {"scale": 1.0 + 0.0 * r, "escale": r, "scale_up": 1.0 + r, "scale_down": 1.0 - r}[
            key
        ]

    def content(key: str) -> list[Any]:
        if tables:
            return [_stored(float(x)) for x in value(key, tables["escale"])]
        return [
            schemav2.Binning(
                nodetype="binning",
                input="pt",
                edges=[_stored(float(x)) for x in edges],
                content=[_stored(float(x)) for x in value(key, r)],
                flow="clamp",
            )
            for edges, r in leaves
        ]

    return schemav2.Correction(
        name=name,
        version=1,
        description=(
            "Total relative uncertainty r = sqrt(sum_k (e_k/s_k)^2) of the stacked scale steps "
            f"({', '.join(s.label for s in sources)}), each error stat (+) MC stat (+) syst: "
            "scale -> 1, escale -> r, scale_up -> 1 + r, scale_down -> 1 - r; the last "
            "element of the compound, which then returns S, S r, S (1 + r), S (1 - r). Its pt "
            "is the corrected pt: the pt edges are those of the steps mapped through the "
            "stack in each cell" + (f". {description}" if description else "")
        ),
        inputs=signature_variables(
            (*SCALE_INPUTS, *extra), "Variation: scale, escale, scale_up, scale_down"
        ),
        output=schemav2.Variable(
            name=_UNC_OUTPUT, type="real", description="Uncertainty factor of the stacked scale"
        ),
        data=_tree_of(content, SCALE_SYST_KEYS, axes),
    )


def _pt_leaf(
    sources: Sequence[ScaleSource], cell: Mapping[str, NDArray[np.float64]], pt_edges: list[float]
) -> tuple[list[float], NDArray[np.float64]]:
    """``(corrected-pt edges, r per bin)`` of one cell of the other inputs.

    Works in raw pt: every step's pt edge is mapped to the raw pt where the stack feeds it
    that pt (the steps before it are constant between breakpoints), then each raw interval
    gets its exact ``r`` and is mapped to corrected pt by its constant total scale. Where a
    step's scale jumps at an edge, the corrected-pt edge is the mean of the two images.
    """
    lo, hi = pt_edges[0], pt_edges[-1]
    breaks = [lo, hi]
    for k, src in enumerate(sources):
        own = [e for e in src.edges.get("pt", ()) if lo < e < hi]
        if not own:
            continue
        mids = 0.5 * (np.array(breaks[:-1]) + np.array(breaks[1:]))
        prefix = np.ones_like(mids)
        pt = mids.copy()
        for prior in sources[:k]:
            s = prior.evaluate("scale", {**_cell(cell, len(mids)), "pt": pt})
            prefix, pt = prefix * s, pt * s
        new = []
        for j, p in enumerate(prefix):
            new += [e / p for e in own if breaks[j] < e / p < breaks[j + 1]]
        breaks = sorted({*breaks, *new})
    b = np.array(breaks)
    mids = 0.5 * (b[:-1] + b[1:])
    arrays = {**_cell(cell, len(mids)), "pt": mids}
    r = _relative_total(sources, arrays, raw=True)
    total = np.ones_like(mids)
    pt = mids.copy()
    for src in sources:
        s = src.evaluate("scale", {**arrays, "pt": pt})
        total, pt = total * s, pt * s
    images = [b[0] * total[0]]
    images += [b[j] * 0.5 * (total[j - 1] + total[j]) for j in range(1, len(b) - 1)]
    images.append(b[-1] * total[-1])
    # keep the bins whose (stored) edges increase: a bin squeezed out by a jump is dropped
    edges, kept = [_stored(float(images[0]))], []
    for j in range(len(mids)):
        hi = _stored(float(images[j + 1]))
        if hi > edges[-1]:
            edges.append(hi)
            kept.append(j)
    if not kept:  # degenerate: one bin over the whole range
        return [edges[0], edges[0] + 1.0], r[:1]
    return edges, r[kept]


def _cell(cell: Mapping[str, NDArray[np.float64]], n: int) -> dict[str, NDArray[np.float64]]:
    return {k: np.repeat(v, n) for k, v in cell.items()}


#: Start of the sentence of a smearing correction's description that names a smearing model
#: other than the single Gaussian (:func:`smear_model_note`); ``EGMSmearAndSyst`` repeats it.
SMEAR_MODEL_MARK = "Smearing model: "


def smear_model_note(shape: tuple[float, float] | None) -> str:
    """The description sentence of a double-Gaussian smearing of shape ``(f, k)`` (``""`` for
    the single Gaussian, whose drawing the descriptions already state).

    Example:
        >>> smear_model_note(None)
        ''
        >>> smear_model_note((0.2, 2.0))[:56]
        'Smearing model: double-gaussian, fraction f = 0.2, width'
    """
    if shape is None:
        return ""
    f, k = (_exact(x) for x in shape)
    return (
        f"{SMEAR_MODEL_MARK}double-gaussian, fraction f = {f}, width_ratio k = {k}: "
        "smear/esmear/smear_up/smear_down are the core width s; draw per electron "
        f"E' = E (1 + s z) with probability {1 - shape[0]:g} and E' = E (1 + {k} s z) with "
        f"probability {f}: the tail when u < {f}, with z = EGMRandomGenerator "
        '("stdnormal", pt, r9, AbsScEta, event) and u = EGMRandomGenerator("stdflat", pt, '
        "r9, AbsScEta, event), both keyed on the event identity. zcalib apply and the "
        "zcalib processors draw this mixture."
    )


def _exact(x: float) -> str:
    """``x`` as short as ``:g`` writes it when that reads back exactly, else ``repr``."""
    g = f"{x:g}"
    return g if float(g) == x else repr(float(x))


_MODEL_PATTERN = re.compile(
    re.escape(SMEAR_MODEL_MARK) + r"double-gaussian, fraction f = (\S+), width_ratio k = (\S+):"
)


def smear_model_of(description: str) -> tuple[float, float] | None:
    """The double-Gaussian shape ``(f, k)`` a smearing description names
    (:func:`smear_model_note`), ``None`` for the single Gaussian.

    Example:
        >>> smear_model_of("MC extra smearing. " + smear_model_note((0.2, 2.0)))
        (0.2, 2.0)
        >>> smear_model_of("MC extra smearing.") is None
        True
    """
    m = _MODEL_PATTERN.search(description or "")
    return None if m is None else (float(m.group(1)), float(m.group(2)))


def _model_note_of(smear: schemav2.Correction) -> str:
    text = smear.description or ""
    i = text.find(SMEAR_MODEL_MARK)
    return "" if i < 0 else text[i:].strip()


def build_smear_and_syst(
    name: str,
    smear: schemav2.Correction,
    uncertainty: schemav2.Correction | None,
    *,
    description: str = "",
) -> schemav2.Correction:
    """``EGMSmearAndSyst``: the smearing keys of ``smear`` and the MC scale uncertainty.

    Args:
        name: correction name.
        smear: a smearing with keys ``smear, esmear, smear_up, smear_down`` whose tree reads
            only ``pt``, ``r9`` and ``AbsScEta``.
        uncertainty: the compound's uncertainty element (``None``: no scale steps, so
            ``escale = 0``).
        description: the payload description.

    Raises:
        OutputError: the smearing reads another input.
    """
    smear_edges = _edges_of(smear)
    beyond = sorted(used_inputs(smear.data) - set(SMEAR_INPUTS))
    if beyond:
        msg = (
            f"cannot build {name!r} from {smear.name!r}: the smearing depends on "
            f"{', '.join(beyond)}; EGMSmearAndSyst takes ({', '.join(SMEAR_INPUTS)})"
        )
        raise OutputError(msg)
    unc_edges = _edges_of(uncertainty) if uncertainty is not None else {}
    merged: dict[str, set[float]] = {}
    for var in SMEAR_INPUTS[1:]:
        e = set(smear_edges.get(var, ()))
        if var == "AbsScEta" and "ScEta" in unc_edges:
            e |= {abs(x) for x in unc_edges["ScEta"]}
        e |= set(unc_edges.get(var, ()))
        if len(e) >= 2:
            merged[var] = e
    axes = _axes({k: sorted(v) for k, v in merged.items()}, SMEAR_INPUTS[1:])
    points = _mesh({v: _representatives(v, e) for v, e in axes.items()})
    n = len(next(iter(points.values()))) if points else 1
    arrays = _with_defaults(points, n)
    sev = _evaluator([smear])[smear.name]
    sin = tuple(v.name for v in smear.inputs)
    table = {k: _call(sev, sin, k, arrays) for k in SMEAR_SYST_KEYS}
    escale = np.zeros(n)
    if uncertainty is not None:
        uev = _evaluator([uncertainty])[uncertainty.name]
        uin = tuple(v.name for v in uncertainty.inputs)
        others = {v: _representatives(v, e) for v, e in _axes(unc_edges, uin[1:]).items()}
        others = {k: v for k, v in others.items() if k not in SMEAR_INPUTS}
        signs = [1.0, -1.0] if "ScEta" in others else [1.0]
        others.pop("ScEta", None)
        combos = _mesh(others)
        m = len(next(iter(combos.values()))) if combos else 1
        for sign in signs:
            for j in range(m):
                here = dict(arrays)
                here.update({k: np.full(n, v[j]) for k, v in combos.items()})
                here["ScEta"] = sign * arrays["AbsScEta"]
                escale = np.maximum(escale, _call(uev, uin, "escale", here))
    table.update({"escale": escale, "scale_up": 1.0 + escale, "scale_down": 1.0 - escale})
    return schemav2.Correction(
        name=name,
        version=1,
        description=(
            "MC smearing E' = E (1 + smear z), z from EGMRandomGenerator, and the data-scale "
            "uncertainty for MC (relative: escale; scale_up/down = 1 +- escale, the largest "
            "total relative uncertainty of the data compound over run, seedGain and the sign "
            "of eta_SC). " + (_model_note_of(smear) + " " + description).strip()
        ).strip(),
        inputs=signature_variables(SMEAR_INPUTS, f"Variation: {', '.join(MC_SYST_KEYS)}"),
        output=schemav2.Variable(
            name="smear",
            type="real",
            description="smear/esmear/smear_up/smear_down (relative widths), "
            "escale (relative), scale_up/scale_down (factors)",
        ),
        data=_smooth_keys(_tree(table, MC_SYST_KEYS, axes), smear),
    )


def _smooth_keys(tree: schemav2.Category, smear: schemav2.Correction) -> schemav2.Category:
    """``tree`` with the smearing keys of ``smear`` copied as they are when they hold
    formulas (smooth Et curves, :mod:`zcalib.corrections.smooth`): a table would only
    sample the curves."""
    if not _has_formula(smear.data.model_dump() if hasattr(smear.data, "model_dump") else None):
        return tree
    assert isinstance(smear.data, schemav2.Category)
    own = {str(i.key): i.value for i in smear.data.content}
    content = [
        schemav2.CategoryItem(key=i.key, value=own.get(str(i.key), i.value))
        if str(i.key) in SMEAR_SYST_KEYS
        else i
        for i in tree.content
    ]
    return schemav2.Category(nodetype="category", input="syst", content=content)


def _has_formula(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("nodetype") == "formula" or any(_has_formula(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_formula(v) for v in node)
    return False


def egm_corrections(
    names: EgmNames,
    sources: Sequence[ScaleSource],
    smear: schemav2.Correction | None,
    *,
    seed: int = 0,
    description: str = "",
) -> tuple[list[schemav2.Correction], list[schemav2.CompoundCorrection]]:
    """The corrections and compound of an EGM-layout payload (module docstring).

    Args:
        names: era and collection.
        sources: data-scale steps in application order (may be empty).
        smear: the MC smearing (``None``: no ``EGMSmearAndSyst``).
        seed: the smearing seed of ``EGMRandomGenerator``.
        description: appended to generated descriptions.

    Returns:
        ``(corrections, compounds)`` for :func:`~zcalib.corrections.write_correction_set`.

    Raises:
        OutputError: two pinned steps with the same name, or a step/smearing that cannot be
            expressed in the EGM layout.
    """
    corrections: list[schemav2.Correction] = []
    compounds: list[schemav2.CompoundCorrection] = []
    unc = None
    if sources:
        pinned = [p for s in sources for p in s.pinned]
        seen: set[str] = set()
        for p in pinned:
            if p.name in seen:
                msg = f"two scale steps are named {p.name!r} in the payload"
                raise OutputError(msg)
            seen.add(p.name)
        unc = build_scale_uncertainty(names.uncertainty, sources, description=description)
        corrections += [*pinned, unc]
        compounds.append(
            build_compound(
                names.compound,
                [*pinned, unc],
                description=(
                    "Data energy scale: product of the steps "
                    + ", ".join(p.name for p in pinned)
                    + f" (pt updated between steps), then {unc.name} for the total uncertainty "
                    "(escale = S r, scale_up/down = S (1 +- r))"
                ),
            )
        )
    if smear is not None:
        corrections.append(build_smear_and_syst(names.smear, smear, unc, description=description))
    corrections.append(random_generator(seed, names.rng))
    return corrections, compounds
