"""The spherical-harmonic / Clebsch-Gordan baseline on e3nn, matched to cace.CACE."""

from .angular import SphericalBasis
from .model import SphericalACE

__all__ = ["SphericalACE", "SphericalBasis"]
