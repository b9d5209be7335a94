#!/usr/bin/env bash
# Everything this project measures on a CUDA machine, in one call of under 8 minutes.
#
# Prepare on a machine with network, from the project root (downloads ase / vesin wheels, ~10 MB):
#     bash ../shared/gpu/wheels.sh
# Then on the CUDA machine (the device tool: carry .whl), from the project root:
#     bash scripts/gpu_check.sh [--quick] [OUT]     # OUT default: results/gpu/<device name>
# It installs what is missing from .whl (offline), then, each step under its own time limit so the
# whole stays under 8 minutes and a slow step cannot starve the others (partial results are kept:
# the timing store writes each finished point at once):
#   1. the gpu-marked tests (backend and fused-kernel parity on CUDA, float32 and float64) -> OUT/gpu-tests.log
#   2. a kernel profile at 12,288 atoms, both descriptors                                  -> OUT/profile/
#   3. the headline: E+F from 192 atoms up (stops before a call over 1.5 s or at out of memory),
#      eager and fused neighbour sums, memory/atom                                         -> OUT/timing/
#   4. the compiled backends (dense and fused, CUDA graphs) at 192 / 12,288 / 98,304 atoms -> OUT/timing-compiled/
#   5. the reports of both timing folders                                                  -> OUT/report*/
#   6. (full mode) the stability task's MD engines on the GPU, batched against ASE         -> OUT/md-engines.log
#      (carry out/md-engines/accuracy, made here by `python -m bench.benchmarks.md_engines`,
#      so that the quick potentials are not trained there)
# --quick (under 5 minutes, for a nearly spent lease): the tests without compiled backends, and of
# the compiled backends only compile-fused-cudagraphs, at 12,288 atoms. Each torch.compile costs
# 15-20 s there (H200, torch 2.11).
# --kernels (under 10 minutes; the whole of one 15-minute lease): the fused kernels alone (every
# version and launch size against its floors, OUT/kernels.json; the symmetrisation kernel against
# its PyTorch form, OUT/contraction.json), then the model with the fastest
# correct version of each sum's shape (edge_sum --pick; exported as CACE_BENCH_FUSED_KERNEL and
# recorded in every fused timing record): eager and fused at 192 / 12,288 / 98,304 atoms, eager,
# compile-fused-cudagraphs and compile-cudagraphs side by side at 12,288 (each timed point checked
# against eager by the timing task), the kernel profile, the gpu tests but those that compile, and
# last `cace-bench run --quick --device cuda`, timed (OUT/run-quick.log).
# --diagnose (under 5 minutes; 7.5 with RUN_QUICK=1): kernels serial / atomwise-split / prefetch alone,
# the symmetrisation alone (PyTorch form against the fused kernel, OUT/contraction.json),
# the model with the fastest per shape (eager, fused, compile-fused-cudagraphs at 12,288 and 98,304
# atoms), the kernel profile of compile-fused (what the compiled model spends beside the neighbour
# sums), and with RUN_QUICK=1 the timed `cace-bench run --quick --device cuda`.
# --probe (under 3.5 minutes): at 12,288 atoms, eager against compile-fused and compile-fused-cudagraphs
# with every sum on v7 "prefetch", then compile-fused-cudagraphs with every sum on v6: whether a
# compiled fused path that differs from eager follows the kernel version.
# --kernels-short (under 2.5 minutes, for the end of a lease): the kernels serial / prefetch /
# atomwise-split alone, then the model with the fastest per shape: eager, fused and compile-fused-cudagraphs side by
# side at 12,288 atoms, and the float32 CUDA invariance tests.
# --million (under 7 minutes): issue #12's million-atom point, energy + forces at 98,304 and
# 1,119,744 atoms (supercells 8 and 18), fused and compile-fused; where eager does not fit in memory
# it is recorded as out of memory and the others are checked against the fused eager backend
# (the timing task's reference chain)                                                     -> OUT/timing/
# --train (under 8 minutes; its first three steps took 60 s on the H200): which backend should
# train on the GPU (issue #13). The fused force-loss step's parity with eager on CUDA, no host
# read in a call or a training step (eager and fused), a resumed training on CUDA (eager and
# CUDA-graph steps), the recorded training step against the unrecorded one (the gpu tests of those
# names, tests/test_train_step.py and the symmetrisation kernels' second derivatives), then the whole
# training step under every training backend (eager, fused, each with CUDA graphs;
# python -m bench.benchmarks.train_step)                                        -> OUT/train-step/
# then the symmetrisation alone, its second derivative included (OUT/contraction.json), the descriptor,
# energy + forces and training-step modes at 192 / 1,536 / 12,288 atoms, eager against fused, and
# energy + forces replayed from CUDA graphs without a compiler (eager-cudagraphs, fused-cudagraphs)
# (python -m bench.benchmarks.gpu --part modes)                                      -> OUT/timing-train/
# then the training step's kernel profile at 1,536 atoms (PROFILE_12288=1: and 12,288), eager and
# fused                                                                                 -> OUT/profile-train-*/
# TRAIN_COMPILE=1 (up to 210 s more): the compiled training step's CUDA parity tests and its time at
# 1,536 atoms against eager                                          -> OUT/train-step-compile/
# (its step limits then sum to 680 s, over one call's 600: add TRAIN_SHORT=1, which stops after it,
# 480 s of limits)
# --md (under 6 minutes): issue #13's batched MD figure, time per step of one 24,000-atom water box
# (neighbour lists on the device included), both descriptors, each backend of MD_BACKENDS (default
# eager fused fused-cudagraphs compile-fused compile-fused-cudagraphs; the CUDA-graph ones pad their lists to
# bucketed sizes) (python -m bench.benchmarks.md_step)                                   -> OUT/md-step.json
# --accuracy [STORE] (one lease's part of issue #13's full-budget comparison; under 9 minutes): the
# water64 accuracy comparison at the full budget (both descriptors, seeds 0 1 2, up to 500 epochs
# each), all six trainings at once on the one GPU (--jobs, default ACC_JOBS=6), stopped by SIGINT
# after ACC_SECONDS (default 420) so that every training keeps its last finished epoch (TRAIN_BACKEND:
# eager, the default, fused, eager-cudagraphs or fused-cudagraphs: --train's train-step rows say
# which is fastest; a training resumed under another backend says so in its records); the next
# lease's call resumes them from STORE (default results/gpu/<device name>/water64-full: commit what
# comes back there, so that it travels with the tree). Then the report of what has finished. The
# data does not travel from ../shared: here, before the call,
#     mkdir -p .shared/data && cp -r ../shared/data/water64 .shared/data/     # 8 MB; carry .whl and .shared
# --stability [STORE] (under 8 minutes; after --accuracy has finished): issue #13's full stability
# sweep (water64: 300/900/1500 K, 5 velocity seeds, 2 starts, 10 ps) with the trained potentials of
# STORE (default as --accuracy), every potential's 30 replicas as one batch on the GPU, forces through
# MD_BACKEND (default fused; fused-cudagraphs replays each force call without a compiler and
# compile-fused-cudagraphs compiles, both pad their lists, see README: at 30 x 192 atoms a call is
# bound by launches, so fused-cudagraphs once --train's recorded-call tests pass), stopped by SIGINT
# after ST_SECONDS (default 400): each potential's finished batch is kept, the next call runs the
# rest. Then the report. The same data as --accuracy must be carried.
# --lease (a whole 15-minute lease's call, LEASE_SECONDS default 540 of run): --train's tests and
# train-step benchmark (TRAIN_SHORT=1: not its modes timing and profiles), then --accuracy for the
# time left (at least 120 s), each with its own archive in $OUT. The same data as --accuracy must be
# carried. This is what the H200 lease of 2026-11-28 ran by hand.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--lease" ]; then
  t0=$SECONDS
  TRAIN_SHORT=1 bash scripts/gpu_check.sh --train
  left=$(( ${LEASE_SECONDS:-540} - (SECONDS - t0) - 60 ))   # 60: workers' start, the report, the archive
  [ $left -lt 120 ] && { echo "== --train left ${left}s: too little for an accuracy part"; exit 0; }
  echo "== --train took $((SECONDS - t0))s; the accuracy part gets ${left}s"
  ACC_SECONDS=$left bash scripts/gpu_check.sh --accuracy
  exit 0
fi
if ! python3 -c "import ase, vesin" 2>/dev/null; then
  # afresh: a warm machine keeps the ignored .site of an earlier call, and pip --target over it
  # skips what exists and once left ase unimportable (H200, 2026-11-28)
  rm -rf .site
  python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl || exit 2
  export PYTHONPATH="$PWD/.site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
quick=0; [ "${1:-}" = "--quick" ] && { quick=1; shift; }
[ "${1:-}" = "--kernels" ] && { quick=2; shift; }
[ "${1:-}" = "--kernels-short" ] && { quick=3; shift; }
[ "${1:-}" = "--diagnose" ] && { quick=4; shift; }
[ "${1:-}" = "--probe" ] && { quick=5; shift; }
[ "${1:-}" = "--accuracy" ] && { quick=6; shift; }
[ "${1:-}" = "--md" ] && { quick=7; shift; }
[ "${1:-}" = "--million" ] && { quick=8; shift; }
[ "${1:-}" = "--stability" ] && { quick=9; shift; }
[ "${1:-}" = "--train" ] && { quick=10; shift; }
name=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))") || { echo "no CUDA device"; exit 2; }
# one-off measurements get a folder of their own per call: the timing store skips every point it
# already holds, so a second call into a committed folder would measure nothing
stamp=$(date -u +%Y%m%dT%H%M)
case $quick in                           # the folder archived: a run's own, not the device's whole history
  6|9) out=${1:-results/gpu/$name/water64-full} ;;   # the accuracy store, resumed by the next lease
  7) out=${1:-results/gpu/$name/md-$stamp} ;;
  8) out=${1:-results/gpu/$name/million-$stamp} ;;
  10) out=${1:-results/gpu/$name/train-$stamp} ;;
  *) out=${1:-results/gpu/$name} ;;
esac
if [ $quick = 6 ] || [ $quick = 9 ]; then
  [ -d .shared/data ] && export CACE_BENCH_SHARED=$PWD/.shared/data
  python3 -c "from bench.tasks.presets import named_data as d; import sys; sys.exit(not __import__('os').path.isfile(d()['water64'][0].source))" || {
    echo "water64 is not here: before the call, mkdir -p .shared/data && cp -r ../shared/data/water64 .shared/data/ and carry .shared"; exit 2; }
fi
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/device.csv" 2>&1 || true
# after every step, the archive the device tool brings back (at most 8 files) is refreshed, so a
# call cut short still returns what finished; one archive per results folder, so that modes chained
# in one call (--train, then --accuracy) do not overwrite each other's
archive="$OUT/gpu-results-$(basename "$out").tar.gz"
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; local t0=$SECONDS
         timeout "$limit" "$@"; echo "== rc=$? in $((SECONDS - t0))s"
         [ -n "${OUT:-}" ] && tar czf "$archive" "$out" 2>/dev/null; }
gpu="python3 -m bench.benchmarks.gpu --part sweep --repeats 5 --max-seconds 1.5"
if [ $quick = 10 ]; then
  step 120 python3 -m pytest -q -p no:cacheprovider -m gpu \
      -k "(training_step or read_nothing_back or interrupted or on_cuda or second_derivatives) and not compile" \
      tests/test_fused.py tests/test_host_syncs.py tests/test_front.py tests/test_train_step.py tests/test_recorded_calls.py \
      tests/test_contraction_kernel.py > "$out/gpu-tests.log" 2>&1
  tail -3 "$out/gpu-tests.log"
  # the whole training step (Adam included) under every training backend, CUDA graphs included
  step 150 python3 -m bench.benchmarks.train_step --device cuda --frames 1 8 64 --repeats 10 --out "$out/train-step" \
      --backend eager fused eager-cudagraphs fused-cudagraphs > "$out/train-step.log" 2>&1
  grep -v Warning "$out/train-step.log" | tail -16
  # TRAIN_COMPILE=1: the compiled training step (energies and forces compiled together) against eager
  # at the full recipe's batch, and its parity tests on CUDA (four compiles: two descriptors, two
  # dtypes); the step is compiled with dynamic shapes, once for every batch size
  if [ -n "${TRAIN_COMPILE:-}" ]; then
    step 100 python3 -m pytest -q -p no:cacheprovider -m gpu -k "force_loss_training_step" tests/test_backends.py \
        > "$out/gpu-tests-train-compile.log" 2>&1
    tail -3 "$out/gpu-tests-train-compile.log"
    step 110 python3 -m bench.benchmarks.train_step --device cuda --frames 8 --repeats 10 --backend compile \
        --out "$out/train-step-compile" > "$out/train-step-compile.log" 2>&1
    grep -v Warning "$out/train-step-compile.log" | tail -6
  fi
  [ -n "${TRAIN_SHORT:-}" ] && exit 0
  # the symmetrisation alone at 12,288 atoms: PyTorch form against the kernels, forward, backward and
  # the second derivative (the tangent launches a fused training step runs)
  step 25  python3 -m bench.benchmarks.contraction --out "$out/contraction.json" > "$out/contraction.log" 2>&1
  grep -v Warning "$out/contraction.log" | tail -6
  step 110 python3 -m bench.benchmarks.gpu --part modes --backend eager fused eager-cudagraphs fused-cudagraphs \
      --repeats 5 --out "$out/timing-train"
  step 20  python3 -m bench.cli.main report "$out/timing-train" -o "$out/report-train"
  # where a training step's device time goes at the full recipe's batch (1,536 atoms, bound by
  # launches there), eager and fused, with launches a step (PROFILE_12288=1: also at 12,288 atoms,
  # where the fused step was no faster than eager; 60 s more)
  step 45  python3 -m bench.profile --device cuda --mode training_step --repeat 2 --calls 4 --backend eager fused \
      --out "$out/profile-train-1536"
  [ -n "${PROFILE_12288:-}" ] && step 60 python3 -m bench.profile --device cuda --mode training_step --repeat 4 \
      --calls 3 --backend eager fused --out "$out/profile-train-12288"
  exit 0
elif [ $quick = 8 ]; then
  step 400 python3 -m bench.benchmarks.gpu --part sweep --sizes 8 18 --repeats 5 --max-seconds 5 \
      --backend fused compile-fused --out "$out/timing" > "$out/million.log" 2>&1
  grep -v Warning "$out/million.log" | tail -30
  step 30 python3 -m bench.cli.main report "$out/timing" -o "$out/report"
  exit 0
elif [ $quick = 7 ]; then
  step 330 python3 -m bench.benchmarks.md_step --repeat 5 \
      --backend ${MD_BACKENDS:-eager fused fused-cudagraphs compile-fused compile-fused-cudagraphs} \
      --out "$out/md-step.json" > "$out/md-step.log" 2>&1
  grep -v Warning "$out/md-step.log" | tail -12
  exit 0
elif [ $quick = 9 ]; then
  mkdir -p "$out/logs"; log="$out/logs/stability-$(date -u +%Y%m%dT%H%M%S).log"
  step $(( ${ST_SECONDS:-400} + 45 )) timeout -s INT "${ST_SECONDS:-400}" python3 -m bench.cli.main stability \
      --data water64 --device cuda --md-backend "${MD_BACKEND:-fused}" --no-progress --out "$out" > "$log" 2>&1
  tail -12 "$log"
  step 40 python3 -m bench.cli.main report "$out" -o "$out/report"
  exit 0
elif [ $quick = 6 ]; then
  mkdir -p "$out/logs"; log="$out/logs/part-$(date -u +%Y%m%dT%H%M%S).log"
  # SIGINT, not TERM: the trainings stop and keep their state; the outer limit only if that hangs
  step $(( ${ACC_SECONDS:-420} + 45 )) timeout -s INT "${ACC_SECONDS:-420}" python3 -m bench.cli.main accuracy \
      --data water64 --device cuda --jobs "${ACC_JOBS:-6}" --train-backend "${TRAIN_BACKEND:-eager}" \
      --no-progress --out "$out" > "$log" 2>&1
  tail -12 "$log"
  ls "$out"/artifacts/*/train-state.pt 2>/dev/null | wc -l | xargs echo "== trainings left to resume:"
  step 40 python3 -m bench.cli.main report "$out" -o "$out/report"
  exit 0
elif [ $quick = 5 ]; then
  step 115 env CACE_BENCH_FUSED_KERNEL=prefetch $gpu --backend eager compile-fused compile-fused-cudagraphs --sizes 4 \
      --out "$out/probe-prefetch"
  step 80  env CACE_BENCH_FUSED_KERNEL=atomwise-split $gpu --backend eager compile-fused-cudagraphs --sizes 4 \
      --out "$out/probe-split"
elif [ $quick = 4 ]; then
  step 60  python3 -m bench.benchmarks.edge_sum --versions serial atomwise-split prefetch --out "$out/kernels.json"
  step 25  python3 -m bench.benchmarks.contraction --out "$out/contraction.json"
  pick=$(python3 -m bench.benchmarks.edge_sum --pick "$out/kernels.json" 2>/dev/null) || pick=auto
  echo "== fused kernels for the model, per shape: $pick"; export CACE_BENCH_FUSED_KERNEL=$pick
  step 130 $gpu --backend eager fused compile-fused-cudagraphs --sizes 4 8 --out "$out/timing-compiled"
  step 60  python3 -m bench.profile --device cuda --repeat 4 --backend compile-fused --out "$out/profile"
  [ "${RUN_QUICK:-0}" = 1 ] && step 150 python3 -m bench.cli.main run --quick --device cuda --no-progress \
      --out "$out/run-quick" > "$out/run-quick.log" 2>&1
elif [ $quick = 3 ]; then
  step 55  python3 -m bench.benchmarks.edge_sum --versions serial atomwise-split prefetch --out "$out/kernels.json"
  pick=$(python3 -m bench.benchmarks.edge_sum --pick "$out/kernels.json" 2>/dev/null) || pick=auto
  echo "== fused kernels for the model, per shape: $pick"; export CACE_BENCH_FUSED_KERNEL=$pick
  step 70  $gpu --backend eager fused compile-fused-cudagraphs --sizes 4 --out "$out/timing-compiled"
  step 20  python3 -m pytest -q -p no:cacheprovider -m gpu -k "translation or config_round_trip" \
      tests/test_descriptor_properties.py > "$out/gpu-tests.log" 2>&1
  tail -3 "$out/gpu-tests.log"
elif [ $quick = 2 ]; then
  step 75  python3 -m bench.benchmarks.edge_sum --out "$out/kernels.json"
  step 25  python3 -m bench.benchmarks.contraction --out "$out/contraction.json"
  pick=$(python3 -m bench.benchmarks.edge_sum --pick "$out/kernels.json" 2>/dev/null) || pick=auto
  echo "== fused kernels for the model, per shape: $pick"; export CACE_BENCH_FUSED_KERNEL=$pick
  step 60  $gpu --backend eager fused --sizes 1 4 8 --out "$out/timing"
  step 120 $gpu --backend eager compile-fused-cudagraphs compile-cudagraphs --sizes 4 --out "$out/timing-compiled"
  step 30  python3 -m bench.profile --device cuda --repeat 4 --backend eager fused --out "$out/profile"
  step 70  python3 -m pytest -q -p no:cacheprovider -m "gpu and not slow" -k "not test_cuda_backends_equal_eager and not compile" \
      tests > "$out/gpu-tests.log" 2>&1
  tail -3 "$out/gpu-tests.log"
  # issue #13's target: the main job's quick run on the GPU in under 2 minutes
  step 150 python3 -m bench.cli.main run --quick --device cuda --no-progress --out "$out/run-quick" > "$out/run-quick.log" 2>&1
  tail -3 "$out/run-quick.log"
elif [ $quick = 1 ]; then
  step 70  python3 -m pytest -q -p no:cacheprovider -m gpu -k "not compile" tests > "$out/gpu-tests.log" 2>&1
  tail -3 "$out/gpu-tests.log"
  step 70  $gpu --backend eager fused --sizes 1 2 4 8 12 --out "$out/timing"
  # two compiles only (the dense compiled path was measured in first-run/): 4 did not fit 90 s on the H200
  step 90  $gpu --backend eager compile-fused-cudagraphs --sizes 4 --out "$out/timing-compiled"
  step 35  python3 -m bench.profile --device cuda --repeat 4 --backend eager fused --out "$out/profile"
else
  step 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests > "$out/gpu-tests.log" 2>&1
  tail -3 "$out/gpu-tests.log"
  step 60  python3 -m bench.profile --device cuda --repeat 4 --backend eager fused compile-fused --out "$out/profile"
  step 100 $gpu --backend eager fused --out "$out/timing"
  step 110 $gpu --backend compile-cudagraphs compile-fused-cudagraphs --sizes 1 4 8 --out "$out/timing-compiled"
  [ -d out/md-engines/accuracy ] && step 45 python3 -m bench.benchmarks.md_engines --device cuda --seeds 2 --temperatures 300 \
      --trained out/md-engines/accuracy --out /tmp/md-engines > "$out/md-engines.log" 2>&1
fi
[ -d "$out/timing" ] && step 15  python3 -m bench.cli.main report "$out/timing" -o "$out/report"
[ -d "$out/timing-compiled" ] && step 15  python3 -m bench.cli.main report "$out/timing-compiled" -o "$out/report-compiled"
[ -n "${OUT:-}" ] && cp "$out/gpu-tests.log" "$OUT/" 2>/dev/null
[ -n "${OUT:-}" ] && [ -f "$out/probe.log" ] && cp "$out/probe.log" "$OUT/" 2>/dev/null
exit 0
