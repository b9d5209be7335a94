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
        return torch.einsum("iqnc,qnkc->iqkc", A, self.weight[self.l_of])
