"""A HistFactory (pyhf) workspace of the pair-mass histograms, built with cabinetry.

One channel per selected pair region (default: the same-cell regions ``(i, i)``), coarse
bins in a mass window (default 1 GeV in 80-100 GeV, snapped to the fine-bin edges so data
counts stay exact). Samples:

* ``Data`` — the data histogram (variation ``data_variation``, normally ``nominal``:
  corrected data; ``uncorrected`` for the comparison before correction);
* ``MC`` — the MC template (variation ``mc_variation``), normalised to the data yield of
  the region, with

  - a free normalisation ``norm_<region>`` per region (NormFactor, bounds ``[0, 5]``),
  - MC statistical uncertainties (cabinetry's automatic ``staterror``),
  - one shape nuisance ``scale_<k>`` per scale category and ``smear_<l>`` per smear
    category touched by the region (cabinetry ``NormPlusShape``; the templates are
    normalised to the nominal yield, so only the shape part acts).

**How the scale/smear templates are built (the choice, and why).** The processor's
variation axis holds ``scale_up/scale_down`` for *data* (the data moved by ±escale) and
``smear_up/smear_down`` for MC (MC smeared with ``smear ± esmear``), but only when
correction steps were applied, and with all categories moved together. A HistFactory
``histosys`` acts on the *MC* template, and the comparison before correction has no such
variations at all. So both templates are built from the nominal MC with the fit's own exact
shift ⊗ Gaussian kernel (:func:`zcalib.fit.model.kernel_terms`), per category, with the
**same steps the processor variations use**: ``escale_k`` and ``esmear_l`` of the correction
payload (:func:`steps_from_corrections`; fixed fallback steps otherwise):

* ``scale_k`` up/down: the MC template shifted by ``±½·n_k·log(1 + ε_k)`` in log mass, with
  ``n_k`` the number of legs of the region in scale category ``k`` — the MC-side image of the
  data ``scale_up/scale_down`` variation. ``θ > 0``: the data with a lepton in ``k`` sit
  higher than MC by ``θ·ε_k`` per lepton (the scale of ``k`` is too large by that fraction).
* ``smear_l`` up: the MC template with the extra pair log-mass variance
  ``¼·n_l·((σ_l + e_l)² − σ_l²)`` (``σ_l`` = smearing already applied to the MC template, 0
  for uncorrected MC) — the image of MC ``smear_up``; down: symmetrised
  (``2·nominal − up``), since a convolution cannot narrow a template.

A pull of ``θ`` is therefore "``θ`` times the calibration uncertainty of the derivation":
after correction the pulls must be compatible with 0, before correction they are not.

Template histograms are handed to cabinetry in memory through
:class:`cabinetry.route.Router` template builders (as in the AGC pipeline); cabinetry writes
its intermediate ``.npz`` files into a temporary folder.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from zcalib.categories import Category, CategoryScheme, region_pair
from zcalib.exceptions import FitError, InputError, InvalidConfig
from zcalib.histograms import HistogramSet

__all__ = [
    "NuisanceSteps",
    "RegionTemplates",
    "StatsConfig",
    "StatsModel",
    "build_model",
    "build_templates",
    "cabinetry_config",
    "default_steps",
    "parse_regions",
    "shift_smear",
    "steps_from_corrections",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
RegionSelection = Literal["diagonal", "all"]


def parse_regions(text: str, where: str = "regions") -> RegionSelection | tuple[int, ...]:
    """A region selection written as text: ``diagonal``, ``all`` or comma-separated region
    codes (e.g. ``"0,9,18"``), as :attr:`StatsConfig.regions` takes it.

    Example:
        >>> parse_regions("0, 9,18")
        (0, 9, 18)

    Raises:
        InvalidConfig: anything else (the message names ``where`` and the value).
    """
    if text in ("diagonal", "all"):
        return text  # type: ignore[return-value]
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        msg = f"{where} {text!r}: allowed: 'diagonal', 'all' or comma-separated region codes"
        raise InvalidConfig(msg) from None


#: kernel truncation in Gaussian widths (as the fit)
_N_SIGMA = 8.0


@dataclass(frozen=True)
class StatsConfig:
    """Settings of the cabinetry/pyhf validation (immutable; see :meth:`with_overrides`).

    Attributes:
        window: mass window ``(lo, hi)`` in GeV.
        bin_width: coarse bin width in GeV (edges snapped to the fine-bin edges).
        regions: ``"diagonal"`` (same-cell regions ``(i, i)``), ``"all"``, or explicit
            region codes.
        min_data: regions with less data in the window are left out (reported).
        min_mc: regions with fewer effective MC entries ``(Σw)²/Σw²`` are left out.
        data_variation: data variation to fit (``nominal`` = corrected when the
            histograms were filled with correction steps; ``uncorrected``).
        mc_variation: MC variation used as the template.
        scale_step: relative scale step of every ``scale_k`` nuisance when no correction
            payload gives ``escale`` (pulls are in units of this step).
        smear_step: smearing step of every ``smear_l`` nuisance without a payload.
        nuisance_bound: the scale/smear nuisances are bounded to ``±nuisance_bound``.
        norm_bounds: bounds of the per-region normalisations.
        mc_floor: MC template bins below this fraction of the region's mean bin content are
            raised to it (empty or net-negative bins would make the Poisson rate invalid).
        strategy: Minuit strategy of the fit (0 is fast and enough here; 1 or 2 refine).
        pull_max: ``compatible`` needs every ``|pull|`` below this.
        gof_min: ``compatible`` needs the goodness-of-fit p-value above this.
    """

    window: tuple[float, float] = (80.0, 100.0)
    bin_width: float = 1.0
    regions: RegionSelection | tuple[int, ...] = "diagonal"
    min_data: float = 100.0
    min_mc: float = 200.0
    data_variation: str = "nominal"
    mc_variation: str = "nominal"
    scale_step: float = 0.001
    smear_step: float = 0.002
    nuisance_bound: float = 5.0
    norm_bounds: tuple[float, float] = (0.0, 5.0)
    mc_floor: float = 1e-3
    strategy: Literal[0, 1, 2] = 0
    pull_max: float = 3.0
    gof_min: float = 0.01

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: str) -> None:
            msg = f"stats config: field '{name}' is {value!r}; {allowed}"
            raise InvalidConfig(msg)

        object.__setattr__(self, "window", tuple(float(x) for x in self.window))
        object.__setattr__(self, "norm_bounds", tuple(float(x) for x in self.norm_bounds))
        lo, hi = self.window
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            bad("window", self.window, "expected two finite masses 0 < lo < hi [GeV]")
        if not (math.isfinite(self.bin_width) and 0 < self.bin_width <= hi - lo):
            bad("bin_width", self.bin_width, "expected a positive width <= the window [GeV]")
        if isinstance(self.regions, str):
            if self.regions not in ("diagonal", "all"):
                bad("regions", self.regions, "allowed: 'diagonal', 'all' or a list of codes")
        else:
            codes = tuple(int(c) for c in self.regions)
            if not codes or any(c < 0 for c in codes):
                bad("regions", self.regions, "expected a non-empty list of region codes >= 0")
            object.__setattr__(self, "regions", codes)
        for name in ("scale_step", "smear_step", "nuisance_bound", "mc_floor", "pull_max"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                bad(name, v, "expected a positive number")
        for name in ("min_data", "min_mc"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, v, "expected a number >= 0")
        nlo, nhi = self.norm_bounds
        if not (0 <= nlo < 1 < nhi):
            bad("norm_bounds", self.norm_bounds, "expected 0 <= lo < 1 < hi")
        if self.strategy not in (0, 1, 2):
            bad("strategy", self.strategy, "allowed: 0, 1, 2")
        if not 0 <= self.gof_min < 1:
            bad("gof_min", self.gof_min, "expected a p-value threshold in [0, 1)")

    def with_overrides(self, **changes: Any) -> StatsConfig:
        """A modified copy (validated again).

        Example:
            >>> StatsConfig().with_overrides(data_variation="uncorrected").data_variation
            'uncorrected'
        """
        import dataclasses

        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields."""
        import dataclasses

        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class NuisanceSteps:
    """Steps of the scale and smear nuisances, per category.

    Attributes:
        scale: relative scale step ``ε_k`` per scale category (``escale_k / scale_k``).
        smear: smearing step ``e_l`` per smear category (``esmear_l``).
        smear_base: smearing ``σ_l`` already applied to the MC template (0 if none).
        source: where the steps come from (payload path, or ``"fixed"``).
    """

    scale: tuple[float, ...]
    smear: tuple[float, ...]
    smear_base: tuple[float, ...]
    source: str = "fixed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "source": self.source,
            "scale": list(self.scale),
            "smear": list(self.smear),
            "smear_base": list(self.smear_base),
        }


def default_steps(scheme: CategoryScheme, config: StatsConfig | None = None) -> NuisanceSteps:
    """Fixed steps (``config.scale_step`` / ``config.smear_step``) for every category."""
    cfg = config or StatsConfig()
    return NuisanceSteps(
        scale=(cfg.scale_step,) * len(scheme.scale),
        smear=(cfg.smear_step,) * len(scheme.smear),
        smear_base=(0.0,) * len(scheme.smear),
        source="fixed",
    )


def _representative(cat: Category) -> dict[str, Any]:
    """One point inside a category (to evaluate a binned correction there)."""

    def mid(rng: tuple[float, float], default: float) -> float:
        lo, hi = rng
        if math.isinf(lo) and math.isinf(hi):
            return default
        if math.isinf(hi):
            return lo + 1.0
        if math.isinf(lo):
            return hi - 1.0 if hi > 1.0 else 0.5 * hi
        return 0.5 * (lo + hi)

    eta = mid(cat.eta, 0.5)
    run = cat.run[0] if math.isfinite(cat.run[0]) else 1.0
    return {
        "run": np.array([float(run)]),
        "AbsScEta": np.array([eta]),
        "ScEta": np.array([eta]),
        "r9": np.array([mid(cat.r9, 0.95)]),
        "pt": np.array([mid(cat.et, 40.0)]),
        "seedGain": np.array([float(cat.gain or 12)]),
    }


def steps_from_corrections(
    path: str | Path, scheme: CategoryScheme, *, smeared_mc: bool
) -> NuisanceSteps:
    """Nuisance steps from a correction payload: ``escale/scale`` and ``esmear`` per category.

    Args:
        path: correctionlib JSON with one scale and one smear correction (a derivation's
            ``corrections.json``).
        scheme: the category scheme of the histograms (one value per category is read at a
            point inside the category).
        smeared_mc: the MC template was smeared with this payload (then ``σ_l`` is the
            payload's ``smear``; otherwise 0).

    Raises:
        InputError: unreadable payload, not exactly one scale and one smear correction.
    """
    from zcalib.corrections.apply import evaluate_correction, load_correction_set

    p = Path(path)
    cset, _ = load_correction_set(p)
    names: dict[str, list[str]] = {"scale": [], "smear": []}
    from correctionlib import schemav2

    try:
        model = schemav2.CorrectionSet.model_validate_json(_read_text(p))
    except Exception as err:  # noqa: BLE001  (pydantic/json errors)
        msg = f"{p}: not a valid correctionlib file ({err.__class__.__name__})"
        raise InputError(msg) from None
    # a zcalib (EGM-layout) payload: the data scale is its compound (its steps are pinned at
    # nominal, the compound's escale is the total uncertainty)
    compounds = [c.name for c in model.compound_corrections or ()]
    for corr in model.corrections:
        if corr.output.name in names and not (compounds and corr.output.name == "scale"):
            names[corr.output.name].append(corr.name)
    if compounds:
        names["scale"] = compounds
    for kind, found in names.items():
        if len(found) != 1:
            msg = (
                f"{p}: expected exactly one correction with output '{kind}' to take the "
                f"nuisance steps from, found {found or 'none'}"
            )
            raise InputError(msg)

    def values(kind: str, cats: Sequence[Category], key: str) -> tuple[float, ...]:
        out = []
        for cat in cats:
            arrays: dict[str, Any] = {**_representative(cat), "syst": key}
            out.append(float(evaluate_correction(cset, names[kind][0], arrays)[0]))
        return tuple(out)

    scale = values("scale", scheme.scale, "scale")
    escale = values("scale", scheme.scale, "escale")
    smear = values("smear", scheme.smear, "smear")
    esmear = values("smear", scheme.smear, "esmear")
    rel = tuple(e / s if s > 0 else 0.0 for e, s in zip(escale, scale, strict=True))
    for kind, steps in (("escale", rel), ("esmear", esmear)):
        if not all(math.isfinite(x) and x > 0 for x in steps):
            msg = (
                f"{p}: '{kind}' must be positive for every category to define the nuisance "
                f"steps; got {[round(x, 6) for x in steps]}"
            )
            raise InputError(msg)
    return NuisanceSteps(
        scale=rel,
        smear=esmear,
        smear_base=smear if smeared_mc else (0.0,) * len(smear),
        source=str(p),
    )


def _read_text(p: Path) -> str:
    if p.suffix == ".gz":
        import gzip

        return gzip.decompress(p.read_bytes()).decode()
    return p.read_text()


# ------------------------------------------------------------------------- templates
def shift_smear(template: FloatArray, h: float, mu: float, s2: float) -> FloatArray:
    """Shift a fine template (uniform in log m, bin width ``h``) by ``mu`` and smear it by a
    Gaussian of variance ``s2`` (log-mass units), with the fit's exact bin-integrated kernel.

    Content leaving the histogram range is lost (the window lies well inside it).

    Example:
        >>> import numpy as np
        >>> shift_smear(np.array([0.0, 4.0, 0.0, 0.0]), 1.0, 0.25, 0.0).tolist()
        [0.0, 3.0, 1.0, 0.0]
    """
    from zcalib.fit.model import kernel_support, kernel_terms

    mus = np.array([mu], dtype=np.float64)
    s2s = np.array([max(s2, 0.0)], dtype=np.float64)
    dmin, width = kernel_support(mus, s2s, h, _N_SIGMA, quantum=1)
    kern = kernel_terms(mus, s2s, h, dmin, width).k[0]
    full = np.convolve(np.asarray(template, dtype=np.float64), kern)
    # out[j] = Σ_d K(d) t[j - d], d = dmin + index in kern  →  full[j - dmin]
    idx = np.arange(len(template)) - dmin
    ok = (idx >= 0) & (idx < len(full))
    out = np.zeros(len(template))
    out[ok] = full[idx[ok]]
    return out


@dataclass(frozen=True)
class RegionTemplates:
    """The coarse histograms of one channel.

    Attributes:
        name: channel name (``region_<i>_<j>``).
        code: region code.
        cells: the cell pair ``(i, j)``.
        edges: coarse bin edges [GeV].
        data: data counts per coarse bin.
        mc: MC template (normalised to the data yield) per coarse bin.
        mc_stdev: its statistical uncertainty per bin.
        variations: ``{nuisance: (up, down or None)}`` (``None``: symmetrised).
        n_data: data in the window.
        n_mc_eff: effective MC entries in the window.
        mc_scale: factor applied to the MC to normalise it to data.
        floored_bins: MC bins raised to the floor.
    """

    name: str
    code: int
    cells: tuple[int, int]
    edges: FloatArray
    data: FloatArray
    mc: FloatArray
    mc_stdev: FloatArray
    variations: dict[str, tuple[FloatArray, FloatArray | None]] = field(default_factory=dict)
    n_data: float = 0.0
    n_mc_eff: float = 0.0
    mc_scale: float = 1.0
    floored_bins: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary (no arrays except the edges)."""
        return {
            "name": self.name,
            "code": self.code,
            "cells": list(self.cells),
            "n_data": self.n_data,
            "n_mc_eff": self.n_mc_eff,
            "mc_scale": self.mc_scale,
            "n_bins": len(self.data),
            "floored_bins": self.floored_bins,
            "nuisances": sorted(self.variations),
        }


def _coarse_indices(fine_edges: FloatArray, config: StatsConfig) -> NDArray[np.int64]:
    """Fine-edge indices of the coarse edges (snapped to the nearest fine edge)."""
    lo, hi = config.window
    if lo < fine_edges[0] or hi > fine_edges[-1]:
        msg = (
            f"stats config: window {config.window} is outside the histogram mass range "
            f"[{fine_edges[0]:g}, {fine_edges[-1]:g}] GeV"
        )
        raise InvalidConfig(msg)
    n = max(1, round((hi - lo) / config.bin_width))
    targets = np.linspace(lo, hi, n + 1)
    idx = np.unique(np.abs(fine_edges[None, :] - targets[:, None]).argmin(axis=1))
    if len(idx) < 2:
        msg = f"stats config: bin_width {config.bin_width} gives no bins in {config.window}"
        raise InvalidConfig(msg)
    return idx.astype(np.int64)


def _rebin(fine: FloatArray, idx: NDArray[np.int64]) -> FloatArray:
    csum = np.concatenate([[0.0], np.cumsum(fine)])
    return np.asarray(csum[idx[1:]] - csum[idx[:-1]], dtype=np.float64)


def _select_codes(regions: NDArray[np.int64], n_cells: int, config: StatsConfig) -> list[int]:
    present = [int(c) for c in regions]
    if config.regions == "all":
        return present
    if config.regions == "diagonal":
        return [c for c in present if region_pair(c, n_cells)[0] == region_pair(c, n_cells)[1]]
    missing = sorted(set(config.regions) - set(present))
    if missing:
        msg = (
            f"stats config: field 'regions' lists {missing}, not in the histograms; "
            f"available region codes: {present}"
        )
        raise InvalidConfig(msg)
    return [c for c in present if c in config.regions]


def build_templates(
    hset: HistogramSet,
    steps: NuisanceSteps,
    config: StatsConfig | None = None,
) -> tuple[list[RegionTemplates], list[dict[str, Any]]]:
    """Coarse data/MC histograms and the nuisance templates of every selected region.

    Returns:
        ``(templates, dropped)``: the channels, and the regions left out with the reason.

    Raises:
        InvalidConfig: unknown variation or region, bad window.
        FitError: no region passes the thresholds.
    """
    cfg = config or StatsConfig()
    scheme = hset.scheme()
    if len(steps.scale) != len(scheme.scale) or len(steps.smear) != len(scheme.smear):
        msg = (
            f"nuisance steps have {len(steps.scale)} scale / {len(steps.smear)} smear values "
            f"but the histograms' scheme has {len(scheme.scale)} / {len(scheme.smear)} "
            "categories"
        )
        raise InvalidConfig(msg)
    for kind, var in (("data", cfg.data_variation), ("mc", cfg.mc_variation)):
        if not hset.datasets_of(kind):
            msg = f"histograms contain no {kind} dataset (kinds: {hset.kinds})"
            raise InputError(msg)
        if var not in hset.variations:
            msg = (
                f"stats config: {kind} variation {var!r} is not in the histograms; "
                f"available: {', '.join(hset.variations)}"
            )
            raise InvalidConfig(msg)
    regions, data, _ = hset.region_arrays("data", cfg.data_variation)
    _, mc, mc2 = hset.region_arrays("mc", cfg.mc_variation)
    fine_edges = hset.mass_edges
    logs = np.log(fine_edges)
    h = float(np.mean(np.diff(logs)))
    if not np.allclose(np.diff(logs), h, rtol=1e-6, atol=0):
        msg = "histogram mass axis is not uniform in log(m); cannot build shifted templates"
        raise InputError(msg)
    idx = _coarse_indices(fine_edges, cfg)
    edges = fine_edges[idx]
    n_cells = scheme.n_cells
    cell_scale = scheme.cell_scale_index()
    cell_smear = scheme.cell_smear_index()
    row = {int(c): k for k, c in enumerate(regions)}
    templates: list[RegionTemplates] = []
    dropped: list[dict[str, Any]] = []
    for code in _select_codes(regions, n_cells, cfg):
        r = row[code]
        i, j = region_pair(code, n_cells)
        d = _rebin(data[r], idx)
        m = _rebin(mc[r], idx)
        m2 = _rebin(mc2[r], idx)
        n_data = float(d.sum())
        n_eff = float(m.sum() ** 2 / m2.sum()) if m2.sum() > 0 and m.sum() > 0 else 0.0
        reason = ""
        if n_data < cfg.min_data:
            reason = f"data {n_data:g} < min_data {cfg.min_data:g}"
        elif n_eff < cfg.min_mc:
            reason = f"MC effective entries {n_eff:.0f} < min_mc {cfg.min_mc:g}"
        if reason:
            dropped.append({"code": code, "cells": [i, j], "reason": reason})
            continue
        k = n_data / float(m.sum())
        floor = cfg.mc_floor * float(m.sum()) / len(m)
        low = m < floor
        mc_nom = np.maximum(m, floor) * k
        variations: dict[str, tuple[FloatArray, FloatArray | None]] = {}

        for cat in sorted({int(cell_scale[i]), int(cell_scale[j])}):
            legs = int(cell_scale[i] == cat) + int(cell_scale[j] == cat)
            mu = 0.5 * legs * math.log1p(steps.scale[cat])
            up = _rebin(shift_smear(mc[r], h, +mu, 0.0), idx)
            dn = _rebin(shift_smear(mc[r], h, -mu, 0.0), idx)
            variations[f"scale_{cat}"] = (
                _normalised(up, m, floor, k),
                _normalised(dn, m, floor, k),
            )
        for cat in sorted({int(cell_smear[i]), int(cell_smear[j])}):
            legs = int(cell_smear[i] == cat) + int(cell_smear[j] == cat)
            base, step = steps.smear_base[cat], steps.smear[cat]
            s2 = 0.25 * legs * ((base + step) ** 2 - base**2)
            up = _rebin(shift_smear(mc[r], h, 0.0, s2), idx)
            variations[f"smear_{cat}"] = (_normalised(up, m, floor, k), None)
        name = f"region_{i}_{j}"
        templates.append(
            RegionTemplates(
                name=name,
                code=code,
                cells=(i, j),
                edges=edges,
                data=d,
                mc=mc_nom,
                mc_stdev=np.sqrt(np.maximum(m2, 0.0)) * k,
                variations=variations,
                n_data=n_data,
                n_mc_eff=n_eff,
                mc_scale=k,
                floored_bins=int(low.sum()),
            )
        )
    if dropped:
        log.warning(
            "%d region(s) left out of the workspace: %s",
            len(dropped),
            "; ".join(
                f"region {x['code']} cells {tuple(x['cells'])}: {x['reason']}" for x in dropped
            ),
        )
    if not templates:
        msg = (
            f"no pair region passes the thresholds (min_data {cfg.min_data:g}, min_mc "
            f"{cfg.min_mc:g}) in the window {cfg.window}; nothing to fit"
        )
        raise FitError(msg)
    return templates, dropped


def _normalised(var: FloatArray, nominal: FloatArray, floor: float, k: float) -> FloatArray:
    """A variation with the nominal's yield (shape only), floored like the nominal."""
    v = np.maximum(var, floor)
    tot = float(v.sum())
    return np.asarray(v * (float(np.maximum(nominal, floor).sum()) / tot) * k, dtype=np.float64)


# ------------------------------------------------------------------------ cabinetry
def cabinetry_config(
    templates: Sequence[RegionTemplates], config: StatsConfig, histogram_folder: str
) -> dict[str, Any]:
    """The cabinetry configuration of the workspace (validated against its schema).

    Raises:
        FitError: cabinetry rejects the configuration (an internal inconsistency).
    """
    import cabinetry

    nuisances: dict[str, list[str]] = {}
    symmetrised: set[str] = set()
    for t in templates:
        for name, (_, down) in t.variations.items():
            nuisances.setdefault(name, []).append(t.name)
            if down is None:
                symmetrised.add(name)

    def order(name: str) -> tuple[int, int]:
        kind, idx = name.split("_")
        return (0 if kind == "scale" else 1, int(idx))

    systematics = []
    for name in sorted(nuisances, key=order):
        systematics.append(
            {
                "Name": name,
                "Type": "NormPlusShape",
                "Up": {},
                "Down": {"Symmetrize": True} if name in symmetrised else {},
                "Regions": nuisances[name],
                "Samples": "MC",
            }
        )
    cfg: dict[str, Any] = {
        "General": {
            "Measurement": "zcalib_validation",
            "POI": "",
            "InputPath": "in-memory histograms (zcalib)",
            "HistogramFolder": histogram_folder,
        },
        "Regions": [
            {"Name": t.name, "Variable": "$m_{ee}$ [GeV]", "Binning": [float(x) for x in t.edges]}
            for t in templates
        ],
        "Samples": [{"Name": "Data", "Data": True}, {"Name": "MC"}],
        "NormFactors": [
            {
                "Name": f"norm_{t.name}",
                "Regions": t.name,
                "Samples": "MC",
                "Nominal": 1.0,
                "Bounds": list(config.norm_bounds),
            }
            for t in templates
        ],
        "Systematics": systematics,
    }
    try:
        cabinetry.configuration.validate(cfg)
    except Exception as err:
        msg = f"internal error: cabinetry rejects the generated configuration: {err}"
        raise FitError(msg) from err
    return cfg


@dataclass
class StatsModel:
    """The workspace and everything needed to fit and plot it.

    Attributes:
        workspace: the pyhf workspace specification (JSON-serialisable).
        cabinetry_config: the cabinetry configuration it was built from.
        templates: the channels' histograms.
        dropped: regions left out, with the reason.
        steps: the nuisance steps.
        config: the settings.
    """

    workspace: dict[str, Any]
    cabinetry_config: dict[str, Any]
    templates: list[RegionTemplates]
    dropped: list[dict[str, Any]]
    steps: NuisanceSteps
    config: StatsConfig


def build_model(
    hset: HistogramSet,
    steps: NuisanceSteps | None = None,
    config: StatsConfig | None = None,
) -> StatsModel:
    """Build the pyhf workspace of ``hset`` through cabinetry's template-builder route.

    Args:
        hset: histograms with data and MC.
        steps: nuisance steps (default :func:`default_steps`).
        config: settings.

    Returns:
        The :class:`StatsModel` (workspace, cabinetry config, channels).

    Example:
        >>> # model = build_model(hset, steps_from_corrections("corr.json", scheme,
        >>> #                                                  smeared_mc=True))
    """
    import boost_histogram as bh
    import cabinetry

    cfg = config or StatsConfig()
    scheme = hset.scheme()
    st = steps or default_steps(scheme, cfg)
    templates, dropped = build_templates(hset, st, cfg)
    by_name = {t.name: t for t in templates}
    with tempfile.TemporaryDirectory(prefix="zcalib-cabinetry-") as folder:
        ccfg = cabinetry_config(templates, cfg, folder)
        router = cabinetry.route.Router()

        @router.register_template_builder()
        def from_memory(
            region: dict[str, Any],
            sample: dict[str, Any],
            systematic: dict[str, Any],
            template: str | None,
        ) -> bh.Histogram:  # type: ignore[type-arg]
            t = by_name[region["Name"]]
            if sample.get("Data", False):
                values, variances = t.data, t.data
            elif template is None:
                values, variances = t.mc, t.mc_stdev**2
            else:
                up, down = t.variations[systematic["Name"]]
                chosen = up if template == "Up" else down
                if chosen is None:  # pragma: no cover  (cabinetry symmetrises these)
                    msg = f"no {template} template for {systematic['Name']} in {t.name}"
                    raise FitError(msg)
                values, variances = chosen, t.mc_stdev**2
            hist = bh.Histogram(
                bh.axis.Variable(t.edges, underflow=False, overflow=False),
                storage=bh.storage.Weight(),
            )
            hist[...] = np.stack([values, variances], axis=-1)
            return hist

        cabinetry.templates.build(ccfg, router=router)
        ws = cabinetry.workspace.build(ccfg)
    ccfg["General"]["HistogramFolder"] = "(temporary, removed)"
    return StatsModel(
        workspace=ws,
        cabinetry_config=ccfg,
        templates=templates,
        dropped=dropped,
        steps=st,
        config=cfg,
    )
