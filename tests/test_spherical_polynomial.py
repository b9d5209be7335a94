"""The spherical baseline evaluates e3nn's real spherical harmonics in polynomial form (Cartesian
monomials, the same code as CACE's angular basis, times a fixed table): the same function as
``e3nn.o3.spherical_harmonics``, which stays the reference, with the same derivatives, and as
few operator launches as CACE's basis (launches are what a GPU pays below a few thousand atoms)."""

import json

import numpy as np
import pytest
import torch
from e3nn import o3

from baselines.angular import SphericalBasis, harmonic_coefficients
from bench.errors import InputError
from bench.graph import AtomsGraph
from bench.nn.monomials import MonomialBasis, monomials
from bench.potential import build
from bench.testing import random_periodic


def _rel(a, b):
    """||a - b|| / ||b||; ||a - b|| where b is zero (a constant basis has zero derivatives)."""
    return float((a - b).norm() / b.norm()) if b.norm() > 0 else float((a - b).norm())


def _grad(y, x, **kw):
    return torch.autograd.grad(y, x, **kw)[0] if y.requires_grad else torch.zeros_like(x)


@pytest.mark.parametrize("l_max", [0, 1, 2, 3, 4, 6])
def test_polynomial_form_equals_e3nn_with_first_and_second_derivatives(l_max):
    basis = SphericalBasis(l_max).double()
    u = torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64), dim=1).requires_grad_()
    w = torch.randn(200, (l_max + 1) ** 2, dtype=torch.float64)
    out = {}
    for evaluate in ("monomials", "e3nn"):
        basis.evaluate = evaluate
        Y = basis(u)
        g = _grad((Y * w).sum(), u, create_graph=True)
        h = _grad((g * g).sum(), u)                                  # a second derivative (zero below l = 2)
        out[evaluate] = (Y.detach(), g.detach(), h)
    ref = o3.spherical_harmonics(list(range(l_max + 1)), u.detach(), normalize=False, normalization="norm")
    assert _rel(out["e3nn"][0], ref) == 0.0                          # the reference is e3nn's own function
    for k in range(3):
        assert _rel(out["monomials"][k], out["e3nn"][k]) < 1e-12, k


def test_the_table_is_block_diagonal_by_degree_and_survives_dtype_round_trips():
    C = harmonic_coefficients(MonomialBasis(3))
    degree = torch.tensor([sum(lv) for lv in monomials(3)])
    l_of = torch.cat([torch.full((2 * l + 1,), l) for l in range(4)])
    assert (C[degree[:, None] != l_of[None, :]] == 0).all()
    basis = SphericalBasis(3).float().double()                       # a float32 copy would lose digits
    assert torch.equal(basis.coefficients, basis._tables64["coefficients"]) and basis.coefficients.dtype == torch.float64
    with pytest.raises(InputError, match="evaluate must be one of"):
        SphericalBasis(3, evaluate="sympy")


def test_the_potential_is_the_same_function_either_way():
    """Energies, forces, stress and the force loss's gradient with respect to the weights (the
    double backward) of a spherical potential: polynomial form against e3nn, float64, 1e-12."""
    torch.manual_seed(0)
    pot = build("spherical", elements=[1, 8], cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=3, nu_max=3,
                n_layers=1, readout=(4,)).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(5), [1, 8], n=6), 3.0)
    out = {}
    for evaluate in ("monomials", "e3nn"):
        pot.descriptor.angular.evaluate = evaluate
        res = pot(graph, stress=True, training=True)
        params = [p for p in pot.parameters() if p.requires_grad]
        grads = torch.autograd.grad((res["forces"] ** 2).sum(), params, allow_unused=True)
        out[evaluate] = [res["energy"].detach(), res["forces"].detach(), res["stress"].detach(),
                         torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])]
    for a, b, name in zip(out["monomials"], out["e3nn"], ("energy", "forces", "stress", "force-loss gradient")):
        assert _rel(a, b) < 1e-12, name


def test_the_spherical_basis_launches_about_as_many_operators_as_cace(tmp_path):
    """Same effort for both: an energy + forces call of the spherical potential launches within 5%
    of CACE's operators (e3nn's own harmonics launched 55% more: 420 against 272, water preset)."""
    from bench.profile import main

    assert main(["--device", "cpu", "--repeat", "1", "--calls", "1", "--backend", "eager", "--out", str(tmp_path)]) == 0
    cases = {c["descriptor"]: c["launches_per_call"] for c in json.loads((tmp_path / "profile.json").read_text())["cases"]}
    assert cases["spherical"] <= 1.05 * cases["cace"], cases
