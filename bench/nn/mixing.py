"""Radial mixing per l (shared)."""

from __future__ import annotations

import torch
from torch import nn


class RadialMix(nn.Module):
    """A'[i, q, k, c] = sum_n W^{(l(q))}[n, k, c] A[i, q, n, c]: one weight matrix per l and channel,
    shared by every angular component q of that l (so rotations, which mix only within an l, commute
    with it)."""

    def __init__(self, l_of: torch.Tensor, n_in: int, n_out: int, n_channels: int):
        super().__init__()
        self.register_buffer("l_of", l_of.clone(), persistent=False)
        n_l = int(l_of.max()) + 1
        self.weight = nn.Parameter(torch.randn(n_l, n_in, n_out, n_channels) / n_in**0.5)

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        # the einsum is a batched product over (q, c) whose result is a permuted view of a
        # [Q C, N, K] tensor; made contiguous here, the view's base is freed at once, where it
        # would otherwise stay alive beside the contiguous copy the next consumer makes (the
        # contraction's reshape): one [N, Q, K, C] tensor less at the peak of energy + forces
        return torch.einsum("iqnc,qnkc->iqkc", A, self.weight[self.l_of]).contiguous()
