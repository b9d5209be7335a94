"""Neighbour lists through vesin, one call per frame (vectorised inside; no Python loop over atoms)."""

from __future__ import annotations

import numpy as np
from vesin import NeighborList


def neighbor_pairs(positions, cell, pbc, cutoff: float, *, full: bool = True):
    """All pairs (i, j, S) with |x_j - x_i + S @ cell| < cutoff.

    Returns ``(i, j, S, d)``: int64 arrays of shape [P], [P], [P, 3] (integer cell shifts) and the
    float64 distances [P]. With ``full=True`` both (i, j) and (j, i) are listed. Works for
    molecules (``pbc`` all False; the cell is ignored), for mixed periodicity and for cells smaller
    than twice the cutoff (several images of one neighbour are then listed, each with its shift).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if pbc.any():
        box = np.ascontiguousarray(cell, dtype=np.float64)
    else:
        box = np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=full)
    i, j, S, d = nl.compute(points=positions, box=box, periodic=[bool(p) for p in pbc], quantities="ijSd")
    return i.astype(np.int64), j.astype(np.int64), S.astype(np.int64).reshape(-1, 3), d
