"""``cace.CACE``: the Cartesian atomic cluster expansion descriptor."""

from __future__ import annotations

from bench.nn.ace import AtomicClusterExpansion

from .angular import CartesianBasis


class CACE(AtomicClusterExpansion):
    """CACE descriptor (shared/design/cace-math.md): Cartesian monomials contracted by index sums.

    Keyword arguments (same for ``baselines.SphericalACE``): ``cutoff`` (A), ``n_rbf`` Bessel
    functions, ``n_embed`` (C = n_embed^2 edge channels), ``n_radial`` channels after mixing,
    ``l_max``, ``nu_max`` (1..4), ``n_layers`` message-passing layers (0 = none), ``messages``
    (subset of M, Ar, Bchi), ``fixed_basis``, ``envelope_p``, ``trainable_rbf``,
    ``avg_num_neighbors``. ``forward(graph) -> [n_atoms, n_features]``.

    Extra keyword: ``traceless`` (default False, CACE as published with reducible monomials): True
    contracts the traceless (irreducible) part of each degree's monomials instead, a named variant
    for studying the reducible-basis effect (``CartesianBasis``), never the default.
    """

    descriptor_name = "cace"

    def __init__(self, elements, *, traceless: bool = False, **kwargs):
        self._traceless = bool(traceless)
        super().__init__(elements, **kwargs)
        self._config["traceless"] = self._traceless

    def make_angular(self, l_max: int, nu_max: int) -> CartesianBasis:
        return CartesianBasis(l_max, traceless=self._traceless)
