"""nu = 2 features against their closed form (issue #17.4): for an atom i with neighbours j, j',

    CACE:       B2[i, l, n, (a, b)] = sum_{j, j'} R_n(r_ij) R_n(r_ij') theta_j[b] theta_j'[b] theta_i[a]^2 (u_ij . u_ij')^l
    spherical:  the same with P_l(u_ij . u_ij') in place of (u_ij . u_ij')^l

(R_n including the envelope, theta the element embedding, a the receiver's and b the sender's
embedding channel; first layer, fixed basis, no mixing). Written as a double sum over neighbour
pairs, independent of the monomial and spherical-harmonic tables and of the contraction code."""

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre

from baselines import SphericalACE
from bench.graph import AtomsGraph
from bench.testing import random_cluster, random_periodic
from cace import CACE


def _legendre(l, x):
    return torch.as_tensor(legendre.legval(x.numpy(), np.eye(l + 1)[l]))


KERNELS = {"cace": (CACE, lambda l, x: x ** l), "spherical": (SphericalACE, _legendre)}


def _closed_form(model, graph, kernel, l_max):
    ed = model.edge_data(graph)
    vec = graph.edge_vectors()
    u = vec / vec.norm(dim=1, keepdim=True)
    senders, receivers = graph.edge_index
    N, e = ed.theta.shape
    R = ed.radial.shape[1]
    out = torch.zeros(N, l_max, R, e, e, dtype=torch.float64)
    for i in range(N):
        js = (receivers == i).nonzero().flatten()
        cos = u[js] @ u[js].T                                           # [n_j, n_j]
        rad = ed.radial[js]                                              # [n_j, R]
        emb = ed.theta[senders[js]]                                      # [n_j, e_b]
        for l in range(1, l_max + 1):
            k = kernel(l, cos)                                           # [n_j, n_j]
            pair = torch.einsum("jk,jn,kn,jb,kb->nb", k, rad, rad, emb, emb)   # [R, e_b]
            out[i, l - 1] = (ed.theta[i] ** 2)[None, :, None] * pair[:, None, :]
    return out.reshape(N, l_max, R, e * e)


@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("system", ["cluster", "periodic"])
def test_nu2_features_equal_the_pair_sum(kind, system):
    cls, kernel = KERNELS[kind]
    torch.manual_seed(0)
    l_max = 3
    model = cls([1, 8], cutoff=3.5, n_rbf=3, l_max=l_max, nu_max=2, fixed_basis=True, n_layers=0).double()
    labels = model.invariant_labels()
    assert labels[1:] == [(2, (l,)) for l in range(1, l_max + 1)]        # the nu = 2 invariants, l = 1..l_max
    rng = np.random.default_rng(5)
    atoms = random_cluster(rng, [1, 8], n=6) if system == "cluster" else random_periodic(rng, [1, 8], n=5)
    graph = AtomsGraph.from_atoms(atoms, 3.5, dtype=torch.float64)
    B = model.symmetrize(model.atomic_basis(model.edge_data(graph)))    # [N, n_inv, R, C]
    expected = _closed_form(model, graph, kernel, l_max)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(B[:, 1:], expected, rtol=0, atol=1e-12)
