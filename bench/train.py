"""One training loop for every potential: identical optimiser, schedule, EMA, clipping, batch size,
budget and loss for CACE and the spherical baseline.

Loss (the CACE authors' recipe, shared/design/cace-math.md):
    L = w_E(stage) * mean_graphs((E - E_ref) / n_atoms)^2 + w_F * mean_components(F - F_ref)^2
with w_F = 1000 and w_E raised in stages 0.1 -> 1 -> 10 -> 1000 over equal fractions of the budget
(the larger of the epoch and wall-time fractions). Adam with a learning-rate schedule
(``schedule``: "plateau", ReduceLROnPlateau on the validation loss, or "step", the rate times
``step_factor`` every ``step_epochs``; either after a linear warm-up of ``warmup_epochs``), EMA of
the weights (the EMA weights are validated, kept and returned), gradient-norm clipping.
Model selection and early stopping use the validation loss with the final-stage weights, and start
only in the final stage: before it the energy is barely weighted, so an early "best" would be a
model whose energies have not been trained yet.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import InputError
from .graph import AtomsGraph, collate


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-2
    batch_size: int = 8
    max_epochs: int = 200
    max_time_s: float | None = None
    patience: int = 40
    lr_factor: float = 0.8
    lr_patience: int = 10
    ema_decay: float = 0.99
    ema_warmup: bool = True               # decay min(ema_decay, (1 + n) / (10 + n)) at update n
    clip_norm: float = 10.0
    force_weight: float = 1000.0
    energy_weights: tuple = (0.1, 1.0, 10.0, 1000.0)
    dtype: str = "float32"
    schedule: str = "plateau"             # "plateau" (ReduceLROnPlateau) or "step"
    step_epochs: int = 20                 # step schedule: the rate times step_factor every step_epochs
    step_factor: float = 0.5
    warmup_epochs: int = 0                # linear warm-up of the rate over the first epochs

    def __post_init__(self):
        if self.schedule not in ("plateau", "step"):
            raise InputError(f"schedule must be 'plateau' or 'step', got {self.schedule!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def lr_at(self, epoch: int) -> float | None:
        """The rate an epoch starts with where the schedule fixes it (warm-up, step); None where
        ReduceLROnPlateau decides it."""
        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / self.warmup_epochs
        if self.schedule == "step":
            return self.lr * self.step_factor ** ((epoch - self.warmup_epochs) // self.step_epochs)
        return None


SMOKE_MAX_EPOCHS = 50       # a budget of at most this many epochs shows the pipeline working, decides nothing


def is_smoke(train_config: dict) -> bool:
    """Is a run with this training config (``TrainConfig.to_dict()``, as records store it) a smoke
    test, too short a training to decide anything?"""
    return train_config.get("max_epochs", 0) <= SMOKE_MAX_EPOCHS


def ema_decay_at(cfg: TrainConfig, n: int) -> float:
    """The EMA decay of update n (1-based): ``ema_decay``, or with ``ema_warmup`` the smaller of it
    and (1 + n) / (10 + n), so that a short training (a few hundred updates, as in --quick) does not
    average in the untrained weights of its first steps (the warm-up of TensorFlow's
    ExponentialMovingAverage with num_updates)."""
    return min(cfg.ema_decay, (1.0 + n) / (10.0 + n)) if cfg.ema_warmup else cfg.ema_decay


# Named recipes. "authors": the CACE authors' published recipe (Adam 1e-2 halved every 20 epochs
# after a warm-up, EMA, energy weight 0.1 then 1; warm-up length not stated there: 5 epochs here).
RECIPES = {
    "default": TrainConfig(max_epochs=500, patience=50, batch_size=8, lr=1e-2),
    "authors": TrainConfig(max_epochs=500, patience=50, batch_size=8, lr=1e-2, schedule="step", step_epochs=20,
                           step_factor=0.5, warmup_epochs=5, energy_weights=(0.1, 1.0)),
}


@dataclass
class TrainResult:
    state_dict: dict                      # the best EMA weights
    best_epoch: int
    epochs: int
    wall_time_s: float
    stopped_by: str                       # "max_epochs", "early_stopping", "time", "interrupt"
    history: list = field(default_factory=list)   # per epoch: train loss, valid loss, lr, energy weight, wall time

    @property
    def interrupted(self) -> bool:
        return self.stopped_by == "interrupt"


def loss_terms(pot, batch: AtomsGraph, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(energy MSE per atom, force component MSE) on one batch."""
    out = pot(batch, forces=True, training=training)
    n = batch.n_atoms_per_graph.to(out["energy"].dtype)
    e = (((out["energy"] - batch.energy) / n) ** 2).mean()
    f = ((out["forces"] - batch.forces) ** 2).mean()
    return e, f


def _batches(graphs: Sequence[AtomsGraph], size: int, generator: torch.Generator | None):
    order = torch.randperm(len(graphs), generator=generator).tolist() if generator is not None else list(range(len(graphs)))
    for k in range(0, len(order), size):
        yield collate([graphs[i] for i in order[k:k + size]])


def validation_loss(pot, graphs, cfg: TrainConfig) -> float:
    terms, count = [], 0
    for batch in _batches(graphs, cfg.batch_size, None):
        e, f = loss_terms(pot, batch, training=False)
        terms.append((cfg.energy_weights[-1] * e + cfg.force_weight * f).detach().double() * batch.n_graphs)
        count += batch.n_graphs
    return float(torch.stack(terms).sum()) / max(count, 1) if terms else 0.0   # one host sync, not one a batch


def train(pot, train_graphs: Sequence[AtomsGraph], valid_graphs: Sequence[AtomsGraph], cfg: TrainConfig, *,
          seed: int = 0, progress: bool = True, desc: str = "train", device="cpu", checkpoint=None,
          backend: str = "eager") -> TrainResult:
    """Train ``pot`` in place on ``device``; return the best EMA weights and the history.

    The graphs (neighbour lists included) are moved to the device once and batched there; the
    shuffling generator stays on the CPU, so the batches are the same on every device.
    ``checkpoint``: a path where the whole training state (weights, optimiser, scheduler, EMA,
    best weights so far, history, epoch, the shuffling generator) is written after every epoch, and
    from which an interrupted training resumes at the next epoch, ending as an uninterrupted one would.
    ``backend``: how the steps run (``bench.backends.TRAINING_BACKENDS``), with the same weights:
    the descriptor eager or fused (whose kernels are differentiable twice), or the energies and
    forces compiled together ("compile", ``bench.backends``), and with "-cudagraphs"
    (CUDA only) each step replayed from a CUDA graph (``bench.train_step``), and validation's
    energy + forces calls too (``bench.backends.recorded_calls``). Checked here, before any step."""
    from torch.optim.swa_utils import AveragedModel
    from tqdm import tqdm

    from .backends import check_training_backend, with_backend
    from .train_step import TrainStep, conform_optimizer, set_lr

    check_training_backend(backend, device)
    dtype = getattr(torch, cfg.dtype)
    pot.to(device=device, dtype=dtype)
    step = TrainStep(pot, lr=cfg.lr, force_weight=cfg.force_weight, clip_norm=cfg.clip_norm, backend=backend)
    opt = step.opt
    train_graphs = [g.to(device=device, dtype=dtype) for g in train_graphs]
    valid_graphs = [g.to(device=device, dtype=dtype) for g in valid_graphs]
    gen = torch.Generator().manual_seed(seed)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience)
    ema_decay = {"value": cfg.ema_decay}                 # this update's decay (ema_warmup: rises with the updates)

    def ema_step(averaged: list, current: list, _n) -> None:    # one call per (device, dtype) group
        if averaged and averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - ema_decay["value"])
        else:                                                    # integer buffers (index tables): kept equal
            for a, c in zip(averaged, current):
                a.copy_(c)

    ema = AveragedModel(pot, multi_avg_fn=ema_step, use_buffers=True)
    n_updates = 0
    best, best_epoch, best_state = math.inf, -1, copy.deepcopy(ema.module.state_dict())
    history, stopped_by, start = [], "max_epochs", time.perf_counter()
    first_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        st = torch.load(checkpoint, map_location=device, weights_only=True)
        pot.load_state_dict(st["pot"])
        opt.load_state_dict(st["opt"])
        conform_optimizer(opt, capturable=step.capturable)   # saved by an eager or a graphed training
        sched.load_state_dict(st["sched"])
        ema.load_state_dict(st["ema"])
        gen.set_state(st["gen"].cpu())                    # the shuffling generator's state: a CPU byte tensor
        n_updates, best, best_epoch, best_state = st["n_updates"], st["best"], st["best_epoch"], st["best_state"]
        history, first_epoch = st["history"], st["epoch"] + 1
        start -= st["elapsed"]
    # validation through the same backend: with "-cudagraphs", its energy + forces calls replayed
    # (the EMA weights are updated in place, so the recordings stay valid); compiled, with dynamic
    # shapes from the first call (its batches differ in size: one compile, not three)
    ema_stepper = with_backend(ema.module, backend, dynamic=True)
    bar = tqdm(range(first_epoch, cfg.max_epochs), desc=desc, disable=not progress, leave=False)
    epoch = first_epoch - 1
    try:
        for epoch in bar:
            frac = epoch / cfg.max_epochs
            if cfg.max_time_s:
                frac = max(frac, (time.perf_counter() - start) / cfg.max_time_s)
            stage = min(int(frac * len(cfg.energy_weights)), len(cfg.energy_weights) - 1)
            w_e = cfg.energy_weights[stage]
            final_stage = stage == len(cfg.energy_weights) - 1
            lr = cfg.lr_at(epoch)
            if lr is not None:
                set_lr(opt, lr)
            step.set_energy_weight(w_e)
            pot.train()
            losses = []
            for batch in _batches(train_graphs, cfg.batch_size, gen):
                losses.append(step(batch))         # kept on the device: no host sync per step
                n_updates += 1
                ema_decay["value"] = ema_decay_at(cfg, n_updates)
                ema_update(ema, pot, ema_step, first=n_updates == 1)     # no host sync
            ema.eval()
            val = validation_loss(ema_stepper, valid_graphs, cfg)
            if lr is None:                         # the plateau schedule, after any warm-up
                sched.step(val)
            train_loss = float(torch.stack(losses).double().mean()) if losses else math.nan   # one sync an epoch
            history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": val,
                            "lr": float(opt.param_groups[0]["lr"]), "energy_weight": w_e,
                            "wall_s": time.perf_counter() - start})   # since the training began, resumes included
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{val:.4g}")
            if not final_stage:  # model selection only once the loss weights are final
                best_state, best_epoch = copy.deepcopy(ema.module.state_dict()), epoch
            elif val < best:
                best, best_epoch, best_state = val, epoch, copy.deepcopy(ema.module.state_dict())
            elif epoch - best_epoch >= cfg.patience:
                stopped_by = "early_stopping"
                break
            if cfg.max_time_s and time.perf_counter() - start > cfg.max_time_s:
                stopped_by = "time"
                break
            if checkpoint is not None:
                _save_state(checkpoint, epoch=epoch, pot=pot.state_dict(), opt=opt.state_dict(),
                            sched=sched.state_dict(), ema=ema.state_dict(), gen=gen.get_state(), n_updates=n_updates,
                            best=best, best_epoch=best_epoch, best_state=best_state, history=history,
                            elapsed=time.perf_counter() - start)
    except KeyboardInterrupt:
        stopped_by = "interrupt"
    finally:
        bar.close()
    pot.load_state_dict(best_state)
    return TrainResult(best_state, best_epoch, epoch + 1, time.perf_counter() - start, stopped_by, history)


def ema_update(ema, model, step, *, first: bool) -> None:
    """``AveragedModel.update_parameters(model)`` (``use_buffers=True``, ``multi_avg_fn=step``) without
    its host sync: torch reads the update count, a device tensor, on the host to tell the first
    update (a copy) from the others, which on a GPU waits for the whole training step. Here the
    caller says which it is (it counts updates on the host). The same arithmetic, the same state:
    a copy on the first update, then ``step(averaged, current, n)`` on each (device, dtype) group."""
    averaged = [t.detach() for t in (*ema.module.parameters(), *ema.module.buffers())]
    current = [t.detach() for t in (*model.parameters(), *model.buffers())]
    if first:
        for a, c in zip(averaged, current, strict=True):
            a.copy_(c)
    else:
        groups: dict = {}
        for a, c in zip(averaged, current, strict=True):
            pair = groups.setdefault((a.device, a.dtype), ([], []))
            pair[0].append(a)
            pair[1].append(c.to(a.device))
        for a_group, c_group in groups.values():
            step(a_group, c_group, ema.n_averaged)
    ema.n_averaged += 1


def _save_state(path, **state) -> None:
    from .atomic import atomic_path

    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(state, tmp)


def predict(pot, graphs: Sequence[AtomsGraph], batch_size: int = 16) -> dict:
    """Predictions and references on ``graphs``: per-structure energies, forces, numbers (numpy)."""
    pot.eval()
    dtype, device = pot.scale.dtype, pot.scale.device
    e_pred, e_ref, n_at, f_pred, f_ref, z = [], [], [], [], [], []

    def host(x):
        return x.detach().cpu().numpy()

    for batch in _batches([g.to(device=device, dtype=dtype) for g in graphs], batch_size, None):
        out = pot(batch, forces=True)
        e_pred.append(host(out["energy"].double()))
        f_pred.append(host(out["forces"].double()))
        e_ref.append(host(batch.energy.double()))
        f_ref.append(host(batch.forces.double()))
        n_at.append(host(batch.n_atoms_per_graph))
        z.append(host(batch.numbers))
    cat = np.concatenate
    return {"energy_pred": cat(e_pred), "energy_ref": cat(e_ref), "n_atoms": cat(n_at),
            "forces_pred": cat(f_pred), "forces_ref": cat(f_ref), "numbers": cat(z)}


def error_metrics(pred: dict) -> dict[str, float]:
    """Energy errors (meV, meV/atom), force errors (meV/A), and per-element force MAE."""
    from ase.data import chemical_symbols

    de = (pred["energy_pred"] - pred["energy_ref"]) * 1e3
    dea = de / pred["n_atoms"]
    df = (pred["forces_pred"] - pred["forces_ref"]) * 1e3
    out = {
        "energy_mae": float(np.abs(de).mean()), "energy_rmse": float(np.sqrt((de**2).mean())),
        "energy_mae_per_atom": float(np.abs(dea).mean()), "energy_rmse_per_atom": float(np.sqrt((dea**2).mean())),
        "forces_mae": float(np.abs(df).mean()), "forces_rmse": float(np.sqrt((df**2).mean())),
    }
    for zz in np.unique(pred["numbers"]):
        out[f"forces_mae_{chemical_symbols[int(zz)]}"] = float(np.abs(df[pred["numbers"] == zz]).mean())
    return out
