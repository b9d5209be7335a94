"""The executor without Ray: the local loop skips finished units, and --executor ray without Ray
installed is a one-line error saying how to install it."""

import os
import sys
from pathlib import Path

import pytest

from bench.errors import InputError
from bench.executor import Unit, run_units
from bench.results.record import Record
from bench.results.store import ResultsStore


def _write(root, key):
    ResultsStore(root).write(key, [Record.measured({**key, "task": "toy", "descriptor": "unit", "dataset": "-",
                                                    "seed": 0}, "epochs", 1.0)])


def test_local_executor_runs_each_unfinished_unit_once_and_reports_progress(tmp_path):
    store = ResultsStore(tmp_path)
    units = [Unit({"n": k}, f"unit {k}", _write, (str(tmp_path), {"n": k})) for k in range(3)]
    lines = []
    out = run_units(units[:1], store, log=lines.append)
    assert out["done"] == 1 and out["ran"] == [{"n": 0}]
    out = run_units(units, store, log=lines.append)
    assert out["ran"] == [{"n": 1}, {"n": 2}] and sorted(r["n"] for r in store.records()) == [0, 1, 2]
    assert "skip (done): unit 0" in lines
    assert any(line.startswith("[2/2] finished: unit 2") and "2 done, 0 running, 0 failed" in line for line in lines)


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)            # import ray -> ImportError
    units = [Unit({"n": 0}, "unit 0", _write, (str(tmp_path), {"n": 0}))]
    with pytest.raises(InputError, match=r'pip install -e "\.\[ray\]"'):
        run_units(units, ResultsStore(tmp_path), executor="ray")
    from bench.cli.main import main

    monkeypatch.setattr(sys, "argv", ["cace-bench"])
    assert main(["accuracy", "--executor", "ray", "--out", str(tmp_path / "out")]) == 2


def test_an_exclusive_unit_asks_for_the_smallest_machine_whole():
    """A timing unit under Ray holds every CPU of a machine: as many as the smallest live node has."""
    from bench.executor import machine_cpus

    nodes = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 8.0}},
             {"Alive": False, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"memory": 1.0}}]
    assert machine_cpus(nodes) == 8
    assert machine_cpus([]) == 1


# ---- the local pool (--jobs N): several units at once in worker processes, without Ray ----------

def _pool_write(root, key, log_file, how="write", shared=None):
    """A unit for the pool: note (pid, key) in ``log_file``, then write its record, die ("die": the
    worker process exits as a killed one would), raise bad input ("input"), or record the
    provenance's concurrent_units and the shared value it was given ("provenance")."""
    from bench.provenance import concurrency

    with open(log_file, "a") as fh:
        fh.write(f"{os.getpid()} {key['n']}\n")
    if how == "die":
        os._exit(1)
    if how == "input":
        raise InputError(f"unit {key['n']}: bad input")
    extra = {}
    if how == "provenance":
        extra = {"concurrent": concurrency().get("concurrent_units"), "shared": shared}
    ResultsStore(root).write(key, [Record.measured({**key, "task": "toy", "descriptor": "unit", "dataset": "-",
                                                    "seed": 0, **extra}, "epochs", float(key["n"]))])


def _pool_units(tmp_path, store, n, how=None, shared=None, exclusive=()):
    log = str(tmp_path / "attempts.log")
    return [Unit({"n": k}, f"unit {k}", _pool_write, (str(store.root), {"n": k}, log, (how or {}).get(k, "write"), shared),
                 exclusive=k in exclusive) for k in range(n)]


def _quiet(*args) -> None:
    """A log that says nothing (module level: it travels to the pool's workers)."""


def _pids(tmp_path) -> dict:
    lines = (tmp_path / "attempts.log").read_text().split("\n") if (tmp_path / "attempts.log").exists() else []
    return {int(k): int(pid) for pid, k in (line.split() for line in lines if line)}


def test_the_pool_runs_units_side_by_side_in_workers_and_exclusive_ones_alone_here(tmp_path):
    from bench.executor import Shared

    store = ResultsStore(tmp_path / "res")
    units = _pool_units(tmp_path, store, 5, how={k: "provenance" for k in range(5)}, shared=Shared([1, 2, 3]),
                        exclusive=(4,))
    lines = []
    out = run_units(units, store, jobs=2, log=lines.append)
    assert out["done"] == 5 and out["failed"] == [] and out["ran"] == [{"n": k} for k in range(5)]
    pids = _pids(tmp_path)
    assert os.getpid() not in {pids[k] for k in range(4)}                # pooled units: in worker processes
    assert len({pids[k] for k in range(4)}) <= 2                          # at most 2 workers
    assert pids[4] == os.getpid()                                         # the exclusive one: here, alone
    records = {r["n"]: r for r in store.records()}
    assert sorted(records) == [0, 1, 2, 3, 4]
    assert all(records[k]["concurrent"] == 2 for k in range(4)) and records[4]["concurrent"] is None
    assert all(records[k]["shared"] == [1, 2, 3] for k in range(5))      # the Shared value, sent to each worker
    assert any("2 at once in worker processes" in line for line in lines)
    assert any(line.startswith("[5/5] finished: unit 4") for line in lines)
    # a rerun skips them all
    assert run_units(units, store, jobs=2, log=lines.append)["done"] == 0


def test_the_pool_records_a_dead_worker_as_failed_and_the_next_run_retries(tmp_path):
    from bench.executor import failures

    store = ResultsStore(tmp_path / "res")
    out = run_units(_pool_units(tmp_path, store, 3, how={1: "die"}), store, jobs=2, log=lambda *a: None)
    assert "unit 1" in [label for label, _ in out["failed"]]
    assert all("worker process died" in reason for _, reason in out["failed"])
    assert {f["key"]["n"] for f in failures(store)} == {int(label.split()[-1]) for label, _ in out["failed"]}
    done_before = {r["n"] for r in store.records()}
    assert 1 not in done_before
    out = run_units(_pool_units(tmp_path, store, 3), store, jobs=2, log=lambda *a: None)
    assert sorted(r["n"] for r in store.records()) == [0, 1, 2] and failures(store) == []
    assert out["ran"] == [{"n": k} for k in range(3) if k not in done_before]


def test_an_error_in_a_pooled_unit_is_raised_here_with_finished_units_kept(tmp_path):
    store = ResultsStore(tmp_path / "res")
    units = _pool_units(tmp_path, store, 3, how={2: "input"})
    with pytest.raises(InputError, match="unit 2: bad input"):
        run_units(units, store, jobs=2, log=lambda *a: None)
    assert 2 not in {r["n"] for r in store.records()}


def test_jobs_must_be_a_whole_number_and_local(tmp_path, monkeypatch):
    from bench.cli.main import main

    units = _pool_units(tmp_path, ResultsStore(tmp_path / "res"), 1)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="--jobs must be a whole number"):
            run_units(units, ResultsStore(tmp_path / "res"), jobs=bad)
    with pytest.raises(InputError, match="--jobs is for --executor local"):
        run_units(units, ResultsStore(tmp_path / "res"), executor="ray", jobs=2)
    monkeypatch.setattr(sys, "argv", ["cace-bench"])
    assert main(["accuracy", "--jobs", "0", "--out", str(tmp_path / "out")]) == 2


def test_a_unit_that_cannot_be_sent_to_a_worker_is_a_clear_error(tmp_path):
    store = ResultsStore(tmp_path / "res")
    units = [Unit({"n": k}, f"unit {k}", lambda: None) for k in range(2)]
    with pytest.raises(TypeError, match="cannot be sent to a worker process.*run with --jobs 1"):
        run_units(units, store, jobs=2, log=lambda *a: None)


def test_the_pool_writes_the_records_of_the_local_loop(tmp_path):
    """Two trainings side by side in workers (one thread each) give the local loop's numbers."""
    import torch

    from bench.tasks import accuracy
    from bench.tasks.accuracy import AccuracySpec, DataSpec
    from bench.tasks.presets import QUICK_MODEL
    from bench.train import TrainConfig

    spec = AccuracySpec(DataSpec("builtin:emt-alloy", n_train=6, n_valid=2, n_test=3), dict(QUICK_MODEL),
                        TrainConfig(max_epochs=2, batch_size=3), seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = accuracy.run(spec, ResultsStore(tmp_path / "local"), progress=False, log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(2)                           # 2 // jobs = 1 thread per worker
    try:
        pooled = accuracy.run(spec, ResultsStore(tmp_path / "pool"), progress=False, log=_quiet, jobs=2)
    finally:
        torch.set_num_threads(threads)

    def table(records):
        return {(r["descriptor"], r["seed"], r["metric"]): r["value"] for r in records if r["metric"] != "train_time"}

    a, b = table(local), table(pooled)
    assert len(a) == len(b) > 0 and set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k
    assert {r["provenance"].get("concurrent_units") for r in pooled} == {2}
    assert {r["provenance"].get("concurrent_units") for r in local} == {None}
    from bench.report import build_report                  # two seeds: the verdict's interval is over them too

    _, md = build_report(tmp_path / "local", tmp_path / "report")
    assert "6 test structures and Student t over 2 seeds (a winner needs both)" in md.read_text()


def _wait_for_interrupt(root, key, marker_dir):
    """A unit that runs until interrupted, then leaves a marker (as a training saves its state)."""
    import time

    Path(marker_dir, f"started-{key['n']}").touch()
    try:
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        Path(marker_dir, f"interrupted-{key['n']}").touch()
        raise


POOL_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from bench.executor import Unit, run_units
from bench.results.store import ResultsStore
from test_executor_local import _wait_for_interrupt
if __name__ == "__main__":                  # the pool's workers are spawned: they import this file
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)   # as cace-bench does: pytest may run with SIGINT ignored
    store = ResultsStore({root!r})
    units = [Unit({{"n": k}}, f"unit {{k}}", _wait_for_interrupt, ({root!r}, {{"n": k}}, {markers!r})) for k in range(2)]
    run_units(units, store, jobs=2, log=print)
"""


def _interrupted_run(argv, ready, interrupt, wait_s: float = 300) -> int:
    """Start ``argv`` in a session of its own, call ``interrupt(pid)`` once ``ready()``, and return its
    exit code (everything it started is killed if it outlives the test)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + wait_s
        while time.time() < deadline and not ready():
            time.sleep(0.1)
        assert ready(), f"{argv[1]} did not reach the point to interrupt"
        interrupt(proc.pid)
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_interrupt_of_this_process_alone_stops_every_worker_with_its_state_kept(tmp_path):
    """SIGINT to the driver only (not its process group, as Ctrl-C or ``timeout -s INT`` would send):
    the pool passes it to the workers, whose units stop at once and keep their state."""
    import signal

    markers = tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(POOL_DRIVER.format(tests=os.path.dirname(__file__), root=str(tmp_path / "res"),
                                         markers=str(markers)))
    rc = _interrupted_run([sys.executable, str(script)], lambda: len(list(markers.glob("started-*"))) == 2,
                          lambda pid: os.kill(pid, signal.SIGINT))
    assert rc != 0
    assert sorted(p.name for p in markers.glob("interrupted-*")) == ["interrupted-0", "interrupted-1"]


ACCURACY_DRIVER = """
import sys
from bench.results.store import ResultsStore
from bench.tasks import accuracy
from bench.tasks.accuracy import AccuracySpec, DataSpec
from bench.tasks.presets import QUICK_MODEL
from bench.train import TrainConfig
if __name__ == "__main__":
    import torch
    torch.set_num_threads(2)
    spec = AccuracySpec(DataSpec("builtin:emt-alloy", n_train=6, n_valid=2, n_test=3), dict(QUICK_MODEL),
                        TrainConfig(max_epochs=int(sys.argv[2]), batch_size=3), seeds=(0, 1))
    accuracy.run(spec, ResultsStore(sys.argv[1]), progress=False, log=print, jobs=2)
"""


@pytest.mark.slow
def test_trainings_in_the_pool_stopped_by_sigint_resume_in_a_later_run_as_if_never_stopped(tmp_path):
    """The GPU script's full-budget accuracy in parts (``timeout -s INT``, which signals the whole
    process group): two trainings side by side are stopped mid-way, keep their state, and a second
    run resumes them (not from scratch) and records what one uninterrupted run records. ``slow`` (about
    a minute: three runs of four trainings in subprocesses); the default suite has its parts: a SIGINT
    to the pool's driver keeps every worker's state (above), an interrupted training resumes to the
    uninterrupted result (test_front), and the report of stopped trainings says to run again
    (test_accuracy_task)."""
    import signal
    import subprocess

    script = tmp_path / "driver.py"
    script.write_text(ACCURACY_DRIVER)
    epochs = "40"
    whole = subprocess.run([sys.executable, str(script), str(tmp_path / "whole"), epochs], capture_output=True,
                           text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    parts = tmp_path / "parts"
    rc = _interrupted_run([sys.executable, str(script), str(parts), epochs],
                          lambda: len(list(parts.glob("artifacts/*/train-state.pt"))) == 2,
                          lambda pid: os.killpg(pid, signal.SIGINT))
    assert rc != 0 and not list(parts.glob("runs/*.json"))             # stopped before either finished
    assert len(list(parts.glob("artifacts/*/train-state.pt"))) == 2     # both kept their state
    from bench.report import build_report
    from bench.results.store import ResultsError

    with pytest.raises(ResultsError, match=r"no finished runs to report yet; 2 training\(s\) stopped part-way"):
        build_report(parts, tmp_path / "report")                        # the report says what to do next
    again = subprocess.run([sys.executable, str(script), str(parts), epochs], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("resuming") == 2                           # resumed, not restarted

    def table(root):
        return {(r["seed"], r["metric"]): r["value"] for r in ResultsStore(root).records()
                if r["metric"] not in ("train_time",)}

    a, b = table(tmp_path / "whole"), table(parts)
    assert len(a) == len(b) > 0 and set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k


def test_the_command_line_takes_ctrl_c_even_when_started_with_it_ignored(monkeypatch):
    """A background job of a script starts with SIGINT ignored; cace-bench still stops on it (and so
    `timeout -s INT` still ends a run part-way with its state kept)."""
    import signal

    from bench.cli.main import main

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        monkeypatch.setattr(sys, "argv", ["cace-bench"])
        assert main(["data", "list"]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
