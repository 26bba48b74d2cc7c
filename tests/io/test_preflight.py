"""Bad input files are refused at set-up with one line naming file, tree/branch and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from tests.processors.ntuples import write_ecalelf
from zcalib.config import dataset_config_from_files
from zcalib.exceptions import InputError
from zcalib.io.preflight import check_inputs


def _check(path, fmt="ecalelf", treename=None):
    return check_inputs(dataset_config_from_files(data=[str(path)], fmt=fmt, treename=treename))


def test_good_file_reports_entries_and_optional_branches(tmp_path):
    p = write_ecalelf(tmp_path / "ok.root", n=300)
    (info,) = _check(p)
    assert (info.entries, info.treename, info.optional) == (300, "selected", ())


def test_missing_branch(tmp_path):
    p = write_ecalelf(tmp_path / "nobranch.root", drop=("R9Ele", "eleID"))
    with pytest.raises(InputError) as err:
        _check(p)
    assert str(err.value) == (
        f"{p}: tree 'selected' lacks branch(es) R9Ele, eleID needed by the format"
    )


def test_wrong_tree_name(tmp_path):
    p = write_ecalelf(tmp_path / "tree.root", tree="Events")
    with pytest.raises(InputError) as err:
        _check(p)
    assert str(err.value) == f"{p}: no tree 'selected' (trees in this file: Events)"


def test_not_a_root_file(tmp_path):
    p = tmp_path / "text.root"
    p.write_text("run,eta\n1,0.5\n")
    with pytest.raises(
        InputError,
        match=r"^.*text\.root: not a readable ROOT file \(.*\); "
        r"expected a ROOT file with tree 'selected'$",
    ):
        _check(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.root"
    p.touch()
    with pytest.raises(InputError) as err:
        _check(p)
    assert str(err.value) == (
        f"{p}: file is empty (0 bytes); expected a ROOT file with tree 'selected'"
    )


def test_tree_without_entries(tmp_path):
    p = write_ecalelf(tmp_path / "zero.root", n=0)
    with pytest.raises(InputError) as err:
        _check(p)
    assert str(err.value) == f"{p}: tree 'selected' has no entries"


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file(tmp_path, keep):
    good = write_ecalelf(tmp_path / "good.root", n=20_000)
    data = good.read_bytes()
    p = tmp_path / "truncated.root"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(
        InputError,
        match=r"truncated\.root: (not a readable ROOT file|file is "
        r"truncated or corrupt)",
    ):
        _check(p)


def test_rntuple_is_not_a_ttree(tmp_path):
    p = tmp_path / "rntuple.root"
    with uproot.recreate(p) as f:
        f["selected"] = {"runNumber": np.arange(3, dtype=np.uint32)}
    with pytest.raises(InputError, match=r"'selected' is a .*, not a TTree"):
        _check(p)


def test_nanoaod_format_on_ecalelf_file_names_trees(tmp_path):
    p = write_ecalelf(tmp_path / "e.root")
    with pytest.raises(InputError) as err:
        _check(p, fmt="nanoaod")
    assert str(err.value) == f"{p}: no tree 'Events' (trees in this file: selected)"
