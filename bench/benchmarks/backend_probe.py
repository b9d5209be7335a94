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

from ..kinds import COMPARED


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


def trace_launches() -> None:
    """Print, for every fused-kernel launch, its inputs' layout and the CSR row pointers' summary,
    and its device time where the stream is not being captured into a CUDA graph."""
    from ..nn import neighbor_sum_triton as nst

    def wrap(name, launch, first):
        def traced(*args, **kwargs):
            t, rowptr = args[first], args[first + 5]          # (Y, R, W, senders, wl, rowptr, ...)
            counts = rowptr.diff()
            devices = "/".join(str(a.device) for a in args[first:first + 6])
            info = (f"{name} Y{tuple(t.shape)}{t.stride()} ptr%16={t.data_ptr() % 16} on {devices} rowptr {rowptr.dtype} "
                    f"n={rowptr.shape[0]} last={int(rowptr[-1])} max/atom={int(counts.max())} "
                    f"sorted={bool((counts >= 0).all())}")
            capturing = t.is_cuda and torch.cuda.is_current_stream_capturing()
            if t.is_cuda and not capturing:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                launch(*args, **kwargs)
                end.record()
                torch.cuda.synchronize()
                print(f"  {info} {start.elapsed_time(end):.3f} ms", flush=True)
            else:
                print(f"  {info} (capturing)" if capturing else f"  {info}", flush=True)
                launch(*args, **kwargs)
        return traced

    nst.launch_forward = wrap("fwd", nst.launch_forward, 0)
    nst.launch_backward = wrap("bwd", nst.launch_backward, 1)


def probe(kind: str, backend: str, repeat: int, calls: int, device: str = "cuda", reference=None) -> dict:
    """Returns the last call's output (energy, forces), for the next backend's parity line."""
    from torch._dynamo.utils import counters

    from ..tasks.timing import setup
    from ..parity import relative_error

    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    pot, graph = setup(kind, repeat=repeat, device=device, backend=backend)
    call = lambda: pot(graph)
    print(f"== {kind} {backend}: {graph.n_atoms} atoms, {graph.n_edges} edges")
    for i in range(calls):
        sync()
        t0 = time.perf_counter()
        out = call()
        sync()
        print(f"call {i}: {1e3 * (time.perf_counter() - t0):9.2f} ms   kernels {_kernel_binaries()}", flush=True)
    out = {k: out[k].detach().clone() for k in ("energy", "forces")}
    if reference is not None:
        print("parity against the first backend: " + ", ".join(
            f"{k} {relative_error(out[k].double(), reference[k].double()):.1e}" for k in out))
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
    return out


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.backend_probe", description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="cace", choices=list(COMPARED))
    p.add_argument("--repeat", type=int, default=4, help="water box repeated this many times per axis")
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--backend", nargs="+", default=["compile-fused-cudagraphs"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--trace-launches", action="store_true", help="print every fused-kernel launch (layout, CSR, time)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here", file=sys.stderr)
        return 2
    if args.trace_launches:
        trace_launches()
    reference = None
    for backend in args.backend:
        torch._dynamo.reset()
        out = probe(args.kind, backend, args.repeat, args.calls, args.device, reference)
        reference = reference if reference is not None else out
    return 0


if __name__ == "__main__":
    sys.exit(main())
