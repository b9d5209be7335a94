"""The symmetrisation B = contraction(A) as one Triton kernel, forward and backward: the fused
backends' drop-in for ``contraction.SparseProductContraction``'s PyTorch form, reading the same
index and coefficient tables.

    B[n, b, j]  = sum_{t : out[t] = b} coeff[t] prod_{f < order[t]} A[n, idx[t, f], j]
    dA[n, q, j] = sum_{(t, f) : idx[t, f] = q} coeff[t] dB[n, out[t], j] prod_{g != f} A[n, idx[t, g], j]

with j running over radial channels x channel pairs (KC). The PyTorch form copies A to the
angular-major layout At [Q, M] (M = N KC), gathers rows of At into [terms, M] products and
multiplies them by the coefficient matrix, and its backward forms several [terms, M] tensors
again: in the water preset, at the peak of an energy + forces call with the fused neighbour sums,
50 of the 98 kB an atom (counted on the CPU). Here each column (n, j) is computed in registers from
its own Q values, read in the model's layout, so nothing of size [terms, M] and no transposed copy
of A or B exists, and the whole contraction is one launch each way. The tables
are the same terms grouped two ways, built once (``ContractionTables``): by invariant for the
forward (CSR ``fptr`` over terms) and by angular row for the backward (CSR ``bptr`` over the pairs
(term, factor), each with the term's other factors). Both descriptors run it: the tables come from
either angular basis (multinomial weights for CACE, Clebsch-Gordan coefficients for the baseline).

The backward is differentiable (a force-loss training step's second derivative) through the same
two kernels run on dual numbers (``TANGENT``): with v [N, Q, KC] the cotangent of dA,

    d/dgB = J(A) v                  the derivative of B along v: the forward kernel, tangent form
    d/dA  = d/dt J(A + t v)^T gB    the derivative of dA along v (gB fixed): the backward kernel, tangent form

(the Hessian of each invariant is symmetric, so <v, J^T gB>'s gradient in A is the backward's
derivative along v). Two launches, each column again in registers: no [N, pairs, KC] tensor is
formed (the PyTorch form of the same second derivative, before, formed several: the likely, not
profiled, reason the fused training step was no faster than eager at 12,288 atoms on an H200).
A third derivative is not provided. On CPU tensors the kernels run in Triton's interpreter
(``TRITON_INTERPRET=1``; tests).
"""

from __future__ import annotations

import functools

import torch

from .neighbor_sum_triton import check_device, triton

BLOCK = 256         # columns per program


@functools.cache
def _kernels():
    from . import contraction_kernels as k

    return triton.jit(k.contract_fwd), triton.jit(k.contract_bwd)


class ContractionTables:
    """The terms of every body order as the two CSR tables the kernels read (int64 and float64
    tensors on the CPU; ``SparseProductContraction`` keeps them as buffers).

    terms: (out, factors, coeff) with ``out`` the invariant's row in B (orders concatenated). The
    backward table has a row for each angular component up to the largest one a term reads; the
    rows of A beyond it get a zero gradient.
    """

    def __init__(self, terms: list[tuple[int, tuple[int, ...], float]], n_invariants: int):
        n_angular = max((q for _, f, _ in terms for q in f), default=-1) + 1
        maxf = max([len(f) for _, f, _ in terms] + [1])
        by_out = sorted(range(len(terms)), key=lambda t: terms[t][0])
        counts = [0] * (n_invariants + 1)
        for out, _, _ in terms:
            counts[out + 1] += 1
        self.fptr = torch.tensor(counts, dtype=torch.long).cumsum(0)                  # [n_inv + 1]
        self.fidx = torch.tensor([list(terms[t][1]) + [0] * (maxf - len(terms[t][1])) for t in by_out],
                                 dtype=torch.long).reshape(-1, maxf)                   # [T, maxf]
        self.ford = torch.tensor([len(terms[t][1]) for t in by_out], dtype=torch.long)    # [T]
        self.fcoef = torch.tensor([terms[t][2] for t in by_out], dtype=torch.float64)     # [T]
        pairs = [(q, out, [g for k, g in enumerate(f) if k != pos], c)
                 for out, f, c in terms for pos, q in enumerate(f)]
        pairs.sort(key=lambda p: p[0])
        counts = [0] * (n_angular + 1)
        for q, _, _, _ in pairs:
            counts[q + 1] += 1
        self.bptr = torch.tensor(counts, dtype=torch.long).cumsum(0)                  # [Q + 1]
        self.bout = torch.tensor([p[1] for p in pairs], dtype=torch.long)             # [P]
        self.both = torch.tensor([p[2] + [0] * (maxf - len(p[2])) for p in pairs],
                                 dtype=torch.long).reshape(-1, maxf)                   # [P, maxf]
        self.bn = torch.tensor([len(p[2]) for p in pairs], dtype=torch.long)          # [P]
        self.bcoef = torch.tensor([p[3] for p in pairs], dtype=torch.float64)         # [P]

    NAMES = ("fptr", "fidx", "ford", "fcoef", "bptr", "bout", "both", "bn", "bcoef")

    def tensors(self) -> tuple:
        """The tables in ``contract``'s order (the fused kernels' arguments)."""
        return tuple(getattr(self, n) for n in self.NAMES)


def launch_forward(A, fptr, fidx, ford, fcoef, out, V=None) -> None:
    """Write out [N, n_inv, KC] (every element) from contiguous A [N, Q, KC]; with V (A's layout,
    contiguous) the derivative of B along V instead."""
    N, Q, KC = A.shape
    fwd, _ = _kernels()
    M = N * KC
    fwd[(triton.cdiv(M, BLOCK),)](A, A if V is None else V, out, fptr, fidx, ford, fcoef, M, KC, Q, out.shape[1],
                                  MAXF=fidx.shape[1], BLOCK=BLOCK, TANGENT=V is not None)


def launch_backward(gB, A, bptr, bout, both, bn, bcoef, gA, V=None) -> None:
    """Write gA [N, Q, KC] (every element: rows past the table's are zeros) from contiguous
    gB [N, n_inv, KC] and A [N, Q, KC]; with V (A's layout, contiguous) gA's derivative along V."""
    N, Q, KC = A.shape
    _, bwd = _kernels()
    M = N * KC
    bwd[(triton.cdiv(M, BLOCK),)](gB, A, A if V is None else V, gA, bptr, bout, both, bn, bcoef, M, KC, Q,
                                  gB.shape[1], bptr.shape[0] - 1, MAXF=both.shape[1], BLOCK=BLOCK,
                                  TANGENT=V is not None)


# One operator takes both tables, so that its autograd keeps the backward's (a custom operator's
# backward sees only what its forward was given); opaque to torch.compile, differentiable once.
@torch.library.custom_op("cace_bench::contract", mutates_args=())
def _contract_op(A: torch.Tensor, fptr: torch.Tensor, fidx: torch.Tensor, ford: torch.Tensor, fcoef: torch.Tensor,
                 bptr: torch.Tensor, bout: torch.Tensor, both: torch.Tensor, bn: torch.Tensor,
                 bcoef: torch.Tensor) -> torch.Tensor:
    A = A.contiguous()
    out = A.new_empty(A.shape[0], fptr.shape[0] - 1, A.shape[2])                     # [N, n_inv, KC]
    if out.numel():
        launch_forward(A, fptr, fidx, ford, fcoef.to(A.dtype), out)
    return out


@_contract_op.register_fake
def _(A, fptr, fidx, ford, fcoef, bptr, bout, both, bn, bcoef):
    return A.new_empty(A.shape[0], fptr.shape[0] - 1, A.shape[2])


@torch.library.custom_op("cace_bench::contract_backward", mutates_args=())
def _contract_backward_op(gB: torch.Tensor, A: torch.Tensor, fptr: torch.Tensor, fidx: torch.Tensor,
                          ford: torch.Tensor, fcoef: torch.Tensor, bptr: torch.Tensor, bout: torch.Tensor,
                          both: torch.Tensor, bn: torch.Tensor, bcoef: torch.Tensor) -> torch.Tensor:
    A = A.contiguous()
    gA = torch.empty_like(A)                                                         # [N, Q, KC]
    if gA.numel():
        launch_backward(gB.contiguous(), A, bptr, bout, both, bn, bcoef.to(A.dtype), gA)
    return gA


@_contract_backward_op.register_fake
def _(gB, A, fptr, fidx, ford, fcoef, bptr, bout, both, bn, bcoef):
    return torch.empty_like(A)


@torch.library.custom_op("cace_bench::contract_tangent", mutates_args=())
def _contract_tangent_op(A: torch.Tensor, V: torch.Tensor, fptr: torch.Tensor, fidx: torch.Tensor,
                         ford: torch.Tensor, fcoef: torch.Tensor) -> torch.Tensor:
    """J(A) V: B's derivative along V [N, Q, KC]  -> [N, n_inv, KC]."""
    A = A.contiguous()
    out = A.new_empty(A.shape[0], fptr.shape[0] - 1, A.shape[2])                     # [N, n_inv, KC]
    if out.numel():
        launch_forward(A, fptr, fidx, ford, fcoef.to(A.dtype), out, V=V.contiguous())
    return out


@_contract_tangent_op.register_fake
def _(A, V, fptr, fidx, ford, fcoef):
    return A.new_empty(A.shape[0], fptr.shape[0] - 1, A.shape[2])


@torch.library.custom_op("cace_bench::contract_backward_tangent", mutates_args=())
def _contract_backward_tangent_op(gB: torch.Tensor, A: torch.Tensor, V: torch.Tensor, bptr: torch.Tensor,
                                  bout: torch.Tensor, both: torch.Tensor, bn: torch.Tensor,
                                  bcoef: torch.Tensor) -> torch.Tensor:
    """d/dt J(A + t V)^T gB: the backward's derivative along V [N, Q, KC]  -> [N, Q, KC]."""
    A = A.contiguous()
    out = torch.empty_like(A)                                                        # [N, Q, KC]
    if out.numel():
        launch_backward(gB.contiguous(), A, bptr, bout, both, bn, bcoef.to(A.dtype), out, V=V.contiguous())
    return out


@_contract_backward_tangent_op.register_fake
def _(gB, A, V, bptr, bout, both, bn, bcoef):
    return torch.empty_like(A)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, gB):
    gA = _contract_backward_op(gB, *ctx.saved_tensors)
    return (gA,) + (None,) * 9


_contract_op.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward_backward(ctx, v):
    """The module docstring's second derivative, two tangent launches: cotangent v [N, Q, KC] of dA
    to (dB, A)."""
    gB, A, fptr, fidx, ford, fcoef, bptr, bout, both, bn, bcoef = ctx.saved_tensors
    d_gB = _contract_tangent_op(A, v, fptr, fidx, ford, fcoef) if ctx.needs_input_grad[0] else None
    d_A = _contract_backward_tangent_op(gB, A, v, bptr, bout, both, bn, bcoef) if ctx.needs_input_grad[1] else None
    return (d_gB, d_A) + (None,) * 9


_contract_backward_op.register_autograd(_backward_backward, setup_context=_setup_backward_context)


def contract(A: torch.Tensor, tables: tuple) -> torch.Tensor:
    """B [N, n_inv, KC] from A [N, Q, KC] (the module docstring); ``tables`` the nine tensors of
    ``ContractionTables.tensors`` on A's device (coefficients in any float dtype)."""
    if not torch.compiler.is_compiling():      # checked before compiling (bench.backends), not traced
        check_device(A.device)
    return _contract_op(A, *tables)
