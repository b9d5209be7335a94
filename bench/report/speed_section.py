"""The report's speed sections (headline table, sweeps, backends, memory, roofline, accuracy against
speed) and the speed verdicts (records of ``bench.tasks.timing``)."""

from __future__ import annotations

import pandas as pd

from ..kinds import COMPARED
from . import plots
from .doc import Doc, fmt, setting_col
from .verdict import NAMES, NOISY_SPREAD, Verdict, speed_verdict


def speed_section(doc: Doc, df: pd.DataFrame) -> None:
    """Speed: method, headline table, time against atoms / l_max / nu_max / channels, memory,
    roofline, and the trained potentials' accuracy against speed (with the accuracy records)."""
    t = df[df.task == "timing"].copy()
    t["sweep"] = setting_col(t, "sweep")
    t["dtype"] = setting_col(t, "dtype")
    t["n_atoms"] = setting_col(t, "n_atoms")
    t["backend"] = t["backend"].fillna("eager") if "backend" in t else "eager"   # records before backends: eager
    all_times = t[t.metric.str.startswith("time_") & t.descriptor.isin(list(COMPARED))]
    times = _fastest_backend(all_times)
    doc.heading("Speed")
    first = t[t.sweep != "ceilings"].iloc[0] if (t.sweep != "ceilings").any() else t.iloc[0]
    prov = first.get("provenance") or {}
    ver = prov.get("versions") or {}
    fused_timed = t["backend"].astype(str).str.contains("fused").any()
    doc.para(f"Device: {prov.get('device_name', '?')}"
             + (f", {prov.get('threads')} threads" if prov.get("device") == "cpu" else
                f", TF32 matmul {'on' if prov.get('tf32_matmul') else 'off'}")
             + f"; torch {ver.get('torch', '?')}"
             + (f", Triton {ver['triton']} (the fused kernels)" if ver.get("triton") and fused_timed else "")
             + f", e3nn {ver.get('e3nn', '?')}. Each point: every (descriptor, mode) "
             "call timed round-robin in one loop after warm-up, median and IQR over the repeats (CUDA events and an "
             "L2 flush on GPU). Modes: descriptor only (no autograd), energy + forces (the MD call), and a training "
             "step (energy and force loss, differentiated with respect to the weights: the double backward). The "
             "ratio spherical / CACE is the median of per-round ratios (> 1 means CACE is faster); it is the figure "
             "to compare across machines, not the absolute times.")
    repeats = setting_col(t, "repeats").dropna()
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
    return (setting_col(df, "sweep").astype(str) + "|" + setting_col(df, "overrides").astype(str) + "|"
            + df["n_atoms"].astype(str) + "|" + df["dtype"].astype(str) + "|" + df["mode"].astype(str))


def _fastest_backend(times: pd.DataFrame) -> pd.DataFrame:
    """One row per (point, descriptor, mode): the backend with the lowest median time."""
    if not len(times):
        return times
    key = _point_key(times) + "|" + times["descriptor"].astype(str)
    return times.loc[times["value"].groupby(key).idxmin().values]


def _backend_section(doc: Doc, t: pd.DataFrame, all_times: pd.DataFrame, dtype: str) -> None:
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


def _speed_for_dtype(doc: Doc, t: pd.DataFrame, times: pd.DataFrame, dtype: str) -> None:
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
        sel[sweep] = setting_col(sel, "overrides").map(lambda o: o.get(sweep))
        modes = [m for m in ("descriptor", "energy_forces", "training_step") if m in set(sel["mode"])]
        doc.heading(f"Speed against {label} ({dtype}, {int(sel.n_atoms.iloc[0])} atoms)", 3)
        r = ratios[ratios.sweep == sweep].copy()
        r[sweep] = setting_col(r, "overrides").map(lambda o: o.get(sweep))
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


def _roofline(doc: Doc, t: pd.DataFrame, atoms: pd.DataFrame, dtype: str) -> None:
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


def _pareto_section(doc: Doc, df: pd.DataFrame, t: pd.DataFrame) -> None:
    trained = t[(t.sweep == "trained") & (t.metric == "time_energy_forces")]
    acc = df[(df.task == "accuracy") & (df.metric == "forces_mae")]
    if not len(trained) or not len(acc):
        return
    acc = acc.assign(n_train=setting_col(acc, "n_train"))
    points, rows = [], []
    for r in trained.itertuples():
        a = acc[(acc.dataset == r.dataset) & (acc.descriptor == r.descriptor) & (acc.n_train == r.setting["n_train"])]
        if not len(a):
            continue
        points.append({"dataset": r.dataset, "descriptor": r.descriptor, "time_ms": r.value,
                       "forces_mae": float(a["value"].mean()), "forces_mae_std": float(a["value"].std()) if len(a) > 1 else 0.0})
        rows.append([r.dataset, NAMES[r.descriptor], f"{r.value:.1f}", fmt(points[-1]["forces_mae"], points[-1]["forces_mae_std"]),
                     str(r.setting["n_structures"]), str(r.setting["n_atoms"])])
    if not points:
        return
    doc.heading("Accuracy against speed", 3)
    doc.para("The trained potentials (largest training set) timed round-robin on the same test structures "
             "(energy + forces, float32), against their test force MAE (mean ± std over seeds).")
    doc.table(pd.DataFrame(rows, columns=["data set", "potential", "energy + forces ms", "force MAE (meV/A)",
                                          "structures", "atoms"]))
    doc.figure(plots.pareto(points), "Accuracy against speed of the trained potentials (lower left is better)")


def _ratio_cell(ratio: float, iqr: float) -> str:
    """A speed ratio with its spread; "(noisy)" where the spread is too large to decide on."""
    noisy = not iqr <= NOISY_SPREAD * abs(ratio)
    return f"{ratio:.2f} ± {iqr / 2:.2f}" + (" (noisy)" if noisy else "")


def speed_verdicts(df: pd.DataFrame) -> list[Verdict]:
    """Per (dtype, device): the headline ratio spherical / CACE of energy + forces, each side at its
    fastest backend, at the smallest and the largest system of the atoms sweep."""
    out = []
    t = df[(df.task == "timing") & (df.metric == "speed_ratio_spherical_over_cace")].copy()
    if not len(t):
        return out
    t["sweep"], t["dtype"], t["n_atoms"] = (setting_col(t, k) for k in ("sweep", "dtype", "n_atoms"))
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
