"""What autograd keeps for one energy + forces call, per atom: the part of the peak memory that
grows with the system and that a change of the model's code can remove; with ``--peak``, the peak
itself, counted on the CPU.

    python -m bench.benchmarks.saved_memory [--backend eager|fused] [--repeat 1] [--top 8] [--peak]
                                            [--mode energy_forces|training_step] [--emulate]

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
follows the CUDA allocator's peak (water preset, 192 atoms, float32, CACE: eager 171 kB an atom
against 160 on an H200; with the fused neighbour sums 93.3 against 96, counted at 65183d7 with
the symmetrisation in PyTorch, as the H200 ran it), since both count the same tensors; the
allocator adds its rounding. (That fused count was first given as 97.6: Triton's interpreter had
kept kernel arguments alive in reference cycles, which the counter now collects.) Slow under the interpreter (a fused call takes
tens of minutes on 2 CPU threads); ``--emulate`` runs the kernels' launches as PyTorch code that
writes the same outputs (``emulated_kernels``), which the counter cannot tell apart: the same
count in seconds.

    python -m bench.benchmarks.saved_memory --peak --backend fused --emulate
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch

from ..kinds import COMPARED
from ..nn.neighbor_sum_triton import csr_rows, edge_sum_reference


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


def peak_per_atom(kind: str, backend: str = "eager", repeat: int = 1, device: str = "cpu",
                  emulate: bool = False, mode: str = "energy_forces") -> dict:
    """{"kb_per_atom": the largest total of live storages made during one energy + forces call
    (or another timing ``mode``: ``training_step``, the timing task's force-loss step),
    "n_atoms", "at": the operator that reached it, "top": [(kB per atom, shape, operator), ...] the
    storages live then, largest first}. Inputs, parameters and anything made before the call are
    not counted (the allocator's peak above its start). ``emulate``: ``emulated_kernels`` (the
    fused backends' count in seconds instead of the interpreter's tens of minutes)."""
    from ..backends import with_backend
    from ..tasks.timing import setup

    pot, graph = setup(kind, repeat=repeat, dtype="float32", device=device)
    with emulated_kernels() if emulate else contextlib.nullcontext():
        return peak_of(with_backend(pot, backend), graph, mode)


def peak_of(pot, graph, mode: str = "energy_forces") -> dict:
    """``peak_per_atom``'s count for one ``mode`` call (``tasks.timing.mode_call``) of ``pot`` on ``graph``."""
    import gc
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from ..tasks.timing import mode_call

    call = mode_call(pot, graph, mode)
    call()                                                           # the first call's one-off work

    class Live(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live, self.total, self.peak, self.at = {}, 0, 0, None

        def _freed(self, key):
            size = self.live.pop(key, (0,))[0]
            self.total -= size

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.namespace == "cace_bench":
                # Triton's interpreter leaves a kernel's arguments in reference cycles, freed only
                # at the next garbage collection (a GPU launch frees them at once): collected here,
                # so that the interpreter's count is the GPU's
                gc.collect()
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

    live = Live()
    with live:
        call()
    n = graph.n_atoms
    top = sorted(live.at[1], key=lambda v: -v[0]) if live.at else []
    return {"kb_per_atom": live.peak / n / 1e3, "n_atoms": n, "at": live.at[0] if live.at else None,
            "top": [(b / n / 1e3, shape, op) for b, shape, op in top]}


# --- the fused kernels' launches in PyTorch, for counting only --------------------------------------
def _edge_sum_forward(Y, R, W, senders, wl, rowptr, out, **_):
    """out[i, q, n, c] = sum_{e = (j -> i)} Y[e, q] R[e, n] W[j, wl[q], c] (``launch_forward``'s result)."""
    out.copy_(edge_sum_reference(Y, R, W, senders, wl, csr_rows(rowptr, senders.shape[0]), rowptr.shape[0] - 1))


def _edge_sum_backward(grad, Y, R, W, senders, wl, rowptr, gY, gR, gW, **_):
    """The three gradients of that sum (``launch_backward``'s results), per edge."""
    Ge = grad[csr_rows(rowptr, senders.shape[0])]                                    # [E, Q, R, C]
    Wq = W[senders][:, wl]                                           # [E, Q, C]
    gY.copy_(torch.einsum("eqnc,en,eqc->eq", Ge, R, Wq))
    gR.copy_(torch.einsum("eqnc,eq,eqc->en", Ge, Y, Wq))
    per_l = torch.nn.functional.one_hot(wl, W.shape[1]).to(Y.dtype)   # [Q, L]
    gW_edge = torch.einsum("eqnc,eq,en,ql->elc", Ge, Y, R, per_l)    # [E, L, C]
    gW.copy_(torch.zeros_like(W).index_add(0, senders, gW_edge))


def _products(A, idx, n_factors, first, V=None):
    """first * prod_{f < n_factors[t]} A[:, idx[t, f]]  [N, T, KC] (a loop over factor positions);
    with V, its derivative along V (dual numbers, as the kernels' ``TANGENT`` form)."""
    tangent = torch.zeros_like(first) if V is not None else None
    for f in range(idx.shape[1]):
        used = (f < n_factors)[None, :, None]
        a = torch.where(used, A[:, idx[:, f]], 1.0)
        if V is not None:
            tangent = tangent * a + first * torch.where(used, V[:, idx[:, f]], 0.0)
        first = first * a
    return first if V is None else tangent


def _contract_forward(A, fptr, fidx, ford, fcoef, out, V=None):
    """B[:, b] = sum_{t in row b} coef[t] prod_f A[:, idx[t, f]] (``contraction_triton.launch_forward``;
    with V its derivative along V)."""
    P = _products(A, fidx, ford, fcoef.to(A.dtype)[None, :, None], V)
    out.copy_(torch.zeros_like(out).index_add(1, csr_rows(fptr, fidx.shape[0]), P))


def _contract_backward(gB, A, bptr, bout, both, bn, bcoef, gA, V=None):
    """gA[:, q] = sum_{pairs p of row q} coef[p] gB[:, out[p]] prod_f A[:, other[p, f]] (with V its
    derivative along V)."""
    P = _products(A, both, bn, gB[:, bout] * bcoef.to(A.dtype)[None, :, None], V)
    gA.copy_(torch.zeros_like(gA).index_add(1, csr_rows(bptr, both.shape[0]), P))


@contextlib.contextmanager
def emulated_kernels():
    """Inside, the fused backends' Triton launches (neighbour sums and symmetrisation, forward and
    backward) are PyTorch code that writes the same outputs into the same tensors. The operators
    around them, and so every storage the peak counter sees (it sees an operator's outputs, not
    what its implementation does inside), are unchanged: the fused path's count in seconds on
    the CPU, equal to the interpreter's (a test checks it). For counting memory only: the
    per-edge products inside take O(E Q R C) memory and are not timings of anything."""
    from ..nn import contraction_triton as ct
    from ..nn import neighbor_sum_triton as nst

    swaps = [(nst, "launch_forward", _edge_sum_forward), (nst, "launch_backward", _edge_sum_backward),
             (ct, "launch_forward", _contract_forward), (ct, "launch_backward", _contract_backward),
             (nst, "check_device", _any_device), (ct, "check_device", _any_device)]   # no kernel runs
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, fn in swaps:
        setattr(module, name, fn)
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def _any_device(device) -> None:
    """``check_device`` under ``emulated_kernels``: PyTorch code runs on any device."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.saved_memory", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="eager", choices=["eager", "fused"])
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak", action="store_true", help="the peak of live storages, not what autograd saves")
    p.add_argument("--mode", default="energy_forces", choices=["energy_forces", "training_step"],
                   help="with --peak: the call counted (training_step: the timing task's force-loss step)")
    p.add_argument("--emulate", action="store_true",
                   help="with --peak --backend fused: the kernels' launches as PyTorch code writing the same "
                        "outputs (the same count, in seconds instead of the interpreter's tens of minutes)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    for kind in COMPARED:
        if args.peak:
            r = peak_per_atom(kind, args.backend, args.repeat, args.device, emulate=args.emulate, mode=args.mode)
            what = "energy + forces" if args.mode == "energy_forces" else "a force-loss training step"
            print(f"{kind} {args.backend}: peak {r['kb_per_atom']:.1f} kB an atom during {what} "
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
