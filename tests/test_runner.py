"""``zcalib.runner``: run options, MC weights, the pre-flight of the inputs and the event loop,
called directly on small hand-made ECALELF files (real ROOT files written with uproot).

Elsewhere: executors and cluster runs (``tests/processors/test_zee.py``,
``tests/cluster/``), checkpoints and resume (``tests/cluster/test_fault_tolerance.py``), MC
weight signatures (``tests/io/test_input_defects.py``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.cluster.conftest import assert_same_histograms
from tests.conftest import ROOT
from tests.processors.ntuples import write_ecalelf
from zcalib.config import SelectionConfig, dataset_config_from_files
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.processors.zee import ZeeProcessor
from zcalib.runner import (
    EventLoop,
    RunOptions,
    build_histograms,
    checked_inputs,
    default_checkpoint_dir,
    load_weight,
    processor_hash,
)

PILEUP = ROOT / "corrections" / "pileup_demo.json"
#: 300 events in three runs (100 each)
N = 300


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    good = write_ecalelf(d / "good.root", n=N, runs=np.repeat([355100, 355101, 355102], 100))
    no_id = write_ecalelf(d / "no_id.root", n=10, drop=("eleID",))
    return good, no_id


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "spark"}, "unknown executor 'spark'; allowed: iterative, futures, dask"),
        ({"chunksize": 0}, "chunksize must be positive, got 0"),
        ({"workers": 0}, "workers must be >= 1, got 0"),
        ({"retries": -1}, "retries must be >= 0, got -1"),
        (
            {"resume": True},
            "resume needs a checkpoint_dir (--checkpoint-dir) holding the finished chunks",
        ),
        (
            {"scheduler": "tcp://127.0.0.1:8786", "recipe": "slurm.yaml"},
            "give either a scheduler address or a cluster recipe, not both",
        ),
    ],
)
def test_run_options_check(options, message):
    with pytest.raises(InvalidConfig) as err:
        RunOptions(**options).check()
    assert str(err.value) == message


def test_run_options_uses_dask():
    assert RunOptions().uses_dask  # the default executor
    assert not RunOptions(executor="iterative").uses_dask
    assert not RunOptions(executor="futures").uses_dask
    assert RunOptions(executor="iterative", scheduler="tcp://127.0.0.1:8786").uses_dask
    assert RunOptions(executor="futures", client=object()).uses_dask
    RunOptions(executor="futures", workers=2, chunksize=10).check()  # consistent: no error


def test_load_weight_errors(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(InvalidConfig) as err:
        load_weight("pileup", missing)
    assert str(err.value) == f"{missing}: MC weight payload 'pileup' not found"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InvalidConfig) as err:
        load_weight("pileup", broken)
    assert str(err.value).startswith(f"{broken}: not a valid correctionlib JSON (")
    with pytest.raises(InvalidConfig) as err:
        load_weight("pu", PILEUP)
    assert str(err.value) == f"{PILEUP}: no correction 'pu' (available: pileup)"
    spec = load_weight("pu", PILEUP, correction="pileup")
    assert (spec.name, spec.correction, spec.source) == ("pu", "pileup", str(PILEUP))


def test_checked_inputs_fail_or_skip_bad_files(files, caplog):
    good, no_id = files
    cfg = dataset_config_from_files(data=[str(good), str(no_id)])
    reason = f"{no_id}: tree 'selected' lacks branch(es) eleID needed by the format"
    with pytest.raises(InputError) as err:
        checked_inputs(cfg, skip_bad_files=False)
    assert str(err.value) == reason
    with caplog.at_level(logging.WARNING, logger="zcalib.runner"):
        pre, available = checked_inputs(cfg, skip_bad_files=True)
    assert [f.path for f in pre.files] == [str(good)]
    assert available == {"data": {}}  # no optional branch in these files
    assert caplog.messages == [f"skipping bad input file (skip_bad_files): {reason}"]
    only_bad = dataset_config_from_files(data=[str(no_id)])
    with pytest.raises(InputError) as err:
        checked_inputs(only_bad, skip_bad_files=True)
    assert str(err.value) == "no readable input files: all 1 failed the checks"


def test_checked_inputs_mc_weight_needs_its_branch(files):
    good, _ = files
    cfg = dataset_config_from_files(mc=[str(good)])
    with pytest.raises(InputError) as err:
        checked_inputs(cfg, skip_bad_files=False, weights=(load_weight("pileup", PILEUP),))
    assert str(err.value) == (
        f"dataset 'mc': MC weight 'pileup' ({PILEUP}) needs the 'npu' branch, which {good} lacks"
    )


def test_event_loop_set_up_checks(files):
    good, _ = files
    loop = EventLoop(dataset_config_from_files(data=[str(good)]))
    with pytest.raises(InvalidConfig) as err:
        loop.only("mc")
    assert str(err.value) == "the dataset description has no mc dataset; this step needs one"
    assert [d.name for d in loop.only("data").datasets] == ["data"]
    loose = loop.replace(selection=SelectionConfig(id_level="loose"))
    assert loop.selection.id_level == "medium"  # replace returned a copy
    with pytest.raises(InvalidConfig) as err:
        loose.check()
    assert str(err.value) == (
        "id_level 'loose' is not available in ECALELF eleID; allowed: none, medium, tight"
    )
    with pytest.raises(InvalidConfig, match=r"^chunksize must be positive, got -1$"):
        loop.replace(options=RunOptions(chunksize=-1)).check()


def test_event_loop_counts_every_event_once_whatever_the_chunking(files, scheme):
    """300 events in 4 chunks or 1: the same cutflow and histograms; every event read once."""
    good, _ = files
    cfg = dataset_config_from_files(data=[str(good)])
    small = RunOptions(executor="iterative", chunksize=70, progress=False)
    lr = EventLoop(cfg, options=small).run(ZeeProcessor, scheme=scheme)
    assert lr.run.metrics["entries"] == N
    assert len(lr.run.chunks) == len(lr.run.processed) == 4  # coffea balances 300/70 to 4x75
    cutflow = lr.run.out["cutflow"]["data"]
    assert cutflow["all"] == N
    assert cutflow["id"] == N  # eleID 0x18 passes medium
    assert 0 < cutflow["mass"] < N
    lr.raise_errors()  # no bad content: nothing raised
    a = build_histograms(cfg, scheme, options=small)
    b = build_histograms(cfg, scheme, options=RunOptions(executor="iterative", progress=False))
    assert a.cutflow["data"] == cutflow
    assert_same_histograms(a, b)


def test_processor_hash_changes_with_what_the_processor_fills(files, scheme):
    good, _ = files
    cfg = dataset_config_from_files(data=[str(good)])

    def proc(**kw):
        base = {
            "fmt": "ecalelf",
            "categories": scheme.to_yaml_dict(),
            "kinds": cfg.kinds(),
            "available": {"data": {}},
        }
        return ZeeProcessor(**{**base, **kw})

    ref = processor_hash(proc())
    assert processor_hash(proc()) == ref  # equal configuration: same chunks may be reused
    assert len(ref) == 32
    assert processor_hash(proc(smear_seed=1)) != ref
    assert processor_hash(proc(selection=SelectionConfig(min_et_lead=30))) != ref
    assert processor_hash(proc(categories={"scale": [{"eta": [0, 2.5]}]})) != ref


def test_default_checkpoint_dir():
    assert str(default_checkpoint_dir("out/h.npz")) == "out/h.checkpoints"
    assert str(default_checkpoint_dir("out/deriv")) == "out/deriv.checkpoints"
