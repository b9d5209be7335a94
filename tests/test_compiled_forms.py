"""Small per-edge products take the form Inductor fuses (a broadcast product reduced over the short
axis) instead of a cuBLAS batched product: the same numbers as eager, and no matrix product in the
compiled graphs.

The same forms for the radial mixing (einsum over n = 6) and the symmetric contraction's
coefficient sum (B <= 3 rows) were tried and reverted: on an H200 they gave CACE's compiled fused
energy + forces at 12,288 atoms forces 1.2-2.4 (relative) away from eager, with either kernel
version, while the spherical side, CACE at 98,304 atoms and CPU Inductor at 12,288 were right
(results/gpu/NVIDIA-H200/diagnose-run/README.md); which of the two is wrong there is not known."""

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from bench.testing import relative_error
from bench.testing.requirements import needs_compile

MATMULS = {"mm", "bmm", "addmm", "baddbmm", "einsum", "matmul"}


def _capturing_backend(graphs: list):
    """An AOTAutograd backend that keeps the forward and backward ATen graphs and runs them as traced."""
    def keep(gm, _inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)
    return aot_autograd(fw_compiler=keep, bw_compiler=keep)


def _aten_ops(gm) -> set:
    return {n.target._overloadpacket.__name__ for n in gm.graph.nodes
            if n.op == "call_function" and hasattr(n.target, "_overloadpacket")}


def _compiled_value_and_grad(module, x):
    torch._dynamo.reset()
    graphs = []
    fn = torch.compile(module, backend=_capturing_backend(graphs), fullgraph=True)
    y = fn(x)
    (grad,) = torch.autograd.grad((y * torch.cos(y)).sum(), x)
    return y, grad, graphs


def _eager_value_and_grad(module, x):
    y = module(x)
    (grad,) = torch.autograd.grad((y * torch.cos(y)).sum(), x)
    return y, grad


@needs_compile
def test_edge_vectors_compile_without_a_matrix_product():
    """r_ij = x_j - x_i + S_ij @ cell: no batched product of 1x3 by 3x3 matrices per edge in the
    compiled graph (cuBLAS ran it as 13 gemv launches at 860k edges), the eager numbers, and the
    stress path's cell gradient through it."""
    import numpy as np

    from bench.graph import AtomsGraph
    from bench.testing import random_periodic

    atoms = random_periodic(np.random.default_rng(0), [1, 8], n=7)
    graph = AtomsGraph.from_atoms(atoms, 3.0, dtype=torch.float64)
    cell = graph.cell.clone().requires_grad_(True)

    class Vectors(torch.nn.Module):
        def forward(self, c):
            return graph.edge_vectors(cell=c)

    y, grad, graphs = _compiled_value_and_grad(Vectors(), cell)
    y_ref, grad_ref = _eager_value_and_grad(Vectors(), cell)
    shift_ref = torch.einsum("ea,eab->eb", graph.cell_shifts, cell[graph.batch[graph.edge_index[1]]])
    assert bool((graph.cell_shifts != 0).any())                 # the periodic images are exercised
    assert relative_error(y_ref, graph.positions[graph.edge_index[0]] - graph.positions[graph.edge_index[1]]
                          + shift_ref) < 1e-15
    assert relative_error(y, y_ref) < 1e-14 and relative_error(grad, grad_ref) < 1e-14
    for gm in graphs:
        assert not _aten_ops(gm) & MATMULS, _aten_ops(gm) & MATMULS


@needs_compile
@pytest.mark.parametrize("plain", [False, True])
def test_symmetrisation_backward_compiles_for_the_cpu_without_a_scatter(plain):
    """Compiled for the CPU, the symmetrisation's backward has no index_add (Inductor's CPU code made
    a scatter with repeated rows an atomic compare-and-swap loop per element): energy + forces' form
    adds each leave-one-out product into its angular row as a one-hot matrix product, and the plain
    form a compiled training step traces gathers A's rows as one, whose gradient is a product too.
    The eager value and gradient (float64), both descriptors, body orders 1-3."""
    from bench.potential import build

    for kind in ("cace", "spherical"):
        pot = build(kind, elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3,
                    n_layers=0, messages=()).double()
        sym = pot.descriptor.symmetrize

        class Symmetrise(torch.nn.Module):
            def forward(self, A):
                return sym(A, plain=plain)

        A = torch.randn(5, pot.descriptor.angular.n_ang, 3, 4, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        y, grad, graphs = _compiled_value_and_grad(Symmetrise(), A)
        y_ref, grad_ref = _eager_value_and_grad(sym, A)
        assert relative_error(y, y_ref) < 1e-14 and relative_error(grad, grad_ref) < 1e-14
        fw, bw = graphs
        assert "index_add" not in _aten_ops(bw) and _aten_ops(bw) & {"mm", "addmm"}, _aten_ops(bw)
