"""Splits are deterministic and recorded by content hash; E0 by least squares recovers known values."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from bench.data import dataset_hash, explicit_split, fit_e0, random_split


def _frames(n=30, seed=0):
    rng = np.random.default_rng(seed)
    e0 = {1: -13.6, 8: -2040.0, 6: -1030.0}
    frames = []
    for _ in range(n):
        z = rng.choice([1, 6, 8], size=rng.integers(3, 9))
        a = Atoms(numbers=z, positions=rng.uniform(0, 10, (len(z), 3)))
        e = sum(e0[int(k)] for k in z) + rng.normal(0, 1e-3)
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(z), 3)))
        frames.append(a)
    return frames, e0


def test_random_split_deterministic_disjoint_and_recorded():
    frames, _ = _frames()
    a = random_split(frames, train=0.6, valid=5, seed=3)
    b = random_split(frames, train=0.6, valid=5, seed=3)
    c = random_split(frames, train=0.6, valid=5, seed=4)
    assert a == b and a.train != c.train
    assert (len(a.train), len(a.valid), len(a.test)) == (18, 5, 7)
    assert not set(a.train) & set(a.valid) and not set(a.train) & set(a.test) and not set(a.valid) & set(a.test)
    rec = a.record()
    assert rec["dataset_hash"] == dataset_hash(frames) and rec["train_hash"] == b.record()["train_hash"]
    assert rec["train_hash"] != c.record()["train_hash"]
    with pytest.raises(ValueError):
        random_split(frames, train=25, valid=10)


def test_dataset_hash_sees_a_changed_energy():
    frames, _ = _frames()
    h = dataset_hash(frames)
    frames[3].calc.results["energy"] += 1e-9
    assert dataset_hash(frames) != h


def test_explicit_split_checks_indices():
    frames, _ = _frames(10)
    s = explicit_split(frames, train=[0, 1, 2], valid=[3], test=[4, 5])
    assert s.take(frames, "valid") == [frames[3]]
    with pytest.raises(ValueError):
        explicit_split(frames, train=[0, 1], test=[1])
    with pytest.raises(ValueError):
        explicit_split(frames, train=[10])


def test_fit_e0_recovers_reference_energies():
    frames, e0 = _frames(40)
    fitted = fit_e0(frames)
    for z, e in e0.items():
        assert fitted[z] == pytest.approx(e, abs=1e-2)
