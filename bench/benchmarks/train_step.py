"""One whole training step (loss, forces, double backward, clipping, Adam) under every training
backend, both descriptors, side by side: eager against CUDA-graph replay (``bench.train_step``).

    python -m bench.benchmarks.train_step [--device cuda] [--frames 1 8 64] [--repeats 20]
        [--backend eager eager-cudagraphs fused fused-cudagraphs] [--out DIR]

A batch of ``frames`` water boxes (192 atoms each, ``water_box`` with its own random displacement
seed, random targets): 1 frame is 192 atoms, 8 the full recipe's batch (1,536), 64 is 12,288. Each
(descriptor, backend) has its own copy of the water preset from the same seed, float32, and takes
steps on the same batch. Each case is warmed up on its own (a graphed backend's first call is its
eager step and recording; on CUDA the memory the case then holds is read), then all are timed
round-robin (``time_round_robin``: CUDA events on a GPU). What ``TrainStep`` does is timed, padding and copying into the recording included; building the
batch (``collate``) and the EMA update are not, being the same for every backend. Writes
DIR/train-step.json after each size (medians, IQRs, per-round ratios against eager, provenance) and prints a table.
A benchmark: nothing passes or fails by time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def batch_of(frames: int, cutoff: float, device, dtype, seed: int = 0):
    """``frames`` water boxes as one labelled batch: targets drawn at random (their values do not
    change the work of a step)."""
    from ..graph import AtomsGraph, collate
    from ..structures import water_box

    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for k in range(frames):
        g = AtomsGraph.from_atoms(water_box(seed=seed + k), cutoff)
        graphs.append(g.replace(energy=torch.randn(1, generator=gen, dtype=torch.float64),
                                forces=torch.randn(g.n_atoms, 3, generator=gen, dtype=torch.float64)))
    return collate(graphs).to(device=device, dtype=dtype)


def measure(kinds, backends, frames, *, device, repeats: int, warmup: int = 3, preset: str = "water") -> list[dict]:
    """One row per (frames, descriptor, backend): median and IQR of a step, the paired ratio against
    the same descriptor's eager step, the recordings a graphed backend made, and on CUDA the memory
    the case holds between steps (``held_mb``: the allocator's reserved memory, its free cache
    returned, after the case's warm-up against before it was built: Adam's state and, graphed, the
    recordings' pool and static inputs; the weights are built before)."""
    from ..potential import build
    from ..tasks.measure import paired_ratio, time_round_robin
    from ..train import TrainConfig
    from ..train_step import TrainStep

    cfg = TrainConfig()
    cuda = torch.device(device).type == "cuda"

    def reserved() -> int:           # what the allocator holds once its free cache is returned
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return torch.cuda.memory_reserved()

    rows = []
    for n in frames:
        steps, batches, held = {}, {}, {}
        for kind in kinds:
            for backend in backends:
                torch.manual_seed(0)
                pot = build(kind, elements=[1, 8], preset=preset).to(device=device, dtype=torch.float32)
                if kind not in batches:
                    batches[kind] = batch_of(n, pot.descriptor.cutoff, device, torch.float32)
                before = reserved() if cuda else 0
                step = TrainStep(pot, lr=cfg.lr, force_weight=cfg.force_weight, clip_norm=cfg.clip_norm, backend=backend)
                step.set_energy_weight(cfg.energy_weights[0])
                try:
                    for _ in range(warmup):  # warm-up here, one case at a time, so that what it holds is its own
                        step(batches[kind])
                except Exception as err:     # noqa: BLE001 -- a backend that fails here is a row, not the end
                    if backend == "eager":
                        raise
                    rows.append({"frames": n, "atoms": batches[kind].n_atoms, "descriptor": kind, "backend": backend,
                                 "error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"})
                    continue
                if cuda:
                    held[(kind, backend)] = reserved() - before
                steps[(kind, backend)] = step
        calls = {f"{k}/{b}": (lambda s=s, g=batches[k]: s(g)) for (k, b), s in steps.items()}
        timing = time_round_robin(calls, device=device, warmup=1, repeats=repeats)
        for (kind, backend), step in steps.items():
            name = f"{kind}/{backend}"
            row = {"frames": n, "atoms": batches[kind].n_atoms, "edges": batches[kind].n_edges, "descriptor": kind,
                   "backend": backend, "median_ms": 1e3 * timing[name]["median_s"], "iqr_ms": 1e3 * timing[name]["iqr_s"],
                   "recordings": step.n_recordings, "eager_steps": step.eager_steps}
            if (kind, backend) in held:      # Adam's state and, graphed, the recordings' pool
                row["held_mb"] = held[(kind, backend)] / 2**20
            if f"{kind}/eager" in timing and backend != "eager":
                row["ratio_to_eager"] = paired_ratio(timing, name, f"{kind}/eager")
            if kind == "spherical" and f"cace/{backend}" in timing:
                row["ratio_spherical_over_cace"] = paired_ratio(timing, name, f"cace/{backend}")
            rows.append(row)
        del steps, batches, calls
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    from ..malloc import keep_freed_memory

    keep_freed_memory()                # as the command line does: freed tensors reused (bench/malloc.py)
    from ..atomic import write_json_atomic
    from ..backends import TRAINING_BACKENDS, check_training_backend
    from ..errors import InputError
    from ..provenance import provenance

    p = argparse.ArgumentParser(prog="python -m bench.benchmarks.train_step", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--frames", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--kinds", nargs="+", default=["cace", "spherical"], choices=["cace", "spherical"])
    p.add_argument("--backend", nargs="+", default=None, choices=list(TRAINING_BACKENDS),
                   help="training backends to time (default: every one that runs on the device)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="out/train-step")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends = args.backend or [b for b in TRAINING_BACKENDS if _runs(b, args.device)]
    try:
        for b in backends:
            check_training_backend(b, args.device)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "eager" not in backends:
        backends = ["eager", *backends]          # the reference every ratio is taken against
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prov, rows = provenance(args.device, dtype="float32"), []
    for n in args.frames:            # written after each size: a run cut short keeps what it timed
        rows += measure(args.kinds, backends, [n], device=args.device, repeats=args.repeats)
        write_json_atomic(out / "train-step.json", {"rows": rows, "repeats": args.repeats, "provenance": prov})
        print(f"{n} frames timed", flush=True)
    print(f"{'atoms':>7} {'descriptor':>10} {'backend':>17} {'median ms':>10} {'IQR':>7} {'/eager':>7} {'sph/cace':>9} "
          "rec held MB")
    for r in rows:
        if "error" in r:
            print(f"{r['atoms']:>7} {r['descriptor']:>10} {r['backend']:>17} failed: {r['error']}")
            continue
        ratio = r.get("ratio_to_eager", {}).get("median")
        sc = r.get("ratio_spherical_over_cace", {}).get("median")
        print(f"{r['atoms']:>7} {r['descriptor']:>10} {r['backend']:>17} {r['median_ms']:>10.2f} {r['iqr_ms']:>7.2f} "
              f"{'' if ratio is None else f'{ratio:.3f}':>7} {'' if sc is None else f'{sc:.3f}':>9} {r['recordings']:>3} "
              f"{r.get('held_mb', float('nan')):.0f}")
    print(f"wrote {out / 'train-step.json'}")
    return 0


def _runs(backend: str, device) -> bool:
    from ..backends import check_training_backend
    from ..errors import InputError

    try:
        check_training_backend(backend, device)
        return True
    except InputError:
        return False


if __name__ == "__main__":
    sys.exit(main())
