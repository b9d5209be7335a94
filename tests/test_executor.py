"""Units of work on a local Ray instance (issue #15): the same records as the local executor; a
worker killed during a unit is retried and every record written exactly once; a unit that keeps
dying is recorded as failed while the sweep goes on; an error in a unit's own code is raised in
the driver; a driver killed mid-sweep and run again recomputes no finished unit."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bench.errors import InputError
from bench.executor import Unit, failures, run_units
from bench.results.record import Record
from bench.results.store import ResultsStore

ray = pytest.importorskip("ray", reason="the Ray executor's tests need ray (pip install -e '.[ray]')")
# Ray's workers do not have tests/ on their path: the units defined here travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def one_ray_instance():
    """One local Ray instance for this module's in-process tests: ``run_units`` joins a running
    instance instead of starting and stopping its own (about 6 s a call here, and a test makes up to
    three calls). Starting its own is still tested: the killed driver's subprocess starts a separate
    instance, as a new process always does."""
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def _toy(key: dict) -> dict:
    """The record fields of a toy unit's key (a registered metric is stored for it: epochs)."""
    return {**key, "descriptor": "unit", "dataset": "-", "seed": 0}


def _write(root, key, log_file, marker=None, die: str = "never"):
    """A unit: append its label to ``log_file`` (one line per attempt), then die ("once": on the
    first attempt, while ``marker`` does not exist; "always"), raise ("input"), or write its record."""
    with open(log_file, "a") as fh:
        fh.write(f"{key['n']}\n")
    if die == "always" or (die == "once" and not os.path.exists(marker)):
        if marker:
            open(marker, "w").close()
        os._exit(1)                                   # the worker process dies, as a killed one would
    if die == "input":
        raise InputError(f"unit {key['n']}: bad input")
    ResultsStore(root).write(key, [Record.measured(_toy(key), "epochs", float(key["n"]))])


def _units(tmp_path, store, n, die=None, marker=None):
    log = str(tmp_path / "attempts.log")
    return [Unit({"task": "t", "n": k}, f"unit {k}", _write,
                 (str(store.root), {"task": "t", "n": k}, log, marker and f"{marker}.{k}", (die or {}).get(k, "never")))
            for k in range(n)]


def _attempts(tmp_path) -> list[int]:
    path = tmp_path / "attempts.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_a_killed_worker_is_retried_and_a_dying_unit_recorded_as_failed(tmp_path):
    store = ResultsStore(tmp_path / "res")
    units = _units(tmp_path, store, 4, die={1: "once", 3: "always"}, marker=str(tmp_path / "died"))
    out = run_units(units, store, executor="ray", retries=1, log=lambda *a: None)
    assert out["done"] == 3 and [label for label, _ in out["failed"]] == ["unit 3"]
    assert sorted(r["n"] for r in store.records()) == [0, 1, 2]          # every record exactly once
    assert sorted(_attempts(tmp_path)) == [0, 1, 1, 2, 3, 3]            # unit 1 retried; unit 3 tried twice
    (failed,) = failures(store)
    assert failed["key"] == {"task": "t", "n": 3} and "WorkerCrashedError" in failed["reason"]
    # the next run tries the failed unit again (now healthy) and clears its failure; nothing else reruns
    (tmp_path / "attempts.log").unlink()
    out = run_units(_units(tmp_path, store, 4), store, executor="ray", log=lambda *a: None)
    assert out["done"] == 1 and _attempts(tmp_path) == [3] and failures(store) == []


def test_an_error_in_a_unit_is_raised_in_the_driver_and_finished_units_kept(tmp_path):
    store = ResultsStore(tmp_path / "res")
    units = _units(tmp_path, store, 2, die={1: "input"})
    with pytest.raises(InputError, match="unit 1: bad input"):
        run_units(units[1:] + units[:1], store, executor="ray", log=lambda *a: None)
    with pytest.raises(InputError, match="unknown executor"):
        run_units(units, store, executor="slurm")


def test_local_and_ray_executors_write_the_same_records(tmp_path):
    import torch

    from bench.tasks import accuracy
    from bench.tasks.accuracy import AccuracySpec, DataSpec
    from bench.tasks.presets import QUICK_MODEL
    from bench.train import TrainConfig

    spec = AccuracySpec(DataSpec("builtin:emt-alloy", n_train=6, n_valid=2, n_test=3), dict(QUICK_MODEL),
                        TrainConfig(max_epochs=2, batch_size=3), seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                          # as each Ray unit runs (one CPU per unit)
    try:
        local = accuracy.run(spec, ResultsStore(tmp_path / "local"), progress=False, log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    remote = accuracy.run(spec, ResultsStore(tmp_path / "ray"), progress=False, log=lambda *a: None, executor="ray")

    def table(records):
        return {(r["descriptor"], r["seed"], r["metric"]): r["value"] for r in records
                if r["metric"] not in ("train_time",)}

    a, b = table(local), table(remote)
    assert len(a) == len(b) > 0 and set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k


@pytest.mark.parametrize("engine", ["ase", "batched"])
def test_stability_units_on_ray_write_the_records_of_the_local_loop(tmp_path, engine):
    """The stability task's units (a trajectory each on ASE's engine, a potential's batch of replicas
    on the batched one) through Ray: the same records as the local loop (NVE: deterministic), every
    key once, and a rerun runs nothing."""
    import shutil

    import torch
    from test_stability import _trained_tiny_alloy

    from bench.tasks import stability
    from bench.tasks.stability import StabilitySpec

    acc, trained = _trained_tiny_alloy(tmp_path)
    spec = StabilitySpec(ensemble="nve", timestep_fs=1.0, n_steps=40, check_interval=10, seeds=(0, 1),
                         rdf_window_fs=20.0, engine=engine)
    for name in ("local", "ray"):
        shutil.copytree(trained.root, tmp_path / name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                          # as each Ray unit runs (one CPU per unit)
    try:
        local = stability.run(spec, acc, ResultsStore(tmp_path / "local"), log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    remote = stability.run(spec, acc, ResultsStore(tmp_path / "ray"), log=lambda *a: None, executor="ray")

    def table(records):
        return {(r["descriptor"], r["seed"], r["setting"]["md_seed"], r["metric"]): r["value"] for r in records}

    a, b = table(local), table(remote)
    assert len(a) == len(local) == len(b) == len(remote) == 2 * 2 * 3     # potentials x md seeds x metrics
    assert set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert stability.run(spec, acc, ResultsStore(tmp_path / "ray"), log=lambda *a: None, executor="ray") == []


def test_timing_sweeps_on_ray_write_the_records_of_the_local_loop(tmp_path):
    """The timing task's sweeps as units through Ray (each holding the machine while it measures):
    the same records as the local loop, times aside, and a rerun runs nothing."""
    from bench.tasks import timing
    from bench.tasks.timing import TimingSpec

    spec = TimingSpec(sizes=(1,), n_radial=(4,), modes=("energy_forces",), repeats=2, warmup=1, memory=False)
    local = timing.run(spec, ResultsStore(tmp_path / "local"), log=lambda *a: None)
    remote = timing.run(spec, ResultsStore(tmp_path / "ray"), log=lambda *a: None, executor="ray")

    def keys(records):
        return sorted((r["descriptor"], r.get("backend", ""), r["metric"], json.dumps(r["setting"], sort_keys=True))
                      for r in records)

    assert keys(local) == keys(remote) and len(local) > 0
    assert {r["setting"].get("sweep") for r in remote if r["descriptor"] != "device"} == {"atoms", "n_radial"}
    assert timing.run(spec, ResultsStore(tmp_path / "ray"), log=lambda *a: None, executor="ray") == []


DRIVER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_executor import _units, _slow
    from bench.executor import Unit, run_units
    from bench.results.store import ResultsStore
    from pathlib import Path

    tmp = Path({tmp!r})
    store = ResultsStore(tmp / "res")
    units = [Unit(u.key, u.label, _slow, u.args, num_cpus=1) for u in _units(tmp, store, 6)]
    run_units(units, store, executor="ray", log=lambda *a: print(*a, flush=True))
''')


def _slow(*args):
    time.sleep(1.5)
    _write(*args)


def test_a_driver_killed_mid_sweep_resumes_without_redoing_finished_units(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=os.path.dirname(__file__), tmp=str(tmp_path)))
    runs = tmp_path / "res" / "runs"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(runs.glob("*.json"))) < 2:
            time.sleep(0.2)
        assert len(list(runs.glob("*.json"))) >= 2, "the sweep did not start"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)           # the driver and everything it started
        proc.wait()
    time.sleep(1.0)
    finished = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert 2 <= len(finished) < 6
    subprocess.run([sys.executable, str(script)], check=True, capture_output=True, timeout=300)
    after = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert len(after) == 6
    assert all(after[name] == t for name, t in finished.items())       # no finished unit was written again
    store = ResultsStore(tmp_path / "res")
    assert sorted(r["n"] for r in store.records()) == list(range(6))
