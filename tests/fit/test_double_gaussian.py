"""Double-Gaussian smearing (``smearing="double-gaussian"``): kernel, derivatives, truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zcalib.exceptions import InvalidConfig
from zcalib.fit import FitConfig, fit_arrays
from zcalib.fit.model import TemplateModel
from zcalib.fit.synthetic import expected_region_arrays

from .conftest import TRUTH_SCALES, TRUTH_SMEARS

H = math.log(2.0) / 1200
SHAPE = (0.2, 2.0)


def _model(rng: np.random.Generator, double_gaussian: tuple[float, float] | None, **kw: object):
    u = H * np.arange(1200)
    t = np.array([rng.poisson(4000 / (1.0 + ((u - 0.4) / 0.015) ** 2) + 50) for _ in range(3)])
    t = t.astype(float)
    data = rng.poisson(t[:, 400:800].reshape(3, 100, 4).sum(axis=2)).astype(float)
    return TemplateModel(
        t, t.copy(), data, h=H, j_lo=400, rebin=4, double_gaussian=double_gaussian, **kw
    )


#: (μ, s²) per region: a wide (closed-form spectrum) and two narrow (real-space) kernels
MU = np.array([0.0012, -0.0004, 0.0])
S2 = np.array([0.011**2, (1.5 * H) ** 2, 0.0])


def test_prediction_is_the_mixture_of_two_gaussian_predictions() -> None:
    f, k = SHAPE
    dg = _model(np.random.default_rng(1), SHAPE)
    single = _model(np.random.default_rng(1), None)
    mix = (1 - f) * single.predict_fine(MU, S2) + f * single.predict_fine(MU, k * k * S2)
    np.testing.assert_allclose(dg.predict_fine(MU, S2), mix, rtol=1e-10, atol=1e-9)
    # and differs from the single Gaussian of the core width where the width matters
    assert np.abs(dg.predict_fine(MU, S2)[0] - single.predict_fine(MU, S2)[0]).max() > 10.0


@pytest.mark.parametrize("likelihood", ["none", "noise-corrected", "bb-lite"])
def test_gradient_and_hessian_match_finite_differences(likelihood: str) -> None:
    m = _model(np.random.default_rng(2), SHAPE, likelihood=likelihood, s2_floor=(2 * H) ** 2)
    s2 = np.array([0.011**2, 0.004**2, 0.002**2])
    t = m.evaluate(MU, s2, order=2)
    e_mu, e_s = 1e-7, 1e-10
    g_mu = (m.evaluate(MU + e_mu, s2, 0).nll - m.evaluate(MU - e_mu, s2, 0).nll) / (2 * e_mu)
    g_s = (m.evaluate(MU, s2 + e_s, 0).nll - m.evaluate(MU, s2 - e_s, 0).nll) / (2 * e_s)
    up, down = m.evaluate(MU, s2 + e_s, 1), m.evaluate(MU, s2 - e_s, 1)
    assert up.g_s is not None
    assert down.g_s is not None
    assert up.g_mu is not None
    assert down.g_mu is not None
    h_ss = (up.g_s - down.g_s) / (2 * e_s)
    h_mus = (up.g_mu - down.g_mu) / (2 * e_s)
    np.testing.assert_allclose(t.g_mu, g_mu, rtol=1e-5)
    np.testing.assert_allclose(t.g_s, g_s, rtol=1e-4)
    np.testing.assert_allclose(t.h_ss, h_ss, rtol=1e-4)
    np.testing.assert_allclose(t.h_mus, h_mus, rtol=1e-4)


def test_config_default_is_gaussian_and_bad_shapes_are_named() -> None:
    assert FitConfig().double_gaussian_shape() is None
    cfg = FitConfig(smearing="double-gaussian", double_gaussian={"fraction": 0.3})
    assert cfg.double_gaussian_shape() == (0.3, 2.0)
    assert cfg.with_overrides(seed=1).double_gaussian_shape() == (0.3, 2.0)
    with pytest.raises(InvalidConfig, match="field 'smearing' is 'triple'; allowed: gaussian, "):
        FitConfig(smearing="triple")
    with pytest.raises(
        InvalidConfig, match=r"field 'double_gaussian\.fraction' is 1\.0; expected a fraction in"
    ):
        FitConfig(double_gaussian={"fraction": 1.0})
    with pytest.raises(
        InvalidConfig, match=r"unknown field 'double_gaussian\.ratio'; allowed fields: fraction, "
    ):
        FitConfig(double_gaussian={"ratio": 2.0})


@pytest.fixture(scope="module")
def dg_arrays() -> dict[str, np.ndarray]:
    """200k data pairs whose extra smearing is the double Gaussian (0.2, 2.0), MC 4x."""
    from zcalib.categories import load_categories

    from .conftest import ROOT

    scheme = load_categories(ROOT / "configs" / "cats_eta_r9.tsv")
    return expected_region_arrays(
        scheme,
        n_data=200_000,
        n_mc=800_000,
        scales=TRUTH_SCALES,
        smears=TRUTH_SMEARS,
        seed=3,
        double_gaussian=SHAPE,
    )


def _pulls(arrays: dict[str, np.ndarray], smearing: str) -> tuple[np.ndarray, np.ndarray]:
    res = fit_arrays(**arrays, config=FitConfig(smearing=smearing, mc_stat="sandwich"))
    assert res.status == "converged", res.message
    smear = np.array(
        [(c.value - t) / c.total_stat for c, t in zip(res.smears, TRUTH_SMEARS, strict=True)]
    )
    scale = np.array(
        [(c.value - t) / c.total_stat for c, t in zip(res.scales, TRUTH_SCALES, strict=True)]
    )
    return scale, smear


def test_double_gaussian_truth_recovered_and_single_gaussian_differs(
    dg_arrays: dict[str, np.ndarray],
) -> None:
    scale, smear = _pulls(dg_arrays, "double-gaussian")
    assert np.abs(smear).max() < 3.5, smear
    assert np.abs(scale).max() < 3.5, scale
    assert 0.5 < math.sqrt(np.mean(smear**2)) < 1.5, smear
    # the single Gaussian reads the tail as a wider core: every smearing high, by >= 1.5σ
    _, single = _pulls(dg_arrays, "gaussian")
    assert single.min() > 1.5, single
    assert single.mean() > 3.0, single


def test_payload_says_the_smear_is_the_core_of_the_double_gaussian(tmp_path) -> None:
    import correctionlib

    from zcalib.corrections.egm import EgmNames
    from zcalib.derive import write_step_payload
    from zcalib.generate import default_categories

    scheme = default_categories()
    names = EgmNames()
    ns, nm = len(scheme.scale), len(scheme.smear)
    smears = np.linspace(0.008, 0.02, nm)
    paths = {}
    for tag, shape in (("single", None), ("double", SHAPE)):
        paths[tag] = write_step_payload(
            tmp_path / f"{tag}.json",
            scheme,
            (np.ones(ns), np.full(ns, 1e-4)),
            (smears, np.full(nm, 1e-3)),
            step="dg",
            names=names,
            description="test",
            smear_model=shape,
        )
    single = correctionlib.CorrectionSet.from_file(str(paths["single"]))
    double = correctionlib.CorrectionSet.from_file(str(paths["double"]))
    note = (
        "Smearing model: double-gaussian, fraction f = 0.2, width_ratio k = 2: "
        "smear/esmear/smear_up/smear_down are the core width s; draw per electron "
        "E' = E (1 + s z) with probability 0.8 and E' = E (1 + 2 s z) with probability 0.2"
    )
    for name in (names.smear,):
        assert note in double[name].description
        assert "Smearing model" not in single[name].description
        args = ("smear", 40.0, 0.97, 0.5)
        assert double[name].evaluate(*args) == single[name].evaluate(*args) > 0
