"""One-dimensional NLL scans of the fitted scales and smearings (pymin ``--plot``/``--scan-nll``).

For each fitted parameter the likelihood of the fit (:class:`zcalib.fit.FitProblem`: the
same regions, window, binning and template model as the fit) is evaluated on a grid around
the minimum and drawn with the parabola of the exact Hessian,
``ΔNLL = ½ (θ − θ̂)² / σ_θ²``, where ``θ`` is the fit's internal parameter
(``x = −log scale`` for scales, ``v = smear²`` for smearings), so the parabola is the exact
second-order expansion even for a smearing at zero. The x axis shows the user-facing value
(scale, or smearing σ).

Two modes:

* ``fixed`` (default, as pymin): the other parameters stay at the minimum; the parabola
  uses the conditional error ``σ_θ² = 1/H_pp``.
* ``profiled``: the other parameters are re-minimised at every point (L-BFGS-B on the exact
  gradient, warm-started along the scan); the parabola uses the marginal error
  ``σ_θ² = (H⁻¹)_pp``, the fit's statistical error.

Both use the data-statistics likelihood only (the MC-statistics part of the fit's error is
not in the NLL). Where the scan crosses ``ΔNLL = ½`` is reported next to the Hessian error,
a direct check of the quoted uncertainties.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray
from scipy.optimize import minimize

from zcalib._atomic import atomic_write_text
from zcalib.categories import CategoryScheme
from zcalib.exceptions import FitError, InvalidConfig
from zcalib.fit import FitConfig, FitProblem, FitResult
from zcalib.histograms import HistogramSet
from zcalib.outputs import stamp
from zcalib.validation.plots import cms_style, save_figure

__all__ = [
    "NllScan",
    "ScanRun",
    "fit_for_scans",
    "nll_scans",
    "objective_minimum",
    "plot_scan",
    "plot_scans_overview",
    "run_scans",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Mode = Literal["fixed", "profiled"]


@dataclass(frozen=True)
class NllScan:
    """A 1D NLL scan of one parameter.

    Attributes:
        parameter: parameter name (``scale[3]``, ``smear[0]``).
        label: category label.
        kind: ``scale`` or ``smear``.
        mode: ``fixed`` or ``profiled``.
        values: scanned values (scale, or smearing σ), increasing.
        dnll: ``NLL − NLL(θ̂)`` at each value.
        parabola: ``½ (θ − θ̂)² / σ_θ²`` at each value.
        best: fitted value.
        sigma: Hessian error in user units (conditional for ``fixed``, marginal for
            ``profiled``).
        crossing: values where the scan crosses ``ΔNLL = ½`` below and above ``best``
            (``None`` when the scan does not reach ½ on that side).
    """

    parameter: str
    label: str
    kind: Literal["scale", "smear"]
    mode: Mode
    values: FloatArray
    dnll: FloatArray
    parabola: FloatArray
    best: float
    sigma: float
    crossing: tuple[float | None, float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf as ``None``)."""

        def num(v: float | None) -> float | None:
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "parameter": self.parameter,
            "label": self.label,
            "kind": self.kind,
            "mode": self.mode,
            "best": num(self.best),
            "sigma_hessian": num(self.sigma),
            "scan_lo": num(self.crossing[0]),
            "scan_hi": num(self.crossing[1]),
            "values": [num(float(v)) for v in self.values],
            "dnll": [num(float(v)) for v in self.dnll],
            "parabola": [num(float(v)) for v in self.parabola],
        }


def _to_user(kind: str, theta: FloatArray) -> FloatArray:
    out: FloatArray = np.exp(-theta) if kind == "scale" else np.sqrt(np.maximum(theta, 0.0))
    return out


def _user_sigma(kind: str, theta_hat: float, sigma_theta: float) -> float:
    if not math.isfinite(sigma_theta):
        return math.nan
    if kind == "scale":
        return math.exp(-theta_hat) * sigma_theta
    v = max(theta_hat, 0.0)
    return 0.5 * (math.sqrt(v + sigma_theta) - math.sqrt(max(v - sigma_theta, 0.0)))


def _crossings(u: FloatArray, dnll: FloatArray, best: float) -> tuple[float | None, float | None]:
    """Where the scan crosses ½ on each side of its minimum (linear interpolation)."""
    k = int(np.argmin(dnll))
    lo = hi = None
    for j in range(k, 0, -1):
        if dnll[j - 1] >= 0.5 > dnll[j]:
            t = (0.5 - dnll[j]) / (dnll[j - 1] - dnll[j])
            lo = float(u[j] + t * (u[j - 1] - u[j]))
            break
    for j in range(k, len(u) - 1):
        if dnll[j + 1] >= 0.5 > dnll[j]:
            t = (0.5 - dnll[j]) / (dnll[j + 1] - dnll[j])
            hi = float(u[j] + t * (u[j + 1] - u[j]))
            break
    del best
    return lo, hi


def _profile(
    problem: FitProblem, theta: FloatArray, p: int, step: FloatArray
) -> tuple[float, FloatArray]:
    """Minimum of the NLL over every parameter but ``p`` (held at ``theta[p]``)."""
    free = np.array([i for i in range(problem.n_params) if i != p], dtype=np.int64)
    if free.size == 0:
        return problem.nll(theta), theta
    base = theta.copy()
    s = step[free]

    def fun(y: FloatArray) -> tuple[float, FloatArray]:
        th = base.copy()
        th[free] = base[free] + s * y
        f, g = problem.nll_grad(th)
        return f, g[free] * s

    lo = (problem.lower[free] - base[free]) / s
    hi = (problem.upper[free] - base[free]) / s
    res = minimize(
        fun,
        np.zeros(free.size),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lo, hi, strict=True)),
        options={"ftol": 1e-14, "gtol": 1e-8, "maxiter": 500},
    )
    out = base.copy()
    out[free] = np.clip(base[free] + s * res.x, problem.lower[free], problem.upper[free])
    return float(res.fun), out


def nll_scans(
    problem: FitProblem,
    theta_hat: Sequence[float] | FloatArray,
    *,
    labels: Sequence[str] | None = None,
    n_points: int = 31,
    n_sigma: float = 3.0,
    mode: Mode = "fixed",
    parameters: Sequence[str] | None = None,
) -> list[NllScan]:
    """Scan the NLL of ``problem`` around ``theta_hat``, one parameter at a time.

    Args:
        problem: the fit's problem (:func:`zcalib.fit.build_problem`).
        theta_hat: the minimum in internal parameters (``problem.theta_from_values``).
        labels: one label per parameter (default: the parameter names).
        n_points: grid points per scan (odd numbers include the minimum).
        n_sigma: half-width of the scan in Hessian errors of ``θ``.
        mode: ``fixed`` (others at the minimum) or ``profiled`` (others re-minimised).
        parameters: names of the parameters to scan (default: all).

    Returns:
        One :class:`NllScan` per parameter, in ``problem.names`` order.

    Raises:
        InvalidConfig: bad ``n_points``/``n_sigma``/``mode`` or unknown parameter names.
        FitError: non-finite NLL.

    Example:
        >>> # scans = nll_scans(problem, problem.theta_from_values(res.scale_values(),
        >>> #                                                        res.smear_values()))
    """
    if n_points < 3:
        msg = f"n_points must be >= 3, got {n_points}"
        raise InvalidConfig(msg)
    if not n_sigma > 0:
        msg = f"n_sigma must be > 0, got {n_sigma}"
        raise InvalidConfig(msg)
    if mode not in ("fixed", "profiled"):
        msg = f"scan mode {mode!r} unknown; allowed: fixed, profiled"
        raise InvalidConfig(msg)
    names = problem.names
    wanted = list(names) if parameters is None else list(parameters)
    unknown = [w for w in wanted if w not in names]
    if unknown:
        msg = f"cannot scan {unknown}: fitted parameters are {', '.join(names)}"
        raise InvalidConfig(msg)
    th_hat = np.asarray(theta_hat, dtype=np.float64)
    nll0, _, hess = problem.hessian(th_hat)
    diag = np.diag(hess)
    cond = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), np.nan)
    marg = np.full(len(names), np.nan)
    if mode == "profiled":
        try:
            marg = np.sqrt(np.abs(np.diag(np.linalg.inv(hess))))
        except np.linalg.LinAlgError:
            log.warning("Hessian is singular: profiled scans are drawn without parabolas")
    sig_theta = cond if mode == "fixed" else marg
    step = np.where(np.isfinite(cond), cond, 1e-4)
    ns = len(problem.free_scale)
    scans = []
    for p, name in enumerate(names):
        if name not in wanted:
            continue
        kind: Literal["scale", "smear"] = "scale" if p < ns else "smear"
        width = n_sigma * (sig_theta[p] if math.isfinite(sig_theta[p]) else step[p])
        lo = max(problem.lower[p], th_hat[p] - width)
        hi = min(problem.upper[p], th_hat[p] + width)
        grid = np.linspace(lo, hi, n_points)
        dnll = np.empty(n_points)
        if mode == "fixed":
            for k, t in enumerate(grid):
                th = th_hat.copy()
                th[p] = t
                dnll[k] = problem.nll(th) - nll0
        else:
            centre = int(np.argmin(np.abs(grid - th_hat[p])))
            for order in (range(centre, n_points), range(centre - 1, -1, -1)):
                start = th_hat.copy()
                for k in order:
                    start[p] = grid[k]
                    val, start = _profile(problem, start, p, step)
                    dnll[k] = val - nll0
        with np.errstate(divide="ignore", invalid="ignore"):
            parabola = 0.5 * (grid - th_hat[p]) ** 2 / sig_theta[p] ** 2
        u = _to_user(kind, grid)
        order_u = np.argsort(u)
        u, dnll_u, par_u = u[order_u], dnll[order_u], parabola[order_u]
        best = float(_to_user(kind, np.array([th_hat[p]]))[0])
        scans.append(
            NllScan(
                parameter=name,
                label=labels[p] if labels is not None else name,
                kind=kind,
                mode=mode,
                values=u,
                dnll=dnll_u,
                parabola=par_u,
                best=best,
                sigma=_user_sigma(kind, float(th_hat[p]), float(sig_theta[p])),
                crossing=_crossings(u, dnll_u, best),
            )
        )
    return scans


def plot_scan(scan: NllScan, *, exp_text: str = "Work in progress") -> Figure:
    """Draw one scan: ΔNLL points, the Hessian parabola, 1σ/2σ lines and the fitted value.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    import mplhep as hep
    from matplotlib import style as mstyle

    with mstyle.context(cms_style()):
        fig = Figure(figsize=(9, 7.5))
        ax = fig.add_subplot()
        _draw_scan(ax, scan, legend=True)
        hep.cms.label(
            text=exp_text,
            data=True,
            rlabel=f"NLL scan ({scan.mode})",
            ax=ax,
            loc=0,
            scilocator_adjust=False,
        )
    return fig


def _decimals(sigma: float) -> int:
    """Decimals that show ``sigma`` with two significant digits."""
    if not (math.isfinite(sigma) and sigma > 0):
        return 5
    return max(0, 1 - math.floor(math.log10(sigma)))


def _draw_scan(ax: Any, scan: NllScan, *, legend: bool, small: bool = False) -> None:
    fs = 11 if small else 22
    ax.plot(
        scan.values,
        scan.dnll,
        "o-",
        color="black",
        markersize=3 if small else 5,
        linewidth=1,
        label="NLL scan",
    )
    if np.isfinite(scan.parabola).any():
        ax.plot(
            scan.values,
            scan.parabola,
            "--",
            color="#e42536",
            linewidth=1.8,
            label=r"Hessian: $\frac{1}{2}(\theta-\hat\theta)^2/\sigma_\theta^2$",
        )
    for level, text in ((0.5, r"1$\sigma$"), (2.0, r"2$\sigma$")):
        ax.axhline(level, color="0.5", linewidth=0.8, linestyle=":")
        if not small:
            ax.text(
                scan.values[-1],
                level,
                f" {text}",
                va="center",
                ha="left",
                fontsize=13,
                color="0.4",
                clip_on=False,
            )
    ax.axvline(scan.best, color="#5790fc", linewidth=1)
    top = float(np.nanmax(np.concatenate([scan.dnll, [2.5]])))
    ax.set_ylim(-0.05 * top, 1.3 * top)
    ax.set_xlim(scan.values[0], scan.values[-1])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(4 if small else 5))
    name = "scale" if scan.kind == "scale" else r"smearing $\sigma$"
    ax.set_xlabel(name, fontsize=fs)
    ax.set_ylabel(r"$\Delta$NLL", fontsize=fs)
    k = _decimals(scan.sigma)
    lines = [scan.label, f"fit: {scan.best:.{k}f} ± {scan.sigma:.{k}f} (Hessian)"]
    lo, hi = scan.crossing
    if lo is not None and hi is not None:
        lines.append(f"scan (ΔNLL = ½): −{scan.best - lo:.{k}f} / +{hi - scan.best:.{k}f}")
    if not small:
        ax.text(
            0.04,
            0.95,
            "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=15,
            linespacing=1.5,
        )
    if legend:
        ax.legend(loc="upper right", fontsize=14, frameon=False)
    if small:
        ax.minorticks_off()
        ax.tick_params(labelsize=9)
        ax.xaxis.get_offset_text().set_fontsize(9)


def plot_scans_overview(scans: Sequence[NllScan], *, columns: int = 4) -> Figure:
    """All scans of a fit in one grid of small panels.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    from matplotlib import style as mstyle

    n = max(1, len(scans))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    with mstyle.context(cms_style()):
        fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        height = 3.4 * rows
        fig.subplots_adjust(
            left=0.05,
            right=0.98,
            bottom=0.55 / height,
            top=1 - 0.75 / height,
            wspace=0.28,
            hspace=0.6,
        )
        for k, ax in enumerate(axes.ravel()):
            if k >= len(scans):
                ax.set_axis_off()
                continue
            _draw_scan(ax, scans[k], legend=False, small=True)
            ax.set_title(scans[k].label, fontsize=11)
        fig.suptitle(
            f"NLL scans ({scans[0].mode if scans else 'fixed'}); dashed: Hessian parabola",
            fontsize=13,
        )
    return fig


@dataclass(frozen=True)
class ScanRun:
    """What :func:`run_scans` produced.

    Attributes:
        result: the fit the scans are centred on.
        scans: the scans.
        summary: the ``scans.json`` content.
        paths: files written (``scans.json``, overview and one PNG per parameter).
        figures: the figures (only with ``keep_figures``), by parameter name and
            ``"overview"``.
    """

    result: FitResult
    scans: list[NllScan]
    summary: dict[str, Any]
    paths: list[Path]
    figures: dict[str, Figure] = field(default_factory=dict, repr=False)


def objective_minimum(result: FitResult, problem: FitProblem) -> FloatArray:
    """The minimum of the fit's objective in internal parameters, where its scans centre.

    The reported values are that minimum minus the template-noise bias
    (``FitConfig.template_bias``), so the scans are taken about the minimum itself.
    """
    theta = problem.theta_from_values(result.scale_values(), result.smear_values())
    if result.template_bias.size == theta.size:
        theta = theta + result.template_bias
    return theta


def fit_for_scans(
    hset: HistogramSet,
    config: FitConfig | None = None,
    *,
    scheme: CategoryScheme | None = None,
) -> tuple[FitResult, FitProblem, CategoryScheme]:
    """Fit the histograms exactly as :func:`zcalib.fit.fit_histograms` and keep the problem
    (pass both to :func:`run_scans` as ``fitted`` to scan without fitting again).

    Raises:
        FitError: as :func:`zcalib.fit.fit_histograms`.
    """
    import time

    from zcalib.fit.fitter import fit_problem, problem_from_histograms

    cfg = config or FitConfig()
    t0 = time.perf_counter()
    problem, sch = problem_from_histograms(hset, cfg, scheme=scheme)
    result = fit_problem(
        problem,
        cfg,
        scale_labels=[c.label() for c in sch.scale],
        smear_labels=[c.label() for c in sch.smear],
        t_start=t0,
        t_setup=time.perf_counter() - t0,
    )
    return result, problem, sch


def run_scans(
    hset: HistogramSet,
    out_dir: str | Path,
    *,
    config: FitConfig | None = None,
    scheme: CategoryScheme | None = None,
    n_points: int = 31,
    n_sigma: float = 3.0,
    mode: Mode = "fixed",
    parameters: Sequence[str] | None = None,
    keep_figures: bool = False,
    fitted: tuple[FitResult, FitProblem] | None = None,
) -> ScanRun:
    """Fit, scan every fitted parameter, write PNGs and ``scans.json`` into ``out_dir``.

    Args:
        hset: the pair-mass histograms.
        out_dir: output folder.
        config: fit settings (the scans use the same likelihood).
        scheme: categories to check the histograms against.
        n_points: grid points per scan.
        n_sigma: half-width of the scans in Hessian errors.
        mode: ``fixed`` or ``profiled``.
        parameters: names of the parameters to scan (``scale[0]``...; default: all).
        keep_figures: return the figures (tests).
        fitted: the fit of ``hset`` with ``config`` and its problem, from
            :func:`fit_for_scans` (default: fit here).

    Returns:
        The :class:`ScanRun`.

    Raises:
        FitError: the fit cannot be set up, or did not converge (scans around a point
            that is not a minimum are meaningless).
    """
    if fitted is None:
        result, problem, _ = fit_for_scans(hset, config, scheme=scheme)
    else:
        result, problem = fitted
    if not result.converged:
        msg = f"no NLL scans: the fit did not converge ({result.message})"
        raise FitError(msg)
    theta = objective_minimum(result, problem)
    labels = [c.label for c in result.scales if c.index in problem.free_scale] + [
        c.label for c in result.smears if c.index in problem.free_smear
    ]
    scans = nll_scans(
        problem,
        theta,
        labels=labels,
        n_points=n_points,
        n_sigma=n_sigma,
        mode=mode,
        parameters=parameters,
    )
    out = Path(out_dir)
    paths: list[Path] = []
    figures: dict[str, Figure] = {}
    records = []
    for s in scans:
        fig = plot_scan(s)
        fname = f"scan_{s.parameter.replace('[', '_').replace(']', '')}.png"
        paths.append(save_figure(fig, out / fname, dpi=80))
        if keep_figures:
            figures[s.parameter] = fig
        records.append({**s.to_dict(), "file": fname})
    overview = plot_scans_overview(scans)
    paths.append(save_figure(overview, out / "nll_scans.png", dpi=90, tight=False))
    if keep_figures:
        figures["overview"] = overview
    summary = {
        "schema_version": 1,
        "kind": "zcalib-nll-scans",
        "mode": mode,
        "n_points": n_points,
        "n_sigma": n_sigma,
        "note": (
            "ΔNLL of the fit's data likelihood; fixed: other parameters at the minimum "
            "(conditional Hessian error); profiled: others re-minimised (marginal error)"
        ),
        "fit": {"status": result.status, "nll": result.nll, "message": result.message},
        "scans": records,
    }
    paths.insert(0, atomic_write_text(out / "scans.json", json.dumps(stamp(summary), indent=2)))
    log.info("wrote %d NLL scans (%s) to %s", len(scans), mode, out)
    return ScanRun(result=result, scans=scans, summary=summary, paths=paths, figures=figures)
