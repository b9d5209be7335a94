"""Build the report from a results folder: records in, HTML + Markdown out (no network, no JS)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import metric
from ..results.store import ResultsError, ResultsStore, run_id
from . import plots

SUMMARY_METRICS = ["energy_mae_per_atom", "energy_rmse_per_atom", "energy_mae", "forces_mae", "forces_rmse",
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


def _accuracy_sections(doc: _Doc, store: ResultsStore, acc: pd.DataFrame) -> None:
    acc = acc.assign(n_train=acc["setting"].map(lambda s: s.get("n_train")))
    for dataset, d in acc.groupby("dataset", sort=True):
        doc.heading(f"Accuracy: {dataset}")
        n_max = int(d.n_train.max())
        top = d[d.n_train == n_max]
        seeds = sorted(top.seed.unique())
        first = top.iloc[0]
        doc.para(f"Test-set errors after training on {n_max} structures (mean ± std over {len(seeds)} seed(s): "
                 f"{', '.join(map(str, seeds))}; {int(first['n_test'])} test structures). "
                 f"Better side in bold. Both descriptors: same split, training loop, budget and readout.")
        tc = first.get("train_config") or {}
        if tc:
            doc.para(f"Budget: up to {tc.get('max_epochs')} epochs, batch {tc.get('batch_size')}, Adam lr {tc.get('lr')}, "
                     f"EMA {tc.get('ema_decay')}, energy weight {' -> '.join(map(str, tc.get('energy_weights', [])))}, "
                     f"force weight {tc.get('force_weight')}; {first['n_parameters']} parameters each.")
            if tc.get("max_epochs", 0) <= 50 or len(seeds) < 3:
                doc.para("Caution: a short budget or fewer than 3 seeds (the --quick run). These numbers show the "
                         "pipeline working on real training runs; they are not a comparison to decide on.")
        stats = top.groupby(["metric", "descriptor"])["value"].agg(["mean", "std"]).reset_index()
        per_elem = sorted(m for m in stats.metric.unique() if m.startswith("forces_mae_"))
        rows, bold = [], set()
        for i, m in enumerate([m for m in SUMMARY_METRICS if m in set(stats.metric)] + per_elem):
            info = metric(m)
            vals = {k: stats[(stats.metric == m) & (stats.descriptor == k)] for k in ("cace", "spherical")}
            cells = [f"{m} ({info.unit})"]
            means = {}
            for j, k in enumerate(("cace", "spherical")):
                v = vals[k]
                if len(v):
                    means[k] = float(v["mean"].iloc[0])
                    cells.append(_fmt(means[k], float(v["std"].iloc[0])))
                else:
                    cells.append("-")
            if len(means) == 2 and means["cace"] != means["spherical"]:
                best = "cace" if info.is_better(means["cace"], means["spherical"]) else "spherical"
                bold.add((len(rows), 1 if best == "cace" else 2))
            rows.append(cells)
        for label, col in (("parameters", "n_parameters"), ("features per atom", "n_features")):
            rows.append([label] + [str(int(top[top.descriptor == k][col].iloc[0])) if (top.descriptor == k).any() else "-"
                                   for k in ("cace", "spherical")])
        doc.table(pd.DataFrame(rows, columns=["metric", "CACE", "spherical"]), bold)
        preds = {}
        for kind in ("cace", "spherical"):
            sel = top[(top.descriptor == kind) & (top.seed == seeds[0])]
            if len(sel):
                r = sel.iloc[0]
                key = {k: r[k] for k in ("task", "descriptor", "dataset", "dataset_hash", "seed", "setting", "config_hash")}
                key["seed"] = int(key["seed"])
                path = store.artifacts_dir / run_id(key) / "predictions.npz"
                if path.is_file():
                    preds[kind] = dict(np.load(path))
        if preds:
            doc.figure(plots.parity(preds), f"{dataset}: predicted against reference on the test set "
                                            f"(seed {seeds[0]}, {n_max} training structures)")
        if d.n_train.nunique() > 1:
            curve = (d[d.metric.isin(["forces_mae", "energy_mae_per_atom"])]
                     .groupby(["descriptor", "n_train", "metric"])["value"].agg(["mean", "std"]).reset_index())
            doc.figure(plots.learning_curves(curve, [("forces_mae", "meV/A"), ("energy_mae_per_atom", "meV/atom")]),
                       f"{dataset}: learning curves (test MAE against training-set size, mean ± std over seeds)")


def _timing_section(doc: _Doc, timing: pd.DataFrame) -> None:
    doc.heading("Speed: energy + forces")
    t = timing[timing.metric == "time_energy_forces"].copy()
    t["n_atoms"] = t["setting"].map(lambda s: s.get("n_atoms"))
    mem = timing[timing.metric == "peak_memory_energy_forces"].copy()
    mem["n_atoms"] = mem["setting"].map(lambda s: s.get("n_atoms"))
    first = t.iloc[0]
    prov = first.get("prov.device_name", "")
    doc.para(f"Preset '{first['setting'].get('preset')}', {first['setting'].get('dtype')}, on {prov} with "
             f"{first['setting'].get('threads')} threads: median over repeats after warm-up, both descriptors timed "
             f"alternately in one run. The ratio spherical / CACE is the figure to compare across machines "
             f"(> 1 means CACE is faster).")
    rows = []
    for n in sorted(t.n_atoms.unique()):
        c = t[(t.n_atoms == n) & (t.descriptor == "cace")]["value"]
        s = t[(t.n_atoms == n) & (t.descriptor == "spherical")]["value"]
        mc = mem[(mem.n_atoms == n) & (mem.descriptor == "cace")]["value"]
        ms = mem[(mem.n_atoms == n) & (mem.descriptor == "spherical")]["value"]
        rows.append([str(n), f"{c.iloc[0]:.1f}", f"{s.iloc[0]:.1f}", f"{s.iloc[0] / c.iloc[0]:.2f}",
                     f"{mc.iloc[0]:.0f}" if len(mc) else "-", f"{ms.iloc[0]:.0f}" if len(ms) else "-"])
    doc.table(pd.DataFrame(rows, columns=["atoms", "CACE ms", "spherical ms", "ratio sph/CACE",
                                          "CACE peak MB", "spherical peak MB"]))
    doc.figure(plots.timing_bars(t), "Energy + forces time per evaluation (median)")


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
                 f"the RDF error exceeds {spec['rdf_threshold']} (periodic).")
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


def build_report(results_dir, out_dir=None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ figures/) into ``out_dir`` (default: results_dir)."""
    store = ResultsStore(results_dir)
    runs = store.runs(strict=True)
    records = [r for run in runs for r in run["records"]]
    if not records:
        raise ResultsError(f"{store.runs_dir}: no results to report (run 'cace-bench run' first)")
    df = pd.DataFrame([{**{k: v for k, v in r.items()},
                        **{f"prov.{k}": v for k, v in (r.get("provenance") or {}).items() if not isinstance(v, dict)}}
                       for r in records])
    out = Path(out_dir) if out_dir else Path(results_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    doc = _Doc("cace-bench: Cartesian (CACE) versus spherical descriptors", out / "figures")
    tasks = set(df.task)
    doc.para("Sections: " + ", ".join(t for t in ("accuracy", "timing", "stability") if t in tasks)
             + ". Numbers come from the records in " + str(Path(results_dir)) + "; every record carries its provenance.")
    if "accuracy" in tasks:
        _accuracy_sections(doc, store, df[df.task == "accuracy"])
    if "stability" in tasks:
        _stability_section(doc, store, runs)
    if "timing" in tasks:
        _timing_section(doc, df[df.task == "timing"])
    footer = _footer(df)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(doc.render_html(footer))
    md_path.write_text("\n".join(doc.md) + f"\n---\n{html.unescape(footer)}\n")
    return html_path, md_path
