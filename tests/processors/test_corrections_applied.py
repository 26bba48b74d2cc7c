"""Prior corrections applied in the processor: data scales, MC smearing keyed on event ids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.processors.ntuples import write_ecalelf
from zcalib.config import dataset_config_from_files
from zcalib.corrections import build_scale_correction, build_smear_correction, write_correction_set
from zcalib.corrections.steps import load_correction_steps
from zcalib.exceptions import InvalidConfig
from zcalib.runner import RunOptions, build_histograms


@pytest.fixture(scope="module")
def steps_file(tmp_path_factory, scheme, demo_ecalelf):
    truth = json.loads(demo_ecalelf.truth.read_text())
    out = tmp_path_factory.mktemp("corr") / "steps.json"
    n = len(scheme.scale)
    scale = build_scale_correction(
        "step_scale", scheme, truth["scale"], [1e-3] * n, description="test"
    )
    smear = build_smear_correction(
        "step_smear", scheme, truth["smear"], [2e-3] * n, description="test"
    )
    write_correction_set(out, [scale, smear], description="test steps")
    return out, truth


def _mean_mass(hs, kind, variation, region):
    regions, w, _ = hs.region_arrays(kind, variation)
    row = w[list(regions).index(region)]
    centers = hs.hist.axes["mass"].centers
    return float((row * centers).sum() / row.sum()), float(row.sum())


def test_data_scales_and_mc_smearing_in_one_pass(steps_file, demo_ecalelf, scheme):
    path, truth = steps_file
    steps = tuple(load_correction_steps(path))
    assert [(s.name, s.kind) for s in steps] == [("step_scale", "scale"), ("step_smear", "smear")]
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    hs = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        smear_seed=5,
        options=RunOptions(executor="iterative", progress=False),
    )
    assert sorted(hs.variations) == sorted(
        ["nominal", "uncorrected", "scale_up", "scale_down", "smear_up", "smear_down"]
    )
    # region (0, 0): both electrons in category 0, so every pair mass is multiplied by scale_0
    # (selection on corrected energies: the few pairs that migrate across the mass range edges
    # are negligible against 1e-4)
    m_corr, _ = _mean_mass(hs, "data", "nominal", 0)
    m_raw, _ = _mean_mass(hs, "data", "uncorrected", 0)
    assert m_corr / m_raw == pytest.approx(truth["scale"][0], abs=2e-4)
    m_up, _ = _mean_mass(hs, "data", "scale_up", 0)
    assert m_up / m_corr == pytest.approx(1 + 1e-3 / truth["scale"][0], abs=1e-4)

    # MC smearing widens the peak; smear_up more than nominal, smear_down less
    def width(var):
        regions, w, _ = hs.region_arrays("mc", var)
        row = w[list(regions).index(0)]
        c = hs.hist.axes["mass"].centers
        sel = (c > 80) & (c < 100)
        mean = (row[sel] * c[sel]).sum() / row[sel].sum()
        return np.sqrt((row[sel] * (c[sel] - mean) ** 2).sum() / row[sel].sum())

    assert width("smear_down") < width("nominal") < width("smear_up")
    assert width("uncorrected") < width("nominal")


@pytest.mark.cluster
def test_smearing_independent_of_chunking_and_executor(steps_file, demo_ecalelf, scheme):
    path, _ = steps_file
    steps = tuple(s for s in load_correction_steps(path) if s.kind == "smear")
    cfg = dataset_config_from_files(mc=[str(demo_ecalelf.mc)])
    ref = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        smear_seed=9,
        options=RunOptions(executor="iterative", chunksize=100_000, progress=False),
    )
    other = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        smear_seed=9,
        options=RunOptions(executor="futures", chunksize=3_000, workers=2, progress=False),
    )
    for var in ("nominal", "smear_up", "smear_down"):
        a = ref.region_arrays("mc", var)
        b = other.region_arrays("mc", var)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=0)
    # another seed gives different smearing
    third = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        smear_seed=10,
        options=RunOptions(executor="iterative", progress=False),
    )
    assert not np.array_equal(ref.region_arrays("mc")[1], third.region_arrays("mc")[1])


def test_inputs_without_event_numbers_key_on_file_and_entry(tmp_path, steps_file, scheme):
    path, _ = steps_file
    steps = tuple(s for s in load_correction_steps(path) if s.kind == "smear")
    mc = write_ecalelf(tmp_path / "noevt.root", n=6000)
    cfg = dataset_config_from_files(mc=[str(mc)])
    a = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        options=RunOptions(executor="iterative", chunksize=6000, progress=False),
    )
    b = build_histograms(
        cfg,
        scheme,
        corrections=steps,
        options=RunOptions(executor="iterative", chunksize=700, progress=False),
    )
    np.testing.assert_allclose(a.region_arrays("mc")[1], b.region_arrays("mc")[1], rtol=1e-12)


def test_correction_for_other_inputs_is_refused_before_reading(tmp_path):
    import correctionlib.schemav2 as cs

    corr = cs.Correction(
        name="egm_scale",
        version=1,
        output=cs.Variable(name="scale", type="real"),
        inputs=[cs.Variable(name="era", type="string"), cs.Variable(name="eta", type="real")],
        data=1.0,
    )
    p = tmp_path / "other.json"
    p.write_text(cs.CorrectionSet(schema_version=2, corrections=[corr]).model_dump_json())
    with pytest.raises(InvalidConfig) as err:
        load_correction_steps(p)
    assert str(err.value) == (
        f"{p}: correction 'egm_scale' needs inputs [era, eta]; zcalib provides run, lumi, "
        "AbsScEta, ScEta, r9, pt, seedGain, syst (is this a payload for another era/convention?)"
    )
