"""A pipeline stops at a fit step whose fit failed: exit code 3, the record, no payload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.chain.conftest import write_pipeline
from tests.conftest import CONFIGS
from zcalib.cli import main
from zcalib.fit import FitConfig


def test_pipeline_stops_at_a_failed_fit(
    drift_sample: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A real fit that fails (iteration limit 1, EDM tolerance 1e-300) stops the chain."""
    import zcalib.fit as fit_pkg

    real = fit_pkg.fit_histograms

    def starved(hset: Any, config: FitConfig | None = None, **kw: Any) -> Any:
        cfg = (config or FitConfig()).with_overrides(
            max_iter=1, edm_tolerance=1e-300, mc_stat="none"
        )
        return real(hset, cfg, **kw)

    monkeypatch.setattr(fit_pkg, "fit_histograms", starved)
    steps = [
        {"name": "step2", "type": "fit", "categories": str(CONFIGS / "cats_eta_r9.tsv")},
        {
            "name": "step3",
            "type": "fit",
            "categories": str(CONFIGS / "cats_eta_r9.tsv"),
            "needs": ["step2"],
        },
    ]
    path = write_pipeline(tmp_path, drift_sample, steps=steps, output=tmp_path / "out")
    rc = main(["pipeline", str(path)])
    err = capsys.readouterr().err
    assert rc == 3
    assert "step 'step2' (iteration 0): fit failed: the estimated distance" in err
    out = tmp_path / "out"
    step2 = next(out.rglob("step2"))
    assert (step2 / "fit_result.json").exists()
    assert not (step2 / "corrections.json").exists()
    assert json.loads((step2 / "fit_result.json").read_text())["status"] == "failed"
    assert not any(out.rglob("step3/fit_result.json"))
    assert not (out / "final" / "corrections.json").exists()
