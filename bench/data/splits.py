"""Deterministic train / validation / test splits, recorded by content hash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from .hashing import dataset_hash, indices_hash


@dataclass(frozen=True)
class Split:
    """Indices into one list of frames. ``record()`` identifies it in results."""

    train: tuple[int, ...]
    valid: tuple[int, ...]
    test: tuple[int, ...]
    dataset: str  # dataset_hash of the frames the indices refer to
    seed: int | None = None

    def record(self) -> dict:
        return {
            "dataset_hash": self.dataset,
            "seed": self.seed,
            "n_train": len(self.train), "n_valid": len(self.valid), "n_test": len(self.test),
            "train_hash": indices_hash(self.train),
            "valid_hash": indices_hash(self.valid),
            "test_hash": indices_hash(self.test),
        }

    def take(self, frames: Sequence, part: str) -> list:
        return [frames[i] for i in getattr(self, part)]


def _count(size, n: int, name: str) -> int:
    if size is None:
        return 0
    if isinstance(size, float) and 0.0 <= size <= 1.0:
        return int(round(size * n))
    if isinstance(size, (int, np.integer)) and size >= 0:
        return int(size)
    raise InputError(f"{name} size must be a count >= 0 or a fraction in [0, 1], got {size!r}")


def split_counts(n: int, *, train, valid=None, test=None) -> tuple[int, int, int]:
    """(training, validation, test) counts of ``random_split`` for ``n`` frames (test None: the rest)."""
    n_train, n_valid = _count(train, n, "train"), _count(valid, n, "valid")
    return n_train, n_valid, (n - n_train - n_valid if test is None else _count(test, n, "test"))


def random_split(frames: Sequence, *, train, valid=None, test=None, seed: int = 0) -> Split:
    """Shuffle with ``numpy.random.default_rng(seed)`` and cut into train/valid/test.

    Sizes are counts or fractions of ``len(frames)``; ``test=None`` takes every frame not in
    train or valid. The same frames and seed always give the same split.
    """
    n = len(frames)
    n_train, n_valid, n_test = split_counts(n, train=train, valid=valid, test=test)
    if n_train + n_valid + n_test > n or min(n_train, n_valid, n_test) < 0:
        raise InputError(f"split sizes {n_train}+{n_valid}+{n_test} exceed the {n} frames available")
    perm = np.random.default_rng(seed).permutation(n)
    a, b = n_train, n_train + n_valid
    return Split(tuple(map(int, perm[:a])), tuple(map(int, perm[a:b])), tuple(map(int, perm[b:b + n_test])),
                 dataset_hash(frames), seed)


def explicit_split(frames: Sequence, *, train: Sequence[int], valid: Sequence[int] = (), test: Sequence[int] = ()) -> Split:
    """A split from given index lists; indices must be in range and the parts disjoint."""
    n = len(frames)
    parts = [tuple(int(i) for i in p) for p in (train, valid, test)]
    flat = [i for p in parts for i in p]
    if any(not 0 <= i < n for i in flat):
        raise InputError(f"split index out of range for {n} frames")
    if len(set(flat)) != len(flat):
        raise InputError("train, valid and test indices overlap")
    return Split(*parts, dataset=dataset_hash(frames), seed=None)
