"""Timing and memory measurement primitives (the method, written once).

Timing: warm-up calls, then repeats; on CUDA each call is bracketed by CUDA events (and the L2
cache is flushed between repeats by writing a buffer larger than it); on CPU by perf_counter.
Reported: median and interquartile range. Several callables are timed round-robin in one loop,
so a drifting machine affects them alike.
Memory: after one warm-up call, on CUDA the allocator's peak during one call; on CPU the peak
resident memory one call adds, in a fresh process per case (``peak_memory_subprocess``) with the
kernel's high-water mark reset after the warm-up.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Callable

import numpy as np
import torch


def _l2_flush_buffer(device):
    if device.type != "cuda":
        return None
    size = max(2 * torch.cuda.get_device_properties(device).L2_cache_size, 64 << 20)
    return torch.empty(size // 4, dtype=torch.float32, device=device)


def time_round_robin(calls: dict[str, Callable[[], object]], *, device="cpu", warmup: int = 3,
                     repeats: int = 10) -> dict[str, dict]:
    """{name: {"median_s", "iqr_s", "times_s"}} for each callable, timed alternately."""
    device = torch.device(device)
    flush = _l2_flush_buffer(device)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            if device.type == "cuda":
                flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(device)
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        q1, med, q3 = np.percentile(ts, [25, 50, 75])
        out[name] = {"median_s": float(med), "iqr_s": float(q3 - q1), "times_s": [float(t) for t in ts]}
    return out


def paired_ratio(timing: dict, numerator: str, denominator: str) -> dict:
    """Median and IQR of the per-round ratios t_num / t_den of a ``time_round_robin`` result.

    Each round times both calls back to back, so a ratio within a round sees the same machine
    state; its median over rounds is steadier than the ratio of the two medians.
    """
    r = np.asarray(timing[numerator]["times_s"]) / np.asarray(timing[denominator]["times_s"])
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "iqr": float(q3 - q1)}


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water RSS mark (Linux >= 4.0); False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_call_memory(fn: Callable[[], object], device="cpu", warmup: int = 1) -> int:
    """Peak bytes one call of ``fn`` adds, after ``warmup`` calls (one-time set-up excluded).

    CUDA: the allocator's peak above what was allocated before the call. CPU: the high-water
    resident set (reset after warm-up) minus the resident set before the call.
    """
    import gc

    device = torch.device(device)
    for _ in range(warmup):
        fn()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    before = current_rss_bytes()
    if not _reset_peak_rss() and warmup:
        raise RuntimeError("cannot reset the peak RSS here: measure CPU memory with warmup=0 in a fresh process")
    fn()
    return int(_peak_rss_bytes() - before)


def peak_memory_subprocess(module: str, args: list[str]) -> dict:
    """Run ``python -m module *args`` (which prints one JSON line last) and return that JSON.

    The child runs with glibc's ``MALLOC_MMAP_THRESHOLD_=65536``: every tensor above 64 KiB is its
    own mapping, returned to the system when freed, so the resident set follows the live tensors
    and its high-water mark is the true peak of one call (not hidden by memory the allocator kept
    from the warm-up call). Only the measuring child runs so; timings are taken elsewhere.
    """
    import os

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    res = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])
