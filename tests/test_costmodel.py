"""The analytic cost model against what torch executes: matmul FLOPs exactly, derivative modes
within their stated band, and exact scaling with system size."""

import pytest
import torch

from bench.costmodel import MODE_FACTORS, counted_matmul_flops, potential_stages, totals
from bench.graph import AtomsGraph
from bench.potential import build
from bench.structures import water_box
from bench.testing.requirements import needs_fused_kernels_on_cpu


def _case(kind, preset, repeat=1, **kw):
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], preset=preset, **kw)
    graph = AtomsGraph.from_atoms(water_box().repeat(repeat), pot.descriptor.cutoff, dtype=torch.float32)
    return pot, graph


@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("preset,kw", [("water", {}), ("ethanol", {}), ("water", {"nu_max": 4}), ("water", {"nu_max": 1}),
                                       ("water", {"l_max": 5, "n_layers": 2}), ("water", {"fixed_basis": True})])
def test_matmul_flops_match_what_torch_executes(kind, preset, kw):
    pot, graph = _case(kind, preset, **kw)
    with torch.no_grad():
        counted = counted_matmul_flops(lambda: pot(graph, forces=False))
    assert totals(potential_stages(pot, graph, kind))["matmul_flops"] == counted


@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("preset", ["water", "ethanol"])
def test_mode_factors_hold_for_counted_derivative_passes(kind, preset):
    pot, graph = _case(kind, preset)
    with torch.no_grad():
        forward = counted_matmul_flops(lambda: pot(graph, forces=False))
    ef = counted_matmul_flops(lambda: pot(graph))

    def step():
        out = pot(graph, training=True)
        (out["forces"] ** 2).sum().backward()

    train = counted_matmul_flops(step)
    for mode, counted in (("energy_forces", ef), ("training_step", train)):
        assert abs(counted / forward / MODE_FACTORS[mode] - 1) < 0.25, (mode, counted / forward)


def test_cost_scales_exactly_with_supercell_size():
    pot, small = _case("cace", "water", repeat=1)
    _, big = _case("cace", "water", repeat=2)
    a, b = totals(potential_stages(pot, small)), totals(potential_stages(pot, big))
    assert big.n_atoms == 8 * small.n_atoms and big.max_neighbors == small.max_neighbors
    for k in ("flops", "matmul_flops"):
        assert b[k] == pytest.approx(8 * a[k], rel=1e-12)
    # traffic: per-atom tensors scale by 8, the readout weights (read once) do not
    assert 8 * a["bytes"] * 0.99 < b["bytes"] < 8 * a["bytes"]
    assert 0 < a["intensity"] == pytest.approx(b["intensity"], rel=0.01)


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_cost_model_counts_the_matmuls_left_around_the_kernels(kind):
    """With the fused kernels (Triton, in the interpreter without a GPU) torch executes only the
    matrix products the fused model counts (h, radial mixes, readout): the two neighbour-sum
    products and the contraction's coefficient products are gone; and the fused path moves fewer
    bytes than the dense one."""
    import numpy as np

    from bench.backends import with_backend
    from bench.testing import random_periodic

    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], preset="water", cutoff=3.0)
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(0), [1, 8], n=6), 3.0, dtype=torch.float32)
    fused = with_backend(pot, "fused")
    with torch.no_grad():
        counted = counted_matmul_flops(lambda: fused(graph, forces=False))
    model = totals(potential_stages(pot, graph, kind, neighbor_sum="fused"))
    dense = totals(potential_stages(pot, graph, kind))
    assert model["matmul_flops"] == counted < dense["matmul_flops"]
    assert model["bytes"] < dense["bytes"]
