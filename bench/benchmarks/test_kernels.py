"""The kernel-timing grid as pytest-benchmark tests (not part of the default test run).

    pytest bench/benchmarks --benchmark-only                       # run the grid
    pytest bench/benchmarks --benchmark-only --benchmark-autosave  # keep a run in .benchmarks/
    pytest bench/benchmarks --benchmark-only --benchmark-compare --benchmark-compare-fail=median:25%

Grid: both descriptors x three modes (descriptor only, energy+forces, training step) x l_max 2-4 on
the 192-atom water box (water preset, float32); energy+forces at 1536 atoms, in float64, and on
CUDA when present; the neighbour list alone. Every test records ``extra_info`` (atoms, edges,
l_max, nu, dtype, device, descriptor, mode, cost-model FLOPs). Absolute times from one machine;
across machines compare the ratio spherical/CACE (``cace-bench timing``) instead.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from bench.costmodel import potential_stages, totals
from bench.kinds import COMPARED
from bench.tasks.timing import mode_call, setup

KINDS = COMPARED
MODES = ("descriptor", "energy_forces", "training_step")


@lru_cache(maxsize=8)
def _case(kind: str, l_max: int, repeat: int, dtype: str, device: str):
    return setup(kind, preset="water", overrides={"l_max": l_max}, repeat=repeat, dtype=dtype, device=device)


def _bench(benchmark, kind, mode, *, l_max=3, repeat=1, dtype="float32", device="cpu"):
    pot, graph = _case(kind, l_max, repeat, dtype, device)
    call = mode_call(pot, graph, mode)
    if device.startswith("cuda"):
        inner = call

        def call():
            out = inner()
            torch.cuda.synchronize()
            return out

    stages = potential_stages(pot, graph, kind)
    cost = totals(stages if mode != "descriptor" else stages[:-1], mode)
    benchmark.extra_info.update({"descriptor": kind, "mode": mode, "atoms": graph.n_atoms, "edges": graph.n_edges,
                                 "l_max": l_max, "nu": pot.descriptor.config()["nu_max"], "dtype": dtype,
                                 "device": device, "n_features": pot.descriptor.n_features, "flops": cost["flops"]})
    benchmark.group = f"{mode} {dtype} {device} {graph.n_atoms} atoms"
    benchmark.pedantic(call, rounds=10, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("l_max", [2, 3, 4], ids=lambda v: f"lmax{v}")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_potential(benchmark, kind, mode, l_max):
    _bench(benchmark, kind, mode, l_max=l_max)


@pytest.mark.parametrize("kind", KINDS)
def test_energy_forces_1536_atoms(benchmark, kind):
    _bench(benchmark, kind, "energy_forces", repeat=2)


@pytest.mark.parametrize("kind", KINDS)
def test_energy_forces_float64(benchmark, kind):
    _bench(benchmark, kind, "energy_forces", dtype="float64")


@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS)
def test_energy_forces_cuda(benchmark, kind):
    _bench(benchmark, kind, "energy_forces", repeat=2, device="cuda")


def test_neighbor_list(benchmark):
    from bench.graph import AtomsGraph
    from bench.structures import water_box

    atoms = water_box()
    benchmark.extra_info.update({"descriptor": "vesin", "mode": "neighbor_list", "atoms": len(atoms), "dtype": "float32",
                                 "device": "cpu"})
    graph = benchmark.pedantic(lambda: AtomsGraph.from_atoms(atoms, 5.5, dtype=torch.float32), rounds=10,
                               warmup_rounds=2, iterations=1)
    benchmark.extra_info["edges"] = graph.n_edges
