"""The chain subcommands: run-divide, time-stability, combine, pipeline (exit codes 0/1)."""

from __future__ import annotations

import pytest
import yaml

from tests.chain.conftest import write_pipeline
from tests.conftest import CONFIGS
from zcalib.cli import main

LOOP = ["--executor", "iterative", "--no-progress"]


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, " ".join(cap.out.split()), cap.err  # rich wraps long lines


def test_run_divide_time_stability_combine(demo_ecalelf, tmp_path, capsys):
    data, mc = str(demo_ecalelf.data), str(demo_ecalelf.mc)
    bins = tmp_path / "run_bins.yaml"
    rc, out, err = _run(
        ["run-divide", "--data", data, "--min-events", "4000", "--out", str(bins), *LOOP], capsys
    )
    assert rc == 0, err
    assert "run bins (run granularity)" in out
    assert bins.is_file()
    assert bins.with_suffix(".dat").is_file()
    ts = tmp_path / "ts"
    rc, out, err = _run(
        [
            "time-stability",
            "--data",
            data,
            "--mc",
            mc,
            "--run-bins",
            str(bins),
            "--out",
            str(ts),
            *LOOP,
        ],
        capsys,
    )
    assert rc == 0, err
    assert out.count("peak flatness chi2/ndf before") == 1
    assert out.count("wrote ") == 1
    assert {p.name for p in ts.iterdir()} >= {
        "corrections.json",
        "time_stability.json",
        "time_stability.png",
        "time_stability_scales.dat",
    }
    step = tmp_path / "step.tsv"
    from zcalib.categories import load_categories
    from zcalib.corrections import write_only_step

    scheme = load_categories(CONFIGS / "cats_eta_r9.yaml")
    write_only_step(step, scheme, [1.01] * 8, [1e-4] * 8)
    combined = tmp_path / "combined.dat"
    rc, out, err = _run(
        [
            "combine",
            "--scales",
            str(ts / "time_stability_scales.dat"),
            "--only-step",
            str(step),
            "--out",
            str(combined),
        ],
        capsys,
    )
    assert rc == 0, err
    n_bins = len(yaml.safe_load(bins.read_text())["bins"])
    assert f"({n_bins * 8} rows)" in out


def test_time_stability_bad_run_bins_exit_1(demo_ecalelf, tmp_path, capsys):
    bins = tmp_path / "bins.dat"
    bins.write_text("355000\t355100\n")
    rc, _, err = _run(
        [
            "time-stability",
            "--data",
            str(demo_ecalelf.data),
            "--mc",
            str(demo_ecalelf.mc),
            "--run-bins",
            str(bins),
            "--out",
            str(tmp_path / "ts"),
            *LOOP,
        ],
        capsys,
    )
    assert rc == 1
    assert err.startswith(f"zcalib: error: {bins}: data run ")
    assert err.count("\n") == 1
    assert not (tmp_path / "ts").exists()


def test_pipeline_cli_stop_resume_and_bad_config(demo_ecalelf, tmp_path, capsys):
    steps = [
        {"name": "rd", "type": "run_divide", "min_events": 4000},
        {"name": "ts", "type": "time_stability", "needs": ["rd"]},
        {
            "name": "fit",
            "type": "fit",
            "categories": str(CONFIGS / "cats_eta_r9.yaml"),
            "needs": ["ts"],
            "fit": {"min_data": 20, "min_mc": 40},
        },
    ]
    path = write_pipeline(tmp_path, demo_ecalelf, steps=steps)
    rc, out, err = _run(["pipeline", str(path), "--stop-after", "ts"], capsys)
    assert rc == 0, err
    assert "stopped after ts: no final outputs yet" in out
    rc, out, err = _run(["pipeline", str(path)], capsys)
    assert rc == 0, err
    assert "pipeline: 1 step(s) ran, 2 cached" in out
    assert (tmp_path / "out" / "final" / "corrections.json").is_file()
    rc, out, err = _run(["pipeline", str(path), "--force", "ts"], capsys)
    assert rc == 0, err
    assert "pipeline: 2 step(s) ran, 1 cached" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        path.read_text().replace("needs: [ts]", "needs: [tss]").replace("- ts\n", "- tss\n")
    )
    rc, _, err = _run(["pipeline", str(bad)], capsys)
    assert rc == 1
    assert err == (
        f"zcalib: error: {bad}: step 'fit' needs unknown step 'tss'; known steps: rd, ts, fit\n"
    )


@pytest.mark.parametrize(
    "command", ["run-divide", "time-stability", "combine", "assemble", "pipeline"]
)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "Example" in capsys.readouterr().out
