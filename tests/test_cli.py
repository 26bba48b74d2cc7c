"""CLI contract: exit codes 0/1/2, one-line errors naming file and field, no partial outputs."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CONFIGS
from tests.processors.ntuples import write_ecalelf
from zcalib.cli import main
from zcalib.outputs import file_run_id

CATS = str(CONFIGS / "cats_eta_r9.tsv")


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_histograms_ok_and_reloadable(tmp_path, capsys):
    from zcalib.histograms import load_histograms

    data = write_ecalelf(tmp_path / "d.root", n=2000)
    out = tmp_path / "h.npz"
    rc, stdout, _ = _run(
        [
            "histograms",
            "--data",
            str(data),
            "--mc",
            str(data),
            "--categories",
            CATS,
            "--out",
            str(out),
            "--executor",
            "iterative",
            "--no-progress",
        ],
        capsys,
    )
    assert rc == 0
    assert "wrote" in stdout
    hs = load_histograms(out)
    assert hs.cutflow["data"]["all"] == 2000
    assert hs.kinds == {"data": "data", "mc": "mc"}


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing_branch", "lacks branch(es) R9Ele needed by the format"),
        ("wrong_tree", "no tree 'selected' (trees in this file: other)"),
        ("nan", "non-finite value(s) (NaN/inf), first at entry 17"),
        ("not_root", "not a readable ROOT file"),
        ("empty", "file is empty (0 bytes)"),
    ],
)
def test_bad_input_exit_1_one_line_no_output(tmp_path, capsys, setup, expected):
    p = tmp_path / "in.root"
    if setup == "missing_branch":
        write_ecalelf(p, drop=("R9Ele",))
    elif setup == "wrong_tree":
        write_ecalelf(p, tree="other")
    elif setup == "nan":
        write_ecalelf(p, nan_at=17)
    elif setup == "not_root":
        p.write_text("not root")
    else:
        p.touch()
    out = tmp_path / "out" / "h.npz"
    rc, _, err = _run(
        [
            "histograms",
            "--data",
            str(p),
            "--categories",
            CATS,
            "--out",
            str(out),
            "--executor",
            "iterative",
            "--no-progress",
        ],
        capsys,
    )
    assert rc == 1
    assert err.startswith(f"zcalib: error: {p}")
    assert expected in err
    assert err.count("\n") == 1
    assert not out.exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_malformed_dataset_yaml(tmp_path, capsys):
    y = tmp_path / "ds.yaml"
    y.write_text("format: ecalelf\ndatasets:\n  - name: data\n    files: [a.root\n")
    rc, _, err = _run(
        [
            "histograms",
            "--datasets",
            str(y),
            "--categories",
            CATS,
            "--out",
            str(tmp_path / "h.npz"),
        ],
        capsys,
    )
    assert rc == 1
    assert err.startswith(f"zcalib: error: {y}: malformed YAML at line 5")


def test_unknown_format_in_dataset_yaml(tmp_path, capsys):
    y = tmp_path / "ds.yaml"
    y.write_text("format: csv\ndatasets:\n  - {name: data, kind: data, files: [a.root]}\n")
    rc, _, err = _run(
        [
            "histograms",
            "--datasets",
            str(y),
            "--categories",
            CATS,
            "--out",
            str(tmp_path / "h.npz"),
        ],
        capsys,
    )
    assert rc == 1
    assert err == (
        f"zcalib: error: {y}: field 'format': Input should be 'ecalelf', 'nanoaod', "
        "'flat' or 'parquet' (got 'csv')\n"
    )


def test_dataset_yaml_relative_paths_and_missing_file(tmp_path, capsys):
    y = tmp_path / "ds.yaml"
    y.write_text("datasets:\n  - {name: data, kind: data, files: [missing.root]}\n")
    rc, _, err = _run(
        [
            "histograms",
            "--datasets",
            str(y),
            "--categories",
            CATS,
            "--out",
            str(tmp_path / "h.npz"),
        ],
        capsys,
    )
    assert rc == 1
    assert err == (
        f"zcalib: error: {y}: dataset 'data': input file {tmp_path / 'missing.root'} not found\n"
    )


def test_categories_with_gap(tmp_path, capsys):
    c = tmp_path / "c.tsv"
    c.write_text("scale\t0\t1\t-1\t-1\t-1\t-1\t-1\nscale\t1.1\t2.5\t-1\t-1\t-1\t-1\t-1\n")
    data = write_ecalelf(tmp_path / "d.root", n=10)
    rc, _, err = _run(
        [
            "histograms",
            "--data",
            str(data),
            "--categories",
            str(c),
            "--out",
            str(tmp_path / "h.npz"),
        ],
        capsys,
    )
    assert rc == 1
    assert (
        err == f"zcalib: error: {c}: gap in scale categories: no category covers |eta| [1, 1.1)\n"
    )


def test_usage_error_is_exit_1(capsys):
    rc = None
    with pytest.raises(SystemExit) as exc:
        main(["histograms", "--executor", "spark"])
    rc = exc.value.code
    assert rc == 1
    assert "invalid choice: 'spark'" in capsys.readouterr().err


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "zcalib.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    for sub in ("generate", "histograms", "fit", "demo", "inject"):
        assert sub in proc.stdout


def test_no_progress_hides_coffea_bars(tmp_path, capsys):
    """Regression: coffea draws its bars even with status=False; --no-progress mutes them."""
    data = write_ecalelf(tmp_path / "d.root", n=500)
    argv = [
        "histograms",
        "--data",
        str(data),
        "--categories",
        CATS,
        "--out",
        str(tmp_path / "h.npz"),
        "--executor",
        "iterative",
    ]
    rc, quiet, _ = _run([*argv, "--no-progress"], capsys)
    assert rc == 0
    assert "Processing" not in quiet
    assert "Preprocessing" not in quiet
    rc, shown, _ = _run(argv, capsys)
    assert rc == 0
    assert "Processing" in shown


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"zcalib {version('zcalib')}\n"


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["generate", "--out", "x"], 0, False),
        (["-v", "generate", "--out", "x"], 1, False),
        (["generate", "--out", "x", "-v"], 1, False),
        (["generate", "-vv", "--out", "x"], 2, False),
        (["-v", "generate", "--out", "x", "--seed", "3"], 1, False),
        (["generate", "--out", "x", "--quiet"], 0, True),
        (["-q", "generate", "--out", "x"], 0, True),
    ],
)
def test_verbosity_before_or_after_the_subcommand(argv, verbose, quiet):
    from zcalib.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet, args.debug) == (verbose, quiet, False)


def test_quiet_silences_messages_and_conflicts_with_verbose(tmp_path, capsys):
    argv = ["generate", "--n-data", "300", "--n-mc", "300", "--seed", "2"]
    rc, out, err = _run([*argv, "--out", str(tmp_path / "loud")], capsys)
    assert rc == 0
    assert out.startswith("INFO     generated 300 data")
    assert re.search(r"^wrote\s", out, re.MULTILINE)
    assert len(re.findall(r"\bwrote\s", out)) == 1  # once, not also as a log record
    rc, out, err = _run([*argv, "--out", str(tmp_path / "quiet"), "--quiet"], capsys)
    assert rc == 0
    assert (out, err) == ("", "")
    assert (tmp_path / "quiet" / "data.root").is_file()
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "both"), "-v", "-q"])
    assert exc.value.code == 1
    assert "give -v/--verbose or -q/--quiet, not both" in capsys.readouterr().err
    assert not (tmp_path / "both").exists()


def test_help_shows_defaults(capsys):
    def help_of(*sub):
        with pytest.raises(SystemExit):
            main([*sub, "--help"])
        return re.sub(r"\s+", " ", capsys.readouterr().out)

    shown = {
        "generate": (
            "random seed (default: 1)",
            "data events (pairs) (default: 400000)",
            "ntuple format (default: ecalelf)",
        ),
        "fit": (
            "data bin width [GeV] (default: 0.5)",
            "step name used in output names (default: step)",
            "(default: --config's window, else 80 100)",  # stated by hand, not repeated
            "-q, --quiet",
        ),
    }
    for command, texts in shown.items():
        text = help_of(command)
        assert [t for t in texts if t not in text] == []
        # no empty defaults, and none repeated after a hand-written one
        for bad in ("(default: None)", "(default: False)", "else 80 100) (default"):
            assert bad not in text


@pytest.mark.parametrize("command", ["fit", "systematics"])
@pytest.mark.parametrize("step", ["../../x", "a/b", ".hidden", "", "x y", "2b", "a-b", "_x"])
def test_step_name_escaping_out_is_refused_before_any_work(tmp_path, capsys, step, command):
    out = tmp_path / "out"
    argv = [command, "--data", "missing.root", "--categories", CATS, "--out", str(out)]
    rc, _, err = _run([*argv, "--step", step, "--no-progress"], capsys)
    assert rc == 1
    assert err == (
        f"zcalib: error: --step {step!r}: not a plain name (it is used in file names inside "
        "the output folder and in correction names); allowed: letters, digits and _, "
        "starting with a letter\n"
    )
    assert not out.exists()
    assert not (tmp_path / "x_scales.dat").exists()


def test_write_outputs_refuses_an_escaping_step_name(tmp_path):
    from zcalib.derive import check_step_name
    from zcalib.exceptions import InvalidConfig

    assert check_step_name("step2_fine_v1") == "step2_fine_v1"
    # the pipeline's rule too (one check): no leading digit or _, no - . +, no newline
    for bad in ("../x", "2fine", "_x", "step2-fine", "v1.0", "a+b", "fine\n"):
        with pytest.raises(InvalidConfig, match=rf"^step {re.escape(repr(bad))}: not a plain name"):
            check_step_name(bad)


def test_generated_folders_are_gitignored():
    from tests.conftest import ROOT

    def ignored(*paths):
        proc = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.split()

    generated = [
        "demo_data/data.root",
        "output/demo/corrections.json",
        "notebooks/quickstart_output/histograms.npz",
        "notebooks/casa_output/fit_result.json",
        "demo_data/data.tmp.root",
    ]
    assert ignored(*generated) == generated
    assert ignored("notebooks/quickstart.ipynb", "configs/cats_eta_r9.tsv") == []


def test_fit_prints_a_results_table_not_cut_when_piped(tmp_path, capsys, monkeypatch):
    """``zcalib fit`` prints scale/smear per category with errors and state; written to a
    pipe (pytest's capture) the table is PIPE_WIDTH wide, not cut at rich's 80 columns."""
    import json

    from zcalib.categories import load_categories
    from zcalib.cli import PIPE_WIDTH
    from zcalib.fit import synthetic_histograms
    from zcalib.histograms import save_histograms

    monkeypatch.delenv("COLUMNS", raising=False)
    cats = CONFIGS / "cats_eta_r9.yaml"
    scheme = load_categories(cats)
    hset = synthetic_histograms(
        scheme, n_data=40_000, n_mc=80_000, seed=1, scales=[1.01, 0.99] * 4, smears=[0.01] * 8
    )
    h = save_histograms(hset, tmp_path / "h.npz")
    out_dir = tmp_path / "out"
    argv = ["fit", "--histograms", str(h), "--categories", str(cats), "--out", str(out_dir)]
    rc, out, _ = _run([*argv, "--mc-stat", "sandwich"], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert any(line.strip().startswith("fit converged: EDM") for line in lines)  # the title
    header = next(line for line in lines if "category" in line)
    for col in ("kind", "value", "stat", "MC stat", "stat ⊕ MC", "pairs", "state"):
        assert col in header
    table = [line for line in lines if line.startswith(("┃", "│", "┏", "└"))]
    assert 80 < max(len(line) for line in table) <= PIPE_WIDTH
    # the one-line messages are not wrapped (no file name broken over two lines)
    assert any(line.startswith("wrote ") and line.endswith("fit_result.json") for line in lines)
    record = json.loads((out_dir / "fit_result.json").read_text())
    for c in record["categories"]:
        row = next(line for line in table if f" {c['label']} " in line)
        assert f"{c['value']:.5f}" in row
        assert f"{c['total_stat']:.5f}" in row
        state = "fitted (at bound)" if c["at_bound"] else "fitted"
        assert row.rstrip(" │").endswith(state)
    assert len([line for line in lines if "│ fitted" in line]) == 16


def test_ctrl_c_one_line_own_exit_code_no_worker_tracebacks(demo_ecalelf, tmp_path):
    """Ctrl-C in a terminal (SIGINT to the whole foreground process group: the command and
    its local Dask workers) mid-run: one line on stderr, exit code 130, no traceback, no
    output file, no process left behind."""
    import os
    import signal
    import time

    from zcalib.cli import EXIT_INTERRUPTED

    out = tmp_path / "h.npz"
    argv = ["histograms", "--data", str(demo_ecalelf.data), "--mc", str(demo_ecalelf.mc)]
    argv += ["--categories", CATS, "--out", str(out), "--chunksize", "500", "--workers", "2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcalib.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        env=env,
    )
    t0 = time.monotonic()
    try:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if "local Dask cluster with" in line or not line:
                break
        assert "local Dask cluster" in seen[-1], seen
        t_up = time.monotonic()
        time.sleep(1.0)  # chunks are running (120 chunks take well over a second)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        print(f"cluster up {t_up - t0:.1f} s, exit {time.monotonic() - t_up:.1f} s later")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED == 130
    assert stderr == "zcalib: interrupted (exit code 130)\n"
    assert "Traceback" not in stdout
    assert not out.exists()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the workers end with the cluster
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("worker processes outlived the interrupted command")
    print(f"group gone {time.monotonic() - t0:.1f} s after start")


def test_fit_with_no_selected_data_pair_says_so(tmp_path, capsys):
    """A dataset whose events all fail the selection: the fit names it and the cut that left
    nothing (was: "no dataset of kind 'data' (datasets and kinds: {'data': 'data', ...})")."""
    import numpy as np
    import uproot

    good = write_ecalelf(tmp_path / "mc.root", n=500)
    with uproot.open(good) as f:
        branches = f["selected"].arrays(library="np")
    branches["eleID"] = np.zeros_like(branches["eleID"])  # fails every working point
    bad = tmp_path / "data.root"
    with uproot.recreate(bad) as f:
        f.mktree(
            "selected",
            {k: (v.dtype, v.shape[1:]) if v.ndim == 2 else v.dtype for k, v in branches.items()},
        )
        f["selected"].extend(branches)
    argv = ["fit", "--data", str(bad), "--mc", str(good), "--categories", CATS]
    rc, _, err = _run(
        [*argv, "--out", str(tmp_path / "out"), "--executor", "iterative", "--no-progress"],
        capsys,
    )
    assert rc == 1
    assert err.startswith(
        "zcalib: error: no data pair to fit: dataset 'data' has 500 events, none left after "
        "cut 'id' (cutflow: all 500, two_leptons 500, id 0,"
    )
    assert err.endswith("check the selection, the categories' coverage and the mass range\n")
    assert err.count("\n") == 1


def test_fit_ignore_by_category_name(tmp_path, capsys):
    """``--ignore`` holds scale and smear categories fixed by the fit's names (a category
    without data need not be fixed from Python); a bad name is one line, exit 1."""
    import json

    from zcalib.categories import load_categories
    from zcalib.fit import synthetic_histograms
    from zcalib.histograms import save_histograms

    cats = CONFIGS / "cats_eta_r9.yaml"
    hset = synthetic_histograms(
        load_categories(cats),
        n_data=20_000,
        n_mc=40_000,
        seed=2,
        scales=[1.0] * 8,
        smears=[0.01] * 8,
    )
    h = save_histograms(hset, tmp_path / "h.npz")
    argv = ["fit", "--histograms", str(h), "--categories", str(cats), "--mc-stat", "none"]
    # eta x R9 smear category i shares its regions with scale category i: hold both
    rc, _, err = _run([*argv, "--out", str(tmp_path / "o"), "--ignore", "smear[6]", "6"], capsys)
    assert rc == 0, err
    record = json.loads((tmp_path / "o" / "fit_result.json").read_text())
    states = {(c["type"], c["index"]): c["state"] for c in record["categories"]}
    assert [k for k, s in states.items() if s == "ignored"] == [("scale", 6), ("smear", 6)]
    rc, _, err = _run([*argv, "--out", str(tmp_path / "b"), "--ignore", "smear(6)"], capsys)
    assert rc == 1
    assert err == (
        "zcalib: error: --ignore: 'smear(6)' is not a category; allowed: scale[i], smear[i] "
        "(as the fit names them) or a scale index i\n"
    )
    assert not (tmp_path / "b").exists()


def test_histograms_and_fit_read_a_calibration_config(tmp_path, capsys):
    """``--config`` (a CalibrationConfig YAML) sets what the flags would; a flag given on the
    command line replaces its field (CONFIG_FIELDS, the one table)."""
    import json

    from zcalib.cli import CONFIG_FIELDS
    from zcalib.histograms import MassBinning, load_histograms

    data = write_ecalelf(tmp_path / "d.root", n=2000)
    cfg = tmp_path / "calib.yaml"
    cfg.write_text(
        f"selection: {{id_level: tight}}\ncategories: {CONFIGS / 'cats_eta_r9.yaml'}\n"
        "window: [82, 98]\nbinning: {n_bins: 600}\nsmear_seed: 4\nera: 2023preBPIX\n"
    )
    base = ["histograms", "--config", str(cfg), "--data", str(data), "--mc", str(data)]
    base += ["--executor", "iterative", "--no-progress"]
    rc, _, err = _run([*base, "--out", str(tmp_path / "a.npz")], capsys)
    assert rc == 0, err
    a = load_histograms(tmp_path / "a.npz")
    assert a.metadata["selection"]["id_level"] == "tight"
    assert a.metadata["smear_seed"] == 4
    # binning.n_bins: 600 over 60-120 GeV, aligned to the window [82, 98] (about 600 bins)
    assert a.binning == MassBinning.aligned((82.0, 98.0), 60.0, 120.0, 600)
    assert a.binning.n_bins == 623
    rc, _, err = _run([*base, "--out", str(tmp_path / "b.npz"), "--id", "none"], capsys)
    assert rc == 0, err
    assert load_histograms(tmp_path / "b.npz").metadata["selection"]["id_level"] == "none"
    out = tmp_path / "fit"
    argv = ["fit", "--config", str(cfg), "--histograms", str(tmp_path / "a.npz")]
    argv += ["--min-data", "5", "--min-mc", "5", "--mc-stat", "none", "--ignore"]
    argv += [f"{k}[{i}]" for k in ("scale", "smear") for i in (2, 3, 6, 7)]  # |eta| < 1.2 only
    rc, _, err = _run([*argv, "--out", str(out)], capsys)
    assert (out / "fit_result.json").is_file(), err
    record = json.loads((out / "fit_result.json").read_text())
    assert record["calibration_config"]["selection"]["id_level"] == "tight"
    assert record["fit_config"]["window"][0] == pytest.approx(82.0, abs=0.1)
    assert rc in (0, 3), err  # 2000 identical pairs: the physics is not the point here
    if rc == 0:
        assert json.loads((out / "corrections.json").read_text())["corrections"][0][
            "name"
        ].endswith("_2023preBPIX")
    fields = __import__("zcalib.calibration", fromlist=["x"]).CalibrationConfig.model_fields
    for name in CONFIG_FIELDS.values():  # a field, or `model.field` of a nested model
        section, _, key = name.rpartition(".")
        assert key in (fields[section].annotation.model_fields if section else fields), name
    old = tmp_path / "old.yaml"
    old.write_text("working_point: tight\n")
    rc, _, err = _run([*base[:2], str(old), *base[3:], "--out", str(tmp_path / "c.npz")], capsys)
    assert (rc, err) == (
        1,
        (
            f"zcalib: error: {old}: field 'working_point' was renamed; write selection: "
            "{id_level: ...}\n"
        ),
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("working_pont: tight\n")
    rc, _, err = _run([*base[:2], str(bad), *base[3:], "--out", str(tmp_path / "c.npz")], capsys)
    assert rc == 1
    assert err.startswith(f"zcalib: error: {bad}: unknown option 'working_pont'")
    assert not (tmp_path / "c.npz").exists()


def test_generate_gain_thresholds_and_et_dependence_options(tmp_path, capsys):
    import json

    from zcalib.generate import GAIN_THRESHOLDS

    out = tmp_path / "gen"
    argv = ["generate", "--out", str(out), "--n-data", "300", "--n-mc", "300", "-q"]
    rc, _, err = _run(
        [*argv, "--gain-thresholds", "35,50", "--et-dependence", "A=0.01,P=-1,B=0.009"], capsys
    )
    assert (rc, err) == (0, "")
    truth = json.loads((out / "truth.json").read_text())
    assert truth["gain_thresholds"] == [35.0, 50.0]
    dep = truth["et_dependence"]
    assert (dep["scale_amplitude"], dep["scale_power"], dep["smear_b"]) == (0.01, -1.0, 0.009)
    # the default the help states is the generator's
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert f"(default: {GAIN_THRESHOLDS[0]:g},{GAIN_THRESHOLDS[1]:g})" in text
    assert "keys A (|A| < 0.2, default 0), P (|P| <= 5, default 1), B [GeV] (0..1" in text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--gain-thresholds",
            "50,35",
            (
                "--gain-thresholds '50,35'; allowed: two seed energies [GeV] G6,G1 with "
                "0 < G6 < G1, e.g. 35,50"
            ),
        ),
        (
            "--gain-thresholds",
            "35",
            (
                "--gain-thresholds '35'; allowed: two seed energies [GeV] G6,G1 with "
                "0 < G6 < G1, e.g. 35,50"
            ),
        ),
        (
            "--et-dependence",
            "A=0.5",
            (
                "--et-dependence 'A=0.5': A (scale_amplitude): value 0.5 out of range; "
                "allowed: [-0.2, 0.2]"
            ),
        ),
        (
            "--et-dependence",
            "B=-1",
            "--et-dependence 'B=-1': B (smear_b): value -1.0 out of range; allowed: [0, 1]",
        ),
        (
            "--et-dependence",
            "A=0.01,Q=2",
            (
                "--et-dependence 'A=0.01,Q=2': bad item 'Q=2'; allowed: KEY=VALUE pairs separated "
                "by commas, keys A, P, B (e.g. A=0.01,P=-1,B=0.009)"
            ),
        ),
        (
            "--et-dependence",
            "A=0.01,A=0.02",
            (
                "--et-dependence 'A=0.01,A=0.02': bad item 'A=0.02'; allowed: KEY=VALUE pairs "
                "separated by commas, keys A, P, B (e.g. A=0.01,P=-1,B=0.009)"
            ),
        ),
    ],
)
def test_generate_bad_option_values_one_line_exit_1(tmp_path, capsys, option, value, message):
    out = tmp_path / "gen"
    rc, _, err = _run(
        ["generate", "--out", str(out), "--n-data", "300", "--n-mc", "300", option, value],
        capsys,
    )
    assert (rc, err) == (1, f"zcalib: error: {message}\n")
    assert not out.exists()


def test_fit_smooth_options_refused_without_et_bins_before_any_work(tmp_path, capsys):
    """The pipeline's check (tests/chain/test_config.py::test_smooth_step_without_et_bins),
    with the CLI's way to turn the curve off; found before the event loop."""
    from zcalib.cli import SMOOTH_FORMS
    from zcalib.fit.smooth import FORMS

    assert SMOOTH_FORMS == FORMS
    out = tmp_path / "out"
    argv = ["fit", "--data", "missing.root", "--categories", CATS, "--out", str(out)]
    rc, _, err = _run([*argv, "--smooth-smear", "sqrt_inverse"], capsys)
    assert rc == 1
    assert err == (
        "zcalib: error: --smooth-smear: smooth.smear = 'sqrt_inverse' needs smear categories "
        f"with at least two Et bins per cell; {CATS} has none (leave out --smooth-smear)\n"
    )
    assert not out.exists()


@pytest.mark.slow
def test_fit_smooth_options_write_the_curves_of_the_pipeline_path(
    et_dependent_fit, tmp_path, capsys
):
    """`zcalib fit --histograms … --smooth-scale power --smooth-smear sqrt_inverse` writes
    the payload and record write_outputs(smooth=fit_smooth(...)) writes (the pipeline's
    path): the same curve parameters, formulas in corrections.json."""
    import json

    from zcalib.histograms import save_histograms

    _, scheme, hset, result, _ = et_dependent_fit
    h = tmp_path / "h.npz"
    save_histograms(hset, h)
    out = tmp_path / "fit"
    argv = ["fit", "--histograms", str(h), "--out", str(out), "--step", "et", "-q"]
    rc, _, err = _run([*argv, "--smooth-scale", "power", "--smooth-smear", "sqrt_inverse"], capsys)
    assert (rc, err) == (0, "")
    record = json.loads((out / "fit_result.json").read_text())
    want = fit_smooth_dict(result, scheme, hset)
    for kind in ("scale", "smear"):
        got = record["smooth"][kind]
        assert [(c["categories"], c["form"], c["status"]) for c in got] == [
            (c["categories"], c["form"], "converged") for c in want[kind]
        ]
        np.testing.assert_allclose(
            [list(c["parameters"].values()) for c in got],
            [list(c["parameters"].values()) for c in want[kind]],
            rtol=1e-6,
        )
    assert "formula" in (out / "corrections.json").read_text()


def fit_smooth_dict(result, scheme, hset):
    from zcalib.fit.smooth import fit_smooth

    return fit_smooth(result, scheme, hset).to_dict()


def test_skim_and_run_divide_read_a_calibration_config(tmp_path, capsys):
    """``--config`` on the other event-loop commands: the selection (here |eta| < 1, tight
    ID) is the one `histograms --config` applies."""
    import json

    import yaml

    from zcalib.histograms import load_histograms

    data = write_ecalelf(tmp_path / "d.root", n=2000)
    cfg = tmp_path / "calib.yaml"
    cfg.write_text("selection: {id_level: tight, max_abs_eta: 1.0}\n")
    common = ["--data", str(data), "--executor", "iterative", "--no-progress", "-q"]
    with_cfg = [*common, "--config", str(cfg)]
    rd = ["run-divide", "--min-events", "10"]
    assert _run([*rd, *common, "--out", str(tmp_path / "all.yaml")], capsys)[0] == 0
    assert _run([*rd, *with_cfg, "--out", str(tmp_path / "cfg.yaml")], capsys)[0] == 0
    assert _run(["histograms", *with_cfg, "--out", str(tmp_path / "h.npz")], capsys)[0] == 0

    def pairs(name):
        return sum(b["pairs"] for b in yaml.safe_load((tmp_path / name).read_text())["bins"])

    selected = load_histograms(tmp_path / "h.npz").cutflow["data"]["mass"]
    assert pairs("cfg.yaml") == selected < pairs("all.yaml")
    assert _run(["skim", *common, "--out", str(tmp_path / "s_all")], capsys)[0] == 0
    assert _run(["skim", *with_cfg, "--out", str(tmp_path / "s_cfg")], capsys)[0] == 0
    skims = [json.loads((tmp_path / s / "skim.json").read_text()) for s in ("s_all", "s_cfg")]
    for name, record in zip(("s_all", "s_cfg"), skims, strict=True):
        # one run id in every file of a skim folder, another for each skim (zcalib.outputs)
        files = [p for p in (tmp_path / name).rglob("*") if p.is_file()]
        assert {file_run_id(p) for p in files} == {record["run_id"]}, files
    assert skims[0]["run_id"] != skims[1]["run_id"]
    assert skims[1]["selection"]["max_abs_eta"] == 1.0
    assert skims[1]["selection"]["id_level"] == "tight"
    assert skims[1]["files"][0]["rows"] < skims[0]["files"][0]["rows"]
    for command in ("time-stability", "skim", "run-divide"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--config YAML" in capsys.readouterr().out


def test_validate_lineshape_stats_read_a_calibration_config(tmp_path, capsys):
    """``--config`` on the validation commands (and on scan/inject): ``lineshape`` filled from inputs with a
    CalibrationConfig (categories, selection) fits the same events as with the equivalent
    flags (without it, no categories: refused); a bad file is refused before any work,
    naming the file, the key and what is allowed (exit 1, no output)."""
    import json

    data = write_ecalelf(tmp_path / "d.root", n=2000)
    cfg = tmp_path / "calib.yaml"
    cfg.write_text(
        "selection: {id_level: tight, max_abs_eta: 1.0}\n"
        f"categories: {CONFIGS / 'cats_eta_r9.yaml'}\n"
    )
    sel = tmp_path / "sel.yaml"
    sel.write_text("id_level: tight\nmax_abs_eta: 1.0\n")
    common = ["lineshape", "--data", str(data), "--mode", "inclusive", "--min-events", "10"]
    common += ["--no-plots", "--executor", "iterative", "--no-progress", "-q"]
    variants = {
        "config": ["--config", str(cfg)],
        "flags": ["--categories", str(CONFIGS / "cats_eta_r9.yaml"), "--selection", str(sel)],
    }
    fitted = {}
    for name, extra in variants.items():
        rc, _, err = _run([*common, *extra, "--out", str(tmp_path / name)], capsys)
        assert rc == 0, err
        rows = json.loads((tmp_path / name / "lineshape.json").read_text())["rows"]
        fitted[name] = rows[0]["data"]["n_events"]
    # |eta| < 1 of electrons drawn in |eta| < 1.2 keeps at most (1/1.2)^2 = 69 % of the pairs
    assert fitted["config"] == fitted["flags"]
    assert 100 < fitted["config"] < 0.7 * 2000

    bad = tmp_path / "bad.yaml"
    bad.write_text("working_pont: tight\n")
    allowed = (
        "schema_version, input_format, treename, collection, column_map, selection, "
        "categories, window, binning, corrections, mc_weights, systematic, smear_seed, era"
    )
    message = f"zcalib: error: {bad}: unknown option 'working_pont'; allowed: {allowed}\n"
    missing = str(tmp_path / "missing.npz")  # never read: the config is checked first
    for argv in (
        ["validate", "--plot-cats", str(CONFIGS / "plot_cats_standard.tsv")],
        ["stats"],
        ["lineshape"],
        ["scan"],
        ["inject"],
    ):
        out = tmp_path / f"bad_{argv[0]}"
        rc, _, err = _run(
            [*argv, "--config", str(bad), "--histograms", missing, "--out", str(out)], capsys
        )
        assert (rc, err) == (1, message), argv[0]
        assert not out.exists()
    window = tmp_path / "window.yaml"
    window.write_text("window: [100, 80]\n")
    rc, _, err = _run(
        ["stats", "--config", str(window), "--data", str(data), "--out", str(tmp_path / "w")],
        capsys,
    )
    assert rc == 1
    assert err == (
        f"zcalib: error: {window}: window (100.0, 80.0) must lie inside binning lo-hi "
        "(60, 120) with lo < hi\n"
    )
    assert not (tmp_path / "w").exists()


def test_subcommands_registered_in_pipeline_order_one_module_each():
    """``zcalib --help`` lists the subcommands in pipeline order, as registered (nothing
    re-sorted); each is a module of the ``zcalib.cli`` package with its parser function
    beside its handler."""
    import importlib

    from zcalib.cli import PIPELINE_ORDER, build_parser

    assert "{" + ",".join(PIPELINE_ORDER) + "}" in build_parser().format_help()
    for name in PIPELINE_ORDER:
        module = importlib.import_module(f"zcalib.cli.{name.replace('-', '_')}")
        assert callable(module.add_parser)
        assert callable(module.run)
