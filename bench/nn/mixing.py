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
        """A [N, Q, R, C] -> [N, Q, K, C].

        Eager: one einsum (a batched matrix product over the Q C pairs). Under torch.compile: the
        same sum written as a broadcast product reduced over n, which Inductor emits as one
        reduction kernel that never forms the [N, Q, R, K, C] product; the einsum there stays a
        cuBLAS batched product of inner size R (6 for the water preset) between two permuted
        copies, which took 1.6 ms of a 10.8 ms energy + forces call at 12,288 atoms on an H200
        (results/gpu/NVIDIA-H200/diagnose-run). Eager keeps the einsum: the broadcast would be
        materialised there (R times the output)."""
        weight = self.weight[self.l_of]                               # [Q, R, K, C]
        if torch.compiler.is_compiling():
            return (A.unsqueeze(3) * weight).sum(2)                   # [N, Q, R, 1, C] * [Q, R, K, C] -> sum over R
        return torch.einsum("iqnc,qnkc->iqkc", A, weight)
