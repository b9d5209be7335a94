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

from ..data import dataset_hash, fit_e0, random_split, read_isolated_energies, split_counts, take_isolated_atoms
from ..data import load as load_frames
from ..errors import InputError
from ..graph import AtomsGraph
from ..potential import build, save_checkpoint
from ..provenance import config_hash, provenance
from ..results.record import Record
from ..results.store import ResultsStore
from ..train import TrainConfig, error_metrics, is_smoke, predict, train
from ..kinds import COMPARED

DESCRIPTORS = COMPARED


@dataclass(frozen=True)
class DataSpec:
    source: str                          # "builtin:NAME" or a path
    name: str | None = None              # shown in the report (default: from the source)
    read_options: dict = field(default_factory=dict)
    test_source: str | None = None       # a separate test file (else the split's test part)
    e0_source: str | None = None         # isolated-atom energies: a file, "auto" (the data's own
                                         # isolated-atom frames), else least squares on train
    n_train: int | float = 0.7
    n_valid: int | float = 0.1
    n_test: int | float | None = None
    valid_source: str | None = None      # a separate validation file (else the split's validation part)
    extra_tests: tuple = ()              # further test sets, (name, path) each, reported separately
    test_label: str | None = None        # the main test file's name in the report (default: its stem)

    def split(self, frames, seed: int, has_test_file: bool):
        """The seeded split every task uses (no test part when a separate test file is given, no
        validation part when a validation file is)."""
        return random_split(frames, train=self.n_train, valid=0 if self.valid_source else self.n_valid,
                            test=0 if has_test_file else self.n_test, seed=seed)

    @property
    def test_name(self) -> str:
        """The name of the main test set: ``test_label``, its file's stem, or "split" (the split's test part)."""
        from pathlib import Path

        return self.test_label or (Path(self.test_source).stem if self.test_source else "split")

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
    backend: str = "eager"               # how the descriptor runs in training (bench.backends; in records, not the key)

    def to_dict(self) -> dict:
        return asdict(self)


def model_kwargs(model: dict) -> dict:
    """A task's model spec ({"preset": NAME} and/or keywords) as descriptor keywords and readout."""
    from cace.presets import with_overrides

    return with_overrides(model.get("preset"), {k: v for k, v in model.items() if k != "preset"})


@dataclass
class Prepared:
    """A data set read once for a training task: frames, graphs, elements, hashes."""
    frames: list
    test_frames: list | None
    graphs: list
    test_graphs: list | None
    elements: list
    dataset_hash: str
    valid_graphs: list | None = None                       # from a separate validation file
    extra_tests: dict = field(default_factory=dict)        # name -> graphs of a further test set
    e0: dict | None = None                                 # from the data's isolated-atom frames (--e0 auto)


@dataclass
class DataParts:
    """The frames of a data spec as every task reads them: the data (less its isolated-atom frames
    under --e0 auto, which become ``e0``), the test, validation and further test files."""
    frames: list
    test: list | None
    valid: list | None
    extra_tests: dict
    e0: dict | None

    @property
    def all_frames(self) -> list:
        return self.frames + (self.test or []) + (self.valid or []) + [a for f in self.extra_tests.values() for a in f]


def read_parts(data: DataSpec) -> DataParts:
    """Read every file of ``data`` with its read options (the same split indices in every task)."""
    frames = load_frames(data.source, data.read_options)
    e0 = None
    if data.e0_source == "auto":
        frames, e0 = take_isolated_atoms(frames, data.source)
    read = lambda path: load_frames(path, data.read_options) if path else None       # noqa: E731
    names = [data.test_name] + [name for name, _ in data.extra_tests]
    if len(set(names)) != len(names):
        raise InputError(f"test sets need distinct names, got {', '.join(names)}: name them with --test NAME=PATH")
    return DataParts(frames, read(data.test_source), read(data.valid_source),
                     {name: read(path) for name, path in data.extra_tests}, e0)


def prepare(data: DataSpec, cutoff: float) -> Prepared:
    parts = read_parts(data)
    elements = sorted({int(z) for a in parts.all_frames for z in a.numbers})
    graphs_of = lambda fs: [AtomsGraph.from_atoms(a, cutoff) for a in fs] if fs else None     # noqa: E731
    return Prepared(parts.frames, parts.test, graphs_of(parts.frames), graphs_of(parts.test), elements,
                    dataset_hash(parts.all_frames), graphs_of(parts.valid),
                    {name: graphs_of(fs) for name, fs in parts.extra_tests.items()}, parts.e0)


@dataclass
class SeedSplit:
    """One seed's split of a prepared set: indices, the E0 fit and the validation / test graphs."""
    split: object
    train_idx: list
    e0: dict
    valid: list
    test: list


def _frames_needed(data: DataSpec, prep: Prepared) -> str:
    """For a split given in fractions, ' (this split, 80% training, 10% validation and the rest
    test, needs at least 8 frames)': the fewest frames that leave no part empty; '' for counts."""
    valid_file, test_file = bool(prep.valid_graphs), bool(prep.test_frames)
    sizes = {"training": data.n_train, "validation": None if valid_file else data.n_valid,
             "test": None if test_file else data.n_test}
    if not any(isinstance(v, float) for v in sizes.values()):
        return ""
    for n in range(1, 10_001):
        n_train, n_valid, n_test = split_counts(n, train=data.n_train, valid=0 if valid_file else data.n_valid,
                                                test=0 if test_file else data.n_test)
        if (n_train + n_valid + n_test <= n and n_train >= 1 and (n_valid >= 1 or valid_file)
                and (n_test >= 1 or test_file)):
            words = [f"{v:.0%} {k}" if isinstance(v, float) else f"{v} {k}" for k, v in sizes.items() if v is not None]
            if not test_file and data.n_test is None:
                words.append("the rest test")
            return f" (this split, {', '.join(words[:-1])} and {words[-1]}, needs at least {n} frames)"
    return ""


def seed_split(prep: Prepared, data: DataSpec, seed: int) -> SeedSplit:
    split = data.split(prep.frames, seed, has_test_file=bool(prep.test_frames))
    sizes = {"training": len(split.train), "validation": len(prep.valid_graphs or split.valid),
             "test": len(prep.test_frames) if prep.test_frames else len(split.test)}
    empty = [part for part, n in sizes.items() if n < 1]
    if empty:                                # checked before any training starts
        raise InputError(f"{data.source}: {len(prep.frames)} frame(s) give a split of {sizes['training']} training, "
                         f"{sizes['validation']} validation and {sizes['test']} test structures; the "
                         f"{' and '.join(empty)} part(s) would be empty: pass a file with more frames"
                         f"{_frames_needed(data, prep)}, or a separate file for each empty part (--valid PATH, "
                         f"--test PATH)")
    train_idx = list(split.train)
    if prep.e0 is not None:                  # --e0 auto: the data's own isolated-atom frames
        e0 = _complete_e0(prep.e0, prep.elements, data, f"the isolated-atom frames of {data.source}")
    elif data.e0_source:
        opts = data.read_options
        e0 = _complete_e0(read_isolated_energies(data.e0_source, energy_key=opts.get("energy_key") or "energy",
                                                 energy_unit=opts.get("energy_unit") or "eV"),
                          prep.elements, data, data.e0_source)
    else:
        e0 = fit_e0([prep.frames[i] for i in train_idx])
    test = prep.test_graphs if prep.test_graphs else [prep.graphs[i] for i in split.test]
    valid = prep.valid_graphs if prep.valid_graphs else [prep.graphs[i] for i in split.valid]
    return SeedSplit(split, train_idx, e0, valid, test)


def _complete_e0(e0: dict, elements: list, data: DataSpec, where: str) -> dict:
    """``e0`` if it covers every element of the data, else a one-line error naming the missing."""
    missing = sorted(set(elements) - set(e0))
    if missing:
        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in missing)
        raise InputError(f"{where}: no isolated-atom energy for {names} (present in {data.source}): "
                         "add a single-atom frame of each, or drop --e0")
    return e0


def fit_and_record(store: ResultsStore, key: dict, *, kind: str, options: dict, kw: dict, cfg: TrainConfig,
                   prep: Prepared, ss: SeedSplit, subset: list, seed: int, device: str, progress: bool, desc: str,
                   log=print, extra: dict | None = None, data: DataSpec | None = None,
                   evaluate: str = "test", backend: str = "eager") -> list[dict]:
    """Train ``kind`` (with descriptor ``options``) on ``subset`` under ``cfg``, evaluate it on the
    ``evaluate`` part of the split ("test", or "validation" for a recipe search, which must never see
    the test part), write its records (one per metric) under ``key`` with the weights and
    predictions as artifacts; returns them as stored (flat dicts)."""
    f_rms = float(np.sqrt(np.mean(np.concatenate([prep.frames[i].get_forces().ravel() for i in subset]) ** 2)))
    torch.manual_seed(seed)
    pot = build(kind, elements=prep.elements, e0=ss.e0, scale=f_rms, **kw, **options)
    t0 = time.perf_counter()
    state = store.artifact_path(key, "train-state.pt")       # an interrupted training resumes from it
    if state.is_file():
        log(f"resuming {desc} from its last finished epoch ({state})")
    result = train(pot, [prep.graphs[i] for i in subset], ss.valid, cfg, seed=seed, progress=progress, desc=desc,
                   device=device, checkpoint=state, backend=backend)
    save_checkpoint(pot, store.artifact_path(key, "model.pt"))
    if result.interrupted:
        done = len(result.history)                       # epochs finished, this run and the ones it resumed
        if state.is_file():
            log(f"interrupted: {desc} after {done} of {cfg.max_epochs} epochs ({result.wall_time_s:.0f} s); its "
                f"state is in {state} (best weights so far in {store.artifact_path(key, 'model.pt')}): the same "
                "command resumes it from there")
        else:
            log(f"interrupted: {desc} in its first epoch, before any state was saved: the same command starts it again")
        raise KeyboardInterrupt
    if evaluate not in ("test", "validation"):
        raise ValueError(f"evaluate must be 'test' or 'validation', got {evaluate!r}")
    evaluated = ss.test if evaluate == "test" else ss.valid
    trained = {int(z) for i in subset for z in prep.frames[i].numbers}    # the elements training saw
    extra_tests = prep.extra_tests if evaluate == "test" else {}
    untrained = {name: untrained_elements(graphs, trained)                # per evaluated set, for records and log
                 for name, graphs in [(evaluate, evaluated), *extra_tests.items()]}
    # the validation part chose the best epoch: where it is not the evaluated set, its own fields
    chose = untrained_elements(ss.valid, trained) if evaluate == "test" else untrained[evaluate]
    pred = predict(pot, evaluated)
    np.savez_compressed(store.artifact_path(key, "predictions.npz"), **pred)
    metrics = _metrics(pred, ss.e0)
    metrics["train_time"] = result.wall_time_s
    metrics["epochs"] = result.epochs
    common = {
        **key, "split": ss.split.record(), "n_test": len(ss.test), "evaluated_on": evaluate,
        "stopped_by": result.stopped_by,
        "best_epoch": result.best_epoch, "n_parameters": sum(p.numel() for p in pot.parameters()),
        "n_features": pot.descriptor.n_features, "wall_time_s": time.perf_counter() - t0,
        "model": pot.config(), "train_config": cfg.to_dict(), "backend": backend,
        "provenance": provenance(device, dtype=cfg.dtype, seed=seed), **(extra or {}),
        **untrained[evaluate],
        "validation_untrained_elements": chose["untrained_elements"],
        "n_validation_untrained_structures": chose["n_untrained_structures"],
    }
    if data is not None:                     # how the data was read: source, keys, units, index, files
        common["data"] = data_record(data, n_train=len(subset), n_valid=len(ss.valid), n_test=len(ss.test))
    if evaluate == "test":
        common["test_set"] = data.test_name if data is not None else "split"
    records = [Record.measured(common, m, v) for m, v in metrics.items()]
    artifacts = {"model": "model.pt", "predictions": "predictions.npz", "history": result.history}
    further = {}                             # further test sets (--test, repeated): each its own records
    for name, graphs in extra_tests.items():
        extra_pred = predict(pot, graphs)
        np.savez_compressed(store.artifact_path(key, f"predictions-{name}.npz"), **extra_pred)
        artifacts[f"predictions-{name}"] = f"predictions-{name}.npz"
        further[name] = (len(graphs), _metrics(extra_pred, ss.e0))
        records += [Record.measured(common, m, v, test_set=name, extra_test=True, n_test=len(graphs),
                                    **untrained[name])
                    for m, v in further[name][1].items()]
    store.write(key, records, artifacts=artifacts)
    state.unlink(missing_ok=True)                            # recorded: nothing left to resume
    trivial = metrics["energy_mae_per_atom"] >= metrics["energy_mae_per_atom_e0"]
    log(f"done: {desc}: {'validation ' if evaluate == 'validation' else ''}E {metrics['energy_mae_per_atom']:.2f} meV/atom"
        + (f" (NOT below the E0 reference's {metrics['energy_mae_per_atom_e0']:.2f})" if trivial else "")
        + f", F {metrics['forces_mae']:.1f} meV/A, {result.epochs} epochs ({result.stopped_by}), "
        f"{result.wall_time_s:.0f} s" + (" [short budget: a smoke test, not a finding]" if is_smoke(cfg.to_dict()) else ""))
    for name, (n, m) in further.items():
        log(f"      test set {name} ({n} structures): E {m['energy_mae_per_atom']:.2f} meV/atom, "
            f"F {m['forces_mae']:.1f} meV/A")
    sizes = {evaluate: len(evaluated), **{name: n for name, (n, _) in further.items()}}
    for name, u in untrained.items():
        if u["untrained_elements"]:
            log(f"caution: {desc}: {untrained_words(u, sizes[name], name)}")
    if evaluate == "test" and chose["untrained_elements"]:
        log(f"caution: {desc}: {untrained_words(chose, len(ss.valid), 'validation', chose_epoch=True)}")
    return [r.to_dict() for r in records]


def untrained_elements(graphs: list, trained: set) -> dict:
    """The record fields saying which elements of the evaluated structures no training structure
    had (their element embeddings were never trained) and in how many of those structures:
    {"untrained_elements": [Z, ...], "n_untrained_structures": n}."""
    held = [{int(z) for z in g.numbers.tolist()} for g in graphs]
    missing = sorted(set().union(*held) - trained) if held else []
    return {"untrained_elements": missing, "n_untrained_structures": sum(1 for h in held if h - trained)}


def untrained_words(fields: dict, n_structures: int, where: str, chose_epoch: bool = False) -> str:
    """'3 of the 70 test structures hold Cr, Nb, which no training structure has: ...'; with
    ``chose_epoch``, said of the validation structures that chose the best epoch."""
    from ase.data import chemical_symbols

    names = ", ".join(chemical_symbols[z] for z in fields["untrained_elements"])
    what = ("the best epoch was chosen partly on the errors of untrained element embeddings" if chose_epoch else
            "their errors measure untrained element embeddings, not the descriptors")
    return (f"{fields['n_untrained_structures']} of the {n_structures} {where} structures hold {names}, which no "
            f"training structure has: {what} (more training structures with those elements would fix it)")


def _metrics(pred: dict, e0: dict) -> dict:
    """The error metrics of one evaluation, with the trivial E0-only model's energy error beside."""
    out = error_metrics(pred)
    out["energy_mae_per_atom_e0"] = e0_reference_error(pred, e0)
    return out


def data_record(data: DataSpec, **sizes) -> dict:
    """What a record says of its data: the source, every read option (keys, units, --index), the
    separate test and E0 files, and the split sizes actually used."""
    e0 = {None: "least squares on the training split", "auto": "the data's isolated-atom frames"}
    return {"source": data.source, "read_options": dict(data.read_options), "test_source": data.test_source,
            "valid_source": data.valid_source, "extra_tests": [list(t) for t in data.extra_tests],
            "e0_source": e0.get(data.e0_source, data.e0_source), **sizes}


def e0_reference_error(pred: dict, e0: dict) -> float:
    """Energy MAE per atom (meV/atom) of the trivial model E = sum_i E0[Z_i] on the predicted
    structures: what a trained model has to beat."""
    ends = np.cumsum(pred["n_atoms"])[:-1]
    e_triv = np.array([sum(e0.get(int(z), 0.0) for z in block) for block in np.split(pred["numbers"], ends)])
    return float(np.abs((e_triv - pred["energy_ref"]) / pred["n_atoms"]).mean() * 1e3)


def train_unit(root, key: dict, kind: str, options: dict, kw: dict, cfg: TrainConfig, prep: Prepared, data: DataSpec,
               seed: int, n_train: int, device: str, desc: str, progress: bool, log, extra: dict | None = None,
               evaluate: str = "test", backend: str = "eager") -> list[dict]:
    """One training run as a unit of work (``bench.executor``): the seed's split of the prepared
    data, the first ``n_train`` of its training structures, trained, evaluated and recorded."""
    ss = seed_split(prep, data, seed)
    return fit_and_record(ResultsStore(root), key, kind=kind, options=options, kw=kw, cfg=cfg, prep=prep, ss=ss,
                          subset=ss.train_idx[:n_train], seed=seed, device=device, progress=progress, desc=desc,
                          log=log, extra=extra, data=data, evaluate=evaluate, backend=backend)


def training_unit(store: ResultsStore, key: dict, desc: str, kind: str, options: dict, kw: dict, cfg: TrainConfig,
                  prep, data: DataSpec, seed: int, n_train: int, device: str, progress: bool, log,
                  extra: dict | None = None, evaluate: str = "test", backend: str = "eager"):
    """``train_unit`` as a ``bench.executor.Unit`` under ``key`` (one GPU when ``device`` is CUDA);
    ``prep``: the prepared data, wrapped in ``executor.Shared``."""
    from ..executor import Unit

    return Unit(key, desc, train_unit, (str(store.root), key, kind, options, kw, cfg, prep, data, seed, n_train,
                                        device, desc, progress, log, extra, evaluate, backend),
                num_gpus=1 if str(device).startswith("cuda") else 0)


def records_of(store: ResultsStore, keys: list) -> list[dict]:
    """The stored records of the units with these keys (those that finished)."""
    return [r for key in keys for r in (store.get(key) or [])]


def units(spec: AccuracySpec, store: ResultsStore, *, progress: bool = True, log=print) -> list:
    """Every (seed, training-set size, descriptor) training run of ``spec`` as a unit of work.
    The data is read, and every seed's split checked, here, before any unit runs."""
    from ..backends import check_training_backend
    from ..executor import Shared

    check_training_backend(spec.backend, spec.device)
    data = spec.data
    kw = model_kwargs(spec.model)
    prep = prepare(data, kw["cutoff"])
    shared = Shared(prep)
    cfg_hash = config_hash({"model": kw, "train": spec.train.to_dict(), "data": asdict(data)})
    out = []
    for seed in spec.seeds:
        ss = seed_split(prep, data, seed)
        sizes = spec.train_sizes or (len(ss.train_idx),)
        if max(sizes) > len(ss.train_idx):
            raise InputError(f"learning-curve size {max(sizes)} exceeds the {len(ss.train_idx)} training frames")
        for n_train in sizes:
            for kind in spec.descriptors:
                key = {"task": "accuracy", "descriptor": kind, "dataset": data.label, "dataset_hash": prep.dataset_hash,
                       "seed": seed, "setting": {"n_train": n_train}, "config_hash": cfg_hash}
                desc = f"{kind} {data.label} s{seed} n{n_train}"
                out.append(training_unit(store, key, desc, kind, {}, kw, spec.train, shared, data, seed, n_train,
                                         spec.device, progress, log, backend=spec.backend))
    return out


def run(spec: AccuracySpec, store: ResultsStore, *, progress: bool = True, log=print, executor: str = "local",
        address: str | None = None, jobs: int = 1) -> list[dict]:
    """Train every unit of ``spec`` not already in ``store`` (``executor``: "local", ``jobs`` at once,
    or "ray" with ``address``); returns the records written now."""
    from ..executor import run_units

    todo = units(spec, store, progress=progress and executor == "local" and jobs == 1, log=log)
    return records_of(store, run_units(todo, store, executor=executor, address=address, log=log, jobs=jobs)["ran"])
