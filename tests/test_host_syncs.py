"""A call of the model reads nothing back from the device (on a GPU each read is a host sync: the
CPU waits for every queued kernel and stops queueing the next ones), and the checks that used to
read are still made: an atom of an element the model does not know is a clear error.

Reads are counted as dispatches of ``aten::_local_scalar_dense`` (``.item()``, ``int(t)``,
``bool(t)``), the same on the CPU as on CUDA, so these tests run everywhere."""

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils._python_dispatch import TorchDispatchMode

from bench.errors import InputError
from bench.graph import AtomsGraph, collate, graph_from_tensors
from bench.potential import build
from bench.testing import random_periodic
from bench.train import ema_update, loss_terms

SMALL = dict(cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=2, n_layers=1, readout=(4,))


class HostReads(TorchDispatchMode):
    """Counts the operators that copy a tensor's value to the host."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket.__name__ in ("_local_scalar_dense", "item"):
            self.n += 1
        return func(*args, **(kwargs or {}))


def _labelled_graphs(n_frames=3, seed=0):
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(n_frames):
        atoms = random_periodic(rng, [1, 8], n=5)
        g = AtomsGraph.from_atoms(atoms, SMALL["cutoff"])
        graphs.append(g.replace(energy=torch.randn(1, dtype=torch.float64),
                                forces=torch.randn(g.n_atoms, 3, dtype=torch.float64)))
    return graphs


# eager everywhere; the fused kernels on CUDA only (Triton's CPU interpreter reads its own inputs)
CASES = [("cpu", "eager"), pytest.param("cuda", "eager", marks=pytest.mark.gpu),
         pytest.param("cuda", "fused", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device,backend", CASES)
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_energy_forces_and_a_training_step_read_nothing_back(kind, device, backend):
    from bench.backends import with_backend

    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], **SMALL).to(device=device, dtype=torch.float64)
    model = with_backend(pot, backend)
    ema = AveragedModel(pot, multi_avg_fn=lambda a, c, n: torch._foreach_lerp_(a, c, 0.1)
                        if a[0].is_floating_point() else None, use_buffers=True)
    batch = collate(_labelled_graphs()).to(device=device)
    assert batch.elements == frozenset({1, 8})
    model(batch, forces=True)                                          # first call: kernels compiled
    if device == "cuda":        # also the reads inside native kernels, which the mode cannot see
        torch.cuda.set_sync_debug_mode("error")
    try:
        with HostReads() as reads:
            out = model(batch, forces=True)
            e, f = loss_terms(model, batch, training=True)
            (0.1 * e + f).backward()
            ema_update(ema, pot, ema.multi_avg_fn, first=True)
            ema_update(ema, pot, ema.multi_avg_fn, first=False)
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["forces"]).all()
    assert reads.n == 0
    # the counter sees reads: a graph whose elements are not known on the host is checked by
    # reading its numbers (as before), which is what the host set spares
    unknown = batch.replace(numbers=batch.numbers.clone())
    assert unknown.elements is None
    with HostReads() as reads:
        model(unknown, forces=True)
    assert reads.n > 0


def test_an_element_the_model_does_not_know_is_an_error_with_or_without_the_host_set():
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], **SMALL).double()
    atoms = random_periodic(np.random.default_rng(3), [1, 6], n=4)      # carbon: not the model's
    graph = AtomsGraph.from_atoms(atoms, SMALL["cutoff"])
    assert 6 in graph.elements
    with pytest.raises(InputError, match=r"atomic numbers \[6\] are not among the model's elements \[1, 8\]"):
        pot(graph)
    with pytest.raises(InputError, match=r"atomic numbers \[6\] are not among the model's elements"):
        pot(graph.replace(numbers=graph.numbers.clone()))                 # read from the tensor
    ok = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(3), [1, 8], n=4), SMALL["cutoff"])
    relabelled = ok.replace(numbers=torch.full_like(ok.numbers, 6))       # numbers changed: set dropped
    with pytest.raises(InputError, match=r"atomic numbers \[6\]"):
        pot(relabelled)


def test_host_element_sets_follow_the_graph():
    """from_atoms and collate carry the set, to() keeps it, a graph built from device tensors has
    one only when the caller gives it, and collating with such a graph makes the batch's unknown."""
    frames = [random_periodic(np.random.default_rng(s), els, n=4) for s, els in ((0, [1, 8]), (1, [1, 6]))]
    batch = AtomsGraph.from_atoms(frames, 3.0)
    assert batch.elements == frozenset(int(z) for a in frames for z in a.numbers)
    assert batch.to(dtype=torch.float32).elements == batch.elements
    a = frames[0]
    t = dict(dtype=torch.float64)
    args = (torch.tensor(a.positions, **t), torch.as_tensor(a.numbers), torch.tensor(a.cell.array, **t), a.pbc, 3.0)
    assert graph_from_tensors(*args).elements is None
    known = graph_from_tensors(*args, elements=a.numbers)
    assert known.elements == frozenset(int(z) for z in a.numbers)
    assert collate([known, graph_from_tensors(*args)]).elements is None


def test_ema_update_is_averaged_models_update():
    """The same averaged weights, buffers and count as AveragedModel.update_parameters over a copy
    and two averaging updates, with the training loop's step (integer buffers copied)."""
    torch.manual_seed(0)
    pot = build("spherical", elements=[1, 8], **SMALL).double()

    def step(averaged, current, _n):
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 0.3)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    ref = AveragedModel(pot, multi_avg_fn=step, use_buffers=True)
    ours = AveragedModel(pot, multi_avg_fn=step, use_buffers=True)
    for k in range(3):
        with torch.no_grad():
            for p in pot.parameters():
                p.add_(torch.randn_like(p))
        ref.update_parameters(pot)
        ema_update(ours, pot, step, first=k == 0)
    a, b = ref.state_dict(), ours.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert int(ours.n_averaged) == 3
