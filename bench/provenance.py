"""Where a number came from: code version, libraries, machine, settings."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def git_state() -> dict:
    """The commit and dirty flag of the code this process runs: read once, on the first call (the
    command line makes that call as it starts), so that a record written after a later commit or
    edit still names the code that was loaded."""
    return dict(_git_state_at_first_call())


@functools.cache
def _git_state_at_first_call() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_mhz() -> float | None:
    """The current clock of the first core, where /proc/cpuinfo says it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def device_info(device) -> dict:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        try:  # needs pynvml; absent on many installs
            clock = torch.cuda.clock_rate(device)
        except Exception:  # noqa: BLE001 - any failure only means "clock not readable"
            clock = None
        return {"device": "cuda", "device_name": props.name, "clock_mhz": clock,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                "cuda": torch.version.cuda}
    return {"device": "cpu", "device_name": cpu_name(), "threads": torch.get_num_threads(), "clock_mhz": cpu_mhz()}


def versions() -> dict:
    import ase
    import e3nn
    import numpy
    import torch

    import bench

    return {"python": platform.python_version(), "torch": torch.__version__, "e3nn": e3nn.__version__,
            "ase": ase.__version__, "numpy": numpy.__version__, "triton": _installed("triton"),
            "cace_bench": bench.__version__}


def _installed(name: str) -> str | None:
    """``name``'s installed version, read without importing it (None where it is not installed):
    Triton's, which builds or interprets the fused kernels, belongs beside torch's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(device="cpu", **settings) -> dict:
    """Everything a record needs to say where it came from; ``settings`` (dtype, seed...) are added."""
    from .malloc import state

    return {"git": git_state(), "versions": versions(), **device_info(device), "host": platform.node(),
            "pid": os.getpid(), **machine_load(), **concurrency(), "malloc": state(), **settings}


CONCURRENT_ENV = "CACE_BENCH_CONCURRENT_UNITS"     # set in a worker of the local pool (bench.executor)


def concurrency() -> dict:
    """{"concurrent_units": n} in a worker of the local pool (``bench.executor``, ``--jobs n``): its
    times were measured with up to n units sharing the machine's CPUs or GPU; {} otherwise."""
    n = os.environ.get(CONCURRENT_ENV)
    return {"concurrent_units": int(n)} if n and n.isdigit() and int(n) > 1 else {}


def machine_load() -> dict:
    """How busy the machine was: the 1-minute load average and the CPUs it is shared over (a load
    above the CPU count means other work competed with the measurement)."""
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):                # not on every platform
        load = None
    return {"load_avg_1m": load, "cpu_count": os.cpu_count()}
