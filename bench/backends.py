"""Execution backends: the same potential, the same weights, another way of running the descriptor.

    eager              PyTorch eager mode (the reference every other backend is tested against)
    compile            ``torch.compile(descriptor, fullgraph=True)`` with Inductor; AOTAutograd
                       compiles the backward too, so energy + forces runs compiled (the readout
                       MLP and the autograd call stay eager). Shapes: static on the first call, and
                       after a call with other atom / edge / neighbour counts one dynamic-shape
                       graph serves every size (``dynamic=None``, PyTorch's automatic dynamic).
    compile-cudagraphs the same with ``mode="reduce-overhead"``: CUDA graphs replay the kernels of
                       a fixed-size call (MD at a fixed neighbour-list size); CUDA only.

Both descriptors get exactly the same backend code (the fairness rule: an optimisation offered to
one side is offered to the other). What a backend cannot do is an error, raised at the first call
and recorded by the timing task, never hidden: AOTAutograd has no double backward, so a compiled
potential cannot take a force-loss training step (``training=True``); training runs eager.

``with_backend`` returns a new ``Potential`` object that shares the parameter and buffer tensors
of the original (a drop-in swap: no copy, no state-dict change); the original keeps running eager.
"""

from __future__ import annotations

import copy

import torch

BACKENDS = ("eager", "compile", "compile-cudagraphs")
DEFAULT_CPU = "eager"       # Inductor's CPU code was slower than eager on 2 threads (README, "Backends")
DEFAULT_CUDA = "compile"
RECOMPILE_LIMIT = 64        # compiled graphs per code object (see _CompiledDescriptor.__call__)


class BackendUnavailable(RuntimeError):
    """The backend cannot run this call here (a device or a derivative it does not support)."""


def default_backend(device) -> str:
    return DEFAULT_CUDA if torch.device(device).type == "cuda" else DEFAULT_CPU


def timed_backends(device) -> tuple:
    """The backends a timing run or profile covers by default: every one on CUDA; eager on CPU
    (Inductor's CPU code was slower for energy + forces, and compiling every point costs minutes)."""
    return BACKENDS if torch.device(device).type == "cuda" else ("eager",)


def check_backend(backend: str, device) -> None:
    """Raise ``BackendUnavailable`` (one line, naming what to pass instead) where ``backend`` cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "compile-cudagraphs" and torch.device(device).type != "cuda":
        raise BackendUnavailable(f"backend {backend!r} needs CUDA (device is {torch.device(device)}); "
                                 "pass --backend compile or eager")


class _CompiledDescriptor:
    """Callable running ``descriptor`` through ``torch.compile``; not an nn.Module, so the
    potential's modules, parameters and state dict stay those of the original."""

    def __init__(self, descriptor, mode: str | None):
        self.descriptor = descriptor
        self.mode = mode
        self._fn = torch.compile(descriptor, fullgraph=True, dynamic=None, mode=mode)

    def __call__(self, graph, *, double_backward: bool = False):
        if double_backward:
            raise BackendUnavailable("a compiled descriptor has no double backward (torch.compile's AOTAutograd), "
                                     "so it cannot take a force-loss training step; train with backend 'eager'")
        # Both descriptors share one ``forward`` code object, and dynamo's recompile limit (8) counts
        # the compiled graphs of every instance, backend and size on it together: an atoms sweep of
        # both descriptors and two compiled backends hit it on an H200 (4 entries, 4 dynamic-shape
        # recompiles, then 64-bit indexing past 2**31 elements). RECOMPILE_LIMIT leaves room for
        # that; past it an error, never a silent fall-back to eager timed as "compile".
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT):
            return self._fn(graph)


def with_backend(potential, backend: str):
    """``potential`` running its descriptor through ``backend`` (see the module docstring)."""
    check_backend(backend, potential.scale.device)
    if backend == "eager":
        return potential
    new = copy.copy(potential)                      # a new object over the same modules and tensors
    mode = "reduce-overhead" if backend == "compile-cudagraphs" else None
    object.__setattr__(new, "_descriptor_runner", _CompiledDescriptor(potential.descriptor, mode))
    object.__setattr__(new, "backend", backend)
    return new
