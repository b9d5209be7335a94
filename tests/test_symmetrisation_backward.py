"""The symmetrisation's two backwards (bench/nn/contraction.py): the one energy + forces runs
(``add_leave_one_out_gradient``: one gather, products in place, added in place) and the
differentiable one force training runs (``_LeaveOneOutGradient``, under ``create_graph``), each
against autograd through the same tables written as plain PyTorch products; both descriptors,
body orders 1-4."""

import pytest
import torch

from bench.nn.contraction import add_leave_one_out_gradient
from bench.parity import relative_error
from bench.potential import build

CASES = [(kind, l_max, nu_max) for kind in ("cace", "spherical") for l_max, nu_max in ((3, 3), (2, 4), (4, 2), (1, 1))]


def _plain(sym, A):
    """B from the module's own tables in plain, autograd-differentiated ops: the reference."""
    N, Q, K, C = A.shape
    At = A.transpose(0, 1).reshape(Q, N * K * C)
    rows = []
    for o in sym.orders:
        idx, S = getattr(sym, f"idx{o}"), getattr(sym, f"coeff{o}")
        P = At.index_select(0, idx[:, 0])
        for f in range(1, o):
            P = P * At.index_select(0, idx[:, f])
        rows.append(S.to(A.dtype) @ P)
    return torch.cat(rows).view(sym.n_invariants, N, K, C).transpose(0, 1)


@pytest.mark.parametrize("kind,l_max,nu_max", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_both_backwards_equal_autograd_through_plain_products(kind, l_max, nu_max, dtype):
    pot = build(kind, elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=2, n_radial=3, l_max=l_max, nu_max=nu_max,
                n_layers=0, messages=())
    sym, Q = pot.descriptor.symmetrize.to(dtype), pot.descriptor.angular.n_ang
    assert sym.orders == list(range(1, nu_max + 1))
    tol = 1e-13 if dtype == torch.float64 else 1e-6
    gen = torch.Generator().manual_seed(l_max * 10 + nu_max)
    A = torch.randn(13, Q, 3, 4, dtype=dtype, generator=gen).requires_grad_(True)
    B, ref = sym(A), _plain(sym, A)
    assert relative_error(B, ref) < tol
    g0 = torch.randn(B.shape, dtype=dtype, generator=gen)
    (fast,) = torch.autograd.grad(B, A, g0, retain_graph=True)               # no create_graph
    assert not fast.requires_grad

    def first_and_second(out):
        g = g0.clone().requires_grad_(True)
        (gA,) = torch.autograd.grad(out, A, g, create_graph=True)
        return (gA,) + torch.autograd.grad(gA.sin().sum() + out.square().sum(), (A, g))

    got, want = first_and_second(B), first_and_second(ref)
    assert relative_error(fast, want[0].detach()) < tol
    assert relative_error(got[0].detach(), want[0].detach()) < tol          # dL/dA under create_graph
    # second derivatives, wrt A and the incoming gradient: float32 to the project's 1e-5 (products of
    # four factors summed in another order differ by about 2e-6 at order 4)
    for a, b in zip(got[1:], want[1:]):
        assert relative_error(a, b) < (1e-13 if dtype == torch.float64 else 1e-5)


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
