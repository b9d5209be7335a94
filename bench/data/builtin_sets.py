"""Data the project makes itself with ASE's EMT calculator: no download, deterministic for a seed.

``emt-alloy``: a random fcc alloy of Cu, Ni, Pd, Ag and Au (2x2x2 conventional cells, 32 atoms),
sampled from Langevin MD at several temperatures, plus strained and rattled cells. EMT is cheap,
so the same generator also gives the reference MD that the stability task compares against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, reference_states

from ..errors import InputError
from .cache import cache_dir

GENERATOR_VERSION = 1  # bump when the recipe changes, so stale caches are not reused


@dataclass(frozen=True)
class EMTAlloyRecipe:
    elements: tuple[str, ...] = ("Cu", "Ni", "Pd", "Ag", "Au")
    repeat: int = 2                       # conventional fcc cells per side (4 atoms each)
    temperatures: tuple[float, ...] = (300.0, 900.0, 1500.0)   # K
    frames_per_temperature: int = 40
    md_timestep_fs: float = 2.0
    md_stride: int = 5                    # MD steps between sampled frames
    md_equilibration: int = 30            # steps before the first sample
    n_strained: int = 30
    max_strain: float = 0.04
    n_rattled: int = 30
    rattle_stdev: float = 0.12            # Angstrom


def random_alloy_cell(rng: np.random.Generator, recipe: EMTAlloyRecipe = EMTAlloyRecipe()) -> Atoms:
    """A random-composition fcc cell at its Vegard's-law lattice constant, with EMT attached."""
    n = 4 * recipe.repeat**3
    symbols = rng.choice(recipe.elements, size=n)
    a = float(np.mean([reference_states[atomic_numbers[s]]["a"] for s in symbols]))
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(recipe.repeat)
    atoms.set_chemical_symbols(list(symbols))
    atoms.calc = EMT()
    return atoms


def _labelled(atoms: Atoms, config_type: str) -> Atoms:
    """A copy of ``atoms`` carrying its EMT energy, forces and stress as fixed results."""
    if atoms.calc is None:
        atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.calc = SinglePointCalculator(out, **results)
    out.info["config_type"] = config_type
    return out


def make_emt_alloy(seed: int = 0, recipe: EMTAlloyRecipe = EMTAlloyRecipe()) -> list[Atoms]:
    """Generate the frames (about 2 s on one core)."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    rng = np.random.default_rng(seed)
    frames: list[Atoms] = []
    for temperature in recipe.temperatures:
        atoms = random_alloy_cell(rng, recipe)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        dyn = Langevin(atoms, recipe.md_timestep_fs * units.fs, temperature_K=temperature,
                       friction=0.02, fixcm=False, rng=rng)
        dyn.run(recipe.md_equilibration)
        for _ in range(recipe.frames_per_temperature):
            dyn.run(recipe.md_stride)
            frames.append(_labelled(atoms, f"md_{int(temperature)}K"))
    for _ in range(recipe.n_strained):
        atoms = random_alloy_cell(rng, recipe)
        strain = rng.uniform(-recipe.max_strain, recipe.max_strain, size=(3, 3))
        strain = 0.5 * (strain + strain.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.03, size=atoms.positions.shape)
        frames.append(_labelled(atoms, "strained"))
    for _ in range(recipe.n_rattled):
        atoms = random_alloy_cell(rng, recipe)
        atoms.positions += rng.normal(0.0, recipe.rattle_stdev, size=atoms.positions.shape)
        frames.append(_labelled(atoms, "rattled"))
    return frames


BUILTIN = {"emt-alloy": "random fcc Cu-Ni-Pd-Ag-Au alloy, EMT energies/forces/stress: MD at 300/900/1500 K, strained and rattled cells (180 frames x 32 atoms)"}


def builtin(name: str = "emt-alloy", *, seed: int = 0) -> list[Atoms]:
    """The named built-in data set, generated once per seed and cached (extended XYZ)."""
    from .read import read

    if name not in BUILTIN:
        raise InputError(f"unknown built-in data set {name!r}; known: {sorted(BUILTIN)}")
    path = cache_dir("builtin") / f"{name}-seed{seed}-v{GENERATOR_VERSION}.extxyz"
    if not path.is_file():
        import ase.io

        from ..atomic import atomic_path

        frames = make_emt_alloy(seed)
        with atomic_path(path, suffix=".extxyz.tmp") as tmp:     # a crash never leaves a half-written cache
            ase.io.write(tmp, frames, format="extxyz")
    return read(path, stress_key="stress")
