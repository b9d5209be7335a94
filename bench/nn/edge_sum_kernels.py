"""Triton kernels of the fused neighbour sum; the equations, the layout and their autograd wrapper
are in ``neighbor_sum_triton.py`` (this module imports Triton unconditionally, so it is loaded only
when the fused path runs)."""

import triton.language as tl


def edge_sum_fwd(Y, Rb, W, WL, ROWPTR, OUT, Q, NR, CW,
         L: tl.constexpr, QP: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    i = tl.program_id(0)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    q = tl.arange(0, QP)
    n = tl.arange(0, RP)
    c = tl.arange(0, CP)
    qm, nm, cm = q < Q, n < NR, c < CW
    wl = tl.load(WL + q, mask=qm, other=0)
    w_off = wl[:, None] * CW + c[None, :]                                   # [QP, CP]
    w_mask = qm[:, None] & cm[None, :]
    acc = tl.zeros((QP, RP, CP), dtype=Y.dtype.element_ty)
    for e in range(start, end):
        y = tl.load(Y + e * Q + q, mask=qm, other=0.0)                      # [QP]
        r = tl.load(Rb + e * NR + n, mask=nm, other=0.0)                    # [RP]
        w = tl.load(W + e * (L * CW) + w_off, mask=w_mask, other=0.0)      # [QP, CP]
        acc += (y[:, None] * w)[:, None, :] * r[None, :, None]
    out_off = i * (Q * NR * CW) + q[:, None, None] * (NR * CW) + n[None, :, None] * CW + c[None, None, :]
    tl.store(OUT + out_off, acc, mask=qm[:, None, None] & nm[None, :, None] & cm[None, None, :])


def edge_sum_bwd(G, Y, Rb, W, WL, ROWPTR, GY, GR, GW, Q, NR, CW,
         L: tl.constexpr, QP: tl.constexpr, RP: tl.constexpr, CP: tl.constexpr):
    i = tl.program_id(0)
    start = tl.load(ROWPTR + i)
    end = tl.load(ROWPTR + i + 1)
    q = tl.arange(0, QP)
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
        gr_ = tl.sum(g * r[None, :, None], axis=1)                         # [QP, CP]: sum_n g R
        tl.store(GY + e * Q + q, tl.sum(gr_ * w, axis=1), mask=qm)
        gyw = g * (y[:, None] * w)[:, None, :]                              # [QP, RP, CP]
        tl.store(GR + e * NR + n, tl.sum(tl.sum(gyw, axis=2), axis=0), mask=nm)
        x = gr_ * y[:, None]                                                # [QP, CP]: sum_n g Y R
        for l in tl.static_range(L):
            tl.store(GW + e * (L * CW) + l * CW + c, tl.sum(tl.where((wl == l)[:, None], x, 0.0), axis=0), mask=cm)
