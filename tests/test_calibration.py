"""CalibrationConfig: per-format defaults, immutable overrides, no global mutable default."""

from __future__ import annotations

import itertools

import numpy as np
import pydantic
import pytest

from zcalib.calibration import (
    BASE_SYSTEMATICS,
    FORMAT_DEFAULTS,
    CalibrationConfig,
    McWeight,
    PriorCorrection,
    load_calibration_config,
)
from zcalib.config import SelectionConfig
from zcalib.exceptions import InvalidConfig
from zcalib.fit import FitConfig

FLAT_MAP = {"energy": ["E1", "E2"], "eta": ["eta1", "eta2"], "phi": ["phi1", "phi2"]}


@pytest.mark.parametrize(
    ("fmt", "tree", "collection", "wp"),
    [
        ("ecalelf", "selected", "Ele", "medium"),
        ("nanoaod", "Events", "Electron", "medium"),
        ("parquet", "pairs", None, "medium"),
    ],
)
def test_for_format_defaults(fmt, tree, collection, wp):
    cfg = CalibrationConfig.for_format(fmt)
    assert cfg.input_format == fmt
    assert (cfg.tree, cfg.lepton_collection, cfg.id_level) == (tree, collection, wp)
    assert cfg.selection.id_level == wp


def test_flat_format_needs_column_map_and_has_no_id():
    with pytest.raises(InvalidConfig, match="needs a column_map"):
        CalibrationConfig.for_format("flat")
    cfg = CalibrationConfig.for_format("flat", column_map=FLAT_MAP)
    assert (cfg.tree, cfg.id_level, cfg.lepton_collection) == ("events", "none", None)
    assert cfg.selection == SelectionConfig(id_level="none")
    with pytest.raises(InvalidConfig, match=r"selection.id_level 'medium'.*allowed: none"):
        cfg.with_overrides(selection={"id_level": "medium"})


def test_unknown_format_names_allowed():
    with pytest.raises(
        InvalidConfig, match="unknown input format 'root'; allowed: ecalelf, nanoaod"
    ):
        CalibrationConfig.for_format("root")


def test_unknown_keys_are_errors_naming_allowed_ones():
    cfg = CalibrationConfig.for_format("nanoaod")
    with pytest.raises(
        InvalidConfig, match=r"unknown option 'jet_collection'; allowed: .*selection"
    ):
        cfg.with_overrides(jet_collection="AntiKt4EMTopoJets")
    with pytest.raises(InvalidConfig, match=r"unknown options 'a', 'b'"):
        cfg.with_overrides(a=1, b=2)
    with pytest.raises(InvalidConfig, match="unknown option 'wp'"):
        CalibrationConfig.for_format("nanoaod", wp="tight")
    with pytest.raises(
        pydantic.ValidationError, match=r"unknown option 'wp'; allowed: .*systematic"
    ):
        CalibrationConfig(wp="tight")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"collection": "Muon"}, r"collection 'Muon' is not available .*allowed: Electron"),
        ({"selection": {"id_level": "veto"}}, r"field 'selection.id_level'"),
        (
            {"input_format": "ecalelf", "selection": {"id_level": "loose"}},
            r"allowed: none, medium, tight",
        ),
        ({"window": (50, 100)}, r"window \(50.0, 100.0\) must lie inside binning lo-hi"),
        ({"window": (95, 85)}, r"window"),
        ({"binning": {"lo": 0}}, r"field 'binning.lo'"),
        ({"selection": {"min_et_lead": -1}}, r"field 'selection.min_et_lead'"),
        ({"systematic": "pileup_up"}, r"systematic 'pileup_up' is not filled; allowed: nominal"),
        ({"column_map": FLAT_MAP}, r"column_map is only used with input_format 'flat'"),
        ({"mc_weights": ["pu=a.json", "pu=b.json"]}, r"repeated: pu"),
        ({"mc_weights": ["scale=a.json"]}, r"weight name 'scale'"),
        ({"mc_weights": ["nofile"]}, r"expected NAME=FILE"),
    ],
)
def test_invalid_values_are_named(overrides, message):
    with pytest.raises(InvalidConfig, match=message):
        CalibrationConfig.for_format("nanoaod").with_overrides(**overrides)


def test_with_overrides_returns_copies_and_composes():
    base = CalibrationConfig.for_format("nanoaod")
    a = base.with_overrides(selection={"id_level": "tight"})
    b = a.with_overrides(window=(85, 97), selection={"min_et_lead": 30})
    c = base.with_overrides(selection={"id_level": "tight", "min_et_lead": 30}, window=(85, 97))
    assert b == c  # a mapping changes only the keys it names: b kept a's id_level
    assert (b.id_level, b.selection.min_et_lead) == ("tight", 30.0)
    assert (a.id_level, a.window) == ("tight", (80.0, 100.0))
    assert (base.id_level, base.window) == ("medium", (80.0, 100.0))
    # a model replaces the whole field
    assert base.with_overrides(selection=SelectionConfig(min_et_lead=30)).selection == (
        SelectionConfig(min_et_lead=30)
    )
    # switching formats keeps format defaults consistent (unset = format default)
    e = base.with_overrides(input_format="ecalelf")
    assert (e.tree, e.lepton_collection) == ("selected", "Ele")
    flat = base.with_overrides(input_format="flat", column_map=FLAT_MAP)
    assert flat.id_level == "none"
    assert flat.with_overrides(input_format="nanoaod", column_map=None).id_level == "medium"
    # an explicit working point is kept, and checked against the new format
    assert a.with_overrides(input_format="ecalelf").id_level == "tight"
    with pytest.raises(InvalidConfig, match=r"selection.id_level 'tight' is not available"):
        a.with_overrides(input_format="flat", column_map=FLAT_MAP)


def test_derived_config_never_changes_another_or_a_later_default():
    """The func_adl pitfall: modifying a default config changed later queries. Not here."""
    first_default = CalibrationConfig.for_format("nanoaod")
    snapshot = first_default.to_dict()
    derived = first_default.with_overrides(
        selection={"id_level": "tight", "min_et_lead": 35},
        mc_weights={"pileup": "pu.json"},
        systematic="pileup_up",
    )
    # attributes cannot be assigned, nested models neither
    with pytest.raises(pydantic.ValidationError):
        first_default.window = (85, 97)  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        derived.selection.id_level = "loose"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        derived.mc_weights[0].name = "other"  # type: ignore[misc]
    # the dict view is a copy
    view = derived.to_dict()
    view["selection"]["id_level"] = "none"
    view["mc_weights"].append({"name": "x", "file": "y"})
    assert derived.id_level == "tight"
    assert len(derived.mc_weights) == 1
    # neither the config it came from nor a default made later changed
    assert first_default.to_dict() == snapshot
    later_default = CalibrationConfig.for_format("nanoaod")
    assert later_default == first_default
    assert later_default.to_dict() == snapshot
    assert CalibrationConfig().to_dict() == CalibrationConfig.for_format("ecalelf").to_dict()
    # the per-format defaults table is read-only
    with pytest.raises(TypeError):
        FORMAT_DEFAULTS["nanoaod"]["working_point"] = "tight"  # type: ignore[index]
    with pytest.raises(TypeError):
        FORMAT_DEFAULTS["nanoaod"] = {}  # type: ignore[index]


def test_notebook_cells_in_any_order_give_the_same_results():
    """Cells that derive configurations cannot influence each other, whatever their order."""
    cells = {
        "defaults": lambda: CalibrationConfig.for_format("nanoaod"),
        "tight": lambda: CalibrationConfig.for_format("nanoaod").with_overrides(
            selection={"id_level": "tight"}
        ),
        "window": lambda: CalibrationConfig.for_format("nanoaod").with_overrides(window=(85, 97)),
        "ecalelf": lambda: CalibrationConfig.for_format("ecalelf"),
    }
    reference = {name: cell().to_dict() for name, cell in cells.items()}
    for order in itertools.permutations(cells):
        got = {name: cells[name]().to_dict() for name in order}
        assert got == reference


def test_hashable_and_round_trips():
    cfg = CalibrationConfig.for_format(
        "ecalelf", corrections=["step1.json"], mc_weights=["pileup=pu.json:pileup"]
    )
    assert hash(cfg) == hash(cfg.with_overrides())
    assert CalibrationConfig.model_validate(cfg.to_dict()) == cfg
    assert cfg.corrections == (PriorCorrection(file="step1.json"),)
    assert cfg.mc_weights == (McWeight(name="pileup", file="pu.json", correction="pileup"),)


def test_selection_and_binning_are_the_pipeline_models():
    """One settings model: CalibrationConfig's `selection`, `binning` and `window` are the
    pipeline's SelectionConfig, BinningSettings and FitConfig's `window`, so one YAML fragment
    means the same in a `--config` file and in a pipeline."""
    from zcalib.chain.config import PipelineConfig
    from zcalib.config import BinningSettings

    assert CalibrationConfig.model_fields["selection"].annotation is SelectionConfig
    assert CalibrationConfig.model_fields["binning"].annotation is BinningSettings
    assert PipelineConfig.model_fields["selection"].annotation is SelectionConfig
    assert "window" in FitConfig.model_fields
    fragment = {
        "selection": {
            "min_et_lead": 30,
            "min_et_sublead": 22,
            "max_abs_eta": 2.4,
            "exclude_crack": False,
            "id_level": "tight",
            "opposite_charge": True,
        },
        "binning": {"n_bins": 400, "lo": 70, "hi": 110},
    }
    steps = [{"name": "s", "type": "corrections", "file": "c.json"}]
    cfg = CalibrationConfig.model_validate(fragment)
    pipe = PipelineConfig(output="x", steps=steps, **fragment)
    assert (cfg.selection, cfg.binning) == (pipe.selection, pipe.binning)
    assert cfg.selection == SelectionConfig(**fragment["selection"])


def test_variations_and_systematics():
    cfg = CalibrationConfig.for_format("ecalelf", mc_weights=["pileup=pu.json"])
    assert cfg.variations() == (*BASE_SYSTEMATICS, "pileup_up", "pileup_down")
    for syst in cfg.variations():
        assert cfg.with_overrides(systematic=syst).systematic == syst


def test_fit_config_window_comes_from_the_configuration():
    cfg = CalibrationConfig(window=(84, 98))
    assert cfg.fit_config().window == (84.0, 98.0)
    opts = FitConfig(min_data=50)
    fc = cfg.fit_config(opts)
    assert (fc.window, fc.min_data, opts.window) == ((84.0, 98.0), 50, (80.0, 100.0))
    assert cfg.fit_config(FitConfig(window=(84, 98))).window == (84.0, 98.0)
    with pytest.raises(InvalidConfig, match=r"with_overrides\(window=...\)"):
        cfg.fit_config(FitConfig(window=(82, 99)))


def test_binning_and_scheme():
    cfg = CalibrationConfig(binning={"lo": 70, "hi": 110, "n_bins": 400}, window=(80, 100))
    b = cfg.mass_binning()
    # about 400 bins over 70-110 GeV, laid so that the window's ends are bin edges
    assert 400 <= b.n_bins <= 410
    assert 69.5 < b.lo <= 70.0
    assert 110.0 <= b.hi < 110.5
    edges = b.axis().edges
    for w in (80.0, 100.0):
        assert np.min(np.abs(edges - w)) < 1e-9 * w
    assert len(cfg.scheme().scale) == 8


def test_one_binning_model_and_one_default_for_calibration_config_pipeline_and_histograms(
    tmp_path,
):
    """`binning: {n_bins, lo, hi}` (CalibrationConfig and pipeline YAML) is one model,
    BinningSettings, whose defaults are the only ones: every front door fills the same fine bins, by default and when set."""
    from zcalib.chain.config import PipelineConfig
    from zcalib.config import DEFAULT_FILL_RANGE, DEFAULT_N_BINS, DEFAULT_WINDOW, BinningSettings
    from zcalib.histograms import MassBinning

    steps = [{"name": "s", "type": "corrections", "file": "c.json"}]
    default = MassBinning()
    assert CalibrationConfig().mass_binning() == default
    assert PipelineConfig(output="x", steps=steps).binning.aligned(DEFAULT_WINDOW) == default
    assert BinningSettings().aligned() == default
    assert CalibrationConfig().binning == BinningSettings()
    assert (default.lo, default.hi) == pytest.approx(DEFAULT_FILL_RANGE, abs=0.05)
    assert abs(default.n_bins - DEFAULT_N_BINS) < 0.02 * DEFAULT_N_BINS
    assert CalibrationConfig().window == DEFAULT_WINDOW
    from zcalib.fit import FitConfig

    assert FitConfig().window == DEFAULT_WINDOW  # the fit's own default is the same constant
    calib = CalibrationConfig(binning={"n_bins": 400, "lo": 70, "hi": 110}, window=(82, 98))
    pipe = PipelineConfig(output="x", steps=steps, binning={"n_bins": 400, "lo": 70, "hi": 110})
    assert calib.binning == pipe.binning
    assert calib.mass_binning() == pipe.binning.aligned((82, 98))
    with pytest.raises(pydantic.ValidationError, match=r"lo must be < hi, got lo=120, hi=60"):
        BinningSettings(lo=120, hi=60)
    with pytest.raises(pydantic.ValidationError, match=r"greater than or equal to 10"):
        BinningSettings(n_bins=5)


def test_scheme_from_file(tmp_path):
    from tests.conftest import CONFIGS

    cfg = CalibrationConfig(categories=CONFIGS / "cats_eta_r9.yaml")
    assert isinstance(cfg.categories, str)
    assert cfg.scheme().n_cells == 8
    from zcalib.exceptions import InvalidCategories

    with pytest.raises(InvalidCategories, match="not found"):
        cfg.with_overrides(categories=tmp_path / "missing.tsv").scheme()


def test_dataset_config_and_format_check(tmp_path):
    f = tmp_path / "d.root"
    f.write_bytes(b"")
    cfg = CalibrationConfig.for_format("nanoaod")
    ds = cfg.dataset_config(data=[f], mc=[f])
    assert ds.format == "nanoaod"
    assert [d.kind for d in ds.datasets] == ["data", "mc"]
    cfg.check_datasets(ds)
    with pytest.raises(InvalidConfig, match=r"CalibrationConfig.for_format\('nanoaod'\)"):
        CalibrationConfig.for_format("ecalelf").check_datasets(ds)


def test_load_yaml_resolves_paths(tmp_path):
    p = tmp_path / "calib.yaml"
    p.write_text(
        "input_format: nanoaod\nselection: {id_level: tight}\ncategories: cats.tsv\n"
        "corrections: [step1/corrections.json]\nmc_weights: {pileup: pu.json}\n"
        "systematic: pileup_down\n"
    )
    cfg = load_calibration_config(p)
    assert cfg.id_level == "tight"
    assert cfg.categories == str(tmp_path / "cats.tsv")
    assert cfg.corrections[0].file == str(tmp_path / "step1" / "corrections.json")
    assert cfg.mc_weights[0].file == str(tmp_path / "pu.json")
    assert cfg.systematic == "pileup_down"
    (tmp_path / "empty.yaml").write_text("")
    assert load_calibration_config(tmp_path / "empty.yaml") == CalibrationConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("input_format: nanoaod\nworkingpoint: tight\n", r"unknown option 'workingpoint'"),
        ("window: [80]\n", r"field 'window.1': Field required"),
        ("a: [\n", "malformed YAML"),
    ],
)
def test_load_yaml_errors(tmp_path, text, message):
    p = tmp_path / "calib.yaml"
    p.write_text(text)
    with pytest.raises(InvalidConfig, match=message):
        load_calibration_config(p)


@pytest.mark.parametrize(
    ("text", "new"),
    [
        ("working_point: tight\n", "selection: {id_level: ...}"),
        ("min_et_lead: 30\n", "selection: {min_et_lead: ...}"),
        ("min_et_sublead: 30\n", "selection: {min_et_sublead: ...}"),
        ("max_abs_eta: 2.4\n", "selection: {max_abs_eta: ...}"),
        ("exclude_crack: false\n", "selection: {exclude_crack: ...}"),
        ("opposite_charge: true\n", "selection: {opposite_charge: ...}"),
        ("mass_window: [82, 98]\n", "window (FitConfig's name)"),
        ("fill_range: [70, 110]\n", "binning: {lo: ..., hi: ...}"),
        ("n_mass_bins: 600\n", "binning: {n_bins: ...}"),
    ],
)
def test_old_flat_spellings_are_refused(tmp_path, text, new):
    """A flat key renamed to the pipeline's one spelling is refused in one line naming the
    file, the field and the new name, from YAML and from Python: never silently accepted."""
    from zcalib.calibration import RENAMED

    old = text.partition(":")[0]
    assert RENAMED[old] == new
    p = tmp_path / "calib.yaml"
    p.write_text(f"input_format: nanoaod\n{text}")
    with pytest.raises(InvalidConfig) as err:
        load_calibration_config(p)
    assert str(err.value) == f"{p}: field '{old}' was renamed; write {new}"
    with pytest.raises(InvalidConfig) as err:
        CalibrationConfig().with_overrides(**{old: 1})
    assert str(err.value) == f"CalibrationConfig: field '{old}' was renamed; write {new}"


def test_html_repr_resolves_defaults():
    html = CalibrationConfig.for_format("nanoaod")._repr_html_()
    assert "Events (format default)" in html
    assert "Electron (format default)" in html
    assert "id_level=medium (format default)" in html
    assert "<table>" in html
