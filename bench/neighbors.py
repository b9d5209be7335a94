"""Neighbour lists through vesin, one call per frame (vectorised inside; no Python loop over atoms)."""

from __future__ import annotations

import numpy as np
from vesin import NeighborList

from .errors import InputError


MAX_NEIGHBORS_ESTIMATE = 10_000      # per atom; a 6 A cutoff in liquid water gives about 90


def check_cutoff(cutoff, n_atoms: int, cell, pbc) -> None:
    """Refuse a cutoff that is not a positive finite length, or that would give more than
    ``MAX_NEIGHBORS_ESTIMATE`` neighbours per atom (estimated from the density before any list is
    built: (n / V) 4/3 pi rc^3 for a periodic cell; a molecule has at most n - 1)."""
    import math

    try:
        rc = float(cutoff)
    except (TypeError, ValueError):
        raise InputError(f"cutoff must be a length in Angstrom, got {cutoff!r}; pass e.g. --cutoff 5.0") from None
    if not math.isfinite(rc) or rc <= 0:
        raise InputError(f"cutoff must be a positive finite length in Angstrom, got {cutoff}; pass e.g. --cutoff 5.0")
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.any() or n_atoms == 0:
        return
    volume = abs(float(np.linalg.det(np.asarray(cell, dtype=float))))
    if volume <= 0:
        return                                 # a degenerate cell is reported where the cell is read
    estimate = n_atoms / volume * 4.0 / 3.0 * math.pi * rc**3
    if estimate > MAX_NEIGHBORS_ESTIMATE:
        raise InputError(f"cutoff {rc:g} A would give about {estimate:,.0f} neighbours per atom ({n_atoms} atoms in "
                         f"{volume:,.0f} A^3; the list alone would take about {estimate * n_atoms * 40 / 1e9:,.1f} GB); "
                         "interatomic potentials use a few Angstrom: pass e.g. --cutoff 5.0")


def neighbor_pairs(positions, cell, pbc, cutoff: float, *, full: bool = True):
    """All pairs (i, j, S) with |x_j - x_i + S @ cell| < cutoff.

    Returns ``(i, j, S, d)``: int64 arrays of shape [P], [P], [P, 3] (integer cell shifts) and the
    float64 distances [P]. With ``full=True`` both (i, j) and (j, i) are listed. Works for
    molecules (``pbc`` all False; the cell is ignored), for mixed periodicity and for cells smaller
    than twice the cutoff (several images of one neighbour are then listed, each with its shift).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    check_cutoff(cutoff, len(positions), cell, pbc)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if pbc.any():
        box = np.ascontiguousarray(cell, dtype=np.float64)
    else:
        box = np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=full)
    i, j, S, d = nl.compute(points=positions, box=box, periodic=[bool(p) for p in pbc], quantities="ijSd")
    return i.astype(np.int64), j.astype(np.int64), S.astype(np.int64).reshape(-1, 3), d


def device_neighbor_list_available() -> bool:
    """vesin-torch (neighbour lists on torch tensors, CPU or CUDA) is installed."""
    try:
        import vesin_torch  # noqa: F401
    except Exception:          # not installed, or built for another torch: the host path serves
        return False
    return True


def neighbor_pairs_torch(positions, cell, pbc, cutoff: float):
    """``neighbor_pairs`` on torch tensors, on their device (vesin-torch): the full list (i, j, S)
    as int64 tensors [P], [P], [P, 3] with |x_j - x_i + S @ cell| < cutoff, computed where the
    positions live (no copy to the host). ``pbc``: [3] bool tensor or sequence."""
    import torch
    from vesin_torch import NeighborList

    pbc = torch.as_tensor(pbc, dtype=torch.bool).reshape(3)
    check_cutoff(cutoff, positions.shape[0], cell.detach().cpu().numpy(), pbc.cpu().numpy())
    box = cell if bool(pbc.any()) else torch.zeros_like(cell)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, S = nl.compute(points=positions.detach(), box=box.detach(), periodic=pbc.to(positions.device),
                         quantities="ijS")
    return i.long(), j.long(), S.long().reshape(-1, 3)
