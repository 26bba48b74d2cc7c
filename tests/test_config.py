"""``zcalib.config``: dataset descriptions and the pair selection, loaded and validated once
(frozen models, unknown keys refused, one-line messages naming the file, field and value).

The command-line paths of the same errors (exit code 1, ``zcalib: error:`` prefix) are in
``tests/test_cli.py``; here the library functions are called directly.
"""

from __future__ import annotations

import pydantic
import pytest

from zcalib.config import (
    DatasetConfig,
    SelectionConfig,
    dataset_config_from_files,
    format_validation_error,
    is_url,
    load_dataset_config,
    load_yaml,
)
from zcalib.exceptions import InvalidConfig

ONE = [{"name": "data", "kind": "data", "files": ["a.root"]}]
FLAT_MAP = {"energy": ["E1", "E2"], "eta": ["eta1", "eta2"], "phi": ["phi1", "phi2"]}


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("root://eosuser.cern.ch//eos/user/z/zee.root", True),
        ("https://example.org/zee.root", True),
        ("s3://bucket/zee.root", True),
        ("data/zee.root", False),
        ("/abs/zee.root", False),
        ("C:/zee.root", False),
        ("data/x.root://y", False),  # a scheme contains no '/' and starts the path
    ],
)
def test_is_url(path, url):
    assert is_url(path) is url


def test_selection_defaults_overrides_and_frozen():
    s = SelectionConfig()
    assert s.model_dump() == {
        "min_et_lead": 25.0,
        "min_et_sublead": 20.0,
        "max_abs_eta": 2.5,
        "exclude_crack": True,
        "id_level": "medium",
        "opposite_charge": False,
    }
    tight = s.with_overrides(id_level="tight", min_et_lead=30)
    assert (tight.id_level, tight.min_et_lead) == ("tight", 30.0)
    assert (s.id_level, s.min_et_lead) == ("medium", 25.0)  # the original is unchanged
    with pytest.raises(pydantic.ValidationError, match="Instance is frozen"):
        s.id_level = "tight"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError) as err:
        s.with_overrides(id_level="wp90")
    assert format_validation_error("cfg.yaml", err.value) == (
        "cfg.yaml: field 'id_level': Input should be 'none', 'loose', 'medium' or 'tight' "
        "(got 'wp90')"
    )
    with pytest.raises(pydantic.ValidationError) as err:
        SelectionConfig(max_abs_eta=0)
    assert format_validation_error("cfg.yaml", err.value) == (
        "cfg.yaml: field 'max_abs_eta': Input should be greater than 0 (got 0)"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": "flat", "datasets": ONE}, "format 'flat' needs a 'column_map'"),
        (
            {"column_map": FLAT_MAP, "datasets": ONE},
            "'column_map' is only used with format 'flat', not 'ecalelf'",
        ),
        (
            {
                "format": "flat",
                "column_map": {"eta": ["a", "b"], "phi": ["c", "d"]},
                "datasets": ONE,
            },
            "column_map needs 'energy' or 'pt'",
        ),
        (
            {"datasets": [*ONE, *ONE, {"name": "mc", "kind": "mc", "files": ["m.root"]}] * 2},
            "dataset names must be unique; repeated: data, mc",
        ),
    ],
)
def test_dataset_config_semantic_checks(raw, message):
    with pytest.raises(pydantic.ValidationError) as err:
        DatasetConfig.model_validate(raw)
    text = format_validation_error("ds.yaml", err.value)
    assert text.startswith("ds.yaml: field '<top level>': ")
    assert text.endswith(message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"datasets": [{"name": "d", "kind": "Data", "files": ["a.root"]}]},
            "field 'datasets.0.kind': Input should be 'data' or 'mc' (got 'Data')",
        ),
        (
            {"datasets": []},
            "field 'datasets': Tuple should have at least 1 item after validation, not 0",
        ),
        ({"datasets": ONE, "tree": "t"}, "field 'tree': Extra inputs are not permitted (got 't')"),
        (
            {"schema_version": 2, "datasets": ONE},
            "field 'schema_version': Input should be 1 (got 2)",
        ),
    ],
)
def test_dataset_config_field_errors(raw, message):
    with pytest.raises(pydantic.ValidationError) as err:
        DatasetConfig.model_validate(raw)
    assert format_validation_error("ds.yaml", err.value) == f"ds.yaml: {message}"


def test_tree_names_and_kinds():
    cfg = DatasetConfig.model_validate(
        {
            "format": "nanoaod",
            "datasets": [
                {"name": "data", "kind": "data", "files": ["d.root"]},
                {"name": "mc", "kind": "mc", "files": ["m.root"], "treename": "Friends"},
            ],
        }
    )
    data, mc = cfg.datasets
    assert (cfg.tree_of(data), cfg.tree_of(mc)) == ("Events", "Friends")
    assert cfg.with_overrides(treename="T").tree_of(data) == "T"
    assert cfg.tree_of(data) == "Events"  # with_overrides returned a copy
    assert cfg.kinds() == {"data": "data", "mc": "mc"}


def test_load_yaml_errors_name_the_file_and_the_place(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(InvalidConfig) as err:
        load_yaml(missing)
    assert str(err.value) == f"{missing}: file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  - name: data\n    files: [a.root\n")
    with pytest.raises(InvalidConfig) as err:
        load_yaml(bad)
    assert str(err.value) == (
        f"{bad}: malformed YAML at line 4, column 1: expected ',' or ']', but got '<stream end>'"
    )
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidConfig, match=rf"^{binary}: cannot read \(UnicodeDecodeError: "):
        load_yaml(binary)
    assert load_yaml(_write(tmp_path / "empty.yaml", "")) is None


def _write(path, text):
    path.write_text(text)
    return path


def test_load_dataset_config_resolves_relative_paths_and_keeps_urls(tmp_path):
    (tmp_path / "sub").mkdir()
    local = _write(tmp_path / "sub" / "data.root", "")
    absolute = _write(tmp_path / "mc.root", "")
    url = "root://eosuser.cern.ch//eos/user/z/zee.root"
    y = _write(
        tmp_path / "ds.yaml",
        "format: ecalelf\n"
        "datasets:\n"
        "  - {name: data, kind: data, files: [sub/data.root]}\n"
        f"  - {{name: mc, kind: mc, files: ['{absolute}', '{url}'], metadata: {{xs: 2.5}}}}\n",
    )
    cfg = load_dataset_config(y)
    assert [d.files for d in cfg.datasets] == [(str(local),), (str(absolute), url)]
    assert cfg.datasets[1].metadata == {"xs": 2.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping with a 'datasets' list, got list"),
        ("format: ecalelf\n", "field 'datasets': Field required"),
        (
            "datasets:\n  - {name: data, kind: data, files: [missing.root]}\n",
            "dataset 'data': input file {dir}/missing.root not found",
        ),
    ],
)
def test_load_dataset_config_errors(tmp_path, text, message):
    y = _write(tmp_path / "ds.yaml", text)
    with pytest.raises(InvalidConfig) as err:
        load_dataset_config(y)
    assert str(err.value) == f"{y}: " + message.format(dir=tmp_path)


def test_dataset_config_from_files():
    cfg = dataset_config_from_files(
        data=["root://h//d.root"], mc=["https://h/m.root"], fmt="nanoaod", treename="T"
    )
    assert [(d.name, d.kind, d.files) for d in cfg.datasets] == [
        ("data", "data", ("root://h//d.root",)),
        ("mc", "mc", ("https://h/m.root",)),
    ]
    assert (cfg.format, cfg.treename) == ("nanoaod", "T")
    flat = dataset_config_from_files(mc=["root://h//m.root"], fmt="flat", column_map=FLAT_MAP)
    assert flat.column_map is not None
    assert flat.column_map.energy == ("E1", "E2")
    assert [d.kind for d in flat.datasets] == ["mc"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "no input files: give --data and/or --mc files, or --datasets YAML"),
        (
            {"data": ["/no/such/file.root"]},
            "command line: dataset 'data': input file /no/such/file.root not found",
        ),
        (
            {"data": ["root://h//d.root"], "fmt": "csv"},
            (
                "command line: field 'format': Input should be 'ecalelf', 'nanoaod', 'flat' or "
                "'parquet' (got 'csv')"
            ),
        ),
    ],
)
def test_dataset_config_from_files_errors(kw, message):
    with pytest.raises(InvalidConfig) as err:
        dataset_config_from_files(**kw)
    assert str(err.value) == message
