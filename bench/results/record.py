"""A record: one measured number, what it measures, where it came from, and its unit.

Every task writes its results as records (``ResultsStore.write``) and the report reads records only.
The fields every record has are typed here; what a task adds (the split and model of a training
run, the backend and samples of a timing, the failure reason of a trajectory) travels in ``extra``
and is stored beside them, flat. The unit is the metric registry's (``bench.metrics``), never
written by hand: a record whose metric is not registered, or whose stored unit is not its metric's,
is refused at the write (a bug in the task, not bad input).
"""

from __future__ import annotations

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
