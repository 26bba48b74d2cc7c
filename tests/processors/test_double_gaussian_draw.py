"""A double-Gaussian smearing payload is drawn as the fitted mixture, by ``zcalib apply`` and
by the processors' MC smearing: ``(1 - f) N(0, s²) + f N(0, k² s²)``, the component picked by
``EGMRandomGenerator("stdflat", ...)`` keyed on the event identity."""

from __future__ import annotations

import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from scipy import stats

from tests.conftest import CONFIGS
from zcalib.api import apply
from zcalib.categories import load_categories
from zcalib.config import dataset_config_from_files
from zcalib.corrections import EgmNames
from zcalib.corrections.steps import load_correction_steps
from zcalib.derive import write_step_payload
from zcalib.runner import RunOptions, build_histograms

F, K = 0.2, 2.0
SMEARS = np.linspace(0.01, 0.03, 8)


def _payload(tmp: Path, tag: str, shape: tuple[float, float] | None, smears=SMEARS) -> Path:
    scheme = load_categories(CONFIGS / "cats_eta_r9.tsv")
    return write_step_payload(
        tmp / f"{tag}.json",
        scheme,
        (np.ones(8), np.full(8, 1e-4)),
        (np.asarray(smears), np.full(8, 1e-3)),
        step="dg",
        names=EgmNames(),
        seed=3,
        description="double-Gaussian draw test",
        smear_model=shape,
    )


def _mixture_cdf(x: np.ndarray) -> np.ndarray:
    return (1 - F) * stats.norm.cdf(x) + F * stats.norm.cdf(x / K)


def test_apply_draws_the_mixture_whatever_the_chunks(tmp_path, demo_ecalelf) -> None:
    """Per electron, ``r = (pt/pt_raw - 1)/smear`` follows the mixture: variance
    ``1 - f + f k² = 1.6``, ``P(|r| > 3) = 0.8·0.0027 + 0.2·0.1336 = 0.0289`` (a single
    Gaussian: 1 and 0.0027), a KS test against the mixture CDF; the core electrons (u ≥ f)
    get exactly the single-Gaussian factor; rows are identical for two chunkings."""
    double, single = _payload(tmp_path, "double", (F, K)), _payload(tmp_path, "single", None)
    kw = {"mc": [demo_ecalelf.mc], "input_format": "ecalelf"}
    a, b, s = (
        apply(path, tmp_path / tag, options=RunOptions(executor="iterative", progress=False,
              chunksize=chunks), **kw)
        for tag, path, chunks in (("a", double, 7_000), ("b", double, 13_000), ("s", single, 7_000))
    )  # fmt: skip
    ra, rb, rs = a.read("mc"), b.read("mc"), s.read("mc")
    assert len(a.parts["mc"]) != len(b.parts["mc"])
    for col in ra.fields:
        np.testing.assert_array_equal(ak.to_numpy(ra[col]), ak.to_numpy(rb[col]), col)
    ok = ak.to_numpy(ra.smear) > 0
    r = (ak.to_numpy(ra.pt / ra.pt_raw)[ok] - 1) / ak.to_numpy(ra.smear)[ok]
    r1 = (ak.to_numpy(rs.pt / rs.pt_raw)[ok] - 1) / ak.to_numpy(rs.smear)[ok]
    n = len(r)
    assert n > 70_000
    var_mix = 1 - F + F * K * K
    # variance of the sample variance of the mixture: (E r⁴ - var²)/n, E r⁴ = 3(1-f+f k⁴)
    err_var = math.sqrt((3 * (1 - F + F * K**4) - var_mix**2) / n)
    print(f"\nvar(r) = {r.var():.4f} (mixture {var_mix}, ±{err_var:.4f}); single {r1.var():.4f}")
    assert r.var() == pytest.approx(var_mix, abs=4 * err_var)
    assert r1.var() == pytest.approx(1.0, abs=0.03)
    p_tail = (1 - F) * 2 * stats.norm.sf(3) + F * 2 * stats.norm.sf(3 / K)
    frac = float(np.mean(np.abs(r) > 3))
    print(f"P(|r| > 3) = {frac:.4f} (mixture {p_tail:.4f}); single {np.mean(np.abs(r1) > 3):.4f}")
    assert frac == pytest.approx(p_tail, abs=4 * math.sqrt(p_tail * (1 - p_tail) / n))
    assert float(np.mean(np.abs(r1) > 3)) < 0.005
    ks = stats.kstest(r, _mixture_cdf)
    assert ks.pvalue > 1e-3, ks
    assert stats.kstest(r1, _mixture_cdf).pvalue < 1e-10
    # the component: core electrons carry the single-Gaussian factor exactly, tail ones k× it
    z, z1 = ak.to_numpy(ra.z), ak.to_numpy(rs.z)
    same, tail = z == z1, z == K * z1
    assert np.all(same | tail)
    assert float(tail.mean()) == pytest.approx(F, abs=4 * math.sqrt(F * (1 - F) / n))


def _mc_hist(steps, demo_ecalelf, chunksize):
    cfg = dataset_config_from_files(mc=[str(demo_ecalelf.mc)])
    scheme = load_categories(CONFIGS / "cats_eta_r9.tsv")
    hs = build_histograms(
        cfg,
        scheme,
        corrections=tuple(s for s in steps if s.kind == "smear"),
        smear_seed=3,
        options=RunOptions(executor="iterative", chunksize=chunksize, progress=False),
    )
    regions, w, _ = hs.region_arrays("mc", "nominal")
    return regions, w, hs.hist.axes["mass"].centers


def test_processor_smears_mc_with_the_mixture(tmp_path, demo_ecalelf) -> None:
    """The processors' MC smearing reads the model from the payload: a mixture with f = 1 is
    exactly the single Gaussian of width k·s; the f = 0.2 mixture lies between the single
    Gaussians of widths s and k·s, and is independent of the chunking."""
    hist = {}
    for tag, shape, smears in (
        ("all_tail", (1.0, K), SMEARS),
        ("wide", None, K * SMEARS),
        ("single", None, SMEARS),
        ("mixture", (F, K), SMEARS),
    ):
        steps = load_correction_steps(_payload(tmp_path, tag, shape, smears))
        hist[tag] = _mc_hist(steps, demo_ecalelf, 100_000)
        if tag == "mixture":
            other = _mc_hist(steps, demo_ecalelf, 9_000)
            np.testing.assert_array_equal(hist[tag][0], other[0])
            np.testing.assert_allclose(hist[tag][1], other[1], rtol=1e-12, atol=0)
    for a, b in (("all_tail", "wide"),):
        np.testing.assert_array_equal(hist[a][0], hist[b][0])
        np.testing.assert_allclose(hist[a][1], hist[b][1], rtol=1e-12, atol=0)

    def rms(tag):  # mass RMS within 80-100 GeV of the barrel high-R9 region (0, 0)
        regions, w, c = hist[tag]
        row = w[list(regions).index(0)]
        sel = (c > 80) & (c < 100)
        mean = (row[sel] * c[sel]).sum() / row[sel].sum()
        return math.sqrt((row[sel] * (c[sel] - mean) ** 2).sum() / row[sel].sum())

    print({t: round(rms(t), 4) for t in hist})
    assert rms("single") < rms("mixture") < rms("wide")
