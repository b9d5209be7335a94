"""Figures for the report (matplotlib, Agg). Each returns PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"cace": "#1f77b4", "spherical": "#d62728", "emt": "#555555"}
LABELS = {"cace": "CACE (Cartesian)", "spherical": "spherical (e3nn CG)", "emt": "EMT (reference)"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def parity(preds: dict[str, dict]) -> bytes:
    """Energy per atom and force components, predicted against reference, one column per descriptor."""
    kinds = [k for k in ("cace", "spherical") if k in preds]
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
        for kind in ("cace", "spherical"):
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


def timing_bars(table) -> bytes:
    """Energy+forces time per descriptor and system size (linear axis from zero)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sizes = sorted(table.n_atoms.unique())
    width = 0.38
    for k, kind in enumerate(("cace", "spherical")):
        t = table[table.descriptor == kind].set_index("n_atoms").reindex(sizes)
        ax.bar(np.arange(len(sizes)) + (k - 0.5) * width, t["value"], width, color=COLORS[kind], label=LABELS[kind])
    ax.set_xticks(range(len(sizes)), [f"{n} atoms" for n in sizes])
    ax.set_ylabel("energy + forces (ms, median)")
    ax.set_ylim(bottom=0)  # linear from zero: bar heights compare honestly
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
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
