"""The saved-for-backward count (python -m bench.benchmarks.saved_memory) counts each storage once,
largest first, per atom."""

import numpy as np
import pytest
import torch

from bench.benchmarks.saved_memory import saved_per_atom
from bench.graph import AtomsGraph
from bench.potential import build
from bench.testing import random_periodic
from bench.testing.requirements import needs_fused_kernels_on_cpu

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=1, messages=("M", "Ar", "Bchi"))


def test_count_is_per_atom_largest_first_and_the_sum_of_its_parts():
    r = saved_per_atom("cace", "eager")
    kb = [t[0] for t in r["top"]]
    assert r["n_atoms"] == 192 and kb == sorted(kb, reverse=True)
    assert abs(sum(kb) - r["kb_per_atom"]) < 1e-9 * r["kb_per_atom"]
    # the per-edge angular basis (E x 20 floats, kept by the monomials' backward) is among them
    assert any(node == "_MonomialsBackward" for _, _, node in r["top"])
    assert 10 < r["kb_per_atom"] < 1000


def test_peak_holds_everything_autograd_saved_and_the_largest_per_edge_table():
    """Every storage autograd keeps (but the parameters, made before the call) is live at the end of
    the forward, so the peak is at least their sum; the eager path's largest tensor, the dense
    [atoms, max neighbours, Q, R] edge basis (192 x 77 x 20 x 6 floats, 37 kB an atom), is live at
    the peak, and the live storages listed add up to the peak."""
    from bench.benchmarks.saved_memory import peak_per_atom

    saved = saved_per_atom("cace", "eager")
    made_in_call = sum(kb for kb, _, node in saved["top"] if node != "leaf")
    r = peak_per_atom("cace", "eager")
    assert r["n_atoms"] == 192 and r["kb_per_atom"] >= made_in_call
    assert abs(sum(kb for kb, _, _ in r["top"]) - r["kb_per_atom"]) < 1e-9 * r["kb_per_atom"]
    assert r["top"][0][1] == (192, 77, 20, 6) and abs(r["top"][0][0] - 192 * 77 * 20 * 6 * 4 / 192 / 1e3) < 1e-9


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", pytest.param("spherical", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", ["energy_forces", pytest.param("training_step", marks=pytest.mark.slow)])
def test_emulated_kernels_give_the_interpreters_count_exactly(kind, mode):
    """The fused path's peak with the kernels' launches emulated in PyTorch equals the count with the
    real kernels (Triton's interpreter here, on a small periodic cell, both descriptors), for energy
    + forces and for a force-loss training step (whose second derivative runs the tangent launches):
    the counter sees the same operators and outputs; and the emulated launches write the kernels'
    numbers, the weight gradients of a training step included. The emulation is per kernel launch,
    and both descriptors launch the same kernels (their tables differ): CACE's energy + forces is the
    default suite's case (about 19 s of the interpreter on 2 threads), the rest are ``slow``."""
    from bench.backends import with_backend
    from bench.benchmarks.saved_memory import emulated_kernels, peak_of

    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(1), [1, 8], n=4), 3.5)
    real = peak_of(with_backend(pot, "fused"), graph, mode)
    out_real = _outputs(with_backend(pot, "fused"), graph, mode)
    with emulated_kernels():
        emulated = peak_of(with_backend(pot, "fused"), graph, mode)
        out_emulated = _outputs(with_backend(pot, "fused"), graph, mode)
    assert real["kb_per_atom"] > 0 and emulated["kb_per_atom"] == real["kb_per_atom"]
    assert emulated["at"] == real["at"] and emulated["top"] == real["top"]
    assert len(out_real) == len(out_emulated) >= 2
    for a, b in zip(out_emulated, out_real):
        assert float((a - b).detach().abs().max()) < 1e-10 * max(1.0, float(b.detach().abs().max()))


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_emulated_symmetrisation_launches_write_the_kernels_numbers(kind):
    """Each of the four symmetrisation launches (forward, backward and their tangent forms, the
    training step's second derivative) emulated in PyTorch writes the kernel's numbers (Triton's
    interpreter), float64, water preset tables: so the emulated training-step count is the fused
    path's (the whole-step comparison with the interpreter is the slow case above)."""
    from bench.benchmarks.saved_memory import emulated_kernels
    from bench.nn import contraction_triton as ct

    sym = build(kind, elements=[1, 8], preset="water").descriptor.symmetrize.double()
    tables = [getattr(sym, f"fused_{n}") for n in ct.ContractionTables.NAMES]
    fwd, bwd = tables[:4], tables[4:]
    gen = torch.Generator().manual_seed(3)
    A, V = (torch.randn(5, int(sym.fused_bptr.shape[0]) + 2, 7, dtype=torch.float64, generator=gen) for _ in "AV")
    gB = torch.randn(5, sym.n_invariants, 7, dtype=torch.float64, generator=gen)

    def launches():
        outs = []
        for tangent in (None, V):
            out = gB.new_empty(gB.shape)
            ct.launch_forward(A, *fwd, out, V=tangent)
            gA = torch.empty_like(A)
            ct.launch_backward(gB, A, *bwd, gA, V=tangent)
            outs += [out, gA]
        return outs

    real = launches()
    with emulated_kernels():
        emulated = launches()
    for a, b in zip(emulated, real):
        assert float((a - b).abs().max()) < 1e-12 * float(b.abs().max())
    assert float(real[2].abs().max()) > 0 and float(real[3].abs().max()) > 0


def _outputs(pot, graph, mode):
    """Energy and forces; for a training step, with the force loss's weight gradients."""
    if mode == "energy_forces":
        out = pot(graph)
        return [out["energy"], out["forces"]]
    from bench.tasks.timing import training_loss

    params = [p for p in pot.parameters() if p.requires_grad]
    loss = training_loss(pot, graph)
    return [loss.detach()] + list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("kind,counted", [("cace", 157.3), ("spherical", 149.0)])
def test_the_fused_training_step_peak_does_not_grow(kind, counted):
    """The fused path's peak during a force-loss training step (the timing task's, emulated kernels,
    water preset, 192 atoms, float32) stays within 1% of its count when written: 157.3 kB an atom
    for CACE and 149.0 for spherical. With the symmetrisation's second derivative in PyTorch ops on
    its pair table, as before the tangent kernels, it was 518.9 and 535.8 ([atoms, pairs, K C]
    tensors, 48 and 51 kB an atom each, several live at once)."""
    from bench.benchmarks.saved_memory import peak_per_atom

    r = peak_per_atom(kind, "fused", emulate=True, mode="training_step")
    assert r["n_atoms"] == 192 and r["kb_per_atom"] <= 1.01 * counted, r["top"][:6]


@pytest.mark.parametrize("kind,counted", [("cace", 50.2), ("spherical", 48.5)])
def test_the_fused_path_peak_does_not_grow(kind, counted):
    """The fused path's peak during energy + forces (emulated kernels, water preset, 192 atoms,
    float32) stays within 1% of its count when written: 50.2 kB an atom for CACE and 48.5 for
    spherical (issue #12's target is 50; spherical was 47.1 with e3nn's harmonics, whose backward
    keeps less than the monomials the polynomial form keeps, as CACE's does). The count is of
    operators' outputs, so it moves only when the code does."""
    from bench.benchmarks.saved_memory import peak_per_atom

    r = peak_per_atom(kind, "fused", emulate=True)
    assert r["n_atoms"] == 192 and r["kb_per_atom"] <= 1.01 * counted, r["top"][:6]
