"""Minimisation, uncertainties and the public entry points :func:`fit_histograms`, :func:`fit_arrays`.

The minimiser (``config.minimizer="newton"``) takes Newton steps with the exact Hessian in
a trust region, in parameters rescaled by their estimated errors (diagonal of the exact
Hessian at the start), so tolerances are in units of the statistical error; where the
Hessian is not positive definite the step is Levenberg-Marquardt-damped, and steps are
projected on the bounds (:func:`_newton`). If they do not converge, and with
``minimizer="lbfgs"``, scipy's L-BFGS-B on the exact gradient minimises. Convergence is
judged like MINUIT by the estimated distance to the minimum ``EDM = ½ gᵀH⁻¹g`` with the
exact Hessian (over parameters not at a bound); if L-BFGS-B stops with a larger EDM, up to
three projected Newton steps polish the minimum.
When a smearing ends below a data bin's kernel width, :func:`global_check` profiles every
smearing along ``σ²`` (:mod:`zcalib.fit.profile`), restarts from a lower profile point and
widens the errors of a minimum in the template-noise well at ``σ ≈ 0`` to its profile.
:func:`failure_reasons` decides the status: a parameter at a fit-range bound, an EDM or
gradient test that fails, a Hessian that is not positive definite, or a confirmed lower
minimum the restarts did not reach make the fit ``"failed"``, with the reasons in words in
``message``.

Uncertainties: ``stat`` from the inverse exact Hessian of the data NLL; ``mc_stat`` either
from the sandwich ``H⁻¹ V H⁻¹`` with ``V = Σ_k Var(t_k) (∂g/∂t_k)(∂g/∂t_k)ᵀ`` over MC
template bins (the linear response of the minimum to the template, ``Var(t_k) = Σw²``) or
from replicas of Gaussian-fluctuated templates (``mc_stat="bootstrap"``,
:func:`bootstrap_covariance`). Parameters at a bound get conditional errors ``1/√H_ii``
and ``at_bound=True``.

With ``template_bias="bootstrap"`` (default) the replicas come as antithetic pairs
(``t ± ε``) solved to their own minima to second order; the reported values are the
minimum minus the template-noise bias they estimate (the mean pair minimum minus the
plain-NLL minimum on the observed template), and the MC-statistics covariance is the exact
linear propagation, scaled by the shrink the pairs measure, plus the pair means' spread;
the status is judged at the minimum itself.

With ``mc_stat_likelihood="bb-lite"`` (off by default) the template statistics are also in
the likelihood (Barlow-Beeston lite, :mod:`zcalib.fit.likelihood.bb_lite`); that
likelihood only *locates* the minimum (and drives the minimiser). Its inverse Hessian is not
used for errors: it would count the MC statistics a second time next to ``mc_stat``, and
it underestimates them anyway (BB-lite treats the template noise of neighbouring data bins
as independent although one fine MC bin feeds several data bins through the kernel; toys
give pull widths 1.15-1.37 with ``H_bb⁻¹`` errors). So in that mode too ``stat`` is the
data-only error ``H⁻¹`` of the plain NLL at the minimum and ``mc_stat`` is the MC-statistics
error of the chosen method (``"sandwich"``: linear propagation of Σw² through the plain
gradient, ``"bootstrap"``: BB-lite replicas, ``"none"``: 0); each is counted once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize

from zcalib.categories import CategoryScheme
from zcalib.exceptions import FitError
from zcalib.fit.config import FitConfig
from zcalib.fit.problem import FitProblem, build_problem
from zcalib.fit.profile import SmearProfiles, free_inverse, profile_error, smear_profiles
from zcalib.fit.result import CategoryFit, FitResult, FitStatus
from zcalib.fit.start import start_values
from zcalib.histograms import HistogramSet

__all__ = ["fit_arrays", "fit_histograms", "minimise"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: Parameter scales used when the start Hessian gives none, and their caps
#: (``x = −log scale`` and ``v = smear²``).
_FALLBACK_STEP = {"scale": 1e-3, "smear": 1e-5}
_MAX_STEP = {"scale": 1e-2, "smear": 1e-3}


class _Counter:
    def __init__(self) -> None:
        self.n = 0


def _steps(problem: FitProblem, hess: FloatArray) -> FloatArray:
    """Per-parameter scale (estimated error) from the Hessian diagonal, with fallbacks."""
    ns = len(problem.free_scale)
    diag = np.diag(hess)
    fallback = np.array(
        [_FALLBACK_STEP["scale"]] * ns + [_FALLBACK_STEP["smear"]] * len(problem.free_smear)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where((diag > 0) & np.isfinite(diag), 1.0 / np.sqrt(diag), fallback)
    cap = np.array([_MAX_STEP["scale"]] * ns + [_MAX_STEP["smear"]] * len(problem.free_smear))
    out: FloatArray = np.minimum(step, cap)
    return out


def _at_bound(problem: FitProblem, theta: FloatArray, step: FloatArray) -> NDArray[np.bool_]:
    tol = np.maximum(1e-3 * step, 1e-12 * (problem.upper - problem.lower))
    out: NDArray[np.bool_] = (theta - problem.lower <= tol) | (problem.upper - theta <= tol)
    return out


def _edm(grad: FloatArray, hess: FloatArray, free: NDArray[np.bool_]) -> float:
    if not free.any():
        return 0.0
    g = grad[free]
    h = hess[np.ix_(free, free)]
    try:
        return abs(float(0.5 * g @ np.linalg.solve(h, g)))
    except np.linalg.LinAlgError:
        return math.inf


def _free_mask(
    problem: FitProblem, theta: FloatArray, grad: FloatArray, step: FloatArray
) -> NDArray[np.bool_]:
    """Parameters not pinned at a bound by an outward gradient."""
    tol = np.maximum(1e-3 * step, 1e-12 * (problem.upper - problem.lower))
    at_lo = (theta - problem.lower <= tol) & (grad > 0)
    at_hi = (problem.upper - theta <= tol) & (grad < 0)
    out: NDArray[np.bool_] = ~(at_lo | at_hi)
    return out


def _lbfgs(
    problem: FitProblem,
    theta0: FloatArray,
    step: FloatArray,
    config: FitConfig,
    counter: _Counter,
) -> tuple[FloatArray, Any]:
    """L-BFGS-B in the scaled coordinates ``(θ − θ₀)/step``; returns ``(θ, scipy result)``."""
    lower = (problem.lower - theta0) / step
    upper = (problem.upper - theta0) / step

    def fun(y: FloatArray) -> tuple[float, FloatArray]:
        counter.n += 1
        f, g = problem.nll_grad(theta0 + step * y)
        return f, g * step

    res = minimize(
        fun,
        np.zeros_like(theta0),
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={
            "maxiter": config.max_iter,
            "maxfun": 4 * config.max_iter,
            "ftol": 1e-14,
            "gtol": 1e-7,
            "maxcor": 10,
        },
    )
    theta: FloatArray = np.clip(theta0 + step * res.x, problem.lower, problem.upper)
    return theta, res


#: Newton iterations before the minimiser falls back to L-BFGS-B.
_MAX_NEWTON = 30
#: Initial trust radius of the Newton iterations, in estimated standard errors (∞-norm): the
#: scan start is within a few errors of the minimum; a wider first step can jump to another
#: local minimum of a sparse fit (seen with 10: a smearing near 0 in the pile-up-up demo fit).
_TRUST0 = 3.0


def _trust_step(hs: FloatArray, gs: FloatArray, radius: float) -> tuple[FloatArray, float]:
    """Trust-region step in scaled coordinates: the Newton step ``−H⁻¹g`` when ``H`` is
    positive definite and the step is inside ``radius``, else ``−(H + λI)⁻¹g`` on the
    boundary with the smallest ``λ ≥ max(0, −λ_min(H))`` (eigen-decomposition of ``H``; a
    component along the most negative curvature completes the step in the "hard case").

    Returns ``(step, EDM ½ gᵀH⁻¹g)`` (EDM ``inf`` when ``H`` is not positive definite).
    """
    e, vec = np.linalg.eigh(hs)
    a = vec.T @ gs
    pd = bool(e[0] > 1e-12 * max(float(np.max(np.abs(e))), 1e-300))
    edm = 0.5 * float(np.sum(a * a / e)) if pd else math.inf
    if pd:
        d: FloatArray = -(vec @ (a / e))
        if float(np.max(np.abs(d))) <= radius:
            return d, edm

    def norm(lam: float) -> float:
        return float(np.max(np.abs(vec @ (a / (e + lam)))))

    lo = max(0.0, -float(e[0]))
    lo_eff = lo + 1e-12 * max(1.0, lo)
    if norm(lo_eff) <= radius:  # hard case: fill up along the lowest eigenvector
        c = -a / (e + lo_eff)
        c[0] = 0.0
        rest = radius**2 - float(c @ c)
        c[0] = math.sqrt(max(rest, 0.0))
        return vec @ c, edm
    hi = lo + math.sqrt(len(a)) * float(np.linalg.norm(a)) / radius + 1.0
    while norm(hi) > radius:
        hi *= 2.0
    lo_b = lo_eff
    for _ in range(60):
        mid = 0.5 * (lo_b + hi)
        if norm(mid) > radius:
            lo_b = mid
        else:
            hi = mid
        if hi - lo_b <= 1e-6 * hi:
            break
    d = -(vec @ (a / (e + hi)))
    return d, edm


def _newton(
    problem: FitProblem,
    theta0: FloatArray,
    first: tuple[float, FloatArray, FloatArray],
    step: FloatArray,
    config: FitConfig,
    counter: _Counter,
) -> tuple[FloatArray, tuple[float, FloatArray, FloatArray], bool, str, int]:
    """Newton iterations with the exact Hessian in a trust region (∞-norm, in units of the
    estimated errors ``step``; Levenberg-Marquardt ``λ`` where the Hessian is not positive
    definite or the step too long, :func:`_trust_step`), projected on the parameter bounds
    (parameters at a bound with an outward gradient are held). Stops when the EDM over the
    free parameters is below ``0.1 × edm_tolerance``.

    ``first``: ``(nll, grad, hess)`` at ``theta0``. Returns ``(θ, (nll, grad, hess),
    converged, message, iterations)``.
    """
    theta = np.array(theta0, dtype=np.float64)
    nll, grad, hess = first
    radius = _TRUST0
    n_iter = 0
    while n_iter < min(_MAX_NEWTON, config.max_iter):
        free = _free_mask(problem, theta, grad, step)
        if not free.any():
            return theta, (nll, grad, hess), True, "all parameters at a bound", n_iter
        s = step[free]
        hs = hess[np.ix_(free, free)] * np.outer(s, s)
        gs = grad[free] * s
        d, edm = _trust_step(hs, gs, radius)
        if edm <= 0.1 * config.edm_tolerance:
            return theta, (nll, grad, hess), True, f"{n_iter} Newton iterations", n_iter
        trial = theta.copy()
        trial[free] += s * d
        trial = np.clip(trial, problem.lower, problem.upper)
        moved = (trial - theta)[free] / s
        length = float(np.max(np.abs(moved))) if moved.size else 0.0
        predicted = -float(gs @ moved + 0.5 * moved @ hs @ moved)
        n_iter += 1
        counter.n += 1
        try:
            nll_t, grad_t, hess_t = problem.hessian(trial)
        except FitError:
            nll_t = math.inf
        actual = nll - nll_t
        if not actual > -1e-9 * max(1.0, abs(nll)):
            radius = 0.25 * length
            if radius < 1e-6:
                return theta, (nll, grad, hess), False, "trust region collapsed", n_iter
            continue
        ratio = actual / predicted if predicted > 0 else 1.0
        if ratio > 0.75 and length >= 0.99 * radius:
            radius *= 4.0
        elif ratio < 0.25:
            radius = 0.25 * length
        theta, nll, grad, hess = trial, nll_t, grad_t, hess_t
    return theta, (nll, grad, hess), False, f"no convergence in {n_iter} Newton iterations", n_iter


def minimise(
    problem: FitProblem,
    theta0: FloatArray,
    config: FitConfig,
    step: FloatArray | None = None,
    *,
    polish_only: bool = False,
) -> tuple[FloatArray, dict[str, Any]]:
    """Minimise the NLL from ``theta0``: Newton iterations with the exact Hessian
    (:func:`_newton`; with ``config.minimizer="lbfgs"`` L-BFGS-B instead), L-BFGS-B when
    they do not converge, then up to three Newton polish steps.

    ``step``: parameter scaling (default: from the Hessian at ``theta0``).
    ``polish_only``: ``theta0`` is close to the minimum: Newton polish steps only (the full
    minimisation if they do not reach the EDM tolerance).

    Returns:
        ``(θ̂, info)`` with ``info`` keys ``success``, ``message``, ``n_eval``, ``nll``,
        ``grad``, ``hess``, ``edm``, ``grad_norm``, ``step``.
    """
    counter = _Counter()
    first: tuple[float, FloatArray, FloatArray] | None = None
    if step is None:
        first = problem.hessian(theta0)
        step = _steps(problem, first[2])
    if polish_only:
        theta, success, message, n_iter = np.array(theta0, dtype=np.float64), True, "", 0
    else:
        done = False
        if config.minimizer == "newton":
            if first is None:
                first = problem.hessian(theta0)
            theta, first, done, message, n_iter = _newton(
                problem, theta0, first, step, config, counter
            )
            success = done
        if not done:
            start = theta if config.minimizer == "newton" else theta0
            theta, res = _lbfgs(problem, start, step, config, counter)
            success, message, n_iter = bool(res.success), str(res.message), int(res.nit)
            first = None
    nll, grad, hess = problem.hessian(theta) if first is None or polish_only else first
    free = _free_mask(problem, theta, grad, step)
    edm = _edm(grad, hess, free)
    n_newton = 0
    while edm > 0.1 * config.edm_tolerance and n_newton < 3 and free.any():
        g = grad[free]
        h = hess[np.ix_(free, free)]
        try:
            delta = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        trial = theta.copy()
        trial[free] += delta
        trial = np.clip(trial, problem.lower, problem.upper)
        nll_t, grad_t, hess_t = problem.hessian(trial)
        counter.n += 1
        n_newton += 1
        if not nll_t <= nll + 1e-9:
            break
        theta, nll, grad, hess = trial, nll_t, grad_t, hess_t
        free = _free_mask(problem, theta, grad, step)
        edm = _edm(grad, hess, free)
    if polish_only and not edm <= 0.1 * config.edm_tolerance:
        theta, info = minimise(problem, theta, config, step)
        info["n_eval"] = int(info["n_eval"]) + counter.n
        return theta, info
    if n_newton:
        message += f"; {n_newton} Newton polish step(s)"
    pg = np.where(free, grad, 0.0) * step
    info = {
        "success": success,
        "message": message,
        "n_eval": counter.n,
        "nll": nll,
        "grad": grad,
        "hess": hess,
        "edm": edm,
        "grad_norm": float(np.linalg.norm(pg)),
        "step": step,
        "n_iter": n_iter,
    }
    return theta, info


def minimise_objective(
    problem: FitProblem, theta0: FloatArray, config: FitConfig
) -> tuple[FloatArray, dict[str, Any]]:
    """:func:`minimise` from ``theta0`` with the noise-correction weights set there; with the
    correction on, the weights are then refreshed at the minimum and the minimum polished
    by Newton steps (the weights move with the fitted shift only)."""
    problem.set_reference(theta0)
    theta, info = minimise(problem, theta0, config)
    if problem.model.objective.refresh_at_minimum:
        n_first = int(info["n_eval"])
        problem.set_reference(theta)
        theta, info = minimise(problem, theta, config, info["step"], polish_only=True)
        info["n_eval"] = int(info["n_eval"]) + n_first
    return theta, info


#: A profile point this much below the minimum (NLL units) is a lower minimum to restart from.
LOWER_POINT_TOLERANCE = 0.05
#: Restarts from lower profile points before the fit is declared failed.
_MAX_RESTARTS = 2
#: A smearing's errors are widened when its profile error exceeds its Hessian error by more.
PROFILE_WIDENING = 1.2


def global_check(
    problem: FitProblem, theta: FloatArray, info: dict[str, Any], config: FitConfig
) -> tuple[FloatArray, dict[str, Any], SmearProfiles | None, str]:
    """When a fitted smearing is below ``σ² = 2 (rebin·h)²`` (the kernel of a region with
    both legs in its category narrower than a data bin: where the template-noise well of
    :mod:`zcalib.fit.profile` lives), profile every fitted smearing along ``σ²``
    (:func:`zcalib.fit.profile.smear_profiles`) and restart the minimisation from the lowest profile point while one is more than
    :data:`LOWER_POINT_TOLERANCE` below the minimum (at most ``_MAX_RESTARTS`` times).

    The profile's other parameters follow by one Newton step with the Hessian at the
    minimum, which can promise a decrease that is not there (their curvature changes along
    the profile): a restart that ends no lower ends the check, and only a lower point that
    the exact objective confirms after the last restart fails the fit.

    Returns ``(θ, info, profiles at the final minimum, reason)``; ``reason`` is non-empty
    when a confirmed lower point remains (the fit must then not be "converged").
    """
    step = info["step"]
    ns = len(problem.free_scale)
    well = 2.0 * (problem.model.rebin * problem.model.h) ** 2
    n_restarts = 0
    while True:
        if not np.any(theta[ns:] < well):
            # no smearing where a diagonal region's kernel is narrower than a data bin: no
            # minimum in a well, nothing to restart from (the check costs ~20 gradients)
            return theta, info, None, ""
        free = ~_at_bound(problem, theta, step)
        profiles = smear_profiles(problem, theta, info["hess"], free)
        if profiles is None or profiles.lowest_delta >= -LOWER_POINT_TOLERANCE:
            return theta, info, profiles, ""
        s, g = profiles.lowest
        name = problem.names[int(profiles.index[s])]
        where = math.sqrt(profiles.v[s, g])
        if n_restarts == _MAX_RESTARTS:
            break
        n_restarts += 1
        log.info(
            "global check: the profile along %s is %.3g lower at smearing %.4g; restarting there",
            name,
            -profiles.lowest_delta,
            where,
        )
        n_before = int(info["n_eval"])
        trial, trial_info = minimise(problem, profiles.theta_lowest, config, step)
        if not trial_info["nll"] < info["nll"] - LOWER_POINT_TOLERANCE:
            log.debug("global check: the restart ended no lower (%.6g)", trial_info["nll"])
            return theta, info, profiles, ""
        problem.set_reference(trial)
        theta, info = minimise(problem, trial, config, step, polish_only=True)
        info["n_eval"] = int(info["n_eval"]) + int(trial_info["n_eval"]) + n_before
    below = info["nll"] - problem.nll(profiles.theta_lowest)
    if below <= LOWER_POINT_TOLERANCE:
        return theta, info, profiles, ""
    reason = (
        f"a lower minimum exists: the likelihood at {name} = {where:.4g} is {below:.3g} "
        f"below the minimum and the minimiser did not reach it in {_MAX_RESTARTS} restarts"
    )
    return theta, info, profiles, reason


def _widen_by_profile(
    problem: FitProblem,
    theta: FloatArray,
    hess: FloatArray,
    at_bound: NDArray[np.bool_],
    profiles: SmearProfiles | None,
    cov: FloatArray,
    cov_mc: FloatArray,
) -> dict[str, float]:
    """Scale the rows and columns of ``cov`` and ``cov_mc`` of each smearing whose profile
    error (:func:`zcalib.fit.profile.profile_error`) exceeds its Hessian error by more than
    :data:`PROFILE_WIDENING` by that ratio (in place; correlations are kept). The one-Newton-
    step bootstrap replicas use the same curvature, so their spread is widened alike.
    Returns the factors applied, by parameter name."""
    out: dict[str, float] = {}
    if profiles is None:
        return out
    free = ~at_bound
    hinv = free_inverse(hess, free)
    if hinv is None:
        return out
    for s, k in enumerate(profiles.index.tolist()):
        h_err = (
            math.sqrt(hinv[k, k])
            if free[k]
            else (1.0 / math.sqrt(hess[k, k]) if hess[k, k] > 0 else math.nan)
        )
        p_err = profile_error(profiles, s, float(max(theta[k], 0.0)))
        if not (math.isfinite(h_err) and math.isfinite(p_err) and h_err > 0):
            continue
        factor = p_err / h_err
        if factor > PROFILE_WIDENING:
            for c in (cov, cov_mc):
                c[k, :] *= factor
                c[:, k] *= factor
            out[problem.names[k]] = factor
    if out:
        log.info(
            "smearing errors widened to their likelihood profiles (non-parabolic near 0): %s",
            ", ".join(f"{n} x{f:.2g}" for n, f in out.items()),
        )
    return out


def _covariances(
    problem: FitProblem,
    theta: FloatArray,
    hess: FloatArray,
    at_bound: NDArray[np.bool_],
    config: FitConfig,
    mc_covariance: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, str, FloatArray]:
    """Data-stat and MC-stat covariances of ``θ`` (NaN where undefined), a note and the
    template-noise bias of ``θ`` (:func:`bootstrap_covariance`; 0 unless
    ``config.template_bias="bootstrap"``, the likelihood allows it and no MC covariance is
    given).

    With BB-lite the data-stat part uses the plain (data-only) Hessian at the minimum, so the
    MC statistics enter once, through ``mc_stat`` (see the module docstring). With the
    noise correction the data part is the sandwich ``H⁻¹ F H⁻¹`` (objective Hessian ``H``,
    data information ``F``).
    """
    h_objective = hess
    h_sandwich: FloatArray | None = None
    data_errors = problem.model.objective.data_errors
    if data_errors == "sandwich":
        # θ̂ minimises NLL + C(θ) with C a fixed function of the template: its data
        # covariance is H⁻¹ F H⁻¹ (H: Hessian of the minimised objective, F: the data's
        # Fisher information, the plain-NLL Hessian)
        h_sandwich = problem.hessian(theta, data_only=True)[2]
    if data_errors == "data-hessian":
        h_data = problem.hessian(theta, data_only=True)[2]
        free_d = ~at_bound
        try:
            np.linalg.cholesky(h_data[np.ix_(free_d, free_d)])
            hess = h_data
        except np.linalg.LinAlgError:
            # the plain NLL is not convex here (e.g. a smearing far below a fine bin, where
            # its s² curvature blows up): fall back to the BB-lite Hessian, which already
            # holds the MC statistics, so the MC-stat term is left out
            log.warning(
                "data-only Hessian not positive definite at the BB-lite minimum; errors from "
                "the BB-lite Hessian (MC statistics included in stat, mc_stat = 0)"
            )
            config = config.with_overrides(mc_stat="none")
    p = problem.n_params
    cov_mc = np.full((p, p), np.nan)
    note = ""
    bias = np.zeros(p)
    correct = (
        mc_covariance is None
        and config.template_bias == "bootstrap"
        and config.mc_stat != "none"  # the template taken as exact
        and problem.model.objective.bootstrap_bias
    )
    free = ~at_bound
    if h_sandwich is not None and free.any():
        try:
            np.linalg.cholesky(hess[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            # the corrected objective is not convex at the minimum: data errors from the
            # data's own information instead
            log.info("noise-corrected objective not convex at the minimum; data errors from F⁻¹")
            hess, h_sandwich = h_sandwich, None
    # at a bound the objective's curvature can be ≤ 0 (the noise correction is concave in
    # s²): conditional errors there come from the data's information when it is known
    diag = np.diag(hess if h_sandwich is None else h_sandwich)
    hinv = np.full((p, p), np.nan)
    cov = hinv
    if free.any():
        hf = hess[np.ix_(free, free)]
        try:
            chol = np.linalg.cholesky(hf)
            inv_l = np.linalg.inv(chol)
            hinv_f = inv_l.T @ inv_l
            hinv[np.ix_(free, free)] = hinv_f
            if h_sandwich is not None:
                data_f = hinv_f @ h_sandwich[np.ix_(free, free)] @ hinv_f
                cov = np.full((p, p), np.nan)
                cov[np.ix_(free, free)] = 0.5 * (data_f + data_f.T)
        except np.linalg.LinAlgError:
            eig = np.linalg.eigvalsh(hf)
            names = [problem.names[i] for i in np.flatnonzero(free)]
            note = (
                f"the Hessian is not positive definite at the minimum (smallest eigenvalue "
                f"{eig[0]:.3g}); parameters {names} may be degenerate"
            )
    for i in np.flatnonzero(at_bound):
        hinv[i, i] = 1.0 / diag[i] if diag[i] > 0 else np.nan
        cov[i, i] = hinv[i, i]
    if mc_covariance is not None:
        cov_mc = np.asarray(mc_covariance, dtype=np.float64)
    elif config.mc_stat == "sandwich":
        v = problem.mc_stat_information(theta)
        hv = np.where(np.isnan(hinv), 0.0, hinv)
        cov_mc = hv @ v @ hv
        cov_mc[np.isnan(hinv)] = np.nan
        for i in np.flatnonzero(at_bound):
            cov_mc[i, i] = v[i, i] / diag[i] ** 2 if diag[i] > 0 else np.nan
    elif config.mc_stat == "bootstrap":
        cov_mc, bias = bootstrap_covariance(problem, theta, config, h_objective, bias=correct)
    else:
        cov_mc = np.zeros((p, p))
    if correct and config.mc_stat != "bootstrap":
        bias = bootstrap_covariance(problem, theta, config, h_objective, bias=True)[1]
    return cov, cov_mc, note, bias


def _replica_noise(sd: NDArray[np.float32], seed: np.random.SeedSequence) -> NDArray[np.float32]:
    """The noise of one template replica: every fine bin ``N(0, sd)`` (seeded; single
    precision, SFC64: the draws are the replicas' largest cost on a big template)."""
    noise = np.random.Generator(np.random.SFC64(seed)).standard_normal(sd.shape, dtype=np.float32)
    noise *= sd
    return noise


def _noises(
    sd: NDArray[np.float32], seeds: Sequence[np.random.SeedSequence]
) -> Iterator[NDArray[np.float32]]:
    """:func:`_replica_noise` of each seed in turn, the next one drawn in a thread while the
    caller works on the current one (numpy draws without the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(_replica_noise, sd, ss) for ss in seeds[:1]]
        for k in range(len(seeds)):
            if k + 1 < len(seeds):
                pending.append(pool.submit(_replica_noise, sd, seeds[k + 1]))
            yield pending.pop(0).result()


def _noise_columns(problem: FitProblem, theta: FloatArray) -> slice:
    """The fine template bins the prediction near ``θ`` reads (the kernel's support around
    the window): template noise elsewhere changes nothing."""
    m = problem.model
    mu, s2 = problem.region_params(theta)
    seg = m._kernel_segment(mu, m._floored(s2))
    n_fine = m.template.shape[1]
    return slice(max(seg.offset, 0), max(min(seg.offset + seg.width - 1 + m.n_out, n_fine), 0))


def _replica_template(
    template: FloatArray, cols: slice, noise: NDArray[np.float32], sign: float = 1.0
) -> FloatArray:
    """``template + sign · noise`` (noise on the columns ``cols``), in double precision."""
    part = noise.astype(np.float64)
    if sign < 0:
        np.negative(part, out=part)
    part += template[:, cols]
    out = template.copy()
    out[:, cols] = part
    return out


def _solve(hf: FloatArray, chol: FloatArray | None, g: FloatArray) -> FloatArray:
    """``H⁻¹g`` by the Cholesky factor of ``H`` (least squares when it has none)."""
    if chol is None:
        return np.asarray(np.linalg.lstsq(hf, g, rcond=None)[0], dtype=np.float64)
    return np.asarray(np.linalg.solve(chol.T, np.linalg.solve(chol, g)), dtype=np.float64)


def _cholesky(h: FloatArray) -> FloatArray | None:
    try:
        return np.asarray(np.linalg.cholesky(h), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None


#: Newton steps of the plain-NLL minimum on the observed template (the bootstrap world's
#: truth of the bias correction) from the fitted minimum.
_PLAIN_STEPS = 3


def _plain_minimum(
    plain: FitProblem,
    theta: FloatArray,
    free: NDArray[np.bool_],
    first: tuple[FloatArray, FloatArray],
) -> FloatArray:
    """The minimum of the plain multinomial NLL ``plain`` on the fit's own template, by
    Newton steps (exact Hessian) from ``θ̂`` over the ``free`` parameters; ``first``: its
    gradient and Hessian at ``θ̂``."""
    out = np.array(theta, dtype=np.float64)
    g, h = first
    for k in range(_PLAIN_STEPS):
        if k:
            _, g, h = plain.hessian(out)
        hf = h[np.ix_(free, free)]
        out[free] -= _solve(hf, _cholesky(hf), g[free])
        out = np.clip(out, plain.lower, plain.upper)
    return out


#: A parameter's template-noise bias is not applied when its plain-NLL minimum is more than
#: ``WELL_DISTANCE`` total errors from the fitted minimum and the replicas' mean
#: displacement covers less than ``WELL_FOLLOW`` of that distance (measured: 1.14-1.67 for
#: every smearing of the 66 + 8 and 330 x 20 benchmark cases, 0.04 for a closure smearing
#: in the σ ≈ 0 well at 29 errors; docs/fit.md).
WELL_DISTANCE = 2.0
WELL_FOLLOW = 0.5
#: More antithetic pairs (``EXTRA_PAIRS``) are solved when the pairs' even part is more
#: than ``EVEN_SHARE`` of some parameter's MC-statistics variance (0.5 % for the scales and
#: ≈ 5 % for the smearings of the benchmark schemes; up to ≈ 50 % in sparse closure
#: categories near σ ≈ 0, where four pairs estimate it too roughly).
EVEN_SHARE = 0.3
EXTRA_PAIRS = 4

#: Antithetic replica pairs (the template plus and minus the same noise) solved to their own
#: minima for the template-noise bias (``template_bias="bootstrap"``): the mean of a pair has
#: no term linear in the noise, so a few pairs estimate the second-order bias better than
#: ``n_bootstrap`` independent replicas (measured in docs/fit.md).
BIAS_PAIRS = 4


def _own_minimum(
    replica: FitProblem,
    theta: FloatArray,
    free: NDArray[np.bool_],
    hf: FloatArray,
    chol: FloatArray | None,
) -> tuple[FloatArray, FloatArray]:
    """Displacements (free parameters) from ``θ̂`` of ``replica``'s first Newton step and of
    its own minimum to second order in the template noise: two quasi-Newton steps with the
    replica's exact gradient and the Hessian ``hf`` at ``θ̂`` (the second step's gradient
    holds the replica's curvature along the first step and the third derivative), each
    projected on the fit range."""
    trial = theta.copy()
    steps = []
    for _ in range(2):
        trial[free] -= _solve(hf, chol, replica.nll_grad(trial)[1][free])
        # projected on the fit range, as the fit's own minimum is: a smearing at σ² ≈ 0
        # whose replicas stepped below 0 (gradient taken at 0) came out with a large
        # negative "bias" that pushed the reported value 24 errors up (closure test)
        trial = np.clip(trial, replica.lower, replica.upper)
        steps.append((trial - theta)[free])
    return steps[0], steps[1]


def bootstrap_covariance(
    problem: FitProblem,
    theta: FloatArray,
    config: FitConfig,
    hess: FloatArray | None = None,
    *,
    bias: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """MC-statistics covariance of ``θ̂`` from replicas of the template fluctuated by
    ``N(0, √Var)`` per fine bin (``Var`` the smoothed Σw² of
    :meth:`TemplateModel.smoothed_variance`), and (``bias=True``) its template-noise bias.

    Without ``bias`` (``template_bias="none"``, injection toys, BB-lite): each of the
    ``n_bootstrap`` independent replicas is solved by one Newton step from the minimum,
    ``θ̂ − H⁻¹ g_k(θ̂)`` with ``g_k`` the exact gradient of the objective's ``replica``
    likelihood on the replica template (every order of the template noise in the gradient is
    kept; a term that is a fixed function of ``θ``, the noise correction, drops out of the
    spread). The covariance is their spread.

    With ``bias`` (the default): :data:`BIAS_PAIRS` antithetic pairs, templates ``t ± ε_k``,
    each solved to its own minimum of the whole objective by :func:`_own_minimum` (two
    quasi-Newton steps, the noise correction evaluated at the replica's own point). A
    replica's displacement splits into a part odd in the noise, ``L_k = ½(θ̂₊ − θ̂₋)``, and an
    even one, ``Q_k = ½(θ̂₊ + θ̂₋) − θ̂``, uncorrelated for Gaussian noise:

    - the odd part is, to first order, the linear response to the template, whose
      covariance ``Σ_lin = H⁻¹ (Σ_k Var(t_k) ∂g/∂t_k ∂g/∂t_kᵀ) H⁻¹`` is known exactly
      (:meth:`FitProblem.mc_stat_information` with the smoothed Σw², ``H`` the objective's
      Hessian). The replicas' own curvature shrinks it where the template is sparse (the
      smearings' odd part fell to 0.5-0.8 of ``Σ_lin`` in the sparse fine scheme, so
      ``Σ_lin`` alone overstated their errors by ≈ 15 %); that factor is measured per
      parameter as ``Σ_k L_k² / Σ_k L¹_k²``, ``L¹_k`` the odd part of the pair's first
      Newton steps (the linear response plus noise of the same draws, so the ratio is
      steady with few pairs: ±6 % in the errors with four), and ``Σ_lin`` is scaled by it
      (correlations kept);
    - the even part (the template noise's quadratic terms and the objective's curvature
      along the replica, which make linear propagation alone wrong for the smearings) has
      the spread of the ``Q_k`` (× ``1 + 1/BIAS_PAIRS`` for the bias estimate below);
    - the bias, second order in the noise, is ``mean_k Q_k + θ̂ − θ̂⁰``: in the bootstrap world
      the observed template is the truth, and the noise-free estimate there is the plain-NLL
      minimum ``θ̂⁰`` on it (the noise correction removes the noise its replicas add). The
      pair means carry no linear noise term, so four pairs estimate it better than twenty
      independent replicas (docs/fit.md).

    Where the even part is more than :data:`EVEN_SHARE` of a parameter's variance,
    :data:`EXTRA_PAIRS` more pairs are solved once. A parameter whose replicas do not
    follow a distant plain-NLL minimum (:data:`WELL_DISTANCE`, :data:`WELL_FOLLOW`: a
    smearing in the template-noise well at σ ≈ 0) gets no bias, the others' is re-estimated
    with it held, and the covariance is then the independent one-step bootstrap's.

    Parameters at a bound are held and get no bias. Replica ``k`` draws its noise from its
    own seed (``SeedSequence([seed, 0xB007])`` spawned), so replicas are reproducible one by
    one. ``hess``: the objective Hessian at ``θ̂`` (computed when not given).

    Returns ``(covariance, bias)`` (bias 0 without ``bias``).
    """
    m = problem.model
    if hess is None:
        hess = problem.hessian(theta)[2]
    step = _steps(problem, hess)
    free = ~_at_bound(problem, theta, step)
    p = problem.n_params
    out = np.zeros((p, p))
    bias_out = np.zeros(p)
    if not free.any():
        return out, bias_out
    hf = hess[np.ix_(free, free)]
    chol = _cholesky(hf)
    # Var(t_k) from the smoothed Σw² (the raw Σw² of an empty fine bin is 0, but its
    # expected content is not: replicas that never fluctuate the empty bins of a sparse
    # template left half the bias; measured in docs/fit.md)
    cols = _noise_columns(problem, theta)
    sd = np.sqrt(m.smoothed_variance()[:, cols]).astype(np.float32)
    n_rep = BIAS_PAIRS if bias else config.n_bootstrap
    # replica k's seed is child k whatever the count drawn (the extra pairs follow)
    all_seeds = np.random.SeedSequence([config.seed, 0xB007]).spawn(
        n_rep + (EXTRA_PAIRS if bias else 0)
    )
    seeds, more = all_seeds[:n_rep], all_seeds[n_rep:]
    if not bias:
        shifts = []
        for noise in _noises(sd, seeds):
            replica = problem.with_template(
                _replica_template(m.template, cols, noise), likelihood=m.objective.replica
            )
            shifts.append(-_solve(hf, chol, replica.nll_grad(theta)[1][free]))
        out[np.ix_(free, free)] = np.atleast_2d(np.cov(np.array(shifts), rowvar=False))
        return out, bias_out
    own = None if m.likelihood == "none" else problem.with_template(m.template, likelihood="none")
    first_plain = None if own is None else own.hessian(theta)[1:]

    def plain_minimum(active: NDArray[np.bool_]) -> FloatArray:
        if own is None or first_plain is None:
            return theta
        return _plain_minimum(own, theta, active, first_plain)

    def pairs(
        active: NDArray[np.bool_], which: Sequence[np.random.SeedSequence]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Pair means, odd parts and first-step odd parts over the ``active`` parameters
        (the others held at θ̂), one pair per seed of ``which``."""
        h_a = hess[np.ix_(active, active)]
        c_a = chol if active is free else _cholesky(h_a)
        even, odd, odd_first = [], [], []
        for noise in _noises(sd, which):
            (f_plus, plus), (f_minus, minus) = (
                _own_minimum(
                    problem.with_template(_replica_template(m.template, cols, noise, sign)),
                    theta,
                    active,
                    h_a,
                    c_a,
                )
                for sign in (1.0, -1.0)
            )
            even.append(0.5 * (plus + minus))
            odd.append(0.5 * (plus - minus))
            odd_first.append(0.5 * (f_plus - f_minus))
        return np.array(even), np.array(odd), np.array(odd_first)

    plain = plain_minimum(free)
    smoothed = problem.with_template(m.template, variance=m.smoothed_variance())
    info = smoothed.mc_stat_information(theta)[np.ix_(free, free)]
    lin = _solve(hf, chol, _solve(hf, chol, info).T)
    lin = 0.5 * (lin + lin.T)
    q, odd, odd_first = pairs(free, seeds)
    for extra in (False, True):
        first = (odd_first**2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.sqrt(np.where(first > 0, (odd**2).sum(axis=0) / first, 1.0))
        cov_q = np.atleast_2d(np.cov(q, rowvar=False)) * (1.0 + 1.0 / len(q))
        cov_f = lin * np.outer(shrink, shrink) + cov_q
        # where the even part is a sizeable share of a parameter's variance (a sparse
        # region near σ ≈ 0, where the template noise acts non-linearly), four pairs
        # estimate it too roughly: more pairs, once
        share = np.diag(cov_q) / np.where(np.diag(cov_f) > 0, np.diag(cov_f), np.inf)
        if extra or not np.any(share > EVEN_SHARE):
            break
        worst = int(np.argmax(share))
        log.info(
            "template replicas: the even part is %.0f%% of the MC-statistics variance of %s; "
            "%d more antithetic pairs",
            100 * share[worst],
            problem.names[int(np.flatnonzero(free)[worst])],
            EXTRA_PAIRS,
        )
        q2, odd2, first2 = pairs(free, more)
        q, odd, odd_first = (
            np.vstack([q, q2]),
            np.vstack([odd, odd2]),
            np.vstack([odd_first, first2]),
        )
    out[np.ix_(free, free)] = cov_f
    # the replicas scatter around the plain-NLL minimum θ̂⁰ (the bootstrap world's truth),
    # beyond it by the bias. A parameter whose replicas, started at θ̂, stayed far short of
    # a distant θ̂⁰ sits in another basin of the objective (a smearing in the template-noise
    # well at σ ≈ 0): the second-order estimate does not hold there. Such parameters are
    # held at θ̂, like those at a bound, and the pairs solved again for the others (whose
    # displacements the stuck one distorted through their correlations)
    to_plain = plain[free] - theta[free]
    mean_q = q.mean(axis=0)
    data_var = np.abs(np.diag(_solve(hf, chol, np.eye(int(free.sum())))))
    total = np.sqrt(data_var + np.abs(np.diag(cov_f)))
    with np.errstate(divide="ignore", invalid="ignore"):
        stuck = (np.abs(to_plain) > WELL_DISTANCE * total) & (mean_q / to_plain < WELL_FOLLOW)
    if not stuck.any():
        bias_out[free] = mean_q - to_plain
        return out, bias_out
    held = np.flatnonzero(free)[stuck]
    log.info(
        "template-noise bias not applied to %s: the minimum is %s errors from the plain-NLL "
        "minimum and its template replicas do not follow (another basin, e.g. the "
        "template-noise well at σ ≈ 0); held at the minimum while the others' bias is "
        "estimated",
        ", ".join(problem.names[i] for i in held),
        ", ".join(f"{abs(x):.0f}" for x in (to_plain / total)[stuck]),
    )
    active = free.copy()
    active[held] = False
    if active.any():
        plain = plain_minimum(active)
        redo = pairs(active, seeds)[0]
        bias_out[active] = theta[active] + redo.mean(axis=0) - plain[active]
    # nor does the linear propagation: a replica can leave the well, so the response is
    # not linear even to first order (a closure scale correlated with such a smearing got
    # 0.22 of the independent replicas' MC error); the spread of n_bootstrap independent
    # one-step replicas sees it
    out = bootstrap_covariance(problem, theta, config, hess)[0]
    return out, bias_out


#: Gradient test: the Newton step to the minimum must be below this many standard errors
#: in every parameter.
GRADIENT_TOLERANCE = 0.1


def _cat_label(
    problem: FitProblem,
    i: int,
    scale_labels: Sequence[str] | None,
    smear_labels: Sequence[str] | None,
) -> str:
    ns = len(problem.free_scale)
    if i < ns:
        a = problem.free_scale[i]
        return scale_labels[a] if scale_labels is not None else f"scale[{a}]"
    b = problem.free_smear[i - ns]
    return smear_labels[b] if smear_labels is not None else f"smear[{b}]"


def failure_reasons(
    problem: FitProblem,
    theta: FloatArray,
    info: dict[str, Any],
    at_bound: NDArray[np.bool_],
    config: FitConfig,
    scale_labels: Sequence[str] | None = None,
    smear_labels: Sequence[str] | None = None,
) -> list[str]:
    """Why the minimum is not a trustworthy fit, in words (empty: it is).

    A fit fails when a parameter ends at a bound of its fit range (a smearing at 0, the
    physical limit, is not a range bound: there the result is judged in ``σ²``), when the
    non-finite NLL or the estimated distance to the minimum (EDM) fails its tolerance, when
    the Newton step to the minimum exceeds :data:`GRADIENT_TOLERANCE` standard errors in a
    parameter, or when the Hessian over the parameters not at a bound is not positive
    definite.
    """
    reasons: list[str] = []
    ns = len(problem.free_scale)
    physical = np.zeros(problem.n_params, dtype=bool)
    if config.smear_bounds[0] == 0.0:
        # σ = 0 is the physical limit of a smearing, not an arbitrary range bound
        physical[ns:] = theta[ns:] - problem.lower[ns:] <= 0.5 * (problem.upper[ns:] - theta[ns:])
    bound = at_bound & ~physical
    if bound.any():
        sc, sm = problem.values_from_theta(theta)
        items = []
        for i in np.flatnonzero(bound):
            label = _cat_label(problem, int(i), scale_labels, smear_labels)
            val = float(sc[problem.free_scale[i]] if i < ns else sm[problem.free_smear[i - ns]])
            items.append(f"{label} = {val:.6g}")
        shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        reasons.append(
            f"{int(bound.sum())} of {problem.n_params} parameters ended at a bound of the fit "
            f"range (scale {config.scale_bounds[0]:g}-{config.scale_bounds[1]:g}, smearing "
            f"{config.smear_bounds[0]:g}-{config.smear_bounds[1]:g}): {shown}"
        )
    edm = float(info["edm"])
    if not math.isfinite(float(info["nll"])):
        reasons.append("the likelihood is not finite at the minimum")
    if not edm < config.edm_tolerance:
        reasons.append(
            f"the estimated distance to the minimum (EDM {edm:.3g}) is above the tolerance "
            f"{config.edm_tolerance:g} after {int(info['n_eval'])} evaluations"
        )
    free = ~at_bound
    hess = info["hess"]
    if free.any():
        hf = hess[np.ix_(free, free)]
        try:
            chol = np.linalg.cholesky(hf)
        except np.linalg.LinAlgError:
            chol = None
        if chol is None:
            eig, vec = np.linalg.eigh(hf)
            worst = int(np.argmax(np.abs(vec[:, 0])))
            label = _cat_label(
                problem, int(np.flatnonzero(free)[worst]), scale_labels, smear_labels
            )
            reasons.append(
                f"the Hessian is not positive definite at the minimum (smallest eigenvalue "
                f"{eig[0]:.3g}, mostly along {label}): it is not a minimum or the parameters "
                f"are not determined by the data"
            )
        else:
            g = info["grad"][free]
            newton = np.linalg.solve(hf, g)
            inv_l = np.linalg.inv(chol)
            sd = np.sqrt(np.einsum("ij,ij->j", inv_l, inv_l))
            dist = np.abs(newton) / sd
            worst = int(np.argmax(dist))
            if dist[worst] > GRADIENT_TOLERANCE:
                label = _cat_label(
                    problem, int(np.flatnonzero(free)[worst]), scale_labels, smear_labels
                )
                reasons.append(
                    f"gradient test failed: the minimum is {dist[worst]:.2g} standard errors "
                    f"away in {label} (tolerance {GRADIENT_TOLERANCE:g})"
                )
    return reasons


def _smear_err(sigma: float, err_v: float) -> float:
    if not math.isfinite(err_v):
        return math.nan
    v = sigma * sigma
    return 0.5 * (math.sqrt(v + err_v) - math.sqrt(max(v - err_v, 0.0)))


def _labels(labels: Sequence[str] | None, kind: str, n: int) -> list[str]:
    if labels is None:
        return [f"{kind}[{i}]" for i in range(n)]
    if len(labels) != n:
        msg = f"{len(labels)} {kind} labels given for {n} {kind} categories"
        raise FitError(msg)
    return list(labels)


def fit_problem(
    problem: FitProblem,
    config: FitConfig,
    *,
    scale_labels: Sequence[str] | None = None,
    smear_labels: Sequence[str] | None = None,
    t_start: float | None = None,
    t_setup: float = 0.0,
    mc_covariance: FloatArray | None = None,
) -> FitResult:
    """Fit a prepared :class:`FitProblem` and build the :class:`FitResult`.

    ``mc_covariance``: a known MC-statistics covariance of ``θ`` (``(P, P)``) used instead of
    estimating it (injection toys share one template, so they share this too).
    """
    t0 = time.perf_counter() if t_start is None else t_start
    timings = {"setup": t_setup}
    if problem.n_params == 0:
        msg = "nothing to fit: all scale and smear categories are fixed or ignored"
        raise FitError(msg)
    t1 = time.perf_counter()
    theta0, n_scan = start_values(problem, config)
    timings["start"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    theta, info = minimise_objective(problem, theta0, config)
    timings["minimise"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    theta, info, profiles, lower = global_check(problem, theta, info, config)
    timings["global_check"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    hess = info["hess"]
    step = info["step"]
    at_bound = _at_bound(problem, theta, step)
    cov, cov_mc, note, bias = _covariances(problem, theta, hess, at_bound, config, mc_covariance)
    # a given MC covariance (injection toys) is the caller's: only the data part is widened
    widen_mc = cov_mc if mc_covariance is None else cov_mc.copy()
    _widen_by_profile(problem, theta, hess, at_bound, profiles, cov, widen_mc)
    timings["errors"] = time.perf_counter() - t1

    edm = float(info["edm"])
    reasons = failure_reasons(problem, theta, info, at_bound, config, scale_labels, smear_labels)
    if lower:
        reasons.append(lower)
    if note and not any("Hessian" in r for r in reasons):
        reasons.append(note)
    status: FitStatus = "failed" if reasons else "converged"
    if reasons:
        message = "failed: " + "; ".join(reasons)
    else:
        message = f"converged: EDM {edm:.2g} < {config.edm_tolerance:g}, {int(info['n_eval'])} evaluations"

    # the reported values: the minimum minus its template-noise bias (the status above is
    # judged at the minimum itself)
    values = np.clip(theta - bias, problem.lower, problem.upper)
    bias = theta - values  # the shift applied (a value clipped at a bound moves less)
    scales_all, smears_all = problem.values_from_theta(values)
    ns = len(problem.free_scale)
    stat_int = np.sqrt(np.diag(cov))
    mc_int = np.sqrt(np.abs(np.diag(cov_mc)))
    n_pairs_scale = np.zeros(problem.n_scale)
    n_pairs_smear = np.zeros(problem.n_smear)
    for r in range(len(problem.codes)):
        for a in set(problem.leg_scale[r].tolist()):
            n_pairs_scale[a] += problem.n_data[r]
        for b in set(problem.leg_smear[r].tolist()):
            n_pairs_smear[b] += problem.n_data[r]
    slabels = _labels(scale_labels, "scale", problem.n_scale)
    mlabels = _labels(smear_labels, "smear", problem.n_smear)
    ignored_s = set(config.ignore_scales)
    ignored_m = set(config.ignore_smears)

    scales: list[CategoryFit] = []
    user_err = np.full(problem.n_params, np.nan)
    for a in range(problem.n_scale):
        val = float(scales_all[a])
        if a in problem.free_scale:
            i = problem.free_scale.index(a)
            st, mc = val * stat_int[i], val * mc_int[i]
            user_err[i] = -val  # d scale / dx
            scales.append(
                CategoryFit(
                    "scale",
                    a,
                    slabels[a],
                    val,
                    float(st),
                    float(mc),
                    float(n_pairs_scale[a]),
                    bool(at_bound[i]),
                )
            )
        else:
            state: Literal["fixed", "ignored"] = "ignored" if a in ignored_s else "fixed"
            scales.append(
                CategoryFit(
                    "scale", a, slabels[a], val, 0.0, 0.0, float(n_pairs_scale[a]), False, state
                )
            )
    smears: list[CategoryFit] = []
    for b in range(problem.n_smear):
        val = float(smears_all[b])
        if b in problem.free_smear:
            i = ns + problem.free_smear.index(b)
            st, mc = _smear_err(val, stat_int[i]), _smear_err(val, mc_int[i])
            tot_v = math.hypot(stat_int[i], mc_int[i])
            user_err[i] = _smear_err(val, tot_v) / tot_v if tot_v > 0 else math.nan
            smears.append(
                CategoryFit(
                    "smear",
                    b,
                    mlabels[b],
                    val,
                    st,
                    mc,
                    float(n_pairs_smear[b]),
                    bool(at_bound[i]),
                    sq_error=float(tot_v),
                )
            )
        else:
            state = "ignored" if b in ignored_m else "fixed"
            smears.append(
                CategoryFit(
                    "smear", b, mlabels[b], val, 0.0, 0.0, float(n_pairs_smear[b]), False, state
                )
            )
    cov_tot = cov + np.where(np.isnan(cov_mc), 0.0, cov_mc)
    cov_user = cov_tot * np.outer(user_err, user_err)

    wall = time.perf_counter() - t0
    result = FitResult(
        scales=tuple(scales),
        smears=tuple(smears),
        status=status,
        message=message,
        n_eval=int(info["n_eval"]),
        grad_norm=float(info["grad_norm"]),
        edm=edm,
        nll=float(info["nll"]),
        wall_time=wall,
        regions=problem.regions,
        window=problem.window,
        rebin=problem.model.rebin,
        config=config,
        covariance=cov_user,
        template_bias=bias,
        parameters=problem.names,
        timings=timings,
        n_start_eval=n_scan,
        minimizer_success=bool(info["success"]),
    )
    bound = [c.label for c in (*scales, *smears) if c.at_bound]
    if bound:
        log.warning("parameters at a bound of the fit range: %s", ", ".join(bound))
    if status == "failed":
        log.warning("fit %s", message)
    else:
        log.info(
            "fit converged: %d parameters, %d regions, %d evaluations, NLL %.6g, EDM %.2g, %.2f s",
            problem.n_params,
            len(problem.codes),
            result.n_eval,
            result.nll,
            edm,
            wall,
        )
    return result


def fit_arrays(
    data: ArrayLike,
    mc_w: ArrayLike,
    mc_w2: ArrayLike,
    regions: ArrayLike,
    mass_edges: ArrayLike,
    cell_scale: ArrayLike,
    cell_smear: ArrayLike,
    config: FitConfig | None = None,
    *,
    n_scale: int | None = None,
    n_smear: int | None = None,
    scale_labels: Sequence[str] | None = None,
    smear_labels: Sequence[str] | None = None,
) -> FitResult:
    """Fit scales and smearings to per-region fine mass histograms given as arrays.

    Args:
        data: data Σw per (region, fine mass bin), ``(R, n)``.
        mc_w: MC Σw, ``(R, n)``.
        mc_w2: MC Σw², ``(R, n)``.
        regions: region codes ``min(ci, cj) * n_cells + max(ci, cj)``, ``(R,)``.
        mass_edges: fine mass-bin edges in GeV, ``(n + 1,)``, uniform in ``log m``.
        cell_scale: scale-category index of each cell.
        cell_smear: smear-category index of each cell.
        config: fit settings (default :class:`FitConfig()`).
        n_scale: number of scale categories (default from ``cell_scale``).
        n_smear: number of smear categories (default from ``cell_smear``).
        scale_labels: labels of the scale categories (for the result).
        smear_labels: labels of the smear categories.

    Returns:
        The :class:`FitResult` (check ``status`` or call ``raise_if_failed()``).

    Raises:
        FitError: bad inputs, no usable region, a fitted category without regions,
            non-finite NLL.

    Example:
        >>> # res = fit_arrays(data, mc_w, mc_w2, codes, edges, [0, 1], [0, 0])
        >>> # res.scale_values(), res.smear_values()
    """
    cfg = FitConfig() if config is None else config
    t0 = time.perf_counter()
    problem = build_problem(
        data,
        mc_w,
        mc_w2,
        regions,
        mass_edges,
        cell_scale,
        cell_smear,
        cfg,
        n_scale=n_scale,
        n_smear=n_smear,
    )
    return fit_problem(
        problem,
        cfg,
        scale_labels=scale_labels,
        smear_labels=smear_labels,
        t_start=t0,
        t_setup=time.perf_counter() - t0,
    )


def check_scheme(hset: HistogramSet, scheme: CategoryScheme | None) -> CategoryScheme:
    """The scheme of ``hset``, checked against ``scheme`` when one is given.

    Raises:
        FitError: the schemes differ (naming both sources).
    """
    hs = hset.scheme()
    if scheme is None:
        return hs
    if scheme.n_cells != hs.n_cells:
        msg = (
            f"categories {scheme.source!r} define {len(scheme.scale)} scale x "
            f"{len(scheme.smear)} smear categories = {scheme.n_cells} cells, but the "
            f"histograms were filled with {hs.source!r}: {len(hs.scale)} x {len(hs.smear)} = "
            f"{hs.n_cells} cells"
        )
        raise FitError(msg)
    if scheme.to_yaml_dict() != hs.to_yaml_dict():
        mine, theirs = scheme.to_yaml_dict(), hs.to_yaml_dict()
        where = (
            next(
                f"{kind}[{i}] {a} vs {b}"
                for kind in ("scale", "smear")
                for i, (a, b) in enumerate(zip(mine[kind], theirs[kind], strict=False))
                if a != b
            )
            if any(mine[k] != theirs[k] for k in ("scale", "smear"))
            else "metadata"
        )
        msg = (
            f"categories {scheme.source!r} differ from those the histograms were filled with "
            f"({hs.source!r}): {where}"
        )
        raise FitError(msg)
    return scheme


def _no_pairs(dataset: str, cutflow: dict[str, int]) -> str:
    """``dataset 'data': 2000 events, none left after cut 'eta' (all 2000, ..., eta 0)``."""
    counts = ", ".join(f"{cut} {n}" for cut, n in cutflow.items())
    first_zero = next((cut for cut, n in cutflow.items() if n == 0), None)
    total = cutflow.get("all", 0)
    if first_zero is None:
        where = "no pair in any category region"
    elif first_zero == "all":
        where = "its files hold no events"
    else:
        where = f"none left after cut {first_zero!r}"
    return (
        f"dataset {dataset!r} has {total} events, {where} (cutflow: {counts}); check the "
        "selection, the categories' coverage and the mass range"
    )


def histogram_arrays(
    hset: HistogramSet, data_variation: str, mc_variation: str
) -> tuple[NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(regions, data, mc_w, mc_w2, mass_edges)`` from a :class:`HistogramSet`.

    Raises:
        FitError: no data or MC dataset, or an unknown variation.
    """
    for kind, var in (("data", data_variation), ("mc", mc_variation)):
        named = [d for d, k in hset.kinds.items() if k == kind]
        selected = [list(hset.cutflow.get(d, {}).values())[-1:] for d in named]
        if named and all(n == [0] for n in selected):  # filled, but no pair passed
            msg = f"no {kind} pair to fit: " + "; ".join(
                _no_pairs(d, hset.cutflow[d]) for d in named
            )
            raise FitError(msg)
        if not hset.datasets_of(kind):
            msg = (
                f"histograms contain no dataset of kind {kind!r} (datasets and kinds: {hset.kinds})"
            )
            raise FitError(msg)
        if var not in hset.variations:
            msg = f"variation {var!r} not in the histograms; available: {hset.variations}"
            raise FitError(msg)
    regions, data, _ = hset.region_arrays("data", data_variation)
    regions_mc, mc_w, mc_w2 = hset.region_arrays("mc", mc_variation)
    assert np.array_equal(regions, regions_mc)
    edges = hset.mass_edges
    return regions, data, mc_w, mc_w2, edges


def problem_from_histograms(
    hset: HistogramSet,
    config: FitConfig,
    *,
    scheme: CategoryScheme | None = None,
    data_variation: str = "nominal",
    mc_variation: str = "nominal",
    regions: Sequence[int] | None = None,
) -> tuple[FitProblem, CategoryScheme]:
    """The likelihood problem of ``hset`` (what :func:`fit_histograms` minimises) and the
    category scheme it was built for.

    The pair regions are those the **nominal** histograms pass (``min_data``, ``min_mc``,
    ignored categories), also when a systematic variation (``*_up``/``*_down``) is fitted,
    so that up and down are compared on one likelihood; ``uncorrected`` (raw energies: the
    derivation without prior corrections) selects its own. ``regions`` gives the set
    explicitly (e.g. a nominal fit's used regions for a refilled systematic variation).

    Raises:
        FitError: categories not matching the histograms, no usable region, bad input, a
            region of ``regions`` absent from the histograms.
    """
    sch = check_scheme(hset, scheme)
    variations = {data_variation, mc_variation}
    if regions is None and variations != {"nominal"} and "uncorrected" not in variations:
        nominal, _ = problem_from_histograms(hset, config, scheme=sch)
        regions = [int(c) for c in nominal.codes]
    codes, data, mc_w, mc_w2, edges = histogram_arrays(hset, data_variation, mc_variation)
    if regions is not None:
        wanted = np.asarray(sorted(set(regions)), dtype=np.int64)
        missing = np.setdiff1d(wanted, codes)
        if missing.size:
            msg = (
                f"pair regions {missing.tolist()} of the nominal fit are not in the "
                f"histograms of variation data={data_variation!r}, mc={mc_variation!r}"
            )
            raise FitError(msg)
        rows = np.isin(codes, wanted)
        codes, data, mc_w, mc_w2 = codes[rows], data[rows], mc_w[rows], mc_w2[rows]
        # the region set is given: the thresholds were applied where it was chosen
        config = config.with_overrides(min_data=0.0, min_mc=0.0)
    problem = build_problem(
        data,
        mc_w,
        mc_w2,
        codes,
        edges,
        sch.cell_scale_index(),
        sch.cell_smear_index(),
        config,
        n_scale=len(sch.scale),
        n_smear=len(sch.smear),
    )
    return problem, sch


def fit_histograms(
    hset: HistogramSet,
    config: FitConfig | None = None,
    *,
    scheme: CategoryScheme | None = None,
    data_variation: str = "nominal",
    mc_variation: str = "nominal",
    regions: Sequence[int] | None = None,
) -> FitResult:
    """Fit scales (data) and smearings (MC) to the pair-mass histograms of ``hset``.

    Args:
        hset: histograms with data and MC datasets.
        config: fit settings (default :class:`FitConfig()`).
        scheme: category scheme to check against the one the histograms were filled with.
        data_variation: variation of the data histograms to fit.
        mc_variation: variation of the MC templates.
        regions: the pair-region codes to fit (default: those the nominal histograms
            pass; see :func:`problem_from_histograms`).

    Returns:
        The :class:`FitResult`.

    Raises:
        FitError: mismatched categories, missing datasets/variations, or any
            :func:`fit_arrays` error.

    Example:
        >>> # from zcalib.histograms import load_histograms
        >>> # res = fit_histograms(load_histograms("hists.npz")).raise_if_failed()
    """
    cfg = FitConfig() if config is None else config
    t0 = time.perf_counter()
    problem, sch = problem_from_histograms(
        hset,
        cfg,
        scheme=scheme,
        data_variation=data_variation,
        mc_variation=mc_variation,
        regions=regions,
    )
    return fit_problem(
        problem,
        cfg,
        scale_labels=[c.label() for c in sch.scale],
        smear_labels=[c.label() for c in sch.smear],
        t_start=t0,
        t_setup=time.perf_counter() - t0,
    )
