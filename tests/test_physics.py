"""Physics kernels: the compiled pair-mass loop is the array formula, bit for bit."""

from __future__ import annotations

import numpy as np

from zcalib._jit import jitted
from zcalib.physics import pair_mass, pair_masses


def test_pair_masses_loop_equals_pair_mass_bitwise():
    """The processor's compiled loop gives pair_mass's numbers exactly, fill values
    (η = ±999, NaN energies) included: they give NaN, which no mass window keeps."""
    rng = np.random.default_rng(3)
    n = 20_000
    energy = rng.uniform(20.0, 80.0, (n, 2))
    eta = rng.uniform(-2.5, 2.5, (n, 2))
    phi = rng.uniform(-np.pi, np.pi, (n, 2))
    eta[:5, 1] = -999.0
    eta[5:10, 0] = 999.0
    energy[10:15, 0] = np.nan
    ref = pair_mass(energy[:, 0], eta[:, 0], phi[:, 0], energy[:, 1], eta[:, 1], phi[:, 1])
    got = jitted(pair_masses)(energy, eta, phi)
    np.testing.assert_array_equal(got, ref)
    assert np.isnan(got[:15]).all()
    assert np.isfinite(got[15:]).all()
