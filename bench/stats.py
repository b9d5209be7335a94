"""Intervals over training seeds (Student t): a mean difference, or a ratio of errors, whose spread
comes from the seeds (the verdicts of ``bench.report.verdict`` and the front paired by seed); and
the trapezoid rule, written once for numpy 1.x and 2.x alike."""

from __future__ import annotations

import numpy as np


def mean_over_seeds(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of one value per seed, the seed the independent unit:

        mean_s d_s -/+ t_{n-1, (1 + level) / 2} sd_s(d) / sqrt(n),

    Student's t with n - 1 degrees of freedom (n >= 2 seeds; with 3, t = 4.30)."""
    from scipy.stats import t as student_t

    d = np.asarray(values, float)
    if len(d) < 2:
        raise ValueError(f"an interval over seeds needs two or more seeds, got {len(d)}")
    half = student_t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def ratio_over_seeds(log_ratios, level: float = 0.95) -> tuple[float, float, float]:
    """(ratio, low, high) from one ln(a / b) per seed: exp of ``mean_over_seeds`` of the logs."""
    return tuple(float(np.exp(x)) for x in mean_over_seeds(log_ratios, level))


def trapezoid(y, x) -> float:
    """The integral of y over x by the trapezoid rule, sum_k (y_k + y_(k+1)) (x_(k+1) - x_k) / 2 (the
    survival area of MD runs). numpy 2 names it ``np.trapezoid`` and 1.x ``np.trapz``: the project
    takes numpy 1.24 and later, so neither name is used."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)
