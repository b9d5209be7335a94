"""Element-resolved radial distribution functions and their distance (for the stability task)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..neighbors import neighbor_pairs


def rdf(frames: Sequence[Atoms], r_max: float = 6.0, n_bins: int = 60) -> dict[tuple[int, int], np.ndarray]:
    """g_ab(r) averaged over ``frames`` (periodic), for every element pair a <= b  -> {(a, b): [n_bins]}.

    g_ab(r) = V / (N_a N_b) * <n_ab(r)> / (4 pi r^2 dr), counting ordered pairs once per (a, b).
    """
    edges = np.linspace(0.0, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    counts: dict[tuple[int, int], np.ndarray] = {}
    norm: dict[tuple[int, int], float] = {}
    for atoms in frames:
        z = atoms.numbers
        i, j, _, d = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
        vol = atoms.get_volume()
        species = np.unique(z)
        for ai, a in enumerate(species):
            for b in species[ai:]:
                sel = (z[i] == a) & (z[j] == b)
                h, _ = np.histogram(d[sel], bins=edges)
                n_a, n_b = np.sum(z == a), np.sum(z == b)
                key = (int(a), int(b))
                counts[key] = counts.get(key, 0) + h
                norm[key] = norm.get(key, 0.0) + n_a * n_b / vol
    return {k: counts[k] / (norm[k] * shell) for k in counts}


def rdf_distance(g: dict, g_ref: dict, r_max: float = 6.0, fractions: dict | None = None) -> float:
    """L1 RDF error: sum over element pairs (a, b) of w_ab * integral |g_ab - g_ref_ab| dr; 0 for identical RDFs.

    w_ab = x_a x_b (doubled for a != b; the weights sum to 1) with x the atom fractions, so a
    mixture's error is on the scale of a one-element RDF error and is not inflated by the noise of
    rare pairs; without ``fractions`` every pair weighs 1.
    """
    total = 0.0
    for key in set(g) | set(g_ref):
        w = 1.0
        if fractions is not None:
            w = fractions.get(key[0], 0.0) * fractions.get(key[1], 0.0) * (1 if key[0] == key[1] else 2)
        a = g.get(key)
        b = g_ref.get(key)
        n = len(a if a is not None else b)
        a = np.zeros(n) if a is None else a
        b = np.zeros(n) if b is None else b
        total += w * float(np.abs(a - b).sum() * (r_max / n))
    return total


def atom_fractions(atoms: Atoms) -> dict[int, float]:
    z, c = np.unique(atoms.numbers, return_counts=True)
    return {int(k): float(v) / len(atoms) for k, v in zip(z, c)}
