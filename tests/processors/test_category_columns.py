"""Per-lepton input columns as category axes: read only when a scheme cuts on them, the same
electrons in every format, checked at pre-flight, refused by the EGM payload writer."""

from __future__ import annotations

import numpy as np
import pytest

from zcalib.categories import scheme_from_dict
from zcalib.config import dataset_config_from_files
from zcalib.corrections import build_scale_correction
from zcalib.exceptions import InputError, InvalidConfig, OutputError
from zcalib.runner import RunOptions, build_histograms


def _charge_scheme(column: str):
    return scheme_from_dict(
        {
            "scale": [
                {"eta": [0, 2.5], "columns": {column: [-2, 0]}},
                {"eta": [0, 2.5], "columns": {column: [0, 2]}},
            ]
        }
    )


def _fill(sample, fmt: str, scheme):
    cfg = dataset_config_from_files(data=[str(sample.data)], fmt=fmt)
    return build_histograms(cfg, scheme, options=RunOptions(executor="iterative", progress=False))


def test_charge_column_categories_agree_across_formats(demo_ecalelf, demo_nanoaod):
    ecalelf = _fill(demo_ecalelf, "ecalelf", _charge_scheme("chargeEle"))
    nanoaod = _fill(demo_nanoaod, "nanoaod", _charge_scheme("Electron_charge"))
    regions, w, _ = ecalelf.region_arrays("data")
    # the generated pairs have opposite charges: every pair is in region (e-, e+) = (0, 1)
    assert regions.tolist() == [1]
    assert w.sum() == ecalelf.cutflow["data"]["mass"] > 15_000
    n_regions, n_w, _ = nanoaod.region_arrays("data")
    assert n_regions.tolist() == [1]
    np.testing.assert_array_equal(n_w, w)


@pytest.mark.parametrize(
    ("fmt", "column", "error", "problem"),
    [
        (
            "ecalelf",
            "chargeEl",
            InputError,
            (
                "{data}: tree 'selected' has no branch 'chargeEl' for category column 'chargeEl' "
                "(similar: chargeEle); allowed: per-electron array branches of the tree"
            ),
        ),
        (
            "ecalelf",
            "runNumber",
            InputError,
            (
                "{data}: tree 'selected': branch 'runNumber' holds one value per event; the ecalelf "
                "format needs a fixed-size per-electron array such as [3]"
            ),
        ),
        (
            "nanoaod",
            "nElectron",
            InvalidConfig,
            (
                "nanoaod input: category column 'nElectron' is not allowed; NanoAOD columns are "
                "Electron_* branches"
            ),
        ),
    ],
)
def test_bad_category_column_is_named_at_setup(request, fmt, column, error, problem):
    sample = request.getfixturevalue(f"demo_{fmt}")
    with pytest.raises(error) as err:
        _fill(sample, fmt, _charge_scheme(column))
    assert str(err.value) == problem.format(data=sample.data)


def test_payload_writer_refuses_input_column_categories():
    with pytest.raises(OutputError) as err:
        build_scale_correction(
            "s", _charge_scheme("chargeEle"), [1.0, 1.0], [1e-3, 1e-3], description="t"
        )
    assert str(err.value) == (
        "cannot build correction 's': the scale categories cut on the input column(s) "
        "chargeEle, which are no input of the EGM signature; allowed category variables in a "
        "payload: run, eta (AbsScEta), sceta (ScEta), r9, et (pt), gain (seedGain)"
    )


@pytest.fixture(scope="module")
def flat_ntuple(tmp_path_factory, demo_ecalelf):
    """The first 5000 pairs of the demo data as a flat ntuple (one branch per lepton)."""
    import uproot

    with uproot.open(demo_ecalelf.data) as f:
        a = f["selected"].arrays(
            ["energy_ECAL_ele", "etaSCEle", "phiEle", "chargeEle", "runNumber"],
            entry_stop=5000,
            library="np",
        )
    cols = {
        "E": a["energy_ECAL_ele"].astype(np.float32),
        "eta": a["etaSCEle"].astype(np.float32),
        "phi": a["phiEle"].astype(np.float32),
        "Q": a["chargeEle"].astype(np.int32),
    }
    branches = {f"{k}{i + 1}": v[:, i] for k, v in cols.items() for i in (0, 1)}
    branches["Run"] = a["runNumber"].astype(np.int32)
    p = tmp_path_factory.mktemp("flat") / "flat.root"
    with uproot.recreate(p) as f:
        f.mktree("events", {k: v.dtype for k, v in branches.items()})
        f["events"].extend(branches)
    return p


def _flat_config(path, columns):
    cm = {
        "energy": ["E1", "E2"],
        "eta": ["eta1", "eta2"],
        "phi": ["phi1", "phi2"],
        "run": "Run",
        "columns": columns,
    }
    return dataset_config_from_files(data=[str(path)], fmt="flat", column_map=cm)


def test_flat_column_map_columns_as_category_axis(flat_ntuple):
    cfg = _flat_config(flat_ntuple, {"q": ["Q1", "Q2"]})
    opts = RunOptions(executor="iterative", progress=False)
    hs = build_histograms(cfg, _charge_scheme("q"), options=opts)
    regions, w, _ = hs.region_arrays("data")
    assert regions.tolist() == [1]  # opposite charges, as in the ECALELF file
    assert w.sum() == hs.cutflow["data"]["mass"] > 3_000
    # a column the map does not name: a set-up error naming what it names
    with pytest.raises(InvalidConfig) as err:
        build_histograms(cfg, _charge_scheme("charge"), options=opts)
    assert str(err.value) == (
        "flat input: category column 'charge' is not in the column_map's 'columns' (named: "
        "q); add charge: [branch1, branch2] there"
    )
