"""Z pT x |y| weights: the payload, and MC reweighted to data next to the pile-up weight."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT
from zcalib.chain._events import ChainLoop, eta_scheme, run_loop
from zcalib.chain.zweights import (
    ZWeights,
    build_zweight_correction,
    derive_zweights,
    load_zweight_spec,
    write_zweights,
)
from zcalib.config import dataset_config_from_files
from zcalib.exceptions import InvalidConfig
from zcalib.processors.runs import ZKinProcessor
from zcalib.processors.zee import PAIR_INPUTS, WeightSpec
from zcalib.runner import RunOptions, build_histograms, load_weight

OPTS = RunOptions(executor="iterative", progress=False, chunksize=50_000)


def test_payload_bins_and_flow_clamp():
    w = np.array([[1.0, 1.5], [0.5, 2.0]])
    zw = ZWeights((0, 10, 20), (0, 1, 2.5), np.ones((2, 2)), np.ones((2, 2)), w)
    ev = build_zweight_correction(zw).to_evaluator()
    assert ev.evaluate(5.0, 0.5, "nominal") == 1.0
    assert ev.evaluate(5.0, 2.0, "nominal") == 1.5
    assert ev.evaluate(15.0, 0.5, "nominal") == 0.5
    assert ev.evaluate(500.0, 9.0, "nominal") == 2.0  # clamped to the last bins
    assert ev.evaluate(500.0, 9.0, "up") == 4.0
    assert ev.evaluate(500.0, 9.0, "down") == 1.0


def test_weight_spec_inputs():
    spec = WeightSpec(name="z", payload="{}", correction="z", inputs=("ptZ", "absYZ"))
    assert spec.input_names == ("ptZ", "absYZ")
    assert spec.branch_inputs == ()
    assert WeightSpec(name="pileup", payload="{}", correction="p").branch_inputs == ("npu",)
    assert set(spec.input_names) <= set(PAIR_INPUTS)


def test_bad_edges():
    loop = ChainLoop(dataset_config_from_files(data=[str(ROOT / "pyproject.toml")]))
    with pytest.raises(InvalidConfig, match=r"zweights: pt_edges must be >= 2 increasing"):
        derive_zweights(loop, pt_edges=(0, 10, 5))


def test_reweighted_mc_matches_data_and_pileup_still_applies(demo_ecalelf, tmp_path):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    pileup = load_weight("pileup", ROOT / "corrections" / "pileup_demo.json")
    loop = ChainLoop(cfg, options=OPTS, weights=(pileup,))
    edges = ((0, 5, 10, 20, 40, 250), (0, 0.5, 1.0, 1.5, 2.5))
    zw = derive_zweights(loop, name="zw", pt_edges=edges[0], y_edges=edges[1])
    paths = write_zweights(zw, tmp_path)
    spec = load_zweight_spec(paths["corrections"], "zw", weight_name="zpt")
    # refill with the weights applied: MC fractions equal the data fractions in every bin
    weighted = ChainLoop(cfg, options=OPTS, weights=(pileup, spec))
    out = run_loop(
        weighted,
        cfg,
        ZKinProcessor,
        eta_scheme(((0.0, 1.4442), (1.566, 1000.0)), "all"),
        pt_edges=edges[0],
        y_edges=edges[1],
    )
    h = out["hist"]
    data = h[{"dataset": "data"}].values()
    mc = h[{"dataset": "mc"}].values()
    np.testing.assert_allclose(mc / mc.sum(), data / data.sum(), rtol=1e-9, atol=1e-12)
    # the mass histograms get both weights' variations in the same pass
    from zcalib.generate import default_categories

    hset = build_histograms(cfg, default_categories(), options=OPTS, weights=(pileup, spec))
    assert {"pileup_up", "pileup_down", "zpt_up", "zpt_down"} <= set(hset.variations)
    _, nominal, _ = hset.region_arrays("mc", "nominal")
    _, up, _ = hset.region_arrays("mc", "zpt_up")
    _, down, _ = hset.region_arrays("mc", "zpt_down")
    assert not np.allclose(up, nominal)
    assert not np.allclose(down, nominal)
