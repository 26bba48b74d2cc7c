"""``mc_stat_likelihood="bb-lite"``: Barlow-Beeston lite, one multiplicative nuisance per
data bin constrained by the template's prediction variance, profiled in closed form (see
:meth:`BarlowBeestonLite.evaluate`)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zcalib.fit.likelihood.base import Likelihood, RegionTerms

__all__ = ["BarlowBeestonLite"]

FloatArray = NDArray[np.float64]


class BarlowBeestonLite(Likelihood):
    """The Barlow-Beeston-lite NLL. Its minimum locates the parameters; errors use the plain
    NLL's Hessian (``data_errors = "data-hessian"``) so that the MC statistics are counted
    once, through ``mc_stat`` (see :mod:`zcalib.fit.fitter`)."""

    name = "bb-lite"
    replica = "bb-lite"
    data_errors = "data-hessian"
    #: its replicas' Hessians are central differences (slow, less stable): not measured
    bootstrap_bias = False

    def evaluate(self, mu: FloatArray, s2: FloatArray, order: int = 1) -> RegionTerms:
        """Barlow-Beeston-lite NLL per region (minus its saturated value) and derivatives.

        The template's statistical noise enters through one multiplicative nuisance
        ``β_b`` per data bin with a Gaussian constraint of relative width
        ``τ_b = √V_b / P_b``, ``V_b = Σ_k C_bk² Var(t_k)`` the MC-statistics variance of the
        coarse prediction ``P_b = Σ_k C_bk t_k`` (computed with the same FFT machinery from the
        squared, box-summed kernel). In the extended form with a free region
        normalisation ``λ`` (equivalent to the multinomial when ``V = 0``)::

            NLL_r = min_{λ, β} Σ_b [λ p_b β_b − n_b log(λ p_b β_b) + (β_b − 1)²/(2τ_b²)]
                    − Σ_b (n_b − n_b log n_b),      p_b = P_b / Σ P.

        ``β_b`` solves a quadratic in closed form; ``λ`` is profiled by a few vectorised
        Newton steps. The gradient follows from the envelope theorem (no derivatives of
        ``β`` or ``λ``): ``∂/∂P_b = (λβ_b − n_b/p_b)/ΣP + ρ_b² τ_b²/P_b``,
        ``∂/∂V_b = −ρ_b²/(2P_b²)`` with ``ρ_b = (β_b − 1)/τ_b²``. The ``(μ, s²)`` Hessian per
        region (``order=2``) is the central finite difference of that exact gradient.
        """
        m = self.model
        if order >= 2:
            return self._hessian(mu, s2)
        seg, spec, xs, parseval = m._spectra(mu, s2, order)
        p_abs = m._positive(m._window_coarse(seg, xs * spec.base))[0]
        v, kc, boxhat, varhat, first, wk = m._variance_parts(seg, spec)
        p, tau2, lam, beta, rr = self._solve(p_abs, v)
        n = m.data
        nu = lam[:, None] * p * beta
        with np.errstate(divide="ignore", invalid="ignore"):
            lognu = np.log(nu)
            logn = np.log(np.where(n > 0, n, 1.0))
        terms = nu - np.where(n > 0, n * (lognu - logn), 0.0) - n + 0.5 * tau2 * rr * rr
        nll = terms.sum(axis=1)
        if order < 1:
            return RegionTerms(nll=nll)
        s_tot = p_abs.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g_p = (lam[:, None] * beta - np.where(n > 0, n / p, 0.0)) / s_tot[:, None]
        g_p = g_p + rr * rr * tau2 / p_abs
        g_v = -0.5 * rr * rr / (p_abs * p_abs)
        chat = m._adjoint(seg, g_p, xs.shape[1]) * np.conj(xs)
        g_mu, g_s = spec.dots((1, 2), chat, parseval)
        e_mu, e_s = m._variance_gradient(seg, spec, (kc, boxhat, varhat, first, wk), g_v)
        return RegionTerms(nll=nll, g_mu=g_mu + e_mu, g_s=g_s + e_s)

    def _solve(
        self, p_abs: FloatArray, v: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Profile the per-bin factors ``β_b`` and the region normalisation ``λ``.

        Returns ``(p, tau2, lam, beta, rr)`` with ``p = P/ΣP``, ``τ² = V/P²``,
        ``rr = (n − λpβ)/β = (β − 1)/τ²``.
        """
        m = self.model
        n = m.data
        ntot = m._ntot
        s_tot = p_abs.sum(axis=1)
        p = p_abs / s_tot[:, None]
        tau2 = v / (p_abs * p_abs)
        lam = ntot.copy()
        lam = np.where(lam > 0, lam, 1.0)
        for _ in range(50):
            beta, dbeta = _bb_beta(lam[:, None] * p, tau2, n)
            # F'(λ) = Σ p β − N/λ, F''(λ) = Σ p dβ/dλ + N/λ² ; Newton in log λ
            g1 = (p * beta).sum(axis=1) * lam - ntot
            g2 = (p * p * dbeta).sum(axis=1) * lam * lam + ntot
            g2 = np.maximum(g2 + g1, 1e-300)
            step = -g1 / np.where(g2 > 0, g2, 1.0)
            step = np.clip(step, -1.0, 1.0)
            lam = lam * np.exp(step)
            if np.all(np.abs(step) < 1e-13):
                break
        beta, _ = _bb_beta(lam[:, None] * p, tau2, n)
        zero = beta <= 0.0  # n = 0 and ντ² >= 1: the factor sits at its bound β = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = np.where(
                zero, -1.0 / np.where(zero, tau2, 1.0), (n - lam[:, None] * p * beta) / beta
            )
        return p, tau2, lam, beta, rr

    def _hessian(self, mu: FloatArray, s2: FloatArray) -> RegionTerms:
        """Value, gradient and finite-difference ``(μ, s²)`` Hessian of the BB-lite NLL."""
        m = self.model
        base = self.evaluate(mu, s2, 1)
        mu = np.asarray(mu, dtype=np.float64)
        s2 = np.asarray(s2, dtype=np.float64)
        d_mu = 1e-3 * m.h
        d_s = np.full_like(s2, 1e-3 * m.h * m.h)
        s_lo = np.maximum(s2 - d_s, 0.0)
        s_hi = s_lo + 2.0 * d_s
        up_m = self.evaluate(mu + d_mu, s2, 1)
        dn_m = self.evaluate(mu - d_mu, s2, 1)
        up_s = self.evaluate(mu, s_hi, 1)
        dn_s = self.evaluate(mu, s_lo, 1)
        assert up_m.g_mu is not None
        assert dn_m.g_mu is not None
        assert up_m.g_s is not None
        assert dn_m.g_s is not None
        assert up_s.g_mu is not None
        assert dn_s.g_mu is not None
        assert up_s.g_s is not None
        assert dn_s.g_s is not None
        h_mumu = (up_m.g_mu - dn_m.g_mu) / (2.0 * d_mu)
        h_mus_a = (up_m.g_s - dn_m.g_s) / (2.0 * d_mu)
        h_mus_b = (up_s.g_mu - dn_s.g_mu) / (2.0 * d_s)
        h_ss = (up_s.g_s - dn_s.g_s) / (2.0 * d_s)
        return RegionTerms(
            nll=base.nll,
            g_mu=base.g_mu,
            g_s=base.g_s,
            h_mumu=h_mumu,
            h_mus=0.5 * (h_mus_a + h_mus_b),
            h_ss=h_ss,
        )


def _bb_beta(nu: FloatArray, tau2: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Minimiser ``β`` of ``νβ − n log β + (β − 1)²/(2τ²)`` and ``dβ/dν``.

    ``β² + (ντ² − 1)β − nτ² = 0``, solved without cancellation; ``β = 1`` when ``τ = 0``.
    """
    b = 1.0 - nu * tau2
    disc = np.sqrt(b * b + 4.0 * n * tau2)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(b >= 0.0, 0.5 * (b + disc), 2.0 * n * tau2 / (disc - b))
    beta = np.where(np.isfinite(beta), np.maximum(beta, 0.0), 0.0)
    # implicit derivative of the quadratic in ν: (2β + ντ² − 1) dβ = −β τ² dν
    den = 2.0 * beta - b
    with np.errstate(divide="ignore", invalid="ignore"):
        dbeta = np.where(den > 0, -beta * tau2 / den, 0.0)
    return beta, dbeta
