"""Build the report from a results folder: records in, HTML + Markdown out (no network, no JS).
Each task's section and verdicts live in their own module; this one assembles them."""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

import pandas as pd

from ..results.store import ResultsError, ResultsStore
from . import plots
from .accuracy_section import accuracy_section, accuracy_verdicts
from .doc import Doc
from .front_section import front_section, front_verdicts
from .speed_section import speed_section, speed_verdicts
from .stability_section import stability_section, stability_verdicts


def _history_section(doc: Doc, baselines) -> None:
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


def _verdict_section(doc: Doc, store: ResultsStore, df: pd.DataFrame, runs: list[dict]) -> None:
    verdicts = []
    if (df.task == "accuracy").any():
        verdicts += accuracy_verdicts(store, df[df.task == "accuracy"])
    verdicts += front_verdicts(df)
    verdicts += stability_verdicts(runs)
    verdicts += speed_verdicts(df)
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
    doc = Doc("cace-bench: Cartesian (CACE) versus spherical descriptors", out / "figures")
    tasks = set(df.task)
    doc.para("Sections: " + ", ".join(t for t in ("accuracy", "front", "timing", "stability") if t in tasks)
             + ". Numbers come from the records in " + str(Path(results_dir)) + "; every record carries its provenance.")
    _verdict_section(doc, store, df, runs)
    if "accuracy" in tasks:
        accuracy_section(doc, store, df[df.task == "accuracy"], extra[extra.task == "accuracy"])
    if "front" in tasks:
        front_section(doc, df)
    if "stability" in tasks:
        stability_section(doc, runs)
    if "timing" in tasks:
        speed_section(doc, df)
    if baselines is not None:
        _history_section(doc, baselines)
    footer = _footer(df)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(doc.render_html(footer))
    md_path.write_text("\n".join(doc.md) + f"\n---\n{html.unescape(footer)}\n")
    return html_path, md_path
