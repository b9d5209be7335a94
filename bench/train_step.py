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

Shapes and replays are ``bench.cuda_graphs.ShapeGraphs``'s: each batch's edges padded to
bucketed counts (exact zeros), one recording per (atoms, graphs, edges, neighbour slots), the
eager fall-backs, the shared memory pool. What recording a training step needs besides is what
PyTorch's whole-network capture needs:
- no host read in the step (there is none: ``tests/test_host_syncs.py``);
- Adam with ``capturable=True`` (its step counts and learning rate on the device, the rate a tensor
  that the schedules fill in place), and the energy weight a device tensor filled each epoch;
- gradients allocated inside the recording (the step sets them to None first);
- one eager step first (Adam's state, cuBLAS handles, Triton's compiled kernels). That first step
  of a shape is a real step of the training on its batch, so every batch is trained on exactly
  once either way. The gradients are written and read within each replay.
"""

from __future__ import annotations

import torch

from .backends import training_parts, with_backend
from .cuda_graphs import ShapeGraphs
from .graph import AtomsGraph
from . import train                 # its loss_terms, read at each step (train imports this module only inside train())

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
    device (float32, as torch keeps them there) or on the host (in their dtype)."""
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
                                 else step.detach().cpu())


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
        self.force_weight, self.clip_norm = float(force_weight), float(clip_norm)
        # w_E: a device tensor where a recording reads it, filled in place each epoch
        self._w_e = torch.zeros((), dtype=self.params[0].dtype, device=device) if self.graphed else 0.0
        # the rate tensors a recording reads (capturable): kept in the groups by ``_keep_rates``
        self._rates = [g["lr"] for g in self.opt.param_groups]
        self._graphs = ShapeGraphs(self._step, record=self.record, max_graphs=max_graphs,
                                   name=f"training backend {backend!r}", instead=f"--train-backend {descriptor_backend}",
                                   watched=self._watched)

    def _watched(self) -> tuple:
        """The addresses a recording reads besides its inputs: the weights and the rate tensors (a
        new one, as after loading a checkpoint, drops the recordings)."""
        return (tuple(p.data_ptr() for p in self.params)
                + tuple(r.data_ptr() for r in self._rates if isinstance(r, torch.Tensor)))

    def _keep_rates(self) -> None:
        """Each group's rate stays a tensor where the optimiser is capturable: a schedule that assigns
        a float in its place (``ReduceLROnPlateau`` in older torch releases; torch>=2.5 is allowed)
        would leave a recorded step reading the old tensor, its rate never changed, so the float is
        written into that tensor and the tensor put back. A new tensor is adopted (and, through
        ``_watched``, drops the recordings)."""
        for i, group in enumerate(self.opt.param_groups):
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):
                self._rates[i] = lr
            elif isinstance(self._rates[i], torch.Tensor):
                self._rates[i].fill_(float(lr))
                group["lr"] = self._rates[i]

    def set_energy_weight(self, w: float) -> None:
        if isinstance(self._w_e, torch.Tensor):
            self._w_e.fill_(w)
        else:
            self._w_e = float(w)

    @property
    def n_recordings(self) -> int:
        return self._graphs.n_recordings

    @property
    def replays(self) -> int:
        return self._graphs.replays

    @property
    def eager_steps(self) -> int:
        return self._graphs.eager_calls

    def _step(self, batch: AtomsGraph) -> torch.Tensor:
        """The step itself, [] loss: what is run eagerly or recorded."""
        self.opt.zero_grad(set_to_none=True)
        e, f = train.loss_terms(self.stepper, batch, training=True)
        loss = self._w_e * e + self.force_weight * f
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        self.opt.step()
        return loss.detach()

    def __call__(self, batch: AtomsGraph) -> torch.Tensor:
        if self.capturable:
            self._keep_rates()
        return self._graphs(batch) if self.graphed else self._step(batch)
