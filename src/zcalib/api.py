"""The public Python API: one call per pipeline stage, each returning an immutable result.

=====================================  ==============================================
call                                   returns
=====================================  ==============================================
:func:`load_datasets`                  :class:`~zcalib.config.DatasetConfig`
:func:`histograms`                     :class:`Histograms` (the filled ``HistogramSet``)
:func:`load_histograms`                :class:`Histograms` (from a saved ``.npz``)
:func:`fit`                            :class:`Fit` (the :class:`~zcalib.fit.FitResult`)
:func:`validate`                       :class:`Validation` (needs :mod:`zcalib.validation`)
:func:`write_corrections`              :class:`Corrections` (correctionlib + legacy files)
:func:`calibrate`                      :class:`Calibration` (all of the above at once)
:func:`run_step`                       :class:`StepRun` (fill → fit → write of one step)
=====================================  ==============================================

:func:`run_step` is the one orchestration of a derivation step (fill or given histograms →
fit → smooth curves → systematics → payload, legacy files, ``fit_result.json``): ``zcalib
fit``, ``zcalib demo``, the pipeline's fit and closure steps and :func:`calibrate` all call it.

Every result is a frozen dataclass; notebooks display it as a table (``_repr_html_``) and
``.plot()`` returns a :class:`matplotlib.figure.Figure` (made without ``pyplot``, so no global
figure state is touched). What is calibrated comes from one immutable
:class:`~zcalib.calibration.CalibrationConfig`.

The package root re-exports these under names that do not clash with its sub-packages:
``zcalib.fill_histograms`` is :func:`histograms` and ``zcalib.run_fit`` is :func:`fit`.

Example:
    >>> from zcalib import api
    >>> from zcalib.categories import Category, build_scheme
    >>> from zcalib.fit import synthetic_histograms
    >>> scheme = build_scheme([Category("scale", 0, eta=(0.0, 1.4442)),
    ...                        Category("scale", 1, eta=(1.566, 2.5))], [])
    >>> hset = synthetic_histograms(scheme, n_data=40_000, n_mc=80_000, seed=1,
    ...                             scales=[1.01, 0.99], smears=[0.01])
    >>> fitted = api.fit(hset)
    >>> fitted.converged, [round(s, 2) for s in fitted.scales]
    (True, [1.01, 0.99])
    >>> "<table>" in fitted._repr_html_()
    True
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from zcalib.calibration import CalibrationConfig
from zcalib.config import DatasetConfig
from zcalib.corrections.egm import EgmNames
from zcalib.exceptions import InvalidConfig, ZcalibError
from zcalib.outputs import stamp

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from zcalib.categories import CategoryScheme
    from zcalib.derive import StepSyst
    from zcalib.fit.config import FitConfig
    from zcalib.fit.result import CategoryFit, FitResult
    from zcalib.fit.smooth import SmoothForm, SmoothResult
    from zcalib.histograms import HistogramSet
    from zcalib.processors.zee import CorrectionStep, WeightSpec
    from zcalib.runner import EventLoop, RunOptions
    from zcalib.validation.systematics import SystematicsConfig

__all__ = [
    "Applied",
    "Calibration",
    "Corrections",
    "Fit",
    "Histograms",
    "StepRun",
    "Validation",
    "apply",
    "calibrate",
    "datasets_from_files",
    "fit",
    "fit_table",
    "histograms",
    "load_datasets",
    "load_histograms",
    "run_step",
    "shipped_payload",
    "validate",
    "write_corrections",
]

log = logging.getLogger(__name__)


# =========================================================================== html helpers
def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: float, digits: int = 5) -> str:
    return f"{v:.{digits}f}" if math.isfinite(v) else "—"


# =========================================================================== datasets
def load_datasets(path: str | Path) -> DatasetConfig:
    """Load and validate a dataset description YAML (files checked to exist).

    Raises:
        InvalidConfig: malformed YAML, unknown or invalid fields, missing files.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "data.root").write_bytes(b"")
        >>> _ = (d / "datasets.yaml").write_text(
        ...     "format: nanoaod\\ndatasets:\\n  - {name: data, kind: data, files: [data.root]}\\n")
        >>> load_datasets(d / "datasets.yaml").format
        'nanoaod'
    """
    from zcalib.config import load_dataset_config

    return load_dataset_config(path)


def datasets_from_files(
    *,
    data: Sequence[str | Path] = (),
    mc: Sequence[str | Path] = (),
    config: CalibrationConfig | None = None,
) -> DatasetConfig:
    """A dataset description with datasets ``data`` and ``mc`` in the format of ``config``.

    Raises:
        InvalidConfig: no files, or a file does not exist.
    """
    cfg = config if config is not None else CalibrationConfig()
    return cfg.dataset_config(data=[str(f) for f in data], mc=[str(f) for f in mc])


def shipped_payload(name: str = "pileup_demo.json") -> Path:
    """A correctionlib payload shipped with zcalib (``corrections/`` in the repository).

    Raises:
        InvalidConfig: no such payload.

    Example:
        >>> shipped_payload().name
        'pileup_demo.json'
    """
    from zcalib.derive import _shipped

    return _shipped(name)


# =========================================================================== histograms
@dataclass(frozen=True, repr=False)
class Histograms:
    """Filled pair-mass histograms (a :class:`~zcalib.histograms.HistogramSet`) for display.

    Attributes:
        hset: the histograms, categories, cutflow and provenance.
        config: the calibration configuration they were filled with (``None`` when loaded
            from a file without one).
    """

    hset: HistogramSet
    config: CalibrationConfig | None = None

    def __repr__(self) -> str:
        kinds = ", ".join(f"{d}={self.hset.kinds.get(d, '?')}" for d in self.datasets)
        return (
            f"Histograms(datasets=[{kinds}], variations={self.variations}, "
            f"regions={len(self.hset.regions)})"
        )

    @property
    def datasets(self) -> list[str]:
        """Dataset names."""
        return self.hset.datasets

    @property
    def variations(self) -> list[str]:
        """Variations filled (all in one pass)."""
        return self.hset.variations

    @property
    def cutflow(self) -> Mapping[str, Mapping[str, int]]:
        """``{dataset: {cut: events}}`` (read-only view)."""
        return MappingProxyType({k: MappingProxyType(v) for k, v in self.hset.cutflow.items()})

    def scheme(self) -> CategoryScheme:
        """The category scheme the histograms were filled with."""
        return self.hset.scheme()

    def save(self, path: str | Path) -> Path:
        """Write the histograms to ``path`` (``.npz``, loads without unpickling)."""
        from zcalib.histograms import save_histograms

        return save_histograms(self.hset, path)

    def summary(self) -> dict[str, Any]:
        """Counts per dataset and the filling provenance, as a plain dict."""
        mb = self.hset.binning
        run = self.hset.metadata.get("run", {})
        per_ds = []
        for ds in self.datasets:
            cf = self.hset.cutflow.get(ds, {})
            per_ds.append(
                {
                    "dataset": ds,
                    "kind": self.hset.kinds.get(ds, "?"),
                    "events": cf.get("all"),
                    "selected": cf.get("mass", list(cf.values())[-1] if cf else None),
                }
            )
        return {
            "datasets": per_ds,
            "variations": self.variations,
            "regions": len(self.hset.regions),
            "mass_bins": mb.n_bins,
            "mass_range": (float(self.hset.mass_edges[0]), float(self.hset.mass_edges[-1])),
            "categories": (
                len(self.hset.categories.get("scale", [])),
                len(self.hset.categories.get("smear", [])),
            ),
            "executor": run.get("executor"),
            "workers": run.get("workers"),
            "fill_s": run.get("wall_time_fill_s"),
        }

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = [(d["dataset"], d["kind"], d["events"], d["selected"]) for d in s["datasets"]]
        fill = s["fill_s"]
        lo, hi = s["mass_range"]
        info = (
            f"{s['categories'][0]} scale / {s['categories'][1]} smear categories, "
            f"{s['regions']} pair regions, {s['mass_bins']} mass bins in [{lo:g}, {hi:g}] GeV; "
            f"variations: {', '.join(s['variations'])}"
        )
        if fill is not None:
            info += f"; filled in {fill:.1f} s ({s['executor']}, {s['workers']} worker(s))"
        return (
            "<div><strong>Histograms</strong><p>"
            + html.escape(info)
            + "</p>"
            + _table(("dataset", "kind", "events", "selected pairs"), rows)
            + "</div>"
        )

    def plot(
        self,
        *,
        region: int | tuple[int, int] | None = None,
        variation: str | None = None,
        rebin: int = 20,
    ) -> Figure:
        """Data and MC (normalised to data) pair-mass distributions, with their ratio.

        Args:
            region: a region code or a cell pair ``(i, j)``; default: all regions summed.
            variation: variation plotted; default: the configuration's fit variations
                (``nominal``).
            rebin: fine mass bins merged per plotted bin.

        Returns:
            A matplotlib figure (not registered with ``pyplot``).
        """
        import numpy as np
        from matplotlib.figure import Figure

        if rebin < 1:
            msg = f"rebin must be >= 1, got {rebin}"
            raise InvalidConfig(msg)
        hset = self.hset
        if variation is not None:
            data_var = mc_var = variation
        elif self.config is not None:
            data_var, mc_var = self.config.fit_variations(hset)
        else:
            data_var = mc_var = "nominal"
        edges = hset.mass_edges
        n = (len(edges) - 1) // rebin * rebin
        coarse = edges[: n + 1 : rebin]
        curves = {}
        for kind, var in (("data", data_var), ("mc", mc_var)):
            regions, sumw, sumw2 = hset.region_arrays(kind, var)
            if region is not None:
                code = _region_code(region, hset)
                rows = regions == code
                if not rows.any():
                    msg = f"region {region} is not in the histograms"
                    raise InvalidConfig(msg)
                sumw, sumw2 = sumw[rows], sumw2[rows]
            w = sumw.sum(axis=0)[:n].reshape(-1, rebin).sum(axis=1)
            w2 = sumw2.sum(axis=0)[:n].reshape(-1, rebin).sum(axis=1)
            curves[kind] = (w, w2)
        d, d2 = curves["data"]
        m, m2 = curves["mc"]
        norm = d.sum() / m.sum() if m.sum() > 0 else 1.0
        m, m2 = m * norm, m2 * norm**2
        centres = 0.5 * (coarse[1:] + coarse[:-1])
        fig = Figure(figsize=(6.4, 5.2), layout="constrained")
        ax, rax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        ax.stairs(m, coarse, label=f"MC ({mc_var}, normalised)", color="tab:blue")
        ax.errorbar(
            centres, d, yerr=np.sqrt(d2), fmt="o", ms=3, color="black", label=f"data ({data_var})"
        )
        where = "all pairs" if region is None else _region_title(region, hset)
        ax.set_ylabel("pairs / bin")
        ax.set_title(f"$m_{{ee}}$, {where}")
        ax.legend()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(m > 0, d / m, np.nan)
            err = np.where(m > 0, np.sqrt(d2) / m, np.nan)
        rax.errorbar(centres, ratio, yerr=err, fmt="o", ms=3, color="black")
        rax.axhline(1.0, color="tab:blue", lw=1)
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel("data / MC")
        rax.set_xlabel("$m_{ee}$ [GeV]")
        return fig


def _region_title(region: int | tuple[int, int], hset: HistogramSet) -> str:
    """``"|η| < 1, R9 > 0.96 × |η| 1–1.4442, R9 > 0.96"``: the physics of a pair region."""
    from zcalib.categories import region_pair
    from zcalib.validation.plots import categories_title

    scheme = hset.scheme()
    i, j = region_pair(_region_code(region, hset), scheme.n_cells)
    cells = [scheme.cells[k] for k in (i, j)]
    titles = [categories_title(scheme.scale[c.scale], scheme.smear[c.smear]) for c in cells]
    return titles[0] if i == j else " × ".join(titles)


def _region_code(region: int | tuple[int, int], hset: HistogramSet) -> int:
    if isinstance(region, tuple):
        n_cells = hset.scheme().n_cells
        i, j = sorted(region)
        return int(i) * n_cells + int(j)
    return int(region)


def histograms(
    datasets: DatasetConfig | str | Path,
    config: CalibrationConfig | None = None,
    *,
    client: Any = None,
    executor: str = "dask",
    workers: int = 2,
    chunksize: int = 100_000,
    progress: bool = False,
    options: RunOptions | None = None,
    corrections: Sequence[CorrectionStep] | None = None,
    weights: Sequence[WeightSpec] = (),
) -> Histograms:
    """Fill the pair-mass histograms of every dataset, all variations in one pass.

    Args:
        datasets: a dataset description, or the path of its YAML.
        config: what to calibrate; default: the defaults of the datasets' format.
        client: an existing ``distributed.Client`` (e.g. a LocalCluster's or coffea-casa's);
            implies the Dask executor.
        executor: ``dask`` (a local cluster unless ``client``), ``futures`` or ``iterative``.
        workers: local worker processes (local Dask cluster, futures).
        chunksize: events per chunk.
        progress: show progress bars.
        options: full :class:`~zcalib.runner.RunOptions` (overrides the four above).
        corrections: prior correction steps applied while filling, instead of the
            configuration's ``corrections`` (e.g. the steps of ``zcalib fit --corrections``).
        weights: MC weights applied after the configuration's ``mc_weights`` (e.g. the Z
            weights of a chained step).

    Returns:
        The :class:`Histograms`.

    Raises:
        InvalidConfig: the datasets' format differs from the configuration's, bad options,
            missing category / weight / correction files.
        InputError: files fail the set-up checks or hold bad values.
    """
    from zcalib.runner import EventLoop, RunOptions

    ds = load_datasets(datasets) if isinstance(datasets, str | Path) else datasets
    cfg = config if config is not None else CalibrationConfig.for_format(ds.format)
    cfg.check_datasets(ds)
    scheme = cfg.scheme()
    all_weights = (*cfg.load_weights(), *weights)
    steps = cfg.load_corrections() if corrections is None else tuple(corrections)
    if options is None:
        options = RunOptions(
            executor="dask" if client is not None else executor,  # type: ignore[arg-type]
            workers=workers,
            chunksize=chunksize,
            progress=progress,
            client=client,
        )
    loop = EventLoop(
        ds,
        options=options,
        selection=cfg.selection,
        binning=cfg.mass_binning(),
        weights=all_weights,
        corrections=steps,
        smear_seed=cfg.smear_seed,
    )
    return Histograms(hset=_fill(loop, scheme), config=cfg)


def _fill(loop: EventLoop, scheme: CategoryScheme) -> HistogramSet:
    """The pair-mass histograms of ``loop`` in ``scheme`` (the one fill of a step)."""
    from zcalib.runner import build_histograms

    return build_histograms(
        loop.cfg,
        scheme,
        options=loop.options,
        selection=loop.selection,
        binning=loop.binning,
        weights=loop.weights,
        corrections=loop.corrections,
        smear_seed=loop.smear_seed,
    )


def load_histograms(path: str | Path, config: CalibrationConfig | None = None) -> Histograms:
    """Load histograms saved with :meth:`Histograms.save` (or ``zcalib histograms``).

    Raises:
        InputError: missing or not a zcalib histogram file.
    """
    from zcalib.histograms import load_histograms as _load

    return Histograms(hset=_load(path), config=config)


# =========================================================================== fit
_FIT_COLUMNS = ("kind", "category", "value", "stat", "MC stat", "stat ⊕ MC", "pairs", "state")


def _fit_rows(r: FitResult) -> list[tuple[str, ...]]:
    """One row per category: kind, label, value, errors, data pairs, state."""

    def row(c: CategoryFit) -> tuple[str, ...]:
        return (
            c.kind,
            c.label,
            _fmt(c.value),
            _fmt(c.stat),
            _fmt(c.mc_stat),
            _fmt(c.total_stat),
            f"{c.n_pairs:.0f}",
            c.state + (" (at bound)" if c.at_bound else ""),
        )

    return [row(c) for c in (*r.scales, *r.smears)]


def fit_table(result: FitResult) -> Any:
    """The fitted scales and smearings per category as a ``rich`` table (``zcalib fit``
    prints it): value, stat, MC-stat and total errors, data pairs, state; the title carries
    the fit status, so a fit that did not converge says so above its numbers."""
    from rich.table import Table

    table = Table(title=f"fit {result.message}", title_justify="left")
    for col in _FIT_COLUMNS:
        table.add_column(col, justify="left" if col in ("kind", "category", "state") else "right")
    for row in _fit_rows(result):
        table.add_row(*row)
    return table


@dataclass(frozen=True, repr=False)
class Fit:
    """A fit result with the configuration and scheme it belongs to.

    Attributes:
        result: the :class:`~zcalib.fit.FitResult` (values, errors, status, regions).
        scheme: the category scheme fitted.
        config: the calibration configuration (``None`` if none was given).
        data_variation: the data histograms' variation used.
        mc_variation: the MC templates' variation used.
    """

    result: FitResult
    scheme: CategoryScheme
    config: CalibrationConfig | None = None
    data_variation: str = "nominal"
    mc_variation: str = "nominal"

    def __repr__(self) -> str:
        r = self.result
        return (
            f"Fit(status={r.status!r}, scales={len(r.scales)}, smears={len(r.smears)}, "
            f"data={self.data_variation!r}, mc={self.mc_variation!r})"
        )

    @property
    def converged(self) -> bool:
        """True when the fit converged."""
        return self.result.converged

    @property
    def scales(self) -> tuple[float, ...]:
        """Fitted scale per scale category (multiplies data energies)."""
        return tuple(float(c.value) for c in self.result.scales)

    @property
    def smears(self) -> tuple[float, ...]:
        """Fitted extra relative smearing per smear category (for MC)."""
        return tuple(float(c.value) for c in self.result.smears)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per category: kind, index, label, value, errors, pairs, state."""
        return [c.to_dict() for c in (*self.result.scales, *self.result.smears)]

    def _repr_html_(self) -> str:
        r = self.result
        head = (
            f"fit {r.message}; {r.n_eval} evaluations, {r.wall_time:.2f} s; "
            f"window {r.window[0]:g}-{r.window[1]:g} GeV; {len(r.regions_used)} regions used, "
            f"{len(r.regions_dropped)} dropped; variations data={self.data_variation}, "
            f"MC={self.mc_variation}"
        )

        return (
            "<div><strong>Fit</strong><p>"
            + html.escape(head)
            + "</p>"
            + _table(_FIT_COLUMNS, _fit_rows(r))
            + "</div>"
        )

    def __rich__(self) -> Any:
        """The results table in a terminal (``rich.print(fitted)``)."""
        return fit_table(self.result)

    def plot(self, truth: Mapping[str, Sequence[float]] | None = None) -> Figure:
        """Fitted scales and smearings per category with their errors (stat ⊕ MC stat).

        Args:
            truth: optional ``{"scale": [...], "smear": [...]}`` (e.g. a demo ``truth.json``)
                drawn for comparison.

        Returns:
            A matplotlib figure with one panel for scales and one for smearings.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 6.0), layout="constrained")
        axes = fig.subplots(2, 1)
        for ax, kind, fits in (
            (axes[0], "scale", self.result.scales),
            (axes[1], "smear", self.result.smears),
        ):
            _plot_values(ax, kind, fits, None if truth is None else truth.get(kind))
        return fig


def _plot_values(
    ax: Axes, kind: str, fits: Sequence[CategoryFit], truth: Sequence[float] | None
) -> None:
    x = list(range(len(fits)))
    if kind == "scale":
        y = [100 * (c.value - 1) for c in fits]
        label = "scale − 1 [%]"
    else:
        y = [100 * c.value for c in fits]
        label = "smearing [%]"
    err = [100 * c.total_stat for c in fits]
    ax.errorbar(x, y, yerr=err, fmt="o", color="black", label="fitted")
    if truth is not None:
        t = [100 * (v - 1) if kind == "scale" else 100 * v for v in truth]
        ax.plot(x, t, "x", color="tab:red", ms=8, label="injected")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_ylabel(label)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [c.label.split(" ", 1)[-1] for c in fits], rotation=30, ha="right", fontsize=7
    )
    ax.legend(fontsize=8)


def fit(
    hists: Histograms | HistogramSet,
    config: CalibrationConfig | None = None,
    *,
    options: FitConfig | None = None,
) -> Fit:
    """Fit scales (data) and smearings (MC) to the histograms.

    The configuration's ``systematic`` picks the histograms' variation (filled in the same
    pass as the nominal); its ``window`` is the fit window. Other fit settings come
    from ``options``.

    Args:
        hists: the histograms (:func:`histograms`, :func:`load_histograms`, or a
            ``HistogramSet``).
        config: what to calibrate; default: the histograms' own configuration, else the
            nominal fit of the histograms as they are. With ``config.categories`` unset
            the histograms' own category scheme is used.
        options: minimiser settings (:class:`~zcalib.fit.FitConfig`; its window must be
            left at the default or equal ``config.window``).

    Returns:
        The :class:`Fit`.

    Raises:
        FitError: the fit cannot be set up (categories, datasets, empty regions).
        InvalidConfig: the systematic variation was not filled; conflicting windows.
    """
    if isinstance(hists, Histograms):
        hset = hists.hset
        cfg = config if config is not None else hists.config
    else:
        hset = hists
        cfg = config
    scheme, fit_cfg, data_var, mc_var = _fit_settings(hset, cfg, options)
    result, _ = _fit_once(hset, fit_cfg, scheme, (data_var, mc_var), keep_problem=False)
    if not result.converged:
        log.warning("fit did not converge: %s", result.message)
    return Fit(
        result=result, scheme=scheme, config=cfg, data_variation=data_var, mc_variation=mc_var
    )


def _fit_settings(
    hset: HistogramSet, cfg: CalibrationConfig | None, options: FitConfig | None
) -> tuple[CategoryScheme, FitConfig, str, str]:
    """Scheme, fit settings and ``(data, MC)`` variations of fitting ``hset`` as ``cfg`` says."""
    if cfg is not None:
        scheme = cfg.scheme() if cfg.categories is not None else hset.scheme()
        data_var, mc_var = cfg.fit_variations(hset)
        return scheme, cfg.fit_config(options), data_var, mc_var
    from zcalib.fit.config import FitConfig

    return hset.scheme(), options if options is not None else FitConfig(), "nominal", "nominal"


def _fit_once(
    hset: HistogramSet,
    config: FitConfig,
    scheme: CategoryScheme,
    variations: tuple[str, str],
    *,
    keep_problem: bool,
) -> tuple[FitResult, Any]:
    """One fit of ``hset``; with ``keep_problem`` also its ``FitProblem`` (NLL scans reuse it
    instead of fitting again), else ``None``."""
    if keep_problem:
        if variations != ("nominal", "nominal"):
            msg = f"keep_problem fits the nominal histograms only, not {variations}"
            raise InvalidConfig(msg)
        from zcalib.validation.scans import fit_for_scans

        result, problem, _ = fit_for_scans(hset, config, scheme=scheme)
        return result, problem
    from zcalib.fit import fit_histograms

    data_var, mc_var = variations
    result = fit_histograms(
        hset, config, scheme=scheme, data_variation=data_var, mc_variation=mc_var
    )
    return result, None


# =========================================================================== one step
@dataclass(frozen=True, repr=False)
class StepRun:
    """One derivation step run by :func:`run_step`.

    Attributes:
        hset: the histograms fitted (of the last iteration).
        scheme: the category scheme fitted.
        result: the fit (with ``iterations``: the cumulative scales of all iterations).
        paths: the files written (``corrections``, ``scales``, ``smearings``, ``only_step``,
            ``fit_result``; only ``fit_result`` for a failed fit or a record-only step;
            empty without an output folder).
        smooth: the smooth Et curves (``None`` unless asked and the fit converged).
        syst: the systematics refits (``SystematicsResult``) when asked, else ``None``.
        problem: the fit's ``FitProblem`` with ``keep_problem``, else ``None``.
        iteration: the iteration (0-based) whose fit ``result`` comes from.
        iterations: per iteration: status and residual scales (empty for one iteration).
    """

    hset: HistogramSet
    scheme: CategoryScheme
    result: FitResult
    paths: Mapping[str, Path]
    smooth: SmoothResult | None = None
    syst: Any = None
    problem: Any = None
    iteration: int = 0
    iterations: tuple[Mapping[str, Any], ...] = ()

    def __repr__(self) -> str:
        return f"StepRun(status={self.result.status!r}, paths={sorted(self.paths)!r})"

    @property
    def failure(self) -> str | None:
        """Why the step failed (``"fit <message>"`` or the smooth curves' failures), or
        ``None``: a failed step wrote no payload (unless ``write_failed``)."""
        from zcalib.derive import smooth_failure

        if not self.result.converged:
            return f"fit {self.result.message}"
        if self.smooth is not None and not self.smooth.converged:
            return smooth_failure(self.smooth)
        return None


def run_step(
    source: HistogramSet | EventLoop,
    scheme: CategoryScheme,
    fit_config: FitConfig,
    out_dir: str | Path | None,
    *,
    step: str = "step",
    names: EgmNames | None = None,
    smear_seed: int | None = None,
    extra: Mapping[str, Any] | Callable[[HistogramSet, FitResult], Mapping[str, Any]] | None = None,
    variations: tuple[str, str] = ("nominal", "nominal"),
    iterations: int = 1,
    smooth: tuple[SmoothForm | None, SmoothForm | None] = (None, None),
    systematics: SystematicsConfig | None = None,
    refills: EventLoop | None = None,
    payload: bool = True,
    write_failed: bool = False,
    save_histograms: bool | None = None,
    keep_problem: bool = False,
) -> StepRun:
    """Run one derivation step: fill (or take) the histograms, fit, write the outputs.

    The one orchestration of fill → fit → write (``zcalib fit``, ``zcalib demo``, the
    pipeline's fit and closure steps, :func:`calibrate`). A fit that does not converge is
    never hidden: ``fit_result.json`` records why, no payload is written (unless
    ``write_failed``: then it is, marked ``FAILED FIT``), no smooth curve or systematic is
    derived from it, and :attr:`StepRun.failure` says so. The caller decides what a failure
    means (an exit code, :class:`~zcalib.exceptions.FitFailed`).

    Args:
        source: the histograms, or the :class:`~zcalib.runner.EventLoop` that fills them.
        scheme: the category scheme.
        fit_config: the fit settings.
        out_dir: the step's output folder (``None``: write nothing).
        step: step name (the scale step is ``EGMScale_<step>_<era>``; legacy file names).
        names: era and collection of the payload names (default 2022preEE, Ele).
        smear_seed: seed of the payload's random-number generator (default: the one the
            histograms were filled with).
        extra: more ``fit_result.json`` entries, or a function of the histograms and the fit
            returning them.
        variations: ``(data, MC)`` variations of the histograms fitted.
        iterations: refill and refit this often (an ``EventLoop`` source), each pass with the
            cumulative scales of the previous ones applied to data (written to
            ``iter<k>/corrections.json``); the result holds the cumulative scales.
        smooth: ``(scale, smear)`` forms of smooth Et curves (:mod:`zcalib.fit.smooth`).
        systematics: variations refitted for the systematic uncertainties
            (``systematics.json``, folded into ``escale``/``esmear``); selection and
            boundary variations refill the events of the ``EventLoop`` source, or of
            ``refills`` when ``source`` is histograms.
        refills: the event loop of the systematics' refills when ``source`` is histograms
            (e.g. ``zcalib systematics --histograms``). The nominal fill, the iterations and
            every refill share one cluster (one per call).
        payload: ``False``: write only ``fit_result.json`` (a closure fit's record).
        write_failed: write the payload of a failed fit too, marked failed.
        save_histograms: write ``histograms.npz`` (default: when filled here).
        keep_problem: keep the fit's ``FitProblem`` (nominal variations only).

    Returns:
        The :class:`StepRun`.

    Raises:
        InvalidConfig: iterations, or refilling systematics, without an ``EventLoop``; bad
            options.
        FitError: the fit cannot be set up. InputError, OutputError: as the fill and writes.
    """
    from zcalib.derive import check_step_name, write_outputs
    from zcalib.histograms import save_histograms as save
    from zcalib.outputs import output_run
    from zcalib.runner import EventLoop

    check_step_name(step)
    loop = source if isinstance(source, EventLoop) else None
    out = Path(out_dir) if out_dir is not None else None
    if iterations < 1:
        msg = f"iterations must be >= 1, got {iterations}"
        raise InvalidConfig(msg)
    if loop is None and iterations > 1:
        msg = "iterations refill the events: give an EventLoop, not histograms"
        raise InvalidConfig(msg)
    if loop is not None and refills is not None:
        msg = "refills are for histograms: an EventLoop source refills the systematics itself"
        raise InvalidConfig(msg)
    if systematics is not None and loop is None and refills is None and systematics.refills():
        msg = (
            f"systematics variations {', '.join(systematics.refills())} refill the events: "
            "give an EventLoop source (or refills=) with the inputs"
        )
        raise InvalidConfig(msg)
    if iterations > 1 and out is None:
        msg = "iterations write their intermediate scales: give an output folder"
        raise InvalidConfig(msg)
    with contextlib.ExitStack() as stack:
        stack.enter_context(output_run(out))  # the folder checked before the cluster starts
        events = loop or refills
        if events is not None and (iterations > 1 or systematics is not None):
            from zcalib.cluster import one_cluster  # one cluster: fills, iterations, refills

            events = events.replace(options=stack.enter_context(one_cluster(events.options)))
            source = events if loop is not None else source
            refills = None if loop is not None else events
        hset, result, problem, it, records, last = _iterate(
            source,
            scheme,
            fit_config,
            out,
            step,
            variations,
            iterations,
            keep_problem=keep_problem,
        )
        et_refit: dict[str, Any] | None = None
        if last is not None and iterations == 1 and result.converged:
            refit = _et_scales_refit(last, scheme, fit_config, result, variations, step)
            if refit is not None:
                result, et_refit = refit
        warning = et_without_mc_smearing(scheme, hset.metadata) if et_refit is None else None
        if warning is not None:
            log.warning("%s", warning)
        if out is not None and (
            save_histograms if save_histograms is not None else loop is not None
        ):
            save(hset, out / "histograms.npz")
        syst = curves = None
        if result.converged and systematics is not None:
            syst = _systematics(hset, last or refills, scheme, fit_config, systematics, result, out)
        if (result.converged or write_failed) and smooth != (None, None):
            from zcalib.fit.smooth import fit_smooth

            curves = fit_smooth(result, scheme, hset, scale_form=smooth[0], smear_form=smooth[1])
        paths: dict[str, Path] = {}
        if out is not None:
            record = dict(extra(hset, result) if callable(extra) else (extra or {}))
            if records:
                record["iterations"] = list(records)
            if et_refit is not None:
                record["et_scales_refit"] = et_refit
            paths = write_outputs(
                result,
                scheme,
                out,
                step=step,
                hset=hset,
                extra=record,
                names=names,
                smear_seed=int(hset.metadata.get("smear_seed") or 0)
                if smear_seed is None
                else smear_seed,
                syst=syst.step_syst() if syst is not None else None,
                write_failed=write_failed,
                smooth=curves,
                record_only=not payload,
            )
        return StepRun(
            hset=hset,
            scheme=scheme,
            result=result,
            paths=MappingProxyType(paths),
            smooth=curves,
            syst=syst,
            problem=problem,
            iteration=it,
            iterations=tuple(records),
        )


def et_without_mc_smearing(scheme: CategoryScheme, metadata: Mapping[str, Any]) -> str | None:
    """The warning for Et categories fitted on MC filled without the data's smearing (the
    histograms' ``metadata["corrections"]`` holds no smear step), else ``None``.

    With extra resolution in data, the categorisation variable ``Et·m_Z/m_ee`` correlates
    with the pair mass at second order; the analytically smeared template does not carry
    that, and the best-resolution cell's lowest Et bin comes out ≈ 2σ low (docs/fit.md, "Et
    categories"). MC smeared ahead removes it: :func:`run_step` does it itself when it fills
    the events (:func:`_et_scales_refit`), so the warning is for steps fitted from given
    histograms.
    """
    if "et" not in scheme.variables:
        return None
    applied = metadata.get("corrections") or []
    if any(c.get("kind") == "smear" for c in applied if isinstance(c, Mapping)):
        return None
    return (
        "Et categories fitted on MC filled without the data's smearing: the lowest Et bin "
        "of the best-resolution cells comes out about 2 sigma low; fit from the events "
        "(the step then refits its scales on MC smeared ahead by its smearings) or fill the "
        "MC smeared by the previous |eta| x R9 step (--corrections STEP --mc-smearing latest; "
        "docs/fit.md, 'Et categories')"
    )


#: Replicas of the random MC smearing averaged by the Et scales refit (smearing seeds
#: ``smear_seed + r``): one replica's template is noisier than the analytically smeared one,
#: their spread measures that noise and their mean divides it by √N (docs/fit.md).
ET_REFIT_REPLICAS = 4


def _et_scales_refit(
    loop: EventLoop,
    scheme: CategoryScheme,
    fit_config: FitConfig,
    first: FitResult,
    variations: tuple[str, str],
    step: str,
) -> tuple[FitResult, dict[str, Any]] | None:
    """Refit the Et-binned scales of a free fit on MC smeared ahead by its own smearings.

    Applies when the scale categories cut on Et, scales and smearings were both fitted and
    the MC was filled unsmeared (no smear step among ``loop.corrections``); else ``None``.
    With extra resolution in data the categorisation variable ``Et·m_Z/m_ee`` correlates
    with the pair mass at second order, which a template smeared after categorisation does
    not carry (the best-resolution cell's lowest Et bin ≈ 2σ low, docs/fit.md). Refilled
    with the MC smeared by the first pass's smearings (random numbers keyed on event
    identity) and refitted with the smearings held at 0 on top, data and MC carry the same
    resolution and the term cancels. :data:`ET_REFIT_REPLICAS` refits with other smearing
    seeds are averaged. The refit is the free fit plus a correction: a scale keeps the free
    fit's data error ``stat`` (which, unlike the refit's with smearings held, carries the
    uncertainty of the smearings it is refitted with) and its ``mc_stat`` becomes the free
    fit's ⊕ the spread of the replicas / √N.

    Returns:
        The step's result — the refitted scales, the first pass's smearings, the first
        pass's covariance rescaled to the new scale errors; failed when a refit fails — and
        the ``fit_result.json`` record of both passes.
    """
    import numpy as np
    from correctionlib import schemav2

    from zcalib.corrections import build_smear_correction
    from zcalib.processors.zee import CorrectionStep

    et_scales = any(c.cut("et") != (-math.inf, math.inf) for c in scheme.scale)
    smeared = any(c.kind == "smear" for c in loop.corrections)
    if not et_scales or smeared or fit_config.fix_smears or fit_config.fix_scales:
        return None
    name = f"{step}_smear_ahead"
    corr = build_smear_correction(
        name,
        scheme,
        first.smear_values(),
        np.zeros(len(scheme.smear)),
        description=f"{step}: smearings of the first pass, MC smeared ahead for the scales refit",
    )
    payload = schemav2.CorrectionSet(schema_version=2, corrections=[corr])
    smear = CorrectionStep(
        name, payload.model_dump_json(exclude_unset=True), "smear", f"{step} (first pass)"
    )
    cfg = fit_config.with_overrides(
        fix_smears=True,
        fixed_smears=None,
        start="specify",
        start_scales=tuple(float(v) for v in first.scale_values()),
        start_smears=None,
        mc_stat="none",
    )
    refits: list[FitResult] = []
    for r in range(ET_REFIT_REPLICAS):
        seed = loop.smear_seed + r
        hset = _fill(loop.replace(corrections=(*loop.corrections, smear), smear_seed=seed), scheme)
        refits.append(_fit_once(hset, cfg, scheme, variations, keep_problem=False)[0])
        if not refits[-1].converged:
            break
    failed = next((f for f in refits if not f.converged), None)
    values = np.array([f.scale_values() for f in refits])
    mean = values.mean(axis=0)
    noise = values.std(axis=0, ddof=1) / math.sqrt(len(refits)) if len(refits) > 1 else mean * 0
    scales = tuple(
        replace(
            c,
            value=float(mean[i]),
            mc_stat=float(math.hypot(c.mc_stat, noise[i])),
            at_bound=any(f.scales[i].at_bound for f in refits),
        )
        for i, c in enumerate(first.scales)
    )
    record = {
        "why": "Et scale categories fitted on unsmeared MC: scales refitted on MC smeared "
        "ahead by the first pass's smearings, smearings held (docs/fit.md, 'Et categories')",
        "status": failed.status if failed is not None else "converged",
        "message": failed.message if failed is not None else "",
        "replicas": len(refits),
        "first_pass_scales": [c.value for c in first.scales],
        "first_pass_scale_errors": [c.total_stat for c in first.scales],
        "refit_scales": [c.value for c in scales],
        "refit_scale_errors": [c.total_stat for c in scales],
        "refit_scale_stat_smearings_held": np.sqrt(
            np.mean([[c.stat**2 for c in f.scales] for f in refits], axis=0)
        ).tolist(),
        "replica_scales": values.tolist(),
        "replica_noise": noise.tolist(),
    }
    log.info(
        "%s: Et scale categories: scales refitted on MC smeared ahead by the step's "
        "smearings (%d replicas, %s)",
        step,
        len(refits),
        record["status"],
    )
    ratio = {
        f"scale[{i}]": scales[i].total_stat / c.total_stat
        for i, c in enumerate(first.scales)
        if c.total_stat > 0 and math.isfinite(scales[i].total_stat / c.total_stat)
    }
    rescale = np.array([ratio.get(p, 1.0) for p in first.parameters])
    combined = replace(
        first,
        scales=scales,
        status="failed" if failed is not None else first.status,
        message=first.message
        if failed is None
        else f"scales refit on MC smeared ahead: {failed.message}",
        covariance=first.covariance * np.outer(rescale, rescale)
        if first.covariance.size
        else first.covariance,
        wall_time=first.wall_time + sum(f.wall_time for f in refits),
    )
    return combined, record


def _iterate(
    source: HistogramSet | EventLoop,
    scheme: CategoryScheme,
    fit_config: FitConfig,
    out: Path | None,
    step: str,
    variations: tuple[str, str],
    iterations: int,
    *,
    keep_problem: bool,
) -> tuple[HistogramSet, FitResult, Any, int, list[dict[str, Any]], EventLoop | None]:
    """Fill (an ``EventLoop``) and fit ``iterations`` times; stops at a failed fit.

    Returns:
        The last histograms, fit (cumulative scales), problem, iteration, the records and
        the event loop of the last fill (``None`` for given histograms).
    """
    import numpy as np

    from zcalib.corrections import build_scale_correction, write_correction_set
    from zcalib.processors.zee import CorrectionStep
    from zcalib.runner import EventLoop

    own: CorrectionStep | None = None
    cumulative = np.ones(len(scheme.scale))
    records: list[dict[str, Any]] = []
    last: EventLoop | None = None
    for it in range(iterations):
        if isinstance(source, EventLoop):
            prior = source.corrections
            if own is not None:  # data scales, then this step's own so far, then MC smearing
                prior = (
                    *(c for c in prior if c.kind != "smear"),
                    own,
                    *(c for c in prior if c.kind == "smear"),
                )
            last = source.with_corrections(prior)
            hset = _fill(last, scheme)
        else:
            hset = source
        cfg = fit_config if it == 0 else fit_config.with_overrides(start="scan", start_scales=None)
        result, problem = _fit_once(hset, cfg, scheme, variations, keep_problem=keep_problem)
        if not result.converged or iterations == 1:
            return hset, result, problem, it, records, last
        cumulative = cumulative * result.scale_values()
        records.append(
            {
                "iteration": it,
                "status": result.status,
                "residual_scales": result.scale_values().tolist(),
            }
        )
        if it + 1 < iterations:
            assert out is not None
            name = f"{step}_scale_iter{it}"
            path = write_correction_set(
                out / f"iter{it}" / "corrections.json",
                [
                    build_scale_correction(
                        name,
                        scheme,
                        cumulative,
                        np.zeros(len(cumulative)),
                        description=f"{step}: scales after iteration {it}",
                    )
                ],
                description=f"zcalib {step} iteration {it}",
            )
            own = CorrectionStep(
                name=name, payload=path.read_text(), kind="scale", source=str(path)
            )
    prev = cumulative / result.scale_values()
    result = replace(
        result,
        scales=tuple(
            replace(
                c, value=float(cumulative[i]), stat=c.stat * prev[i], mc_stat=c.mc_stat * prev[i]
            )
            for i, c in enumerate(result.scales)
        ),
    )
    return hset, result, problem, iterations - 1, records, last


def _systematics(
    hset: HistogramSet,
    loop: EventLoop | None,
    scheme: CategoryScheme,
    fit_config: FitConfig,
    config: SystematicsConfig,
    nominal: FitResult,
    out: Path | None,
) -> Any:
    """The systematics refits of a step (refills as ``loop``, the last fill of the step;
    ``None``: refits of ``hset`` only), written to ``systematics.json``."""
    import json

    from zcalib._atomic import atomic_write_text
    from zcalib.validation.systematics import run_systematics

    refill: dict[str, Any] = {}
    if loop is not None:
        refill = {
            "dataset_config": loop.cfg,
            "selection": loop.selection,
            "options": loop.options,
            "weights": loop.weights,
            "corrections": loop.corrections,
            "smear_seed": loop.smear_seed,
            "binning": loop.binning,
        }
    res = run_systematics(
        hset, scheme=scheme, config=config, fit_config=fit_config, nominal=nominal, **refill
    )
    if out is not None:
        atomic_write_text(
            out / "systematics.json",
            json.dumps(stamp(res.to_dict()), indent=2, allow_nan=False) + "\n",
        )
    return res


# =========================================================================== validation
@dataclass(frozen=True, repr=False)
class Validation:
    """Data/MC validation plots of a derivation (made by :mod:`zcalib.validation`).

    Attributes:
        result: the :class:`zcalib.validation.ValidationResult` (per plot: name, file,
            source, χ²; skipped plots with the reason; the ``validation.json`` path).
    """

    result: Any

    @property
    def plots(self) -> list[dict[str, Any]]:
        """One record per drawn plot (name, file, χ², counts)."""
        return list(self.result.plots)

    def __repr__(self) -> str:
        return f"Validation(plots={len(self.result.plots)}, skipped={len(self.result.skipped)})"

    def plot(self, name: str | None = None) -> Figure:
        """The figure of plot ``name`` (default: the first one).

        Raises:
            InvalidConfig: no such plot (the message lists the drawn ones).
        """
        figures = self.result.figures
        if not figures:
            msg = "no validation figures kept (run validate(..., keep_figures=True))"
            raise InvalidConfig(msg)
        key = name if name is not None else next(iter(figures))
        if key not in figures:
            msg = f"no validation plot {key!r}; drawn: {', '.join(figures)}"
            raise InvalidConfig(msg)
        fig: Figure = figures[key]
        return fig

    def _repr_html_(self) -> str:
        rows = []
        for rec in self.result.plots:
            chi2, ndf = rec.get("chi2"), rec.get("ndf")
            shown = f"{chi2:.1f} / {ndf}" if isinstance(chi2, int | float) and ndf else "—"
            rows.append((rec.get("name", "?"), rec.get("source", ""), shown, rec.get("file", "")))
        rows += [
            (r.get("name", "?"), "skipped", r.get("reason", ""), "") for r in self.result.skipped
        ]
        return (
            "<div><strong>Validation</strong>"
            + _table(("plot", "source", "χ² / ndf", "file"), rows)
            + "</div>"
        )


def validate(
    hists: Histograms,
    corrections: Corrections,
    out_dir: str | Path,
    *,
    plots: str | Path | Sequence[Any] | None = None,
    labels: Any = None,
    binning: int = 40,
    scans: bool = False,
    keep_figures: bool = True,
) -> Validation:
    """Data/MC plots with the derived corrections applied (``zcalib.validation``).

    Mass plots whose cuts follow the categories are made from the histograms, with the
    scales and smearings of ``corrections`` applied analytically; nothing is re-read.

    Args:
        hists: the histograms the corrections were derived from.
        corrections: the written corrections (:func:`write_corrections`).
        out_dir: folder for the PNGs and ``validation.json``.
        plots: plot categories (a pyval TSV/YAML path or ``PlotCategory`` objects);
            default: one inclusive mass plot.
        labels: a :class:`zcalib.validation.PlotLabels` (lumi label, titles).
        binning: default number of bins.
        scans: also write NLL scans of the fit.
        keep_figures: keep the figures for :meth:`Validation.plot`.

    Returns:
        The :class:`Validation`.

    Raises:
        ZcalibError: :mod:`zcalib.validation` is not available.
        InvalidConfig: bad plot categories.
    """
    import importlib

    try:
        _validation = importlib.import_module("zcalib.validation")
    except ImportError as err:
        msg = f"zcalib.validation is not available ({err})"
        raise ZcalibError(msg) from None
    from zcalib.corrections.steps import load_correction_steps

    run = getattr(_validation, "run_validation", None)
    if run is None:
        msg = "zcalib.validation provides no run_validation(); nothing to run"
        raise ZcalibError(msg)
    if plots is None:
        cats: Sequence[Any] = [
            _validation.PlotCategory(style="paper", name="inclusive", variable="mass")
        ]
    elif isinstance(plots, str | Path):
        cats = _validation.load_plot_categories(plots)
    else:
        cats = plots
    fit_cfg = None
    if hists.config is not None:
        fit_cfg = hists.config.fit_config()
    result = run(
        cats,
        out_dir,
        histograms=hists.hset,
        corrections=tuple(load_correction_steps(corrections.json)),
        labels=labels,
        binning=binning,
        scan=scans,
        fit_config=fit_cfg,
        keep_figures=keep_figures,
    )
    return Validation(result=result)


# =========================================================================== corrections
@dataclass(frozen=True, repr=False)
class Corrections:
    """The files of one derivation step.

    The payload has the CMS EGM Run-3 layout (:mod:`zcalib.corrections.egm`): analysts call
    ``cset.compound[c.scale_name].evaluate(syst, run, ScEta, r9, AbsScEta, pt, seedGain)``
    and ``cset[c.smear_name].evaluate(syst, pt, r9, AbsScEta)``.

    Attributes:
        step: step name (the scale step is ``EGMScale_<step>_<era>``).
        paths: ``{"corrections", "scales", "smearings", "fit_result"}`` → file.
        names: era and collection of the correction names.
    """

    step: str
    paths: Mapping[str, Path]
    names: EgmNames = field(default_factory=EgmNames)

    def __repr__(self) -> str:
        return f"Corrections(step={self.step!r}, json={str(self.json)!r})"

    @property
    def json(self) -> Path:
        """The correctionlib JSON."""
        return self.paths["corrections"]

    @property
    def scale_name(self) -> str:
        """Name of the data scale compound (``EGMScale_Compound_<P>_<era>``)."""
        return self.names.compound

    @property
    def smear_name(self) -> str:
        """Name of the MC smearing (``EGMSmearAndSyst_<P>PTsplit_<era>``)."""
        return self.names.smear

    @property
    def rng_name(self) -> str:
        """Name of the random-number generator of the MC smearing."""
        return self.names.rng

    def correction_set(self) -> Any:
        """The correctionlib evaluator set (``correctionlib.CorrectionSet``)."""
        import correctionlib

        return correctionlib.CorrectionSet.from_file(str(self.json))

    def _repr_html_(self) -> str:
        cset = self.correction_set()
        rows = []
        for name, corr in (
            (self.scale_name, cset.compound[self.scale_name]),
            (self.smear_name, cset[self.smear_name]),
            (self.rng_name, cset[self.rng_name]),
        ):
            rows.append((name, ", ".join(v.name for v in corr.inputs), corr.output.name))
        files = ", ".join(f"{k}: {p}" for k, p in self.paths.items())
        return (
            "<div><strong>Corrections</strong><p>"
            + html.escape(files)
            + "</p>"
            + _table(("correction", "inputs", "output"), rows)
            + "</div>"
        )


def write_corrections(
    fitted: Fit,
    out_dir: str | Path,
    *,
    step: str = "step",
    hists: Histograms | None = None,
    syst: StepSyst | None = None,
) -> Corrections:
    """Write correctionlib JSON, legacy ``.dat`` files and ``fit_result.json`` for a fit.

    Era and collection of the payload names come from the fit's
    :class:`~zcalib.calibration.CalibrationConfig` (``era``, ``collection``), as does the
    smearing seed of the shipped ``EGMRandomGenerator``.

    Args:
        fitted: the fit.
        out_dir: output folder (created).
        step: step name (scale step ``EGMScale_<step>_<era>``, legacy file names).
        hists: the histograms fitted (their provenance goes into ``fit_result.json``).
        syst: systematic uncertainties (e.g. ``run_systematics(...).step_syst()``), folded
            into ``escale``/``esmear`` and stored per category in ``fit_result.json``.

    Returns:
        The :class:`Corrections` (paths and names).

    Raises:
        OutputError: a file cannot be written or the payload is invalid.
    """
    from zcalib.derive import write_outputs

    extra, names, seed = _provenance(fitted.config, (fitted.data_variation, fitted.mc_variation))
    paths = write_outputs(
        fitted.result,
        fitted.scheme,
        out_dir,
        step=step,
        hset=hists.hset if hists is not None else None,
        extra=extra,
        names=names,
        smear_seed=seed,
        syst=syst,
    )
    return Corrections(step=step, paths=MappingProxyType(dict(paths)), names=names)


def _provenance(
    config: CalibrationConfig | None, variations: tuple[str, str]
) -> tuple[dict[str, Any], EgmNames, int]:
    """``fit_result.json`` entries, payload names and smearing seed of a fit made with
    ``config``."""
    extra: dict[str, Any] = {"variations": {"data": variations[0], "mc": variations[1]}}
    if config is None:
        return extra, EgmNames(), 0
    extra["calibration_config"] = config.to_dict()
    return extra, config.payload_names(), config.smear_seed


# =========================================================================== everything
@dataclass(frozen=True, repr=False)
class Calibration:
    """One derivation step end to end: configuration, histograms, fit, written corrections.

    Attributes:
        config: the calibration configuration.
        histograms: the filled histograms.
        fit: the fit.
        corrections: the files written (``None`` when no output folder was given).
    """

    config: CalibrationConfig
    histograms: Histograms
    fit: Fit
    corrections: Corrections | None = None

    def __repr__(self) -> str:
        return (
            f"Calibration(format={self.config.input_format!r}, {self.fit!r}, "
            f"corrections={self.corrections!r})"
        )

    def plot(self, truth: Mapping[str, Sequence[float]] | None = None) -> Figure:
        """The fitted values (see :meth:`Fit.plot`)."""
        return self.fit.plot(truth)

    def _repr_html_(self) -> str:
        parts = [
            "<div><strong>Calibration</strong>",
            self.config._repr_html_(),
            self.histograms._repr_html_(),
            self.fit._repr_html_(),
        ]
        if self.corrections is not None:
            parts.append(self.corrections._repr_html_())
        return "".join(parts) + "</div>"


def calibrate(
    datasets: DatasetConfig | str | Path,
    config: CalibrationConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    step: str = "step",
    fit_options: FitConfig | None = None,
    **run: Any,
) -> Calibration:
    """Fill, fit and (with ``out_dir``) write one derivation step.

    Args:
        datasets: dataset description or its YAML path.
        config: what to calibrate (default: the datasets' format defaults).
        out_dir: where to write corrections (nothing is written when ``None``).
        step: step name of the corrections.
        fit_options: minimiser settings.
        **run: event-loop options of :func:`histograms` (``client``, ``executor``,
            ``workers``, ``chunksize``, ``progress``, ``options``).

    Returns:
        The :class:`Calibration`.
    """
    ds = load_datasets(datasets) if isinstance(datasets, str | Path) else datasets
    cfg = config if config is not None else CalibrationConfig.for_format(ds.format)
    hists = histograms(ds, cfg, **run)
    scheme, fit_cfg, data_var, mc_var = _fit_settings(hists.hset, cfg, fit_options)
    extra, names, seed = _provenance(cfg, (data_var, mc_var))
    done = run_step(
        hists.hset,
        scheme,
        fit_cfg,
        out_dir,
        step=step,
        names=names,
        smear_seed=seed,
        extra=extra,
        variations=(data_var, mc_var),
    )
    if not done.result.converged:
        log.warning("fit did not converge: %s", done.result.message)
    fitted = Fit(
        result=done.result, scheme=scheme, config=cfg, data_variation=data_var, mc_variation=mc_var
    )
    corr = Corrections(step=step, paths=done.paths, names=names) if out_dir is not None else None
    return Calibration(config=cfg, histograms=hists, fit=fitted, corrections=corr)


# =========================================================================== apply
@dataclass(frozen=True, repr=False)
class Applied:
    """What :func:`apply` wrote.

    Attributes:
        out_dir: the output folder.
        parts: Parquet files per dataset (``data``, ``mc``), one per chunk.
        leptons: leptons written per dataset.
        names: the payload names used.
        manifest: the ``apply.json`` record.
    """

    out_dir: Path
    parts: Mapping[str, tuple[Path, ...]]
    leptons: Mapping[str, int]
    names: EgmNames
    manifest: Path

    def __repr__(self) -> str:
        return f"Applied(out_dir={str(self.out_dir)!r}, leptons={dict(self.leptons)!r})"

    def read(self, dataset: str) -> Any:
        """The rows of a dataset as one ``awkward`` array (all its parts, in chunk order)."""
        import awkward as ak

        return ak.concatenate([ak.from_parquet(str(p)) for p in self.parts[dataset]])


_APPLY_BRANCHES = {
    "ecalelf": ("runNumber", "energy_ECAL_ele", "etaEle", "R9Ele", "gainSeedSC"),
    "Electron": (
        "run",
        "luminosityBlock",
        "event",
        "Electron_pt",
        "Electron_eta",
        "Electron_deltaEtaSC",
        "Electron_r9",
    ),
    "Photon": ("run", "luminosityBlock", "event", "Photon_pt", "Photon_eta", "Photon_r9"),
}


def apply(
    payload: str | Path,
    out_dir: str | Path,
    *,
    data: Sequence[str | Path] = (),
    mc: Sequence[str | Path] = (),
    input_format: str = "nanoaod",
    collection: str = "Ele",
    era: str | None = None,
    treename: str | None = None,
    options: RunOptions | None = None,
) -> Applied:
    """Correct data and smear MC leptons with a zcalib payload only (``zcalib apply``).

    Per lepton: corrected (data) or smeared (MC) pt and energy with their variations
    (:mod:`zcalib.processors.apply`), written as Parquet, one file per chunk, under
    ``out_dir/data`` and ``out_dir/mc``, with ``out_dir/apply.json``. The chunks are run by
    coffea's ``Runner`` on any executor (``options``); the parts are staged and moved into
    place only when every chunk succeeded.

    Args:
        payload: an EGM-layout correctionlib file (``zcalib fit`` / pipeline output).
        out_dir: output folder.
        data: data files (scales applied).
        mc: MC files (smearing applied, scale uncertainty as variations).
        input_format: ``nanoaod`` or ``ecalelf``.
        collection: ``Ele`` (NanoAOD ``Electron_*``) or ``Pho`` (``Photon_*``).
        era: era of the payload names (default: the payload's only era).
        treename: tree name (default ``Events`` / ``selected``).
        options: event-loop options (default: iterative, no progress bars).

    Returns:
        The :class:`Applied` record.

    Raises:
        InputError: unreadable payload or inputs, missing corrections or branches.
        InvalidConfig: bad options.
    """
    import json
    import os
    import shutil

    from coffea.nanoevents import BaseSchema

    from zcalib._atomic import atomic_write_text
    from zcalib.corrections import validate_file
    from zcalib.corrections.egm import PARTICLES, check_era
    from zcalib.exceptions import InputError
    from zcalib.processors.apply import APPLY_FORMATS, ApplyProcessor
    from zcalib.runner import RunOptions, run_processor

    if input_format not in APPLY_FORMATS:
        msg = f"input format {input_format!r}; allowed: {', '.join(APPLY_FORMATS)}"
        raise InvalidConfig(msg)
    if collection not in PARTICLES:
        msg = f"collection {collection!r}; allowed: {', '.join(PARTICLES)}"
        raise InvalidConfig(msg)
    if input_format == "ecalelf" and collection != "Ele":
        msg = "ECALELF inputs hold electrons: use collection 'Ele'"
        raise InvalidConfig(msg)
    if not data and not mc:
        msg = "nothing to apply: give data and/or mc files"
        raise InvalidConfig(msg)
    pfile = Path(payload)
    model = validate_file(pfile)
    text = model.model_dump_json(exclude_unset=True)
    names = _payload_names(model, collection, era, pfile, check_era)
    have = {c.name for c in model.corrections}
    compounds = {c.name for c in model.compound_corrections or ()}
    needed = ([names.compound] if data else []) + ([names.smear, names.rng] if mc else [])
    for name in needed:
        if name not in have | compounds:
            available = ", ".join(sorted(have | compounds))
            msg = f"{pfile}: no correction named {name!r}; available: {available}"
            raise InputError(msg)
    tree = treename or ("Events" if input_format == "nanoaod" else "selected")
    nano_coll = "Photon" if collection == "Pho" else "Electron"
    branches = _APPLY_BRANCHES["ecalelf" if input_format == "ecalelf" else nano_coll]
    files = {"data": [str(f) for f in data], "mc": [str(f) for f in mc]}
    has_event = {ds: _check_apply_inputs(fs, tree, branches) for ds, fs in files.items() if fs}
    opts = options or RunOptions(executor="iterative", progress=False)
    opts.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    fileset = {
        ds: {"files": dict.fromkeys(fs, tree), "metadata": {"kind": ds}}
        for ds, fs in files.items()
        if fs
    }
    proc = ApplyProcessor(
        fmt=input_format,
        payload=text,
        compound=names.compound,
        smear=names.smear,
        rng=names.rng,
        kinds={"data": "data", "mc": "mc"},
        collection=nano_coll,
        staging=str(staging.resolve()),
        has_event=has_event,
    )
    try:
        run = run_processor(fileset, proc, fmt=input_format, schema=BaseSchema, options=opts)
        parts: dict[str, tuple[Path, ...]] = {}
        for ds in fileset:
            final = out / ds
            shutil.rmtree(final, ignore_errors=True)
            (staging / ds).rename(final)
            parts[ds] = tuple(sorted(final / Path(p).name for p in run.out["parts"][ds]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    leptons = {ds: int(run.out["leptons"][ds]) for ds in fileset}
    record = {
        "schema_version": 1,
        "payload": str(pfile),
        "era": names.era,
        "collection": names.particle,
        "corrections": needed,
        "input_format": input_format,
        "inputs": files,
        "leptons": leptons,
        "parts": {ds: [p.name for p in ps] for ds, ps in parts.items()},
    }
    manifest = atomic_write_text(out / "apply.json", json.dumps(stamp(record), indent=2) + "\n")
    return Applied(out_dir=out, parts=parts, leptons=leptons, names=names, manifest=manifest)


def _payload_names(
    model: Any, collection: str, era: str | None, path: Path, check: Any
) -> EgmNames:
    if era is not None:
        return EgmNames(check(era, "era"), collection)
    prefix = f"EGMScale_Compound_{collection}_"
    eras = sorted(
        {
            c.name[len(prefix) :]
            for c in model.compound_corrections or ()
            if c.name.startswith(prefix)
        }
        | {
            c.name[len(f"EGMSmearAndSyst_{collection}PTsplit_") :]
            for c in model.corrections
            if c.name.startswith(f"EGMSmearAndSyst_{collection}PTsplit_")
        }
    )
    if len(eras) != 1:
        found = ", ".join(eras) or "none"
        msg = f"{path}: cannot tell the era of the {collection} corrections (found: {found}); pass era"
        raise InvalidConfig(msg)
    return EgmNames(check(eras[0], f"{path}: era"), collection)


def _check_apply_inputs(files: Sequence[str], tree: str, branches: Sequence[str]) -> bool:
    """Each file has ``tree`` and ``branches``; returns whether they all have event numbers."""
    import uproot

    from zcalib.exceptions import InputError

    has_event = True
    for f in files:
        try:
            with uproot.open(f) as fh:
                if tree not in fh:
                    msg = f"{f}: no tree {tree!r}"
                    raise InputError(msg)
                keys = set(fh[tree].keys())
        except (OSError, ValueError) as err:
            msg = f"{f}: cannot open ({err})"
            raise InputError(msg) from None
        missing = [b for b in branches if b not in keys]
        if missing:
            msg = f"{f}: tree {tree!r} has no branch {missing[0]!r} (needed: {', '.join(branches)})"
            raise InputError(msg)
        has_event = has_event and ("event" in keys or "eventNumber" in keys)
    return has_event
