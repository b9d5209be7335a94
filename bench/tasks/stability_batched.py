"""The stability protocol on the batched MD engine: every replica of one potential (starts x
temperatures x velocity seeds) advanced together (``bench.md.BatchedMD``), judged per replica by
the same criteria as ``stability.run_md`` (same order, same check interval, same traces); a failed
replica is recorded and dropped while the others go on.

Differences from the ASE path, by design: Langevin is BAOAB (ASE's ``Langevin`` uses another
splitting; same friction and temperature), and its noise comes from one generator per batch
(seeded by the first replica's velocity seed), so a Langevin replica's trajectory depends on which
replicas share its batch. Velocity Verlet (NVE) equals ASE's to 1e-8 A over 100 steps
(tests/test_md_engine.py); NVT-Berendsen is ASE-only.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from ase import Atoms

from ..errors import InputError
from .rdf import atom_fractions, rdf, rdf_distance

BATCHED_ENSEMBLES = ("nve", "nvt-langevin")


def run_md_batched(potential, replicas: list[tuple[Atoms, float, int, dict | None]], spec, *, device="cpu",
                   dtype=torch.float64) -> list[dict]:
    """``replicas``: (start frame, temperature K, velocity seed, reference RDF or None) each; returns
    one ``run_md``-style result per replica, in order."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from ..md import BatchedMD
    from .stability import reference_bonds

    if spec.ensemble not in BATCHED_ENSEMBLES:
        raise InputError(f"the batched MD engine runs {' and '.join(BATCHED_ENSEMBLES)}, not {spec.ensemble!r}; "
                         "pass --engine ase for it")
    frames = []
    for start, temperature, seed, _ in replicas:
        atoms = start.copy()
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
        Stationary(atoms)
        frames.append(atoms)
    md = BatchedMD(potential, frames, timestep_fs=spec.timestep_fs, ensemble=spec.ensemble,
                   temperatures=[r[1] for r in replicas], friction_per_fs=spec.friction_per_fs,
                   seed=replicas[0][2] + 1_000_003, device=device, dtype=dtype)
    molecule = [not a.pbc.any() for a in frames]
    bonds = [reference_bonds(r[0]) if mol else None for r, mol in zip(replicas, molecule)]
    maxlen = max(1, int(round(spec.rdf_window_fs / (spec.timestep_fs * spec.check_interval))))
    windows = [deque(maxlen=maxlen) for _ in replicas]
    outs = [{"failure_time_fs": None, "reason": None, "time_fs": [], "temperature": [], "potential_energy": [],
             "total_energy": []} for _ in replicas]
    last = [None] * len(replicas)                    # the replica's atoms at its last check (for its RDF)
    for block in range(spec.n_steps // spec.check_interval):
        t = (block + 1) * spec.check_interval * spec.timestep_fs
        try:
            md.run(spec.check_interval)
        except Exception as err:  # a potential that blows up may fail inside the neighbour list
            finite = md.finite()
            for k, rid in enumerate(md.replica_ids):
                outs[rid]["failure_time_fs"] = t
                outs[rid]["reason"] = "non-finite" if not finite[k] else f"error: {type(err).__name__}"
            break
        finite, temp = md.finite(), md.temperature()
        epot, ekin, dmin = md.potential_energy(), md.kinetic_energy(), md.min_distance()
        now = md.atoms()
        failed = []
        for k, rid in enumerate(md.replica_ids):
            out = outs[rid]

            def fail(reason):
                out["failure_time_fs"], out["reason"] = t, reason
                failed.append(k)

            if not finite[k]:
                fail("non-finite")
                continue
            last[rid] = now[k]
            out["time_fs"].append(t)
            out["temperature"].append(float(temp[k]))
            out["potential_energy"].append(float(epot[k]))
            out["total_energy"].append(float(epot[k] + ekin[k]))
            if temp[k] > spec.max_temperature:
                fail("temperature")
            elif dmin[k] < spec.min_distance:
                fail("min-distance")
            elif molecule[rid] and len(bonds[rid][0]):
                i, j, d0 = bonds[rid]
                d = np.linalg.norm(now[k].positions[j] - now[k].positions[i], axis=1)
                if np.max(np.abs(d - d0)) > spec.bond_tolerance:
                    fail("bond")
            elif replicas[rid][3] is not None and not molecule[rid]:
                windows[rid].append(now[k])
                if len(windows[rid]) == maxlen:
                    err = rdf_distance(rdf(windows[rid], spec.rdf_r_max, spec.rdf_bins), replicas[rid][3],
                                       spec.rdf_r_max, fractions=atom_fractions(now[k]))
                    if err > spec.rdf_threshold:
                        fail("rdf")
        md.drop(failed)
        if not md.n_replicas:
            break
    length = spec.n_steps // spec.check_interval * spec.check_interval * spec.timestep_fs
    for rid, out in enumerate(outs):
        out.update(length_fs=length, n_atoms=len(frames[rid]))
        if not molecule[rid] and last[rid] is not None:
            out["rdf"] = {f"{a}-{b}": g.tolist() for (a, b), g in rdf([last[rid]], spec.rdf_r_max, spec.rdf_bins).items()}
    return outs
