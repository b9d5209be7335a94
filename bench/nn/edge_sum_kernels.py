"""Triton kernels of the fused neighbour sum; the equations, the layout and their autograd wrapper
are in ``neighbor_sum_triton.py`` (this module imports Triton unconditionally, so it is loaded only
when the fused path runs).

The per-edge weights are read through the edge's sender: W [N, L, C] is a table per atom and
SND [E] the sender of each edge, so edge e uses W[SND[e]] (the sender's embedding in layer 0, its
l-dependent weights in the Bchi message). No [E, L, C] copy is made (10 kB an atom for the water
preset's Bchi sum, the largest tensor the fused path kept for the backward), and dW is added into
the sender's row with atomic adds (the gather's backward, which PyTorch also does with atomics).

Versions (``neighbor_sum_triton.KERNELS``; measured in results/gpu/NVIDIA-H100-80GB-HBM3 and
results/gpu/NVIDIA-H200):

- serial (v2): grid (atoms, chunks of QB angular components). Program (i, k) owns
  out[i, kQB:(k+1)QB, :, :] and loops over atom i's edges (CSR: rowptr[i]:rowptr[i+1]) one at a
  time, its [QB, RP, CP] tile in registers; the backward adds dR and dW over chunks atomically.
- atomwise-split (v6) and prefetch (v7, the default for the water preset's sums): one backward
  program per atom, below.
- blocked (v3: EB edges at a time, the sums as tl.dot products) was removed: slower than v2 for
  every sum on an H100 and on an H200 (tl.dot pads R = 6 to 16).
"""

import triton
import triton.language as tl


def edge_sum_fwd(Y, Rb, W, SND, WL, ROWPTR, OUT, Q, NR, CW,
                 L: tl.constexpr, QB: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)                  # int64: i Q R C passes 2^31 near 0.5-2 M atoms
    q = tl.program_id(1) * QB + tl.arange(0, QB)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    c = tl.arange(0, CP)
    qm, nm, cm = q < Q, n < NR, c < CW
    wl = tl.load(WL + q, mask=qm, other=0)
    w_off = wl[:, None] * CW + c[None, :]                                   # [QB, CP]
    w_mask = qm[:, None] & cm[None, :]
    acc = tl.zeros((QB, RP, CP), dtype=Y.dtype.element_ty)
    for e in range(start, end):
        snd = tl.load(SND + e)
        y = tl.load(Y + e * Q + q, mask=qm, other=0.0)                      # [QB]
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)                    # [RP]
        w = tl.load(W + snd * (L * CW) + w_off, mask=w_mask, other=0.0)    # [QB, CP]: the sender's row
        acc += (y[:, None] * w)[:, None, :] * r[None, :, None]
    out_off = i * (Q * NR * CW) + q[:, None, None] * (NR * CW) + n[None, :, None] * CW + c[None, None, :]
    tl.store(OUT + out_off, acc, mask=qm[:, None, None] & nm[None, :, None] & cm[None, None, :])


def edge_sum_bwd(G, Y, Rb, W, SND, WL, ROWPTR, GY, GR, GW, Q, NR, CW,
                 L: tl.constexpr, QB: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    """GY rows of this chunk are stored; GR and GW (rows per sender atom) collect every chunk's share
    by atomic adds (they must start at zero)."""
    i = tl.program_id(0).to(tl.int64)                  # int64: i Q R C passes 2^31 near 0.5-2 M atoms
    q = tl.program_id(1) * QB + tl.arange(0, QB)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    c = tl.arange(0, CP)
    qm, nm, cm = q < Q, n < NR, c < CW
    wl = tl.load(WL + q, mask=qm, other=0)
    w_off = wl[:, None] * CW + c[None, :]
    w_mask = qm[:, None] & cm[None, :]
    g_off = i * (Q * NR * CW) + q[:, None, None] * (NR * CW) + n[None, :, None] * CW + c[None, None, :]
    g = tl.load(G + g_off, mask=qm[:, None, None] & nm[None, :, None] & cm[None, None, :], other=0.0)
    for e in range(start, end):
        snd = tl.load(SND + e)
        y = tl.load(Y + e * Q + q, mask=qm, other=0.0)
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)
        w = tl.load(W + snd * (L * CW) + w_off, mask=w_mask, other=0.0)
        gr_ = tl.sum(g * r[None, :, None], axis=1)                         # [QB, CP]: sum_n g R
        tl.store(GY + e * Q + q, tl.sum(gr_ * w, axis=1), mask=qm)
        gw_ = tl.sum(g * (y[:, None] * w)[:, None, :], axis=2)             # [QB, RP]: sum_c g Y W
        tl.atomic_add(GR + e * NR + n, tl.sum(gw_, axis=0), mask=nm)
        tl.atomic_add(GW + snd * (L * CW) + w_off, gr_ * y[:, None], mask=w_mask)   # sum_n g Y R


# ---- the per-atom backward (v6, v7): one program per atom holding the atom's whole gradient tile
#
# v2's backward has a program per (atom, chunk of QB angular components), so every edge's dR and dW
# rows are summed over the chunks by global atomic adds: for the water preset's Bchi sum, 5 chunks
# x (R + QB C) atomics per edge, about 3e8 atomic operations at 12,288 atoms. Here program i loads
# g[i] once and, per edge of atom i, forms
#
#     T[q, c]  = sum_n g[q, n, c] R[e, n]              dY[e, q]     = sum_c T[q, c] W[j, wl[q], c]
#     U[q, n]  = sum_c g[q, n, c] W[j, wl[q], c]       dR[e, n]     = sum_q Y[e, q] U[q, n]
#                                                      dW[j, l, c] += sum_{q: wl[q] = l} Y[e, q] T[q, c]
#
# (j = SND[e], the edge's sender)
#
# and stores the edge's dY and dR rows once (no atomics); dW goes to the sender's row of GW by atomic
# adds (GW must start at zero).
# The forward is v2's. Measured and removed (results/gpu/NVIDIA-H200/atomwise-run and
# diagnose-run): v4 "atomwise" (one tile, Q padded to a power of two: CACE's 20 to 32, a tilt
# against CACE; removed after v6, which is v4 where Q is a power of two, beat it for every sum),
# four edges per loop trip ("atomwise-u4", commit 04573e0) and a v5 looping over 4-component chunks
# per edge ("chunkloop", 079e6b0), slower on an H200 for every sum.

@triton.jit
def _gradient_tile(g_base, WL, q, Q, NR, CW, n, c, lrow, nm, cm):
    """Rows q of atom i's output gradient (``g_base``: its first element) and what an edge needs to
    use them: (in range [QT], g [QT, RP, CP], onehot [QT, LP] (the row of W each q reads), the
    offsets [QT, CP] of those W entries in an edge's row, their mask). Out-of-range q read W row 0;
    their Y is loaded as 0, so they add nothing."""
    qm = q < Q
    wl = tl.load(WL + q, mask=qm, other=0)
    g = tl.load(g_base + q[:, None, None] * (NR * CW) + n[None, :, None] * CW + c[None, None, :],
                mask=qm[:, None, None] & nm[None, :, None] & cm[None, None, :], other=0.0)
    onehot = (wl[:, None] == lrow[None, :]).to(g.dtype)
    return qm, g, onehot, wl[:, None] * CW + c[None, :], qm[:, None] & cm[None, :]


# ---- v6, "atomwise-split": the tile without padding Q to a power of two
#
# One [QP, RP, CP] tile with QP = Q rounded up to a power of two (v4) pads CACE's Q = 20 to 32 (1.6x
# the work, a tile across 4 warps) and leaves the spherical 16 as it is: on an H200 that was 7%
# slower than v2 for CACE's Bchi sum and 1.6x faster for the spherical one (a tilt). Here g[i] is
# held as two tiles, rows [0, QA) and [QA, Q) with QA the largest power of two <= Q and the rest
# padded to QR2 = next power of two of Q - QA (20 = 16 + 4, 35 = 32 + 4 (3 padded), 16 = 16 + none),
# each edge's dR and dW summed over the two tiles in registers.

@triton.jit
def _split_part(g, y, w, r, onehot, GY_ROW, q, qm):
    """One tile's share of an edge's gradients: stores dY for its rows q (GY_ROW: the edge's row of
    dY), returns (dR part [RP], dW part [LP, CP])."""
    t = tl.sum(g * r[None, :, None], axis=1)                                        # [QT, CP]
    tl.store(GY_ROW + q, tl.sum(t * w, axis=1), mask=qm)
    gr = tl.sum(tl.sum(g * (y[:, None] * w)[:, None, :], axis=2), axis=0)           # [RP]
    gw = tl.sum((t * y[:, None])[:, None, :] * onehot[:, :, None], axis=0)          # [LP, CP]
    return gr, gw


# ---- v7, "prefetch": v6 with the next edge's rows loaded before the current edge is reduced
# (edge_sum_bwd_split with PREFETCH on)
#
# On an H200 v6's CACE Bchi backward took 3.8 ms against a 0.17 ms floor: about 2.9 us per edge per
# program, a chain of global loads (Y, R, W of the edge) then reductions then stores, with 5 programs
# (10 warps) per SM at 177 registers. Here the loads of edge e + 1 are issued before edge e's
# reductions, so their latency overlaps arithmetic instead of preceding it (registers: one more set
# of rows, QA + QR2 + RP + (QA + QR2) CP values).

@triton.jit
def _edge_rows(e, Y, Rb, W, SND, Q, NR, L: tl.constexpr, CW, n, nm, qa, qam, wa_off, wa_mask, qb, qbm, wb_off,
               wb_mask, HAS_REST: tl.constexpr):
    """Edge e's sender, radial row [RP], Y rows and the sender's W tiles of the two parts (e must be
    an edge of the graph)."""
    snd = tl.load(SND + e)
    r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)
    ya = tl.load(Y + e * Q + qa, mask=qam, other=0.0)
    wa = tl.load(W + snd * (L * CW) + wa_off, mask=wa_mask, other=0.0)
    if HAS_REST:
        yb = tl.load(Y + e * Q + qb, mask=qbm, other=0.0)
        wb = tl.load(W + snd * (L * CW) + wb_off, mask=wb_mask, other=0.0)
    else:
        yb = tl.zeros(qb.shape, dtype=ya.dtype)
        wb = tl.zeros(wb_off.shape, dtype=wa.dtype)
    return snd, r, ya, wa, yb, wb


def edge_sum_bwd_split(G, Y, Rb, W, SND, WL, ROWPTR, GY, GR, GW, Q, NR, CW, L: tl.constexpr, QA: tl.constexpr,
                       QR2: tl.constexpr, HAS_REST: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr,
                       LP: tl.constexpr, PREFETCH: tl.constexpr):
    """v6 (PREFETCH off) and v7 (on: edge e + 1's rows are loaded before edge e is reduced)."""
    i = tl.program_id(0).to(tl.int64)                  # int64: i Q R C passes 2^31 near 0.5-2 M atoms
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    c = tl.arange(0, CP)
    lrow = tl.arange(0, LP)
    nm, cm = n < NR, c < CW
    g_base = G + i * (Q * NR * CW)
    gw_off = lrow[:, None] * CW + c[None, :]                                        # [LP, CP]
    gw_mask = (lrow < L)[:, None] & cm[None, :]
    # tile A: rows [0, QA), all present; tile B: rows [QA, Q), padded to QR2 (QR2 = 1, all masked,
    # when Q is a power of two: HAS_REST off)
    qa = tl.arange(0, QA)
    qam, ga, oha, wa_off, wa_mask = _gradient_tile(g_base, WL, qa, Q, NR, CW, n, c, lrow, nm, cm)
    qb = QA + tl.arange(0, QR2)
    qbm, gb, ohb, wb_off, wb_mask = _gradient_tile(g_base, WL, qb, Q, NR, CW, n, c, lrow, nm, cm)
    if PREFETCH:
        # the rows of edge e + 1, clamped to a real edge: the last edge's "next" rows, and those of
        # an atom without edges (edge start - 1, or 0), are loaded and never used (the graph has edges)
        first = tl.maximum(tl.minimum(start, end - 1), 0)
        s_n, r_n, ya_n, wa_n, yb_n, wb_n = _edge_rows(first, Y, Rb, W, SND, Q, NR, L, CW, n, nm, qa, qam, wa_off,
                                                      wa_mask, qb, qbm, wb_off, wb_mask, HAS_REST)
    for e in range(start, end):
        if PREFETCH:
            snd, r, ya, wa, yb, wb = s_n, r_n, ya_n, wa_n, yb_n, wb_n
            s_n, r_n, ya_n, wa_n, yb_n, wb_n = _edge_rows(tl.minimum(e + 1, end - 1), Y, Rb, W, SND, Q, NR, L, CW,
                                                          n, nm, qa, qam, wa_off, wa_mask, qb, qbm, wb_off, wb_mask,
                                                          HAS_REST)
        else:
            snd, r, ya, wa, yb, wb = _edge_rows(e, Y, Rb, W, SND, Q, NR, L, CW, n, nm, qa, qam, wa_off, wa_mask, qb,
                                                qbm, wb_off, wb_mask, HAS_REST)
        gr, gw = _split_part(ga, ya, wa, r, oha, GY + e * Q, qa, qam)
        if HAS_REST:
            grb, gwb = _split_part(gb, yb, wb, r, ohb, GY + e * Q, qb, qbm)
            gr += grb
            gw += gwb
        tl.store(GR + e * NR + n, gr, mask=nm)
        tl.atomic_add(GW + snd * (L * CW) + gw_off, gw, mask=gw_mask)
