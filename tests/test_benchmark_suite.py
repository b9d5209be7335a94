"""The pytest-benchmark suite is not in the default run, but it must collect and its tests must run."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pytest(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_benchmark_suite_collects_the_grid():
    res = _pytest("bench/", "--collect-only", "-q")
    assert res.returncode == 0, res.stdout + res.stderr
    ids = {line.strip() for line in res.stdout.splitlines() if "::" in line}
    for kind in ("cace", "spherical"):
        for mode in ("descriptor", "energy_forces", "training_step"):
            for l_max in (2, 3, 4):
                assert f"bench/benchmarks/test_kernels.py::test_potential[{kind}-{mode}-lmax{l_max}]" in ids
        assert f"bench/benchmarks/test_kernels.py::test_energy_forces_1536_atoms[{kind}]" in ids
    assert "bench/benchmarks/test_kernels.py::test_neighbor_list" in ids
    assert len(ids) == 25


def test_one_benchmark_runs_with_extra_info_and_machine_info(tmp_path):
    out = tmp_path / "bench.json"
    res = _pytest("bench/benchmarks", "--benchmark-only", "-k", "test_potential and cace and energy_forces and lmax2",
                  f"--benchmark-json={out}", "--benchmark-min-rounds=1")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    (b,) = data["benchmarks"]
    info = b["extra_info"]
    assert info["descriptor"] == "cace" and info["mode"] == "energy_forces" and info["l_max"] == 2
    assert info["atoms"] == 192 and info["edges"] > 0 and info["dtype"] == "float32" and info["flops"] > 0
    assert b["stats"]["median"] > 0
    machine = data["machine_info"]["cace_bench"]
    assert machine["torch"] and machine["e3nn"] and machine["threads"] == 2
