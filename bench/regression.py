"""Regression tracking: a snapshot of tracked figures, a comparison against a stored baseline, a history.

Tracked figures (each with the direction that is better, from ``bench.metrics`` conventions):
    speed.spherical_over_cace         higher   energy+forces time, spherical / CACE, water preset, 192 atoms
    speed.cace_over_reference         lower    CACE / the fixed reference workload (``tasks.reference``)
    speed.spherical_over_reference    lower    spherical / the fixed reference workload
    accuracy.<kind>.forces_mae        lower    quick built-in run (25 training structures), meV/A
    accuracy.<kind>.energy_mae_per_atom lower  same run, meV/atom
    front.<kind>.geomean_error        lower    quick accuracy front (25 training structures, final energy
                                               weights 1 and 100, seed 0): the geometric mean over the
                                               settings of sqrt(E F) (``tasks.front.front_summary``)
Speed is only ever a ratio of times taken round-robin in one run (median of per-round ratios),
never an absolute time, so a baseline from one machine judges a run on another.

A figure regresses when it is worse than the baseline by more than its tolerance: speed by more
than ``max_slowdown`` (a factor, default 1.25), accuracy by more than ``accuracy_tolerance``
(relative, default 0.25: quick training in float32 on 2 threads is reproducible to about 1%, but
not bit for bit across machines). A tracked figure missing from the current snapshot regresses.

Baselines folder: ``history/NNNN-<date>-<commit>.json`` (every accepted snapshot, kept) and
``latest.json`` (a copy of the newest); ``load_snapshot`` takes a snapshot file, a results folder
holding ``regression.json``, or a baselines folder (its ``latest.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .results.io import write_json_atomic
from .results.store import ResultsError
from .kinds import COMPARED

FORMAT = "cace-bench/regression-v1"
SNAPSHOT_NAME = "regression.json"


# --- measuring -----------------------------------------------------------------------------------
def probe_speed(*, repeats: int = 21, warmup: int = 3, threads: int = 2, device: str = "cpu",
                preload: str | None = None) -> dict:
    """Speed figures from one round-robin run of CACE, spherical and the reference workload.

    Measured in a fresh Python process, so that what this process did before (training, say,
    which leaves the allocator and thread pools in another state) cannot move the ratios.
    ``preload``: a Python file the measuring process runs first (to inject a slowdown and watch
    the check catch it, or to attach a profiler).
    """
    import subprocess
    import sys

    args = json.dumps({"repeats": repeats, "warmup": warmup, "threads": threads, "device": device, "preload": preload})
    res = subprocess.run([sys.executable, "-m", "bench.regression", "--speed-probe", args], capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise RuntimeError(f"the speed probe failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _probe_speed_here(repeats: int, warmup: int, threads: int, device: str, preload: str | None) -> dict:
    from .tasks.measure import paired_ratio, time_round_robin
    from .tasks.reference import ReferenceWorkload
    from .tasks.timing import KINDS, mode_call, setup

    if preload:
        import runpy

        runpy.run_path(preload)
    torch.set_num_threads(threads)
    calls = {}
    for kind in KINDS:
        pot, graph = setup(kind, preset="water", repeat=1, dtype="float32", device=device)
        calls[kind] = mode_call(pot, graph, "energy_forces")
    calls["reference"] = ReferenceWorkload(device=device)
    t = time_round_robin(calls, device=device, warmup=warmup, repeats=repeats)
    out = {}
    for name, num, den, better in (("speed.spherical_over_cace", "spherical", "cace", "higher"),
                                   ("speed.cace_over_reference", "cace", "reference", "lower"),
                                   ("speed.spherical_over_reference", "spherical", "reference", "lower")):
        r = paired_ratio(t, num, den)
        out[name] = {"value": r["median"], "iqr": r["iqr"], "better": better, "kind": "speed", "unit": ""}
    return out


def probe_accuracy(workdir, *, log=print) -> dict:
    """Accuracy figures of the quick built-in run at 25 training structures (both descriptors)."""
    from dataclasses import replace

    from .results.store import ResultsStore
    from .tasks import accuracy
    from .tasks.presets import accuracy_spec

    spec = replace(accuracy_spec("builtin:emt-alloy", quick=True), train_sizes=(25,))
    records = accuracy.run(spec, ResultsStore(workdir), progress=False, log=log)
    if not records:  # already done in this folder: read them back
        records = ResultsStore(workdir).records()
    out = {}
    for r in records:
        if r.get("task") == "accuracy" and r["metric"] in ("forces_mae", "energy_mae_per_atom") and not r.get("extra_test"):
            out[f"accuracy.{r['descriptor']}.{r['metric']}"] = {"value": r["value"], "better": "lower",
                                                                 "kind": "accuracy", "unit": r["unit"]}
    return out


def probe_front(workdir, *, log=print) -> dict:
    """The accuracy front's summary figures (``tasks.front.front_summary``) of a quick front on the
    built-in set: 25 training structures, final energy weights 1 and 100, seed 0, both descriptors."""
    from dataclasses import replace

    from .results.store import ResultsStore
    from .tasks import front
    from .tasks.presets import front_spec

    spec = replace(front_spec("builtin:emt-alloy", quick=True, weights=(1.0, 100.0), seeds=(0,),
                              variants=COMPARED), n_train=25)
    store = ResultsStore(workdir)
    front.run(spec, store, progress=False, log=log)
    points = front.front_points(store.records())
    return {f"front.{variant}.geomean_error": {"value": g, "better": "lower", "kind": "accuracy",
                                                "unit": front.SUMMARY_UNIT}
            for variant, g in front.front_summary(points).items()}


def snapshot(figures: dict, **extra) -> dict:
    from .malloc import uncalled_state
    from .provenance import provenance
    from .tasks.reference import VERSION

    return {"format": FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "reference_version": VERSION, "provenance": provenance("cpu"), "figures": figures,
            # the speed probe is its own fresh process, which leaves glibc's malloc as it is (it does
            # not call bench.malloc): the speed figures keep the regime every stored baseline had
            "speed_probe_malloc": uncalled_state(), **extra}


def measure_against(baseline: dict | None, *, repeats: int = 21, threads: int = 2, accuracy: dict | None = None,
                    max_slowdown: float = 1.25, accuracy_tolerance: float = 0.25, preload: str | None = None,
                    confirmations: int = 2, probe=None, log=print) -> tuple[dict, list]:
    """The CI decision: measure speed (plus the given ``accuracy`` figures), compare with
    ``baseline``; while a speed figure is beyond its limit, measure speed again, up to
    ``confirmations`` more times, keeping the best measurement of each figure (noise does not
    repeat, a real slowdown does: a figure regresses only if every one of its measurements is
    beyond the limit). Every measurement's values are kept in the snapshot's ``speed_runs``.
    ``probe``: the speed measurement, ``probe_speed`` unless given (a test passes a fake one).
    Returns (snapshot, changes); without a baseline, the snapshot and no changes."""
    probe = probe or probe_speed

    def measure() -> dict:
        return probe(repeats=repeats, threads=threads, preload=preload)

    first = measure()
    runs = [first]
    snap = snapshot({**first, **(accuracy or {})}, threads=threads, repeats=repeats)
    if baseline is None:
        return snap, []
    changes = compare(baseline, snap, max_slowdown=max_slowdown, accuracy_tolerance=accuracy_tolerance)
    while len(runs) <= confirmations and any(c.regressed and c.name.startswith("speed.") for c in changes):
        beyond = ", ".join(f"{c.name} {c.worse_by:+.1%}" for c in changes
                           if c.regressed and c.name.startswith("speed.") and c.worse_by is not None)
        log(f"a speed figure is beyond its limit ({beyond}): measuring speed once more "
            f"({len(runs) + 1} of at most {confirmations + 1}), keeping the best of each figure")
        runs.append(measure())
        snap["figures"] = merge_best(snap["figures"], runs[-1])
        snap["confirmed"] = True
        changes = compare(baseline, snap, max_slowdown=max_slowdown, accuracy_tolerance=accuracy_tolerance)
    snap["speed_runs"] = [{name: f["value"] for name, f in run.items()} for run in runs]
    return snap, changes


def merge_best(a: dict, b: dict) -> dict:
    """Per figure, the better of two measurements (a confirmation run after an alarm)."""
    from .metrics import is_better

    out = dict(a)
    for name, fb in b.items():
        fa = a.get(name)
        if fa is None or is_better(fb["value"], fa["value"], fb["better"]):
            out[name] = fb
    return out


# --- reading and comparing -----------------------------------------------------------------------
def load_snapshot(path) -> dict:
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "latest.json", path / SNAPSHOT_NAME):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise ResultsError(f"{path}: no latest.json or {SNAPSHOT_NAME} in this folder")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: cannot read the snapshot ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("figures"), dict):
        raise ResultsError(f"{path}: not a cace-bench regression snapshot (expected format {FORMAT!r})")
    for name, fig in data["figures"].items():
        if not isinstance(fig, dict) or not isinstance(fig.get("value"), (int, float)) or fig.get("better") not in ("lower", "higher"):
            raise ResultsError(f"{path}: figure {name!r} lacks a numeric 'value' or a 'better' of lower/higher")
    data["path"] = str(path)
    return data


@dataclass(frozen=True)
class Change:
    name: str
    baseline: float
    current: float | None
    worse_by: float | None       # relative worsening (0.3: 30% worse; negative: better); None if missing
    limit: float
    regressed: bool

    def row(self) -> list[str]:
        cur = "missing" if self.current is None else f"{self.current:.4g}"
        moved = "-" if self.worse_by is None else f"{self.worse_by:+.1%}"
        return [self.name, f"{self.baseline:.4g}", cur, moved, f"{self.limit:+.0%}",
                "REGRESSED" if self.regressed else "ok"]


def compare(baseline: dict, current: dict, *, max_slowdown: float = 1.25, accuracy_tolerance: float = 0.25) -> list[Change]:
    """One Change per tracked figure of the baseline; ``worse_by`` is the relative worsening."""
    if baseline.get("reference_version") != current.get("reference_version"):
        raise ResultsError(f"reference workload versions differ ({baseline.get('reference_version')} in "
                           f"{baseline.get('path', 'baseline')}, {current.get('reference_version')} in "
                           f"{current.get('path', 'current')}): accept a new baseline first")
    out = []
    for name, base in sorted(baseline["figures"].items()):
        limit = (max_slowdown - 1.0) if base.get("kind") == "speed" else accuracy_tolerance
        cur = current["figures"].get(name)
        if cur is None:
            out.append(Change(name, base["value"], None, None, limit, True))
            continue
        b, c = float(base["value"]), float(cur["value"])
        factor = (b / c if base["better"] == "higher" else c / b) if b > 0 and c > 0 else float("inf")
        worse = factor - 1.0
        out.append(Change(name, b, c, worse, limit, worse > limit))
    return out


def format_changes(changes: list[Change]) -> str:
    head = ["figure", "baseline", "current", "worse by", "limit", "status"]
    rows = [head] + [c.row() for c in changes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_bad = sum(c.regressed for c in changes)
    lines.append(f"{n_bad} of {len(changes)} tracked figures regressed" if n_bad else
                 f"no regression ({len(changes)} tracked figures)")
    return "\n".join(lines)


# --- the baselines folder ------------------------------------------------------------------------
def history(folder) -> list[dict]:
    """Every accepted snapshot in ``folder/history``, oldest first."""
    return [load_snapshot(p) for p in sorted((Path(folder) / "history").glob("*.json"))]


def accept(snapshot_path, folder) -> Path:
    """Keep ``snapshot_path`` as the newest baseline: a numbered copy in history/ and latest.json."""
    snap = load_snapshot(snapshot_path)
    folder = Path(folder)
    (folder / "history").mkdir(parents=True, exist_ok=True)
    n = len(list((folder / "history").glob("*.json"))) + 1
    commit = ((snap.get("provenance") or {}).get("git") or {}).get("commit") or "nocommit"
    date = snap.get("created", "")[:10].replace("-", "") or "undated"
    target = folder / "history" / f"{n:04d}-{date}-{commit[:10]}.json"
    shutil.copyfile(snap["path"], target)
    payload = {k: v for k, v in snap.items() if k != "path"}
    write_json_atomic(folder / "latest.json", payload)
    return target


def write_snapshot(folder, snap: dict) -> Path:
    return write_json_atomic(Path(folder) / SNAPSHOT_NAME, snap)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--speed-probe":
        print(json.dumps(_probe_speed_here(**json.loads(sys.argv[2]))))
