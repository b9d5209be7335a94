"""Skip marks for tests of paths this torch or Triton cannot run (``bench.versions``): on an older
torch the compiled backends' tests skip with the reason their backends give, instead of failing
inside dynamo; without Triton 3.2 the fused kernels' tests skip."""

from __future__ import annotations

import pytest

from ..backends import compile_unavailable
from ..nn import neighbor_sum_triton as nst
from ..versions import FUSED_MIN_TRITON, dotted

needs_compile = pytest.mark.skipif(compile_unavailable() is not None, reason=str(compile_unavailable()))
needs_fused_kernels = pytest.mark.skipif(not nst.available(),
                                         reason=f"needs Triton {dotted(FUSED_MIN_TRITON)} or later (pip install -e '.[test]')")
