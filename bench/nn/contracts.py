"""The descriptor contract, stated once in code: what every angular basis and every descriptor
offers (CACE's monomials, e3nn's harmonics, and any other basis or fast path that is swapped in).
Structural (``typing.Protocol``): an implementation satisfies it by having these members;
``missing_members`` checks their presence, the shipped test kit (``bench.testing``) checks behaviour.

Not ``isinstance``: from Python 3.12 a runtime-checkable protocol looks members up with
``inspect.getattr_static``, which does not see an ``nn.Module``'s submodules, parameters and buffers
(they live in ``_modules`` / ``_buffers``, reached through ``__getattr__``), so every descriptor
failed the check there while passing on 3.11."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class AngularBasis(Protocol):
    """u [E, 3] unit bond directions -> [E, Q] angular components, grouped by increasing degree l."""

    l_max: int
    l_of: torch.Tensor                    # [Q] int64: the degree of each component

    @property
    def n_ang(self) -> int: ...           # Q

    def __call__(self, u: torch.Tensor) -> torch.Tensor: ...

    def invariant_tables(self, nu_max: int) -> list: ...   # contraction tables, body orders 1..nu_max


@runtime_checkable
class Descriptor(Protocol):
    """An AtomsGraph -> per-atom invariant features [N, n_features], the same function whichever
    neighbour-sum path runs it (``neighbor_sum``: "dense" or "triton", bench.backends)."""

    cutoff: float
    n_features: int
    descriptor_name: str
    angular: AngularBasis

    def __call__(self, graph, neighbor_sum: str = "dense") -> torch.Tensor: ...

    def config(self) -> dict: ...         # rebuilds it with from_config (checkpoints)

    def fused_sums(self) -> list: ...     # (name, Q, R, C, L) of each neighbour sum (kernel benchmarks)


def missing_members(obj, protocol: type) -> list[str]:
    """The members of ``protocol`` (``AngularBasis`` or ``Descriptor``) that ``obj`` lacks, found with
    ``hasattr`` (which an ``nn.Module`` answers for its submodules and buffers); [] when it conforms."""
    names = list(getattr(protocol, "__annotations__", {}))                         # in declaration order
    names += [n for n, v in vars(protocol).items()
              if n not in names and not n.startswith("_") and (callable(v) or isinstance(v, property))]
    if "__call__" in vars(protocol):
        names.append("__call__")
    return [n for n in names if not hasattr(obj, n)]
