"""The symmetrisation's two backwards (bench/nn/contraction.py): the one energy + forces runs
(``add_leave_one_out_gradient``: one gather, products in place, added in place) against the
differentiable one force training runs (``create_graph``), both descriptors, body orders 1-4."""

import pytest
import torch

from bench.nn.contraction import add_leave_one_out_gradient
from bench.parity import relative_error
from bench.potential import build

CASES = [(kind, l_max, nu_max) for kind in ("cace", "spherical") for l_max, nu_max in ((3, 3), (2, 4), (4, 2), (1, 1))]


@pytest.mark.parametrize("kind,l_max,nu_max", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_energy_forces_backward_equals_the_differentiable_one(kind, l_max, nu_max, dtype):
    pot = build(kind, elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=2, n_radial=3, l_max=l_max, nu_max=nu_max,
                n_layers=0, messages=())
    sym, Q = pot.descriptor.symmetrize.to(dtype), pot.descriptor.angular.n_ang
    assert sym.orders == list(range(1, nu_max + 1))
    gen = torch.Generator().manual_seed(l_max * 10 + nu_max)
    A = torch.randn(13, Q, 3, 4, dtype=dtype, generator=gen).requires_grad_(True)
    B = sym(A)
    g = torch.randn(B.shape, dtype=dtype, generator=gen)
    (fast,) = torch.autograd.grad(B, A, g, retain_graph=True)               # no create_graph
    (slow,) = torch.autograd.grad(B, A, g, create_graph=True)
    assert slow.requires_grad and not fast.requires_grad
    assert relative_error(fast, slow.detach()) < (1e-13 if dtype == torch.float64 else 1e-6)


def test_leave_one_out_gradient_by_hand():
    """Two terms of order 3 on rows (0, 1, 2) and (1, 1, 3): every factor left out once, added to
    what the gradient held."""
    At = torch.tensor([[2.0], [3.0], [5.0], [7.0]], dtype=torch.float64)
    idx = torch.tensor([[0, 1, 2], [1, 1, 3]])
    g = torch.tensor([[1.0], [10.0]], dtype=torch.float64)
    want = torch.tensor([[3 * 5], [2 * 5 + 10 * (3 * 7 + 3 * 7)], [2 * 3], [10 * 3 * 3]], dtype=torch.float64)
    grad = torch.full_like(At, 0.5)
    add_leave_one_out_gradient(grad, At, idx, g)
    assert torch.equal(grad, want + 0.5)


@pytest.mark.parametrize("kind,l_max,nu_max", CASES)
def test_second_derivatives_against_finite_differences(kind, l_max, nu_max):
    """Force training differentiates the symmetrisation twice: its differentiable backward
    (``_LeaveOneOutGradient``) checked by gradgradcheck, float64, body orders up to 4."""
    pot = build(kind, elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=2, n_radial=3, l_max=l_max, nu_max=nu_max,
                n_layers=0, messages=())
    sym, Q = pot.descriptor.symmetrize.double(), pot.descriptor.angular.n_ang
    gen = torch.Generator().manual_seed(l_max + 7 * nu_max)
    A = torch.randn(3, Q, 1, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradgradcheck(sym, (A,), eps=1e-6, atol=1e-6, rtol=1e-5)
