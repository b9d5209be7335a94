"""Triton kernels of the fused neighbour sum; the equations, the layout and their autograd wrapper
are in ``neighbor_sum_triton.py`` (this module imports Triton unconditionally, so it is loaded only
when the fused path runs).

Grid: (atoms, chunks of QB angular components). Program (i, k) owns out[i, kQB:(k+1)QB, :, :] and
loops over atom i's edges (CSR: rowptr[i]:rowptr[i+1]), its [QB, RP, CP] tile in registers.
"""

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
