"""Triton kernels of the fused neighbour sum; the equations, the layout and their autograd wrapper
are in ``neighbor_sum_triton.py`` (this module imports Triton unconditionally, so it is loaded only
when the fused path runs).

Versions (``neighbor_sum_triton.KERNELS``; measured in results/gpu/NVIDIA-H100-80GB-HBM3 and
results/gpu/NVIDIA-H200):

- serial (v2): grid (atoms, chunks of QB angular components). Program (i, k) owns
  out[i, kQB:(k+1)QB, :, :] and loops over atom i's edges (CSR: rowptr[i]:rowptr[i+1]) one at a
  time, its [QB, RP, CP] tile in registers; the backward adds dR and dW over chunks atomically.
- blocked (v3): EB edges at a time, the sums over edges and radial index as tl.dot products; one
  backward program per atom writes its edges' gradients once. Slower in the model on an H100:
  tl.dot pads the water preset's R = 6 to 16.
- atomwise-split (v6) and prefetch (v7, the default for the water preset's sums): one backward
  program per atom, below.
"""

import triton
import triton.language as tl


def edge_sum_fwd(Y, Rb, W, WL, ROWPTR, OUT, Q, NR, CW,
                 L: tl.constexpr, QB: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    i = tl.program_id(0)
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
        y = tl.load(Y + e * Q + q, mask=qm, other=0.0)                      # [QB]
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)                    # [RP]
        w = tl.load(W + e * (L * CW) + w_off, mask=w_mask, other=0.0)      # [QB, CP]
        acc += (y[:, None] * w)[:, None, :] * r[None, :, None]
    out_off = i * (Q * NR * CW) + q[:, None, None] * (NR * CW) + n[None, :, None] * CW + c[None, None, :]
    tl.store(OUT + out_off, acc, mask=qm[:, None, None] & nm[None, :, None] & cm[None, None, :])


def edge_sum_bwd(G, Y, Rb, W, WL, ROWPTR, GY, GR, GW, Q, NR, CW,
                 L: tl.constexpr, QB: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    """GY rows of this chunk are stored; GR and GW collect every chunk's share by atomic adds (they
    must start at zero)."""
    i = tl.program_id(0)
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
        y = tl.load(Y + e * Q + q, mask=qm, other=0.0)
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)
        w = tl.load(W + e * (L * CW) + w_off, mask=w_mask, other=0.0)
        gr_ = tl.sum(g * r[None, :, None], axis=1)                         # [QB, CP]: sum_n g R
        tl.store(GY + e * Q + q, tl.sum(gr_ * w, axis=1), mask=qm)
        gw_ = tl.sum(g * (y[:, None] * w)[:, None, :], axis=2)             # [QB, RP]: sum_c g Y W
        tl.atomic_add(GR + e * NR + n, tl.sum(gw_, axis=0), mask=nm)
        tl.atomic_add(GW + e * (L * CW) + w_off, gr_ * y[:, None], mask=w_mask)   # sum_n g Y R


# ---- v3, "blocked": blocks of EB edges at a time, the sums over edges and over n as matrix products
#
# The angular index and the channel index are flattened into one axis j = (q, c) of QB * CP lanes
# (chunk k of QB angular components), so that each edge block is two small matrix products:
#
#     forward   acc[n, j]  += sum_e R[e, n] V[e, j]          V[e, (q, c)] = Y[e, q] W[e, wl[q], c]
#     backward  T[e, j]     = sum_n R[e, n] g[n, j]          (g: atom i's output gradient, chunk k)
#               dR[e, n]   += sum_j V[e, j] g[n, j]
#               dY[e, q]    = sum_c T[e, (q, c)] W[e, wl[q], c]
#               dW[e, l, c] += sum_{q: wl[q] = l} Y[e, q] T[e, (q, c)]
#
# One program per atom owns its edges' gradient rows (no atomics, deterministic); the forward keeps
# v2's grid (atom, chunk). tl.dot needs every side >= 16: RP, EB and QB * CP are at least 16.

@triton.jit
def _lanes(k, Q, CW, QB: tl.constexpr, CP: tl.constexpr):
    """Flattened lanes j = (q, c) of chunk k: q [QB*CP], c [QB*CP], in-range mask."""
    j = tl.arange(0, QB * CP)
    q = k * QB + j // CP
    c = j % CP
    return q, c, (q < Q) & (c < CW)


def edge_sum_fwd_blocked(Y, Rb, W, WL, ROWPTR, OUT, Q, NR, CW, L: tl.constexpr, QB: tl.constexpr,
                         RP: tl.constexpr, CP: tl.constexpr, EB: tl.constexpr, PRECISION: tl.constexpr):
    i = tl.program_id(0)
    q, c, jm = _lanes(tl.program_id(1), Q, CW, QB, CP)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    nm = n < NR
    w_col = tl.load(WL + q, mask=q < Q, other=0) * CW + c                       # [J]: W column of lane j
    acc = tl.zeros((RP, QB * CP), dtype=Y.dtype.element_ty)
    for e0 in range(start, end, EB):
        e = e0 + tl.arange(0, EB)
        em = e < end
        r = tl.load(Rb + e[:, None] * NR + n[None, :], mask=em[:, None] & nm[None, :], other=0.0)        # [EB, RP]
        y = tl.load(Y + e[:, None] * Q + q[None, :], mask=em[:, None] & jm[None, :], other=0.0)          # [EB, J]
        w = tl.load(W + e[:, None] * (L * CW) + w_col[None, :], mask=em[:, None] & jm[None, :], other=0.0)
        acc = tl.dot(tl.trans(r), y * w, acc, input_precision=PRECISION, out_dtype=Y.dtype.element_ty)  # [RP, J]
    out_off = i * (Q * NR * CW) + n[:, None] * CW + q[None, :] * (NR * CW) + c[None, :]
    tl.store(OUT + out_off, acc, mask=nm[:, None] & jm[None, :])


def edge_sum_bwd_blocked(G, Y, Rb, W, WL, ROWPTR, GY, GR, GW, Q, NR, CW, L: tl.constexpr, QB: tl.constexpr,
                         RP: tl.constexpr, CP: tl.constexpr, EB: tl.constexpr, PRECISION: tl.constexpr,
                         NQB: tl.constexpr, LP: tl.constexpr):
    """Every gradient row of atom i's edges is written once, by this program (GY, GR, GW need no
    zeroing)."""
    i = tl.program_id(0)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    nm = n < NR
    lrow = tl.arange(0, LP)
    cc = tl.arange(0, CP)
    g_base = G + i * (Q * NR * CW)
    for e0 in range(start, end, EB):
        e = e0 + tl.arange(0, EB)
        em = e < end
        r = tl.load(Rb + e[:, None] * NR + n[None, :], mask=em[:, None] & nm[None, :], other=0.0)        # [EB, RP]
        gr = tl.zeros((EB, RP), dtype=Y.dtype.element_ty)
        gw = tl.zeros((EB, LP, CP), dtype=Y.dtype.element_ty)
        for k in range(NQB):
            q, c, jm = _lanes(k, Q, CW, QB, CP)
            wl = tl.load(WL + q, mask=q < Q, other=0)                                                     # [J]
            g = tl.load(g_base + n[:, None] * CW + q[None, :] * (NR * CW) + c[None, :],
                        mask=nm[:, None] & jm[None, :], other=0.0)                                        # [RP, J]
            y = tl.load(Y + e[:, None] * Q + q[None, :], mask=em[:, None] & jm[None, :], other=0.0)      # [EB, J]
            w = tl.load(W + e[:, None] * (L * CW) + (wl * CW + c)[None, :], mask=em[:, None] & jm[None, :],
                        other=0.0)
            t = tl.dot(r, g, input_precision=PRECISION, out_dtype=Y.dtype.element_ty)                     # [EB, J]
            gr = tl.dot(y * w, tl.trans(g), gr, input_precision=PRECISION,
                        out_dtype=Y.dtype.element_ty)                                                     # [EB, RP]
            qk = k * QB + tl.arange(0, QB)
            gy = tl.sum(tl.reshape(t * w, (EB, QB, CP)), axis=2)                                         # [EB, QB]
            tl.store(GY + e[:, None] * Q + qk[None, :], gy, mask=em[:, None] & (qk < Q)[None, :])
            wl_k = tl.load(WL + qk, mask=qk < Q, other=LP)                    # padded q match no row
            onehot = (wl_k[:, None] == lrow[None, :]).to(Y.dtype.element_ty)                           # [QB, LP]
            yt = tl.reshape(y * t, (EB, QB, CP))
            gw += tl.sum(yt[:, :, None, :] * onehot[None, :, :, None], axis=1)                          # [EB, LP, CP]
        tl.store(GR + e[:, None] * NR + n[None, :], gr, mask=em[:, None] & nm[None, :])
        gw_off = e[:, None, None] * (L * CW) + lrow[None, :, None] * CW + cc[None, None, :]
        tl.store(GW + gw_off, gw, mask=em[:, None, None] & (lrow < L)[None, :, None] & (cc < CW)[None, None, :])


# ---- the per-atom backward (v6, v7): one program per atom holding the atom's whole gradient tile
#
# v2's backward has a program per (atom, chunk of QB angular components), so every edge's dR and dW
# rows are summed over the chunks by global atomic adds: for the water preset's Bchi sum, 5 chunks
# x (R + QB C) atomics per edge, about 3e8 atomic operations at 12,288 atoms. Here program i loads
# g[i] once and, per edge of atom i, forms
#
#     T[q, c]  = sum_n g[q, n, c] R[e, n]              dY[e, q]    = sum_c T[q, c] W[e, wl[q], c]
#     U[q, n]  = sum_c g[q, n, c] W[e, wl[q], c]       dR[e, n]    = sum_q Y[e, q] U[q, n]
#                                                      dW[e, l, c] = sum_{q: wl[q] = l} Y[e, q] T[q, c]
#
# and stores the three gradient rows once: no atomics, deterministic, nothing needs zeroing.
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


def edge_sum_bwd_split(G, Y, Rb, W, WL, ROWPTR, GY, GR, GW, Q, NR, CW, L: tl.constexpr, QA: tl.constexpr,
                       QR2: tl.constexpr, HAS_REST: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr,
                       LP: tl.constexpr):
    i = tl.program_id(0)
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
    for e in range(start, end):
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)                            # [RP]
        ya = tl.load(Y + e * Q + qa, mask=qam, other=0.0)
        wa = tl.load(W + e * (L * CW) + wa_off, mask=wa_mask, other=0.0)
        gr, gw = _split_part(ga, ya, wa, r, oha, GY + e * Q, qa, qam)
        if HAS_REST:
            yb = tl.load(Y + e * Q + qb, mask=qbm, other=0.0)
            wb = tl.load(W + e * (L * CW) + wb_off, mask=wb_mask, other=0.0)
            grb, gwb = _split_part(gb, yb, wb, r, ohb, GY + e * Q, qb, qbm)
            gr += grb
            gw += gwb
        tl.store(GR + e * NR + n, gr, mask=nm)
        tl.store(GW + e * (L * CW) + gw_off, gw, mask=gw_mask)


# ---- v7, "prefetch": v6 with the next edge's rows loaded before the current edge is reduced
#
# On an H200 v6's CACE Bchi backward took 3.8 ms against a 0.17 ms floor: about 2.9 us per edge per
# program, a chain of global loads (Y, R, W of the edge) then reductions then stores, with 5 programs
# (10 warps) per SM at 177 registers. Here the loads of edge e + 1 are issued before edge e's
# reductions, so their latency overlaps arithmetic instead of preceding it (registers: one more set
# of rows, QA + QR2 + RP + (QA + QR2) CP values).

@triton.jit
def _edge_rows(e, Y, Rb, W, Q, NR, L: tl.constexpr, CW, n, nm, qa, qam, wa_off, wa_mask, qb, qbm, wb_off, wb_mask,
               HAS_REST: tl.constexpr):
    """Edge e's radial row [RP], Y rows and W tiles of the two parts (e must be an edge of the graph)."""
    r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)
    ya = tl.load(Y + e * Q + qa, mask=qam, other=0.0)
    wa = tl.load(W + e * (L * CW) + wa_off, mask=wa_mask, other=0.0)
    if HAS_REST:
        yb = tl.load(Y + e * Q + qb, mask=qbm, other=0.0)
        wb = tl.load(W + e * (L * CW) + wb_off, mask=wb_mask, other=0.0)
    else:
        yb = tl.zeros(qb.shape, dtype=ya.dtype)
        wb = tl.zeros(wb_off.shape, dtype=wa.dtype)
    return r, ya, wa, yb, wb


def edge_sum_bwd_prefetch(G, Y, Rb, W, WL, ROWPTR, GY, GR, GW, Q, NR, CW, L: tl.constexpr, QA: tl.constexpr,
                          QR2: tl.constexpr, HAS_REST: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr,
                          LP: tl.constexpr):
    i = tl.program_id(0)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    n = tl.arange(0, RP)
    c = tl.arange(0, CP)
    lrow = tl.arange(0, LP)
    nm, cm = n < NR, c < CW
    g_base = G + i * (Q * NR * CW)
    gw_off = lrow[:, None] * CW + c[None, :]                                        # [LP, CP]
    gw_mask = (lrow < L)[:, None] & cm[None, :]
    qa = tl.arange(0, QA)
    qam, ga, oha, wa_off, wa_mask = _gradient_tile(g_base, WL, qa, Q, NR, CW, n, c, lrow, nm, cm)
    qb = QA + tl.arange(0, QR2)
    qbm, gb, ohb, wb_off, wb_mask = _gradient_tile(g_base, WL, qb, Q, NR, CW, n, c, lrow, nm, cm)
    # the rows of edge e + 1, clamped to a real edge: the last edge's "next" rows, and those of an
    # atom without edges (edge start - 1, or 0), are loaded and never used (the graph has edges)
    first = tl.maximum(tl.minimum(start, end - 1), 0)
    r_n, ya_n, wa_n, yb_n, wb_n = _edge_rows(first, Y, Rb, W, Q, NR, L, CW, n, nm, qa, qam, wa_off,
                                             wa_mask, qb, qbm, wb_off, wb_mask, HAS_REST)
    for e in range(start, end):
        r, ya, wa, yb, wb = r_n, ya_n, wa_n, yb_n, wb_n
        r_n, ya_n, wa_n, yb_n, wb_n = _edge_rows(tl.minimum(e + 1, end - 1), Y, Rb, W, Q, NR, L, CW, n, nm, qa, qam, wa_off,
                                                 wa_mask, qb, qbm, wb_off, wb_mask, HAS_REST)
        gr, gw = _split_part(ga, ya, wa, r, oha, GY + e * Q, qa, qam)
        if HAS_REST:
            grb, gwb = _split_part(gb, yb, wb, r, ohb, GY + e * Q, qb, qbm)
            gr += grb
            gw += gwb
        tl.store(GR + e * NR + n, gr, mask=nm)
        tl.store(GW + e * (L * CW) + gw_off, gw, mask=gw_mask)
