"""Bytes the operators of one call write, and how many operators write them, per atom: a memory
traffic floor and a launch count, counted on the CPU before any device time is spent.

    python -m bench.benchmarks.written_bytes [--backend eager|fused] [--mode energy_forces|training_step]
                                             [--repeat 1] [--top 10] [--emulate]

One call of ``mode`` (``tasks.timing.mode_call``: energy + forces, or the timing task's force-loss
training step) of each descriptor, water preset, the water box repeated ``repeat`` times per axis,
float32, after one call of warm-up. Every operator's outputs are counted once when written:

    written = sum over operators of the bytes of each output that is not a view of an input

(views write nothing; an in-place operator writes its output, so it counts). Each operator that
writes is about one kernel launch on a GPU, so ``operators`` counts launches too. A fused
backend's kernels are custom operators: their outputs count, what they do inside does not (so
nothing of a per-edge product they never write). ``--emulate`` runs the fused kernels' launches as
PyTorch code inside those operators (``saved_memory.emulated_kernels``: the same outputs, so the same
count) instead of Triton's slow interpreter. The count is a floor of the traffic, not a timing:
reads, caches and kernel efficiency are not in it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys

import torch

from ..kinds import COMPARED


def written_by(call) -> dict:
    """{"bytes": written by the operators of ``call()``, "operators": how many wrote, "top":
    [(bytes, count, operator, shape), ...] largest first} (the module docstring's count)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    per = collections.Counter()
    count = collections.Counter()

    class Written(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outs = tree_flatten(out)[0]
            infos = [r.alias_info for r in func._schema.returns]
            if len(infos) != len(outs):                                # a list return (split, unbind)
                infos = infos[:1] * len(outs)
            wrote = False
            for t, info in zip(outs, infos):
                if not isinstance(t, torch.Tensor):
                    continue
                if info is not None and not info.is_write:             # a view: nothing written
                    continue
                key = (str(func), tuple(t.shape))
                per[key] += t.nbytes
                count[key] += 1
                wrote = True
            if wrote:
                count["operators"] += 1
            return out

    with Written():
        call()
    n_ops = count.pop("operators", 0)
    top = sorted(((b, count[k], k[0], k[1]) for k, b in per.items()), key=lambda r: -r[0])
    return {"bytes": sum(per.values()), "operators": n_ops, "top": top}


def written_per_atom(kind: str, backend: str = "eager", mode: str = "energy_forces", repeat: int = 1,
                     emulate: bool = False) -> dict:
    """``written_by`` one ``mode`` call of ``kind``'s potential (the timing task's setup), per atom:
    {"kb_per_atom", "operators", "n_atoms", "top": [(kB per atom, count, operator, shape), ...]}."""
    from ..backends import with_backend
    from ..tasks.timing import mode_call, setup
    from .saved_memory import emulated_kernels

    pot, graph = setup(kind, repeat=repeat, dtype="float32", device="cpu")
    with emulated_kernels() if emulate else contextlib.nullcontext():
        call = mode_call(with_backend(pot, backend), graph, mode)
        call()                                                       # the first call's one-off work
        r = written_by(call)
    n = graph.n_atoms
    return {"kb_per_atom": r["bytes"] / n / 1e3, "operators": r["operators"], "n_atoms": n,
            "top": [(b / n / 1e3, c, op, shape) for b, c, op, shape in r["top"]]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.written_bytes", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="eager", choices=["eager", "fused"])
    p.add_argument("--mode", default="energy_forces", choices=["energy_forces", "training_step"])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--emulate", action="store_true",
                   help="with --backend fused: the kernels' launches as PyTorch code (the same count, in seconds)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for kind in COMPARED:
        r = written_per_atom(kind, args.backend, args.mode, args.repeat, args.emulate)
        print(f"{kind} {args.backend} {args.mode}: {r['kb_per_atom']:.0f} kB an atom written by "
              f"{r['operators']} operators ({r['n_atoms']} atoms); largest:", flush=True)
        for kb, c, op, shape in r["top"][:args.top]:
            print(f"  {kb:7.1f}  {c:3d}x {op:45s} {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
