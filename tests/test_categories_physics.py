"""General categories on generated ntuples, end to end: signed-eta categories recover an
injected EE+/EE- asymmetry (payload evaluated with the analysts' call), and a gain step in a
pipeline recovers injected gain-dependent scales."""

from __future__ import annotations

import json

import correctionlib
import numpy as np
import pytest
import yaml

from tests.chain.conftest import write_pipeline
from tests.corrections.conftest import _run_correction_validate
from zcalib import api
from zcalib.calibration import CalibrationConfig
from zcalib.categories import scheme_from_dict
from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline
from zcalib.exceptions import InvalidConfig
from zcalib.generate import generate

#: the analysts' call of the EGM scale compound (fixed whatever the categories cut on)
EGM_SCALE_CALL = ("syst", "run", "ScEta", "r9", "AbsScEta", "pt", "seedGain")
#: EE-, EB, EE+ scales in signed eta; |eta| smearings (the smearing signature has no sign).
SIGNED = {
    "schema_version": 1,
    "scale": [
        {"sceta": [-2.5, -1.566]},
        {"sceta": [-1.4442, 1.4442]},
        {"sceta": [1.566, 2.5]},
    ],
    "smear": [{"eta": [0, 1.4442]}, {"eta": [1.566, 2.5]}],
}
SIGNED_SCALES = (0.991, 1.002, 1.009)  # EE- / EB / EE+: a 1.8 % EE asymmetry
SIGNED_SMEARS = (0.010, 0.020)

#: EB/EE x gain 12/6/1 scales (the gain step's categories, and the truth).
EB, EE = [0, 1.4442], [1.566, 2.5]
GAINS = (12, 6, 1)
GAIN_CATS = {
    "schema_version": 1,
    "scale": [{"eta": eta, "gain": g} for eta in (EB, EE) for g in GAINS],
    "smear": [{"eta": EB}, {"eta": EE}],
}
GAIN_SCALES = (1.000, 0.994, 1.008, 0.997, 1.006, 0.990)
GAIN_SMEARS = (0.010, 0.020)
#: barrel seed energies of the gain 6 / gain 1 switch: about a third of the barrel electrons
#: in each gain (the default thresholds give ~1 % gain 6 and no gain 1 in a Z sample)
GAIN_THRESHOLDS = (35.0, 50.0)


def _yaml(path, raw):
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _sample(folder, seed, cats, scales, smears, **kw):
    """30k data / 60k MC ECALELF pairs with ``scales``/``smears`` injected in ``cats``."""
    scheme = scheme_from_dict(cats)
    return generate(
        folder,
        n_data=30_000,
        n_mc=60_000,
        seed=seed,
        categories=scheme,
        truth_scales=scales,
        truth_smears=smears,
        **kw,
    )


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signed")
    sample = _sample(folder / "sample", 21, SIGNED, SIGNED_SCALES, SIGNED_SMEARS)
    cats = _yaml(folder / "signed.yaml", SIGNED)
    cfg = CalibrationConfig(categories=str(cats))
    ds = api.datasets_from_files(data=[sample.data], mc=[sample.mc], config=cfg)
    cal = api.calibrate(ds, cfg, out_dir=folder / "out", step="signed", executor="iterative")
    return cal, folder / "out"


def test_signed_eta_categories_recover_the_ee_asymmetry(signed_run):
    cal, _ = signed_run
    res = cal.fit.result
    assert res.converged, res.status
    values = np.array([c.value for c in res.scales])
    errors = np.array([c.total_stat for c in res.scales])
    pulls = (values - np.array(SIGNED_SCALES)) / errors
    print("signed-eta scales", values.round(5), "errors", errors.round(5), "pulls", pulls)
    assert np.all(np.abs(pulls) < 3), pulls
    asym = values[2] - values[0]
    significance = asym / np.hypot(errors[0], errors[2])
    assert asym == pytest.approx(SIGNED_SCALES[2] - SIGNED_SCALES[0], abs=3 * errors.max())
    assert significance > 10, significance  # EE+ and EE- differ, as injected


def test_signed_eta_payload_keeps_the_analysts_call(signed_run):
    cal, out = signed_run
    path = out / "corrections.json"
    done = _run_correction_validate(path)
    assert done.returncode == 0, done.stdout + done.stderr
    cset = correctionlib.CorrectionSet.from_file(str(path))
    compound = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    # the analysts' call is unchanged by signed-eta categories
    assert tuple(v.name for v in compound.inputs) == EGM_SCALE_CALL
    sc_eta = np.array([-2.0, -0.7, 0.7, 2.0])
    got = compound.evaluate(
        "scale", np.full(4, 355100.0), sc_eta, np.full(4, 0.95), np.abs(sc_eta), 40.0, 12.0
    )
    fitted = [c.value for c in cal.fit.result.scales]
    np.testing.assert_allclose(got, [fitted[0], fitted[1], fitted[1], fitted[2]], rtol=1e-12)
    # the smearing stays in |eta| (EGMSmearAndSyst takes AbsScEta)
    smear = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    fitted_smear = [c.value for c in cal.fit.result.smears]
    assert smear.evaluate("smear", 40.0, 0.95, 2.0) == pytest.approx(fitted_smear[1], rel=1e-12)
    # the legacy text (|eta| columns, read by CMSSW with |eta|) cannot hold signed eta
    assert not (out / "signed_scales.dat").exists()
    record = json.loads((out / "fit_result.json").read_text())
    assert record["legacy"] == "not written: the categories cut on sceta"


def test_gain_step_recovers_gain_dependent_scales(tmp_path):
    sample = _sample(
        tmp_path / "sample",
        22,
        GAIN_CATS,
        GAIN_SCALES,
        GAIN_SMEARS,
        gain_thresholds=GAIN_THRESHOLDS,
    )
    coarse = _yaml(tmp_path / "coarse.yaml", {"scale": [{"eta": EB}, {"eta": EE}]})
    gain = _yaml(tmp_path / "gain.yaml", GAIN_CATS)
    steps = [
        {"name": "coarse", "type": "fit", "categories": str(coarse)},
        {"name": "gain", "type": "fit", "categories": str(gain), "needs": ["coarse"]},
    ]
    path = write_pipeline(tmp_path, sample, steps=steps, mc_weights=[])
    res = run_pipeline(load_pipeline(path))
    record = json.loads((res.output / "gain" / "fit_result.json").read_text())
    assert record["status"] == "converged", record["status"]
    # the gain step's own scales: the gain dependence left after the coarse step
    own = np.array([c["value"] for c in record["categories"] if c["kind"] == "scale"])
    assert abs(own[2] - own[1]) > 0.01  # gain 1 vs gain 6 in the barrel: 1.4 % injected
    # the final compound (coarse x gain) at each (|eta|, gain) against the truth
    cset = correctionlib.CorrectionSet.from_file(str(res.output / "final" / "corrections.json"))
    compound = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    eta = np.repeat([0.7, 2.0], 3)
    gains = np.tile(np.array(GAINS, dtype=float), 2)
    args = (np.full(6, 355100.0), eta, np.full(6, 0.95), eta, np.full(6, 40.0), gains)
    got = compound.evaluate("scale", *args)
    err = compound.evaluate("escale", *args)
    pulls = (got - np.array(GAIN_SCALES)) / err
    print("gain scales", got.round(5), "errors", err.round(5), "pulls", pulls.round(2))
    assert np.all(np.abs(pulls) < 3), pulls
    assert np.all(err < 0.004), err


@pytest.mark.parametrize(
    ("cats", "problem"),
    [
        (
            {"scale": [{"eta": [0, 2.5]}], "smear": SIGNED["scale"]},
            (
                "the smear categories cut on ScEta, which EGMSmearAndSyst (syst, pt, r9, AbsScEta) "
                "does not take; allowed cuts: eta, r9, et"
            ),
        ),
        (
            {"scale": [{"eta": [0, 2.5], "columns": {"chargeEle": [-2, 2]}}]},
            (
                "the scale categories cut on the input column(s) chargeEle, which are no input of "
                "the EGM signature; allowed category variables in a payload: run, eta (AbsScEta), "
                "sceta (ScEta), r9, et (pt), gain (seedGain)"
            ),
        ),
    ],
)
def test_pipeline_refuses_unwritable_categories_at_setup(tmp_path, demo_ecalelf, cats, problem):
    path = _yaml(tmp_path / "cats.yaml", cats)
    steps = [{"name": "step", "type": "fit", "categories": str(path)}]
    pipeline = write_pipeline(tmp_path, demo_ecalelf, steps=steps, mc_weights=[])
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(pipeline))
    assert str(err.value) == f"{pipeline}: step 'step': {path}: {problem}"
    assert not (tmp_path / "out" / "step").exists()  # nothing ran
