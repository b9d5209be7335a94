"""Both descriptors and both potentials pass the shipped property mixins, in float64 and float32, on
the CPU and (marked gpu) on CUDA where present (bench.testing.SETTINGS)."""


from baselines import SphericalACE
from bench.potential import build
from bench.testing import DescriptorTests, PotentialTests
from cace import CACE

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=4, n_layers=2, messages=("M", "Ar", "Bchi"))


class TestCACE(DescriptorTests):
    def make(self, elements):
        return CACE(elements, **SMALL)


class TestCACEFixedBasis(DescriptorTests):
    def make(self, elements):
        return CACE(elements, cutoff=3.5, n_rbf=4, l_max=4, nu_max=4, fixed_basis=True)


class TestSpherical(DescriptorTests):
    def make(self, elements):
        return SphericalACE(elements, **SMALL)


class TestSphericalComplete(DescriptorTests):
    def make(self, elements):
        return SphericalACE(elements, mode="complete", fixed_basis=True, cutoff=3.5, n_rbf=3, l_max=3, nu_max=4)




class TestCACEPotential(PotentialTests):
    elements = (6, 1, 8)

    def make(self, elements):
        return build("cace", elements=elements, readout=(8, 4), e0={1: -13.6, 6: -1030.0}, **SMALL)


class TestSphericalPotential(PotentialTests):
    elements = (6, 1, 8)

    def make(self, elements):
        return build("spherical", elements=elements, readout=(8, 4), e0={1: -13.6, 6: -1030.0}, **SMALL)


class TestCACETraceless(DescriptorTests):
    """The traceless (irreducible) Cartesian variant passes the same properties."""

    def make(self, elements):
        return CACE(elements, traceless=True, **SMALL)
