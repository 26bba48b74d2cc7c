"""The likelihood table: one module per ``mc_stat_likelihood`` value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zcalib.fit import FitConfig
from zcalib.fit.config import McStatLikelihood
from zcalib.fit.likelihood import LIKELIHOODS, BarlowBeestonLite, Multinomial, NoiseCorrected
from zcalib.fit.model import TemplateModel
from zcalib.fit.problem import build_problem

H = math.log(2.0) / 1200


def test_every_config_value_has_one_likelihood_module() -> None:
    assert set(LIKELIHOODS) == set(McStatLikelihood.__args__)  # type: ignore[attr-defined]
    assert LIKELIHOODS["none"] is Multinomial
    assert LIKELIHOODS["noise-corrected"] is NoiseCorrected
    assert LIKELIHOODS["bb-lite"] is BarlowBeestonLite
    for name, cls in LIKELIHOODS.items():
        assert (
            cls.__module__
            == "zcalib.fit.likelihood."
            + {
                "none": "multinomial",
                "noise-corrected": "noise_corrected",
                "bb-lite": "bb_lite",
            }[name]
        )


@pytest.mark.parametrize("name", ["none", "noise-corrected", "bb-lite"])
def test_config_value_selects_the_likelihood(name: McStatLikelihood) -> None:
    rng = np.random.default_rng(1)
    edges = np.exp(math.log(60.0) + H * np.arange(1201))
    mc = rng.poisson(50.0, (1, 1200)).astype(float)
    data = rng.poisson(20.0, (1, 1200)).astype(float)
    prob = build_problem(
        data, mc, mc, [0], edges, [0], [0], FitConfig(mc_stat_likelihood=name), warn=False
    )
    assert isinstance(prob.model.objective, LIKELIHOODS[name])
    replica = prob.with_template(mc * 1.01, likelihood=prob.model.objective.replica)
    assert replica.model.objective.name == LIKELIHOODS[name].replica


def test_unknown_likelihood_is_refused() -> None:
    one = np.ones((1, 40))
    with pytest.raises(ValueError, match=r"unknown likelihood 'bb-full'; allowed: bb-lite, "):
        TemplateModel(one, one, np.ones((1, 4)), h=H, j_lo=10, rebin=5, likelihood="bb-full")
