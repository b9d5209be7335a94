"""The GPU headline: both descriptors, every backend, the water preset from 192 atoms to about a
million (or out of memory), through the timing task (its round-robin method, records and resume).

    python -m bench.benchmarks.gpu [--device cuda] [--out results/gpu/<device>/timing] [--part sweep|modes|all]
                                   [--sizes 1 2 4 8 12 17] [--repeats 10] [--max-seconds 5] [--backend ...]

- ``sweep``: energy + forces only, supercells 1, 2, 4, 8, 12, 17 of the 192-atom box (192 to
  943,296 atoms), float32, every backend of bench.backends (dense and fused neighbour sums, eager,
  compiled, CUDA graphs) or those named by --backend; peak memory of every
  backend from the allocator (memory per atom). The sweep stops before a call predicted over 5 s,
  or at out of memory.
- ``modes``: descriptor, energy + forces and training step at 192, 1,536 and 12,288 atoms (the
  training step records that compiled backends have no double backward).
Each finished point is written at once (an interrupted run keeps it; rerunning resumes), and
``cace-bench report DIR`` turns the folder into the report's speed and backend sections.
"""

from __future__ import annotations

import argparse
import sys

import torch


def specs(part: str, device: str, sizes: tuple, repeats: int, max_seconds: float = 5.0, backends=None):
    from ..backends import timed_backends
    from ..tasks.timing import TimingSpec

    backends = tuple(backends or timed_backends(device))
    sweep = TimingSpec(sizes=sizes, modes=("energy_forces",), dtypes=("float32",), device=device, repeats=repeats,
                       warmup=3, backends=backends, max_seconds_per_call=max_seconds)
    modes = TimingSpec(sizes=(1, 2, 4), dtypes=("float32",), device=device, repeats=repeats, warmup=3,
                       backends=backends, memory=False)
    return {"sweep": [sweep], "modes": [modes], "all": [sweep, modes]}[part]


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    from ..backends import BACKENDS
    from ..results.store import ResultsStore
    from ..tasks import timing

    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None)
    p.add_argument("--part", default="all", choices=["sweep", "modes", "all"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 12, 17])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--backend", nargs="+", default=None, choices=list(BACKENDS),
                   help="backends to time (default: every one that runs on the device)")
    p.add_argument("--max-seconds", type=float, default=5.0,
                   help="the sweep stops before a call predicted to take longer than this")
    args = p.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; pass --device cpu to try the machinery on the CPU", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0).replace(" ", "-") if torch.device(args.device).type == "cuda" else "cpu"
    store = ResultsStore(args.out or f"results/gpu/{name}/timing")
    for spec in specs(args.part, args.device, tuple(args.sizes), args.repeats, args.max_seconds, args.backend):
        timing.run(spec, store, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
