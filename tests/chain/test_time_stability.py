"""Time stability: medians, the drift removal on an independent sample, the written step;
run bins splitting runs at a luminosity block (correction keyed on run and lumi)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.chain.conftest import write_pipeline
from tests.processors.ntuples import write_ecalelf
from zcalib.chain._events import ChainLoop, eta_scheme
from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline
from zcalib.chain.run_divide import run_divide
from zcalib.chain.time_stability import (
    fill_peaks,
    flatness_chi2,
    histogram_median,
    step_of,
    time_stability,
)
from zcalib.config import dataset_config_from_files
from zcalib.corrections import SCALE_INPUTS
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import MassBinning
from zcalib.outputs import current_run_id
from zcalib.processors.runs import assign_run_bins, pack_run_lumi
from zcalib.runner import RunOptions, build_histograms

OPTS = RunOptions(executor="iterative", progress=False, chunksize=200_000)


def test_histogram_median_and_error_match_toys():
    rng = np.random.default_rng(1)
    edges = np.linspace(60, 120, 1201)
    meds, errs = [], []
    for _ in range(200):
        x = rng.normal(91.0, 2.5, 2000)
        h, _ = np.histogram(x, edges)
        m, e, n = histogram_median(h.astype(float), h.astype(float), edges, (80, 100))
        meds.append(m)
        errs.append(e)
    assert np.mean(meds) == pytest.approx(91.0, abs=0.02)
    # the quoted error matches the spread of the toys within 15 %
    assert np.std(meds) == pytest.approx(np.mean(errs), rel=0.15)
    assert n == pytest.approx(np.sum((x > 80) & (x < 100)), abs=30)


def test_flatness_chi2():
    peaks = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 2.0]])
    errs = np.ones_like(peaks)
    chi = flatness_chi2(peaks, errs)
    assert chi["chi2"] == [0.0, pytest.approx(8 / 3)]
    assert chi["ndf"] == [2, 2]


@pytest.fixture(scope="module")
def derived(drift_sample, tmp_path_factory):
    cfg = dataset_config_from_files(data=[str(drift_sample.data)], mc=[str(drift_sample.mc)])
    loop = ChainLoop(cfg, options=OPTS)
    out = tmp_path_factory.mktemp("ts")
    bins = run_divide(loop, min_events=5_000, out=out / "run_bins.yaml")
    res, paths = time_stability(loop, bins, out, name="ts_scale")
    return bins, res, paths


def _flatness_on(sample, derived, label: str):
    """Peaks of an independent data sample per run bin before/after the derived step: the
    flatness χ² before, and after with the derivation's data median error added (the MC
    median error is common to all run bins and does not affect the flatness)."""
    bins, res, paths = derived
    loop_b = ChainLoop(dataset_config_from_files(data=[str(sample.data)]), options=OPTS)
    before = fill_peaks(loop_b, bins, res.eta_bins, res.window, with_mc=False)
    after = fill_peaks(
        loop_b.with_corrections((step_of(res, paths["corrections"]),)),
        bins,
        res.eta_bins,
        res.window,
        with_mc=False,
    )
    deriv_err = after.data * res.before.data_err / res.before.data
    chi_before = flatness_chi2(before.data, before.data_err)
    chi_after = flatness_chi2(after.data, np.hypot(after.data_err, deriv_err))
    ratio_b = chi_before["total_chi2"] / chi_before["total_ndf"]
    ratio_a = chi_after["total_chi2"] / chi_after["total_ndf"]
    print(
        f"\n{label}: chi2/ndf before {chi_before['total_chi2']:.1f}/"
        f"{chi_before['total_ndf']} = {ratio_b:.2f}, after {chi_after['total_chi2']:.1f}/"
        f"{chi_after['total_ndf']} = {ratio_a:.2f} (p = {chi_after['p_value']:.3f})"
    )
    return ratio_b, ratio_a, chi_after["p_value"]


def test_time_stability_removes_the_drift_on_independent_data(derived, drift_sample_b):
    """Scales derived on sample A applied to sample B (same drift, other events): the
    per-run-bin medians of B become flat: chi2/ndf consistent with 1 when the error is B's
    median error plus the derivation's data median error; before the correction chi2/ndf >> 1."""
    ratio_b, ratio_a, p_after = _flatness_on(drift_sample_b, derived, "independent sample")
    assert ratio_b > 4
    assert p_after > 0.001
    assert 0.5 < ratio_a < 1.5


def test_time_stability_files(derived):
    import json

    from zcalib.corrections import read_legacy, validate_file

    bins, res, paths = derived
    model = validate_file(paths["corrections"])
    (corr,) = model.corrections
    # the EGM scale signature; the tree reads run and AbsScEta only
    assert tuple(v.name for v in corr.inputs) == SCALE_INPUTS
    ev = corr.to_evaluator()

    def at(run: float, eta: float) -> float:
        return ev.evaluate("scale", float(run), eta, 0.9, eta, 40.0, 12.0)

    # every bin x |eta| cell gives back its scale (run bins inclusive at both ends)
    for r, b in enumerate(bins.bins):
        for e, (lo, hi) in enumerate(res.eta_bins):
            for run in (b.run_min, b.run_max):
                assert at(run, 0.5 * (lo + hi)) == pytest.approx(res.scales[r, e], rel=1e-12)
    assert at(bins.bins[0].run_min, 1.5) == 1.0  # the crack is neutral
    table = read_legacy(paths["scales"])
    assert len(table) == len(bins) * len(res.eta_bins)
    summary = json.loads(paths["summary"].read_text())
    assert summary["chi2"]["before"]["total_chi2"] > summary["chi2"]["after"]["total_chi2"]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------ run bins splitting runs (lumi)

#: Fine mass binning (~1e-5 relative): the per-pair corrected masses are resolved.
FINE = MassBinning(n_bins=60_000, lo=60.0, hi=120.0)


@pytest.fixture(scope="module")
def derived_lumi(drift_sample, tmp_path_factory):
    cfg = dataset_config_from_files(data=[str(drift_sample.data)], mc=[str(drift_sample.mc)])
    loop = ChainLoop(cfg, options=OPTS)
    out = tmp_path_factory.mktemp("ts_lumi")
    bins = run_divide(loop, min_events=5_000, granularity="lumi", out=out / "run_bins.yaml")
    res, paths = time_stability(loop, bins, out, name="ts_lumi_scale")
    return bins, res, paths


def _splits(bins):
    """``(k, run, last lumi of bin k)`` for every boundary inside a run (bins k and k+1)."""
    return [
        (k, a.run_max, a.lumi_max)
        for k, (a, b) in enumerate(zip(bins.bins, bins.bins[1:], strict=False))
        if a.run_max == b.run_min
    ]


def _owner(bins, run, lumi):
    """The run bin of each (run, lumi), as the peak filling assigns events."""
    starts = np.array([b.start_key for b in bins.bins], dtype=np.int64)
    stops = np.array([b.stop_key for b in bins.bins], dtype=np.int64)
    return assign_run_bins(pack_run_lumi(np.asarray(run), np.asarray(lumi)), starts, stops)


def test_lumi_split_correction_gives_the_scale_of_each_side(derived_lumi):
    import json

    from zcalib.corrections import evaluate_scale, validate_file

    bins, res, paths = derived_lumi
    assert bins.splits_runs
    splits = _splits(bins)
    print(f"\n{len(bins)} run bins, {len(splits)} boundaries inside a run")
    assert len(splits) >= len(bins) // 2
    model = validate_file(paths["corrections"])
    (corr,) = model.corrections
    # the EGM scale signature, then lumi (every numeric input real)
    assert [v.name for v in corr.inputs] == [*SCALE_INPUTS, "lumi"]
    assert {v.type for v in corr.inputs[1:]} == {"real"}
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("correction")), "validate", str(paths["corrections"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    # both sides of every split, the ends of the runs, and whole runs inside the bins
    run, lumi = [], []
    for _, r, last in splits:
        run += [r] * 6
        lumi += [0, 1, last, last + 1, last + 2, 1_000_000]
    for b in bins.bins:
        run += [b.run_min, b.run_max, (b.run_min + b.run_max) // 2]
        lumi += [b.lumi_min, b.lumi_max, 7]
    run_a, lumi_a = np.array(run), np.array(lumi)
    owner = _owner(bins, run_a, lumi_a)
    assert (owner >= 0).all()
    for e, (lo, hi) in enumerate(res.eta_bins):
        eta = np.full(len(run_a), 0.5 * (lo + hi))
        got = evaluate_scale(paths["corrections"], res.name, run=run_a, lumi=lumi_a, abs_sc_eta=eta)
        np.testing.assert_allclose(got, res.scales[owner, e], rtol=1e-12, atol=0)
        up = evaluate_scale(
            paths["corrections"], res.name, run=run_a, lumi=lumi_a, abs_sc_eta=eta, syst="scale_up"
        )
        np.testing.assert_allclose(up, (res.scales + res.errors)[owner, e], rtol=1e-12, atol=0)
    # explicitly: the last lumi of bin k and the first of bin k+1 take their own bin's scale
    for k, r, last in splits:
        got = evaluate_scale(
            paths["corrections"], res.name, run=[r, r], lumi=[last, last + 1], abs_sc_eta=[0.5, 0.5]
        )
        assert got[0] == pytest.approx(res.scales[k, 0], rel=1e-12)
        assert got[1] == pytest.approx(res.scales[k + 1, 0], rel=1e-12)
        assert got[0] != got[1]
    crack = evaluate_scale(paths["corrections"], res.name, run=[run[0]], lumi=[1], abs_sc_eta=[1.5])
    assert crack.tolist() == [1.0]
    # the table replacing the legacy file
    assert "scales" not in paths
    assert not (paths["corrections"].parent / "ts_lumi_scales.dat").exists()
    lines = paths["run_lumi_scales"].read_text().splitlines()
    assert paths["run_lumi_scales"].name == "ts_lumi_scales.tsv"
    assert lines[0] == "#run_min\tlumi_min\trun_max\tlumi_max\teta_min\teta_max\tscale\terr"
    assert lines[-1] == f"# zcalib run {current_run_id()}"  # the run that wrote it
    rows = [line.split("\t") for line in lines[1:-1]]
    assert len(rows) == len(bins) * len(res.eta_bins)
    for i, row in enumerate(rows):
        b, (lo, hi) = bins.bins[i // len(res.eta_bins)], res.eta_bins[i % len(res.eta_bins)]
        assert [int(x) for x in row[:4]] == [b.run_min, b.lumi_min, b.run_max, b.lumi_max]
        assert [float(x) for x in row[4:6]] == [lo, hi]
        assert float(row[6]) == res.scales.ravel()[i]
        assert float(row[7]) == res.errors.ravel()[i]
    with pytest.raises(InvalidConfig, match="splits a run at a luminosity block"):
        res.scheme_categories()
    summary = json.loads(paths["summary"].read_text())
    assert summary["run_bins"] == [b.label() for b in bins.bins]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lumi_split_time_stability_removes_the_drift_on_independent_data(
    derived_lumi, drift_sample_b
):
    """As for whole-run bins: the lumi-keyed scales of sample A flatten sample B's peaks."""
    ratio_b, ratio_a, p_after = _flatness_on(
        drift_sample_b, derived_lumi, "lumi-split bins, independent sample"
    )
    assert ratio_b > 4
    assert p_after > 0.001
    assert 0.5 < ratio_a < 1.5


def test_processor_applies_the_scale_of_each_run_and_lumi(derived_lumi, tmp_path):
    """Pairs in the split runs, at both sides of each split: the corrected mass histogram is
    that of E * scale(run, lumi, |eta|) per electron, not that of a run-only lookup."""
    import hist
    import uproot

    from zcalib.categories import scheme_from_dict
    from zcalib.corrections import evaluate_scale
    from zcalib.physics import pair_mass

    bins, res, paths = derived_lumi
    splits = _splits(bins)
    rng = np.random.default_rng(5)
    n = 4000
    pick = rng.integers(0, len(splits), n)
    side = rng.integers(0, 3, n)  # last lumi of bin k, first of bin k+1, anywhere in the run
    last = np.array([s[2] for s in splits])[pick]
    lumis = np.where(side == 0, last, np.where(side == 1, last + 1, rng.integers(1, 1201, n)))
    runs = np.array([s[1] for s in splits])[pick]
    path = write_ecalelf(tmp_path / "split_runs.root", n=n, runs=runs, lumis=lumis)
    cfg = dataset_config_from_files(data=[str(path)])
    scheme = scheme_from_dict({"scale": [{"eta": [0, 2.5]}]}, source="all |eta|")
    hs = build_histograms(
        cfg,
        scheme,
        corrections=(step_of(res, paths["corrections"]),),
        binning=FINE,
        options=OPTS,
    )
    nominal = hs.region_arrays("data", "nominal")[1].sum(axis=0)

    with uproot.open(path) as fh:
        arr = fh["selected"].arrays(library="np")
    energy = arr["energy_ECAL_ele"][:, :2].astype(np.float64)
    eta = arr["etaEle"][:, :2].astype(np.float64)
    phi = arr["phiEle"][:, :2].astype(np.float64)
    run2 = np.repeat(arr["runNumber"].astype(np.int64), 2)
    lumi2 = np.repeat(arr["lumiBlock"].astype(np.int64), 2)

    def corrected_hist(lumi):
        s = evaluate_scale(
            paths["corrections"], res.name, run=run2, lumi=lumi, abs_sc_eta=np.abs(eta).ravel()
        ).reshape(n, 2)
        e = energy * s
        h = hist.Hist(FINE.axis())
        h.fill(pair_mass(e[:, 0], eta[:, 0], phi[:, 0], e[:, 1], eta[:, 1], phi[:, 1]))
        return s, h.values()

    scale, expected = corrected_hist(lumi2)
    # the per-electron scale is the derived scale of the event's (run, lumi) bin
    owner = np.repeat(_owner(bins, arr["runNumber"], arr["lumiBlock"]), 2)
    eta_bin = np.searchsorted([b[1] for b in res.eta_bins], np.abs(eta).ravel(), side="right")
    np.testing.assert_allclose(scale.ravel(), res.scales[owner, eta_bin], rtol=1e-12, atol=0)
    # the processor filled exactly the masses with those scales applied
    assert nominal.sum() == expected.sum() > 0.8 * n  # the rest is above 120 GeV
    np.testing.assert_array_equal(nominal, expected)
    # a run-only lookup (every event at the first lumi of its run) gives other masses
    run_only_scale, run_only = corrected_hist(np.zeros_like(lumi2))
    moved = (scale != run_only_scale).any(axis=1)
    print(
        f"\n{n} pairs in {len(splits)} split runs: {int(moved.sum())} get another scale than "
        f"a run-only lookup; {int(np.abs(nominal - run_only).sum())} histogram entries differ"
    )
    other_bin = _owner(bins, runs, lumis) != _owner(bins, runs, np.zeros(n, np.int64))
    np.testing.assert_array_equal(moved, other_bin)
    assert moved[side == 1].all()  # the first lumi after a split belongs to the next bin
    assert np.abs(nominal - run_only).sum() > 0.3 * n


def test_lumi_keyed_step_on_input_without_lumis(derived_lumi, tmp_path):
    """Never evaluated at lumi 0: refused before any event (set-up checks of the one event
    loop, for histograms and validation plots alike), and when deriving on such data."""
    from zcalib.chain.time_stability import time_stability as derive
    from zcalib.validation.plots import fill_validation_histograms

    bins, res, paths = derived_lumi
    path = write_ecalelf(tmp_path / "no_lumi.root", n=500, runs=np.full(500, bins.bins[1].run_min))
    cfg = dataset_config_from_files(data=[str(path)])
    step = step_of(res, paths["corrections"])
    problem = (
        f"correction 'ts_lumi_scale' ({paths['corrections']}) needs the luminosity block "
        "(input 'lumi'), but the file has no 'lumiBlock' branch; it cannot be applied to "
        "these events"
    )
    scheme = eta_scheme(res.eta_bins, "ts |eta|")
    with pytest.raises(InputError) as err:
        build_histograms(cfg, scheme, corrections=(step,), options=OPTS)
    assert str(err.value) == f"{path} (dataset 'data'): {problem}"
    with pytest.raises(InputError) as err:
        fill_validation_histograms(cfg, (), corrections=(step,), options=OPTS)
    assert str(err.value) == f"{path} (dataset 'data'): {problem}"
    first = next(b for b in bins.bins if not b.whole_runs)
    with pytest.raises(InputError) as err:
        derive(ChainLoop(cfg, options=OPTS), bins, tmp_path / "ts")
    assert str(err.value) == (
        f"{bins.source}: run bin {first.label()} splits a run at a luminosity block, but data "
        f"file {path} has no luminosity blocks (it has no 'lumiBlock' branch); use run bins "
        "of whole runs (run-divide granularity 'run')"
    )


def test_pipeline_with_lumi_split_run_bins(demo_ecalelf, tmp_path):
    """run_divide (granularity lumi) -> time_stability in a pipeline; cached on rerun."""
    from zcalib.corrections import validate_file

    path = write_pipeline(
        tmp_path,
        demo_ecalelf,
        steps=[
            {"name": "rd", "type": "run_divide", "granularity": "lumi", "min_events": 2_000},
            {"name": "ts", "type": "time_stability", "needs": ["rd"]},
        ],
    )
    res = run_pipeline(load_pipeline(path))
    assert res.ran == ("rd", "ts")
    assert res.steps["rd"].run_bins.splits_runs
    assert res.steps["ts"].summary["splits_runs"] is True
    assert set(res.final) == {"corrections", "summary"}  # no legacy scales.dat
    model = validate_file(res.final["corrections"])
    egm = list(SCALE_INPUTS)
    assert model.corrections[0].name == "EGMScale_ts_2022preEE"
    assert [v.name for v in model.corrections[0].inputs] == [*egm, "lumi"]
    # the EGM signature, then lumi: the one input beyond it (run bins splitting runs)
    assert [v.name for v in model.compound_corrections[0].inputs] == [*egm, "lumi"]
    unc = next(c for c in model.corrections if c.name == "EGMScaleUnc_Ele_2022preEE")
    assert [v.name for v in unc.inputs] == [*egm, "lumi"]
    assert (res.output / "ts" / "ts_scales.tsv").is_file()
    again = run_pipeline(load_pipeline(path))
    assert again.skipped == ("rd", "ts")
    assert again.steps["ts"].summary == res.steps["ts"].summary


# ------------------------------------------------------------ signed η (EE− and EE+ apart)

#: EE−, EB, EE+ in signed η_SC, and the scales injected there.
SIGNED = ((-2.5, -1.566), (-1.4442, 1.4442), (1.566, 2.5))
SIGNED_TRUTH = (0.99, 1.0, 1.01)


def test_signed_eta_bins_recover_an_ee_asymmetry(tmp_path):
    """Time stability in signed-η bins (an edge below 0): EE− and EE+ get their own scales
    (injected 0.99 and 1.01, with a 1 % drift), and the step reads ``ScEta``, so the payload
    gives each side its own value; the legacy file, the summary and the plot follow."""
    import json

    from zcalib.categories import scheme_from_dict
    from zcalib.corrections import read_legacy, validate_file
    from zcalib.generate import generate

    cats = [{"sceta": list(b)} for b in SIGNED]
    scheme = scheme_from_dict({"scale": cats, "smear": cats})
    sample = generate(tmp_path / "gen", n_data=30_000, n_mc=20_000, seed=5, drift=0.01,
                      categories=scheme, truth_scales=list(SIGNED_TRUTH),
                      truth_smears=[0.02, 0.01, 0.02])  # fmt: skip
    cfg = dataset_config_from_files(data=[str(sample.data)], mc=[str(sample.mc)])
    loop = ChainLoop(cfg, options=OPTS)
    bins = run_divide(loop, min_events=8_000, out=tmp_path / "run_bins.yaml")
    res, paths = time_stability(
        loop, bins, tmp_path / "ts", eta_bins=SIGNED, name="ts_signed", validate=False
    )
    truth = json.loads(sample.truth.read_text())
    mid = np.array([0.5 * (b.run_min + b.run_max) for b in bins.bins])
    drift = 1 + truth["drift"] * (mid - truth["run_mid"]) / (truth["runs"][1] - truth["runs"][0])
    # scale x drift is the injected scale in every run bin (the median of a smeared peak
    # moves by a few 1e-4); EE+ / EE- = 1.01 / 0.99 whatever the run bin
    undrifted = res.scales * drift[:, None]
    err = res.errors * drift[:, None]
    for e, want in enumerate(SIGNED_TRUTH):
        pulls = (undrifted[:, e] - want) / np.hypot(err[:, e], 1e-3)
        print(f"eta {SIGNED[e]}: scale x drift {np.round(undrifted[:, e], 4)}, pulls {pulls}")
        assert np.all(np.abs(pulls) < 3), (SIGNED[e], pulls)
    ratio = np.average(undrifted[:, 2] / undrifted[:, 0], weights=1 / err[:, 2] ** 2)
    assert ratio == pytest.approx(1.01 / 0.99, abs=0.004)
    (corr,) = validate_file(paths["corrections"]).corrections
    assert tuple(v.name for v in corr.inputs) == SCALE_INPUTS
    ev = corr.to_evaluator()
    run = float(bins.bins[0].run_min)
    at = {eta: ev.evaluate("scale", run, eta, 0.9, abs(eta), 40.0, 12.0) for eta in (-2.0, 2.0)}
    assert at[-2.0] == pytest.approx(res.scales[0, 0], rel=1e-12)
    assert at[2.0] == pytest.approx(res.scales[0, 2], rel=1e-12)
    assert at[2.0] / at[-2.0] > 1.01
    table = read_legacy(paths["scales"])
    assert len(table) == 3 * len(bins)
    assert "eta_SC bin" in corr.description
    assert "|eta_SC|" not in corr.description
    summary = json.loads(paths["summary"].read_text())
    assert summary["eta_bins"] == [list(b) for b in SIGNED]
    assert summary["chi2"]["before"]["total_ndf"] == 3 * (len(bins) - 1)
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
