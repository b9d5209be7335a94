"""Figures for the report (matplotlib, Agg). Each returns PNG bytes."""

from __future__ import annotations

import io

import matplotlib
from ..kinds import COMPARED

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"cace": "#1f77b4", "spherical": "#d62728", "emt": "#555555", "cace-traceless": "#2ca02c"}
LABELS = {"cace": "CACE (Cartesian)", "spherical": "spherical (e3nn CG)", "emt": "EMT (reference)",
          "cace-traceless": "CACE, traceless variant"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def parity(preds: dict[str, dict]) -> bytes:
    """Energy per atom and force components, predicted against reference, one column per descriptor."""
    kinds = [k for k in COMPARED if k in preds]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.2 * len(kinds), 8), squeeze=False)
    for col, kind in enumerate(kinds):
        p = preds[kind]
        for row, (ref, pred, unit, title) in enumerate([
            (p["energy_ref"] / p["n_atoms"], p["energy_pred"] / p["n_atoms"], "eV/atom", "energy per atom"),
            (p["forces_ref"].ravel(), p["forces_pred"].ravel(), "eV/A", "force components"),
        ]):
            ax = axes[row, col]
            ax.scatter(ref, pred, s=4, alpha=0.5, color=COLORS[kind], rasterized=True)
            lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            mae = np.abs(pred - ref).mean() * 1e3
            ax.set_title(f"{LABELS[kind]}: {title}\nMAE {mae:.2f} m{unit}", fontsize=9)
            ax.set_xlabel(f"reference ({unit})")
            ax.set_ylabel(f"predicted ({unit})")
            ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return _png(fig)


def learning_curves(table, metrics: list[tuple[str, str]]) -> bytes:
    """``table``: DataFrame with descriptor, n_train, metric, mean, std."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, (name, unit) in zip(axes[0], metrics):
        for kind in COMPARED:
            t = table[(table.descriptor == kind) & (table.metric == name)].sort_values("n_train")
            if len(t):
                ax.errorbar(t.n_train, t["mean"], yerr=t["std"].fillna(0), marker="o", capsize=3,
                            color=COLORS[kind], label=LABELS[kind])
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not 1.6x10^2
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"{name} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def survival_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """{descriptor: (times_fs, fraction stable)} on one plot."""
    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    for kind, (t, frac) in curves.items():
        ax.step(t / 1000.0, frac, where="post", color=COLORS.get(kind), label=LABELS.get(kind, kind))
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("fraction of runs stable")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def rdf_overlay(r: np.ndarray, rdfs: dict[str, np.ndarray], reference: np.ndarray, title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5.2, 3.5))
    ax.plot(r, reference, color="k", lw=2, alpha=0.6, label="reference")
    for kind, g in rdfs.items():
        ax.plot(r, g, color=COLORS.get(kind), lw=1.2, label=LABELS.get(kind, kind))
    ax.set_xlabel("r (A)")
    ax.set_ylabel("g(r)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


MODE_TITLES = {"descriptor": "descriptor only", "energy_forces": "energy + forces", "training_step": "training step"}


def _plain_log_ticks(ax, axes="xy"):
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))   # labels even in a narrow range
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def sweep_lines(table, x: str, xlabel: str, *, logx: bool, modes: list[str], extra: dict | None = None) -> bytes:
    """Median time (log axis) against ``x``, one panel per mode, both descriptors; IQR as error bars.

    ``table``: DataFrame with descriptor, mode, x, value (ms), iqr. ``extra``: {label: (xs, ys)}
    drawn in grey on every panel (the neighbour list)."""
    fig, axes = plt.subplots(1, len(modes), figsize=(4.3 * len(modes), 3.6), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for kind in COMPARED:
            t = table[(table.descriptor == kind) & (table["mode"] == mode)].sort_values(x)
            if len(t):
                ax.errorbar(t[x], t["value"], yerr=t["iqr"] / 2, marker="o", ms=4, capsize=2, color=COLORS[kind],
                            label=LABELS[kind])
        for label, (xs, ys) in (extra or {}).items():
            ax.plot(xs, ys, "s--", color="#888888", ms=3, lw=1, label=label)
        ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        _plain_log_ticks(ax, "xy" if logx else "y")
        ax.set_xticks(sorted(table[x].unique()))      # the measured points, labelled plainly
        ax.set_title(MODE_TITLES.get(mode, mode), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time (ms, median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def memory_lines(table) -> bytes:
    """Peak memory of energy+forces (MB) against atoms, log-log; table: descriptor, n_atoms, value."""
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for kind in COMPARED:
        t = table[table.descriptor == kind].sort_values("n_atoms")
        if len(t):
            ax.plot(t.n_atoms, t["value"], "o-", color=COLORS[kind], label=LABELS[kind])
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xticks(sorted(table.n_atoms.unique()))
    ax.set_xlabel("atoms")
    ax.set_ylabel("peak memory, energy + forces (MB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def roofline(points: list[dict], roofs: dict, title: str) -> bytes:
    """Achieved FLOP/s against arithmetic intensity (FLOP/byte), log-log, under the device's roofs.

    points: [{"descriptor", "mode", "intensity", "flops_per_s"}]; roofs: {"measured": (flops/s,
    bytes/s), "spec": (...)} (either may be missing)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    xs = np.logspace(-2, 3, 200)
    for (name, (peak, bw)), style in zip(roofs.items(), ("-", ":")):
        ax.plot(xs, np.minimum(peak, bw * xs), style, color="k", lw=1.2,
                label=f"{name} roof: {peak / 1e9:.0f} GFLOP/s, {bw / 1e9:.0f} GB/s")
    markers = {"descriptor": "o", "energy_forces": "s", "training_step": "^"}
    for p in points:
        ax.scatter(p["intensity"], p["flops_per_s"], color=COLORS[p["descriptor"]], marker=markers.get(p["mode"], "o"),
                   s=36, zorder=3, label=f"{LABELS[p['descriptor']]}, {MODE_TITLES.get(p['mode'], p['mode'])}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, cost model)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def pareto(points: list[dict]) -> bytes:
    """Test force MAE against energy+forces time of the trained potentials, one panel per data set.

    points: [{"dataset", "descriptor", "time_ms", "forces_mae", "forces_mae_std"}]."""
    datasets = sorted({p["dataset"] for p in points})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for p in (q for q in points if q["dataset"] == ds):
            ax.errorbar(p["time_ms"], p["forces_mae"], yerr=p.get("forces_mae_std") or 0, fmt="o", ms=7, capsize=3,
                        color=COLORS[p["descriptor"]], label=LABELS[p["descriptor"]])
        ax.set_xlabel("energy + forces time (ms, median)")
        ax.set_ylabel("test force MAE (meV/A)")
        ax.set_title(f"{ds}: lower left is better", fontsize=9)
        mine = [q for q in points if q["dataset"] == ds]
        ax.set_xlim(0, 1.15 * max(q["time_ms"] for q in mine))
        ax.set_ylim(0, 1.15 * max(q["forces_mae"] + (q.get("forces_mae_std") or 0) for q in mine))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def fronts(points: dict, title: str) -> bytes:
    """Test force MAE against energy MAE per atom, one line per descriptor variant through its
    energy-weight settings (labelled w_E), seed standard deviations as bars (``bench.tasks.front``)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for variant, pts in points.items():
        e = [p.energy[0] for p in pts]
        f = [p.forces[0] for p in pts]
        ax.errorbar(e, f, xerr=[p.energy[1] for p in pts], yerr=[p.forces[1] for p in pts], marker="o", capsize=3,
                    color=COLORS.get(variant), label=LABELS.get(variant, variant))
        for p in pts:
            ax.annotate(f"{p.weight:g}", (p.energy[0], p.forces[0]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=COLORS.get(variant))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("test energy MAE (meV/atom)")
    ax.set_ylabel("test force MAE (meV/A)")
    ax.set_title(f"{title}: lower left is better (labels: final energy weight)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def history(series: dict[str, list[float]], labels: list[str]) -> bytes:
    """Tracked figures across accepted baselines: one panel per figure."""
    names = sorted(series)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        ax.plot(range(len(labels)), series[name], "o-", color="#1f77b4")
        ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=6, ha="right")
        ax.set_title(name, fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)
