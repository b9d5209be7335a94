"""A corpus of malformed inputs: each gives a DataError naming file, frame and key; the CLI prints one line and exits 2."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
import ase.io

from bench.cli.main import main
from bench.data import DataError, read


def _water(shift=0.0):
    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.positions += shift
    a.calc = SinglePointCalculator(a, energy=-14.2, forces=np.full((3, 3), 0.1))
    return a


def _write(tmp_path, frames, name="data.extxyz"):
    path = tmp_path / name
    ase.io.write(path, frames, format="extxyz")
    return path


def make_truncated(tmp_path):
    path = _write(tmp_path, [_water(), _water(1.0), _water(2.0)])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # third frame loses two atom lines
    return path, {}, 2, "atom count"


def make_missing_forces(tmp_path):
    a = _water()
    b = _water(1.0)
    b.calc = SinglePointCalculator(b, energy=-14.0)
    return _write(tmp_path, [a, b]), {}, 1, "forces"


def make_nan_position(tmp_path):
    path = _write(tmp_path, [_water(), _water(1.0)])
    text = path.read_text().splitlines()
    cols = text[-1].split()
    cols[1] = "nan"
    text[-1] = " ".join(cols)
    path.write_text("\n".join(text) + "\n")
    return path, {}, 1, "positions"


def make_unknown_key(tmp_path):
    return _write(tmp_path, [_water()]), {"energy_key": "dft_energy"}, 0, "dft_energy"


def make_wrong_unit(tmp_path):
    return _write(tmp_path, [_water()]), {"energy_unit": "electronvolts"}, None, "energy_unit"


def make_empty(tmp_path):
    path = tmp_path / "empty.extxyz"
    path.write_text("")
    return path, {}, None, "frames"


def make_overlapping(tmp_path):
    a = _water()
    a.positions[2] = a.positions[1] + [0.01, 0, 0]
    return _write(tmp_path, [_water(), a]), {}, 1, "positions"


def make_zero_volume_cell(tmp_path):
    a = _water()
    a.cell = [[5, 0, 0], [0, 5, 0], [5, 5, 0]]  # third vector in the plane of the first two
    a.pbc = True
    return _write(tmp_path, [a]), {}, 0, "cell"


def make_unknown_element(tmp_path):
    path = _write(tmp_path, [_water(), _water(1.0)])
    text = path.read_text().splitlines()
    text[-1] = "Xx" + text[-1][text[-1].index(" "):]          # second frame, last atom
    path.write_text("\n".join(text) + "\n")
    return path, {}, 1, "species"


def make_directory(tmp_path):
    path = tmp_path / "a_folder.extxyz"
    path.mkdir()
    return path, {}, None, "path"


def make_archive(tmp_path):
    import tarfile

    inner = _write(tmp_path, [_water()])
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(inner, arcname="data.extxyz")
    return path, {}, None, "path"


CORPUS = [make_truncated, make_missing_forces, make_nan_position, make_unknown_key, make_wrong_unit,
          make_empty, make_overlapping, make_zero_volume_cell, make_unknown_element, make_directory, make_archive]


@pytest.mark.parametrize("make", CORPUS, ids=lambda f: f.__name__[5:])
def test_malformed_raises_dataerror_naming_file_frame_key(tmp_path, make):
    path, flags, frame, key = make(tmp_path)
    with pytest.raises(DataError) as info:
        read(path, **flags)
    err = info.value
    assert err.path == str(path)
    assert err.frame == frame
    assert err.key == key
    msg = str(err)
    assert str(path) in msg and f"'{key}'" in msg
    assert ("whole file" in msg) if frame is None else (f"frame {frame}" in msg)


@pytest.mark.parametrize("make", CORPUS, ids=lambda f: f.__name__[5:])
def test_cli_prints_one_line_and_exits_2(tmp_path, make, capsys):
    path, flags, frame, key = make(tmp_path)
    argv = ["data", "inspect", str(path)]
    for k, v in flags.items():
        argv += ["--" + k.replace("_", "-"), v]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cace-bench: error:")
    assert str(path) in err and key in err


def test_valid_file_reads(tmp_path):
    """The corpus is malformed on purpose: its well-formed parent reads cleanly."""
    frames = read(_write(tmp_path, [_water(), _water(1.0)]))
    assert len(frames) == 2 and frames[1].get_potential_energy() == pytest.approx(-14.2)


@pytest.mark.parametrize("cutoff,expected", [("0", "positive finite length"), ("-3", "positive finite length"),
                                             ("nan", "positive finite length"), ("100", "neighbours per atom")])
def test_bad_cutoff_is_one_line_and_exit_2_before_any_list_is_built(tmp_path, capsys, cutoff, expected):
    """0, negative and NaN cutoffs, and one that would give ~10^5 neighbours per atom (estimated
    from the density, so refused in milliseconds instead of minutes and gigabytes)."""
    from ase.build import bulk

    path = tmp_path / "cu.extxyz"
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    ase.io.write(path, atoms, format="extxyz")
    assert main(["data", "inspect", str(path), "--cutoff", cutoff]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cace-bench: error:") and expected in err and "--cutoff" in err


@pytest.mark.parametrize("make,says", [(make_unknown_element, "unknown element symbol 'Xx'"),
                                       (make_directory, "is a directory, not a data file"),
                                       (make_archive, "is an archive: extract it")])
def test_messages_say_what_is_wrong(tmp_path, make, says):
    path, flags, _, _ = make(tmp_path)
    with pytest.raises(DataError, match=says):
        read(path, **flags)


def test_forces_in_kcal_per_mol_read_as_ev_warn_with_the_flag_to_pass(tmp_path):
    """A file whose forces are 23x too large for a training set (kcal/mol read as eV) reads, with a
    DataWarning naming the file and --energy-unit kcal/mol; read in kcal/mol it is quiet."""
    import warnings

    from bench.data.read import DataWarning

    frames = []
    for k in range(3):
        a = _water(0.01 * k)
        a.calc = SinglePointCalculator(a, energy=-1000.0, forces=np.full((len(a), 3), 28.0))   # kcal/mol/A
        frames.append(a)
    path = _write(tmp_path, frames)
    with pytest.warns(DataWarning, match=r"data.extxyz: forces have an RMS of 28.0 eV/A.*--energy-unit kcal/mol"):
        read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)      # ours: other libraries may warn (ASE under numpy 2.5)
        read(path, energy_unit="kcal/mol")


def test_a_periodic_cell_read_in_the_wrong_length_unit_warns_with_the_flag_to_check(tmp_path):
    """Cubic Cu (0.085 atoms per A^3) read as if in Bohr is 6.7x denser (0.57), beyond any condensed
    matter: a DataWarning naming the file, the frame and --length-unit Bohr; read in A it is quiet."""
    import warnings

    from ase.build import bulk

    from bench.data.read import DataWarning

    frames = []
    for k in range(2):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.01, seed=k)
        a.calc = SinglePointCalculator(a, energy=-14.0, forces=np.zeros((len(a), 3)))
        frames.append(a)
    path = _write(tmp_path, frames)
    with pytest.warns(DataWarning, match=r"data.extxyz: 2 periodic frame\(s\) hold more than 0.5 atoms per A\^3 as read "
                                         r"\(frame [01]: 0.57\), .*: check that --length-unit Bohr is the file's unit"):
        read(path, length_unit="Bohr")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)      # ours: other libraries may warn (ASE under numpy 2.5)
        read(path)


def test_data_inspect_counts_atoms_with_no_neighbour(tmp_path, capsys):
    far = Atoms("H2O2", positions=[[0, 0, 0], [0.96, 0, 0], [9, 0, 0], [20, 0, 0]])
    far.calc = SinglePointCalculator(far, energy=-1.0, forces=np.zeros((4, 3)))
    assert main(["data", "inspect", str(_write(tmp_path, [_water(), far])), "--cutoff", "5"]) == 0
    out = capsys.readouterr().out
    assert "isolated      2 atom(s) with no neighbour within 5.0 A, in 1 frame(s) (first: frame 1)" in out


def test_a_cell_too_thin_is_named_as_the_cell_not_as_two_atoms(tmp_path):
    import ase.io
    import numpy as np
    from ase import Atoms

    from bench.data import DataError, read

    a = Atoms("Cu2", positions=[[0, 0, 0], [1.8, 0, 0]], cell=[[3.6, 0, 0], [0, 3.6, 0], [0, 0, 0.01]], pbc=True)
    a.info["energy"] = -1.0
    a.arrays["forces"] = np.zeros((2, 3))
    path = tmp_path / "thin.xyz"
    ase.io.write(path, [a], format="extxyz")
    with pytest.raises(DataError, match=r"frame 0: key 'cell': atom 0 is 0.010 A from its own periodic image: the "
                                        r"cell is too thin \(heights 3.600, 3.600, 0.010 A\)"):
        read(path)


@pytest.mark.parametrize("line, count, message", [
    (5, "4", r"frame 1: key 'atom count': its atom-count line says 4 atoms, but line 12 is not the next frame's"),
    (10, "5", r"frame 2: key 'atom count': its atom-count line says 5 atoms, but only 3 atom lines follow"),
])
def test_an_atom_count_that_disagrees_names_the_frame_at_fault(tmp_path, line, count, message):
    from bench.data import DataError, read

    lines = []
    for _ in range(3):
        lines += ["3", 'Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 pbc="F F F"',
                  "O 0 0 0 0 0 0", "H 0.96 0 0 0 0 0", "H -0.24 0.93 0 0 0 0"]
    lines[line] = count
    path = tmp_path / "count.xyz"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        read(path)
