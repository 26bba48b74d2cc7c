"""Run divide: greedy contiguous bins, lumi granularity, files, coverage of the data runs."""

from __future__ import annotations

import numpy as np
import pytest

from zcalib.chain._events import ChainLoop, data_run_keys
from zcalib.chain.run_divide import RunBin, RunBins, count_pairs, divide, load_run_bins, run_divide
from zcalib.config import dataset_config_from_files
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.processors.runs import LUMI_ALL, RunLumiCounts
from zcalib.runner import RunOptions

OPTS = RunOptions(executor="iterative", progress=False, chunksize=50_000)


def _counts(runs, lumis=None, selected=None):
    runs = np.asarray(runs)
    lumis = np.zeros(len(runs), int) if lumis is None else np.asarray(lumis)
    sel = np.ones(len(runs), bool) if selected is None else np.asarray(selected)
    return RunLumiCounts.from_events(runs, lumis, sel)


def test_counts_add_like_one_chunk():
    rng = np.random.default_rng(3)
    run, lumi = rng.integers(1, 20, 5000), rng.integers(1, 9, 5000)
    sel = rng.uniform(size=5000) < 0.6
    whole = RunLumiCounts.from_events(run, lumi, sel)
    parts = RunLumiCounts.from_events(
        run[:1234], lumi[:1234], sel[:1234]
    ) + RunLumiCounts.from_events(run[1234:], lumi[1234:], sel[1234:])
    for a, b in (
        (whole.keys, parts.keys),
        (whole.total, parts.total),
        (whole.selected, parts.selected),
    ):
        np.testing.assert_array_equal(a, b)


def test_divide_run_granularity():
    c = _counts([1] * 5 + [2] * 2 + [3] * 2 + [5] * 4 + [6])
    bins = divide(c, 4)
    assert [b.label() for b in bins.bins] == ["1-1", "2-4", "5-6"]
    assert [b.pairs for b in bins.bins] == [5, 4, 5]  # the short tail (run 6) is merged
    assert not bins.splits_runs


def test_divide_counts_only_selected_pairs_but_covers_every_run():
    c = _counts([1, 1, 2, 2, 3, 9], selected=[1, 1, 1, 1, 0, 0])
    bins = divide(c, 2)
    assert [b.label() for b in bins.bins] == ["1-1", "2-9"]


def test_divide_lumi_granularity_splits_runs_at_lumi_boundaries():
    runs = [7] * 10 + [8] * 3
    lumis = [*range(1, 11), 2, 2, 5]
    bins = divide(_counts(runs, lumis), 4, "lumi")
    assert [b.label() for b in bins.bins] == ["7:0-7:4", "7:5-7:8", "7:9-8:4294967295"]
    assert [b.pairs for b in bins.bins] == [4, 4, 5]
    assert bins.splits_runs
    # contiguous in (run, lumi): each bin starts right after the previous one
    for a, b in zip(bins.bins, bins.bins[1:], strict=False):
        assert b.start_key == a.stop_key + 1


def test_run_bins_validation():
    with pytest.raises(InvalidConfig, match=r"run bins 0 \(1-5\) and 1 \(5-9\) overlap"):
        RunBins((RunBin(1, 5), RunBin(5, 9)), source="x")
    with pytest.raises(InvalidConfig, match="min_events must be >= 1, got 0"):
        divide(_counts([1]), 0)


def test_files_round_trip(tmp_path):
    bins = RunBins(
        (
            RunBin(10, 12, pairs=7),
            RunBin(13, 13, 0, 40, pairs=3),
            RunBin(13, 20, 41, LUMI_ALL, pairs=9),
        ),
        granularity="lumi",
        min_events=3,
    )
    y, d = bins.write(tmp_path / "bins.yaml")
    assert d.name == "bins.dat"
    assert d.read_text().splitlines() == [
        "10\t12\t-1\t-1\t7",
        "13\t13\t0\t40\t3",
        f"13\t20\t41\t{LUMI_ALL}\t9",
    ]
    for path in (y, d):
        back = load_run_bins(path)
        assert back.bins == bins.bins
        assert back.granularity == "lumi"
    # pymin's two-column file
    p = tmp_path / "pymin.dat"
    p.write_text("355000\t355010\n355011\t355020\n")
    assert [b.label() for b in load_run_bins(p).bins] == ["355000-355010", "355011-355020"]


def test_run_divide_on_ntuples(demo_ecalelf, tmp_path):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    loop = ChainLoop(cfg, options=OPTS)
    counts = count_pairs(loop)
    assert counts.total.sum() == 20_000
    bins = run_divide(loop, min_events=2_000, out=tmp_path / "rb.yaml")
    assert all(b.pairs >= 2_000 for b in bins.bins)
    assert sum(b.pairs for b in bins.bins) == counts.selected.sum()
    bins.check_coverage(data_run_keys(loop.only("data")))
    lumi = run_divide(loop, min_events=2_000, granularity="lumi")
    assert lumi.splits_runs
    assert all(b.pairs >= 2_000 for b in lumi.bins)
    assert sum(b.pairs for b in lumi.bins) == counts.selected.sum()
    assert len(lumi) >= len(bins)


def test_run_bins_not_covering_a_data_run(demo_ecalelf, tmp_path, monkeypatch):
    """A one-line error naming the bins file, the run and the data file, before any event."""
    import zcalib.runner as runner
    from zcalib.chain.time_stability import time_stability

    def no_events(*a, **k):
        msg = "the event loop must not start"
        raise AssertionError(msg)

    monkeypatch.setattr(runner, "run_processor", no_events)
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    keys = data_run_keys(cfg)[str(demo_ecalelf.data)]
    runs = np.unique(keys >> 32)
    path = tmp_path / "bins.dat"
    path.write_text(f"{runs[0]}\t{runs[10]}\n{runs[11]}\t355500\n")
    first_missing = int(runs[runs > 355500][0])
    with pytest.raises(InputError) as err:
        time_stability(ChainLoop(cfg, options=OPTS), load_run_bins(path), tmp_path / "ts")
    assert str(err.value) == (
        f"{path}: data run {first_missing} in {demo_ecalelf.data} is outside every run bin "
        f"(bins cover {runs[0]}-355500, 2 bins); rerun run-divide on these data"
    )
