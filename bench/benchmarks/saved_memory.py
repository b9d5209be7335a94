"""What autograd keeps for one energy + forces call, per atom: the part of the peak memory that
grows with the system and that a change of the model's code can remove.

    python -m bench.benchmarks.saved_memory [--backend eager|fused] [--repeat 1] [--top 8]

Counts every tensor saved for the backward (``torch.autograd.graph.saved_tensors_hooks``) of one
energy + forces call of each descriptor (water preset, the water box repeated ``repeat`` times per
axis, float32), each storage once, and prints the total in kB per atom with the largest saved
storages and the autograd node that saved each. The fused backend runs on CPU tensors in Triton's
interpreter (``TRITON_INTERPRET=1``, slow: ``repeat`` 1, 192 atoms, takes about a minute). This is a
count, not the allocator's peak (which adds the backward's working memory): the GPU peak is the
timing task's ``peak_memory_energy_forces``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..kinds import COMPARED


def saved_per_atom(kind: str, backend: str = "eager", repeat: int = 1, device: str = "cpu") -> dict:
    """{"kb_per_atom": total, "n_atoms", "top": [(kB per atom, shape, saving node), ...] largest first}."""
    from ..backends import with_backend
    from ..tasks.timing import setup

    pot, graph = setup(kind, repeat=repeat, dtype="float32", device=device)
    pot = with_backend(pot, backend)
    seen: dict = {}

    def pack(t):
        storage = t.untyped_storage()
        node = type(t.grad_fn).__name__ if t.grad_fn is not None else "leaf"
        seen.setdefault(storage.data_ptr(), (storage.nbytes(), tuple(t.shape), node))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pot(graph)
    n = graph.n_atoms
    top = sorted(seen.values(), key=lambda v: -v[0])
    return {"kb_per_atom": sum(b for b, _, _ in top) / n / 1e3, "n_atoms": n,
            "top": [(b / n / 1e3, shape, node) for b, shape, node in top]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.saved_memory", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="eager", choices=["eager", "fused"])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for kind in COMPARED:
        r = saved_per_atom(kind, args.backend, args.repeat, args.device)
        print(f"{kind} {args.backend}: {r['kb_per_atom']:.1f} kB an atom saved for energy + forces ({r['n_atoms']} atoms)")
        for kb, shape, node in r["top"][:args.top]:
            print(f"  {kb:6.1f}  {str(shape):22s} {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
