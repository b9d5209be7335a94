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
from dataclasses import dataclass

import torch

from ..provenance import config_hash, provenance
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
    max_seconds_per_call: float = 10.0    # the atoms sweep stops before a point predicted slower than this

    def points(self):
        """(sweep, overrides, repeat) for every point, the atoms sweep first."""
        out = [("atoms", {}, r) for r in self.sizes]
        for name in ("l_max", "nu_max", "n_radial"):
            out += [(name, {name: v}, self.sizes[0]) for v in getattr(self, name)]
        return out


def setup(kind: str, *, preset: str = "water", overrides: dict | None = None, repeat: int = 1,
          dtype: str = "float32", device: str = "cpu", seed: int = 0):
    """(potential, graph): the preset (with ``overrides``) on the water box repeated ``repeat``
    times per axis; the same seed gives both descriptors the same initial draws."""
    from ..graph import AtomsGraph
    from ..potential import build
    from ..structures import water_box

    torch.manual_seed(seed)
    pot = build(kind, elements=[1, 8], preset=preset, **(overrides or {}))
    pot = pot.to(device=device, dtype=getattr(torch, dtype))
    atoms = water_box().repeat(repeat)
    graph = AtomsGraph.from_atoms(atoms, pot.descriptor.cutoff, dtype=getattr(torch, dtype), device=device)
    return pot, graph


def mode_call(pot, graph, mode: str):
    """A no-argument callable doing one ``mode`` evaluation."""
    if mode == "descriptor":
        def call():
            with torch.no_grad():
                return pot.descriptor(graph)
    elif mode == "energy_forces":
        def call():
            return pot(graph)
    elif mode == "training_step":
        def call():
            out = pot(graph, training=True)
            loss = (out["energy"] ** 2).sum() + (out["forces"] ** 2).sum()
            loss.backward()
            pot.zero_grad(set_to_none=True)
            return loss
    else:
        raise KeyError(f"unknown timing mode {mode!r}; known: {MODES}")
    return call


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


def time_point(spec: TimingSpec, sweep: str, overrides: dict, repeat: int, dtype: str) -> dict:
    """Time every (descriptor, mode) at one point; returns {"rows": [...], "ratios": {...}, ...}."""
    from ..costmodel import potential_stages, totals
    from ..graph import AtomsGraph
    from .measure import paired_ratio, time_round_robin

    case = dict(preset=spec.preset, overrides=overrides, repeat=repeat, dtype=dtype, device=spec.device)
    setups = {k: setup(k, **case) for k in KINDS}
    graph = setups["cace"][1]
    model = {k: v for k, v in setups["cace"][0].descriptor.config().items() if k != "elements"}
    calls = {f"{k}/{m}": mode_call(pot, g, m) for k, (pot, g) in setups.items() for m in spec.modes}
    timing = time_round_robin(calls, device=spec.device, warmup=spec.warmup, repeats=spec.repeats)
    rows = []
    for k, (pot, g) in setups.items():
        stages = potential_stages(pot, g, k)
        for m in spec.modes:
            t = timing[f"{k}/{m}"]
            cost = totals(stages if m != "descriptor" else stages[:-1], m)
            rows.append({"descriptor": k, "mode": m, "median_s": t["median_s"], "iqr_s": t["iqr_s"],
                         "times_s": t["times_s"], "flops": cost["flops"], "bytes": cost["bytes"],
                         "intensity": cost["intensity"], "achieved_flops_per_s": cost["flops"] / t["median_s"],
                         "n_parameters": sum(p.numel() for p in pot.parameters()),
                         "n_features": pot.descriptor.n_features})
    ratios = {m: paired_ratio(timing, f"spherical/{m}", f"cace/{m}") for m in spec.modes}
    # the neighbour list, timed on its own (the same list serves both descriptors)
    from ..structures import water_box

    atoms = water_box().repeat(repeat)
    cutoff = setups["cace"][0].descriptor.cutoff
    nl = time_round_robin({"nl": lambda: AtomsGraph.from_atoms(atoms, cutoff, dtype=getattr(torch, dtype),
                                                                   device=spec.device)},
                          device=spec.device, warmup=1, repeats=max(3, spec.repeats // 2))["nl"]
    memory = {}
    if spec.memory and sweep == "atoms":
        del setups, calls
        for k in KINDS:
            memory[k] = peak_memory(k, threads=spec.threads, **case)
    return {"n_atoms": graph.n_atoms, "n_edges": graph.n_edges, "max_neighbors": graph.max_neighbors,
            "rows": rows, "ratios": ratios, "neighbor_list": nl, "memory": memory, "model": model}


def _key(spec: TimingSpec, sweep: str, overrides: dict, repeat: int, dtype: str) -> dict:
    setting = {"sweep": sweep, "preset": spec.preset, "overrides": overrides, "repeat": repeat, "dtype": dtype,
               "threads": spec.threads, "device": spec.device, "repeats": spec.repeats}
    return {"task": "timing", "descriptor": "cace+spherical", "dataset": "water-box", "seed": 0,
            "setting": setting, "config_hash": config_hash({"modes": list(spec.modes), "warmup": spec.warmup})}


def _records(key: dict, point: dict, prov: dict) -> list[dict]:
    setting = {**key["setting"], "n_atoms": point["n_atoms"], "n_edges": point["n_edges"],
               "max_neighbors": point["max_neighbors"], "model": point["model"]}
    base = {"task": "timing", "dataset": key["dataset"], "seed": 0, "setting": setting,
            "config_hash": key["config_hash"], "provenance": prov}
    out = []
    for row in point["rows"]:
        out.append({**base, "descriptor": row["descriptor"], "metric": f"time_{row['mode']}",
                    "value": 1e3 * row["median_s"], "unit": "ms", "iqr": 1e3 * row["iqr_s"],
                    "samples": [1e3 * t for t in row["times_s"]], "mode": row["mode"],
                    "cost": {k: row[k] for k in ("flops", "bytes", "intensity", "achieved_flops_per_s")},
                    "n_parameters": row["n_parameters"], "n_features": row["n_features"]})
    for mode, r in point["ratios"].items():
        out.append({**base, "descriptor": "spherical/cace", "metric": "speed_ratio_spherical_over_cace",
                    "value": r["median"], "unit": "", "iqr": r["iqr"], "mode": mode})
    nl = point["neighbor_list"]
    out.append({**base, "descriptor": "vesin", "metric": "time_neighbor_list", "value": 1e3 * nl["median_s"],
                "unit": "ms", "iqr": 1e3 * nl["iqr_s"]})
    for k, b in point["memory"].items():
        out.append({**base, "descriptor": k, "metric": "peak_memory_energy_forces", "value": b / 2**20, "unit": "MB",
                    "mode": "energy_forces"})
    return out


def run(spec: TimingSpec, store: ResultsStore, *, log=print) -> list[dict]:
    """Every point of ``spec`` not already in ``store``; returns the new records."""
    from .reference import ceilings

    torch.set_num_threads(spec.threads)
    records = []
    for dtype in spec.dtypes:
        prov = provenance(spec.device, dtype=dtype, threads=spec.threads)
        ckey = {"task": "timing", "descriptor": "device", "dataset": "-", "seed": 0,
                "setting": {"sweep": "ceilings", "dtype": dtype, "device": spec.device, "threads": spec.threads},
                "config_hash": "-"}
        if not store.has(ckey):
            c = ceilings(spec.device, getattr(torch, dtype))
            recs = [{**ckey, "metric": f"ceiling_{k}", "value": v, "unit": "", "provenance": prov}
                    for k, v in c.items() if v is not None]
            store.write(ckey, recs)
            records += recs
        stopped, last = set(), None           # last: (repeat, slowest call in s) of the atoms sweep
        for sweep, overrides, repeat in spec.points():
            key = _key(spec, sweep, overrides, repeat, dtype)
            label = f"timing {sweep} {overrides or ''} x{repeat} {dtype}"
            if sweep == "atoms" and last is not None and "atoms" not in stopped:
                predicted = last[1] * (repeat / last[0]) ** 3          # the cost is linear in the atom count
                if predicted > spec.max_seconds_per_call:
                    log(f"a call at x{repeat} would take about {predicted:.0f} s > {spec.max_seconds_per_call} s: "
                        "the atoms sweep stops here")
                    stopped.add("atoms")
            if sweep in stopped:
                log(f"skip ({sweep} sweep stopped): {label}")
                continue
            if store.has(key):
                log(f"skip (done): {label}")
                continue
            try:
                point = time_point(spec, sweep, overrides, repeat, dtype)
            except (RuntimeError, MemoryError) as err:
                if not _is_oom(err):
                    raise
                if torch.device(spec.device).type == "cuda":
                    torch.cuda.empty_cache()
                log(f"out of memory at {label}: the {sweep} sweep stops here")
                stopped.add(sweep)
                continue
            recs = _records(key, point, prov)
            store.write(key, recs)
            records += recs
            log(format_point(label, point))
            if sweep == "atoms":
                last = (repeat, max(r["median_s"] for r in point["rows"]))
    return records


def format_point(label: str, point: dict) -> str:
    lines = [f"{label}: {point['n_atoms']} atoms, {point['n_edges']} edges, neighbour list "
             f"{1e3 * point['neighbor_list']['median_s']:.1f} ms"]
    for m, r in point["ratios"].items():
        c = next(x for x in point["rows"] if x["descriptor"] == "cace" and x["mode"] == m)
        s = next(x for x in point["rows"] if x["descriptor"] == "spherical" and x["mode"] == m)
        lines.append(f"  {m:14s} CACE {1e3 * c['median_s']:9.2f} ms  spherical {1e3 * s['median_s']:9.2f} ms  "
                     f"ratio sph/CACE {r['median']:.2f} (IQR {r['iqr']:.2f})")
    if point["memory"]:
        lines.append("  peak MB (energy+forces): " + ", ".join(f"{k} {b / 2**20:.1f}" for k, b in point["memory"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2:])
