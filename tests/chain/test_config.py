"""Pipeline configuration: one-line errors (exact messages) before any event is read."""

from __future__ import annotations

import pytest
import yaml

from tests.chain.conftest import demo_steps, write_pipeline
from tests.conftest import CONFIGS
from zcalib.categories import load_categories
from zcalib.chain.config import load_pipeline, topological_order
from zcalib.chain.pipeline import run_pipeline
from zcalib.exceptions import InputError, InvalidConfig


@pytest.fixture
def no_events(monkeypatch):
    """Fail if any event loop starts."""
    import zcalib.runner as runner

    def boom(*a, **k):
        msg = "an event loop started"
        raise AssertionError(msg)

    monkeypatch.setattr(runner, "run_processor", boom)


def _fit(name, needs=(), **kw):
    return {
        "name": name,
        "type": "fit",
        "categories": str(CONFIGS / "cats_eta_r9.yaml"),
        "needs": list(needs),
        **kw,
    }


def test_demo_config_is_valid():
    lp = load_pipeline(CONFIGS / "pipeline_demo.yaml")
    assert lp.order == (
        "run_divide",
        "time_stability",
        "step2",
        "zweights",
        "step3",
        "step4",
        "closure",
    )
    assert lp.closure["step4"] == ("run_divide", "time_stability", "step2", "zweights", "step3")
    assert lp.dependents("zweights") == ("zweights", "step3", "step4", "closure")
    assert lp.step("closure").max_significance == 3.0


def test_order_follows_dependencies_then_file_order():
    assert topological_order(["c", "a", "b"], {"c": ("b",), "a": (), "b": ("a",)}, "p") == (
        "a",
        "b",
        "c",
    )


def test_cyclic_dependency(tmp_path, demo_ecalelf, no_events):
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[_fit("a", ["c"]), _fit("b", ["a"]), _fit("c", ["b"])]
    )
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == f"{path}: steps form a dependency cycle: a -> c -> b -> a"


def test_missing_dependency(tmp_path, demo_ecalelf, no_events):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a"), _fit("b", ["step9"])])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == f"{path}: step 'b' needs unknown step 'step9'; known steps: a, b"


def test_unknown_category_scheme(tmp_path, demo_ecalelf, no_events):
    steps = demo_steps()
    steps[2]["categories"] = "cats_nowhere.yaml"
    path = write_pipeline(tmp_path, demo_ecalelf, steps=steps)
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'step2': categories file "
        f"{tmp_path / 'cats_nowhere.yaml'} not found (unknown category "
        "scheme)"
    )


def test_unknown_step_field_and_type(tmp_path, demo_ecalelf):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", window=[80, 100])])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value).startswith(
        f"{path}: field 'steps.0.fit.window': Extra inputs are not permitted"
    )
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[{"name": "a", "type": "magic"}])
    with pytest.raises(
        InvalidConfig,
        match=r"field 'steps.0': Input tag 'magic' found using "
        "'type' does not match any of the expected tags",
    ):
        load_pipeline(path)


def test_closure_without_smearing_step(tmp_path, demo_ecalelf):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", closure=True)])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'a': closure MC smearing 'latest' needs a fit step "
        "deriving smearings among its dependencies (needs)"
    )


def test_time_stability_without_run_bins(tmp_path, demo_ecalelf):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[{"name": "ts", "type": "time_stability"}])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'ts': time_stability needs run bins: a run_divide "
        "step in 'needs' or a 'run_bins' file"
    )


def _corrections_file(path, correction):
    from zcalib.corrections import write_correction_set

    write_correction_set(path, [correction], description="test")
    return path


def test_correction_file_with_other_inputs(tmp_path, demo_ecalelf, no_events):
    """A payload keyed on inputs zcalib does not provide (another convention)."""
    from correctionlib import schemav2

    corr = schemav2.Correction(
        name="EGMScale",
        version=1,
        inputs=[
            schemav2.Variable(name="eta", type="real"),
            schemav2.Variable(name="syst", type="string"),
        ],
        output=schemav2.Variable(name="scale", type="real"),
        data=schemav2.Category(
            nodetype="category",
            input="syst",
            content=[
                schemav2.CategoryItem(key=k, value=1.0) for k in ("scale", "scale_up", "scale_down")
            ],
        ),
    )
    file = _corrections_file(tmp_path / "egm.json", corr)
    path = write_pipeline(
        tmp_path,
        demo_ecalelf,
        steps=[{"name": "prior", "type": "corrections", "file": str(file)}, _fit("a", ["prior"])],
    )
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(path))
    assert str(err.value) == (
        f"{file}: correction 'EGMScale' needs inputs [eta, syst]; zcalib provides run, "
        "lumi, AbsScEta, ScEta, r9, pt, seedGain, syst (is this a payload for another "
        "era/convention?)"
    )


def test_correction_file_for_another_era(tmp_path, demo_ecalelf, no_events):
    """A run-binned payload whose runs do not cover the data runs."""
    from zcalib.categories import Category, build_scheme
    from zcalib.corrections import build_scale_correction

    cats = [
        Category("scale", i, run=(float(lo), float(hi) + 1), eta=(0, 2.5))
        for i, (lo, hi) in enumerate(((315000, 315999), (316000, 316999)))
    ]
    corr = build_scale_correction(
        "ts2018", build_scheme(cats, []), [1.0, 1.0], [0.0, 0.0], description="2018"
    )
    file = _corrections_file(tmp_path / "ts2018.json", corr)
    path = write_pipeline(
        tmp_path,
        demo_ecalelf,
        steps=[{"name": "prior", "type": "corrections", "file": str(file)}, _fit("a", ["prior"])],
    )
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(path))
    assert str(err.value) == (
        f"{file}: correction 'ts2018' is binned in runs 315000-316999 but "
        "the data hold runs 355000-356000 (a payload for another era?)"
    )


def test_run_bins_file_not_covering_the_data(tmp_path, demo_ecalelf, no_events):
    bins = tmp_path / "bins.yaml"
    bins.write_text(yaml.safe_dump({"bins": [{"runs": [355000, 355400]}]}))
    path = write_pipeline(
        tmp_path,
        demo_ecalelf,
        steps=[{"name": "ts", "type": "time_stability", "run_bins": str(bins)}],
    )
    with pytest.raises(InputError) as err:
        run_pipeline(load_pipeline(path))
    msg = str(err.value)
    assert msg.startswith(f"{bins}: data run 3554")
    assert msg.endswith(
        f"in {demo_ecalelf.data} is outside every run bin (bins cover "
        "355000-355400, 1 bins); rerun run-divide on these data"
    )


def test_unknown_force_and_stop_after(tmp_path, demo_ecalelf, no_events):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a")])
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(path), force=("zz",))
    assert str(err.value) == f"{path}: unknown step 'zz'; steps: a"


def test_partially_overlapping_scale_categories(tmp_path, demo_ecalelf, no_events):
    """The combined legacy file needs nested categories: checked at set-up."""
    other = tmp_path / "cats_shifted.yaml"
    other.write_text(
        yaml.safe_dump(
            {"scale": [{"eta": [0, 0.8]}, {"eta": [0.8, 1.4442]}, {"eta": [1.566, 2.5]}]}
        )
    )
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[_fit("a"), {**_fit("b", ["a"]), "categories": str(other)}]
    )
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(path))
    assert str(err.value) == (
        f"{path}: the scale categories of step 'b' cannot be combined with the previous steps: "
        "(|eta| 0.8-1.4442) partially overlaps (|eta| 0-1 r9 0-0.96) of an earlier step; "
        "categories of later steps must be nested in or contain the earlier ones"
    )


def test_time_stability_on_lumi_split_bins(tmp_path, demo_ecalelf):
    """Run bins splitting runs are accepted: the correction is keyed on run and lumi."""
    path = write_pipeline(
        tmp_path,
        demo_ecalelf,
        steps=[
            {"name": "rd", "type": "run_divide", "granularity": "lumi"},
            {"name": "ts", "type": "time_stability", "needs": ["rd"]},
        ],
    )
    assert load_pipeline(path).order == ("rd", "ts")


def _closure(name="check", needs=("a",), **kw):
    return {
        "name": name,
        "type": "closure",
        "categories": str(CONFIGS / "cats_eta_r9.yaml"),
        "needs": list(needs),
        **kw,
    }


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), float("inf")])
def test_closure_step_bad_max_significance(tmp_path, demo_ecalelf, no_events, bad):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a"), _closure(max_significance=bad)])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'check': field 'max_significance' must be a finite number > 0 "
        f"(standard deviations), got {float(bad)}"
    )


def test_closure_step_unknown_categories(tmp_path, demo_ecalelf, no_events):
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[_fit("a"), _closure(categories="cats_nowhere.yaml")]
    )
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'check': categories file {tmp_path / 'cats_nowhere.yaml'} not found "
        "(unknown category scheme)"
    )


@pytest.mark.parametrize("needs", [(), ("rd",)])
def test_closure_step_without_corrections_before_it(tmp_path, demo_ecalelf, no_events, needs):
    rd = {"name": "rd", "type": "run_divide"}
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[rd, _closure(needs=needs)])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    given = "needs: rd" if needs else "no 'needs'"
    assert str(err.value) == (
        f"{path}: step 'check': a closure step checks the corrections of the steps before "
        f"it, but none of its dependencies ({given}) provides corrections; add a "
        "time_stability, fit, zweights or corrections step to 'needs'"
    )


def test_closure_step_fits_scales(tmp_path, demo_ecalelf, no_events):
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[_fit("a"), _closure(fit={"fix_scales": True})]
    )
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'check': a closure step fits scales and smearings free: "
        "fit.fix_scales must be false"
    )


def test_closure_step_needing_a_closure_step_only(tmp_path, demo_ecalelf, no_events):
    """Closure steps provide no corrections: a closure needing only the check of a
    correction step is fine (the corrections come transitively), a chain of checks alone
    is not."""
    steps = [_fit("a"), _closure(), _closure("again", needs=("check",))]
    lp = load_pipeline(write_pipeline(tmp_path, demo_ecalelf, steps=steps))
    assert lp.closure["again"] == ("a", "check")
    steps = [_closure("first", needs=()), _closure("again", needs=("first",))]
    with pytest.raises(InvalidConfig, match="step 'first': a closure step checks"):
        load_pipeline(write_pipeline(tmp_path, demo_ecalelf, steps=steps))


def test_fit_ignore_by_category(tmp_path, demo_ecalelf, no_events):
    """A category without data is held fixed by FitConfig's ``ignore_scales`` /
    ``ignore_smears`` (the fit's ``scale[i]`` / ``smear[i]``); an index out of the scheme is
    refused before any event is read."""
    from zcalib.chain.pipeline import _Setup

    step = _fit("a", fit={"ignore_scales": [2, 4], "ignore_smears": [5]})
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[step])
    cfg = _Setup(load_pipeline(path), None).fit_configs["a"]
    assert (cfg.ignore_scales, cfg.ignore_smears) == ((2, 4), (5,))
    # by name, as the fit's results table and its "no usable pair region" hint name them
    step = _fit("a", fit={"ignore_scales": ["scale[2]", 4], "ignore_smears": ["smear[5]"]})
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[step])
    cfg = _Setup(load_pipeline(path), None).fit_configs["a"]
    assert (cfg.ignore_scales, cfg.ignore_smears) == ((2, 4), (5,))
    for bad, text in (
        (
            "scale[5]",
            (
                "'scale[5]', a scale category; allowed: smear[i] or an index i (put "
                "scale[5] under ignore_scales)"
            ),
        ),
        ("EB", "'EB'; allowed: smear[i] (as the fit names it) or an index i"),
    ):
        step = _fit("a", fit={"ignore_smears": [bad]})
        path = write_pipeline(tmp_path, demo_ecalelf, steps=[step])
        with pytest.raises(InvalidConfig) as err:
            load_pipeline(path)
        assert str(err.value) == f"{path}: step 'a': field 'fit.ignore_smears' lists {text}"
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit={"ignore_smears": [9]})])
    with pytest.raises(InvalidConfig) as err:
        _Setup(load_pipeline(path), None)
    assert str(err.value) == (
        f"{path}: step 'a': fit config: field 'ignore_smears' lists [9]; allowed category "
        "indices are 0..7"
    )


@pytest.mark.parametrize(
    ("where", "old", "new"),
    [
        ("", "weights", "mc_weights (as in CalibrationConfig)"),
        (
            "fit",
            "ignore",
            (
                "fit.ignore_scales / fit.ignore_smears (FitConfig's names; category indices: "
                "scale[i] -> ignore_scales: [i], smear[i] -> ignore_smears: [i])"
            ),
        ),
        ("fit", "start_file", "start_file, a field of the step beside fit"),
    ],
)
def test_old_spellings_are_refused(tmp_path, demo_ecalelf, no_events, where, old, new):
    """A field renamed to its one name (CalibrationConfig's, FitConfig's) is refused in one
    line naming the file, the field and the new name: never silently accepted."""
    from zcalib.chain.config import RENAMED

    assert RENAMED[(where, old)] == new
    if where == "fit":
        path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit={old: [1]})])
        expected = f"{path}: step 'a': field 'fit.{old}' was renamed; write {new}"
    else:
        path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a")])
        raw = yaml.safe_load(path.read_text())
        raw[old] = raw.pop("mc_weights")
        path.write_text(yaml.safe_dump(raw))
        expected = f"{path}: field '{old}' was renamed; write {new}"
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == expected


def test_fit_options_are_fit_config(tmp_path, demo_ecalelf, no_events):
    """One settings model: a step's fit options ARE a FitConfig (names, defaults, checks),
    its MC weights CalibrationConfig's McWeight, its binning and selection zcalib.config's
    models, its run settings RunOptions' names and defaults."""
    import dataclasses

    from zcalib.calibration import CalibrationConfig, McWeight
    from zcalib.chain.config import ClosureStep, FitStep, PipelineConfig, RunSettings
    from zcalib.config import BinningSettings, SelectionConfig
    from zcalib.fit import FitConfig
    from zcalib.runner import RunOptions

    for step in (FitStep, ClosureStep):
        assert step.model_fields["fit"].annotation is FitConfig
    fields = PipelineConfig.model_fields
    assert fields["mc_weights"].annotation == tuple[McWeight, ...]
    assert CalibrationConfig.model_fields["mc_weights"].annotation == tuple[McWeight, ...]
    assert fields["binning"].annotation is BinningSettings
    assert fields["selection"].annotation is SelectionConfig
    # CalibrationConfig embeds the same models, with their defaults
    assert CalibrationConfig().selection == SelectionConfig()
    assert CalibrationConfig().binning == BinningSettings()
    run = {f.name: f.default for f in dataclasses.fields(RunOptions)}
    for name, field in RunSettings.model_fields.items():
        assert field.default == run[name], name
    lp = load_pipeline(write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a")]))
    assert lp.step("a").fit == FitConfig()
    assert lp.config.mc_weights[0] == McWeight.parse(f"pileup={lp.config.mc_weights[0].file}")


def test_fit_option_errors_name_step_and_field(tmp_path, demo_ecalelf, no_events):
    """FitConfig's own one-line messages, with the file, the step and ``fit.<field>``."""
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit={"mc_stat": "auto"})])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'a': field 'fit.mc_stat' is 'auto'; allowed: sandwich, bootstrap, none"
    )
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit={"bin_width": -1})])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'a': field 'fit.bin_width' is -1.0; expected a positive width in GeV"
    )


def test_fit_step_double_gaussian_smearing(tmp_path, demo_ecalelf, no_events):
    """``smearing: double-gaussian`` and its shape reach the step's FitConfig; a bad shape is
    refused naming the step and the field."""
    from zcalib.chain.pipeline import _Setup

    fit = {"smearing": "double-gaussian", "double_gaussian": {"fraction": 0.3}}
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit=fit)])
    cfg = _Setup(load_pipeline(path), None).fit_configs["a"]
    assert cfg.double_gaussian_shape() == (0.3, 2.0)
    fit = {"smearing": "double-gaussian", "double_gaussian": {"width_ratio": -1}}
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit("a", fit=fit)])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'a': field 'fit.double_gaussian.width_ratio' is -1.0; expected "
        "a positive ratio"
    )


def test_derivation_config_is_valid():
    """configs/pipeline_derivation.yaml: the chain of a real derivation, with a gain step."""
    lp = load_pipeline(CONFIGS / "pipeline_derivation.yaml")
    assert lp.order == (
        "run_divide",
        "time_stability",
        "coarse",
        "fine",
        "et",
        "gain",
        "closure",
    )
    assert lp.config.generate is not None
    assert lp.config.generate.gain_thresholds == (35.0, 50.0)
    gain = load_categories(lp.resolve(lp.step("gain").categories))
    assert {c.gain for c in gain.scale} == {12, 6, 1}


def test_smooth_step_without_et_bins(tmp_path, demo_ecalelf, no_events):
    """Smooth Et curves need Et bins: refused before any event is read."""
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[_fit("a", smooth={"scale": "linear", "smear": None})]
    )
    with pytest.raises(InvalidConfig) as err:
        run_pipeline(load_pipeline(path))
    assert str(err.value) == (
        f"{path}: step 'a': smooth.scale = 'linear' needs scale categories with at least two "
        f"Et bins per cell; {CONFIGS / 'cats_eta_r9.yaml'} has none (set smooth.scale: null)"
    )


@pytest.mark.parametrize("name", ["step-2", "2fine", "_x", "a.b", "fine\n"])
def test_step_name_is_checked_by_the_cli_rule(tmp_path, demo_ecalelf, no_events, name):
    """Pipeline step names follow zcalib.outputs.check_step_name, as `zcalib fit --step`
    (`fine\\n` slipped through the former `re.match(...$)`)."""
    path = write_pipeline(tmp_path, demo_ecalelf, steps=[_fit(name)])
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: field 'steps.0.fit.name': Value error, step name {name!r}: not a plain name "
        "(it is used in file names inside the output folder and in correction names); "
        f"allowed: letters, digits and _, starting with a letter (got {name!r})"
    )
