"""Fit results: frozen dataclasses with a JSON-serialisable :meth:`FitResult.to_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from zcalib.exceptions import FitFailed
from zcalib.fit.config import FitConfig

__all__ = ["CategoryFit", "FitResult", "FitStatus", "RegionInfo"]

FitStatus = Literal["converged", "failed"]


def _num(v: float) -> float | None:
    """JSON has no NaN/inf: map them to ``None``."""
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class CategoryFit:
    """Fitted value of one scale or smear category.

    Attributes:
        kind: ``"scale"`` or ``"smear"``.
        index: category index in the scheme.
        label: human-readable label (bins).
        value: scale (correction applied to data energies) or smearing (relative width).
        stat: statistical error from data (inverse Hessian).
        mc_stat: error from the MC template statistics.
        n_pairs: data pairs (Σw, inside the window) in the used regions touching it.
        at_bound: the value sits at a bound of the fit range (errors are conditional).
        state: ``"fitted"``, ``"fixed"`` (fix_scales/fix_smears) or ``"ignored"``.
        sq_error: smear categories: total statistical error (stat ⊕ MC stat) of ``σ²``, the
            fit's own parameter, whose estimate is close to Gaussian even at ``σ = 0`` (where
            the error of ``σ`` is not); NaN for scales and non-fitted categories.
    """

    kind: Literal["scale", "smear"]
    index: int
    label: str
    value: float
    stat: float
    mc_stat: float
    n_pairs: float
    at_bound: bool = False
    state: Literal["fitted", "fixed", "ignored"] = "fitted"
    sq_error: float = math.nan

    @property
    def zero_significance(self) -> float:
        """Smear categories: ``σ² / sq_error``, how many standard deviations the fitted
        smearing is from 0 (judge "consistent with no smearing" with this); NaN otherwise.

        Example:
            >>> CategoryFit("smear", 0, "s", 0.004, 0.001, 0.0, 1e4, sq_error=8e-6).zero_significance
            2.0
        """
        if self.kind != "smear" or self.state != "fitted":
            return math.nan
        if self.value == 0.0:
            return 0.0
        if not math.isfinite(self.sq_error) or self.sq_error <= 0:
            return math.nan
        return self.value * self.value / self.sq_error

    @property
    def total_stat(self) -> float:
        """``stat ⊕ mc_stat`` (the total statistical error)."""
        mc = self.mc_stat if math.isfinite(self.mc_stat) else 0.0
        return math.hypot(self.stat, mc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "kind": self.kind,
            "index": self.index,
            "label": self.label,
            "value": _num(self.value),
            "stat": _num(self.stat),
            "mc_stat": _num(self.mc_stat),
            "total_stat": _num(self.total_stat),
            "n_pairs": _num(self.n_pairs),
            "at_bound": self.at_bound,
            "state": self.state,
            "sq_error": _num(self.sq_error),
            "zero_significance": _num(self.zero_significance),
        }


@dataclass(frozen=True)
class RegionInfo:
    """One pair region: its cells, counts inside the window, and whether it was used.

    Attributes:
        code: region code ``min(ci, cj) * n_cells + max(ci, cj)``.
        cells: the cell pair ``(i, j)``, ``i <= j``.
        n_data: data Σw inside the window.
        n_mc_eff: MC effective entries ``(Σw)²/Σw²`` inside the window.
        used: the region enters the likelihood.
        reason: why it was dropped (empty when used).
    """

    code: int
    cells: tuple[int, int]
    n_data: float
    n_mc_eff: float
    used: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "code": self.code,
            "cells": list(self.cells),
            "n_data": _num(self.n_data),
            "n_mc_eff": _num(self.n_mc_eff),
            "used": self.used,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class FitResult:
    """Result of one scale/smearing fit.

    Attributes:
        scales: one :class:`CategoryFit` per scale category (scheme order).
        smears: one :class:`CategoryFit` per smear category.
        status: ``"converged"`` or ``"failed"`` (see ``message``).
        message: minimiser message plus convergence diagnostics.
        n_eval: evaluations of the minimiser: Newton iterations (one Hessian each) plus
            L-BFGS-B NLL+gradient evaluations (start scans not included).
        n_start_eval: batched NLL evaluations of the start scans.
        minimizer_success: the minimiser's own success flag (Newton: EDM reached within
            its iterations; L-BFGS-B: scipy's flag; ``status`` also accepts a fit whose
            EDM is below tolerance when L-BFGS-B stopped on a line-search failure).
        grad_norm: norm of the projected gradient at the minimum (internal units).
        edm: estimated distance to minimum ``½ gᵀH⁻¹g`` (NLL units).
        nll: the minimised objective: NLL minus its saturated value (``Σ n log(n/N)``),
            plus the template-noise correction (negative) with ``noise-corrected``.
        wall_time: seconds for the whole fit (set-up, start, minimisation, errors).
        regions: all regions with their counts and whether they were used.
        window: effective fit window in GeV (snapped to fine-bin edges).
        rebin: fine bins per data bin.
        config: the configuration used.
        covariance: total statistical covariance of the fitted parameters, in the order of
            ``parameters`` (scales, then smearings, in scale/smear units).
        parameters: names of the fitted parameters (``"scale[3]"``, ``"smear[0]"``).
        timings: seconds per stage (``setup``, ``start``, ``minimise``, ``errors``).
        template_bias: the template-noise bias subtracted from the objective's minimum, in
            the fit's internal parameters (``FitConfig.template_bias``; zeros when off): the
            minimum itself is ``problem.theta_from_values(...) + template_bias``.
    """

    scales: tuple[CategoryFit, ...]
    smears: tuple[CategoryFit, ...]
    status: FitStatus
    message: str
    n_eval: int
    grad_norm: float
    edm: float
    nll: float
    wall_time: float
    regions: tuple[RegionInfo, ...]
    window: tuple[float, float]
    rebin: int
    config: FitConfig
    covariance: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    n_start_eval: int = 0
    minimizer_success: bool = True
    parameters: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    template_bias: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def converged(self) -> bool:
        """True when the fit converged."""
        return self.status == "converged"

    @property
    def regions_used(self) -> tuple[RegionInfo, ...]:
        """Regions entering the likelihood."""
        return tuple(r for r in self.regions if r.used)

    @property
    def regions_dropped(self) -> tuple[RegionInfo, ...]:
        """Regions excluded (thresholds or ignored categories), with the reason."""
        return tuple(r for r in self.regions if not r.used)

    def scale_values(self) -> NDArray[np.float64]:
        """Scale per scale category, as an array."""
        return np.array([c.value for c in self.scales])

    def smear_values(self) -> NDArray[np.float64]:
        """Smearing per smear category, as an array."""
        return np.array([c.value for c in self.smears])

    def raise_if_failed(self) -> FitResult:
        """Return ``self`` if converged, else raise :class:`FitFailed` with the reasons.

        Example:
            >>> # result = fit_histograms(hset).raise_if_failed()
        """
        if self.status != "converged":
            msg = f"fit {self.message}"
            raise FitFailed(msg)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (NaN/inf become ``null``)."""
        return {
            "status": self.status,
            "message": self.message,
            "n_eval": self.n_eval,
            "n_start_eval": self.n_start_eval,
            "minimizer_success": self.minimizer_success,
            "grad_norm": _num(self.grad_norm),
            "edm": _num(self.edm),
            "nll": _num(self.nll),
            "wall_time": self.wall_time,
            "timings": dict(self.timings),
            "window": list(self.window),
            "rebin": self.rebin,
            "scales": [c.to_dict() for c in self.scales],
            "smears": [c.to_dict() for c in self.smears],
            "regions_used": [r.to_dict() for r in self.regions_used],
            "regions_dropped": [r.to_dict() for r in self.regions_dropped],
            "parameters": list(self.parameters),
            "covariance": [[_num(float(v)) for v in row] for row in self.covariance],
            "config": self.config.to_dict(),
        }
