"""Edge padding to bucketed sizes (``bench.graph.pad_edges``): what CUDA graphs need to replay an MD
run's force calls, whose edge count changes at every neighbour-list rebuild. Padding must add
exact zeros: the padded graph gives the unpadded graph's energies, forces and stress (and
parameter gradients), on the dense and the fused path, and the MD engine's trajectories do not
change while its shapes fall to a few buckets."""

import numpy as np
import pytest
import torch
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from bench.backends import BACKENDS, replays_fixed_shapes, with_backend
from bench.graph import AtomsGraph, collate, edge_bucket, pad_edges
from bench.md import BatchedMD
from bench.potential import build
from bench.testing import random_cluster, random_periodic
from bench.testing.mixin import relative_error
from bench.testing.requirements import needs_compile, needs_fused_kernels_on_cpu

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=2, nu_max=2, n_layers=1, messages=("M", "Ar", "Bchi"))


def _potential(kind):
    torch.manual_seed(0)
    return build(kind, elements=[1, 8], readout=(8,), **SMALL).double()


def _graphs():
    """A periodic cell, a molecule (zero cell: a self-edge's own vector is zero there) and the two
    as one batch."""
    rng = np.random.default_rng(4)
    cell = AtomsGraph.from_atoms(random_periodic(rng, [1, 8], n=7), SMALL["cutoff"])
    mol = AtomsGraph.from_atoms(random_cluster(rng, [1, 8], n=6, min_dist=1.0), SMALL["cutoff"])
    return {"periodic": cell, "molecule": mol, "batch": collate([cell, mol])}


def test_edge_bucket_is_sixteen_sizes_an_octave_never_below_or_far_above():
    sizes = [edge_bucket(n) for n in range(1, 5000)]
    assert all(b >= n and b <= n + n / 16 for n, b in zip(range(1, 5000), sizes))
    assert sizes == sorted(sizes) and all(edge_bucket(b) == b for b in sizes)
    assert len({edge_bucket(n) for n in range(1025, 2049)}) == 16          # (1024, 2048]
    assert edge_bucket(0) == 0 and edge_bucket(1_000_003) - 1_000_003 < 1_000_003 / 16


@pytest.mark.parametrize("name", ["periodic", "molecule", "batch"])
def test_padded_graph_keeps_every_real_edge_in_order_and_its_layout_consistent(name):
    g = _graphs()[name]
    extra = 3 * g.n_atoms + 1                                     # some atoms fill every free slot
    p = pad_edges(g, n_edges=g.n_edges + extra, max_neighbors=g.max_neighbors + 5)
    assert p.n_edges == g.n_edges + extra and p.max_neighbors == g.max_neighbors + 5 and p.n_atoms == g.n_atoms
    mask = p.edge_mask
    assert int(mask.sum()) == g.n_edges
    assert torch.equal(p.edge_index[:, mask], g.edge_index) and torch.equal(p.cell_shifts[mask], g.cell_shifts)
    pad = p.edge_index[:, ~mask]
    assert torch.equal(pad[0], pad[1]) and not p.cell_shifts[~mask].any()          # self-edges, no shift
    recv = p.receivers
    assert torch.equal(recv, torch.sort(recv, stable=True).values)                  # sorted by receiver
    counts = torch.bincount(recv, minlength=p.n_atoms)
    assert torch.equal(p.receiver_ptr, torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
    assert torch.equal(p.neighbor_slot, torch.arange(p.n_edges) - p.receiver_ptr[recv])
    assert int(counts.max()) <= p.max_neighbors
    assert torch.equal(p.neighbor_slot[mask], g.neighbor_slot)                       # padding after real edges
    d = p.edge_vectors().norm(dim=1)
    assert torch.allclose(d[~mask], torch.full_like(d[~mask], 2 * g.cutoff))
    assert torch.equal(d[mask], g.edge_vectors().norm(dim=1))


def test_a_graph_already_at_its_bucket_sizes_gets_an_all_true_mask():
    """Every list of a padded run carries a mask, padding or not (the same inputs at every call)."""
    g = _graphs()["molecule"]
    same = pad_edges(g, n_edges=g.n_edges, max_neighbors=g.max_neighbors)
    assert same.n_edges == g.n_edges and same.edge_mask is not None and bool(same.edge_mask.all())
    assert torch.equal(same.edge_index, g.edge_index)


def test_padding_refuses_sizes_that_cannot_hold_the_graph():
    g = _graphs()["periodic"]
    with pytest.raises(ValueError, match="cannot pad"):
        pad_edges(g, n_edges=g.n_edges - 1)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_edges(g, max_neighbors=g.max_neighbors - 1)
    with pytest.raises(ValueError, match="pass a larger max_neighbors"):
        pad_edges(g, n_edges=g.n_atoms * g.max_neighbors + 1, max_neighbors=g.max_neighbors)
    wide = pad_edges(g, n_edges=g.n_atoms * g.max_neighbors + 1)                    # default: more slots
    assert wide.max_neighbors > g.max_neighbors and wide.n_edges == g.n_atoms * g.max_neighbors + 1


def test_padding_a_padded_graph_and_batching_padded_with_unpadded_keep_the_mask():
    graphs = _graphs()
    once = pad_edges(graphs["periodic"], n_edges=graphs["periodic"].n_edges + 10)
    twice = pad_edges(once, n_edges=once.n_edges + 10)
    assert int(twice.edge_mask.sum()) == graphs["periodic"].n_edges
    both = collate([once, graphs["molecule"]])
    assert int(both.edge_mask.sum()) == graphs["periodic"].n_edges + graphs["molecule"].n_edges
    assert collate([graphs["molecule"], graphs["molecule"]]).edge_mask is None


@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("name", ["periodic", "molecule", "batch"])
def test_padded_graph_gives_the_same_energy_forces_stress_and_parameter_gradients(kind, name):
    """Float64, both descriptors, every message: padding (here more than a bucket would add)
    changes no number beyond rounding, and no gradient is NaN."""
    pot, g = _potential(kind), _graphs()[name]
    p = pad_edges(g, n_edges=g.n_edges + 5 * g.n_atoms + 3, max_neighbors=g.max_neighbors + 7)
    stress = bool(g.pbc.all())                                 # a molecule has no volume, so no stress
    ref, out = pot(g, stress=stress), pot(p, stress=stress)
    for key in ("energy", "forces") + (("stress",) if stress else ()):
        assert torch.isfinite(out[key]).all()
        assert relative_error(out[key], ref[key]) < 1e-12, key

    def grads(graph):
        pot.zero_grad()
        o = pot(graph, forces=True, training=True)
        (o["energy"].square().sum() + o["forces"].square().sum()).backward()        # a force loss: double backward
        return [q.grad.clone() for q in pot.parameters() if q.grad is not None]

    for a, b in zip(grads(g), grads(p)):
        assert torch.isfinite(b).all() and relative_error(b, a) < 1e-10


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_kernels_on_a_padded_graph_equal_eager_on_the_unpadded(kind):
    """The fused sums read the padded rows (CSR) in Triton's interpreter without a GPU."""
    pot = _potential(kind)
    for name in ("periodic", "batch"):
        g = _graphs()[name]
        p = pad_edges(g, n_edges=g.n_edges + 29, max_neighbors=g.max_neighbors + 3)
        stress = bool(g.pbc.all())
        ref, out = pot(g, stress=stress), with_backend(pot, "fused")(p, stress=stress)
        for key in ("energy", "forces") + (("stress",) if stress else ()):
            assert relative_error(out[key], ref[key]) < 1e-12, (name, key)


def test_only_cuda_graph_backends_ask_for_padding():
    assert {b for b in BACKENDS if replays_fixed_shapes(b)} == {"compile-cudagraphs", "compile-fused-cudagraphs",
                                                                 "eager-cudagraphs", "fused-cudagraphs"}


def _water(seed=0):
    from bench.structures import water_box

    atoms = water_box()
    MaxwellBoltzmannDistribution(atoms, temperature_K=600.0, rng=np.random.default_rng(seed))
    return [atoms]


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_padded_md_follows_the_unpadded_trajectory_with_few_shapes(kind):
    """NVE, float64, a 192-atom water box, a skin small enough to rebuild at every step: the padded
    run equals the unpadded one within 1e-10 A, and calls its potential with one or two shapes
    where the unpadded run changes shape at most rebuilds."""
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), scale=0.05, **{**SMALL, "cutoff": 4.0}).double()
    runs = {}
    for pad in (False, True):
        md = BatchedMD(pot, _water(), timestep_fs=0.5, skin=0.05, pad_edges=pad)
        md.run(30)
        runs[pad] = md
    plain, padded = runs[False], runs[True]
    assert plain.n_rebuilds == padded.n_rebuilds > 4
    assert float((plain.positions - padded.positions).abs().max()) < 1e-10
    assert float((plain.velocities - padded.velocities).abs().max()) < 1e-10
    assert np.allclose(plain.min_distance(), padded.min_distance(), rtol=0, atol=1e-12)
    assert padded.graph.edge_mask is not None and plain.graph.edge_mask is None
    assert len(padded.shapes) <= 2 < len(plain.shapes)               # here: 1 against 27


def test_md_pads_by_default_only_under_a_backend_that_replays_cuda_graphs(monkeypatch):
    import bench.backends as backends                 # the engine asks it at construction

    pot = _potential("cace")
    assert not BatchedMD(pot, _water(), timestep_fs=0.5).pad_edges
    monkeypatch.setattr(backends, "replays_fixed_shapes", lambda backend: True)
    md = BatchedMD(pot, _water(), timestep_fs=0.5)
    assert md.pad_edges and md.graph.n_edges == edge_bucket(int(md.graph.edge_mask.sum()))


@needs_compile
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compiled_descriptor_on_a_padded_graph_equals_eager_on_the_unpadded(kind):
    """Inductor traces the mask (torch.where against the far vector) on the CPU: float64 parity."""
    torch._dynamo.reset()
    pot = _potential(kind)
    g = _graphs()["periodic"]
    p = pad_edges(g, n_edges=g.n_edges + 2 * g.n_atoms, max_neighbors=g.max_neighbors + 3)
    ref, out = pot(g, stress=True), with_backend(pot, "compile")(p, stress=True)
    for key in ("energy", "forces", "stress"):
        assert relative_error(out[key], ref[key]) < 1e-12, key


@needs_compile
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["compile-cudagraphs", "compile-fused-cudagraphs"])
def test_cuda_graph_md_pads_and_follows_eager(backend):
    """On CUDA, float64 NVE of a water box rebuilt at every step: the CUDA-graph backend's run pads
    its lists (few shapes, so few recordings) and follows the eager run within 1e-8 A."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), scale=0.05, **{**SMALL, "cutoff": 4.0}).double()
    runs = {}
    for name in ("eager", backend):
        md = BatchedMD(with_backend(pot.to("cuda"), name), _water(), timestep_fs=0.5, skin=0.05, device="cuda")
        md.run(30)
        runs[name] = md
    assert runs[backend].pad_edges and not runs["eager"].pad_edges
    assert len(runs[backend].shapes) <= 2 < len(runs["eager"].shapes)
    assert float((runs[backend].positions - runs["eager"].positions).abs().max()) < 1e-8
