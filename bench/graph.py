"""``AtomsGraph``: the one batch structure every descriptor, potential and task reads.

Built once from ASE frames, validated, never mutated (a frozen dataclass; ``replace`` makes a new
one). Conventions:

- ``edge_index[0]`` is the sender j, ``edge_index[1]`` the receiver i (the centre atom whose
  features the edge contributes to). Edges are sorted by receiver.
- edge vector r_ij = x_j - x_i + cell_shifts_ij @ cell[graph of i]  (``edge_vectors``);
- cell rows are lattice vectors (as in ASE); a molecule has a zero cell and pbc all False;
- ``neighbor_slot[e]`` is the position of edge e in its receiver's neighbour list, so
  (receiver, slot) addresses a dense [n_atoms, max_neighbors] layout for batched matrix products;
- ``receiver_ptr`` is the same list as compressed rows (CSR): atom i receives edges
  receiver_ptr[i]:receiver_ptr[i+1] (the fused kernels' layout). It is built here, once, eagerly,
  and never inside a compiled model: on an H100 (torch 2.11) Inductor's ``searchsorted`` over the
  receiver row of ``edge_index`` gave wrong row pointers (one atom with 406,140 of 860,032 edges)
  where eager gave the right ones (results/gpu/NVIDIA-H100-80GB-HBM3/README.md);
- units eV, Angstrom; stress targets are 3x3 in eV/A^3 with ASE's sign convention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from .neighbors import neighbor_pairs


@dataclass(frozen=True)
class AtomsGraph:
    positions: torch.Tensor          # [N, 3]
    numbers: torch.Tensor            # [N] int64 atomic numbers
    batch: torch.Tensor              # [N] int64 graph index of each atom
    ptr: torch.Tensor                # [G + 1] int64 first atom of each graph
    cell: torch.Tensor               # [G, 3, 3] rows are lattice vectors
    pbc: torch.Tensor                # [G, 3] bool
    edge_index: torch.Tensor         # [2, E] int64: [0] sender j, [1] receiver i; sorted by receiver
    cell_shifts: torch.Tensor        # [E, 3] integer-valued, same dtype as positions
    neighbor_slot: torch.Tensor      # [E] int64 slot of the edge in its receiver's list
    receiver_ptr: torch.Tensor       # [N + 1] int64 CSR row pointers of the receivers
    max_neighbors: int
    cutoff: float
    energy: torch.Tensor | None = None   # [G] eV
    forces: torch.Tensor | None = None   # [N, 3] eV/A
    stress: torch.Tensor | None = None   # [G, 3, 3] eV/A^3

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_atoms(cls, frames: Atoms | Sequence[Atoms], cutoff: float, *, dtype=torch.float64,
                   device="cpu") -> "AtomsGraph":
        """One graph holding every frame (a batch), neighbour lists from vesin, one call per frame."""
        if isinstance(frames, Atoms):
            frames = [frames]
        return collate([_single(a, cutoff) for a in frames]).to(device=device, dtype=dtype)

    # --- sizes --------------------------------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_graphs(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def senders(self) -> torch.Tensor:
        return self.edge_index[0]

    @property
    def receivers(self) -> torch.Tensor:
        return self.edge_index[1]

    @property
    def n_atoms_per_graph(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    # --- geometry -----------------------------------------------------------------------------
    def edge_vectors(self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None) -> torch.Tensor:
        """r_ij = x_j - x_i + S_ij @ cell  [E, 3]; ``positions``/``cell`` override the stored ones
        (the potential passes strained, grad-tracking copies)."""
        pos = self.positions if positions is None else positions
        cell = self.cell if cell is None else cell
        s, r = self.edge_index
        # S_ij @ cell as a broadcast product summed over a: under torch.compile it fuses into one
        # pointwise kernel; einsum became a cuBLAS batched product of E 1x3 by 3x3 matrices, launched
        # as 13 gemv kernels at 860k edges (1.1 ms of an energy + forces call of 10 ms on an H200,
        # results/gpu/NVIDIA-H200/diagnose-run). Eager forms the same [E, 3, 3] either way.
        shift = (self.cell_shifts[:, :, None] * cell[self.batch[r]]).sum(1)          # [E, 3]
        # index_select, not pos[s]: its backward is an index_add (a scatter), where indexing's is an
        # accumulating index_put (serial on the CPU: 4x slower at 13k edges)
        return pos.index_select(0, s) - pos.index_select(0, r) + shift

    # --- conversion ---------------------------------------------------------------------------
    def to(self, device=None, dtype=None) -> "AtomsGraph":
        """A copy on ``device`` with floating tensors in ``dtype`` (either may be None)."""
        changes = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                if v.is_floating_point():
                    changes[f.name] = v.to(device=device, dtype=dtype)
                else:
                    changes[f.name] = v.to(device=device)
        return dataclasses.replace(self, **changes)

    def replace(self, **changes) -> "AtomsGraph":
        return dataclasses.replace(self, **changes)

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device


def _single(atoms: Atoms, cutoff: float) -> AtomsGraph:
    """Graph of one frame (float64, CPU)."""
    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    i, j, S, _ = neighbor_pairs(atoms.positions, cell, pbc, cutoff)
    order = np.argsort(i, kind="stable")
    i, j, S = i[order], j[order], S[order]
    counts = np.bincount(i, minlength=n)
    ptr = np.concatenate([[0], np.cumsum(counts)])                  # [n + 1] CSR: atom k's edges ptr[k]:ptr[k+1]
    slot = np.arange(len(i)) - ptr[i]
    results = atoms.calc.results if atoms.calc is not None else {}
    energy = results.get("energy")
    forces = results.get("forces")
    stress = results.get("stress")
    if stress is not None:
        from ase.stress import voigt_6_to_full_3x3_stress

        stress = np.asarray(stress)
        stress = voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress
    f64 = torch.float64
    return AtomsGraph(
        positions=torch.tensor(atoms.positions, dtype=f64),
        numbers=torch.tensor(atoms.numbers, dtype=torch.long),
        batch=torch.zeros(n, dtype=torch.long),
        ptr=torch.tensor([0, n], dtype=torch.long),
        cell=torch.tensor(cell, dtype=f64).reshape(1, 3, 3),
        pbc=torch.tensor(pbc).reshape(1, 3),
        edge_index=torch.tensor(np.stack([j, i]), dtype=torch.long).reshape(2, -1),
        cell_shifts=torch.tensor(S, dtype=f64).reshape(-1, 3),
        neighbor_slot=torch.tensor(slot, dtype=torch.long),
        receiver_ptr=torch.tensor(ptr, dtype=torch.long),
        max_neighbors=int(counts.max()) if n else 0,
        cutoff=float(cutoff),
        energy=None if energy is None else torch.tensor([energy], dtype=f64),
        forces=None if forces is None else torch.tensor(forces, dtype=f64),
        stress=None if stress is None else torch.tensor(stress, dtype=f64).reshape(1, 3, 3),
    )


def graph_from_tensors(positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc, cutoff: float) -> AtomsGraph:
    """The graph of one frame built on the positions' device (vesin-torch): the same conventions and
    edge set as ``AtomsGraph.from_atoms`` (edges sorted by receiver, slots, shifts), with no host
    round trip of the positions. positions [n, 3], numbers [n], cell [3, 3] (rows), pbc [3] bool."""
    from .neighbors import neighbor_pairs_torch

    device, dtype = positions.device, positions.dtype
    n = positions.shape[0]
    pbc_t = torch.as_tensor(pbc, dtype=torch.bool).reshape(3).to(device)
    cell = cell if bool(pbc_t.any()) else torch.zeros_like(cell)
    i, j, S = neighbor_pairs_torch(positions, cell, pbc_t, cutoff)
    order = torch.sort(i, stable=True).indices
    i, j, S = i[order], j[order], S[order]
    counts = torch.bincount(i, minlength=n)
    ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])  # [n + 1] CSR of the receivers
    slot = torch.arange(i.shape[0], device=device) - ptr[i]
    return AtomsGraph(
        positions=positions, numbers=numbers.to(device=device, dtype=torch.long),
        batch=torch.zeros(n, dtype=torch.long, device=device), ptr=torch.tensor([0, n], device=device),
        cell=cell.reshape(1, 3, 3).to(dtype), pbc=pbc_t.reshape(1, 3),
        edge_index=torch.stack([j, i]), cell_shifts=S.to(dtype), neighbor_slot=slot,
        receiver_ptr=ptr,
        max_neighbors=int(counts.max()) if n else 0, cutoff=float(cutoff))


def collate(graphs: Sequence[AtomsGraph]) -> AtomsGraph:
    """Concatenate already-built graphs into one batch (no neighbour search is repeated).

    Targets are kept only if every graph has them.
    """
    if not graphs:
        raise ValueError("collate needs at least one graph")
    cutoffs = {g.cutoff for g in graphs}
    if len(cutoffs) != 1:
        raise ValueError(f"graphs built with different cutoffs {sorted(cutoffs)} cannot be batched")
    atom_offsets = torch.tensor([0] + [g.n_atoms for g in graphs]).cumsum(0)
    edge_offsets = torch.tensor([0] + [g.n_edges for g in graphs]).cumsum(0)
    graph_offsets = torch.tensor([0] + [g.n_graphs for g in graphs]).cumsum(0)

    def cat(name):
        vals = [getattr(g, name) for g in graphs]
        return None if any(v is None for v in vals) else torch.cat(vals)

    return AtomsGraph(
        positions=cat("positions"),
        numbers=cat("numbers"),
        batch=torch.cat([g.batch + graph_offsets[k] for k, g in enumerate(graphs)]),
        ptr=torch.cat([graphs[0].ptr[:1]] + [g.ptr[1:] + atom_offsets[k] for k, g in enumerate(graphs)]),
        cell=cat("cell"),
        pbc=cat("pbc"),
        edge_index=torch.cat([g.edge_index + atom_offsets[k] for k, g in enumerate(graphs)], dim=1),
        cell_shifts=cat("cell_shifts"),
        neighbor_slot=cat("neighbor_slot"),
        receiver_ptr=torch.cat([graphs[0].receiver_ptr[:1]]
                               + [g.receiver_ptr[1:] + edge_offsets[k] for k, g in enumerate(graphs)]),
        max_neighbors=max(g.max_neighbors for g in graphs),
        cutoff=graphs[0].cutoff,
        energy=cat("energy"),
        forces=cat("forces"),
        stress=cat("stress"),
    )
