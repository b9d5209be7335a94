"""Reusable property tests (pytest classes), in float64 and float32, on every device present.

Subclass ``DescriptorTests`` with ``make(self, elements)`` returning a descriptor, or
``PotentialTests`` with ``make(self, elements)`` returning a potential; set ``elements``. Every
test runs once per setting of ``SETTINGS``: (float64, cpu), (float32, cpu), and the same two on
CUDA where it is present (those marked ``gpu``); the model is moved to the setting's dtype and
device, and so are the graphs it is given.

Tolerances (relative): invariances 1e-10 in float64, 1e-5 in float32 (``INVARIANCE_RTOL``).
Forces and stress are checked against central finite differences of the energy of the same
weights in float64 on the same device (a float32 difference quotient would measure rounding, not
the derivative): 1e-6 in float64, 1e-4 in float32 (``FD_RTOL``), so a float32 path whose forces
are not the derivative of its energy fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from ..graph import AtomsGraph
from ..parity import relative_error
from ..structures import random_rotation

# float32: CACE's periodic translation test measured 6.8e-6 on the CPU and 1.05e-5 on an H200 (its
# non-traceless Cartesian contractions amplify rounding about 7x more than the spherical basis: 5e-15
# against 8e-16 in float64), so 1e-5 failed by rounding alone; a broken symmetry errs by O(1e-2) or more
INVARIANCE_RTOL = {torch.float64: 1e-10, torch.float32: 5e-5}
FD_RTOL = {torch.float64: 1e-6, torch.float32: 1e-4}
ABS_ZERO = {torch.float64: 1e-14, torch.float32: 1e-6}     # "no neighbour changes nothing", absolute


def _settings() -> list:
    """(dtype, device) pairs the mixins run in: float64 and float32 on the CPU, and on CUDA (marked
    ``gpu``) where it is present."""
    out = [pytest.param((torch.float64, "cpu"), id="float64-cpu"), pytest.param((torch.float32, "cpu"), id="float32-cpu")]
    if torch.cuda.is_available():
        out += [pytest.param((dt, "cuda"), id=f"{name}-cuda", marks=pytest.mark.gpu)
                for dt, name in ((torch.float64, "float64"), (torch.float32, "float32"))]
    return out


SETTINGS = _settings()


def setting_of(model) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of a model's floating-point parameters (or buffers)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.float64, torch.device("cpu")


def float64_copy(model):
    """The same weights in float64 on the same device (a fused-kernel model runs only where its
    kernels do): the reference a float32 path is held to."""
    import copy

    if setting_of(model)[0] == torch.float64:
        return model
    return copy.deepcopy(model).to(dtype=torch.float64)



def random_cluster(rng, elements, n=8, box=4.0, min_dist=0.9) -> Atoms:
    """A molecule-like random cluster (no cell, pbc False) with no two atoms closer than min_dist."""
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > min_dist for q in pos):
            pos.append(p)
    return Atoms(numbers=rng.choice(elements, size=n), positions=np.array(pos))


def random_periodic(rng, elements, n=6, a=3.6, min_dist=0.9) -> Atoms:
    """A small triclinic periodic cell, smaller than twice a typical cutoff (so images matter)."""
    cell = a * (np.eye(3) + rng.uniform(-0.15, 0.15, (3, 3)))
    atoms = Atoms(numbers=rng.choice(elements, size=1), positions=[[0, 0, 0]], cell=cell, pbc=True)
    while len(atoms) < n:
        cand = atoms.copy()
        cand.append(int(rng.choice(elements)))
        cand.positions[-1] = rng.uniform(0, 1, 3) @ cell
        d = cand.get_distances(len(cand) - 1, range(len(cand) - 1), mic=True)
        if d.min() > min_dist:
            atoms = cand
    return atoms


class _Base:
    elements: tuple = (1, 8)
    seed: int = 0

    def make(self, elements):
        raise NotImplementedError

    @pytest.fixture(scope="class", params=SETTINGS)
    def model(self, request):
        """The model in one (dtype, device) setting; skipped, with the backend's own one-line reason,
        where its backend cannot run on that device (the fused kernels on the CPU of a GPU machine,
        whose process compiles them for CUDA instead of interpreting them; ``make`` builds on the CPU,
        so there every setting of a fused model skips)."""
        from ..backends import BackendUnavailable, check_backend

        dtype, device = request.param
        torch.manual_seed(self.seed)
        try:
            model = self.make(list(self.elements))
            check_backend(getattr(model, "backend", "eager"), device)
        except BackendUnavailable as err:
            pytest.skip(str(err))
        return model.to(device=device, dtype=dtype)

    def rng(self):
        return np.random.default_rng(self.seed + 17)

    def graph(self, model, atoms) -> AtomsGraph:
        dtype, device = setting_of(model)
        return AtomsGraph.from_atoms(atoms, model_cutoff(model), dtype=dtype, device=device)

    def rtol(self, model) -> float:
        return INVARIANCE_RTOL[setting_of(model)[0]]

    def systems(self):
        rng = self.rng()
        return {"cluster": random_cluster(rng, self.elements), "periodic": random_periodic(rng, self.elements)}


def _assert_close(got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    """||got - want|| / ||want|| < rtol, the measured error in the message (a GPU run's log is all
    one gets back)."""
    err = relative_error(got, want)
    assert err < rtol, f"relative error {err:.2e}, tolerance {rtol:.0e}"


def model_cutoff(model) -> float:
    return float(model.cutoff if hasattr(model, "cutoff") else model.descriptor.cutoff)


class DescriptorTests(_Base):
    """Invariance, batching, smoothness and edge cases of ``forward(graph) -> [N, F]``."""

    def test_satisfies_the_descriptor_contract(self, model):
        from ..nn.contracts import AngularBasis, Descriptor, missing_members

        assert missing_members(model, Descriptor) == [] and missing_members(model.angular, AngularBasis) == []
        l_of = model.angular.l_of
        assert l_of.shape == (model.angular.n_ang,) and bool((l_of[1:] >= l_of[:-1]).all())

    def features(self, model, atoms):
        return model(self.graph(model, atoms)).detach()

    @pytest.mark.parametrize("system", ["cluster", "periodic"])
    @pytest.mark.parametrize("proper", [True, False], ids=["rotation", "improper"])
    def test_rotation_invariance(self, model, system, proper):
        atoms = self.systems()[system]
        ref = self.features(model, atoms)
        R = random_rotation(self.rng(), proper)
        rot = atoms.copy()
        rot.positions = atoms.positions @ R.T
        if atoms.pbc.any():
            rot.cell = atoms.cell.array @ R.T
        assert ref.abs().max() > 0
        _assert_close(self.features(model, rot), ref, self.rtol(model))

    @pytest.mark.parametrize("system", ["cluster", "periodic"])
    def test_translation_and_image_invariance(self, model, system):
        atoms = self.systems()[system]
        ref = self.features(model, atoms)
        moved = atoms.copy()
        moved.positions += np.array([0.37, -1.2, 2.9])
        if atoms.pbc.any():  # move one atom by a lattice vector: the same periodic system
            moved.positions[1] += atoms.cell.array[0] - 2 * atoms.cell.array[2]
        _assert_close(self.features(model, moved), ref, self.rtol(model))

    @pytest.mark.parametrize("system", ["cluster", "periodic"])
    def test_permutation_equivariance(self, model, system):
        atoms = self.systems()[system]
        ref = self.features(model, atoms)
        perm = self.rng().permutation(len(atoms))
        _assert_close(self.features(model, atoms[perm]), ref[perm], self.rtol(model))

    def test_supercell_repeats_features(self, model):
        atoms = self.systems()["periodic"]
        ref = self.features(model, atoms)
        big = self.features(model, atoms.repeat((2, 1, 1)))
        _assert_close(big, ref.repeat(2, 1), self.rtol(model))

    def test_batch_equals_single(self, model):
        frames = list(self.systems().values())
        dtype, device = setting_of(model)
        batch = model(AtomsGraph.from_atoms(frames, model_cutoff(model), dtype=dtype, device=device)).detach()
        single = torch.cat([self.features(model, a) for a in frames])
        _assert_close(batch, single, self.rtol(model))

    def test_smooth_at_cutoff(self, model):
        """A neighbour approaching r_c changes the features by O(delta^3) -> 0, value and slope
        (the decay order in float64, where it is above rounding; in float32 the change must be
        below float32 rounding of the features within 1e-2 A of the cutoff)."""
        rc = model_cutoff(model)
        z = self.elements
        lone = self.features(model, Atoms(numbers=[z[0]], positions=[[0, 0, 0]]))

        def dimer(r):
            return self.features(model, Atoms(numbers=[z[0], z[-1]], positions=[[0, 0, 0], [r, 0, 0]]))[0]

        inside = (dimer(rc - 0.5) - lone[0]).abs().max()
        near = [(dimer(rc - d) - lone[0]).abs().max() for d in (1e-2, 5e-3)]
        assert inside > 0
        if setting_of(model)[0] == torch.float64:
            assert near[0] < 1e-4 * inside and near[1] < near[0] / 5  # at least cubic decay
        else:
            assert near[0] < 1e-4 * inside + 10 * torch.finfo(torch.float32).eps * lone.abs().max()
        assert torch.equal(dimer(rc + 1e-9), lone[0])  # exactly nothing beyond the cutoff

    def test_isolated_atom_and_empty(self, model):
        z = self.elements
        lone = self.features(model, Atoms(numbers=[z[0]], positions=[[0, 0, 0]]))
        assert lone.shape == (1, model.n_features) and torch.isfinite(lone).all()
        far = self.features(model, Atoms(numbers=[z[0], z[-1], z[-1]],
                                         positions=[[0, 0, 0], [50, 0, 0], [51, 0, 0]]))
        assert torch.allclose(far[0], lone[0], rtol=0, atol=ABS_ZERO[setting_of(model)[0]])  # no neighbours
        empty = self.features(model, Atoms())
        assert empty.shape == (0, model.n_features)

    def test_config_round_trip(self, model):
        dtype, device = setting_of(model)
        again = type(model).from_config(model.config()).to(device=device, dtype=dtype)
        again.load_state_dict(model.state_dict())
        atoms = self.systems()["periodic"]
        assert again.config() == model.config()
        if device == "cpu":          # the same function, bit for bit
            assert torch.equal(self.features(again, atoms), self.features(model, atoms))
        else:                        # CUDA's index_add sums in an order that varies from call to call
            _assert_close(self.features(again, atoms), self.features(model, atoms), self.rtol(model))


class PotentialTests(_Base):
    """Energy invariance, forces = -dE/dx and stress = (1/V) dE/deps against finite differences."""

    def energy(self, model, atoms) -> float:
        return float(model(self.graph(model, atoms), forces=False)["energy"].detach().sum())

    @pytest.mark.parametrize("system", ["cluster", "periodic"])
    def test_forces_are_minus_energy_gradient(self, model, system):
        atoms = self.systems()[system]
        out = model(self.graph(model, atoms), forces=True)
        forces = out["forces"].detach().cpu().double().numpy()
        ref = float64_copy(model)                         # differences of the float64 energy
        h = 1e-5
        fd = np.zeros_like(forces)
        for i in range(len(atoms)):
            for d in range(3):
                plus, minus = atoms.copy(), atoms.copy()
                plus.positions[i, d] += h
                minus.positions[i, d] -= h
                fd[i, d] = -(self.energy(ref, plus) - self.energy(ref, minus)) / (2 * h)
        assert np.abs(forces).max() > 1e-3
        assert np.linalg.norm(forces - fd) / np.linalg.norm(fd) < FD_RTOL[setting_of(model)[0]]

    def test_stress_is_strain_derivative(self, model):
        atoms = self.systems()["periodic"]
        stress = model(self.graph(model, atoms), forces=True, stress=True)["stress"][0].detach().cpu().double().numpy()
        ref = float64_copy(model)
        dtype = setting_of(model)[0]
        h = 1e-5
        fd = np.zeros((3, 3))
        vol = atoms.get_volume()
        for a in range(3):
            for b in range(3):
                eps = np.zeros((3, 3))
                eps[a, b] = eps[b, a] = h / (1 if a == b else 2)
                vals = []
                for sign in (1, -1):
                    s = atoms.copy()
                    s.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
                    vals.append(self.energy(ref, s))
                fd[a, b] = (vals[0] - vals[1]) / (2 * h) / vol
        assert np.allclose(stress, stress.T, atol=1e-12 if dtype == torch.float64 else 1e-6 * np.abs(stress).max())
        assert np.linalg.norm(stress - fd) / np.linalg.norm(fd) < FD_RTOL[dtype]

    def test_energy_invariant_forces_equivariant(self, model):
        atoms = self.systems()["periodic"]
        out = model(self.graph(model, atoms))
        R = random_rotation(self.rng())
        rot = atoms.copy()
        rot.positions = atoms.positions @ R.T
        rot.cell = atoms.cell.array @ R.T
        out_r = model(self.graph(model, rot))
        _assert_close(out_r["energy"].detach(), out["energy"].detach(), self.rtol(model))
        R_t = torch.tensor(R.T, dtype=out["forces"].dtype, device=out["forces"].device)
        _assert_close(out_r["forces"].detach(), out["forces"].detach() @ R_t, self.rtol(model))

    def test_batch_equals_single(self, model):
        frames = list(self.systems().values())
        dtype, device = setting_of(model)
        batch = model(AtomsGraph.from_atoms(frames, model_cutoff(model), dtype=dtype, device=device))
        singles = [model(self.graph(model, a)) for a in frames]
        _assert_close(batch["energy"].detach(), torch.cat([s["energy"] for s in singles]).detach(), self.rtol(model))
        _assert_close(batch["forces"].detach(), torch.cat([s["forces"] for s in singles]).detach(), self.rtol(model))
