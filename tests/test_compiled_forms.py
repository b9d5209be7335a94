"""Under torch.compile the radial mixing and the symmetric contraction take the forms Inductor
fuses (a broadcast product reduced over the short axis) instead of cuBLAS products with an inner
size of 2-6: the same numbers as eager, and the compiled graphs hold no matrix product for them."""

import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

from bench.nn.contraction import SparseProductContraction, coefficient_sum
from bench.nn.mixing import RadialMix
from bench.testing import relative_error
from cace.angular import CartesianBasis

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


def test_coefficient_sum_forms_agree():
    g = torch.Generator().manual_seed(0)
    S, P = torch.randn(3, 19, generator=g, dtype=torch.float64), torch.randn(19, 50, generator=g, dtype=torch.float64)
    assert relative_error(coefficient_sum(S, P, True), S @ P) < 1e-14
    assert relative_error(coefficient_sum(S, P, False), S @ P) == 0


def test_radial_mix_compiled_is_a_fused_reduction_with_eager_numbers():
    torch.manual_seed(0)
    l_of = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2])
    mix = RadialMix(l_of, n_in=4, n_out=5, n_channels=3).double()
    x = torch.randn(7, 9, 4, 3, dtype=torch.float64, requires_grad=True)
    y, grad, graphs = _compiled_value_and_grad(mix, x)
    y_ref, grad_ref = _eager_value_and_grad(mix, x)
    assert relative_error(y, y_ref) < 1e-13 and relative_error(grad, grad_ref) < 1e-13
    assert len(graphs) == 2                                   # forward and backward
    for gm in graphs:
        assert not _aten_ops(gm) & MATMULS, _aten_ops(gm) & MATMULS


def test_contraction_compiled_has_no_matrix_product_and_eager_numbers():
    torch.manual_seed(0)
    angular = CartesianBasis(3)
    con = SparseProductContraction(angular.invariant_tables(3)).double()
    x = torch.randn(6, angular.l_of.shape[0], 2, 3, dtype=torch.float64, requires_grad=True)
    y, grad, graphs = _compiled_value_and_grad(con, x)
    y_ref, grad_ref = _eager_value_and_grad(con, x)
    assert relative_error(y, y_ref) < 1e-13 and relative_error(grad, grad_ref) < 1e-13
    assert len(graphs) == 2
    for gm in graphs:
        assert not _aten_ops(gm) & MATMULS, _aten_ops(gm) & MATMULS


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
