"""The accuracy comparison as a trade-off front, not a point (issue #17).

One training recipe decides today's accuracy verdict more than the descriptors do: moving the
energy weight of the loss trades energy error against force error, and a single setting can favour
either side. ``run(spec, store)`` trains every descriptor variant along a sweep of the final energy
weight (force weight fixed), with seeds, all else equal (split, recipe, budget, readout), and writes
one record per metric. The report draws each variant's front (force error against energy error,
one point per setting, seed spread as bars) and calls a winner only where one front is better
beyond the seed spread (``front_verdict``).

Energy-weight schedule of a setting with final weight w: 0.1, 1, 10, ... up to w, in equal
fractions of the budget (``bench.train``: w = 100 gives 0.1 -> 1 -> 10 -> 100).

Variants: ``cace`` (monomials, as published), ``spherical`` (the e3nn baseline) and
``cace-traceless`` (CACE contracting the traceless part of each degree, ``CACE(traceless=True)``),
so that the reducible-basis effect is measured inside the same protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import InputError
from ..provenance import config_hash
from ..results.store import ResultsStore
from ..train import TrainConfig
from .accuracy import DataSpec, fit_and_record, model_kwargs, prepare, seed_split

VARIANTS = {"cace": ("cace", {}), "spherical": ("spherical", {}), "cace-traceless": ("cace", {"traceless": True})}


def energy_schedule(final: float) -> tuple:
    """(0.1, 1, 10, ..., final): the stages of the energy weight, by factors of 10 up to ``final``."""
    if not final > 0:
        raise InputError(f"a final energy weight must be positive, got {final}")
    stages = [0.1]
    while stages[-1] * 10 <= final * (1 + 1e-9):
        stages.append(stages[-1] * 10)
    if not np.isclose(stages[-1], final):
        stages.append(float(final))
    return tuple(float(f"{w:.6g}") for w in stages)


@dataclass(frozen=True)
class FrontSpec:
    data: DataSpec
    model: dict                                   # {"preset": NAME} and/or descriptor keywords and "readout"
    train: TrainConfig                            # the recipe; energy_weights come from each setting
    final_energy_weights: tuple = (1.0, 10.0, 100.0, 1000.0)
    seeds: tuple = (0, 1, 2)
    variants: tuple = ("cace", "spherical", "cace-traceless")
    n_train: int | None = None                    # training structures (default: the whole training split)
    device: str = "cpu"

    def __post_init__(self):
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise InputError(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        if len(self.final_energy_weights) < 2:
            raise InputError("a front needs at least two energy-weight settings")
        for w in self.final_energy_weights:
            energy_schedule(w)

    def to_dict(self) -> dict:
        return asdict(self)


def run(spec: FrontSpec, store: ResultsStore, *, progress: bool = True, log=print) -> list[dict]:
    data = spec.data
    kw = model_kwargs(spec.model)
    prep = prepare(data, kw["cutoff"])
    cfg_hash = config_hash({"model": kw, "train": spec.train.to_dict(), "data": asdict(data), "front": True})
    records: list[dict] = []
    for seed in spec.seeds:
        ss = seed_split(prep, data, seed)
        n_train = spec.n_train or len(ss.train_idx)
        if n_train > len(ss.train_idx):
            raise InputError(f"n_train {n_train} exceeds the {len(ss.train_idx)} training frames of {data.label}")
        for w in spec.final_energy_weights:
            cfg = replace(spec.train, energy_weights=energy_schedule(w))
            for variant in spec.variants:
                kind, options = VARIANTS[variant]
                key = {"task": "front", "descriptor": variant, "dataset": data.label, "dataset_hash": prep.dataset_hash,
                       "seed": seed, "setting": {"n_train": n_train, "final_energy_weight": float(w)},
                       "config_hash": cfg_hash}
                if store.has(key):
                    log(f"skip (done): {variant} {data.label} seed={seed} w_E={w:g}")
                    continue
                records += fit_and_record(store, key, kind=kind, options=options, kw=kw, cfg=cfg, prep=prep, ss=ss,
                                          subset=ss.train_idx[:n_train], seed=seed, device=spec.device,
                                          progress=progress, desc=f"{variant} {data.label} s{seed} w_E={w:g}",
                                          log=log, extra={"recipe": cfg.to_dict()}, data=data)
    return records


@dataclass(frozen=True)
class FrontPoint:
    weight: float
    energy: tuple          # (mean, std over seeds) of the test energy MAE per atom, meV/atom
    forces: tuple          # (mean, std) of the test force MAE, meV/A
    seeds: int


def front_points(records) -> dict:
    """{variant: [FrontPoint by increasing weight]} from front records (dicts or a DataFrame's rows)."""
    table: dict = {}
    for r in records:
        if r.get("task") != "front" or r["metric"] not in ("energy_mae_per_atom", "forces_mae"):
            continue
        w = float(r["setting"]["final_energy_weight"])
        table.setdefault(r["descriptor"], {}).setdefault(w, {}).setdefault(r["metric"], {})[r["seed"]] = r["value"]
    out = {}
    for variant, by_w in table.items():
        pts = []
        for w in sorted(by_w):
            e, f = by_w[w].get("energy_mae_per_atom", {}), by_w[w].get("forces_mae", {})
            seeds = sorted(set(e) & set(f))
            if not seeds:
                continue
            ev, fv = np.array([e[s] for s in seeds]), np.array([f[s] for s in seeds])
            pts.append(FrontPoint(w, (float(ev.mean()), float(ev.std())), (float(fv.mean()), float(fv.std())), len(seeds)))
        out[variant] = pts
    order = list(VARIANTS)
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _better(a: tuple, b: tuple) -> int:
    """+1 if mean a is below mean b beyond both seed spreads, -1 if above, 0 within them."""
    gap = a[1] + b[1]
    if a[0] + gap < b[0]:
        return 1
    if b[0] + gap < a[0]:
        return -1
    return 0


def compare_fronts(a: list, b: list) -> dict:
    """Setting by setting (same energy weight), does front ``a`` dominate ``b`` beyond the seed
    spread? a dominates at a setting where it is better on one error by more than the two seed
    standard deviations together and not worse beyond them on the other. Returns
    {"a": [weights], "b": [weights], "even": [weights], "trade": [weights]}."""
    out = {"a": [], "b": [], "even": [], "trade": []}
    bw = {p.weight: p for p in b}
    for p in a:
        q = bw.get(p.weight)
        if q is None:
            continue
        e, f = _better(p.energy, q.energy), _better(p.forces, q.forces)
        if e >= 0 and f >= 0 and (e or f):
            out["a"].append(p.weight)
        elif e <= 0 and f <= 0 and (e or f):
            out["b"].append(p.weight)
        elif e == f == 0:
            out["even"].append(p.weight)
        else:
            out["trade"].append(p.weight)
    return out
