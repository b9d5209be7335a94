"""Time per MD step of the batched engine on one large water box: issue #13's "24,000 water atoms"
figure, neighbour lists included, both descriptors side by side, for each backend.

    python -m bench.benchmarks.md_step [--device cuda] [--repeat 5] [--backend eager fused compile-fused]
                                       [--steps 20] [--repeats 5] [--warmup-steps 40] [--out FILE.json]

The system is ``water_box().repeat(REPEAT)`` (192 REPEAT^3 atoms: 24,000 at 5), one replica, the water
preset with seeded untrained weights (the same for every backend), its output scaled by ``--scale``
(default 0: the forces are computed in full and multiplied by zero, so that an untrained potential,
whose forces heat a box to millions of kelvin within 100 steps, cannot blow the box apart; the atoms
then move as free particles under the thermostat, which rebuilds the neighbour list more often than
liquid water would, where bonds hold the hydrogens: an upper bound on the rebuilds' share), velocities
from Maxwell-Boltzmann at 300 K,
NVT Langevin (BAOAB) with 0.5 fs steps in float32. Each (descriptor, backend) has its own
``BatchedMD``; after ``--warmup-steps`` steps and at least two neighbour-list rebuilds (which hold
each compiled backend's compiles, the dynamic-shape one after the first rebuild among them) blocks of ``--steps`` steps are
timed round-robin (CUDA events on a GPU), and the result is the median time per step with its
IQR, with the neighbour-list rebuilds per step during the timed blocks (each rebuild is inside the
time). Each row counts the graphs dynamo compiled during its timed blocks (a warm-up too short
leaves compiles there; the table then says so) and gives the distinct (atoms, edges, neighbours)
shapes of the potential's calls over the run, and how many first appeared while timed: a backend
that replays CUDA graphs gets its neighbour lists padded to bucketed sizes
(``bench.graph.pad_edges``), so that a few recordings serve every rebuild. A backend that cannot
run on the device is listed with its reason. A benchmark: nothing passes or fails by time.
"""

from __future__ import annotations

import argparse
import sys


def _system(repeat: int, seed: int = 0):
    import numpy as np
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ..structures import water_box

    atoms = water_box().repeat(repeat)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    return atoms


def run(repeat: int = 5, device: str = "cpu", backends=("eager",), steps: int = 20, repeats: int = 5,
        warmup_steps: int = 40, scale: float = 0.0, threads: int = 2) -> dict:
    """{"rows": [{descriptor, backend, ms_per_step, iqr_ms, rebuilds_per_step, n_atoms, padded, shapes}], "failures": [...],
    "ratios": {backend: spherical / CACE time per step}, ...}."""
    import torch

    from ..backends import BackendUnavailable, check_backend, with_backend
    from ..kinds import COMPARED
    from ..md import BatchedMD
    from ..potential import build
    from ..provenance import provenance
    from ..tasks.measure import paired_ratio, time_round_robin

    torch.set_num_threads(threads)
    atoms = _system(repeat)
    engines, failures = {}, []
    for kind in COMPARED:
        for backend in backends:
            name = f"{kind}/{backend}"
            try:
                check_backend(backend, device)
                torch.manual_seed(0)
                pot = build(kind, elements=[1, 8], preset="water", scale=scale).to(device=device, dtype=torch.float32)
                md = BatchedMD(with_backend(pot, backend), [atoms], timestep_fs=0.5, ensemble="nvt-langevin",
                               temperatures=300.0, seed=0, dtype=torch.float32, device=device)
                md.run(warmup_steps)
                # the timed blocks must not hold a compile: past the first rebuilds (a compiled backend
                # recompiles once for dynamic shapes after the first change of edge count)
                extra = 0
                while md.n_rebuilds < 3 and extra < 4 * warmup_steps:
                    md.run(5)
                    extra += 5
            except (BackendUnavailable, RuntimeError) as err:
                failures.append({"descriptor": kind, "backend": backend, "reason": f"{type(err).__name__}: {err}"[:400]})
                continue
            engines[name] = md
    start = {name: (md.n_steps, md.n_rebuilds, len(md.shapes)) for name, md in engines.items()}
    compiled = dict.fromkeys(engines, 0)
    timing = time_round_robin({name: (lambda name=name, md=md: _run_counting_compiles(md, steps, compiled, name))
                               for name, md in engines.items()}, device=device, warmup=0, repeats=repeats)
    rows = []
    for name, md in engines.items():
        kind, backend = name.split("/", 1)
        t = timing[name]
        n_steps, n_rebuilds = md.n_steps - start[name][0], md.n_rebuilds - start[name][1]
        rows.append({"descriptor": kind, "backend": backend, "n_atoms": len(atoms),
                     "ms_per_step": 1e3 * t["median_s"] / steps, "iqr_ms": 1e3 * t["iqr_s"] / steps,
                     "times_ms_per_step": [1e3 * x / steps for x in t["times_s"]],
                     "rebuilds_per_step": n_rebuilds / max(n_steps, 1), "temperature_K": float(md.temperature()[0]),
                     "padded": md.pad_edges, "shapes": len(md.shapes),
                     "new_shapes_while_timed": len(md.shapes) - start[name][2],
                     "graphs_compiled_while_timed": compiled[name],
                     "finite": bool(md.finite()[0])})
    ratios = {b: paired_ratio(timing, f"spherical/{b}", f"cace/{b}")["median"] for b in backends
              if f"cace/{b}" in timing and f"spherical/{b}" in timing}
    return {"benchmark": "batched MD step, water", "n_atoms": len(atoms), "repeat": repeat, "steps_per_block": steps,
            "repeats": repeats, "warmup_steps": warmup_steps, "scale": scale, "timestep_fs": 0.5, "dtype": "float32",
            "neighbor_list": next(iter(engines.values())).neighbor_list if engines else None,
            "rows": rows, "failures": failures, "time_spherical_over_cace": ratios,
            "provenance": provenance(device, dtype="float32")}


def _run_counting_compiles(md, steps: int, compiled: dict, name: str) -> None:
    """``md.run(steps)``, adding to ``compiled[name]`` the graphs dynamo compiled meanwhile: a timed
    block that holds a compile (a warm-up too short to pass the first rebuilds) is then named in the
    result, not folded silently into its median. Reading dynamo's counter costs no device work."""
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    md.run(steps)
    compiled[name] += counters["stats"]["unique_graphs"] - before


def format_table(result: dict) -> str:
    lines = [f"batched MD, water, {result['n_atoms']} atoms, float32, {result['provenance']['device_name']}, "
             f"neighbour lists on the {result['neighbor_list']}: ms per step (median of {result['repeats']} blocks of "
             f"{result['steps_per_block']} steps, after {result['warmup_steps']} warm-up steps)",
             f"{'descriptor':10s} {'backend':24s} {'ms/step':>9s} {'IQR':>7s} {'rebuilds/step':>14s} {'T (K)':>7s} "
             f"{'shapes':>12s}"]
    for r in result["rows"]:
        shapes = f"{r['shapes']}{' padded' if r['padded'] else ''}"
        lines.append(f"{r['descriptor']:10s} {r['backend']:24s} {r['ms_per_step']:9.2f} {r['iqr_ms']:7.2f} "
                     f"{r['rebuilds_per_step']:14.3f} {r['temperature_K']:7.0f} {shapes:>12s}"
                     + ("" if r["finite"] else "  NOT FINITE")
                     + (f"  COMPILED {r['graphs_compiled_while_timed']} GRAPH(S) WHILE TIMED: its time holds compiles, "
                        "raise --warmup-steps" if r.get("graphs_compiled_while_timed") else ""))
    for b, q in result["time_spherical_over_cace"].items():
        lines.append(f"spherical / CACE, {b}: {q:.2f}")
    for f in result["failures"]:
        lines.append(f"unavailable: {f['descriptor']} {f['backend']}: {f['reason']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    import torch

    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.md_step", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5, help="supercell of the 192-atom box per axis (5: 24,000 atoms)")
    p.add_argument("--backend", nargs="+", default=["eager"])
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per (descriptor, backend)")
    p.add_argument("--warmup-steps", type=int, default=40)
    p.add_argument("--scale", type=float, default=0.0, help="the untrained potential's output scale (default 0)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = run(args.repeat, args.device, tuple(args.backend), args.steps, args.repeats, args.warmup_steps,
                 args.scale, args.threads)
    print(format_table(result))
    if args.out:
        from ..results.io import write_json_atomic

        write_json_atomic(args.out, result)
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
