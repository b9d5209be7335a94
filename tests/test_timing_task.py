"""The timing task: what it records, resume, where a sweep stops, and the timed calls themselves."""

import pytest
import torch

from bench.results.store import ResultsStore
from bench.tasks import timing
from bench.tasks.timing import TimingSpec, mode_call, setup


def quiet(*a, **k):
    pass


SMALL = dict(n_radial=4, n_embed=2, readout=(8,))


def test_records_of_a_sweep_with_provenance_and_cost(tmp_path, monkeypatch):
    monkeypatch.setattr(timing, "setup", lambda kind, overrides=None, **kw: setup(kind, overrides={**SMALL, **(overrides or {})}, **kw))
    spec = TimingSpec(sizes=(1,), l_max=(1, 2), repeats=2, warmup=1, memory=False)
    store = ResultsStore(tmp_path)
    records = timing.run(spec, store, log=quiet)
    sweeps = {(r["setting"].get("sweep"), str(r["setting"].get("overrides"))) for r in records}
    assert sweeps == {("ceilings", "None"), ("atoms", "{}"), ("l_max", "{'l_max': 1}"), ("l_max", "{'l_max': 2}")}
    for point in ("{}", "{'l_max': 1}", "{'l_max': 2}"):
        recs = [r for r in records if str(r["setting"].get("overrides")) == point]
        for kind in ("cace", "spherical"):
            for mode in timing.MODES:
                (rec,) = [r for r in recs if r["descriptor"] == kind and r["metric"] == f"time_{mode}"]
                assert rec["value"] > 0 and len(rec["samples"]) == 2 and rec["unit"] == "ms"
                assert rec["cost"]["flops"] > 0 and rec["cost"]["achieved_flops_per_s"] > 0
                assert rec["provenance"]["versions"]["e3nn"] and rec["provenance"]["threads"] == 2
        ratios = [r for r in recs if r["metric"] == "speed_ratio_spherical_over_cace"]
        assert sorted(r["mode"] for r in ratios) == sorted(timing.MODES)
        assert any(r["metric"] == "time_neighbor_list" for r in recs)
    l1 = next(r for r in records if r["setting"].get("overrides") == {"l_max": 1} and r["metric"] == "time_descriptor")
    assert l1["setting"]["model"]["l_max"] == 1 and l1["setting"]["n_atoms"] == 192
    assert {r["metric"] for r in records if r["setting"].get("sweep") == "ceilings"} >= {
        "ceiling_matmul_flops_per_s", "ceiling_copy_bytes_per_s"}
    # resume: nothing is redone
    assert timing.run(spec, store, log=quiet) == []


def test_atoms_sweep_stops_at_slow_points_and_out_of_memory(tmp_path, monkeypatch):
    calls = []

    def fake_point(spec, sweep, overrides, repeat, dtype):
        calls.append(repeat)
        if repeat == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        row = {"mode": "energy_forces", "median_s": 0.5 * repeat, "iqr_s": 0.0, "times_s": [0.5], "flops": 1.0,
               "bytes": 1.0, "intensity": 1.0, "achieved_flops_per_s": 1.0, "n_parameters": 1, "n_features": 1}
        return {"n_atoms": 192 * repeat**3, "n_edges": 1, "max_neighbors": 1, "memory": {}, "model": {},
                "rows": [{**row, "descriptor": k} for k in ("cace", "spherical")],
                "ratios": {"energy_forces": {"median": 1.0, "iqr": 0.0}}, "neighbor_list": {"median_s": 0.0, "iqr_s": 0.0}}

    monkeypatch.setattr(timing, "time_point", fake_point)
    monkeypatch.setattr("bench.tasks.reference.ceilings", lambda *a, **k: {"matmul_flops_per_s": 1.0})
    logs = []
    timing.run(TimingSpec(sizes=(1, 2, 3, 4), max_seconds_per_call=10.0), ResultsStore(tmp_path / "a"), log=logs.append)
    assert calls == [1, 2, 3] and any("out of memory" in m for m in logs)
    calls.clear()
    # x1 takes 0.5 s; x2 (8x the atoms) would take about 4 s > 3 s: not attempted
    timing.run(TimingSpec(sizes=(1, 2, 3), max_seconds_per_call=3.0), ResultsStore(tmp_path / "b"), log=logs.append)
    assert calls == [1] and any("x2 would take about 4 s" in m for m in logs)

    def broken(*a, **k):
        raise RuntimeError("shape mismatch")          # not memory: a real error propagates

    monkeypatch.setattr(timing, "time_point", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        timing.run(TimingSpec(sizes=(1,)), ResultsStore(tmp_path / "c"), log=quiet)


@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_timed_calls_do_what_they_say(kind):
    pot, graph = setup(kind, preset="water", overrides=SMALL, dtype="float64")
    feats = mode_call(pot, graph, "descriptor")()
    assert feats.shape == (graph.n_atoms, pot.descriptor.n_features) and not feats.requires_grad
    out = mode_call(pot, graph, "energy_forces")()
    assert out["forces"].shape == (graph.n_atoms, 3)
    seen = []
    weight = pot.descriptor.mix0.weight
    weight.register_hook(lambda g: seen.append(g))
    loss = mode_call(pot, graph, "training_step")()
    assert torch.isfinite(loss) and len(seen) == 1 and seen[0].abs().sum() > 0     # a weight gradient was taken
    assert all(p.grad is None for p in pot.parameters())                           # and cleared for the next call
    with pytest.raises(KeyError, match="unknown timing mode"):
        mode_call(pot, graph, "inference")
