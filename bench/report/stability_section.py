"""The report's stability-in-MD sections (survival curves, RDFs, failure table) and the stability
verdicts (records of ``bench.tasks.stability``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..kinds import COMPARED
from ..stats import trapezoid
from ..train import is_smoke
from . import plots
from .doc import Doc
from .verdict import NAMES, Verdict, survival_verdict


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


def stability_section(doc: Doc, runs: list[dict]) -> None:
    """Per data set: survival curves and RDFs at each temperature, and one table of failures, times to
    failure, drift and RDF error per (temperature, potential)."""
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
                             f"{np.median(ttf):.0f}", f"{trapezoid(frac, times) / length:.2f}",
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


def stability_verdicts(runs: list[dict]) -> list[Verdict]:
    """Per data set: CACE against spherical on time to failure, replicas paired by (training seed,
    temperature, start frame, velocity seed, engine)."""
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
