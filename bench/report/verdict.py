"""The report's opening answer: for each task, which descriptor wins, by how much, and how sure.

A difference is called only where its 95% interval excludes "equal"; otherwise the verdict is "no
clear difference". Intervals:

- accuracy: a paired bootstrap over test structures (both descriptors predict the same structures
  of the same split; seeds pooled, pairs kept within a seed) of the ratio of mean errors,
  mean_s |err_CACE(s)| / mean_s |err_sph(s)|, for the force MAE (per-structure mean over atoms and
  components) and the energy MAE per atom; with two or more seeds, also a Student t interval over
  the seeds of each seed's log ratio, and a winner needs both intervals on the same side of 1 (the
  bootstrap holds the test set's sampling noise, the seeds the training's);
- stability: a paired bootstrap over replicas (same start, temperature and velocity seed) of the
  difference in mean time to failure (a surviving run counts its full length); with potentials of
  two or more training seeds, also a Student t interval over those seeds of each seed's mean
  difference, and a winner needs both;
- speed: the headline ratio spherical / CACE (each side at its fastest backend) with its IQR over
  the round-robin repeats; a clear difference needs the whole IQR on one side of 1, and a point
  whose IQR exceeds a quarter of its ratio is "too noisy to decide" (the machine's load average,
  in every record's provenance, is named);
- accuracy fronts (``bench.tasks.front``): setting by setting of the energy weight, one variant
  dominates where it is better on one error by more than the two seed standard deviations together
  and not worse beyond them on the other; a winner is named only where its front dominates at some
  setting and is dominated at none;
- accuracy fronts, paired over seeds (``bench.tasks.front.paired_over_seeds``): the same seed is the
  same split for both variants, so each (energy weight, seed) is a pair; each seed's log error
  ratios are averaged over its weights and a Student t interval over the seeds is taken of that
  mean (the seed, not the pair, is the independent unit). A variant is better where that interval
  excludes equality on one error and the other's does not favour its rival. Pairing removes what a
  seed changes for both, so this reading can separate fronts the setting-by-setting rule, which
  compares the seed spreads, calls even.

A quick-budget accuracy run (at most 50 epochs) is labelled a smoke test, whatever its interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = {"cace": "CACE", "spherical": "spherical", "cace-traceless": "CACE traceless"}
N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Verdict:
    task: str                 # what was compared
    winner: str | None        # "cace" | "spherical" | None (no clear difference)
    effect: str               # the size of the difference and its interval, in words
    basis: str                # what the interval is over
    smoke: bool = False       # a quick-budget run: shows the pipeline, decides nothing

    def row(self) -> list[str]:
        who = "no clear difference" if self.winner is None else NAMES[self.winner]
        if self.smoke:
            who += " (smoke test)"
        return [self.task, who, self.effect, self.basis]


def paired_bootstrap_ratio(a: np.ndarray, b: np.ndarray, *, n: int = N_BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) / mean(b) and its 95% percentile interval, resampling the pairs (a_k, b_k) together."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n, len(a)))
    ratios = a[idx].mean(1) / np.maximum(b[idx].mean(1), 1e-300)
    return float(a.mean() / max(b.mean(), 1e-300)), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def paired_bootstrap_difference(a, b, *, n: int = N_BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """mean(a - b) and its 95% percentile interval over resampled pairs."""
    d = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _seed_masks(seeds) -> list[np.ndarray]:
    """One boolean mask of the pairs per training seed (``seeds``: each pair's seed), in seed order;
    [] without seeds or with one (no interval over seeds to take)."""
    if seeds is None:
        return []
    seeds = np.asarray(seeds)
    distinct = np.unique(seeds)
    return [seeds == s for s in distinct] if len(distinct) >= 2 else []


def error_verdict(task: str, cace_errors, sph_errors, basis: str, smoke: bool = False, seeds=None) -> Verdict:
    """Lower is better; ``*_errors`` are per-structure errors, paired by position. ``seeds``: the
    training seed behind each pair. With two or more seeds a winner also needs the interval over
    seeds to exclude 1 on the same side (``bench.stats.ratio_over_seeds`` of each seed's
    ln(mean CACE error / mean spherical error)): the bootstrap over structures holds the test set's
    sampling noise, not the training's, and a seed changes the training (and the split)."""
    from ..stats import ratio_over_seeds

    cace_errors, sph_errors = np.asarray(cace_errors, float), np.asarray(sph_errors, float)
    r, lo, hi = paired_bootstrap_ratio(cace_errors, sph_errors)
    span = f"CACE / spherical = {r:.2f} (95% interval {_bound(lo)}-{_bound(hi)}"
    below, above = hi < 1, lo > 1
    masks = _seed_masks(seeds)
    if masks:
        rs, los, his = ratio_over_seeds([np.log(cace_errors[m].mean() / sph_errors[m].mean()) for m in masks])
        span += f" over structures; {rs:.2f}, {_bound(los)}-{_bound(his)} over {len(masks)} seeds"
        below, above = below and his < 1, above and los > 1
    span += ")"
    if below:
        return Verdict(task, "cace", f"CACE {100 * (1 - r):.0f}% lower; {span}", basis, smoke)
    if above:
        return Verdict(task, "spherical", f"spherical {100 * (1 - 1 / r):.0f}% lower; {span}", basis, smoke)
    return Verdict(task, None, span, basis, smoke)


# A speed point whose ratio's IQR exceeds this fraction of the ratio is too noisy to decide on (a
# loaded machine gave 0.21 with an IQR of 2.65); such a point gets no winner.
NOISY_SPREAD = 0.25


def speed_verdict(task: str, ratio: float, iqr: float, basis: str, load: str = "") -> Verdict:
    """``ratio`` = time_spherical / time_CACE (> 1: CACE faster), ``iqr`` its interquartile range;
    ``load``: how busy the machine was, said where the point is too noisy."""
    lo, hi = ratio - iqr / 2, ratio + iqr / 2
    span = f"spherical / CACE time = {ratio:.2f} (IQR {lo:.2f}-{hi:.2f})"
    if not iqr <= NOISY_SPREAD * abs(ratio):
        return Verdict(task, None, f"too noisy to decide: the IQR is {iqr / abs(ratio):.0%} of the ratio "
                                   f"(over {NOISY_SPREAD:.0%}){load}; {span}", basis)
    if lo > 1:
        return Verdict(task, "cace", f"CACE {ratio:.2f}x faster; {span}", basis)
    if hi < 1:
        return Verdict(task, "spherical", f"spherical {1 / ratio:.2f}x faster; {span}", basis)
    return Verdict(task, None, span, basis)


def survival_verdict(task: str, cace_ttf, sph_ttf, length_fs: float, basis: str, seeds=None) -> Verdict:
    """Longer time to failure is better; ``*_ttf`` paired per replica (survivors at ``length_fs``).
    ``seeds``: the training seed of each replica's potentials; with two or more, a winner also needs
    the Student t interval over the seeds of each seed's mean difference (``bench.stats``) to
    exclude 0 on the same side: one potential that fails everywhere is one draw of the training,
    however many replicas it ran."""
    from ..stats import mean_over_seeds

    cace_ttf, sph_ttf = np.asarray(cace_ttf, float), np.asarray(sph_ttf, float)
    if np.all(cace_ttf >= length_fs) and np.all(sph_ttf >= length_fs):
        return Verdict(task, None, f"every run of both survived {length_fs:.0f} fs", basis)
    d, lo, hi = paired_bootstrap_difference(cace_ttf, sph_ttf)
    span = f"mean time to failure CACE - spherical = {d:+.0f} fs (95% interval {lo:+.0f} to {hi:+.0f}"
    above, below = lo > 0, hi < 0
    masks = _seed_masks(seeds)
    if masks:
        ds, los, his = mean_over_seeds([(cace_ttf[m] - sph_ttf[m]).mean() for m in masks])
        span += f" over replicas; {ds:+.0f}, {los:+.0f} to {his:+.0f} over {len(masks)} training seeds"
        above, below = above and los > 0, below and his < 0
    span += ")"
    if above:
        return Verdict(task, "cace", span, basis)
    if below:
        return Verdict(task, "spherical", span, basis)
    return Verdict(task, None, span, basis)


def front_verdict(task: str, a: str, b: str, comparison: dict, basis: str, smoke: bool = False) -> Verdict:
    """``comparison``: ``bench.tasks.front.compare_fronts`` of variant ``a``'s front against ``b``'s."""
    parts = [(f"{NAMES[a]} better", "a"), (f"{NAMES[b]} better", "b"), ("within the seed spread", "even"),
             ("a trade-off (one error better, the other worse)", "trade")]
    # only the outcomes that occur, each with its weights ("CACE better at w_E none" read as a weight)
    effect = "; ".join(f"{text} at w_E {', '.join(f'{w:g}' for w in comparison[key])}"
                       for text, key in parts if comparison[key])
    winner = None
    if comparison["a"] and not comparison["b"] and not comparison["trade"]:
        winner = a
    elif comparison["b"] and not comparison["a"] and not comparison["trade"]:
        winner = b
    return Verdict(task, winner, effect, basis, smoke)


_ERRORS = {"forces_mae": "forces", "energy_mae_per_atom": "energy"}


def _bound(x: float) -> str:
    """An interval's end, with a third digit where two would print it as 1.00 (which side of 1 it
    lies on decides the verdict)."""
    return f"{x:.2f}" if f"{x:.2f}" != "1.00" or x == 1 else f"{x:.3f}"


def paired_front_verdict(task: str, a: str, b: str, readings: dict, basis: str, smoke: bool = False) -> Verdict:
    """``readings``: ``bench.tasks.front.paired_over_seeds`` of variant ``a``'s front against ``b``'s,
    {metric: PairedReading}. ``a`` wins where some error's interval lies below 1 and none above."""
    lower = {m for m, r in readings.items() if r.high < 1}               # a's error lower
    higher = {m for m, r in readings.items() if r.low > 1}               # b's error lower
    effect = "; ".join(f"{_ERRORS[m]} {NAMES[a]} / {NAMES[b]} = {r.ratio:.2f} (95% interval {_bound(r.low)}-"
                       f"{_bound(r.high)}), {NAMES[a]} lower in {r.a_lower} of {r.n_pairs} pairs"
                       for m, r in sorted(readings.items(), key=lambda kv: list(_ERRORS).index(kv[0])))
    if lower and higher:
        effect = "a trade-off (one error better, the other worse): " + effect
    winner = a if lower and not higher else b if higher and not lower else None
    return Verdict(task, winner, effect, basis, smoke)


def per_structure_errors(pred: dict) -> tuple[np.ndarray, np.ndarray]:
    """(force MAE per structure [meV/A], |energy error| per atom per structure [meV/atom]) from a
    predictions artifact (``bench.train.predict``)."""
    n = np.asarray(pred["n_atoms"], int)
    ends = np.cumsum(n)[:-1]
    df = np.abs(np.asarray(pred["forces_pred"]) - np.asarray(pred["forces_ref"])) * 1e3
    f = np.array([block.mean() for block in np.split(df, ends)])
    e = np.abs(np.asarray(pred["energy_pred"]) - np.asarray(pred["energy_ref"])) * 1e3 / n
    return f, e
