"""Stability in molecular dynamics: run both potentials under one protocol and record when and why
each trajectory stops being physical.

Protocol (all through ASE): Maxwell-Boltzmann velocities from the seed, then NVT (Langevin or
Berendsen) or NVE (velocity Verlet). The same starting frames and velocity seeds for every potential.
Every ``check_interval`` steps the criteria below are tested; the first that fires ends the run and
is recorded with its time:
- ``non-finite``: energy, forces or positions not finite;
- ``temperature``: above ``max_temperature`` (1e5 K);
- ``min-distance``: two atoms closer than ``min_distance``;
- ``bond``: molecules only; a bond (ASE natural cutoffs on the start frame) deviates by more than
  ``bond_tolerance`` (0.5 A) from its start length;
- ``rdf``: periodic systems with a reference RDF; the L1 RDF error of the last ``rdf_window_fs``
  (element pairs weighted by pair fraction, ``bench.tasks.rdf.rdf_distance``) exceeds
  ``rdf_threshold`` (3.0).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms, units

from .rdf import atom_fractions, rdf, rdf_distance

ENSEMBLES = ("nvt-langevin", "nvt-berendsen", "nve")


@dataclass(frozen=True)
class StabilitySpec:
    ensemble: str = "nvt-langevin"
    timestep_fs: float = 1.0
    n_steps: int = 500
    temperatures: tuple = (300.0,)
    seeds: tuple = (0,)
    n_starts: int = 1
    friction_per_fs: float = 0.01
    berendsen_taut_fs: float = 100.0
    check_interval: int = 10
    bond_tolerance: float = 0.5
    rdf_threshold: float = 3.0
    rdf_window_fs: float = 200.0
    rdf_r_max: float = 6.0
    rdf_bins: int = 60
    max_temperature: float = 1e5
    min_distance: float = 0.5

    def __post_init__(self):
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {self.ensemble!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _integrator(atoms: Atoms, spec: StabilitySpec, temperature: float, rng: np.random.Generator):
    dt = spec.timestep_fs * units.fs
    if spec.ensemble == "nvt-langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, dt, temperature_K=temperature, friction=spec.friction_per_fs / units.fs,
                        fixcm=False, rng=rng)
    if spec.ensemble == "nvt-berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, dt, temperature_K=temperature, taut=spec.berendsen_taut_fs * units.fs)
    from ase.md.verlet import VelocityVerlet

    return VelocityVerlet(atoms, dt)


def reference_bonds(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bonded pairs (i < j) by ASE's natural cutoffs on ``atoms``, and their lengths."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j, d = neighbor_list("ijd", atoms, natural_cutoffs(atoms))
    keep = i < j
    return i[keep], j[keep], d[keep]


def _min_distance(atoms: Atoms, cutoff: float) -> float:
    from ..neighbors import neighbor_pairs

    _, _, _, d = neighbor_pairs(atoms.positions, atoms.cell.array, atoms.pbc, max(cutoff, 1.0), full=False)
    return float(d.min()) if len(d) else np.inf


def run_md(start: Atoms, calc, spec: StabilitySpec, temperature: float, seed: int,
           reference_rdf: dict | None = None) -> dict:
    """One trajectory. Returns failure time and reason (``None`` if it survived) and the traces."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    atoms = start.copy()
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dyn = _integrator(atoms, spec, temperature, np.random.default_rng(seed + 1_000_003))
    molecule = not atoms.pbc.any()
    bonds = reference_bonds(start) if molecule else None
    window = deque(maxlen=max(1, int(round(spec.rdf_window_fs / (spec.timestep_fs * spec.check_interval)))))
    trace = {"time_fs": [], "temperature": [], "potential_energy": [], "total_energy": []}
    failure, reason = None, None
    for block in range(spec.n_steps // spec.check_interval):
        t = (block + 1) * spec.check_interval * spec.timestep_fs
        try:
            dyn.run(spec.check_interval)
            epot = atoms.get_potential_energy()
            forces = atoms.get_forces()
        except Exception as err:  # a potential that blows up may fail inside the neighbour list
            finite = np.all(np.isfinite(atoms.positions))
            failure, reason = t, "non-finite" if not finite else f"error: {type(err).__name__}"
            break
        if not (np.isfinite(epot) and np.all(np.isfinite(forces)) and np.all(np.isfinite(atoms.positions))):
            failure, reason = t, "non-finite"
            break
        temp = atoms.get_temperature()
        trace["time_fs"].append(t)
        trace["temperature"].append(float(temp))
        trace["potential_energy"].append(float(epot))
        trace["total_energy"].append(float(epot + atoms.get_kinetic_energy()))
        if temp > spec.max_temperature:
            failure, reason = t, "temperature"
            break
        if _min_distance(atoms, spec.min_distance) < spec.min_distance:
            failure, reason = t, "min-distance"
            break
        if molecule and len(bonds[0]):
            d = np.linalg.norm(atoms.positions[bonds[1]] - atoms.positions[bonds[0]], axis=1)
            if np.max(np.abs(d - bonds[2])) > spec.bond_tolerance:
                failure, reason = t, "bond"
                break
        if reference_rdf is not None and not molecule:
            window.append(atoms.copy())
            if len(window) == window.maxlen:
                err = rdf_distance(rdf(window, spec.rdf_r_max, spec.rdf_bins), reference_rdf, spec.rdf_r_max,
                                   fractions=atom_fractions(atoms))
                if err > spec.rdf_threshold:
                    failure, reason = t, "rdf"
                    break
    length = spec.n_steps // spec.check_interval * spec.check_interval * spec.timestep_fs
    out = {"failure_time_fs": failure, "reason": reason, "length_fs": length, "n_atoms": len(atoms), **trace}
    if not molecule and np.all(np.isfinite(atoms.positions)):
        out["rdf"] = {f"{a}-{b}": g.tolist() for (a, b), g in rdf([atoms], spec.rdf_r_max, spec.rdf_bins).items()}
    return out


def energy_drift(result: dict) -> float:
    """Slope of the total energy in meV/atom/ps (a linear fit over the trace)."""
    t, e = np.asarray(result["time_fs"]), np.asarray(result["total_energy"])
    if len(t) < 2:
        return float("nan")
    slope = np.polyfit(t / 1000.0, e, 1)[0]
    return float(slope * 1e3 / result["n_atoms"])


def survival(results: list[dict], times: np.ndarray) -> np.ndarray:
    """Fraction of runs still stable at each time (failures censored at the run length)."""
    ttf = np.array([r["failure_time_fs"] if r["failure_time_fs"] is not None else np.inf for r in results])
    return np.array([(ttf > t).mean() for t in times])


def summarise(results: list[dict]) -> dict:
    """Median time to failure (censored), survival area (fraction of the run length), failure count."""
    length = results[0]["length_fs"]
    ttf = np.array([r["failure_time_fs"] if r["failure_time_fs"] is not None else length for r in results])
    times = np.linspace(0.0, length, 201)
    return {"median_time_to_failure_fs": float(np.median(ttf)),
            "survival_area": float(np.trapezoid(survival(results, times), times) / length),
            "n_failed": int(sum(r["failure_time_fs"] is not None for r in results)), "n_runs": len(results)}
