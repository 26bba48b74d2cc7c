"""The HTCondor recipe's submit description, read by HTCondor's own parsers.

Debian ships no HTCondor (no ``condor_submit -dry-run`` here); the ``htcondor`` wheel carries
the library ``condor_submit`` is built on: ``htcondor2.Submit`` parses a submit description
with the same submit-file reader (lines ``key = value``, ``+Attr``/``MY.Attr``, the ``Queue``
statement) and ``classad2.ExprTree`` parses the ClassAd expressions that ``condor_submit``
puts into the job ad (``+Attr`` values, ``request_*``). What only a schedd can say (site
policies, accounting groups) is not checked.
"""

from __future__ import annotations

import importlib
import os

import pytest

from tests.conftest import ROOT
from zcalib.cluster import job_script, load_recipe

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):  # CI installs the test extra
    htcondor2 = importlib.import_module("htcondor2")
    classad2 = importlib.import_module("classad2")
else:
    htcondor2 = pytest.importorskip("htcondor2", reason="the htcondor wheel (test extra)")
    classad2 = pytest.importorskip("classad2", reason="the htcondor wheel (test extra)")

RECIPE = ROOT / "dask_cluster" / "htcondor.yaml"


def submit_problems(text: str) -> list[str]:
    """What ``condor_submit`` would reject in a submit description (empty: accepted)."""
    try:
        sub = htcondor2.Submit(text)
    except ValueError as err:
        return [f"submit description: {err}"]
    problems = []
    if sub.getQArgs().strip():
        problems.append(f"Queue arguments {sub.getQArgs()!r}: one job per submit expected")
    for key, value in sub.items():
        if key.startswith("MY.") or key.lower().startswith("request"):
            try:
                classad2.ExprTree(value)
            except Exception as err:  # noqa: BLE001  (classad2 raises its own exception type)
                problems.append(f"{key} = {value}: not a ClassAd expression ({err})")
    return problems


def test_shipped_recipe_job_script_is_a_valid_submit_description():
    text = job_script(RECIPE)
    assert submit_problems(text) == []
    sub = htcondor2.Submit(text)
    recipe = load_recipe(RECIPE)
    assert sub["Executable"] == "/bin/sh"
    assert sub["RequestCpus"] == "MY.DaskWorkerCores"
    assert sub["MY.DaskWorkerCores"] == str(recipe.cores)
    assert sub["MY.DaskWorkerMemory"] == "4000000000"  # memory: 4GB
    assert sub["MY.DaskWorkerDisk"] == "2000000000"  # disk: 2GB
    # +JobFlavour in the recipe becomes the job-ad attribute MY.JobFlavour, a string
    assert classad2.ExprTree(sub["MY.JobFlavour"]).eval() == "longlunch"
    assert classad2.ExprTree(sub["MY.AccountingGroup"]).eval() == "group_u_CMS.u_zh"
    # the prologue runs before the worker, in the job's shell
    assert sub["Arguments"].startswith(f"\"-c '{recipe.job_script_prologue[0]}; ")
    assert "distributed.cli.dask_worker" in sub["Arguments"]
    assert sub["Output"] == "$(LogDirectory)/worker-$F(MY.JobId).out"
    assert sub["LogDirectory"] == "dask-logs"


def test_a_broken_directive_is_caught():
    """The check can fail: an unbalanced quote in a job_extra_directives value."""
    raw = load_recipe(RECIPE).model_dump()
    raw["job_extra_directives"] = {"+JobFlavour": '"longlunch'}
    problems = submit_problems(job_script(raw))
    assert len(problems) == 1
    assert problems[0].startswith('MY.JobFlavour = "longlunch: not a ClassAd expression')
