"""``BatchedMD``: many MD replicas advanced together as one batched graph on one device.

Every replica (a start frame with its own velocities and temperature; replicas may differ in size,
element set and periodicity) is one graph of an ``AtomsGraph`` batch, so one potential call gives
the forces of all of them. State lives on the device as flat tensors (positions, velocities,
inverse masses [N, .]); the host is touched only to rebuild the neighbour list, which is built with
a ``skin`` and reused until some atom has moved more than skin / 2 since the last build (edges
beyond the cutoff contribute exactly zero, so the skin changes no number), and to read the per-replica
observables the caller asks for. With vesin-torch installed the rebuild itself runs on the device
too (``neighbor_list="device"``, the default then); otherwise vesin on host copies. ``drop(replicas)`` removes failed replicas while the others go on.
Under a backend that replays CUDA graphs (``bench.backends.replays_fixed_shapes``) each new list is
padded to bucketed edge and neighbour counts (``bench.graph.pad_edges``: padding adds exact zeros),
so that the run records a few graph shapes, not one per rebuild; ``shapes`` counts them.

Units: ASE's (Angstrom, eV, amu, ASE time: ``timestep_fs * ase.units.fs``); velocities in
Angstrom per ASE time unit, as ``Atoms.get_velocities``. Integrators: ``integrators.py``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms, units

from ..errors import InputError
from ..graph import AtomsGraph, edge_bucket, pad_edges
from .integrators import drift, kick, ornstein_uhlenbeck

ENSEMBLES = ("nve", "nvt-langevin")


class BatchedMD:
    """Replicas ``frames`` (their positions and velocities are the initial state) under ``potential``.

    ``ensemble``: "nve" (velocity Verlet) or "nvt-langevin" (BAOAB at ``temperatures`` [K], one per
    replica or one for all, friction ``friction_per_fs``); ``seed`` seeds the Langevin noise.
    ``pad_edges``: pad each neighbour list to bucketed sizes (None: where the potential's backend
    replays CUDA graphs).
    """

    def __init__(self, potential, frames: Sequence[Atoms], *, timestep_fs: float, ensemble: str = "nve",
                 temperatures: float | Sequence[float] = 300.0, friction_per_fs: float = 0.01, seed: int = 0,
                 dtype=torch.float64, device="cpu", skin: float = 0.5, neighbor_list: str = "auto",
                 pad_edges: bool | None = None):
        if ensemble not in ENSEMBLES:
            raise InputError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
        if not frames:
            raise InputError("BatchedMD needs at least one frame")
        if skin < 0 or not np.isfinite(skin):
            raise InputError(f"skin must be a finite non-negative length in Angstrom, got {skin}")
        from ..neighbors import device_neighbor_list_available

        if neighbor_list not in ("auto", "device", "host"):
            raise InputError(f"neighbor_list must be 'auto', 'device' or 'host', got {neighbor_list!r}")
        if neighbor_list == "device" and not device_neighbor_list_available():
            raise InputError("neighbor_list='device' needs vesin-torch (pip install vesin-torch); pass 'host'")
        # device: vesin-torch on the state's device (no host round trip); host: vesin on numpy copies
        self.neighbor_list = ("device" if device_neighbor_list_available() else "host") if neighbor_list == "auto" \
            else neighbor_list
        self.potential = potential.to(device=device, dtype=dtype).eval()
        from ..backends import replays_fixed_shapes

        self.pad_edges = replays_fixed_shapes(getattr(potential, "backend", "eager")) if pad_edges is None \
            else bool(pad_edges)
        self.shapes: set[tuple[int, int, int]] = set()             # (atoms, edges, max neighbours) of each list
        self._padded_shape = None                                     # the last padded list's
        self.cutoff = float(potential.descriptor.cutoff)
        self.dtype, self.device, self.skin = dtype, torch.device(device), float(skin)
        self.ensemble = ensemble
        self.dt = float(timestep_fs) * units.fs
        self.gamma = float(friction_per_fs) / units.fs
        self.frames = [a.copy() for a in frames]                      # host templates: numbers, cell, pbc
        temps = np.broadcast_to(np.asarray(temperatures, dtype=float), (len(frames),))
        self.temperatures = temps.copy()
        self.replica_ids = np.arange(len(frames))                     # original index of each active replica
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        t = dict(dtype=dtype, device=self.device)
        self.positions = torch.as_tensor(np.concatenate([a.positions for a in frames]), **t)          # [N, 3]
        self.velocities = torch.as_tensor(np.concatenate([a.get_velocities() for a in frames]), **t)  # [N, 3]
        self.inv_mass = 1.0 / torch.as_tensor(np.concatenate([a.get_masses() for a in frames]), **t)[:, None]
        self.n_steps = 0
        self.n_rebuilds = 0
        self._ref = None
        self._build()
        self.forces, self.energy = self._forces()

    # --- neighbour list -----------------------------------------------------------------------
    def _build(self) -> None:
        """Graph of the active replicas at the current positions, with cutoff + skin."""
        if self.neighbor_list == "device":
            self._build_on_device()
        else:
            self._build_on_host()
        if self.pad_edges:
            self.graph = self._padded(self.graph)
        self.shapes.add((self.graph.n_atoms, self.graph.n_edges, self.graph.max_neighbors))
        self._kT = (units.kB * torch.as_tensor(self.temperatures, dtype=self.dtype, device=self.device))[self.graph.batch][:, None]
        self.n_rebuilds += 1

    def _padded(self, graph: AtomsGraph) -> AtomsGraph:
        """``graph`` padded to its bucketed sizes, or to the last list's sizes where those hold it and
        are at most one bucket above its own (a count that wanders across a bucket boundary, as an
        MD run's does, then keeps one shape instead of alternating between two)."""
        last = self._padded_shape
        E, nb = graph.n_edges, graph.max_neighbors
        if (last is not None and last[0] == graph.n_atoms
                and E <= last[1] <= edge_bucket(edge_bucket(E) + 1) and nb <= last[2] <= edge_bucket(edge_bucket(nb) + 1)):
            padded = pad_edges(graph, last[1], last[2])
        else:
            padded = pad_edges(graph)
        self._padded_shape = (padded.n_atoms, padded.n_edges, padded.max_neighbors)
        return padded

    def _searched_positions(self) -> torch.Tensor:
        """[N, 3] the positions the neighbour search uses: the current ones, except that a replica
        gone non-finite (dropped at the caller's next check) keeps its last searched positions (zeros
        before the first search), so that it cannot break the neighbour lists of the others."""
        pos = self.positions.detach()
        ref = self._ref if self._ref is not None else torch.zeros_like(pos)
        lengths = torch.tensor([len(a) for a in self.frames], device=self.device)
        owner = torch.repeat_interleave(torch.arange(len(self.frames), device=self.device), lengths)   # [N]
        bad_atoms = (~torch.isfinite(pos).all(1)).to(pos.dtype)
        broken = bad_atoms.new_zeros(len(self.frames)).index_add(0, owner, bad_atoms) > 0               # [replicas]
        return torch.where(broken[owner][:, None], ref, pos)

    def _build_on_device(self) -> None:
        """vesin-torch per replica on the state's device."""
        from ..graph import collate, graph_from_tensors

        pos = self._searched_positions()
        t = dict(dtype=self.dtype, device=self.device)
        graphs, k = [], 0
        for a in self.frames:
            graphs.append(graph_from_tensors(pos[k:k + len(a)], torch.as_tensor(a.numbers, device=self.device),
                                             torch.as_tensor(a.cell.array, **t), a.pbc, self.cutoff + self.skin,
                                             elements=a.numbers))
            k += len(a)
        self.graph = collate(graphs)
        self._ref = pos.clone()

    def _build_on_host(self) -> None:
        """vesin on host copies of the replicas."""
        pos = self._searched_positions()
        frames = self._frames_at(pos.cpu().numpy())
        self.graph = AtomsGraph.from_atoms(frames, self.cutoff + self.skin, dtype=self.dtype, device=self.device)
        self._ref = pos.clone()

    def _frames_at(self, pos: np.ndarray, vel: np.ndarray | None = None) -> list[Atoms]:
        """Copies of the replica templates at per-atom positions (and velocities) [N, 3]."""
        out, k = [], 0
        for a in self.frames:
            b = a.copy()
            b.positions = pos[k:k + len(a)]
            if vel is not None:
                b.set_velocities(vel[k:k + len(a)])
            k += len(a)
            out.append(b)
        return out

    def _maybe_rebuild(self) -> None:
        moved = (self.positions - self._ref).square().sum(1)
        moved = torch.where(torch.isfinite(moved), moved, 0.0).max()  # a NaN replica neither blocks nor forces a rebuild
        if float(moved) > (0.5 * self.skin) ** 2:
            self._build()

    def _forces(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.potential(self.graph.replace(positions=self.positions), forces=True)
        return out["forces"].detach(), out["energy"].detach()

    # --- dynamics -----------------------------------------------------------------------------
    def step(self) -> None:
        if not self.n_replicas:
            return
        dt = self.dt
        if self.ensemble == "nve":
            self.velocities = kick(self.velocities, self.forces, self.inv_mass, 0.5 * dt)
            self.positions = drift(self.positions, self.velocities, dt)
        else:                                                          # BAOAB
            self.velocities = kick(self.velocities, self.forces, self.inv_mass, 0.5 * dt)
            self.positions = drift(self.positions, self.velocities, 0.5 * dt)
            self.velocities = ornstein_uhlenbeck(self.velocities, self.inv_mass, self._kT, self.gamma, dt,
                                                 self.generator)
            self.positions = drift(self.positions, self.velocities, 0.5 * dt)
        self._maybe_rebuild()
        self.forces, self.energy = self._forces()
        self.velocities = kick(self.velocities, self.forces, self.inv_mass, 0.5 * dt)
        self.n_steps += 1

    def run(self, n_steps: int) -> None:
        for _ in range(int(n_steps)):
            self.step()

    # --- observables (per active replica, host numpy) -------------------------------------------
    @property
    def n_replicas(self) -> int:
        return len(self.frames)

    def kinetic_energy(self) -> np.ndarray:
        """[replicas] eV: sum 1/2 m v^2."""
        e = 0.5 * self.velocities.square().sum(1) / self.inv_mass[:, 0]
        return e.new_zeros(self.n_replicas).index_add(0, self.graph.batch, e).cpu().numpy()

    def potential_energy(self) -> np.ndarray:
        return self.energy.cpu().numpy().copy()

    def temperature(self) -> np.ndarray:
        """[replicas] K, as ``Atoms.get_temperature`` (3 N degrees of freedom)."""
        n = np.array([len(a) for a in self.frames])
        return 2.0 * self.kinetic_energy() / (3.0 * n * units.kB)

    def atoms(self) -> list[Atoms]:
        """The active replicas as ASE Atoms (positions and velocities now), on the host."""
        return self._frames_at(self.positions.cpu().numpy(), self.velocities.cpu().numpy())

    def min_distance(self) -> np.ndarray:
        """[replicas] the shortest interatomic distance within cutoff + skin (inf if none), from the
        graph's edges on the device."""
        d = self.graph.edge_vectors(self.positions).norm(dim=1)                      # [E]
        if self.graph.edge_mask is not None:                                          # padding edges: no pair
            d = d.masked_fill(~self.graph.edge_mask, float("inf"))
        out = d.new_full((self.n_replicas,), float("inf"))
        return out.scatter_reduce(0, self.graph.batch[self.graph.receivers], d, "amin").cpu().numpy()

    def finite(self) -> np.ndarray:
        """[replicas] bool: positions, velocities, forces and energy all finite."""
        ok = (torch.isfinite(self.positions).all(1) & torch.isfinite(self.velocities).all(1)
              & torch.isfinite(self.forces).all(1)).to(self.dtype)
        bad = ok.new_zeros(self.n_replicas).index_add(0, self.graph.batch, 1.0 - ok)
        return ((bad == 0) & torch.isfinite(self.energy)).cpu().numpy()

    # --- replicas -------------------------------------------------------------------------------
    def drop(self, replicas: Sequence[int]) -> None:
        """Remove active replicas (positions in the current batch, not original ids); the others go on
        unchanged (a new graph, the same state)."""
        drop = set(int(r) for r in replicas)
        if not drop:
            return
        keep = [k for k in range(self.n_replicas) if k not in drop]
        ptr = self.graph.ptr.cpu().numpy()
        atoms = torch.as_tensor(np.concatenate([np.arange(ptr[k], ptr[k + 1]) for k in keep] or [np.zeros(0, int)]),
                                device=self.device, dtype=torch.long)
        self.frames = [self.frames[k] for k in keep]
        self.temperatures = self.temperatures[keep]
        self.replica_ids = self.replica_ids[keep]
        self.positions, self.velocities = self.positions[atoms], self.velocities[atoms]
        self.inv_mass, self._ref = self.inv_mass[atoms], self._ref[atoms]
        if not keep:
            self.forces, self.energy = self.forces[atoms], self.energy[:0]
            return
        self._build()
        self.forces, self.energy = self._forces()       # the same positions: the same forces, new layout
