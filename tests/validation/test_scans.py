"""NLL scans around the fitted minimum: values, parabolas, figures, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest

from zcalib.exceptions import InvalidConfig
from zcalib.validation.plots import save_figure
from zcalib.validation.scans import (
    fit_for_scans,
    nll_scans,
    objective_minimum,
    plot_scan,
    plot_scans_overview,
    run_scans,
)

from .conftest import CONFIGS, Derivation

mpl.use("Agg")


@pytest.fixture(scope="module")
def fitted(derivation: Derivation):
    result, problem, _ = fit_for_scans(derivation.hset, scheme=derivation.scheme)
    return result, problem, objective_minimum(result, problem)


def test_scans_of_every_parameter(validated: Path):
    """``validate --scan`` wrote one scan per fitted parameter (scans.json + PNGs)."""
    folder = validated / "validation" / "scans"
    summary = json.loads((folder / "scans.json").read_text())
    names = [f"scale[{i}]" for i in range(8)] + [f"smear[{i}]" for i in range(8)]
    assert summary["mode"] == "fixed"
    assert summary["fit"]["status"] == "converged"
    assert [r["parameter"] for r in summary["scans"]] == names
    checked = 0
    for r in summary["scans"]:
        values, dnll, parabola = (
            np.array(r[k], dtype=float) for k in ("values", "dnll", "parabola")
        )
        best, sigma, lo, hi = r["best"], r["sigma_hessian"], r["scan_lo"], r["scan_hi"]
        assert dnll.min() > -1e-6  # the fit sits at the minimum
        assert np.all(np.diff(values) > 0)
        png = folder / r["file"]
        assert png.is_file()
        assert png.stat().st_size > 10_000
        assert hi is not None
        if r["kind"] == "smear" and best == 0.0:
            # a smearing at its bound: the scan starts there and rises on one side only
            assert values[0] == 0.0
            assert lo is None
            continue
        assert values[0] < best < values[-1]
        if values[0] == 0.0:
            continue  # a smearing within 3σ of zero: its likelihood is not Gaussian there
            # (nor need it cross ΔNLL = ½ below the minimum)
        assert lo is not None
        checked += 1
        # where the scan crosses ΔNLL = ½ the Hessian parabola is ½ too: closely for the
        # scales (a Gaussian likelihood), to third-order terms for the smearings
        at = np.interp([lo, hi], values, parabola)
        if r["kind"] == "scale":
            assert at == pytest.approx([0.5, 0.5], rel=0.05)
            assert (hi - lo) / 2 == pytest.approx(sigma, rel=0.05)
        else:
            assert at == pytest.approx([0.5, 0.5], rel=0.25)
            assert at.mean() == pytest.approx(0.5, rel=0.05)
    assert checked >= 12
    assert (folder / "nll_scans.png").stat().st_size > 50_000


def test_scan_values_are_the_fit_likelihood(fitted):
    result, problem, theta = fitted
    (scan,) = nll_scans(problem, theta, n_points=5, parameters=["scale[2]"])
    k = 0
    th = theta.copy()
    th[2] = -np.log(scan.values[k])
    assert scan.dnll[k] == pytest.approx(problem.nll(th) - problem.nll(theta), rel=1e-9)
    assert scan.best == pytest.approx(np.exp(-theta[2]))  # the objective's minimum
    # the reported value is that minimum minus the template-noise bias
    assert result.scales[2].value == pytest.approx(np.exp(-(theta[2] - result.template_bias[2])))
    # the parabola is ½(θ − θ̂)²/σ², σ² = 1/H_pp, in the internal parameter x = −log(scale)
    _, _, hess = problem.hessian(theta)
    assert scan.parabola[k] == pytest.approx(0.5 * (th[2] - theta[2]) ** 2 * hess[2, 2])


def test_profiled_scans_lie_below_fixed_ones(fitted):
    _, problem, theta = fitted
    which = ["scale[0]", "smear[1]"]  # both well inside their bounds
    fixed = nll_scans(problem, theta, n_points=7, n_sigma=2.0, parameters=which)
    prof = nll_scans(problem, theta, n_points=7, n_sigma=2.0, parameters=which, mode="profiled")
    for f, p in zip(fixed, prof, strict=True):
        assert p.mode == "profiled"
        assert p.sigma >= f.sigma  # marginal >= conditional error
        grid_f = np.interp(p.values, f.values, f.dnll)
        inside = (p.values >= f.values[0]) & (p.values <= f.values[-1])
        assert np.all(p.dnll[inside] <= grid_f[inside] + 1e-6)
        lo, hi = p.crossing
        assert np.interp([lo, hi], p.values, p.parabola) == pytest.approx([0.5, 0.5], rel=0.1)


def test_plot_scan_figures(derivation: Derivation, tmp_path):
    run = run_scans(derivation.hset, tmp_path, n_points=9, parameters=["scale[1]", "smear[0]"],
                    keep_figures=True)  # fmt: skip
    assert [s.parameter for s in run.scans] == ["scale[1]", "smear[0]"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "nll_scans.png", "scan_scale_1.png", "scan_smear_0.png"]  # fmt: skip
    fig = run.figures["scale[1]"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "scale"
    assert ax.get_ylabel() == r"$\Delta$NLL"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "NLL scan"
    assert legend[1].startswith("Hessian")
    assert run.figures["smear[0]"].axes[0].get_xlabel() == r"smearing $\sigma$"
    overview = run.figures["overview"]
    assert len(overview.axes) == 2
    png = save_figure(plot_scan(run.scans[1]), tmp_path / "again.png")
    assert png.stat().st_size > 10_000
    wide = plot_scans_overview(run.scans * 5, columns=4)
    assert len(wide.axes) == 12  # 10 panels + 2 blank


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_points": 2}, "n_points must be >= 3"),
        ({"n_sigma": 0.0}, "n_sigma must be > 0"),
        ({"mode": "bayesian"}, "scan mode 'bayesian' unknown; allowed: fixed, profiled"),
        ({"parameters": ["scale[99]"]}, r"cannot scan \['scale\[99\]'\]"),
    ],
)
def test_scan_arguments_are_checked(fitted, kwargs, message):
    _, problem, theta = fitted
    with pytest.raises(InvalidConfig, match=message):
        nll_scans(problem, theta, **kwargs)


def test_cli_scan(derivation: Derivation, tmp_path, capsys):
    from zcalib.cli import main

    rc = main([
        "scan", "--histograms", str(derivation.dir / "histograms.npz"),
        "--categories", str(CONFIGS / "cats_eta_r9.yaml"), "--out", str(tmp_path),
        "--points", "5", "--width", "2", "--profile", "--parameters", "scale[0]", "smear[2]",
    ])  # fmt: skip
    assert rc == 0
    summary = json.loads((tmp_path / "scans.json").read_text())
    assert (summary["n_points"], summary["mode"]) == (5, "profiled")
    assert [r["parameter"] for r in summary["scans"]] == ["scale[0]", "smear[2]"]
    assert "scale[0]: " in capsys.readouterr().out
