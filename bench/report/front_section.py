"""The report's accuracy-front section and verdicts (records of ``bench.tasks.front``)."""

from __future__ import annotations

import pandas as pd

from ..tasks import recipe_search as rs
from ..tasks.front import compare_fronts, front_points, paired_over_seeds
from ..train import is_smoke
from . import plots
from .verdict import NAMES, Verdict, front_verdict, paired_front_verdict

# the pairs a front verdict compares: the question of the project, then the reducible-basis effect
PAIRS = (("cace", "spherical"), ("cace-traceless", "cace"), ("cace-traceless", "spherical"))


def _fmt(m: tuple) -> str:
    digits = 1 if abs(m[0]) >= 10 else 2
    return f"{m[0]:.{digits}f} ± {m[1]:.{digits}f}"


def _trials(tuning) -> int:
    """The recipe search behind a front record: its number of trials, 0 for one shared recipe."""
    return int(tuning.get("trials", 0)) if isinstance(tuning, dict) else 0


def _by_dataset(df: pd.DataFrame):
    """(title, records, points) of each front: by data set, and apart by how its recipes were chosen
    (one shared recipe, or an equal-budget search of N trials), which are never pooled."""
    fr = df[df.task == "front"]
    if fr.empty:
        return
    trials = fr["tuning"].map(_trials) if "tuning" in fr else pd.Series(0, index=fr.index)
    for (dataset, n), d in fr.groupby([fr["dataset"], trials], sort=True):
        title = dataset if n == 0 else f"{dataset}, tuned recipes ({n} trials each)"
        yield title, d, front_points(d.to_dict("records"))


def _smoke(d: pd.DataFrame) -> bool:
    return is_smoke(d.iloc[0].get("train_config") or {})


def front_verdicts(df: pd.DataFrame) -> list[Verdict]:
    out = []
    for dataset, d, points in _by_dataset(df):
        n_seeds = d.seed.nunique()
        for a, b in PAIRS:
            if a in points and b in points and n_seeds < 2:
                out.append(Verdict(f"accuracy front, {dataset}: {NAMES[a]} vs {NAMES[b]}", None,
                                   "one seed per setting: no seed spread to judge a difference against",
                                   f"{len(points[a])} energy-weight settings x 1 seed", _smoke(d)))
            elif a in points and b in points:
                out.append(front_verdict(f"accuracy front, {dataset}: {NAMES[a]} vs {NAMES[b]}", a, b,
                                         compare_fronts(points[a], points[b]),
                                         f"{len(points[a])} energy-weight settings x {n_seeds} seed(s), seed std",
                                         _smoke(d)))
                readings = paired_over_seeds(d.to_dict("records"), a, b)
                if readings:
                    r = next(iter(readings.values()))
                    out.append(paired_front_verdict(
                        f"accuracy front, {dataset}: {NAMES[a]} vs {NAMES[b]}, paired by seed", a, b, readings,
                        f"{r.n_pairs} same-seed pairs over {r.n_seeds} seeds: each seed's ln error ratio averaged "
                        f"over its weights, Student t over the seeds", _smoke(d)))
    return out


def front_section(doc, df: pd.DataFrame) -> None:
    for dataset, d, points in _by_dataset(df):
        doc.heading(f"Accuracy front: {dataset}")
        tc = d.iloc[0].get("train_config") or {}
        seeds = sorted(d.seed.unique())
        tuned = _trials(d.iloc[0].get("tuning"))
        recipe = ("each descriptor's own recipe, chosen by an equal-budget search (below)" if tuned else
                  f"recipe (Adam lr {tc.get('lr')}, EMA {tc.get('ema_decay')}; energy weight raised 0.1 -> 1 -> "
                  f"... -> w_E over the budget)")
        doc.para(f"Each descriptor trained along a sweep of the final energy weight w_E of the loss (force weight "
                 f"{tc.get('force_weight')}), {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), same split, "
                 f"budget (up to {tc.get('max_epochs')} epochs) and readout; {recipe}. Test errors: mean ± "
                 "std over seeds. A descriptor is better only where its front is better beyond the seed spread. "
                 "Paired by seed (the verdict's second row for each pair): the same seed is the same split for "
                 "both, so each seed's error ratios, averaged over the weights, form one paired difference; a "
                 "descriptor is better where the 95% interval of the mean ratio over the seeds excludes 1.")
        if tuned:
            _tuning_table(doc, df, d)
        if _smoke(d) or len(seeds) < 3:
            doc.para("Caution: a short budget or fewer than 3 seeds: this shows the study working, it decides nothing.")
        rows = []
        for variant, pts in points.items():
            for p in pts:
                rows.append([plots.LABELS.get(variant, variant), f"{p.weight:g}", _fmt(p.energy), _fmt(p.forces),
                             str(p.seeds)])
        doc.table(pd.DataFrame(rows, columns=["descriptor", "w_E", "energy MAE (meV/atom)", "force MAE (meV/A)",
                                              "seeds"]))
        doc.figure(plots.fronts(points, dataset), f"{dataset}: energy/force trade-off front of each descriptor")


def _tuning_table(doc, df: pd.DataFrame, front: pd.DataFrame) -> None:
    """The recipe search behind a tuned front: every trial's validation errors per variant, the
    chosen one marked, and how far the recipe moves each variant (its range of the objective)."""
    t0 = front.iloc[0]["tuning"]
    chosen = {r["descriptor"]: r["tuning"]["trial"] for _, r in front.drop_duplicates("descriptor").iterrows()}
    tune = df[(df.task == "tune") & (df.dataset == front.iloc[0]["dataset"])]
    tune = tune[tune.config_hash == front.iloc[0]["config_hash"]]
    space = ", ".join(f"{k} {'/'.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}"
                      for k, vs in t0["space"].items())
    doc.para(f"Equal tuning budget: {t0['trials']} trials per descriptor, the same candidate recipes for all "
             f"(trial 0 the base recipe, the others a seeded random draw from the grid {space}), the same budget "
             f"per trial, at w_E {t0['final_energy_weight']:g} on seed {t0['split_seed']}'s split; chosen by "
             f"{t0['objective']} on the validation split (E in meV/atom, F in meV/A), never the test split. "
             "Cells: validation E / F, * the chosen trial.")
    if tune.empty:
        return
    cells, recipes = {}, {}
    for _, r in tune.iterrows():
        trial = r["setting"]["trial"]
        recipes[trial] = r["setting"]["recipe"]
        cells.setdefault(trial, {}).setdefault(r["descriptor"], {})[r["metric"]] = r["value"]
    variants = [v for v in front_points(front.to_dict("records"))]
    base = recipes.get(0)
    rows = []
    for trial in sorted(cells):
        row = [str(trial), rs.describe(recipes[trial], base if trial else None)]
        for v in variants:
            m = cells[trial].get(v, {})
            if "energy_mae_per_atom" in m and "forces_mae" in m:
                mark = " *" if chosen.get(v) == trial else ""
                row.append(f"{m['energy_mae_per_atom']:.2f} / {m['forces_mae']:.1f}{mark}")
            else:
                row.append("-")
        rows.append(row)
    spread = ["", f"{t0['objective']}: chosen (range over trials)"]
    for v in variants:
        tv = front[front.descriptor == v].iloc[0]["tuning"]
        js = [j for j in tv["objectives"] if j != float("inf")]
        spread.append(f"{tv['objective_value']:.2f} ({min(js):.2f} to {max(js):.2f})" if js else "-")
    rows.append(spread)
    doc.table(pd.DataFrame(rows, columns=["trial", "recipe"] + [plots.LABELS.get(v, v) for v in variants]))
