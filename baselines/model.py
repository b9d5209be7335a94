"""``baselines.SphericalACE``: the spherical-harmonic / Clebsch-Gordan baseline."""

from __future__ import annotations

from bench.nn.ace import AtomicClusterExpansion

from .angular import SphericalBasis


class SphericalACE(AtomicClusterExpansion):
    """The same descriptor as ``cace.CACE`` (same keywords, presets, radial basis, channels,
    messages, readout) with the angular part replaced by e3nn real spherical harmonics and
    Clebsch-Gordan coupling. Extra keyword: ``mode`` = ``"matched"`` (default: the Cartesian
    number of invariants) or ``"complete"`` (every allowed coupling); see ``baselines.angular``.
    """

    descriptor_name = "spherical"

    def __init__(self, elements, *, mode: str = "matched", **kwargs):
        self._mode = mode
        super().__init__(elements, **kwargs)
        self._config["mode"] = mode

    def make_angular(self, l_max: int, nu_max: int) -> SphericalBasis:
        return SphericalBasis(l_max, self._mode)
