"""Stability-in-MD criteria: EMT survives, broken potentials are caught at the right time for the right reason."""

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from bench.data.builtin_sets import EMTAlloyRecipe, random_alloy_cell
from bench.tasks.rdf import rdf, rdf_distance
from bench.tasks.stability import StabilitySpec, energy_drift, rdf_from_json, run_md, summarise, survival
from bench.testing.requirements import needs_fused_kernels_on_cpu


def alloy(seed=0):
    return random_alloy_cell(np.random.default_rng(seed), EMTAlloyRecipe(repeat=2))


class Broken(Calculator):
    """EMT, but forces x ``scale``, and NaN from force call ``nan_after`` on."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, scale=1.0, nan_after=None):
        super().__init__()
        self.emt, self.scale, self.nan_after, self.calls = EMT(), scale, nan_after, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        a = self.atoms.copy()
        a.calc = self.emt
        e, f = a.get_potential_energy(), a.get_forces() * self.scale
        if self.nan_after is not None and self.calls > self.nan_after:
            e, f = np.nan, f * np.nan
        self.results = {"energy": e, "forces": f}


class PullApart(Calculator):
    """A constant force pulling atom 0 away: a molecule whose bond must break."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        f = np.zeros((len(self.atoms), 3))
        f[0, 0] = 20.0
        self.results = {"energy": 0.0, "forces": f}


class ZeroForces(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


SPEC = StabilitySpec(ensemble="nvt-langevin", timestep_fs=2.0, n_steps=200, check_interval=10, rdf_window_fs=100.0)


@pytest.fixture(scope="module")
def reference():
    """The EMT reference RDF: EMT run through the same protocol."""
    ref = run_md(alloy(), EMT(), SPEC, 300.0, seed=99)
    assert ref["failure_time_fs"] is None
    return rdf_from_json(ref["rdf"])


def test_emt_never_fails_on_the_alloy(reference):
    for seed in (0, 1):
        out = run_md(alloy(), EMT(), SPEC, 300.0, seed, reference_rdf=reference)
        assert out["failure_time_fs"] is None and out["reason"] is None
        assert len(out["time_fs"]) == SPEC.n_steps // SPEC.check_interval


def test_nan_after_n_steps_is_caught_at_that_time():
    n = 55  # force calls: one at start, then one per step
    out = run_md(alloy(), Broken(nan_after=n), SPEC, 300.0, seed=0)
    assert out["reason"] == "non-finite"
    first_bad_step = n  # call n+1 is step n
    expected = (first_bad_step // SPEC.check_interval + 1) * SPEC.check_interval * SPEC.timestep_fs
    assert out["failure_time_fs"] == pytest.approx(expected)


def test_uphill_forces_fail_at_once(reference):
    """Forces x -50 push atoms uphill: the temperature explodes within the first checks. (Forces x 50
    alone make a stiffer but still conservative potential, which a 2 fs step integrates stably.)"""
    out = run_md(alloy(), Broken(scale=-50.0), SPEC, 300.0, seed=0, reference_rdf=reference)
    assert out["reason"] == "temperature"
    assert out["failure_time_fs"] <= 2 * SPEC.check_interval * SPEC.timestep_fs


def test_molecule_bond_criterion():
    mol = molecule("CH3CH2OH")
    out = run_md(mol, PullApart(), StabilitySpec(ensemble="nve", timestep_fs=0.5, n_steps=400, check_interval=5),
                 300.0, seed=0)
    assert out["reason"] == "bond"
    # no false alarm: free flight at 10 K for 20 fs changes bond lengths by less than 0.01 A ...
    quiet = StabilitySpec(ensemble="nve", timestep_fs=0.5, n_steps=40, check_interval=5)
    out = run_md(mol, ZeroForces(), quiet, 10.0, 0)
    assert out["reason"] is None and out["failure_time_fs"] is None
    # ... and the same run is flagged once the tolerance is below that change
    strict = StabilitySpec(ensemble="nve", timestep_fs=0.5, n_steps=40, check_interval=5, bond_tolerance=0.001)
    assert run_md(mol, ZeroForces(), strict, 10.0, 0)["reason"] == "bond"


def test_rdf_of_a_frame_against_itself_is_zero_and_differs_from_another():
    a, b = alloy(0), alloy(1)
    b.rattle(0.2, seed=3)
    assert rdf_distance(rdf([a]), rdf([a])) == 0.0
    assert rdf_distance(rdf([a]), rdf([b])) > 0.1


def test_same_seed_same_trajectory_and_summaries():
    one = run_md(alloy(), EMT(), SPEC, 600.0, seed=5)
    two = run_md(alloy(), EMT(), SPEC, 600.0, seed=5)
    other = run_md(alloy(), EMT(), SPEC, 600.0, seed=6)
    assert one["total_energy"] == two["total_energy"] and one["temperature"] == two["temperature"]
    assert one["temperature"] != other["temperature"]
    fake_fail = dict(one, failure_time_fs=100.0)
    s = summarise([one, fake_fail])
    assert s["n_failed"] == 1 and s["median_time_to_failure_fs"] == pytest.approx((100.0 + one["length_fs"]) / 2)
    assert list(survival([one, fake_fail], np.array([50.0, 150.0]))) == [1.0, 0.5]
    assert np.isfinite(energy_drift(one))


def test_nve_drift_of_emt_is_small():
    out = run_md(alloy(), EMT(), StabilitySpec(ensemble="nve", timestep_fs=1.0, n_steps=200, check_interval=10), 300.0, 0)
    assert abs(energy_drift(out)) < 5.0  # meV/atom/ps


def _trained_tiny_alloy(tmp_path):
    """(accuracy spec, store) of two tiny potentials trained on a small EMT alloy file."""
    import ase.io

    from bench.data.builtin_sets import make_emt_alloy
    from bench.results.store import ResultsStore
    from bench.tasks import accuracy
    from bench.tasks.accuracy import AccuracySpec, DataSpec
    from bench.train import TrainConfig

    recipe = EMTAlloyRecipe(repeat=1, temperatures=(300.0,), frames_per_temperature=8, md_equilibration=5,
                            md_stride=2, n_strained=2, n_rattled=2)
    path = tmp_path / "tiny.extxyz"
    ase.io.write(path, make_emt_alloy(0, recipe), format="extxyz")
    acc = AccuracySpec(data=DataSpec(str(path), name="tiny", n_train=6, n_valid=3, n_test=3),
                       model=dict(cutoff=4.0, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=2, n_layers=0,
                                  readout=(4,)),
                       train=TrainConfig(max_epochs=2, batch_size=3, energy_weights=(1.0,)))
    store = ResultsStore(tmp_path / "res")
    accuracy.run(acc, store, progress=False, log=lambda *a: None)
    return acc, store


def test_stability_task_resumes_and_reports(tmp_path, monkeypatch):
    """The task runs every trained potential from the same starts, resumes without redoing finished
    runs, and the report gains a stability section."""
    from bench.report import build_report
    from bench.tasks import stability

    acc, store = _trained_tiny_alloy(tmp_path)
    spec = StabilitySpec(timestep_fs=1.0, n_steps=40, check_interval=10, seeds=(0, 1), rdf_window_fs=20.0, engine="ase")
    calls = []
    real = stability.run_md
    monkeypatch.setattr(stability, "run_md", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = stability.run(spec, acc, store, log=lambda *a: None)
    assert {r["descriptor"] for r in first} == {"cace", "spherical"} and len(calls) == 4
    assert {r["metric"] for r in first} >= {"time_to_failure", "energy_drift", "rdf_error"}
    calls.clear()
    assert stability.run(spec, acc, store, log=lambda *a: None) == [] and calls == []
    html_path, md_path = build_report(tmp_path / "res", tmp_path / "rep")
    assert "Stability in MD: tiny" in html_path.read_text() and "survival area" in md_path.read_text()


def test_batched_engine_equals_ase_engine_under_nve(tmp_path):
    """The stability task on the batched engine (every replica of a potential in one batch) and on
    ASE's (one trajectory at a time): under NVE the trajectories agree to 1e-8 A, so every record's
    time to failure, failure reason, energy drift and RDF error agree; keys differ by the engine."""
    from bench.tasks import stability

    acc, store = _trained_tiny_alloy(tmp_path)
    base = dict(ensemble="nve", timestep_fs=1.0, n_steps=40, check_interval=10, seeds=(0, 1),
                temperatures=(300.0, 900.0), rdf_window_fs=20.0)
    ase_recs = stability.run(StabilitySpec(**base, engine="ase"), acc, store, log=lambda *a: None)
    batched = stability.run(StabilitySpec(**base, engine="batched"), acc, store, log=lambda *a: None)

    def table(recs):
        return {(r["descriptor"], r["setting"]["temperature"], r["setting"]["md_seed"], r["metric"]): r
                for r in recs if r["descriptor"] != "emt"}

    a, b = table(ase_recs), table(batched)
    assert a.keys() == b.keys() and len(a) == 2 * 2 * 2 * 3
    for k in a:
        assert b[k]["setting"]["engine"] == "batched" and "engine" not in a[k]["setting"]
        assert (a[k]["failed"], a[k]["reason"]) == (b[k]["failed"], b[k]["reason"])
        assert np.isclose(a[k]["value"], b[k]["value"], rtol=1e-6, atol=1e-9), k
    with pytest.raises(ValueError, match="pass --engine ase"):
        StabilitySpec(ensemble="nvt-berendsen", engine="batched")


@pytest.mark.slow
@needs_fused_kernels_on_cpu
def test_the_batched_engine_on_the_fused_backend_records_what_eager_records(tmp_path):
    """--md-backend: the batched engine's potentials run through another backend (here the fused
    kernels: Triton's interpreter on a CPU (about 100 s), compiled on CUDA); under NVE in float64
    every record equals eager's, the backend is recorded and the report names it."""
    import shutil

    from bench.report import build_report
    from bench.results.store import ResultsStore
    from bench.tasks import stability

    acc, store = _trained_tiny_alloy(tmp_path)
    shutil.copytree(store.root, tmp_path / "fused")       # the same trained potentials, its own stability runs
    other = ResultsStore(tmp_path / "fused")
    base = dict(ensemble="nve", timestep_fs=1.0, n_steps=20, check_interval=10, seeds=(0,),
                temperatures=(300.0, 900.0), rdf_window_fs=20.0, engine="batched")
    eager = stability.run(StabilitySpec(**base), acc, store, log=lambda *a: None)
    fused = stability.run(StabilitySpec(**base, backend="fused"), acc, other, log=lambda *a: None)

    def table(recs):
        return {(r["descriptor"], r["setting"]["temperature"], r["metric"]): r for r in recs if r["descriptor"] != "emt"}

    a, b = table(eager), table(fused)
    assert a.keys() == b.keys() and len(a) == 2 * 2 * 3
    for k in a:
        assert a[k]["spec"]["backend"] == "eager" and b[k]["spec"]["backend"] == "fused"
        assert (a[k]["failed"], a[k]["reason"]) == (b[k]["failed"], b[k]["reason"])
        assert np.isclose(a[k]["value"], b[k]["value"], rtol=1e-6, atol=1e-9), k
    _, md = build_report(other.root, tmp_path / "rep")
    assert "backend fused" in md.read_text()


def test_an_md_backend_that_cannot_run_is_a_clear_error_before_any_md(tmp_path):
    import torch

    from bench.errors import InputError
    from bench.tasks import stability

    base = dict(ensemble="nve", timestep_fs=1.0, n_steps=20, engine="batched")
    if not torch.cuda.is_available():
        calls = []
        with pytest.raises(InputError, match="--md-backend: backend 'compile-cudagraphs' needs CUDA"):
            stability.run(StabilitySpec(**base, backend="compile-cudagraphs"), None, None, log=calls.append)
        assert calls == []
    with pytest.raises(InputError, match="the ASE engine runs eager"):
        StabilitySpec(**{**base, "engine": "ase"}, backend="fused")
    with pytest.raises(InputError, match="unknown MD backend"):
        StabilitySpec(**base, backend="turbo")


def test_the_stability_verdict_of_quick_trained_potentials_is_a_smoke_test():
    """MD with potentials from a quick-budget training decides nothing, as their accuracy rows do
    not: the stability verdict says "(smoke test)" exactly where the data set's accuracy runs are
    smoke tests."""
    from bench.report.stability_section import stability_verdicts
    from bench.train import SMOKE_MAX_EPOCHS

    def runs(epochs):
        acc = [{"key": {"task": "accuracy", "descriptor": k, "dataset": "d", "seed": 0},
                "records": [{"metric": "forces_mae", "train_config": {"max_epochs": epochs}}]} for k in ("cace", "spherical")]
        md = [{"key": {"task": "stability", "descriptor": k, "dataset": "d", "seed": 0,
                       "setting": {"temperature": 300.0, "start": 0, "md_seed": s, "engine": "batched"}},
               "records": [{"metric": "time_to_failure", "value": 400.0, "length_fs": 400.0}]}
              for k in ("cace", "spherical") for s in (0, 1)]
        return acc + md

    quick, full = stability_verdicts(runs(SMOKE_MAX_EPOCHS)), stability_verdicts(runs(500))
    assert [v.row()[1] for v in quick] == ["no clear difference (smoke test)"]
    assert [v.row()[1] for v in full] == ["no clear difference"]
