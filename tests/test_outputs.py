"""A derivation folder as a unit (``zcalib.outputs``, ``zcalib._atomic``): one run id per
folder, ``report`` refusing a mix, writability before any work, stale temporaries of a
killed run cleaned, metrics inside ``--out``, no links out of the folder in the report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CONFIGS
from zcalib.cli import main
from zcalib.outputs import file_run_id

CATS = str(CONFIGS / "cats_eta_r9.yaml")


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _fit_argv(demo, out, *more):
    opts = ["--executor", "iterative", "--no-progress", "--min-data", "20", "--min-mc", "40"]
    files = ["--data", str(demo.data), "--mc", str(demo.mc)]
    return ["fit", *files, "--categories", CATS, "--out", str(out), *opts, *more]


@pytest.fixture(scope="module")
def fitted(demo_ecalelf, tmp_path_factory):
    """``zcalib fit`` from ntuples into ``<tmp>/parent/deriv`` (one run)."""
    out = tmp_path_factory.mktemp("outputs") / "parent" / "deriv"
    assert main(_fit_argv(demo_ecalelf, out, "-q")) == 0
    return out


def test_every_output_of_a_run_carries_its_run_id_and_metrics_are_inside_out(fitted):
    names = sorted(p.name for p in fitted.iterdir())
    assert names == [
        "corrections.json",
        "fit_result.json",
        "histograms.npz",
        "run.metrics.json",
        "step_only_step.tsv",
        "step_scales.dat",
        "step_smearings.dat",
    ]
    ids = {n: file_run_id(fitted / n) for n in names}
    assert len(set(ids.values())) == 1, ids
    assert None not in ids.values()
    # nothing next to the folder (the metrics used to land in <parent>/deriv.metrics.json)
    assert sorted(p.name for p in fitted.parent.iterdir()) == ["deriv"]


def test_report_refuses_a_folder_mixing_two_runs(fitted, tmp_path, capsys):
    import shutil

    d = tmp_path / "deriv"
    shutil.copytree(fitted, d)
    first = file_run_id(d / "step_scales.dat")
    # a second run into the same folder under another step name: it replaces corrections.json
    # and fit_result.json but leaves step_scales.dat of the first run
    argv = ["fit", "--histograms", str(d / "histograms.npz"), "--categories", CATS]
    rc, _, err = _run(
        [*argv, "--out", str(d), "--step", "other", "--min-data", "20", "--min-mc", "40", "-q"],
        capsys,
    )
    assert rc == 0, err
    second = file_run_id(d / "fit_result.json")
    assert second != first
    rc, _, err = _run(["report", str(d)], capsys)
    assert rc == 1
    assert err == (
        f"zcalib: error: {d}: files of two runs: corrections.json (run {second}) and "
        f"histograms.npz (run {first}); rerun the command into an empty folder\n"
    )
    assert not (d / "report.html").exists()


def test_report_embeds_no_file_linked_from_outside(fitted, tmp_path, capsys):
    import shutil

    d = tmp_path / "deriv"
    shutil.copytree(fitted, d)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.json").write_text('{"password": "hunter2"}')
    (outside / "secret.dat").write_text("# hunter2 legacy\n")
    (d / "linked.json").symlink_to(outside / "secret.json")
    (d / "linked.dat").symlink_to(outside / "secret.dat")
    (d / "sub").symlink_to(outside, target_is_directory=True)
    rc, _, err = _run(["report", str(d)], capsys)
    assert rc == 0, err
    page = (d / "report.html").read_text()
    assert "hunter2" not in page
    assert "linked.json" not in page
    assert "fit_result.json" in page  # the folder's own files are there


@pytest.mark.parametrize("how", ["under_a_file", "immutable"])
def test_unwritable_out_is_exit_1_before_any_work(demo_ecalelf, tmp_path, capsys, how):
    """The output folder is checked before the fill: a one-line error naming it, exit 1.

    Runs as root, so permission bits would not stop the write: the folder is below a
    regular file, or an existing folder made immutable (``chattr +i``, which root obeys).
    """
    if how == "under_a_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "deriv"
        reason = "output folder cannot be created (Not a directory)"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        chattr = subprocess.run(["chattr", "+i", str(out)], check=False, capture_output=True)
        if chattr.returncode != 0:
            pytest.skip("chattr +i is not supported on this file system")
        reason = "output folder is not writable"
    try:
        rc, stdout, err = _run(_fit_argv(demo_ecalelf, out), capsys)
    finally:
        if how == "immutable":
            subprocess.run(["chattr", "-i", str(out)], check=True)
    assert rc == 1
    assert stdout == ""  # no fill, no fit table
    assert err == f"zcalib: error: {out}: {reason}; nothing was run\n"


#: generate's ROOT writer, stopped in the middle of writing data.root
_GENERATE_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from zcalib.generate import _atomic_root

    def fill(f):
        print("writing", flush=True)
        time.sleep(120)

    _atomic_root(Path(sys.argv[1]) / "data.root", fill)
    """
)
#: another run holding a temporary file of the same name pattern (light to start)
_OTHER_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from zcalib._atomic import temporary_sibling

    temporary_sibling(Path(sys.argv[1]) / "data.root", suffix=".tmp.root")
    print("writing", flush=True)
    time.sleep(120)
    """
)


def _writer(folder: Path, script: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    return proc


def test_generate_cleans_the_temporary_files_of_a_killed_run(tmp_path, capsys):
    out = tmp_path / "gen"
    killed = _writer(out, _GENERATE_WRITER)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    alive = _writer(out, _OTHER_WRITER)  # another run writing into the same folder right now
    try:
        temps = sorted(p.name for p in out.glob(".data.root.*.tmp.root"))
        assert len(temps) == 2
        argv = ["generate", "--out", str(out), "--n-data", "500", "--n-mc", "500", "-q"]
        rc, _, err = _run(argv, capsys)
        assert rc == 0, err
        left = sorted(p.name for p in out.glob(".*.tmp.root"))
        assert left == [f for f in temps if f".{alive.pid}." in f]  # the live run's file kept
        assert (out / "data.root").is_file()
    finally:
        alive.kill()
        alive.wait(timeout=30)


def test_interrupt_swallowed_in_a_destructor_still_publishes_nothing_and_exits_130(
    demo_ecalelf, tmp_path, capsys, monkeypatch
):
    """A Ctrl-C whose ``KeyboardInterrupt`` lands in a ``__del__`` is only printed by Python
    ("Exception ignored in ...") and the run goes on. The interrupt is recorded, so the run
    publishes no output and the command still ends with its one line and exit code 130."""
    import gc

    import zcalib.cli as cli_mod

    class Finaliser:
        def __del__(self):  # where the signal handler's exception is swallowed
            cli_mod._interrupted(signal.SIGINT, None)

    real = cli_mod._run

    def run_with_swallowed_interrupt(args):
        Finaliser()
        gc.collect()
        return real(args)

    monkeypatch.setattr(cli_mod, "_run", run_with_swallowed_interrupt)
    out = tmp_path / "h.npz"
    argv = ["histograms", "--data", str(demo_ecalelf.data), "--mc", str(demo_ecalelf.mc)]
    rc = main([*argv, "--categories", str(CONFIGS / "cats_eta_r9.tsv"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 130
    assert err == "zcalib: interrupted (exit code 130)\n"
    assert list(tmp_path.iterdir()) == []
    from zcalib._atomic import atomic_write_text, interrupted

    assert not interrupted()  # the next in-process command starts afresh
    atomic_write_text(tmp_path / "after.txt", "x")


def test_run_id_read_back_from_every_format(tmp_path):
    """Every format an output is written in carries the run id where ``file_run_id`` finds
    it: a YAML tagged on its first line and a TSV on its last, a ROOT file, a Parquet skim;
    a folder holding one file of another run is refused, naming both."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from zcalib.exceptions import InputError
    from zcalib.generate import _atomic_root
    from zcalib.io.preflight import SKIM_METADATA_KEY
    from zcalib.outputs import check_one_run, output_run, run_tag, stamp

    d = tmp_path / "unit"
    with output_run(d, fresh=True) as rid:
        # a YAML longer than the 4 KiB read at each end, tagged in its first line
        (d / "datasets.yaml").write_text(
            f"# written by zcalib skim ({run_tag()})\n" + "a: 1\n" * 2000
        )
        (d / "table.tsv").write_text("#x\ty\n" + "1\t2\n" * 2000 + f"# {run_tag()}\n")
        _atomic_root(d / "data.root", lambda f: None)
        meta = {SKIM_METADATA_KEY: json.dumps(stamp({"format": "zcalib-skim"}))}
        table = pa.table({"x": [1.0]}).replace_schema_metadata(meta)
        pq.write_table(table, d / "pairs.parquet")
    assert {p.name: file_run_id(p) for p in d.iterdir()} == dict.fromkeys(
        ["data.root", "datasets.yaml", "pairs.parquet", "table.tsv"], rid
    )
    assert check_one_run(d) == rid
    (d / "notes.yaml").write_text("a: 1\n")  # no run id: not compared
    assert check_one_run(d) == rid
    with output_run(d, fresh=True) as other:
        (d / "zweights.json").write_text(json.dumps(stamp({"weights": []})))
    with pytest.raises(InputError) as err:
        check_one_run(d)
    assert str(err.value) == (
        f"{d}: files of two runs: data.root (run {rid}) and zweights.json (run {other}); "
        "rerun the command into an empty folder"
    )
