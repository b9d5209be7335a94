"""The batched MD engine (bench/md): ASE's velocity Verlet is the reference, replicas are
independent, and the Langevin thermostat gives the Maxwell-Boltzmann distribution."""

import numpy as np
import pytest
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from bench.calculator import BenchCalculator
from bench.md import BatchedMD
from bench.potential import build
from bench.testing import random_cluster, random_periodic

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=2, nu_max=2, n_layers=1, messages=("Bchi",))


def _potential(kind="cace", scale=0.2):
    torch.manual_seed(0)
    return build(kind, elements=[1, 8], readout=(8,), scale=scale, **SMALL).double()


def _frames(seed=0, temperature=300.0):
    rng = np.random.default_rng(seed)
    frames = [random_periodic(rng, [1, 8], n=8, min_dist=1.0), random_cluster(rng, [1, 8], n=6, min_dist=1.0),
              random_periodic(rng, [1, 8], n=5, min_dist=1.0)]
    for k, a in enumerate(frames):
        MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=np.random.default_rng(seed + k))
        Stationary(a)
    return frames


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_nve_equals_ase_velocity_verlet(kind):
    """Three replicas (two periodic cells of different sizes and a molecule) advanced together for
    100 steps of 0.5 fs equal ASE's VelocityVerlet run on each alone within 1e-8 A and 1e-8 A/time;
    the engine's small skin forces neighbour-list rebuilds on the way."""
    pot, frames = _potential(kind), _frames()
    md = BatchedMD(pot, frames, timestep_fs=0.5, ensemble="nve", skin=0.02)
    md.run(100)
    assert md.n_rebuilds > 1
    for a, got in zip(frames, md.atoms()):
        ref = a.copy()
        ref.calc = BenchCalculator(pot)
        VelocityVerlet(ref, 0.5 * units.fs).run(100)
        assert np.abs(ref.positions - got.positions).max() < 1e-8
        assert np.abs(ref.get_velocities() - got.get_velocities()).max() < 1e-8
        assert np.abs(ref.positions - a.positions).max() > 1e-3           # the atoms did move
    e_total = md.potential_energy() + md.kinetic_energy()
    md.run(20)
    assert np.allclose(md.potential_energy() + md.kinetic_energy(), e_total, atol=2e-3)


def test_replicas_are_independent_and_drop_keeps_the_others():
    pot, frames = _potential(), _frames(1)
    together = BatchedMD(pot, frames, timestep_fs=0.5)
    together.run(10)
    together.drop([0])
    together.run(10)
    assert list(together.replica_ids) == [1, 2] and together.n_replicas == 2
    for k in (1, 2):
        alone = BatchedMD(pot, [frames[k]], timestep_fs=0.5)
        alone.run(20)
        got = together.atoms()[k - 1]
        assert np.abs(alone.atoms()[0].positions - got.positions).max() < 1e-12
    together.drop([0, 1])
    assert together.n_replicas == 0 and together.positions.shape == (0, 3)


def test_langevin_gives_maxwell_boltzmann_at_each_replicas_temperature():
    """With zero forces BAOAB's O step is an exact Ornstein-Uhlenbeck update, so after 10
    relaxation times (1/gamma) the velocities are Maxwell-Boltzmann at each replica's T, and
    snapshots 3/gamma apart are independent (velocity correlation e^-3, of v^2 e^-6). Over a
    replica group and 4 snapshots, S = sum m v^2 / kT is chi-squared with 3 N_atoms x 4 degrees of
    freedom k (mean k, standard deviation sqrt(2k)); two groups, 300 K and 900 K, 32 replicas of 64
    atoms each: k = 24,576, sqrt(2k) / k = 0.9%. (gamma = 0.1/fs keeps it short: the O step is exact for any
    gamma dt.) S must lie within 4 standard deviations of k: a
    thermostat off by 10% in T is 11 standard deviations away."""
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), scale=0.0, **{**SMALL, "cutoff": 1.5}).double()
    from ase import Atoms

    grid = np.stack(np.meshgrid(*[np.arange(4) * 2.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    base = Atoms(numbers=[1, 8] * 32, positions=grid, cell=np.eye(3) * 10.0, pbc=True)
    frames = [base.copy() for _ in range(64)]
    temps = [300.0] * 32 + [900.0] * 32
    gamma_per_fs = 0.1
    md = BatchedMD(pot, frames, timestep_fs=1.0, ensemble="nvt-langevin", temperatures=temps,
                   friction_per_fs=gamma_per_fs, seed=3, skin=0.5)
    md.run(int(10 / gamma_per_fs))
    group = np.repeat(np.asarray(temps), 64)
    stats = {300.0: 0.0, 900.0: 0.0}
    for snapshot in range(4):
        if snapshot:
            md.run(int(3 / gamma_per_fs))
        assert float(md.forces.abs().max()) == 0.0                    # energy = e0 only
        m_v2 = (md.velocities.square().sum(1) / md.inv_mass[:, 0]).cpu().numpy()
        for T in stats:
            stats[T] += m_v2[group == T].sum() / (units.kB * T)
    for T, stat in stats.items():
        dof = 4 * 3 * int((group == T).sum())
        assert abs(stat - dof) < 4 * np.sqrt(2 * dof), (T, stat, dof)
    assert np.allclose(md.temperature()[:32].mean(), 300.0, rtol=0.05)
    assert np.allclose(md.temperature()[32:].mean(), 900.0, rtol=0.05)
    frames = frames[:2]
    # the same seed, the same trajectory; another seed, another one
    again = BatchedMD(pot, frames[:2], timestep_fs=1.0, ensemble="nvt-langevin", temperatures=300.0, seed=3)
    other = BatchedMD(pot, frames[:2], timestep_fs=1.0, ensemble="nvt-langevin", temperatures=300.0, seed=4)
    first = BatchedMD(pot, frames[:2], timestep_fs=1.0, ensemble="nvt-langevin", temperatures=300.0, seed=3)
    for md_ in (again, other, first):
        md_.run(5)
    assert torch.equal(again.velocities, first.velocities)
    assert not torch.allclose(other.velocities, first.velocities)


def test_finite_flags_the_broken_replica_only():
    pot, frames = _potential(), _frames(2)
    md = BatchedMD(pot, frames, timestep_fs=0.5)
    md.velocities[md.graph.ptr[1]] = float("nan")
    assert md.finite().tolist() == [True, False, True]


def test_bad_arguments_are_one_line_errors():
    pot, frames = _potential(), _frames(3)
    with pytest.raises(ValueError, match="ensemble must be one of"):
        BatchedMD(pot, frames, timestep_fs=0.5, ensemble="npt")
    with pytest.raises(ValueError, match="at least one frame"):
        BatchedMD(pot, [], timestep_fs=0.5)
    with pytest.raises(ValueError, match="skin"):
        BatchedMD(pot, frames, timestep_fs=0.5, skin=-1.0)


def test_a_non_finite_replica_does_not_disturb_the_others():
    """A replica gone NaN neither blocks nor breaks the neighbour-list rebuilds of the others (it is
    searched at its last finite positions) and leaves their trajectories unchanged; min_distance
    is per replica."""
    pot, frames = _potential(), _frames(4)
    md = BatchedMD(pot, frames, timestep_fs=0.5, skin=0.02)
    alone = BatchedMD(pot, frames[1:], timestep_fs=0.5, skin=0.02)
    md.positions[: len(frames[0])] = float("nan")
    md.run(20)
    alone.run(20)
    assert md.finite().tolist() == [False, True, True]
    assert np.abs(md.positions[len(frames[0]):] - alone.positions).max() < 1e-12
    expected = [min(a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)]) for a in alone.atoms()]
    assert np.allclose(md.min_distance()[1:], expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trajectories_equal_cpu():
    """The same replicas on CUDA and on the CPU, float64 NVE, 50 steps: equal within 1e-8 A."""
    pot, frames = _potential(), _frames(5)
    cpu = BatchedMD(pot, frames, timestep_fs=0.5, device="cpu")
    gpu = BatchedMD(_potential(), frames, timestep_fs=0.5, device="cuda")
    cpu.run(50)
    gpu.run(50)
    assert float((gpu.positions.cpu() - cpu.positions).abs().max()) < 1e-8


def test_device_and_host_neighbour_lists_give_the_same_trajectories():
    from bench.neighbors import device_neighbor_list_available

    if not device_neighbor_list_available():
        pytest.skip("needs vesin-torch")
    pot, frames = _potential(), _frames(6)
    runs = {}
    for nl in ("host", "device"):
        md = BatchedMD(pot, frames, timestep_fs=0.5, skin=0.05, neighbor_list=nl)
        md.run(40)
        assert md.n_rebuilds > 1 and md.neighbor_list == nl
        runs[nl] = md.positions
    assert float((runs["host"] - runs["device"]).abs().max()) < 1e-10
    with pytest.raises(ValueError, match="neighbor_list must be"):
        BatchedMD(pot, frames, timestep_fs=0.5, neighbor_list="gpu")


def test_the_md_step_benchmark_times_both_descriptors_and_lists_what_cannot_run():
    """One small box, eager timed for both descriptors after the warm-up's rebuilds; a CUDA-only
    backend on the CPU is a listed failure with its reason, never an omission."""
    from bench.benchmarks.md_step import format_table, run

    if torch.cuda.is_available():
        pytest.skip("compile-cudagraphs runs here: no failure to list")
    result = run(repeat=1, device="cpu", backends=("eager", "compile-cudagraphs"), steps=2, repeats=2, warmup_steps=2)
    rows = {(r["descriptor"], r["backend"]): r for r in result["rows"]}
    assert set(rows) == {("cace", "eager"), ("spherical", "eager")}
    assert all(r["finite"] and r["ms_per_step"] > 0 and r["n_atoms"] == 192 for r in rows.values())
    assert all(r["graphs_compiled_while_timed"] == 0 for r in rows.values())      # eager compiles nothing
    assert {(f["descriptor"], f["backend"]) for f in result["failures"]} == {("cace", "compile-cudagraphs"),
                                                                            ("spherical", "compile-cudagraphs")}
    assert all("needs CUDA" in f["reason"] for f in result["failures"])
    assert "eager" in result["time_spherical_over_cace"] and "unavailable: cace compile-cudagraphs" in format_table(result)


def test_the_md_step_benchmark_names_a_timed_block_that_compiled():
    """A block whose calls compile (here a new shape each block, as a warm-up too short leaves a
    compiled backend's first rebuilds inside the timing) is counted per engine and flagged in the
    table; an engine past its compiles counts none."""
    from bench.benchmarks.md_step import _run_counting_compiles, format_table

    double = torch.compile(lambda x: x.sin() * 2, backend="eager", dynamic=False)

    class Engine:                                  # what the benchmark calls of a BatchedMD: run(steps)
        def __init__(self, grows):
            self.size, self.grows = 3, grows

        def run(self, steps):
            self.size += self.grows
            double(torch.ones(self.size, steps))

    engines = {"cace/compile": Engine(grows=1), "spherical/compile": Engine(grows=0)}
    engines["spherical/compile"].run(2)                                        # its one compile, before timing
    compiled = dict.fromkeys(engines, 0)
    for _ in range(3):
        for name, md in engines.items():
            _run_counting_compiles(md, 2, compiled, name)
    assert compiled == {"cace/compile": 3, "spherical/compile": 0}
    row = {"descriptor": "cace", "backend": "compile", "ms_per_step": 1.0, "iqr_ms": 0.1, "rebuilds_per_step": 0.1,
           "temperature_K": 300.0, "padded": False, "shapes": 4, "finite": True, "graphs_compiled_while_timed": 3}
    table = format_table({"n_atoms": 192, "provenance": {"device_name": "cpu"}, "neighbor_list": "host", "repeats": 3,
                          "steps_per_block": 2, "warmup_steps": 2, "rows": [row, {**row, "descriptor": "spherical",
                                                                                "graphs_compiled_while_timed": 0}],
                          "time_spherical_over_cace": {}, "failures": []})
    flagged = [line for line in table.splitlines() if "WHILE TIMED" in line]
    assert len(flagged) == 1 and flagged[0].startswith("cace") and "COMPILED 3 GRAPH(S)" in flagged[0]
