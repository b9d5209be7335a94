"""Radial basis and cutoff envelope (shared by both descriptors)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PolynomialEnvelope(nn.Module):
    """DimeNet envelope of order p, x = r / r_c:

        f_c(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)   for x < 1, else 0.

    f_c, f_c' and f_c'' vanish at r_c, so every feature goes to zero smoothly there.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        f = 1 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1) - 0.5 * p * (p + 1) * x ** (p + 2)
        return torch.where(x < 1, f, torch.zeros_like(f))


class BesselRBF(nn.Module):
    """R_n(r) = sqrt(2 / r_c) sin(w_n r) / r with w_n = n pi / r_c, n = 1..n_rbf  -> [E, n_rbf].

    The frequencies w_n are learnable when ``trainable`` (as the CACE authors do).
    """

    def __init__(self, n_rbf: int, cutoff: float, trainable: bool = False):
        super().__init__()
        self.n_rbf = int(n_rbf)
        self.cutoff = float(cutoff)
        freq = torch.arange(1, n_rbf + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        if trainable:
            self.freq = nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)
        self.prefactor = math.sqrt(2.0 / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)  # [E, 1]
        return self.prefactor * torch.sin(self.freq * r) / r
