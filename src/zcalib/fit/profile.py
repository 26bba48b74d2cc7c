"""Profiles of the objective along each smearing ``σ²``: a global check of the minimum.

Below a data bin the template's fine-bin noise makes the NLL of a sparse region depend on
the kernel width ``s`` rather than ``s²`` (mass moves across the data-bin edges in
proportion to ``s``), and the noise correction removes that term only on average. What is
left is a random kink at ``σ² → 0``: a narrow well whose depth is MC-statistics noise. A
minimum inside it has a local curvature many times the curvature of the profile over one
standard error, so the Hessian error of ``σ²`` is far too small (seen: ``σ = 0.0017`` with
``err(σ²) = 1.1·10⁻⁵`` where the profile stays within 0.5 of its minimum up to ``σ² =
3·10⁻⁵`` and the truth was ``σ = 0.015``), and a well next to a deeper minimum can hold
the minimiser.

:func:`smear_profiles` evaluates, for every fitted smearing at once, the profile of the
minimised objective on a grid of ``σ`` from 0 to ``max(2σ̂, σ̂ + 0.015)``: the objective
and its gradient are evaluated exactly with the others at the minimum, and they then
follow by one Newton step with the Hessian at the minimum (a Schur complement; the linear
response alone, from the Hessian only, fails where the minimum sits in a narrow well).
Each grid point costs two batched evaluations over all regions (the first, then the
second leg's smear category moved), whatever the number of smearings. The fitter restarts from a grid point
below the minimum, fails the fit when one remains, and widens the error of a smearing
whose profile is wider than its Hessian says (:func:`profile_error`). It does not restart
into a well: lower points count only where the kernel of a region with both legs in the
category is wider than a data bin, ``σ² ≥ 2 (rebin·h)²`` (σ ≥ 0.0083 with 0.5 GeV bins).
Where the minimiser itself ends below that, the profile widens the error instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from zcalib.fit.problem import FitProblem

__all__ = ["SmearProfiles", "free_inverse", "profile_error", "smear_profiles"]

FloatArray = NDArray[np.float64]

#: Grid points per profile (σ from 0 to the end of the grid).
N_POINTS = 10
#: The grid reaches ``max(2σ̂, σ̂ + PROFILE_REACH)`` in σ.
PROFILE_REACH = 0.015


@dataclass(frozen=True)
class SmearProfiles:
    """Profiles of the objective along the fitted smearings.

    Attributes:
        index: ``θ`` index of each profiled smearing, ``(S,)``.
        v: ``σ²`` grid of each, ``(S, G)`` (increasing, from 0).
        delta: profile minus the objective at the minimum, ``(S, G)``.
        lowest: ``(s, g)`` of the lowest grid point where the kernel of a region with both
            legs in the category is wider than a data bin (``σ² ≥ 2 (rebin·h)²``).
        theta_lowest: ``θ`` at that point (the others moved by their Newton step, clipped
            to the bounds).
        resolved: grid points where a lower point counts, ``(S, G)``.
    """

    index: NDArray[np.int64]
    v: FloatArray
    delta: FloatArray
    lowest: tuple[int, int]
    theta_lowest: FloatArray
    resolved: NDArray[np.bool_]

    @property
    def lowest_delta(self) -> float:
        """Profile minus the minimum at :attr:`lowest` (``< 0``: a lower point)."""
        if not self.resolved[self.lowest]:
            return 0.0
        return float(self.delta[self.lowest])


def free_inverse(hess: FloatArray, free: NDArray[np.bool_]) -> FloatArray | None:
    """``H⁻¹`` over the ``free`` parameters (zero rows and columns elsewhere), ``None`` when
    ``H`` is not positive definite there."""
    p = hess.shape[0]
    out = np.zeros((p, p))
    hf = hess[np.ix_(free, free)]
    try:
        chol = np.linalg.cholesky(hf)
    except np.linalg.LinAlgError:
        return None
    inv_l = np.linalg.inv(chol)
    out[np.ix_(free, free)] = inv_l.T @ inv_l
    return out


def smear_profiles(
    problem: FitProblem,
    theta: FloatArray,
    hess: FloatArray,
    free: NDArray[np.bool_],
    n_points: int = N_POINTS,
) -> SmearProfiles | None:
    """Profiles of the objective along every fitted smearing ``σ²`` (module docstring).

    ``hess``: the objective's Hessian at ``theta``; ``free``: the parameters not held at a
    bound (they follow by one Newton step). ``None`` when nothing is to be profiled or the
    Hessian over the free parameters is not positive definite (the status tests report
    that).
    """
    ns = len(problem.free_scale)
    n_sm = len(problem.free_smear)
    if n_sm == 0:
        return None
    hinv = free_inverse(hess, free)
    if hinv is None:
        return None
    ks = ns + np.arange(n_sm)
    v_hat = np.maximum(theta[ks], 0.0)
    sig = np.sqrt(v_hat)
    reach = np.maximum(2.0 * sig, sig + PROFILE_REACH)
    grid_v = (reach[:, None] * np.linspace(0.0, 1.0, n_points)[None, :]) ** 2
    grid_v = np.minimum(grid_v, problem.upper[ks][:, None])

    model = problem.model
    mu0, s20 = problem.region_params(theta)
    t0 = model.evaluate(mu0, s20, order=1)
    assert t0.g_mu is not None
    assert t0.g_s is not None
    g0 = problem._chain(t0.g_mu, t0.g_s)
    jmu, js = problem.jacobian()
    r = len(problem.codes)
    rows = np.arange(r)
    col = np.full(problem.n_smear, -1, dtype=np.int64)
    col[list(problem.free_smear)] = np.arange(n_sm)
    leg0, leg1 = problem.leg_smear[:, 0], problem.leg_smear[:, 1]
    same = leg0 == leg1
    # pass 1 moves the first leg's category (both legs when they share it), pass 2 the second
    passes = ((col[leg0], np.where(same, 0.5, 0.25)), (np.where(same, -1, col[leg1]), 0.25))
    freef = free.astype(np.float64)
    hkk = hinv[ks, ks]
    delta = np.zeros((n_sm, n_points))
    steps = np.zeros((n_points, problem.n_params, n_sm))
    for g in range(n_points):
        d_nll = np.zeros(n_sm)
        d_grad = np.zeros((problem.n_params, n_sm))
        for c, w in passes:
            moved = c >= 0
            cm = np.where(moved, c, 0)
            ds2 = np.where(moved, w * (grid_v[cm, g] - v_hat[cm]), 0.0)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                t = model.evaluate(mu0 - ds2, s20 + ds2, order=1)
            assert t.g_mu is not None
            assert t.g_s is not None
            d_nll += np.bincount(cm[moved], (t.nll - t0.nll)[moved], minlength=n_sm)
            sel = sparse.csr_matrix(
                (np.ones(int(moved.sum())), (rows[moved], cm[moved])), shape=(r, n_sm)
            )
            d_grad += np.asarray(
                (
                    jmu.T @ sparse.diags(np.where(moved, t.g_mu - t0.g_mu, 0.0)) @ sel
                    + js.T @ sparse.diags(np.where(moved, t.g_s - t0.g_s, 0.0)) @ sel
                ).toarray()
            )
        # gradient of the others at the grid point (each profile holds its own smearing)
        # and their Newton step −H_rest⁻¹ g_rest with H_rest⁻¹ from H⁻¹ (Schur complement)
        grad = (g0[:, None] + d_grad) * freef[:, None]
        grad[ks, np.arange(n_sm)] = 0.0
        a = hinv @ grad
        a_k = a[ks, np.arange(n_sm)]
        ratio = np.where(hkk > 0, a_k / np.where(hkk > 0, hkk, 1.0), 0.0)
        step = -(a - hinv[:, ks] * ratio[None, :])
        with np.errstate(invalid="ignore", over="ignore"):
            delta[:, g] = d_nll + 0.5 * (grad * step).sum(axis=0)
        steps[g] = np.where(np.isfinite(step), step, 0.0)
    # a non-finite likelihood on the grid (e.g. BB-lite with an empty prediction bin) is
    # no lower point and counts as above every level
    delta = np.where(np.isfinite(delta), delta, np.inf)
    # restart candidates: grid points where a diagonal region's kernel is wider than a
    # data bin; below, a lower point is the template-noise well of the module docstring
    resolved = grid_v >= 2.0 * (model.rebin * model.h) ** 2
    flat = int(np.argmin(np.where(resolved, delta, np.inf)))
    s_low, g_low = divmod(flat, n_points)
    th = np.array(theta, dtype=np.float64) + steps[g_low][:, s_low]
    th[ks[s_low]] = grid_v[s_low, g_low]
    th = np.clip(th, problem.lower, problem.upper)
    return SmearProfiles(
        index=ks,
        v=grid_v,
        delta=delta,
        lowest=(s_low, g_low),
        theta_lowest=th,
        resolved=resolved,
    )


def _reach(v: FloatArray, d: FloatArray, v_hat: float, level: float, upward: bool) -> float:
    """``|σ² − σ̂²|`` out to where the profile last stays below ``level`` on one side of
    ``σ̂²`` (linear interpolation to the next grid point), so that a second, higher minimum
    within ``level`` is inside. The whole grid distance when it never rises above (a lower
    bound going up; NaN going down: the physical limit σ² = 0 ends the side first)."""
    side = np.flatnonzero(v > v_hat) if upward else np.flatnonzero(v < v_hat)[::-1]
    if not side.size:
        return math.nan
    pts_v = np.concatenate([[v_hat], v[side]])
    pts_d = np.concatenate([[0.0], np.maximum(d[side], 0.0)])
    below = np.flatnonzero(pts_d < level)
    j = int(below[-1])
    if j == len(pts_v) - 1:
        return abs(float(pts_v[-1]) - v_hat) if upward else math.nan
    f = (level - pts_d[j]) / (pts_d[j + 1] - pts_d[j])
    return abs(float(pts_v[j] + f * (pts_v[j + 1] - pts_v[j])) - v_hat)


def profile_error(profiles: SmearProfiles, s: int, v_hat: float) -> float:
    """Error of ``σ²`` read off profile ``s``: the largest of the half-widths at
    ``Δ = ½`` (1σ) and ``Δ = 2`` (2σ, divided by 2) on either side of ``σ̂²``
    (:func:`_reach`). It equals the Hessian error for a parabola (linear interpolation
    makes it a little smaller), and is larger where the minimum sits in a narrow well."""
    v, d = profiles.v[s], profiles.delta[s]
    widths = [_reach(v, d, v_hat, 0.5 * k * k, up) / k for k in (1.0, 2.0) for up in (True, False)]
    finite = [w for w in widths if math.isfinite(w)]
    return max(finite) if finite else math.nan
