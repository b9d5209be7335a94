"""bench/stats.py's trapezoid rule (numpy 1.x and 2.x alike) and the survival area built on it."""

import numpy as np
import pytest

from bench.stats import trapezoid


def test_trapezoid_is_exact_for_a_line_on_an_uneven_grid_and_is_numpys_rule():
    x = np.array([0.0, 0.1, 0.5, 1.2, 2.0])
    assert trapezoid(3 * x + 1, x) == pytest.approx(8.0, abs=1e-14)          # 3 x^2 / 2 + x over [0, 2]
    rng = np.random.default_rng(0)
    x, y = np.sort(rng.uniform(0, 5, 50)), rng.normal(size=50)
    numpys = getattr(np, "trapezoid", None) or np.trapz                       # 2.x, else 1.x
    assert trapezoid(y, x) == pytest.approx(float(numpys(y, x)), rel=1e-12)
    assert trapezoid([2.0], [1.0]) == 0.0                                      # one point: no interval


def test_survival_area_of_one_run_failing_at_half_time_and_one_surviving():
    from bench.tasks.stability import summarise

    runs = [{"failure_time_fs": 50.0, "length_fs": 100.0}, {"failure_time_fs": None, "length_fs": 100.0}]
    s = summarise(runs)
    # survival 1 up to 50 fs, then 1/2: area 0.75 of the run length (the step at 50 fs on a grid of 0.5 fs)
    assert s["survival_area"] == pytest.approx(0.75, abs=0.5 / 100) and s["n_failed"] == 1
