"""``BenchCalculator``: any cace-bench potential as an ASE calculator."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .graph import AtomsGraph


class BenchCalculator(Calculator):
    """Energy, forces and (for periodic cells) stress from a ``bench.potential.Potential``.

    Reuse between calls: the model stays on its device in eval mode, and the neighbour list is
    built with a ``skin`` and reused (only positions and cell are replaced) until an atom has moved
    more than skin/2 or the numbers, pbc or cell shape change. Edges beyond the cutoff contribute
    exactly zero (the envelope vanishes there), so the results do not depend on the skin.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential, *, dtype=torch.float64, device="cpu", skin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential.to(device=device, dtype=dtype).eval()
        self.dtype, self.device, self.skin = dtype, torch.device(device), float(skin)
        self.cutoff = float(potential.descriptor.cutoff)
        self._graph = None
        self._ref_positions = None
        self._ref_key = None
        self.n_rebuilds = 0

    def _graph_for(self, atoms) -> AtomsGraph:
        key = (atoms.numbers.tobytes(), atoms.pbc.tobytes())
        pos = atoms.positions
        stale = (
            self._graph is None or key != self._ref_key or len(pos) != len(self._ref_positions)
            or np.abs(pos - self._ref_positions).max(initial=0.0) > 0.5 * self.skin
            or not np.allclose(atoms.cell.array, self._ref_cell, atol=1e-3)
        )
        if stale:
            self._graph = AtomsGraph.from_atoms(atoms, self.cutoff + self.skin, dtype=self.dtype, device=self.device)
            self._ref_positions, self._ref_key, self._ref_cell = pos.copy(), key, atoms.cell.array.copy()
            self.n_rebuilds += 1
            return self._graph
        cell = atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3))
        return self._graph.replace(
            positions=torch.as_tensor(pos, dtype=self.dtype, device=self.device),
            cell=torch.as_tensor(cell, dtype=self.dtype, device=self.device).reshape(1, 3, 3),
        )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        graph = self._graph_for(self.atoms)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        out = self.potential(graph, forces=True, stress=want_stress)
        energy = float(out["energy"].detach()[0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].detach().cpu().numpy().astype(float)}
        if want_stress:
            from ase.stress import full_3x3_to_voigt_6_stress

            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"].detach()[0].cpu().numpy()).astype(float)
