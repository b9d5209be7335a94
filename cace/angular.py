"""Cartesian angular basis: monomials L_lvec(u) = x^a y^b z^c and their symmetrization tables.

Index patterns enumerated (spec: shared/design/cace-math.md), with m(lvec) = l!/(a! b! c!):

- nu = 1: A_(0,0,0)
- nu = 2: B_l = sum_{|l1|=l} m(l1) A_l1 A_l1,                                  1 <= l <= l_max
- nu = 3: B_(l1,l2) = sum m(l1) m(l2) A_l1 A_l2 A_(l1+l2),            1 <= l1 <= l2, l1 + l2 <= l_max
- nu = 4: B_(l1,l2,l3) = sum m(l1) m(l2) m(d) A_l1 A_l2 A_(l1+d) A_(l2+d), |d| = l3,
          1 <= l1 <= l2, 1 <= l3, l2 + l3 <= l_max
  (the chain sum_{j1..j4} (u1.u3)^l1 (u2.u4)^l2 (u3.u4)^l3; l1 <-> l2 gives the same invariant,
  and l1 = 0 or l3 = 0 would give products of lower-order invariants, so both are left out).

Counts per (k, c): l_max = 3: 1 + 3 + 2 (+ 4 for nu = 4); l_max = 4: 1 + 4 + 4 (+ 10).
"""

from __future__ import annotations

from fractions import Fraction
from math import factorial, prod

import torch

from bench.nn.contraction import InvariantTable
from bench.nn.monomials import MonomialBasis, monomials

__all__ = ["CartesianBasis", "harmonic_projection", "monomials", "multinomial"]


def multinomial(lvec) -> int:
    a, b, c = lvec
    return factorial(a + b + c) // (factorial(a) * factorial(b) * factorial(c))


def _double_factorial(n: int) -> int:
    return prod(range(n, 0, -2)) if n > 0 else 1


def _laplacian(poly: dict) -> dict:
    """Laplacian of a polynomial {(a, b, c): coefficient}."""
    out: dict = {}
    for (a, b, c), coef in poly.items():
        for k, e in enumerate((a, b, c)):
            if e >= 2:
                lv = tuple(x - 2 * (i == k) for i, x in enumerate((a, b, c)))
                out[lv] = out.get(lv, 0) + coef * e * (e - 1)
    return out


def _times_r2(poly: dict) -> dict:
    """(x^2 + y^2 + z^2) * poly."""
    out: dict = {}
    for lv, coef in poly.items():
        for k in range(3):
            nv = tuple(x + 2 * (i == k) for i, x in enumerate(lv))
            out[nv] = out.get(nv, 0) + coef
    return out


def harmonic_projection(l: int) -> list[list[Fraction]]:
    """Exact matrix P [n_l, n_l] over the degree-l monomials (``monomials`` order): row q holds the
    monomial coefficients of the harmonic (traceless) part of monomial q,

        H(p) = sum_{k <= l/2} (-1)^k (2l - 2k - 1)!! / ((2l - 1)!! (2k)!!) r^{2k} Laplacian^k p

    (Hobson), homogeneous of degree l and harmonic. H(x^a y^b z^c) is the (a, b, c) component of the
    detraced tensor of u^(x)l (the unique traceless symmetric tensor differing from u^(x)l by terms
    carrying a Kronecker delta): both are harmonic and differ from the monomial by r^2 times a
    polynomial, and that decomposition is unique."""
    degree = [lv for lv in monomials(l) if sum(lv) == l]
    pos = {lv: i for i, lv in enumerate(degree)}
    rows = []
    for lv in degree:
        row = [Fraction(0)] * len(degree)
        term = {lv: Fraction(1)}                                   # Laplacian^k p
        for k in range(l // 2 + 1):
            c = Fraction((-1) ** k * _double_factorial(2 * l - 2 * k - 1),
                         _double_factorial(2 * l - 1) * _double_factorial(2 * k))
            lifted = term
            for _ in range(k):
                lifted = _times_r2(lifted)                         # r^{2k} Laplacian^k p: degree l again
            for mv, coef in lifted.items():
                row[pos[mv]] += c * coef
            term = _laplacian(term)
        rows.append(row)
    return rows


class CartesianBasis(MonomialBasis):
    """u [E, 3] (unit vectors) -> L [E, n_ang], n_ang = (l_max+1)(l_max+2)(l_max+3)/6.

    ``traceless=False`` (CACE as published): the monomials x^a y^b z^c, reducible: an even-degree
    monomial carries isotropic parts (x^2 + y^2 + z^2 = 1). ``traceless=True`` (a named variant,
    never the default): each degree-l block replaced by its harmonic part, L_l <- L_l P_l^T with the
    exact table of ``harmonic_projection`` (a fixed linear map within each degree), so that the
    same index sums contract irreducible Cartesian tensors:
    sum_|lvec|=l m(lvec) T_lvec(u) T_lvec(v) = l! / (2l - 1)!! P_l(u . v) for unit u, v.
    """

    def __init__(self, l_max: int, traceless: bool = False):
        super().__init__(l_max)
        self.traceless = bool(traceless)
        self.register_buffer("weight", torch.tensor([float(multinomial(lv)) for lv in self.lvecs]), persistent=False)
        if self.traceless:                      # degrees 0 and 1 are already harmonic
            for l in range(2, self.l_max + 1):
                P = torch.tensor([[float(x) for x in row] for row in harmonic_projection(l)], dtype=torch.float64)
                self.register_buffer(f"harmonic{l}", P, persistent=False)      # [n_l, n_l]

    def forward(self, u: torch.Tensor, plain: bool = False) -> torch.Tensor:
        """L_(a,b,c)(u) = x^a y^b z^c (``MonomialBasis``); traceless: each degree's harmonic part."""
        L = super().forward(u, plain=plain)                                         # [E, Q]
        if not self.traceless:
            return L
        blocks = list(L.split([(l + 1) * (l + 2) // 2 for l in range(self.l_max + 1)], dim=1))  # T_l = L_l P_l^T
        blocks = blocks[:2] + [b @ getattr(self, f"harmonic{l}").to(b.dtype).T for l, b in enumerate(blocks) if l >= 2]
        return torch.cat(blocks, dim=1)

    def invariant_tables(self, nu_max: int) -> list[InvariantTable]:
        add = lambda p, q: (p[0] + q[0], p[1] + q[1], p[2] + q[2])  # noqa: E731
        L, m, idx = self.l_max, multinomial, self.index
        tables = []
        t1 = InvariantTable(1)
        t1.add(t1.new_invariant(("A0",)), (idx[(0, 0, 0)],), 1.0)
        tables.append(t1)
        if nu_max >= 2:
            t2 = InvariantTable(2)
            for l in range(1, L + 1):
                b = t2.new_invariant((l,))
                for lv in self.of_degree(l):
                    t2.add(b, (idx[lv], idx[lv]), m(lv))
            tables.append(t2)
        if nu_max >= 3:
            t3 = InvariantTable(3)
            for l1 in range(1, L + 1):
                for l2 in range(l1, L + 1 - l1):
                    b = t3.new_invariant((l1, l2))
                    for v1 in self.of_degree(l1):
                        for v2 in self.of_degree(l2):
                            t3.add(b, (idx[v1], idx[v2], idx[add(v1, v2)]), m(v1) * m(v2))
            tables.append(t3)
        if nu_max >= 4:
            t4 = InvariantTable(4)
            for l1 in range(1, L + 1):
                for l2 in range(l1, L + 1):
                    for l3 in range(1, L + 1 - l2):
                        b = t4.new_invariant((l1, l2, l3))
                        for v1 in self.of_degree(l1):
                            for v2 in self.of_degree(l2):
                                for d in self.of_degree(l3):
                                    t4.add(b, (idx[v1], idx[v2], idx[add(v1, d)], idx[add(v2, d)]),
                                           m(v1) * m(v2) * m(d))
            tables.append(t4)
        return tables
