"""Records are typed at the store's door: the unit comes from the metric registry, an unregistered
metric or a hand-written wrong unit is refused (a bug in a task, never stored), and what the report
reads round-trips."""

import json

import pytest

from bench.metrics import METRICS
from bench.results.record import Record
from bench.results.store import ResultsStore

COMMON = {"task": "timing", "descriptor": "cace", "dataset": "water-box", "seed": 0, "setting": {"n_atoms": 192},
          "provenance": {"device": "cpu"}}


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
        Record.measured({"task": "timing"}, "time_energy_forces", 1.0)
    with pytest.raises(ValueError, match="shadow"):
        Record("timing", "cace", "d", 0, "time_energy_forces", 1.0, "ms", extra={"value": 2.0})
