"""Sum over neighbours of an outer product, without materialising the per-edge outer product."""

from __future__ import annotations

import torch


def neighbor_outer_sum(y: torch.Tensor, x: torch.Tensor, receivers: torch.Tensor, slot: torch.Tensor,
                       n_atoms: int, max_neighbors: int) -> torch.Tensor:
    """out[i, p, q] = sum_{edges e into i} y[e, p] * x[e, q]   -> [n_atoms, P, Q].

    ``y`` [E, P] and ``x`` [E, Q] are scattered into dense [n_atoms, max_neighbors, .] tables
    addressed by (receiver, slot) (``AtomsGraph.neighbor_slot``), and contracted over the
    neighbour axis by one batched matrix product. Memory is O(E (P + Q)) rather than the
    O(E P Q) of forming the outer product per edge, in the forward and in every backward pass.
    """
    P, Q = y.shape[1], x.shape[1]
    yd = y.new_zeros(n_atoms, max_neighbors, P)
    xd = x.new_zeros(n_atoms, max_neighbors, Q)
    yd = yd.index_put((receivers, slot), y)
    xd = xd.index_put((receivers, slot), x)
    return torch.bmm(yd.transpose(1, 2), xd)  # [n_atoms, P, Q]
