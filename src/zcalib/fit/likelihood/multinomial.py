"""``mc_stat_likelihood="none"``: the binned multinomial NLL, the template taken as exact.

Unbiased when the MC statistics are much larger than the data's in every region; otherwise
the template's bin-to-bin noise biases fitted smearings upward (see ``docs/fit.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from zcalib.fit.likelihood.base import Likelihood, RegionTerms

if TYPE_CHECKING:
    from zcalib.fit.model import TemplateModel

__all__ = ["Multinomial", "multinomial_terms"]

FloatArray = NDArray[np.float64]


class Multinomial(Likelihood):
    """The plain multinomial NLL (:func:`multinomial_terms`)."""

    name = "none"
    replica = "none"

    def evaluate(self, mu: FloatArray, s2: FloatArray, order: int) -> RegionTerms:
        return multinomial_terms(self.model, mu, s2, order)


def multinomial_terms(
    m: TemplateModel,
    mu: FloatArray,
    s2: FloatArray,
    order: int,
    fisher: bool = False,
    correction: tuple[FloatArray, FloatArray, FloatArray] | None = None,
) -> RegionTerms:
    """Multinomial NLL of ``m`` per region at the kernel variance ``s2`` and its derivatives.

    ``NLL_r = −Σ_b n_b log(p_b / (n_b/N))`` with ``p_b = P_b / Σ P`` inside the window.
    ``fisher``: the Hessian is the outer-product (Fisher) part only, always positive
    semi-definite. ``correction``: a term ``(C, ∂C/∂s², ∂²C/∂(s²)²)`` per region added to
    the NLL (the noise correction).
    """
    seg, spec, xs, parseval = m._spectra(mu, s2, order)
    p, d1, d2 = m._positive(m._window_coarse(seg, xs * spec.base))
    s_tot = p.sum(axis=1)
    n = m.data
    ntot = m._ntot
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(p)
    nll = m._sat - np.where(n > 0, n * logp, 0.0).sum(axis=1) + ntot * np.log(s_tot)
    corr = correction
    if corr is not None:
        nll = nll + corr[0]
    if order < 1:
        return RegionTerms(nll=nll)
    gp = -n / p + (ntot / s_tot)[:, None]  # ∂NLL/∂p̃
    chat = m._adjoint(seg, gp * d1, xs.shape[1]) * np.conj(xs)
    if order < 2:
        g_mu, g_s = spec.dots((1, 2), chat, parseval)
        if corr is not None:
            g_s = g_s + corr[1]
        return RegionTerms(nll=nll, g_mu=g_mu, g_s=g_s)
    g_mu, g_s, k_mumu, k_mus, k_ss = spec.dots((1, 2, 3, 4, 5), chat, parseval)
    c_ss = np.zeros_like(g_mu)
    if corr is not None:
        g_s = g_s + corr[1]
        c_ss = corr[2]
    dmu = m._window_coarse(seg, xs * spec.term(1))
    ds = m._window_coarse(seg, xs * spec.term(2))
    w = n / (p * p) * d1 * d1
    if not fisher:
        w = w + gp * d2
    c2 = ntot / (s_tot * s_tot)
    smu, ss = (dmu * d1).sum(axis=1), (ds * d1).sum(axis=1)

    def quad(a: FloatArray, b: FloatArray, sa: FloatArray, sb: FloatArray) -> FloatArray:
        out: FloatArray = (a * b * w).sum(axis=1) - c2 * sa * sb
        return out

    if fisher:
        k_mumu = k_mus = k_ss = np.zeros_like(g_mu)
    h_mumu = quad(dmu, dmu, smu, smu) + k_mumu
    h_mus = quad(dmu, ds, smu, ss) + k_mus
    h_ss = quad(ds, ds, ss, ss) + k_ss + c_ss
    return RegionTerms(nll=nll, g_mu=g_mu, g_s=g_s, h_mumu=h_mumu, h_mus=h_mus, h_ss=h_ss)
