"""Pair-count storage: the same sums as a hist fill, populated regions only, save/load."""

from __future__ import annotations

import json

import hist
import numpy as np
import pytest

from zcalib.categories import scheme_from_dict
from zcalib.exceptions import InputError
from zcalib.histograms import (
    HistogramSet,
    MassBinning,
    PairCounts,
    empty_hist,
    load_histograms,
    save_histograms,
)

MB = MassBinning(n_bins=120, lo=60.0, hi=120.0)


def _entries(seed: int, n: int, n_regions: int):
    rng = np.random.default_rng(seed)
    region = rng.integers(0, n_regions, n)
    mass = rng.uniform(55.0, 125.0, n)  # some outside the binning (flow)
    mass[::97] = np.nan
    weight = rng.uniform(0.5, 1.5, n)
    return region, mass, weight


def test_pair_counts_equal_a_hist_fill_chunk_by_chunk():
    """Σw and Σw² per (region, bin) bitwise equal to hist's Weight storage, filled and
    added chunk by chunk (the order coffea accumulates in)."""
    h = empty_hist(MB)
    total = PairCounts(MB)
    for seed in range(4):
        region, mass, weight = _entries(seed, 5_000, 40)
        h_chunk = empty_hist(MB)
        h_chunk.fill(dataset="mc", variation="nominal", region=region, mass=mass, weight=weight)
        h_chunk.fill(dataset="data", variation="nominal", region=region, mass=mass)
        h = h + h_chunk
        c = PairCounts(MB)
        c.fill_weights("mc", region, mass, {"nominal": weight})
        c.fill("data", "nominal", region, mass)
        total += c
    ref = HistogramSet(hist=h, categories={}, kinds={"mc": "mc", "data": "data"})
    new = HistogramSet(counts=total, categories={}, kinds={"mc": "mc", "data": "data"})
    for kind in ("mc", "data"):
        ra, wa, w2a = ref.region_arrays(kind)
        rb, wb, w2b = new.region_arrays(kind)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(w2a, w2b)


def test_fill_sums_the_same_whether_keys_span_a_small_or_a_large_range():
    """A chunk whose filled keys span a small range is binned by key offset, one spanning a
    large range (a few hundred thousand regions) by sorting: the same entries give the same
    Σw and Σw², bit for bit."""
    region, mass, weight = _entries(7, 20_000, 40)
    few, many = PairCounts(MB), PairCounts(MB)
    few.fill_weights("mc", region, mass, {"nominal": weight, "unit": None})
    many.fill_weights("mc", region * 7_919, mass, {"nominal": weight, "unit": None})
    for variation in ("nominal", "unit"):
        a, b = few.blocks[("mc", variation)], many.blocks[("mc", variation)]
        reg_a, bin_a = np.divmod(a.keys, MB.n_bins)
        reg_b, bin_b = np.divmod(b.keys, MB.n_bins)
        np.testing.assert_array_equal(reg_a * 7_919, reg_b)
        np.testing.assert_array_equal(bin_a, bin_b)
        np.testing.assert_array_equal(a.sumw, b.sumw)
        np.testing.assert_array_equal(a.sumw2, b.sumw2)
    assert (
        few.blocks[("mc", "unit")].sumw.sum()
        == np.isfinite(mass).sum() - ((mass < MB.lo) | (mass >= MB.hi)).sum()
    )


def test_storage_grows_with_populated_regions_only():
    """Regression (issue 12): a growing region axis and dense dataset x variation x region x
    mass storage made memory and fill cost grow with the category count; only filled bins are
    stored now."""
    scheme = scheme_from_dict(
        {"scale": [{"eta": [0.1 * i, 0.1 * (i + 1)]} for i in range(14)]}, source="fine"
    )
    c = PairCounts(MB)
    region = np.array([3, 3, 17, 17, 17, 105], dtype=np.int64)
    c.fill("data", "nominal", region, np.full(6, 91.0))
    assert scheme.n_regions == 105
    assert [int(r) for r in c.regions()] == [3, 17, 105]
    assert len(c.blocks[("data", "nominal")].keys) == 3
    assert c.nbytes() == 3 * 24


def test_add_does_not_change_operands():
    a, b = PairCounts(MB), PairCounts(MB)
    a.fill("d", "nominal", np.array([1, 2]), np.array([90.0, 91.0]))
    b.fill("d", "nominal", np.array([2, 3]), np.array([91.0, 92.0]))
    before = a.blocks[("d", "nominal")].sumw.copy()
    s = a + b
    np.testing.assert_array_equal(a.blocks[("d", "nominal")].sumw, before)
    assert s.blocks[("d", "nominal")].sumw.tolist() == [1.0, 2.0, 1.0]
    with pytest.raises(InputError, match="mass binnings"):
        a + PairCounts(MassBinning(n_bins=10))


def test_save_load_round_trip_and_dense_view(tmp_path):
    c = PairCounts(MB)
    region, mass, weight = _entries(1, 2_000, 30)
    c.fill_weights("mc", region, mass, {"nominal": weight, "pileup_up": 2 * weight})
    c.fill("data", "nominal", region, mass)
    hs = HistogramSet(
        counts=c, categories={"scale": []}, kinds={"mc": "mc", "data": "data"}, cutflow={}
    )
    back = load_histograms(save_histograms(hs, tmp_path / "h.npz"))
    assert back.variations == ["nominal", "pileup_up"]
    assert set(back.counts.blocks) == set(c.blocks)
    for kind in ("mc", "data"):
        for a, b in zip(hs.region_arrays(kind), back.region_arrays(kind), strict=True):
            np.testing.assert_array_equal(a, b)
    dense = back.hist  # the hist view of the same numbers
    assert isinstance(dense, hist.Hist)
    assert dense.values().sum() == pytest.approx(
        sum(b.sumw.sum() for b in c.blocks.values()), rel=1e-12
    )


def test_load_format_version_1(tmp_path):
    """Dense files written before the sparse storage still load, with the same sums."""
    region, mass, weight = _entries(2, 1_000, 10)
    h = empty_hist(MB)
    h.fill(dataset="mc", variation="nominal", region=region, mass=mass, weight=weight)
    view = h.view(flow=False)
    header = {
        "format": "zcalib-histograms",
        "format_version": 1,
        "datasets": ["mc"],
        "variations": ["nominal"],
        "regions": [int(r) for r in h.axes["region"]],
        "mass": {"n_bins": MB.n_bins, "lo": MB.lo, "hi": MB.hi},
        "categories": {},
        "kinds": {"mc": "mc"},
        "cutflow": {},
        "metadata": {},
    }
    p = tmp_path / "v1.npz"
    np.savez_compressed(
        p,
        header=np.frombuffer(json.dumps(header).encode(), np.uint8),
        sumw=view["value"],
        sumw2=view["variance"],
    )
    hs = load_histograms(p)
    ref = HistogramSet(hist=h, categories={}, kinds={"mc": "mc"})
    for a, b in zip(ref.region_arrays("mc"), hs.region_arrays("mc"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_unsorted_keys(tmp_path):
    c = PairCounts(MB)
    c.fill("d", "nominal", np.array([1, 2]), np.array([90.0, 91.0]))
    p = save_histograms(HistogramSet(counts=c, kinds={"d": "data"}), tmp_path / "h.npz")
    with np.load(p) as npz:
        arrays = dict(npz)
    arrays["keys_0"] = arrays["keys_0"][::-1].copy()
    np.savez_compressed(p, **arrays)
    with pytest.raises(InputError, match=r"h\.npz: histogram block 0 \(d, nominal\) has unsorted"):
        load_histograms(p)
