"""Start values of the minimisation: ``scan``, ``random`` and ``specify`` (pymin's styles).

``scan`` runs one 1D NLL scan per parameter with the others at their defaults (scale 1,
smearing :data:`~zcalib.fit.problem.DEFAULT_START_SMEAR`): first the scales, then the
smearings with the scales at their scanned values. All scans of one kind share their grid
points, so each grid point is a single batched evaluation over all regions (a region
touches at most two categories, and when both are scanned with the other at its default
they see the same region shift). The grid minimum is refined by a parabola.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import NDArray

from zcalib.fit.config import FitConfig
from zcalib.fit.problem import DEFAULT_START_SMEAR, FitProblem

__all__ = ["random_start", "scan_start", "specified_start", "start_values"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


def _defaults(problem: FitProblem) -> tuple[FloatArray, FloatArray]:
    x = problem.x_fixed.copy()
    v = problem.v_fixed.copy()
    x[list(problem.free_scale)] = 0.0
    v[list(problem.free_smear)] = DEFAULT_START_SMEAR**2
    return x, v


def _leg_values(
    legs: NDArray[np.int64], free: tuple[int, ...], scanned: FloatArray, default: FloatArray
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Per region and leg: the scanned value for a free category, else the default.

    ``scanned`` has shape ``(G,)``; returns ``(G, R, 2)`` leg values and the ``(R,)`` mask of
    regions touching a free category. When both legs are free but differ, the scan of either
    sees the other at its default, so only the first free leg takes the scanned value.
    """
    is_free = np.isin(legs, np.array(free, dtype=np.int64))
    both_same = is_free[:, 0] & is_free[:, 1] & (legs[:, 0] == legs[:, 1])
    first = is_free[:, 0] | is_free[:, 1]
    use0 = is_free[:, 0]
    use1 = is_free[:, 1] & (~is_free[:, 0] | both_same)
    g = scanned.shape[0]
    vals = np.broadcast_to(default[legs][None, :, :], (g, *legs.shape)).copy()
    vals[:, use0, 0] = scanned[:, None]
    vals[:, use1, 1] = scanned[:, None]
    return vals, first


def _refine(grid: FloatArray, curve: FloatArray) -> float:
    """Grid minimum refined by the parabola through it and its neighbours."""
    finite = np.where(np.isfinite(curve), curve, np.inf)
    i = int(np.argmin(finite))
    if i == 0 or i == len(grid) - 1 or not np.isfinite(finite[i]):
        return float(grid[i])
    x0, x1, x2 = grid[i - 1 : i + 2]
    y0, y1, y2 = finite[i - 1 : i + 2]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
    if not (a > 0 and np.isfinite(b)):
        return float(grid[i])
    return float(np.clip(-b / (2 * a), x0, x2))


def scan_start(problem: FitProblem, config: FitConfig) -> tuple[FloatArray, int]:
    """Start values from 1D scans. Returns ``(θ, number of batched evaluations)``.

    Example:
        >>> # theta0, n = scan_start(problem, FitConfig())
    """
    x, v = _defaults(problem)
    n_eval = 0
    legs_s, legs_m = problem.leg_scale, problem.leg_smear
    if problem.free_scale:
        grid = np.linspace(*config.scan_scale_range, config.scan_points)
        xs = -np.log(grid)
        lx, touched = _leg_values(legs_s, problem.free_scale, xs, x)
        s2 = 0.25 * (v[legs_m[:, 0]] + v[legs_m[:, 1]])
        curves = np.empty((len(grid), problem.n_scale))
        inc = np.zeros((len(problem.codes), problem.n_scale))
        rows = np.arange(len(problem.codes))
        inc[rows, legs_s[:, 0]] = 1.0
        inc[rows, legs_s[:, 1]] = 1.0
        for g in range(len(grid)):
            mu = 0.5 * (lx[g, :, 0] + lx[g, :, 1]) - s2
            mu = np.where(touched, mu, 0.5 * (x[legs_s[:, 0]] + x[legs_s[:, 1]]) - s2)
            curves[g] = problem.region_nll(mu, s2) @ inc
            n_eval += 1
        for a in problem.free_scale:
            best = _refine(grid, curves[:, a])
            x[a] = -math.log(best)
            log.debug("scan start: scale[%d] = %.6f", a, best)
    if problem.free_smear:
        grid = np.linspace(*config.scan_smear_range, config.scan_points)
        vs = grid**2
        lv, touched = _leg_values(legs_m, problem.free_smear, vs, v)
        xm = 0.5 * (x[legs_s[:, 0]] + x[legs_s[:, 1]])
        s2_def = 0.25 * (v[legs_m[:, 0]] + v[legs_m[:, 1]])
        curves = np.empty((len(grid), problem.n_smear))
        inc = np.zeros((len(problem.codes), problem.n_smear))
        rows = np.arange(len(problem.codes))
        inc[rows, legs_m[:, 0]] = 1.0
        inc[rows, legs_m[:, 1]] = 1.0
        for g in range(len(grid)):
            s2 = np.where(touched, 0.25 * (lv[g, :, 0] + lv[g, :, 1]), s2_def)
            curves[g] = problem.region_nll(xm - s2, s2) @ inc
            n_eval += 1
        for b in problem.free_smear:
            best = _refine(grid, curves[:, b])
            v[b] = best**2
            log.debug("scan start: smear[%d] = %.6f", b, best)
    theta = np.concatenate([x[list(problem.free_scale)], v[list(problem.free_smear)]])
    return _clip(problem, theta), n_eval


def random_start(problem: FitProblem, config: FitConfig) -> FloatArray:
    """Uniform random start values in the scan ranges (seeded by ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    sc = rng.uniform(*config.scan_scale_range, size=len(problem.free_scale))
    sm = rng.uniform(*config.scan_smear_range, size=len(problem.free_smear))
    theta = np.concatenate([-np.log(sc), sm**2])
    return _clip(problem, theta)


def specified_start(problem: FitProblem, config: FitConfig) -> FloatArray:
    """Start values from ``config.start_scales`` / ``config.start_smears`` (all categories).

    Categories without a given value start at scale 1 / the default start smearing.
    """
    x, v = _defaults(problem)
    if config.start_scales is not None:
        x = -np.log(np.asarray(config.start_scales, dtype=np.float64))
    if config.start_smears is not None:
        v = np.asarray(config.start_smears, dtype=np.float64) ** 2
    theta = np.concatenate([x[list(problem.free_scale)], v[list(problem.free_smear)]])
    return _clip(problem, theta)


def start_values(problem: FitProblem, config: FitConfig) -> tuple[FloatArray, int]:
    """Start values for ``config.start``. Returns ``(θ, batched evaluations used)``."""
    if config.start == "scan":
        return scan_start(problem, config)
    if config.start == "random":
        return random_start(problem, config), 0
    return specified_start(problem, config), 0


def _clip(problem: FitProblem, theta: FloatArray) -> FloatArray:
    out: FloatArray = np.clip(theta, problem.lower, problem.upper)
    return out
