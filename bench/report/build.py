"""Build the report from a results folder: records in, HTML + Markdown out (no network, no JS)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import metric
from ..train import is_smoke
from ..results.store import ResultsError, ResultsStore, run_id
from . import plots
from .front_section import front_section, front_verdicts
from .verdict import Verdict, error_verdict, per_structure_errors, speed_verdict, survival_verdict
from ..kinds import COMPARED

SUMMARY_METRICS = ["energy_mae_per_atom", "energy_mae_per_atom_e0", "energy_rmse_per_atom", "energy_mae", "forces_mae", "forces_rmse",
                   "train_time"]
NAMES = {"cace": "CACE", "spherical": "spherical"}


class _Doc:
    """Collects sections once and renders them as HTML and as Markdown."""

    def __init__(self, title: str, fig_dir: Path):
        self.title, self.fig_dir, self.html, self.md = title, fig_dir, [], [f"# {title}\n"]
        self.n_fig = 0

    def heading(self, text: str, level: int = 2):
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str):
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(f"{text}\n")

    def table(self, df: pd.DataFrame, bold: set | None = None):
        bold = bold or set()
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        rows = []
        for i, row in enumerate(df.itertuples(index=False)):
            cells = "".join(f"<td class='{'best' if (i, j) in bold else ''}'>{html.escape(str(v))}</td>"
                            for j, v in enumerate(row))
            rows.append(f"<tr>{cells}</tr>")
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        md = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
        for i, row in enumerate(df.itertuples(index=False)):
            md.append("| " + " | ".join(f"**{v}**" if (i, j) in bold else str(v) for j, v in enumerate(row)) + " |")
        self.md.append("\n".join(md) + "\n")

    def figure(self, png: bytes, caption: str):
        self.n_fig += 1
        name = f"figure{self.n_fig}.png"
        (self.fig_dir / name).write_bytes(png)
        b64 = base64.b64encode(png).decode()
        self.html.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{html.escape(caption)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"![{caption}](figures/{name})\n\n*{caption}*\n")

    def render_html(self, footer: str) -> str:
        css = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{border-bottom:2px solid #1f77b4;padding-bottom:.2em}
h2{margin-top:1.8em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.35em .7em;text-align:right}th{background:#f3f5f8}
td:first-child,th:first-child{text-align:left}td.best{font-weight:bold;background:#e8f4e8}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
footer{margin-top:3em;font-size:.8em;color:#666;border-top:1px solid #ddd;padding-top:.5em}"""
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{css}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.html)}"
                f"<footer>{footer}</footer></body></html>")


def _fmt(mean: float, std: float) -> str:
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) and std > 0 else "")


def _ratio_cell(ratio: float, iqr: float) -> str:
    """A speed ratio with its spread; "(noisy)" where the spread is too large to decide on."""
    from .verdict import NOISY_SPREAD

    noisy = not iqr <= NOISY_SPREAD * abs(ratio)
    return f"{ratio:.2f} ± {iqr / 2:.2f}" + (" (noisy)" if noisy else "")


def _setting_col(df: pd.DataFrame, name: str) -> pd.Series:
    return df["setting"].map(lambda s: s.get(name) if isinstance(s, dict) else None)


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


def _accuracy_sections(doc: _Doc, store: ResultsStore, acc: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
    """Per data set: the main test set's errors, parity plot and learning curves; ``extra``: the
    records of the further test sets (``--test``, repeated), one table row per set."""
    acc = acc.assign(n_train=_setting_col(acc, "n_train"))
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
                    cells.append(_fmt(means[k], float(v["std"].iloc[0])))
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
                n_train=_setting_col(extra[extra.dataset == dataset], "n_train")), n_max)
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


def _test_sets_table(doc: _Doc, top: pd.DataFrame, extra: pd.DataFrame, n_max: int) -> None:
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
                row.append(_fmt(float(v.mean()), float(v.std())) if len(v) else "-")
        rows.append(row)
    doc.para("Errors on every test set (mean ± std over seeds; E in meV/atom, F in meV/A); the first is the main "
             "test set, which the rest of this section and the verdict use.")
    doc.table(pd.DataFrame(rows, columns=["test set", "structures", "CACE E", "CACE F", "spherical E", "spherical F"]))


def _timing_sections(doc: _Doc, df: pd.DataFrame) -> None:
    """Speed: method, headline table, time against atoms / l_max / nu_max / channels, memory,
    roofline, and the trained potentials' accuracy against speed (with the accuracy records)."""
    t = df[df.task == "timing"].copy()
    t["sweep"] = _setting_col(t, "sweep")
    t["dtype"] = _setting_col(t, "dtype")
    t["n_atoms"] = _setting_col(t, "n_atoms")
    t["backend"] = t["backend"].fillna("eager") if "backend" in t else "eager"   # records before backends: eager
    all_times = t[t.metric.str.startswith("time_") & t.descriptor.isin(list(COMPARED))]
    times = _fastest_backend(all_times)
    doc.heading("Speed")
    first = t[t.sweep != "ceilings"].iloc[0] if (t.sweep != "ceilings").any() else t.iloc[0]
    prov = first.get("provenance") or {}
    ver = prov.get("versions") or {}
    doc.para(f"Device: {prov.get('device_name', '?')}"
             + (f", {prov.get('threads')} threads" if prov.get("device") == "cpu" else
                f", TF32 matmul {'on' if prov.get('tf32_matmul') else 'off'}")
             + f"; torch {ver.get('torch', '?')}, e3nn {ver.get('e3nn', '?')}. Each point: every (descriptor, mode) "
             "call timed round-robin in one loop after warm-up, median and IQR over the repeats (CUDA events and an "
             "L2 flush on GPU). Modes: descriptor only (no autograd), energy + forces (the MD call), and a training "
             "step (energy and force loss, differentiated with respect to the weights: the double backward). The "
             "ratio spherical / CACE is the median of per-round ratios (> 1 means CACE is faster); it is the figure "
             "to compare across machines, not the absolute times.")
    repeats = _setting_col(t, "repeats").dropna()
    if len(repeats) and repeats.min() < 10:
        doc.para(f"Caution: some points have only {int(repeats.min())} repeats (the --quick run); their ratios can move "
                 "by 10% from run to run on a shared machine.")
    if all_times.backend.nunique() > 1 or (t.metric == "backend_unavailable").any():
        doc.para("Each descriptor was timed under several backends (bench.backends: eager, torch.compile, CUDA "
                 "graphs), with the same weights. The tables and figures below show each side at its fastest backend "
                 "(named in the backend column), and the headline ratio pairs those; the backend table after them "
                 "gives every backend, and what a backend could not run.")
    for dtype in sorted(t.dtype.dropna().unique()):
        _speed_for_dtype(doc, t[t.dtype == dtype], times[times.dtype == dtype], dtype)
        _backend_section(doc, t[t.dtype == dtype], all_times[all_times.dtype == dtype], dtype)
    _pareto_section(doc, df, t)


def _point_key(df: pd.DataFrame) -> pd.Series:
    return (_setting_col(df, "sweep").astype(str) + "|" + _setting_col(df, "overrides").astype(str) + "|"
            + df["n_atoms"].astype(str) + "|" + df["dtype"].astype(str) + "|" + df["mode"].astype(str))


def _fastest_backend(times: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, descriptor, mode): the backend with the lowest median time."""
    if not len(times):
        return times
    key = _point_key(times) + "|" + times["descriptor"].astype(str)
    return times.loc[times["value"].groupby(key).idxmin().values]


def _backend_section(doc: _Doc, t: pd.DataFrame, all_times: pd.DataFrame, dtype: str) -> None:
    """Every backend of the atoms sweep side by side, and the backends that could not run."""
    fails = t[t.metric == "backend_unavailable"]
    if all_times.backend.nunique() <= 1 and not len(fails):
        return
    doc.heading(f"Backends ({dtype})", 3)
    atoms = all_times[all_times.sweep == "atoms"]
    ratios = t[(t.metric == "speed_ratio_spherical_over_cace") & (t.sweep == "atoms")]
    rows = []
    for n in sorted(atoms.n_atoms.unique()):
        for m in ("descriptor", "energy_forces", "training_step"):
            for b in sorted(atoms.backend.unique()):
                sel = atoms[(atoms.n_atoms == n) & (atoms["mode"] == m) & (atoms.backend == b)]
                if not len(sel):
                    continue
                val = {k: sel[sel.descriptor == k]["value"] for k in COMPARED}
                r = ratios[(ratios.n_atoms == n) & (ratios["mode"] == m) & (ratios.backend == b)]
                rows.append([str(int(n)), plots.MODE_TITLES[m], b]
                            + [f"{val[k].iloc[0]:.2f}" if len(val[k]) else "unavailable" for k in COMPARED]
                            + [f"{r['value'].iloc[0]:.2f}" if len(r) else "-"])
    if rows:
        doc.table(pd.DataFrame(rows, columns=["atoms", "mode", "backend", "CACE ms", "spherical ms",
                                              "ratio sph/CACE, same backend"]))
    if "checked_against" in atoms:
        other = atoms[atoms.checked_against.notna() & (atoms.checked_against != "eager")]
        if len(other):
            sizes = ", ".join(f"{int(n):,}" for n in sorted(other.n_atoms.unique()))
            doc.para(f"At {sizes} atoms eager did not fit in memory: the timed backends there were checked against "
                     f"{', '.join(sorted(set(other.checked_against.str.split(' ').str[0])))} (the fused neighbour "
                     "sums run eagerly), which was checked against eager at every smaller point.")
    if len(fails):
        first = fails.groupby(["descriptor", "backend", "mode", "error"], sort=False)["n_atoms"].min().reset_index()
        doc.table(pd.DataFrame([[NAMES.get(r.descriptor, r.descriptor), r.backend, plots.MODE_TITLES.get(r.mode, r.mode),
                                 f"{int(r.n_atoms):,}" if pd.notna(r.n_atoms) else "-", r.error]
                                for r in first.itertuples()],
                               columns=["descriptor", "backend", "mode", "from atoms", "why it could not run"]))


def _speed_for_dtype(doc: _Doc, t: pd.DataFrame, times: pd.DataFrame, dtype: str) -> None:
    atoms = times[times.sweep == "atoms"]
    ratios = t[(t.metric == "speed_ratio_spherical_over_cace") & t.backend.isin(["best", "eager"])]
    if (ratios.backend == "best").any():            # the headline pairs each side at its fastest backend
        ratios = ratios[(ratios.backend == "best") | ~_point_key(ratios).isin(set(_point_key(ratios[ratios.backend == "best"])))]
    if len(atoms):
        doc.heading(f"Speed against system size ({dtype})", 3)
        modes = [m for m in ("descriptor", "energy_forces", "training_step") if m in set(atoms["mode"])]
        several = times.backend.nunique() > 1
        rows = []
        for n in sorted(atoms.n_atoms.unique()):
            for m in modes:
                sel = atoms[(atoms.n_atoms == n) & (atoms["mode"] == m)]
                val = {k: sel[sel.descriptor == k].iloc[0] for k in COMPARED if (sel.descriptor == k).any()}
                r = ratios[(ratios.sweep == "atoms") & (ratios.n_atoms == n) & (ratios["mode"] == m)]
                rows.append([str(int(n)), plots.MODE_TITLES[m]]
                            + [f"{val[k]['value']:.1f}" if k in val else "-" for k in COMPARED]
                            + [_ratio_cell(r['value'].iloc[0], r['iqr'].iloc[0]) if len(r) else "-"]
                            + [f"{val[k]['cost']['achieved_flops_per_s'] / 1e9:.1f}" if k in val else "-"
                               for k in COMPARED]
                            + ([" / ".join(val[k]["backend"] if k in val else "-" for k in COMPARED)]
                               if several else []))
        doc.table(pd.DataFrame(rows, columns=["atoms", "mode", "CACE ms", "spherical ms", "ratio sph/CACE (± IQR/2)",
                                              "CACE GFLOP/s", "spherical GFLOP/s"]
                               + (["backend CACE / spherical"] if several else [])))
        nl = t[(t.metric == "time_neighbor_list") & (t.sweep == "atoms")].sort_values("n_atoms")
        mem = t[(t.metric == "peak_memory_energy_forces") & (t.sweep == "atoms") & (t.backend == "eager")]
        extra = {"neighbour list (vesin)": (nl.n_atoms.tolist(), nl["value"].tolist())} if len(nl) else None
        doc.figure(plots.sweep_lines(atoms, "n_atoms", "atoms", logx=True, modes=modes, extra=extra),
                   f"Time per evaluation against system size (water preset, {dtype}; log axes; the neighbour list, "
                   "timed separately, in grey)")
        if len(mem):
            mrows = []
            for n in sorted(mem.n_atoms.unique()):
                v = {k: mem[(mem.n_atoms == n) & (mem.descriptor == k)]["value"] for k in COMPARED}
                mrows.append([str(int(n))] + [f"{v[k].iloc[0]:.1f} ({v[k].iloc[0] / n:.3f}/atom)" if len(v[k]) else "-"
                                         for k in COMPARED])
            doc.table(pd.DataFrame(mrows, columns=["atoms", "CACE peak MB", "spherical peak MB"]))
            doc.figure(plots.memory_lines(mem), f"Peak memory of one energy + forces call against system size ({dtype})")
        _roofline(doc, t, atoms, dtype)
    for sweep, label in (("l_max", "l_max"), ("nu_max", "body order nu_max"), ("n_radial", "radial channels K")):
        sel = times[times.sweep == sweep].copy()
        if not len(sel):
            continue
        sel[sweep] = _setting_col(sel, "overrides").map(lambda o: o.get(sweep))
        modes = [m for m in ("descriptor", "energy_forces", "training_step") if m in set(sel["mode"])]
        doc.heading(f"Speed against {label} ({dtype}, {int(sel.n_atoms.iloc[0])} atoms)", 3)
        r = ratios[ratios.sweep == sweep].copy()
        r[sweep] = _setting_col(r, "overrides").map(lambda o: o.get(sweep))
        rows = []
        for v in sorted(sel[sweep].unique()):
            cells = [str(v)]
            for m in modes:
                q = r[(r[sweep] == v) & (r["mode"] == m)]
                cells.append(f"{q['value'].iloc[0]:.2f}" if len(q) else "-")
            feats = sel[(sel[sweep] == v) & (sel["mode"] == modes[0])]
            cells += [str(int(feats[feats.descriptor == k]["n_features"].iloc[0])) if (feats.descriptor == k).any() else "-"
                      for k in COMPARED]
            rows.append(cells)
        doc.table(pd.DataFrame(rows, columns=[label] + [f"ratio sph/CACE, {plots.MODE_TITLES[m]}" for m in modes]
                               + ["CACE features", "spherical features"]))
        doc.figure(plots.sweep_lines(sel, sweep, label, logx=False, modes=modes),
                   f"Time per evaluation against {label} (other settings from the preset; log time axis)")


def _roofline(doc: _Doc, t: pd.DataFrame, atoms: pd.DataFrame, dtype: str) -> None:
    ceil = {r.metric.removeprefix("ceiling_"): r.value for r in t[t.metric.str.startswith("ceiling_")].itertuples()}
    if "matmul_flops_per_s" not in ceil:
        return
    roofs = {"measured": (ceil["matmul_flops_per_s"], ceil["copy_bytes_per_s"])}
    if ceil.get("spec_flops_per_s"):
        roofs["vendor"] = (ceil["spec_flops_per_s"], ceil["spec_bytes_per_s"])
    n = atoms.n_atoms.max()
    pts = [{"descriptor": r.descriptor, "mode": r.mode, "intensity": r.cost["intensity"],
            "flops_per_s": r.cost["achieved_flops_per_s"]} for r in atoms[atoms.n_atoms == n].itertuples()]
    doc.figure(plots.roofline(pts, roofs, f"{int(n)} atoms, {dtype}"),
               f"Roofline at {int(n)} atoms ({dtype}): achieved FLOP/s (analytic FLOPs from bench.costmodel over the "
               "measured median time) against arithmetic intensity, under the measured matmul and copy roofs of this "
               "device" + (" and its vendor peaks" if "vendor" in roofs else ""))


def _pareto_section(doc: _Doc, df: pd.DataFrame, t: pd.DataFrame) -> None:
    trained = t[(t.sweep == "trained") & (t.metric == "time_energy_forces")]
    acc = df[(df.task == "accuracy") & (df.metric == "forces_mae")]
    if not len(trained) or not len(acc):
        return
    acc = acc.assign(n_train=_setting_col(acc, "n_train"))
    points, rows = [], []
    for r in trained.itertuples():
        a = acc[(acc.dataset == r.dataset) & (acc.descriptor == r.descriptor) & (acc.n_train == r.setting["n_train"])]
        if not len(a):
            continue
        points.append({"dataset": r.dataset, "descriptor": r.descriptor, "time_ms": r.value,
                       "forces_mae": float(a["value"].mean()), "forces_mae_std": float(a["value"].std()) if len(a) > 1 else 0.0})
        rows.append([r.dataset, NAMES[r.descriptor], f"{r.value:.1f}", _fmt(points[-1]["forces_mae"], points[-1]["forces_mae_std"]),
                     str(r.setting["n_structures"]), str(r.setting["n_atoms"])])
    if not points:
        return
    doc.heading("Accuracy against speed", 3)
    doc.para("The trained potentials (largest training set) timed round-robin on the same test structures "
             "(energy + forces, float32), against their test force MAE (mean ± std over seeds).")
    doc.table(pd.DataFrame(rows, columns=["data set", "potential", "energy + forces ms", "force MAE (meV/A)",
                                          "structures", "atoms"]))
    doc.figure(plots.pareto(points), "Accuracy against speed of the trained potentials (lower left is better)")


def _history_section(doc: _Doc, baselines) -> None:
    from ..regression import history

    snaps = history(baselines)
    if not snaps:
        return
    doc.heading("Regression history")
    doc.para(f"Tracked figures of every accepted baseline in {baselines} (oldest first): speed as ratios measured "
             "in one run (spherical / CACE higher is better; X / reference lower is better), accuracy of the quick "
             "built-in run.")
    names = sorted({n for s in snaps for n in s["figures"]})
    series = {n: [s["figures"].get(n, {}).get("value", float("nan")) for s in snaps] for n in names}
    labels = [Path(s["path"]).stem for s in snaps]
    doc.figure(plots.history(series, labels), "Tracked figures across accepted baselines")


_ENGINE_TEXT = {"batched": "the batched engine (bench.md: every replica of a potential in one batch; BAOAB "
                           "Langevin, velocity Verlet)", "ase": "ASE's integrators, one trajectory at a time"}


def _md_engines(runs: list[dict]) -> str:
    """Which engine and device produced each potential's curves (records before engines existed: ASE, CPU)."""
    used = {}
    for r in runs:
        rec = r["records"][0]
        prov = rec.get("provenance", {})
        device = prov.get("device_name") or prov.get("device", "cpu")
        backend = (rec.get("spec") or {}).get("backend", "eager")
        if backend != "eager":
            device = f"{device}, backend {backend}"
        used.setdefault(NAMES.get(r["key"]["descriptor"], r["key"]["descriptor"]), set()).add(
            (rec.get("engine", "ase"), device))
    parts = [f"{name}: " + "; ".join(f"{_ENGINE_TEXT.get(e, e)} on {d}" for e, d in sorted(v)) for name, v in sorted(used.items())]
    return "Engines: " + " · ".join(parts) + "."


def _stability_section(doc: _Doc, store: ResultsStore, runs: list[dict]) -> None:
    stab_runs = [r for r in runs if r["key"]["task"] == "stability"]
    for dataset in sorted({r["key"]["dataset"] for r in stab_runs}):
        doc.heading(f"Stability in MD: {dataset}")
        mine = [r for r in stab_runs if r["key"]["dataset"] == dataset]
        spec = mine[0]["records"][0]["spec"]
        doc.para(f"{spec['ensemble']}, time step {spec['timestep_fs']} fs, {spec['n_steps']} steps; the same start frames "
                 f"and velocity seeds for every potential. A run fails at the first check (every {spec['check_interval']} "
                 f"steps) where energy or forces are non-finite, T > {spec['max_temperature']:.0e} K, two atoms are closer "
                 f"than {spec['min_distance']} A, a bond deviates by more than {spec['bond_tolerance']} A (molecules), or "
                 f"the RDF error exceeds {spec['rdf_threshold']} (periodic). " + _md_engines(mine))
        rows = []
        for temperature in sorted({r["key"]["setting"]["temperature"] for r in mine}):
            at_t = [r for r in mine if r["key"]["setting"]["temperature"] == temperature]
            curves, rdfs, reference, pair = {}, {}, None, None
            for kind in ("cace", "spherical", "emt"):
                ks = [r for r in at_t if r["key"]["descriptor"] == kind]
                if not ks:
                    continue
                vals = {m: [rec["value"] for r in ks for rec in r["records"] if rec["metric"] == m]
                        for m in ("time_to_failure", "energy_drift", "rdf_error")}
                failed = [r["records"][0]["failed"] for r in ks]
                reasons = sorted({r["records"][0]["reason"] for r in ks if r["records"][0]["failed"]})
                length = ks[0]["records"][0]["length_fs"]
                ttf = np.array(vals["time_to_failure"])
                times = np.linspace(0, length, 201)
                frac = np.array([(np.where(np.array(failed), ttf, np.inf) > t).mean() for t in times])
                curves[kind] = (times, frac)
                rows.append([f"{temperature:.0f}", NAMES.get(kind, kind), f"{sum(failed)}/{len(ks)}",
                             f"{np.median(ttf):.0f}", f"{np.trapezoid(frac, times) / length:.2f}",
                             f"{np.nanmean(vals['energy_drift']):.2f}" if spec["ensemble"] == "nve" else "- (thermostat)",
                             f"{np.mean(vals['rdf_error']):.2f}" if vals["rdf_error"] else "-", ", ".join(reasons) or "-"])
                art = ks[0]["artifacts"]
                if art.get("rdf") and art.get("reference_rdf"):  # mean over element pairs (less noisy)
                    pairs = sorted(set(art["rdf"]) & set(art["reference_rdf"]))
                    rdfs[kind] = np.mean([art["rdf"][k] for k in pairs], axis=0)
                    reference = np.mean([art["reference_rdf"][k] for k in pairs], axis=0)
                    pair = len(pairs)
            doc.figure(plots.survival_curves(curves, f"{dataset}, {temperature:.0f} K"),
                       f"{dataset} at {temperature:.0f} K: fraction of runs still stable against time")
            if reference is not None and rdfs:
                r = (np.arange(len(reference)) + 0.5) * spec["rdf_r_max"] / len(reference)
                doc.figure(plots.rdf_overlay(r, rdfs, reference, f"{dataset}, {temperature:.0f} K, g(r), mean of {pair} element pairs"),
                           f"{dataset} at {temperature:.0f} K: RDF of the last frame of the first run of each potential "
                           f"against the reference")
        doc.table(pd.DataFrame(rows, columns=["T (K)", "potential", "failed", "median time to failure (fs)",
                                              "survival area", "NVE drift (meV/atom/ps)", "RDF error", "reasons"]))


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


def _footer(df: pd.DataFrame) -> str:
    parts = []
    if "prov.device_name" in df:
        parts.append("devices: " + ", ".join(sorted(map(str, df["prov.device_name"].dropna().unique()))))
    commits = set()
    for prov in df.get("provenance", pd.Series(dtype=object)).dropna():
        g = prov.get("git") or {}
        if g.get("commit"):
            commits.add(g["commit"][:10] + ("+dirty" if g.get("dirty") else ""))
    if commits:
        parts.append("commits: " + ", ".join(sorted(commits)))
    versions = [p.get("versions") for p in df.get("provenance", pd.Series(dtype=object)).dropna() if p.get("versions")]
    if versions:
        parts.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions[0].items()))
    parts.append(f"{len(df)} records; built {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    return html.escape(" · ".join(parts))


def _accuracy_verdicts(store: ResultsStore, acc: pd.DataFrame) -> list[Verdict]:
    out = []
    acc = acc.assign(n_train=_setting_col(acc, "n_train"))
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


def _stability_verdicts(runs: list[dict]) -> list[Verdict]:
    out = []
    stab = [r for r in runs if r["key"]["task"] == "stability" and r["key"]["descriptor"] in COMPARED]
    # MD with potentials from a quick-budget training is a smoke test too, as their accuracy rows are
    smoke_data = {r["key"]["dataset"] for r in runs if r["key"]["task"] == "accuracy" and r["records"]
                  and is_smoke(r["records"][0].get("train_config") or {})}
    for dataset in sorted({r["key"]["dataset"] for r in stab}):
        ttf, length = {}, None
        for r in stab:
            if r["key"]["dataset"] != dataset:
                continue
            s = r["key"]["setting"]
            rec = next((x for x in r["records"] if x["metric"] == "time_to_failure"), None)
            if rec is None:
                continue
            length = rec.get("length_fs", length)
            pair = (r["key"]["seed"], s["temperature"], s["start"], s["md_seed"], s.get("engine", "ase"))
            ttf.setdefault(pair, {})[r["key"]["descriptor"]] = rec["value"]
        both = {pair: v for pair, v in ttf.items() if len(v) == 2}
        if both and length:
            seeds = [pair[0] for pair in both]                     # the training seed of each replica's potentials
            n_seeds = len(set(seeds))
            over = f" and Student t over {n_seeds} training seeds (a winner needs both)" if n_seeds > 1 else ""
            verdict = survival_verdict(f"stability, {dataset}: time to failure", [v["cace"] for v in both.values()],
                                       [v["spherical"] for v in both.values()], length,
                                       f"paired bootstrap over {len(both)} replicas{over}", seeds)
            out.append(replace(verdict, smoke=dataset in smoke_data))
    return out


def _speed_verdicts(df: pd.DataFrame) -> list[Verdict]:
    out = []
    t = df[(df.task == "timing") & (df.metric == "speed_ratio_spherical_over_cace")].copy()
    if not len(t):
        return out
    t["sweep"], t["dtype"], t["n_atoms"] = (_setting_col(t, k) for k in ("sweep", "dtype", "n_atoms"))
    t["backend"] = t["backend"].fillna("best") if "backend" in t else "best"
    t = t[(t.sweep == "atoms") & (t.backend == "best") & (t["mode"] == "energy_forces")]
    device = t["prov.device_name"] if "prov.device_name" in t else pd.Series("?", index=t.index)
    for (dtype, dev), g in t.groupby([t.dtype, device.fillna("?")], sort=True):
        for n in sorted({int(g.n_atoms.min()), int(g.n_atoms.max())}):
            r = g[g.n_atoms == n].iloc[-1]
            backends = (f"; backends CACE {r['backend_cace']}, spherical {r['backend_spherical']}"
                        if isinstance(r.get("backend_cace"), str) else "")
            load = r.get("prov.load_avg_1m")
            load = (f"; load average {load:g} on {int(r['prov.cpu_count'])} CPUs while measured"
                    if isinstance(load, (int, float)) and pd.notna(load) and pd.notna(r.get("prov.cpu_count")) else "")
            out.append(speed_verdict(f"speed, energy + forces, {n} atoms, {dtype}, {dev}", float(r["value"]),
                                     float(r.get("iqr") or 0.0), f"IQR over the round-robin repeats{backends}", load))
    return out


def _verdict_section(doc: _Doc, store: ResultsStore, df: pd.DataFrame, runs: list[dict]) -> None:
    verdicts = []
    if (df.task == "accuracy").any():
        verdicts += _accuracy_verdicts(store, df[df.task == "accuracy"])
    verdicts += front_verdicts(df)
    verdicts += _stability_verdicts(runs)
    verdicts += _speed_verdicts(df)
    if not verdicts:
        return
    doc.heading("Verdict")
    doc.para("Which descriptor is better, by how much, and how sure, task by task. A winner is named only "
             "where the 95% interval (accuracy, stability) or the IQR (speed) excludes equality; otherwise "
             "\"no clear difference\". A smoke test is a quick-budget run: it shows the pipeline working, it "
             "decides nothing (bench/report/verdict.py says how each interval is made).")
    doc.table(pd.DataFrame([v.row() for v in verdicts], columns=["comparison", "better", "difference", "interval over"]))


def build_report(results_dir, out_dir=None, *, baselines=None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ figures/) into ``out_dir`` (default: results_dir);
    ``baselines``: a baselines folder whose history is plotted too."""
    store = ResultsStore(results_dir)
    runs = store.runs(strict=True)
    records = [r for run in runs for r in run["records"]]
    if not records:
        started = sorted(store.artifacts_dir.glob("*/train-state.pt")) if store.artifacts_dir.is_dir() else []
        if started:
            raise ResultsError(f"{store.runs_dir}: no finished runs to report yet; {len(started)} training(s) stopped "
                               "part-way keep their state (artifacts/*/train-state.pt): run the same command again to "
                               "resume them")
        raise ResultsError(f"{store.runs_dir}: no results to report (run 'cace-bench run' first)")
    df = pd.DataFrame([{**{k: v for k, v in r.items()},
                        **{f"prov.{k}": v for k, v in (r.get("provenance") or {}).items() if not isinstance(v, dict)}}
                       for r in records])
    extra = df[df["extra_test"].eq(True)] if "extra_test" in df else df.iloc[:0]
    df = df.drop(index=extra.index)              # every section but the per-test-set table: the main test set
    out = Path(out_dir) if out_dir else Path(results_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = _Doc("cace-bench: Cartesian (CACE) versus spherical descriptors", out / "figures")
    tasks = set(df.task)
    doc.para("Sections: " + ", ".join(t for t in ("accuracy", "front", "timing", "stability") if t in tasks)
             + ". Numbers come from the records in " + str(Path(results_dir)) + "; every record carries its provenance.")
    _verdict_section(doc, store, df, runs)
    if "accuracy" in tasks:
        _accuracy_sections(doc, store, df[df.task == "accuracy"], extra[extra.task == "accuracy"])
    if "front" in tasks:
        front_section(doc, df)
    if "stability" in tasks:
        _stability_section(doc, store, runs)
    if "timing" in tasks:
        _timing_sections(doc, df)
    if baselines is not None:
        _history_section(doc, baselines)
    footer = _footer(df)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(doc.render_html(footer))
    md_path.write_text("\n".join(doc.md) + f"\n---\n{html.unescape(footer)}\n")
    return html_path, md_path
