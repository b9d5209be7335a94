"""The stability task's two MD engines side by side: wall time of ``stability.run`` with every
replica of a potential in one batch (``batched``) against ASE one trajectory at a time (``ase``).

    python -m bench.benchmarks.md_engines [--device cpu|cuda] [--out DIR] [--seeds 6] [--temperatures 300 600]

Trains the quick built-in alloy potentials into DIR/accuracy once (reused when present), then runs
the quick stability protocol with the given seeds and temperatures once per engine, each on its own
copy of that store, and prints the wall times. Both include the same EMT reference runs (ASE), so
the difference is the trained potentials' MD. A benchmark: nothing passes or fails by time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    from ..results.store import ResultsStore
    from ..tasks import accuracy, stability
    from ..tasks.presets import accuracy_spec, stability_spec

    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.md_engines", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="out/md-engines")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 600.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trained", default=None,
                   help="a results folder holding the quick alloy accuracy runs (default OUT/accuracy, trained "
                        "there when absent); on a GPU machine, carry one trained elsewhere")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    acc = accuracy_spec("builtin:emt-alloy", quick=True, read_options={})
    trained = Path(args.trained) if args.trained else out / "accuracy"
    accuracy.run(acc, ResultsStore(trained), progress=False, log=lambda m: None)   # resumes: no-op when trained
    spec = replace(stability_spec("emt-alloy", quick=True), seeds=tuple(range(args.seeds)),
                   temperatures=tuple(args.temperatures), device=args.device)
    n = args.seeds * len(args.temperatures)
    times = {}
    for engine in ("ase", "batched"):
        d = out / f"stability-{engine}"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(trained, d)
        t = time.perf_counter()
        stability.run(replace(spec, engine=engine), acc, ResultsStore(d), log=lambda m: None)
        times[engine] = time.perf_counter() - t
        print(f"{engine:8s} {times[engine]:7.1f} s  ({n} replicas per potential, {spec.n_steps} steps, "
              f"device {args.device}, {args.threads} threads)", flush=True)
    print(f"ase / batched: {times['ase'] / times['batched']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
