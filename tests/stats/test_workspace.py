from __future__ import annotations

import math

import numpy as np
import pytest

from zcalib.exceptions import InputError, InvalidConfig
from zcalib.stats import (
    StatsConfig,
    build_model,
    build_templates,
    default_steps,
    shift_smear,
    steps_from_corrections,
)


def test_shift_smear_moves_and_widens_but_keeps_content():
    h = 0.01
    u = np.arange(400) * h
    t = np.exp(-0.5 * ((u - 2.0) / 0.1) ** 2)
    shifted = shift_smear(t, h, 0.037, 0.0)
    smeared = shift_smear(t, h, 0.0, 0.05**2)

    def moments(x):
        w = x / x.sum()
        mean = (w * u).sum()
        return mean, math.sqrt((w * (u - mean) ** 2).sum())

    assert shifted.sum() == pytest.approx(t.sum(), rel=1e-12)
    assert smeared.sum() == pytest.approx(t.sum(), rel=1e-9)
    assert moments(shifted)[0] - moments(t)[0] == pytest.approx(0.037, abs=1e-9)
    # exact bin integration adds the h²/6 of two box-car bins
    assert moments(smeared)[1] ** 2 - moments(t)[1] ** 2 == pytest.approx(
        0.05**2 + h**2 / 6, rel=1e-6
    )


def test_steps_from_corrections_are_the_derived_uncertainties(derivation):
    scheme = derivation.corrected.scheme()
    steps = steps_from_corrections(derivation.corrections, scheme, smeared_mc=True)
    res = derivation.result
    for k, c in enumerate(res.scales):
        assert steps.scale[k] == pytest.approx(c.total_stat / c.value, rel=1e-6)
    for k, c in enumerate(res.smears):
        assert steps.smear[k] == pytest.approx(c.total_stat, rel=1e-6)
        assert steps.smear_base[k] == pytest.approx(c.value, rel=1e-6)
    unsmeared = steps_from_corrections(derivation.corrections, scheme, smeared_mc=False)
    assert unsmeared.smear_base == (0.0,) * len(scheme.smear)


def test_workspace_structure(derivation):
    hset = derivation.corrected
    scheme = hset.scheme()
    cfg = StatsConfig()
    model = build_model(hset, default_steps(scheme, cfg), cfg)
    ws = model.workspace
    names = [c["name"] for c in ws["channels"]]
    assert names == [t.name for t in model.templates]
    assert all(t.cells[0] == t.cells[1] for t in model.templates)  # diagonal regions
    assert len(names) + len(model.dropped) == scheme.n_cells
    ch = ws["channels"][0]
    (sample,) = ch["samples"]
    types = {(m["type"], m["name"]) for m in sample["modifiers"]}
    i = model.templates[0].cells[0]
    assert ("normfactor", f"norm_{ch['name']}") in types
    assert ("staterror", f"staterror_{ch['name']}") in types
    assert ("histosys", f"scale_{i}") in types
    assert ("histosys", f"smear_{i}") in types
    assert len(sample["data"]) == 20  # 1 GeV bins in 80-100
    obs = {o["name"]: o["data"] for o in ws["observations"]}
    assert sum(obs[ch["name"]]) == pytest.approx(sum(sample["data"]), rel=1e-9)
    # cabinetry config: strict schema, data sample, one normfactor per region
    cc = model.cabinetry_config
    assert set(cc) == {"General", "Regions", "Samples", "NormFactors", "Systematics"}
    assert len(cc["NormFactors"]) == len(names)


def test_region_selection_and_config_errors(derivation):
    hset = derivation.corrected
    steps = default_steps(hset.scheme())
    all_t, _ = build_templates(hset, steps, StatsConfig(regions="all"))
    assert any(t.cells[0] != t.cells[1] for t in all_t)
    (one,), _ = build_templates(hset, steps, StatsConfig(regions=(0,)))
    assert one.code == 0
    with pytest.raises(InvalidConfig, match="regions' lists \\[99999\\]"):
        build_templates(hset, steps, StatsConfig(regions=(99999,)))
    with pytest.raises(InvalidConfig, match="variation 'smear_up' is not in the histograms"):
        build_templates(derivation.uncorrected, steps, StatsConfig(mc_variation="smear_up"))
    with pytest.raises(InvalidConfig, match="field 'window'"):
        StatsConfig(window=(100, 80))
    with pytest.raises(InvalidConfig, match="field 'regions'"):
        StatsConfig(regions="offdiagonal")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="outside the histogram mass range"):
        build_templates(hset, steps, StatsConfig(window=(50, 100)))


def test_steps_from_a_file_without_a_smear_correction(tmp_path, derivation):
    from zcalib.corrections import build_scale_correction, write_correction_set

    scheme = derivation.corrected.scheme()
    corr = build_scale_correction(
        "s", scheme, [1.0] * len(scheme.scale), [1e-3] * len(scheme.scale), description="test"
    )
    p = write_correction_set(tmp_path / "only_scale.json", [corr], description="test")
    with pytest.raises(InputError, match="exactly one correction with output 'smear'"):
        steps_from_corrections(p, scheme, smeared_mc=False)


def test_parse_regions_text() -> None:
    """``--regions`` text (the CLI's) is read by the library: names, codes, or a message
    naming the option, the value and what is allowed."""
    from zcalib.stats.workspace import parse_regions

    assert parse_regions("diagonal") == "diagonal"
    assert parse_regions("all") == "all"
    assert parse_regions("0, 9,18") == (0, 9, 18)
    with pytest.raises(InvalidConfig) as err:
        parse_regions("0,x", "--regions")
    assert str(err.value) == (
        "--regions '0,x': allowed: 'diagonal', 'all' or comma-separated region codes"
    )
