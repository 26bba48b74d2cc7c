"""Fit the validation workspace with cabinetry: pulls, goodness of fit, pre/post-fit plots.

:func:`fit_model` runs ``cabinetry.fit.fit`` (pyhf + iminuit) with the saturated-model
goodness-of-fit test; :func:`run_stats` builds the workspace from histograms, fits it and
writes, atomically, into the derivation folder:

* ``stats.json`` — pulls of the scale/smear nuisances, best-fit normalisations, the
  goodness-of-fit p-value and degrees of freedom, the regions used/left out, the steps and
  the settings, and a ``summary.compatible`` verdict (every ``|pull| < pull_max`` and
  ``p > gof_min``);
* ``workspace.json`` — the pyhf workspace;
* ``plots/stats/pulls.png`` and ``plots/stats/<region>_prefit.png`` / ``_postfit.png``
  (``cabinetry.visualize``).

(``name="stats_uncorrected"`` gives ``stats_uncorrected.json`` etc. for the comparison before
correction.)
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
from typing import Any

from zcalib._atomic import atomic_open, atomic_write_text
from zcalib.exceptions import FitError, InvalidConfig
from zcalib.histograms import HistogramSet
from zcalib.outputs import current_run_id, stamp
from zcalib.stats.workspace import (
    NuisanceSteps,
    StatsConfig,
    StatsModel,
    build_model,
    default_steps,
    steps_from_corrections,
)

__all__ = ["NuisancePull", "StatsResult", "check_filled_with", "fit_model", "run_stats"]

log = logging.getLogger(__name__)


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class NuisancePull:
    """Post-fit value of one scale/smear nuisance (prior N(0, 1), so the value is the pull).

    Attributes:
        name: ``scale_<k>`` or ``smear_<l>``.
        kind: ``scale`` or ``smear``.
        category: category index.
        pull: best-fit value ``θ̂`` (in units of the step).
        uncertainty: post-fit uncertainty ``σ̂``.
        step: the step (``ε_k`` or ``e_l``) one unit of ``θ`` stands for.
        at_bound: ``θ̂`` sits at a bound of its range.
    """

    name: str
    kind: str
    category: int
    pull: float
    uncertainty: float
    step: float
    at_bound: bool

    @property
    def significance(self) -> float:
        """``θ̂ / σ̂`` (how many post-fit sigmas from 0)."""
        return self.pull / self.uncertainty if self.uncertainty > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "category": self.category,
            "pull": _num(self.pull),
            "uncertainty": _num(self.uncertainty),
            "significance": _num(self.significance),
            "step": self.step,
            "implied_shift": _num(self.pull * self.step),
            "at_bound": self.at_bound,
        }


@dataclass(frozen=True)
class StatsResult:
    """Outcome of the cabinetry/pyhf validation.

    Attributes:
        pulls: the scale/smear nuisances.
        norms: best-fit normalisation and uncertainty per region.
        gof_pvalue: saturated-model goodness-of-fit p-value.
        n_dof: its degrees of freedom (bins − unconstrained parameters).
        best_twice_nll: ``−2 log L`` at the best fit.
        n_bins: bins in the likelihood.
        n_parameters: parameters of the model.
        wall_time: seconds (build + fit).
        config: settings.
        steps: nuisance steps.
        regions: channels used (summaries).
        dropped: regions left out.
        outputs: files written (by :func:`run_stats`).
    """

    pulls: tuple[NuisancePull, ...]
    norms: dict[str, tuple[float, float]]
    gof_pvalue: float
    n_dof: int
    best_twice_nll: float
    n_bins: int
    n_parameters: int
    wall_time: float
    config: StatsConfig
    steps: NuisanceSteps
    regions: tuple[dict[str, Any], ...] = ()
    dropped: tuple[dict[str, Any], ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def max_abs_pull(self) -> float:
        """Largest ``|θ̂|``."""
        return max((abs(p.pull) for p in self.pulls), default=0.0)

    @property
    def max_significance(self) -> float:
        """Largest ``|θ̂/σ̂|``."""
        return max((abs(p.significance) for p in self.pulls), default=0.0)

    @property
    def compatible(self) -> bool:
        """Every ``|pull| < pull_max``, none at a bound, and ``p > gof_min``."""
        return (
            self.max_abs_pull < self.config.pull_max
            and not any(p.at_bound for p in self.pulls)
            and math.isfinite(self.gof_pvalue)
            and self.gof_pvalue > self.config.gof_min
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (the ``stats.json`` content)."""
        return {
            "schema_version": 1,
            "data_variation": self.config.data_variation,
            "mc_variation": self.config.mc_variation,
            "summary": {
                "compatible": self.compatible,
                "gof_pvalue": _num(self.gof_pvalue),
                "max_abs_pull": self.max_abs_pull,
                "max_significance": _num(self.max_significance),
                "criteria": {
                    "pull_max": self.config.pull_max,
                    "gof_min": self.config.gof_min,
                    "no_pull_at_bound": True,
                },
            },
            "fit": {
                "gof_pvalue": _num(self.gof_pvalue),
                "n_dof": self.n_dof,
                "best_twice_nll": self.best_twice_nll,
                "n_bins": self.n_bins,
                "n_parameters": self.n_parameters,
                "wall_time_s": self.wall_time,
            },
            "pulls": [p.to_dict() for p in self.pulls],
            "normalisations": {
                k: {"bestfit": v[0], "uncertainty": v[1]} for k, v in self.norms.items()
            },
            "regions": list(self.regions),
            "regions_dropped": list(self.dropped),
            "steps": self.steps.to_dict(),
            "config": self.config.to_dict(),
            "outputs": dict(self.outputs),
        }


def fit_model(model: StatsModel) -> tuple[StatsResult, Any, Any, Any]:
    """Fit a :class:`StatsModel` with cabinetry (goodness of fit from the saturated model).

    Returns:
        ``(result, fit_results, pyhf_model, data)`` — the last three for plotting.

    Raises:
        FitError: the minimisation failed.
    """
    import cabinetry

    t0 = time.perf_counter()
    cfg = model.config
    pmodel, data = cabinetry.model_utils.model_and_data(model.workspace)
    names = list(pmodel.config.par_names)
    bounds = [
        (-cfg.nuisance_bound, cfg.nuisance_bound) if n.startswith(("scale_", "smear_")) else b
        for n, b in zip(names, pmodel.config.suggested_bounds(), strict=True)
    ]
    try:
        fr = cabinetry.fit.fit(
            pmodel, data, goodness_of_fit=True, par_bounds=bounds, strategy=cfg.strategy
        )
    except Exception as err:
        msg = f"cabinetry/pyhf fit of the validation workspace failed: {err}"
        raise FitError(msg) from err
    n_bins = int(sum(pmodel.config.channel_nbins.values()))
    n_dof = n_bins - int(cabinetry.model_utils.unconstrained_parameter_count(pmodel))
    pulls = []
    norms: dict[str, tuple[float, float]] = {}
    for label, best, unc in zip(fr.labels, fr.bestfit, fr.uncertainty, strict=True):
        if label.startswith(("scale_", "smear_")):
            kind, idx = label.split("_")
            cat = int(idx)
            step = model.steps.scale[cat] if kind == "scale" else model.steps.smear[cat]
            at_bound = abs(abs(float(best)) - cfg.nuisance_bound) < 1e-3 * cfg.nuisance_bound
            pulls.append(
                NuisancePull(
                    name=label,
                    kind=kind,
                    category=cat,
                    pull=float(best),
                    uncertainty=float(unc),
                    step=float(step),
                    at_bound=at_bound,
                )
            )
        elif label.startswith("norm_"):
            norms[label] = (float(best), float(unc))
    pulls.sort(key=lambda p: (p.kind != "scale", p.category))
    gof = float(fr.goodness_of_fit) if fr.goodness_of_fit is not None else math.nan
    result = StatsResult(
        pulls=tuple(pulls),
        norms=norms,
        gof_pvalue=gof,
        n_dof=n_dof,
        best_twice_nll=float(fr.best_twice_nll),
        n_bins=n_bins,
        n_parameters=len(names),
        wall_time=time.perf_counter() - t0,
        config=cfg,
        steps=model.steps,
        regions=tuple(t.summary() for t in model.templates),
        dropped=tuple(model.dropped),
    )
    log.info(
        "stats fit: GOF p = %.3g (%d dof), max |pull| = %.2f, max significance = %.1f",
        gof,
        n_dof,
        result.max_abs_pull,
        result.max_significance,
    )
    return result, fr, pmodel, data


def _save_png(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90, metadata={"zcalib run": current_run_id()})
    plt.close(fig)
    return path


def write_plots(
    model: StatsModel,
    fit_results: Any,
    pmodel: Any,
    data: Any,
    out_dir: str | Path,
    *,
    channels: list[str] | None = None,
) -> list[Path]:
    """Pull plot and pre/post-fit data/MC plots (``cabinetry.visualize``) as PNG files.

    Args:
        channels: regions to draw (default all).

    Returns:
        The files written.
    """
    import cabinetry

    out = Path(out_dir)
    written = []
    norms = [n for n in fit_results.labels if n.startswith("norm_")]
    fig = cabinetry.visualize.pulls(
        fit_results, exclude=norms, save_figure=False, close_figure=False
    )
    written.append(_save_png(fig, out / "pulls.png"))
    prefit = cabinetry.model_utils.prediction(pmodel)
    postfit = cabinetry.model_utils.prediction(pmodel, fit_results=fit_results)
    for pred, label in ((prefit, "prefit"), (postfit, "postfit")):
        figs = (
            cabinetry.visualize.data_mc(
                pred,
                data,
                config=model.cabinetry_config,
                channels=channels,
                save_figure=False,
                close_figure=False,
            )
            or []
        )
        for item in figs:
            written.append(_save_png(item["figure"], out / f"{item['region']}_{label}.png"))
    return written


def run_stats(
    hset: HistogramSet,
    out_dir: str | Path,
    *,
    config: StatsConfig | None = None,
    corrections: str | Path | None = None,
    plots: bool = True,
    plot_channels: list[str] | None = None,
    name: str = "stats",
) -> StatsResult:
    """Build the workspace, fit it, and write ``stats.json``, ``workspace.json`` and plots.

    Args:
        hset: histograms (refilled with the correction steps for the corrected comparison).
        out_dir: the derivation folder.
        config: settings (``data_variation``/``mc_variation`` choose corrected or
            uncorrected).
        corrections: the derivation's correction payload: the nuisance steps are its
            ``escale``/``esmear`` (default: the fixed steps of ``config``).
        plots: draw the pull and data/MC plots (under ``out_dir/plots/stats``).
        plot_channels: regions to draw (default all).
        name: output name: ``<name>.json``, ``<name>_workspace.json`` (``workspace.json``
            for the default) and ``plots/<name>/`` (e.g. ``stats_uncorrected``).

    Returns:
        The :class:`StatsResult` (with ``outputs``).

    Example:
        >>> # res = run_stats(load_histograms("corrected.npz"), "output/step",
        >>> #                 corrections="output/step/corrections.json")
        >>> # res.compatible, res.gof_pvalue
    """
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        msg = f"stats output name {name!r}: expected a plain file stem such as 'stats'"
        raise InvalidConfig(msg)
    cfg = config or StatsConfig()
    scheme = hset.scheme()
    if corrections is not None:
        applied = {c.get("kind") for c in hset.metadata.get("corrections", [])}
        smeared = "smear" in applied and cfg.mc_variation not in ("uncorrected",)
        steps = steps_from_corrections(corrections, scheme, smeared_mc=smeared)
    else:
        steps = default_steps(scheme, cfg)
    t0 = time.perf_counter()
    model = build_model(hset, steps, cfg)
    result, fr, pmodel, data = fit_model(model)
    out = Path(out_dir)
    outputs: dict[str, str] = {}
    ws_name = "workspace.json" if name == "stats" else f"{name}_workspace.json"
    outputs["workspace"] = str(
        atomic_write_text(out / ws_name, json.dumps(model.workspace, indent=1) + "\n")
    )
    if plots:
        files = write_plots(model, fr, pmodel, data, out / "plots" / name, channels=plot_channels)
        outputs["plots"] = ", ".join(str(f) for f in files)
    result = dataclasses.replace(result, wall_time=time.perf_counter() - t0, outputs=outputs)
    outputs["stats"] = str(out / f"{name}.json")
    atomic_write_text(
        out / f"{name}.json", json.dumps(stamp(result.to_dict()), indent=2, allow_nan=False) + "\n"
    )
    return result


def check_filled_with(
    hset: HistogramSet, histograms: str | Path, corrections: str | Path, steps: Sequence[Any]
) -> None:
    """Refuse ``stats --histograms H --corrections C`` unless H was filled with C applied.

    Histograms cannot be corrected after the fill (the corrections act per lepton), so the
    provenance recorded at fill (``metadata["corrections"]``) must name the same corrections,
    in order, and the same file when its recorded path still exists.
    """
    recorded = list(hset.metadata.get("corrections", []))
    names = [(c.get("name"), c.get("kind")) for c in recorded]
    wanted = [(s.name, s.kind) for s in steps]
    sources = [Path(str(c.get("source", ""))) for c in recorded]
    other_file = any(src.is_file() and not src.samefile(corrections) for src in sources if str(src))
    if names == wanted and not other_file:
        return
    done = (
        "without corrections"
        if not recorded
        else "with " + ", ".join(f"{n} ({k})" for n, k in names) + f" from {sources[0]}"
    )
    msg = (
        f"{histograms}: filled {done}, not with the corrections of {corrections}; "
        "stats compares histograms filled with them applied: give the inputs "
        "(--data/--mc/--datasets with --categories) instead of --histograms"
    )
    raise InvalidConfig(msg)
