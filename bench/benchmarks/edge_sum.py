"""The fused neighbour-sum kernels alone, every version and launch size, at the water preset's
shapes: parity against the per-edge float64 sum, then forward and backward time per launch (median
of CUDA-event timings, ``triton.testing.do_bench``), beside the two floors.

    python -m bench.benchmarks.edge_sum [--atoms 12288] [--neighbors 70] [--out FILE.json]

The graph is synthetic with the water box's sizes: receivers drawn uniformly (about ``neighbors``
edges an atom, Poisson-distributed counts), Y, R, W standard normal. The kernels' work depends only
on the shapes and the CSR counts, not on the values. The shapes are the preset model's own
(``fused_sums()`` of each descriptor; water: Q = 20 for CACE and 16 for the spherical basis at
l_max 3, R = 6 radial functions, layer 0 with C = 3 channels and L = 1, the Bchi message with C = 9
and L = 4). The first H100 run of this benchmark used R = 12 (the number of radial channels after
mixing, not the kernel's R): its rows overstate the work by 2x (results/gpu/NVIDIA-H100-80GB-HBM3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from ..kinds import COMPARED

# (version, warps); None: the launch size the model uses.
CONFIGS = [("serial", None), ("atomwise-split", None), ("prefetch", None), ("atomwise-split", 4)]


def fastest_by_shape(rows: list[dict], tol: float = 1e-4) -> dict:
    """{(Q, R, C, L): version}: for each sum's shape, the version whose model-size launch (default
    warps) took the least forward + backward time among those that ran and matched the float64 sum
    within ``tol``. Per shape, so that each descriptor's sums run their own fastest kernel (one
    version for both would favour the shape it suits). Rows of versions since removed are skipped."""
    from ..nn.neighbor_sum_triton import KERNELS

    best: dict = {}
    for row in rows:
        if row["warps"] is not None or row["kernel"] not in KERNELS:
            continue
        if "error" in row or not row["parity"] < tol:
            continue
        key = (row["Q"], row["R"], row["C"], row["L"])
        if key not in best or row["fwd_bwd_ms"] < best[key][1]:
            best[key] = (row["kernel"], row["fwd_bwd_ms"])
    if not best:
        raise ValueError("no kernel version ran correctly in these rows")
    return {k: v for k, (v, _) in best.items()}


def policy_string(best: dict) -> str:
    """``$CACE_BENCH_FUSED_KERNEL`` for ``fastest_by_shape``'s answer ("auto" for other shapes)."""
    return ",".join(["auto"] + [f"{Q}x{R}x{C}x{L}={v}" for (Q, R, C, L), v in sorted(best.items())])


def model_sums(preset: str = "water") -> list[tuple]:
    """(descriptor, name, Q, R, C, L) of every neighbour sum of both descriptors of ``preset``."""
    from ..potential import build

    return [(kind, *s) for kind in COMPARED
            for s in build(kind, elements=[1, 8], preset=preset).descriptor.fused_sums()]


def inputs(n_atoms: int, n_edges: int, Q: int, NR: int, C: int, L: int, dtype, device, seed: int = 0):
    """(Y [E, Q], R [E, R], W [N, L, C], senders [E], wl [Q], receivers [E] sorted)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    receivers = torch.sort(torch.randint(0, n_atoms, (n_edges,), generator=g)).values.to(device)
    senders = torch.randint(0, n_atoms, (n_edges,), generator=g).to(device)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).to(device)
    wl = torch.sort(torch.randint(0, L, (Q,), generator=g)).values.to(device)
    return rnd(n_edges, Q), rnd(n_edges, NR), rnd(n_atoms, L, C), senders, wl, receivers


def floors(n_atoms, n_edges, Q, NR, C, L, itemsize=4):
    """(forward, backward) FLOPs and compulsory bytes: 3 E Q R C flops forward (two multiplies and
    an add per term), three times that backward; bytes: each input read once, each output written once."""
    terms = n_edges * Q * NR * C
    edge_bytes = n_edges * ((Q + NR) * itemsize + 8) + n_atoms * L * C * itemsize   # Y, R, senders; W per atom
    out_bytes = n_atoms * Q * NR * C * itemsize
    return dict(fwd_flops=3 * terms, bwd_flops=9 * terms,
                fwd_bytes=edge_bytes + out_bytes, bwd_bytes=2 * edge_bytes + out_bytes)


def _run(version, warps, Y, R, W, senders, wl, rowptr, out, grads):
    from ..nn import neighbor_sum_triton as nst

    nst.launch_forward(Y, R, W, senders, wl, rowptr, out, version, num_warps=warps)
    nst.launch_backward(out, Y, R, W, senders, wl, rowptr, *grads, version=version, num_warps=warps)


def parity(version, warps, Q, NR, C, L, dtype, device) -> float:
    """Largest relative error of the four outputs against the float64 per-edge sum, on 300 atoms;
    outputs poisoned with NaN first (an unwritten element fails)."""
    from ..nn import neighbor_sum_triton as nst
    from ..parity import relative_error

    n_atoms, n_edges = 300, 300 * 30
    Y, R, W, senders, wl, receivers = inputs(n_atoms, n_edges, Q, NR, C, L, dtype, device, seed=1)
    rowptr = nst.receiver_rowptr(receivers, n_atoms)
    out = Y.new_full((n_atoms, Q, NR, C), float("nan"))
    grads = [torch.full_like(t, float("nan")) for t in (Y, R, W)]
    G = torch.randn(out.shape, dtype=dtype, device=device)
    nst.launch_forward(Y, R, W, senders, wl, rowptr, out, version, num_warps=warps)
    nst.launch_backward(G, Y, R, W, senders, wl, rowptr, *grads, version=version, num_warps=warps)
    d = [t.double().requires_grad_(True) for t in (Y, R, W)]
    ref = nst.edge_sum_reference(d[0], d[1], d[2], senders, wl, receivers, n_atoms)
    want = torch.autograd.grad(ref, d, G.double())
    errors = [relative_error(out.double(), ref)] + [relative_error(a.double(), b) for a, b in zip(grads, want)]
    return max(errors)


def median_ms(fn, device) -> float:
    """Median time of ``fn`` in ms: CUDA events through ``triton.testing.do_bench`` (25 ms warm-up,
    200 ms of repeats); on the CPU (a dry run in Triton's interpreter) the median of 3 host-clock calls."""
    if torch.device(device).type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return sorted(times)[1]


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    from ..nn import neighbor_sum_triton as nst

    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.edge_sum", description=__doc__.splitlines()[0])
    p.add_argument("--atoms", type=int, default=12288)
    p.add_argument("--neighbors", type=float, default=70.0, help="mean edges per atom (water box at 5.5 A: 70)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--device", default="cuda", help="cpu: a dry run in Triton's interpreter (TRITON_INTERPRET=1)")
    p.add_argument("--preset", default="water", help="the model whose neighbour sums are timed")
    p.add_argument("--versions", nargs="+", default=None, help="time only these kernel versions")
    p.add_argument("--pick", default=None, metavar="FILE.json",
                   help="print $CACE_BENCH_FUSED_KERNEL for the fastest correct version of each shape in an "
                        "earlier run's rows, and stop (fastest_by_shape)")
    args = p.parse_args(argv)
    if args.pick:
        with open(args.pick) as f:
            print(policy_string(fastest_by_shape(json.load(f)["rows"])))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; --device cpu runs the kernels in Triton's interpreter (TRITON_INTERPRET=1)",
              file=sys.stderr)
        return 2
    device, dtype = args.device, torch.float32
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (Triton interpreter)"
    n_edges = int(args.atoms * args.neighbors)
    rows = []
    print(f"{args.atoms} atoms, {n_edges} edges, float32, {device_name}")
    print(f"{'descriptor':10s} {'sum':7s} {'kernel':14s} {'warps':>5s} {'parity':>8s} {'fwd ms':>8s} "
          f"{'bwd ms':>8s} {'floor fwd':>9s} {'floor bwd':>9s}")
    for desc, name, Q, NR, C, L in model_sums(args.preset):
        Y, R, W, senders, wl, receivers = inputs(args.atoms, n_edges, Q, NR, C, L, dtype, device)
        rowptr = nst.receiver_rowptr(receivers, args.atoms)
        out = Y.new_empty(args.atoms, Q, NR, C)
        grads = [torch.empty_like(t) for t in (Y, R, W)]
        fl = floors(args.atoms, n_edges, Q, NR, C, L)
        for version, warps in [cfg for cfg in CONFIGS if not args.versions or cfg[0] in args.versions]:
            row = dict(descriptor=desc, sum=name, kernel=version, warps=warps, Q=Q, C=C, L=L,
                       R=NR, atoms=args.atoms, edges=n_edges, **fl)
            try:
                row["parity"] = parity(version, warps, Q, NR, C, L, dtype, device)
                fwd = lambda: nst.launch_forward(Y, R, W, senders, wl, rowptr, out, version, num_warps=warps)
                both = lambda: _run(version, warps, Y, R, W, senders, wl, rowptr, out, grads)
                row["fwd_ms"] = median_ms(fwd, device)
                row["fwd_bwd_ms"] = median_ms(both, device)
                row["bwd_ms"] = row["fwd_bwd_ms"] - row["fwd_ms"]
            except Exception as err:                       # a launch size that does not compile
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            rows.append(row)
            if args.out:                                   # after every row: a run cut short keeps what it timed
                _write(args.out, device_name, rows)
            # floors at 3.0 TB/s (device copy) and ~50 TFLOP/s FP32 (non-tensor-core), H100
            ffl = max(fl["fwd_flops"] / 50e12, fl["fwd_bytes"] / 3.0e12) * 1e3
            bfl = max(fl["bwd_flops"] / 50e12, fl["bwd_bytes"] / 3.0e12) * 1e3
            if "error" in row:
                print(f"{desc:10s} {name:7s} {version:14s} {warps or '-':>5} {row['error']}")
            else:
                print(f"{desc:10s} {name:7s} {version:14s} {warps or '-':>5} {row['parity']:8.1e} "
                      f"{row['fwd_ms']:8.3f} {row['bwd_ms']:8.3f} {ffl:9.3f} {bfl:9.3f}", flush=True)
        del Y, R, W, senders, out, grads
    return 0


def _write(path: str, device_name: str, rows: list) -> None:
    from ..atomic import write_json_atomic

    write_json_atomic(path, dict(device=device_name, torch=torch.__version__, triton=__import__("triton").__version__,
                                 rows=rows))


if __name__ == "__main__":
    sys.exit(main())
