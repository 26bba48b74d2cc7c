"""Tiny hand-made ECALELF TTrees for bad-input tests (real ROOT files written with uproot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import uproot

F3 = np.dtype((np.float32, (3,)))


def write_ecalelf(
    path: Path,
    *,
    n: int = 1000,
    nan_at: int | None = None,
    seed: int = 3,
    drop: tuple[str, ...] = (),
    tree: str = "selected",
    runs: np.ndarray | None = None,
    lumis: np.ndarray | None = None,
) -> Path:
    """Write ``n`` back-to-back Z-like pairs to an ECALELF ``selected`` TTree.

    ``runs`` (default: all 355100) and ``lumis`` give each event's run and luminosity block;
    without ``lumis`` the tree has no ``lumiBlock`` branch (like minimal ECALELF lists).
    """
    rng = np.random.default_rng(seed)
    eta = rng.uniform(-1.2, 1.2, (n, 3)).astype(np.float32)
    phi = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
    phi[:, 1] = phi[:, 0] + np.pi
    energy = (45.6 * np.cosh(eta) * rng.normal(1, 0.02, (n, 3))).astype(np.float32)
    energy[:, 1] *= np.float32(1.0)
    if nan_at is not None:
        energy[nan_at, 1] = np.nan
    branches = {
        "runNumber": np.full(n, 355100, np.uint32)
        if runs is None
        else np.asarray(runs, dtype=np.uint32),
        "R9Ele": rng.uniform(0.8, 1.0, (n, 3)).astype(np.float32),
        "etaEle": eta,
        "phiEle": phi,
        "energy_ECAL_ele": energy,
        "invMass_ECAL_ele": np.full(n, 91.0, np.float32),
        "gainSeedSC": np.zeros((n, 3), np.uint8),
        "eleID": np.full((n, 3), 0x18, np.uint32),
    }
    if lumis is not None:
        branches["lumiBlock"] = np.asarray(lumis, dtype=np.uint32)
    for b in drop:
        branches.pop(b)
    types = {
        k: (np.dtype((v.dtype, (3,))) if v.ndim == 2 else v.dtype) for k, v in branches.items()
    }
    with uproot.recreate(path) as f:
        f.mktree(tree, types)
        f[tree].extend(branches)
    return path
