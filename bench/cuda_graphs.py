"""A function of an ``AtomsGraph`` recorded as CUDA graphs, one per padded input shape, and replayed.

``ShapeGraphs(fn, ...)(graph, *mode)`` runs ``fn(padded, *mode)``, where ``padded`` is ``graph``
with its edges padded to bucketed counts (``bench.graph.pad_edges``: a padding edge adds exact
zeros to energies, forces, stress and every gradient). On CUDA the first call of each (shape, mode)
runs ``fn`` eagerly on a side stream (its result is returned: cuBLAS handles, Triton's compiled
kernels and any lazily made state are in place after it) and then records ``fn`` on copies of the
inputs; every later call of that shape copies its inputs into those tensors and replays, one launch
instead of hundreds. Used for the training step (``bench.train_step``: loss, double backward,
clipping, Adam) and for energy + forces calls (``bench.backends``: ``eager-cudagraphs``,
``fused-cudagraphs``).

A shape is (atoms, graphs, edges, neighbour slots, which targets the graph carries) plus ``mode``.
``fn`` runs eagerly, with the same arithmetic, past ``max_graphs`` shapes, and for a graph whose
elements are unknown on the host or not among those its recording checked (a replay runs no element
check). A recording reads the tensors it was recorded with: where ``watched()`` (the addresses of
the weights a recording reads) changes, as after ``.to(dtype)``, every recording is dropped and made
again. ``record=False`` runs the same padded, static-input path without recording (what tests
check a recording against, and on a CPU the plain call).

Memory: the recordings share one pool, so their temporaries are held once, not once per shape.
Replays come in any order, which is safe because every tensor read outside a replay lives outside
the pool (the static inputs, the weights, an optimiser's state: all made before any recording) or
is read right after its own replay (the outputs, cloned at once).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .backends import BackendUnavailable      # backends imports this module only inside recorded_calls
from .graph import AtomsGraph, pad_edges

MAX_GRAPHS = 8


@dataclass
class _Recording:
    inputs: AtomsGraph                        # the static tensors each graph of this shape is copied into
    graph: "torch.cuda.CUDAGraph | None"      # None where nothing is recorded (record=False)
    output: object = None                     # the recorded call's outputs (static: cloned after replay)


def _copy_into(static: AtomsGraph, graph: AtomsGraph) -> None:
    for f in dataclasses.fields(AtomsGraph):
        v = getattr(static, f.name)
        if isinstance(v, torch.Tensor):
            v.copy_(getattr(graph, f.name))


def _static_copy(graph: AtomsGraph) -> AtomsGraph:
    return dataclasses.replace(graph, **{f.name: getattr(graph, f.name).clone() for f in dataclasses.fields(AtomsGraph)
                                         if isinstance(getattr(graph, f.name), torch.Tensor)})


def shape_key(g: AtomsGraph) -> tuple:
    targets = tuple(getattr(g, name) is not None for name in ("energy", "forces", "stress"))
    return g.n_atoms, g.n_graphs, g.n_edges, g.max_neighbors, g.dtype, targets


def _cloned(out):
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, dict):
        return {k: _cloned(v) for k, v in out.items()}
    return out


class ShapeGraphs:
    """``fn(graph, *mode)`` recorded per padded shape and replayed (see the module docstring).

    ``name`` and ``instead`` make a failed recording's one-line error: what failed and what to pass
    instead. Counters: ``n_recordings``, ``replays`` (calls over a shape's tensors), ``eager_calls``
    (past ``max_graphs`` shapes, or elements unknown on the host)."""

    def __init__(self, fn: Callable, *, record: bool, name: str, instead: str, max_graphs: int = MAX_GRAPHS,
                 watched: Callable[[], tuple] | None = None):
        self.fn, self.record, self.name, self.instead = fn, bool(record), name, instead
        self.max_graphs = int(max_graphs)
        self.watched = watched or (lambda: ())
        self._recordings: dict[tuple, _Recording] = {}
        self._watch = None
        self._pool = None
        self.replays = 0
        self.eager_calls = 0

    @property
    def n_recordings(self) -> int:
        return len(self._recordings)

    def __call__(self, graph: AtomsGraph, *mode):
        padded = pad_edges(graph)                      # exact zeros; a no-op on a graph padded to its buckets
        watch = self.watched()
        if watch != self._watch:                       # new weight tensors: recordings read the old ones
            self._recordings.clear()
            self._watch = watch
        key = (*shape_key(padded), *mode)
        rec = self._recordings.get(key)
        if rec is None:
            if len(self._recordings) >= self.max_graphs or padded.elements is None:
                self.eager_calls += 1
                return self.fn(padded, *mode)
            return self._new_recording(key, padded, mode)
        if padded.elements is None or not padded.elements <= rec.inputs.elements:
            self.eager_calls += 1                      # the eager call checks the elements
            return self.fn(padded, *mode)
        _copy_into(rec.inputs, padded)
        self.replays += 1
        if rec.graph is None:
            return self.fn(rec.inputs, *mode)
        rec.graph.replay()
        return _cloned(rec.output)                     # the next replay overwrites the outputs

    def _new_recording(self, key: tuple, padded: AtomsGraph, mode: tuple):
        """This call run eagerly (on a side stream where a recording follows), then recorded."""
        static = _static_copy(padded)
        if not self.record:
            self._recordings[key] = _Recording(static, None)
            return self.fn(static, *mode)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            result = self.fn(static, *mode)            # a real call: for a training step, its batch's step
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                output = self.fn(static, *mode)        # recorded, not run
        except Exception as err:    # an operation CUDA graphs cannot record: say so, and what to pass instead
            first = (str(err).splitlines() or [""])[0][:200]
            raise BackendUnavailable(f"{self.name}: recording as a CUDA graph failed ({type(err).__name__}: "
                                     f"{first}); pass {self.instead}") from err
        self._recordings[key] = _Recording(static, graph, output)
        return result
