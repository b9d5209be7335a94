"""The saved-for-backward count (python -m bench.benchmarks.saved_memory) counts each storage once,
largest first, per atom."""

import numpy as np
import pytest
import torch

from bench.benchmarks.saved_memory import saved_per_atom
from bench.graph import AtomsGraph
from bench.nn import neighbor_sum_triton as nst
from bench.potential import build
from bench.testing import random_periodic

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


@pytest.mark.skipif(not nst.available(), reason="needs Triton (pip install triton)")
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_emulated_kernels_give_the_interpreters_count_exactly(kind):
    """The fused path's peak with the kernels' launches emulated in PyTorch equals the count with the
    real kernels (Triton's interpreter here, on a small periodic cell, both descriptors): the counter
    sees the same operators and outputs; and the emulated launches write the kernels' numbers."""
    from bench.backends import with_backend
    from bench.benchmarks.saved_memory import emulated_kernels, peak_of

    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(1), [1, 8], n=4), 3.5)
    real = peak_of(with_backend(pot, "fused"), graph)
    out_real = with_backend(pot, "fused")(graph)
    with emulated_kernels():
        emulated = peak_of(with_backend(pot, "fused"), graph)
        out_emulated = with_backend(pot, "fused")(graph)
    assert real["kb_per_atom"] > 0 and emulated["kb_per_atom"] == real["kb_per_atom"]
    assert emulated["at"] == real["at"] and emulated["top"] == real["top"]
    for key in ("energy", "forces"):
        assert float((out_emulated[key] - out_real[key]).abs().max()) < 1e-10


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
