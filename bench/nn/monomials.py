"""Cartesian monomials of a unit vector, x^a y^b z^c for a + b + c <= l_max, with the derivatives
force training needs: CACE's angular basis, and the polynomial form of the spherical baseline's
real spherical harmonics (each degree-l harmonic a fixed combination of the degree-l monomials).
Shared, so that both descriptors evaluate their angular basis with the same code and effort."""

from __future__ import annotations

import torch
from torch import nn


def monomials(l_max: int) -> list[tuple[int, int, int]]:
    """All (a, b, c) with a + b + c <= l_max, ordered by l = a+b+c, then a, b descending."""
    out = []
    for l in range(l_max + 1):
        for a in range(l, -1, -1):
            for b in range(l - a, -1, -1):
                out.append((a, b, l - a - b))
    return out


def _monomials(u: torch.Tensor, steps) -> torch.Tensor:
    """The monomials [E, Q] of u [E, 3], degree by degree: L_l = L_(l-1)[parent_l] * u[axis_l];
    ``steps``: (parent_1, axis_1, parent_2, axis_2, ...)."""
    block = u.new_ones(u.shape[0], 1)                                               # [E, 1] degree 0
    blocks = [block]
    for parent, axis in zip(steps[0::2], steps[1::2]):
        block = block.index_select(1, parent) * u.index_select(1, axis)
        blocks.append(block)                                                        # [E, (l+1)(l+2)/2]
    return torch.cat(blocks, dim=1)


class _Monomials(torch.autograd.Function):
    """L = monomials of u [E, 3] -> [E, Q], saving only its output: the backward is
    dL/du_d = lvec[d] L_(lvec - e_d), a lower monomial of L itself, so autograd keeps none of the
    per-degree products the forward makes (for CACE's water preset about 10 kB an atom). The
    backward is written in differentiable ops on the saved output, so second derivatives (force
    training) go through it:

        grad_u[e, d] = sum_q grad_L[e, q] power[d, q] L[e, lowered[d, q]]
    """

    @staticmethod
    def forward(ctx, u, lowered, power, *steps):
        L = _monomials(u, steps)
        ctx.save_for_backward(L, lowered, power)
        ctx.n_steps = len(steps)
        return L

    @staticmethod
    def backward(ctx, grad_L):
        L, lowered, power = ctx.saved_tensors
        # one axis at a time: [E, Q] temporaries, not [E, 3, Q] ones (three of those, 17 kB an atom
        # each for the water preset, were the top of the fused path's memory peak)
        grad_u = [((grad_L * power[d].to(L.dtype)) * L.index_select(1, lowered[d])).sum(dim=1) for d in range(3)]
        return (torch.stack(grad_u, dim=1), None, None) + (None,) * ctx.n_steps


class MonomialBasis(nn.Module):
    """u [E, 3] (unit vectors) -> L [E, n_ang], the monomials in ``monomials(l_max)`` order,
    n_ang = (l_max+1)(l_max+2)(l_max+3)/6; index tables built once as buffers."""

    def __init__(self, l_max: int):
        super().__init__()
        self.l_max = int(l_max)
        self.lvecs = monomials(l_max)
        self.index = {lv: q for q, lv in enumerate(self.lvecs)}
        # Each monomial of degree l >= 1 is its parent of degree l - 1 times one component:
        # x^a y^b z^c = (x^a y^b z^c / u_d) * u_d with d the first axis of nonzero exponent.
        # parent_l[k] indexes the parent within the degree-(l-1) block, axis_l[k] is d.
        for l in range(1, self.l_max + 1):
            parents, axes = [], []
            for lv in self.of_degree(l):
                d = next(k for k in range(3) if lv[k] > 0)
                parent = tuple(e - (k == d) for k, e in enumerate(lv))
                parents.append(self.of_degree(l - 1).index(parent))
                axes.append(d)
            self.register_buffer(f"parent{l}", torch.tensor(parents, dtype=torch.long), persistent=False)
            self.register_buffer(f"axis{l}", torch.tensor(axes, dtype=torch.long), persistent=False)
        exps = torch.tensor(self.lvecs, dtype=torch.long)                       # [Q, 3]
        self.register_buffer("l_of", exps.sum(1), persistent=False)
        # d L_lvec / d u_d = lvec[d] * L_(lvec - e_d): per axis d, the exponent and the index of the
        # lowered monomial (0 where the exponent is 0: a zero coefficient) -> [3, Q] each
        lowered = [[self.index[tuple(e - (k == d) for k, e in enumerate(lv))] if lv[d] else 0 for lv in self.lvecs]
                   for d in range(3)]
        self.register_buffer("lowered", torch.tensor(lowered, dtype=torch.long), persistent=False)
        self.register_buffer("power", exps.T.contiguous(), persistent=False)

    @property
    def n_ang(self) -> int:
        return len(self.lvecs)

    def of_degree(self, l: int) -> list[tuple[int, int, int]]:
        return [lv for lv in self.lvecs if sum(lv) == l]

    def forward(self, u: torch.Tensor, plain: bool = False) -> torch.Tensor:
        """L_(a,b,c)(u) = x^a y^b z^c, built degree by degree: L_l = L_(l-1)[parent_l] * u[axis_l].

        One multiplication per monomial and no scan (``torch.cumprod`` over powers was a scan kernel
        that took about half of CACE's GPU time); the loop runs over the l_max degrees, not over terms.
        Autograd keeps only L (``_Monomials``); ``plain``: the same products differentiated by
        autograd (the form a compiled training step traces: see ``AtomicClusterExpansion.forward``).
        """
        steps = [getattr(self, f"{name}{l}") for l in range(1, self.l_max + 1) for name in ("parent", "axis")]
        if plain:
            return _monomials(u, steps)                                             # [E, Q]
        return _Monomials.apply(u, self.lowered, self.power, *steps)               # [E, Q]
