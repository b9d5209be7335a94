"""Checkpoints, presets, the ASE calculator, and CPU/CUDA parity."""

import numpy as np
import pytest
import torch
from ase.md.verlet import VelocityVerlet
from ase import units

from bench.calculator import BenchCalculator
from bench.graph import AtomsGraph
from bench.potential import build, load_checkpoint, save_checkpoint
from bench.structures import water_box
from bench.testing import random_periodic
from cace.presets import PRESETS

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=1, messages=("M", "Ar", "Bchi"))


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_checkpoint_round_trip(tmp_path, kind):
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), e0={1: -13.6, 8: -2040.0}, **SMALL).double()
    path = tmp_path / "model.pt"
    save_checkpoint(pot, path)
    again = load_checkpoint(path).double()
    g = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(0), [1, 8]), 3.5)
    assert again.config() == pot.config()
    assert torch.equal(again(g)["energy"], pot(g)["energy"])
    raw = torch.load(path, weights_only=True)  # state_dict + config only: no pickled module
    assert set(raw) == {"config", "state_dict"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_identically_on_both_sides(name):
    torch.manual_seed(0)
    c = build("cace", elements=[1, 6, 7, 8], preset=name)
    s = build("spherical", elements=[1, 6, 7, 8], preset=name)
    # matched mode: same invariants per (k, c), hence same features and parameters
    assert c.descriptor.n_features == s.descriptor.n_features
    assert sum(p.numel() for p in c.parameters()) == sum(p.numel() for p in s.parameters())
    cfg_c, cfg_s = c.descriptor.config(), s.descriptor.config()
    assert cfg_s.pop("mode") == "matched" and cfg_c.pop("traceless") is False   # each side's own angular option
    assert cfg_c == cfg_s


def test_water_preset_size():
    """64 H2O: 1296 features (2 x 6 invariants x 12 radial x 9 channels) and about 72k parameters."""
    pot = build("cace", elements=[1, 8], preset="water")
    assert pot.descriptor.n_features == 1296
    assert 60_000 < sum(p.numel() for p in pot.parameters()) < 80_000


def test_calculator_reuses_neighbour_list_and_matches_fresh_graphs():
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), **SMALL)
    atoms = random_periodic(np.random.default_rng(1), [1, 8], n=8)
    calc = BenchCalculator(pot, skin=0.6)
    atoms.calc = calc
    rng = np.random.default_rng(2)
    for step in range(6):
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        fresh = pot.double()(AtomsGraph.from_atoms(atoms, 3.5), stress=True)
        assert e == pytest.approx(float(fresh["energy"][0]), abs=1e-10)
        assert np.allclose(f, fresh["forces"].detach().numpy(), atol=1e-10)
        assert np.allclose(s, fresh["stress"][0].detach().numpy()[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], atol=1e-10)
    assert calc.n_rebuilds < 6  # the neighbour list was reused between small moves


def _nve_energy_spread(dt_fs: float, steps: int) -> float:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), **SMALL)
    atoms = random_periodic(np.random.default_rng(4), [8], n=8, a=4.5, min_dist=1.6)
    atoms.calc = BenchCalculator(pot)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dyn.run(steps)
    return float(np.ptp(energies))


def test_calculator_nve_energy_error_scales_as_dt_squared():
    """Velocity Verlet conserves energy up to O(dt^2) only if the forces are the exact gradient of
    the energy: 5x smaller steps over the same 20 fs must shrink the energy spread about 25x."""
    coarse, fine = _nve_energy_spread(0.5, 40), _nve_energy_spread(0.1, 200)
    assert coarse / fine > 15
    assert fine < 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_cpu_cuda_parity(kind):
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], preset="water").double()
    graph = AtomsGraph.from_atoms(water_box(), 5.5)
    ref = pot(graph, stress=True)
    out = pot.to("cuda")(graph.to("cuda"), stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(out[key].cpu(), ref[key], rtol=1e-9, atol=1e-9), key


def test_equal_parameter_option_matches_counts():
    """The complete spherical set has more features; n_parameters narrows its readout to CACE's count."""
    from bench.potential import count_parameters

    kw = dict(cutoff=4.0, n_rbf=4, n_embed=2, n_radial=4, l_max=3, nu_max=3, n_layers=1, messages=("Bchi",),
              readout=(32, 16))
    cace = build("cace", elements=[1, 8], **kw)
    free = build("spherical", elements=[1, 8], mode="complete", **kw)
    matched = build("spherical", elements=[1, 8], mode="complete", n_parameters=count_parameters(cace), **kw)
    assert free.descriptor.n_features > cace.descriptor.n_features
    assert count_parameters(free) > 1.2 * count_parameters(cace)
    per_width = free.descriptor.n_features + 1 + 16  # parameters one unit of first-layer width costs
    assert abs(count_parameters(matched) - count_parameters(cace)) <= per_width // 2 + 1
    assert matched.config()["readout"][1:] == [16]


def test_a_potential_refuses_what_is_not_a_descriptor():
    from bench.potential import Potential

    with pytest.raises(TypeError, match="not a descriptor .* lacks cutoff, n_features"):
        Potential(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_contract_check_sees_module_members_as_python_3_12_does_not(kind):
    """The descriptor contract is checked with hasattr. Python 3.12's isinstance on a runtime
    protocol looks members up statically, which misses a module's submodules and buffers (every
    descriptor failed it on the GPU machine's Python 3.12): shown here with getattr_static itself."""
    import inspect

    from bench.nn.contracts import AngularBasis, Descriptor, missing_members

    d = build(kind, elements=[1, 8], preset="water").descriptor
    assert missing_members(d, Descriptor) == [] and missing_members(d.angular, AngularBasis) == []
    with pytest.raises(AttributeError):
        inspect.getattr_static(d, "angular")           # a submodule: invisible to a static lookup
    with pytest.raises(AttributeError):
        inspect.getattr_static(d.angular, "l_of")      # a buffer, likewise


@pytest.mark.parametrize("readout", [(), (8,), (8, 4)])
def test_readout_is_the_mlp_plus_the_linear_term_with_their_gradients(readout):
    """The readout's one product for the MLP's first layer and the linear term equals mlp(B) +
    linear(B) (float64, 1e-12), and so do the gradients of a loss with respect to B and every weight."""
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=readout, **SMALL).double()
    B = torch.randn(7, pot.descriptor.n_features, dtype=torch.float64, requires_grad=True)
    params = [B, *pot.mlp.parameters(), pot.linear.weight]
    got, want = pot.readout(B), pot.mlp(B) + pot.linear(B)
    assert got.shape == want.shape == (7, 1) and float((got - want).abs().max()) < 1e-12
    g_got = torch.autograd.grad((got**2).sum(), params)
    g_want = torch.autograd.grad((want**2).sum(), params)
    assert all(float((a - b).abs().max()) < 1e-12 for a, b in zip(g_got, g_want))
