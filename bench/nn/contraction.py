"""Symmetrization as data: invariants B = sparse sums of products of A, from index tables.

Both descriptors express their invariants in one form,

    B[i, b, k, c] = sum_{t : out[t] = b} coeff[t] * prod_{f < order} A[i, idx[t, f], k, c],

where the angular index of A runs over Cartesian monomials (CACE) or real spherical harmonics
(baseline), and (idx, coeff, out) come from multinomial weights or Clebsch-Gordan coefficients.
The tables are built once, at construction, and kept as buffers; ``forward`` is tensor ops only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class InvariantTable:
    """Builder for the terms of one body order: ``add(b, (a1, ..., a_o), coeff)``.

    Products commute, so index tuples are sorted and equal tuples merged, and terms with a
    coefficient below ``tol`` dropped.
    """

    order: int
    terms: dict = field(default_factory=lambda: defaultdict(float))
    labels: list = field(default_factory=list)

    def new_invariant(self, label) -> int:
        self.labels.append(label)
        return len(self.labels) - 1

    def add(self, b: int, angular: tuple, coeff: float) -> None:
        assert len(angular) == self.order
        self.terms[(b, tuple(sorted(angular)))] += float(coeff)

    def tensors(self, tol: float = 1e-12):
        items = [(b, a, c) for (b, a), c in sorted(self.terms.items()) if abs(c) > tol]
        out = torch.tensor([b for b, _, _ in items], dtype=torch.long)
        idx = torch.tensor([a for _, a, _ in items], dtype=torch.long).reshape(-1, self.order)
        coeff = torch.tensor([c for _, _, c in items], dtype=torch.float64)
        return idx, coeff, out


class SparseProductContraction(nn.Module):
    """A [N, n_ang, K, C] -> B [N, n_invariants, K, C] from one InvariantTable per body order."""

    def __init__(self, tables: list[InvariantTable]):
        super().__init__()
        self.orders = [t.order for t in tables]
        self.counts = [len(t.labels) for t in tables]
        self.labels = [(t.order, lab) for t in tables for lab in t.labels]
        # Coefficients (irrational for Clebsch-Gordan) are kept in a float64 master copy, and the
        # buffer is re-derived from it on every .to()/.double()/.float(): a float32 round trip
        # would otherwise cost the float64 model its last 8 digits.
        self._coeff64 = {}
        for t in tables:
            idx, coeff, out = t.tensors()
            self._coeff64[t.order] = coeff
            self.register_buffer(f"idx{t.order}", idx)
            self.register_buffer(f"coeff{t.order}", coeff.to(torch.get_default_dtype()))
            self.register_buffer(f"out{t.order}", out)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for order, master in self._coeff64.items():
            buf = getattr(self, f"coeff{order}")
            self._coeff64[order] = master.to(buf.device)
            setattr(self, f"coeff{order}", self._coeff64[order].to(buf.dtype))
        return self

    @property
    def n_invariants(self) -> int:
        return sum(self.counts)

    def n_terms(self) -> dict[int, int]:
        return {o: int(getattr(self, f"idx{o}").shape[0]) for o in self.orders}

    def forward(self, A: torch.Tensor) -> torch.Tensor:
        N, _, K, C = A.shape
        blocks = []
        for order, count in zip(self.orders, self.counts):
            idx = getattr(self, f"idx{order}")      # [T, order]
            coeff = getattr(self, f"coeff{order}")  # [T]
            out = getattr(self, f"out{order}")      # [T]
            prod = A[:, idx[:, 0]]                  # [N, T, K, C]
            for f in range(1, order):               # order <= 4: a loop over factors, not terms
                prod = prod * A[:, idx[:, f]]
            prod = prod * coeff.to(A.dtype)[None, :, None, None]
            blocks.append(A.new_zeros(N, count, K, C).index_add(1, out, prod))
        return torch.cat(blocks, dim=1)             # [N, n_invariants, K, C]
