"""Why is a backend slow? Per-call wall times of one potential through each backend named, what
dynamo and the CUDA-graph trees counted (recompiles, skipped graphs), how many binaries each fused
kernel holds, and a profile of two calls sorted by host time.

    TORCH_LOGS=recompiles,perf_hints,cudagraphs python -m bench.benchmarks.backend_probe \\
        [--kind cace] [--repeat 4] [--calls 8] [--backend compile-fused-cudagraphs ...]

Written for the first H100 run, where compile-fused-cudagraphs took 1.6 s a call (12,288 atoms)
against 27 ms eager: a cost on the host (a recompile or a re-recorded graph every call) shows as
growing counters and host time in the profile, a cost on the device in the kernel times.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _kernel_binaries() -> dict:
    """{kernel: compiled binaries held} for the fused kernels loaded so far."""
    from ..nn import neighbor_sum_triton as nst

    out = {}
    for version in nst.KERNELS:
        if nst._kernels.cache_info().currsize == 0:
            break
        try:
            fns = nst._kernels(version)
        except Exception:                    # noqa: BLE001
            continue
        for which, fn in zip(("fwd", "bwd"), fns):
            caches = getattr(fn, "device_caches", None) or {}
            out[f"{version}/{which}"] = sum(len(v[0]) for v in caches.values()) if caches else 0
    return out


def probe(kind: str, backend: str, repeat: int, calls: int, device: str = "cuda") -> None:
    from torch._dynamo.utils import counters

    from ..tasks.timing import mode_call, setup

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    pot, graph = setup(kind, repeat=repeat, device=device, backend=backend)
    call = mode_call(pot, graph, "energy_forces")
    print(f"== {kind} {backend}: {graph.n_atoms} atoms, {graph.n_edges} edges")
    for i in range(calls):
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        print(f"call {i}: {1e3 * (time.perf_counter() - t0):9.2f} ms   kernels {_kernel_binaries()}", flush=True)
    for group in ("stats", "inductor", "recompiles"):
        if counters.get(group):
            print(f"counters[{group}]: {dict(counters[group])}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            call()
        sync()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=70))
    if torch.device(device).type == "cuda":
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=70))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.backend_probe", description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="cace", choices=["cace", "spherical"])
    p.add_argument("--repeat", type=int, default=4, help="water box repeated this many times per axis")
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--backend", nargs="+", default=["compile-fused-cudagraphs"])
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here", file=sys.stderr)
        return 2
    for backend in args.backend:
        torch._dynamo.reset()
        probe(args.kind, backend, args.repeat, args.calls, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
