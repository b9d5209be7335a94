"""Per-element reference energies E0 (eV)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms


def fit_e0(frames: Sequence[Atoms]) -> dict[int, float]:
    """Least-squares E0: minimise sum_frames (E - sum_Z n_Z(frame) E0_Z)^2 over the given frames.

    Where composition does not determine every E0 uniquely (e.g. a single composition), the
    minimum-norm solution is returned (numpy lstsq), which is the usual choice.
    """
    elements = sorted({int(z) for a in frames for z in a.numbers})
    col = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(frames), len(elements)))
    for r, atoms in enumerate(frames):
        for z, c in zip(*np.unique(atoms.numbers, return_counts=True)):
            counts[r, col[int(z)]] = c
    energies = np.array([a.get_potential_energy() for a in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e0[col[z]]) for z in elements}
