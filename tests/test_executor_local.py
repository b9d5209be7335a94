"""The executor without Ray: the local loop skips finished units, and --executor ray without Ray
installed is a one-line error saying how to install it."""

import sys

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
