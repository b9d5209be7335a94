"""``cace-bench run | accuracy | timing | report``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..backends import BACKENDS, TRAINING_BACKENDS, check_device

from ..errors import InputError
from .data_cmd import add_read_options, read_options


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="the main job: accuracy, stability and timing on both descriptors, then the report")
    _common(p)
    _executor_options(p, "the training runs, the MD of stability and the timing sweeps (each of these holding a whole "
                         "machine while it measures)")
    _timing_options(p)
    _stability_options(p)
    _train_options(p)
    p.set_defaults(func=run)
    a = sub.add_parser("accuracy", help="train and test both descriptors")
    _common(a)
    _executor_options(a, "the training runs")
    _train_options(a)
    a.set_defaults(func=accuracy)
    st = sub.add_parser("stability", help="MD with the trained potentials (after accuracy): time to failure, drift, RDF")
    _common(st)
    _executor_options(st, "the trajectories (ASE engine) or each potential's batch of replicas (batched engine)")
    _stability_options(st)
    st.set_defaults(func=stability)
    t = sub.add_parser("timing", help="descriptor, energy+forces and training-step time and memory, side by side, "
                                      "swept over atoms, l_max, nu_max, channels and dtype; then the trained potentials")
    _common(t)
    _executor_options(t, "the sweeps (each holds a whole machine while it measures; the trained potentials' timing "
                         "runs in this process)")
    _timing_options(t)
    t.set_defaults(func=timing)
    f = sub.add_parser("front", help="accuracy as a trade-off front: each descriptor (and the traceless CACE variant) "
                                     "trained along a sweep of the loss's energy weight, with seeds; then the report")
    _common(f)
    f.add_argument("--weights", nargs="+", type=float, default=[1.0, 10.0, 100.0, 1000.0],
                   help="final energy weights of the sweep (force weight 1000; default 1 10 100 1000)")
    f.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (quick: 0)")
    f.add_argument("--epochs", type=int, default=None, help="training budget per run (default: 30 quick, 100 medium)")
    f.add_argument("--variants", nargs="+", default=None, help="default: cace spherical cace-traceless")
    f.add_argument("--tune", type=int, default=0, metavar="N",
                   help="equal tuning budget: before the front, search N recipes per variant (the same N candidates "
                        "for all: learning rate, schedule, EMA, warm-up, energy-weight ramp; same budget per trial), "
                        "chosen on the validation split; each variant's front then uses its own chosen recipe "
                        "(default 0: one shared recipe)")
    f.add_argument("--tune-weight", type=float, default=None, metavar="W",
                   help="the final energy weight the search runs at (default: the middle of --weights)")
    _executor_options(f, "the recipe search's and the front's training runs")
    f.set_defaults(func=front)
    r = sub.add_parser("report", help="HTML + Markdown report from a results folder")
    r.add_argument("results_dir")
    r.add_argument("-o", "--output", default=None, help="output folder (default: the results folder)")
    r.add_argument("--baselines", default=None, help="also plot the tracked figures across this baselines folder's history")
    r.set_defaults(func=report)


def _train_options(p) -> None:
    p.add_argument("--train-backend", default="eager", choices=TRAINING_BACKENDS,
                   help="how training steps run (bench.backends): the descriptor eager, or fused (the Triton "
                        "kernels, differentiable twice; CUDA); '-cudagraphs' (CUDA): each whole step, Adam "
                        "included, replayed from a CUDA graph (bench.train_step); compile: energies and forces "
                        "compiled together by torch.compile (faster steps after about a minute of compiling, once "
                        "for every batch size). The same weights and numbers; every training record names it "
                        "(default eager)")


def _common(p) -> None:
    p.add_argument("--quick", action="store_true", help="CI-sized budgets (a few minutes on 2 cores)")
    p.add_argument("--data", nargs="+", default=["builtin:emt-alloy"],
                   help="builtin:emt-alloy, a shared set (rmd17-ethanol, 3bpa, water64, hea25, zuo-cu, zuo-mo, zuo-si) or a path")
    p.add_argument("--out", default="out", help="results and report folder (default ./out)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] for training, MD and timing (default: cuda when "
                                                   "present, else cpu; every record names the device it ran on)")
    p.add_argument("--test", action="append", default=None, metavar="[NAME=]PATH",
                   help="a separate test file, read with the same key and unit options (the data then splits "
                        "into training and validation only); the report's errors are on it. Repeat it for more "
                        "test sets (e.g. --test 600K=test_600K.xyz --test 1200K=test_1200K.xyz): each is reported "
                        "separately, the first is the main one")
    p.add_argument("--valid", default=None, metavar="PATH",
                   help="a separate validation file (model selection and early stopping; the data then has no "
                        "validation part)")
    p.add_argument("--e0", default=None, metavar="PATH|auto",
                   help="isolated-atom reference energies: a file of single-atom frames, or 'auto' for the data's "
                        "own isolated-atom frames (one atom, or config_type=IsolatedAtom; taken out of the data); "
                        "default: least squares on each seed's training split")
    p.add_argument("--recipe", default="default", choices=["default", "authors"],
                   help="training recipe of the full budget (bench.train.RECIPES): default (Adam 1e-2, plateau "
                        "decay, EMA, energy weight 0.1 -> 1000) or authors (the CACE authors': step decay halving "
                        "every 20 epochs after a warm-up, energy weight 0.1 then 1); --quick has its own")
    add_read_options(p)


def _executor_options(p, what: str) -> None:
    g = p.add_argument_group("executor")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help=f"where {what} run: local (one after another in this process, default) or ray (each a Ray "
                        "task: in parallel on this machine's CPUs and GPUs, or over a cluster with --ray-address; "
                        "needs pip install -e \".[ray]\")")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="a running Ray cluster to join ('auto', or host:port of 'ray start --head'); default: start "
                        "a local Ray instance for this command")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with --executor local: run up to N units at once, each in a worker process of this machine "
                        "with its share of the CPU threads (several trainings sharing the CPUs, or one GPU, which "
                        "one small training leaves mostly idle); timing still runs alone; records say "
                        "concurrent_units. Default 1: one after another in this process")


def _timing_options(p) -> None:
    g = p.add_argument_group("timing")
    g.add_argument("--backend", nargs="+", default=None, choices=list(BACKENDS),
                   help="backends to time both descriptors under (bench.backends; default: eager on CPU, "
                        "every backend on CUDA); the headline pairs each side at its fastest")
    g.add_argument("--threads", type=int, default=2, help="CPU threads (default 2; stated in every record)")
    g.add_argument("--dtype", nargs="+", default=None, choices=["float32", "float64"],
                   help="dtypes to time (default: float32 quick, both full)")
    g.add_argument("--repeats", type=int, default=None, help="timed rounds per point (default: 5 quick, 20 full)")


def _stability_options(p) -> None:
    g = p.add_argument_group("stability")
    g.add_argument("--engine", default="batched", choices=["batched", "ase"],
                   help="batched: every replica of a potential advanced together as one batched graph on the "
                        "device (bench.md; BAOAB Langevin); ase: ASE's integrators, one trajectory at a time "
                        "(ASE's Langevin). Default batched")
    g.add_argument("--md-backend", default="eager", choices=list(BACKENDS),
                   help="how the batched engine computes the forces (bench.backends, the same for every potential): "
                        "eager (default), or a compiled or fused backend on CUDA (python -m "
                        "bench.benchmarks.md_step times them)")


def _read_options(args) -> dict:
    """The read options given (``--index`` included: it selects frames of a data file; the built-in
    and shared sets have their own fixed frames and refuse it)."""
    opts = {k: v for k, v in read_options(args).items() if v is not None}
    if opts.get("index") == ":":                 # the default, every frame: not an option (keys stay as before)
        del opts["index"]
    if "index" in opts:
        fixed = [d for d in args.data if d.startswith("builtin:") or not Path(d).exists()]
        if fixed:
            raise InputError(f"--index selects frames of a data file; {fixed[0]} is a built-in or shared set with fixed "
                             "frames: drop --index, or pass the path of a file")
    return opts


def _data_options(args) -> dict:
    """The accuracy spec's options from the command line: recipe, test, validation and E0 files."""
    return {"recipe": args.recipe, "test": args.test, "e0": args.e0, "valid": args.valid}


def _device(args) -> str:
    """--device, checked here so that a device this machine lacks is a one-line error before any work
    (default: cuda when one is present, else cpu)."""
    if args.device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(args.device, "--device")
    return args.device


def _log(msg: str) -> None:
    """One line to stderr in one write (units in worker processes log side by side: print's two
    writes, the text and the newline, would let their lines run together)."""
    sys.stderr.write(f"{msg}\n")
    sys.stderr.flush()


def accuracy(args) -> int:
    from dataclasses import replace

    from ..results.store import ResultsStore
    from ..tasks import accuracy as acc
    from ..tasks.presets import accuracy_spec

    store = ResultsStore(args.out)
    opts = _read_options(args)
    for data in args.data:
        spec = replace(accuracy_spec(data, quick=args.quick, read_options=opts, **_data_options(args)),
                       device=_device(args), backend=args.train_backend)
        acc.run(spec, store, progress=not args.no_progress and sys.stderr.isatty(), log=_log,
                **_executor(args))
    return 0


def _executor(args) -> dict:
    """The executor options given (``bench.executor``); Ray is checked for before any work."""
    if args.executor == "ray":
        from ..executor import ray_module

        ray_module()
    elif args.ray_address:
        raise InputError("--ray-address needs --executor ray")
    from ..executor import check_jobs

    check_jobs(args.jobs, args.executor)
    return {"executor": args.executor, "address": args.ray_address, "jobs": args.jobs}


def front(args) -> int:
    from ..results.store import ResultsStore
    from ..tasks import front as fr
    from ..tasks.presets import front_spec

    store = ResultsStore(args.out)
    opts = _read_options(args)
    for data in args.data:
        spec = front_spec(data, quick=args.quick, read_options=opts, weights=tuple(args.weights),
                          seeds=tuple(args.seeds) if args.seeds else None, epochs=args.epochs,
                          variants=tuple(args.variants) if args.variants else None, device=_device(args),
                          test=args.test, e0=args.e0, tune=args.tune, tune_weight=args.tune_weight,
                          valid=args.valid)
        fr.run(spec, store, progress=not args.no_progress and sys.stderr.isatty(), log=_log, **_executor(args))
    args.results_dir, args.output = args.out, None
    return report(args)


def stability(args) -> int:
    from dataclasses import replace

    from ..results.store import ResultsStore
    from ..tasks import stability as stab
    from ..tasks.presets import accuracy_spec, stability_spec

    store = ResultsStore(args.out)
    opts = _read_options(args)
    for data in args.data:
        name = data.split(":", 1)[-1]
        spec = replace(stability_spec(name, quick=args.quick), engine=args.engine, device=_device(args),
                       backend=args.md_backend)
        stab.run(spec, accuracy_spec(data, quick=args.quick, read_options=opts, **_data_options(args)), store, log=_log,
                 **_executor(args))
    return 0


def timing(args) -> int:
    from ..results.store import ResultsStore
    from ..tasks import timing as tim
    from ..tasks import timing_trained
    from ..tasks.presets import accuracy_spec, timing_spec

    from dataclasses import replace

    store = ResultsStore(args.out)
    args.device = _device(args)
    spec = timing_spec(quick=args.quick, device=args.device, threads=args.threads,
                       dtypes=tuple(args.dtype) if args.dtype else None,
                       backends=tuple(args.backend) if args.backend else None)
    if args.repeats:
        spec = replace(spec, repeats=args.repeats)
    tim.run(spec, store, log=_log, **_executor(args))
    opts = _read_options(args)
    for data in args.data:
        timing_trained.run(accuracy_spec(data, quick=args.quick, read_options=opts, **_data_options(args)).data, store,
                           device=args.device,
                           threads=args.threads, repeats=args.repeats or (5 if args.quick else 20), log=_log)
    return 0


def report(args) -> int:
    from ..report import build_report

    html_path, md_path = build_report(args.results_dir, args.output, baselines=getattr(args, "baselines", None))
    print(f"report: {html_path}\n        {md_path}")
    return 0


def run(args) -> int:
    accuracy(args)
    stability(args)
    timing(args)
    args.results_dir, args.output = args.out, None
    return report(args)
