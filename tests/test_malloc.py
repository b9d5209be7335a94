"""bench/malloc.py: freed CPU memory kept in the process (fewer page faults), the environment's
choice respected, and the regime recorded in provenance. Each case runs in a fresh process (this
one already ran ``keep_freed_memory`` in conftest)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")

CHILD = """
import json, resource, sys, torch
import bench.malloc as m
done = m.keep_freed_memory() if sys.argv[1] == "keep" else "not called"
from bench.potential import build
torch.set_num_threads(1)
# the symmetrisation at the water preset's sizes at 1,536 atoms: [24, 165888] float32 rows made and freed
pot = build("cace", elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=3, n_radial=12, l_max=3, nu_max=3,
            n_layers=0, messages=())
A = torch.randn(1536, pot.descriptor.angular.n_ang, 12, 9)
for _ in range(5):
    pot.descriptor.symmetrize(A)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    pot.descriptor.symmetrize(A)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"done": done, "faults_per_call": faults, "state": m.state()}))
"""


def _child(mode, **env):
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_tensors_are_reused_not_faulted_in_again():
    """Against the regime where every block above 64 KiB is its own mapping (the memory-measuring
    child's; each call then faults in every page of its tensors, about 30,000 here): kept, at most
    a few percent. glibc's own default lies anywhere between the two from process to process (356
    to 28,934 faults a call here, as its heap happens to be laid out), so it is no reference."""
    kept = _child("keep")
    if "not glibc" in kept["done"]:
        pytest.skip(kept["done"])
    assert kept["done"].startswith("freed memory kept") and kept["state"] == kept["done"]
    mapped = _child("keep", MALLOC_MMAP_THRESHOLD_="65536")
    assert mapped["done"] == "as the environment sets it (MALLOC_MMAP_THRESHOLD_)"
    pages = (24 * 165888 * 4) / os.sysconf("SC_PAGE_SIZE")              # one [24, 165888] float32 table
    assert mapped["faults_per_call"] > 3 * pages                        # every table faulted in, each call
    assert kept["faults_per_call"] < 0.05 * mapped["faults_per_call"]   # 0-340 of about 30,000 here


def test_the_environment_and_the_opt_out_win():
    off = _child("keep", CACE_BENCH_SYSTEM_MALLOC="1")
    assert off["done"].startswith("system default") and off["state"] == off["done"]
    assert _child("none")["state"] == "system default"


def test_records_say_which_regime_they_ran_under():
    from bench.malloc import state
    from bench.provenance import provenance

    assert provenance("cpu")["malloc"] == state()


def test_the_regression_snapshot_names_its_speed_probes_regime(monkeypatch):
    """The probe is a fresh process that does not call keep_freed_memory, so it runs under the
    environment's regime, whatever this process did."""
    from bench.regression import snapshot

    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "CACE_BENCH_SYSTEM_MALLOC"):
        monkeypatch.delenv(key, raising=False)
    assert snapshot({})["speed_probe_malloc"] == "system default"
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert snapshot({})["speed_probe_malloc"] == "as the environment sets it (MALLOC_TRIM_THRESHOLD_)"
