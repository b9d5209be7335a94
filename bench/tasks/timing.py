"""Timing task: energy+forces time and peak memory, both descriptors side by side, into the store.

This first version times a preset on the water box and its supercells (``bench.benchmarks.water``);
records: ``time_energy_forces`` (ms, median) and ``peak_memory_energy_forces`` (MB) per descriptor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..provenance import config_hash
from ..results.store import ResultsStore


@dataclass(frozen=True)
class TimingSpec:
    sizes: tuple = (1, 2)          # supercell repeats of the 192-atom water box
    dtype: str = "float32"
    threads: int = 2
    repeats: int = 10
    device: str = "cpu"


def run(spec: TimingSpec, store: ResultsStore, *, log=print) -> list[dict]:
    from ..benchmarks.water import format_table
    from ..benchmarks.water import run as water_run

    records = []
    for size in spec.sizes:
        key = {"task": "timing", "descriptor": "cace+spherical", "dataset": "water-box", "seed": 0,
               "setting": {"repeat": size, "preset": "water", "dtype": spec.dtype, "threads": spec.threads,
                           "device": spec.device}, "config_hash": config_hash(asdict(spec))}
        if store.has(key):
            log(f"skip (done): timing water x{size}")
            continue
        result = water_run((size,), spec.threads, spec.dtype, spec.device, spec.repeats)
        log(format_table(result))
        run_records = []
        for row in result["rows"]:
            setting = {**key["setting"], "n_atoms": row["n_atoms"], "n_edges": row["n_edges"]}
            common = {"task": "timing", "descriptor": row["descriptor"], "dataset": "water-box", "seed": 0,
                      "setting": setting, "config_hash": key["config_hash"], "n_parameters": row["n_parameters"],
                      "n_features": row["n_features"], "provenance": result["provenance"]}
            run_records.append({**common, "metric": "time_energy_forces", "value": row["median_ms"], "unit": "ms",
                                "iqr": row["iqr_ms"], "samples": row["times_ms"]})
            run_records.append({**common, "metric": "peak_memory_energy_forces", "value": row["peak_mb"], "unit": "MB"})
        store.write(key, run_records)
        records += run_records
    return records
