"""Reading energies and forces from files, with explicit key mapping and unit conversion.

Which key and unit apply is resolved in this order: the argument given to ``read``; else the
sidecar ``<file>.cace-bench.json`` that ``cace-bench data fetch`` writes beside a downloaded file;
else the format's default (extended XYZ: ``energy``/``forces`` in eV and Angstrom; rMD17 npz:
``energies``/``forces`` in kcal/mol and Angstrom). Nothing is guessed beyond that: a key that is
not in a frame is an error naming the keys that are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .errors import DataError
from .units import energy_factor, length_factor
from .validate import check_frame

SIDECAR_SUFFIX = ".cace-bench.json"
NPZ_KEYS = {"numbers": "nuclear_charges", "positions": "coords"}
FORMAT_DEFAULTS = {
    "xyz": dict(energy_key="energy", forces_key="forces", energy_unit="eV", length_unit="Angstrom"),
    "npz": dict(energy_key="energies", forces_key="forces", energy_unit="kcal/mol", length_unit="Angstrom"),
}


def read(
    path,
    *,
    index=":",
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    energy_unit: str | None = None,
    length_unit: str | None = None,
    split_file=None,
    min_distance: float = 0.1,
    virial_key: str | None = None,
) -> list[Atoms]:
    """Read frames with energy (eV), forces (eV/A) and optionally stress (eV/A^3).

    Stress comes from ``stress_key`` (a stress, energy / length^3) or ``virial_key`` (a virial W,
    energy, as many training sets store it), turned into ASE's stress sigma = -W / V with the
    frame's cell volume V. Both are optional per frame: a frame without the key (an isolated atom,
    say) has no stress, and only a file where no frame has it is an error. A stress key named like
    a virial is refused with the flag to pass. A missing energy or forces key is one error naming
    every missing property, the keys present and the flag that would read a known spelling of it
    (``--forces-key force``).

    ``index``: an ASE-style selection (``":"``, ``"10:20"``, an int, or a list of ints) applied
    after ``split_file`` (a text/CSV file of frame indices, one per line, such as the official
    rMD17 split files). ``forces_key`` also accepts the singular ``force`` or prefixed keys such as
    ``dft_forces``; any key in ``atoms.info``, ``atoms.arrays`` or the calculator results works.
    Every frame is validated (``bench.data.validate.check_frame``); bad input raises
    :class:`DataError` naming file, frame and key. Each frame's ``info["source"]`` is
    ``"<path>:<frame>"``.
    """
    path = Path(path)
    _check_path(path)
    if path.stat().st_size == 0 or (path.suffix.lower() != ".npz" and not path.read_bytes()[:4096].strip()):
        raise DataError(path, None, "frames", "file is empty")
    fmt = "npz" if path.suffix.lower() == ".npz" else "xyz"
    opts = _resolve_options(path, fmt, energy_key=energy_key, forces_key=forces_key,
                            energy_unit=energy_unit, length_unit=length_unit)
    try:
        e_f = energy_factor(opts["energy_unit"])
    except KeyError as err:
        raise DataError(path, None, "energy_unit", err.args[0]) from None
    try:
        l_f = length_factor(opts["length_unit"])
    except KeyError as err:
        raise DataError(path, None, "length_unit", err.args[0]) from None

    if stress_key is not None and virial_key is not None:
        raise DataError(path, None, stress_key, f"both --stress-key {stress_key} and --virial-key {virial_key} given: "
                                                "pass one")
    if stress_key is not None and "virial" in stress_key.lower():
        raise DataError(path, None, stress_key, "named like a virial (energy, W = -V sigma), not a stress: pass "
                                                f"--virial-key {stress_key} to read it as one")
    raw = _read_npz(path, opts) if fmt == "npz" else _read_ase(path)
    if not raw:
        raise DataError(path, None, "frames", "file holds no frames")
    numbered = list(enumerate(raw))
    if split_file is not None:
        numbered = _select(numbered, _read_index_file(split_file, len(raw)), path)
    numbered = _select(numbered, index, path)

    frames = []
    for frame_no, (atoms, props) in numbered:
        frames.append(_convert(atoms, props, path, frame_no, opts, stress_key, e_f, l_f, min_distance, virial_key))
    key = stress_key or virial_key
    if key is not None and not any("stress" in a.calc.results for a in frames):
        prop = "stress" if stress_key else "virial"
        present = _present(numbered[0][1][1])            # (frame number, (atoms, properties))
        raise DataError(path, None, key, f"no frame has it; keys present are {present}: pass "
                        f"{_flags_to_pass([prop], present)}")
    warn_implausible(frames, path, opts, [n for n, _ in numbered])
    return frames


# Force RMS above which a training set is almost surely in other units than it was read in:
# DFT training sets have force RMS of about 0.1-5 eV/A (hot MD included); a file in kcal/mol read
# as eV has 23x its true forces (28 eV/A was seen), one in kJ/mol 96x.
IMPLAUSIBLE_FORCE_RMS = 10.0


# Atoms per cubic Angstrom above which a periodic frame is almost surely in other length units
# than it was read in: condensed matter holds about 0.03-0.2 (water 0.10, diamond 0.18); a file in
# Angstrom read with --length-unit Bohr is 0.53x smaller in each direction, 6.7x denser.
IMPLAUSIBLE_DENSITY = 0.5


class DataWarning(UserWarning):
    """Input that reads but is probably not what the user meant (the likely cause is named)."""


def warn_implausible(frames, path, opts: dict, frame_numbers: list | None = None) -> None:
    """Warn (``DataWarning``) where the converted forces are implausibly large for a training set, or
    a periodic frame implausibly dense, with the unit that would explain it."""
    import warnings

    f = np.concatenate([a.get_forces().ravel() for a in frames]) if frames else np.zeros(0)
    rms = float(np.sqrt(np.mean(f ** 2))) if f.size else 0.0
    if rms > IMPLAUSIBLE_FORCE_RMS:
        unit = opts.get("energy_unit", "eV")
        hint = ("if the file is in kcal/mol pass --energy-unit kcal/mol (forces / 23), in kJ/mol --energy-unit kJ/mol"
                if unit in ("eV", None) else f"check that --energy-unit {unit} is the file's unit")
        warnings.warn(f"{path}: forces have an RMS of {rms:.1f} eV/A as read (energy unit {unit}), far above the "
                      f"0.1-5 eV/A of DFT training sets: {hint}", DataWarning, stacklevel=3)
    numbers = frame_numbers if frame_numbers is not None else range(len(frames))   # the file's frame numbers
    dense = [(k, len(a) / a.get_volume()) for k, a in zip(numbers, frames) if a.pbc.all() and len(a)]
    dense = [(k, rho) for k, rho in dense if rho > IMPLAUSIBLE_DENSITY]
    if dense:
        k, rho = max(dense, key=lambda kr: kr[1])
        unit = opts.get("length_unit", "Angstrom")
        hint = (f"check that --length-unit {unit} is the file's unit" if unit not in (None, "Angstrom")
                else "check the cell (its lattice vectors, in Angstrom)")
        warnings.warn(f"{path}: {len(dense)} periodic frame(s) hold more than {IMPLAUSIBLE_DENSITY} atoms per A^3 as "
                      f"read (frame {k}: {rho:.2f}), far above the 0.03-0.2 of condensed matter: {hint}",
                      DataWarning, stacklevel=3)


def read_isolated_energies(path, *, energy_key: str = "energy", energy_unit: str = "eV") -> dict[int, float]:
    """Per-element isolated-atom energies {Z: E0 in eV} from a file of single-atom frames."""
    path = Path(path)
    _check_path(path)
    raw = _read_ase(path)
    try:
        f = energy_factor(energy_unit)
    except KeyError as err:
        raise DataError(path, None, "energy_unit", err.args[0]) from None
    out = {}
    for frame_no, (atoms, props) in enumerate(raw):
        if len(atoms) != 1:
            raise DataError(path, frame_no, "numbers", f"isolated-atom frame has {len(atoms)} atoms, expected 1")
        e = _lookup(props, energy_key, path, frame_no)
        out[int(atoms.numbers[0])] = float(e) * f
    if not out:
        raise DataError(path, None, "frames", "file holds no frames")
    return out


# --- helpers -----------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".gz", ".bz2", ".xz",
                    ".7z", ".rar")


def _check_path(path: Path) -> None:
    """A one-line DataError for a path that is not a readable data file, saying what to pass."""
    if path.is_dir():
        raise DataError(path, None, "path", "is a directory, not a data file: pass the file inside it "
                                            "(extxyz, xyz or npz)")
    if not path.is_file():
        raise DataError(path, None, "path", "no such file")
    name = path.name.lower()
    if name.endswith(ARCHIVE_SUFFIXES) and not name.endswith((".xyz.gz", ".extxyz.gz", ".xyz.bz2", ".extxyz.bz2",
                                                              ".xyz.xz", ".extxyz.xz")):
        raise DataError(path, None, "path", "is an archive: extract it (tar -xf / unzip) and pass the extxyz, "
                                            "xyz or npz file inside")

def _resolve_options(path: Path, fmt: str, **given) -> dict:
    opts = dict(FORMAT_DEFAULTS[fmt])
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError as err:
            raise DataError(sidecar, None, "sidecar", f"not valid JSON ({err})") from None
        opts.update({k: v for k, v in meta.items() if k in opts})
    opts.update({k: v for k, v in given.items() if v is not None})
    return opts


def _read_ase(path: Path) -> list[tuple[Atoms, dict]]:
    """Every frame with a flat dict of its properties (info, arrays and calculator results)."""
    import ase.io

    out = []
    frame_no = 0
    try:
        for atoms in ase.io.iread(str(path), index=":"):
            props = {}
            props.update(atoms.info)
            props.update({k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")})
            if atoms.calc is not None:
                props.update(atoms.calc.results)
            out.append((atoms, props))
            frame_no += 1
    except DataError:
        raise
    except KeyError as err:    # ASE's symbol table: an element symbol it does not know
        from ase.data import chemical_symbols

        bad = err.args[0] if err.args else "?"
        if isinstance(bad, str) and bad not in chemical_symbols:
            raise DataError(path, frame_no, "species", f"unknown element symbol {bad!r} (symbols are H, He, ..., "
                                                       "Og, case-sensitive, e.g. 'Cu' not 'CU')") from None
        raise DataError(path, frame_no, "file", f"cannot be parsed (KeyError: {err})") from None
    except Exception as err:  # ASE raises many types for a malformed file
        fault = _xyz_count_fault(path)
        if fault is not None:             # ASE indexes an extxyz file whole first: find the frame at fault
            raise DataError(path, fault[0], "atom count", fault[1]) from None
        raise DataError(path, frame_no, "file", f"cannot be parsed ({type(err).__name__}: {err})") from None
    return out


def _xyz_count_fault(path: Path) -> tuple[int, str] | None:
    """(frame, reason) where an (ext)xyz file's atom-count lines and its lines disagree: the frame
    whose count does not end where the next frame's count line is; None where they agree."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    k, frame, prev_n = 0, 0, 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        try:
            n = int(lines[k].split()[0])
        except ValueError:
            if frame == 0:
                return None                         # not a count line at all: not this kind of fault
            return (frame - 1, f"its atom-count line says {prev_n} atoms, but line {k + 1} is not the next frame's "
                               "atom count: the count and the atom lines disagree")
        if k + n + 2 > len(lines):
            left = len(lines) - k - 2
            return (frame, f"its atom-count line says {n} atoms, but only {left} atom line{'s' if left != 1 else ''} "
                           "follow" + ("s" if left == 1 else ""))
        prev_n, k, frame = n, k + n + 2, frame + 1
    return None


def _read_npz(path: Path, opts: dict) -> list[tuple[Atoms, dict]]:
    try:
        data = np.load(path)
    except Exception as err:
        raise DataError(path, None, "file", f"not a readable npz file ({err})") from None
    for key in (NPZ_KEYS["numbers"], NPZ_KEYS["positions"], opts["energy_key"], opts["forces_key"]):
        if key not in data:
            raise DataError(path, None, key, f"missing; npz keys are {sorted(data.files)}")
    z = np.asarray(data[NPZ_KEYS["numbers"]], dtype=int)
    coords = np.asarray(data[NPZ_KEYS["positions"]], dtype=float)
    energies = np.asarray(data[opts["energy_key"]], dtype=float).reshape(len(coords), -1)
    forces = np.asarray(data[opts["forces_key"]], dtype=float)
    out = []
    for k in range(len(coords)):
        atoms = Atoms(numbers=z, positions=coords[k])
        out.append((atoms, {opts["energy_key"]: energies[k, 0], opts["forces_key"]: forces[k]}))
    return out


def _read_index_file(split_file, n: int) -> list[int]:
    split_file = Path(split_file)
    try:
        idx = [int(float(tok)) for tok in split_file.read_text().replace(",", " ").split()]
    except (OSError, ValueError) as err:
        raise DataError(split_file, None, "split_file", f"not a list of integer indices ({err})") from None
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise DataError(split_file, None, "split_file", f"index {bad[0]} out of range for {n} frames")
    return idx


def _select(numbered: list, index, path: Path) -> list:
    if index is None or index == ":":
        return numbered
    try:
        if isinstance(index, str):
            if ":" in index:
                parts = [int(p) if p.strip() else None for p in index.split(":")]
                chosen = numbered[slice(*parts)]
            else:
                chosen = [numbered[int(index)]]
        elif isinstance(index, (int, np.integer)):
            chosen = [numbered[index]]
        elif isinstance(index, slice):
            chosen = numbered[index]
        else:
            chosen = [numbered[int(i)] for i in index]
    except (ValueError, IndexError, TypeError) as err:
        raise DataError(path, None, "index", f"bad frame selection {index!r} for {len(numbered)} frames ({err})") from None
    if not chosen:
        raise DataError(path, None, "index", f"frame selection {index!r} selects none of the {len(numbered)} frames: "
                        f"pass a selection within 0..{len(numbered) - 1}, e.g. ':{len(numbered)}'")
    return chosen


# Spellings of each property seen in public training sets, for "pass --forces-key force" hints
KNOWN_SPELLINGS = {
    "energy": ("energy", "dft_energy", "energy_dft", "DFT_energy", "REF_energy", "ref_energy", "total_energy",
               "free_energy", "Energy", "energies", "E"),
    "forces": ("forces", "force", "dft_force", "dft_forces", "forces_dft", "DFT_forces", "REF_forces", "ref_forces",
               "Forces", "F"),
    "stress": ("stress", "dft_stress", "REF_stress", "ref_stress", "stresses"),
    "virial": ("virial", "dft_virial", "REF_virial", "ref_virial", "virials"),
}
FLAGS = {"energy": "--energy-key", "forces": "--forces-key", "stress": "--stress-key", "virial": "--virial-key"}
_STEMS = {"energy": "energ", "forces": "forc", "stress": "stress", "virial": "virial"}


def _present(props: dict) -> list[str]:
    return sorted(k for k in props if k not in ("source",))


def _suggest(prop: str, present: list[str]) -> str | None:
    """The present key that is a known spelling of ``prop`` (or the one key containing its stem)."""
    for k in KNOWN_SPELLINGS[prop]:
        if k in present:
            return k
    stem = [k for k in present if _STEMS[prop] in k.lower()]
    return stem[0] if len(stem) == 1 else None


def _require(props: dict, wanted: dict, path, frame_no: int) -> None:
    """One DataError naming every missing required property ({property: key}), the keys present
    and the flags that would read a known spelling of each."""
    missing = {prop: key for prop, key in wanted.items() if key not in props}
    if not missing:
        return
    present = _present(props)
    what = " and ".join(f"{prop} (key '{key}')" for prop, key in missing.items())
    raise DataError(path, frame_no, ", ".join(missing.values()),
                    f"missing {what}; keys present are {present}: pass {_flags_to_pass(missing, present)}")


def _flags_to_pass(props, present: list[str]) -> str:
    """The flags that would read each of ``props``: a known spelling among the keys ``present``, or
    NAME (said what it is) where none looks like it."""
    hints, unnamed = [], []
    for prop in props:
        hint = _suggest(prop, present)
        hints.append(f"{FLAGS[prop]} {hint if hint is not None else 'NAME'}")
        if hint is None:
            unnamed.append(prop)
    return " ".join(hints) + (f" (NAME: the key that holds the {' and '.join(unnamed)}; none present looks like it)"
                              if unnamed else "")


def _lookup(props: dict, key: str, path, frame_no: int):
    if key not in props:
        raise DataError(path, frame_no, key, f"missing; keys present are {_present(props)}")
    return props[key]


def _tensor3(value, path, frame_no: int, key: str) -> np.ndarray:
    """A 3 x 3 tensor from (3, 3), 9 numbers or Voigt (6,) (xx yy zz yz xz xy)."""
    from ase.stress import voigt_6_to_full_3x3_stress

    t = np.asarray(value, dtype=float)
    if t.shape == (9,):
        t = t.reshape(3, 3)
    if t.shape == (6,):
        t = voigt_6_to_full_3x3_stress(t)
    if t.shape != (3, 3):
        raise DataError(path, frame_no, key, f"shape {t.shape}, expected (3, 3), 9 or 6 (Voigt) numbers")
    return t


def _convert(atoms: Atoms, props: dict, path, frame_no: int, opts: dict, stress_key: str | None,
             e_f: float, l_f: float, min_distance: float, virial_key: str | None = None) -> Atoms:
    n = len(atoms)
    _require(props, {"energy": opts["energy_key"], "forces": opts["forces_key"]}, path, frame_no)
    energy = props[opts["energy_key"]]
    forces = props[opts["forces_key"]]
    try:
        energy = float(np.asarray(energy, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise DataError(path, frame_no, opts["energy_key"], f"not a single number: {energy!r}") from None
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (n, 3):
        raise DataError(path, frame_no, opts["forces_key"], f"shape {forces.shape}, expected ({n}, 3)")
    results = {"energy": energy * e_f, "forces": forces * (e_f / l_f)}
    from ase.stress import full_3x3_to_voigt_6_stress as voigt   # xx yy zz yz xz xy, symmetric part

    if stress_key is not None and stress_key in props:            # optional per frame
        results["stress"] = voigt(_tensor3(props[stress_key], path, frame_no, stress_key)) * (e_f / l_f**3)
    if virial_key is not None and virial_key in props:            # sigma = -W / V (ASE's sign)
        if not atoms.pbc.any() or abs(np.linalg.det(atoms.cell.array)) < 1e-12:
            raise DataError(path, frame_no, virial_key, "a virial needs the frame's cell volume to become a stress, "
                                                        "and this frame has no periodic cell")
        volume = abs(np.linalg.det(atoms.cell.array)) * l_f**3
        results["stress"] = -voigt(_tensor3(props[virial_key], path, frame_no, virial_key)) * e_f / volume
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions * l_f,
                cell=atoms.cell.array * l_f, pbc=atoms.pbc)
    out.info["source"] = f"{path}:{frame_no}"
    if isinstance(props.get("config_type"), str):          # kept: it marks isolated-atom frames (--e0 auto)
        out.info["config_type"] = props["config_type"]
    out.calc = SinglePointCalculator(out, **results)
    check_frame(out, path, frame_no, min_distance=min_distance,
                keys={"energy": opts["energy_key"], "forces": opts["forces_key"], "stress": stress_key or virial_key})
    return out
