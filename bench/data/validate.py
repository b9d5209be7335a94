"""Per-frame checks: every frame the dataset layer returns has passed these."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .errors import DataError

MIN_CELL_VOLUME = 1e-3  # Angstrom^3; below this a periodic cell is degenerate


def check_frame(atoms: Atoms, path, frame: int, *, min_distance: float, keys: dict | None = None) -> None:
    """Raise DataError unless ``atoms`` (already in eV / Angstrom) is physically usable.

    Checks: at least one atom, known elements, finite positions, a cell of non-zero volume where
    periodic, no two atoms closer than ``min_distance`` Angstrom, and finite energy and forces of
    the right shapes (the calculator results set by the reader). ``keys`` maps ``energy``,
    ``forces`` and ``stress`` to the names they had in the file, for the error message.
    """
    keys = {"energy": "energy", "forces": "forces", "stress": "stress", **(keys or {})}
    n = len(atoms)
    if n == 0:
        raise DataError(path, frame, "positions", "frame has no atoms")
    z = atoms.numbers
    if np.any(z < 1) or np.any(z > 118):
        bad = int(z[(z < 1) | (z > 118)][0])
        raise DataError(path, frame, "numbers", f"unknown element (atomic number {bad})")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        atom = int(np.argwhere(~np.isfinite(pos))[0, 0])
        raise DataError(path, frame, "positions", f"non-finite position on atom {atom}")
    if atoms.pbc.any():
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise DataError(path, frame, "cell", "non-finite cell")
        if abs(np.linalg.det(cell)) < MIN_CELL_VOLUME:
            raise DataError(path, frame, "cell", f"periodic cell has (near) zero volume {np.linalg.det(cell):.3g} A^3")
    if n > 1 and min_distance > 0:
        from ..neighbors import neighbor_pairs

        # search at >= 1 A (a finer cell grid makes vesin slow), then keep the close pairs
        i, j, _, d = neighbor_pairs(pos, atoms.cell.array, atoms.pbc, max(min_distance, 1.0), full=False)
        close = d < min_distance
        i, j, d = i[close], j[close], d[close]
        if len(d):
            k = int(np.argmin(d))
            if i[k] == j[k]:                     # an atom next to its own periodic image: the cell, not the atoms
                cell = atoms.cell.array
                heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
                raise DataError(
                    path, frame, "cell",
                    f"atom {int(i[k])} is {d[k]:.3f} A from its own periodic image: the cell is too thin (heights "
                    f"{', '.join(f'{h:.3f}' for h in heights)} A); check the cell and --length-unit",
                )
            raise DataError(
                path, frame, "positions",
                f"atoms {int(i[k])} and {int(j[k])} are {d[k]:.3f} A apart (closer than {min_distance} A)",
            )
    results = atoms.calc.results if atoms.calc is not None else {}
    e = results.get("energy")
    if e is None or not np.isfinite(e):
        raise DataError(path, frame, keys["energy"], f"energy is {e!r}, not a finite number")
    f = results.get("forces")
    if f is None or np.shape(f) != (n, 3):
        raise DataError(path, frame, keys["forces"], f"forces have shape {np.shape(f)}, expected ({n}, 3)")
    if not np.all(np.isfinite(f)):
        atom = int(np.argwhere(~np.isfinite(f))[0, 0])
        raise DataError(path, frame, keys["forces"], f"non-finite force on atom {atom}")
    s = results.get("stress")
    if s is not None and not np.all(np.isfinite(s)):
        raise DataError(path, frame, keys["stress"], "non-finite stress")
