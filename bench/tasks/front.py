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

Recipes: one shared recipe (``FrontSpec.train``) for every variant, or, with ``tune_trials`` N,
each variant's own recipe chosen by an equal-budget search (``bench.tasks.recipe_search``): N
trials per variant, the same candidate recipes and budget per trial for all, at the setting
``tune_energy_weight``, on the first seed's split, selected on its validation part only. Every
front record carries the recipe it trained with (``recipe``) and how it was chosen (``tuning``).

Variants: ``cace`` (monomials, as published), ``spherical`` (the e3nn baseline) and
``cace-traceless`` (CACE contracting the traceless part of each degree, ``CACE(traceless=True)``),
so that the reducible-basis effect is measured inside the same protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from ..provenance import config_hash
from ..results.store import ResultsStore
from ..train import TrainConfig
from . import recipe_search as rs
from .accuracy import DataSpec, model_kwargs, prepare, records_of, seed_split, training_unit
from .recipe_search import energy_schedule  # noqa: F401  (the front's energy-weight stages)

VARIANTS = {"cace": ("cace", {}), "spherical": ("spherical", {}), "cace-traceless": ("cace", {"traceless": True})}


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
    tune_trials: int = 0                          # 0: one shared recipe; N: an equal-budget search of N trials
    tune_seed: int = 0                            # which recipes the search draws (the same for every variant)
    tune_energy_weight: float | None = None       # the setting tuned at (default: the sweep's middle one)

    def __post_init__(self):
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise InputError(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        if len(self.final_energy_weights) < 2:
            got = ", ".join(f"{w:g}" for w in self.final_energy_weights) or "none"
            raise InputError(f"a front needs at least two energy-weight settings (got {got}): pass two or more, "
                             f"e.g. --weights 10 1000; to add a weight to a stored front, list it with one it "
                             f"already has (its finished runs are skipped)")
        for w in self.final_energy_weights:
            energy_schedule(w)
        if self.tune_trials:
            rs.candidates(self.train, self.tune_trials, self.tune_seed)      # a clear error for a bad count
            if self.tune_energy_weight is not None:
                energy_schedule(self.tune_energy_weight)

    @property
    def tune_weight(self) -> float:
        """The setting the recipe search runs at: ``tune_energy_weight``, else the middle of the sweep."""
        if self.tune_energy_weight is not None:
            return float(self.tune_energy_weight)
        ws = sorted(self.final_energy_weights)
        return float(ws[len(ws) // 2])

    def tuning(self) -> dict | None:
        """What defines the search (part of the front's configuration hash), or None untuned."""
        if not self.tune_trials:
            return None
        return {"trials": self.tune_trials, "seed": self.tune_seed, "final_energy_weight": self.tune_weight,
                "space": {k: list(v) for k, v in rs.SEARCH_SPACE.items()}, "objective": rs.OBJECTIVE,
                "selected_on": "validation", "split_seed": self.seeds[0]}

    def to_dict(self) -> dict:
        return asdict(self)


def run(spec: FrontSpec, store: ResultsStore, *, progress: bool = True, log=print, executor: str = "local",
        address: str | None = None, jobs: int = 1) -> list[dict]:
    """The recipe search (with ``tune_trials``), then the front: every unit not already in
    ``store`` (``executor``: "local", ``jobs`` at once, or "ray" with ``address``). Returns the
    records written now."""
    from ..backends import check_device
    from ..executor import Shared, run_units

    check_device(spec.device)                  # a device this machine lacks: one line, before any work
    data = spec.data
    kw = model_kwargs(spec.model)
    prep = Shared(prepare(data, kw["cutoff"]))
    tuning = spec.tuning()
    cfg_hash = config_hash({"model": kw, "train": spec.train.to_dict(), "data": asdict(data), "front": True,
                            **({"tune": tuning} if tuning else {})})
    bars = progress and executor == "local" and jobs == 1
    ran = []
    chosen = {}
    if tuning:
        trials = tune_units(spec, prep, kw, store, cfg_hash, progress=bars, log=log)
        ran += run_units([u for u, _ in trials], store, executor=executor, address=address, log=log, jobs=jobs)["ran"]
        chosen = select_recipes(spec, store, trials, log=log)
    front = []
    for seed in spec.seeds:
        n_train = _n_train(spec, seed_split(prep.value, data, seed))
        for w in spec.final_energy_weights:
            for variant in spec.variants:
                kind, options = VARIANTS[variant]
                recipe = chosen[variant]["recipe"] if tuning else rs.base_recipe(spec.train)
                cfg = rs.recipe_config(spec.train, recipe, w)
                key = {"task": "front", "descriptor": variant, "dataset": data.label,
                       "dataset_hash": prep.value.dataset_hash, "seed": seed,
                       "setting": {"n_train": n_train, "final_energy_weight": float(w)}, "config_hash": cfg_hash}
                extra = {"recipe": cfg.to_dict()}
                if tuning:
                    extra["tuning"] = {**tuning, **chosen[variant]}
                desc = f"{variant} {data.label} s{seed} w_E={w:g}"
                front.append(training_unit(store, key, desc, kind, options, kw, cfg, prep, data, seed, n_train,
                                           spec.device, bars, log, extra, "test"))
    ran += run_units(front, store, executor=executor, address=address, log=log, jobs=jobs)["ran"]
    return records_of(store, ran)


def _n_train(spec: FrontSpec, ss) -> int:
    n_train = spec.n_train or len(ss.train_idx)
    if n_train > len(ss.train_idx):
        raise InputError(f"n_train {n_train} exceeds the {len(ss.train_idx)} training frames of {spec.data.label}")
    return n_train


def tune_units(spec: FrontSpec, prep, kw: dict, store: ResultsStore, cfg_hash: str, *, progress: bool = True,
               log=print) -> list:
    """The equal-budget recipe search as units: every variant trains with every candidate recipe
    (``recipe_search.candidates``) at the setting ``spec.tune_weight``, on the first seed's split,
    and is evaluated on its validation part only. Each trial is a stored unit (task "tune"), so an
    interrupted search resumes. Returns [(unit, (variant, trial, recipe))], trials outer."""
    seed, w = spec.seeds[0], spec.tune_weight
    n_train = _n_train(spec, seed_split(prep.value, spec.data, seed))
    recipes = rs.candidates(spec.train, spec.tune_trials, spec.tune_seed)
    out = []
    for trial, recipe in enumerate(recipes):              # trials outer: every variant advances together
        cfg = rs.recipe_config(spec.train, recipe, w)
        for variant in spec.variants:
            kind, options = VARIANTS[variant]
            key = {"task": "tune", "descriptor": variant, "dataset": spec.data.label,
                   "dataset_hash": prep.value.dataset_hash, "seed": seed,
                   "setting": {"n_train": n_train, "final_energy_weight": w, "trial": trial, "recipe": recipe},
                   "config_hash": cfg_hash}
            desc = f"tune {variant} {spec.data.label} trial {trial} ({rs.describe(recipe, recipes[0])})"
            out.append((training_unit(store, key, desc, kind, options, kw, cfg, prep, spec.data, seed, n_train,
                                      spec.device, progress, log, {"recipe": cfg.to_dict()}, "validation"),
                        (variant, trial, recipe)))
    return out


def select_recipes(spec: FrontSpec, store: ResultsStore, trials: list, *, log=print) -> dict:
    """Each variant's chosen recipe from its stored trials (``recipe_search.objective`` on the
    validation split; a trial that did not finish counts as failed). Returns {variant: {"recipe",
    "trial", "objective_value", "objectives"}}: the chosen recipe, its trial and objective, every
    trial's objective."""
    import math

    objectives, recipes = {v: [] for v in spec.variants}, {}
    for unit, (variant, trial, recipe) in trials:
        recs = store.get(unit.key)
        m = {r["metric"]: r["value"] for r in recs or []}
        objectives[variant].append(rs.objective(m["energy_mae_per_atom"], m["forces_mae"]) if recs else math.inf)
        recipes[trial] = recipe
    chosen = {}
    for variant, js in objectives.items():
        best = rs.select(js)
        chosen[variant] = {"recipe": recipes[best], "trial": best, "objective_value": js[best], "objectives": js}
        log(f"recipe search: {variant} {spec.data.label}: trial {best} ({rs.describe(recipes[best], recipes[0])}), "
            f"validation {rs.OBJECTIVE} = {js[best]:.3f} (trials {min(js):.3f} to {max(js):.3f})")
    return chosen


@dataclass(frozen=True)
class FrontPoint:
    weight: float
    energy: tuple          # (mean, std over seeds) of the test energy MAE per atom, meV/atom
    forces: tuple          # (mean, std) of the test force MAE, meV/A
    seeds: int


def _front_table(records) -> dict:
    """{variant: {weight: {metric: {seed: value}}}}: the test errors of front records (dicts or a
    DataFrame's rows) on the main test set."""
    table: dict = {}
    for r in records:
        if r.get("task") != "front" or r["metric"] not in ("energy_mae_per_atom", "forces_mae"):
            continue
        if r.get("extra_test") is True:              # a further --test set: the front is on the main one
            continue
        w = float(r["setting"]["final_energy_weight"])
        table.setdefault(r["descriptor"], {}).setdefault(w, {}).setdefault(r["metric"], {})[int(r["seed"])] = r["value"]
    return table


def front_points(records) -> dict:
    """{variant: [FrontPoint by increasing weight]} from front records (dicts or a DataFrame's rows)."""
    out = {}
    for variant, by_w in _front_table(records).items():
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


@dataclass(frozen=True)
class PairedReading:
    """Front ``a`` against front ``b`` on one error, paired by seed (``paired_over_seeds``)."""
    metric: str            # "energy_mae_per_atom" | "forces_mae"
    ratio: float           # a / b: exp of the mean over seeds of each seed's mean ln(a / b) over the weights
    low: float             # its 95% interval, Student t over the seeds
    high: float
    n_seeds: int
    n_pairs: int           # (weight, seed) pairs
    a_lower: int           # pairs where a's error is the lower


def paired_over_seeds(records, a: str, b: str, level: float = 0.95) -> dict:
    """{metric: PairedReading} of variant ``a``'s front against ``b``'s, from front records; empty
    with fewer than two seeds that both trained.

    The same seed gives both variants the same split and training data, so each (weight, seed)
    is a pair. The seed, not the pair, is the independent unit (a seed's split is shared by all its
    weights), so the log ratios are averaged within each seed first:

        d_s = mean_{w in W_s} ln(err_a(w, s) / err_b(w, s)),   W_s the weights both trained at seed s,
        ratio = exp(mean_s d_s),   interval ``bench.stats.ratio_over_seeds`` (Student t over the seeds).

    Pairing removes what the seed changes for both (split, data); the front's own rule
    (``compare_fronts``) compares the seed spreads setting by setting, which keeps it in."""
    from ..stats import ratio_over_seeds

    table = _front_table(records)
    out = {}
    for metric in ("energy_mae_per_atom", "forces_mae"):
        per_seed: dict = {}
        for w, by_metric in table.get(a, {}).items():
            va, vb = by_metric.get(metric, {}), table.get(b, {}).get(w, {}).get(metric, {})
            for s in sorted(set(va) & set(vb)):
                if va[s] > 0 and vb[s] > 0:
                    per_seed.setdefault(s, []).append((va[s], vb[s]))
        if len(per_seed) < 2:
            continue
        d = [np.mean([np.log(x / y) for x, y in pairs]) for pairs in per_seed.values()]
        pairs = [p for ps in per_seed.values() for p in ps]
        out[metric] = PairedReading(metric, *ratio_over_seeds(d, level), len(d), len(pairs),
                                    sum(1 for x, y in pairs if x < y))
    return out


SUMMARY_UNIT = "sqrt(meV/atom * meV/A)"


def front_summary(points: dict) -> dict:
    """{variant: G}, one number per front (lower is better), the figure the regression check tracks:
        G = exp( mean_settings 1/2 [ln E + ln F] ),
    the geometric mean over the energy-weight settings of sqrt(E F), with E the seed-mean test
    energy MAE per atom (meV/atom) and F the seed-mean test force MAE (meV/A): it moves when the
    front moves toward or away from the origin, not when a setting trades one error for the other."""
    out = {}
    for variant, pts in points.items():
        if pts and all(p.energy[0] > 0 and p.forces[0] > 0 for p in pts):
            out[variant] = float(np.exp(np.mean([0.5 * (np.log(p.energy[0]) + np.log(p.forces[0])) for p in pts])))
    return out


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
