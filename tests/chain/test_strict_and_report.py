"""``zcalib pipeline --strict`` (exit 4 when the chain does not close) and the pipeline
report headlining the derivation step by step."""

from __future__ import annotations

import re

import pytest

from tests.chain.conftest import write_pipeline
from tests.conftest import CONFIGS
from zcalib.cli import EXIT_NOT_CLOSED, main
from zcalib.outputs import check_one_run

FIT = {"min_data": 20, "min_mc": 40}


def _steps(max_significance: float):
    return [
        {"name": "coarse", "type": "fit", "categories": str(CONFIGS / "cats_eta_r9.yaml"),
         "fit": FIT},
        {"name": "closure", "type": "closure", "categories": str(CONFIGS / "cats_eta_r9.yaml"),
         "needs": ["coarse"], "max_significance": max_significance, "fit": FIT},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def strict_chain(demo_ecalelf, tmp_path_factory):
    """A fit + closure chain whose closure threshold (0.01σ) no residual can pass, run once
    without --strict (exit 0: a warning only)."""
    folder = tmp_path_factory.mktemp("strict")
    path = write_pipeline(folder, demo_ecalelf, steps=_steps(0.01), mc_weights=[])
    assert main(["pipeline", str(path), "-q"]) == 0
    return path


def test_strict_pipeline_exits_4_when_the_chain_does_not_close(strict_chain, capsys):
    rc = main(["pipeline", str(strict_chain), "--strict", "-q"])  # cached: the same verdict
    err = capsys.readouterr().err
    assert rc == EXIT_NOT_CLOSED == 4
    assert err.endswith("zcalib: the chain does not close (--strict): exit 4\n")
    assert (strict_chain.parent / "out" / "final" / "pipeline.json").is_file()  # all written


def test_strict_needs_a_closure_step_before_any_work(demo_ecalelf, tmp_path, capsys):
    path = write_pipeline(tmp_path, demo_ecalelf, steps=_steps(3.0)[:1], mc_weights=[])
    rc = main(["pipeline", str(path), "--strict"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err == (
        f"zcalib: error: {path}: strict: the pipeline has no step of type 'closure' to tell "
        "whether the chain closes; add one (see configs/pipeline_demo.yaml) or drop --strict\n"
    )
    assert not (tmp_path / "out" / "coarse").exists()


def test_report_headlines_the_derivation_step_by_step(strict_chain, capsys):
    out = strict_chain.parent / "out"
    for folder in (out / "coarse", out / "closure", out / "final"):
        assert check_one_run(folder) is not None  # each folder: one run, with its id
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    sections = re.findall(r"<h2>([^<]*)</h2>", page)
    # the derivation first, then every fit step in pipeline order (not the closure alone)
    assert sections[:3] == ["Derivation", "Fit: coarse", "Fit: closure"]
    assert "pipeline 2 steps: test chain" in page
    table = page.split('id="derivation"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    first = [re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", r)[0]) for r in rows]
    assert first == ["coarse", "closure"]
    assert "8 scales" in rows[0]
    assert "8 smearings" in rows[0]
    assert "does NOT close" in rows[1]
    assert "pair regions, −2 ln λ (vs saturated)" in rows[0]
    for step in ("coarse", "closure"):  # each fit's summary plot, embedded
        section = page.split(f'<section id="fit-{step}">')[1].split("</section>")[0]
        assert '<img alt="scales and smearings per category" src="data:image/png;base64,' in section
