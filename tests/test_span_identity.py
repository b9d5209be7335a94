"""Span identities between the Cartesian and spherical invariants (shared/design/cace-math.md).

With ``fixed_basis=True`` and identical radial functions:
- the CACE nu <= 2 invariants are an exact linear combination of the spherical nu <= 2 set
  ((u.v)^l = sum_l' c_ll' P_l'(u.v));
- the CACE nu = 3 invariants lie in the span of the complete spherical nu <= 3 set.
Least squares over many more atomic environments than features; relative residual < 1e-8 in
float64. Perturbing one table entry on either side breaks the identity, so the test can fail.
"""

import numpy as np
import pytest
import torch

from baselines import SphericalACE
from bench.graph import AtomsGraph
from bench.testing import random_cluster
from cace import CACE

ELEMENTS = [1, 8]
KW = dict(cutoff=4.0, n_rbf=3, fixed_basis=True)


@pytest.fixture(scope="module")
def graph():
    rng = np.random.default_rng(5)
    frames = [random_cluster(rng, ELEMENTS, n=12, box=4.5) for _ in range(50)]   # 600 environments
    return AtomsGraph.from_atoms(frames, KW["cutoff"])


def residual(target: torch.Tensor, basis: torch.Tensor) -> float:
    """min_W |basis W - target| / |target| by least squares (columns scaled for conditioning)."""
    X, Y = basis.numpy(), target.numpy()
    scale = np.linalg.norm(X, axis=0)
    keep = scale > 1e-12 * scale.max()
    Xs = X[:, keep] / scale[keep]
    assert Xs.shape[0] > 2 * Xs.shape[1]  # many more environments than features
    W, *_ = np.linalg.lstsq(Xs, Y, rcond=None)
    return float(np.linalg.norm(Xs @ W - Y) / np.linalg.norm(Y))


def feats(model, graph):
    return model.double()(graph).detach()


@pytest.mark.parametrize("l_max", [3, 4])
def test_cartesian_nu2_in_span_of_spherical_nu2(graph, l_max):
    cart = feats(CACE(ELEMENTS, l_max=l_max, nu_max=2, **KW), graph)
    sph = feats(SphericalACE(ELEMENTS, l_max=l_max, nu_max=2, mode="complete", **KW), graph)
    assert residual(cart, sph) < 1e-8
    # and back: the spherical set also holds P_0 = A_0^2, a product of nu = 1 features that the
    # Cartesian set leaves out; with it added the two sets span the same space
    n_a0 = KW["n_rbf"] * len(ELEMENTS) ** 2            # the nu = 1 block comes first: [K, C]
    assert residual(sph, torch.cat([cart, cart[:, :n_a0] ** 2], dim=1)) < 1e-8
    assert residual(sph, cart) > 1e-3


@pytest.mark.parametrize("l_max", [3, 4])
def test_cartesian_nu3_in_span_of_complete_spherical_nu3(graph, l_max):
    cart = feats(CACE(ELEMENTS, l_max=l_max, nu_max=3, **KW), graph)
    sph = feats(SphericalACE(ELEMENTS, l_max=l_max, nu_max=3, mode="complete", **KW), graph)
    assert residual(cart, sph) < 1e-8


def test_nu3_identity_fails_when_nu3_is_missing(graph):
    """Sanity of the method: without the spherical nu = 3 terms the Cartesian nu = 3 set is NOT in the span."""
    cart = feats(CACE(ELEMENTS, l_max=3, nu_max=3, **KW), graph)
    sph2 = feats(SphericalACE(ELEMENTS, l_max=3, nu_max=2, mode="complete", **KW), graph)
    assert residual(cart, sph2) > 1e-3


@pytest.mark.parametrize("side", ["cartesian", "spherical"])
@pytest.mark.parametrize("order", [2, 3])
def test_identity_fails_with_a_perturbed_table(graph, side, order):
    cart_m = CACE(ELEMENTS, l_max=3, nu_max=3, **KW).double()
    sph_m = SphericalACE(ELEMENTS, l_max=3, nu_max=3, mode="complete", **KW).double()
    broken = cart_m if side == "cartesian" else sph_m
    S = getattr(broken.symmetrize, f"coeff{order}")  # [n_invariants, terms]
    nonzero = S.nonzero()
    S[tuple(nonzero[len(nonzero) // 2])] *= 1.2    # one wrong multinomial weight / Clebsch-Gordan coefficient
    assert residual(feats(cart_m, graph), feats(sph_m, graph)) > 1e-4


def test_cartesian_nu4_in_span_of_complete_spherical_nu4():
    """Beyond the spec's requirement: the nu = 4 chains lie in the complete intermediate-coupling set."""
    rng = np.random.default_rng(6)
    g = AtomsGraph.from_atoms([random_cluster(rng, [1], n=12, box=4.5) for _ in range(60)], KW["cutoff"])
    cart = feats(CACE([1], l_max=3, nu_max=4, **KW), g)
    assert residual(cart, feats(SphericalACE([1], l_max=3, nu_max=4, mode="complete", **KW), g)) < 1e-8
    assert residual(cart, feats(SphericalACE([1], l_max=3, nu_max=3, mode="complete", **KW), g)) > 1e-3
