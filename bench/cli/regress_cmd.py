"""``cace-bench regress | compare | baseline``: CI regression tracking (``bench.regression``)."""

from __future__ import annotations

import sys

from ..errors import InputError

DEFAULT_BASELINES = "results/baselines"


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare a snapshot against a baseline: exit 1 if a tracked figure regressed")
    c.add_argument("baseline", help="a snapshot file, a results folder with regression.json, or a baselines folder")
    c.add_argument("current", help="the same kinds of path as BASELINE")
    _tolerances(c)
    c.set_defaults(func=compare)
    r = sub.add_parser("regress", help="measure the tracked figures (speed ratios; quick accuracy) into a snapshot, "
                                       "and with --baseline compare them (a speed alarm is re-measured once)")
    r.add_argument("--out", default="out/regression", help="folder for regression.json and the accuracy runs")
    r.add_argument("--baseline", default=None, help=f"compare against this baseline (e.g. {DEFAULT_BASELINES})")
    r.add_argument("--speed-only", action="store_true",
                   help="skip the quick accuracy training and the quick accuracy front (about 1-2 min)")
    r.add_argument("--repeats", type=int, default=21, help="round-robin rounds of the speed probe (default 21)")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--confirmations", type=int, default=2,
                   help="speed measurements added while a speed figure is beyond its limit, keeping each "
                        "figure's best (default 2: a figure regresses only if 3 measurements all say so)")
    r.add_argument("--preload", default=None, metavar="FILE",
                   help="a Python file the speed-measuring process runs first (e.g. one that slows CACE down, "
                        "to see the check catch it)")
    _tolerances(r)
    r.set_defaults(func=regress)
    b = sub.add_parser("baseline", help="the stored baselines: accept a snapshot, or list the history")
    bsub = b.add_subparsers(dest="baseline_command", required=True)
    a = bsub.add_parser("accept", help="keep SNAPSHOT as the newest baseline (history is never overwritten)")
    a.add_argument("snapshot")
    a.add_argument("--dir", default=DEFAULT_BASELINES)
    a.set_defaults(func=baseline_accept)
    h = bsub.add_parser("history", help="every accepted baseline's tracked figures, oldest first")
    h.add_argument("--dir", default=DEFAULT_BASELINES)
    h.set_defaults(func=baseline_history)


def _tolerances(p) -> None:
    p.add_argument("--max-slowdown", type=float, default=1.25,
                   help="a speed ratio may worsen by this factor before it counts as a regression (default 1.25)")
    p.add_argument("--accuracy-tolerance", type=float, default=0.25,
                   help="relative worsening of a tracked error allowed (default 0.25)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _judge(baseline: dict, current: dict, args) -> int:
    from ..regression import compare as cmp
    from ..regression import format_changes

    changes = cmp(baseline, current, max_slowdown=args.max_slowdown, accuracy_tolerance=args.accuracy_tolerance)
    print(f"baseline: {baseline['path']} ({baseline.get('created', '?')})")
    print(f"current:  {current.get('path', '(this run)')} ({current.get('created', '?')})")
    print(format_changes(changes))
    return 1 if any(c.regressed for c in changes) else 0


def _check_tolerances(args) -> None:
    if args.max_slowdown < 1.0 or args.accuracy_tolerance < 0:
        raise InputError("--max-slowdown must be >= 1 and --accuracy-tolerance >= 0")


def compare(args) -> int:
    from ..regression import load_snapshot

    _check_tolerances(args)
    return _judge(load_snapshot(args.baseline), load_snapshot(args.current), args)


def regress(args) -> int:
    from ..regression import load_snapshot, measure_against, probe_accuracy, probe_front, write_snapshot

    _check_tolerances(args)
    baseline = load_snapshot(args.baseline) if args.baseline else None   # a bad baseline fails before any work
    if baseline is not None and args.speed_only:  # judge only what was measured
        baseline["figures"] = {k: v for k, v in baseline["figures"].items() if v.get("kind") == "speed"}
    accuracy = {}
    if not args.speed_only:
        _log("accuracy probe: quick built-in run, 25 training structures, both descriptors")
        accuracy = probe_accuracy(args.out, log=_log)
        _log("accuracy front probe: quick built-in front, 25 training structures, w_E 1 and 100, both descriptors")
        accuracy.update(probe_front(args.out, log=_log))
    _log("speed probe: water preset, 192 atoms, energy+forces, CACE / spherical / reference, round-robin")
    snap, _ = measure_against(baseline, repeats=args.repeats, threads=args.threads, accuracy=accuracy,
                              max_slowdown=args.max_slowdown, accuracy_tolerance=args.accuracy_tolerance,
                              preload=args.preload, confirmations=args.confirmations, log=_log)
    path = write_snapshot(args.out, snap)
    snap["path"] = str(path)
    print(f"snapshot: {path}")
    if baseline is None:
        return 0
    return _judge(baseline, snap, args)


def baseline_accept(args) -> int:
    from ..regression import accept

    print(f"accepted: {accept(args.snapshot, args.dir)} (and {args.dir}/latest.json)")
    return 0


def baseline_history(args) -> int:
    import pandas as pd

    from ..regression import history

    snaps = history(args.dir)
    if not snaps:
        raise FileNotFoundError(f"{args.dir}: no accepted baselines in history/")
    rows = [{"baseline": s["path"].rsplit("/", 1)[-1], **{k: round(v["value"], 4) for k, v in s["figures"].items()}}
            for s in snaps]
    print(pd.DataFrame(rows).set_index("baseline").T.to_string())
    return 0
