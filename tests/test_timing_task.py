"""The timing task: what it records, resume, where a sweep stops, and the timed calls themselves."""

import pytest
import torch

from bench.errors import InputError
from bench.nn import neighbor_sum_triton as nst
from bench.results.store import ResultsStore
from bench.tasks import timing
from bench.tasks.timing import TimingSpec, mode_call, setup
from bench.testing.requirements import needs_compile, needs_fused_kernels_on_cpu


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
                assert rec["provenance"]["versions"]["triton"] == (nst.triton.__version__ if nst.triton else None)
        ratios = [r for r in recs if r["metric"] == "speed_ratio_spherical_over_cace"]
        assert sorted(r["mode"] for r in ratios) == sorted(timing.MODES)
        assert any(r["metric"] == "time_neighbor_list" for r in recs)
    l1 = next(r for r in records if r["setting"].get("overrides") == {"l_max": 1} and r["metric"] == "time_descriptor")
    assert l1["setting"]["model"]["l_max"] == 1 and l1["setting"]["n_atoms"] == 192
    assert {r["metric"] for r in records if r["setting"].get("sweep") == "ceilings"} >= {
        "ceiling_matmul_flops_per_s", "ceiling_copy_bytes_per_s"}
    # resume: nothing is redone
    assert timing.run(spec, store, log=quiet) == []


def test_a_backend_that_cannot_run_is_recorded_and_the_headline_uses_the_rest(tmp_path, monkeypatch):
    """compile-cudagraphs cannot run on the CPU: one failure record per (descriptor, mode), with the
    reason; the eager rows and the headline ratio are still there, naming the backend they used."""
    monkeypatch.setattr(timing, "setup", lambda kind, overrides=None, **kw: setup(kind, overrides={**SMALL, **(overrides or {})}, **kw))
    spec = TimingSpec(sizes=(1,), repeats=2, warmup=1, memory=False, backends=("eager", "compile-cudagraphs"))
    records = timing.run(spec, ResultsStore(tmp_path), log=quiet)
    failed = [r for r in records if r["metric"] == "backend_unavailable"]
    assert sorted((r["descriptor"], r["mode"]) for r in failed) == sorted(
        (k, m) for k in ("cace", "spherical") for m in timing.MODES)
    assert all(r["backend"] == "compile-cudagraphs" and "needs CUDA" in r["error"] for r in failed)
    times = [r for r in records if r["metric"].startswith("time_") and r["descriptor"] in ("cace", "spherical")]
    assert len(times) == 6 and {r["backend"] for r in times} == {"eager"}
    best = [r for r in records if r["metric"] == "speed_ratio_spherical_over_cace" and r["backend"] == "best"]
    assert len(best) == 3 and all(r["backend_cace"] == r["backend_spherical"] == "eager" for r in best)
    assert all(r["setting"]["backends"] == ["eager", "compile-cudagraphs"] for r in records if r["setting"].get("sweep") == "atoms")
    from bench.report import build_report

    _, md = build_report(tmp_path, tmp_path / "rep")
    text = md.read_text()
    assert "### Backends (float32)" in text and "compile-cudagraphs" in text and "needs CUDA" in text


def test_a_backend_with_wrong_results_is_recorded_and_never_timed(tmp_path, monkeypatch):
    """A backend whose forces differ from eager's (as compile-fused did on an H100, with wrong CSR
    rows) gets a failure record naming the error, and no timing, no ratio; its training step too
    (checked by its forces and the force loss's weight gradient, now that fused can train)."""
    import bench.backends

    class Skewed:                                  # a "compile" backend whose forces are 1% off
        def __init__(self, pot):
            self.pot = pot

        def __call__(self, graph, **kw):
            out = dict(self.pot(graph, **kw))
            out["forces"] = out["forces"] * 1.01
            return out

        def features(self, graph):
            return self.pot.features(graph)

        def zero_grad(self, **kw):
            self.pot.zero_grad(**kw)

    real = bench.backends.with_backend
    monkeypatch.setattr(bench.backends, "with_backend", lambda pot, b: Skewed(pot) if b == "compile" else real(pot, b))
    monkeypatch.setattr(timing, "setup", lambda kind, overrides=None, **kw: setup(kind, overrides={**SMALL, **(overrides or {})}, **kw))
    spec = TimingSpec(sizes=(1,), modes=("descriptor", "energy_forces", "training_step"), repeats=2, warmup=1,
                      memory=False, backends=("eager", "compile"))
    records = timing.run(spec, ResultsStore(tmp_path), log=quiet)
    failed = [r for r in records if r["metric"] == "backend_unavailable"]
    assert sorted((r["descriptor"], r["mode"]) for r in failed) == [
        (k, m) for k in ("cace", "spherical") for m in ("energy_forces", "training_step")]
    assert all("wrong result" in r["error"] for r in failed)
    assert all("forces 1.0e-02" in r["error"] for r in failed if r["mode"] == "energy_forces")
    # a training step is checked by its forces and the force loss's gradient with respect to the weights
    assert all("forces 1.0e-02" in r["error"] and "force_loss_gradient" in r["error"]
               for r in failed if r["mode"] == "training_step")
    timed = {(r["descriptor"], r["backend"], r["mode"]) for r in records if r["metric"].startswith("time_")
             and r["descriptor"] in ("cace", "spherical")}
    assert ("cace", "compile", "descriptor") in timed and ("cace", "compile", "energy_forces") not in timed
    assert ("cace", "eager", "training_step") in timed and ("cace", "compile", "training_step") not in timed


def test_headline_ratio_takes_each_side_at_its_fastest_backend():
    rounds = 5
    timing_result = {f"{k}/{b}/energy_forces": {"median_s": t, "iqr_s": 0.0, "times_s": [t] * rounds}
                     for (k, b), t in {("cace", "eager"): 2.0, ("cace", "compile"): 1.0,
                                       ("spherical", "eager"): 1.5, ("spherical", "compile"): 3.0}.items()}
    spec = TimingSpec(modes=("energy_forces",), backends=("eager", "compile"))
    best, by_backend = timing._ratios(timing_result, spec)
    assert best["energy_forces"]["backend_cace"] == "compile" and best["energy_forces"]["backend_spherical"] == "eager"
    assert best["energy_forces"]["median"] == pytest.approx(1.5)
    assert by_backend["eager"]["energy_forces"]["median"] == pytest.approx(0.75)
    assert by_backend["compile"]["energy_forces"]["median"] == pytest.approx(3.0)


def test_atoms_sweep_stops_at_slow_points_and_out_of_memory(tmp_path, monkeypatch):
    calls = []

    def fake_point(spec, sweep, overrides, repeat, dtype, runners=None):
        calls.append(repeat)
        if repeat == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        row = {"mode": "energy_forces", "median_s": 0.5 * repeat, "iqr_s": 0.0, "times_s": [0.5], "flops": 1.0,
               "bytes": 1.0, "intensity": 1.0, "achieved_flops_per_s": 1.0, "n_parameters": 1, "n_features": 1}
        return {"n_atoms": 192 * repeat**3, "n_edges": 1, "max_neighbors": 1, "memory": {}, "model": {},
                "rows": [{**row, "descriptor": k, "backend": "eager"} for k in ("cace", "spherical")],
                "ratios": {"energy_forces": {"median": 1.0, "iqr": 0.0, "backend_cace": "eager", "backend_spherical": "eager"}},
                "neighbor_list": {"median_s": 0.0, "iqr_s": 0.0}}

    monkeypatch.setattr(timing, "time_point", fake_point)
    monkeypatch.setattr("bench.tasks.reference.ceilings", lambda *a, **k: {"matmul_flops_per_s": 1.0})
    logs = []
    timing.run(TimingSpec(sizes=(1, 2, 3, 4), max_seconds_per_call=10.0), ResultsStore(tmp_path / "a"), log=logs.append)
    assert calls == [1, 2, 3] and any("out of memory" in m for m in logs)
    calls.clear()
    # x1 takes 0.5 s; x2 (8x the atoms) would take about 4 s > 3 s: not attempted
    timing.run(TimingSpec(sizes=(1, 2, 3), max_seconds_per_call=3.0), ResultsStore(tmp_path / "b"), log=logs.append)
    assert calls == [1] and any("every backend at x2 is predicted over 3.0 s" in m for m in logs)
    logs.clear()
    # a rerun reads x1's time from the store, so it stops there again instead of timing x2
    assert timing.run(TimingSpec(sizes=(1, 2, 3), max_seconds_per_call=3.0), ResultsStore(tmp_path / "b"),
                      log=logs.append) == []
    assert calls == [1] and any("every backend at x2 is predicted over 3.0 s" in m for m in logs)

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
    with pytest.raises(InputError, match="unknown timing mode"):
        mode_call(pot, graph, "inference")


def test_quick_timing_on_cuda_leaves_the_compiled_backends_to_the_full_run():
    """A quick sweep builds ten models, and a compiled backend compiles each (15-25 s a compile on
    an H200): quick on CUDA times eager and fused; the full run, and any --backend given, every one."""
    from bench.backends import BACKENDS
    from bench.tasks.presets import timing_spec

    assert timing_spec(quick=True, device="cuda").backends == ("eager", "fused")
    assert timing_spec(quick=True, device="cpu").backends == ("eager",)
    assert timing_spec(quick=False, device="cuda").backends == BACKENDS
    assert timing_spec(quick=True, device="cuda", backends=("compile",)).backends == ("compile",)


def test_a_slow_or_out_of_memory_backend_drops_out_of_the_sweep_while_the_others_go_on(tmp_path, monkeypatch):
    """The million-atom point: eager, predicted too slow (or out of memory) at the next size, is
    not timed there (a failure record says why) while a faster backend is; the sweep stops only when
    every backend is out."""
    calls = []

    def fake_point(spec, sweep, overrides, repeat, dtype, runners=None):
        calls.append((repeat, spec.backends))
        per = {"eager": 0.5, "compile": 0.05}
        row = {"mode": "energy_forces", "iqr_s": 0.0, "times_s": [0.5], "flops": 1.0, "bytes": 1.0, "intensity": 1.0,
               "achieved_flops_per_s": 1.0, "n_parameters": 1, "n_features": 1}
        rows = [{**row, "descriptor": k, "backend": b, "median_s": per[b] * repeat**3}
                for k in ("cace", "spherical") for b in spec.backends]
        return {"n_atoms": 192 * repeat**3, "n_edges": 1, "max_neighbors": 1, "memory": {}, "model": {}, "rows": rows,
                "ratios": {}, "failures": [], "neighbor_list": {"median_s": 0.0, "iqr_s": 0.0}}

    monkeypatch.setattr(timing, "time_point", fake_point)
    monkeypatch.setattr("bench.tasks.reference.ceilings", lambda *a, **k: {"matmul_flops_per_s": 1.0})
    logs = []
    store = ResultsStore(tmp_path / "a")
    timing.run(TimingSpec(sizes=(1, 2, 3), backends=("eager", "compile"), modes=("energy_forces",),
                          max_seconds_per_call=3.0), store, log=logs.append)
    # x1: both; x2: eager predicted 4 s > 3 s, compile 0.4 s; x3: compile predicted 0.05 * 27 = 1.35 s
    assert calls == [(1, ("eager", "compile")), (2, ("compile",)), (3, ("compile",))]
    skipped = [r for r in store.records() if r["metric"] == "backend_unavailable" and r["setting"]["repeat"] == 2]
    assert {(r["descriptor"], r["backend"]) for r in skipped} == {("cace", "eager"), ("spherical", "eager")}
    assert all("predicted at about 4.0 s > 3.0 s" in r["error"] for r in skipped)


@needs_fused_kernels_on_cpu
@needs_compile
def test_where_eager_runs_out_of_memory_the_others_are_checked_against_the_fused_backend(monkeypatch):
    """Eager out of memory is a failure record, not the end of the point: the other backends are
    checked against the fused eager backend (itself checked against eager at every smaller point),
    a wrong result is named with what it was checked against, and where no reference fits nothing
    is timed unchecked."""
    from types import SimpleNamespace

    from bench.potential import build

    def fake_mode_call(pot, graph, mode, results):
        def call():
            value = results[getattr(pot, "backend", "eager")]
            if value is None:
                raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")
            return {"energy": torch.tensor([value]), "forces": torch.full((1, 3), value)}
        return call

    pots = {k: build(k, elements=[1, 8], cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=1, nu_max=1, n_layers=0,
                     readout=(2,)) for k in ("cace", "spherical")}
    spec = TimingSpec(backends=("eager", "compile", "fused", "compile-fused"), modes=("energy_forces",))

    def run(results):
        monkeypatch.setattr(timing, "mode_call", lambda p, g, m: fake_mode_call(p, g, m, results))
        graph = SimpleNamespace(dtype=torch.float32)      # what the parity check reads of the graph
        return timing._backend_calls({k: (p, graph) for k, p in pots.items()}, spec, {})

    calls, failures, checked = run({"eager": None, "compile": 1.0, "fused": 1.0, "compile-fused": 1.0})
    assert {f["backend"] for f in failures} == {"eager"} and all(f["error"] == "out of memory" for f in failures)
    assert set(calls) == {f"{k}/{b}/energy_forces" for k in pots for b in ("compile", "fused", "compile-fused")}
    assert {checked[c] for c in calls if c.split("/")[1] != "fused"} == {"fused"}
    assert checked["cace/fused/energy_forces"] == "fused (the reference here)"
    calls, failures, checked = run({"eager": None, "compile": 2.0, "fused": 1.0, "compile-fused": 1.0})
    wrong = [f for f in failures if f["backend"] == "compile"]
    assert len(wrong) == 2 and all("differs from fused" in f["error"] for f in wrong)
    calls, failures, checked = run({"eager": None, "compile": 1.0, "fused": None, "compile-fused": 1.0})
    assert calls == {} and all(f["error"] == "out of memory" or f["error"].startswith("not checked: no reference")
                               for f in failures)
    calls, failures, checked = run({"eager": 1.0, "compile": 1.0, "fused": 1.0, "compile-fused": 1.0})
    assert failures == [] and set(checked.values()) == {"eager"} and len(calls) == 8


def test_a_point_where_nothing_fits_or_can_be_checked_ends_the_sweep_as_out_of_memory(monkeypatch):
    """Every backend out of memory, or left without a reference to be checked against: the point is
    out of memory (the sweep stops there), not an empty point written as if timed."""
    failures = [{"descriptor": "cace", "backend": "eager", "mode": "energy_forces", "error": "out of memory"},
                {"descriptor": "cace", "backend": "compile", "mode": "energy_forces",
                 "error": "not checked: no reference backend (eager, fused) fits in memory here, so it is not timed"}]
    monkeypatch.setattr(timing, "_backend_calls", lambda setups, spec, runners: ({}, failures, {}))
    spec = TimingSpec(sizes=(1,), modes=("energy_forces",), backends=("eager", "compile"))
    with pytest.raises(MemoryError, match="every backend of both descriptors at 192 atoms"):
        timing.time_point(spec, "atoms", {}, 1, "float32")


def test_the_report_says_what_was_checked_against_what_and_from_which_size_a_backend_was_out(tmp_path):
    """A point where eager did not fit: its rows name the fused reference, the report says so, and
    the failure table gives each reason with the first size it applied from."""
    from bench.report import build_report

    spec = TimingSpec(sizes=(1, 2), modes=("energy_forces",), backends=("eager", "fused"), repeats=3)
    store = ResultsStore(tmp_path / "res")
    row = {"mode": "energy_forces", "iqr_s": 0.001, "times_s": [0.1, 0.1, 0.1], "flops": 1.0, "bytes": 1.0,
           "intensity": 1.0, "achieved_flops_per_s": 1.0, "n_parameters": 1, "n_features": 1}
    for repeat, backends, reference in ((1, ("eager", "fused"), "eager"), (2, ("fused",), "fused (the reference here)")):
        rows = [{**row, "descriptor": k, "backend": b, "median_s": 0.1 * repeat**3 * (1.2 if k == "cace" else 1.0),
                 "checked_against": None if b == "eager" else reference} for k in ("cace", "spherical") for b in backends]
        point = {"n_atoms": 192 * repeat**3, "n_edges": 10, "max_neighbors": 5, "memory": {}, "model": {}, "rows": rows,
                 "ratios": {"energy_forces": {"median": 1.2, "iqr": 0.01, "backend_cace": backends[-1],
                                              "backend_spherical": backends[-1]}},
                 "failures": [] if repeat == 1 else [{"descriptor": k, "backend": "eager", "mode": "energy_forces",
                                                      "error": "out of memory"} for k in ("cace", "spherical")],
                 "neighbor_list": {"median_s": 0.01, "iqr_s": 0.0}}
        key = timing._key(spec, "atoms", {}, repeat, "float32")
        store.write(key, timing._records(key, point, {"device": "cpu", "device_name": "test", "threads": 2, "versions":
                                                      {"torch": "2.13.0", "triton": "3.9.0", "e3nn": "0.6.0"}}))
    _, md_path = build_report(tmp_path / "res", tmp_path / "rep")
    md = md_path.read_text()
    assert "torch 2.13.0, Triton 3.9.0 (the fused kernels), e3nn 0.6.0." in md
    assert "At 1,536 atoms eager did not fit in memory: the timed backends there were checked against fused" in md
    line = next(x for x in md.splitlines() if x.startswith("| CACE | eager | energy + forces"))
    assert "| 1,536 | out of memory |" in line


def test_a_resumed_sweep_does_not_retry_a_backend_that_ran_out_of_memory_at_a_stored_point(tmp_path, monkeypatch):
    """The sweep run again with one more size: the stored points are skipped, and a backend that ran
    out of memory at one of them is not tried at the new size, as in a sweep never interrupted."""
    calls = []

    def fake_point(spec, sweep, overrides, repeat, dtype, runners=None):
        calls.append((repeat, spec.backends))
        row = {"mode": "energy_forces", "iqr_s": 0.0, "times_s": [0.01], "flops": 1.0, "bytes": 1.0, "intensity": 1.0,
               "achieved_flops_per_s": 1.0, "n_parameters": 1, "n_features": 1, "median_s": 0.01}
        fits = [b for b in spec.backends if not (b == "eager" and repeat >= 2)]
        return {"n_atoms": 192 * repeat**3, "n_edges": 1, "max_neighbors": 1, "memory": {}, "model": {},
                "rows": [{**row, "descriptor": k, "backend": b} for k in ("cace", "spherical") for b in fits],
                "ratios": {}, "neighbor_list": {"median_s": 0.0, "iqr_s": 0.0},
                "failures": [{"descriptor": k, "backend": "eager", "mode": "energy_forces", "error": "out of memory"}
                             for k in ("cace", "spherical") if "eager" in spec.backends and "eager" not in fits]}

    monkeypatch.setattr(timing, "time_point", fake_point)
    monkeypatch.setattr("bench.tasks.reference.ceilings", lambda *a, **k: {"matmul_flops_per_s": 1.0})
    store = ResultsStore(tmp_path / "a")
    spec = dict(backends=("eager", "compile"), modes=("energy_forces",), max_seconds_per_call=100.0)
    timing.run(TimingSpec(sizes=(1, 2), **spec), store, log=lambda *a: None)
    timing.run(TimingSpec(sizes=(1, 2, 3), **spec), store, log=lambda *a: None)
    assert calls == [(1, ("eager", "compile")), (2, ("eager", "compile")), (3, ("compile",))]
    why = {r["error"] for r in store.records() if r["metric"] == "backend_unavailable" and r["setting"]["repeat"] == 3}
    assert why == {"not timed: out of memory at 1536 atoms in this sweep"}
