"""The symmetrisation alone: the PyTorch form (gathered rows, [terms, M] products, the coefficient
matmul) against the fused Triton kernel (``bench/nn/contraction_triton.py``), forward, forward +
backward, and forward + backward + second derivative (a force-loss training step's: the backward
differentiated again, with respect to A and the incoming gradient; the kernel's two tangent
launches), both descriptors, at the water preset's shapes, beside the two floors.

    python -m bench.benchmarks.contraction [--atoms 12288] [--preset water] [--out FILE.json]

A is standard normal [atoms, Q, K, C] (the kernel's work depends on the shapes only). Times are
medians of CUDA-event timings (``triton.testing.do_bench``); on the CPU the kernel runs in Triton's
interpreter, a dry run of the script, not a timing. Floors, per call: FLOPs sum_o (o + 1) T_o M
(a multiply per factor and coefficient, an add per term) at ~50 TFLOP/s FP32, bytes A read once
and B written once (the backward: A and dB read, dA written; the second derivative: A, v read and
dB' written, then dB, A, v read and dA' written) at 3 TB/s. Peak memory of each
form's forward + backward beyond its inputs and outputs is printed too (CUDA allocator).
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..kinds import COMPARED


def floors(sym, M: int, Q: int, itemsize: int = 4) -> dict:
    terms = sym.n_terms()
    flops = sum((o + 1) * terms[o] * M for o in sym.orders)
    return {"fwd_flops": flops, "bwd_flops": 2 * flops, "second_flops": 4 * flops,
            "fwd_bytes": itemsize * M * (Q + sym.n_invariants),
            "bwd_bytes": itemsize * M * (2 * Q + sym.n_invariants),
            "second_bytes": itemsize * M * (5 * Q + 2 * sym.n_invariants)}


def run(atoms: int = 12288, preset: str = "water", device: str = "cuda") -> list[dict]:
    from ..potential import build
    from .edge_sum import median_ms

    rows = []
    for kind in COMPARED:
        desc = build(kind, elements=[1, 8], preset=preset).descriptor.to(device)
        sym, Q = desc.symmetrize, desc.angular.n_ang
        K, C = desc.config()["n_radial"], desc.n_channels
        A = torch.randn(atoms, Q, K, C, device=device, requires_grad=True)
        g = torch.randn(atoms, sym.n_invariants, K, C, device=device)
        gq = g.clone().requires_grad_(True)
        v = torch.randn_like(A)                                     # the cotangent of dA
        ref = sym(A)
        (gref,) = torch.autograd.grad(ref, A, g)

        def second(fused):
            (gA,) = torch.autograd.grad(sym(A, fused=fused), A, gq, create_graph=True)
            return torch.autograd.grad(gA, (A, gq), v)

        sref = second(False)
        fl = floors(sym, atoms * K * C, Q)
        for form, fused in (("pytorch", False), ("kernel", True)):
            out = sym(A, fused=fused)
            (gout,) = torch.autograd.grad(out, A, g)
            parity = max([float((out - ref).detach().norm() / ref.detach().norm()),
                          float((gout - gref).norm() / gref.norm())]
                         + [float((a - b).norm() / b.norm()) for a, b in zip(second(fused), sref)])
            fwd = lambda: sym(A.detach(), fused=fused)
            both = lambda: torch.autograd.grad(sym(A, fused=fused), A, g)
            peak = None
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                both()
                torch.cuda.synchronize()
                peak = (torch.cuda.max_memory_allocated() - base) / atoms / 1e3
            row = dict(descriptor=kind, form=form, atoms=atoms, Q=Q, K=K, C=C, terms=sym.n_terms(), parity=parity,
                       fwd_ms=median_ms(fwd, device), fwd_bwd_ms=median_ms(both, device),
                       second_ms=median_ms(lambda: second(fused), device),
                       peak_kb_per_atom=peak, **fl)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.contraction", description=__doc__.splitlines()[0])
    p.add_argument("--atoms", type=int, default=12288)
    p.add_argument("--preset", default="water")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = run(args.atoms, args.preset, args.device)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu (Triton interpreter: not a timing)"
    print(f"symmetrisation alone, {args.atoms} atoms, {args.preset} preset, float32, {name}")
    print(f"{'descriptor':10s} {'form':8s} {'parity':>8s} {'fwd ms':>8s} {'fwd+bwd ms':>10s} {'+2nd ms':>8s} "
          f"{'floor fwd':>9s} {'floor f+b':>9s} {'floor +2nd':>10s} {'peak kB/atom':>12s}")
    for r in rows:
        ffl = max(r["fwd_flops"] / 50e12, r["fwd_bytes"] / 3.0e12) * 1e3
        bfl = ffl + max(r["bwd_flops"] / 50e12, r["bwd_bytes"] / 3.0e12) * 1e3
        sfl = bfl + max(r["second_flops"] / 50e12, r["second_bytes"] / 3.0e12) * 1e3
        peak = "-" if r["peak_kb_per_atom"] is None else f"{r['peak_kb_per_atom']:.1f}"
        print(f"{r['descriptor']:10s} {r['form']:8s} {r['parity']:8.1e} {r['fwd_ms']:8.3f} {r['fwd_bwd_ms']:10.3f} "
              f"{r['second_ms']:8.3f} {ffl:9.3f} {bfl:9.3f} {sfl:10.3f} {peak:>12s}")
    if args.out:
        from ..provenance import provenance
        from ..results.io import write_json_atomic

        write_json_atomic(args.out, {"benchmark": "symmetrisation", "rows": rows,
                                     "provenance": provenance(args.device, dtype="float32")})
    return 0 if all(r["parity"] < 1e-4 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
