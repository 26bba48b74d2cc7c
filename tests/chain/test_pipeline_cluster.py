"""The pipeline starts one Dask cluster for all its event loops (not one per loop or step)."""

from __future__ import annotations

import logging

import pytest

from tests.chain.conftest import write_pipeline
from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline

STEPS = [
    {"name": "run_divide", "type": "run_divide", "min_events": 4000},
    {"name": "time_stability", "type": "time_stability", "needs": ["run_divide"]},
]


@pytest.mark.cluster
def test_one_local_cluster_for_every_event_loop(demo_ecalelf, tmp_path, caplog):
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=STEPS, run={"executor": "dask", "workers": 2}
    )
    caplog.set_level(logging.INFO, logger="zcalib")
    res = run_pipeline(load_pipeline(path))
    assert res.ran == ("run_divide", "time_stability")
    loops = [
        r
        for r in caplog.records
        if r.getMessage().startswith("Run") and " events in " in r.getMessage()
    ]
    started = [
        r for r in caplog.records if r.getMessage().startswith("local Dask cluster with 2 workers")
    ]
    # run division, the time-stability peaks before and after its correction
    assert [r.getMessage().split(":")[0] for r in loops] == [
        "RunCountProcessor",
        "RunMassProcessor",
        "RunMassProcessor",
    ]
    assert len(started) == 1
    # everything cached: no cluster at all
    caplog.clear()
    again = run_pipeline(load_pipeline(path))
    assert again.ran == ()
    assert not [r for r in caplog.records if "Dask cluster" in r.getMessage()]
