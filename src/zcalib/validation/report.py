"""One self-contained HTML page per derivation (``zcalib report DIR``).

The page gathers what a derivation folder holds, so it can be mailed, archived or opened
offline: no external resource is referenced (styles are inline, every image is embedded as
a base64 ``data:`` URI, there is no script).

Sections, each present only when its input exists in ``DIR`` (searched recursively):

* **Fit** (``fit_result.json``): status, minimiser diagnostics, tables of the scales and
  smearings with their statistical, MC-statistics and total errors, the pair regions used and
  dropped, the demo's derived-vs-injected comparison, the cutflow;
* **Validation** (``validation.json``): χ²/ndf, counts and means per data/MC plot, skipped
  plots;
* **NLL scans** (``scans.json``): fitted value, Hessian error and where the scan crosses
  ΔNLL = ½;
* **Corrections** (``corrections.json``): the correctionlib payload's corrections and inputs;
* **Other results**: every other ``*.json`` (lineshape, systematics, statistics, injection
  tests...), rendered generically as tables;
* **Plots**: every ``*.png``, grouped by folder;
* **Provenance**: inputs and checksums, selection, binning, weights, corrections, versions,
  configuration, and the legacy ``.dat`` files.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zcalib._atomic import atomic_write_text
from zcalib.exceptions import InputError
from zcalib.outputs import check_one_run

__all__ = ["KNOWN_JSON", "collect", "render_report", "write_report"]

log = logging.getLogger(__name__)

#: JSON files with a dedicated section (others are rendered generically).
KNOWN_JSON: tuple[str, ...] = (
    "fit_result.json",
    "validation.json",
    "scans.json",
    "corrections.json",
)
#: Generic JSON files shown first, in this order, when present (other helpers' outputs).
_PREFERRED = ("systematics", "lineshape", "stats", "gof", "pulls", "injection")
_SKIP_SUFFIXES = (".metrics.json",)
#: Machine-oriented JSON (statistical workspaces) shown collapsed, as raw text.
_BULKY = re.compile(r"workspace", re.IGNORECASE)
_MAX_PRE = 20_000
_MAX_ROWS = 300
_MAX_IMAGE_BYTES = 8 << 20

_CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 0; color: #1f2328;
       background: #ffffff; font-size: 14px; line-height: 1.45; }
header { background: #24292f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header .sub { color: #c9d1d9; font-size: 13px; }
nav { padding: 8px 32px; background: var(--bg); border-bottom: 1px solid var(--line); }
nav a { margin-right: 16px; color: #0969da; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: 4px; margin-top: 32px; }
h3 { margin-top: 22px; }
table { border-collapse: collapse; margin: 8px 0 16px 0; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: right;
         vertical-align: top; }
th { background: var(--bg); }
td.l, th.l { text-align: left; }
tr:nth-child(even) td { background: #fbfcfd; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
         font-weight: bold; font-size: 13px; }
.ok { background: var(--ok); } .bad { background: var(--bad); } .warn { background: #9a6700; }
.muted { color: var(--muted); }
.kv td:first-child { text-align: left; font-weight: bold; background: var(--bg); }
.kv td { text-align: left; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px; overflow-x: auto;
      font-size: 12px; max-height: 480px; }
details { margin: 6px 0; } summary { cursor: pointer; color: #0969da; }
.gallery { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); padding: 6px; background: #fff;
         width: 460px; }
figure.wide { width: 100%; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; word-break: break-all; }
.pull-bad { color: var(--bad); font-weight: bold; }
"""


# ------------------------------------------------------------------------------ helpers
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any, fmt: str = ".6g") -> str:
    if v is None:
        return '<span class="muted">–</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return '<span class="muted">–</span>'
        return format(v, fmt)
    return _e(v)


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], left: Sequence[int] = (0,), cls: str = ""
) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(
        f'<th class="{"l" if i in left else ""}">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for n, row in enumerate(rows):
        if n >= _MAX_ROWS:
            body.append(
                f'<tr><td class="l muted" colspan="{len(headers)}">… more rows not shown</td></tr>'
            )
            break
        body.append(
            "<tr>"
            + "".join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(row))
            + "</tr>"
        )
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _kv(items: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _pre(obj: Any) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, indent=2, sort_keys=False, default=str)
    if len(text) > _MAX_PRE:
        text = text[:_MAX_PRE] + f"\n… ({len(text) - _MAX_PRE} more characters)"
    return f"<pre>{_e(text)}</pre>"


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _badge(status: str | None) -> str:
    s = str(status or "unknown")
    cls = (
        "ok"
        if s in ("converged", "ok", "passed", "closes", "done")
        else "bad"
        if s in ("failed", "error", "does NOT close")
        else "warn"
    )
    return f'<span class="badge {cls}">{_e(s)}</span>'


def render_json(obj: Any, depth: int = 0) -> str:
    """Generic HTML rendering of a JSON value: tables for records, nested sections for
    mappings, a ``<pre>`` block beyond a few levels."""
    if _is_scalar(obj):
        return _num(obj)
    if depth > 3:
        return f"<details><summary>JSON</summary>{_pre(obj)}</details>"
    if isinstance(obj, Mapping):
        scalars = [(str(k), _num(v)) for k, v in obj.items() if _is_scalar(v)]
        nested = [(str(k), v) for k, v in obj.items() if not _is_scalar(v)]
        parts = [_kv(scalars)] if scalars else []
        for k, v in nested:
            inner = render_json(v, depth + 1)
            parts.append(
                f"<details{' open' if depth == 0 else ''}><summary>{_e(k)}"
                f"</summary>{inner}</details>"
            )
        return "".join(parts) or '<span class="muted">(empty)</span>'
    if isinstance(obj, list):
        if not obj:
            return '<span class="muted">(empty list)</span>'
        if all(_is_scalar(v) for v in obj):
            shown = ", ".join(_num(v) for v in obj[:200])
            more = f" … ({len(obj) - 200} more)" if len(obj) > 200 else ""
            return f"<div>[{shown}{more}]</div>"
        if all(isinstance(v, Mapping) for v in obj):
            cols: list[str] = []
            for rec in obj:
                for k, v in rec.items():
                    if k not in cols and _is_scalar(v):
                        cols.append(str(k))
            cols = cols[:16]
            rows = [[_num(rec.get(c)) for c in cols] for rec in obj]
            out = _table(cols, rows, left=range(len(cols))) if cols else ""
            if any(not _is_scalar(v) for rec in obj for v in rec.values()):
                out += f"<details><summary>full records</summary>{_pre(obj)}</details>"
            return out
        return _pre(obj)
    return _pre(obj)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s: not readable as JSON (%s); shown as unreadable in the report", path, err)
        return None


# ------------------------------------------------------------------------------ collect
def collect(directory: str | Path) -> dict[str, Any]:
    """What the report shows from ``directory``: JSON files by relative path, PNGs, texts.

    Files reached through a link that points outside ``directory`` are left out (a report
    shows the derivation, never other files of the machine). The files of each folder must
    come from one run (:func:`zcalib.outputs.check_one_run`).

    Raises:
        InputError: ``directory`` does not exist or is not a folder; a folder mixes the
            outputs of two runs.
    """
    d = Path(directory)
    if not d.is_dir():
        msg = f"{d}: derivation folder not found (expected the --out folder of zcalib fit/demo)"
        raise InputError(msg)
    root = d.resolve()
    files = []
    for p in sorted(d.rglob("*")):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.resolve().is_relative_to(root):
            log.warning("%s: links outside %s; not embedded in the report", p, d)
            continue
        files.append(p)
    for folder in sorted({p.parent for p in files}):
        check_one_run(folder)
    jsons = {
        p.relative_to(d).as_posix(): p
        for p in files
        if p.suffix == ".json"
        and not p.name.endswith(_SKIP_SUFFIXES)
        and "data" not in p.relative_to(d).parts
    }
    pngs = [p for p in files if p.suffix.lower() == ".png"]
    texts = [p for p in files if p.suffix == ".dat" and p.stat().st_size < 200_000]
    return {"dir": d, "json": jsons, "png": pngs, "text": texts}


def _find(jsons: Mapping[str, Path], name: str) -> list[tuple[str, Path]]:
    return sorted(
        ((k, p) for k, p in jsons.items() if p.name == name),
        key=lambda kp: (kp[0].count("/"), kp[0]),
    )


# ------------------------------------------------------------------------------ sections
def _range(values: Sequence[Any] | None, fmt: str) -> str:
    vals = [float(v) for v in values or [] if isinstance(v, int | float)]
    if not vals:
        return "none"
    lo, hi = min(vals), max(vals)
    return f"{lo:{fmt}}" if lo == hi else f"{lo:{fmt}}–{hi:{fmt}}"


def _step_params(kind: str, s: Mapping[str, Any]) -> str:
    """What a pipeline step derived, in one cell."""
    if kind == "fit":
        return (
            f"{len(s.get('scales') or [])} scales {_range(s.get('scales'), '.4f')}; "
            f"{len(s.get('smears') or [])} smearings {_range(s.get('smears'), '.4f')}"
        )
    if kind == "closure":
        n = len(s.get("scale_pulls") or []) + len(s.get("smear_significances") or [])
        return f"residuals of {n} parameters (no correction)"
    if kind == "run_divide":
        return (
            f"{s.get('bins')} run bins ({s.get('granularity')}), "
            f"{_range(s.get('pairs'), '.0f')} pairs each"
        )
    if kind == "time_stability":
        return f"scales in {s.get('run_bins')} run bins"
    if kind == "zweights":
        return f"Z pT × |y| weights {_range([s.get('weight_min'), s.get('weight_max')], '.3f')}"
    return ", ".join(f"{k} {v}" for k, v in s.items() if _is_scalar(v)) or "—"


def _step_quality(kind: str, s: Mapping[str, Any], fr: Any) -> str:
    """The goodness of fit of a pipeline step, in one cell."""
    if kind == "time_stability":
        before, after = s.get("chi2_before") or [], s.get("chi2_after") or []
        if len(before) == 2 and len(after) == 2:
            return (
                f"χ²/ndf of the scale vs run {before[0]:.1f}/{before[1]} → "
                f"{after[0]:.1f}/{after[1]}"
            )
    if isinstance(fr, Mapping):
        fit = fr.get("fit") or {}
        nll = fit.get("nll")
        used = len(fit.get("regions_used") or [])
        dev = f", −2 ln λ (vs saturated) {2 * nll:.1f}" if isinstance(nll, int | float) else ""
        return f"{used} pair regions{dev}"
    return "—"


def _step_closure(kind: str, s: Mapping[str, Any]) -> str:
    if kind != "closure":
        return "—"
    verdict = "closes" if s.get("closes") else "does NOT close"
    failing = s.get("failing")
    extra = f"<br><span class='muted'>failing: {_e(failing)}</span>" if failing else ""
    return f"{_badge(verdict)} {_e(s.get('verdict', ''))}{extra}"


def _derivation_section(
    pipeline: Mapping[str, Any], rel: str, fit_results: Mapping[str, Any]
) -> str:
    """The per-step table of a pipeline folder (``final/pipeline.json``): the derivation."""
    steps = pipeline.get("steps") or {}
    rows = []
    for name in pipeline.get("order") or list(steps):
        st = steps.get(name) or {}
        s = st.get("summary") or {}
        kind = str(st.get("type", "?"))
        ran = f"ran ({st.get('wall_time_s', 0):.1f} s)" if st.get("ran") else "cached"
        rows.append(
            [
                f'<a href="#fit-{_e(name)}">{_e(name)}</a>' if name in fit_results else _e(name),
                _e(kind),
                _e(ran),
                _badge(s.get("status", "done")),
                _e(_step_params(kind, s)),
                _e(_step_quality(kind, s, fit_results.get(name))),
                _step_closure(kind, s),
            ]
        )
    closure = pipeline.get("closure")
    head = (
        f"<p>{_badge('closes' if closure.get('closes') else 'does NOT close')} the chain "
        f"{'closes' if closure.get('closes') else 'does not close'} "
        f"(closure steps: {_e(', '.join(closure.get('steps') or {}))})</p>"
        if isinstance(closure, Mapping)
        else "<p class='muted'>no closure step in this pipeline</p>"
    )
    desc = pipeline.get("description")
    return (
        (f"<p>{_e(desc)}</p>" if desc else "")
        + head
        + _table(
            ["step", "type", "run", "status", "parameters", "goodness of fit", "closure"],
            rows,
            left=(0, 1, 2, 4, 5, 6),
        )
        + f"<p class='muted'>from {_e(rel)}; final payload: "
        f"{_e(', '.join(pipeline.get('corrections') or []))}</p>"
    )


def _summary_png(fr: Mapping[str, Any]) -> str:
    """The scales/smearings-per-category plot of a fit, embedded."""
    import io

    from zcalib.validation.plots import cms_style, plot_category_summary

    if not any(c.get("value") is not None for c in fr.get("categories") or []):
        return ""
    from matplotlib import style as mstyle

    fig = plot_category_summary(fr)
    buf = io.BytesIO()
    with mstyle.context(cms_style()):
        fig.savefig(buf, format="png", dpi=70)
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        '<h3>Scales and smearings per category</h3><figure class="wide">'
        f'<img alt="scales and smearings per category" src="data:image/png;base64,{b64}">'
        "<figcaption>error bars: total uncertainty; hollow: fixed or ignored"
        "</figcaption></figure>"
    )


def _fit_section(fr: Mapping[str, Any], rel: str) -> str:
    fit = fr.get("fit", {}) or {}
    parts = [f"<p>{_badge(fr.get('status'))} <span class='muted'>({_e(rel)})</span></p>"]
    wt = fr.get("wall_time", {}) or {}
    parts.append(
        _kv(
            [
                ("step", _e(fr.get("step", "?"))),
                ("message", _e(fr.get("message", ""))),
                ("evaluations", _num(fr.get("n_eval"))),
                ("EDM", _num(fit.get("edm"), ".3g")),
                ("|projected gradient|", _num(fit.get("grad_norm"), ".3g")),
                ("NLL (minus saturated)", _num(fit.get("nll"), ".6g")),
                ("fit window [GeV]", _e(" – ".join(f"{x:.4f}" for x in fit.get("window") or []))),
                ("fine bins per data bin", _num(fit.get("rebin"))),
                (
                    "regions used / dropped",
                    f"{len(fit.get('regions_used', []))} / {len(fit.get('regions_dropped', []))}",
                ),
                ("fill time [s]", _num(wt.get("fill_s"), ".3g")),
                ("fit time [s]", _num(wt.get("fit_s"), ".3g")),
            ]
        )
    )
    parts.append(_summary_png(fr))
    cats = fr.get("categories", []) or []
    for kind, title in (("scale", "Scales (data)"), ("smear", "Smearings (MC)")):
        rows = []
        for c in cats:
            if c.get("type", c.get("kind")) != kind:
                continue
            state = c.get("state", "")
            flag = " (at bound)" if c.get("at_bound") else ""
            rows.append(
                [
                    _num(c.get("index")),
                    _e(c.get("label", "")),
                    _num(c.get("value"), ".6f"),
                    _num(c.get("stat"), ".2e"),
                    _num(c.get("mc_stat"), ".2e"),
                    _num(c.get("total_stat"), ".2e"),
                    _num(c.get("n_pairs"), ".0f"),
                    _e(f"{state}{flag}"),
                ]
            )
        if rows:
            parts.append(f"<h3>{_e(title)}</h3>")
            parts.append(
                _table(
                    ["#", "category", "value", "stat", "MC stat", "total stat", "pairs", "state"],
                    rows,
                    left=(1, 7),
                )
            )
    comparison = (fr.get("demo") or {}).get("comparison")
    if comparison:
        rows = []
        for r in comparison:
            pull = r.get("pull")
            cls = "pull-bad" if isinstance(pull, float) and abs(pull) > 3 else ""
            rows.append(
                [
                    _e(r.get("label")),
                    _num(r.get("injected"), ".5f"),
                    _num(r.get("derived"), ".5f"),
                    _num(r.get("error"), ".2e"),
                    _num(r.get("diff"), "+.2e"),
                    f'<span class="{cls}">{_num(pull, "+.2f")}</span>',
                ]
            )
        parts.append("<h3>Derived vs injected (demo)</h3>")
        parts.append(_table(["category", "injected", "derived", "error", "diff", "pull"], rows))
    dropped = fit.get("regions_dropped") or []
    if dropped:
        parts.append("<h3>Dropped pair regions</h3>")
        parts.append(
            _table(
                ["region", "cells", "data", "MC eff.", "reason"],
                [
                    [
                        _num(r.get("code")),
                        _e(r.get("cells")),
                        _num(r.get("n_data"), ".0f"),
                        _num(r.get("n_mc_eff"), ".0f"),
                        _e(r.get("reason")),
                    ]
                    for r in dropped
                ],
                left=(4,),
            )
        )
    cutflow = fr.get("cutflow")
    if isinstance(cutflow, Mapping) and cutflow:
        datasets = list(cutflow)
        cuts: list[str] = []
        for ds in datasets:
            cuts += [c for c in cutflow[ds] if c not in cuts]
        parts.append("<h3>Cutflow</h3>")
        parts.append(
            _table(
                ["cut", *datasets],
                [[_e(c), *(_num(cutflow[ds].get(c)) for ds in datasets)] for c in cuts],
            )
        )
    return "".join(parts)


def _provenance_section(fr: Mapping[str, Any] | None, texts: Sequence[Path], root: Path) -> str:
    parts = []
    if fr:
        inputs = fr.get("inputs") or []
        if inputs:
            parts.append("<h3>Inputs</h3>")
            parts.append(render_json(inputs))
        skipped = fr.get("skipped_files") or []
        if skipped:
            parts.append("<h3>Skipped input files</h3>" + render_json(skipped))
        hmeta = fr.get("histograms") or {}
        if hmeta:
            parts.append("<h3>Histograms (selection, binning, weights, corrections)</h3>")
            parts.append(render_json({k: v for k, v in hmeta.items() if k != "run"}, depth=1))
            if "run" in hmeta:
                parts.append(
                    f"<details><summary>event-loop metrics</summary>"
                    f"{render_json(hmeta['run'], depth=1)}</details>"
                )
        versions = fr.get("versions")
        if versions:
            parts.append("<h3>Versions</h3>" + render_json(versions))
        config = (fr.get("fit") or {}).get("config") or fr.get("fit_config")
        if config:
            parts.append("<h3>Fit configuration</h3>" + render_json(config, depth=1))
        extra = {k: v for k, v in fr.items() if k in ("command", "demo")}
        if isinstance(extra.get("demo"), Mapping):
            extra["demo"] = {k: v for k, v in extra["demo"].items() if k != "comparison"}
        if extra:
            parts.append("<h3>Command and extras</h3>" + render_json(extra, depth=1))
    for t in texts:
        try:
            text = t.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(
            f"<details><summary>{_e(t.relative_to(root).as_posix())}</summary>"
            f"{_pre(text)}</details>"
        )
    return "".join(parts)


def _validation_section(v: Mapping[str, Any], rel: str) -> str:
    plots = v.get("plots") or []
    rows = []
    for p in plots:
        md, mm = p.get("mean_data"), p.get("mean_mc")
        dm = (
            (md - mm) / mm * 1e3 if isinstance(md, float) and isinstance(mm, float) and mm else None
        )
        rows.append(
            [
                _e(p.get("name")),
                _e(p.get("variable")),
                _e(p.get("style")),
                _e(p.get("source")),
                _num(p.get("chi2"), ".1f"),
                _num(p.get("ndf")),
                _num(p.get("chi2_ndf"), ".2f"),
                _num(p.get("n_data"), ".0f"),
                _num(p.get("n_mc"), ".0f"),
                _num(md, ".4f"),
                _num(mm, ".4f"),
                _num(dm, "+.2f"),
            ]
        )
    parts = [
        (
            f"<p class='muted'>{_e(rel)}; MC normalised to data in the plotted range; "
            "Δmean = (data − MC)/MC in ‰.</p>"
        )
    ]
    labels = v.get("labels") or {}
    if labels:
        parts.append(_kv([(k, _e(x)) for k, x in labels.items()]))
    parts.append(
        _table(
            [
                "plot",
                "variable",
                "style",
                "from",
                "χ²",
                "ndf",
                "χ²/ndf",
                "data",
                "MC (Σw)",
                "mean data",
                "mean MC",
                "Δmean [‰]",
            ],
            rows,
            left=(0, 1, 2, 3),
        )
    )
    skipped = v.get("skipped") or []
    if skipped:
        parts.append("<h3>Skipped plot categories</h3>")
        parts.append(
            _table(
                ["plot", "reason", "defined in"],
                [[_e(s.get("name")), _e(s.get("reason")), _e(s.get("source"))] for s in skipped],
                left=(0, 1, 2),
            )
        )
    corr = v.get("corrections") or []
    if corr:
        parts.append(
            "<p>Corrections applied: "
            + ", ".join(f"{_e(c.get('name'))} ({_e(c.get('kind'))})" for c in corr)
            + "</p>"
        )
    return "".join(parts)


def _scans_section(s: Mapping[str, Any], rel: str) -> str:
    rows = []
    for sc in s.get("scans") or []:
        best, sig = sc.get("best"), sc.get("sigma_hessian")
        lo, hi = sc.get("scan_lo"), sc.get("scan_hi")
        width = (hi - lo) / 2 if isinstance(lo, float) and isinstance(hi, float) else None
        ratio = width / sig if width is not None and isinstance(sig, float) and sig else None
        rows.append(
            [
                _e(sc.get("parameter")),
                _e(sc.get("label")),
                _num(best, ".6f"),
                _num(sig, ".2e"),
                _num(width, ".2e"),
                _num(ratio, ".3f"),
            ]
        )
    fit = s.get("fit") or {}
    head = (
        f"<p>{_badge(fit.get('status'))} mode <b>{_e(s.get('mode'))}</b>, "
        f"{_e(s.get('n_points'))} points, ±{_e(s.get('n_sigma'))}σ "
        f"<span class='muted'>({_e(rel)}) {_e(s.get('note', ''))}</span></p>"
    )
    return head + _table(
        ["parameter", "category", "fitted", "σ (Hessian)", "σ (scan, ΔNLL=½)", "scan/Hessian"],
        rows,
        left=(0, 1),
    )


def _corrections_section(c: Mapping[str, Any], rel: str) -> str:
    rows = []
    for corr in c.get("corrections") or []:
        inputs = ", ".join(f"{i.get('name')} ({i.get('type')})" for i in corr.get("inputs", []))
        out = corr.get("output", {}) or {}
        rows.append(
            [
                _e(corr.get("name")),
                _e(corr.get("version")),
                _e(inputs),
                _e(out.get("name")),
                _e(corr.get("description", "")),
            ]
        )
    for comp in c.get("compound_corrections") or []:
        rows.append(
            [
                _e(comp.get("name")),
                "compound",
                _e(", ".join(i.get("name", "") for i in comp.get("inputs", []))),
                _e(comp.get("output", {}).get("name")),
                _e(comp.get("description", "")),
            ]
        )
    return f"<p class='muted'>{_e(rel)}: {_e(c.get('description', ''))}</p>" + _table(
        ["correction", "version", "inputs", "output", "description"], rows, left=(0, 2, 3, 4)
    )


def _images(pngs: Sequence[Path], root: Path) -> str:
    groups: dict[str, list[Path]] = {}
    for p in pngs:
        folder = p.parent.relative_to(root).as_posix()
        groups.setdefault("." if folder == "." else folder, []).append(p)
    parts = []
    for folder in sorted(groups, key=lambda f: (f != ".", "scan" in f, f)):
        parts.append(f"<h3>{_e('(top level)' if folder == '.' else folder + '/')}</h3>")
        figs = []
        for p in sorted(groups[folder], key=lambda x: (x.name != "nll_scans.png", x.name)):
            data = p.read_bytes()
            if len(data) > _MAX_IMAGE_BYTES:
                figs.append(
                    f"<p class='muted'>{_e(p.name)}: {len(data)} bytes, too large to embed</p>"
                )
                continue
            b64 = base64.b64encode(data).decode("ascii")
            wide = ' class="wide"' if p.name == "nll_scans.png" else ""
            figs.append(
                f'<figure{wide}><img alt="{_e(p.name)}" '
                f'src="data:image/png;base64,{b64}">'
                f"<figcaption>{_e(p.relative_to(root).as_posix())}</figcaption></figure>"
            )
        parts.append(f'<div class="gallery">{"".join(figs)}</div>')
    return "".join(parts)


# ------------------------------------------------------------------------------ render
def render_report(directory: str | Path, *, title: str | None = None) -> str:
    """The report HTML for a derivation folder (see the module docstring).

    Raises:
        InputError: the folder does not exist.
    """
    found = collect(directory)
    root: Path = found["dir"]
    jsons: dict[str, Path] = found["json"]
    used: set[str] = set()
    sections: list[tuple[str, str, str]] = []  # (anchor, title, html)

    pipe_entry = _find(jsons, "pipeline.json")
    pipeline = _load_json(pipe_entry[0][1]) if pipe_entry else None
    order: list[str] = []
    if isinstance(pipeline, Mapping):
        order = [str(n) for n in pipeline.get("order") or []]
    fr_entry = sorted(
        _find(jsons, "fit_result.json"),
        key=lambda kp: (
            order.index(kp[0].split("/")[0]) if kp[0].split("/")[0] in order else len(order)
        ),
    )
    fr = None
    fit_results: dict[str, Any] = {}
    fit_sections: list[tuple[str, str, str]] = []
    for rel, path in fr_entry:
        used.add(rel)
        rec = _load_json(path)
        if not isinstance(rec, Mapping):
            fit_sections.append(
                (f"fit-{len(fit_sections)}", f"Fit ({rel})", f"<p>{_badge('error')} unreadable</p>")
            )
            continue
        fr = rec if fr is None else fr
        step_name = str(rec.get("step", rel))
        fit_results[rel.split("/")[0] if "/" in rel else step_name] = rec
        heading = "Fit" if len(fr_entry) == 1 else f"Fit: {step_name}"
        anchor = "fit" if len(fr_entry) == 1 else f"fit-{rel.split('/')[0]}"
        fit_sections.append((anchor, heading, _fit_section(rec, rel)))
    if isinstance(pipeline, Mapping):
        used.add(pipe_entry[0][0])
        sections.append(
            (
                "derivation",
                "Derivation",
                _derivation_section(pipeline, pipe_entry[0][0], fit_results),
            )
        )
    sections.extend(fit_sections)
    for name, anchor, heading, render in (
        ("validation.json", "validation", "Validation: data vs MC", _validation_section),
        ("scans.json", "scans", "NLL scans", _scans_section),
        ("corrections.json", "corrections", "Corrections", _corrections_section),
    ):
        for rel, path in _find(jsons, name):
            used.add(rel)
            obj = _load_json(path)
            body = (
                render(obj, rel)
                if isinstance(obj, Mapping)
                else f"<p>{_badge('error')} {_e(rel)} unreadable</p>"
            )
            suffix = "" if rel == name else f" ({rel})"
            sections.append((f"{anchor}-{len(sections)}", heading + suffix, body))

    others = [k for k in jsons if k not in used]
    others.sort(
        key=lambda k: (next((i for i, w in enumerate(_PREFERRED) if w in k), len(_PREFERRED)), k)
    )
    if others:
        chunks: list[str] = []
        for rel in others:
            obj = _load_json(jsons[rel])
            if _BULKY.search(Path(rel).name):
                chunks.append(
                    f"<h3>{_e(rel)}</h3><details><summary>raw JSON "
                    f"({jsons[rel].stat().st_size / 1024:.0f} kB)</summary>"
                    f"{_pre(obj)}</details>"
                )
                continue
            chunks.append(f"<h3>{_e(rel)}</h3>")
            chunks.append(
                render_json(obj) if obj is not None else f"<p>{_badge('error')} unreadable JSON</p>"
            )
        sections.append(("results", "Other results", "".join(chunks)))
    if found["png"]:
        sections.append(("plots", f"Plots ({len(found['png'])})", _images(found["png"], root)))
    prov = _provenance_section(fr, found["text"], root)
    if prov:
        sections.append(("provenance", "Provenance", prov))
    if not sections:
        sections.append(
            (
                "empty",
                "Nothing to report",
                "<p>No fit_result.json, JSON results or PNG plots were found.</p>",
            )
        )

    step = (fr or {}).get("step") if isinstance(fr, Mapping) else None
    heading = title or f"zcalib derivation report{f' — step {step}' if step else ''}"
    status = _badge(fr.get("status")) if isinstance(fr, Mapping) else ""
    if isinstance(pipeline, Mapping):
        heading = title or (
            f"zcalib derivation report — pipeline {len(order)} steps"
            + (f": {pipeline['description']}" if pipeline.get("description") else "")
        )
        closure = pipeline.get("closure")
        status = (
            _badge("closes" if closure.get("closes") else "does NOT close")
            if isinstance(closure, Mapping)
            else ""
        )
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{h}</section>' for a, t, h in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(heading)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(heading)} {status}</h1>"
        f'<div class="sub">folder {_e(root.resolve())} · generated {now}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


def write_report(
    directory: str | Path, out: str | Path | None = None, *, title: str | None = None
) -> Path:
    """Write the self-contained HTML report of a derivation folder.

    Args:
        directory: the derivation folder (``--out`` of ``zcalib fit``/``demo``, possibly
            holding ``validation/`` and ``scans/`` subfolders and other JSON results).
        out: the HTML file (default ``<directory>/report.html``).
        title: page title (default from the step name).

    Returns:
        The path written.

    Raises:
        InputError: the folder does not exist.

    Example:
        >>> # write_report("output/demo")  ->  output/demo/report.html
    """
    page = render_report(directory, title=title)
    target = Path(out) if out is not None else Path(directory) / "report.html"
    path = atomic_write_text(target, page)
    log.debug("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)
    return path
