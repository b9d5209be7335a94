"""Test mixins shipped with the package: every descriptor and potential must pass them."""

from .mixin import DescriptorTests, PotentialTests, random_cluster, random_periodic, random_rotation, relative_error

__all__ = ["DescriptorTests", "PotentialTests", "random_cluster", "random_periodic", "random_rotation",
           "relative_error"]
