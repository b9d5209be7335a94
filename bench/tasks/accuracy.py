"""Accuracy after training: both descriptors, one training loop, same data, budget and seeds.

``run(spec, store)`` trains every (seed, training-set size, descriptor) not already in the store,
evaluates the best (EMA, early-stopped) weights on the test split and writes one record per metric.
Each seed draws its own split (and initial weights); the two descriptors of a seed share both.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data import dataset_hash, fit_e0, random_split, read_isolated_energies
from ..data import load as load_frames
from ..errors import InputError
from ..graph import AtomsGraph
from ..potential import build, save_checkpoint
from ..provenance import config_hash, provenance
from ..results.store import ResultsStore
from ..train import TrainConfig, error_metrics, is_smoke, predict, train

DESCRIPTORS = ("cace", "spherical")


@dataclass(frozen=True)
class DataSpec:
    source: str                          # "builtin:NAME" or a path
    name: str | None = None              # shown in the report (default: from the source)
    read_options: dict = field(default_factory=dict)
    test_source: str | None = None       # a separate test file (else the split's test part)
    e0_source: str | None = None         # isolated-atom energies (else least squares on train)
    n_train: int | float = 0.7
    n_valid: int | float = 0.1
    n_test: int | float | None = None

    def split(self, frames, seed: int, has_test_file: bool):
        """The seeded split every task uses (no test part when a separate test file is given)."""
        return random_split(frames, train=self.n_train, valid=self.n_valid,
                            test=0 if has_test_file else self.n_test, seed=seed)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        from pathlib import Path

        return self.source.split(":", 1)[1] if self.source.startswith("builtin:") else Path(self.source).stem


@dataclass(frozen=True)
class AccuracySpec:
    data: DataSpec
    model: dict                          # {"preset": NAME} and/or descriptor keywords and "readout"
    train: TrainConfig = TrainConfig()
    seeds: tuple = (0,)
    train_sizes: tuple | None = None     # learning curve: training-set sizes (nested subsets)
    descriptors: tuple = DESCRIPTORS
    device: str = "cpu"                  # where training and evaluation run (in provenance, not in the key)

    def to_dict(self) -> dict:
        return asdict(self)


def model_kwargs(model: dict) -> dict:
    from cace.presets import preset

    kw = preset(model["preset"]) if "preset" in model else {}
    kw.update({k: v for k, v in model.items() if k != "preset"})
    return kw


@dataclass
class Prepared:
    """A data set read once for a training task: frames, graphs, elements, hashes."""
    frames: list
    test_frames: list | None
    graphs: list
    test_graphs: list | None
    elements: list
    dataset_hash: str


def prepare(data: DataSpec, cutoff: float) -> Prepared:
    frames = load_frames(data.source, data.read_options)
    test_frames = load_frames(data.test_source, data.read_options) if data.test_source else None
    elements = sorted({int(z) for a in frames + (test_frames or []) for z in a.numbers})
    graphs = [AtomsGraph.from_atoms(a, cutoff) for a in frames]
    test_graphs = [AtomsGraph.from_atoms(a, cutoff) for a in test_frames] if test_frames else None
    return Prepared(frames, test_frames, graphs, test_graphs, elements, dataset_hash(frames + (test_frames or [])))


@dataclass
class SeedSplit:
    """One seed's split of a prepared set: indices, the E0 fit and the validation / test graphs."""
    split: object
    train_idx: list
    e0: dict
    valid: list
    test: list


def seed_split(prep: Prepared, data: DataSpec, seed: int) -> SeedSplit:
    split = data.split(prep.frames, seed, has_test_file=bool(prep.test_frames))
    sizes = {"training": len(split.train), "validation": len(split.valid),
             "test": len(prep.test_frames) if prep.test_frames else len(split.test)}
    empty = [part for part, n in sizes.items() if n < 1]
    if empty:                                # checked before any training starts
        raise InputError(f"{data.source}: {len(prep.frames)} frame(s) give a split of {sizes['training']} training, "
                         f"{sizes['validation']} validation and {sizes['test']} test structures; the "
                         f"{' and '.join(empty)} part(s) would be empty: pass a file with more frames "
                         f"(at least 3), or set the split sizes")
    train_idx = list(split.train)
    if data.e0_source:
        opts = data.read_options
        e0 = read_isolated_energies(data.e0_source, energy_key=opts.get("energy_key") or "energy",
                                    energy_unit=opts.get("energy_unit") or "eV")
        missing = sorted(set(prep.elements) - set(e0))
        if missing:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in missing)
            raise InputError(f"{data.e0_source}: no isolated-atom energy for {names} (present in {data.source}): "
                             "add a single-atom frame of each, or drop --e0")
    else:
        e0 = fit_e0([prep.frames[i] for i in train_idx])
    test = prep.test_graphs if prep.test_graphs else [prep.graphs[i] for i in split.test]
    return SeedSplit(split, train_idx, e0, [prep.graphs[i] for i in split.valid], test)


def fit_and_record(store: ResultsStore, key: dict, *, kind: str, options: dict, kw: dict, cfg: TrainConfig,
                   prep: Prepared, ss: SeedSplit, subset: list, seed: int, device: str, progress: bool, desc: str,
                   log=print, extra: dict | None = None, data: DataSpec | None = None,
                   evaluate: str = "test") -> list[dict]:
    """Train ``kind`` (with descriptor ``options``) on ``subset`` under ``cfg``, evaluate it on the
    ``evaluate`` part of the split ("test", or "validation" for a recipe search, which must never see
    the test part), write its records (one per metric) under ``key`` with the weights and
    predictions as artifacts."""
    from ..metrics import metric

    f_rms = float(np.sqrt(np.mean(np.concatenate([prep.frames[i].get_forces().ravel() for i in subset]) ** 2)))
    torch.manual_seed(seed)
    pot = build(kind, elements=prep.elements, e0=ss.e0, scale=f_rms, **kw, **options)
    t0 = time.perf_counter()
    state = store.artifact_path(key, "train-state.pt")       # an interrupted training resumes from it
    if state.is_file():
        log(f"resuming {desc} from its last finished epoch ({state})")
    result = train(pot, [prep.graphs[i] for i in subset], ss.valid, cfg, seed=seed, progress=progress, desc=desc,
                   device=device, checkpoint=state)
    save_checkpoint(pot, store.artifact_path(key, "model.pt"))
    if result.interrupted:
        log(f"interrupted: best weights of {desc} kept in {store.artifact_path(key, 'model.pt')}; "
            "this run is not recorded and will be redone on resume")
        raise KeyboardInterrupt
    if evaluate not in ("test", "validation"):
        raise ValueError(f"evaluate must be 'test' or 'validation', got {evaluate!r}")
    evaluated = ss.test if evaluate == "test" else ss.valid
    pred = predict(pot, evaluated)
    np.savez_compressed(store.artifact_path(key, "predictions.npz"), **pred)
    metrics = error_metrics(pred)
    metrics["energy_mae_per_atom_e0"] = e0_reference_error(pred, ss.e0)
    metrics["train_time"] = result.wall_time_s
    metrics["epochs"] = result.epochs
    common = {
        **key, "split": ss.split.record(), "n_test": len(ss.test), "evaluated_on": evaluate,
        "stopped_by": result.stopped_by,
        "best_epoch": result.best_epoch, "n_parameters": sum(p.numel() for p in pot.parameters()),
        "n_features": pot.descriptor.n_features, "wall_time_s": time.perf_counter() - t0,
        "model": pot.config(), "train_config": cfg.to_dict(),
        "provenance": provenance(device, dtype=cfg.dtype, seed=seed), **(extra or {}),
    }
    if data is not None:                     # how the data was read: source, keys, units, index, files
        common["data"] = data_record(data, n_train=len(subset), n_valid=len(ss.valid), n_test=len(ss.test))
    records = [{**common, "metric": m, "value": v, "unit": metric(m).unit} for m, v in metrics.items()]
    store.write(key, records, artifacts={"model": "model.pt", "predictions": "predictions.npz",
                                         "history": result.history})
    state.unlink(missing_ok=True)                            # recorded: nothing left to resume
    trivial = metrics["energy_mae_per_atom"] >= metrics["energy_mae_per_atom_e0"]
    log(f"done: {desc}: {'validation ' if evaluate == 'validation' else ''}E {metrics['energy_mae_per_atom']:.2f} meV/atom"
        + (f" (NOT below the E0 reference's {metrics['energy_mae_per_atom_e0']:.2f})" if trivial else "")
        + f", F {metrics['forces_mae']:.1f} meV/A, {result.epochs} epochs ({result.stopped_by}), "
        f"{result.wall_time_s:.0f} s" + (" [short budget: a smoke test, not a finding]" if is_smoke(cfg.to_dict()) else ""))
    return records


def data_record(data: DataSpec, **sizes) -> dict:
    """What a record says of its data: the source, every read option (keys, units, --index), the
    separate test and E0 files, and the split sizes actually used."""
    return {"source": data.source, "read_options": dict(data.read_options), "test_source": data.test_source,
            "e0_source": data.e0_source or "least squares on the training split", **sizes}


def e0_reference_error(pred: dict, e0: dict) -> float:
    """Energy MAE per atom (meV/atom) of the trivial model E = sum_i E0[Z_i] on the predicted
    structures: what a trained model has to beat."""
    ends = np.cumsum(pred["n_atoms"])[:-1]
    e_triv = np.array([sum(e0.get(int(z), 0.0) for z in block) for block in np.split(pred["numbers"], ends)])
    return float(np.abs((e_triv - pred["energy_ref"]) / pred["n_atoms"]).mean() * 1e3)


def run(spec: AccuracySpec, store: ResultsStore, *, progress: bool = True, log=print) -> list[dict]:
    data = spec.data
    kw = model_kwargs(spec.model)
    prep = prepare(data, kw["cutoff"])
    cfg_hash = config_hash({"model": kw, "train": spec.train.to_dict(), "data": asdict(data)})
    records: list[dict] = []
    for seed in spec.seeds:
        ss = seed_split(prep, data, seed)
        sizes = spec.train_sizes or (len(ss.train_idx),)
        if max(sizes) > len(ss.train_idx):
            raise InputError(f"learning-curve size {max(sizes)} exceeds the {len(ss.train_idx)} training frames")
        for n_train in sizes:
            for kind in spec.descriptors:
                key = {"task": "accuracy", "descriptor": kind, "dataset": data.label, "dataset_hash": prep.dataset_hash,
                       "seed": seed, "setting": {"n_train": n_train}, "config_hash": cfg_hash}
                if store.has(key):
                    log(f"skip (done): {kind} {data.label} seed={seed} n_train={n_train}")
                    continue
                records += fit_and_record(store, key, kind=kind, options={}, kw=kw, cfg=spec.train, prep=prep, ss=ss,
                                          subset=ss.train_idx[:n_train], seed=seed, device=spec.device,
                                          progress=progress, desc=f"{kind} {data.label} s{seed} n{n_train}", log=log,
                                          data=data)
    return records
