"""Neighbour sums as batched matrix products over a dense [atoms, neighbour slot] layout."""

from __future__ import annotations

import torch


def dense_by_receiver(x: torch.Tensor, flat_slot: torch.Tensor, n_atoms: int, max_neighbors: int) -> torch.Tensor:
    """Scatter per-edge rows x [E, P] into a zero-padded [n_atoms, max_neighbors, P] table.

    ``flat_slot`` = receiver * max_neighbors + neighbor_slot (each edge has its own row), so this is
    an ``index_copy`` (whose backward is a gather), not an accumulation.
    """
    out = x.new_zeros(n_atoms * max_neighbors, x.shape[1])
    return out.index_copy(0, flat_slot, x).view(n_atoms, max_neighbors, x.shape[1])


class _Outer(torch.autograd.Function):
    """D[b, p, q] = y[b, p] x[b, q], with a contracting backward (``_OuterGrad``):

        dL/dy[b, p] = sum_q dL/dD[b, p, q] x[b, q],   dL/dx[b, q] = sum_p dL/dD[b, p, q] y[b, p]

    (contractions instead of autograd's broadcast-multiply-then-sum, which builds a second
    D-sized temporary)."""

    @staticmethod
    def forward(ctx, y, x):
        ctx.save_for_backward(y, x)
        return y.unsqueeze(-1) * x.unsqueeze(-2)

    @staticmethod
    def backward(ctx, grad):
        y, x = ctx.saved_tensors
        return _OuterGrad.apply(grad, y, x)


class _OuterGrad(torch.autograd.Function):
    """(dL/dy, dL/dx) of ``_Outer`` from G = dL/dD, as contractions; its own backward (a force-loss
    training step takes it) forms the outer products by broadcasting,

        d/dG[b, p, q] = g_y[b, p] x[b, q] + y[b, p] g_x[b, q],
        d/dy[b, p] = sum_q G[b, p, q] g_x[b, q],   d/dx[b, q] = sum_p G[b, p, q] g_y[b, p],

    where autograd through the contractions formed each outer product as a batch of [p, 1] x [1, q]
    matrix products: one tiny product per neighbour slot, the slowest operators of the CPU training
    step. Written in differentiable operators (in place only where no graph is being built), so a
    further derivative still works."""

    @staticmethod
    def forward(ctx, grad, y, x):
        ctx.save_for_backward(grad, y, x)
        return torch.einsum("...pq,...q->...p", grad, x), torch.einsum("...pq,...p->...q", grad, y)

    @staticmethod
    def backward(ctx, g_y, g_x):
        grad, y, x = ctx.saved_tensors
        d_grad = d_y = d_x = None
        if ctx.needs_input_grad[0]:
            parts = [a.unsqueeze(-1) * b.unsqueeze(-2) for a, b in ((g_y, x), (y, g_x)) if a is not None and b is not None]
            d_grad = parts[0] if parts else None
            if len(parts) == 2:
                d_grad = d_grad.add_(parts[1]) if not torch.is_grad_enabled() else d_grad + parts[1]
        if ctx.needs_input_grad[1] and g_x is not None:
            d_y = torch.einsum("...pq,...q->...p", grad, g_x)
        if ctx.needs_input_grad[2] and g_y is not None:
            d_x = torch.einsum("...pq,...p->...q", grad, g_y)
        return d_grad, d_y, d_x


def outer(y: torch.Tensor, x: torch.Tensor, plain: bool = False) -> torch.Tensor:
    """Batched outer product [..., P] x [..., Q] -> [..., P, Q]; ``plain``: a broadcast product
    differentiated by autograd, not ``_Outer``."""
    if plain:
        return y.unsqueeze(-1) * x.unsqueeze(-2)
    return _Outer.apply(y, x)
