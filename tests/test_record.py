"""Records are typed at the store's door: the unit comes from the metric registry, an unregistered
metric or a hand-written wrong unit is refused (a bug in a task, never stored), and what the report
reads round-trips."""

import json

import pytest

from bench.metrics import METRICS
from bench.results.record import Record
from bench.results.store import ResultsStore

COMMON = {"task": "toy", "descriptor": "cace", "dataset": "water-box", "seed": 0, "setting": {"n_atoms": 192},
          "provenance": {"device": "cpu"}}        # a task without a record kind: the core checks alone


def test_measured_takes_the_unit_from_the_registry_and_round_trips():
    for name in ("time_energy_forces", "ceiling_matmul_flops_per_s", "speed_ratio_spherical_over_cace", "forces_mae_O"):
        r = Record.measured(COMMON, name, 1.5, backend="eager")
        assert r.unit == (METRICS[name].unit if name in METRICS else "meV/A")
        d = r.to_dict()
        assert d["setting"] == {"n_atoms": 192} and d["backend"] == "eager" and d["provenance"] == {"device": "cpu"}
        assert Record.from_dict(json.loads(json.dumps(d))) == r


@pytest.mark.parametrize("bad, message", [
    ({"metric": "time_energy_forces", "unit": "s"}, "unit 's', but the metric registry says 'ms'"),
    ({"metric": "ceiling_copy_bytes_per_s", "unit": ""}, "registry says 'B/s'"),
    ({"metric": "speed", "unit": ""}, "unknown metric 'speed'"),
    ({"metric": "time_energy_forces", "unit": "ms", "value": "fast"}, "is not a number"),
])
def test_a_wrong_record_is_refused_and_nothing_is_written(tmp_path, bad, message):
    store = ResultsStore(tmp_path)
    key = {"task": "timing", "descriptor": "cace", "dataset": "water-box", "seed": 0, "setting": {}, "config_hash": "x"}
    good = Record.measured(COMMON, "time_energy_forces", 2.0)
    store.write(key, [good])
    before = store.path(key).read_text()
    with pytest.raises(ValueError, match=message):
        store.write(key, [good, {**COMMON, "value": 1.0, **bad}])
    assert store.path(key).read_text() == before                # the earlier result is kept whole
    with pytest.raises(ValueError, match="lacks"):
        Record.measured({"task": "toy"}, "time_energy_forces", 1.0)
    with pytest.raises(ValueError, match="shadow"):
        Record("toy", "cace", "d", 0, "time_energy_forces", 1.0, "ms", extra={"value": 2.0})


def test_each_task_s_records_carry_the_fields_of_their_kind():
    """A record's task and metric name its kind (a dataclass of the fields the task adds); a record
    lacking one, or holding one of another type, is refused; ``fields`` reads them back typed."""
    from bench.results.record import BackendFailure, CallTime, TrainingRun, Trajectory, kind_of

    assert kind_of("accuracy", "forces_mae") is TrainingRun and kind_of("tune", "forces_mae_O") is TrainingRun
    assert kind_of("stability", "time_to_failure") is Trajectory and kind_of("timing", "time_descriptor") is CallTime
    assert kind_of("timing", "backend_unavailable") is BackendFailure and kind_of("toy", "epochs") is None
    with pytest.raises(ValueError, match="no record kind"):
        kind_of("timing", "forces_mae")
    timing = {"task": "timing", "descriptor": "cace", "dataset": "water-box", "seed": 0, "setting": {}, "config_hash": "h",
              "mode": "energy_forces", "iqr": 0.1, "samples": [1.0, 2.0], "n_parameters": 10}
    r = Record.measured(timing, "time_energy_forces", 1.5, backend="fused", checked_against="eager")
    assert r.fields == CallTime(setting={}, config_hash="h", mode="energy_forces", iqr=0.1, samples=[1.0, 2.0],
                                n_parameters=10, backend="fused", checked_against="eager")
    missing = {k: v for k, v in timing.items() if k != "samples"}
    with pytest.raises(ValueError, match="a CallTime record lacks 'samples'"):
        Record.measured(missing, "time_energy_forces", 1.5)
    with pytest.raises(ValueError, match="n_parameters is str"):
        Record.measured({**timing, "n_parameters": "10"}, "time_energy_forces", 1.5)
    with pytest.raises(ValueError, match="n_parameters is bool"):
        Record.measured({**timing, "n_parameters": True}, "time_energy_forces", 1.5)
    stab = {"task": "stability", "descriptor": "cace", "dataset": "d", "seed": 0, "setting": {}, "config_hash": "h",
            "failed": False, "reason": None, "length_fs": 400, "spec": {}, "engine": "batched"}
    assert Record.measured(stab, "time_to_failure", 400.0).fields.reason is None    # None where the kind allows it
    with pytest.raises(ValueError, match="failed is NoneType"):
        Record.measured({**stab, "failed": None}, "time_to_failure", 400.0)
