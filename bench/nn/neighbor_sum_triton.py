"""The neighbour sum of the A-basis as one fused Triton kernel, forward and backward.

    out[i, q, n, c] = sum_{edges e = (j -> i)} Y[e, q] R[e, n] W[j, wl[q], c]       -> [N, Q, R, C]

Y [E, Q] is the angular basis (Cartesian monomials for CACE, e3nn's real spherical harmonics for
the baseline: the kernel takes either, so both descriptors run the same code), R [E, R] the radial
basis times the envelope, W [N, L, C] channel weights per sender atom j (read through the edge's
sender, never copied per edge), and wl [Q] the row of W each angular component reads (all 0 for
layer 0, where W is the sender's embedding; l(q) for the Bchi message, where the sender's weights
depend on l). It replaces the dense-layout batched matrix
products of ``neighbor_sum.py`` (same numbers; ``AtomicClusterExpansion.forward(graph,
neighbor_sum="triton")``): one program per (receiving atom, chunk of QB angular components) loops
over the atom's edges (the graph's edges are sorted by receiver) and accumulates its [QB, R, C]
tile in registers, so neither the [atoms, max_neighbours, .] tables nor any per-edge product tensor
is written to memory.

Backward, one program per (atom, chunk) again, its gradient tile loaded once, per edge:

    dY[e, q]    = sum_{n, c} g[i, q, n, c] R[e, n] W[j, wl[q], c]        (stored: the chunk owns q)
    dR[e, n]    = sum_{q, c} g[i, q, n, c] Y[e, q] W[j, wl[q], c]        (atomic add over chunks)
    dW[j, l, c] += sum_{q: wl[q] = l} sum_n g[i, q, n, c] Y[e, q] R[e, n] (atomic add into the sender's row)

(so float results can differ in the last bit from run to run; the per-atom versions store dR
once). The backward is itself differentiable, through the same two kernels: the sum is linear in
each of Y, R, W, so with T(g, Y, R, W) = <g, out(Y, R, W)> the backward is (dT/dY, dT/dR, dT/dW),
and the derivative of <vY, dY> + <vR, dR> + <vW, dW> (a force-loss training step's second
derivative) is

    d/dg = out(vY, R, W) + out(Y, vR, W) + out(Y, R, vW)
    d/dY = bwd(g, Y, vR, W).dY + bwd(g, Y, R, vW).dY        (and likewise for R and W)

three forward and three backward launches, none of them writing a per-edge product.

On CUDA tensors the kernels are compiled; on CPU tensors they run in Triton's interpreter (slow:
for parity tests on small graphs, which is how CI checks them without a GPU).
"""

import functools
import os

import numpy as np
import torch

from ..versions import FUSED_MIN_TRITON, INTERPRETER_MIN_TRITON_UNDER_NUMPY_2_4, dotted, major_minor

try:
    import triton
except ImportError:                      # the dense path needs no Triton; the fused one says so
    triton = None


def unavailable() -> str | None:
    """Why the fused kernels cannot run on any device here (None where they can), in one line: no
    Triton, or one older than the kernels are tested with (``FUSED_MIN_TRITON``)."""
    if triton is None:
        return ("the fused neighbour sum needs Triton (pip install triton); "
                "use the default dense path (backend 'eager' or 'compile')")
    if major_minor(triton.__version__) < FUSED_MIN_TRITON:
        return (f"the fused kernels need Triton {dotted(FUSED_MIN_TRITON)} or later (this is Triton "
                f"{triton.__version__}); upgrade it, or use the dense path (backend 'eager' or 'compile')")
    return None


def available() -> bool:
    """Triton is installed, in a version the kernels are tested with (``FUSED_MIN_TRITON``)."""
    return unavailable() is None


def interpreter_unusable() -> str | None:
    """Why Triton's interpreter cannot run the kernels here (None where it can, or where it is not
    chosen): before Triton 3.7 it fails every kernel under numpy 2.4 and later (``bench.versions``)."""
    if not available() or not interpreting():
        return None
    need = INTERPRETER_MIN_TRITON_UNDER_NUMPY_2_4
    if major_minor(np.__version__) < (2, 4) or major_minor(triton.__version__) >= need:
        return None
    return (f"Triton {triton.__version__}'s interpreter cannot run the fused kernels under numpy {np.__version__} "
            f"(it needs Triton {dotted(need)} or later there, or numpy below 2.4)")


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def interpreting() -> bool:
    """Triton's interpreter is chosen when Triton is first imported (``TRITON_INTERPRET=1``); it
    runs the kernels on CPU tensors (tests without a GPU)."""
    if triton is None:
        return False
    knobs = getattr(triton, "knobs", None)
    return bool(knobs.runtime.interpret) if knobs is not None else os.environ.get("TRITON_INTERPRET") == "1"


KERNELS = ("serial", "atomwise-split", "prefetch")
KERNEL_ENV = "CACE_BENCH_FUSED_KERNEL"
DEFAULT_POLICY = "auto"


def _split_rows(Q: int) -> tuple[int, int]:
    """(QA, QR2): v6 / v7 hold the gradient tile as rows [0, QA), QA the largest power of two <= Q,
    and [QA, Q) padded to QR2 (0 when Q is a power of two)."""
    QA = 1 << (int(Q).bit_length() - 1)
    return QA, (_next_pow2(Q - QA) if Q > QA else 0)


def auto_kernel(Q: int, R: int, C: int, L: int) -> str:
    """The version "auto" runs for a sum of shape (Q angular, R radial, C channels, L weight rows).

    Measured on an H200 (water, 12,288 atoms; results/gpu/NVIDIA-H200/diagnose-run): the per-atom
    backward with the next edge's rows prefetched (v7, "prefetch") was the fastest version for all
    four of the water preset's sums (CACE Bchi 3.36 ms against v6's 3.80 and v2's 4.29; the
    spherical Bchi sum 2.06, equal to v6, against v2's 3.49), both descriptors' tiles at most
    2,560 elements (Q split as 16 + 4 for CACE, not padded). Larger tiles (l_max 4, 16 channels:
    4,608) are unmeasured; there the one-chunk-per-program v2 ("serial") runs, as it did before.
    One rule for both descriptors, so neither gets a version chosen for the other's shape."""
    QA, QR2 = _split_rows(Q)
    tile = (QA + QR2) * max(_next_pow2(R), 2) * max(_next_pow2(C), 2)
    return "prefetch" if tile <= 2560 else "serial"


def parse_policy(policy: str) -> tuple[str, dict]:
    """``$CACE_BENCH_FUSED_KERNEL``: comma-separated items, each a version ("auto" or one of
    ``KERNELS``) for every shape, or ``QxRxCxL=version`` for one shape (``bench.benchmarks.edge_sum
    --pick`` writes the fastest per shape so). Returns (fallback, {(Q, R, C, L): version})."""
    fallback, shapes = DEFAULT_POLICY, {}
    for item in filter(None, (x.strip() for x in policy.split(","))):
        shape, _, version = item.rpartition("=")
        if version not in KERNELS + ("auto",):
            raise ValueError(f"{KERNEL_ENV}: {version!r} is not a fused kernel version; known: auto, "
                             f"{', '.join(KERNELS)} (an item is VERSION or QxRxCxL=VERSION)")
        if not shape:
            fallback = version
            continue
        try:
            key = tuple(int(v) for v in shape.split("x"))
        except ValueError:
            key = ()
        if len(key) != 4:
            raise ValueError(f"{KERNEL_ENV}: {shape!r} is not a shape QxRxCxL (e.g. 20x6x9x4=serial)")
        shapes[key] = version
    return fallback, shapes


def selected_kernel() -> str:
    """The kernel policy of the model's fused sums: ``$CACE_BENCH_FUSED_KERNEL`` where set (so that a
    benchmark can time the model with a version, or with the fastest per shape; the timing task
    records it), else "auto" (``auto_kernel``). Checked here, so a bad value fails at once."""
    policy = os.environ.get(KERNEL_ENV) or DEFAULT_POLICY
    parse_policy(policy)
    return policy


def kernel_for(Q: int, R: int, C: int, L: int, policy: str | None = None) -> str:
    """The version that runs a sum of this shape under ``policy`` (default ``selected_kernel()``)."""
    fallback, shapes = parse_policy(policy or selected_kernel())
    version = shapes.get((Q, R, C, L), fallback)
    return auto_kernel(Q, R, C, L) if version == "auto" else version


@functools.cache
def _kernels(version: str):
    """(forward, backward) kernels of ``version``, compiled for CUDA or interpreted (``interpreting()``):

    serial   one edge at a time per (atom, chunk of QB angular components), the tile reduced per
             edge; the backward adds dR and dW over chunks atomically (v2, measured on an H100)
    atomwise-split  serial's forward; the backward one program per atom holding the atom's whole
             gradient tile, as two tiles, rows [0, QA) and [QA, Q) with QA the largest power of two
             <= Q (no padding of CACE's Q = 20), each edge's dY and dR rows stored once, dW added
             into the sender's row atomically (v6; v4 "atomwise", one tile padded to a power of two,
             was removed: v6 is v4 where Q is a power of two and was faster for every sum on an H200)
    prefetch atomwise-split with the next edge's rows loaded before the current edge is reduced (v7)
    """
    from . import edge_sum_kernels as k

    if version == "serial":
        return triton.jit(k.edge_sum_fwd), triton.jit(k.edge_sum_bwd)
    if version in ("atomwise-split", "prefetch"):       # one kernel, PREFETCH set by launch_config
        return triton.jit(k.edge_sum_fwd), triton.jit(k.edge_sum_bwd_split)
    raise ValueError(f"unknown fused kernel {version!r}; known: {', '.join(KERNELS)}")


def check_device(device) -> None:
    """Raise a one-line RuntimeError where the fused kernels cannot run on ``device``."""
    if why := unavailable():             # first: no device can help
        raise RuntimeError(why)
    if torch.device(device).type == "cuda":
        return
    if not interpreting():
        raise RuntimeError(f"the fused neighbour sum runs on CUDA (device is {torch.device(device)}); on the CPU "
                           "only in Triton's interpreter, for tests: set TRITON_INTERPRET=1 before Python starts")
    if why := interpreter_unusable():
        raise RuntimeError(f"{why}; upgrade Triton or downgrade numpy, or use the dense path "
                           "(backend 'eager' or 'compile')")


QB = 4      # angular components per program: 20 = 5 x 4 (CACE, l_max 3), 16 = 4 x 4 (spherical): no padding


def launch_config(which: str, version: str, Q: int, NR: int, C: int, L: int,
                  num_warps: int | None = None) -> tuple[dict, int, bool]:
    """(constexpr sizes, warps, whether the grid has a chunk axis) of kernel ``which`` ("fwd" or
    "bwd") of ``version`` for a sum of shape (Q, NR, C, L): the one place that sizes launches (the
    launches below and ``scripts/compile_kernels.py``). R and C are padded to powers of two for
    every version and both descriptors; Q is split into chunks of QB where the grid has a chunk
    axis (no padding of 20 or 16), split into two power-of-two tiles by v6 and v7. ``num_warps``:
    another launch size, for the kernel benchmark."""
    meta = dict(Q=Q, NR=NR, CW=C, L=L, QB=QB, RP=max(_next_pow2(NR), 2), CP=max(_next_pow2(C), 2))
    chunk_tile = QB * meta["RP"] * meta["CP"]
    warps = max(1, min(4, chunk_tile // 256))           # small tiles, few warps: reductions stay in a warp
    if which == "fwd":                                   # v2's forward
        return meta, num_warps or warps, True
    if version == "serial":
        return meta, num_warps or warps, True
    del meta["QB"]
    meta["LP"] = _next_pow2(L)
    if version in ("atomwise-split", "prefetch"):
        QA, QR2 = _split_rows(Q)
        meta.update(QA=QA, QR2=max(QR2, 1), HAS_REST=QR2 > 0, PREFETCH=version == "prefetch")
        tile = (QA + QR2) * meta["RP"] * meta["CP"]
        return meta, num_warps or max(1, min(4, tile // 1024)), False
    raise ValueError(f"unknown fused kernel {version!r}; known: {', '.join(KERNELS)}")


def _shape(Y, R, W) -> tuple[int, int, int, int]:
    return Y.shape[1], R.shape[1], W.shape[2], W.shape[1]


def launch_forward(Y, R, W, senders, wl, rowptr, out, version: str | None = None,
                   num_warps: int | None = None) -> None:
    """Write out [N, Q, R, C] (every element) from contiguous Y [E, Q], R [E, R], W [N_src, L, C] of
    one dtype and device and senders [E] (``version`` default ``kernel_for`` the shape;
    ``num_warps``: ``launch_config``)."""
    Q, NR, C, L = _shape(Y, R, W)
    version = version or kernel_for(Q, NR, C, L)
    meta, warps, _ = launch_config("fwd", version, Q, NR, C, L, num_warps)
    fwd, _ = _kernels(version)
    fwd[(rowptr.shape[0] - 1, -(-Q // QB))](Y, R, W, senders, wl, rowptr, out, num_warps=warps, **meta)


def launch_backward(grad, Y, R, W, senders, wl, rowptr, gY, gR, gW, version: str | None = None,
                    num_warps: int | None = None) -> None:
    """Write the three gradients, every element: gW (per sender atom, W's shape) always collects
    by atomic adds, gR too in the serial version (over chunks), so they are zeroed here first."""
    Q, NR, C, L = _shape(Y, R, W)
    version = version or kernel_for(Q, NR, C, L)
    meta, warps, chunked = launch_config("bwd", version, Q, NR, C, L, num_warps)
    _, bwd = _kernels(version)
    gW.zero_()
    if version == "serial":
        gR.zero_()
    grid = (rowptr.shape[0] - 1, -(-Q // QB)) if chunked else (rowptr.shape[0] - 1,)
    bwd[grid](grad, Y, R, W, senders, wl, rowptr, gY, gR, gW, num_warps=warps, **meta)


# The kernels as PyTorch custom operators: opaque to torch.compile (which compiles the rest of the
# model around them, dynamic shapes and CUDA graphs included), differentiable once.
@torch.library.custom_op("cace_bench::edge_sum", mutates_args=())
def _edge_sum_op(Y: torch.Tensor, R: torch.Tensor, W: torch.Tensor, senders: torch.Tensor, wl: torch.Tensor,
                 rowptr: torch.Tensor) -> torch.Tensor:
    Y, R, W = Y.contiguous(), R.contiguous(), W.contiguous()
    n_atoms = rowptr.shape[0] - 1
    out = Y.new_empty(n_atoms, Y.shape[1], R.shape[1], W.shape[2])            # [N, Q, R, C]
    if n_atoms:
        launch_forward(Y, R, W, senders.contiguous(), wl, rowptr, out)
    return out


@_edge_sum_op.register_fake
def _(Y, R, W, senders, wl, rowptr):
    return Y.new_empty(rowptr.shape[0] - 1, Y.shape[1], R.shape[1], W.shape[2])


@torch.library.custom_op("cace_bench::edge_sum_backward", mutates_args=())
def _edge_sum_backward_op(grad: torch.Tensor, Y: torch.Tensor, R: torch.Tensor, W: torch.Tensor,
                          senders: torch.Tensor, wl: torch.Tensor,
                          rowptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    Y, R, W = Y.contiguous(), R.contiguous(), W.contiguous()
    gY, gR, gW = torch.empty_like(Y), torch.empty_like(R), torch.empty_like(W)    # launch_backward zeroes gW
    n_atoms = rowptr.shape[0] - 1
    if n_atoms and Y.shape[0]:
        launch_backward(grad.contiguous(), Y, R, W, senders.contiguous(), wl, rowptr, gY, gR, gW)
    return gY, gR, gW


@_edge_sum_backward_op.register_fake
def _(grad, Y, R, W, senders, wl, rowptr):
    return torch.empty_like(Y), torch.empty_like(R), torch.empty_like(W)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    Y, R, W, senders, wl, rowptr = ctx.saved_tensors
    gY, gR, gW = _edge_sum_backward_op(grad, Y, R, W, senders, wl, rowptr)
    return gY, gR, gW, None, None, None


_edge_sum_op.register_autograd(_backward, setup_context=_setup_context)


def _setup_backward_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)
    ctx.set_materialize_grads(False)                 # an unused gradient (dW of layer 0) is None


def _backward_backward(ctx, vY, vR, vW):
    """The module docstring's second derivative: cotangents (vY, vR, vW) of (dY, dR, dW) to
    (g, Y, R, W), from the forward and backward operators (so differentiable again)."""
    g, Y, R, W, senders, wl, rowptr = ctx.saved_tensors
    dg = dY = dR = dW = None

    def add(total, term):
        return term if total is None else total + term

    for v, args in ((vY, (vY, R, W)), (vR, (Y, vR, W)), (vW, (Y, R, vW))):
        if v is None:
            continue
        if ctx.needs_input_grad[0]:
            dg = add(dg, _edge_sum_op(*args, senders, wl, rowptr))
        bY, bR, bW = _edge_sum_backward_op(g, *args, senders, wl, rowptr)
        if v is not vY:
            dY = add(dY, bY)
        if v is not vR:
            dR = add(dR, bR)
        if v is not vW:
            dW = add(dW, bW)
    return dg, dY, dR, dW, None, None, None


_edge_sum_backward_op.register_autograd(_backward_backward, setup_context=_setup_backward_context)


def receiver_rowptr(receivers: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """CSR row pointers [N + 1] (int64) of edges sorted by receiver: atom i owns edges
    rowptr[i]:rowptr[i+1]. A binary search, not ``bincount``: no device-to-host sync (CUDA graphs)."""
    atoms = torch.arange(n_atoms + 1, device=receivers.device, dtype=receivers.dtype)
    return torch.searchsorted(receivers, atoms)


def csr_rows(ptr: torch.Tensor, entries: int | None = None) -> torch.Tensor:
    """The row of every entry of a CSR table from its row pointers [rows + 1] -> [entries] (the
    inverse of ``receiver_rowptr``: the receiver of every edge). ``entries``: their number where
    the caller knows it (a tensor's shape); without it a GPU waits to read it (a host sync)."""
    return torch.repeat_interleave(torch.arange(ptr.shape[0] - 1, device=ptr.device), ptr.diff(),
                                   output_size=entries)


def edge_sum(Y: torch.Tensor, R: torch.Tensor, W: torch.Tensor, senders: torch.Tensor, wl: torch.Tensor,
             rowptr: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """out[i, q, n, c] = sum_{e = (j -> i)} Y[e, q] R[e, n] W[j, wl[q], c]  -> [N, Q, R, C] (module docstring).

    Y [E, Q], R [E, R], W [N_src, L, C] (a row per sender atom) of one floating dtype on one device;
    senders [E] int64 (rows of W); wl [Q] int64 in [0, L); rowptr [n_atoms + 1] from
    ``receiver_rowptr`` (edges sorted by receiver)."""
    if not torch.compiler.is_compiling():      # checked before compiling (bench.backends), not traced
        check_device(Y.device)
    return _edge_sum_op(Y, R, W, senders, wl, rowptr)


def edge_sum_reference(Y, R, W, senders, wl, receivers, n_atoms: int) -> torch.Tensor:
    """The same sum in plain PyTorch, per edge (memory O(E Q R C): for tests on small graphs)."""
    prod = Y[:, :, None, None] * R[:, None, :, None] * W[senders][:, wl, None, :]     # [E, Q, R, C]
    return prod.new_zeros(n_atoms, *prod.shape[1:]).index_add(0, receivers, prod)
