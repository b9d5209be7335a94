"""Defects ruled out (issue #17.4): the second derivatives a force-loss training step takes are
right for both descriptors. float64 gradgradcheck of both angular bases (CACE's monomials, its
traceless variant, e3nn's harmonics) on the unit sphere, and gradcheck of the force loss with
respect to the weights: its gradient runs through forces = -dE/dx, a double backward."""

import numpy as np
import pytest
import torch
from torch.func import functional_call

from baselines.angular import SphericalBasis
from bench.graph import AtomsGraph
from bench.potential import build
from bench.testing import random_periodic
from cace import CartesianBasis

BASES = {"cace": lambda: CartesianBasis(4), "cace-traceless": lambda: CartesianBasis(4, traceless=True),
         "spherical": lambda: SphericalBasis(4), "spherical-e3nn": lambda: SphericalBasis(4, evaluate="e3nn")}


@pytest.mark.parametrize("name", list(BASES))
def test_angular_basis_first_and_second_derivatives(name):
    basis = BASES[name]().double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)

    def on_sphere(v):
        return basis(v / v.norm(dim=1, keepdim=True))

    assert torch.autograd.gradcheck(on_sphere, (x,))
    assert torch.autograd.gradgradcheck(on_sphere, (x,))


SMALL = dict(cutoff=3.2, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=3, n_layers=1, messages=("Bchi",),
             readout=(4,))


@pytest.mark.parametrize("kind,options", [("cace", {}), ("cace", {"traceless": True}), ("spherical", {})])
def test_force_loss_gradient_wrt_weights(kind, options):
    """d/dtheta sum (F(theta) - F_ref)^2 by autograd (through the double backward) equals finite
    differences, for the radial frequencies, the radial mixing and the readout's first layer."""
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], **SMALL, **options).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(1), [1, 8], n=5), 3.2, dtype=torch.float64)
    f_ref = torch.randn(graph.n_atoms, 3, dtype=torch.float64)
    params = dict(pot.named_parameters())
    for name in ("descriptor.radial.freq", "descriptor.mix0.weight", "mlp.0.weight"):
        theta = params[name].detach()
        directions = torch.randn(3, *theta.shape, dtype=torch.float64)     # the gradient along 3 random directions

        def loss(t, name=name, theta=theta, directions=directions):
            w = theta + torch.tensordot(t, directions, dims=1)
            out = functional_call(pot, {**params, name: w}, (graph,), {"training": True})
            return ((out["forces"] - f_ref) ** 2).sum()

        t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(loss, (t,), eps=1e-6, atol=1e-6, rtol=1e-5), name
