#!/usr/bin/env bash
# Everything this project measures on a CUDA machine, in one call of under 8 minutes.
#
# Prepare on a machine with network, from the project root (downloads ase / vesin wheels, ~10 MB):
#     bash ../shared/gpu/wheels.sh
# Then on the CUDA machine (the device tool: carry .whl), from the project root:
#     bash scripts/gpu_check.sh [OUT]          # OUT default: results/gpu/<device name>
# It installs what is missing from .whl (offline), then, each step under its own time limit so the
# whole stays under 8 minutes and a slow step cannot starve the others (partial results are kept:
# the timing store writes each finished point at once):
#   1. the gpu-marked tests (backend parity on CUDA, float32 and float64)    -> OUT/gpu-tests.log
#   2. a kernel profile at 12,288 atoms, both descriptors, eager and compile -> OUT/profile/
#   3. the headline: E+F from 192 atoms up (stops before a call over 1.5 s or at out of memory),
#      every backend, memory/atom                                              -> OUT/timing/
#   4. the three modes at 192 / 1,536 / 12,288 atoms, every backend          -> OUT/timing/
#   5. the report of OUT/timing                                               -> OUT/report/
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import ase, vesin" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl || exit 2
  export PYTHONPATH="$PWD/.site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
name=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))") || { echo "no CUDA device"; exit 2; }
out=${1:-results/gpu/$name}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/device.csv" 2>&1 || true
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; local t0=$SECONDS
         timeout "$limit" "$@"; echo "== rc=$? in $((SECONDS - t0))s"; }
step 90  python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu-tests.log" | tail -5
step 75  python3 -m bench.profile --device cuda --repeat 4 --backend eager compile --out "$out/profile"
step 200 python3 -m bench.benchmarks.gpu --part sweep --repeats 5 --max-seconds 1.5 --out "$out/timing"
step 45  python3 -m bench.benchmarks.gpu --part modes --repeats 5 --out "$out/timing"
step 20  python3 -m bench.cli.main report "$out/timing" -o "$out/report"
# the device tool brings back at most 8 files: one archive of everything
[ -n "${OUT:-}" ] && tar czf "$OUT/gpu-results.tar.gz" "$out" && cp "$out/gpu-tests.log" "$OUT/" 2>/dev/null
exit 0
