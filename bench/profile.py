"""Kernel profile of energy + forces (or another timing mode), both descriptors, every backend:
where the time goes.

    python -m bench.profile [--device cuda] [--repeat 4] [--backend eager compile] [--dtype float32]
                            [--mode energy_forces|training_step|descriptor] [--calls 5] [--out DIR]

The water preset on the water box repeated ``repeat`` times per axis (4: 12,288 atoms), one
warm-up call (compiles where the backend compiles), then ``calls`` calls of ``mode`` (the timing
task's: ``training_step`` is a force-loss step, forward, forces and the double backward) under
``torch.profiler``. Writes ``DIR/profile-<descriptor>-<backend>.txt`` (``-<mode>`` added for a
mode other than energy + forces): the operator / kernel table sorted by device time (self CUDA
time on a GPU, self CPU time on the CPU), the top 25 rows, and ``DIR/profile.json``: per case the
total, the number of kernels and operators a call launches, and the top operators with their share
of the time. This is the starting point the GPU work reads before and after a change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .kinds import COMPARED


def profile_case(kind: str, backend: str, *, device: str, repeat: int, dtype: str, calls: int,
                 mode: str = "energy_forces") -> tuple[str, dict]:
    """(table text, summary) of ``calls`` calls of ``mode`` of ``kind`` under ``backend``."""
    from torch.profiler import ProfilerActivity, profile

    from .tasks.timing import mode_call, setup

    pot, graph = setup(kind, repeat=repeat, dtype=dtype, device=device, backend=backend)
    call = mode_call(pot, graph, mode)
    call()                                                          # warm-up (and compilation)
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(calls):
            call()
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    table = events.table(sort_by=key, row_limit=25)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(((e.key, getattr(e, attr, 0.0)) for e in events), key=lambda kv: -kv[1])
    total = sum(t for _, t in rows)
    # launches a call makes: device kernels on a GPU; on the CPU, operators that are not views
    # (each is about one kernel once on a GPU; aten's leaf operators, counted without their children)
    if cuda:
        launches = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    else:
        launches = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.name not in _VIEW_OPS
                       and not any(c.name.startswith("aten::") for c in e.cpu_children))
    summary = {"descriptor": kind, "backend": backend, "mode": mode, "n_atoms": graph.n_atoms,
               "n_edges": graph.n_edges, "calls": calls, "launches_per_call": launches / calls,
               "time_per_call_ms": total / calls / 1e3, "clock": "device" if cuda else "cpu",
               "top": [{"op": k, "ms_per_call": t / calls / 1e3, "share": t / total if total else 0.0}
                       for k, t in rows[:15]]}
    return table, summary


_VIEW_OPS = {f"aten::{n}" for n in ("view", "_unsafe_view", "as_strided", "select", "slice", "transpose", "t",
                                       "permute", "expand", "unsqueeze", "squeeze", "detach", "alias",
                                       "_reshape_alias", "reshape", "view_as", "resolve_conj", "resolve_neg",
                                       "empty", "empty_strided", "empty_like", "split", "unbind", "chunk", "narrow",
                                       "lift_fresh", "result_type", "_local_scalar_dense", "item")}


def main(argv=None) -> int:
    from .malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    from .backends import BACKENDS, BackendUnavailable, check_backend, timed_backends
    from .provenance import provenance

    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=4, help="supercell repeats of the 192-atom water box (4: 12,288 atoms)")
    p.add_argument("--backend", nargs="+", default=None, choices=list(BACKENDS))
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--mode", default="energy_forces", choices=["energy_forces", "training_step", "descriptor"],
                   help="what one call does (the timing task's modes; training_step: a force-loss step)")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="out/profile")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends = args.backend or timed_backends(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries, failures = [], []
    for backend in backends:
        for kind in COMPARED:
            try:
                check_backend(backend, args.device)
                table, summary = profile_case(kind, backend, device=args.device, repeat=args.repeat,
                                              dtype=args.dtype, calls=args.calls, mode=args.mode)
            except BackendUnavailable as err:
                failures.append({"descriptor": kind, "backend": backend, "error": str(err)})
                continue
            suffix = "" if args.mode == "energy_forces" else f"-{args.mode}"
            (out / f"profile-{kind}-{backend}{suffix}.txt").write_text(table)
            summaries.append(summary)
            top = ", ".join(f"{r['op']} {100 * r['share']:.0f}%" for r in summary["top"][:4])
            print(f"{kind:9s} {backend:18s} {summary['time_per_call_ms']:8.2f} ms/call ({summary['clock']} time), "
                  f"{summary['launches_per_call']:.0f} launches: {top}", flush=True)
    result = {"cases": summaries, "unavailable": failures, "dtype": args.dtype, "mode": args.mode,
              "provenance": provenance(args.device, dtype=args.dtype, threads=args.threads)}
    from .atomic import write_json_atomic

    write_json_atomic(out / "profile.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
