"""pytest-benchmark configuration for the kernel suite (``pytest bench/benchmarks --benchmark-only``).

Adds the device and library versions to pytest-benchmark's machine info, and fixes the CPU thread
count for the session (``CACE_BENCH_THREADS``, default 2) so that saved runs compare like with like.
"""

from __future__ import annotations

import os

import pytest
import torch


def pytest_benchmark_update_machine_info(config, machine_info):
    from bench.provenance import cpu_name, versions

    machine_info["cace_bench"] = {
        **versions(),
        "cpu_name": cpu_name(),
        "threads": int(os.environ.get("CACE_BENCH_THREADS", "2")),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "malloc": __import__("bench.malloc", fromlist=["state"]).state(),
    }


@pytest.fixture(scope="session", autouse=True)
def _keep_freed_memory():
    """As the command line does (``bench.malloc``); the machine info's provenance says so."""
    from bench.malloc import keep_freed_memory

    keep_freed_memory()
    yield


@pytest.fixture(scope="session", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("CACE_BENCH_THREADS", "2")))
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CUDA")
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
