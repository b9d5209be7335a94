"""Speed of the trained potentials, for the accuracy-versus-speed (Pareto) plot.

For every data set with finished accuracy runs, the two potentials trained on the largest
training set (first seed) are loaded from their checkpoints and timed round-robin on the same
batch of test structures (energy+forces, the MD call). The records sit beside the accuracy
records of the same runs, so the report can place each potential at (time, test error).
"""

from __future__ import annotations

import torch

from ..graph import AtomsGraph, collate
from ..potential import load_checkpoint
from ..provenance import provenance
from ..results.record import Record
from ..results.store import ResultsStore, run_id
from .accuracy import DESCRIPTORS as KINDS
from .measure import paired_ratio, time_round_robin


def _trained_pair(store: ResultsStore, label: str) -> dict | None:
    """{kind: accuracy run key} for the largest n_train and first seed with both descriptors done."""
    runs = [r["key"] for r in store.runs() if r["key"]["task"] == "accuracy" and r["key"]["dataset"] == label]
    by_setting = {}
    for key in runs:
        by_setting.setdefault((key["setting"]["n_train"], key["seed"]), {})[key["descriptor"]] = key
    complete = [(n, s) for (n, s), kinds in by_setting.items() if all(k in kinds for k in KINDS)]
    if not complete:
        return None
    n_max = max(n for n, _ in complete)
    seed = min(s for n, s in complete if n == n_max)
    return by_setting[(n_max, seed)]


def run(data_spec, store: ResultsStore, *, device: str = "cpu", threads: int = 2, repeats: int = 10,
        warmup: int = 3, max_structures: int = 8, log=print) -> list[dict]:
    """Time the trained pair of ``data_spec`` (a ``DataSpec``); [] when accuracy has not run."""
    from .accuracy import read_parts

    label = data_spec.label
    pair = _trained_pair(store, label)
    if pair is None:
        log(f"skip: no trained pair for {label} (run accuracy first)")
        return []
    acc_key = pair["cace"]
    key = {"task": "timing", "descriptor": "cace+spherical", "dataset": label, "seed": acc_key["seed"],
           "setting": {"sweep": "trained", "n_train": acc_key["setting"]["n_train"], "device": device,
                       "threads": threads, "dtype": "float32", "repeats": repeats},
           "config_hash": acc_key["config_hash"]}
    if store.has(key):
        log(f"skip (done): trained-model timing {label}")
        return []
    torch.set_num_threads(threads)
    parts = read_parts(data_spec)                # as the accuracy task read them: the same split indices
    frames = parts.frames
    if parts.test:
        test = parts.test
    else:
        split = data_spec.split(frames, acc_key["seed"], has_test_file=False)
        test = [frames[i] for i in split.test]
    test = test[:max_structures]
    pots = {k: load_checkpoint(store.artifacts_dir / run_id(pair[k]) / "model.pt").to(device=device) for k in KINDS}
    cutoff = pots["cace"].descriptor.cutoff
    dtype = next(pots["cace"].parameters()).dtype
    graph = collate([AtomsGraph.from_atoms(a, cutoff, dtype=dtype, device=device) for a in test])
    timing = time_round_robin({k: (lambda p=p: p(graph)) for k, p in pots.items()}, device=device, warmup=warmup,
                              repeats=repeats)
    ratio = paired_ratio(timing, "spherical", "cace")
    prov = provenance(device, dtype=str(dtype).replace("torch.", ""), threads=threads)
    setting = {**key["setting"], "n_atoms": graph.n_atoms, "n_edges": graph.n_edges, "n_structures": len(test)}
    base = {"task": "timing", "dataset": label, "seed": key["seed"], "setting": setting,
            "config_hash": key["config_hash"], "provenance": prov, "mode": "energy_forces"}
    recs = [Record.measured(base, "time_energy_forces", 1e3 * timing[k]["median_s"], descriptor=k,
                            iqr=1e3 * timing[k]["iqr_s"], samples=[1e3 * t for t in timing[k]["times_s"]],
                            n_parameters=sum(p.numel() for p in pots[k].parameters())) for k in KINDS]
    recs.append(Record.measured(base, "speed_ratio_spherical_over_cace", ratio["median"], descriptor="spherical/cace",
                                iqr=ratio["iqr"]))
    store.write(key, recs)
    log(f"trained {label} ({len(test)} test structures, {graph.n_atoms} atoms): CACE {recs[0].value:.1f} ms, "
        f"spherical {recs[1].value:.1f} ms, ratio sph/CACE {ratio['median']:.2f}")
    return [r.to_dict() for r in recs]
