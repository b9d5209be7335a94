"""What autograd keeps for one energy + forces call, per atom: the part of the peak memory that
grows with the system and that a change of the model's code can remove; with ``--peak``, the peak
itself, counted on the CPU.

    python -m bench.benchmarks.saved_memory [--backend eager|fused] [--repeat 1] [--top 8] [--peak]

Counts every tensor saved for the backward (``torch.autograd.graph.saved_tensors_hooks``) of one
energy + forces call of each descriptor (water preset, the water box repeated ``repeat`` times per
axis, float32), each storage once, and prints the total in kB per atom with the largest saved
storages and the autograd node that saved each. The fused backend runs on CPU tensors in Triton's
interpreter (``TRITON_INTERPRET=1``, slow: ``repeat`` 1, 192 atoms, takes about a minute). This is a
count, not the allocator's peak (which adds the backward's working memory): the GPU peak is the
timing task's ``peak_memory_energy_forces``.

``--peak`` counts that peak without a GPU: every storage an operator creates during the call is
added when it is made and removed when it is freed (a ``TorchDispatchMode`` and a finaliser per
storage), and the largest sum is the peak, printed with the storages live at that moment. It
follows the CUDA allocator's peak closely (water preset, 192 atoms, float32: eager CACE 171 kB an
atom against 160 on an H200; with the fused neighbour sums 97.6 against 96), since both count the
same tensors; the allocator adds only its rounding. Slow under the interpreter (a fused call takes
tens of minutes on 2 CPU threads).
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


def peak_per_atom(kind: str, backend: str = "eager", repeat: int = 1, device: str = "cpu") -> dict:
    """{"kb_per_atom": the largest total of live storages made during one energy + forces call,
    "n_atoms", "at": the operator that reached it, "top": [(kB per atom, shape, operator), ...] the
    storages live then, largest first}. Inputs, parameters and anything made before the call are
    not counted (the allocator's peak above its start)."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from ..backends import with_backend
    from ..tasks.timing import setup

    pot, graph = setup(kind, repeat=repeat, dtype="float32", device=device)
    pot = with_backend(pot, backend)
    pot(graph)                                                       # the first call's one-off work

    class Live(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live, self.total, self.peak, self.at = {}, 0, 0, None

        def _freed(self, key):
            size = self.live.pop(key, (0,))[0]
            self.total -= size

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key in self.live or storage.nbytes() == 0:
                    continue
                self.live[key] = (storage.nbytes(), tuple(t.shape), str(func))
                self.total += storage.nbytes()
                weakref.finalize(storage, self._freed, key)
                if self.total > self.peak:
                    self.peak, self.at = self.total, (str(func), list(self.live.values()))
            return out

    mode = Live()
    with mode:
        pot(graph)
    n = graph.n_atoms
    top = sorted(mode.at[1], key=lambda v: -v[0]) if mode.at else []
    return {"kb_per_atom": mode.peak / n / 1e3, "n_atoms": n, "at": mode.at[0] if mode.at else None,
            "top": [(b / n / 1e3, shape, op) for b, shape, op in top]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.saved_memory", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="eager", choices=["eager", "fused"])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak", action="store_true", help="the peak of live storages, not what autograd saves")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for kind in COMPARED:
        if args.peak:
            r = peak_per_atom(kind, args.backend, args.repeat, args.device)
            print(f"{kind} {args.backend}: peak {r['kb_per_atom']:.1f} kB an atom during energy + forces "
                  f"({r['n_atoms']} atoms), reached at {r['at']}; live then:", flush=True)
            for kb, shape, op in r["top"][:args.top]:
                print(f"  {kb:6.1f}  {str(shape):22s} {op}")
            continue
        r = saved_per_atom(kind, args.backend, args.repeat, args.device)
        print(f"{kind} {args.backend}: {r['kb_per_atom']:.1f} kB an atom saved for energy + forces ({r['n_atoms']} atoms)")
        for kb, shape, node in r["top"][:args.top]:
            print(f"  {kb:6.1f}  {str(shape):22s} {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
