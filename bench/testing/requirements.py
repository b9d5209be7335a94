"""Skip marks for tests of paths this torch or Triton cannot run (``bench.versions``): on an older
torch the compiled backends' tests skip with the reason their backends give, instead of failing
inside dynamo; without Triton 3.2, or where Triton's interpreter cannot run them, the fused kernels'
tests skip; and where the interpreter is not chosen (a GPU machine), their CPU cases skip."""

from __future__ import annotations

import pytest

from ..backends import compile_unavailable
from ..nn import neighbor_sum_triton as nst


def _skip_unless_none(why: str | None):
    """A skip mark with ``why`` as its reason, where there is one."""
    return pytest.mark.skipif(why is not None, reason=str(why))


needs_compile = _skip_unless_none(compile_unavailable())


def _fused_kernels_unavailable() -> str | None:
    """Why the fused kernels' tests cannot run here: no Triton as recent as they are tested with
    (``nst.unavailable``), or, without a GPU, a Triton interpreter that fails them
    (``nst.interpreter_unusable``)."""
    return nst.unavailable() or nst.interpreter_unusable()


needs_fused_kernels = _skip_unless_none(_fused_kernels_unavailable())


def _fused_kernels_on_cpu_unavailable() -> str | None:
    """Why the fused kernels cannot run on CPU tensors in this test run: where the kernels can run
    at all, they run there only in Triton's interpreter, which conftest chooses only without a GPU
    (a process runs its kernels either interpreted or compiled)."""
    if (why := _fused_kernels_unavailable()) is not None:
        return why
    if not nst.interpreting():
        return ("the fused kernels run on CPU tensors only in Triton's interpreter, which the tests choose only "
                "where there is no GPU (TRITON_INTERPRET=1 before Python starts); here their CUDA cases run")
    return None


# the tests (or the cases of a test) that run the fused kernels on CPU tensors: skipped on a GPU machine,
# whose process compiles the kernels for CUDA instead
needs_fused_kernels_on_cpu = _skip_unless_none(_fused_kernels_on_cpu_unavailable())
