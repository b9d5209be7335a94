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
- ``edge_mask`` (None on every graph the neighbour search builds) marks padding edges False: a
  graph padded to a bucketed size (``pad_edges``, for CUDA graphs that replay fixed shapes) holds
  extra self-edges j = i whose vector ``edge_vectors`` replaces by a fixed one of length
  2 x ``cutoff``, beyond the cutoff, so that each contributes exactly zero (f_c = 0) to every sum
  and to every gradient;
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
    edge_mask: torch.Tensor | None = None  # [E] bool, False on padding edges (``pad_edges``); None: no padding
    # the atomic numbers present, known on the host where the graph was built from host data: the
    # model checks them against its elements without reading ``numbers`` back from the device (a
    # host sync on a GPU, once per call); None: not known, and the model reads them
    elements: frozenset | None = None

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
        vec = pos.index_select(0, s) - pos.index_select(0, r) + shift
        if self.edge_mask is None:
            return vec
        # padding edges: a constant vector beyond the cutoff (a self-edge's own is zero, whose
        # direction and 1/r would be NaN); torch.where sends them no gradient
        far = torch.zeros_like(vec[:1])
        far[:, 0] = 2.0 * self.cutoff
        return torch.where(self.edge_mask[:, None], vec, far)

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
        if "numbers" in changes and "elements" not in changes:   # new numbers: their elements are not known
            changes["elements"] = None
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
        elements=frozenset(int(z) for z in atoms.numbers),
    )


def graph_from_tensors(positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc, cutoff: float,
                       elements=None) -> AtomsGraph:
    """The graph of one frame built on the positions' device (vesin-torch): the same conventions and
    edge set as ``AtomsGraph.from_atoms`` (edges sorted by receiver, slots, shifts), with no host
    round trip of the positions. positions [n, 3], numbers [n], cell [3, 3] (rows), pbc [3] bool;
    ``elements``: the atomic numbers in ``numbers``, where the caller knows them on the host."""
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
        max_neighbors=int(counts.max()) if n else 0, cutoff=float(cutoff),
        elements=None if elements is None else frozenset(int(z) for z in elements))


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
        edge_mask=None if all(g.edge_mask is None for g in graphs) else torch.cat(
            [g.edge_mask if g.edge_mask is not None else torch.ones(g.n_edges, dtype=torch.bool, device=g.device)
             for g in graphs]),
        elements=None if any(g.elements is None for g in graphs) else frozenset().union(*(g.elements for g in graphs)),
    )


def edge_bucket(n: int) -> int:
    """The smallest size >= n of the form m 2^k with 16 <= m < 32 (16 sizes an octave, so at most
    1/16 above n); sizes up to 16 are kept. ``pad_edges`` rounds edge and neighbour counts with it."""
    n = int(n)
    if n <= 16:
        return n
    step = 1 << (n.bit_length() - 5)
    return -(-n // step) * step


def pad_edges(graph: AtomsGraph, n_edges: int | None = None, max_neighbors: int | None = None) -> AtomsGraph:
    """``graph`` with padding edges added up to ``n_edges`` edges and a dense layout of
    ``max_neighbors`` slots (defaults: ``edge_bucket`` of the graph's own counts, the neighbour
    count raised where [atoms x slots] could not hold the edges), so that an MD run whose edge count
    changes at every neighbour-list rebuild calls its potential with a few shapes only (CUDA graphs
    replay a recorded shape; each new shape is a new recording).

    A padding edge is a self-edge j = i with ``edge_mask`` False (``edge_vectors`` gives it a length
    of 2 x cutoff): every term it adds is exactly zero, so energies, forces and stress are those of
    the unpadded graph. Padding fills the atoms' free slots in atom order, at the end of each row
    (edges stay sorted by receiver; no atom gets more than ``max_neighbors``). Atoms, graphs and
    targets are unchanged. Built with tensor ops on the graph's device, once per neighbour list.
    """
    N, E = graph.n_atoms, graph.n_edges
    auto_nb = max_neighbors is None
    n_edges = edge_bucket(E) if n_edges is None else int(n_edges)
    nb = edge_bucket(graph.max_neighbors) if auto_nb else int(max_neighbors)
    if n_edges < E or nb < graph.max_neighbors:
        raise ValueError(f"cannot pad a graph of {E} edges and {graph.max_neighbors} neighbours at most to "
                         f"{n_edges} edges and {nb} neighbours")
    # a padded graph always carries its mask, padding or not, so that every call of a run has the
    # same inputs (a compiled model would otherwise guard on the mask being None and compile again)
    unmasked = graph if graph.edge_mask is not None else graph.replace(
        edge_mask=torch.ones(E, dtype=torch.bool, device=graph.device))
    if N == 0:
        if n_edges:
            raise ValueError("a graph with no atoms has no atom to hold padding edges")
        return unmasked
    if N * nb < n_edges:
        if not auto_nb:
            raise ValueError(f"{N} atoms x {nb} neighbours cannot hold {n_edges} edges; pass a larger max_neighbors")
        nb = edge_bucket(-(-n_edges // N))
    pad = n_edges - E
    if pad == 0 and nb == graph.max_neighbors:
        return unmasked
    dev = graph.device
    counts = graph.receiver_ptr[1:] - graph.receiver_ptr[:-1]                  # [N] edges per receiver
    free = nb - counts                                                          # [N] slots left
    before = torch.cumsum(free, 0) - free                                       # [N] free slots of the atoms before
    extra = (pad - before).clamp(min=0).minimum(free)                           # [N] padding edges per atom
    new_ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts + extra, 0)])   # [N + 1]
    atom = torch.repeat_interleave(torch.arange(N, device=dev), extra, output_size=pad)    # [pad] receiver = sender
    first = torch.cumsum(extra, 0) - extra                                      # [N] first padding edge of each atom
    pad_slot = torch.arange(pad, device=dev) - first[atom] + counts[atom]        # [pad] after the atom's real edges
    where_real = new_ptr[graph.receivers] + graph.neighbor_slot                 # [E] new position of each real edge
    where_pad = new_ptr[atom] + pad_slot                                        # [pad]
    order = torch.cat([where_real, where_pad])                                  # [E + pad] a permutation

    def place(real: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:        # rows [E, ...] + [pad, ...]
        both = torch.cat([real, padding])
        return torch.empty_like(both).index_copy_(0, order, both)

    mask = unmasked.edge_mask
    return graph.replace(
        edge_index=place(graph.edge_index.T, torch.stack([atom, atom], 1)).T.contiguous(),
        cell_shifts=place(graph.cell_shifts, graph.cell_shifts.new_zeros(pad, 3)),
        neighbor_slot=place(graph.neighbor_slot, pad_slot),
        receiver_ptr=new_ptr, max_neighbors=nb,
        edge_mask=place(mask, torch.zeros(pad, dtype=torch.bool, device=dev)),
    )
