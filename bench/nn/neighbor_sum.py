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
    """D[b, p, q] = y[b, p] x[b, q], with a contracting backward:

        dL/dy[b, p] = sum_q dL/dD[b, p, q] x[b, q],   dL/dx[b, q] = sum_p dL/dD[b, p, q] y[b, p]

    (einsum contractions instead of autograd's broadcast-multiply-then-sum, which builds a second
    D-sized temporary). Written in differentiable ops, so second derivatives work through it.
    """

    @staticmethod
    def forward(ctx, y, x):
        ctx.save_for_backward(y, x)
        return y.unsqueeze(-1) * x.unsqueeze(-2)

    @staticmethod
    def backward(ctx, grad):
        y, x = ctx.saved_tensors
        return torch.einsum("...pq,...q->...p", grad, x), torch.einsum("...pq,...p->...q", grad, y)


def outer(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batched outer product [..., P] x [..., Q] -> [..., P, Q]."""
    return _Outer.apply(y, x)
