"""The accuracy front (issue #17): energy-weight schedules, front comparison and its verdict, and
the task end to end with resume and report."""

import pytest

from bench.errors import InputError
from bench.report.verdict import front_verdict, paired_front_verdict
from bench.tasks.front import FrontPoint, FrontSpec, compare_fronts, energy_schedule, front_points, paired_over_seeds


def test_energy_schedule_rises_by_tens_to_the_final_weight():
    assert energy_schedule(1) == (0.1, 1.0)
    assert energy_schedule(100) == (0.1, 1.0, 10.0, 100.0)
    assert energy_schedule(1000) == (0.1, 1.0, 10.0, 100.0, 1000.0)
    assert energy_schedule(30) == (0.1, 1.0, 10.0, 30.0)
    with pytest.raises(InputError, match="positive"):
        energy_schedule(0)


def _front(points):
    return [FrontPoint(w, e, f, 3) for w, e, f in points]


def test_a_front_better_beyond_the_seed_spread_wins_and_noise_does_not():
    cace = _front([(1, (10.0, 1.0), (20.0, 1.0)), (100, (5.0, 0.5), (30.0, 1.0))])
    clear = _front([(1, (15.0, 1.0), (26.0, 1.0)), (100, (5.2, 0.5), (37.0, 1.0))])   # worse beyond spread
    noise = _front([(1, (10.5, 1.0), (20.5, 1.0)), (100, (4.8, 0.5), (29.0, 1.0))])   # inside the spread
    win = compare_fronts(cace, clear)
    assert win == {"a": [1, 100], "b": [], "even": [], "trade": []}
    v = front_verdict("t", "cace", "spherical", win, "b")
    assert v.winner == "cace" and v.effect == "CACE better at w_E 1, 100"    # no "spherical better at none"
    even = compare_fronts(cace, noise)
    assert even["even"] == [1, 100]
    v = front_verdict("t", "cace", "spherical", even, "b")
    assert v.winner is None and v.effect == "within the seed spread at w_E 1, 100"


def test_a_trade_off_names_no_winner():
    a = _front([(1, (10.0, 0.1), (40.0, 0.1)), (10, (8.0, 0.1), (30.0, 0.1))])
    b = _front([(1, (20.0, 0.1), (20.0, 0.1)), (10, (9.0, 0.1), (31.0, 0.1))])
    cmp = compare_fronts(a, b)
    assert cmp["trade"] == [1] and cmp["a"] == [10]
    v = front_verdict("t", "cace-traceless", "cace", cmp, "b")
    assert v.winner is None and "trade-off" in v.effect and "CACE traceless better at w_E 10" in v.effect


def _records(errors):
    """Front records from {(variant, weight, seed): (energy, forces)}."""
    return [{"task": "front", "descriptor": v, "seed": s, "setting": {"final_energy_weight": w}, "metric": m,
             "value": x}
            for (v, w, s), ef in errors.items() for m, x in zip(("energy_mae_per_atom", "forces_mae"), ef)]


def test_paired_by_seed_finds_a_shared_seed_effect_the_spread_rule_calls_even():
    """Seeds move both descriptors' errors together (by 2x, far beyond a 5% gap), and CACE is 4-6%
    lower in every pair: the setting-by-setting rule sees only overlapping seed spreads, the pairing
    sees the gap. The ratio and interval are the docstring's formula (Student t, 2 degrees of freedom)."""
    import math

    seed_scale = {0: 1.0, 1: 1.5, 2: 2.0}
    gap = {(10.0, 0): 0.95, (10.0, 1): 0.94, (10.0, 2): 0.96, (100.0, 0): 0.96, (100.0, 1): 0.95, (100.0, 2): 0.94}
    errors = {}
    for (w, s), g in gap.items():
        sph = (2.0 * seed_scale[s] / math.sqrt(w), 30.0 * seed_scale[s])
        errors[("spherical", w, s)] = sph
        errors[("cace", w, s)] = (sph[0] * g, sph[1] * g)
    records = _records(errors)
    points = front_points(records)
    assert compare_fronts(points["cace"], points["spherical"])["even"] == [10.0, 100.0]
    readings = paired_over_seeds(records, "cace", "spherical")
    d = [(math.log(gap[(10.0, s)]) + math.log(gap[(100.0, s)])) / 2 for s in (0, 1, 2)]
    mean, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    for r in readings.values():
        assert (r.n_seeds, r.n_pairs, r.a_lower) == (3, 6, 6)
        assert r.ratio == pytest.approx(math.exp(mean), rel=1e-12)
        assert r.high == pytest.approx(math.exp(mean + 4.302652729911275 * sd / math.sqrt(3)), rel=1e-9)
        assert r.low < r.ratio < r.high < 1
    v = paired_front_verdict("t", "cace", "spherical", readings, "b")
    assert v.winner == "cace" and "forces CACE / spherical = 0.95" in v.effect and "lower in 6 of 6 pairs" in v.effect


def test_paired_by_seed_names_no_winner_for_noise_a_trade_off_or_one_seed():
    # CACE lower at two seeds, higher at the third: the interval holds 1
    noise = _records({("cace", 1.0, 0): (9.0, 27.0), ("spherical", 1.0, 0): (10.0, 30.0),
                      ("cace", 1.0, 1): (9.5, 28.0), ("spherical", 1.0, 1): (10.0, 30.0),
                      ("cace", 1.0, 2): (11.5, 34.0), ("spherical", 1.0, 2): (10.0, 30.0)})
    readings = paired_over_seeds(noise, "cace", "spherical")
    assert all(r.low < 1 < r.high for r in readings.values())
    assert paired_front_verdict("t", "cace", "spherical", readings, "b").winner is None
    # energies clearly lower for CACE, forces clearly higher: no winner, said as a trade-off
    trade = _records({(v, 1.0, s): ((0.8 if v == "cace" else 1.0) * (1 + s), (1.2 if v == "cace" else 1.0) * (1 + s))
                      for v in ("cace", "spherical") for s in (0, 1, 2)})
    readings = paired_over_seeds(trade, "cace", "spherical")
    assert readings["energy_mae_per_atom"].high < 1 < readings["forces_mae"].low
    v = paired_front_verdict("t", "cace", "spherical", readings, "b")
    assert v.winner is None and v.effect.startswith("a trade-off")
    # one seed: no paired reading at all (no spread over seeds to judge it by)
    one = _records({("cace", w, 0): (1.0, 2.0) for w in (1.0, 10.0)} | {("spherical", w, 0): (2.0, 3.0) for w in (1.0, 10.0)})
    assert paired_over_seeds(one, "cace", "spherical") == {}


def test_spec_refuses_unknown_variants_and_a_single_setting():
    from bench.tasks.accuracy import DataSpec
    from bench.train import TrainConfig

    data = DataSpec("builtin:emt-alloy", n_train=10, n_valid=5, n_test=5)
    with pytest.raises(InputError, match="unknown variants"):
        FrontSpec(data, {"preset": "quick"}, TrainConfig(), variants=("cace", "mace"))
    with pytest.raises(InputError, match=r"at least two .*\(got 10\): pass two or more.*finished runs are skipped"):
        FrontSpec(data, {"preset": "quick"}, TrainConfig(), final_energy_weights=(10.0,))


def test_front_task_records_resume_and_report(tmp_path):
    from bench.report import build_report
    from bench.results.store import ResultsStore
    from bench.tasks import front
    from bench.tasks.accuracy import DataSpec
    from bench.tasks.presets import QUICK_MODEL
    from bench.train import TrainConfig

    spec = FrontSpec(DataSpec("builtin:emt-alloy", n_train=12, n_valid=4, n_test=6), dict(QUICK_MODEL),
                     TrainConfig(max_epochs=2, batch_size=4), final_energy_weights=(1.0, 100.0), seeds=(0, 1),
                     variants=("cace", "cace-traceless"))
    store = ResultsStore(tmp_path)
    records = front.run(spec, store, progress=False, log=lambda *a: None)
    runs = {(r["descriptor"], r["seed"], r["setting"]["final_energy_weight"]) for r in records}
    assert len(runs) == 2 * 2 * 2
    traceless = [r for r in records if r["descriptor"] == "cace-traceless"]
    assert all(r["model"]["descriptor_config"]["traceless"] is True for r in traceless)
    assert {tuple(r["recipe"]["energy_weights"]) for r in records} == {(0.1, 1.0), (0.1, 1.0, 10.0, 100.0)}
    assert front.run(spec, store, progress=False, log=lambda *a: None) == []          # resume: nothing redone
    points = front.front_points(records)
    assert list(points) == ["cace", "cace-traceless"] and all(len(p) == 2 for p in points.values())
    _, md = build_report(tmp_path, tmp_path / "rep")
    text = md.read_text()
    assert "## Accuracy front: emt-alloy" in text and "accuracy front, emt-alloy: CACE traceless vs CACE" in text
    assert "accuracy front, emt-alloy: CACE traceless vs CACE, paired by seed" in text        # two seeds: paired


def test_step_schedule_with_warm_up_and_the_authors_recipe():
    from bench.train import RECIPES, TrainConfig

    a = RECIPES["authors"]
    assert [round(a.lr_at(e), 6) for e in (0, 4, 5, 24, 25, 45)] == [0.002, 0.01, 0.01, 0.01, 0.005, 0.0025]
    assert a.energy_weights == (0.1, 1.0) and a.schedule == "step"
    assert TrainConfig().lr_at(3) is None and TrainConfig(warmup_epochs=4).lr_at(1) == pytest.approx(5e-3)
    with pytest.raises(InputError, match="schedule must be"):
        TrainConfig(schedule="cosine")


def test_training_follows_the_step_schedule():
    """The rates a training actually used (its history) are those the schedule names."""
    from bench.potential import build
    from bench.train import TrainConfig, train

    frames = _emt_graphs(seed=0, n=6)
    cfg = TrainConfig(max_epochs=7, batch_size=3, lr=1e-2, schedule="step", step_epochs=2, step_factor=0.5,
                      warmup_epochs=2, energy_weights=(1.0,), patience=100)
    pot = build("cace", elements=[1, 8], cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=1, nu_max=2, n_layers=0,
                readout=(4,))
    result = train(pot, frames[:4], frames[4:], cfg, progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx([5e-3, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3])
    walls = [h["wall_s"] for h in result.history]                 # each epoch's end, for epoch times
    assert walls == sorted(walls) and walls[0] > 0


def _emt_graphs(seed: int, n: int) -> list:
    """``n`` small random periodic H/O cells labelled by EMT, as graphs with a 3 A cutoff."""
    import numpy as np
    from ase.calculators.emt import EMT

    from bench.graph import AtomsGraph
    from bench.testing import random_periodic

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = random_periodic(rng, [1, 8], n=4)
        a.calc = EMT()
        out.append(AtomsGraph.from_atoms(_with_results(a), 3.0))
    return out


def _with_results(atoms):
    from ase.calculators.singlepoint import SinglePointCalculator

    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def test_ema_decay_warms_up_so_a_short_training_does_not_average_in_its_first_steps():
    from bench.train import TrainConfig, ema_decay_at

    cfg = TrainConfig(ema_decay=0.99)
    assert ema_decay_at(cfg, 1) == pytest.approx(2 / 11) and ema_decay_at(cfg, 90) == pytest.approx(0.91)
    assert ema_decay_at(cfg, 5000) == 0.99
    assert ema_decay_at(TrainConfig(ema_decay=0.99, ema_warmup=False), 1) == 0.99


@pytest.mark.parametrize("device,backend", [("cpu", "eager"), pytest.param("cuda", "eager", marks=pytest.mark.gpu),
                                            pytest.param("cuda", "eager-cudagraphs", marks=pytest.mark.gpu)])
def test_an_interrupted_training_resumes_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch, device, backend):
    """Interrupted (Ctrl-C) in epoch 3 of 6, then run again with the same checkpoint: the final
    weights, best epoch and history equal those of one uninterrupted training (float64; on CUDA,
    whose scatter sums are not deterministic, to 1e-9 relative). On CUDA the checkpoint's tensors
    load onto the device, the shuffling generator's state among them, which must go back to the
    CPU (the first GPU resume failed there: "RNG state must be a torch.ByteTensor"). Graphed
    (``eager-cudagraphs``), the resumed training records its steps again, over Adam's loaded state."""
    import torch

    import bench.train as tr
    from bench.potential import build

    graphs = _emt_graphs(seed=3, n=7)
    cfg = tr.TrainConfig(max_epochs=6, batch_size=2, lr=1e-2, energy_weights=(1.0, 10.0), patience=100,
                         dtype="float64")

    def fresh():
        torch.manual_seed(0)
        return build("cace", elements=[1, 8], cutoff=3.0, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=2,
                     n_layers=0, readout=(4,))

    whole = tr.train(fresh(), graphs[:5], graphs[5:], cfg, seed=1, progress=False, device=device, backend=backend)
    state = tmp_path / "train-state.pt"
    real, calls = tr.validation_loss, {"n": 0}

    def interrupt_in_epoch_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "validation_loss", interrupt_in_epoch_3)
    cut = tr.train(fresh(), graphs[:5], graphs[5:], cfg, seed=1, progress=False, checkpoint=state, device=device,
                   backend=backend)
    assert cut.stopped_by == "interrupt" and state.is_file()
    monkeypatch.setattr(tr, "validation_loss", real)
    resumed = tr.train(fresh(), graphs[:5], graphs[5:], cfg, seed=1, progress=False, checkpoint=state, device=device,
                       backend=backend)
    assert resumed.stopped_by == whole.stopped_by and resumed.best_epoch == whole.best_epoch
    if device == "cpu":
        assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in whole.history]
        for k, v in whole.state_dict.items():
            assert torch.equal(v, resumed.state_dict[k]), k
        return
    assert [h["valid_loss"] for h in resumed.history] == pytest.approx([h["valid_loss"] for h in whole.history], rel=1e-9)
    for k, v in whole.state_dict.items():
        w = resumed.state_dict[k]
        assert torch.equal(v, w) if not v.is_floating_point() else \
            (v - w).norm() <= 1e-9 * v.norm() + 1e-300, k


def test_front_summary_moves_with_the_front_not_along_it():
    """G = geometric mean of sqrt(E F): scaling both errors of every setting by k scales G by k;
    trading one error for the other (E x c, F / c) at a setting leaves it where it was."""
    from bench.tasks.front import front_summary

    base = _front([(1, (40.0, 1.0), (20.0, 1.0)), (100, (10.0, 1.0), (30.0, 1.0))])
    g = front_summary({"cace": base})["cace"]
    assert g == pytest.approx(((40 * 20) * (10 * 30)) ** 0.25)
    worse = _front([(p.weight, (2 * p.energy[0], 1.0), (2 * p.forces[0], 1.0)) for p in base])
    traded = _front([(1, (80.0, 1.0), (10.0, 1.0)), (100, (10.0, 1.0), (30.0, 1.0))])
    out = front_summary({"cace": base, "spherical": worse, "cace-traceless": traded})
    assert out["spherical"] == pytest.approx(2 * g) and out["cace-traceless"] == pytest.approx(g)
