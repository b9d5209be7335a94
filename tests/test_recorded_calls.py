"""Energy + forces calls replayed from CUDA graphs (backends ``eager-cudagraphs``, ``fused-cudagraphs``;
``bench.backends.recorded_calls``, ``bench.cuda_graphs``) give what the potential gives.

On the CPU the recording path runs without recording (``record=False``): every call padded to
bucketed sizes and copied into its shape's static tensors, the same shape's later calls over those
tensors. Under ``gpu`` the same checks with real recordings."""

import copy

import numpy as np
import pytest
import torch
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from bench.backends import BackendUnavailable, recorded_calls, with_backend
from bench.graph import AtomsGraph
from bench.md.engine import BatchedMD
from bench.potential import build
from bench.testing import random_periodic

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=1, readout=(8,))


def _pot(kind, device="cpu"):
    torch.manual_seed(0)
    return build(kind, elements=[1, 8], **SMALL).to(device=device, dtype=torch.float64)


def _unrecorded(pot, backend="eager-cudagraphs"):
    """``pot`` under a recording backend's path, without recording (as a CPU can run it)."""
    named = copy.copy(pot)
    object.__setattr__(named, "backend", backend)
    return recorded_calls(named, record=False)


def _frames(n=4, seed=1):
    """One cell rattled (same shape, new inputs: replays) and one other cell (a new shape)."""
    rng = np.random.default_rng(seed)
    base = random_periodic(rng, [1, 8], n=8)
    out = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0, 0.02, a.positions.shape)
        out.append(a)
    return out + [random_periodic(rng, [1, 8], n=11)]


def _close(out, ref, rel):
    for key in ("energy", "forces", "stress"):
        err = (out[key] - ref[key]).norm() / ref[key].norm()
        assert err <= rel, (key, float(err))


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_replayed_calls_are_the_potentials_calls(kind):
    pot = _pot(kind)
    fast = _unrecorded(pot)
    graphs = [AtomsGraph.from_atoms(a, SMALL["cutoff"]) for a in _frames()]
    for g in graphs + graphs[:2]:
        _close(fast(g, stress=True), pot(g, stress=True), 1e-12)
    graphs_ = fast._call_graphs
    assert graphs_.replays >= 3 and 2 <= graphs_.n_recordings <= 4      # a rattled copy may cross a bucket


def test_a_recording_potential_refuses_a_training_step_and_copies_back_to_plain():
    pot = _pot("cace")
    fast = _unrecorded(pot)
    g = AtomsGraph.from_atoms(_frames(1)[0], SMALL["cutoff"])
    with pytest.raises(BackendUnavailable, match="records inference calls, not a force-loss training step"):
        fast(g, training=True)
    plain = with_backend(fast, "eager")
    assert plain is not fast and plain._call_graphs is None and plain.backend == "eager"
    _close(plain(g, stress=True), pot(g, stress=True), 0.0)
    from bench.tasks.timing import mode_call

    with pytest.raises(BackendUnavailable, match="records energy \\+ forces calls"):
        mode_call(fast, g, "descriptor")


def test_new_weight_tensors_drop_the_recordings():
    """A recording reads the tensors it was made with: after ``.float().double()`` (new tensors)
    every shape is recorded again, and the answers are the new weights'."""
    pot = _pot("cace")
    fast = _unrecorded(pot)
    g = AtomsGraph.from_atoms(_frames(1)[0], SMALL["cutoff"])
    fast(g)
    fast(g)
    assert fast._call_graphs.n_recordings == 1 and fast._call_graphs.replays == 1
    with torch.no_grad():
        pot.mlp[0].weight.mul_(1.5)                   # in place: the same tensors, kept
    fast(g)
    assert fast._call_graphs.replays == 2
    fast.float().double()
    _close(fast(g, stress=True), pot(g, stress=True), 1e-7)   # the weights went through float32
    assert fast._call_graphs.n_recordings == 1 and fast._call_graphs.replays == 2   # recorded again, not replayed


def _water():
    from bench.structures import water_box

    atoms = water_box()
    MaxwellBoltzmannDistribution(atoms, temperature_K=600.0, rng=np.random.default_rng(0))
    return [atoms]


def test_md_under_a_recording_backend_follows_the_eager_trajectory():
    """NVE, float64, 192 water atoms, lists rebuilt every step: the engine pads its lists (the
    backend replays fixed shapes) and the trajectory equals the eager one within 1e-10 A."""
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], scale=0.05, **{**SMALL, "cutoff": 4.0}).double()
    fast = _unrecorded(pot)
    runs = {}
    for name, p in (("eager", pot), ("recorded", fast)):
        md = BatchedMD(p, _water(), timestep_fs=0.5, skin=0.05)
        md.run(20)
        runs[name] = md
    assert runs["recorded"].pad_edges and not runs["eager"].pad_edges
    assert float((runs["eager"].positions - runs["recorded"].positions).abs().max()) < 1e-10
    assert fast._call_graphs.replays > 10 and fast._call_graphs.n_recordings <= 2


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager-cudagraphs", "fused-cudagraphs"])
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_recorded_calls_equal_the_potential_on_cuda(kind, backend):
    """Real recordings on CUDA, float64: new positions in an old shape (replays) and a new shape,
    against the potential itself (CUDA's scatter sums are not deterministic: 1e-10 relative)."""
    pot = _pot(kind, "cuda")
    fast = with_backend(pot, backend)
    graphs = [AtomsGraph.from_atoms(a, SMALL["cutoff"], device="cuda") for a in _frames()]
    for g in graphs + graphs[:2]:
        _close(fast(g, stress=True), pot(g, stress=True), 1e-10)
    assert fast._call_graphs.replays >= 3 and fast._call_graphs.eager_calls == 0
