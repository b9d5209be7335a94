"""Freed CPU memory kept in the process, so that a call's tensors are not fresh pages at every call.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold (128 KiB at
first, raised as blocks are freed, up to 32 MiB) as a mapping of its own and unmaps it when it is
freed, and it gives the free top of its heap back to the system above its trim threshold. The next
tensor of that size is then new pages, and each page is a fault (the kernel zeroes it) at its first
write. One energy + forces call of the water preset made 2,271 such faults at 192 atoms and 70,223
at 1,536 atoms in one process (how many varies from process to process with the heap's layout);
the symmetrisation alone (three body orders, [24, 20,736] float32 rows) once spent half its time
in them.

``keep_freed_memory`` raises both thresholds with ``mallopt``, so freed blocks stay in the heap
and are reused: after warm-up, a few hundred faults a call at most. The resident set then stays
near its peak instead of following the live tensors (memory that is measured,
``bench.tasks.measure.peak_memory_subprocess``, is measured in a child process with its own
thresholds). Both descriptors run in the same process, so a timing comparison is unchanged in
kind; every record says which regime it ran under (``state``, in ``bench.provenance``).

It is called where a process of this project starts work (the command line, a pool worker, a Ray
unit, the test and benchmark suites); importing ``bench`` changes nothing. It does nothing where
the allocator is not glibc's, where ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a
``glibc.malloc`` tunable is set (the user's or a measuring parent's choice wins), or where
``CACE_BENCH_SYSTEM_MALLOC=1``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # glibc's mallopt parameters (malloc.h)
THRESHOLD = 1 << 30                                  # 1 GiB: blocks up to it are reused, not unmapped
FALLBACK = 32 << 20                                  # the largest mmap threshold every glibc accepts
OPT_OUT_ENV = "CACE_BENCH_SYSTEM_MALLOC"

_state = {"value": None}        # what keep_freed_memory did in this process (None: not called)


def _left_to_environment() -> str | None:
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return f"system default ({OPT_OUT_ENV} set)"
    set_ = [k for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        set_.append("GLIBC_TUNABLES")
    return f"as the environment sets it ({', '.join(set_)})" if set_ else None


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):                # not glibc (macOS, Windows, musl)
        return None, None
    return libc, version


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds for this process (once; later calls return the first
    call's result). Returns what was done, as ``state`` reports it."""
    if _state["value"] is None:
        _state["value"] = _apply()
    return _state["value"]


def _apply() -> str:
    left = _left_to_environment()
    if left:
        return left
    libc, version = _glibc()
    if libc is None:
        return "system default (not glibc)"
    mmap = THRESHOLD if libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) else FALLBACK
    if mmap == FALLBACK and not libc.mallopt(M_MMAP_THRESHOLD, FALLBACK):
        return f"system default (glibc {version} refused mallopt)"
    libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD)
    return f"freed memory kept (glibc {version}, mmap threshold {mmap >> 20} MiB, trim threshold {THRESHOLD >> 20} MiB)"


def state() -> str:
    """The allocator regime of this process, for provenance."""
    if _state["value"] is not None:
        return _state["value"]
    return uncalled_state()


def uncalled_state() -> str:
    """The regime of a process started from this one's environment that does not call
    ``keep_freed_memory`` (the regression check's speed probe)."""
    return _left_to_environment() or "system default"
