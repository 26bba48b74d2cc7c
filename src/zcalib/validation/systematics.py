"""Systematic uncertainties of the scales and smearings from refits with varied choices.

pymin's unfinished ``--systematics-study``: the derivation is repeated with one analysis
choice changed at a time, and the shift of every category's value is its systematic
uncertainty from that choice. Variation kinds:

* ``window`` — the fit mass window (a refit of the same histograms);
* ``smearing`` — the smearing model (``gaussian`` / ``double-gaussian`` of
  :class:`~zcalib.fit.FitConfig`; a refit of the same histograms with the other model, and
  optionally another ``double_gaussian`` shape): the shift of each smearing is the change of
  the fitted (core) width, that of each scale the scale's dependence on the model;
* ``selection`` — the pair selection (Et thresholds, ID working point, ...): the histograms
  are refilled with :func:`zcalib.runner.build_histograms` and a modified
  :class:`~zcalib.config.SelectionConfig`;
* ``boundary`` — a category boundary moved (e.g. the R9 boundary 0.96 → 0.95): refilled
  with a modified category scheme (the categories keep their indices, so shifts per
  category are defined).

Every variation belongs to a *source* (``window``, ``r9``, ``et``, ``id``, ...). Per category
the systematic uncertainty of a source is ``max |Δ|`` over its variations, and the total
combines the sources in quadrature (``combine: quadrature``, default) or takes the largest
(``combine: max``). The systematic is stored apart from the statistical error, carried into
the correctionlib payload (``escale = stat ⊕ syst``, ``scale_up/down = scale ± escale``,
likewise for smearings, through :func:`~zcalib.corrections.build_scale_correction`'s
``syst_errors``) and written to ``systematics.json``.

Note that a tighter selection also changes the events, so its shifts contain a statistical
part (the naive estimate pymin planned; not subtracted here).

The variations are configured in YAML::

    schema_version: 1
    combine: quadrature
    variations:
      - {name: window_narrow, source: window, kind: window, window: [82, 98]}
      - {name: window_wide, source: window, kind: window, window: [78, 102]}
      - {name: double_gaussian, source: smearing_model, kind: smearing,
         smearing: double-gaussian, double_gaussian: {fraction: 0.2, width_ratio: 2.0}}
      - {name: r9_095, source: r9, kind: boundary, variable: r9, old: 0.96, new: 0.95}
      - {name: et_30_25, source: et, kind: selection,
         selection: {min_et_lead: 30, min_et_sublead: 25}}
      - {name: id_tight, source: id, kind: selection, selection: {id_level: tight}}
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zcalib.categories import Category, CategoryScheme, build_scheme
from zcalib.config import DatasetConfig, SelectionConfig, format_validation_error, load_yaml
from zcalib.exceptions import FitError, InvalidConfig
from zcalib.fit import FitConfig, FitResult, fit_histograms
from zcalib.fit.config import Smearing
from zcalib.histograms import HistogramSet

if TYPE_CHECKING:
    from zcalib.derive import StepSyst
    from zcalib.histograms import MassBinning

__all__ = [
    "DEFAULT_VARIATIONS",
    "SystematicsConfig",
    "SystematicsResult",
    "Variation",
    "VariationResult",
    "load_systematics_config",
    "move_boundary",
    "run_systematics",
]

log = logging.getLogger(__name__)

_SELECTION_KEYS = (
    "min_et_lead",
    "min_et_sublead",
    "max_abs_eta",
    "exclude_crack",
    "id_level",
    "opposite_charge",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variation(_Frozen):
    """One varied analysis choice."""

    name: str = Field(min_length=1, description="Unique name of the variation.")
    source: str = Field(min_length=1, description="Systematic source it belongs to (e.g. r9).")
    kind: Literal["window", "smearing", "selection", "boundary"] = Field(
        description="window: refit with another mass window; smearing: refit with another "
        "smearing model; selection: refill with a modified pair selection; boundary: refill "
        "with a moved category boundary."
    )
    window: tuple[float, float] | None = Field(None, description="Fit window [GeV] (window).")
    smearing: Smearing | None = Field(None, description="Smearing model of the refit (smearing).")
    double_gaussian: dict[str, float] | None = Field(
        None,
        description="Double-Gaussian shape {fraction, width_ratio} of the refit (smearing; "
        "default: the nominal fit config's).",
    )
    selection: dict[str, Any] | None = Field(
        None, description=f"SelectionConfig overrides (selection): {', '.join(_SELECTION_KEYS)}."
    )
    variable: Literal["eta", "r9", "et"] | None = Field(
        None, description="Category variable whose boundary moves (boundary)."
    )
    old: float | None = Field(None, description="Boundary value to move (boundary).")
    new: float | None = Field(None, description="New boundary value (boundary).")

    @model_validator(mode="after")
    def _check(self) -> Variation:
        need = {
            "window": ("window",),
            "smearing": ("smearing",),
            "selection": ("selection",),
            "boundary": ("variable", "old", "new"),
        }[self.kind]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            msg = f"variation '{self.name}' of kind '{self.kind}' needs {', '.join(missing)}"
            raise ValueError(msg)
        extra = [
            k
            for k in ("window", "smearing", "selection", "variable", "old", "new")
            if k not in need and getattr(self, k) is not None
        ]
        if extra:
            msg = f"variation '{self.name}' of kind '{self.kind}' does not use {', '.join(extra)}"
            raise ValueError(msg)
        if self.double_gaussian is not None:
            if self.kind != "smearing":
                msg = f"variation '{self.name}' of kind '{self.kind}' does not use double_gaussian"
                raise ValueError(msg)
            try:
                FitConfig(double_gaussian=self.double_gaussian)
            except InvalidConfig as err:
                msg = f"variation '{self.name}': {err}"
                raise ValueError(msg) from None
        if self.window is not None and not 0 < self.window[0] < self.window[1]:
            msg = f"variation '{self.name}': window {self.window} must be 0 < lo < hi"
            raise ValueError(msg)
        if self.selection is not None:
            unknown = sorted(set(self.selection) - set(_SELECTION_KEYS))
            if unknown or not self.selection:
                msg = (
                    f"variation '{self.name}': selection keys {unknown or '(none)'}; "
                    f"allowed: {', '.join(_SELECTION_KEYS)}"
                )
                raise ValueError(msg)
        return self


#: The default study: two windows, the R9 boundary, tighter Et thresholds, the tight ID.
DEFAULT_VARIATIONS: tuple[Variation, ...] = (
    Variation(name="window_narrow", source="window", kind="window", window=(82.0, 98.0)),
    Variation(name="window_wide", source="window", kind="window", window=(78.0, 102.0)),
    Variation(
        name="r9_boundary_095", source="r9", kind="boundary", variable="r9", old=0.96, new=0.95
    ),
    Variation(
        name="et_30_25",
        source="et",
        kind="selection",
        selection={"min_et_lead": 30.0, "min_et_sublead": 25.0},
    ),
    Variation(name="id_tight", source="id", kind="selection", selection={"id_level": "tight"}),
)


class SystematicsConfig(_Frozen):
    """The systematics study: variations and how they combine."""

    schema_version: Literal[1] = Field(1, description="Version of this format.")
    combine: Literal["quadrature", "max"] = Field(
        "quadrature",
        description="Combine sources in quadrature or take the largest "
        "(within a source: always max |shift|).",
    )
    variations: tuple[Variation, ...] = Field(
        DEFAULT_VARIATIONS, min_length=1, description="The varied choices."
    )

    @model_validator(mode="after")
    def _unique(self) -> SystematicsConfig:
        names = [v.name for v in self.variations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"variation names must be unique; repeated: {', '.join(dupes)}"
            raise ValueError(msg)
        return self

    def refills(self) -> tuple[str, ...]:
        """Names of the variations that refill the histograms (``selection``, ``boundary``:
        they need the inputs), in order.

        Example:
            >>> SystematicsConfig().refills()
            ('r9_boundary_095', 'et_30_25', 'id_tight')
        """
        return tuple(v.name for v in self.variations if v.kind not in _REFITS)


def load_systematics_config(path: str | Path) -> SystematicsConfig:
    """Load and validate a systematics YAML (see the module docstring).

    Raises:
        InvalidConfig: malformed YAML or invalid/unknown fields (named).
    """
    p = Path(path)
    raw = load_yaml(p)
    if not isinstance(raw, dict):
        msg = f"{p}: expected a mapping with a 'variations' list, got {type(raw).__name__}"
        raise InvalidConfig(msg)
    try:
        return SystematicsConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error(str(p), err)) from None


def move_boundary(scheme: CategoryScheme, variable: str, old: float, new: float) -> CategoryScheme:
    """The scheme with every category edge ``old`` of ``variable`` moved to ``new``.

    Categories keep their order and indices (so values can be compared per category).

    Raises:
        InvalidConfig: no category has that edge, or the move empties a category.

    Example:
        >>> from zcalib.generate import default_categories
        >>> s = move_boundary(default_categories(), "r9", 0.96, 0.95)
        >>> s.scale[0].r9, s.scale[4].r9
        ((0.0, 0.95), (0.95, 10.0))
    """
    attr = variable
    found = False

    def moved(cats: Sequence[Category]) -> list[Category]:
        nonlocal found
        out = []
        for c in cats:
            lo, hi = getattr(c, attr)
            if math.isclose(lo, old):
                lo, found = new, True
            if math.isclose(hi, old):
                hi, found = new, True
            kw: dict[str, Any] = {attr: (lo, hi)}
            out.append(replace(c, **kw))
        return out

    scale, smear = moved(scheme.scale), moved(scheme.smear)
    if not found:
        edges = sorted(
            {
                x
                for c in (*scheme.scale, *scheme.smear)
                for x in getattr(c, attr)
                if math.isfinite(x)
            }
        )
        msg = (
            f"boundary variation: no category has a {variable} edge at {old:g}; edges "
            f"present: {edges}"
        )
        raise InvalidConfig(msg)
    try:
        return build_scheme(scale, smear, source=f"{scheme.source} ({variable} {old:g}->{new:g})")
    except InvalidConfig as err:
        msg = f"boundary variation {variable} {old:g} -> {new:g}: {err}"
        raise InvalidConfig(msg) from None


@dataclass(frozen=True)
class VariationResult:
    """The refit of one variation.

    Attributes:
        variation: what was varied.
        scales, smears: values per category.
        scale_shift, smear_shift: ``varied − nominal`` per category.
        status: fit status.
        n_data: data pairs in the varied histograms (all regions, window of the fit).
        wall_time: seconds (refill + fit).
    """

    variation: Variation
    scales: tuple[float, ...]
    smears: tuple[float, ...]
    scale_shift: tuple[float, ...]
    smear_shift: tuple[float, ...]
    status: str
    n_data: float
    wall_time: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "variation": self.variation.model_dump(mode="json"),
            "status": self.status,
            "n_data": self.n_data,
            "wall_time_s": self.wall_time,
            "scales": list(self.scales),
            "smears": list(self.smears),
            "scale_shift": list(self.scale_shift),
            "smear_shift": list(self.smear_shift),
        }


@dataclass(frozen=True)
class SystematicsResult:
    """Per-category systematic uncertainties, stored apart from the statistical ones.

    Attributes:
        nominal: the nominal fit.
        variations: one refit per variation.
        scale_syst, smear_syst: total systematic per category.
        scale_by_source, smear_by_source: ``{source: per-category max |Δ|}``.
        combine: how sources were combined.
        scale_labels, smear_labels: category labels.
    """

    nominal: FitResult
    variations: tuple[VariationResult, ...]
    scale_syst: tuple[float, ...]
    smear_syst: tuple[float, ...]
    scale_by_source: dict[str, tuple[float, ...]]
    smear_by_source: dict[str, tuple[float, ...]]
    combine: str
    scale_labels: tuple[str, ...] = ()
    smear_labels: tuple[str, ...] = ()
    wall_time: float = 0.0

    def step_syst(self) -> StepSyst:
        """The systematic uncertainties for :func:`zcalib.derive.write_outputs`."""
        from zcalib.derive import StepSyst

        return StepSyst(
            scale=self.scale_syst,
            smear=self.smear_syst,
            scale_by_source=dict(self.scale_by_source),
            smear_by_source=dict(self.smear_by_source),
            label=f"{self.combine} of {len(self.scale_by_source)} sources",
        )

    @property
    def scale_stat(self) -> tuple[float, ...]:
        """Statistical error (stat ⊕ MC stat) of each scale."""
        return tuple(c.total_stat for c in self.nominal.scales)

    @property
    def smear_stat(self) -> tuple[float, ...]:
        """Statistical error (stat ⊕ MC stat) of each smearing."""
        return tuple(c.total_stat for c in self.nominal.smears)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (the ``systematics.json`` content)."""

        def cats(kind: str) -> list[dict[str, Any]]:
            fits = self.nominal.scales if kind == "scale" else self.nominal.smears
            syst = self.scale_syst if kind == "scale" else self.smear_syst
            by = self.scale_by_source if kind == "scale" else self.smear_by_source
            return [
                {
                    "kind": kind,
                    "index": c.index,
                    "label": c.label,
                    "value": c.value,
                    "stat": c.total_stat,
                    "syst": syst[k],
                    "total": math.hypot(c.total_stat, syst[k]),
                    "syst_by_source": {s: v[k] for s, v in by.items()},
                }
                for k, c in enumerate(fits)
            ]

        return {
            "schema_version": 1,
            "combine": self.combine,
            "rule": "per source: max |varied - nominal| over its variations; sources combined "
            f"by {self.combine}; escale/esmear = stat (+) syst in the payload",
            "categories": cats("scale") + cats("smear"),
            "variations": [v.to_dict() for v in self.variations],
            "nominal": {
                "status": self.nominal.status,
                "window": list(self.nominal.window),
                "config": self.nominal.config.to_dict(),
            },
            "wall_time_s": self.wall_time,
        }


#: variation kinds that refit the nominal histograms (no refill)
_REFITS = ("window", "smearing")


def _smearing_config(fcfg: FitConfig, var: Variation) -> FitConfig:
    """The nominal fit settings with the smearing model (and shape) of ``var``."""
    changes: dict[str, Any] = {"smearing": var.smearing}
    if var.double_gaussian is not None:
        changes["double_gaussian"] = var.double_gaussian
    return fcfg.with_overrides(**changes)


def _combine(per_source: dict[str, np.ndarray], n: int, how: str) -> np.ndarray:
    if not per_source:
        return np.zeros(n)
    stack = np.vstack(list(per_source.values()))
    if how == "max":
        return np.asarray(stack.max(axis=0), dtype=np.float64)
    return np.asarray(np.sqrt((stack**2).sum(axis=0)), dtype=np.float64)


def _counted(variations: Sequence[Any]) -> Iterator[Any]:
    """The variations, each announced as ``k/N`` (the refills show their own progress bars;
    a second live bar around them would clash)."""
    for k, var in enumerate(variations, start=1):
        log.info("systematics: variation %d/%d '%s' (%s)", k, len(variations), var.name, var.kind)
        yield var


def run_systematics(
    hset: HistogramSet | None,
    *,
    dataset_config: DatasetConfig | None = None,
    scheme: CategoryScheme | None = None,
    config: SystematicsConfig | None = None,
    fit_config: FitConfig | None = None,
    selection: SelectionConfig | None = None,
    options: Any = None,
    weights: Sequence[Any] = (),
    corrections: Sequence[Any] = (),
    smear_seed: int = 0,
    binning: MassBinning | None = None,
    nominal: FitResult | None = None,
) -> SystematicsResult:
    """Refit with every variation and derive per-category systematic uncertainties.

    Args:
        hset: the nominal histograms; ``None``: filled from ``dataset_config`` (with
            ``scheme``, ``selection``, ``weights``, ``corrections``, ``smear_seed``) on the
            cluster of the refills (one cluster per call).
        dataset_config: the inputs, needed to refill for ``selection``/``boundary``
            variations.
        scheme: the category scheme (default: the one of ``hset``).
        config: the variations (default :data:`DEFAULT_VARIATIONS`).
        fit_config: nominal fit settings (the ``window`` variations override its window).
        selection: the nominal pair selection (``selection`` variations modify it).
        options: :class:`~zcalib.runner.RunOptions` of the refills (default: iterative).
        weights: MC weights of the refills (as for the nominal histograms).
        corrections: prior correction steps of the refills (as for the nominal histograms).
        smear_seed: seed of the MC smearing in the refills.
        binning: fine mass binning of the fills (default: that of ``hset``, else the
            default binning), so that a refill differs from the nominal only by its variation.
        nominal: the nominal fit result (computed when ``None``).

    Writes nothing: :func:`zcalib.api.run_step` (``systematics=``) is the one way to a
    payload with the systematic errors folded in (and ``systematics.json``).

    Returns:
        The :class:`SystematicsResult`.

    Raises:
        InvalidConfig: a refill variation (or ``hset=None``) without ``dataset_config``, bad
            boundary.
        FitError: a refit failed.

    Example:
        >>> # res = run_systematics(hset, dataset_config=cfg)
        >>> # res.scale_syst
    """
    from zcalib.runner import RunOptions, build_histograms

    t0 = time.perf_counter()
    cfg = config or SystematicsConfig()
    fcfg = fit_config or FitConfig()
    opts = options or RunOptions(executor="iterative", progress=False)
    refills = cfg.refills()
    inputs = "the inputs (dataset_config / --data --mc / --datasets)"
    if refills and dataset_config is None:
        msg = f"variations {', '.join(refills)} refill the histograms and need {inputs}"
        raise InvalidConfig(msg)
    if hset is None and (dataset_config is None or scheme is None):
        msg = f"filling the nominal histograms (no hset) needs {inputs} and the scheme"
        raise InvalidConfig(msg)
    with contextlib.ExitStack() as stack:
        if refills or hset is None:  # one cluster: the nominal fill and every refill
            from zcalib.cluster import one_cluster

            opts = stack.enter_context(one_cluster(opts))
        if hset is None:
            assert dataset_config is not None
            assert scheme is not None
            hset = build_histograms(
                dataset_config,
                scheme,
                options=opts,
                selection=selection or SelectionConfig(),
                weights=tuple(weights),
                corrections=tuple(corrections),
                smear_seed=smear_seed,
                binning=binning,
            )
        binning = binning or hset.binning
        sch = scheme or hset.scheme()
        sel = selection or SelectionConfig.model_validate(hset.metadata.get("selection") or {})
        nom = nominal or fit_histograms(hset, fcfg, scheme=sch)
        nom.raise_if_failed()
        base_scales, base_smears = nom.scale_values(), nom.smear_values()
        nominal_regions = [r.code for r in nom.regions_used]
        results: list[VariationResult] = []
        for var in _counted(cfg.variations):
            t1 = time.perf_counter()
            h = hset
            fc = fcfg
            vscheme = sch
            if var.kind == "window":
                assert var.window is not None
                fc = fcfg.with_overrides(window=var.window)
            elif var.kind == "smearing":
                fc = _smearing_config(fcfg, var)
            else:
                vsel = sel
                if var.kind == "selection":
                    try:
                        vsel = sel.with_overrides(**(var.selection or {}))
                    except ValidationError as err:
                        raise InvalidConfig(
                            format_validation_error(f"variation '{var.name}' selection", err)
                        ) from None
                else:
                    assert var.variable is not None
                    assert var.old is not None
                    assert var.new is not None
                    vscheme = move_boundary(sch, var.variable, var.old, var.new)
                log.info("systematics: refilling histograms for variation '%s'", var.name)
                assert dataset_config is not None
                h = build_histograms(
                    dataset_config,
                    vscheme,
                    options=opts,
                    selection=vsel,
                    weights=tuple(weights),
                    corrections=tuple(corrections),
                    smear_seed=smear_seed,
                    binning=binning,
                )
            # on the nominal fit's pair regions: a variation changes the values, not the likelihood
            res = fit_histograms(h, fc, scheme=vscheme, regions=nominal_regions)
            if not res.converged:
                msg = (
                    f"systematics: refit of variation '{var.name}' did not converge: {res.message}"
                )
                raise FitError(msg)
            sc, sm = res.scale_values(), res.smear_values()
            results.append(
                VariationResult(
                    variation=var,
                    scales=tuple(map(float, sc)),
                    smears=tuple(map(float, sm)),
                    scale_shift=tuple(map(float, sc - base_scales)),
                    smear_shift=tuple(map(float, sm - base_smears)),
                    status=res.status,
                    n_data=float(sum(r.n_data for r in res.regions_used)),
                    wall_time=time.perf_counter() - t1,
                )
            )
            log.info(
                "systematics: %s: max |Δscale| %.2e, max |Δsmear| %.2e",
                var.name,
                float(np.max(np.abs(sc - base_scales))),
                float(np.max(np.abs(sm - base_smears))),
            )
    scale_src: dict[str, np.ndarray] = {}
    smear_src: dict[str, np.ndarray] = {}
    for r in results:
        s = r.variation.source
        scale_src[s] = np.maximum(scale_src.get(s, 0.0), np.abs(r.scale_shift))
        smear_src[s] = np.maximum(smear_src.get(s, 0.0), np.abs(r.smear_shift))
    return SystematicsResult(
        nominal=nom,
        variations=tuple(results),
        scale_syst=tuple(map(float, _combine(scale_src, len(base_scales), cfg.combine))),
        smear_syst=tuple(map(float, _combine(smear_src, len(base_smears), cfg.combine))),
        scale_by_source={k: tuple(map(float, v)) for k, v in scale_src.items()},
        smear_by_source={k: tuple(map(float, v)) for k, v in smear_src.items()},
        combine=cfg.combine,
        scale_labels=tuple(c.label() for c in sch.scale),
        smear_labels=tuple(c.label() for c in sch.smear),
        wall_time=time.perf_counter() - t0,
    )
