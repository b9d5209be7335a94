"""Molecular dynamics on the device: many replicas advanced together as one batched graph."""

from .engine import ENSEMBLES, BatchedMD

__all__ = ["BatchedMD", "ENSEMBLES"]
