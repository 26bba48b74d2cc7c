"""Tests of the Z->ee demo-ntuple generator (zcalib.generate)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from zcalib.categories import CRACK, Category, build_scheme
from zcalib.exceptions import InvalidConfig, ZcalibError
from zcalib.generate import (
    DEFAULT_CATEGORIES_YAML,
    MASS_WINDOW,
    GenerateResult,
    default_categories,
    default_truth,
    generate,
)
from zcalib.outputs import file_run_id

N_DATA = 6000
N_MC = 6000
SEED = 7

ECALELF_BRANCHES = {
    "runNumber": (np.uint32, ()),
    "lumiBlock": (np.uint32, ()),
    "eventNumber": (np.uint64, ()),
    "R9Ele": (np.float32, (3,)),
    "etaEle": (np.float32, (3,)),
    "etaSCEle": (np.float32, (3,)),
    "phiEle": (np.float32, (3,)),
    "energy_ECAL_ele": (np.float32, (3,)),
    "invMass_ECAL_ele": (np.float32, ()),
    "gainSeedSC": (np.uint8, (3,)),
    "eleID": (np.uint32, (3,)),
    "chargeEle": (np.int32, (3,)),
}
ECALELF_MC_BRANCHES = {
    "mcGenWeight": (np.float32, ()),
    "nPU": (np.float32, ()),
    "energy_true_ele": (np.float32, (3,)),
}
NANO_ELECTRON = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "deltaEtaSC": np.float32,
    "r9": np.float32,
    "energyErr": np.float32,
    "seedGain": np.uint8,
    "cutBased": np.int32,
    "charge": np.int32,
    "pdgId": np.int32,
}


def _read(path: Path, tree: str) -> dict[str, Any]:
    with uproot.open(path) as f:
        return f[tree].arrays(library="np")


def _read_nano(path: Path) -> ak.Array:
    with uproot.open(path) as f:
        return f["Events"].arrays(library="ak")


@pytest.fixture(scope="module")
def ecalelf(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    out = tmp_path_factory.mktemp("ecalelf")
    return generate(out, n_data=N_DATA, n_mc=N_MC, seed=SEED, fmt="ecalelf")


@pytest.fixture(scope="module")
def nanoaod(tmp_path_factory: pytest.TempPathFactory) -> GenerateResult:
    out = tmp_path_factory.mktemp("nanoaod")
    return generate(out, n_data=N_DATA, n_mc=N_MC, seed=SEED, fmt="nanoaod")


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_arrays(ecalelf: GenerateResult, tmp_path: Path) -> None:
    again = generate(tmp_path, n_data=N_DATA, n_mc=N_MC, seed=SEED, fmt="ecalelf")
    for a, b in ((ecalelf.data, again.data), (ecalelf.mc, again.mc)):
        x, y = _read(a, "selected"), _read(b, "selected")
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype
            assert x[k].tobytes() == y[k].tobytes(), k
    assert json.loads(ecalelf.truth.read_text()) == json.loads(again.truth.read_text())
    assert (again.n_candidates_data, again.n_candidates_mc) == (
        ecalelf.n_candidates_data,
        ecalelf.n_candidates_mc,
    )


def test_different_seed_gives_different_events(ecalelf: GenerateResult, tmp_path: Path) -> None:
    other = generate(tmp_path, n_data=N_DATA, n_mc=N_MC, seed=SEED + 1, fmt="ecalelf")
    x, y = _read(ecalelf.data, "selected"), _read(other.data, "selected")
    assert not np.array_equal(x["energy_ECAL_ele"], y["energy_ECAL_ele"])
    assert not np.array_equal(x["runNumber"], y["runNumber"])


def test_data_and_mc_do_not_share_events(ecalelf: GenerateResult) -> None:
    d, m = _read(ecalelf.data, "selected"), _read(ecalelf.mc, "selected")
    assert len(np.intersect1d(d["etaEle"][:, 0], m["etaEle"][:, 0])) < 5  # float32 collisions


def test_smaller_sample_is_a_prefix(ecalelf: GenerateResult, tmp_path: Path) -> None:
    small = generate(tmp_path, n_data=1000, n_mc=500, seed=SEED, fmt="ecalelf")
    big, part = _read(ecalelf.data, "selected"), _read(small.data, "selected")
    for k in big:
        np.testing.assert_array_equal(part[k], big[k][:1000])


def test_event_ids_are_unique(ecalelf: GenerateResult) -> None:
    for path in (ecalelf.data, ecalelf.mc):
        a = _read(path, "selected")
        keys = np.stack([a["runNumber"], a["lumiBlock"], a["eventNumber"]], 1).astype(np.uint64)
        assert len(np.unique(keys, axis=0)) == len(keys)


# ------------------------------------------------------------------ file layout


def test_ecalelf_files_are_ttrees_with_expected_branches(ecalelf: GenerateResult) -> None:
    assert ecalelf.tree == "selected"
    for path, extra in ((ecalelf.data, {}), (ecalelf.mc, ECALELF_MC_BRANCHES)):
        with uproot.open(path) as f:
            tree = f["selected"]
            assert isinstance(tree, uproot.TTree)
            expected = {**ECALELF_BRANCHES, **extra}
            assert set(tree.keys()) == set(expected)
            assert tree.num_entries == (N_DATA if path == ecalelf.data else N_MC)
            arrays = tree.arrays(library="np")
        for name, (dtype, shape) in expected.items():
            assert arrays[name].dtype == np.dtype(dtype), name
            assert arrays[name].shape[1:] == shape, name
        # slot 2 holds defaults
        assert np.all(arrays["energy_ECAL_ele"][:, 2] == -999.0)
        assert np.all(arrays["eleID"][:, 2] == 0)
        assert np.all(arrays["gainSeedSC"][:, :2] <= 2)
    assert np.all(_read(ecalelf.mc, "selected")["runNumber"] == 1)


def test_nanoaod_files_are_ttrees_with_expected_branches(nanoaod: GenerateResult) -> None:
    assert nanoaod.tree == "Events"
    for path, is_mc in ((nanoaod.data, False), (nanoaod.mc, True)):
        with uproot.open(path) as f:
            tree = f["Events"]
            assert isinstance(tree, uproot.TTree)
            names = set(tree.keys())
            expected = {"run", "luminosityBlock", "event", "nElectron"}
            expected |= {f"Electron_{k}" for k in NANO_ELECTRON}
            if is_mc:
                expected |= {"genWeight", "Pileup_nTrueInt", "Pileup_nPU"}
            assert names == expected
            arrays = tree.arrays(library="ak")
        assert arrays["run"].type.content.primitive == "uint32"
        assert arrays["event"].type.content.primitive == "uint64"
        np.testing.assert_array_equal(
            ak.to_numpy(arrays["nElectron"]), ak.num(arrays["Electron_pt"])
        )
        assert ak.min(arrays["nElectron"]) >= 2
        for name, dtype in NANO_ELECTRON.items():
            flat = ak.to_numpy(ak.flatten(arrays[f"Electron_{name}"]))
            assert flat.dtype == np.dtype(dtype), name
        assert set(np.unique(ak.to_numpy(ak.flatten(arrays["Electron_seedGain"])))) <= {12, 6, 1}
        assert set(np.unique(ak.to_numpy(ak.flatten(arrays["Electron_cutBased"])))) <= set(range(5))
        if is_mc:
            assert arrays["genWeight"].type.content.primitive == "float32"
            assert arrays["Pileup_nPU"].type.content.primitive == "int32"


def test_truth_json_layout(ecalelf: GenerateResult) -> None:
    truth = json.loads(ecalelf.truth.read_text())
    # the run that wrote the sample, in each of its files (zcalib.outputs)
    assert truth["run_id"] == file_run_id(ecalelf.data) == file_run_id(ecalelf.mc)
    scheme = default_categories()
    scales, smears = default_truth(scheme)
    assert truth["schema_version"] == 1
    assert truth["seed"] == SEED
    assert (truth["n_data"], truth["n_mc"]) == (N_DATA, N_MC)
    assert truth["format"] == "ecalelf"
    assert truth["drift"] == 0.0
    assert truth["runs"] == [355000, 356000]
    assert truth["categories"] == scheme.to_yaml_dict()
    assert truth["categories"] == yaml.safe_load(DEFAULT_CATEGORIES_YAML)
    assert truth["scale"] == scales
    assert truth["smear"] == smears
    assert len(truth["scale"]) == len(truth["scale_labels"]) == 8
    assert len(truth["smear"]) == len(truth["smear_labels"]) == 8
    assert truth["mass_window"] == list(MASS_WINDOW)
    assert "E_corr = scale * E_raw" in truth["conventions"]
    assert all(0.99 <= s <= 1.01 for s in scales)
    assert all(0.005 <= s <= 0.025 for s in smears)


def test_default_scheme_matches_config_file() -> None:
    tsv = Path(__file__).resolve().parents[1] / "configs" / "cats_eta_r9.tsv"
    if not tsv.is_file():
        pytest.skip("configs/cats_eta_r9.tsv not present")
    from zcalib.categories import load_categories

    assert load_categories(tsv).to_yaml_dict() == default_categories().to_yaml_dict()


# ------------------------------------------------------------------ physics


def _accepted(a: dict[str, Any]) -> None:
    e = a["energy_ECAL_ele"][:, :2].astype(np.float64)
    for eta in (a["etaSCEle"][:, :2], a["etaEle"][:, :2]):
        abs_eta = np.abs(eta.astype(np.float64))
        assert np.all(abs_eta < 2.5)
        assert not np.any((abs_eta > CRACK[0]) & (abs_eta < CRACK[1]))
        et = e / np.cosh(abs_eta)
        assert np.all(et.max(axis=1) > 25.0)
        assert np.all(et.min(axis=1) > 20.0)
    pt = e / np.cosh(a["etaEle"][:, :2].astype(np.float64))
    assert np.all(pt[:, 0] >= pt[:, 1])  # leading first
    mass = a["invMass_ECAL_ele"]
    assert np.all((mass > MASS_WINDOW[0]) & (mass < MASS_WINDOW[1]))
    deta = a["etaEle"][:, 0].astype(np.float64) - a["etaEle"][:, 1]
    dphi = a["phiEle"][:, 0].astype(np.float64) - a["phiEle"][:, 1]
    m = np.sqrt(2 * pt[:, 0] * pt[:, 1] * (np.cosh(deta) - np.cos(dphi)))
    np.testing.assert_allclose(m, mass, rtol=1e-5)
    assert np.all(a["chargeEle"][:, 0] == -a["chargeEle"][:, 1])
    assert np.all(np.abs(a["chargeEle"][:, 0]) == 1)


def test_acceptance_holds_for_every_pair(ecalelf: GenerateResult) -> None:
    _accepted(_read(ecalelf.data, "selected"))
    _accepted(_read(ecalelf.mc, "selected"))


def test_distributions_are_realistic(ecalelf: GenerateResult) -> None:
    mc = _read(ecalelf.mc, "selected")
    mass = mc["invMass_ECAL_ele"]
    assert 90.0 < np.median(mass) < 91.5
    sc = np.abs(mc["etaSCEle"][:, :2])
    r9 = mc["R9Ele"][:, :2]
    barrel = sc < CRACK[0]
    f_eb, f_ee = (r9[barrel] > 0.96).mean(), (r9[~barrel] > 0.96).mean()
    assert 0.48 < f_eb < 0.65
    assert f_ee < f_eb
    ele_id = mc["eleID"][:, :2]
    tight = (ele_id & 0x10) == 0x10
    medium = (ele_id & 0x08) == 0x08
    assert np.all(medium[tight])  # tight implies medium
    assert 0.8 < tight.mean() < 0.95
    assert np.mean(mc["gainSeedSC"][:, :2] == 0) > 0.98
    w = mc["mcGenWeight"]
    assert w.sum() > 0.9 * len(w)
    assert 0 < np.mean(w < 0) < 0.05
    assert 23 < mc["nPU"].mean() < 27
    # the response: reco/true has a core of ~1 % and a low-side tail
    resp = mc["energy_ECAL_ele"][:, :2] / mc["energy_true_ele"][:, :2]
    assert abs(np.median(resp) - 1) < 0.005
    q16, q84 = np.percentile(resp, [16, 84])
    assert 0.005 < 0.5 * (q84 - q16) < 0.03
    assert np.mean(resp < 0.9) > np.mean(resp > 1.1)


def _diag_median_ratio(data: dict[str, Any], mc: dict[str, Any], cat_of: Any) -> dict[int, float]:
    out = {}
    cd, cm = cat_of(data), cat_of(mc)
    for k in np.unique(cd):
        sd = (cd[:, 0] == k) & (cd[:, 1] == k)
        sm = (cm[:, 0] == k) & (cm[:, 1] == k)
        md = np.median(data["invMass_ECAL_ele"][sd])
        mm = np.median(mc["invMass_ECAL_ele"][sm])
        out[int(k)] = float(md / mm)
    return out


def test_injected_scales_shift_data_masses_the_right_way(tmp_path: Path) -> None:
    # scale > 1 is a correction *up*: data were written low (E_raw = E / scale)
    scales = [1 / 0.98] * 2 + [0.98] * 2 + [1 / 0.98] * 2 + [0.98] * 2
    res = generate(
        tmp_path,
        n_data=20000,
        n_mc=20000,
        seed=11,
        truth_scales=scales,
        truth_smears=[0.0] * 8,
    )
    data, mc = _read(res.data, "selected"), _read(res.mc, "selected")

    def barrel(a: dict[str, Any]) -> Any:
        return (np.abs(a["etaSCEle"][:, :2]) > CRACK[0]).astype(int)

    ratio = _diag_median_ratio(data, mc, barrel)
    assert ratio[0] == pytest.approx(0.98, abs=0.003)  # EB-EB: data lower
    assert ratio[1] == pytest.approx(1 / 0.98, abs=0.006)  # EE-EE: data higher
    # MC truth: the MC response is unbiased around E_true, data miscalibration is not in MC
    resp = mc["energy_ECAL_ele"][:, :2] / mc["energy_true_ele"][:, :2]
    assert abs(np.median(resp) - 1) < 0.005


def test_injected_smearing_widens_data(tmp_path: Path) -> None:
    res = generate(
        tmp_path,
        n_data=15000,
        n_mc=15000,
        seed=12,
        truth_scales=[1.0] * 8,
        truth_smears=[0.03] * 8,
    )
    data, mc = _read(res.data, "selected"), _read(res.mc, "selected")

    def width(a: dict[str, Any]) -> float:
        q = np.percentile(a["invMass_ECAL_ele"], [25, 75])
        return float(q[1] - q[0])

    # pair width added ~ 0.5*sqrt(2)*3% of 91 GeV ~ 1.9 GeV (sigma), on top of BW + resolution
    assert width(data) > width(mc) + 0.5
    assert np.median(data["invMass_ECAL_ele"]) == pytest.approx(
        np.median(mc["invMass_ECAL_ele"]), rel=0.004
    )


def test_drift_is_a_slope_of_median_mass_vs_run(tmp_path: Path) -> None:
    drift = 0.05
    runs = (1000, 1999)
    res = generate(
        tmp_path,
        n_data=20000,
        n_mc=1000,
        seed=13,
        drift=drift,
        truth_scales=[1.0] * 8,
        truth_smears=[0.0] * 8,
        runs=runs,
    )
    data = _read(res.data, "selected")
    run = data["runNumber"].astype(np.float64)
    assert run.min() >= runs[0]
    assert run.max() <= runs[1]
    x = (run - 0.5 * (runs[0] + runs[1])) / (runs[1] - runs[0])
    edges = np.linspace(-0.5, 0.5, 5)
    centres, medians = [], []
    for lo, hi in itertools.pairwise(edges):
        sel = (x >= lo) & (x < hi)
        centres.append(x[sel].mean())
        medians.append(np.median(data["invMass_ECAL_ele"][sel]))
    slope, _ = np.polyfit(centres, np.array(medians) / np.median(medians), 1)
    assert slope == pytest.approx(drift, abs=0.01)
    truth = json.loads(res.truth.read_text())
    assert truth["drift"] == drift
    assert truth["runs"] == list(runs)


def test_same_events_in_both_formats(ecalelf: GenerateResult, nanoaod: GenerateResult) -> None:
    for e_path, n_path, is_mc in (
        (ecalelf.data, nanoaod.data, False),
        (ecalelf.mc, nanoaod.mc, True),
    ):
        e = _read(e_path, "selected")
        n = _read_nano(n_path)
        pt = ak.to_numpy(n["Electron_pt"][:, :2]).astype(np.float64)
        eta = ak.to_numpy(n["Electron_eta"][:, :2])
        energy = pt * np.cosh(eta.astype(np.float64))
        np.testing.assert_allclose(energy, e["energy_ECAL_ele"][:, :2], rtol=2e-7)
        np.testing.assert_array_equal(eta, e["etaEle"][:, :2])
        np.testing.assert_array_equal(ak.to_numpy(n["Electron_phi"][:, :2]), e["phiEle"][:, :2])
        np.testing.assert_array_equal(ak.to_numpy(n["Electron_r9"][:, :2]), e["R9Ele"][:, :2])
        sc = eta.astype(np.float64) + ak.to_numpy(n["Electron_deltaEtaSC"][:, :2])
        np.testing.assert_allclose(sc, e["etaSCEle"][:, :2], rtol=0, atol=2e-7)
        assert np.std(sc - eta) == pytest.approx(0.002, rel=0.1)
        gains = np.array([12, 6, 1])[e["gainSeedSC"][:, :2]]
        np.testing.assert_array_equal(ak.to_numpy(n["Electron_seedGain"][:, :2]), gains)
        cut = ak.to_numpy(n["Electron_cutBased"][:, :2])
        ids = e["eleID"][:, :2]
        np.testing.assert_array_equal(cut >= 3, (ids & 0x08) == 0x08)
        np.testing.assert_array_equal(cut >= 4, (ids & 0x10) == 0x10)
        np.testing.assert_array_equal(
            ak.to_numpy(n["Electron_charge"][:, :2]), e["chargeEle"][:, :2]
        )
        np.testing.assert_array_equal(ak.to_numpy(n["run"]), e["runNumber"])
        np.testing.assert_array_equal(ak.to_numpy(n["luminosityBlock"]), e["lumiBlock"])
        np.testing.assert_array_equal(ak.to_numpy(n["event"]), e["eventNumber"])
        if is_mc:
            np.testing.assert_array_equal(ak.to_numpy(n["genWeight"]), e["mcGenWeight"])
            np.testing.assert_array_equal(ak.to_numpy(n["Pileup_nTrueInt"]), e["nPU"])
    # the same histogram from either format
    e = _read(ecalelf.data, "selected")
    n = _read_nano(nanoaod.data)
    p = n["Electron_pt"][:, :2]
    eta = n["Electron_eta"][:, :2]
    dphi = n["Electron_phi"][:, 0] - n["Electron_phi"][:, 1]
    m = np.sqrt(2 * p[:, 0] * p[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(dphi)))
    bins = np.linspace(80, 100, 41)
    h_e = np.histogram(e["invMass_ECAL_ele"], bins)[0]
    h_n = np.histogram(ak.to_numpy(m), bins)[0]
    assert np.abs(h_e - h_n).sum() <= 2  # float32 rounding at bin edges only


def test_nanoaod_extra_electrons_cannot_form_a_pair(nanoaod: GenerateResult) -> None:
    n = _read_nano(nanoaod.mc)
    extra = n[ak.num(n["Electron_pt"]) > 2]
    assert len(extra) > 0.05 * len(n)
    pt = extra["Electron_pt"][:, 2:]
    sc_et = (
        pt
        * np.cosh(extra["Electron_eta"][:, 2:])
        / np.cosh(extra["Electron_eta"][:, 2:] + extra["Electron_deltaEtaSC"][:, 2:])
    )
    assert ak.max(pt) < 20.0
    assert ak.max(sc_et) < 20.0
    # collection sorted by pt like real NanoAOD
    sorted_pt = ak.sort(n["Electron_pt"], axis=1, ascending=False)
    assert ak.all(sorted_pt == n["Electron_pt"])


def test_custom_category_scheme(tmp_path: Path) -> None:
    scale = [
        Category(kind="scale", index=0, eta=(0.0, 1.4442)),
        Category(kind="scale", index=1, eta=(1.566, 2.5)),
    ]
    scheme = build_scheme(scale, [])
    res = generate(tmp_path, n_data=500, n_mc=500, categories=scheme, truth_scales=[1.01, 0.99])
    truth = json.loads(res.truth.read_text())
    assert truth["scale"] == [1.01, 0.99]
    assert len(truth["smear"]) == 1
    assert truth["categories"] == scheme.to_yaml_dict()


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_data": 0}, "n_data: must be a positive integer, got 0"),
        ({"n_mc": -5}, "n_mc: must be a positive integer, got -5"),
        ({"n_data": 1.5}, "n_data: must be a positive integer, got 1.5"),
        ({"n_mc": True}, "n_mc: must be a positive integer, got True"),
        ({"fmt": "root"}, "fmt: unknown format 'root'; allowed: 'ecalelf', 'nanoaod'"),
        ({"seed": -1}, "seed: must be a non-negative integer, got -1"),
        ({"drift": 0.7}, "drift: must be a finite number with |drift| < 0.5, got 0.7"),
        ({"drift": math.nan}, "drift: must be a finite number with |drift| < 0.5, got nan"),
        (
            {"runs": (5, 5)},
            "runs: must be two integers (run_min, run_max) with 1 <= run_min < run_max, got (5, 5)",
        ),
        (
            {"truth_scales": [1.0, 1.0, 1.0]},
            "truth_scales: expected 8 values (one per scale category), got 3",
        ),
        (
            {"truth_smears": [0.01] * 9},
            "truth_smears: expected 8 values (one per smear category), got 9",
        ),
        (
            {"truth_scales": [1.0, -1.0, *[1.0] * 6]},
            "truth_scales[1]: value -1.0 out of range; allowed: (0.5, 2]",
        ),
        (
            {"truth_smears": [0.01] * 7 + [0.5]},
            "truth_smears[7]: value 0.5 out of range; allowed: [0, 0.2]",
        ),
        (
            {"categories": "cats.tsv"},
            "categories: expected a CategoryScheme or None, got str",
        ),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    out = tmp_path / "out"
    args: dict[str, Any] = {"n_data": 10, "n_mc": 10, **kwargs}
    with pytest.raises(InvalidConfig) as info:
        generate(out, **args)
    assert str(info.value) == message
    assert isinstance(info.value, ZcalibError)
    assert not out.exists()  # validated before anything is written


def test_out_dir_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(InvalidConfig) as info:
        generate(target, n_data=10, n_mc=10)
    assert str(info.value) == f"out_dir: {target} exists and is not a directory"
