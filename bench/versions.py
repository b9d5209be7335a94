"""Which torch and Triton each path needs, written once. pyproject's floor, torch 2.5, is the eager
path's: the default test suite's eager tests pass on torch 2.5.1 (2.4 cannot build a model: its
``torch.library.custom_op`` does not read postponed annotations). The compiled and fused paths need
more, below; where they are older, those backends say so in one line instead of failing inside
torch or Triton."""

from __future__ import annotations

# The oldest torch the compiled backends run on here: 2.11 (the GPU machine's) and 2.13 (CI's). On
# 2.5 dynamo lacked options they set (fail_on_recompile_limit_hit) and could not trace the
# symmetrisation's torch.mm(out=); the compiled training step traces torch.autograd.grad (dynamo's
# trace_autograd_ops, 2.11 and later).
COMPILE_MIN_TORCH = (2, 11)
# The oldest Triton the fused kernels are tested with (the test extra's floor); 3.1's interpreter
# fails them.
FUSED_MIN_TRITON = (3, 2)
# Triton's interpreter (the fused kernels on CPU tensors: the tests without a GPU) turns a kernel's
# integer argument into a one-element array and, before Triton 3.7, a loop bound over it into an int
# with int(array), which numpy 2.4 refuses ("only 0-dimensional arrays can be converted"; 2.3 only
# warns): every kernel with a runtime loop then fails there. Seen with Triton 3.6 (torch 2.10's and
# 2.11's) and numpy 2.4.6 and 2.5.2 (2.5.2: the GPU machine's, run on the CPU); Triton 3.7 converts
# with squeeze(). Compiled kernels (CUDA) never run the interpreter.
INTERPRETER_MIN_TRITON_UNDER_NUMPY_2_4 = (3, 7)


def major_minor(version: str) -> tuple[int, int]:
    """(2, 11) of "2.11.0+cu130", "2.12.0.dev20260101" or "3.2.0"."""
    major, minor = version.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))
