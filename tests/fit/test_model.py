"""The template model: exact kernel, s = 0 limit, spectral paths, derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

import zcalib.fit.kernel as kernel
import zcalib.fit.model as model
from zcalib.fit.model import (
    TemplateModel,
    coarse_sum,
    kernel_spectra,
    kernel_support,
    kernel_terms,
)

H = math.log(2.0) / 1200  # the default fine bin width in log m


def _template(rng: np.random.Generator, n_regions: int = 3, n: int = 1200) -> np.ndarray:
    u = math.log(60.0) + H * (np.arange(n) + 0.5)
    m = np.exp(u)
    shape = 1.0 / (1.0 + ((m - 91.19) / 1.25) ** 2) + 0.02
    return np.array([rng.poisson(4000 * shape) for _ in range(n_regions)], dtype=float)


def _model(rng: np.random.Generator, rebin: int = 5) -> TemplateModel:
    t = _template(rng)
    j_lo = round(math.log(80 / 60) / H)
    n_coarse = 77
    fine = t[:, j_lo : j_lo + n_coarse * rebin] * 0.3 + rng.poisson(2.0, (3, n_coarse * rebin))
    return TemplateModel(
        template=t, variance=1.3 * t, data=coarse_sum(fine, rebin), h=H, j_lo=j_lo, rebin=rebin
    )


@pytest.mark.parametrize(
    ("mu", "s2"), [(0.37 * H, 0.0), (2.6 * H, (0.4 * H) ** 2), (-7.3 * H, (5 * H) ** 2)]
)
def test_kernel_is_the_exact_bin_integral(mu: float, s2: float) -> None:
    dmin, width = kernel_support(np.array([mu]), np.array([s2]), H, 8.0, quantum=1)
    k = kernel_terms(np.array([mu]), np.array([s2]), H, dmin, width).k[0]
    assert k.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(k > -1e-15)
    if s2 == 0:
        frac = mu / H - math.floor(mu / H)
        nz = k[k > 1e-15]
        np.testing.assert_allclose(nz, [1 - frac, frac], atol=1e-14)
        return
    s = math.sqrt(s2)
    for e in range(0, width, max(1, width // 7)):
        d = dmin + e
        ref = integrate.dblquad(
            lambda up, u: stats.norm.pdf(up - u, mu, s) / H,
            0.0,
            H,
            lambda u, d=d: d * H,
            lambda u, d=d: (d + 1) * H,
            epsabs=1e-14,
        )[0]
        assert k[e] == pytest.approx(ref, abs=1e-12)


def test_zero_smearing_integer_shift_reproduces_the_shifted_histogram() -> None:
    rng = np.random.default_rng(1)
    m = _model(rng)
    for n in (0, 3, -11):
        pred = m.predict_fine(np.array([n * H] * 3), np.zeros(3))
        ref = m.template[:, m.j_lo - n : m.j_lo - n + m.n_out]
        np.testing.assert_allclose(pred, ref, rtol=0, atol=1e-9 * ref.max())


def test_zero_smearing_fractional_shift_is_linear_in_the_shift() -> None:
    rng = np.random.default_rng(2)
    m = _model(rng)
    frac = 0.3
    pred = m.predict_fine(np.full(3, (4 + frac) * H), np.zeros(3))
    t = m.template
    ref = (1 - frac) * t[:, m.j_lo - 4 : m.j_lo - 4 + m.n_out] + frac * t[
        :, m.j_lo - 5 : m.j_lo - 5 + m.n_out
    ]
    np.testing.assert_allclose(pred, ref, rtol=0, atol=1e-9 * ref.max())


def test_small_smearing_is_continuous_at_zero() -> None:
    rng = np.random.default_rng(3)
    m = _model(rng)
    mu = np.full(3, 1.7 * H)
    p0 = m.predict_fine(mu, np.zeros(3))
    p1 = m.predict_fine(mu, np.full(3, 1e-8 * H * H))
    np.testing.assert_allclose(p1, p0, rtol=0, atol=1e-9 * p0.max())


@pytest.mark.parametrize("factor", [3.0, 4.5, 20.0])
def test_closed_form_spectrum_equals_the_real_space_kernel(
    factor: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    mu = np.array([0.0123, -0.031, 0.0])
    s2 = np.full(3, (factor * H) ** 2)
    dmin, width = kernel_support(mu, s2, H, 8.0)
    length = 1024 + width
    fast = kernel_spectra(mu, s2, H, dmin, width, length, order=2)
    monkeypatch.setattr(kernel, "_FOURIER_MIN_S", 1e9)
    exact = kernel_spectra(mu, s2, H, dmin, width, length, order=2)
    assert not exact.fourier.any()
    assert fast.fourier.all()
    nk = fast.omega.size
    for i in range(6):
        a, b = fast.term(i), exact.term(i)[:, :nk]
        assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()
        # the columns left out are zero up to the rounding of the real-space path
        assert np.abs(exact.term(i)[:, nk:]).max(initial=0.0) <= 1e-12 * np.abs(b).max()


def test_kernel_derivatives_match_finite_differences() -> None:
    mu, s2 = np.array([2.3 * H]), np.array([(3.7 * H) ** 2])
    dmin, width = kernel_support(mu, s2, H, 8.0)
    t = kernel_terms(mu, s2, H, dmin, width, order=2)

    def k(m: np.ndarray, v: np.ndarray, order: int = 1) -> model.KernelTerms:
        return kernel_terms(m, v, H, dmin, width, order=order)

    em, es = 1e-6 * H, 1e-6 * s2[0]
    pairs = [
        (t.k_mu, (k(mu + em, s2).k - k(mu - em, s2).k) / (2 * em)),
        (t.k_s, (k(mu, s2 + es).k - k(mu, s2 - es).k) / (2 * es)),
        (t.k_mumu, (k(mu + em, s2).k_mu - k(mu - em, s2).k_mu) / (2 * em)),
        (t.k_mus, (k(mu, s2 + es).k_mu - k(mu, s2 - es).k_mu) / (2 * es)),
        (t.k_ss, (k(mu, s2 + es).k_s - k(mu, s2 - es).k_s) / (2 * es)),
    ]
    for analytic, fd in pairs:
        assert analytic is not None
        np.testing.assert_allclose(analytic, fd, rtol=0, atol=1e-6 * np.abs(analytic).max())


@pytest.mark.parametrize("smeared", [True, False])
def test_region_gradient_and_hessian_match_finite_differences(smeared: bool) -> None:
    rng = np.random.default_rng(4)
    m = _model(rng)
    mu = np.array([0.0031, -0.0047, 0.0012])
    s2 = np.array([4e-5, 1e-4, 2.5e-5]) if smeared else np.array([4e-5, 1.1 * H * H, 1e-6])
    t = m.evaluate(mu, s2, order=2)
    em, es = 1e-7, 1e-10
    tp, tm = m.evaluate(mu + em, s2, order=1), m.evaluate(mu - em, s2, order=1)
    assert t.g_mu is not None
    assert t.h_mumu is not None
    assert t.h_mus is not None
    np.testing.assert_allclose(t.g_mu, (tp.nll - tm.nll) / (2 * em), rtol=1e-5)
    np.testing.assert_allclose(t.h_mumu, (tp.g_mu - tm.g_mu) / (2 * em), rtol=1e-5)
    tp, tm = m.evaluate(mu, s2 + es, order=1), m.evaluate(mu, s2 - es, order=1)
    np.testing.assert_allclose(t.g_s, (tp.nll - tm.nll) / (2 * es), rtol=1e-5)
    np.testing.assert_allclose(t.h_ss, (tp.g_s - tm.g_s) / (2 * es), rtol=1e-5)
    np.testing.assert_allclose(t.h_mus, (tp.g_mu - tm.g_mu) / (2 * es), rtol=1e-5)


def test_mc_stat_matrix_matches_finite_differences_of_the_gradient() -> None:
    rng = np.random.default_rng(5)
    m = _model(rng, rebin=3)
    mu, s2 = np.array([0.002, -0.001, 0.0005]), np.array([5e-5, 2e-5, 1e-6])
    got = m.mc_stat_matrix(mu, s2)
    lo, hi = m.j_lo - 60, m.j_lo + m.n_out + 60
    jac = np.zeros((3, 2, m.template.shape[1]))
    for k in range(lo, hi):
        step = 1e-3
        out = []
        for sign in (1, -1):
            t = m.template.copy()
            t[:, k] += sign * step
            mm = TemplateModel(t, m.variance, m.data, h=H, j_lo=m.j_lo, rebin=m.rebin)
            out.append(mm.evaluate(mu, s2, order=1))
        jac[:, 0, k] = (out[0].g_mu - out[1].g_mu) / (2 * step)
        jac[:, 1, k] = (out[0].g_s - out[1].g_s) / (2 * step)
    ref = np.einsum("rak,rbk,rk->rab", jac, jac, m.variance)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_coarse_sum() -> None:
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(coarse_sum(x, 2), [[1, 5, 9], [13, 17, 21]])
    np.testing.assert_array_equal(coarse_sum(x, 1), x)


def test_coarse_window_sums_and_adjoint_equal_the_full_inverse_fft() -> None:
    """The window's coarse sums (one matrix product on the band-limited spectrum) and their
    adjoint equal a full-length inverse FFT summed per data bin, and an FFT of the spread."""
    m = _model(np.random.default_rng(5))
    mu = np.array([0.4, -3.1, 6.0]) * H
    s2 = np.array([0.0, 12.0, 40.0]) * H * H
    seg, spec, xs, _ = m._spectra(mu, s2, 0)
    z = xs * spec.base
    full = np.fft.irfft(z, n=seg.length, axis=-1)
    want = coarse_sum(full[:, seg.width - 1 : seg.width - 1 + m.n_out], m.rebin)
    np.testing.assert_allclose(m._window_coarse(seg, z), want, rtol=1e-12, atol=1e-12)
    c = np.random.default_rng(6).normal(size=want.shape)
    spread = np.zeros((3, seg.length))
    spread[:, seg.width - 1 : seg.width - 1 + m.n_out] = np.repeat(c, m.rebin, axis=1)
    ref = np.fft.rfft(spread, axis=-1)
    np.testing.assert_allclose(m._adjoint(seg, c), ref, rtol=1e-12, atol=1e-10)


def test_template_segments_are_shared_by_nearby_parameters() -> None:
    """A segment whose kernel support covers the one needed is reused (one template FFT for
    small parameter changes), and the NLL does not depend on which segment is used."""
    m = _model(np.random.default_rng(7))
    mu = np.array([0.4, -3.1, 6.0]) * H
    s2 = np.array([3.0, 12.0, 40.0]) * H * H
    first = m.evaluate(mu, s2, 1)
    assert len(m._cache) == 1
    m.evaluate(mu + 2 * H, s2 * 1.05, 1)
    assert len(m._cache) == 1
    fresh = TemplateModel(m.template, m.variance, m.data, h=H, j_lo=m.j_lo, rebin=m.rebin)
    fresh.evaluate(mu, 30 * s2, 0)  # a wide segment first: the same NLL from it
    again = fresh.evaluate(mu, s2, 1)
    np.testing.assert_allclose(again.nll, first.nll, rtol=1e-12)
    np.testing.assert_allclose(again.g_mu, first.g_mu, rtol=1e-8)  # type: ignore[arg-type]
