"""Units of work and the executors that run them: the same units in this process ("local") or
spread over a Ray cluster ("ray"; issue #15).

A task's sweep is a list of ``Unit``s: one training run, say, with the stable key its records are
stored under (``bench.results.store``), so that a rerun finds it done and skips it. Each unit
writes its own records and artifacts to the results store when it finishes, atomically, one run
file per unit: many workers write safely, without a single writer, and a crash leaves only whole
files (with Ray on several machines the results folder must be on a filesystem they share, as
cluster home and scratch filesystems are).

Failures:
- a worker that dies during a unit (killed, out of memory, node lost) is retried by Ray up to
  ``retries`` times; a unit that still fails is recorded in ``<results>/failures/<run_id>.json``
  with its reason, the sweep goes on, and the next run of the command tries it again;
- an error raised by the unit's own code (bad input, a bug) is not retried: it ends the sweep and
  is raised in the driver as it would be locally, with every finished unit kept.

Progress: one line per finished unit with the counts done / running / failed / to go and an
estimate of the time left (the throughput so far: time elapsed over units ended, times units left).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import InputError

EXECUTORS = ("local", "ray")


class Shared:
    """A large argument many units share (a prepared data set): Ray puts it in the object store
    once, instead of serialising it with every unit; locally it is passed as is."""

    def __init__(self, value):
        self.value = value


def _with_handles(units: list, put) -> list[tuple]:
    """Each unit's arguments with every ``Shared`` one replaced by ``put(value)``, called once per
    Shared object however many units hold it (Ray's object store, the local pool's worker copies)."""
    handles: dict = {}

    def swap(a):
        if isinstance(a, Shared):
            if id(a) not in handles:
                handles[id(a)] = put(a.value)
            return handles[id(a)]
        return a

    return [tuple(swap(a) for a in u.args) for u in units]


@dataclass(frozen=True)
class Unit:
    key: dict                          # the store key of its records: stable across runs
    label: str                         # for progress lines
    fn: Callable[..., Any]             # fn(*args) does the work and writes the unit's records
    args: tuple = ()
    num_cpus: int = 1                  # CPUs Ray reserves for it, and its torch threads there (locally the
                                       # process's own thread count is kept)
    num_gpus: float = 0                # 1 for a unit on a CUDA device
    exclusive: bool = False            # a measurement (timing): under Ray it holds every CPU of a machine,
                                       # so that no other unit shares its CPUs or GPU while it measures


@dataclass
class Progress:
    total: int
    log: Callable = print
    started: float = field(default_factory=time.perf_counter)
    done: int = 0
    failed: int = 0

    def finished(self, label: str, seconds: float, *, running: int, ok: bool = True, since: str = "") -> None:
        """One line for a unit that ended after ``seconds`` (``since``: what they count from)."""
        self.done += ok
        self.failed += not ok
        left = self.total - self.done - self.failed
        elapsed = time.perf_counter() - self.started
        # throughput so far: right for one unit at a time and for many side by side
        eta = f", about {_duration(elapsed / (self.done + self.failed) * left)} left" if left else ""
        self.log(f"[{self.done + self.failed}/{self.total}] {'finished' if ok else 'FAILED'}: {label} "
                 f"({_duration(seconds)}{since}); {self.done} done, {running} running, {self.failed} failed, "
                 f"{left - running} to start{eta}")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def run_unit(unit_fn, num_cpus: int | None, *args):
    """What a worker runs: the unit's function, with ``num_cpus`` torch threads where given (the
    arguments are passed one by one, so that Ray resolves the shared ones from its object store)."""
    from .malloc import keep_freed_memory

    keep_freed_memory()
    if num_cpus:
        import torch

        torch.set_num_threads(max(1, int(num_cpus)))
    return unit_fn(*args)


def run_units(units: list, store, *, executor: str = "local", address: str | None = None, retries: int = 2,
              log=print, jobs: int = 1) -> dict:
    """Run every unit not yet in ``store``; returns {"done": n, "failed": [(label, reason)],
    "ran": [keys of the units run now, finished or not]}. ``jobs`` (local executor): how many units
    run at once, each in a worker process of this machine (``_run_pool``); 1 runs them one after
    another in this process."""
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    check_jobs(jobs, executor)
    todo = []
    for u in units:
        if store.has(u.key):
            log(f"skip (done): {u.label}")
        else:
            todo.append(u)
    if not todo:
        return {"done": 0, "failed": [], "ran": []}
    if executor == "ray":
        out = _run_ray(todo, store, address, retries, log)
    elif jobs > 1 and sum(not u.exclusive for u in todo) > 1:
        out = _run_pool(todo, store, log, jobs)
    else:
        out = _run_local(todo, store, log)
    return {**out, "ran": [u.key for u in todo]}


def check_jobs(jobs, executor: str = "local") -> None:
    """``jobs`` is a whole number >= 1, and more than one only for the local executor (Ray decides
    itself how many units run at once, from the cluster's CPUs and GPUs)."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a whole number of at least 1, got {jobs!r}")
    if jobs > 1 and executor != "local":
        raise InputError("--jobs is for --executor local; Ray runs as many units at once as the cluster's CPUs "
                         "and GPUs allow")


def _run_local(todo: list, store, log, progress: Progress | None = None) -> dict:
    progress = progress or Progress(len(todo), log)
    for u, args in zip(todo, _with_handles(todo, lambda value: value)):    # locally a Shared is its value
        t0 = time.perf_counter()
        run_unit(u.fn, None, *args)
        _clear_failure(store, u.key)
        progress.finished(u.label, time.perf_counter() - t0, running=0)
    return {"done": progress.done, "failed": []}


# ---- the local pool: several units at once, each in a worker process --------------------------

class _SharedRef:
    """Stands for a ``Shared`` argument in a unit sent to a pool worker, which holds the value (sent
    once per worker by the pool's initializer, not with every unit)."""

    def __init__(self, index: int):
        self.index = index


_worker: dict = {}          # a pool worker's state: "shared" (the Shared values), "stop" (the pool's stop event)


def _pool_init(values: dict, threads: int, jobs: int, stop) -> None:
    """A pool worker's start: the shared values, the pool's stop event, its torch threads (this
    machine's share), and the number of units running beside it (recorded in provenance: their
    times are shared-machine times)."""
    import torch

    from .malloc import keep_freed_memory
    from .provenance import CONCURRENT_ENV

    keep_freed_memory()
    _worker.update(shared=values, stop=stop)
    torch.set_num_threads(threads)
    os.environ[CONCURRENT_ENV] = str(jobs)
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # idle, a worker ignores Ctrl-C (no traceback)


def _pool_unit(fn, args: tuple):
    """Runs one unit in a pool worker, which takes Ctrl-C (KeyboardInterrupt) only while it does."""
    if _worker["stop"].is_set():          # the sweep was stopped while this unit waited in the pool's queue
        raise KeyboardInterrupt("the sweep was interrupted before this unit started")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return fn(*(_worker["shared"][a.index] if isinstance(a, _SharedRef) else a for a in args))
    except KeyboardInterrupt:
        # set here, before this worker can take its next unit: the driver sets it too, but only once
        # it has heard, and a queued unit started in between would run on (a driver that ignores
        # SIGINT, as a background job of a script does, hears only through this unit's result)
        _worker["stop"].set()
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt(pool) -> None:
    """SIGINT to every worker process of ``pool``: a training stops at once, keeping its last finished
    epoch's state to resume from (``bench.train``), instead of running to its end (an idle worker
    ignores it)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (ProcessLookupError, OSError):
            pass


def _run_pool(todo: list, store, log, jobs: int) -> dict:
    """Up to ``jobs`` units at once, each in a worker process of this machine ("spawn": CUDA works in
    the workers), so that several trainings share the CPUs or one GPU (a single small training
    leaves a GPU mostly idle: eager steps are bound by the launches of one Python process). Each
    worker gets torch threads = this process's threads // ``jobs``; exclusive units (timing) then
    run here, alone. As under Ray: a unit's own error ends the sweep and is raised here (the other
    running units are interrupted and keep their resume state), a worker that dies (killed, out of
    memory) is recorded as a failure of the units it left unfinished and the next run tries them
    again, and Ctrl-C stops every worker with its finished epochs kept. A script that calls this
    needs the ``if __name__ == "__main__":`` guard (the workers import the main module)."""
    import multiprocessing
    import pickle
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    import torch

    pooled, alone = [u for u in todo if not u.exclusive], [u for u in todo if u.exclusive]
    values: dict = {}                              # index -> value, sent once to each worker

    def put(value):
        values[len(values)] = value
        return _SharedRef(len(values) - 1)

    calls = []
    for u, args in zip(pooled, _with_handles(pooled, put)):
        try:
            pickle.dumps((u.fn, args))
        except Exception as err:  # noqa: BLE001 - any pickling failure means the same: not sendable
            raise TypeError(f"unit {u.label!r} cannot be sent to a worker process ({type(err).__name__}: {err}); "
                            "its function and arguments must pickle (module-level functions); run with --jobs 1") from err
        calls.append((u, args))
    threads = max(1, torch.get_num_threads() // jobs)
    log(f"running {len(pooled)} units, {min(jobs, len(pooled))} at once in worker processes "
        f"({threads} torch thread{'s' if threads > 1 else ''} each)")
    progress = Progress(len(todo), log)
    failed: list = []
    context = multiprocessing.get_context("spawn")
    stop = context.Event()                         # set: no queued unit starts any more
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(pooled)), mp_context=context,
                               initializer=_pool_init, initargs=(values, threads, jobs, stop))
    futures = {pool.submit(_pool_unit, u.fn, args): (u, time.perf_counter()) for u, args in calls}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                u, t0 = futures[fut]
                try:
                    fut.result()
                except BrokenProcessPool:
                    reason = ("a worker process died (killed, or out of memory) while this unit was queued or "
                              "running; run the command again to retry it")
                    _write_failure(store, u, reason)
                    failed.append((u.label, reason))
                    ok = False
                else:
                    _clear_failure(store, u.key)
                    ok = True
                progress.finished(u.label, time.perf_counter() - t0, running=min(len(pending), jobs), ok=ok,
                                  since=" since submitted")
    except BaseException as err:                   # Ctrl-C, or a unit's own error: stop the others, keep their state
        stop.set()
        for fut in pending:
            fut.cancel()
        if isinstance(err, KeyboardInterrupt):
            # Ctrl-C and `timeout -s INT` reach the workers too (one process group), and their units
            # end at once; where only this process got it (or a unit alone was interrupted), tell them
            wait([f for f in pending if f.running()], timeout=3)
        _interrupt(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if alone:
        out = _run_local(alone, store, log, progress)
        return {"done": progress.done, "failed": failed + out["failed"]}
    return {"done": progress.done, "failed": failed}


def ray_module():
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install -e \".[ray]\" (or pip install ray)") from None
    return ray


def _run_ray(todo: list, store, address: str | None, retries: int, log) -> dict:
    ray = ray_module()
    if not sys.stdout.isatty():                   # workers' lines forwarded to a file: no colour codes
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    started_here = not ray.is_initialized()
    if started_here:
        # address None: start a local instance with this machine's CPUs and GPUs; else join a cluster
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=True)
    try:
        remote = ray.remote(run_unit)
        refs: dict = {}
        whole = machine_cpus(ray.nodes())
        for u, args in zip(todo, _with_handles(todo, ray.put)):
            opts = {"num_cpus": max(u.num_cpus, whole) if u.exclusive else u.num_cpus, "num_gpus": u.num_gpus,
                    "max_retries": retries}
            ref = remote.options(**opts).remote(u.fn, u.num_cpus, *args)
            refs[ref] = (u, time.perf_counter())
        parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
        progress = Progress(len(todo), log)
        failed = []
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            u, t0 = refs[ready[0]]
            ok = True
            try:
                ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:          # the unit's own code raised: not retried
                for ref in pending:
                    ray.cancel(ref, force=True)
                cause = err.as_instanceof_cause() if hasattr(err, "as_instanceof_cause") else err
                raise (cause if isinstance(cause, InputError) else err) from None
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OutOfMemoryError) as err:    # retried `retries` times, then recorded
                reason = f"{type(err).__name__} after {retries} retries: {str(err).splitlines()[0][:300]}"
                _write_failure(store, u, reason)
                failed.append((u.label, reason))
                ok = False
            else:
                _clear_failure(store, u.key)
            progress.finished(u.label, time.perf_counter() - t0, running=min(len(pending), parallel), ok=ok,
                              since=" since submitted")
        return {"done": progress.done, "failed": failed}
    finally:
        if started_here:
            ray.shutdown()


def machine_cpus(nodes: list[dict]) -> int:
    """The CPUs of the smallest live machine of a Ray cluster (``ray.nodes()``): an exclusive unit
    asks for that many, so that it has a machine of that size to itself (on a cluster of unequal
    machines, a larger one can still run other units beside it: give timing a cluster of equal ones)."""
    cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive", True)]
    cpus = [c for c in cpus if c > 0]
    return min(cpus) if cpus else 1


def _failure_path(store, key):
    from .results.store import run_id

    return store.root / "failures" / f"{run_id(key)}.json"


def _write_failure(store, unit: Unit, reason: str) -> None:
    from .atomic import write_json_atomic

    path = _failure_path(store, unit.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"key": unit.key, "label": unit.label, "reason": reason,
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def _clear_failure(store, key) -> None:
    _failure_path(store, key).unlink(missing_ok=True)


def failures(store) -> list[dict]:
    """The units recorded as failed in ``store`` (each with its key, label and reason)."""
    folder = store.root / "failures"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
