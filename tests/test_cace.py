"""CACE-specific checks: the tables, the identity behind invariance, the primitives' gradients."""

import math

import numpy as np
import pytest
import torch

from bench.nn.contraction import InvariantTable, SparseProductContraction
from bench.nn.neighbor_sum import dense_by_receiver, outer
from bench.nn.radial import BesselRBF, PolynomialEnvelope
from cace import CACE, CartesianBasis, monomials, multinomial


@pytest.mark.parametrize("l_max", range(0, 9))
def test_monomial_count(l_max):
    assert len(monomials(l_max)) == (l_max + 1) * (l_max + 2) * (l_max + 3) // 6
    assert len(set(monomials(l_max))) == len(monomials(l_max))


@pytest.mark.parametrize("l_max", [3, 4, 6])
def test_multinomial_identity(l_max):
    """sum_{|lvec|=l} m(lvec) L_lvec(u) L_lvec(v) = (u.v)^l for every l <= l_max, on the built tables."""
    basis = CartesianBasis(l_max).double()
    u = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=1)
    Lu, Lv = basis(u), basis(v)
    for l in range(l_max + 1):
        sel = basis.l_of == l
        lhs = (basis.weight.double()[sel] * Lu[:, sel] * Lv[:, sel]).sum(1)
        assert torch.allclose(lhs, (u * v).sum(1) ** l, rtol=0, atol=1e-13)


def test_monomials_are_x_a_y_b_z_c():
    basis = CartesianBasis(4).double()
    u = torch.tensor([[0.3, -0.5, 0.8124]], dtype=torch.float64)
    out = basis(u)[0]
    for q, (a, b, c) in enumerate(basis.lvecs):
        assert out[q] == pytest.approx(0.3**a * (-0.5) ** b * 0.8124**c, rel=1e-14)
    assert multinomial((2, 1, 1)) == 12


@pytest.mark.parametrize("l_max", [1, 3, 6])
def test_monomial_gradients_are_analytic(l_max):
    """d(x^a y^b z^c)/dx = a x^(a-1) y^b z^c, also where a component is exactly zero (no 0/0, no NaN)."""
    basis = CartesianBasis(l_max).double()
    u = torch.tensor([[0.3, -0.5, 0.8124], [0.0, 0.6, -0.8], [1.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(basis, u)                      # [P, Q, P, 3]
    for p in range(u.shape[0]):
        x = u[p].detach().tolist()
        for q, lv in enumerate(basis.lvecs):
            for d in range(3):
                if lv[d] == 0:
                    want = 0.0
                else:
                    e = list(lv)
                    e[d] -= 1
                    want = lv[d] * x[0] ** e[0] * x[1] ** e[1] * x[2] ** e[2]
                assert float(jac[p, q, p, d]) == pytest.approx(want, rel=1e-13, abs=1e-15), (p, lv, d)


@pytest.mark.parametrize("l_max, nu_max, expected", [(3, 3, 6), (4, 3, 9), (3, 4, 10), (4, 4, 19), (6, 4, None)])
def test_invariant_counts(l_max, nu_max, expected):
    """1 + l_max + #(l1<=l2, l1+l2<=l_max) [+ #chains]; the spec gives 6 for l_max = 3, nu <= 3."""
    m = CACE([1], cutoff=4.0, l_max=l_max, nu_max=nu_max, fixed_basis=True)
    n2 = l_max
    n3 = sum(1 for a in range(1, l_max + 1) for b in range(a, l_max + 1 - a))
    n4 = sum(1 for a in range(1, l_max + 1) for b in range(a, l_max + 1) for c in range(1, l_max + 1 - b))
    count = 1 + n2 + (n3 if nu_max >= 3 else 0) + (n4 if nu_max >= 4 else 0)
    assert m.symmetrize.n_invariants == count
    if expected is not None:
        assert count == expected


def test_gradcheck_primitives():
    torch.manual_seed(0)
    d = torch.float64
    u = torch.nn.functional.normalize(torch.randn(6, 3, dtype=d), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(CartesianBasis(4).double(), (u,))
    r = (torch.rand(7, dtype=d) * 4.5 + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(BesselRBF(5, 5.0, trainable=True).double(), (r,))
    assert torch.autograd.gradcheck(PolynomialEnvelope(5.0, 6), (r,))
    recv = torch.tensor([0, 0, 1, 2, 2, 2])
    slot = torch.tensor([0, 1, 0, 0, 1, 2])
    y = torch.randn(6, 4, dtype=d, requires_grad=True)
    x = torch.randn(6, 3, dtype=d, requires_grad=True)
    f = lambda y, x: neighbor_outer_sum(y, x, recv, slot, 4, 3)  # noqa: E731
    assert torch.autograd.gradgradcheck(f, (y, x)) and torch.autograd.gradcheck(f, (y, x))
    assert torch.autograd.gradcheck(outer, (y, x)) and torch.autograd.gradgradcheck(outer, (y, x))
    t = InvariantTable(3)
    b = t.new_invariant("x")
    t.add(b, (0, 1, 2), 0.7)
    t.add(b, (1, 1, 3), -1.3)
    contr = SparseProductContraction([t]).double()
    A = torch.randn(2, 4, 2, 3, dtype=d, requires_grad=True)
    assert torch.autograd.gradcheck(contr, (A,))


def neighbor_outer_sum(y, x, receivers, slot, n_atoms, max_neighbors):
    """out[i, p, q] = sum_{e into i} y[e, p] x[e, q], as the model forms its neighbour sums: two dense
    [atoms, neighbour slot] tables and one batched product."""
    flat = receivers * max_neighbors + slot
    yd, xd = (dense_by_receiver(t, flat, n_atoms, max_neighbors) for t in (y, x))
    return torch.bmm(yd.transpose(1, 2), xd)


def test_neighbor_outer_sum_matches_explicit_sum():
    torch.manual_seed(1)
    recv = torch.tensor([0, 0, 0, 2, 2])
    slot = torch.tensor([0, 1, 2, 0, 1])
    y, x = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    out = neighbor_outer_sum(y, x, recv, slot, 3, 3)
    ref = torch.zeros(3, 3, 2, dtype=torch.float64).index_add(0, recv, y[:, :, None] * x[:, None, :])
    assert torch.allclose(out, ref, atol=1e-14)


def test_receiver_embedding_factoring_equals_full_edge_channels():
    """A[i, q, n, (a, b)] equals the direct sum over edges of R_n L_q theta_i[a] theta_j[b]."""
    from bench.graph import AtomsGraph
    from bench.testing import random_periodic

    torch.manual_seed(2)
    m = CACE([1, 8, 6], cutoff=3.5, n_rbf=3, n_embed=2, n_radial=3, l_max=2, n_layers=0).double()
    g = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(0), [1, 6, 8]), 3.5)
    ed = m.edge_data(g)
    s, r = g.edge_index
    full = (ed.radial[:, None, :, None, None] * ed.angular[:, :, None, None, None]
            * ed.theta[r][:, None, None, :, None] * ed.theta[s][:, None, None, None, :])
    direct = torch.zeros(g.n_atoms, *full.shape[1:3], 4, dtype=torch.float64).index_add(0, r, full.flatten(3))
    assert torch.allclose(m.mix0(direct), m.atomic_basis(ed), atol=1e-13)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_contraction_first_and_second_derivatives(order):
    """The recomputing autograd Function of the contraction has exact first and second derivatives."""
    import random

    random.seed(order)
    t = InvariantTable(order)
    labels = [t.new_invariant("x"), t.new_invariant("y")]
    for _ in range(6):
        t.add(random.choice(labels), tuple(random.randrange(5) for _ in range(order)), random.uniform(-1, 1))
    contr = SparseProductContraction([t]).double()
    A = torch.randn(2, 5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(contr, (A,))
    assert torch.autograd.gradgradcheck(contr, (A,))


@pytest.mark.parametrize("l", [2, 3, 4, 5, 6])
def test_traceless_basis_contracts_to_legendre(l):
    """The traceless variant: sum_|lvec|=l m(lvec) T(u) T(v) = l!/(2l-1)!! P_l(u.v) for unit u, v
    (the monomials give (u.v)^l instead, test_multinomial_identity)."""
    from numpy.polynomial import legendre

    basis = CartesianBasis(l, traceless=True).double()
    u = torch.nn.functional.normalize(torch.randn(40, 3, dtype=torch.float64), dim=1)
    v = torch.nn.functional.normalize(torch.randn(40, 3, dtype=torch.float64), dim=1)
    sel = basis.l_of == l
    lhs = (basis.weight.double()[sel] * basis(u)[:, sel] * basis(v)[:, sel]).sum(1)
    cos = (u * v).sum(1).numpy()
    rhs = math.factorial(l) / math.prod(range(2 * l - 1, 0, -2)) * legendre.legval(cos, [0] * l + [1])
    assert np.abs(lhs.numpy() - rhs).max() < 1e-13


@pytest.mark.parametrize("l_max", [4])
def test_traceless_components_are_harmonic_and_trace_free(l_max):
    """Each component of degree l >= 2 is a harmonic polynomial of u in R^3 (its Laplacian, from
    autograd Hessians at points off the sphere, vanishes), and the symmetric tensor they form has
    zero trace: T_(a+2,b,c) + T_(a,b+2,c) + T_(a,b,c+2) = 0 for every (a, b, c) of degree l - 2."""
    basis = CartesianBasis(l_max, traceless=True).double()
    reducible = CartesianBasis(l_max).double()
    x = torch.randn(6, 3, dtype=torch.float64) * 1.7
    for q in range(basis.n_ang):
        if int(basis.l_of[q]) < 2:
            continue
        lap = sum(torch.autograd.functional.hessian(lambda p: basis(p[None])[0, q], x[i]).trace() for i in range(6))
        assert abs(float(lap)) < 1e-10
    T = basis(torch.nn.functional.normalize(x, dim=1))
    idx = basis.index
    for l in range(2, l_max + 1):
        for a, b, c in [lv for lv in basis.lvecs if sum(lv) == l - 2]:
            trace = T[:, idx[(a + 2, b, c)]] + T[:, idx[(a, b + 2, c)]] + T[:, idx[(a, b, c + 2)]]
            assert float(trace.abs().max()) < 1e-13
    lo = basis.l_of < 2
    assert torch.equal(basis(x)[:, lo], reducible(x)[:, lo])                        # degrees 0, 1 unchanged


def test_traceless_is_a_named_option_never_the_default():
    from cace import CACE

    plain = CACE([1, 8], cutoff=4.0)
    variant = CACE.from_config({**plain.config(), "traceless": True})
    assert plain.config()["traceless"] is False and variant.config()["traceless"] is True
    assert not plain.angular.traceless and variant.angular.traceless


@pytest.mark.parametrize("traceless", [False, True])
def test_monomials_first_and_second_derivatives(traceless):
    """The monomials' own backward (dL/du_d = lvec[d] L_(lvec - e_d), on the saved output) against
    finite differences, to first and second order (force training differentiates it twice)."""
    from cace.angular import CartesianBasis

    basis = CartesianBasis(4, traceless=traceless).double()
    u = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=1).requires_grad_(True)
    assert torch.autograd.gradcheck(basis, (u,))
    assert torch.autograd.gradgradcheck(basis, (u,))
