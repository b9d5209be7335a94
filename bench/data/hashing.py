"""Content hashes that identify a data set and a split in every record."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from ase import Atoms


def dataset_hash(frames: Sequence[Atoms]) -> str:
    """SHA-256 (first 16 hex digits) of numbers, positions, cell, pbc, energy and forces of every frame."""
    h = hashlib.sha256()
    for atoms in frames:
        for arr in (atoms.numbers.astype(np.int64), atoms.positions, atoms.cell.array, atoms.pbc):
            h.update(np.ascontiguousarray(arr).tobytes())
        if atoms.calc is not None:
            h.update(np.float64(atoms.calc.results.get("energy", np.nan)).tobytes())
            f = atoms.calc.results.get("forces")
            if f is not None:
                h.update(np.ascontiguousarray(f, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def indices_hash(indices: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
