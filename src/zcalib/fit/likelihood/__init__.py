"""The likelihoods of the template fit: one module each, one table keyed by the
``mc_stat_likelihood`` value of :class:`~zcalib.fit.config.FitConfig`.

* ``"none"``: :mod:`~zcalib.fit.likelihood.multinomial`, the plain binned multinomial NLL;
* ``"noise-corrected"`` (default): :mod:`~zcalib.fit.likelihood.noise_corrected`, the
  multinomial NLL minus the expected template-noise term;
* ``"bb-lite"``: :mod:`~zcalib.fit.likelihood.bb_lite`, Barlow-Beeston lite.

Each is a :class:`~zcalib.fit.likelihood.base.Likelihood` bound to a
:class:`~zcalib.fit.model.TemplateModel`, which provides the prediction (template, kernel,
prediction variance) they share.

Example:
    >>> sorted(LIKELIHOODS)
    ['bb-lite', 'noise-corrected', 'none']
"""

from __future__ import annotations

from zcalib.fit.likelihood.base import DataErrors, Likelihood, RegionTerms
from zcalib.fit.likelihood.bb_lite import BarlowBeestonLite
from zcalib.fit.likelihood.multinomial import Multinomial, multinomial_terms
from zcalib.fit.likelihood.noise_corrected import NoiseCorrected

__all__ = [
    "LIKELIHOODS",
    "BarlowBeestonLite",
    "DataErrors",
    "Likelihood",
    "Multinomial",
    "NoiseCorrected",
    "RegionTerms",
    "multinomial_terms",
]

#: ``mc_stat_likelihood`` value -> likelihood class.
LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls for cls in (Multinomial, NoiseCorrected, BarlowBeestonLite)
}
