"""Data/MC validation plots (pyval): corrected data against smeared MC, per plot category.

``zcalib validate`` draws, for every plot category (see :mod:`zcalib.validation.plotcats`),
the data with the derived scales applied against the MC with the derived smearings, with a
data/MC ratio pad, MC-statistics and correction-uncertainty bands and the χ²/ndf.

Where the numbers come from:

* **Histograms** (``--histograms``, seconds): a mass plot whose cuts are *expressible in
  cells* — every pair region (cell pair) of the histograms either passes the leading and
  subleading cuts whatever the Et order of its two leptons, or fails them — is the sum of
  its regions. Histograms filled with correction steps (``metadata["corrections"]``) are
  used as they are (``nominal`` is corrected). Otherwise the derived corrections are applied
  to the histograms with the fit's own template kernel (:class:`zcalib.fit.model.
  TemplateModel`): the data of region ``(i, j)`` are shifted by ``½ log(s_i s_j)`` in
  ``log m`` and the MC is smeared by ``s² = (σ_i² + σ_j²)/4`` (with the ``−s²`` mean of
  ``log(1 + σz)``). That needs corrections that are constant inside each cell (checked).
* **Events** (``--data/--mc`` or ``--datasets``): any other plot — other variables, cuts
  that split cells — is filled by :class:`ValidationProcessor`, a small coffea processor
  run by :func:`zcalib.runner.run_processor`. It subclasses :class:`~zcalib.processors.zee.
  ZeeProcessor` and reuses its lepton extraction, its correction steps (data scales with Et
  updated between steps, MC smearing with counter-based random numbers keyed on the event)
  and its pair selection, so the corrected values are exactly those of the derivation.

Variables: the derived, corrected quantities in :data:`DERIVED_VARIABLES`
(``invMass_ECAL_ele`` is the corrected pair mass) and any branch of the input tree, as
``name`` (both pair leptons for a per-lepton branch) or ``name[i]`` (slot ``i``). Input
branches are plotted as stored (uncorrected); the leading/subleading cuts always use the
corrected Et.

A plot category that selects no data or no MC is skipped with a warning (and listed in
``validation.json``); an unknown variable is an error naming the available ones.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import hist
import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from zcalib._atomic import atomic_write_bytes, atomic_write_text
from zcalib.categories import CRACK, CategoryScheme, region_pair
from zcalib.config import DatasetConfig, SelectionConfig
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import HistogramSet, MassBinning
from zcalib.io.formats import get_format
from zcalib.outputs import stamp
from zcalib.processors.validation import ValidationProcessor, _plot_hist
from zcalib.processors.zee import (
    CorrectionStep,
    WeightSpec,
)
from zcalib.validation.plotcats import LeptonCuts, PlotCategory

__all__ = [
    "DERIVED_VARIABLES",
    "MASS_ALIASES",
    "PlotInput",
    "PlotLabels",
    "PlotSpec",
    "ValidationProcessor",
    "ValidationResult",
    "Variable",
    "cms_style",
    "data_mc_summary",
    "expressible_regions",
    "fill_validation_histograms",
    "histogram_plot_inputs",
    "plot_data_mc",
    "resolve_variable",
    "run_validation",
    "save_figure",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Series = tuple[FloatArray, FloatArray]  # (Σw, Σw²) per bin

#: Derived (corrected) variables: name -> (axis label, default range).
DERIVED_VARIABLES: dict[str, tuple[str, tuple[float, float]]] = {
    "mass": (r"$m_{ee}$ [GeV]", (80.0, 100.0)),
    "pt_ee": (r"$p_{T}^{ee}$ [GeV]", (0.0, 100.0)),
    "y_ee": (r"$y_{ee}$", (-2.5, 2.5)),
    "et_lead": (r"Leading electron $E_{T}$ [GeV]", (20.0, 100.0)),
    "et_sublead": (r"Subleading electron $E_{T}$ [GeV]", (20.0, 80.0)),
    "eta_lead": (r"Leading electron $\eta_{SC}$", (-2.5, 2.5)),
    "eta_sublead": (r"Subleading electron $\eta_{SC}$", (-2.5, 2.5)),
    "r9_lead": (r"Leading electron $R_{9}$", (0.5, 1.05)),
    "r9_sublead": (r"Subleading electron $R_{9}$", (0.5, 1.05)),
    "phi_lead": (r"Leading electron $\phi$", (-math.pi, math.pi)),
    "phi_sublead": (r"Subleading electron $\phi$", (-math.pi, math.pi)),
    "energy_lead": (r"Leading electron energy [GeV]", (0.0, 300.0)),
    "energy_sublead": (r"Subleading electron energy [GeV]", (0.0, 300.0)),
}
#: Names of the corrected pair mass (pyval's ``invMass_ECAL_ele`` is recomputed, corrected).
MASS_ALIASES: tuple[str, ...] = ("invMass_ECAL_ele", "invMass", "m_ee")
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\[(\d+)\]$")
_DATA_VARIATIONS = ("nominal", "scale_up", "scale_down", "uncorrected")
_MC_VARIATIONS = ("nominal", "smear_up", "smear_down", "uncorrected")
_AUTO_RANGE_ENTRIES = 100_000


# ============================================================================ variables
@dataclass(frozen=True)
class Variable:
    """A plottable variable.

    Attributes:
        name: as written in the plot category.
        kind: ``derived`` (computed from corrected leptons) or ``branch`` (input branch).
        label: x-axis label.
        range: default x range.
        key: derived variable name, or the branch name.
        index: slot of a per-lepton branch (``None``: both pair leptons, or a scalar).
        integer: the values are integers (bins centred on them).
    """

    name: str
    kind: Literal["derived", "branch"]
    label: str
    range: tuple[float, float]
    key: str
    index: int | None = None
    integer: bool = False

    @property
    def is_mass(self) -> bool:
        """True for the corrected pair mass."""
        return self.kind == "derived" and self.key == "mass"


def available_variables(branches: Sequence[str] | None) -> list[str]:
    """Names accepted as plot variables: derived ones, mass aliases, then input branches."""
    names = [*MASS_ALIASES, *DERIVED_VARIABLES]
    if branches is not None:
        names += sorted(b for b in branches if b not in names)
    return names


def resolve_variable(
    name: str,
    branches: Sequence[str] | None,
    *,
    category: str = "?",
    source: str = "<memory>",
) -> Variable:
    """Turn a plot-category variable name into a :class:`Variable` (default range for branches
    is a placeholder until :func:`_auto_range` sets it).

    Args:
        name: the variable as written (``invMass_ECAL_ele``, ``et_lead``, ``R9Ele[0]``...).
        branches: branches of the input tree, ``None`` when only histograms are given.
        category: plot-category name (for messages).
        source: where the category was defined (for messages).

    Raises:
        InvalidConfig: unknown variable (the message lists the available ones), or a
            non-mass variable without ntuples.

    Example:
        >>> resolve_variable("invMass_ECAL_ele", None).key
        'mass'
    """
    if name in MASS_ALIASES or name == "mass":
        label, rng = DERIVED_VARIABLES["mass"]
        return Variable(name, "derived", label, rng, "mass")
    if name in DERIVED_VARIABLES:
        if branches is None:
            msg = _needs_events(name, category, source)
            raise InvalidConfig(msg)
        label, rng = DERIVED_VARIABLES[name]
        return Variable(name, "derived", label, rng, name)
    if branches is not None:
        m = _INDEXED.match(name)
        base, index = (m.group(1), int(m.group(2))) if m else (name, None)
        if base in branches:
            return Variable(name, "branch", name, (0.0, 1.0), base, index)
    if branches is None:
        msg = _needs_events(name, category, source)
        raise InvalidConfig(msg)
    msg = (
        f"{source}: plot category '{category}': unknown variable '{name}'; available: "
        f"{', '.join(available_variables(branches))} (input branches also as name[i] for "
        "slot i)"
    )
    raise InvalidConfig(msg)


def _needs_events(name: str, category: str, source: str) -> str:
    return (
        f"{source}: plot category '{category}': variable '{name}' cannot be made from "
        f"histograms (they hold the pair mass: {', '.join((*MASS_ALIASES, 'mass'))}); give the "
        "ntuples (--data/--mc or --datasets) to plot it"
    )


def _variable_edges(
    var: Variable, cat: PlotCategory, bins: int, fine_edges: FloatArray
) -> FloatArray:
    """Bin edges of a plot: sub-edges of the fine log-uniform mass axis for the mass (so
    histogram and event paths bin alike), uniform otherwise (integer-centred for integers)."""
    lo, hi = cat.range or var.range
    n = cat.bins or bins
    if var.is_mass:
        j_lo = int(np.argmin(np.abs(fine_edges - lo)))
        j_hi = int(np.argmin(np.abs(fine_edges - hi)))
        if j_hi - j_lo < 1:
            msg = (
                f"{cat.source}: plot '{cat.name}': mass range [{lo:g}, {hi:g}] holds no bin of "
                f"the mass axis [{fine_edges[0]:g}, {fine_edges[-1]:g}] GeV"
            )
            raise InvalidConfig(msg)
        rebin = max(1, round((j_hi - j_lo) / n))
        nb = max(1, (j_hi - j_lo) // rebin)
        out: FloatArray = np.asarray(fine_edges[j_lo : j_lo + nb * rebin + 1 : rebin], float)
        return out
    if var.integer:
        first, last = math.ceil(lo), math.floor(hi)
        n_int = last - first + 1
        if n_int <= n:
            return np.arange(first, last + 2, dtype=float) - 0.5
    return np.linspace(lo, hi, n + 1)


# ============================================================================ processor
@dataclass(frozen=True)
class PlotSpec:
    """What the processor fills for one plot category.

    Attributes:
        name: plot name.
        variable: the variable.
        lead: leading-lepton cuts.
        sublead: subleading-lepton cuts.
        edges: bin edges.
    """

    name: str
    variable: Variable
    lead: LeptonCuts
    sublead: LeptonCuts
    edges: tuple[float, ...]


def fill_validation_histograms(
    cfg: DatasetConfig,
    specs: Sequence[PlotSpec],
    *,
    options: Any = None,
    selection: SelectionConfig | None = None,
    corrections: Sequence[CorrectionStep] = (),
    weights: Sequence[WeightSpec] = (),
    smear_seed: int = 0,
) -> tuple[dict[str, hist.Hist[Any]], dict[str, int]]:
    """Run :class:`ValidationProcessor` over the datasets of ``cfg``.

    Args:
        cfg: dataset description.
        specs: the plots to fill.
        options: :class:`zcalib.runner.RunOptions` (default: iterative, no progress bar).
        selection: pair selection (default :class:`SelectionConfig()`).
        corrections: correction steps (data scales, MC smearings) applied per event.
        weights: MC weights (nominal values only).
        smear_seed: seed of the MC smearing random numbers (as in the derivation).

    Returns:
        ``({plot name: hist}, {dataset: selected pairs})``.

    Raises:
        InputError: bad input files, an MC weight whose input branch is missing, or bad
            values found while processing (unreadable chunks are skipped with a warning
            under ``options.skip_bad_files``).
    """
    from zcalib.runner import EventLoop, RunOptions

    loop = EventLoop(
        cfg,
        options=options or RunOptions(executor="iterative", progress=False),
        selection=selection or SelectionConfig(),
        weights=tuple(weights),
        corrections=tuple(corrections),
        smear_seed=smear_seed,
    )
    opts = loop.options
    run = loop.run(ValidationProcessor, plots=tuple(specs)).run
    out = run.out
    errors = set(out.get("errors", ()))
    if opts.skip_bad_files:
        for _, filename, start, stop, reason in sorted(out.get("failed", ())):
            log.warning("skipping unreadable chunk (skip_bad_files): %s entries %d-%d: %s",
                        filename, start, stop, reason)  # fmt: skip
            errors.discard(f"{filename} (entries {start}-{stop}): {reason}")
    if errors:
        ordered = sorted(errors)
        more = f" (and {len(ordered) - 1} more)" if len(ordered) > 1 else ""
        raise InputError(ordered[0] + more)
    hists = dict(out.get("hists", {}))
    for spec in specs:
        hists.setdefault(spec.name, _plot_hist(spec))
    return hists, dict(out.get("selected", {}))


# ============================================================================ inputs
def _input_branches(cfg: DatasetConfig) -> list[str]:
    """Branches (columns) present in the first file of every dataset."""
    common: set[str] | None = None
    for ds in cfg.datasets:
        path = ds.files[0]
        try:
            names = get_format(cfg.format).branch_names(path, cfg.tree_of(ds))
        except Exception as err:  # noqa: BLE001  (uproot/pyarrow raise many types)
            msg = f"{path}: cannot list the branches of dataset '{ds.name}' ({err})"
            raise InputError(msg) from None
        common = names if common is None else common & names
    return sorted(common or ())


def _auto_range(cfg: DatasetConfig, var: Variable) -> Variable:
    """Set the range of an input-branch variable from the first entries of the first file."""
    ds = next((d for d in cfg.datasets if d.kind == "data"), cfg.datasets[0])
    path = ds.files[0]
    try:
        form = get_format(cfg.format)
        arr = form.read(path, cfg.tree_of(ds), [var.key], _AUTO_RANGE_ENTRIES)[var.key]
    except Exception as err:  # noqa: BLE001
        msg = f"{path}: cannot read branch '{var.key}' ({err})"
        raise InputError(msg) from None
    if arr.ndim > 1:
        width = 2 if var.index is None else var.index + 1
        padded = ak.fill_none(ak.pad_none(arr, width, axis=1, clip=True), np.nan)
        cols = np.asarray(ak.to_numpy(padded), dtype=np.float64)
        values = cols[:, :2].ravel() if var.index is None else cols[:, var.index]
    else:
        values = np.asarray(ak.to_numpy(arr), dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Variable(var.name, var.kind, var.label, (0.0, 1.0), var.key, var.index)
    integer = bool(np.all(values == np.round(values)))
    if integer:
        lo, hi = float(values.min()), float(values.max())
        return Variable(
            var.name, var.kind, var.label, (lo, max(hi, lo)), var.key, var.index, integer=True
        )
    lo, hi = (float(x) for x in np.quantile(values, [0.005, 0.995]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return Variable(var.name, var.kind, var.label, (lo - pad, hi + pad), var.key, var.index)


# ============================================================================ histograms
def _cell_boxes(scheme: CategoryScheme) -> list[dict[str, tuple[float, float]]]:
    """|η|, signed η, R9 and Et ranges of each cell (intersection of its scale and smear
    category)."""
    boxes = []
    for cell in scheme.cells:
        a, b = scheme.scale[cell.scale], scheme.smear[cell.smear]
        box = {
            k: (max(a.cut(k)[0], b.cut(k)[0]), min(a.cut(k)[1], b.cut(k)[1]))
            for k in ("eta", "sceta", "r9", "et")
        }
        slo, shi = box["sceta"]  # the |η| a signed range covers
        far = max(abs(slo), abs(shi))
        near = 0.0 if slo < 0 < shi else min(abs(slo), abs(shi))
        box["eta"] = (max(box["eta"][0], near), min(box["eta"][1], far))
        boxes.append(box)
    return boxes


def _signed_spans(box: Mapping[str, tuple[float, float]]) -> list[tuple[float, float]]:
    """The signed-η intervals a cell covers inside the selection (|η| < 2.5): its |η| range
    on both sides, cut to its signed-η range."""
    lo, hi = max(box["eta"][0], 0.0), min(box["eta"][1], 2.5)
    slo, shi = box["sceta"]
    spans = [(max(-hi, slo), min(-lo, shi)), (max(lo, slo), min(hi, shi))]
    return [(a, b) for a, b in spans if a < b]


def _signed_relation(lo: float, hi: float, box: Mapping[str, tuple[float, float]]) -> bool | None:
    """A signed-η cut ``[lo, hi)`` against a cell: True (contains it), False (misses it),
    None (splits it); the crack, where no lepton is selected, is left out of the cell."""
    pieces = []
    for span in _signed_spans(box):
        a, b = span
        for ca, cb in ((-CRACK[1], -CRACK[0]), (CRACK[0], CRACK[1])):
            if a < ca and b > cb:  # the crack inside: two pieces
                pieces.append((a, ca))
                a = cb
            elif ca <= a < cb:
                a = cb
            elif ca < b <= cb:
                b = ca
        if a < b:
            pieces.append((a, b))
    if all(b <= lo or a >= hi for a, b in pieces):
        return False
    return True if all(lo <= a and b <= hi for a, b in pieces) else None


def _relation(cuts: LeptonCuts, box: Mapping[str, tuple[float, float]]) -> bool | None:
    """True: every lepton of the cell passes; False: none does; None: the cut splits it."""
    inside = True
    for name, (lo, hi) in cuts.ranges().items():
        if name == "sceta":
            if (lo, hi) == (-math.inf, math.inf):
                continue
            rel = _signed_relation(lo, hi, box)
            if rel is False:
                return False
            inside = inside and rel is True
            continue
        blo, bhi = box[name]
        if name == "eta":  # the selection keeps |η| < 2.5 outside the crack
            blo, bhi = max(blo, 0.0), min(bhi, 2.5)
        if blo >= hi or bhi <= lo:
            return False
        if name == "eta" and blo < CRACK[1] and bhi > CRACK[0]:
            # a cut ending inside the crack still contains the whole cell
            lo_ok = lo <= blo or (CRACK[0] <= lo <= CRACK[1] and blo >= CRACK[0])
            hi_ok = hi >= bhi or (CRACK[0] <= hi <= CRACK[1] and bhi <= CRACK[1])
            if not (lo_ok and hi_ok):
                inside = False
            continue
        if not (lo <= blo and bhi <= hi):
            inside = False
    return True if inside else None


def _and3(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def expressible_regions(
    cat: PlotCategory, scheme: CategoryScheme, regions: Sequence[int]
) -> list[int] | None:
    """The regions a plot category selects, or ``None`` if its cuts split some region.

    A region ``(i, j)`` is selected when both Et orderings agree that the pair passes
    (leading in ``i`` and subleading in ``j``, or the reverse); it is not expressible when a
    cut splits a cell or the two orderings disagree.

    Example:
        >>> from zcalib.generate import default_categories
        >>> from zcalib.validation.plotcats import PlotCategory, LeptonCuts
        >>> eb = LeptonCuts(eta=(0.0, 1.4442))
        >>> cat = PlotCategory("paper", "EBEB", "mass", lead=eb, sublead=eb)
        >>> len(expressible_regions(cat, default_categories(), range(64)))
        10
    """
    boxes = _cell_boxes(scheme)
    n = scheme.n_cells
    rel_lead = [_relation(cat.lead, b) for b in boxes]
    rel_sub = [_relation(cat.sublead, b) for b in boxes]
    out = []
    for code in regions:
        if code < 0:
            continue
        i, j = region_pair(int(code), n)
        if i >= n or j >= n:
            continue
        one = _and3(rel_lead[i], rel_sub[j])
        two = _and3(rel_lead[j], rel_sub[i])
        if one is None or two is None or one != two:
            return None
        if one:
            out.append(int(code))
    return out


def _cell_values(steps: Sequence[CorrectionStep], scheme: CategoryScheme, key: str) -> FloatArray:
    """Per-cell value of the scale (product over steps) or smearing (quadrature) for ``key``.

    Raises:
        InvalidConfig: a correction varies inside a cell (binned differently from the
            categories): the histogram path cannot apply it.
    """
    from zcalib.corrections.apply import evaluate_correction

    kind = "scale" if key.startswith("scale") else "smear"
    mine = [s for s in steps if s.kind == kind]
    out = np.ones(scheme.n_cells) if kind == "scale" else np.zeros(scheme.n_cells)
    if not mine:
        return out
    import correctionlib

    csets = {s.payload: correctionlib.CorrectionSet.from_string(s.payload) for s in mine}
    for c, box in enumerate(_cell_boxes(scheme)):
        cell = scheme.cells[c]
        cats = (scheme.scale[cell.scale], scheme.smear[cell.smear])
        run_lo = max(c_.run[0] for c_ in cats)
        run_hi = min(c_.run[1] for c_ in cats)
        gain = next((c_.gain for c_ in cats if c_.gain is not None), None)
        pts = _cell_points(box, (run_lo, run_hi), gain)
        total = np.ones(len(pts["pt"])) if kind == "scale" else np.zeros(len(pts["pt"]))
        for step in mine:
            arrays: dict[str, Any] = {**pts, "syst": key}
            try:
                v = evaluate_correction(csets[step.payload], step.name, arrays)
            except InputError as err:
                raise InvalidConfig(str(err)) from None
            total = total * v if kind == "scale" else total + v * v
        if np.ptp(total) > 1e-9 * max(1.0, float(np.abs(total).max())):
            msg = (
                f"{mine[0].source}: correction {', '.join(s.name for s in mine)} varies inside "
                f"cell {c} ({cats[0].label()} / {cats[1].label()}): from {total.min():.6g} to "
                f"{total.max():.6g}; the histograms cannot be corrected with it (give the "
                "ntuples with --data/--mc to apply it event by event)"
            )
            raise InvalidConfig(msg)
        out[c] = total[0] if kind == "scale" else math.sqrt(total[0])
    return out


def _cell_points(
    box: Mapping[str, tuple[float, float]], run: tuple[float, float], gain: int | None
) -> dict[str, Any]:
    """A grid of points inside a cell to evaluate (and check constancy of) a correction."""

    def three(lo: float, hi: float, clip: tuple[float, float]) -> list[float]:
        a, b = max(lo, clip[0]), min(hi, clip[1])
        if b <= a:
            return [a]
        eps = 1e-4 * (b - a)
        return [a + eps, 0.5 * (a + b), b - eps]

    signed = [
        x
        for a, b in _signed_spans(box)
        for x in three(a, b, (-2.5, 2.5))
        if not CRACK[0] < abs(x) < CRACK[1]
    ]
    eta_lo, eta_hi = box["eta"]
    etas = signed or [0.5 * (max(eta_lo, 0.0) + min(eta_hi, 2.5))]
    r9s = three(*box["r9"], (0.0, 1.2))
    ets = three(*box["et"], (20.0, 200.0))
    runs = (
        [int(run[0]), int((run[0] + run[1]) // 2), int(run[1] - 1)]
        if math.isfinite(run[0]) and math.isfinite(run[1])
        else [1]
    )
    gains = [gain] if gain is not None else [12, 6, 1]
    grid = np.array(np.meshgrid(etas, r9s, ets, runs, gains, indexing="ij"))
    e, r9, et, rn, g = (x.ravel() for x in grid)
    return {
        "AbsScEta": np.abs(e),
        "ScEta": e,
        "r9": r9,
        "pt": et,
        "run": rn.astype(np.int64),
        "seedGain": g.astype(np.int64),
    }


def _apply_kernel(
    fine: FloatArray, mu: FloatArray, s2: FloatArray, h: float, j_lo: int, n_out: int
) -> FloatArray:
    """Shift (``μ``) and smear (``s²``) per-region fine histograms in ``log m`` with the fit's
    exact template kernel; returns fine bins ``j_lo .. j_lo + n_out``."""
    from zcalib.fit.model import TemplateModel

    model = TemplateModel(
        template=np.maximum(fine, 0.0),
        variance=np.maximum(fine, 0.0),
        data=np.zeros((fine.shape[0], n_out)),
        h=h,
        j_lo=j_lo,
        rebin=1,
    )
    out: FloatArray = np.maximum(model.predict_fine(mu, s2), 0.0)  # FFT rounding: -1e-12
    return out


def _rebin(fine: FloatArray, k: int) -> FloatArray:
    n = fine.shape[-1] // k
    out: FloatArray = fine[..., : n * k].reshape(*fine.shape[:-1], n, k).sum(axis=-1)
    return out


def histogram_plot_inputs(
    hset: HistogramSet,
    plots: Sequence[tuple[PlotCategory, Variable, FloatArray]],
    corrections: Sequence[CorrectionStep] = (),
) -> list[PlotInput]:
    """Mass plots from per-region histograms, corrected when needed.

    Args:
        hset: the pair-mass histograms.
        plots: ``(category, variable, edges)`` of mass plots expressible in cells; ``edges``
            must be sub-edges of the fine mass axis.
        corrections: correction steps to apply analytically; ignored (with a warning) when
            the histograms were filled with corrections already.

    Returns:
        One :class:`PlotInput` per plot.

    Raises:
        InvalidConfig: corrections that vary inside a cell, or edges off the fine axis.
    """
    scheme = hset.scheme()
    fine_edges = hset.mass_edges
    filled_with = hset.metadata.get("corrections") or []
    analytic = bool(corrections) and not filled_with
    if corrections and filled_with:
        log.warning(
            "the histograms were filled with corrections %s already; --corrections is not "
            "applied again",
            ", ".join(c.get("name", "?") for c in filled_with),
        )
    if not corrections and not filled_with:
        log.warning("no corrections given: the plots show uncorrected data and unsmeared MC")
    regions = hset.region_arrays("data", "nominal")[0]
    n = scheme.n_cells
    h = float((np.log(fine_edges[-1]) - np.log(fine_edges[0])) / (len(fine_edges) - 1))

    def arrays(kind: str, variation: str) -> tuple[FloatArray, FloatArray]:
        _, w, w2 = hset.region_arrays(kind, variation)
        return w, w2

    per_var: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
    if analytic:
        i_cell, j_cell = (
            np.array([region_pair(int(c), n)[k] for c in regions], dtype=np.int64) for k in (0, 1)
        )
        raw_d, raw_d2 = arrays("data", "nominal")
        raw_m, raw_m2 = arrays("mc", "nominal")
        per_var[("data", "uncorrected")] = (raw_d, raw_d2)
        per_var[("mc", "uncorrected")] = (raw_m, raw_m2)
        full = (0, len(fine_edges) - 1)
        for key, variation in (
            ("scale", "nominal"),
            ("scale_up", "scale_up"),
            ("scale_down", "scale_down"),
        ):
            s = _cell_values(corrections, scheme, key)
            mu = 0.5 * (np.log(s[i_cell]) + np.log(s[j_cell]))
            zero = np.zeros_like(mu)
            per_var[("data", variation)] = (
                _apply_kernel(raw_d, mu, zero, h, *full),
                _apply_kernel(raw_d2, mu, zero, h, *full),
            )
        for key, variation in (
            ("smear", "nominal"),
            ("smear_up", "smear_up"),
            ("smear_down", "smear_down"),
        ):
            sig = _cell_values(corrections, scheme, key)
            s2 = 0.25 * (sig[i_cell] ** 2 + sig[j_cell] ** 2)
            per_var[("mc", variation)] = (
                _apply_kernel(raw_m, -s2, s2, h, *full),
                _apply_kernel(raw_m2, -s2, s2, h, *full),
            )
    else:
        for kind, names in (("data", _DATA_VARIATIONS), ("mc", _MC_VARIATIONS)):
            for v in names:
                if v in hset.variations:
                    per_var[(kind, v)] = arrays(kind, v)

    out = []
    for cat, var, edges in plots:
        selected = expressible_regions(cat, scheme, regions.tolist())
        if selected is None:  # pragma: no cover  (planned by the caller)
            msg = f"plot category '{cat.name}' is not expressible in the histogram cells"
            raise InvalidConfig(msg)
        rows = np.isin(regions, selected)
        j_lo = int(np.argmin(np.abs(fine_edges - edges[0])))
        k = int(np.argmin(np.abs(fine_edges - edges[1]))) - j_lo
        nb = len(edges) - 1
        if k < 1 or not np.allclose(fine_edges[j_lo : j_lo + nb * k + 1 : k], edges):
            msg = f"plot '{cat.name}': bin edges are not sub-edges of the histograms' mass axis"
            raise InvalidConfig(msg)
        data: dict[str, Series] = {}
        mc: dict[str, Series] = {}
        for (kind, v), (w, w2) in per_var.items():
            sl = slice(j_lo, j_lo + nb * k)
            series = (_rebin(w[rows][:, sl].sum(axis=0), k), _rebin(w2[rows][:, sl].sum(axis=0), k))
            (data if kind == "data" else mc)[v] = series
        out.append(
            PlotInput(
                category=cat,
                variable=var,
                edges=np.asarray(edges),
                data=data,
                mc=mc,
                source="histograms",
                corrected=bool(analytic or filled_with),
            )
        )
    return out


# ============================================================================ plotting
def cms_style() -> dict[str, Any]:
    """The mplhep CMS matplotlib style (for ``matplotlib.style.context``), with a calligraphic
    math font that exists everywhere (the style's ``cursive`` is rarely installed)."""
    import mplhep as hep

    return {**hep.style.CMS, "mathtext.cal": "sans"}


@dataclass(frozen=True)
class PlotLabels:
    """Texts on the plots (pyval ``--lumi-label``, ``--data-title``, ``--mc-title``).

    Attributes:
        lumi_label: right-hand label above the frame, e.g. ``59.7 fb$^{-1}$ (13 TeV) 2018``.
        data_title: legend entry of the data.
        mc_title: legend entry of the simulation.
        exp_text: text after "CMS" (e.g. ``Preliminary``).
    """

    lumi_label: str = "(13 TeV)"
    data_title: str = "Data"
    mc_title: str = "Simulation"
    exp_text: str = "Work in progress"


@dataclass(frozen=True)
class PlotInput:
    """The binned contents of one data/MC plot.

    Attributes:
        category: the plot category.
        variable: the variable drawn.
        edges: bin edges.
        data: ``{variation: (Σw, Σw²)}`` for data (``nominal`` = corrected).
        mc: ``{variation: (Σw, Σw²)}`` for MC (``nominal`` = smeared).
        source: ``histograms`` or ``events``.
        corrected: corrections were applied (``nominal`` differs from ``uncorrected``).
    """

    category: PlotCategory
    variable: Variable
    edges: FloatArray
    data: dict[str, Series]
    mc: dict[str, Series]
    source: str
    corrected: bool = True


def _norm(series: Series, total: float) -> Series:
    s = float(series[0].sum())
    f = total / s if s > 0 else 0.0
    return series[0] * f, series[1] * f * f


def _mean(edges: FloatArray, w: FloatArray) -> float:
    centres = 0.5 * (edges[1:] + edges[:-1])
    tot = float(w.sum())
    return float((centres * w).sum() / tot) if tot > 0 else math.nan


def data_mc_summary(inp: PlotInput) -> dict[str, Any]:
    """χ² (MC normalised to data in the plotted range), counts and means.

    ``χ² = Σ (d − m)² / (σ_d² + σ_m²)`` over bins where data or MC is non-zero, ``ndf`` =
    those bins − 1 (the normalisation).
    """
    d, d2 = inp.data.get("nominal", (np.zeros(len(inp.edges) - 1),) * 2)
    m, m2 = inp.mc.get("nominal", (np.zeros(len(inp.edges) - 1),) * 2)
    n_data, n_mc = float(d.sum()), float(m.sum())
    mn, mn2 = _norm((m, m2), n_data)
    use = (d > 0) | (mn > 0)
    var = d2 + mn2
    use &= var > 0
    chi2 = float((((d - mn) ** 2)[use] / var[use]).sum())
    ndf = int(use.sum()) - 1
    return {
        "chi2": chi2,
        "ndf": ndf,
        "chi2_ndf": chi2 / ndf if ndf > 0 else math.nan,
        "n_data": n_data,
        "n_mc": n_mc,
        "mean_data": _mean(inp.edges, d),
        "mean_mc": _mean(inp.edges, m),
    }


def _ratio_band(inp: PlotInput) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Data/MC ratio, its data error, and the relative MC-stat and correction bands."""
    d, d2 = inp.data["nominal"]
    total = float(d.sum())
    m, m2 = _norm(inp.mc["nominal"], total)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(m > 0, d / m, np.nan)
        rerr = np.where(m > 0, np.sqrt(d2) / m, np.nan)
        stat = np.where(m > 0, np.sqrt(m2) / m, 0.0)
        syst = np.zeros_like(m)
        for var_up, var_dn, src, ref in (
            ("smear_up", "smear_down", inp.mc, m),
            ("scale_up", "scale_down", inp.data, d),
        ):
            if var_up in src and var_dn in src:
                up = _norm(src[var_up], total)[0]
                dn = _norm(src[var_dn], total)[0]
                dev = np.maximum(np.abs(up - ref), np.abs(dn - ref))
                syst = np.hypot(syst, np.where(ref > 0, dev / ref, 0.0))
    return ratio, rerr, stat, syst


def plot_data_mc(inp: PlotInput, labels: PlotLabels | None = None) -> Figure:
    """Draw one data/MC comparison with a ratio pad (mplhep CMS style).

    Top: data points (corrected) with Poisson errors, MC (smeared) normalised to the data
    in the plotted range as a filled histogram with its statistical band; ``crosscheck``
    adds the uncorrected data and unsmeared MC. Bottom: data/MC with the MC-statistics band
    and, when variations are available, the correction-uncertainty band (scale up/down on
    data and smearing up/down on MC, in quadrature). χ²/ndf in the legend area.

    Args:
        inp: the binned contents.
        labels: lumi label, data and MC titles.

    Returns:
        The :class:`matplotlib.figure.Figure` (no pyplot state is touched).
    """
    import mplhep as hep
    from matplotlib import style as mstyle

    lab = labels or PlotLabels()
    cat = inp.category
    edges = inp.edges
    centres = 0.5 * (edges[1:] + edges[:-1])
    summary = data_mc_summary(inp)
    d, d2 = inp.data["nominal"]
    total = float(d.sum())
    m, m2 = _norm(inp.mc["nominal"], total)
    ratio, rerr, stat, syst = _ratio_band(inp)
    with mstyle.context(cms_style()):
        fig = Figure(figsize=(10, 10))
        gs = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.06)
        ax = fig.add_subplot(gs[0])
        rax = fig.add_subplot(gs[1], sharex=ax)
        mc_label = lab.mc_title + (" (smeared)" if inp.corrected else "")
        data_label = lab.data_title + (" (corrected)" if inp.corrected else "")
        hep.histplot(
            m,
            edges,
            ax=ax,
            histtype="fill",
            color="#5790fc",
            alpha=0.55,
            label=mc_label,
            flow="none",
        )
        hep.histplot(m, edges, ax=ax, histtype="step", color="#1f4e9c", linewidth=1.5, flow="none")
        ax.stairs(
            m + np.sqrt(m2),
            edges,
            baseline=m - np.sqrt(m2),
            fill=True,
            hatch="////",
            facecolor="none",
            edgecolor="#1f4e9c",
            linewidth=0,
            alpha=0.6,
            label="MC stat. unc.",
        )
        if cat.style == "crosscheck":
            if "uncorrected" in inp.mc:
                mu_, _ = _norm(inp.mc["uncorrected"], total)
                hep.histplot(
                    mu_,
                    edges,
                    ax=ax,
                    histtype="step",
                    color="#e42536",
                    linestyle="--",
                    linewidth=1.5,
                    label=f"{lab.mc_title} (unsmeared)",
                    flow="none",
                )
            if "uncorrected" in inp.data:
                du, du2 = inp.data["uncorrected"]
                ax.errorbar(
                    centres,
                    du,
                    yerr=np.sqrt(du2),
                    fmt="o",
                    mfc="white",
                    mec="0.45",
                    ecolor="0.45",
                    markersize=6,
                    label=f"{lab.data_title} (uncorrected)",
                )
        ax.errorbar(
            centres, d, yerr=np.sqrt(d2), fmt="o", color="black", markersize=6, label=data_label
        )
        widths = np.diff(edges)
        unit = " GeV" if "GeV" in inp.variable.label else ""
        if np.ptp(widths) <= 0.01 * widths.mean():
            ax.set_ylabel(f"Events / {widths.mean():.2g}{unit}")
        else:
            ax.set_ylabel(f"Events / bin (≈{np.median(widths):.2g}{unit})")
        ymax = float(max(d.max(initial=0.0), (m + np.sqrt(m2)).max(initial=0.0)))
        headroom = 1.75 if cat.style == "crosscheck" else 1.5
        ax.set_ylim(0, headroom * ymax if ymax > 0 else 1.0)
        handles, texts = ax.get_legend_handles_labels()
        first = [k for k, t in enumerate(texts) if t == data_label]
        order = first + [k for k in range(len(texts)) if k not in first]
        if syst.any():
            from matplotlib.patches import Patch

            handles.append(Patch(facecolor="#f89c20", alpha=0.45))
            texts.append(r"MC stat. $\oplus$ corr. unc. (ratio)")
            order.append(len(texts) - 1)
        ax.legend(
            [handles[k] for k in order],
            [texts[k] for k in order],
            loc="upper right",
            fontsize=17,
            frameon=False,
        )
        chi = (
            f"$\\chi^2$/ndf = {summary['chi2']:.1f}/{summary['ndf']}" if summary["ndf"] > 0 else ""
        )
        # the physics title, on short lines beside the legend
        title = cat.title().replace("both electrons ", "both electrons\n")
        info = title.replace(" × ", " ×\n").split("\n")
        if chi:
            info.append(chi)
        ax.text(
            0.04,
            0.95,
            "\n".join(info),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=17,
            linespacing=1.5,
        )
        # a long lumi label would run into the "CMS <text>" label: shrink it to fit
        base = float(mpl.rcParams["font.size"])
        chars = len(lab.lumi_label) + len(lab.exp_text) + 4
        shrink = min(1.0, 40.0 / chars)
        hep.cms.label(
            text=lab.exp_text,
            data=True,
            rlabel=lab.lumi_label,
            ax=ax,
            loc=0,
            fontsize=(base * 1.3, base, base / 1.1 * shrink, base / 1.3),
            scilocator_adjust=False,
        )
        ax.tick_params(labelbottom=False)
        ax.set_xlabel("")

        rax.axhline(1.0, color="0.3", linewidth=1, linestyle="--")
        tot_band = np.hypot(stat, syst)
        if syst.any():
            rax.stairs(
                1 + tot_band, edges, baseline=1 - tot_band, fill=True, color="#f89c20", alpha=0.45
            )
        rax.stairs(1 + stat, edges, baseline=1 - stat, fill=True, color="#5790fc", alpha=0.5)
        rax.errorbar(centres, ratio, yerr=rerr, fmt="o", color="black", markersize=5)
        ok = np.isfinite(ratio) & (d > 0)
        precise = ok & (rerr < 0.1 * np.where(ok, ratio, 1.0))
        finite = ratio[precise] if precise.sum() >= 3 else ratio[ok]
        spread = float(np.max(np.abs(finite - 1.0))) if finite.size else 0.1
        lim = next((x for x in (0.05, 0.1, 0.2, 0.5) if spread < 0.8 * x), 1.0)
        rax.set_ylim(1 - lim, 1 + lim)
        rax.set_ylabel("Data / MC")
        rax.set_xlabel(inp.variable.label)
        rax.set_xlim(edges[0], edges[-1])
        fig.align_ylabels([ax, rax])
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 100, tight: bool = True) -> Path:
    """Write a figure as PNG (or another format by suffix) atomically, drawn in the CMS
    style; returns the path."""
    from matplotlib import style as mstyle

    from zcalib.outputs import current_run_id

    p = Path(path)
    fmt = p.suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    with mstyle.context(cms_style()):  # text (mathtext fonts) is laid out at draw time
        fig.savefig(
            buf,
            format=fmt,
            dpi=dpi,
            bbox_inches="tight" if tight else None,
            metadata={"zcalib run": current_run_id()} if fmt == "png" else None,
        )
    return atomic_write_bytes(p, buf.getvalue())


# ============================================================================ orchestration
@dataclass(frozen=True)
class ValidationResult:
    """What :func:`run_validation` produced.

    Attributes:
        plots: per drawn plot: name, file, source, χ², counts (the ``validation.json``
            entries).
        skipped: plots skipped, with the reason.
        summary_path: the ``validation.json`` written.
        figures: the figures drawn, by plot name.
        scans: NLL-scan summary (when requested), else ``None``.
    """

    plots: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    summary_path: Path
    figures: dict[str, Figure] = field(default_factory=dict, repr=False)
    scans: dict[str, Any] | None = None


def _plan(
    plots: Sequence[PlotCategory],
    hset: HistogramSet | None,
    cfg: DatasetConfig | None,
) -> tuple[list[tuple[PlotCategory, Variable]], list[tuple[PlotCategory, Variable]]]:
    """Split plot categories into histogram-made and event-made ones (set-up checks)."""
    branches = _input_branches(cfg) if cfg is not None else None
    from_hist: list[tuple[PlotCategory, Variable]] = []
    from_events: list[tuple[PlotCategory, Variable]] = []
    regions: list[int] = []
    scheme = None
    if hset is not None:
        scheme = hset.scheme()
        regions = hset.regions
    not_expressible = []
    for cat in plots:
        var = resolve_variable(cat.variable, branches, category=cat.name, source=cat.source)
        if var.kind == "branch" and cfg is not None:
            var = _auto_range(cfg, var)
        if (
            var.is_mass
            and scheme is not None
            and expressible_regions(cat, scheme, regions) is not None
        ):
            from_hist.append((cat, var))
        elif cfg is not None:
            from_events.append((cat, var))
        else:
            not_expressible.append(cat)
    if not_expressible:
        names = ", ".join(f"'{c.name}' ({c.source})" for c in not_expressible)
        msg = (
            f"plot categories {names} cut across the histogram cells (a cut splits a cell, or "
            "the leading and subleading cuts differ on cells a pair can swap): give the "
            "ntuples (--data/--mc or --datasets) to fill them event by event"
        )
        raise InvalidConfig(msg)
    return from_hist, from_events


def _event_inputs(
    hists: Mapping[str, hist.Hist[Any]],
    kinds: Mapping[str, str],
    plans: Sequence[tuple[PlotCategory, Variable, FloatArray]],
    corrected: bool,
) -> list[PlotInput]:
    out = []
    for cat, var, edges in plans:
        h = hists[cat.name]
        data: dict[str, Series] = {}
        mc: dict[str, Series] = {}
        datasets = list(h.axes["dataset"])
        variations = list(h.axes["variation"])
        view: Any = h.view(flow=False)
        for kind, target in (("data", data), ("mc", mc)):
            for v in variations:
                vi = h.axes["variation"].index(v)
                w = np.zeros(len(edges) - 1)
                w2 = np.zeros(len(edges) - 1)
                found = False
                for ds in datasets:
                    if kinds.get(ds) != kind:
                        continue
                    block = view[h.axes["dataset"].index(ds), vi]
                    w += block["value"]
                    w2 += block["variance"]
                    found = True
                if found:
                    target[v] = (w, w2)
        out.append(
            PlotInput(
                category=cat,
                variable=var,
                edges=np.asarray(edges),
                data=data,
                mc=mc,
                source="events",
                corrected=corrected,
            )
        )
    return out


def run_validation(
    plots: Sequence[PlotCategory],
    out_dir: str | Path,
    *,
    histograms: HistogramSet | None = None,
    datasets: DatasetConfig | None = None,
    corrections: Sequence[CorrectionStep] = (),
    weights: Sequence[WeightSpec] = (),
    labels: PlotLabels | None = None,
    binning: int = 40,
    selection: SelectionConfig | None = None,
    options: Any = None,
    smear_seed: int | None = None,
    scan: bool = False,
    fit_config: Any = None,
    keep_figures: bool = False,
) -> ValidationResult:
    """Make every validation plot and write PNGs plus ``validation.json`` into ``out_dir``.

    Args:
        plots: the plot categories.
        out_dir: output folder (``<name>.png`` per plot, ``validation.json``).
        histograms: pair-mass histograms (mass plots expressible in cells come from them).
        datasets: ntuples (every other plot is filled from them).
        corrections: correction steps (``load_correction_steps``): data scales, MC smearings.
        weights: MC weights (e.g. pile-up), nominal values.
        labels: texts on the plots.
        binning: default number of bins (pyval ``--binning``).
        selection: pair selection for the event path.
        options: :class:`zcalib.runner.RunOptions` for the event path.
        smear_seed: MC smearing seed (use the derivation's; default: the one the
            ``histograms`` were filled with, else 0).
        scan: also write NLL scans of the fit to ``out_dir/scans`` (needs ``histograms``).
        fit_config: :class:`zcalib.fit.FitConfig` of the scans' fit.
        keep_figures: return the figures (tests); otherwise they are dropped once saved.

    Returns:
        The :class:`ValidationResult`.

    Raises:
        InvalidConfig: no input, bad binning, unknown variables, plots that need ntuples.
        InputError: unreadable inputs.
    """
    if histograms is None and datasets is None:
        msg = "nothing to plot from: give histograms (--histograms) and/or ntuples (--data/--mc)"
        raise InvalidConfig(msg)
    if binning < 1:
        msg = f"--binning must be >= 1, got {binning}"
        raise InvalidConfig(msg)
    if scan and histograms is None:
        msg = "NLL scans need the histograms (--histograms)"
        raise InvalidConfig(msg)
    if smear_seed is None:
        smear_seed = histograms.smear_seed if histograms is not None else 0
    out = Path(out_dir)
    from_hist, from_events = _plan(plots, histograms, datasets)
    fine = (
        histograms.mass_edges if histograms is not None else np.asarray(MassBinning().axis().edges)
    )
    hist_plans = [(c, v, _variable_edges(v, c, binning, fine)) for c, v in from_hist]
    event_plans = [(c, v, _variable_edges(v, c, binning, fine)) for c, v in from_events]

    inputs: list[PlotInput] = []
    if hist_plans:
        assert histograms is not None
        inputs += histogram_plot_inputs(histograms, hist_plans, corrections)
    if event_plans:
        assert datasets is not None
        specs = [
            PlotSpec(c.name, v, c.lead, c.sublead, tuple(float(x) for x in e))
            for c, v, e in event_plans
        ]
        log.info("filling %d plot(s) from the ntuples", len(specs))
        hists, _ = fill_validation_histograms(
            datasets,
            specs,
            options=options,
            selection=selection,
            corrections=corrections,
            weights=weights,
            smear_seed=smear_seed,
        )
        inputs += _event_inputs(hists, datasets.kinds(), event_plans, bool(corrections))
    order = {c.name: k for k, c in enumerate(plots)}
    inputs.sort(key=lambda i: order[i.category.name])

    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    figures: dict[str, Figure] = {}
    for inp in inputs:
        cat = inp.category
        n_data = float(inp.data.get("nominal", (np.zeros(1),))[0].sum())
        n_mc = float(inp.mc.get("nominal", (np.zeros(1),))[0].sum())
        if n_data <= 0 or n_mc <= 0:
            reason = (
                f"no events selected in [{inp.edges[0]:g}, {inp.edges[-1]:g}] "
                f"(data {n_data:g}, MC {n_mc:g})"
            )
            log.warning("plot category '%s' (%s): %s; skipped", cat.name, cat.source, reason)
            skipped.append({"name": cat.name, "reason": reason, "source": cat.source})
            continue
        fig = plot_data_mc(inp, labels)
        path = save_figure(fig, out / f"{cat.name}.png")
        if keep_figures:
            figures[cat.name] = fig
        rec = {
            **cat.to_dict(),
            **data_mc_summary(inp),
            "file": path.name,
            "source": inp.source,
            "corrected": inp.corrected,
            "bins": len(inp.edges) - 1,
            "range": [float(inp.edges[0]), float(inp.edges[-1])],
        }
        records.append(rec)
        log.debug("plot %s: chi2/ndf = %.1f/%d (%s)", cat.name, rec["chi2"], rec["ndf"], inp.source)

    scans_summary = None
    if scan:
        from zcalib.validation.scans import run_scans

        assert histograms is not None
        scans_summary = run_scans(
            histograms, out / "scans", config=fit_config, keep_figures=False
        ).summary
    lab = labels or PlotLabels()
    summary = {
        "schema_version": 1,
        "kind": "zcalib-validation",
        "labels": {
            "lumi_label": lab.lumi_label,
            "data_title": lab.data_title,
            "mc_title": lab.mc_title,
        },
        "binning": binning,
        "corrections": [{"name": s.name, "kind": s.kind, "source": s.source} for s in corrections],
        "plots": [_clean(r) for r in records],
        "skipped": skipped,
    }
    summary_path = atomic_write_text(out / "validation.json", json.dumps(stamp(summary), indent=2))
    return ValidationResult(
        plots=records,
        skipped=skipped,
        summary_path=summary_path,
        figures=figures,
        scans=scans_summary,
    )


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become ``None``."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ============================================================================ titles, summary
#: How each category variable is shown, and the bounds that mean "no cut" on that side.
_TITLE_VARS: tuple[tuple[str, str, float, float], ...] = (
    ("abs_eta", "|η|", 0.0, 5.0),
    ("r9", "R9", 0.0, 1.5),
    ("et", "$E_T$", 0.0, 10_000.0),
    ("run", "runs", 0.0, 1e9),
)


def _num_title(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".")


def category_title(bins: Mapping[str, Any]) -> str:
    """A physics title of a category from its bins (as in ``fit_result.json``).

    Example:
        >>> category_title({"abs_eta": [0.0, 1.0], "r9": [0.96, 10.0]})
        '|η| < 1, R9 > 0.96'
        >>> category_title({"abs_eta": [1.566, 2.0], "et": [20.0, 35.0], "gain": 12})
        '|η| 1.566–2, $E_T$ 20–35 GeV, gain 12'
        >>> category_title({})
        'all electrons'
    """
    parts = []
    for key, shown, low, high in _TITLE_VARS:
        rng = bins.get(key) or bins.get("eta" if key == "abs_eta" else key)
        if not rng:
            continue
        lo, hi = rng
        lo_open = lo is None or lo <= low
        hi_open = hi is None or hi >= high
        unit = " GeV" if key == "et" else ""
        if lo_open and hi_open:
            continue
        if key == "run":
            parts.append(f"runs {int(lo)}–{int(hi)}" if not lo_open and not hi_open else "runs")
        elif lo_open:
            parts.append(f"{shown} < {_num_title(hi)}{unit}")
        elif hi_open:
            parts.append(f"{shown} > {_num_title(lo)}{unit}")
        else:
            parts.append(f"{shown} {_num_title(lo)}–{_num_title(hi)}{unit}")
    if bins.get("gain") is not None:
        parts.append(f"gain {bins['gain']}")
    return ", ".join(parts) or "all electrons"


def categories_title(*cats: Any) -> str:
    """The physics title of the intersection of categories (e.g. a cell: its scale and
    smear category).

    Example:
        >>> from zcalib.categories import Category
        >>> categories_title(Category("scale", 0, eta=(0.0, 1.0)),
        ...                  Category("smear", 0, eta=(0.0, 1.4442), r9=(0.96, float("inf"))))
        '|η| < 1, R9 > 0.96'
    """
    bins: dict[str, Any] = {}
    for c in cats:
        for name, (lo, hi) in c.ranges().items():
            key = "abs_eta" if name == "eta" else name
            old = bins.get(key, [None, None])
            new_lo = None if math.isinf(lo) else lo
            new_hi = None if math.isinf(hi) else (hi - 1 if name == "run" else hi)
            bins[key] = [
                new_lo if old[0] is None else old[0] if new_lo is None else max(old[0], new_lo),
                new_hi if old[1] is None else old[1] if new_hi is None else min(old[1], new_hi),
            ]
        if c.gain is not None:
            bins["gain"] = c.gain
    return category_title(bins)


def plot_category_summary(record: Mapping[str, Any], *, title: str = "") -> Figure:
    """Scales (data) and smearings (MC) per category with their errors, from a
    ``fit_result.json`` record: one row per category, labelled with its physics title.

    The error bars are the total uncertainty (``total``, else stat ⊕ MC stat); categories
    held fixed or ignored are drawn hollow.
    """
    from matplotlib import style as mstyle

    cats = [c for c in record.get("categories", []) or [] if c.get("value") is not None]
    kinds = [
        (k, [c for c in cats if c.get("type", c.get("kind")) == k]) for k in ("scale", "smear")
    ]
    kinds = [(k, cs) for k, cs in kinds if cs]
    n = max((len(cs) for _, cs in kinds), default=1)
    with mstyle.context(cms_style()):
        fig = Figure(figsize=(7.0 * max(len(kinds), 1), 1.2 + 0.42 * n), layout="constrained")
        axes = fig.subplots(1, max(len(kinds), 1), squeeze=False)[0]
        for ax, (kind, cs) in zip(axes, kinds, strict=False):
            y = np.arange(len(cs))[::-1]
            vals = np.array([float(c["value"]) for c in cs])
            errs = np.array(
                [float(c.get("total") or c.get("total_stat") or 0.0) for c in cs], dtype=float
            )
            fitted = np.array([c.get("state", "fitted") == "fitted" for c in cs])
            for sel, face in ((fitted, "black"), (~fitted, "white")):
                if sel.any():
                    ax.errorbar(
                        vals[sel],
                        y[sel],
                        xerr=errs[sel],
                        fmt="o",
                        ms=5,
                        color="black",
                        mfc=face,
                        capsize=2,
                    )
            ax.axvline(1.0 if kind == "scale" else 0.0, color="grey", ls=":", lw=1)
            ax.set_yticks(y, [category_title(c.get("bins", {})) for c in cs], fontsize=11)
            ax.tick_params(axis="x", labelsize=11)
            ax.set_xlabel("scale (data)" if kind == "scale" else "smearing (MC)", fontsize=13)
            ax.set_ylim(-0.7, len(cs) - 0.3)
        if title:
            fig.suptitle(title, fontsize=13)
    return fig
