"""Equal tuning budget (issue #17.2): a small recipe search per descriptor variant, with the same
candidate recipes, number of trials and budget per trial for every variant, selected on the
validation split only.

A recipe is a point of the grid ``SEARCH_SPACE`` (learning rate, schedule, EMA decay, warm-up,
energy-weight ramp); everything else (optimiser, batch, budget, clipping, force weight, readout,
split) is the base ``TrainConfig``'s. Search: plain random search over that grid (Bergstra and
Bengio, JMLR 2012): trial 0 is the base recipe, trials 1..N-1 a draw without replacement from the
rest of the grid that depends only on (N, seed), so every variant tries exactly the same recipes and
the comparison is of descriptors, not of luck in the search. No adaptive sampler (Optuna's TPE, say)
on purpose: it would give each descriptor different candidates.

Selection objective on the validation split (lower is better):
    J = ln(E_val) + ln(F_val)
with E_val the per-atom energy MAE (meV/atom) and F_val the force MAE (meV/A) of the trial's kept
weights. J is the log of the product E_val * F_val: its minimiser does not depend on the units of
either error, and it favours the recipe that moves the whole (energy, force) point toward the origin
rather than one error at the other's expense; the trade-off itself is what the front then sweeps.

Energy-weight ramps of a setting with final weight w: "stages" 0.1 -> 1 -> 10 -> ... -> w in equal
fractions of the budget (``energy_schedule``), "two-step" 0.1 then w (the CACE authors' shape).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np

from ..errors import InputError
from ..train import TrainConfig

SEARCH_SPACE = {
    "lr": (3e-3, 1e-2, 3e-2),
    "schedule": ("plateau", "step"),
    "ema_decay": (0.99, 0.999),
    "warmup_epochs": (0, 5),
    "energy_ramp": ("stages", "two-step"),
}
RAMPS = ("stages", "two-step")
OBJECTIVE = "ln(E_val) + ln(F_val)"


def energy_schedule(final: float) -> tuple:
    """(0.1, 1, 10, ..., final): the stages of the energy weight, by factors of 10 up to ``final``."""
    if not final > 0:
        raise InputError(f"a final energy weight must be positive, got {final}")
    stages = [0.1]
    while stages[-1] * 10 <= final * (1 + 1e-9):
        stages.append(stages[-1] * 10)
    if not np.isclose(stages[-1], final):
        stages.append(float(final))
    return tuple(float(f"{w:.6g}") for w in stages)


def energy_weights(final: float, ramp: str = "stages") -> tuple:
    """The energy-weight stages of a setting with final weight ``final`` under ``ramp``."""
    if ramp == "stages":
        return energy_schedule(final)
    if ramp == "two-step":
        stages = energy_schedule(final)
        return (stages[0], stages[-1]) if len(stages) > 1 else stages
    raise InputError(f"energy ramp must be one of {', '.join(RAMPS)}, got {ramp!r}")


def base_recipe(cfg: TrainConfig) -> dict:
    """The searched knobs of ``cfg`` as a recipe (its energy weights ramped in stages)."""
    return {"lr": cfg.lr, "schedule": cfg.schedule, "ema_decay": cfg.ema_decay, "warmup_epochs": cfg.warmup_epochs,
            "energy_ramp": "stages"}


def recipe_config(base: TrainConfig, recipe: dict, final_weight: float) -> TrainConfig:
    """``base`` with ``recipe``'s knobs, its energy weights ramped up to ``final_weight``."""
    unknown = set(recipe) - set(SEARCH_SPACE)
    if unknown:
        raise InputError(f"unknown recipe knobs {sorted(unknown)}; known: {', '.join(SEARCH_SPACE)}")
    knobs = {k: v for k, v in recipe.items() if k != "energy_ramp"}
    return replace(base, energy_weights=energy_weights(final_weight, recipe.get("energy_ramp", "stages")), **knobs)


def grid() -> list[dict]:
    """Every recipe of ``SEARCH_SPACE``, in a fixed order."""
    keys = list(SEARCH_SPACE)
    return [dict(zip(keys, values)) for values in itertools.product(*(SEARCH_SPACE[k] for k in keys))]


def candidates(base: TrainConfig, trials: int, seed: int = 0) -> list[dict]:
    """The recipes a search of ``trials`` trials tries, the same for every variant: the base recipe,
    then a seeded draw without replacement from the rest of the grid."""
    first = base_recipe(base)
    rest = [r for r in grid() if r != first]
    if not 1 <= trials <= len(rest) + 1:
        raise InputError(f"a recipe search takes 1 to {len(rest) + 1} trials (the grid's size), got {trials}")
    picks = np.random.default_rng(seed).choice(len(rest), size=trials - 1, replace=False)
    return [first] + [rest[int(i)] for i in picks]


def objective(energy_mae_per_atom: float, forces_mae: float) -> float:
    """J = ln(E_val) + ln(F_val): see the module docstring; inf where an error is not finite."""
    e, f = float(energy_mae_per_atom), float(forces_mae)
    if not (math.isfinite(e) and math.isfinite(f)) or e <= 0 or f <= 0:
        return math.inf
    return math.log(e) + math.log(f)


def describe(recipe: dict, base: dict | None = None) -> str:
    """A short label of a recipe (only the knobs that differ from ``base``, when given)."""
    names = {"lr": "lr", "schedule": "", "ema_decay": "EMA", "warmup_epochs": "warm-up", "energy_ramp": "ramp"}
    parts = []
    for k, v in recipe.items():
        if base is not None and base.get(k) == v:
            continue
        parts.append(f"{v}" if not names.get(k) else f"{names[k]} {v:g}" if isinstance(v, float) else f"{names[k]} {v}")
    return ", ".join(parts) or "base recipe"


def select(objectives: list[float]) -> int:
    """The chosen trial: the lowest objective (the earliest on a tie, so the base recipe on a tie)."""
    if not objectives or all(not math.isfinite(j) for j in objectives):
        raise InputError("no trial of the recipe search gave finite validation errors")
    return int(np.argmin(objectives))
