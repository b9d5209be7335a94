"""The metric registry: every number a record can hold, its unit and which direction is better."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    better: str          # "lower" or "higher"
    description: str

    def is_better(self, a: float, b: float) -> bool:
        return is_better(a, b, self.better)


def is_better(a: float, b: float, better: str) -> bool:
    """Is ``a`` better than ``b`` when ``better`` is "lower" or "higher"?"""
    return a < b if better == "lower" else a > b


_METRICS = [
    Metric("energy_mae_per_atom", "meV/atom", "lower", "energy mean absolute error per atom"),
    Metric("energy_rmse_per_atom", "meV/atom", "lower", "energy root-mean-square error per atom"),
    Metric("energy_mae_per_atom_e0", "meV/atom", "lower",
           "energy MAE per atom of the trivial model: the per-element reference energies (E0) alone, same test set"),
    Metric("energy_mae", "meV", "lower", "energy mean absolute error per structure"),
    Metric("energy_rmse", "meV", "lower", "energy root-mean-square error per structure"),
    Metric("forces_mae", "meV/A", "lower", "force component mean absolute error"),
    Metric("forces_rmse", "meV/A", "lower", "force component root-mean-square error"),
    Metric("train_time", "s", "lower", "wall time of training"),
    Metric("epochs", "", "lower", "epochs trained (early stopping included)"),
    Metric("time_descriptor", "ms", "lower", "median time of one descriptor evaluation (no autograd)"),
    Metric("time_energy_forces", "ms", "lower", "median time of one energy+forces evaluation"),
    Metric("time_training_step", "ms", "lower", "median time of one energy+force loss and its weight gradient"),
    Metric("time_neighbor_list", "ms", "lower", "median time of building the neighbour list (vesin) and graph"),
    Metric("ceiling_matmul_flops_per_s", "FLOP/s", "higher", "measured square-matmul throughput (roofline roof)"),
    Metric("ceiling_copy_bytes_per_s", "B/s", "higher", "measured copy bandwidth (roofline roof)"),
    Metric("ceiling_spec_flops_per_s", "FLOP/s", "higher", "vendor peak FLOP/s of the device for the dtype"),
    Metric("ceiling_spec_bytes_per_s", "B/s", "higher", "vendor peak memory bandwidth of the device"),
    Metric("peak_memory_energy_forces", "MB", "lower", "peak memory of one energy+forces evaluation"),
    Metric("time_to_failure", "fs", "higher", "MD time until the first failure criterion fired (censored at the run length)"),
    Metric("energy_drift", "meV/atom/ps", "lower", "slope of the total energy in MD (NVE: should be ~0)"),
    Metric("rdf_error", "", "lower", "pair-weighted L1 distance of the final RDF window from the reference"),
    Metric("backend_unavailable", "", "lower", "1 where a backend could not run a (descriptor, mode) here; the record's error says why"),
    Metric("speed_ratio_spherical_over_cace", "", "higher", "time spherical / time CACE, same run (> 1: CACE faster)"),
]
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}


def metric(name: str) -> Metric:
    """The registered metric; per-element force errors ``forces_mae_<El>`` share ``forces_mae``'s entry."""
    if name in METRICS:
        return METRICS[name]
    base = name.rsplit("_", 1)[0]
    if base in ("forces_mae", "forces_rmse"):
        m = METRICS[base]
        return Metric(name, m.unit, m.better, m.description + f" on {name.rsplit('_', 1)[1]}")
    raise KeyError(f"unknown metric {name!r}; registered: {sorted(METRICS)}")
