"""The GPU script runs only on a lent CUDA machine, never in CI: what can be checked without one is
checked here, so that a lease is not spent on a typo. It parses (bash -n); every Python module it
runs exists; every mode its header documents is handled, and the README names each mode."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gpu_script_parses():
    out = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_module_the_gpu_script_runs_exists():
    text = SCRIPT.read_text()
    modules = set(re.findall(r"python3 -m ([A-Za-z_][\w.]*)", text))
    assert {"bench.benchmarks.gpu", "bench.cli.main", "bench.benchmarks.md_step"} <= modules
    missing = sorted(m for m in modules if m not in ("pip", "pytest") and importlib.util.find_spec(m) is None)
    assert not missing, f"gpu_check.sh runs modules that do not exist: {missing}"


def test_every_documented_mode_is_handled_and_in_the_readme():
    text = SCRIPT.read_text()
    documented = set(re.findall(r"^# (--[a-z-]+)\b", text, flags=re.M))
    handled = set(re.findall(r'\[ "\$\{1:-\}" = "(--[a-z-]+)" \]', text))
    assert documented == handled, (documented ^ handled)
    readme = (REPO / "README.md").read_text()
    unnamed = sorted(m for m in handled if m not in readme)
    assert not unnamed, f"README.md does not name gpu_check.sh {unnamed}"
