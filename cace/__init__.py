"""Our Cartesian Atomic Cluster Expansion (CACE), written from shared/design/cace-math.md."""

from . import presets
from .angular import CartesianBasis, monomials, multinomial
from .model import CACE

__all__ = ["CACE", "CartesianBasis", "monomials", "multinomial", "presets"]
