"""Element embeddings theta_Z (shared)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import InputError


class ElementEmbedding(nn.Module):
    """theta_Z in R^{n_embed}: learnable, or one-hot over ``elements`` when ``fixed``.

    ``elements`` are atomic numbers; an atom of another element raises a clear error.
    """

    def __init__(self, elements: Sequence[int], n_embed: int, *, fixed: bool = False):
        super().__init__()
        elements = sorted(int(z) for z in elements)
        lookup = torch.full((max(elements) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(elements)] = torch.arange(len(elements))
        self.register_buffer("lookup", lookup, persistent=False)
        self.elements = elements
        if fixed:
            self.register_buffer("weight", torch.eye(len(elements), dtype=torch.get_default_dtype()))
        else:
            w = torch.randn(len(elements), n_embed) / n_embed**0.5
            self.weight = nn.Parameter(w)

    @property
    def n_embed(self) -> int:
        return int(self.weight.shape[1])

    def index(self, numbers: torch.Tensor, elements: frozenset | None = None) -> torch.Tensor:
        """Row of each atom's element in the table [N]. ``elements``: the atomic numbers present,
        where known on the host (``AtomsGraph.elements``): checked without reading ``numbers``,
        which on a GPU would wait for the device (two host syncs a call)."""
        if torch.compiler.is_compiling():  # data-dependent check: done in eager mode only
            return self.lookup[numbers]
        if elements is not None:
            unknown = sorted(set(elements) - set(self.elements))
        elif numbers.numel() and (int(numbers.max()) >= self.lookup.numel() or bool((self.lookup[numbers] < 0).any())):
            unknown = sorted(set(numbers.tolist()) - set(self.elements))
        else:
            unknown = []
        if unknown:
            raise InputError(f"atomic numbers {unknown} are not among the model's elements {self.elements}")
        return self.lookup[numbers]

    def forward(self, numbers: torch.Tensor, elements: frozenset | None = None) -> torch.Tensor:
        return self.weight[self.index(numbers, elements)]  # [N, n_embed]
