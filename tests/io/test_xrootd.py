"""Remote inputs: the same files read through a real XRootD server and from disk give
identical histograms, with URLs kept verbatim in dataset YAMLs and on the command line."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cluster.conftest import assert_same_histograms
from tests.conftest import CONFIGS
from zcalib.cli import main
from zcalib.config import dataset_config_from_files, load_dataset_config
from zcalib.exceptions import InputError
from zcalib.histograms import load_histograms
from zcalib.io.fingerprint import file_fingerprint
from zcalib.io.preflight import check_inputs
from zcalib.runner import RunOptions, build_histograms


@pytest.fixture(scope="module")
def served(xrootd_server, tmp_path_factory):
    """Demo ECALELF data and MC on disk, and the same files on the XRootD server."""
    from zcalib.generate import generate

    local = generate(
        tmp_path_factory.mktemp("xrd_local"), n_data=3000, n_mc=6000, seed=11, fmt="ecalelf"
    )
    urls = {
        "data": xrootd_server.put(local.data, "zee/data.root"),
        "mc": xrootd_server.put(local.mc, "zee/mc.root"),
    }
    return local, urls


def test_xrootd_histograms_identical_to_local_files(served, scheme):
    local, urls = served
    opts = RunOptions(executor="iterative", progress=False, chunksize=2000)
    on_disk = build_histograms(
        dataset_config_from_files(data=[str(local.data)], mc=[str(local.mc)]), scheme, options=opts
    )
    remote_cfg = dataset_config_from_files(data=[urls["data"]], mc=[urls["mc"]])
    infos = check_inputs(remote_cfg)
    assert [(i.path, i.entries) for i in infos] == [(urls["data"], 3000), (urls["mc"], 6000)]
    remote = build_histograms(remote_cfg, scheme, options=opts)
    assert on_disk.cutflow["data"]["mass"] > 2000
    assert_same_histograms(remote, on_disk)


def test_root_urls_in_dataset_yaml_kept_verbatim(served, tmp_path, monkeypatch, capsys):
    """Regression: root://host//path in a dataset YAML was joined onto the YAML's folder
    (root:/host/path ... not found). Workers (futures executor, 2 processes) read the URLs."""
    local, urls = served
    ds = tmp_path / "cfg" / "datasets.yaml"
    ds.parent.mkdir()
    ds.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"name": "data", "kind": "data", "files": [urls["data"]]},
                    {"name": "mc", "kind": "mc", "files": [urls["mc"]]},
                ]
            }
        )
    )
    cfg = load_dataset_config(ds)
    assert [d.files for d in cfg.datasets] == [(urls["data"],), (urls["mc"],)]
    monkeypatch.chdir(tmp_path)
    cats = str(CONFIGS / "cats_eta_r9.tsv")
    common = ["--categories", cats, "--no-progress", "--chunksize", "2000"]
    assert (
        main(
            [
                "histograms",
                "--datasets",
                str(ds),
                "--out",
                "remote.npz",
                "--executor",
                "futures",
                "--workers",
                "2",
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "histograms",
                "--data",
                str(local.data),
                "--mc",
                str(local.mc),
                "--out",
                "local.npz",
                "--executor",
                "iterative",
                *common,
            ]
        )
        == 0
    )
    assert_same_histograms(load_histograms("remote.npz"), load_histograms("local.npz"))
    meta = json.loads((tmp_path / "remote.metrics.json").read_text())
    assert (meta["events"], meta["executor"], meta["bytes_read"] > 0) == (9000, "futures", True)
    capsys.readouterr()


def test_missing_remote_file_fails_preflight_naming_the_url(xrootd_server):
    url = xrootd_server.url("zee/absent.root")
    with pytest.raises(InputError) as err:
        check_inputs(dataset_config_from_files(data=[url]))
    msg = str(err.value)
    assert msg.startswith(f"{url}: cannot open remote file (")
    assert msg.endswith("expected a ROOT file with tree 'selected'")
    assert "\n" not in msg


def test_remote_fingerprint_follows_the_served_content(served, xrootd_server):
    _, urls = served
    before = file_fingerprint(urls["data"])
    assert before == file_fingerprint(urls["data"])
    path = xrootd_server.root / "zee" / "data.root"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    copy = xrootd_server.root / "zee" / "data2.root"
    copy.write_bytes(bytes(content))
    copy.chmod(0o644)
    assert file_fingerprint(xrootd_server.url("zee/data2.root")) != before
