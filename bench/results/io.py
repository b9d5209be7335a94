"""Atomic JSON writes for the results store (``bench.atomic``, the one implementation)."""

from ..atomic import write_json_atomic

__all__ = ["write_json_atomic"]
