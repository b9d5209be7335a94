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
from ase import Atoms
from ase import units as ase_units
from ase.calculators.emt import EMT

from ..errors import InputError
from ..stats import trapezoid
from .rdf import atom_fractions, rdf, rdf_distance

ENSEMBLES = ("nvt-langevin", "nvt-berendsen", "nve")
ENGINES = ("ase", "batched")      # ASE's integrators one trajectory at a time, or bench.md on every replica at once


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
    engine: str = "batched"       # ENGINES: bench.md (every replica at once) or ASE (one at a time)
    device: str = "cpu"
    backend: str = "eager"        # how the batched engine runs the potentials (bench.backends): forces only,
                                  # so a compiled or fused backend serves; the same for every potential

    def __post_init__(self):
        if self.ensemble not in ENSEMBLES:
            raise InputError(f"ensemble must be one of {ENSEMBLES}, got {self.ensemble!r}")
        if self.engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "batched" and self.ensemble == "nvt-berendsen":
            raise InputError("the batched MD engine runs nve and nvt-langevin, not nvt-berendsen; "
                             "pass --engine ase for it")
        from ..backends import BACKENDS

        if self.backend not in BACKENDS:
            raise InputError(f"unknown MD backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.backend != "eager" and self.engine != "batched":
            raise InputError(f"--md-backend {self.backend} runs the batched engine's potentials; the ASE engine "
                             "runs eager: pass --engine batched, or drop --md-backend")

    def to_dict(self) -> dict:
        return asdict(self)


def _integrator(atoms: Atoms, spec: StabilitySpec, temperature: float, rng: np.random.Generator):
    dt = spec.timestep_fs * ase_units.fs
    if spec.ensemble == "nvt-langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, dt, temperature_K=temperature, friction=spec.friction_per_fs / ase_units.fs,
                        fixcm=False, rng=rng)
    if spec.ensemble == "nvt-berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, dt, temperature_K=temperature, taut=spec.berendsen_taut_fs * ase_units.fs)
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


def rdf_from_json(stored: dict) -> dict:
    """{"a-b": [...]} (as stored in results) -> {(a, b): array}."""
    return {tuple(map(int, k.split("-"))): np.array(v) for k, v in stored.items()}


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
            "survival_area": trapezoid(survival(results, times), times) / length,
            "n_failed": int(sum(r["failure_time_fs"] is not None for r in results)), "n_runs": len(results)}


# --- the task: trained potentials from the accuracy runs, records to the store -------------------

def _accuracy_runs(store, label: str, seeds) -> dict:
    """{(descriptor, seed): run} of the largest training set per (descriptor, seed) for ``label``."""
    best = {}
    for run in store.runs():
        key = run["key"]
        if key["task"] != "accuracy" or key["dataset"] != label or key["seed"] not in seeds:
            continue
        k = (key["descriptor"], key["seed"])
        if k not in best or key["setting"]["n_train"] > best[k]["key"]["setting"]["n_train"]:
            best[k] = run
    return best


def _write(store, spec: StabilitySpec, name: str, key: dict, out: dict, reference, start: Atoms, md_seed: int,
           log) -> list[dict]:
    """Record one trajectory's result under ``key`` (records, trace and RDF artifacts); its records."""
    from ..provenance import provenance
    from ..results.record import Record

    failed = out["failure_time_fs"] is not None
    values = {"time_to_failure": out["failure_time_fs"] if failed else out["length_fs"],
              "energy_drift": energy_drift(out)}
    if reference is not None and "rdf" in out:
        values["rdf_error"] = rdf_distance(rdf_from_json(out["rdf"]), reference, spec.rdf_r_max, atom_fractions(start))
    device = spec.device if name != "emt" else "cpu"
    common = {**key, "failed": failed, "reason": out["reason"], "length_fs": out["length_fs"],
              "spec": spec.to_dict(), "engine": spec.engine if name != "emt" else "ase",
              "provenance": provenance(device, dtype="float64", seed=md_seed)}
    recs = [Record.measured(common, m, v) for m, v in values.items()]
    artifacts = {"trace": {k: out[k] for k in ("time_fs", "temperature", "total_energy")},
                 "rdf": out.get("rdf"),
                 "reference_rdf": {f"{a}-{b}": g.tolist() for (a, b), g in reference.items()}
                 if reference is not None else None}
    store.write(key, recs, artifacts)
    log(f"stability {name:9s} T={key['setting']['temperature']:.0f} K start={key['setting']['start']} "
        f"seed={md_seed}: " + (f"failed at {out['failure_time_fs']:.0f} fs ({out['reason']})" if failed
                               else f"stable for {out['length_fs']:.0f} fs"))
    return [r.to_dict() for r in recs]


def trajectory_unit(root, spec: StabilitySpec, name: str, key: dict, model_path, start: Atoms, temperature: float,
                    md_seed: int, reference, log) -> list[dict]:
    """One trajectory on ASE's integrators, as a unit of work (``bench.executor``): EMT itself
    (``model_path`` None) or a trained potential, recorded under ``key``."""
    from ..calculator import BenchCalculator
    from ..potential import load_checkpoint
    from ..results.store import ResultsStore

    calc = EMT() if model_path is None else BenchCalculator(load_checkpoint(model_path), device=spec.device)
    out = run_md(start, calc, spec, temperature, md_seed, reference_rdf=reference)
    return _write(ResultsStore(root), spec, name, key, out, reference, start, md_seed, log)


def batch_unit(root, spec: StabilitySpec, name: str, model_path, replicas: list, log) -> list[dict]:
    """Every replica of one potential advanced together on the batched engine, as a unit of work;
    ``replicas``: (key, start, temperature, md_seed, reference) each, each recorded under its key."""
    from ..backends import with_backend
    from ..potential import load_checkpoint
    from ..results.store import ResultsStore
    from .stability_batched import run_md_batched

    via = "" if spec.backend == "eager" else f", backend {spec.backend}"
    log(f"stability {name}: {len(replicas)} replicas together on {spec.device} (batched engine{via})")
    pot = with_backend(load_checkpoint(model_path, map_location=spec.device), spec.backend)   # cast by the engine
    outs = run_md_batched(pot, [(st, T, sd, ref) for _, st, T, sd, ref in replicas], spec, device=spec.device)
    store = ResultsStore(root)
    return [r for (key, start, _, md_seed, reference), out in zip(replicas, outs)
            for r in _write(store, spec, name, key, out, reference, start, md_seed, log)]


def units(spec: StabilitySpec, acc_spec, store, *, log=print) -> tuple[list, dict]:
    """The trajectories not yet stored as units of work, and {run id of a unit's key: the keys it
    records}. ASE engine (and the EMT reference): a unit per trajectory; batched engine: a unit per
    trained potential, all its replicas together. The data is read, and the reference RDFs made
    (EMT runs, in this process), here, before any unit runs."""
    from ..executor import Unit
    from ..provenance import config_hash
    from ..results.store import run_id
    from .accuracy import read_parts

    data = acc_spec.data
    parts = read_parts(data)                     # as the accuracy task read them: the same split indices
    frames, test_frames = parts.frames, parts.test
    runs = _accuracy_runs(store, data.label, acc_spec.seeds)
    if not runs:
        raise InputError(f"no trained potentials for {data.label!r} in {store.root}: run the accuracy task first")
    builtin_emt = data.source == "builtin:emt-alloy"
    periodic = bool(frames[0].pbc.any())
    # engine, device and backend are not in the hash: the engine is in each key's setting, the device in
    # provenance, the backend in each record's spec (it changes how the forces are computed, not what)
    cfg = config_hash({"stability": {k: v for k, v in spec.to_dict().items() if k not in ("engine", "device", "backend")},
                       "data": data.label})
    gpus = 1 if str(spec.device).startswith("cuda") else 0

    def make_key(name, acc_seed, temperature, s_idx, md_seed):
        setting = {"temperature": temperature, "start": s_idx, "md_seed": md_seed, "ensemble": spec.ensemble}
        if spec.engine != "ase" and name != "emt":     # ASE-engine keys stay those stored before engines existed
            setting["engine"] = spec.engine
        return {"task": "stability", "descriptor": name, "dataset": data.label, "seed": acc_seed,
                "setting": setting, "config_hash": cfg}

    todo, keys_of = [], {}
    for acc_seed in acc_spec.seeds:
        split = data.split(frames, acc_seed, has_test_file=bool(test_frames))
        pool = test_frames if test_frames else [frames[i] for i in split.test]
        starts = pool[:spec.n_starts]
        reference = None
        if periodic and not builtin_emt:
            reference = rdf([frames[i] for i in split.train], spec.rdf_r_max, spec.rdf_bins)
        candidates = [("emt", None)] if builtin_emt else []
        candidates += [(d, store.artifacts_dir / run_id(runs[(d, acc_seed)]["key"]) / "model.pt")
                       for d in acc_spec.descriptors if (d, acc_seed) in runs]
        batched = {}                       # name -> [(key, start, temperature, md_seed, reference)]
        for temperature in spec.temperatures:
            for s_idx, start in enumerate(starts):
                if builtin_emt:  # the EMT reference RDF for this start and temperature, made when first needed
                    reference = None
                for md_seed in spec.seeds:
                    for name, model_path in candidates:
                        key = make_key(name, acc_seed, temperature, s_idx, md_seed)
                        if store.has(key):
                            log(f"skip (done): stability {name} T={temperature} start={s_idx} seed={md_seed}")
                            continue
                        if builtin_emt and reference is None:
                            reference = rdf_from_json(run_md(start, EMT(), spec, temperature, seed=10_000 + s_idx)["rdf"])
                        if spec.engine == "batched" and model_path is not None:
                            batched.setdefault(name, []).append((key, start, temperature, md_seed, reference))
                            continue
                        label = f"stability {name} seed {acc_seed} T={temperature:.0f} K start {s_idx} md seed {md_seed}"
                        todo.append(Unit(key, label, trajectory_unit, (store.root, spec, name, key, model_path, start,
                                                                       temperature, md_seed, reference, log),
                                         num_gpus=gpus if model_path is not None else 0))
                        keys_of[run_id(key)] = [key]
        for name, reps in batched.items():
            model_path = dict(candidates)[name]
            label = f"stability {name} seed {acc_seed}: {len(reps)} replicas (batched)"
            todo.append(Unit(reps[0][0], label, batch_unit, (store.root, spec, name, model_path, reps, log),
                             num_gpus=gpus))
            keys_of[run_id(reps[0][0])] = [r[0] for r in reps]
    return todo, keys_of


def run(spec: StabilitySpec, acc_spec, store, *, executor: str = "local", address: str | None = None,
        log=print, jobs: int = 1) -> list[dict]:
    """MD with every trained potential of ``acc_spec``'s data set (run the accuracy task first);
    the records of the trajectories run now.

    Start frames: the first ``n_starts`` test frames of each accuracy seed's split; the same starts,
    temperatures and velocity seeds for every potential. Reference: for the built-in EMT alloy, EMT
    itself run through the same protocol (also recorded, as descriptor ``emt``); for other periodic
    data, the RDF of the data set's frames; molecules are judged by their bonds. ``executor``:
    "local" (``jobs`` at once) or "ray" (``bench.executor``), the units of ``units``.
    """
    from ..backends import BackendUnavailable, check_backend
    from ..executor import run_units
    from ..results.store import run_id
    from .accuracy import records_of

    try:
        check_backend(spec.backend, spec.device)
    except BackendUnavailable as err:
        raise InputError(f"--md-backend: {err}") from None
    todo, keys_of = units(spec, acc_spec, store, log=log)
    ran = run_units(todo, store, executor=executor, address=address, log=log, jobs=jobs)["ran"]
    return records_of(store, [k for key in ran for k in keys_of[run_id(key)]])
