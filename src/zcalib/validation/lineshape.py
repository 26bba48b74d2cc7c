"""Lineshape cross-check: Breit-Wigner ⊗ Crystal Ball fits of the pair-mass peak.

An independent check of the template fit. Per category (the same-cell regions ``(i, i)``)
or inclusively (all regions summed), the fine-binned data and MC histograms are fitted with a
relativistic Breit-Wigner with the PDG Z mass and width held fixed, convolved numerically
with a Crystal Ball resolution function (location offset ``Δm``, core width ``σ``, low-side
tail ``α``, exponent ``n`` fixed), by minimising a binned Poisson likelihood
(:class:`iminuit.cost.BinnedNLL`; weighted MC through its Bohm-Zech transform).

From the fits, for region ``(i, i)``:

* the peak position ``m_peak`` (mode of the fitted lineshape, error from ``Δm``) and the
  implied **scale** ``m_peak(MC) / m_peak(data)`` (the factor that moves the data peak onto
  the MC peak, ``E_corr = scale · E``);
* the width ``σ`` and the implied **smearing**
  ``σ_i ≈ √2 · √max(0, σ_data² − σ_MC²) / m_peak`` (a pair of two leptons of category ``i``
  gets the relative width ``σ_i/√2``, ``DESIGN.md``), with the error from
  ``±1σ`` of ``σ_data² − σ_MC²``.

Both are reported next to the template-fit values with the pull
``(lineshape − template) / √(err_lineshape² + err_template²)``.

Without MC (data only, e.g. the real CMS 2010 dimuon ntuple) the data peak is compared with
the PDG Z mass (``scale_vs_pdg = M_Z / (M_Z + Δm)``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from zcalib._atomic import atomic_open, atomic_write_text
from zcalib.categories import region_pair
from zcalib.exceptions import FitError, InputError, InvalidConfig
from zcalib.histograms import HistogramSet
from zcalib.outputs import current_run_id, stamp

__all__ = [
    "Z_MASS",
    "Z_WIDTH",
    "LineshapeConfig",
    "LineshapeFit",
    "LineshapeResult",
    "LineshapeRow",
    "bw_cb_pdf",
    "fit_lineshape",
    "run_lineshape",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: PDG Z boson mass and width [GeV]
Z_MASS = 91.1876
Z_WIDTH = 2.4952


@dataclass(frozen=True)
class LineshapeConfig:
    """Settings of the lineshape fits (immutable).

    Attributes:
        window: fit window ``(lo, hi)`` in GeV (snapped to fine-bin edges).
        mode: ``"categories"`` (one fit per same-cell region ``(i, i)``) or ``"inclusive"``
            (one fit of all regions summed).
        min_events: regions with fewer (effective) events in the window are not fitted.
        cb_n: Crystal Ball tail exponent (fixed).
        alpha_bounds: allowed range of the tail parameter ``α`` (in units of ``σ``).
        alpha_from_mc: with MC, fit the MC first and hold the data's ``α`` at the MC value
            (the tail comes from the simulation; the data fit measures location and width).
        sigma_bounds: allowed range of ``σ`` [GeV].
        dm_bounds: allowed range of ``Δm`` [GeV].
        grid_step: step of the numerical convolution grid [GeV].
        data_variation: data variation fitted.
        mc_variation: MC variation fitted.
        z_mass: Breit-Wigner mass [GeV] (PDG, fixed).
        z_width: Breit-Wigner width [GeV] (PDG, fixed).
    """

    window: tuple[float, float] = (75.0, 105.0)
    mode: Literal["categories", "inclusive"] = "categories"
    min_events: float = 200.0
    cb_n: float = 2.0
    alpha_bounds: tuple[float, float] = (0.5, 10.0)
    alpha_from_mc: bool = False
    sigma_bounds: tuple[float, float] = (0.05, 10.0)
    dm_bounds: tuple[float, float] = (-10.0, 10.0)
    grid_step: float = 0.02
    data_variation: str = "nominal"
    mc_variation: str = "nominal"
    z_mass: float = Z_MASS
    z_width: float = Z_WIDTH

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: str) -> None:
            msg = f"lineshape config: field '{name}' is {value!r}; {allowed}"
            raise InvalidConfig(msg)

        for name in ("window", "alpha_bounds", "sigma_bounds", "dm_bounds"):
            pair = tuple(float(x) for x in getattr(self, name))
            object.__setattr__(self, name, pair)
            if len(pair) != 2 or not all(math.isfinite(x) for x in pair) or pair[0] >= pair[1]:
                bad(name, getattr(self, name), "expected two finite numbers lo < hi")
        if self.window[0] <= 0:
            bad("window", self.window, "masses must be positive")
        if self.mode not in ("categories", "inclusive"):
            bad("mode", self.mode, "allowed: 'categories', 'inclusive'")
        for name in ("cb_n", "grid_step", "z_mass", "z_width"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                bad(name, v, "expected a positive number")
        if self.cb_n <= 1:
            bad("cb_n", self.cb_n, "the Crystal Ball exponent must be > 1")
        if self.alpha_bounds[0] <= 0 or self.sigma_bounds[0] <= 0:
            bad(
                "alpha_bounds/sigma_bounds",
                (self.alpha_bounds, self.sigma_bounds),
                "lower bounds must be positive",
            )
        if not (math.isfinite(self.min_events) and self.min_events >= 0):
            bad("min_events", self.min_events, "expected a number >= 0")

    def with_overrides(self, **changes: Any) -> LineshapeConfig:
        """A modified copy (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }


# ---------------------------------------------------------------------------- the model
def _crystal_ball(t: FloatArray, alpha: float, n: float) -> FloatArray:
    """Unnormalised Crystal Ball in ``t = (x − μ)/σ`` with the tail on the low side."""
    a = abs(alpha)
    core = np.exp(-0.5 * t * t)
    big_a = (n / a) ** n * math.exp(-0.5 * a * a)
    big_b = n / a - a
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tail = big_a * np.power(np.maximum(big_b - t, 1e-300), -n)
    return np.where(t > -a, core, tail)


def _breit_wigner(m: FloatArray, mass: float, width: float) -> FloatArray:
    """Relativistic Breit-Wigner as a density in ``m`` (``∝ 2m / ((m² − M²)² + M²Γ²)``)."""
    return 2.0 * m / ((m * m - mass * mass) ** 2 + (mass * width) ** 2)


@dataclass(frozen=True)
class _Grid:
    x: FloatArray
    offsets: FloatArray
    bw: FloatArray
    step: float


def _grid(cfg: LineshapeConfig, pad: float = 25.0) -> _Grid:
    step = cfg.grid_step
    lo, hi = cfg.window
    n = math.ceil((hi - lo + 2 * pad) / step) + 1
    x = np.asarray(lo - pad + step * np.arange(n), dtype=np.float64)
    half = math.ceil(pad / step)
    offsets = np.asarray(step * np.arange(-half, half + 1), dtype=np.float64)
    return _Grid(x=x, offsets=offsets, bw=_breit_wigner(x, cfg.z_mass, cfg.z_width), step=step)


def bw_cb_pdf(
    x: FloatArray,
    dm: float,
    sigma: float,
    alpha: float,
    n: float,
    *,
    mass: float = Z_MASS,
    width: float = Z_WIDTH,
    step: float = 0.02,
) -> FloatArray:
    """The Breit-Wigner ⊗ Crystal Ball density at ``x`` (normalised on ``[x0, x1]``).

    Example:
        >>> import numpy as np
        >>> x = np.linspace(80, 100, 2001)
        >>> f = bw_cb_pdf(x, 0.0, 1.5, 1.5, 5.0)
        >>> abs(float(x[np.argmax(f)]) - 91.19) < 0.1
        True
    """
    cfg = LineshapeConfig(
        window=(float(np.min(x)), float(np.max(x))), grid_step=step, z_mass=mass, z_width=width
    )
    g = _grid(cfg)
    dens = _convolved(g, dm, sigma, alpha, n)
    vals = np.interp(x, g.x, dens)
    norm = np.trapezoid(vals, x)
    return np.asarray(vals / norm if norm > 0 else vals, dtype=np.float64)


def _convolved(g: _Grid, dm: float, sigma: float, alpha: float, n: float) -> FloatArray:
    from scipy.signal import fftconvolve

    kern = _crystal_ball((g.offsets - dm) / sigma, alpha, n)
    kern = kern / (kern.sum() * g.step)
    out = fftconvolve(g.bw, kern, mode="same") * g.step
    return np.asarray(np.maximum(out, 0.0), dtype=np.float64)


def _cdf_factory(g: _Grid, edges: FloatArray, n_cb: float) -> Any:
    lo, hi = edges[0], edges[-1]

    def cdf(xe: FloatArray, dm: float, sigma: float, alpha: float) -> FloatArray:
        dens = _convolved(g, dm, sigma, alpha, n_cb)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * g.step)])
        c = np.interp(xe, g.x, cum)
        c_lo, c_hi = np.interp([lo, hi], g.x, cum)
        span = c_hi - c_lo
        return np.asarray((c - c_lo) / span if span > 0 else c * 0.0, dtype=np.float64)

    return cdf


# ---------------------------------------------------------------------------- one fit
@dataclass(frozen=True)
class LineshapeFit:
    """One BW ⊗ CB fit.

    Attributes:
        kind: ``data`` or ``mc``.
        n_events: events (Σw) in the window.
        dm, dm_err: Crystal Ball location offset from the PDG mass [GeV].
        sigma, sigma_err: Crystal Ball core width [GeV].
        alpha, alpha_err: tail parameter.
        peak, peak_err: mode of the fitted lineshape [GeV] (error from ``Δm``).
        chi2_ndf: Pearson χ² / ndf of the fit (bins with expectation > 0).
        valid: Minuit's validity flag.
        edges: fitted bin edges; counts: fitted Σw per bin; model: expected Σw per bin.
    """

    kind: str
    n_events: float
    dm: float
    dm_err: float
    sigma: float
    sigma_err: float
    alpha: float
    alpha_err: float
    peak: float
    peak_err: float
    chi2_ndf: float
    valid: bool
    edges: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))
    counts: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))
    model: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (without the arrays)."""
        return {
            k: (_num(v) if isinstance(v, float) else v)
            for k, v in (
                ("kind", self.kind),
                ("n_events", self.n_events),
                ("dm", self.dm),
                ("dm_err", self.dm_err),
                ("sigma", self.sigma),
                ("sigma_err", self.sigma_err),
                ("alpha", self.alpha),
                ("alpha_err", self.alpha_err),
                ("peak", self.peak),
                ("peak_err", self.peak_err),
                ("chi2_ndf", self.chi2_ndf),
                ("valid", self.valid),
            )
        }


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def fit_lineshape(
    edges: FloatArray,
    sumw: FloatArray,
    sumw2: FloatArray | None = None,
    config: LineshapeConfig | None = None,
    *,
    kind: str = "data",
    fix_alpha: float | None = None,
) -> LineshapeFit:
    """Fit BW ⊗ CB to one histogram (binned Poisson likelihood, iminuit).

    Args:
        edges: bin edges [GeV] (only bins inside ``config.window`` are used).
        sumw: Σw per bin.
        sumw2: Σw² per bin for weighted histograms (``None``: unweighted counts).
        config: settings.
        kind: label (``data``/``mc``).
        fix_alpha: hold the tail parameter ``α`` at this value (e.g. the MC's, so that
            the data fit measures the core width with the same tail).

    Returns:
        The :class:`LineshapeFit`.

    Raises:
        FitError: too few events in the window.
    """
    from iminuit import Minuit
    from iminuit.cost import BinnedNLL

    cfg = config or LineshapeConfig()
    e = np.asarray(edges, dtype=np.float64)
    w = np.asarray(sumw, dtype=np.float64)
    lo_i = int(np.searchsorted(e, cfg.window[0] - 1e-9))
    hi_i = int(np.searchsorted(e, cfg.window[1] + 1e-9, side="right")) - 1
    if hi_i - lo_i < 5:
        msg = f"lineshape window {cfg.window} holds fewer than 5 bins of the histogram"
        raise FitError(msg)
    xe = e[lo_i : hi_i + 1]
    n = w[lo_i:hi_i]
    n_events = float(n.sum())
    if not n_events > 0:
        msg = f"lineshape fit ({kind}): no events in the window {cfg.window}"
        raise FitError(msg)
    g = _grid(cfg.with_overrides(window=(float(xe[0]), float(xe[-1]))))
    cdf = _cdf_factory(g, xe, cfg.cb_n)
    if sumw2 is not None:
        w2 = np.asarray(sumw2, dtype=np.float64)[lo_i:hi_i]
        cost = BinnedNLL(np.stack([n, w2], axis=-1), xe, cdf)
    else:
        cost = BinnedNLL(n, xe, cdf)
    centres = 0.5 * (xe[1:] + xe[:-1])
    pos = np.maximum(n, 0.0)
    mean = float((pos * centres).sum() / pos.sum()) if pos.sum() > 0 else cfg.z_mass
    m = Minuit(
        cost, dm=float(np.clip(mean - cfg.z_mass, *cfg.dm_bounds)) * 0.5, sigma=1.5, alpha=1.5
    )
    m.limits["dm"] = cfg.dm_bounds
    m.limits["sigma"] = cfg.sigma_bounds
    m.limits["alpha"] = cfg.alpha_bounds
    if fix_alpha is not None:
        m.values["alpha"] = float(np.clip(fix_alpha, *cfg.alpha_bounds))
        m.fixed["alpha"] = True
    m.migrad()
    if not m.valid:
        m.migrad()
    m.hesse()
    dm, sigma, alpha = (float(m.values[k]) for k in ("dm", "sigma", "alpha"))
    dens = _convolved(g, dm, sigma, alpha, cfg.cb_n)
    inside = (g.x >= xe[0]) & (g.x <= xe[-1])
    xi, fi = g.x[inside], dens[inside]
    k = int(np.argmax(fi))
    peak = float(xi[k])
    if 0 < k < len(fi) - 1:  # parabolic refinement of the mode
        den = fi[k - 1] - 2 * fi[k] + fi[k + 1]
        if den < 0:
            peak += 0.5 * g.step * float((fi[k - 1] - fi[k + 1]) / den)
    expected = n_events * np.diff(cdf(xe, dm, sigma, alpha))
    ok = expected > 0
    # Pearson χ² with the expected variance (weighted: times the mean weight Σw²/Σw)
    w_eff = 1.0
    if sumw2 is not None:
        w2_tot = float(np.asarray(sumw2, dtype=np.float64)[lo_i:hi_i].sum())
        w_eff = w2_tot / n_events if w2_tot > 0 else 1.0
    chi2 = float(np.sum((n[ok] - expected[ok]) ** 2 / (expected[ok] * w_eff)))
    ndf = max(int(ok.sum()) - 3, 1)
    dm_err = float(m.errors["dm"])
    return LineshapeFit(
        kind=kind,
        n_events=n_events,
        dm=dm,
        dm_err=dm_err,
        sigma=sigma,
        sigma_err=float(m.errors["sigma"]),
        alpha=alpha,
        alpha_err=float(m.errors["alpha"]),
        peak=peak,
        peak_err=dm_err,
        chi2_ndf=chi2 / ndf,
        valid=bool(m.valid),
        edges=xe,
        counts=n,
        model=expected,
    )


# ---------------------------------------------------------------------------- per region
@dataclass(frozen=True)
class LineshapeRow:
    """Lineshape fits of one region and what they imply, next to the template fit.

    Attributes:
        name: ``region_<i>_<i>`` or ``inclusive``.
        code: region code (``-1`` for inclusive).
        scale_category, smear_category: categories of the cell (``-1`` for inclusive).
        data, mc: the fits (``mc`` is ``None`` data-only).
        scale, scale_err: implied scale ``m_peak(MC)/m_peak(data)`` (data-only:
            ``M_Z/(M_Z + Δm)``).
        smear, smear_err: implied smearing (``nan`` data-only).
        template_scale, template_scale_err, template_smear, template_smear_err: the
            template-fit values of the cell's categories (``nan`` if not available).
    """

    name: str
    code: int
    scale_category: int
    smear_category: int
    data: LineshapeFit
    mc: LineshapeFit | None
    scale: float
    scale_err: float
    smear: float
    smear_err: float
    template_scale: float = math.nan
    template_scale_err: float = math.nan
    template_smear: float = math.nan
    template_smear_err: float = math.nan
    title: str = ""

    @staticmethod
    def _pull(a: float, ea: float, b: float, eb: float) -> float:
        err = math.hypot(ea, eb)
        return (a - b) / err if err > 0 and math.isfinite(a - b) else math.nan

    @property
    def scale_pull(self) -> float:
        """``(lineshape − template) / √(σ_ls² + σ_tpl²)`` for the scale."""
        return self._pull(self.scale, self.scale_err, self.template_scale, self.template_scale_err)

    @property
    def smear_pull(self) -> float:
        """``(lineshape − template) / √(σ_ls² + σ_tpl²)`` for the smearing."""
        return self._pull(self.smear, self.smear_err, self.template_smear, self.template_smear_err)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "name": self.name,
            "code": self.code,
            "scale_category": self.scale_category,
            "smear_category": self.smear_category,
            "data": self.data.to_dict(),
            "mc": self.mc.to_dict() if self.mc is not None else None,
            "peak_minus_pdg": self.data.peak - Z_MASS,
            **{
                k: _num(getattr(self, k))
                for k in (
                    "scale",
                    "scale_err",
                    "smear",
                    "smear_err",
                    "template_scale",
                    "template_scale_err",
                    "template_smear",
                    "template_smear_err",
                    "scale_pull",
                    "smear_pull",
                )
            },
        }


@dataclass(frozen=True)
class LineshapeResult:
    """All lineshape fits of a histogram set.

    Attributes:
        rows: one per fitted region (or one ``inclusive`` row).
        skipped: regions not fitted, with the reason.
        config: the settings.
        wall_time: seconds.
        template: the template fit compared with (its ``to_dict``), if any.
        outputs: files written.
    """

    rows: tuple[LineshapeRow, ...]
    skipped: tuple[dict[str, Any], ...]
    config: LineshapeConfig
    wall_time: float
    template: dict[str, Any] | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (the ``lineshape.json`` content)."""
        pulls = [
            abs(p) for r in self.rows for p in (r.scale_pull, r.smear_pull) if math.isfinite(p)
        ]
        return {
            "schema_version": 1,
            "method": "relativistic Breit-Wigner (PDG M_Z, Gamma_Z fixed) convolved with a "
            "Crystal Ball; binned Poisson likelihood (iminuit BinnedNLL)",
            "pdg": {"mass": self.config.z_mass, "width": self.config.z_width},
            "summary": {"max_abs_pull": max(pulls) if pulls else None, "n_rows": len(self.rows)},
            "rows": [r.to_dict() for r in self.rows],
            "skipped": list(self.skipped),
            "config": self.config.to_dict(),
            "template_fit": self.template,
            "wall_time_s": self.wall_time,
            "outputs": dict(self.outputs),
        }


def _implied(
    data: LineshapeFit, mc: LineshapeFit | None, cfg: LineshapeConfig
) -> tuple[float, float, float, float]:
    """``(scale, scale_err, smear, smear_err)`` implied by a data (and MC) fit."""
    if mc is None:
        loc = cfg.z_mass + data.dm
        return cfg.z_mass / loc, cfg.z_mass * data.dm_err / loc**2, math.nan, math.nan
    scale = mc.peak / data.peak
    scale_err = scale * math.hypot(mc.peak_err / mc.peak, data.peak_err / data.peak)
    delta = data.sigma**2 - mc.sigma**2
    d_err = 2.0 * math.hypot(data.sigma * data.sigma_err, mc.sigma * mc.sigma_err)
    m = data.peak

    def smear(d: float) -> float:
        return math.sqrt(2.0) * math.sqrt(max(0.0, d)) / m

    value = smear(delta)
    err = 0.5 * (smear(delta + d_err) - smear(delta - d_err))
    return scale, scale_err, value, err


def _window_sum(edges: FloatArray, values: FloatArray, window: tuple[float, float]) -> float:
    centres = 0.5 * (edges[1:] + edges[:-1])
    inside = (centres >= window[0]) & (centres < window[1])
    return float(values[inside].sum())


def _fit_rows(
    hset: HistogramSet, cfg: LineshapeConfig, template: Any | None
) -> tuple[list[LineshapeRow], list[dict[str, Any]]]:
    from zcalib.validation.plots import categories_title

    scheme = hset.scheme()
    n_cells = scheme.n_cells
    edges = hset.mass_edges
    has_mc = bool(hset.datasets_of("mc"))
    regions, data, _ = hset.region_arrays("data", cfg.data_variation)
    mc = mc2 = None
    if has_mc:
        _, mc, mc2 = hset.region_arrays("mc", cfg.mc_variation)
    groups: list[tuple[str, int, int, int, Sequence[int]]] = []
    if cfg.mode == "inclusive":
        groups.append(("inclusive", -1, -1, -1, list(range(len(regions)))))
    else:
        cs, cm = scheme.cell_scale_index(), scheme.cell_smear_index()
        for r, code in enumerate(regions):
            i, j = region_pair(int(code), n_cells)
            if i == j:
                groups.append((f"region_{i}_{i}", int(code), int(cs[i]), int(cm[i]), [r]))
    rows: list[LineshapeRow] = []
    skipped: list[dict[str, Any]] = []
    for name, code, sc, sm, idx in groups:
        d = data[idx].sum(axis=0)
        n_d = _window_sum(edges, d, cfg.window)
        why = ""
        if n_d < cfg.min_events:
            why = f"data {n_d:g} < min_events {cfg.min_events:g}"
        m = m2 = None
        if mc is not None and mc2 is not None and not why:
            m = mc[idx].sum(axis=0)
            m2 = mc2[idx].sum(axis=0)
            w, w2 = _window_sum(edges, m, cfg.window), _window_sum(edges, m2, cfg.window)
            n_eff = w * w / w2 if w2 > 0 else 0.0
            if n_eff < cfg.min_events:
                why = f"MC effective entries {n_eff:.0f} < min_events {cfg.min_events:g}"
        if why:
            skipped.append({"name": name, "code": code, "reason": why})
            continue
        fit_m = fit_lineshape(edges, m, m2, cfg, kind="mc") if m is not None else None
        fix = fit_m.alpha if (fit_m is not None and cfg.alpha_from_mc) else None
        fit_d = fit_lineshape(edges, d, None, cfg, kind="data", fix_alpha=fix)
        for f in (fit_d, fit_m):
            if f is not None and not f.valid:
                log.warning(
                    "lineshape fit of %s (%s) did not converge (Minuit invalid)", name, f.kind
                )
        scale, scale_err, smear, smear_err = _implied(fit_d, fit_m, cfg)
        tpl: dict[str, float] = {}
        if template is not None and sc >= 0:
            cs_fit, cm_fit = template.scales[sc], template.smears[sm]
            tpl = {
                "template_scale": cs_fit.value,
                "template_scale_err": cs_fit.total_stat,
                "template_smear": cm_fit.value,
                "template_smear_err": cm_fit.total_stat,
            }
        rows.append(
            LineshapeRow(
                name=name,
                title=categories_title(scheme.scale[sc], scheme.smear[sm])
                if sc >= 0
                else "all pairs",
                code=code,
                scale_category=sc,
                smear_category=sm,
                data=fit_d,
                mc=fit_m,
                scale=scale,
                scale_err=scale_err,
                smear=smear,
                smear_err=smear_err,
                **tpl,
            )
        )
    return rows, skipped


def run_lineshape(
    hset: HistogramSet,
    out_dir: str | Path | None = None,
    *,
    config: LineshapeConfig | None = None,
    template: Any | None = None,
    compare_template: bool = True,
    plots: bool = True,
    max_plots: int | None = None,
) -> LineshapeResult:
    """Fit the lineshapes, compare with the template fit, write ``lineshape.json`` and plots.

    Args:
        hset: histograms (data, and MC for the scale/smearing comparison).
        out_dir: where to write ``lineshape.json`` and ``plots/lineshape/*.png`` (nothing is
            written when ``None``).
        config: settings.
        template: a :class:`~zcalib.fit.FitResult` of the same histograms; computed with
            the default :class:`~zcalib.fit.FitConfig` when ``None``, MC is present and
            ``compare_template`` is set.
        compare_template: compare with the template fit.
        plots: draw one PNG per fitted region.
        max_plots: draw at most this many regions.

    Returns:
        The :class:`LineshapeResult`.

    Raises:
        InputError: no data in the histograms.
        InvalidConfig: unknown variation.
        FitError: no region has enough events.

    Example:
        >>> # res = run_lineshape(load_histograms("hists.npz"), "output/step")
        >>> # [(r.name, r.scale, r.template_scale) for r in res.rows]
    """
    t0 = time.perf_counter()
    cfg = config or LineshapeConfig()
    if not hset.datasets_of("data"):
        msg = f"lineshape: the histograms hold no data dataset (kinds: {hset.kinds})"
        raise InputError(msg)
    for kind, var in (("data", cfg.data_variation), ("mc", cfg.mc_variation)):
        if hset.datasets_of(kind) and var not in hset.variations:
            msg = (
                f"lineshape config: {kind} variation {var!r} not in the histograms; "
                f"available: {', '.join(hset.variations)}"
            )
            raise InvalidConfig(msg)
    if template is None and compare_template and hset.datasets_of("mc"):
        from zcalib.fit import FitConfig, fit_histograms

        template = fit_histograms(
            hset, FitConfig(), data_variation=cfg.data_variation, mc_variation=cfg.mc_variation
        )
    rows, skipped = _fit_rows(hset, cfg, template if compare_template else None)
    if skipped:
        log.warning(
            "lineshape: %d region(s) not fitted: %s",
            len(skipped),
            "; ".join(f"{s['name']}: {s['reason']}" for s in skipped),
        )
    if not rows:
        msg = (
            f"lineshape: no region has at least {cfg.min_events:g} events in the window "
            f"{cfg.window}; nothing fitted"
        )
        raise FitError(msg)
    result = LineshapeResult(
        rows=tuple(rows),
        skipped=tuple(skipped),
        config=cfg,
        wall_time=time.perf_counter() - t0,
        template=template.to_dict() if template is not None and compare_template else None,
    )
    if out_dir is None:
        return result
    out = Path(out_dir)
    outputs: dict[str, str] = {}
    if plots:
        files = [
            plot_row(r, out / "plots" / "lineshape" / f"{r.name}.png")
            for r in rows[: max_plots if max_plots is not None else len(rows)]
        ]
        outputs["plots"] = ", ".join(str(f) for f in files)
    outputs["lineshape"] = str(out / "lineshape.json")
    result = dataclasses.replace(result, outputs=outputs, wall_time=time.perf_counter() - t0)
    atomic_write_text(
        out / "lineshape.json",
        json.dumps(stamp(result.to_dict()), indent=2, allow_nan=False) + "\n",
    )
    return result


def _coarsen(edges: FloatArray, *arrays: FloatArray, width: float) -> tuple[FloatArray, ...]:
    """Sum groups of adjacent bins to about ``width`` GeV (for display)."""
    k = max(1, round(width / float(np.median(np.diff(edges)))))
    n = (len(edges) - 1) // k * k
    out: list[FloatArray] = [np.asarray(edges[: n + 1 : k], dtype=np.float64)]
    for a in arrays:
        out.append(np.asarray(a[:n].reshape(-1, k).sum(axis=1), dtype=np.float64))
    return tuple(out)


def plot_row(row: LineshapeRow, path: str | Path, *, display_bin: float = 0.5) -> Path:
    """Draw the data (and MC) histogram with its fitted lineshape as a PNG file.

    Args:
        row: the fitted region.
        path: the PNG file.
        display_bin: bin width of the drawing [GeV] (the fit uses the fine bins).

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.5))
    ax = fig.add_subplot()
    for fit, colour, label in ((row.data, "black", "data"), (row.mc, "tab:blue", "MC")):
        if fit is None:
            continue
        edges, counts, model = _coarsen(fit.edges, fit.counts, fit.model, width=display_bin)
        centres = 0.5 * (edges[1:] + edges[:-1])
        widths = np.diff(edges)
        norm = row.data.n_events / fit.n_events
        dens = counts * norm / widths
        if fit.kind == "data":
            ax.errorbar(
                centres,
                dens,
                yerr=np.sqrt(np.maximum(counts, 0)) / widths,
                fmt="o",
                ms=2,
                color=colour,
                label=label,
            )
        else:
            ax.stairs(dens, edges, color=colour, alpha=0.5, label=label)
        ax.plot(
            centres,
            model * norm / widths,
            color=colour,
            lw=1.2,
            label=f"{label} fit: peak {fit.peak:.2f} GeV, σ {fit.sigma:.2f} GeV",
        )
    ax.axvline(Z_MASS, color="grey", ls=":", lw=1, label="PDG $m_Z$")
    ax.set_xlabel("$m_{ll}$ [GeV]")
    ax.set_ylabel("events / GeV (MC normalised to data)")
    title = row.title or row.name
    if math.isfinite(row.template_scale):
        title += f"  scale {row.scale:.4f}±{row.scale_err:.4f} (template {row.template_scale:.4f})"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    p = Path(path)
    with atomic_open(p, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80, metadata={"zcalib run": current_run_id()})
    return p
