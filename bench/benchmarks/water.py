"""Energy+forces time and peak memory of the water preset, CACE beside the spherical baseline.

    python -m bench.benchmarks.water [--sizes 1 2] [--threads 2] [--dtype float32] [--device cpu]
                                     [--repeats 10] [--out results/timing/water-cpu.json]

The water box is ``bench.structures.water_box()`` (64 H2O in 12.42 A, 192 atoms) and its 2x2x2
supercell (1536 atoms). Both potentials get the same preset, dtype, threads and graph; they are
timed round-robin in one process after warm-up (median and IQR), and the headline is the ratio
spherical / CACE (median of the per-round ratios). Peak memory: one energy+forces call in a fresh
process per case. The full sweeps are ``cace-bench timing``; this is the one-table headline.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..tasks.accuracy import DESCRIPTORS as KINDS


def run(sizes=(1, 2), threads: int = 2, dtype: str = "float32", device: str = "cpu", repeats: int = 10,
        warmup: int = 3) -> dict:
    from ..provenance import provenance
    from ..tasks.measure import paired_ratio, time_round_robin
    from ..tasks.timing import mode_call, peak_memory, setup

    torch.set_num_threads(threads)
    rows, ratios = [], []
    for repeat in sizes:
        case = dict(preset="water", repeat=repeat, dtype=dtype, device=device)
        setups = {k: setup(k, **case) for k in KINDS}
        calls = {k: mode_call(p, g, "energy_forces") for k, (p, g) in setups.items()}
        timing = time_round_robin(calls, device=device, warmup=warmup, repeats=repeats)
        n_atoms = setups["cace"][1].n_atoms
        mem = {k: peak_memory(k, threads=threads, **case) for k in KINDS}
        for k in KINDS:
            pot = setups[k][0]
            rows.append({
                "descriptor": k, "n_atoms": n_atoms, "n_edges": setups[k][1].n_edges,
                "median_ms": 1e3 * timing[k]["median_s"], "iqr_ms": 1e3 * timing[k]["iqr_s"],
                "peak_mb": mem[k] / 2**20, "mb_per_atom": mem[k] / 2**20 / n_atoms,
                "n_parameters": sum(p.numel() for p in pot.parameters()), "n_features": pot.descriptor.n_features,
                "times_ms": [1e3 * t for t in timing[k]["times_s"]],
            })
        ratios.append({"n_atoms": n_atoms, "time_spherical_over_cace": paired_ratio(timing, "spherical", "cace")["median"],
                       "memory_spherical_over_cace": mem["spherical"] / mem["cace"]})
    return {"benchmark": "water energy+forces", "preset": "water", "dtype": dtype, "repeats": repeats, "warmup": warmup,
            "rows": rows, "ratios": ratios, "provenance": provenance(device, dtype=dtype)}


def format_table(result: dict) -> str:
    lines = [f"water preset, energy+forces, {result['dtype']}, {result['provenance']['device_name']}, "
             f"threads={result['provenance'].get('threads', '-')}, median of {result['repeats']} after {result['warmup']} warm-up",
             f"{'descriptor':10s} {'atoms':>6s} {'median ms':>10s} {'IQR ms':>8s} {'peak MB':>8s} {'MB/atom':>8s} {'params':>7s}"]
    for r in result["rows"]:
        lines.append(f"{r['descriptor']:10s} {r['n_atoms']:6d} {r['median_ms']:10.1f} {r['iqr_ms']:8.1f} "
                     f"{r['peak_mb']:8.1f} {r['mb_per_atom']:8.3f} {r['n_parameters']:7d}")
    for q in result["ratios"]:
        lines.append(f"ratio spherical/CACE at {q['n_atoms']} atoms: time {q['time_spherical_over_cace']:.2f}, "
                     f"memory {q['memory_spherical_over_cace']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2], help="supercell repeats of the 192-atom box")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    result = run(args.sizes, args.threads, args.dtype, args.device, args.repeats)
    print(format_table(result))
    if args.out:
        from ..results.io import write_json_atomic

        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
