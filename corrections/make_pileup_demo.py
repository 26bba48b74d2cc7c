"""Regenerate ``pileup_demo.json``: pile-up weights for the demo generator.

MC true pile-up ~ Poisson(25); data profile Poisson(27) nominal and Poisson(27 x 1.046) /
Poisson(27 x 0.954) for the up/down minimum-bias cross-section variations (±4.6 %). The
profiles are the exact Poisson probabilities over the integer bins ``[n, n+1)``,
n = 0..99 (no sampling, so the payload is reproducible bit for bit). Weights
``P_data(n) / P_mc(n)`` are capped at 10: beyond n ~ 45 the ratio of the two Poisson tails
explodes (the MC probability there is < 1e-4) and uncapped weights would let a handful of
MC events dominate. The correction ``pileup`` takes ``NumTrueInteractions`` (real) and
``weights`` (``nominal``/``up``/``down``), with clamped overflow.

Usage::

    python corrections/make_pileup_demo.py [OUTPUT]   # default: next to this script
    correction validate corrections/pileup_demo.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from scipy.stats import poisson

from zcalib.corrections import build_pileup_correction, write_correction_set

MC_MEAN = 25.0
DATA_MEAN = 27.0
XS_VARIATION = 0.046
N_BINS = 100
MAX_WEIGHT = 10.0


def main(argv: list[str] | None = None) -> Path:
    """Build the demo pile-up payload and write it; return the output path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "output", nargs="?", default=str(Path(__file__).with_name("pileup_demo.json"))
    )
    args = parser.parse_args(argv)
    n = np.arange(N_BINS)
    corr = build_pileup_correction(
        poisson.pmf(n, MC_MEAN),
        poisson.pmf(n, DATA_MEAN),
        poisson.pmf(n, DATA_MEAN * (1 + XS_VARIATION)),
        poisson.pmf(n, DATA_MEAN * (1 - XS_VARIATION)),
        max_weight=MAX_WEIGHT,
        description=(
            f"Demo pile-up weights: MC Poisson({MC_MEAN:g}), data Poisson({DATA_MEAN:g}) "
            f"(up/down: mean x {1 + XS_VARIATION:g} / {1 - XS_VARIATION:g}); "
            f"w = P_data/P_mc over integer bins 0..{N_BINS - 1}, capped at {MAX_WEIGHT:g}, "
            "clamped overflow. Regenerate with corrections/make_pileup_demo.py"
        ),
    )
    return write_correction_set(
        args.output, [corr], description="zcalib demo pile-up weights", run_id=False
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
