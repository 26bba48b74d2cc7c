"""`zcalib apply`: a payload applied to the real CMS NanoAOD file and to generated ECALELF
files, with only the payload; the same rows whatever the chunking and executor."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import correctionlib
import numpy as np
import pytest
import uproot

from tests.conftest import CONFIGS, shared_file
from tests.processors.ntuples import write_ecalelf
from zcalib.api import apply
from zcalib.categories import load_categories
from zcalib.cli import main
from zcalib.corrections import EgmNames
from zcalib.derive import write_step_payload
from zcalib.runner import RunOptions

ERA = "2022postEE"


def _payload(tmp: Path, particle: str = "Ele") -> Path:
    scheme = load_categories(CONFIGS / "cats_eta_r9.tsv")
    return write_step_payload(
        tmp / f"payload_{particle}.json",
        scheme,
        (np.linspace(0.98, 1.02, 8), np.linspace(1e-3, 4e-3, 8)),
        (np.linspace(0.005, 0.03, 8), np.full(8, 2e-3)),
        step="s",
        names=EgmNames(ERA, particle),
        seed=4,
        description="apply test",
    )


def _rows(res, ds):
    return res.read(ds)


def test_apply_on_the_real_nanoaod_file(tmp_path) -> None:
    nano = shared_file("cms_opendata_2015_ttbar_nanoaod.root")
    payload = _payload(tmp_path)
    res = apply(
        payload,
        tmp_path / "out",
        data=[nano],
        mc=[nano],
        options=RunOptions(executor="iterative", progress=False, chunksize=64),
    )
    ev = uproot.open(nano)["Events"].arrays(
        [
            "run",
            "event",
            "Electron_pt",
            "Electron_eta",
            "Electron_deltaEtaSC",
            "Electron_r9",
            "Electron_seedGain",
        ]
    )
    n_ele = int(ak.sum(ak.num(ev.Electron_pt)))
    assert n_ele > 0
    assert res.leptons == {"data": n_ele, "mc": n_ele}
    assert len(res.parts["data"]) > 1  # 200 events in chunks of about 64: one file each
    pt = ak.to_numpy(ak.flatten(ev.Electron_pt)).astype(float)
    sc_eta = ak.to_numpy(ak.flatten(ev.Electron_eta + ev.Electron_deltaEtaSC)).astype(float)
    r9 = ak.to_numpy(ak.flatten(ev.Electron_r9)).astype(float)
    gain = ak.to_numpy(ak.flatten(ev.Electron_seedGain)).astype(float)
    run = np.repeat(ak.to_numpy(ev.run), ak.num(ev.Electron_pt)).astype(float)
    event = np.repeat(ak.to_numpy(ev.event), ak.num(ev.Electron_pt)).astype(float)
    cset = correctionlib.CorrectionSet.from_file(str(payload))
    names = EgmNames(ERA)
    comp = cset.compound[names.compound]
    data = _rows(res, "data")
    np.testing.assert_array_equal(data.pt_raw, pt)
    for key, col in (("scale", "pt"), ("scale_up", "pt_scale_up"), ("scale_down", "pt_scale_down")):
        want = pt * comp.evaluate(key, run, sc_eta, r9, np.abs(sc_eta), pt, gain)
        np.testing.assert_array_equal(ak.to_numpy(data[col]), want)
    mc = _rows(res, "mc")
    z = cset[names.rng].evaluate("stdnormal", pt, r9, np.abs(sc_eta), event)
    sm = cset[names.smear]
    smear = sm.evaluate("smear", pt, r9, np.abs(sc_eta))
    np.testing.assert_array_equal(ak.to_numpy(mc.pt), pt * (1 + smear * z))
    up = sm.evaluate("smear_up", pt, r9, np.abs(sc_eta))
    np.testing.assert_array_equal(ak.to_numpy(mc.pt_smear_up), pt * (1 + up * z))
    escale = sm.evaluate("escale", pt, r9, np.abs(sc_eta))
    np.testing.assert_allclose(ak.to_numpy(mc.pt_scale_up), pt * (1 + smear * z) * (1 + escale))
    crack = (np.abs(sc_eta) > 1.4442) & (np.abs(sc_eta) < 1.566)
    assert crack.any()
    assert np.all(ak.to_numpy(mc.escale)[~crack] > 0)
    assert np.all(ak.to_numpy(mc.escale)[crack] == 0)  # neutral in the crack
    record = json.loads(res.manifest.read_text())
    assert record["corrections"] == [names.compound, names.smear, names.rng]
    assert not list((tmp_path / "out").glob(".staging*"))


def test_apply_photons_with_a_pho_payload(tmp_path) -> None:
    nano = shared_file("cms_opendata_2015_ttbar_nanoaod.root")
    payload = _payload(tmp_path, "Pho")
    res = apply(payload, tmp_path / "out", mc=[nano], collection="Pho")
    n_pho = int(ak.sum(uproot.open(nano)["Events"]["nPhoton"].array()))
    assert res.leptons == {"mc": n_pho}
    assert res.names.smear == f"EGMSmearAndSyst_PhoPTsplit_{ERA}"
    with pytest.raises(Exception, match="cannot tell the era of the Ele corrections"):
        apply(payload, tmp_path / "out2", mc=[nano], collection="Ele")


def test_apply_ecalelf_same_rows_whatever_chunks_and_executor(tmp_path, demo_ecalelf) -> None:
    payload = _payload(tmp_path)
    kw = {"data": [demo_ecalelf.data], "mc": [demo_ecalelf.mc], "input_format": "ecalelf"}
    a = apply(
        payload,
        tmp_path / "a",
        options=RunOptions(executor="iterative", progress=False, chunksize=7_000),
        **kw,
    )
    b = apply(
        payload,
        tmp_path / "b",
        options=RunOptions(executor="futures", workers=2, progress=False, chunksize=11_000),
        **kw,
    )
    assert len(a.parts["mc"]) != len(b.parts["mc"])
    for ds in ("data", "mc"):
        ra, rb = a.read(ds), b.read(ds)
        assert len(ra) == 2 * uproot.open(kw[ds][0])["selected"].num_entries
        for col in ra.fields:
            np.testing.assert_array_equal(ak.to_numpy(ra[col]), ak.to_numpy(rb[col]), col)
    data = a.read("data")
    # ECALELF: pt = E / cosh(eta_SC); the data scale of the 8 |eta| x R9 categories
    np.testing.assert_allclose(
        ak.to_numpy(data.pt_raw), ak.to_numpy(data.energy_raw / np.cosh(data.ScEta)), rtol=1e-12
    )
    assert 0.98 <= float(ak.min(data.scale[data.scale != 1])) <= float(ak.max(data.scale)) <= 1.02
    mc = a.read("mc")
    z = ak.to_numpy(mc.z)
    assert abs(z.mean()) < 0.02
    assert abs(z.std() - 1) < 0.02


def test_apply_bad_input_one_line_exit_1_no_output(tmp_path, capsys) -> None:
    payload = _payload(tmp_path)
    bad = write_ecalelf(tmp_path / "bad.root", n=50, drop=("R9Ele",))
    out = tmp_path / "out"
    rc = main(
        [
            "apply",
            str(payload),
            "--data",
            str(bad),
            "--input-format",
            "ecalelf",
            "--out",
            str(out),
            "--executor",
            "iterative",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err == (
        f"zcalib: error: {bad}: tree 'selected' has no branch 'R9Ele' (needed: runNumber, "
        "energy_ECAL_ele, etaEle, R9Ele, gainSeedSC)"
    )
    assert not out.exists() or not any(out.iterdir())
