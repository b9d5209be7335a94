"""The equal tuning budget of the accuracy front (issue #17.2): the same candidate recipes for
every variant, selection on the validation split only, the chosen recipe in every record, resume."""

import math

import pytest

from bench.errors import InputError
from bench.tasks import recipe_search as rs
from bench.train import TrainConfig


def test_every_variant_gets_the_same_candidates_starting_with_the_base_recipe():
    base = TrainConfig(lr=1e-2, ema_decay=0.99)
    a, b = rs.candidates(base, 8, seed=0), rs.candidates(base, 8, seed=0)
    assert a == b and a[0] == rs.base_recipe(base)
    assert len({tuple(sorted(r.items())) for r in a}) == 8                       # no recipe tried twice
    assert all(r in rs.grid() for r in a)
    assert rs.candidates(base, 8, seed=1) != a                                   # the seed draws them
    assert len(rs.grid()) == math.prod(len(v) for v in rs.SEARCH_SPACE.values())
    with pytest.raises(InputError, match="trials"):
        rs.candidates(base, len(rs.grid()) + 1)


def test_a_recipe_sets_its_knobs_and_ramps_the_energy_weight():
    base = TrainConfig(max_epochs=80, force_weight=1000.0)
    cfg = rs.recipe_config(base, {"lr": 3e-2, "schedule": "step", "ema_decay": 0.999, "warmup_epochs": 5,
                                  "energy_ramp": "two-step"}, 100.0)
    assert (cfg.lr, cfg.schedule, cfg.ema_decay, cfg.warmup_epochs) == (3e-2, "step", 0.999, 5)
    assert cfg.energy_weights == (0.1, 100.0) and cfg.max_epochs == 80 and cfg.force_weight == 1000.0
    assert rs.recipe_config(base, rs.base_recipe(base), 100.0).energy_weights == (0.1, 1.0, 10.0, 100.0)
    assert rs.recipe_config(base, rs.base_recipe(base), 10.0) == TrainConfig(max_epochs=80,
                                                                              energy_weights=(0.1, 1.0, 10.0))
    assert rs.energy_weights(0.1, "two-step") == (0.1,)
    with pytest.raises(InputError, match="unknown recipe knobs"):
        rs.recipe_config(base, {"momentum": 0.9}, 10.0)
    with pytest.raises(InputError, match="energy ramp"):
        rs.energy_weights(10.0, "cosine")


def test_selection_does_not_depend_on_the_units_of_either_error():
    e = [10.0, 4.0, 30.0]          # meV/atom
    f = [50.0, 200.0, 10.0]        # meV/A: products 500, 800, 300
    pick = rs.select([rs.objective(a, b) for a, b in zip(e, f)])
    assert pick == 2
    assert rs.select([rs.objective(a * 1e-3, b * 23.06) for a, b in zip(e, f)]) == pick    # eV, kcal/mol
    assert rs.objective(float("nan"), 1.0) == math.inf
    assert rs.select([math.inf, 1.0, 1.0]) == 1                                # the earliest of equals
    with pytest.raises(InputError, match="finite"):
        rs.select([math.inf, math.inf])


def test_tuned_front_selects_on_validation_only_records_its_recipes_and_resumes(tmp_path, monkeypatch):
    import bench.tasks.accuracy as acc
    from bench.report import build_report
    from bench.results.store import ResultsStore
    from bench.tasks import front
    from bench.tasks.accuracy import DataSpec
    from bench.tasks.presets import QUICK_MODEL

    spec = front.FrontSpec(DataSpec("builtin:emt-alloy", n_train=12, n_valid=4, n_test=6), dict(QUICK_MODEL),
                           TrainConfig(max_epochs=2, batch_size=4), final_energy_weights=(1.0, 100.0), seeds=(0,),
                           variants=("cace", "spherical"), tune_trials=3)
    # which graphs each evaluation saw: the search must only ever predict the validation part
    current, evaluated, real_predict, real_fit = {}, [], acc.predict, acc.fit_and_record

    def fit(store, key, **k):
        current.update(task=key["task"], ss=k["ss"])
        return real_fit(store, key, **k)

    def predict(pot, graphs, *a, **k):
        evaluated.append((current["task"], graphs, current["ss"]))
        return real_predict(pot, graphs, *a, **k)

    monkeypatch.setattr(acc, "predict", predict)
    monkeypatch.setattr(acc, "fit_and_record", fit)
    store = ResultsStore(tmp_path)
    records = front.run(spec, store, progress=False, log=lambda *a: None)

    tune = [r for r in records if r["task"] == "tune"]
    fr = [r for r in records if r["task"] == "front"]
    assert {r["setting"]["trial"] for r in tune} == {0, 1, 2} and {r["evaluated_on"] for r in tune} == {"validation"}
    assert {r["evaluated_on"] for r in fr} == {"test"}
    assert [task for task, _, _ in evaluated].count("tune") == 3 * 2
    for task, graphs, ss in evaluated:
        if task == "tune":                   # the validation graphs, and not one test structure among them
            assert graphs is ss.valid and not {id(g) for g in graphs} & {id(g) for g in ss.test}
        else:
            assert graphs is ss.test

    # each variant's front trains with the recipe of its lowest validation objective
    for variant in spec.variants:
        trials = {}
        for r in tune:
            if r["descriptor"] == variant:
                trials.setdefault(r["setting"]["trial"], {})[r["metric"]] = r["value"]
        js = [rs.objective(trials[t]["energy_mae_per_atom"], trials[t]["forces_mae"]) for t in sorted(trials)]
        best = min(range(len(js)), key=lambda t: js[t])
        mine = [r for r in fr if r["descriptor"] == variant]
        assert {r["tuning"]["trial"] for r in mine} == {best}
        recipe = next(r["setting"]["recipe"] for r in tune if r["setting"]["trial"] == best)
        for r in mine:
            w = r["setting"]["final_energy_weight"]
            expected = rs.recipe_config(spec.train, recipe, w).to_dict()
            assert r["recipe"] == {**expected, "energy_weights": list(expected["energy_weights"])}   # as JSON stores it
            assert r["tuning"]["selected_on"] == "validation" and r["tuning"]["trials"] == 3

    # resume: nothing is trained again, and the same recipes are chosen from the stored trials
    monkeypatch.setattr(acc, "fit_and_record", lambda *a, **k: pytest.fail("a finished unit was redone"))
    assert front.run(spec, store, progress=False, log=lambda *a: None) == []

    # tuned and shared-recipe fronts are reported apart, the search's trials shown
    shared = front.FrontSpec(spec.data, spec.model, spec.train, final_energy_weights=(1.0, 100.0), seeds=(0,),
                             variants=("cace",))
    monkeypatch.setattr(acc, "fit_and_record", real_fit)
    front.run(shared, store, progress=False, log=lambda *a: None)
    _, md = build_report(tmp_path, tmp_path / "rep")
    text = md.read_text()
    assert "## Accuracy front: emt-alloy\n" in text
    assert "## Accuracy front: emt-alloy, tuned recipes (3 trials each)" in text
    assert "Equal tuning budget: 3 trials per descriptor" in text and "ln(E_val) + ln(F_val)" in text


def test_a_tuning_count_outside_the_grid_is_refused_before_any_training():
    from bench.tasks.accuracy import DataSpec
    from bench.tasks.front import FrontSpec

    with pytest.raises(InputError, match="trials"):
        FrontSpec(DataSpec("builtin:emt-alloy"), {"preset": "quick"}, TrainConfig(), tune_trials=1000)
