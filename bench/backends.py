"""Execution backends: the same potential, the same weights, another way of running the descriptor.

Two independent choices, named together:

    neighbour sums  dense (batched matrix products over an [atoms, max_neighbours] layout,
                    ``bench/nn/neighbor_sum.py``) or fused (one Triton kernel per sum, forward and
                    backward, that never writes the per-edge tensors, ``bench/nn/neighbor_sum_triton.py``)
    runner          eager PyTorch, ``torch.compile`` (Inductor; AOTAutograd compiles the backward
                    too, so energy + forces runs compiled), or compile with CUDA graphs
                    (``mode="reduce-overhead"``: replays the kernels of a fixed-size call)

    eager                     dense, eager (the reference every other backend is tested against)
    compile                   dense, torch.compile(descriptor, fullgraph=True)
    compile-cudagraphs        dense, compile + CUDA graphs (CUDA only)
    fused                     fused, eager
    compile-fused             fused, torch.compile (the kernels are custom operators it compiles around)
    compile-fused-cudagraphs  fused, compile + CUDA graphs (CUDA only)
    eager-cudagraphs          dense, eager, each whole energy + forces call recorded as a CUDA graph per
                              padded shape and replayed (``bench.cuda_graphs``; no compiler: CUDA only)
    fused-cudagraphs          fused, the same

Shapes under compile: static on the first call, and after a call with other atom / edge /
neighbour counts one dynamic-shape graph serves every size (``dynamic=None``, PyTorch's automatic
dynamic). A force-loss training step is compiled dynamic from its first call (``dynamic=True``):
a training's batches differ in size, so the static graph would serve one batch shape and cost a
second compilation (70 s on 2 CPU threads) at the next. The fused kernels run on CUDA, and on the
CPU only inside Triton's interpreter (tests).

Both descriptors get exactly the same backend code (the fairness rule: an optimisation offered to
one side is offered to the other); the fused kernel takes either angular basis as its input. What a
backend cannot do is an error, raised at the first call and recorded by the timing task, never
hidden. A force-loss training step (``training=True``) needs a second derivative: eager and fused
take it (the fused kernels' backward is itself differentiable: ``neighbor_sum_triton``,
``contraction_triton``); ``compile`` takes it by compiling the energies and the forces together,
``torch.autograd.grad`` included (dynamo's ``trace_autograd_ops``), with the descriptor's plain
form (``AtomicClusterExpansion.forward(plain=True)``), so that the weights' gradient of a force
loss is AOTAutograd's own first derivative of that graph (NequIP's way of compiling a model whose
forces come from autograd); the other compiled backends cannot (AOTAutograd differentiates a
compiled descriptor once). Training has its own CUDA-graph backends, ``eager-cudagraphs`` and
``fused-cudagraphs``, that record the whole step, optimiser included (``TRAINING_BACKENDS``,
``bench.train_step``).

``with_backend`` returns a new ``Potential`` object that shares the parameter and buffer tensors
of the original (a drop-in swap: no copy, no state-dict change); the original keeps running eager.
"""

from __future__ import annotations

import copy

import torch

from .errors import InputError
from .versions import COMPILE_MIN_TORCH, dotted, major_minor

BACKENDS = ("eager", "compile", "compile-cudagraphs", "fused", "compile-fused", "compile-fused-cudagraphs",
            "eager-cudagraphs", "fused-cudagraphs")
RECORDED = ("eager-cudagraphs", "fused-cudagraphs")   # whole calls recorded as CUDA graphs, no compiler
DEFAULT_CPU = "eager"       # compile is faster there once compiled, but costs ~30 s a size to compile (README, "Backends")
DEFAULT_CUDA = "compile"
RECOMPILE_LIMIT = 64        # compiled graphs per code object (see _DescriptorRunner.__call__)
# Inductor's options for the compiled backends (CPU code only: Triton's code for CUDA reads none).
# Tail vectorisation off: with it, a loop shorter than one vector (the 6 radial channels of the water
# preset against 16 float lanes of AVX-512) is vectorised as one masked step, and Inductor (torch
# 2.13, ``LoopNest.max_parallel_depth``) counts such a loop as FloorDiv(6, 16) = 0 steps, so it moves
# the parallel loop into the reduction below it: the outer product's backward, a sum over 20 angular
# components for each of 14,784 neighbour slots at 192 atoms, opened one OpenMP parallel region per
# slot (32 ms of 51 ms a call). Off, such loops run scalar and the slots' loop is the parallel one.
INDUCTOR_OPTIONS = {"cpp.enable_loop_tail_vec": False}


def compile_unavailable() -> str | None:
    """Why this torch cannot run the compiled backends (None where it can), in one line."""
    if major_minor(torch.__version__) >= COMPILE_MIN_TORCH:
        return None
    return f"torch.compile of this model needs torch {dotted(COMPILE_MIN_TORCH)} or later (this is torch {torch.__version__})"


class BackendUnavailable(RuntimeError):
    """The backend cannot run this call here (a device or a derivative it does not support)."""


def default_backend(device) -> str:
    """The backend a call runs through unless told: compile on CUDA (eager where this torch cannot
    compile the model), eager on the CPU."""
    cuda = torch.device(device).type == "cuda"
    return DEFAULT_CUDA if cuda and compile_unavailable() is None else DEFAULT_CPU


def timed_backends(device) -> tuple:
    """The backends a timing run or profile covers by default: every one on CUDA; eager on CPU
    (Inductor's CPU code was slower for energy + forces, and compiling every point costs minutes)."""
    return BACKENDS if torch.device(device).type == "cuda" else ("eager",)


def without_cudagraphs(backend: str) -> str:
    """``backend`` less its "-cudagraphs" suffix: what runs the same calls without CUDA graphs."""
    return backend[: -len("-cudagraphs")] if backend.endswith("-cudagraphs") else backend


def _parts(backend: str) -> tuple[str, str | None]:
    """(neighbour sum "dense" | "triton", compile mode None (eager) | "default" | "reduce-overhead")."""
    neighbor_sum = "triton" if "fused" in backend else "dense"
    if backend in ("eager", "fused", *RECORDED):
        return neighbor_sum, None
    return neighbor_sum, ("reduce-overhead" if backend.endswith("cudagraphs") else "default")


def replays_fixed_shapes(backend: str) -> bool:
    """Whether ``backend`` replays recorded CUDA graphs, each for one input shape: a caller whose
    edge count changes call to call (MD, at every neighbour-list rebuild) pads its graphs to bucketed
    sizes for it (``bench.graph.pad_edges``), so that a few recordings serve the whole run."""
    return _parts(backend)[1] == "reduce-overhead" or backend in RECORDED


def check_device(device, label: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` where this machine has it; else an ``InputError`` (one line,
    naming what to pass): a name torch does not know, a type other than cpu and cuda, or a CUDA
    device the machine lacks (torch's own errors say none of that, and come later)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"{label} {device}: not a device name; pass cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"{label} {device}: cace-bench runs on cpu or cuda; pass one of them")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"{label} {device}: no CUDA device here (torch {torch.__version__}"
                             f"{'' if torch.version.cuda else ', built without CUDA'}): pass {label} cpu, or leave "
                             f"{label} out to use a GPU only where one is present")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"{label} {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return dev


def check_backend(backend: str, device) -> None:
    """Raise ``BackendUnavailable`` (one line, naming what to pass instead) where ``backend`` cannot run."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    device = check_device(device)
    if backend.endswith("cudagraphs") and device.type != "cuda":
        raise BackendUnavailable(f"backend {backend!r} needs CUDA (device is {device}); "
                                 f"pass --backend {without_cudagraphs(backend)} or eager")
    if _parts(backend)[1] is not None and (why := compile_unavailable()):
        raise BackendUnavailable(f"backend {backend!r}: {why}; pass --backend eager or fused")
    if "fused" in backend:
        from .nn.neighbor_sum_triton import check_device as check_kernel_device

        try:
            check_kernel_device(device)
        except RuntimeError as err:
            raise BackendUnavailable(f"backend {backend!r}: {err}") from None


TRAINING_BACKENDS = ("eager", "fused", "eager-cudagraphs", "fused-cudagraphs", "compile")
# eager and fused have a double backward (a force-loss training step); "-cudagraphs": the same
# descriptor, and the whole step recorded and replayed as CUDA graphs (``bench.train_step``);
# compile: energies and forces compiled together (``_DescriptorRunner.training_forces``)


def training_parts(backend: str) -> tuple[str, bool]:
    """(descriptor backend "eager" | "fused" | "compile", whether the step replays CUDA graphs) of a
    training backend (``TRAINING_BACKENDS``)."""
    return without_cudagraphs(backend), backend.endswith("-cudagraphs")


def check_training_backend(backend: str, device) -> None:
    """Raise (one line, naming what to pass instead) where ``backend`` cannot train on ``device``:
    checked before a training task starts, not at its first step."""
    if backend not in TRAINING_BACKENDS:
        raise InputError(f"training backend {backend!r}: only {', '.join(TRAINING_BACKENDS)} can take a "
                         "force-loss training step (the other compiled backends have no double backward); pass one of those")
    dev = check_device(device)
    descriptor_backend, graphed = training_parts(backend)
    if graphed and dev.type != "cuda":
        raise InputError(f"training backend {backend!r} records CUDA graphs and needs CUDA (device is "
                         f"{dev}); pass --train-backend {descriptor_backend}")
    try:
        check_backend(descriptor_backend, device)
    except BackendUnavailable as err:          # the user's choice, not our bug: an input error
        raise InputError(f"training {err}") from None


class _DescriptorRunner:
    """Callable running ``descriptor`` with its neighbour sums ``neighbor_sum``, eager or through
    ``torch.compile``; not an nn.Module, so the potential's modules, parameters and state dict stay
    those of the original."""

    def __init__(self, descriptor, neighbor_sum: str, mode: str | None, dynamic: bool | None = None):
        self.descriptor = descriptor
        self.neighbor_sum = neighbor_sum
        self.mode = mode
        if mode is None:
            self._fn = descriptor
        else:                                     # mode "default": Inductor's options (as that mode's, plus the CPU's)
            how = {"options": INDUCTOR_OPTIONS} if mode == "default" else {"mode": mode}
            self._fn = torch.compile(descriptor, fullgraph=True, dynamic=dynamic, **how)
        self._training_fn = None

    @property
    def trains_compiled(self) -> bool:
        """Whether a force-loss training step runs compiled whole (``training_forces``)."""
        return self.mode == "default" and self.neighbor_sum == "dense"

    def training_forces(self, potential, graph):
        """(E_i [N], F [N, 3]) of ``graph`` (positions requiring grad) with the graph of F kept for a
        force loss: ``_atomic_energies_and_forces`` compiled whole, autograd.grad included, with
        dynamic shapes from the first call (a training's batches differ in size)."""
        if self._training_fn is None:
            self._training_fn = torch.compile(_atomic_energies_and_forces, fullgraph=True, dynamic=True,
                                              options=INDUCTOR_OPTIONS)
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT,
                                        trace_autograd_ops=True):
            return self._training_fn(potential, graph)

    def __call__(self, graph, *, double_backward: bool = False):
        if double_backward and self.mode is not None:
            raise BackendUnavailable("this backend has no double backward (torch.compile's AOTAutograd differentiates "
                                     "a compiled descriptor once), so it cannot take a force-loss training step; "
                                     "train with backend 'eager', 'fused' or 'compile' (forces only)")
        if self.mode is None:
            return self._fn(graph, neighbor_sum=self.neighbor_sum)
        # Both descriptors share one ``forward`` code object, and dynamo's recompile limit (8) counts
        # the compiled graphs of every instance, backend and size on it together: an atoms sweep of
        # both descriptors and two compiled backends hit it on an H200 (4 entries, 4 dynamic-shape
        # recompiles, then 64-bit indexing past 2**31 elements). RECOMPILE_LIMIT leaves room for
        # that; past it an error, never a silent fall-back to eager timed as "compile".
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT):
            return self._fn(graph, neighbor_sum=self.neighbor_sum)


def _atomic_energies_and_forces(potential, graph):
    """E_i [N] and F = -dE/dx [N, 3] (E = sum_i E_i), the graph of F kept (create_graph) so that a
    force loss can be differentiated with respect to the weights: traced whole by torch.compile
    (``_DescriptorRunner.training_forces``), the descriptor in its plain form."""
    e_atom = potential.atomic_energies(graph, plain=True)                       # [N]
    (grad,) = torch.autograd.grad(e_atom.sum(), [graph.positions], create_graph=True)
    return e_atom, -grad


def with_backend(potential, backend: str, *, dynamic: bool | None = None):
    """``potential`` running its descriptor through ``backend`` (see the module docstring).
    ``dynamic`` (compiled backends): None, a static graph first and a dynamic-shape one after a
    change of size (PyTorch's automatic dynamic: right for MD and timing, whose sizes hold); True,
    dynamic shapes from the first call (a training's validation, whose batches all differ: one
    compile instead of three)."""
    check_backend(backend, potential.scale.device)
    plain = getattr(potential, "_descriptor_runner", None) is None and getattr(potential, "_call_graphs", None) is None
    if backend == "eager" and plain:
        return potential
    new = copy.copy(potential)                      # a new object over the same modules and tensors
    neighbor_sum, mode = _parts(backend)
    runner = None if backend == "eager" else _DescriptorRunner(potential.descriptor, neighbor_sum, mode, dynamic)
    object.__setattr__(new, "_descriptor_runner", runner)
    object.__setattr__(new, "_call_graphs", None)   # a copy of a recording potential records nothing of its
    object.__setattr__(new, "backend", backend)
    if backend in RECORDED:
        return recorded_calls(new, record=True)
    return new


def recorded_calls(potential, *, record: bool):
    """``potential`` (a copy: the same modules and tensors) whose energy + forces (and stress) calls
    go through ``bench.cuda_graphs.ShapeGraphs``: recorded per padded shape and replayed where
    ``record`` (CUDA), or the same padded, static-input path run eagerly (tests on a CPU). Its
    ``features`` are its descriptor backend's, unrecorded; a force-loss training step is refused
    (the training backends of the same names record the whole step, ``bench.train_step``)."""
    from .cuda_graphs import ShapeGraphs

    new = copy.copy(potential)
    base = without_cudagraphs(getattr(potential, "backend", "eager"))

    def call(graph, forces, stress):
        return new._forward(graph, forces=forces, stress=stress, training=False)

    def weights():
        return tuple(t.data_ptr() for t in (*new.parameters(), *new.buffers()))

    graphs = ShapeGraphs(call, record=record, name=f"backend {new.backend!r}", instead=f"--backend {base}",
                         max_graphs=16, watched=weights)
    object.__setattr__(new, "_call_graphs", graphs)
    return new
