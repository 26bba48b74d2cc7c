"""Every code block of the README and the documentation is run, checked, or marked as not
runnable with a reason that the test verifies.

A block is preceded by an optional marker line ``<!-- snippet: MODE [ARGS] -->``:

* ``run`` — executed: Python blocks with ``exec`` (one namespace per page), ``bash`` blocks
  line by line (``zcalib ...`` through the CLI's ``main``), YAML blocks written to the file
  ``file=NAME``; all in one temporary folder per page (``configs/`` and ``corrections/`` of
  the repository linked in), in page order. ``raises=Name``: the block must end by raising it.
  ``needs=PATH[,PATH]``: the block reads files an analysis or a long run would have
  (a payload, a NanoAOD file); the page's test provides each under that path, small and
  real (a fit's payload, generated NanoAOD), and the run fails if one is not provided.
* ``skip REASON`` — not executed, for one of the reasons of :data:`REASONS`, each checked.

Unmarked blocks: shell blocks have every ``zcalib`` command parsed by the real parser (the
subcommand and its options must exist) and only known environment commands besides; YAML
and JSON blocks must parse; Python blocks must carry a marker.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARK = re.compile(r"<!-- snippet: (\w+)(.*?)-->\s*$")
#: shell commands that set up the environment (not zcalib itself): allowed as they are
_ENV_COMMANDS = ("make", "python", "python3", "pip", "mkdocs", "git")
#: block languages checked without a marker (output listings, text, shell, configs)
_CHECKED = ("bash", "sh", "yaml", "yml", "json", "python", "text", "")


def _env_command(line: str) -> bool:
    return Path(line.split(maxsplit=1)[0]).name in _ENV_COMMANDS


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int
    lang: str
    code: str
    mode: str  # run | skip | "" (unmarked)
    args: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def snippets(page: Path) -> list[Snippet]:
    text = page.read_text()
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        out.append(
            Snippet(
                page=page,
                line=text.count("\n", 0, m.start()) + 1,
                lang=m.group(1),
                code=m.group(2),
                mode=mark.group(1) if mark else "",
                args=mark.group(2).strip() if mark else "",
            )
        )
    return out


ALL = [s for p in PAGES for s in snippets(p)]


def _commands(code: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _zcalib_argv(line: str) -> list[str] | None:
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", line))  # "[--drift 0.01]": optional
    if words and words[0] in ("zcalib", ".venv/bin/zcalib"):
        return words[1:]
    return None


def _free_names(code: str) -> set[str]:
    """Names a Python block reads without defining or importing them."""
    tree = ast.parse(code)
    defined, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.alias):
            defined.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return loaded - defined - set(dir(builtins))


def _missing_paths(code: str) -> list[str]:
    """Quoted file paths in a block that exist neither in the repository nor are made by it."""
    paths = re.findall(r"[\"']([\w./-]+\.(?:json|root|yaml|dat|npz))[\"']", code)
    return [p for p in paths if not (ROOT / p).exists()]


def _other_test_exists(name: str) -> bool:
    path, _, func = name.partition("::")
    return f"def {func}(" in (ROOT / path).read_text()


#: skip reasons and the check that justifies each
REASONS = {
    # reads names defined elsewhere on the page or in the reader's analysis
    "fragment": lambda s: bool(_free_names(s.code)),
    # reads files a long run makes (make demo, a pipeline) or the reader's own files
    "needs-files": lambda s: bool(_missing_paths(s.code)),
    # executed by another test, named after the reason
    "run-by": lambda s: _other_test_exists(s.args.split()[1]),
    # a language no test can run here (C++ analysis code)
    "other-language": lambda s: s.lang not in _CHECKED,
}


def test_snippets_found_on_every_page_with_code():
    assert len(ALL) > 30
    assert {s.lang for s in ALL} >= {"python", "bash", "yaml"}


@pytest.mark.parametrize("snippet", ALL, ids=lambda s: s.where)
def test_snippet_is_checked_or_justified(snippet: Snippet):
    s = snippet
    if s.mode == "skip":
        reason = s.args.split()[0] if s.args else ""
        assert reason in REASONS, f"{s.where}: skip reason {reason!r}; allowed: {list(REASONS)}"
        assert REASONS[reason](s), f"{s.where}: 'skip {s.args}' is not justified by the block"
        return
    assert s.mode in ("", "run"), f"{s.where}: unknown snippet mode {s.mode!r}"
    if s.lang in ("bash", "sh"):
        from zcalib.cli import build_parser

        for line in _commands(s.code):
            argv = _zcalib_argv(line)
            if argv is None:
                assert _env_command(line), f"{s.where}: unchecked command {line!r}"
                continue
            try:
                build_parser().parse_args(argv)
            except SystemExit as done:  # --help exits 0; a parse error exits non-zero
                code = done.code
            else:
                code = 0
            assert code == 0, f"{s.where}: `zcalib {' '.join(argv)}` does not parse"
    elif s.lang in ("yaml", "yml"):
        yaml.safe_load(s.code)
    elif s.lang == "json":
        json.loads(s.code)
    elif s.lang == "python":
        assert s.mode == "run", f"{s.where}: a Python block needs a run or skip marker"
        compile(s.code, s.where, "exec")
    else:
        assert s.lang in _CHECKED, f"{s.where}: a {s.lang} block needs a skip marker"


def _run_page(
    page: Path,
    folder: Path,
    capsys,
    inputs: dict[str, Path] | None = None,
    blocks: list[dict] | None = None,
) -> dict:
    """Execute the run-marked blocks of ``page`` in ``folder`` (see the module docstring);
    ``inputs`` provide the files of ``needs=`` (path in the folder -> real file); ``blocks``
    receives a copy of the namespace after each Python block (later blocks may reuse names)."""
    from zcalib.cli import main

    for name in ("configs", "corrections"):
        (folder / name).symlink_to(ROOT / name)
    namespace: dict = {"__name__": "__main__"}
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        for s in snippets(page):
            if s.mode != "run":
                continue
            args = dict(a.split("=", 1) for a in s.args.split())
            for need in filter(None, args.get("needs", "").split(",")):
                assert need in (inputs or {}), f"{s.where}: needs {need!r}, not provided"
                link = Path(need)
                if not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(inputs[need])
            if s.lang in ("yaml", "yml"):
                Path(args["file"]).write_text(s.code)
            elif s.lang in ("bash", "sh"):
                for line in _commands(s.code):
                    argv = _zcalib_argv(line)
                    assert argv is not None, f"{s.where}: only zcalib commands run: {line!r}"
                    rc = main(argv)
                    assert rc == 0, f"{s.where}: `{line}` exited {rc}: {capsys.readouterr().err}"
            elif "raises" in args:
                with pytest.raises(Exception) as info:  # noqa: PT011 - checked by name below
                    exec(compile(s.code, s.where, "exec"), namespace)  # noqa: S102 - the docs' code
                assert type(info.value).__name__ == args["raises"], info.value
            else:
                exec(compile(s.code, s.where, "exec"), namespace)  # noqa: S102 - the docs' code
            if s.lang == "python" and blocks is not None:
                blocks.append(dict(namespace))
    finally:
        os.chdir(cwd)
    return namespace


def test_tutorial_from_own_ntuples_to_an_egm_payload(tmp_path, capsys):
    """The tutorial page as a user runs it: flat ntuples + column map -> fit -> EGM payload,
    evaluated with correctionlib; the fitted scales recover the generator's truth."""
    ns = _run_page(ROOT / "docs" / "tutorial.md", tmp_path, capsys)
    out = capsys.readouterr().out
    assert "data scale [" in out
    record = json.loads((tmp_path / "output" / "mine" / "fit_result.json").read_text())
    assert record["status"] == "converged"
    truth = json.loads((tmp_path / "demo" / "truth.json").read_text())
    scales = [c for c in record["categories"] if c["type"] == "scale"]
    pulls = [(c["value"] - t) / c["total"] for c, t in zip(scales, truth["scale"], strict=True)]
    assert max(abs(p) for p in pulls) < 4, pulls
    assert (tmp_path / "output" / "mine" / "report.html").is_file()
    # the payload evaluates to the fitted scale of the category of the first electron
    # (|eta_SC| 0.5, R9 0.97: the |eta| 0-1, R9 > 0.96 category)
    first = next(c for c in scales if c["bins"]["abs_eta"][0] == 0.0 and c["bins"]["r9"][0] == 0.96)
    assert ns["data_scale"][0] == pytest.approx(first["value"], rel=1e-12)


def test_python_api_page_runs(tmp_path, capsys, demo_ecalelf):
    demo = {"demo_data": demo_ecalelf.data.parent}
    ns = _run_page(ROOT / "docs" / "python-api.md", tmp_path, capsys, demo)
    assert (ns["nano"].id_level, ns["tight"].id_level) == ("medium", "tight")
    assert ns["tight_window"].window == (82, 98)
    # one pass, three fits: pile-up up from its own filled histograms; without prior
    # corrections the raw energies are the nominal ones (the same fit)
    nominal, pu_up, raw = ns["nominal"].result, ns["pu_up"].result, ns["raw"].result
    assert {nominal.status, pu_up.status, raw.status} == {"converged"}
    assert set(ns["hists"].hset.variations) == {"nominal", "pileup_up", "pileup_down"}
    values = [[c.value for c in r.scales + r.smears] for r in (nominal, pu_up, raw)]
    assert values[0] != values[1]
    assert values[0] == values[2]
    # the YAML configuration: paths relative to the file (here the current folder)
    cfg = ns["cfg"]
    assert (cfg.input_format, cfg.id_level, cfg.window) == ("nanoaod", "tight", (82, 98))
    assert cfg.categories == "cats_eta_r9.tsv"
    assert [c.file for c in cfg.corrections] == ["step1/corrections.json"]
    assert [(w.name, w.file) for w in cfg.mc_weights] == [("pileup", "pileup.json")]


#: The step payload the analysis page evaluates: 8 |eta| x R9 categories
#: (``configs/cats_eta_r9.tsv`` order), its scales, smearings and smearing seed.
SCALES = (1.004, 0.996, 1.008, 0.99, 1.002, 0.998, 1.006, 0.994)
SMEARS = (0.008, 0.012, 0.015, 0.02, 0.006, 0.01, 0.012, 0.018)
SEED = 7


@pytest.fixture(scope="module")
def payload(tmp_path_factory, scheme):
    """A step payload in the EGM layout, written by the writer ``zcalib fit`` uses."""
    from zcalib.corrections.egm import EgmNames
    from zcalib.derive import write_step_payload

    return write_step_payload(
        tmp_path_factory.mktemp("payload") / "corrections.json",
        scheme,
        (SCALES, [0.001] * 8),
        (SMEARS, [0.002] * 8),
        step="step1",
        names=EgmNames(),
        seed=SEED,
        description="snippet test",
    )


def _category(scheme, abs_eta, r9):
    """Index of the category of a lepton at (|eta_SC|, R9)."""
    (index,) = [
        c.index for c in scheme.scale if c.eta[0] <= abs_eta < c.eta[1] and c.r9[0] <= r9 < c.r9[1]
    ]
    return index


def test_analysis_page_runs(tmp_path, capsys, payload, scheme, demo_nanoaod):
    """The analysis page's correctionlib and coffea code on a step payload: the numbers are
    the scales and smearings of each electron's category, and ``z`` is the number zcalib's
    processor draws for that electron."""
    import warnings

    import awkward as ak
    import numpy as np

    from zcalib.rng import lepton_normals

    inputs = {
        "output/pipeline_demo/final/corrections.json": payload,
        "corrections.json": payload,
        "nano.root": demo_nanoaod.data,
    }
    blocks: list[dict] = []
    with warnings.catch_warnings():
        # coffea's NanoAODSchema notes collections the generated file does not have
        warnings.filterwarnings("ignore", "Missing cross-reference index", RuntimeWarning)
        ns = _run_page(ROOT / "docs" / "analysis.md", tmp_path, capsys, inputs, blocks)
    plain = blocks[0]  # plain correctionlib (the coffea block reuses sc_eta and run)
    pt, sc_eta, r9 = plain["pt"], plain["sc_eta"], plain["r9"]
    cats = [_category(scheme, abs(e), r) for e, r in zip(sc_eta, r9, strict=True)]
    assert cats == [4, 2]  # |eta| 0-1 R9 > 0.96; |eta| 1.566-2 R9 < 0.96
    np.testing.assert_allclose(plain["s"], [SCALES[c] for c in cats], rtol=1e-12)
    np.testing.assert_allclose(plain["pt_data"], plain["s"] * pt, rtol=1e-12)
    np.testing.assert_allclose(plain["pt_data_up"], (plain["s"] + 0.001) * pt, rtol=1e-9)
    smear = np.array([SMEARS[c] for c in cats])
    np.testing.assert_allclose(plain["smear"], smear, rtol=1e-12)
    z = lepton_normals(SEED, pt, r9, np.abs(sc_eta), plain["event"])
    np.testing.assert_array_equal(plain["z"], z)
    assert plain["z"][0] != plain["z"][1]
    np.testing.assert_allclose(plain["pt_mc"], pt * (1 + smear * z), rtol=1e-12)
    np.testing.assert_allclose(plain["pt_mc_smear_up"], pt * (1 + (smear + 0.002) * z), rtol=1e-9)
    # coffea NanoEvents: every electron gets the scale of its category
    ele = ns["ele"]
    got = ak.to_numpy(ak.flatten(ns["scale"]))
    assert len(got) == ak.sum(ak.num(ele.pt)) > 30_000
    abs_eta = np.abs(ak.to_numpy(ak.flatten(ns["sc_eta"])))
    r9s = ak.to_numpy(ak.flatten(ele.r9))
    inside = (abs_eta < 2.5) & ((abs_eta < 1.4442) | (abs_eta >= 1.566))
    want = [
        SCALES[_category(scheme, e, r)] for e, r in zip(abs_eta[inside], r9s[inside], strict=True)
    ]
    np.testing.assert_allclose(got[inside], want, rtol=1e-12)
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(ns["ele_pt_corrected"])),
        ak.to_numpy(ak.flatten(ele.pt)) * got,
        rtol=1e-12,
    )


@pytest.mark.cluster
def test_quickstart_page_runs(tmp_path, capsys, demo_ecalelf):
    """The quickstart's Python block as it stands: a fill on a local Dask cluster, the fit
    and the payload, on the small demo sample standing in for ``demo_data/``; the fitted
    scales recover the generator's truth and the payload holds them."""
    import correctionlib

    ns = _run_page(
        ROOT / "docs" / "quickstart.md", tmp_path, capsys, {"demo_data": demo_ecalelf.data.parent}
    )
    result = ns["fit"].result
    assert result.converged
    truth = json.loads(Path(demo_ecalelf.truth).read_text())
    pulls = [
        (c.value - t) / c.total_stat for c, t in zip(result.scales, truth["scale"], strict=True)
    ]
    assert max(abs(p) for p in pulls) < 4, pulls
    payload = tmp_path / "output" / "fit" / "corrections.json"
    cset = correctionlib.CorrectionSet.from_file(str(payload))
    scale = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    from zcalib.generate import default_categories

    cats = default_categories().scale  # the category of |eta_SC| 0.5, R9 0.97
    k = next(
        i for i, c in enumerate(cats) if c.eta[0] <= 0.5 < c.eta[1] and c.r9[0] <= 0.97 < c.r9[1]
    )
    assert scale.evaluate("scale", 1.0, 0.5, 0.97, 0.5, 40.0, 12.0) == pytest.approx(
        result.scales[k].value
    )
