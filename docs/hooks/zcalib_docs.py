"""MkDocs hook: generate reference sections of the zcalib documentation at build time.

A page asks for generated content with an HTML comment on a line of its own::

    <!-- zcalib:model zcalib.config.DatasetConfig -->     field table of a pydantic model
                                                          (and of the models it nests)
    <!-- zcalib:dataclass zcalib.fit.config.FitConfig --> field table of a dataclass
    <!-- zcalib:models-of zcalib.chain.config -->         every pydantic model of a module,
                                                          or a note if it is not importable
    <!-- zcalib:optional-model zcalib.chain.config.PipelineConfig -->
                                                          a model, or a note if not importable
    <!-- zcalib:formats -->                               branches read per input format
    <!-- zcalib:api zcalib.api -->                        signatures + docstrings of __all__
    <!-- zcalib:cli -->                                   every subcommand's --help
    <!-- zcalib:pymin -->                                 the pymin/pyval option table

Everything comes from the installed code, so the reference cannot drift from it. Links from
a page to repository files outside ``docs/`` (which the built site does not contain) are
shown as repository paths instead of broken links; links to missing files stay links, so
``mkdocs build --strict`` reports them.

The functions are importable (``tests/test_docs.py`` uses them) and have no MkDocs imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.zcalib")

_MARKER = re.compile(
    r"^<!--\s*zcalib:(?P<kind>[a-z-]+)(?:\s+(?P<arg>\S+))?\s*-->\s*$", re.MULTILINE
)
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")


# ----------------------------------------------------------------------------- helpers
def _import(path: str) -> Any:
    """``pkg.mod.Name`` -> the object (module path tried from the longest prefix)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    msg = f"cannot import {path}"
    raise ImportError(msg)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell.

    Pipes are escaped outside code spans only: inside them the table extension ignores
    pipes, and an escape would show up verbatim.
    """
    parts = text.replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts)).strip()


def rst_to_md(text: str) -> str:
    """Sphinx roles and double backticks to Markdown code spans."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`")


def type_name(tp: Any) -> str:
    """A readable type: ``str | None``, ``"a" | "b"``, ``tuple[float, float]``..."""
    if tp is type(None):
        return "None"
    if isinstance(tp, str):
        return tp
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if args:
            inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
            return f"{name}[{inner}]"
        return name
    return getattr(tp, "__name__", str(tp))


def _default(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "required"
    return f"`{value!r}`"


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _nested_models(tp: Any) -> Iterable[type]:
    if _is_model(tp):
        yield tp
    for a in typing.get_args(tp):
        yield from _nested_models(a)


def _summary(obj: Any) -> str:
    own = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    doc = inspect.cleandoc(own) if isinstance(own, str) else ""
    return rst_to_md(doc.split("\n\n")[0].replace("\n", " "))


# ----------------------------------------------------------------------------- models
def model_markdown(
    model: type, *, title: str | None = None, level: int = 3, seen: set[type] | None = None
) -> str:
    """Field tables of a pydantic model and of every model it nests (each once per ``seen``)."""
    from pydantic_core import PydanticUndefined

    out: list[str] = []
    seen = set() if seen is None else seen
    queue: list[tuple[type, str | None]] = [(model, title)]
    while queue:
        m, name = queue.pop(0)
        if m in seen:
            continue
        seen.add(m)
        out.append(f"{'#' * level} {name or m.__name__}\n")
        summary = _summary(m)
        if summary:
            out.append(summary + "\n")
        out.append("| field | type | default | description |\n|---|---|---|---|")
        documented = _docstring_attributes(m)  # models documented in an Attributes: section
        for fname, f in m.model_fields.items():  # type: ignore[attr-defined]
            if f.is_required() or (f.default_factory is None and f.default is PydanticUndefined):
                default = "required"
            else:
                value = f.default_factory() if f.default_factory is not None else f.default
                # nested models: their defaults are in their own table
                default = (
                    f"`{type(value).__name__}()`" if _is_model(type(value)) else _default(value)
                )
            key = f.alias or fname
            out.append(
                f"| `{key}` | {cell('`' + type_name(f.annotation) + '`')} | {cell(default)} "
                f"| {cell(rst_to_md(f.description or documented.get(fname, '')))} |"
            )
            for sub in _nested_models(f.annotation):
                if sub not in seen:
                    queue.append((sub, None))
        out.append("")
    return "\n".join(out)


def _docstring_attributes(cls: type) -> dict[str, str]:
    """``name: description`` pairs of a Google-style ``Attributes:`` section."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    inside = False
    current = None
    for line in doc.splitlines():
        if re.match(r"^(Attributes|Args):\s*$", line):
            inside = True
            continue
        if inside and re.match(r"^\S", line):
            inside = False
        if not inside:
            continue
        m = re.match(r"^ {4}(\w+)(?: \([^)]*\))?:\s*(.*)$", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2)
        elif current and line.strip():
            out[current] += " " + line.strip()
    return out


def dataclass_markdown(cls: type, *, level: int = 3) -> str:
    """Field table of a dataclass (descriptions from its ``Attributes:`` docstring)."""
    descriptions = _docstring_attributes(cls)
    out = [
        f"{'#' * level} {cls.__name__}\n",
        _summary(cls) + "\n",
        "| field | type | default | description |\n|---|---|---|---|",
    ]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = _default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "`" + repr(f.default_factory()) + "`"
        else:
            default = "required"
        out.append(
            f"| `{f.name}` | {cell('`' + type_name(f.type) + '`')} | {cell(default)} "
            f"| {cell(rst_to_md(descriptions.get(f.name, '')))} |"
        )
    out.append("")
    return "\n".join(out)


def models_of_module(module_path: str, *, level: int = 3, seen: set[type] | None = None) -> str:
    """Tables of every pydantic model a module exports, or a note when it is absent."""
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        return (
            f"!!! note\n    `{module_path}` is not available in this build ({err}); its "
            "reference appears here once it is.\n"
        )
    names = getattr(module, "__all__", None) or [
        n for n, v in vars(module).items() if _is_model(v) and v.__module__ == module.__name__
    ]
    models = [getattr(module, n) for n in names if _is_model(getattr(module, n, None))]
    if not models:
        return f"`{module_path}` defines no configuration models.\n"
    return "\n".join(model_markdown(m, level=level, seen=seen) for m in models)


def optional_model(path: str, *, level: int = 3, seen: set[type] | None = None) -> str:
    """Like a ``model`` marker, but a note instead of an error when it is not importable."""
    try:
        model = _import(path)
    except (ImportError, AttributeError) as err:
        return (
            f"!!! note\n    `{path}` is not available in this build ({err}); its reference "
            "appears here once it is.\n"
        )
    return model_markdown(model, level=level, seen=seen)


# ----------------------------------------------------------------------------- formats
def formats_markdown() -> str:
    """Required and optional branches of every input format (from ``zcalib.io.formats``)."""
    from zcalib.io.formats import DEFAULT_TREES, FORMATS, optional_branches, required_branches

    out = [
        "| format | default tree | required branches | optional branches (role: branch) |",
        "|---|---|---|---|",
    ]
    for fmt in FORMATS:
        if fmt == "flat":
            req = "named by the `column_map`"
            opt = "named by the `column_map`"
        else:
            req = ", ".join(f"`{b}`" for b in required_branches(fmt))
            opt = ", ".join(f"{k}: `{v}`" for k, v in optional_branches(fmt).items())
        out.append(f"| `{fmt}` | `{DEFAULT_TREES[fmt]}` | {cell(req)} | {cell(opt)} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- API
_SECTION = re.compile(
    r"^(Args|Arguments|Returns|Raises|Attributes|Example|Examples|Yields|"
    r"Note|Notes|Warning):\s*$"
)


def docstring_markdown(doc: str) -> str:
    """A Google-style docstring as Markdown (sections, examples as code blocks)."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _SECTION.match(line)
        if not m:
            out.append(rst_to_md(line))
            i += 1
            continue
        section = m.group(1)
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        body = inspect.cleandoc("\n".join(block))
        if section.startswith("Example"):
            out += ["", "**Example**", "", "```pycon", body, "```", ""]
        elif section in ("Args", "Arguments", "Attributes", "Raises"):
            out += ["", f"**{section}**", ""]
            for entry in re.split(r"\n(?=\S)", body):
                head, _, rest = entry.partition(":")
                text = " ".join(x.strip() for x in rest.splitlines())
                out.append(f"- `{head.strip()}`: {rst_to_md(text)}")
            out.append("")
        else:
            out += ["", f"**{section}:** " + rst_to_md(" ".join(body.split())), ""]
    return "\n".join(out).strip() + "\n"


def api_markdown(module_path: str, *, level: int = 3) -> str:
    """Signature and docstring of every name in a module's ``__all__``."""
    module = importlib.import_module(module_path)
    out = []
    for name in module.__all__:
        obj = getattr(module, name)
        kind = "class" if inspect.isclass(obj) else "function"
        try:
            # annotations are strings (postponed evaluation): show them unquoted
            sig = re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(inspect.signature(obj)))
        except (TypeError, ValueError):
            sig = ""
        if kind == "class" and dataclasses.is_dataclass(obj):
            fields = ", ".join(f.name for f in dataclasses.fields(obj))
            sig = f"({fields})"
        out.append(f"{'#' * level} `{name}`\n")
        out.append(f"```python\n{kind} {module_path}.{name}{sig}\n```\n")
        out.append(docstring_markdown(inspect.getdoc(obj) or ""))
        if kind == "class":
            for mname, member in inspect.getmembers(obj):
                if mname.startswith("_") or mname in getattr(obj, "__dataclass_fields__", {}):
                    continue
                if inspect.isfunction(member) or isinstance(member, property):
                    target = member.fget if isinstance(member, property) else member
                    if target is None or target.__qualname__.split(".")[0] != obj.__name__:
                        continue
                    label = "property" if isinstance(member, property) else "method"
                    out.append(f"- `{mname}` ({label}): {_summary(target)}")
            out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- CLI
def _parser() -> Any:
    from zcalib.cli import build_parser

    return build_parser()


def subcommands() -> dict[str, Any]:
    """``{name: parser}`` of every ``zcalib`` subcommand."""
    import argparse

    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_markdown(level: int = 3) -> str:
    """``zcalib --help`` and each subcommand's help, in pipeline order."""
    import os

    os.environ.setdefault("COLUMNS", "100")
    out = [f"```text\n{_parser().format_help().rstrip()}\n```\n"]
    for name, sub in subcommands().items():
        out.append(f"{'#' * level} `zcalib {name}`\n")
        out.append(f"```text\n{sub.format_help().rstrip()}\n```\n")
    return "\n".join(out)


#: (pymin/pyval option, zcalib command, zcalib options, notes). The command and options are
#: checked against the installed CLI when the page is built.
PYMIN_ROWS: tuple[tuple[str, str, str, str], ...] = (
    (
        "pymin -i data.cfg (type tree path)",
        "histograms",
        "--datasets",
        "a dataset description YAML (or `--data`/`--mc` file lists)",
    ),
    ("pymin -c cats.tsv", "fit", "--categories", "the same TSV is accepted unchanged; YAML too"),
    ("pymin -o TAG", "fit", "--out --step", "an output folder and a step name"),
    ("pymin --prune", "skim", "--out", "Parquet pair skims instead of TSV dumps"),
    (
        "pymin --run-divide --minEvents N",
        "run-divide",
        "",
        "run bins with enough events (also a pipeline step)",
    ),
    (
        "pymin --time-stability",
        "time-stability",
        "",
        "per-run-bin scales from the median (also a pipeline step)",
    ),
    (
        "pymin -s step_scales.dat",
        "pipeline",
        "",
        (
            "prior corrections are correctionlib files: a pipeline step applies those of the "
            "steps it `needs:` while filling; `run-divide`, `time-stability`, `validate` and "
            "`stats` take `--corrections`; in Python `CalibrationConfig(corrections=...)`"
        ),
    ),
    (
        "pymin -w ptz_x_rapidity.tsv",
        "histograms",
        "--mc-weight",
        "MC weights from correctionlib, up/down filled in the same pass",
    ),
    (
        "pymin --smearings FILE --closure",
        "pipeline",
        "",
        (
            "a fit step with `closure: true` (applies its own corrections while filling and "
            "fits again) or a `type: closure` step"
        ),
    ),
    (
        "pymin --condor --queue Q",
        "histograms",
        "--recipe --scheduler",
        "Dask on HTCondor/SLURM through cluster recipes (see Cluster recipes)",
    ),
    ("pymin --debug", "histograms", "--maxchunks", "process only the first chunks"),
    ("pymin --ignore I ...", "fit", "--ignore", "ignored scale categories"),
    ("pymin --hist-min / --hist-max", "fit", "--window", "the likelihood's mass window"),
    (
        "pymin --bin-size / --no-auto-bin",
        "fit",
        "--bin-width",
        "fixed data-bin width (no Freedman-Diaconis auto-binning)",
    ),
    ("pymin --start-style scan|random|specify", "fit", "--start-style", ""),
    (
        "pymin --only-step FILE (with specify)",
        "fit",
        "--start-file",
        "only-step and scales files are both read",
    ),
    (
        "pymin --scan-min / --scan-max / --scan-step",
        "fit",
        "",
        "`FitConfig(scan_scale_range=..., scan_points=...)` in Python",
    ),
    (
        "pymin --min-step-size",
        "fit",
        "",
        "not needed: exact gradient, convergence by EDM (`FitConfig.edm_tolerance`)",
    ),
    ("pymin --fix-scales", "fit", "--fix-scales", "fit smearings only"),
    (
        "pymin --rewrite",
        "fit",
        "--histograms",
        "refit saved histograms in seconds instead of rewriting",
    ),
    (
        "pymin --combine-files",
        "combine",
        "--scales --only-step --out",
        "multiplies a step's only-step file into a base scales file (`--error` as pymin)",
    ),
    ("pymin --plot --plot-dir", "scan", "--out", "NLL scans per category, as PNG and JSON"),
    (
        "pymin --scan-nll --scan-scales",
        "scan",
        "--points --width --parameters",
        "NLL scans around the fitted values",
    ),
    (
        "pymin --test-method-accuracy",
        "inject",
        "--truth --toys",
        "injection toys with pulls per category",
    ),
    (
        "pyval -i pyval.cfg",
        "validate",
        "--plot-cats --histograms --corrections",
        "data/MC plots per plot category (the pyval TSV is read unchanged)",
    ),
    (
        "pyval --data-title / --mc-title / --lumi-label",
        "validate",
        "--data-title --mc-title --lumi-label",
        "plot labels",
    ),
    ("pyval --binning N", "validate", "--binning", "number of bins of the plots"),
    ("pyval --write DIR", "skim", "--out", "write the selected events"),
    (
        "pyval --log LEVEL",
        "fit",
        "-v -q",
        "`-v` (INFO), `-vv` (DEBUG) or `-q` (warnings only), before or after any subcommand",
    ),
    (
        "pyval --systematics-study",
        "systematics",
        "--config",
        (
            "refits with varied R9, Et and ID; in Python the filled variations are picked with "
            "`CalibrationConfig(systematic=...)`"
        ),
    ),
)


def _options(parser: Any) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def pymin_markdown() -> str:
    """The "coming from pymin" table, each zcalib command checked against the CLI."""
    subs = subcommands()
    out = ["| pymin / pyval | zcalib | notes |", "|---|---|---|"]
    for old, command, opts, notes in PYMIN_ROWS:
        sub = subs.get(command)
        if sub is None:
            new = f"`zcalib {command}` (not in this version)"
        else:
            known = _options(sub)  # the subcommand's own: `zcalib fit -v` must parse
            shown = [o for o in opts.split() if o in known]
            new = "`" + " ".join(["zcalib", command, *shown]) + "`"
        out.append(f"| {cell(f'`{old}`')} | {new} | {cell(notes)} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- expansion
_HANDLERS: dict[str, Callable[[str | None, set[type]], str]] = {
    "model": lambda arg, seen: model_markdown(_import(str(arg)), seen=seen),
    "dataclass": lambda arg, _seen: dataclass_markdown(_import(str(arg))),
    "models-of": lambda arg, seen: models_of_module(str(arg), seen=seen),
    "optional-model": lambda arg, seen: optional_model(str(arg), seen=seen),
    "formats": lambda _arg, _seen: formats_markdown(),
    "api": lambda arg, _seen: api_markdown(str(arg)),
    "cli": lambda _arg, _seen: cli_markdown(),
    "pymin": lambda _arg, _seen: pymin_markdown(),
}


def expand(markdown: str) -> str:
    """Replace every ``<!-- zcalib:... -->`` marker by its generated Markdown.

    A model nested in several documented models is described once per page.
    """
    seen: set[type] = set()

    def one(m: re.Match[str]) -> str:
        kind, arg = m.group("kind"), m.group("arg")
        handler = _HANDLERS.get(kind)
        if handler is None:
            msg = f"unknown zcalib docs marker {kind!r}; known: {', '.join(_HANDLERS)}"
            raise ValueError(msg)
        return handler(arg, seen)

    return _MARKER.sub(one, markdown)


_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>\.\./[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def repository_links(markdown: str, page_dir: Path, docs_dir: Path) -> str:
    """Links to existing repository files outside ``docs/`` become repository paths."""
    repo = docs_dir.parent.resolve()

    def one(m: re.Match[str]) -> str:
        target = (page_dir / m.group("target")).resolve()
        try:
            target.relative_to(docs_dir.resolve())
            return m.group(0)  # inside docs: MkDocs checks it
        except ValueError:
            pass
        if not target.exists():
            return m.group(0)  # broken: leave it for the strict build to report
        rel = target.relative_to(repo).as_posix()
        text = m.group("text")
        return text if text.strip("`") == rel else f"{text} (`{rel}` in the repository)"

    return _LINK.sub(one, markdown)


# ----------------------------------------------------------------------------- MkDocs events
def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001
    """MkDocs event: expand markers, rewrite links to repository files."""
    docs_dir = Path(config["docs_dir"])
    page_dir = (docs_dir / page.file.src_uri).parent
    return repository_links(expand(markdown), page_dir, docs_dir)
