"""configs/pipeline_derivation.yaml, the chain of a real derivation, run as shipped at a
reduced size: time stability -> coarse |eta| x R9 -> fine |eta| x R9 -> Et (scales and
smearings) -> gain -> closure, with the final EGM payload."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import yaml

from tests.conftest import CONFIGS
from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline

#: The only changes made to the shipped file: the sizes (and the output folder).
SIZES = {"n_data": 40_000, "n_mc": 120_000}
MIN_EVENTS = 4_000


def shrunk(tmp_path):
    """The shipped derivation pipeline with its event counts shrunk, written beside the
    shipped file's categories (paths stay relative to configs/, as shipped)."""
    raw = yaml.safe_load((CONFIGS / "pipeline_derivation.yaml").read_text())
    raw["generate"] = {**raw["generate"], **SIZES}
    raw["output"] = str(tmp_path / "out")
    for step in raw["steps"]:
        if step["type"] == "run_divide":
            step["min_events"] = MIN_EVENTS
    shipped = load_pipeline(CONFIGS / "pipeline_derivation.yaml")
    path = tmp_path / "pipeline_derivation.yaml"
    for step in raw["steps"]:  # the same files, addressed from the copy's folder
        if "categories" in step:
            step["categories"] = str(shipped.resolve(step["categories"]))
    for w in raw["mc_weights"]:
        w["file"] = str(shipped.resolve(w["file"]))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_shipped_derivation_pipeline_runs_and_closes(tmp_path):
    """The shipped derivation chain (sizes shrunk to 40k data / 120k MC) closes, and its final
    EGM payload passes `correction validate` and evaluates with the analysts' calls."""
    import correctionlib

    from tests.chain.test_pipeline import _electrons
    from tests.corrections.conftest import _run_correction_validate

    lp = load_pipeline(shrunk(tmp_path))
    shipped = load_pipeline(CONFIGS / "pipeline_derivation.yaml")
    assert lp.order == shipped.order
    assert [s.model_dump(exclude={"categories", "min_events"}) for s in lp.config.steps] == [
        s.model_dump(exclude={"categories", "min_events"}) for s in shipped.config.steps
    ]
    t0 = time.perf_counter()
    res = run_pipeline(lp)
    print(f"\nshrunk derivation: {time.perf_counter() - t0:.1f} s (incl. generating the inputs)")
    closure = json.loads((res.output / "closure" / "closure.json").read_text())
    print(closure["verdict"])
    assert closure["status"] == "converged"
    assert closure["closes"] is True, closure["verdict"]
    assert closure["max_scale_pull"] < 3
    assert closure["max_smear_significance"] < 3
    for name in ("coarse", "fine", "et", "gain"):
        fit = json.loads((res.output / name / "fit_result.json").read_text())
        assert fit["status"] == "converged", name
    # the final payload: valid, and evaluated with the EGM example's calls
    final = res.final["corrections"]
    out = _run_correction_validate(final)
    assert out.returncode == 0, out.stdout + out.stderr
    cset = correctionlib.CorrectionSet.from_file(str(final))
    run, eta, r9, pt = _electrons(res.output / "data" / "data.root")
    run, eta, r9, pt = run[:20_000], eta[:20_000], r9[:20_000], pt[:20_000]
    truth = json.loads((res.output / "data" / "truth.json").read_text())
    gain = np.full(len(pt), 12)
    scale = cset.compound["EGMScale_Compound_Ele_2022preEE"].evaluate(
        "scale", run, eta, r9, eta, pt, gain
    )
    escale = cset.compound["EGMScale_Compound_Ele_2022preEE"].evaluate(
        "escale", run, eta, r9, eta, pt, gain
    )
    # the compound undoes the injected drift: scale x drift is flat in run within its error
    mid, width = truth["run_mid"], truth["runs"][1] - truth["runs"][0]
    drift = 1 + truth["drift"] * (run - mid) / width
    early, late = run < np.quantile(run, 0.25), run > np.quantile(run, 0.75)
    raw_ratio = drift[late].mean() / drift[early].mean()
    corrected = (scale * drift)[late].mean() / (scale * drift)[early].mean()
    assert abs(raw_ratio - 1) > 0.004
    assert abs(corrected - 1) < 3 * np.median(escale), (raw_ratio, corrected)
    assert np.all((escale > 0) & (escale < 0.02))
    smear_and_syst = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    smear = smear_and_syst.evaluate("smear", pt, r9, eta)
    esmear = smear_and_syst.evaluate("esmear", pt, r9, eta)
    assert np.all((smear >= 0) & (smear < 0.05))
    assert np.all(esmear > 0)
    z = cset["EGMRandomGenerator"].evaluate("stdnormal", pt, r9, eta, np.arange(len(pt)) * 1.0)
    assert abs(np.std(z) - 1) < 0.05
    # the final smearing is the Et step's, binned in pt: each (|eta| x R9 cell, Et bin)
    # evaluates to that bin's fitted value; the Et step's scales were refitted on MC smeared
    # ahead by those smearings (zcalib.api.run_step's default for Et scale categories)
    et_fit = json.loads((res.output / "et" / "fit_result.json").read_text())
    assert et_fit["et_scales_refit"]["status"] == "converged"
    et_smears = [c for c in et_fit["categories"] if c["kind"] == "smear"]
    assert len(et_smears) == 24
    for c in et_smears:
        b = c["bins"]
        pt_mid = 0.5 * (max(b["et"][0], 20.0) + min(b["et"][1], 90.0))
        args = (pt_mid, min(0.5 * sum(b["r9"]), 0.98), 0.5 * sum(b["abs_eta"]))
        assert smear_and_syst.evaluate("smear", *args) == pytest.approx(c["value"], abs=1e-12)
