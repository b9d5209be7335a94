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


def is_isolated_atom(atoms: Atoms) -> bool:
    """A reference frame for E0: a single atom, or a frame whose ``config_type`` is IsolatedAtom
    (the MACE / ACEpotentials convention)."""
    return len(atoms) == 1 or str(atoms.info.get("config_type", "")).lower() == "isolatedatom"


def take_isolated_atoms(frames: Sequence[Atoms], source: str) -> tuple[list[Atoms], dict[int, float]]:
    """(the other frames, {Z: E0 in eV}) from a data set that carries its isolated-atom frames
    (``--e0 auto``). Errors name the file and frame: none found, a config_type IsolatedAtom frame
    with several atoms, two frames for one element."""
    from .errors import DataError

    rest, e0, where = [], {}, {}
    for k, atoms in enumerate(frames):
        if not is_isolated_atom(atoms):
            rest.append(atoms)
            continue
        if len(atoms) != 1:
            raise DataError(source, k, "config_type", f"an IsolatedAtom frame with {len(atoms)} atoms: an isolated-"
                                                      "atom frame holds one atom; fix the file or pass --e0 PATH")
        z = int(atoms.numbers[0])
        if z in e0:
            from ase.data import chemical_symbols

            raise DataError(source, k, "numbers", f"a second isolated-atom frame for {chemical_symbols[z]} (the first "
                                                  f"is frame {where[z]}): keep one, or pass --e0 PATH")
        e0[z], where[z] = float(atoms.get_potential_energy()), k
    if not e0:
        raise DataError(source, None, "frames", "--e0 auto found no isolated-atom frame (a single atom, or "
                                                "config_type=IsolatedAtom): pass --e0 PATH, or leave --e0 out "
                                                "to fit E0 by least squares")
    return rest, e0
