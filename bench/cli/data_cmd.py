"""``cace-bench data list|inspect|fetch|make``."""

from __future__ import annotations

import argparse

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list, inspect, fetch or make data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    dsub.add_parser("list", help="built-in and downloadable data sets")
    ins = dsub.add_parser("inspect", help="frames, elements, keys, units, statistics and neighbour counts of a file")
    ins.add_argument("path", help="a file ASE reads (extxyz, xyz) or an rMD17 npz, or builtin:NAME")
    add_read_options(ins)
    ins.add_argument("--cutoff", type=float, default=5.0, help="cutoff in Angstrom for neighbour counts (default 5.0)")
    fe = dsub.add_parser("fetch", help="download a standard data set into the cache")
    fe.add_argument("name")
    fe.add_argument("--mirror", default=None, help="base URL of a mirror that replaces each URL's host")
    mk = dsub.add_parser("make", help="generate a built-in data set (cached)")
    mk.add_argument("name", nargs="?", default="emt-alloy")
    mk.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy-key", default=None, help="energy property name (default: energy, or the sidecar's)")
    p.add_argument("--forces-key", default=None, help="forces property name (e.g. force, dft_forces)")
    p.add_argument("--stress-key", default=None, help="stress property name (energy / length^3; optional per frame)")
    p.add_argument("--virial-key", default=None, help="virial property name (energy; read as stress = -virial / "
                                                      "cell volume, ASE's sign; optional per frame)")
    p.add_argument("--energy-unit", default=None, help="eV, meV, kcal/mol, kJ/mol or Hartree")
    p.add_argument("--length-unit", default=None, help="Angstrom or Bohr")
    p.add_argument("--index", default=":", help="ASE-style frame selection, e.g. ':100'")


def read_options(args) -> dict:
    return dict(energy_key=args.energy_key, forces_key=args.forces_key, stress_key=args.stress_key,
                virial_key=args.virial_key,
                energy_unit=args.energy_unit, length_unit=args.length_unit, index=args.index)


def load(spec: str, args=None):
    """Frames from ``builtin:NAME`` (or a bare built-in name) or a path, with the command's read options."""
    from ..data import load as load_data

    return load_data(spec, read_options(args) if args is not None else None)


def run(args) -> int:
    from ..data import BUILTIN, STANDARD_SETS, builtin, fetch

    if args.data_command == "list":
        print("built-in (made locally, no download):")
        for name, desc in BUILTIN.items():
            print(f"  {name:18s} {desc}")
        print("standard sets (cace-bench data fetch NAME):")
        for s in STANDARD_SETS.values():
            print(f"  {s.name:18s} {s.description}")
        return 0
    if args.data_command == "make":
        frames = builtin(args.name, seed=args.seed)
        print(f"{args.name} (seed {args.seed}): {len(frames)} frames")
        return 0
    if args.data_command == "fetch":
        folder = fetch(args.name, base_url=args.mirror)
        print(folder)
        return 0
    frames = load(args.path, args)
    inspect(frames, args.cutoff)
    return 0


def inspect(frames, cutoff: float) -> None:
    from ase.data import chemical_symbols

    from ..neighbors import neighbor_pairs

    n_atoms = np.array([len(a) for a in frames])
    e = np.array([a.get_potential_energy() for a in frames])
    f = np.concatenate([a.get_forces().ravel() for a in frames])
    z, counts = np.unique(np.concatenate([a.numbers for a in frames]), return_counts=True)
    keys = sorted({k for a in frames for k in a.calc.results})
    per_frame = [np.bincount(neighbor_pairs(a.positions, a.cell.array, a.pbc, cutoff)[0], minlength=len(a))
                 for a in frames]                                         # neighbours of each atom
    neigh = np.concatenate(per_frame)
    print(f"frames        {len(frames)}  (atoms per frame {n_atoms.min()}-{n_atoms.max()})")
    print(f"periodic      {sum(bool(a.pbc.any()) for a in frames)} of {len(frames)}")
    print("elements      " + ", ".join(f"{chemical_symbols[k]} {c}" for k, c in zip(z, counts)))
    print(f"properties    {', '.join(keys)} (converted to eV, eV/A, eV/A^3)")
    with_stress = sum("stress" in a.calc.results for a in frames)
    if 0 < with_stress < len(frames):                   # optional per frame: say where it is missing
        print(f"stress        in {with_stress} of {len(frames)} frames (the others have none)")
    print(f"energy/atom   mean {np.mean(e / n_atoms):.4f} eV, std {np.std(e / n_atoms) * 1e3:.2f} meV")
    print(f"forces        rms {np.sqrt(np.mean(f**2)):.4f} eV/A, max |component| {np.abs(f).max():.3f} eV/A")
    print(f"neighbours    within {cutoff} A: mean {neigh.mean():.1f}, min {neigh.min()}, max {neigh.max()}")
    lonely = [(k, int((c == 0).sum())) for k, c in enumerate(per_frame) if (c == 0).any()]
    if lonely:
        print(f"isolated      {sum(c for _, c in lonely)} atom(s) with no neighbour within {cutoff} A, in "
              f"{len(lonely)} frame(s) (first: frame {lonely[0][0]}); such an atom sees only its E0")
