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


def run(sizes=(1, 2), threads: int = 2, dtype: str = "float32", device: str = "cpu", repeats: int = 10,
        warmup: int = 3) -> dict:
    """The timing task's own measurement (``tasks.timing.time_point``), energy+forces only, as one table."""
    from ..provenance import provenance
    from ..tasks.timing import TimingSpec, time_point

    torch.set_num_threads(threads)
    spec = TimingSpec(modes=("energy_forces",), threads=threads, device=device, repeats=repeats, warmup=warmup)
    rows, ratios = [], []
    for repeat in sizes:
        point = time_point(spec, "atoms", {}, repeat, dtype)
        n_atoms, mem = point["n_atoms"], point["memory"]
        for row in point["rows"]:
            rows.append({
                "descriptor": row["descriptor"], "n_atoms": n_atoms, "n_edges": point["n_edges"],
                "median_ms": 1e3 * row["median_s"], "iqr_ms": 1e3 * row["iqr_s"],
                "peak_mb": mem[row["descriptor"]] / 2**20, "mb_per_atom": mem[row["descriptor"]] / 2**20 / n_atoms,
                "n_parameters": row["n_parameters"], "n_features": row["n_features"],
                "times_ms": [1e3 * t for t in row["times_s"]],
            })
        ratios.append({"n_atoms": n_atoms, "time_spherical_over_cace": point["ratios"]["energy_forces"]["median"],
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
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
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
