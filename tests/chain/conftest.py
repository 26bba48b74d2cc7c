"""Fixtures of the chain tests: a drifted demo sample and pipeline YAMLs written around it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CONFIGS, ROOT

#: Injected total relative drift of the data energy scale across the run range.
DRIFT = 0.01


@pytest.fixture(scope="session")
def drift_sample(tmp_path_factory):
    """120k data / 360k MC pairs, ECALELF, 1 % linear drift in run number."""
    from zcalib.generate import generate

    return generate(
        tmp_path_factory.mktemp("drift"), n_data=120_000, n_mc=360_000, seed=11, drift=DRIFT
    )


@pytest.fixture(scope="session")
def drift_sample_b(tmp_path_factory):
    """An independent data sample with the same drift (validation of the time stability)."""
    from zcalib.generate import generate

    return generate(
        tmp_path_factory.mktemp("drift_b"), n_data=120_000, n_mc=1_000, seed=12, drift=DRIFT
    )


def datasets_yaml(folder: Path, sample: Any) -> Path:
    """A dataset description of a generated sample."""
    p = folder / "datasets.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "format": "ecalelf",
                "datasets": [
                    {"name": "data", "kind": "data", "files": [str(sample.data)]},
                    {"name": "mc", "kind": "mc", "files": [str(sample.mc)]},
                ],
            }
        )
    )
    return p


def demo_steps(min_events: int = 5_000) -> list[dict[str, Any]]:
    """The steps of ``configs/pipeline_demo.yaml`` with absolute category paths."""
    raw = yaml.safe_load((CONFIGS / "pipeline_demo.yaml").read_text())
    steps = raw["steps"]
    for s in steps:
        if "categories" in s:
            s["categories"] = str(CONFIGS / s["categories"])
        if s["type"] == "run_divide":
            s["min_events"] = min_events
    return steps


def write_pipeline(
    folder: Path,
    sample: Any,
    *,
    steps: list[dict[str, Any]] | None = None,
    output: Path | None = None,
    **extra: Any,
) -> Path:
    """A pipeline YAML in ``folder`` over ``sample`` (the demo steps by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "schema_version": 1,
        "description": "test chain",
        "output": str(output or folder / "out"),
        "datasets": str(datasets_yaml(folder, sample)),
        "mc_weights": [{"name": "pileup", "file": str(ROOT / "corrections" / "pileup_demo.json")}],
        "run": {"executor": "iterative", "chunksize": 200_000},
        "smear_seed": 1,
        "steps": steps if steps is not None else demo_steps(),
        **extra,
    }
    p = folder / "pipeline.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def truth_of(sample: Any) -> dict[str, Any]:
    """The generator's truth record."""
    return json.loads(Path(sample.truth).read_text())
