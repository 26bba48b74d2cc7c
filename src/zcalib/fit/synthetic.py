"""Synthetic pair-mass histograms for tests, benchmarks and closure checks (numpy only).

Events are generated one by one (vectorised), independently of the fit model: a
Breit-Wigner Z line shape, per-electron |η| and R9 assigned to the scheme's cells, a
per-electron Gaussian resolution (1.0-2.5 % depending on barrel/endcap and R9), and for
data the injected miscalibration and extra smearing applied *per electron*::

    m_data = m_reco · √(r_i r_j) · √((1 + σ_i z₁)(1 + σ_j z₂)),   r = 1 / scale

so a perfect fit returns ``scales`` and ``smears`` (``DESIGN.md`` conventions).

Example:
    >>> from zcalib.categories import build_scheme, Category
    >>> scheme = build_scheme([Category("scale", 0, eta=(0.0, 2.5))], [])
    >>> hs = synthetic_histograms(scheme, n_data=1000, n_mc=2000, seed=1)
    >>> sorted(hs.kinds.items())
    [('data', 'data'), ('mc', 'mc')]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zcalib.categories import CRACK, Category, CategoryScheme, build_scheme, region_code
from zcalib.histograms import HistogramSet, MassBinning, empty_hist

__all__ = ["Z_MASS", "Z_WIDTH", "generate_pairs", "grid_scheme", "synthetic_histograms"]

#: |η| bins of the parent 4 x 2 scheme (``configs/cats_eta_r9.tsv``) and R9 split.
PARENT_ETA = ((0.0, 1.0), (1.0, CRACK[0]), (CRACK[1], 2.0), (2.0, 2.5))
PARENT_R9 = ((0.0, 0.96), (0.96, 10.0))


def _bins(*edges: float) -> tuple[tuple[float, float], ...]:
    """Consecutive bins between ``edges``, leaving out the barrel-endcap crack."""
    return tuple((lo, hi) for lo, hi in itertools.pairwise(edges) if lo != CRACK[0])


#: A fine scheme inside the parent: 8 |η| x 5 R9 scale cells.
FINE_ETA = _bins(0.0, 0.5, 1.0, 1.2, CRACK[0], CRACK[1], 1.8, 2.0, 2.25, 2.5)
FINE_R9 = _bins(0.0, 0.9, 0.94, 0.96, 0.975, 10.0)
#: The production-like |η| x R9 x Et scheme: 11 |η| x 2 R9 x 3 Et = 66 scale cells.
ETA_11 = _bins(0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, CRACK[0], CRACK[1], 1.8, 2.0, 2.25, 2.5)
ET_3 = ((0.0, 35.0), (35.0, 45.0), (45.0, math.inf))

Z_MASS = 91.1876
Z_WIDTH = 2.4952
_CHUNK = 1_000_000

FloatArray = NDArray[np.float64]


def _breit_wigner(
    rng: np.random.Generator, n: int, lo: float = 50.0, hi: float = 150.0
) -> FloatArray:
    """Non-relativistic Breit-Wigner truncated to ``[lo, hi]`` (inverse CDF)."""
    g = 0.5 * Z_WIDTH
    a, b = math.atan((lo - Z_MASS) / g), math.atan((hi - Z_MASS) / g)
    out: FloatArray = Z_MASS + g * np.tan(rng.uniform(a, b, n))
    return out


def _electrons(rng: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """|η|, R9 and relative resolution of ``n`` electrons."""
    barrel = rng.random(n) < 0.65
    eta = np.where(barrel, rng.uniform(0.0, CRACK[0], n), rng.uniform(CRACK[1], 2.5, n))
    golden = rng.random(n) < np.where(barrel, 0.55, 0.45)
    r9 = np.where(
        golden,
        rng.normal(0.967, 0.011, n),
        0.975 - rng.gamma(1.5, 0.06, n),
    )
    r9 = np.clip(r9, 0.3, 1.2)
    res = np.where(barrel, np.where(r9 > 0.96, 0.010, 0.016), np.where(r9 > 0.96, 0.018, 0.025))
    return eta, r9, res


Bins = Sequence[tuple[float, float]]


def _grid(kind: str, eta: Bins, r9: Bins, et: Bins) -> list[Category]:
    out: list[Category] = []
    for e in et:
        for r in r9:
            for a in eta:
                out.append(Category(kind, len(out), eta=a, r9=r, et=e))  # type: ignore[arg-type]
    return out


def grid_scheme(
    eta: Bins,
    r9: Bins,
    et: Bins = ((-math.inf, math.inf),),
    *,
    smear_eta: Bins = PARENT_ETA,
    smear_r9: Bins = PARENT_R9,
    smear_et: Bins | None = None,
) -> CategoryScheme:
    """A scheme of |η| x R9 x Et scale cells and (by default) the parent 4 x 2 smear cells
    (over the whole Et range of the scale cells).

    Example:
        >>> s = grid_scheme(PARENT_ETA, PARENT_R9)
        >>> len(s.scale), len(s.smear)
        (8, 8)
    """
    m_et = ((et[0][0], et[-1][1]),) if smear_et is None else smear_et
    return build_scheme(
        _grid("scale", eta, r9, et), _grid("smear", smear_eta, smear_r9, m_et), source="grid"
    )


def parent_scale_index(scheme: CategoryScheme, parent: CategoryScheme) -> NDArray[np.int64]:
    """Parent scale category of every scale category of ``scheme`` (by its |η|, R9 centre).

    Example:
        >>> p = grid_scheme(PARENT_ETA, PARENT_R9)
        >>> parent_scale_index(grid_scheme(FINE_ETA, FINE_R9), p)[:5].tolist()
        [0, 0, 1, 1, 2]
    """
    eta = np.array([0.5 * (c.eta[0] + c.eta[1]) for c in scheme.scale])
    r9 = np.array([0.5 * (c.r9[0] + min(c.r9[1], 1.0)) for c in scheme.scale])
    cells = parent.assign(abs_eta=eta, r9=r9, et=np.full(eta.size, 45.0))
    out: NDArray[np.int64] = parent.cell_scale_index()[cells]
    return out


def _cuts_on_et(scheme: CategoryScheme) -> bool:
    return any(c.et != (-math.inf, math.inf) for c in (*scheme.scale, *scheme.smear))


def generate_pairs(
    scheme: CategoryScheme,
    n: int,
    *,
    rng: np.random.Generator,
    scales: FloatArray | None = None,
    smears: FloatArray | None = None,
    truth_scheme: CategoryScheme | None = None,
) -> tuple[NDArray[np.int64], FloatArray]:
    """Region codes and masses of ``n`` generated pairs (data if ``scales``/``smears`` given).

    ``scales``/``smears`` are per category of ``truth_scheme`` (default ``scheme``): a fine
    fit scheme can be generated from a coarser parent truth. When a scheme cuts on Et each
    electron gets ``Et = m/2 · exp(0.3 z)`` (no Et dependence of the response), else 45 GeV. Pairs with an electron
    outside every category of either scheme get region code ``-1``.
    """
    m_true = _breit_wigner(rng, n)
    eta1, r91, res1 = _electrons(rng, n)
    eta2, r92, res2 = _electrons(rng, n)
    if _cuts_on_et(scheme) or (truth_scheme is not None and _cuts_on_et(truth_scheme)):
        et1 = 0.5 * m_true * np.exp(0.3 * rng.standard_normal(n))
        et2 = 0.5 * m_true * np.exp(0.3 * rng.standard_normal(n))
    else:
        et1 = et2 = np.full(n, 45.0)
    c1 = scheme.assign(abs_eta=eta1, r9=r91, et=et1)
    c2 = scheme.assign(abs_eta=eta2, r9=r92, et=et2)
    f1 = np.maximum(1.0 + res1 * rng.standard_normal(n), 1e-3)
    f2 = np.maximum(1.0 + res2 * rng.standard_normal(n), 1e-3)
    m = m_true * np.sqrt(f1 * f2)
    if scales is not None or smears is not None:
        ts = scheme if truth_scheme is None else truth_scheme
        t1 = c1 if truth_scheme is None else ts.assign(abs_eta=eta1, r9=r91, et=et1)
        t2 = c2 if truth_scheme is None else ts.assign(abs_eta=eta2, r9=r92, et=et2)
        cs = ts.cell_scale_index()
        cm = ts.cell_smear_index()
        sc = np.ones(len(ts.scale)) if scales is None else np.asarray(scales, dtype=float)
        sm = np.zeros(len(ts.smear)) if smears is None else np.asarray(smears, dtype=float)
        ok = (t1 >= 0) & (t2 >= 0)
        c1 = np.where(ok, c1, -1)
        i1, i2 = np.where(ok, t1, 0), np.where(ok, t2, 0)
        r1, r2 = 1.0 / sc[cs[i1]], 1.0 / sc[cs[i2]]
        g1 = np.maximum(1.0 + sm[cm[i1]] * rng.standard_normal(n), 1e-3)
        g2 = np.maximum(1.0 + sm[cm[i2]] * rng.standard_normal(n), 1e-3)
        m = m * np.sqrt(r1 * r2) * np.sqrt(g1 * g2)
    return region_code(c1, c2, scheme.n_cells), m


def synthetic_histograms(
    scheme: CategoryScheme,
    *,
    n_data: int,
    n_mc: int,
    scales: Sequence[float] | None = None,
    smears: Sequence[float] | None = None,
    seed: int = 0,
    binning: MassBinning | None = None,
    mc_weights: bool = True,
    truth_scheme: CategoryScheme | None = None,
    negative_fraction: float = 0.0,
) -> HistogramSet:
    """Data and MC pair-mass histograms with injected data scales and smearings.

    Args:
        scheme: category scheme (cells define the regions).
        n_data: generated data pairs.
        n_mc: generated MC pairs.
        scales: true scale per scale category (the correction the fit must find); default 1.
        smears: true extra smearing of data per smear category; default 0.
        seed: seed (data and MC use independent streams).
        binning: fine mass binning (default :class:`MassBinning()`).
        mc_weights: give MC events weights uniform in [0.5, 1.5] (exercises Σw²).
        truth_scheme: scheme the ``scales``/``smears`` refer to (default ``scheme``), e.g.
            a coarse parent truth for a finer fit scheme.
        negative_fraction: fraction of MC events with a negative weight (as aMC@NLO
            samples have), drawn independently of the event; weights are scaled by
            ``1/(1 − 2f)`` so the expected template is unchanged.

    Returns:
        A :class:`HistogramSet` with datasets ``data`` and ``mc``, variation ``nominal``.
    """
    ts = scheme if truth_scheme is None else truth_scheme
    sc = np.ones(len(ts.scale)) if scales is None else np.asarray(scales, dtype=float)
    sm = np.zeros(len(ts.smear)) if smears is None else np.asarray(smears, dtype=float)
    if not 0.0 <= negative_fraction < 0.5:
        msg = f"negative_fraction is {negative_fraction}; allowed: 0 <= f < 0.5"
        raise ValueError(msg)
    h = empty_hist(binning)
    ss = np.random.SeedSequence(seed)
    # signs from their own stream: the same MC events with and without negative weights
    rng_data, rng_mc, rng_sign = (np.random.default_rng(s) for s in ss.spawn(3))
    for name, n, rng, is_data in (("data", n_data, rng_data, True), ("mc", n_mc, rng_mc, False)):
        done = 0
        while done < n:
            k = min(_CHUNK, n - done)
            codes, m = generate_pairs(
                scheme,
                k,
                rng=rng,
                scales=sc if is_data else None,
                smears=sm if is_data else None,
                truth_scheme=truth_scheme,
            )
            keep = codes >= 0
            nk = int(keep.sum())
            w = np.ones(nk) if is_data or not mc_weights else rng.uniform(0.5, 1.5, nk)
            if not is_data and negative_fraction > 0:
                sign = np.where(rng_sign.random(nk) < negative_fraction, -1.0, 1.0)
                w = w * sign / (1.0 - 2.0 * negative_fraction)
            h.fill(dataset=name, variation="nominal", region=codes[keep], mass=m[keep], weight=w)
            done += k
    meta: dict[str, Any] = {
        "categories_source": scheme.source,
        "synthetic": {
            "seed": seed,
            "n_data": n_data,
            "n_mc": n_mc,
            "scales": sc.tolist(),
            "smears": sm.tolist(),
            "negative_fraction": negative_fraction,
        },
    }
    return HistogramSet(
        hist=h,
        categories=scheme.to_yaml_dict(),
        kinds={"data": "data", "mc": "mc"},
        metadata=meta,
    )


def expected_region_arrays(
    scheme: CategoryScheme,
    *,
    n_data: float,
    n_mc: float,
    scales: Sequence[float] | None = None,
    smears: Sequence[float] | None = None,
    seed: int = 0,
    min_expected: float = 50.0,
    binning: MassBinning | None = None,
    double_gaussian: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Histogram-level synthesis for schemes too large to fill event by event.

    The same physics as :func:`synthetic_histograms` (Breit-Wigner, per-electron |η|, R9,
    Et and resolution), but per pair region: cell populations and mean resolutions are
    taken from 10⁶ generated electrons, each region's mass shape is the Breit-Wigner in
    ``log m`` convolved with the Gaussian of the pair resolution ``½√(res_i² + res_j²)`` (and,
    for data, shifted by ``log √(r_i r_j)`` and smeared by ``½√(σ_i² + σ_j²)``), and the
    counts are Poisson draws of ``n · population`` (MC with unit weights). Regions expecting
    fewer than ``min_expected`` data pairs are left out (the fit would drop them).
    With ``double_gaussian=(f, k)`` the data's extra smearing of each pair is the
    double Gaussian ``(1 − f) N(0, s²) + f N(0, k² s²)`` of that core width ``s`` instead
    (the shape of the fit option ``smearing="double-gaussian"``).

    Returns:
        The keyword arguments of :func:`zcalib.fit.fit_arrays` (``data``, ``mc_w``,
        ``mc_w2``, ``regions``, ``mass_edges``, ``cell_scale``, ``cell_smear``).
    """
    b = binning or MassBinning()
    rng = np.random.default_rng(seed)
    n_el = 1_000_000
    eta, r9, res = _electrons(rng, n_el)
    m_el = _breit_wigner(rng, n_el)
    et = 0.5 * m_el * np.exp(0.3 * rng.standard_normal(n_el)) if _cuts_on_et(scheme) else None
    cells = scheme.assign(abs_eta=eta, r9=r9, et=np.full(n_el, 45.0) if et is None else et)
    ok = cells >= 0
    nc = scheme.n_cells
    pop = np.bincount(cells[ok], minlength=nc) / n_el
    res_c = np.bincount(cells[ok], weights=res[ok], minlength=nc) / np.maximum(
        np.bincount(cells[ok], minlength=nc), 1
    )
    cs, cm = scheme.cell_scale_index(), scheme.cell_smear_index()
    sc = np.ones(len(scheme.scale)) if scales is None else np.asarray(scales, dtype=float)
    sm = np.zeros(len(scheme.smear)) if smears is None else np.asarray(smears, dtype=float)
    ii, jj = np.triu_indices(nc)
    frac = pop[ii] * pop[jj] * np.where(ii == jj, 1.0, 2.0)
    keep = n_data * frac >= min_expected
    ii, jj, frac = ii[keep], jj[keep], frac[keep]
    edges = np.geomspace(b.lo, b.hi, b.n_bins + 1)
    u = np.log(edges)
    h = float(u[1] - u[0])
    centres = 0.5 * (u[1:] + u[:-1])
    # Breit-Wigner density in u = log m (times the bin width), normalised
    m = np.exp(centres)
    g = 0.5 * Z_WIDTH
    bw = m * (g / np.pi) / ((m - Z_MASS) ** 2 + g * g) * h
    # all region shapes at once: the Breit-Wigner spectrum times Gaussian (and shift) factors
    n_fft = 2 * b.n_bins
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_fft, d=h)
    bw_hat = np.fft.rfft(bw, n_fft)
    width2 = 0.25 * (res_c[ii] ** 2 + res_c[jj] ** 2)
    extra2 = 0.25 * (sm[cm[ii]] ** 2 + sm[cm[jj]] ** 2)
    shift = -0.5 * (np.log(sc[cs[ii]]) + np.log(sc[cs[jj]]))
    w2 = omega * omega
    data = np.empty((ii.size, b.n_bins))
    mc = np.empty((ii.size, b.n_bins))
    for a in range(0, ii.size, 2048):
        sl = slice(a, a + 2048)
        g_mc = np.exp(-0.5 * width2[sl, None] * w2)
        shape_mc = np.fft.irfft(bw_hat * g_mc, n_fft)[:, : b.n_bins]
        g_smear = np.exp(-0.5 * extra2[sl, None] * w2)
        if double_gaussian is not None:
            f, k = double_gaussian
            g_smear = (1.0 - f) * g_smear + f * np.exp(-0.5 * k * k * extra2[sl, None] * w2)
        g_data = g_smear * np.exp(-1j * shift[sl, None] * omega)
        shape_data = np.fft.irfft(bw_hat * g_mc * g_data, n_fft)[:, : b.n_bins]
        data[sl] = rng.poisson(np.maximum(n_data * frac[sl, None] * shape_data, 0.0))
        mc[sl] = rng.poisson(np.maximum(n_mc * frac[sl, None] * shape_mc, 0.0))
    return {
        "data": data,
        "mc_w": mc,
        "mc_w2": mc.copy(),
        "regions": ii * nc + jj,
        "mass_edges": edges,
        "cell_scale": cs,
        "cell_smear": cm,
    }


def fit_inputs(hset: HistogramSet, scheme: CategoryScheme) -> dict[str, Any]:
    """The keyword arguments of :func:`zcalib.fit.fit_arrays` for ``hset`` (nominal
    variation), as :func:`expected_region_arrays` returns them."""
    regions, data, _ = hset.region_arrays("data")
    _, mc_w, mc_w2 = hset.region_arrays("mc")
    return {
        "data": data,
        "mc_w": mc_w,
        "mc_w2": mc_w2,
        "regions": regions,
        "mass_edges": np.asarray(hset.hist.axes["mass"].edges),
        "cell_scale": scheme.cell_scale_index(),
        "cell_smear": scheme.cell_smear_index(),
    }
