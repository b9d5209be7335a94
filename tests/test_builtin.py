"""The built-in EMT alloy: deterministic for a seed, cached, physically labelled."""

import numpy as np
from ase.calculators.emt import EMT

from bench.data import builtin
from bench.data.builtin_sets import EMTAlloyRecipe, make_emt_alloy

TINY = EMTAlloyRecipe(repeat=1, temperatures=(300.0, 1200.0), frames_per_temperature=3, md_equilibration=5,
                      md_stride=2, n_strained=2, n_rattled=2)


def test_same_seed_same_frames_other_seed_other_frames():
    a, b, c = make_emt_alloy(7, TINY), make_emt_alloy(7, TINY), make_emt_alloy(8, TINY)
    assert len(a) == 10
    assert all(np.array_equal(x.positions, y.positions) and x.get_potential_energy() == y.get_potential_energy()
               for x, y in zip(a, b))
    assert not np.allclose(a[0].positions, c[0].positions)


def test_labels_are_emt_and_several_elements():
    frames = make_emt_alloy(1, TINY)
    atoms = frames[-1].copy()
    atoms.calc = EMT()
    assert np.isclose(atoms.get_potential_energy(), frames[-1].get_potential_energy())
    assert np.allclose(atoms.get_forces(), frames[-1].get_forces())
    assert len({int(z) for f in frames for z in f.numbers}) >= 3
    assert {f.info["config_type"] for f in frames} == {"md_300K", "md_1200K", "strained", "rattled"}


def test_builtin_is_cached_and_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("CACE_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr("bench.data.builtin_sets.EMTAlloyRecipe", lambda: TINY)
    monkeypatch.setattr("bench.data.builtin_sets.make_emt_alloy", lambda seed: make_emt_alloy(seed, TINY))
    first = builtin("emt-alloy", seed=2)
    cached = list((tmp_path / "builtin").glob("emt-alloy-seed2-*.extxyz"))
    assert len(cached) == 1
    again = builtin("emt-alloy", seed=2)
    assert [f.get_potential_energy() for f in first] == [f.get_potential_energy() for f in again]
    assert first[0].calc.results["stress"].shape == (6,)
