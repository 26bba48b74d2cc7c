"""Cluster recipes: validation with one-line errors, job scripts, the local cluster."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from zcalib.cluster import (
    HTCondorRecipe,
    LocalRecipe,
    SchedulerRecipe,
    SlurmRecipe,
    dask_client,
    job_script,
    load_recipe,
    parse_recipe,
)
from zcalib.exceptions import InvalidConfig

RECIPES = ROOT / "dask_cluster"
LOOPBACK = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("local.yaml", LocalRecipe),
        ("scheduler.yaml", SchedulerRecipe),
        ("coffea-casa.yaml", SchedulerRecipe),
        ("htcondor.yaml", HTCondorRecipe),
        ("slurm.yaml", SlurmRecipe),
    ],
)
def test_shipped_recipes_validate(name, model):
    assert isinstance(load_recipe(RECIPES / name), model)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"kind": "pbs"},
            (
                "x.yaml: field 'kind': missing or unknown (got 'pbs'); allowed: local, "
                "scheduler, htcondor, slurm"
            ),
        ),
        (
            {"workers": 2},
            (
                "x.yaml: field 'kind': missing or unknown; allowed: local, scheduler, "
                "htcondor, slurm"
            ),
        ),
        (
            {"kind": "htcondor", "cores": 1, "memory": "4GB"},
            "x.yaml: field 'disk': required for kind 'htcondor'",
        ),
        (
            {"kind": "slurm", "cores": 1, "memory": "lots"},
            "x.yaml: field 'memory': memory must be a size like '4GB' or '4GiB', got 'lots'",
        ),
        (
            {"kind": "local", "workres": 3},
            (
                "x.yaml: field 'workres': unknown for kind 'local'; "
                "allowed: kind, workers, threads_per_worker, memory_limit, host, dashboard_address, "
                "worker_env"
            ),
        ),
        (
            {"kind": "slurm", "cores": 1, "memory": "4GB", "adapt": {"maximum_jobs": 0}},
            (
                "x.yaml: field 'adapt.maximum_jobs': Input should be greater than or equal to 1 "
                "(got 0)"
            ),
        ),
        (
            {"kind": "scheduler", "address": "not an address"},
            (
                "x.yaml: field 'address': not a scheduler address: 'not an address'; allowed: "
                "tcp://host:port, tls://host:port"
            ),
        ),
        ({"kind": "scheduler"}, "x.yaml: give exactly one of 'address' and 'scheduler_file'"),
        (
            {"kind": "slurm", "cores": 1, "memory": "4GB", "jobs": 2, "adapt": {"maximum_jobs": 4}},
            "x.yaml: give either 'jobs' (fixed) or 'adapt' (min/max jobs), not both",
        ),
        (["kind", "local"], "x.yaml: expected a mapping with a 'kind' key, got list"),
    ],
)
def test_invalid_recipes_one_line(raw, expected):
    with pytest.raises(InvalidConfig) as err:
        parse_recipe(raw, "x.yaml")
    assert str(err.value) == expected


def test_recipe_yaml_errors_name_the_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("kind: local\nworkers: [1\n")
    with pytest.raises(InvalidConfig, match=rf"^{p}: malformed YAML at line 3"):
        load_recipe(p)
    with pytest.raises(InvalidConfig, match=r"r2\.yaml: file not found"):
        load_recipe(tmp_path / "r2.yaml")


def test_recipe_and_scheduler_exclude_each_other():
    with (
        pytest.raises(InvalidConfig, match="not both"),
        dask_client(recipe=RECIPES / "local.yaml", scheduler="tcp://127.0.0.1:1"),
    ):
        pass


@pytest.mark.cluster
def test_htcondor_job_script_has_the_directives():
    text = job_script(
        {
            "kind": "htcondor",
            "cores": 2,
            "memory": "6GB",
            "disk": "3GB",
            "job_extra_directives": {"+JobFlavour": '"longlunch"'},
            "job_script_prologue": ["source /opt/venv/bin/activate"],
            "scheduler_options": LOOPBACK,
            "adapt": {"maximum_jobs": 10},
        }
    )
    assert "MY.DaskWorkerCores = 2" in text
    assert "MY.DaskWorkerMemory = 6000000000" in text
    assert "MY.DaskWorkerDisk = 3000000000" in text
    assert "RequestCpus = MY.DaskWorkerCores" in text
    assert '+JobFlavour = "longlunch"' in text
    assert "source /opt/venv/bin/activate" in text
    assert "distributed.cli.dask_worker tcp://127.0.0.1:" in text


@pytest.mark.cluster
def test_slurm_job_script_has_the_directives():
    recipe = load_recipe(RECIPES / "slurm.yaml").model_copy(update={"scheduler_options": LOOPBACK})
    text = job_script(recipe)
    for line in (
        "#SBATCH -p short",
        "#SBATCH -A cms",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=15G",
        "#SBATCH -t 02:00:00",
        "#SBATCH --qos=normal",
        "module load python/3.11",
    ):
        assert line in text, line
    assert "--nworkers 4" in text
    assert "--nthreads 1" in text


@pytest.mark.cluster
def test_job_script_refuses_local_recipes():
    with pytest.raises(InvalidConfig, match="kind 'local' has no job script"):
        job_script(RECIPES / "local.yaml")


@pytest.mark.cluster
def test_local_recipe_gives_loopback_workers(tmp_path):
    p = tmp_path / "local.yaml"
    p.write_text("kind: local\nworkers: 2\nmemory_limit: 1GiB\n")
    with dask_client(recipe=p) as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in workers)
        assert all(w["nthreads"] == 1 for w in workers.values())
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert client.submit(lambda x: x + 1, 1).result() == 2


@pytest.mark.cluster
def test_upload_package_ships_zcalib(tmp_path):
    p = tmp_path / "local.yaml"
    p.write_text("kind: local\nworkers: 1\nworker_env: {upload_package: true}\n")
    with dask_client(recipe=p) as client:

        def where() -> str:
            import zcalib

            return zcalib.__file__

        # the workers import the uploaded copy, not the installed package
        assert client.submit(where).result().endswith("zcalib.zip/zcalib/__init__.py")
    # ... and this process (which runs the scheduler) still imports the installed one
    import zcalib.rng

    assert "zcalib.zip" not in zcalib.rng.__file__


@pytest.mark.cluster
def test_upload_package_replaces_the_modules_a_worker_already_imported():
    """A long-lived worker (coffea-casa keeps them across notebook sessions) that imported
    zcalib submodules before the upload runs the uploaded copy of them afterwards, not the
    stale ones (an upload alone re-imports only the package's ``__init__``)."""
    from distributed import Client, LocalCluster

    from zcalib.cluster import WorkerEnv, _prepare_workers

    def rng_file() -> str:
        import zcalib.rng

        return zcalib.rng.__file__

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        (before,) = client.run(rng_file).values()
        assert "zcalib.zip" not in before  # the installed copy, imported and kept
        _prepare_workers(client, WorkerEnv(upload_package=True))
        assert client.submit(rng_file, pure=False).result().endswith("zcalib.zip/zcalib/rng.py")


def test_slurm_recipe_without_sbatch_fails_at_set_up(tmp_path, monkeypatch):
    """Not on a SLURM submit node: one line naming the recipe, before anything is submitted."""
    path = tmp_path / "slurm.yaml"
    path.write_text(
        "kind: slurm\ncores: 1\nmemory: 1GB\njobs: 1\nscheduler_options: {host: 127.0.0.1}\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(InvalidConfig) as err, dask_client(recipe=path):
        pytest.fail("no client without sbatch")
    assert str(err.value) == (
        f"{path}: kind 'slurm' needs the sbatch command (run on a SLURM submit node)"
    )
