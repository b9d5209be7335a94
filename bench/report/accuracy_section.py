"""The report's accuracy sections (errors, data, budget, parity plot, learning curves) and the
accuracy verdicts (records of ``bench.tasks.accuracy``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..kinds import COMPARED
from ..metrics import metric
from ..results.store import ResultsStore, run_id
from ..train import is_smoke
from . import plots
from .doc import Doc, fmt, setting_col
from .verdict import NAMES, Verdict, error_verdict, per_structure_errors

SUMMARY_METRICS = ["energy_mae_per_atom", "energy_mae_per_atom_e0", "energy_rmse_per_atom", "energy_mae", "forces_mae", "forces_rmse",
                   "train_time"]


def _predictions(store: ResultsStore, top: pd.DataFrame, kind: str, seed) -> dict | None:
    """The test-set predictions artifact of ``kind``'s run with ``seed`` among the records ``top``
    (None if there is no such run or file)."""
    sel = top[(top.descriptor == kind) & (top.seed == seed)]
    if not len(sel):
        return None
    r = sel.iloc[0]
    key = {k: r[k] for k in ("task", "descriptor", "dataset", "dataset_hash", "seed", "setting", "config_hash")}
    key["seed"] = int(key["seed"])
    path = store.artifacts_dir / run_id(key) / "predictions.npz"
    return dict(np.load(path)) if path.is_file() else None


def accuracy_section(doc: Doc, store: ResultsStore, acc: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
    """Per data set: the main test set's errors, parity plot and learning curves; ``extra``: the
    records of the further test sets (``--test``, repeated), one table row per set."""
    acc = acc.assign(n_train=setting_col(acc, "n_train"))
    for dataset, d in acc.groupby("dataset", sort=True):
        doc.heading(f"Accuracy: {dataset}")
        n_max = int(d.n_train.max())
        top = d[d.n_train == n_max]
        seeds = sorted(top.seed.unique())
        first = top.iloc[0]
        doc.para(f"Test-set errors after training on {n_max} structures (mean ± std over {len(seeds)} seed(s): "
                 f"{', '.join(map(str, seeds))}; {int(first['n_test'])} test structures). "
                 f"Bold: the better side where the two differ beyond the seed spread (the mean ± std intervals "
                 f"do not overlap; never with one seed). Both descriptors: same split, training loop, budget and "
                 f"readout.")
        dr = first.get("data")
        if isinstance(dr, dict):
            opts = ", ".join(f"{k} {v}" for k, v in sorted((dr.get("read_options") or {}).items())) or "defaults"
            test = f"; test file {dr['test_source']}" if dr.get("test_source") else ""
            test += "".join(f"; test set {n} {p}" for n, p in dr.get("extra_tests") or [])
            test += f"; validation file {dr['valid_source']}" if dr.get("valid_source") else ""
            doc.para(f"Data: {dr.get('source')} (read options: {opts}{test}; E0: {dr.get('e0_source')}); split used: "
                     f"{dr.get('n_train')} training, {dr.get('n_valid')} validation, {dr.get('n_test')} test structures.")
        tc = first.get("train_config") or {}
        if tc:
            doc.para(f"Budget: up to {tc.get('max_epochs')} epochs, batch {tc.get('batch_size')}, Adam lr {tc.get('lr')}, "
                     f"EMA {tc.get('ema_decay')}, energy weight {' -> '.join(map(str, tc.get('energy_weights', [])))}, "
                     f"force weight {tc.get('force_weight')}; {int(first['n_parameters'])} parameters each.")
            if is_smoke(tc) or len(seeds) < 3:
                doc.para("Caution: a short budget or fewer than 3 seeds (the --quick run). These numbers show the "
                         "pipeline working on real training runs; they are not a comparison to decide on.")
        backends = top["backend"].fillna("eager") if "backend" in top else pd.Series("eager", index=top.index)
        if set(backends) != {"eager"}:                 # records before --train-backend trained eager
            runs = top.drop_duplicates(["descriptor", "seed"]).assign(backend=backends)
            counts = runs.groupby(["descriptor", "backend"]).size()
            doc.para("Descriptor run in training through: " + "; ".join(
                f"{k} {b} ({n} run{'s' if n > 1 else ''})" for (k, b), n in counts.items())
                + " (bench.backends: the same weights and numbers to rounding; training times differ).")
        shared = _concurrent_units(top)
        if shared > 1:
            doc.para(f"Training times were measured with up to {shared} trainings side by side on one machine "
                     f"(--jobs {shared}: they shared its CPUs or GPU): compare them only with times measured the "
                     "same way; the errors do not depend on it.")
        stats = top.groupby(["metric", "descriptor"])["value"].agg(["mean", "std"]).reset_index()
        per_elem = sorted(m for m in stats.metric.unique() if m.startswith("forces_mae_"))
        rows, bold = [], set()
        for i, m in enumerate([m for m in SUMMARY_METRICS if m in set(stats.metric)] + per_elem):
            info = metric(m)
            vals = {k: stats[(stats.metric == m) & (stats.descriptor == k)] for k in COMPARED}
            cells = [f"{m} ({info.unit})"]
            means = {}
            for j, k in enumerate(COMPARED):
                v = vals[k]
                if len(v):
                    means[k] = float(v["mean"].iloc[0])
                    cells.append(fmt(means[k], float(v["std"].iloc[0])))
                else:
                    cells.append("-")
            if len(means) == 2 and len(seeds) > 1 and not (m == "train_time" and shared > 1) and \
                    _apart(*(vals[k].iloc[0] for k in COMPARED)):
                best = "cace" if info.is_better(means["cace"], means["spherical"]) else "spherical"
                bold.add((len(rows), 1 if best == "cace" else 2))
            rows.append(cells)
        for label, col in (("parameters", "n_parameters"), ("features per atom", "n_features")):
            rows.append([label] + [str(int(top[top.descriptor == k][col].iloc[0])) if (top.descriptor == k).any() else "-"
                                   for k in COMPARED])
        doc.table(pd.DataFrame(rows, columns=["metric", "CACE", "spherical"]), bold)
        e_model = stats[stats.metric == "energy_mae_per_atom"].set_index("descriptor")["mean"]
        e_triv = stats[stats.metric == "energy_mae_per_atom_e0"]["mean"]
        if len(e_triv):
            worse = [NAMES[k] for k, v in e_model.items() if k in NAMES and v >= float(e_triv.iloc[0])]
            if worse:
                doc.para(f"Caution: the energy error of {' and '.join(worse)} is not below that of the trivial model "
                         f"(the per-element reference energies E0 alone, {float(e_triv.iloc[0]):.2f} meV/atom on the "
                         "same test set): the training has not learnt the energies.")
        untrained = _untrained_caution(top)
        if untrained:
            doc.para(untrained)
        if extra is not None and (extra.dataset == dataset).any():
            _test_sets_table(doc, top, extra[extra.dataset == dataset].assign(
                n_train=setting_col(extra[extra.dataset == dataset], "n_train")), n_max)
        preds = {k: p for k in COMPARED if (p := _predictions(store, top, k, seeds[0])) is not None}
        if preds:
            doc.figure(plots.parity(preds), f"{dataset}: predicted against reference on the test set "
                                            f"(seed {seeds[0]}, {n_max} training structures)")
        if d.n_train.nunique() > 1:
            curve = (d[d.metric.isin(["forces_mae", "energy_mae_per_atom"])]
                     .groupby(["descriptor", "n_train", "metric"])["value"].agg(["mean", "std"]).reset_index())
            doc.figure(plots.learning_curves(curve, [("forces_mae", "meV/A"), ("energy_mae_per_atom", "meV/atom")]),
                       f"{dataset}: learning curves (test MAE against training-set size, mean ± std over seeds)")


def _untrained_caution(top: pd.DataFrame) -> str:
    """A caution where some test structures hold elements no training structure of their seed had
    (records' ``untrained_elements``; older records lack the field): '' where none do."""
    if "untrained_elements" not in top:
        return ""
    hit = top[top.untrained_elements.map(lambda v: isinstance(v, list) and len(v) > 0)]
    if hit.empty:
        return ""
    from ase.data import chemical_symbols

    per_seed = hit.drop_duplicates("seed").sort_values("seed")       # both descriptors of a seed share its split
    said = "; ".join(f"seed {int(r.seed)}: {int(r.n_untrained_structures)} of {int(r.n_test)} "
                     f"({', '.join(chemical_symbols[z] for z in r.untrained_elements)})"
                     for r in per_seed.itertuples())
    return ("Caution: some test structures hold elements that no training structure of their seed has (" + said
            + "). Their errors measure element embeddings that were never trained, for both descriptors alike, "
            "not the descriptors: more training structures with those elements would fix it.")


def _test_sets_table(doc: Doc, top: pd.DataFrame, extra: pd.DataFrame, n_max: int) -> None:
    """Errors on every test set (the main one, then each further ``--test`` set), so that an
    extrapolation protocol (train at 300 K, test at 600 K and 1200 K) reads as one table."""
    both = pd.concat([top, extra[extra.n_train == n_max]])
    both = both[both.metric.isin(["energy_mae_per_atom", "forces_mae"])]
    rows = []
    names = list(dict.fromkeys(both.test_set.fillna("split")))
    for name in names:
        d = both[both.test_set.fillna("split") == name]
        row = [name, str(int(d.n_test.iloc[0]))]
        for k in COMPARED:
            for m in ("energy_mae_per_atom", "forces_mae"):
                v = d[(d.descriptor == k) & (d.metric == m)].value
                row.append(fmt(float(v.mean()), float(v.std())) if len(v) else "-")
        rows.append(row)
    doc.para("Errors on every test set (mean ± std over seeds; E in meV/atom, F in meV/A); the first is the main "
             "test set, which the rest of this section and the verdict use.")
    doc.table(pd.DataFrame(rows, columns=["test set", "structures", "CACE E", "CACE F", "spherical E", "spherical F"]))


def _apart(a, b) -> bool:
    """Whether two (mean, std) rows differ beyond their seed spread: the intervals mean ± std do
    not overlap (a std of NaN, one seed, counts as no spread known: never apart)."""
    if pd.isna(a["std"]) or pd.isna(b["std"]):
        return False
    return abs(float(a["mean"]) - float(b["mean"])) > float(a["std"]) + float(b["std"])


def _concurrent_units(records: pd.DataFrame) -> int:
    """The most units that ran side by side for any of ``records`` (provenance ``concurrent_units``,
    written by the local pool, ``--jobs``); 1 where none says so."""
    provs = records.get("provenance", pd.Series(dtype=object)).dropna()
    return max([int(p.get("concurrent_units") or 1) for p in provs if isinstance(p, dict)] or [1])


def accuracy_verdicts(store: ResultsStore, acc: pd.DataFrame) -> list[Verdict]:
    """Per data set: CACE against spherical on force and energy errors of the largest training set,
    per test structure, paired by seed (both descriptors' predictions of a seed's test set)."""
    out = []
    acc = acc.assign(n_train=setting_col(acc, "n_train"))
    for dataset, d in acc.groupby("dataset", sort=True):
        top = d[d.n_train == d.n_train.max()]
        pairs = {"force MAE": ([], []), "energy MAE per atom": ([], [])}
        seeds, of_pair = [], []                      # the seeds with both descriptors' predictions; each pair's seed
        for seed in sorted(top.seed.unique()):
            preds = {k: per_structure_errors(p) for k in COMPARED
                     if (p := _predictions(store, top, k, seed)) is not None}
            if len(preds) == 2 and len(preds["cace"][0]) == len(preds["spherical"][0]):
                seeds.append(int(seed))
                of_pair.append(np.full(len(preds["cace"][0]), int(seed)))
                for k, name in enumerate(pairs):
                    pairs[name][0].append(preds["cace"][k])
                    pairs[name][1].append(preds["spherical"][k])
        if not seeds:
            continue
        tc = top.iloc[0].get("train_config") or {}
        smoke = is_smoke(tc)
        over = (f" and Student t over {len(seeds)} seeds (a winner needs both)" if len(seeds) > 1 else
                ", 1 seed (the training's noise is not in the interval)")
        for name, (a, b) in pairs.items():
            a, b = np.concatenate(a), np.concatenate(b)
            out.append(error_verdict(f"accuracy, {dataset}: {name}", a, b,
                                     f"paired bootstrap over {len(a)} test structures{over}, "
                                     f"{int(top.n_train.max())} training structures", smoke, np.concatenate(of_pair)))
    return out
