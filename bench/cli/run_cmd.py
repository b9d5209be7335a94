"""``cace-bench run``: the main job on the built-in data (or on the data sets given)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="the main job: every task that exists, on both descriptors")
    p.add_argument("--quick", action="store_true", help="CI-sized budgets")
    p.add_argument("--data", nargs="*", default=["builtin:emt-alloy"], help="builtin:NAME or paths (default builtin:emt-alloy)")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .data_cmd import inspect, load

    for spec in args.data:
        frames = load(spec)
        print(f"== data: {spec}")
        inspect(frames, cutoff=5.0)
    return 0
