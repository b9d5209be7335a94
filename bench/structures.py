"""Standard test structures made locally (no data files needed)."""

from __future__ import annotations

import numpy as np
from ase import Atoms


def random_rotation(rng: np.random.Generator, proper: bool = True) -> np.ndarray:
    """A Haar-random 3x3 rotation (QR of a Gaussian matrix, signs fixed); ``proper=False`` gives a
    rotation times an inversion (determinant -1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def water_box(n_side: int = 4, box: float = 12.42, seed: int = 0) -> Atoms:
    """n_side^3 randomly oriented H2O molecules on a grid in a cubic box (1.0 g/cm^3 at 64 in 12.42 A).

    O-H 0.9572 A, H-O-H 104.52 deg; a small random displacement breaks the grid symmetry.
    ``water_box().repeat(2)`` is the 1536-atom 2x2x2 supercell.
    """
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    ref = molecule("H2O")
    ref.positions -= ref.positions[0]
    spacing = box / n_side
    symbols, positions = [], []
    for idx in np.ndindex(n_side, n_side, n_side):
        centre = (np.array(idx) + 0.5) * spacing + rng.uniform(-0.15, 0.15, 3)
        rot = random_rotation(rng)
        symbols += list(ref.get_chemical_symbols())
        positions += list(ref.positions @ rot.T + centre)
    return Atoms(symbols, positions=positions, cell=np.eye(3) * box, pbc=True)
