"""bench.testing.requirements: where the fused kernels cannot run on CPU tensors (a process that
compiles them for CUDA, as on a GPU machine, instead of interpreting them), their CPU cases skip
with that reason instead of failing."""

import os
import subprocess
import sys
from pathlib import Path

from bench.testing.requirements import needs_fused_kernels

ROOT = Path(__file__).resolve().parents[1]


@needs_fused_kernels
def test_without_the_interpreter_the_fused_cpu_cases_skip_with_their_reason():
    """A run with Triton's interpreter off (TRITON_INTERPRET=0: what conftest leaves on a GPU
    machine) over a kernel test's CPU case, a CPU-only fused test and a fused mixin class: each
    skips, naming the interpreter; none fails."""
    tests = ["tests/test_contraction_kernel.py::test_empty_input",
             "tests/test_contraction_kernel.py::test_kernel_second_derivatives_equal_the_pytorch_contractions[cace-1-1-cpu]",
             "tests/test_edge_padding.py::test_fused_kernels_on_a_padded_graph_equal_eager_on_the_unpadded[cace]",
             "tests/test_fused.py::TestCACEFusedPotential::test_stress_is_strain_derivative[float64-cpu]"]
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow",
                          "-rs", *tests], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "4 skipped" in out and "failed" not in out, out[-3000:]
    assert out.count("only in Triton's interpreter") >= 4, out[-3000:]
