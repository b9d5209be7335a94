"""One optimisation step of the training loop, run eagerly or replayed from CUDA graphs.

A step (``bench.train``'s recipe):
    L = w_E * mean_graphs((E - E_ref) / n_atoms)^2 + w_F * mean_components(F - F_ref)^2,
    g = dL/dtheta (the force term's is a double backward), g <- g * min(1, c / |g|), Adam(g).

Eager, each step launches its ~900 kernels from Python, and on a GPU at the recipe's batch (1,536
water atoms) launching, not arithmetic, sets the time: 24.7 ms a step at 1,536 atoms against 21.7
at 192 on an H200 (``results/gpu/NVIDIA-H200/train-run``). The training backends
``eager-cudagraphs`` and ``fused-cudagraphs`` (``bench.backends.TRAINING_BACKENDS``: the descriptor
runs eager or fused) record the whole step (forward, forces, the double backward, clipping, Adam)
once per input shape as a CUDA graph and replay it: one launch a step. torch.compile's
``reduce-overhead`` cannot do this, as AOTAutograd has no double backward.

Shapes: each batch's edges are padded to bucketed counts (``bench.graph.pad_edges``: a padding edge
adds exact zeros to energies, forces and every gradient), so batches of one size need a few
recordings. A batch is keyed by (atoms, graphs, edges, neighbour slots, which targets it has).
The step runs eagerly, with the same arithmetic, past ``max_graphs`` recordings, and for a batch
whose elements are unknown on the host or not among those its recording checked (a replay runs no
element check).

What recording needs is what PyTorch's whole-network capture needs:
- no host read in the step (there is none: ``tests/test_host_syncs.py``);
- static inputs (each batch is copied into its recording's tensors);
- Adam with ``capturable=True`` (its step counts and learning rate on the device, the rate a tensor
  that the schedules fill in place);
- gradients allocated inside the recording (set to None just before it);
- one eager step first, on a side stream (Adam's state, cuBLAS handles, Triton's compiled kernels).
That first step of a shape is a real step of the training on its batch, so every batch is trained
on exactly once either way.

Memory: the recordings share one pool, so the step's temporaries (a few hundred MB at the recipe's
batch) are held once, not once per shape. Replays come in any order, which is safe here because
every tensor read outside a replay lives outside the pool (the static inputs, the weights, Adam's
state: made before any recording) or is read right after its own replay (the loss, cloned at once);
the gradients are written and read within each replay.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .backends import BackendUnavailable, training_parts, with_backend
from .graph import AtomsGraph, pad_edges

MAX_GRAPHS = 8      # recordings kept; water64 batches of 8 frames need 2-4 (edge buckets, the last batch)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate to ``lr``: in place where it is a tensor (a recorded step reads
    that tensor, so it must not be replaced)."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_optimizer(params: list, lr: float, *, capturable: bool) -> torch.optim.Adam:
    """Adam over ``params``; ``capturable``: its step counts and rate on the parameters' device, so
    that a CUDA graph can record it (the rate a float32 tensor, as Adam keeps its step counts: the
    bias corrections are divided by it)."""
    if not capturable:
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=_rate(lr, params[0].device), capturable=True)


def _rate(lr: float, device) -> torch.Tensor:
    return torch.tensor(lr, dtype=torch.float32, device=device)


def conform_optimizer(opt: torch.optim.Adam, *, capturable: bool) -> None:
    """After ``load_state_dict``: the saved groups replace this optimiser's settings, so a state
    saved by an eager training and resumed graphed (or the other way round) is brought to this
    optimiser's form: ``capturable``, the rate a device tensor or a float, the step counts on the
    device (float32, as torch keeps them) or on the host."""
    for group in opt.param_groups:
        p = group["params"][0]
        lr = float(group["lr"])
        group["capturable"] = capturable
        group["lr"] = _rate(lr, p.device) if capturable else lr
        for q in group["params"]:
            state = opt.state.get(q)
            if state and "step" in state:
                step = state["step"]
                state["step"] = (step.to(device=q.device, dtype=torch.float32) if capturable
                                 else step.detach().cpu().to(torch.float32))


@dataclass
class _Recording:
    inputs: AtomsGraph                        # the static tensors each batch of this shape is copied into
    graph: "torch.cuda.CUDAGraph | None"      # None where nothing is recorded (``record=False``)
    loss: torch.Tensor | None                 # the recorded step's loss (static output)


def _copy_into(static: AtomsGraph, batch: AtomsGraph) -> None:
    for f in dataclasses.fields(AtomsGraph):
        v = getattr(static, f.name)
        if isinstance(v, torch.Tensor):
            v.copy_(getattr(batch, f.name))


def _shape_key(g: AtomsGraph) -> tuple:
    targets = tuple(getattr(g, name) is not None for name in ("energy", "forces", "stress"))
    return g.n_atoms, g.n_graphs, g.n_edges, g.max_neighbors, targets


class TrainStep:
    """``step(batch) -> loss`` (detached, on the device): one optimisation step of ``pot`` (its
    weights updated in place) under ``backend`` (``bench.backends.TRAINING_BACKENDS``).

    ``energy_weight``: w_E, set per epoch (``set_energy_weight``); ``opt``: the Adam optimiser (its
    state is the training's, saved in checkpoints). ``record`` (default: where ``backend`` replays CUDA
    graphs): record and replay; ``record=False`` with a ``-cudagraphs`` backend runs the same padded,
    static-input step eagerly (what tests check the recording against, and on a CPU the plain eager
    step). ``capturable`` (default: ``record``): Adam's device-side form. ``eager_steps`` counts the
    steps a graphed backend ran eagerly (past ``max_graphs`` shapes, or elements unknown on the host),
    ``replays`` those run over an existing shape's tensors."""

    def __init__(self, pot, *, lr: float, force_weight: float, clip_norm: float, backend: str = "eager",
                 record: bool | None = None, capturable: bool | None = None, max_graphs: int = MAX_GRAPHS):
        descriptor_backend, self.graphed = training_parts(backend)
        self.backend, self.descriptor_backend = backend, descriptor_backend
        self.stepper = with_backend(pot, descriptor_backend)   # the same modules and tensors as pot
        self.params = list(pot.parameters())
        device = self.params[0].device
        self.record = (self.graphed and device.type == "cuda") if record is None else bool(record)
        if self.record and (not self.graphed or device.type != "cuda"):
            raise ValueError(f"recording CUDA graphs needs a '-cudagraphs' training backend on CUDA "
                             f"(backend {backend!r}, device {device})")
        self.capturable = self.record if capturable is None else bool(capturable)
        if self.record and not self.capturable:
            raise ValueError("a recorded step needs a capturable optimiser")
        self.opt = make_optimizer(self.params, lr, capturable=self.capturable)
        self.force_weight, self.clip_norm, self.max_graphs = float(force_weight), float(clip_norm), int(max_graphs)
        # w_E: a device tensor where a recording reads it, filled in place each epoch
        self._w_e = torch.zeros((), dtype=self.params[0].dtype, device=device) if self.graphed else 0.0
        self._recordings: dict[tuple, _Recording] = {}
        self._pool = None                                         # the recordings' shared memory pool
        self.eager_steps = 0                                      # steps a graphed backend ran eagerly
        self.replays = 0                                          # steps replayed over a shape's tensors

    def set_energy_weight(self, w: float) -> None:
        if isinstance(self._w_e, torch.Tensor):
            self._w_e.fill_(w)
        else:
            self._w_e = float(w)

    @property
    def n_recordings(self) -> int:
        return len(self._recordings)

    def _step(self, batch: AtomsGraph) -> torch.Tensor:
        """The step itself, [] loss: what is run eagerly or recorded."""
        from .train import loss_terms

        self.opt.zero_grad(set_to_none=True)
        e, f = loss_terms(self.stepper, batch, training=True)
        loss = self._w_e * e + self.force_weight * f
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()
        return loss.detach()

    def __call__(self, batch: AtomsGraph) -> torch.Tensor:
        if not self.graphed:
            return self._step(batch)
        padded = pad_edges(batch)                                 # exact zeros: the same step
        key = _shape_key(padded)
        rec = self._recordings.get(key)
        if rec is None:
            if len(self._recordings) >= self.max_graphs or padded.elements is None:
                self.eager_steps += 1
                return self._step(padded)
            return self._new_recording(key, padded)
        if padded.elements is None or not padded.elements <= rec.inputs.elements:
            self.eager_steps += 1                                 # the eager call checks the elements
            return self._step(padded)
        _copy_into(rec.inputs, padded)
        self.replays += 1
        if rec.graph is None:
            return self._step(rec.inputs)
        rec.graph.replay()
        return rec.loss.clone()                                   # the next replay overwrites it

    def _new_recording(self, key: tuple, padded: AtomsGraph) -> torch.Tensor:
        """This batch's step, run eagerly (on a side stream where a recording follows), then recorded."""
        static = dataclasses.replace(padded, **{f.name: getattr(padded, f.name).clone()
                                                for f in dataclasses.fields(AtomsGraph)
                                                if isinstance(getattr(padded, f.name), torch.Tensor)})
        if not self.record:
            self._recordings[key] = _Recording(static, None, None)
            return self._step(static)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = self._step(static)                             # the real step of this batch
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)                      # gradients allocated in the recording
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._step(static)                          # recorded, not run
        except Exception as err:    # an operation CUDA graphs cannot record: say so, and what to pass instead
            first = (str(err).splitlines() or [""])[0][:200]
            raise BackendUnavailable(f"training backend {self.backend!r}: recording the step as a CUDA graph failed "
                                     f"({type(err).__name__}: {first}); train with --train-backend "
                                     f"{self.descriptor_backend}") from err
        self._recordings[key] = _Recording(static, graph, out)
        return loss
