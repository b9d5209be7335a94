"""A record: one measured number, what it measures, where it came from, and its unit.

Every task writes its results as records (``ResultsStore.write``) and the report reads records only.
The fields every record has are typed here; what a task adds (the split and model of a training
run, the backend and samples of a timing, the failure reason of a trajectory) travels in ``extra``
and is stored beside them, flat. The unit is the metric registry's (``bench.metrics``), never
written by hand: a record whose metric is not registered, or whose stored unit is not its metric's,
is refused at the write (a bug in the task, not bad input).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from ..metrics import metric

CORE = ("task", "descriptor", "dataset", "seed", "metric", "value", "unit", "provenance")
IDENTITY = CORE[:4]             # what a task's common fields must name


@dataclass(frozen=True)
class Record:
    task: str                   # accuracy | stability | timing | tune | ...
    descriptor: str             # cace | spherical | spherical/cace (a ratio) | emt | vesin | device
    dataset: str
    seed: int
    metric: str                 # a name in bench.metrics (or a per-element force metric)
    value: float | int | None
    unit: str                   # the metric's unit
    provenance: dict | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            want = metric(self.metric).unit
        except KeyError as err:
            raise ValueError(f"record of task {self.task!r}: {err.args[0]}") from None
        if self.unit != want:
            raise ValueError(f"record {self.task}/{self.descriptor}/{self.metric}: unit {self.unit!r}, "
                             f"but the metric registry says {want!r}")
        if self.value is not None and not isinstance(self.value, (int, float)):
            raise ValueError(f"record {self.task}/{self.metric}: value {self.value!r} is not a number")
        clash = set(CORE) & set(self.extra)
        if clash:
            raise ValueError(f"record {self.task}/{self.metric}: extra fields {sorted(clash)} shadow the core fields")
        kind = kind_of(self.task, self.metric)
        if kind is not None:
            _check_fields(kind, self.extra, f"record {self.task}/{self.descriptor}/{self.metric}")

    @property
    def fields(self):
        """The task's own fields as their kind's dataclass (``kind_of``), or None for a task without one."""
        kind = kind_of(self.task, self.metric)
        if kind is None:
            return None
        names = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: v for k, v in self.extra.items() if k in names})

    @classmethod
    def measured(cls, common: dict, metric_name: str, value, **extra) -> "Record":
        """``metric_name`` = ``value`` in the registry's unit, with the task's ``common`` fields (task,
        descriptor, dataset, seed, provenance; any others, and ``extra``, go to ``extra``)."""
        fields = {k: v for k, v in {**common, **extra}.items() if k not in ("metric", "value", "unit")}
        missing = [k for k in IDENTITY if k not in fields]
        if missing:
            raise ValueError(f"record of {metric_name!r} lacks {missing}")
        core = {k: fields.pop(k) for k in IDENTITY}
        prov = fields.pop("provenance", None)
        return cls(**core, metric=metric_name, value=value, unit=metric(metric_name).unit, provenance=prov,
                   extra=fields)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """The record of a stored (flat) dict; checks it as the constructor does."""
        missing = [k for k in CORE if k not in d and k != "provenance"]
        if missing:
            raise ValueError(f"record lacks {missing}: {sorted(d)}")
        return cls(**{k: d.get(k) for k in CORE}, extra={k: v for k, v in d.items() if k not in CORE})

    def to_dict(self) -> dict:
        """The flat dict the store writes and the report reads."""
        out = {"task": self.task, "descriptor": self.descriptor, "dataset": self.dataset, "seed": self.seed,
               **self.extra, "metric": self.metric, "value": self.value, "unit": self.unit}
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out


# ---- record kinds: the fields each task adds beside the core ones ---------------------------------
#
# A record's task and metric name its kind (``kind_of``); the kind is a dataclass whose fields
# without a default must be in the record's ``extra``, each of its annotated type (checked at the
# write: a task that forgets one is a bug, found before the file is touched). Fields not named by the
# kind may travel too (a task's further details); tasks without a kind (tests' toy records) carry
# the core fields only.

@dataclass(frozen=True)
class TrainingRun:
    """accuracy, front and tune: one trained model's errors on its test (or validation) set."""
    setting: dict                       # {"n_train": ...} (front: also "final_energy_weight")
    config_hash: str
    dataset_hash: str
    split: dict                         # the split's indices and sizes
    n_test: int
    evaluated_on: str                   # "test" | "validation" (a recipe search)
    stopped_by: str                     # max_epochs | early_stopping | time
    best_epoch: int
    n_parameters: int
    n_features: int
    wall_time_s: float
    model: dict                         # the potential's config
    train_config: dict
    data: dict | None = None            # how the data was read (source, keys, units, files)
    test_set: str | None = None
    recipe: dict | None = None          # front, tune: the recipe trained with
    tuning: dict | None = None          # front after a search: what was searched and chosen
    extra_test: bool | None = None      # a further --test set's record
    backend: str | None = None          # how the descriptor ran in training (bench.backends): eager, fused


@dataclass(frozen=True)
class Trajectory:
    """stability: one MD trajectory's time to failure, energy drift or RDF error."""
    setting: dict                       # temperature, start, md_seed, ensemble (and engine, batched)
    config_hash: str
    failed: bool
    reason: str | None                  # non-finite | temperature | min-distance | bond | rdf | error: ...
    length_fs: float
    spec: dict                          # the StabilitySpec (backend included)
    engine: str                         # batched | ase


@dataclass(frozen=True)
class CallTime:
    """timing: the median time of one (descriptor, backend, mode) call, ms."""
    setting: dict
    config_hash: str
    mode: str                           # descriptor | energy_forces | training_step
    iqr: float
    samples: list
    n_parameters: int
    backend: str | None = None          # the trained potentials' timing runs eager and names none
    cost: dict | None = None            # the cost model's FLOPs and bytes
    n_features: int | None = None
    checked_against: str | None = None  # the backend its result was checked against (None: eager itself)


@dataclass(frozen=True)
class SpeedRatio:
    """timing: spherical / CACE, the median of per-round ratios."""
    setting: dict
    config_hash: str
    iqr: float
    mode: str
    backend: str | None = None          # "best" (each side at its fastest), a backend, or none (trained)
    backend_cace: str | None = None
    backend_spherical: str | None = None


@dataclass(frozen=True)
class BackendFailure:
    """timing: what a backend could not run, and why."""
    setting: dict
    config_hash: str
    backend: str
    mode: str
    error: str


@dataclass(frozen=True)
class PeakMemory:
    setting: dict
    config_hash: str
    backend: str
    mode: str


@dataclass(frozen=True)
class NeighborListTime:
    setting: dict
    config_hash: str
    iqr: float


@dataclass(frozen=True)
class Ceiling:
    """timing: a measured device ceiling (matrix-product FLOP/s, copy bandwidth)."""
    setting: dict
    config_hash: str


def kind_of(task: str, metric_name: str):
    """The record kind (a dataclass above) of a record of ``task`` measuring ``metric_name``; None for
    a task without kinds. A timing metric outside the known families is an error."""
    if task in ("accuracy", "front", "tune"):
        return TrainingRun
    if task == "stability":
        return Trajectory
    if task != "timing":
        return None
    if metric_name == "time_neighbor_list":
        return NeighborListTime
    if metric_name.startswith("time_"):
        return CallTime
    for prefix, kind in (("speed_ratio_", SpeedRatio), ("backend_unavailable", BackendFailure),
                         ("peak_memory_", PeakMemory), ("ceiling_", Ceiling)):
        if metric_name.startswith(prefix):
            return kind
    raise ValueError(f"timing record of {metric_name!r}: no record kind for this metric (bench.results.record)")


def _allowed(annotation) -> tuple:
    """The runtime types an annotation admits (int admits no bool; float admits int)."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) \
        is typing.Union else (annotation,)
    out = []
    for a in args:
        a = typing.get_origin(a) or a
        out += {float: [float, int], list: [list, tuple], type(None): [type(None)]}.get(a, [a])
    return tuple(out)


def _check_fields(kind, extra: dict, what: str) -> None:
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in extra:
            if required:
                raise ValueError(f"{what}: a {kind.__name__} record lacks {f.name!r}")
            continue
        value, allowed = extra[f.name], _allowed(hints[f.name])
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ValueError(f"{what}: {f.name} is {type(value).__name__} {value!r:.60}, a {kind.__name__} "
                             f"wants {' or '.join(t.__name__ for t in allowed)}")
