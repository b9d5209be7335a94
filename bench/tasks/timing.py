"""Timing task: both descriptors (and their potentials) timed side by side, swept, into the store.

What is timed, per descriptor, on the water box (``bench.structures.water_box``, 192 atoms) and
its supercells, with a preset and one-at-a-time overrides:
    descriptor     features only, no autograd (``torch.no_grad``)
    energy_forces  potential energy and forces (forward + backward): the MD call
    training_step  a loss on energies and forces, differentiated with respect to the weights
                   (the double backward training needs)
and, separately, the neighbour list (vesin, through ``AtomsGraph.from_atoms``).

Sweeps (``TimingSpec``): atoms (supercell repeats; stops before a point whose slowest call,
extrapolated linearly in the atom count from the last point, would exceed ``max_seconds_per_call``,
or where memory runs out), l_max, nu_max, channels (n_radial) and dtype.
Method (``bench.tasks.measure``): at each point every (descriptor, mode) call is timed
round-robin in one loop after warm-up, median and IQR over repeats; CUDA events and an L2 flush
on GPU. The headline ``speed_ratio_spherical_over_cace`` is the median of the per-round ratios.
Each timing record carries the analytic cost (``bench.costmodel``: FLOPs, bytes, achieved
FLOP/s); the device's measured ceilings (``bench.tasks.reference.ceilings``) are recorded once
per run for the roofline. Peak memory of energy+forces: at each atoms point, in a fresh process
on CPU, from the allocator on CUDA.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..provenance import config_hash, provenance
from ..results.record import Record
from ..results.store import ResultsStore

from .accuracy import DESCRIPTORS as KINDS

MODES = ("descriptor", "energy_forces", "training_step")


@dataclass(frozen=True)
class TimingSpec:
    preset: str = "water"
    sizes: tuple = (1, 2)                 # atoms sweep: supercell repeats of the 192-atom water box
    l_max: tuple = ()                     # each sweep varies one keyword at sizes[0]; () = not swept
    nu_max: tuple = ()
    n_radial: tuple = ()                  # radial channels K
    dtypes: tuple = ("float32",)
    modes: tuple = MODES
    threads: int = 2
    device: str = "cpu"
    repeats: int = 10
    warmup: int = 3
    memory: bool = True                   # peak memory of energy+forces at each atoms point
    backends: tuple = ("eager",)          # bench.backends: each (descriptor, mode) is timed under every backend
    max_seconds_per_call: float = 10.0    # the atoms sweep stops before a point predicted slower than this

    def points(self):
        """(sweep, overrides, repeat) for every point, the atoms sweep first."""
        out = [("atoms", {}, r) for r in self.sizes]
        for name in ("l_max", "nu_max", "n_radial"):
            out += [(name, {name: v}, self.sizes[0]) for v in getattr(self, name)]
        return out


def setup(kind: str, *, preset: str = "water", overrides: dict | None = None, repeat: int = 1,
          dtype: str = "float32", device: str = "cpu", seed: int = 0, backend: str = "eager", potential=None,
          graph=None):
    """(potential, graph): the preset (with ``overrides``) on the water box repeated ``repeat``
    times per axis, run through ``backend``; the same seed gives both descriptors the same initial draws.
    ``potential``: one already built for this (kind, preset, overrides, dtype, device, seed), reused
    (its weights are what a new build would draw; a compiled backend keeps its compiled graphs).
    ``graph``: that box's graph, already built with the potential's cutoff (both descriptors share
    one: at a million atoms a neighbour list takes many seconds)."""
    from ..backends import with_backend
    from ..graph import AtomsGraph
    from ..potential import build
    from ..structures import water_box

    if potential is None:
        torch.manual_seed(seed)
        pot = build(kind, elements=[1, 8], preset=preset, **(overrides or {}))
        pot = with_backend(pot.to(device=device, dtype=getattr(torch, dtype)), backend)
    else:
        pot = potential
    if graph is None or graph.cutoff != pot.descriptor.cutoff:
        atoms = water_box().repeat(repeat)
        graph = AtomsGraph.from_atoms(atoms, pot.descriptor.cutoff, dtype=getattr(torch, dtype), device=device)
    return pot, graph


def mode_call(pot, graph, mode: str):
    """A no-argument callable doing one ``mode`` evaluation."""
    if mode == "descriptor":
        if getattr(pot, "_call_graphs", None) is not None:
            from ..backends import BackendUnavailable

            raise BackendUnavailable(f"backend {pot.backend!r} records energy + forces calls; the descriptor alone "
                                     "is its base backend's (timed under that name)")

        def call():
            with torch.no_grad():
                return pot.features(graph)
    elif mode == "energy_forces":
        def call():
            return pot(graph)
    elif mode == "training_step":
        def call():
            loss = training_loss(pot, graph)
            loss.backward()
            pot.zero_grad(set_to_none=True)
            return loss
    else:
        raise InputError(f"unknown timing mode {mode!r}; known: {MODES}")
    return call


def training_loss(pot, graph) -> torch.Tensor:
    """The training-step mode's loss: sum of squared energies and forces (a force loss, so its
    gradient with respect to the weights is a double backward)."""
    out = pot(graph, training=True)
    return (out["energy"] ** 2).sum() + (out["forces"] ** 2).sum()


def training_result(pot, graph, params) -> dict:
    """What a training step computes, to check a backend against the reference: the energies and
    forces it trains on, and the gradient of the force loss sum F^2 with respect to ``params`` (the
    weights, shared by every backend of a potential; zeros where a weight gets none) as one vector:
    the double backward itself. (The step's whole loss is dominated by the energies, so its
    gradient would hide a force error.)"""
    out = pot(graph, training=True)
    grads = torch.autograd.grad((out["forces"] ** 2).sum(), params, allow_unused=True)
    return {"energy": out["energy"].detach(), "forces": out["forces"].detach(),
            "force_loss_gradient": torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                                              for g, p in zip(grads, params)])}


def _memory_child(argv) -> None:
    """``python -m bench.tasks.timing --memory-child JSON``: print {"peak_bytes"} of one energy+forces call."""
    from .measure import peak_call_memory

    args = json.loads(argv[0])
    torch.set_num_threads(args.pop("threads"))
    pot, graph = setup(**args)
    print(json.dumps({"peak_bytes": peak_call_memory(lambda: pot(graph), args["device"])}))


def peak_memory(kind: str, *, threads: int, **case) -> int:
    """Peak bytes one energy+forces call adds: a fresh process on CPU, the allocator on CUDA."""
    from .measure import peak_call_memory, peak_memory_subprocess

    if torch.device(case["device"]).type == "cuda":
        pot, graph = setup(kind, **case)
        return peak_call_memory(lambda: pot(graph), case["device"])
    args = json.dumps({"kind": kind, "threads": threads, **case})
    return peak_memory_subprocess("bench.tasks.timing", ["--memory-child", args])["peak_bytes"]


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower() or "not enough memory" in str(err).lower()


def _backend_calls(setups: dict, spec: TimingSpec, runners: dict):
    """({"kind/backend/mode": call}, [failures], {"kind/backend/mode": reference backend}): each call
    made once here (a compiled backend compiles on it); a backend that cannot run a call, runs out of
    memory, or whose result differs from the reference's (``bench.parity.disagreement``), is a
    failure record, not an omission and never a timing. The reference is eager, and where eager runs
    out of memory (a million atoms) the fused eager backend (``REFERENCES``), itself checked against
    eager at every smaller point of the sweep; where neither fits, nothing else is timed unchecked.
    ``runners[(kind, backend)]`` keeps each backend's potential for the next point of the sweep (the
    same weights; compiled graphs reused, dynamic shapes after the first change of size)."""
    from ..backends import with_backend
    from ..parity import disagreement

    calls, failures, refs, checked = {}, [], {}, {}
    no_room = set()                                   # (kind, backend, mode) that ran out of memory here

    def runner(k, b):
        if (k, b) not in runners:
            runners[(k, b)] = with_backend(setups[k][0], b)
        return runners[(k, b)]

    def result(k, b, m, out):
        """What the call computed, to compare: its output, or for a training step its energies, forces
        and force-loss gradient (``training_result``: the step's own call zeroes the gradients)."""
        if m != "training_step":
            return _detached(out)
        return training_result(runner(k, b), setups[k][1], [p for p in setups[k][0].parameters() if p.requires_grad])

    def reference(k, m):
        """(backend, output) of the first of ``REFERENCES`` that computes (kind, mode) here, or None."""
        if (k, m) not in refs:
            refs[(k, m)] = None
            for b in REFERENCES:
                if (k, b, m) in no_room:
                    continue
                try:
                    refs[(k, m)] = (b, result(k, b, m, mode_call(runner(k, b), setups[k][1], m)()))
                    break
                except Exception as err:  # noqa: BLE001 -- out of memory, or unavailable here: try the next
                    if b == "eager" and not _is_oom(err):
                        raise
                _free_device(spec.device)          # outside the handler: its traceback held the call's tensors
        return refs[(k, m)]

    for k, (pot, g) in setups.items():
        for b in spec.backends:
            for m in spec.modes:
                error = None
                try:
                    call = mode_call(runner(k, b), g, m)
                    out = call()
                except Exception as err:  # noqa: BLE001 -- a backend's failure is a result (eager's: OOM only)
                    if b == "eager" and not _is_oom(err):
                        raise
                    error = "out of memory" if _is_oom(err) else f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
                if error is not None:              # outside the handler: its traceback held the call's tensors
                    failures.append({"descriptor": k, "backend": b, "mode": m, "error": error})
                    if error == "out of memory":
                        no_room.add((k, b, m))
                        _free_device(spec.device)
                    continue
                if b == "eager":
                    refs[(k, m)] = ("eager", result(k, b, m, out))
                else:                            # a backend is timed only where it computes what eager does
                    ref = reference(k, m)
                    if ref is None:
                        failures.append({"descriptor": k, "backend": b, "mode": m,
                                         "error": "not checked: no reference backend (" + ", ".join(REFERENCES)
                                                  + ") fits in memory here, so it is not timed"})
                        continue
                    if ref[0] == b:                # the reference here: checked at the smaller points
                        checked[f"{k}/{b}/{m}"] = f"{b} (the reference here)"
                    else:
                        wrong = disagreement(result(k, b, m, out), ref[1], g.dtype, reference=ref[0])
                        if wrong:
                            failures.append({"descriptor": k, "backend": b, "mode": m, "error": wrong})
                            continue
                        checked[f"{k}/{b}/{m}"] = ref[0]
                calls[f"{k}/{b}/{m}"] = call
                del out
    return calls, failures, checked


NL_ONCE_S = 2.0            # a neighbour list slower than this once is timed once (a million atoms: many seconds)
REFERENCES = ("eager", "fused")     # what a backend's result is checked against, the first that fits


def _free_device(device) -> None:
    """Give back the memory of a call that ran out of it (CUDA's cache), so the next backend starts clean."""
    import gc

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _detached(out):
    return out.detach() if isinstance(out, torch.Tensor) else {k: v.detach() for k, v in out.items()
                                                               if isinstance(v, torch.Tensor)}


def _ratios(timing: dict, spec: TimingSpec) -> tuple[dict, dict]:
    """Speed ratios spherical / CACE from one round-robin: per backend (both sides on it), and the
    headline at the best backend of each side (lowest median), paired round by round."""
    from .measure import paired_ratio

    by_backend = {b: {m: paired_ratio(timing, f"spherical/{b}/{m}", f"cace/{b}/{m}") for m in spec.modes
                      if f"spherical/{b}/{m}" in timing and f"cace/{b}/{m}" in timing} for b in spec.backends}
    best = {}
    for m in spec.modes:
        pick = {}
        for k in KINDS:
            ok = [b for b in spec.backends if f"{k}/{b}/{m}" in timing]
            if ok:
                pick[k] = min(ok, key=lambda b: timing[f"{k}/{b}/{m}"]["median_s"])
        if len(pick) == len(KINDS):
            r = paired_ratio(timing, f"spherical/{pick['spherical']}/{m}", f"cace/{pick['cace']}/{m}")
            best[m] = {**r, "backend_cace": pick["cace"], "backend_spherical": pick["spherical"]}
    return best, by_backend


def time_point(spec: TimingSpec, sweep: str, overrides: dict, repeat: int, dtype: str,
               runners: dict | None = None) -> dict:
    """Time every (descriptor, backend, mode) at one point; returns {"rows": [...], "ratios": {...}, ...}.

    ``ratios[mode]`` is the headline (each side at its fastest backend); ``backend_ratios[b][mode]``
    compares the two on one backend; ``failures`` lists what a backend could not run. ``runners``:
    the potentials of the previous point of the same (overrides, dtype), reused (``_backend_calls``)."""
    from ..costmodel import potential_stages, totals
    from ..graph import AtomsGraph
    from .measure import peak_call_memory, time_round_robin

    runners = {} if runners is None else runners
    case = dict(preset=spec.preset, overrides=overrides, repeat=repeat, dtype=dtype, device=spec.device)
    setups, graph = {}, None
    for k in KINDS:                           # one graph for both (the same cutoff): built once
        setups[k] = setup(k, potential=runners.get((k, "eager")), graph=graph, **case)
        graph = setups[k][1]
    graph = setups["cace"][1]
    model = {k: v for k, v in setups["cace"][0].descriptor.config().items() if k != "elements"}
    calls, failures, checked = _backend_calls(setups, spec, runners)
    if not calls and failures and all(f["error"] == "out of memory" or f["error"].startswith("not checked")
                                      for f in failures):   # nothing fits (or nothing to check against)
        raise MemoryError(f"out of memory: every backend of both descriptors at {graph.n_atoms} atoms")
    timing = time_round_robin(calls, device=spec.device, warmup=spec.warmup, repeats=spec.repeats)
    rows = []
    for k, (pot, g) in setups.items():
        for b in spec.backends:
            stages = potential_stages(pot, g, k, neighbor_sum="fused" if "fused" in b else "dense")
            for m in spec.modes:
                if f"{k}/{b}/{m}" not in timing:
                    continue
                t = timing[f"{k}/{b}/{m}"]
                cost = totals(stages if m != "descriptor" else stages[:-1], m)
                rows.append({"descriptor": k, "backend": b, "mode": m, "median_s": t["median_s"], "iqr_s": t["iqr_s"],
                             "checked_against": checked.get(f"{k}/{b}/{m}"),
                             "times_s": t["times_s"], "flops": cost["flops"], "bytes": cost["bytes"],
                             "intensity": cost["intensity"], "achieved_flops_per_s": cost["flops"] / t["median_s"],
                             "n_parameters": sum(p.numel() for p in pot.parameters()),
                             "n_features": pot.descriptor.n_features})
    ratios, backend_ratios = _ratios(timing, spec)
    # the neighbour list, timed on its own (the same list serves both descriptors)
    from ..structures import water_box

    atoms = water_box().repeat(repeat)
    cutoff = setups["cace"][0].descriptor.cutoff

    def build():
        return AtomsGraph.from_atoms(atoms, cutoff, dtype=getattr(torch, dtype), device=spec.device)

    t0 = time.perf_counter()
    build()                                   # the warm-up; where it alone takes seconds, it is the timing
    once = time.perf_counter() - t0
    nl = ({"median_s": once, "iqr_s": 0.0, "times_s": [once]} if once > NL_ONCE_S else
          time_round_robin({"nl": build}, device=spec.device, warmup=0, repeats=max(3, spec.repeats // 2))["nl"])
    memory = {}
    if spec.memory and sweep == "atoms":
        cuda = torch.device(spec.device).type == "cuda"
        for b in spec.backends:
            if b.endswith("cudagraphs"):
                # a replay runs in the graph's private pool, allocated at capture: the allocator's
                # peak during a replay misses it (an H200 read 1.9 MB at 192 atoms against 39 MB)
                continue
            for k in KINDS:
                name, call = (k if b == "eager" else f"{k}/{b}"), calls.get(f"{k}/{b}/energy_forces")
                if call is None:
                    continue
                # CUDA: the allocator's peak of the very call timed; CPU: a fresh process per case
                memory[name] = (peak_call_memory(call, spec.device) if cuda
                                else peak_memory(k, threads=spec.threads, backend=b, **case))
    return {"n_atoms": graph.n_atoms, "n_edges": graph.n_edges, "max_neighbors": graph.max_neighbors,
            "rows": rows, "ratios": ratios, "backend_ratios": backend_ratios, "failures": failures,
            "neighbor_list": nl, "memory": memory, "model": model}


def _key(spec: TimingSpec, sweep: str, overrides: dict, repeat: int, dtype: str) -> dict:
    setting = {"sweep": sweep, "preset": spec.preset, "overrides": overrides, "repeat": repeat, "dtype": dtype,
               "threads": spec.threads, "device": spec.device, "repeats": spec.repeats}
    if tuple(spec.backends) != ("eager",):       # eager-only keys stay those stored before backends existed
        setting["backends"] = list(spec.backends)
    if any("fused" in b for b in spec.backends):  # which kernel version the fused backends ran
        from ..nn.neighbor_sum_triton import selected_kernel

        setting["fused_kernel"] = selected_kernel()
    return {"task": "timing", "descriptor": "cace+spherical", "dataset": "water-box", "seed": 0,
            "setting": setting, "config_hash": config_hash({"modes": list(spec.modes), "warmup": spec.warmup})}


def _records(key: dict, point: dict, prov: dict) -> list[Record]:
    setting = {**key["setting"], "n_atoms": point["n_atoms"], "n_edges": point["n_edges"],
               "max_neighbors": point["max_neighbors"], "model": point["model"]}
    base = {"task": "timing", "dataset": key["dataset"], "seed": 0, "setting": setting,
            "config_hash": key["config_hash"], "provenance": prov}
    rec = Record.measured
    out = []
    for row in point["rows"]:
        out.append(rec(base, f"time_{row['mode']}", 1e3 * row["median_s"], descriptor=row["descriptor"],
                       backend=row["backend"], iqr=1e3 * row["iqr_s"], samples=[1e3 * t for t in row["times_s"]],
                       mode=row["mode"], checked_against=row.get("checked_against"),
                       cost={k: row[k] for k in ("flops", "bytes", "intensity", "achieved_flops_per_s")},
                       n_parameters=row["n_parameters"], n_features=row["n_features"]))
    for mode, r in point["ratios"].items():        # the headline: each side at its fastest backend
        out.append(rec(base, "speed_ratio_spherical_over_cace", r["median"], descriptor="spherical/cace",
                       iqr=r["iqr"], mode=mode, backend="best", backend_cace=r["backend_cace"],
                       backend_spherical=r["backend_spherical"]))
    if len(point.get("backend_ratios", {})) > 1:
        for b, per_mode in point["backend_ratios"].items():
            for mode, r in per_mode.items():
                out.append(rec(base, "speed_ratio_spherical_over_cace", r["median"], descriptor="spherical/cace",
                               iqr=r["iqr"], mode=mode, backend=b))
    for f in point.get("failures", []):
        out.append(rec(base, "backend_unavailable", 1.0, descriptor=f["descriptor"], backend=f["backend"],
                       mode=f["mode"], error=f["error"]))
    nl = point["neighbor_list"]
    out.append(rec(base, "time_neighbor_list", 1e3 * nl["median_s"], descriptor="vesin", iqr=1e3 * nl["iqr_s"]))
    for name, b in point["memory"].items():
        kind, _, backend = name.partition("/")
        out.append(rec(base, "peak_memory_energy_forces", b / 2**20, descriptor=kind, backend=backend or "eager",
                       mode="energy_forces"))
    return out


def _ceilings_key(spec: TimingSpec, dtype: str) -> dict:
    return {"task": "timing", "descriptor": "device", "dataset": "-", "seed": 0,
            "setting": {"sweep": "ceilings", "dtype": dtype, "device": spec.device, "threads": spec.threads},
            "config_hash": "-"}


def _write_ceilings(spec: TimingSpec, store: ResultsStore, dtype: str) -> None:
    """The device's measured ceilings (``reference.ceilings``) for ``dtype``, once per store."""
    from .reference import ceilings

    ckey = _ceilings_key(spec, dtype)
    if not store.has(ckey):
        prov = provenance(spec.device, dtype=dtype, threads=spec.threads)
        c = ceilings(spec.device, getattr(torch, dtype))
        store.write(ckey, [Record.measured({**ckey, "provenance": prov}, f"ceiling_{k}", v)
                           for k, v in c.items() if v is not None])


def sweeps(spec: TimingSpec) -> dict:
    """{(dtype, sweep): [(overrides, repeat), ...]}: the points of each sweep, in order."""
    out: dict = {}
    for dtype in spec.dtypes:
        for sweep, overrides, repeat in spec.points():
            out.setdefault((dtype, sweep), []).append((overrides, repeat))
    return out


def sweep_unit(root, spec: TimingSpec, dtype: str, sweep: str, points: list, log) -> None:
    """One sweep of one dtype (the atoms sweep, or one keyword's), its points in order, as a unit of
    work (``bench.executor``): every point not yet stored is timed and written at once. The atoms
    sweep stops before a call predicted over ``spec.max_seconds_per_call`` (the cost is linear in
    the atom count: from the last point timed, or stored by an earlier run) or at out of memory;
    its potentials (and compiled graphs) are kept from point to point, but not the CUDA-graph
    recordings of the recording backends (a shape of one point never recurs)."""
    from dataclasses import replace

    from ..backends import RECORDED

    store = ResultsStore(root)
    torch.set_num_threads(spec.threads)
    _write_ceilings(spec, store, dtype)
    prov = provenance(spec.device, dtype=dtype, threads=spec.threads)
    last, runners = {}, {}                    # last: {backend: (repeat, its slowest call in s)}, atoms sweep
    no_room: dict = {}                        # backend -> atoms where it ran out of memory (not tried beyond)
    for overrides, repeat in points:
        if sweep != "atoms":
            runners = {}                      # another model: new potentials (and compiled graphs)
        recorded = [rk for rk in runners if rk[1] in RECORDED]
        for rk in recorded:                   # a sweep's shapes never recur: free the recordings' memory
            del runners[rk]                   # (their pools), which would crowd the next, larger point
        if recorded:
            _free_device(spec.device)
        key = _key(spec, sweep, overrides, repeat, dtype)
        label = f"timing {sweep} {overrides or ''} x{repeat} {dtype}"
        skipped = {b: f"not timed: out of memory at {n} atoms in this sweep" for b, n in no_room.items()}
        if sweep == "atoms":
            for b, (r0, t) in last.items():   # the cost is linear in the atom count
                predicted = t * (repeat / r0) ** 3
                if predicted > spec.max_seconds_per_call and b not in skipped:
                    skipped[b] = f"not timed: a call predicted at about {predicted:.1f} s > {spec.max_seconds_per_call} s"
            if all(b in skipped for b in spec.backends):
                log(f"every backend at x{repeat} is predicted over {spec.max_seconds_per_call} s a call or ran out "
                    "of memory before: the atoms sweep stops here")
                return
        stored = store.get(key)
        if stored:
            log(f"skip (done): {label}")
            if sweep == "atoms":
                last.update(_slowest(repeat, ((r["backend"], r["value"] / 1e3) for r in stored
                                              if r["metric"].startswith("time_") and r.get("backend"))))
                for r in stored:                  # as a run that timed it would have: not tried beyond
                    if r["metric"] == "backend_unavailable" and r.get("error") == "out of memory":
                        no_room.setdefault(r["backend"], r["setting"]["n_atoms"])
            continue
        run_spec = replace(spec, backends=tuple(b for b in spec.backends if b not in skipped))
        try:
            point = time_point(run_spec, sweep, overrides, repeat, dtype, runners)
        except (RuntimeError, MemoryError) as err:
            if not _is_oom(err):
                raise
            _free_device(spec.device)
            log(f"out of memory at {label}: the {sweep} sweep stops here")
            return
        point.setdefault("failures", []).extend({"descriptor": k, "backend": b, "mode": m, "error": why}
                                                for b, why in skipped.items() for k in KINDS for m in spec.modes)
        store.write(key, _records(key, point, prov))
        log(format_point(label, point))
        if sweep == "atoms":
            last.update(_slowest(repeat, ((r["backend"], r["median_s"]) for r in point["rows"])))
            for fl in point["failures"]:
                if fl["error"] == "out of memory":
                    no_room.setdefault(fl["backend"], point["n_atoms"])


def _slowest(repeat: int, times) -> dict:
    """{backend: (repeat, its slowest call in s)} from (backend, seconds) pairs of one point."""
    out: dict = {}
    for b, t in times:
        out[b] = (repeat, max(out.get(b, (repeat, 0.0))[1], t))
    return out


def run(spec: TimingSpec, store: ResultsStore, *, executor: str = "local", address: str | None = None,
        log=print, jobs: int = 1) -> list[dict]:
    """Every point of ``spec`` not already in ``store``; returns the records written now. Each sweep
    is a unit of work (``sweep_unit``); under Ray it holds a whole machine while it measures
    (``Unit.exclusive``): a timing point never shares its CPUs or GPU with another unit (with
    ``jobs`` > 1 too: the local pool runs exclusive units alone, in this process)."""
    from ..backends import check_device
    from ..executor import Unit, run_units

    check_device(spec.device)                  # a device this machine lacks: one line, before any work
    todo, candidates, before = [], [], []      # every key this run may write, and whether it was stored
    for dtype in spec.dtypes:
        candidates.append(_ceilings_key(spec, dtype))
        before.append(store.has(candidates[-1]))
    for (dtype, sweep), points in sweeps(spec).items():
        point_keys = [_key(spec, sweep, o, r, dtype) for o, r in points]
        stored = [store.has(k) for k in point_keys]
        candidates += point_keys
        before += stored
        if all(stored):
            log(f"skip (done): timing {sweep} sweep {dtype}")
            continue
        first = point_keys[stored.index(False)]
        todo.append(Unit(first, f"timing {sweep} sweep {dtype}", sweep_unit, (store.root, spec, dtype, sweep, points, log),
                         num_cpus=spec.threads, num_gpus=1 if torch.device(spec.device).type == "cuda" else 0,
                         exclusive=True))
    run_units(todo, store, executor=executor, address=address, log=log, jobs=jobs)
    return [r for k, had in zip(candidates, before) if not had for r in (store.get(k) or [])]


def format_point(label: str, point: dict) -> str:
    lines = [f"{label}: {point['n_atoms']} atoms, {point['n_edges']} edges, neighbour list "
             f"{1e3 * point['neighbor_list']['median_s']:.1f} ms"]
    backends = list(dict.fromkeys(r["backend"] for r in point["rows"]))
    for m, r in point["ratios"].items():
        for b in backends:
            c = next((x for x in point["rows"] if x["descriptor"] == "cace" and x["mode"] == m and x["backend"] == b), None)
            s = next((x for x in point["rows"] if x["descriptor"] == "spherical" and x["mode"] == m and x["backend"] == b), None)
            cells = [f"{k} {1e3 * x['median_s']:9.2f} ms" if x else f"{k}         -   " for k, x in (("CACE", c), ("spherical", s))]
            lines.append(f"  {m:14s} {b:18s} " + "  ".join(cells))
        lines.append(f"  {m:14s} ratio sph/CACE {r['median']:.2f} (IQR {r['iqr']:.2f}) at the best backend of each "
                     f"(CACE {r['backend_cace']}, spherical {r['backend_spherical']})")
    for f in point.get("failures", []):
        lines.append(f"  unavailable: {f['descriptor']} {f['backend']} {f['mode']}: {f['error']}")
    if point["memory"]:
        lines.append("  peak MB (energy+forces): " + ", ".join(f"{k} {b / 2**20:.1f}" for k, b in point["memory"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2:])
