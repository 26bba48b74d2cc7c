"""Getting a Dask ``distributed.Client``: a local cluster, an existing scheduler, or batch jobs.

One entry point, :func:`dask_client`, gives a client from

* nothing: a :class:`~distributed.LocalCluster` of worker *processes* (one thread each) bound
  to 127.0.0.1, so the filling is truly parallel and nothing listens on external interfaces;
* ``scheduler=ADDR``: an existing scheduler (``tcp://host:8786``, ``tls://localhost:8786`` on
  coffea-casa);
* ``recipe=PATH``: a YAML recipe (``dask_cluster/*.yaml``) for any of the above or for
  HTCondor/SLURM jobs through dask-jobqueue, with adaptive scaling.

A recipe is validated once into frozen pydantic models (unknown keys are errors); problems
raise :class:`~zcalib.exceptions.InvalidConfig` with one line naming the file, the field and
what is allowed::

    schema_version: 1
    kind: htcondor            # local | scheduler | htcondor | slurm
    cores: 1
    memory: 4GB
    disk: 2GB
    adapt: {minimum_jobs: 0, maximum_jobs: 50}

The workers must be able to import zcalib (see ``dask_cluster/README.md``): install it in the
worker image, let the recipe's ``worker_env.pip`` install it (distributed ``PipInstall``), or
``worker_env.upload_package: true`` to ship the package source as a zip
(distributed ``UploadFile`` worker plugin, as ``client.upload_file`` does).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from zcalib.exceptions import InvalidConfig

__all__ = [
    "KINDS",
    "AdaptRecipe",
    "ClusterRecipe",
    "HTCondorRecipe",
    "LocalRecipe",
    "SchedulerRecipe",
    "SlurmRecipe",
    "WorkerEnv",
    "build_cluster",
    "check_slurm_job",
    "dask_client",
    "job_script",
    "load_recipe",
    "parse_recipe",
]

log = logging.getLogger(__name__)

#: Recipe kinds, in the order they are documented.
KINDS: tuple[str, ...] = ("local", "scheduler", "htcondor", "slurm")

_ADDRESS = re.compile(r"^((tcp|tls|ucx|ws|wss|inproc)://)?[^\s:/]+(:\d+)?/?$")


def _check_bytes(value: str | None, name: str) -> str | None:
    if value is None:
        return value
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except (ValueError, TypeError):
        msg = f"{name} must be a size like '4GB' or '4GiB', got {value!r}"
        raise ValueError(msg) from None
    return value


class _Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerEnv(_Recipe):
    """How the package reaches the workers (if it is not installed in their image)."""

    pip: tuple[str, ...] = Field(
        (), description="Packages pip-installs on every worker (distributed PipInstall plugin)."
    )
    pip_options: tuple[str, ...] = Field((), description="Extra pip options, e.g. ['--user'].")
    upload_package: bool = Field(
        False,
        description="Zip the client's zcalib source and upload it to the workers "
        "(UploadFile worker plugin; its dependencies must be installed there).",
    )


class AdaptRecipe(_Recipe):
    """Adaptive scaling between a minimum and a maximum number of batch jobs."""

    minimum_jobs: int = Field(0, ge=0, description="Jobs kept even when idle.")
    maximum_jobs: int = Field(ge=1, description="Upper limit of jobs.")


class LocalRecipe(_Recipe):
    """A LocalCluster of worker processes on this machine (the default)."""

    schema_version: Literal[1] = Field(1, description="Version of the recipe format.")
    kind: Literal["local"] = Field(description="Recipe kind.")
    workers: int = Field(2, ge=1, description="Worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per worker process.")
    memory_limit: str = Field("4GiB", description="Memory limit per worker (e.g. 4GiB).")
    host: str = Field("127.0.0.1", description="Interface the scheduler and workers bind to.")
    dashboard_address: str | None = Field(
        "127.0.0.1:0", description="Dashboard address (':0' picks a free port; null disables)."
    )
    worker_env: WorkerEnv = Field(default_factory=WorkerEnv, description="Worker environment.")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str) -> str | None:
        return _check_bytes(v, "memory_limit")


class SchedulerRecipe(_Recipe):
    """An already running scheduler (coffea-casa, a shared facility, a manual cluster)."""

    schema_version: Literal[1] = Field(1, description="Version of the recipe format.")
    kind: Literal["scheduler"] = Field(description="Recipe kind.")
    address: str | None = Field(
        None, description="Scheduler address, e.g. tcp://10.0.0.5:8786 or tls://localhost:8786."
    )
    scheduler_file: str | None = Field(
        None,
        description="JSON file written by `dask scheduler --scheduler-file` (instead of address).",
    )
    timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for the connection.")
    wait_for_workers: int = Field(0, ge=0, description="Wait until this many workers joined.")
    worker_env: WorkerEnv = Field(default_factory=WorkerEnv, description="Worker environment.")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not _ADDRESS.match(v):
            msg = f"not a scheduler address: {v!r}; allowed: tcp://host:port, tls://host:port"
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _one_target(self) -> SchedulerRecipe:
        if (self.address is None) == (self.scheduler_file is None):
            msg = "give exactly one of 'address' and 'scheduler_file'"
            raise ValueError(msg)
        return self


class _JobqueueRecipe(_Recipe):
    """Fields common to the dask-jobqueue batch systems (one worker per job by default)."""

    schema_version: Literal[1] = Field(1, description="Version of the recipe format.")
    cores: int = Field(ge=1, description="Cores per job.")
    memory: str = Field(description="Memory per job, e.g. 4GB.")
    processes: int = Field(1, ge=1, description="Worker processes per job (cores are shared).")
    walltime: str | None = Field(None, description="Job wall time, e.g. '02:00:00'.")
    job_name: str | None = Field(None, description="Batch job name.")
    log_directory: str | None = Field(None, description="Folder for job stdout/stderr.")
    local_directory: str | None = Field(None, description="Worker scratch (e.g. $TMPDIR).")
    python: str | None = Field(None, description="Python on the worker nodes (default: this).")
    interface: str | None = Field(None, description="Network interface, e.g. ib0.")
    death_timeout: int | None = Field(
        None, ge=1, description="Seconds a worker waits for the scheduler before exiting."
    )
    job_script_prologue: tuple[str, ...] = Field(
        (), description="Shell lines run before the worker (e.g. 'source venv/bin/activate')."
    )
    worker_extra_args: tuple[str, ...] = Field((), description="Extra `dask worker` arguments.")
    scheduler_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Scheduler keywords, e.g. {port: 8786, dashboard_address: ':8787'}.",
    )
    jobs: int = Field(0, ge=0, description="Fixed number of jobs (when `adapt` is not given).")
    adapt: AdaptRecipe | None = Field(None, description="Adaptive scaling (min/max jobs).")
    worker_env: WorkerEnv = Field(default_factory=WorkerEnv, description="Worker environment.")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str | None:
        return _check_bytes(v, "memory")

    @model_validator(mode="after")
    def _jobs_or_adapt(self) -> _JobqueueRecipe:
        if self.adapt is not None and self.jobs:
            msg = "give either 'jobs' (fixed) or 'adapt' (min/max jobs), not both"
            raise ValueError(msg)
        return self

    def _common_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "cores": self.cores,
            "memory": self.memory,
            "processes": self.processes,
            "job_script_prologue": list(self.job_script_prologue),
            "worker_extra_args": list(self.worker_extra_args),
            "scheduler_options": dict(self.scheduler_options),
        }
        for name in (
            "walltime",
            "job_name",
            "log_directory",
            "local_directory",
            "python",
            "interface",
            "death_timeout",
        ):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        return kw


class HTCondorRecipe(_JobqueueRecipe):
    """Worker jobs on HTCondor (``dask_jobqueue.HTCondorCluster``)."""

    kind: Literal["htcondor"] = Field(description="Recipe kind.")
    disk: str = Field(description="Disk per job, e.g. 2GB.")
    job_extra_directives: dict[str, str] = Field(
        default_factory=dict,
        description="Extra submit-file lines, e.g. {'+JobFlavour': '\"longlunch\"'}.",
    )
    submit_command_extra: tuple[str, ...] = Field(
        (), description="Extra condor_submit arguments, e.g. ['-spool']."
    )

    @field_validator("disk")
    @classmethod
    def _disk(cls, v: str) -> str | None:
        return _check_bytes(v, "disk")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``HTCondorCluster``."""
        kw = self._common_kwargs()
        kw["disk"] = self.disk
        kw["job_extra_directives"] = dict(self.job_extra_directives)
        kw["submit_command_extra"] = list(self.submit_command_extra)
        return kw


class SlurmRecipe(_JobqueueRecipe):
    """Worker jobs on SLURM (``dask_jobqueue.SLURMCluster``)."""

    kind: Literal["slurm"] = Field(description="Recipe kind.")
    queue: str | None = Field(None, description="Partition (`#SBATCH -p`).")
    account: str | None = Field(None, description="Account (`#SBATCH -A`).")
    job_extra_directives: tuple[str, ...] = Field(
        (), description="Extra #SBATCH options, e.g. ['--qos=short']."
    )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``SLURMCluster``."""
        kw = self._common_kwargs()
        for name in ("queue", "account"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        kw["job_extra_directives"] = list(self.job_extra_directives)
        return kw


ClusterRecipe = Annotated[
    LocalRecipe | SchedulerRecipe | HTCondorRecipe | SlurmRecipe, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClusterRecipe)
_MODELS: dict[str, type[BaseModel]] = {
    "local": LocalRecipe,
    "scheduler": SchedulerRecipe,
    "htcondor": HTCondorRecipe,
    "slurm": SlurmRecipe,
}


def parse_recipe(raw: Any, source: str = "recipe") -> Any:
    """Validate a recipe mapping into its model.

    Args:
        raw: the parsed YAML (a mapping with ``kind``).
        source: where it came from, for messages.

    Returns:
        A :class:`LocalRecipe`, :class:`SchedulerRecipe`, :class:`HTCondorRecipe` or
        :class:`SlurmRecipe`.

    Raises:
        InvalidConfig: one line naming the source, the field and what is allowed.
    """
    if not isinstance(raw, dict):
        msg = f"{source}: expected a mapping with a 'kind' key, got {type(raw).__name__}"
        raise InvalidConfig(msg)
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as err:
        raise InvalidConfig(_recipe_error(source, raw, err)) from None


def _recipe_error(source: str, raw: dict[str, Any], err: ValidationError) -> str:
    first = err.errors()[0]
    kind = raw.get("kind")
    etype = first["type"]
    if etype in ("union_tag_not_found", "union_tag_invalid"):
        given = f" (got {kind!r})" if "kind" in raw else ""
        return f"{source}: field 'kind': missing or unknown{given}; allowed: {', '.join(KINDS)}"
    loc = [str(x) for x in first["loc"]]
    if loc and loc[0] == kind:
        loc = loc[1:]
    where = ".".join(loc) or "<top level>"
    if etype == "extra_forbidden":
        model = _MODELS[str(kind)]
        allowed = ", ".join(n for n in model.model_fields if n != "schema_version")
        if len(loc) > 1:
            sub = model.model_fields[loc[0]].annotation
            fields = getattr(sub, "model_fields", None)
            allowed = ", ".join(fields) if fields else allowed
        return f"{source}: field '{where}': unknown for kind '{kind}'; allowed: {allowed}"
    if etype == "missing":
        return f"{source}: field '{where}': required for kind '{kind}'"
    text = str(first["msg"]).removeprefix("Value error, ")
    if not loc:
        return f"{source}: {text}"
    given = first.get("input")
    shown = "" if isinstance(given, dict | list) or repr(given) in text else f" (got {given!r})"
    return f"{source}: field '{where}': {text}{shown}"


def load_recipe(path: str | Path) -> Any:
    """Load and validate a cluster recipe YAML (see ``dask_cluster/``).

    Raises:
        InvalidConfig: missing file, malformed YAML, unknown kind or field, bad value.
    """
    from zcalib.config import load_yaml

    p = Path(path)
    return parse_recipe(load_yaml(p), str(p))


def _as_recipe(recipe: Any) -> Any:
    if isinstance(recipe, str | Path):
        return load_recipe(recipe)
    if isinstance(recipe, BaseModel):
        return recipe
    return parse_recipe(recipe)


def build_cluster(recipe: Any) -> Any:
    """Create (but do not scale) the cluster object of a recipe.

    Args:
        recipe: a recipe model, mapping or YAML path of kind ``local``, ``htcondor`` or
            ``slurm``.

    Returns:
        A ``distributed.LocalCluster`` or a dask-jobqueue ``HTCondorCluster``/``SLURMCluster``
        (its scheduler runs in this process; no job is submitted until it is scaled).
    """
    r = _as_recipe(recipe)
    if isinstance(r, LocalRecipe):
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=r.workers,
            threads_per_worker=r.threads_per_worker,
            processes=True,
            host=r.host,
            dashboard_address=r.dashboard_address,
            memory_limit=r.memory_limit,
            silence_logs=logging.ERROR,
            # Ctrl-C is the command's to handle (one line, cluster closed): no worker tracebacks
            preload=["zcalib._worker_signals"],
        )
    if isinstance(r, HTCondorRecipe):
        from dask_jobqueue.htcondor import HTCondorCluster

        return HTCondorCluster(**r.kwargs())
    if isinstance(r, SlurmRecipe):
        from dask_jobqueue.slurm import SLURMCluster

        return SLURMCluster(**r.kwargs())
    msg = f"a '{r.kind}' recipe has no cluster object to build; allowed: local, htcondor, slurm"
    raise InvalidConfig(msg)


def job_script(recipe: Any) -> str:
    """The batch job script a HTCondor/SLURM recipe submits (no batch system needed).

    Example:
        >>> print(job_script("dask_cluster/slurm.yaml"))  # doctest: +SKIP
    """
    r = _as_recipe(recipe)
    if not isinstance(r, HTCondorRecipe | SlurmRecipe):
        msg = f"kind '{r.kind}' has no job script; allowed: htcondor, slurm"
        raise InvalidConfig(msg)
    cluster = build_cluster(r)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


@contextlib.contextmanager
def dask_client(
    *,
    recipe: Any = None,
    scheduler: str | None = None,
    workers: int = 2,
    memory_limit: str = "4GiB",
) -> Iterator[Any]:
    """Yield a ``distributed.Client``; clusters this call creates are closed afterwards.

    Args:
        recipe: a cluster recipe (YAML path, mapping or model); see ``dask_cluster/``.
        scheduler: address of an existing scheduler (``tcp://host:8786``,
            ``tls://localhost:8786`` on coffea-casa).
        workers: number of local worker processes (no recipe, no scheduler).
        memory_limit: memory limit per local worker.

    Raises:
        InvalidConfig: both ``recipe`` and ``scheduler`` given, an invalid recipe, or the
            scheduler cannot be reached.

    Example:
        >>> with dask_client(workers=2) as client:  # doctest: +SKIP
        ...     print(client.dashboard_link)
    """
    if recipe is not None and scheduler:
        msg = "give either a cluster recipe or a scheduler address, not both"
        raise InvalidConfig(msg)
    if scheduler:
        r: Any = parse_recipe({"kind": "scheduler", "address": scheduler}, "--scheduler")
    elif recipe is not None:
        r = _as_recipe(recipe)
    else:
        if workers < 1:
            msg = f"workers must be >= 1, got {workers}"
            raise InvalidConfig(msg)
        r = LocalRecipe(kind="local", workers=workers, memory_limit=memory_limit)
    source = str(recipe) if isinstance(recipe, str | Path) else "recipe"
    with _client_for(r, source) as client:
        _prepare_workers(client, r.worker_env)
        yield client


@contextlib.contextmanager
def one_cluster(options: Any) -> Iterator[Any]:
    """``options`` (:class:`~zcalib.runner.RunOptions`) with one Dask client that every event
    loop run inside shares: started here when the options use Dask and hold no client yet
    (closed on exit), else ``options`` unchanged. A command with several loops (systematics
    refills, a pipeline) starts one cluster, not one per loop.
    """
    import dataclasses

    if not options.uses_dask or options.client is not None:
        yield options
        return
    with dask_client(
        recipe=options.recipe, scheduler=options.scheduler, workers=options.workers
    ) as client:
        yield dataclasses.replace(options, client=client)


#: How long ``sbatch --test-only`` may take before the batch system counts as unreachable.
SUBMIT_CHECK_TIMEOUT_S = 60.0

#: Recipe fields named by SLURM's refusals (a pattern of the sbatch message -> the field).
_SLURM_REFUSALS: tuple[tuple[str, str], ...] = (
    ("account", "account"),  # "Invalid account or account/partition combination specified"
    ("qos", "job_extra_directives"),
    ("time limit", "walltime"),
    ("partition", "queue"),
)


def _sbatch_test(script: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sbatch", "--test-only", *extra, str(script)],
        capture_output=True,
        text=True,
        timeout=SUBMIT_CHECK_TIMEOUT_S,
        check=False,
    )


def check_slurm_job(cluster: Any, r: SlurmRecipe, source: str = "recipe") -> None:
    """Ask SLURM whether it would run the recipe's worker job (``sbatch --test-only``).

    dask-jobqueue submits from its adaptive loop and only logs a refused job, so a recipe the
    batch system rejects would wait for workers forever; this check runs before any job is
    submitted and names the recipe field the refusal is about.

    Raises:
        InvalidConfig: no ``sbatch``, no answer within :data:`SUBMIT_CHECK_TIMEOUT_S`, or the
            job refused (``<source>: field 'queue': SLURM refuses the worker job: ...``).
    """
    if shutil.which("sbatch") is None:
        msg = f"{source}: kind 'slurm' needs the sbatch command (run on a SLURM submit node)"
        raise InvalidConfig(msg)
    with tempfile.TemporaryDirectory(prefix="zcalib-sbatch-") as tmp:
        script = Path(tmp) / "worker.sh"
        script.write_text(str(cluster.job_script()))
        try:
            res = _sbatch_test(script)
            if res.returncode == 0:
                return
            text = " ".join((res.stderr or res.stdout).split()) or f"exit code {res.returncode}"
            field = next((f for pat, f in _SLURM_REFUSALS if pat in text.lower()), None)
            if field is None:  # node configuration: find out whether memory or cores
                fits = {
                    "memory": ("--mem=1M",),
                    "cores": ("--cpus-per-task=1", "--ntasks=1"),
                }
                field = next(
                    (f for f, opt in fits.items() if _sbatch_test(script, *opt).returncode == 0),
                    None,
                )
        except subprocess.TimeoutExpired:
            msg = (
                f"{source}: sbatch --test-only did not answer within "
                f"{SUBMIT_CHECK_TIMEOUT_S:.0f} s: is the SLURM controller reachable?"
            )
            raise InvalidConfig(msg) from None
    if field is None:
        msg = f"{source}: SLURM refuses the worker job: {text}"
    else:
        value = getattr(r, field)
        msg = f"{source}: field '{field}': SLURM refuses the worker job ({field}={value!r}): {text}"
    raise InvalidConfig(msg)


@contextlib.contextmanager
def _client_for(r: Any, source: str = "recipe") -> Iterator[Any]:
    from distributed import Client

    if isinstance(r, SchedulerRecipe):
        where = r.address or r.scheduler_file
        try:
            if r.address is not None:
                client = Client(r.address, timeout=f"{r.timeout_s}s")
            else:
                client = Client(scheduler_file=r.scheduler_file, timeout=f"{r.timeout_s}s")
        except (OSError, TimeoutError, ValueError) as err:
            msg = f"cannot connect to Dask scheduler {where} ({err.__class__.__name__}: {err})"
            raise InvalidConfig(msg) from None
        try:
            if r.wait_for_workers:
                client.wait_for_workers(r.wait_for_workers, timeout=r.timeout_s)
            log.info("connected to Dask scheduler %s (dashboard %s)", where, client.dashboard_link)
            yield client
        finally:
            client.close()
        return
    cluster = build_cluster(r)
    try:
        if isinstance(r, SlurmRecipe):
            check_slurm_job(cluster, r, source)
        if isinstance(r, HTCondorRecipe | SlurmRecipe):
            if r.adapt is not None:
                cluster.adapt(minimum_jobs=r.adapt.minimum_jobs, maximum_jobs=r.adapt.maximum_jobs)
            elif r.jobs:
                cluster.scale(jobs=r.jobs)
        client = Client(cluster)
        try:
            if isinstance(r, LocalRecipe):
                log.info(
                    "local Dask cluster with %d workers (dashboard %s)",
                    r.workers,
                    client.dashboard_link,
                )
            else:
                log.info("%s cluster (dashboard %s)", r.kind, client.dashboard_link)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _prepare_workers(client: Any, env: WorkerEnv) -> None:
    if env.pip:
        from distributed import PipInstall

        client.register_plugin(
            PipInstall(packages=list(env.pip), pip_options=list(env.pip_options) or None)
        )
        log.info("workers pip-install %s", ", ".join(env.pip))
    if env.upload_package:
        # a worker plugin only (client.upload_file would also import the zip into the
        # scheduler, which for local and batch clusters is this very process)
        from distributed.diagnostics.plugin import UploadFile

        class UploadPackage(UploadFile):
            """The zipped package, uploaded after the worker forgets the zcalib modules it
            has imported: an upload alone re-imports only the package's ``__init__``, and a
            long-lived worker (coffea-casa keeps them across notebook sessions) would go on
            running the submodules of an earlier upload or installation. A class local to
            this function, so it travels by value (a worker may have no zcalib at all)."""

            async def setup(self, worker: Any) -> None:
                import sys

                for name in [m for m in sys.modules if m == "zcalib" or m.startswith("zcalib.")]:
                    del sys.modules[name]
                await super().setup(worker)

        with tempfile.TemporaryDirectory(prefix="zcalib-upload-") as tmp:
            plugin = UploadPackage(str(_zip_package(Path(tmp))))
        client.register_plugin(plugin, name="zcalib-upload-package")
        log.info("uploaded the zcalib package source to the workers")


def _zip_package(folder: Path) -> Path:
    """Zip the importable ``zcalib`` package (sources only) for the workers."""
    import zcalib

    root = Path(zcalib.__file__).resolve().parent
    out = folder / "zcalib.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                zf.write(f, Path("zcalib") / f.relative_to(root))
    return out
