"""The report's verdicts: a known clear win is called, pure noise is not, quick runs are smoke tests."""

import numpy as np
import pandas as pd

from bench.report.speed_section import speed_verdicts
from bench.report.verdict import error_verdict, speed_verdict, survival_verdict


def test_accuracy_clear_win_and_pure_noise():
    rng = np.random.default_rng(0)
    sph = rng.gamma(4.0, 25.0, size=60)                       # per-structure force errors, meV/A
    win = error_verdict("f", 0.7 * sph * rng.uniform(0.9, 1.1, 60), sph, "b")
    assert win.winner == "cace" and win.effect.startswith("CACE 3") and "% lower" in win.effect   # ~30%
    noise = [error_verdict("f", *(rng.gamma(4.0, 25.0, size=(2, 60))), "b") for _ in range(20)]
    assert sum(v.winner is not None for v in noise) <= 3         # a 95% interval: about 1 in 20 by chance
    same = error_verdict("f", sph, sph, "b")
    assert same.winner is None
    lose = error_verdict("f", sph, 0.5 * sph, "b", smoke=True)
    assert lose.winner == "spherical" and lose.row()[1] == "spherical (smoke test)"


def test_accuracy_over_seeds_needs_the_seeds_to_agree():
    """Three seeds of 60 test structures each. Within every seed the pairs are tight, so the bootstrap
    over structures excludes 1 both times; where the seeds disagree (CACE 20% lower, equal, 15% higher)
    the interval over seeds holds 1 and no winner is named; where they agree (9-11% lower) CACE wins.
    One seed, or no seeds given, is the bootstrap alone."""
    rng = np.random.default_rng(1)
    sph = rng.gamma(4.0, 25.0, size=180)
    seeds = np.repeat([0, 1, 2], 60)
    jitter = rng.uniform(0.98, 1.02, 180)
    disagree = sph * np.repeat([0.80, 1.0, 1.15], 60) * jitter * 0.95
    v = error_verdict("f", disagree, sph, "b", seeds=seeds)
    assert v.winner is None and "over 3 seeds" in v.effect, v.effect
    assert error_verdict("f", disagree, sph, "b").winner is not None           # the bootstrap alone calls it
    agree = sph * np.repeat([0.89, 0.90, 0.91], 60) * jitter
    v = error_verdict("f", agree, sph, "b", seeds=seeds)
    assert v.winner == "cace" and v.effect.startswith("CACE 10% lower"), v.effect
    one = error_verdict("f", disagree[:60], sph[:60], "b", seeds=seeds[:60])
    assert one.winner == "cace" and "seeds" not in one.effect


def test_speed_needs_the_whole_iqr_on_one_side():
    assert speed_verdict("s", 1.30, 0.10, "b").winner == "cace"
    assert speed_verdict("s", 0.80, 0.10, "b").winner == "spherical"
    assert speed_verdict("s", 1.04, 0.10, "b").winner is None          # IQR 0.99-1.09 straddles 1


def test_survival_paired_over_replicas():
    length = 1000.0
    assert survival_verdict("t", [length] * 8, [length] * 8, length, "b").winner is None
    assert survival_verdict("t", [length] * 8, [200, 300, 150, 400, 250, 100, 350, 300], length, "b").winner == "cace"
    mixed = survival_verdict("t", [length, 200, length, 300], [300, length, 250, length], length, "b")
    assert mixed.winner is None


def test_survival_over_training_seeds_needs_the_seeds_to_agree():
    """Four replicas a potential, three training seeds. One spherical potential (seed 0) fails every
    replica early and the others survive as CACE's do: the bootstrap over the 12 replicas calls CACE
    better, the interval over seeds does not (one bad training is one draw). Where every spherical
    potential fails early, CACE wins by both."""
    length = 1000.0
    seeds = np.repeat([0, 1, 2], 4)
    cace = [length] * 12
    one_bad = [100.0, 150.0, 120.0, 90.0] + [length] * 8
    assert survival_verdict("t", cace, one_bad, length, "b").winner == "cace"
    v = survival_verdict("t", cace, one_bad, length, "b", seeds=seeds)
    assert v.winner is None and "over 3 training seeds" in v.effect, v.effect
    all_bad = [100.0, 150.0, 120.0, 90.0, 200.0, 180.0, 210.0, 160.0, 300.0, 260.0, 240.0, 310.0]
    assert survival_verdict("t", cace, all_bad, length, "b", seeds=seeds).winner == "cace"


def test_speed_verdicts_read_the_headline_records():
    """From timing records: the 'best' energy+forces ratio at the smallest and largest atoms point."""
    def rec(n, value, iqr):
        return {"task": "timing", "metric": "speed_ratio_spherical_over_cace", "descriptor": "spherical/cace",
                "backend": "best", "mode": "energy_forces", "value": value, "iqr": iqr,
                "backend_cace": "eager", "backend_spherical": "eager", "prov.device_name": "X",
                "setting": {"sweep": "atoms", "dtype": "float32", "n_atoms": n}}
    df = pd.DataFrame([rec(192, 1.5, 0.1), rec(1536, 1.01, 0.2),
                       {**rec(1536, 9.0, 0.1), "mode": "descriptor"}])            # another mode: ignored
    v = {x.task: x for x in speed_verdicts(df)}
    assert v["speed, energy + forces, 192 atoms, float32, X"].winner == "cace"
    assert v["speed, energy + forces, 1536 atoms, float32, X"].winner is None


def test_a_noisy_speed_point_decides_nothing_and_names_the_load():
    """The loaded machine of issue #16: ratio 0.21 with an IQR of 2.65 is no win for either side."""
    v = speed_verdict("s", 0.21, 2.65, "b", "; load average 7.5 on 2 CPUs while measured")
    assert v.winner is None and "too noisy to decide" in v.effect and "load average 7.5 on 2 CPUs" in v.effect
    assert speed_verdict("s", 1.30, 0.30, "b").winner == "cace"          # IQR 23% of the ratio: still decided
    df = pd.DataFrame([{"task": "timing", "metric": "speed_ratio_spherical_over_cace", "descriptor": "spherical/cace",
                        "backend": "best", "mode": "energy_forces", "value": 0.21, "iqr": 2.65,
                        "backend_cace": "eager", "backend_spherical": "eager", "prov.device_name": "X",
                        "prov.load_avg_1m": 7.5, "prov.cpu_count": 2,
                        "setting": {"sweep": "atoms", "dtype": "float32", "n_atoms": 192}}])
    (w,) = speed_verdicts(df)
    assert w.winner is None and "load average 7.5 on 2 CPUs" in w.effect


def test_every_record_says_how_busy_the_machine_was():
    from bench.provenance import provenance

    p = provenance("cpu")
    assert p["cpu_count"] >= 1 and (p["load_avg_1m"] is None or p["load_avg_1m"] >= 0)
