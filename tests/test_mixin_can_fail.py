"""The shipped mixins catch broken models: each test here breaks one property on purpose."""

import pytest
import torch

from bench.nn.radial import PolynomialEnvelope
from bench.potential import build
from bench.testing import DescriptorTests, PotentialTests
from cace import CACE

KW = dict(cutoff=3.5, n_rbf=3, n_embed=2, n_radial=2, l_max=3, nu_max=3, n_layers=1, messages=("M", "Ar", "Bchi"))


class _HardCutoff(PolynomialEnvelope):
    def forward(self, r):
        return (r < self.cutoff).to(r.dtype)


def _broken_table():
    m = CACE([1, 8], **KW).double()
    S = m.symmetrize.coeff3                      # [n_invariants, terms]
    S[tuple(S.nonzero()[0])] *= 1.5              # one multinomial weight wrong -> not rotation invariant
    return m


def _hard_cutoff():
    m = CACE([1, 8], **KW).double()
    m.envelope = _HardCutoff(m.cutoff)
    return m


class _Check(DescriptorTests):
    def __init__(self, factory):
        self.factory = factory

    def make(self, elements):
        return self.factory()


def test_rotation_test_catches_a_wrong_coefficient():
    t = _Check(_broken_table)
    with pytest.raises(AssertionError):
        t.test_rotation_invariance(t.make(None), "cluster", True)


def test_smoothness_test_catches_a_hard_cutoff():
    t = _Check(_hard_cutoff)
    with pytest.raises(AssertionError):
        t.test_smooth_at_cutoff(t.make(None))


class _WrongForces(torch.nn.Module):
    def __init__(self, pot, scale):
        super().__init__()
        self.pot, self.scale = pot, scale
        self.descriptor = pot.descriptor

    def forward(self, graph, **kw):
        out = self.pot(graph, **kw)
        if "forces" in out:
            out["forces"] = out["forces"] * self.scale
        if "stress" in out:
            out["stress"] = out["stress"] * self.scale
        return out


class _PotCheck(PotentialTests):
    elements = (1, 8)


@pytest.mark.parametrize("scale", [1.0001, -1.0])
def test_finite_difference_tests_catch_wrong_forces_and_stress(scale):
    torch.manual_seed(0)
    pot = _WrongForces(build("cace", elements=[1, 8], readout=(4,), **KW).double(), scale)
    t = _PotCheck()
    with pytest.raises(AssertionError):
        t.test_forces_are_minus_energy_gradient(pot, "periodic")
    with pytest.raises(AssertionError):
        t.test_stress_is_strain_derivative(pot)


class _Float32Only(_WrongForces):
    """Forces and stress wrong by 1e-3 in float32 only: a reduced-precision path gone wrong."""

    def forward(self, graph, **kw):
        out = self.pot(graph, **kw)
        if graph.positions.dtype == torch.float32:
            for key in ("forces", "stress"):
                if key in out:
                    out[key] = out[key] * self.scale
        return out


def test_float32_setting_is_held_to_the_float64_derivative():
    """A float32 model whose forces are 0.1% off passes nothing: its forces are checked against
    the finite differences of the same weights in float64, not against its own rounding."""
    torch.manual_seed(0)
    pot = _Float32Only(build("cace", elements=[1, 8], readout=(4,), **KW), 1.001)
    t = _PotCheck()
    t.test_forces_are_minus_energy_gradient(pot.double(), "periodic")        # float64 is right
    t.test_stress_is_strain_derivative(pot.double())
    f32 = pot.float()
    with pytest.raises(AssertionError):
        t.test_forces_are_minus_energy_gradient(f32, "periodic")
    with pytest.raises(AssertionError):
        t.test_stress_is_strain_derivative(f32)
