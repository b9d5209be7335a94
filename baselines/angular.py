"""Spherical angular basis: real spherical harmonics (e3nn) and Clebsch-Gordan invariant tables.

Y_lm(u) = e3nn.o3.spherical_harmonics(l, u, normalize=False, normalization="norm") for
l = 0..l_max, in e3nn's real basis and component order. "norm" (sum_m Y_lm(u)^2 = 1) puts the
power spectrum, sum_jj' R R P_l(u.u'), on the scale of the Cartesian sum_jj' R R (u.u')^l (both
bounded by 1 per pair), so the shared readout sees both at the same magnitude; coupling
coefficients are e3nn's ``o3.wigner_3j`` (real, in the same basis), taken once at construction.

Invariants (all parity-even, i.e. O(3)-invariant like the Cartesian ones):
- nu = 1: A_00
- nu = 2: P_l = sum_m A_lm A_lm;  complete: l = 0..l_max;  matched: l = 1..l_max
- nu = 3: sum C^{l1 l2 l3}_{m1 m2 m3} A_l1m1 A_l2m2 A_l3m3;
          complete: every l1 <= l2 <= l3 <= l_max with the triangle rule and l1 + l2 + l3 even;
          matched: (l1, l2, l1 + l2) for 1 <= l1 <= l2, l1 + l2 <= l_max -- one per Cartesian
          B_(l1,l2), mirroring its pattern A_l1 A_l2 A_(l1+l2)
- nu = 4: intermediate coupling sum_M (A_l1 x A_l2)_LM (A_l3 x A_l4)_LM;
          complete: every (l1 <= l2), (l3 <= l4), (l1, l2) <= (l3, l4), L with both triangles and
          l1 + l2 + L, l3 + l4 + L even; matched: (l1, l1 + l3 | l2, l2 + l3; L = l3) for each
          Cartesian chain (l1, l2, l3), mirroring (u1.u3)^l1 (u2.u4)^l2 (u3.u4)^l3.
``matched`` has exactly the Cartesian number of invariants per (k, c) at the same l_max, nu_max.
"""

from __future__ import annotations

import itertools

import torch
from e3nn import o3

from bench.errors import InputError
from bench.nn.contraction import InvariantTable
from bench.nn.float64_tables import Float64Tables
from bench.nn.monomials import MonomialBasis

MODES = ("matched", "complete")


EVALUATIONS = ("monomials", "e3nn")


def harmonic_coefficients(basis: MonomialBasis) -> torch.Tensor:
    """C [n_monomials, (l_max + 1)^2] (float64) with e3nn's Y(u) = basis(u) @ C for every u: a real
    spherical harmonic of degree l (unnormalised input) is a homogeneous polynomial of degree l,
    so a fixed combination of the degree-l monomials of ``basis``; C is block-diagonal by degree.
    Solved per degree by least squares against e3nn on random vectors, an exact fit (checked: a
    residual above 1e-12 relative raises)."""
    rng = torch.Generator().manual_seed(0)
    l_max = basis.l_max
    C = torch.zeros(basis.n_ang, (l_max + 1) ** 2, dtype=torch.float64)
    for l in range(l_max + 1):
        rows = torch.nonzero(basis.l_of == l).flatten()                             # the degree-l monomials
        x = torch.randn(4 * len(rows) + 8, 3, generator=rng, dtype=torch.float64)
        M = basis(x)[:, rows]                                                       # [n, n_l]
        Y = o3.spherical_harmonics(l, x, normalize=False, normalization="norm")    # [n, 2l + 1]
        c = torch.linalg.lstsq(M, Y).solution                                       # [n_l, 2l + 1]
        if (M @ c - Y).norm() > 1e-12 * Y.norm():
            raise RuntimeError(f"e3nn's degree-{l} harmonics are not a combination of the degree-{l} monomials")
        C[rows, l * l:(l + 1) ** 2] = c
    return C


class SphericalBasis(Float64Tables):
    """u [E, 3] -> Y [E, (l_max + 1)^2], e3nn's real spherical harmonics.

    ``evaluate="monomials"`` (default): Y = L(u) @ C, the Cartesian monomials (the same code as
    CACE's angular basis, ``bench.nn.monomials``, with its compact backward) times the fixed table
    of ``harmonic_coefficients``: one matrix product more than CACE, so both descriptors get the
    same effort. ``"e3nn"``: ``o3.spherical_harmonics`` itself, the reference the tests hold the
    polynomial form to (float64, 1e-12, values and first and second derivatives); it launches
    about 60 small operators forward and three times that through the double backward, where the
    polynomial form launches a dozen (on a GPU below a few thousand atoms, launches are the cost).
    The table is kept in float64 and re-derived on every dtype change, like the coupling tables.
    """

    def __init__(self, l_max: int, mode: str = "matched", evaluate: str = "monomials"):
        super().__init__()
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        if evaluate not in EVALUATIONS:
            raise InputError(f"evaluate must be one of {EVALUATIONS}, got {evaluate!r}")
        self.l_max, self.mode, self.evaluate = int(l_max), mode, evaluate
        self.ls = list(range(self.l_max + 1))  # plain ints (an Irreps attribute trips torch.compile's guards)
        l_of = torch.cat([torch.full((2 * l + 1,), l) for l in range(l_max + 1)])
        self.register_buffer("l_of", l_of, persistent=False)
        self.monomials = MonomialBasis(self.l_max)
        self.register_table("coefficients", harmonic_coefficients(self.monomials), persistent=False)

    @property
    def n_ang(self) -> int:
        return (self.l_max + 1) ** 2

    def forward(self, u: torch.Tensor, plain: bool = False) -> torch.Tensor:
        """``plain``: the monomials differentiated by autograd (``MonomialBasis.forward``); e3nn's form
        is plain operations either way."""
        if self.evaluate == "e3nn":
            return o3.spherical_harmonics(self.ls, u, normalize=False, normalization="norm")
        return self.monomials(u, plain=plain) @ self.coefficients.to(u.dtype)      # [E, Q_mono] @ [Q_mono, Q]

    def _start(self, l: int) -> int:
        return l * l

    def _couplings3(self):
        L = self.l_max
        if self.mode == "matched":
            return [(l1, l2, l1 + l2) for l1 in range(1, L + 1) for l2 in range(l1, L + 1 - l1)]
        return [(l1, l2, l3) for l1 in range(L + 1) for l2 in range(l1, L + 1) for l3 in range(l2, L + 1)
                if l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0]

    def _couplings4(self):
        L = self.l_max
        if self.mode == "matched":
            return [((l1, l1 + l3), (l2, l2 + l3), l3) for l1 in range(1, L + 1) for l2 in range(l1, L + 1)
                    for l3 in range(1, L + 1 - l2)]
        pairs = [(a, b) for a in range(L + 1) for b in range(a, L + 1)]
        out = []
        for p, q in itertools.combinations_with_replacement(pairs, 2):
            for lam in range(L + 1):
                ok = all(abs(x - y) <= lam <= x + y and (x + y + lam) % 2 == 0 for x, y in (p, q))
                if ok:
                    out.append((p, q, lam))
        return out

    def invariant_tables(self, nu_max: int) -> list[InvariantTable]:
        s = self._start
        tables = []
        t1 = InvariantTable(1)
        t1.add(t1.new_invariant(("A0",)), (0,), 1.0)
        tables.append(t1)
        if nu_max >= 2:
            t2 = InvariantTable(2)
            for l in range(0 if self.mode == "complete" else 1, self.l_max + 1):
                b = t2.new_invariant((l,))
                for m in range(2 * l + 1):
                    t2.add(b, (s(l) + m, s(l) + m), 1.0)
            tables.append(t2)
        if nu_max >= 3:
            t3 = InvariantTable(3)
            for l1, l2, l3 in self._couplings3():
                b = t3.new_invariant((l1, l2, l3))
                w = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)
                for (m1, m2, m3) in torch.nonzero(w.abs() > 1e-12).tolist():
                    t3.add(b, (s(l1) + m1, s(l2) + m2, s(l3) + m3), float(w[m1, m2, m3]))
            tables.append(t3)
        if nu_max >= 4:
            t4 = InvariantTable(4)
            for (l1, l2), (l3, l4), lam in self._couplings4():
                b = t4.new_invariant(((l1, l2), (l3, l4), lam))
                w = torch.einsum("abM,cdM->abcd", o3.wigner_3j(l1, l2, lam, dtype=torch.float64),
                                 o3.wigner_3j(l3, l4, lam, dtype=torch.float64))
                for (m1, m2, m3, m4) in torch.nonzero(w.abs() > 1e-12).tolist():
                    t4.add(b, (s(l1) + m1, s(l2) + m2, s(l3) + m3, s(l4) + m4), float(w[m1, m2, m3, m4]))
            tables.append(t4)
        return tables
