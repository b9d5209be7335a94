"""How a sweep's wall time scales with Ray workers, and what Ray costs over the local loop (#15).

    python -m bench.benchmarks.executor_scaling [--seeds 4] [--epochs 10] [--workers 1 2] [--out FILE]

The sweep: the accuracy task's training units on the built-in set (quick model, 25 training
structures, both descriptors, ``--seeds`` seeds, ``--epochs`` epochs each). It is run, each time
into a fresh results folder, by the local loop (this process's torch threads) and by a local Ray
instance limited to W CPUs for each W of ``--workers`` (one CPU and one thread per unit: W units
at once, a simulated cluster of W single-CPU workers). Printed and written: the wall time of each
and the ratios t(W) / t(first W) and t(Ray, W) / t(local), Ray's start-up included. On W real
cores the ideal ratio is 1/W; more workers than cores only share them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _spec(seeds: int, epochs: int):
    from ..tasks.accuracy import AccuracySpec, DataSpec
    from ..tasks.presets import QUICK_MODEL
    from ..train import TrainConfig

    return AccuracySpec(DataSpec("builtin:emt-alloy", n_train=25, n_valid=20, n_test=20), dict(QUICK_MODEL),
                        TrainConfig(max_epochs=epochs, batch_size=8, lr=1e-2, ema_decay=0.99),
                        seeds=tuple(range(seeds)))


def _sweep(executor: str, seeds: int, epochs: int) -> float:
    from ..results.store import ResultsStore
    from ..tasks import accuracy

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        accuracy.run(_spec(seeds, epochs), ResultsStore(tmp), progress=False, log=lambda *a: None, executor=executor)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    import os

    import ray
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    units = 2 * args.seeds
    out = {"units": units, "epochs": args.epochs, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "load_avg_1m": os.getloadavg()[0]}
    out["local_s"] = _sweep("local", args.seeds, args.epochs)
    print(f"local loop ({torch.get_num_threads()} threads), {units} units: {out['local_s']:.1f} s", flush=True)
    out["ray_s"] = {}
    for w in args.workers:
        ray.init(num_cpus=w, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            out["ray_s"][w] = _sweep("ray", args.seeds, args.epochs)
        finally:
            ray.shutdown()
        print(f"ray, {w} worker(s): {out['ray_s'][w]:.1f} s; over local {out['ray_s'][w] / out['local_s']:.2f}; "
              f"over {args.workers[0]} worker(s) {out['ray_s'][w] / out['ray_s'][args.workers[0]]:.2f}", flush=True)
    if args.out:
        from ..atomic import write_json_atomic

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
