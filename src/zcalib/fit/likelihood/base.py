"""The likelihood interface shared by the modules of :mod:`zcalib.fit.likelihood`."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from zcalib.fit.model import TemplateModel

__all__ = ["DataErrors", "Likelihood", "RegionTerms"]

FloatArray = NDArray[np.float64]

#: How the data-statistics covariance follows from a minimum of the likelihood:
#: ``"hessian"``: ``H⁻¹``; ``"sandwich"``: ``H⁻¹ F H⁻¹`` with ``F`` the data's Fisher
#: information (the objective is not the data NLL); ``"data-hessian"``: the inverse Hessian
#: of the plain multinomial NLL at the minimum (the objective holds the MC statistics).
DataErrors = Literal["hessian", "sandwich", "data-hessian"]


@dataclass(frozen=True)
class RegionTerms:
    """Per-region NLL and its derivatives with respect to the region's ``(μ, s²)``.

    All arrays have shape ``(R,)``; derivatives are ``None`` when not requested.
    """

    nll: FloatArray
    g_mu: FloatArray | None = None
    g_s: FloatArray | None = None
    h_mumu: FloatArray | None = None
    h_mus: FloatArray | None = None
    h_ss: FloatArray | None = None


class Likelihood:
    """One likelihood of the template fit, bound to a :class:`~zcalib.fit.model.TemplateModel`.

    Subclasses set the class attributes and implement :meth:`evaluate`; per-fit state (the
    noise correction's reference) lives on the instance.

    Attributes:
        name: the ``mc_stat_likelihood`` value.
        replica: likelihood of the bootstrap replicas' gradients (a term that is a fixed
            function of the parameters drops out of the replicas' covariance).
        refresh_at_minimum: the likelihood has a reference point that is set again at the
            minimum (followed by a Newton polish).
        data_errors: how the data-statistics covariance is formed (:data:`DataErrors`).
        bootstrap_bias: the template-noise bias correction (``FitConfig.template_bias``)
            applies to this likelihood.
    """

    name: ClassVar[str]
    replica: ClassVar[str]
    refresh_at_minimum: ClassVar[bool] = False
    data_errors: ClassVar[DataErrors] = "hessian"
    bootstrap_bias: ClassVar[bool] = True

    def __init__(self, model: TemplateModel) -> None:
        # a weak reference: the model owns its likelihood, and a reference cycle would keep
        # every bootstrap replica's template and caches alive until the cyclic collector runs
        self.model: TemplateModel = weakref.proxy(model)

    def evaluate(self, mu: FloatArray, s2: FloatArray, order: int) -> RegionTerms:
        """Per-region NLL (minus its saturated value) and derivatives in ``(μ, s²)`` at the
        kernel variance ``s2`` (already floored)."""
        raise NotImplementedError

    def set_reference(self, mu: FloatArray, s2: FloatArray) -> None:  # noqa: ARG002
        """Set the likelihood's reference point (no-op unless it has one)."""
        return

    def copy_reference(self, other: Likelihood) -> None:  # noqa: ARG002
        """Use the reference point of ``other`` (same regions and bins; no-op by default)."""
        return
