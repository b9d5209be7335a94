"""Neighbour lists agree with ASE's reference; AtomsGraph batching and conventions."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

from bench.graph import AtomsGraph, collate
from bench.neighbors import neighbor_pairs


def _frames():
    rng = np.random.default_rng(1)
    small = bulk("Cu", "fcc", a=3.6)                      # 1 atom, cell far below twice the cutoff
    small.rattle(0.05, seed=1)
    tric = bulk("Si", "diamond", a=5.43).repeat((2, 1, 1))
    tric.set_cell(tric.cell.array @ np.array([[1, 0.1, 0], [0, 1, 0.2], [0.1, 0, 1]]), scale_atoms=True)
    tric.rattle(0.05, seed=2)
    slab = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
    slab.pbc = [True, True, False]
    slab.rattle(0.05, seed=3)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(0, 0.02, mol.positions.shape)
    return {"small-periodic": small, "triclinic": tric, "slab": slab, "molecule": mol}


@pytest.mark.parametrize("name", ["small-periodic", "triclinic", "slab", "molecule"])
@pytest.mark.parametrize("cutoff", [2.5, 5.0])
def test_neighbor_pairs_match_ase(name, cutoff):
    atoms = _frames()[name]
    i, j, S, d = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    ii, jj, SS, dd = neighbor_list("ijSd", atoms, cutoff)
    ours = sorted(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))
    ref = sorted(zip(ii.tolist(), jj.tolist(), map(tuple, SS.tolist())))
    assert ours == ref
    assert np.allclose(np.sort(d), np.sort(dd))


@pytest.mark.parametrize("name", ["small-periodic", "triclinic", "slab", "molecule"])
def test_graph_edge_vectors_and_convention(name):
    atoms = _frames()[name]
    g = AtomsGraph.from_atoms(atoms, cutoff=4.0)
    ii, jj, DD = neighbor_list("ijD", atoms, 4.0)
    vec = g.edge_vectors().numpy()
    senders, receivers = g.edge_index.numpy()
    ours = sorted(zip(receivers.tolist(), senders.tolist(), np.round(vec, 8).tolist()))
    ref = sorted(zip(ii.tolist(), jj.tolist(), np.round(DD, 8).tolist()))  # ASE: D = x_j - x_i + S.cell
    assert [o[:2] for o in ours] == [r[:2] for r in ref]
    assert np.allclose([o[2] for o in ours], [r[2] for r in ref])
    assert np.all(np.diff(receivers) >= 0)  # sorted by receiver
    # the dense slot layout addresses every edge exactly once
    flat = receivers * g.max_neighbors + g.neighbor_slot.numpy()
    assert len(np.unique(flat)) == g.n_edges and g.neighbor_slot.max() < g.max_neighbors


def test_batch_equals_parts_and_to():
    frames = list(_frames().values())
    parts = [AtomsGraph.from_atoms(a, cutoff=3.0) for a in frames]
    batch = AtomsGraph.from_atoms(frames, cutoff=3.0)
    assert batch.n_graphs == 4 and batch.n_atoms == sum(p.n_atoms for p in parts)
    assert batch.n_edges == sum(p.n_edges for p in parts)
    assert torch.allclose(batch.edge_vectors(), torch.cat([p.edge_vectors() for p in parts]))
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(4), torch.tensor([len(a) for a in frames])))
    again = collate(parts)
    assert torch.equal(again.edge_index, batch.edge_index)
    g32 = batch.to(dtype=torch.float32)
    assert g32.positions.dtype == torch.float32 and g32.edge_index.dtype == torch.long
    assert batch.positions.dtype == torch.float64  # the original is not mutated


def test_empty_and_isolated_graphs():
    lone = Atoms("Cu", positions=[[0, 0, 0]])
    g = AtomsGraph.from_atoms(lone, cutoff=5.0)
    assert g.n_atoms == 1 and g.n_edges == 0 and g.max_neighbors == 0
    with pytest.raises(ValueError):
        collate([])


@pytest.mark.parametrize("system", ["periodic", "small_cell", "cluster"])
def test_graph_built_on_the_device_equals_the_host_graph(system):
    """graph_from_tensors (vesin-torch, where the positions live) gives the same edges, shifts and
    neighbour slots as AtomsGraph.from_atoms (vesin on the host), images included."""
    from bench.graph import graph_from_tensors
    from bench.neighbors import device_neighbor_list_available
    from bench.testing import random_cluster, random_periodic

    if not device_neighbor_list_available():
        pytest.skip("needs vesin-torch")
    rng = np.random.default_rng(11)
    atoms = {"periodic": lambda: random_periodic(rng, [1, 8], n=9),
             "small_cell": lambda: random_periodic(rng, [1, 8], n=3, a=2.2),
             "cluster": lambda: random_cluster(rng, [1, 8], n=7)}[system]()
    host = AtomsGraph.from_atoms(atoms, 3.5)
    t = dict(dtype=torch.float64)
    dev = graph_from_tensors(torch.tensor(atoms.positions, **t), torch.tensor(atoms.numbers),
                             torch.tensor(atoms.cell.array, **t), atoms.pbc, 3.5)

    def edges(g):
        s, r = g.edge_index.tolist()
        return sorted(zip(r, s, map(tuple, g.cell_shifts.long().tolist())))

    assert edges(dev) == edges(host) and len(edges(host)) > 0
    assert torch.equal(dev.edge_index[1], torch.sort(dev.edge_index[1], stable=True).values)   # sorted by receiver
    assert dev.max_neighbors == host.max_neighbors
    flat = dev.receivers * dev.max_neighbors + dev.neighbor_slot
    assert len(set(flat.tolist())) == dev.n_edges                                             # one slot per edge
    assert torch.allclose(dev.edge_vectors().norm(dim=1).sort().values, host.edge_vectors().norm(dim=1).sort().values)


def test_receiver_ptr_is_the_csr_of_the_receivers_single_batched_and_device_built():
    """receiver_ptr[i]:receiver_ptr[i+1] are exactly atom i's edges, for a frame, a batch (edge
    offsets added), a frame with an isolated atom, and a graph built on tensors (vesin-torch)."""
    from bench.graph import graph_from_tensors

    frames = _frames()
    lonely = Atoms("ArAr", positions=[[0, 0, 0], [9, 0, 0]])              # no neighbours within 5 A
    graphs = [AtomsGraph.from_atoms(a, 5.0) for a in [*frames.values(), lonely]]
    graphs.append(collate(graphs))
    a = frames["triclinic"]
    t = dict(dtype=torch.float64)
    graphs.append(graph_from_tensors(torch.tensor(a.positions, **t), torch.tensor(a.numbers),
                                     torch.tensor(a.cell.array, **t), a.pbc, 5.0))
    for g in graphs:
        want = torch.searchsorted(g.receivers, torch.arange(g.n_atoms + 1))
        assert g.receiver_ptr.dtype == torch.long and torch.equal(g.receiver_ptr, want)
    assert graphs[4].receiver_ptr.tolist() == [0, 0, 0]
