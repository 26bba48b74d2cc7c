"""Correction payloads: correctionlib JSON (EGM conventions), legacy pymin text, evaluation.

* :mod:`~zcalib.corrections.writer` builds and writes correctionlib schema-v2 payloads
  (scale and smear steps, compound stacks, pile-up weights) and validates files;
* :mod:`~zcalib.corrections.egm` assembles them in the CMS EGM Run-3 layout (compound,
  smearing and systematics, random-number generator) that every zcalib payload has;
* :mod:`~zcalib.corrections.legacy` writes, reads, matches and combines pymin text files;
* :mod:`~zcalib.corrections.apply` evaluates corrections on numpy arrays.

Example:
    >>> from zcalib.categories import Category
    >>> corr = build_scale_correction("s", [Category("scale", 0, eta=(0, 2.5))], [1.01],
    ...                               [0.001], description="demo")
    >>> [v.name for v in corr.inputs]
    ['syst', 'run', 'ScEta', 'r9', 'AbsScEta', 'pt', 'seedGain']
"""

from __future__ import annotations

from zcalib.corrections.apply import (
    PROVIDED_INPUTS,
    evaluate_correction,
    evaluate_scale,
    evaluate_smear,
    load_correction_set,
)
from zcalib.corrections.egm import (
    DEFAULT_ERA,
    ERAS,
    MC_SYST_KEYS,
    EgmNames,
    ScaleSource,
    build_scale_uncertainty,
    build_smear_and_syst,
    check_era,
    egm_corrections,
    particle_of,
    pin_at_nominal,
    used_inputs,
)
from zcalib.corrections.legacy import (
    LegacyTable,
    combine,
    read_legacy,
    read_legacy_for_scheme,
    write_legacy,
    write_only_step,
)
from zcalib.corrections.writer import (
    GAIN_EDGES,
    INPUT_ORDER,
    PILEUP_INPUTS,
    SCALE_INPUTS,
    SCALE_SYST_KEYS,
    SMEAR_INPUTS,
    SMEAR_SYST_KEYS,
    build_compound,
    build_pileup_correction,
    build_scale_correction,
    build_smear_correction,
    validate_file,
    write_correction_set,
)

__all__ = [
    "DEFAULT_ERA",
    "ERAS",
    "GAIN_EDGES",
    "INPUT_ORDER",
    "MC_SYST_KEYS",
    "PILEUP_INPUTS",
    "PROVIDED_INPUTS",
    "SCALE_INPUTS",
    "SCALE_SYST_KEYS",
    "SMEAR_INPUTS",
    "SMEAR_SYST_KEYS",
    "EgmNames",
    "LegacyTable",
    "ScaleSource",
    "build_compound",
    "build_pileup_correction",
    "build_scale_correction",
    "build_scale_uncertainty",
    "build_smear_and_syst",
    "build_smear_correction",
    "check_era",
    "combine",
    "egm_corrections",
    "evaluate_correction",
    "evaluate_scale",
    "evaluate_smear",
    "load_correction_set",
    "particle_of",
    "pin_at_nominal",
    "read_legacy",
    "read_legacy_for_scheme",
    "used_inputs",
    "validate_file",
    "write_correction_set",
    "write_legacy",
    "write_only_step",
]
