"""The training step replayed from CUDA graphs (``bench.train_step``) is the eager step.

On the CPU: the graphed backend's step without recording (edges padded to bucketed sizes, each batch
copied into its shape's static tensors, replayed shapes, the eager fall-backs) gives the plain eager
step's losses and weights, float64. Under ``gpu``: recorded CUDA graphs give what the same step run
unrecorded gives, for the eager and the fused descriptor, both descriptors."""

import copy

import numpy as np
import pytest
import torch

from bench.graph import AtomsGraph, collate
from bench.potential import build
from bench.testing import random_periodic
from bench.train_step import TrainStep, conform_optimizer, make_optimizer, set_lr
from bench.testing.requirements import needs_compile

SMALL = dict(cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=2, n_layers=1, readout=(4,))
RECIPE = dict(lr=1e-2, force_weight=100.0, clip_norm=10.0)


def _rattled_frames(n_frames=7, seed=0):
    """Labelled graphs of one small periodic cell rattled by 0.03 A: the same atom count and nearly
    the same edge count, so batches share shapes (replays) and some do not (new recordings)."""
    rng = np.random.default_rng(seed)
    base = random_periodic(rng, [1, 8], n=6)
    out = []
    for _ in range(n_frames):
        a = base.copy()
        a.positions += rng.normal(0.0, 0.03, a.positions.shape)
        g = AtomsGraph.from_atoms(a, SMALL["cutoff"])
        out.append(g.replace(energy=torch.tensor([rng.normal()], dtype=torch.float64),
                             forces=torch.tensor(rng.normal(size=(g.n_atoms, 3)), dtype=torch.float64)))
    return out


def _batches(frames, epochs=3, size=2, seed=0):
    """The batches of ``epochs`` shuffled epochs, each with the energy weight of its epoch."""
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(frames), generator=gen).tolist()
        for k in range(0, len(order), size):
            yield (0.1, 1.0, 10.0)[epoch % 3], collate([frames[i] for i in order[k:k + size]])


def _pot(kind, device="cpu"):
    torch.manual_seed(0)
    return build(kind, elements=[1, 8], **SMALL).to(device=device, dtype=torch.float64)


def _run(step, batches, device="cpu"):
    losses = []
    for w_e, batch in batches:
        step.set_energy_weight(w_e)
        losses.append(float(step(batch.to(device=device))))
    return losses


def _close_weights(a, b, rel):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p - q).norm() <= rel * p.norm() + 1e-300, name


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_padded_static_step_is_the_eager_step(kind):
    """Every batch padded, copied into its shape's tensors and stepped there: the same losses and
    weights as the eager step, step by step (padding adds exact zeros; a target or input not copied
    would train a replayed shape on a stale batch)."""
    frames = _rattled_frames()
    batches = list(_batches(frames))
    eager_pot, graphed_pot = _pot(kind), _pot(kind)
    eager = TrainStep(eager_pot, **RECIPE)
    graphed = TrainStep(graphed_pot, backend="eager-cudagraphs", record=False, **RECIPE)
    assert not graphed.record and not graphed.capturable
    want, got = _run(eager, batches), _run(graphed, batches)
    assert got == pytest.approx(want, rel=1e-12)
    _close_weights(eager_pot, graphed_pot, 1e-10)
    assert 1 < graphed.n_recordings < len(batches) and graphed.replays > 0 and graphed.eager_steps == 0


@needs_compile
@pytest.mark.slow
def test_the_compiled_step_is_the_eager_step():
    """--train-backend compile (energies and forces compiled together, bench.backends): the eager
    step's losses and weights, step by step, float64, over batches of two atom counts (one
    dynamic-shape graph serving both)."""
    torch._dynamo.reset()
    batches = list(_batches(_rattled_frames(), epochs=2))
    assert len({b.n_atoms for _, b in batches}) == 2
    eager_pot, compiled_pot = _pot("cace"), _pot("cace")
    want = _run(TrainStep(eager_pot, **RECIPE), batches)
    got = _run(TrainStep(compiled_pot, backend="compile", **RECIPE), batches)
    assert got == pytest.approx(want, rel=1e-10)
    _close_weights(eager_pot, compiled_pot, 1e-9)


def test_shapes_past_the_limit_and_unknown_elements_step_eagerly_with_the_same_numbers():
    frames = _rattled_frames()
    batches = list(_batches(frames))
    # the second epoch's batches with their numbers replaced by the same numbers: elements unknown
    batches = [(w, b.replace(numbers=b.numbers.clone()) if 4 <= k < 8 else b) for k, (w, b) in enumerate(batches)]
    assert batches[4][1].elements is None
    eager_pot, graphed_pot = _pot("cace"), _pot("cace")
    eager = TrainStep(eager_pot, **RECIPE)
    graphed = TrainStep(graphed_pot, backend="eager-cudagraphs", record=False, max_graphs=1, **RECIPE)
    assert _run(graphed, batches) == pytest.approx(_run(eager, batches), rel=1e-12)
    _close_weights(eager_pot, graphed_pot, 1e-10)
    assert graphed.n_recordings == 1 and graphed.eager_steps >= 4


def test_an_optimiser_state_round_trips_between_the_eager_and_the_capturable_form():
    """A state saved by an eager training, loaded into the graphed training's optimiser and back,
    continues exactly as the original: the rate, the step counts and the moments survive."""
    torch.manual_seed(0)
    p = [torch.nn.Parameter(torch.randn(5, dtype=torch.float64)), torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]
    opt = make_optimizer(p, 1e-2, capturable=False)
    for _ in range(3):
        opt.zero_grad()
        (p[0].sin().sum() + (p[1] ** 2).sum()).backward()
        opt.step()
    other = make_optimizer([q.detach().clone().requires_grad_() for q in p], 5e-2, capturable=True)
    other.load_state_dict(copy.deepcopy(opt.state_dict()))     # loading aliases the moments
    conform_optimizer(other, capturable=True)
    group = other.param_groups[0]
    assert group["capturable"] and isinstance(group["lr"], torch.Tensor) and float(group["lr"]) == pytest.approx(1e-2)
    assert all(s["step"].dtype == torch.float32 and float(s["step"]) == 3 for s in other.state.values())
    back = make_optimizer(p, 5e-2, capturable=False)
    back.load_state_dict(copy.deepcopy(other.state_dict()))
    conform_optimizer(back, capturable=False)
    assert not back.param_groups[0]["capturable"]
    back.param_groups[0]["lr"] = 1e-2          # the float32 rate of the capturable form, back to the float
    twin = [q.detach().clone().requires_grad_() for q in p]
    ref = make_optimizer(twin, 1e-2, capturable=False)
    ref.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o, params in ((back, p), (ref, twin)):
        o.zero_grad()
        (params[0].sin().sum() + (params[1] ** 2).sum()).backward()
        o.step()
    for a, b in zip(p, twin):
        assert torch.equal(a, b)


def test_a_recorded_step_keeps_reading_the_rate_the_schedules_set():
    """A capturable step's rate stays the tensor its recordings read: a schedule that writes a float
    into the group (as ReduceLROnPlateau did in older torch releases) is written into that tensor
    instead, and the plateau schedule of this torch reduces it in place; a new rate tensor (a loaded
    checkpoint's) is adopted and changes what the recordings watch, so they are made again."""
    step = TrainStep(_pot("cace"), backend="eager-cudagraphs", record=False, capturable=True, **RECIPE)
    group = step.opt.param_groups[0]
    rate, watched = group["lr"], step._watched()
    assert isinstance(rate, torch.Tensor)
    group["lr"] = 4e-3                                   # an old scheduler's assignment
    step._keep_rates()
    assert group["lr"] is rate and float(rate) == pytest.approx(4e-3) and step._watched() == watched
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(step.opt, factor=0.5, patience=0)
    for loss in (1.0, 2.0):
        sched.step(loss)
    step._keep_rates()
    assert group["lr"] is rate and float(rate) == pytest.approx(2e-3)
    group["lr"] = torch.tensor(1e-3)                     # as conform_optimizer makes after a load
    step._keep_rates()
    assert step._rates[0] is group["lr"] and step._watched() != watched


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager-cudagraphs", "fused-cudagraphs"])
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_recorded_step_is_the_unrecorded_step_on_cuda(kind, backend):
    """Recorded and replayed, the step gives what it gives run eagerly over the same padded static
    tensors with the same capturable Adam (float64; CUDA's scatter sums are not deterministic, so
    1e-9 relative), including after the energy weight and the rate change in place."""
    frames = _rattled_frames()
    batches = list(_batches(frames))
    plain_pot, recorded_pot = _pot(kind, "cuda"), _pot(kind, "cuda")
    plain = TrainStep(plain_pot, backend=backend, record=False, capturable=True, **RECIPE)   # the same Adam
    recorded = TrainStep(recorded_pot, backend=backend, **RECIPE)
    assert recorded.record and recorded.capturable and not plain.record

    want = _run(plain, batches[:6], "cuda")
    got = _run(recorded, batches[:6], "cuda")
    for step in (plain, recorded):
        set_lr(step.opt, 3e-3)
    want += _run(plain, batches[6:], "cuda")
    got += _run(recorded, batches[6:], "cuda")
    assert got == pytest.approx(want, rel=1e-9)
    _close_weights(plain_pot, recorded_pot, 1e-9)
    assert recorded.n_recordings >= 1 and recorded.replays > 0


@pytest.mark.gpu
def test_graphed_training_is_eager_training_on_cuda():
    """``train`` with ``eager-cudagraphs`` against ``eager`` on CUDA, float64: the same history to
    1e-5 relative (capturable Adam computes its bias corrections in float32 on the device, eager Adam
    in float64 on the host: each update differs by about 1e-7 of itself; a replay over a stale input
    would differ at order one)."""
    import bench.train as tr

    frames = _rattled_frames(9)
    cfg = tr.TrainConfig(max_epochs=4, batch_size=2, energy_weights=(1.0, 10.0), patience=100, dtype="float64")
    runs = {}
    for backend in ("eager", "eager-cudagraphs"):
        runs[backend] = tr.train(_pot("cace"), frames[:7], frames[7:], cfg, seed=1, progress=False, device="cuda",
                                 backend=backend)
    for key in ("train_loss", "valid_loss"):
        assert [h[key] for h in runs["eager-cudagraphs"].history] == \
            pytest.approx([h[key] for h in runs["eager"].history], rel=1e-5)


def test_the_train_step_benchmark_writes_a_row_per_descriptor_and_backend(tmp_path):
    """``python -m bench.benchmarks.train_step`` on the CPU (eager only there), one 192-atom frame:
    the JSON holds both descriptors' rows with their times and the spherical / CACE ratio."""
    import json

    from bench.benchmarks.train_step import main

    assert main(["--device", "cpu", "--backend", "eager", "--frames", "1", "--repeats", "2", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "train-step.json").read_text())
    rows = {(r["descriptor"], r["backend"]): r for r in data["rows"]}
    assert set(rows) == {("cace", "eager"), ("spherical", "eager")}
    assert all(r["atoms"] == 192 and r["median_ms"] > 0 and r["recordings"] == 0 for r in rows.values())
    assert rows[("spherical", "eager")]["ratio_spherical_over_cace"]["median"] > 0
    assert data["provenance"]["device"] == "cpu"
    assert main(["--device", "cpu", "--backend", "fused-cudagraphs", "--out", str(tmp_path)]) == 2   # a clear refusal


def test_a_backend_failing_in_the_benchmark_is_a_row_and_the_others_are_timed(monkeypatch):
    """A graphed case whose recording fails on the device (here: made to fail) is an error row with
    its reason; the eager case is still timed (a lease's measurement is not lost to one backend)."""
    import bench.train_step as ts
    from bench.benchmarks import train_step as bench_step

    real = ts.TrainStep.__call__

    def failing(self, batch):
        if self.backend == "eager-cudagraphs":
            raise RuntimeError("operation not permitted when stream is capturing")
        return real(self, batch)

    monkeypatch.setattr(ts.TrainStep, "__call__", failing)
    rows = bench_step.measure(["cace"], ["eager", "eager-cudagraphs"], [1], device="cpu", repeats=1, warmup=1)
    by = {r["backend"]: r for r in rows}
    assert by["eager-cudagraphs"]["error"] == "RuntimeError: operation not permitted when stream is capturing"
    assert by["eager"]["median_ms"] > 0 and "error" not in by["eager"]
