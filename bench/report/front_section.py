"""The report's accuracy-front section and verdicts (records of ``bench.tasks.front``)."""

from __future__ import annotations

import pandas as pd

from ..tasks.front import compare_fronts, front_points
from ..train import is_smoke
from . import plots
from .verdict import NAMES, Verdict, front_verdict

# the pairs a front verdict compares: the question of the project, then the reducible-basis effect
PAIRS = (("cace", "spherical"), ("cace-traceless", "cace"), ("cace-traceless", "spherical"))


def _fmt(m: tuple) -> str:
    digits = 1 if abs(m[0]) >= 10 else 2
    return f"{m[0]:.{digits}f} ± {m[1]:.{digits}f}"


def _by_dataset(df: pd.DataFrame):
    for dataset, d in df[df.task == "front"].groupby("dataset", sort=True):
        yield dataset, d, front_points(d.to_dict("records"))


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
    return out


def front_section(doc, df: pd.DataFrame) -> None:
    for dataset, d, points in _by_dataset(df):
        doc.heading(f"Accuracy front: {dataset}")
        tc = d.iloc[0].get("train_config") or {}
        seeds = sorted(d.seed.unique())
        doc.para(f"Each descriptor trained along a sweep of the final energy weight w_E of the loss (force weight "
                 f"{tc.get('force_weight')}; energy weight raised 0.1 -> 1 -> ... -> w_E over the budget), "
                 f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}), same split, recipe (Adam lr {tc.get('lr')}, "
                 f"EMA {tc.get('ema_decay')}, up to {tc.get('max_epochs')} epochs) and readout. Test errors: mean ± "
                 "std over seeds. A descriptor is better only where its front is better beyond the seed spread.")
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
