"""Triton kernels of the fused symmetrisation (the invariants B from the A-basis); the equations,
the index tables and their autograd wrapper are in ``contraction_triton.py`` (this module imports
Triton unconditionally, so it is loaded only when the fused path runs).

Both kernels read A [N, Q, KC] and write B [N, NINV, KC] in the model's own layout (KC = radial
channels x channel pairs): column m = (atom n, j) with n = m // KC, j = m % KC, and angular row q
of column m at n Q KC + q KC + j. Every column is independent, so program k owns columns
[k BLOCK, (k + 1) BLOCK) and loops over the tables (runtime loops over a few hundred entries, read as
scalars), each product formed in registers from rows of A that the program reads again and again
from its cache. No [terms, M] product and no transposed copy of A or B is written. Offsets are
int64 (N Q KC passes 2^31 near a million atoms).

With ``TANGENT`` each kernel writes instead its output's derivative along V [N, Q, KC] (a tangent
of A, in A's layout): every product is carried as a dual number, (p, dp) <- (p a, dp a + p v) for
each factor a of A and its tangent v, and the dp are summed. These are the second derivatives of
the symmetrisation (``contraction_triton``'s module docstring); V is not read otherwise.
"""

import triton
import triton.language as tl


@triton.jit
def _times_row(prod, dprod, A, V, offs, mm, TANGENT: tl.constexpr):
    """The dual number (prod, dprod) times the factor A[offs], whose tangent is V[offs] (with
    ``TANGENT``; else dprod is returned as given)."""
    a = tl.load(A + offs, mask=mm, other=0.0)
    if TANGENT:
        dprod = dprod * a + prod * tl.load(V + offs, mask=mm, other=0.0)
    return prod * a, dprod


def contract_fwd(A, V, B, FPTR, FIDX, FORD, FCOEF, M, KC, Q, NINV, MAXF: tl.constexpr, BLOCK: tl.constexpr,
                 TANGENT: tl.constexpr):
    """B[n, b, j] = sum_{t in FPTR[b]:FPTR[b+1]} FCOEF[t] prod_{f < FORD[t]} A[n, FIDX[t, f], j]
    (``TANGENT``: its derivative along V, sum_t FCOEF[t] sum_f V[.., FIDX[t, f], ..] prod_{g != f} A[.., FIDX[t, g], ..])."""
    m = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mm = m < M
    n = m // KC
    a_col = n * (Q * KC) + m % KC                                      # [BLOCK] A[n, 0, j]
    b_col = n * (NINV * KC) + m % KC                                   # [BLOCK] B[n, 0, j]
    for b in range(NINV):
        start = tl.load(FPTR + b)
        end = tl.load(FPTR + b + 1)
        acc = tl.zeros((BLOCK,), dtype=A.dtype.element_ty)
        for t in range(start, end):
            prod = tl.zeros((BLOCK,), dtype=A.dtype.element_ty) + tl.load(FCOEF + t)
            dprod = tl.zeros((BLOCK,), dtype=A.dtype.element_ty)
            for f in range(tl.load(FORD + t)):
                row = tl.load(FIDX + t * MAXF + f)
                prod, dprod = _times_row(prod, dprod, A, V, a_col + row * KC, mm, TANGENT)
            if TANGENT:
                acc += dprod
            else:
                acc += prod
        tl.store(B + b_col + b * KC, acc, mask=mm)


def contract_bwd(GB, A, V, GA, BPTR, BOUT, BOTH, BN, BCOEF, M, KC, Q, NINV, ROWS,
                 MAXF: tl.constexpr, BLOCK: tl.constexpr, TANGENT: tl.constexpr):
    """GA[n, q, j] = sum_{p in BPTR[q]:BPTR[q+1]} BCOEF[p] GB[n, BOUT[p], j] prod_{g < BN[p]} A[n, BOTH[p, g], j]
    for q < ROWS (each pair p is one factor q of one term, BOTH its other factors: the product rule);
    rows ROWS..Q-1, which no term reads, are written as zeros. ``TANGENT``: GA's derivative along V
    (A's tangent; GB held fixed), each product of other factors a dual number."""
    m = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mm = m < M
    n = m // KC
    a_col = n * (Q * KC) + m % KC
    b_col = n * (NINV * KC) + m % KC
    for q in range(Q):
        acc = tl.zeros((BLOCK,), dtype=A.dtype.element_ty)
        if q < ROWS:
            start = tl.load(BPTR + q)
            end = tl.load(BPTR + q + 1)
            for p in range(start, end):
                out = tl.load(BOUT + p)
                val = tl.load(GB + b_col + out * KC, mask=mm, other=0.0) * tl.load(BCOEF + p)
                dval = tl.zeros((BLOCK,), dtype=A.dtype.element_ty)
                for g in range(tl.load(BN + p)):
                    row = tl.load(BOTH + p * MAXF + g)
                    val, dval = _times_row(val, dval, A, V, a_col + row * KC, mm, TANGENT)
                if TANGENT:
                    acc += dval
                else:
                    acc += val
        tl.store(GA + a_col + q * KC, acc, mask=mm)
