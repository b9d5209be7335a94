import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _interpret_triton_without_cuda() -> None:
    """Without a GPU, Triton kernels run in Triton's interpreter, on CPU tensors (the fused
    neighbour-sum parity tests): chosen when Triton is first imported, so set here, before any test
    module imports it."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_triton_without_cuda()


def _keep_freed_memory() -> None:
    """As the command line does (``bench.malloc``): freed tensors reused, not page-faulted anew."""
    from bench.malloc import keep_freed_memory

    keep_freed_memory()


_keep_freed_memory()
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test run uses its own cache folder, never the user's."""
    if "CACE_BENCH_CACHE" not in os.environ:
        os.environ["CACE_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


def shared_file(*parts) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared data not available: {path} (clone with ../shared beside the repository)")
    return path


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
