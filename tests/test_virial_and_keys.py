"""Virial is not stress, optional properties are per frame, and a missing key says the flag to
pass (issue #14.2)."""

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from bench.data import DataError, read


def _labelled(atoms, **info):
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    stress = atoms.get_stress(voigt=False) if atoms.pbc.any() else None
    out = atoms.copy()
    out.info.update(info)
    out.calc = SinglePointCalculator(out, energy=e, forces=f)
    return out, stress


def _strained_cu():
    a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    a.set_cell(a.cell.array @ (np.eye(3) + [[0.01, 0.02, 0], [0.02, -0.01, 0.005], [0, 0.005, 0.02]]), scale_atoms=True)
    a.rattle(0.05, seed=1)
    return a


def test_a_virial_is_read_as_stress_with_ases_sign_and_the_cell_volume(tmp_path):
    cu, stress = _labelled(_strained_cu())
    cu.info["virial"] = -stress * cu.get_volume()                   # W = -V sigma, in eV
    lone, _ = _labelled(Atoms("Cu", positions=[[0, 0, 0]]))          # an isolated atom: no virial, no cell
    path = tmp_path / "v.xyz"
    ase.io.write(path, [cu, lone], format="extxyz")
    frames = read(path, virial_key="virial")
    voigt = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    np.testing.assert_allclose(frames[0].get_stress(), voigt, rtol=1e-9, atol=1e-12)
    assert np.abs(voigt).max() > 1e-3
    assert "stress" not in frames[1].calc.results                   # optional per frame: masked, not an error
    with pytest.raises(DataError, match=r"v.xyz: whole file: key 'virial': named like a virial .*--virial-key virial"):
        read(path, stress_key="virial")


def test_a_requested_optional_key_that_no_frame_has_is_an_error_with_the_flag(tmp_path):
    cu, stress = _labelled(_strained_cu())
    cu.info["dft_virial"] = -stress * cu.get_volume()
    path = tmp_path / "nv.xyz"
    ase.io.write(path, [cu], format="extxyz")
    with pytest.raises(DataError, match=r"key 'virial': no frame has it; keys present are .*: pass --virial-key dft_virial"):
        read(path, virial_key="virial")
    with pytest.raises(DataError, match="pass one"):
        read(path, stress_key="stress", virial_key="dft_virial")


def test_a_virial_on_a_frame_without_a_cell_is_refused(tmp_path):
    mol, _ = _labelled(Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]))
    mol.info["virial"] = np.eye(3)
    path = tmp_path / "m.xyz"
    ase.io.write(path, [mol], format="extxyz")
    with pytest.raises(DataError, match=r"m.xyz: frame 0: key 'virial': a virial needs the frame's cell volume"):
        read(path, virial_key="virial")


def test_every_missing_key_is_named_in_one_message_with_the_flags_to_pass(tmp_path):
    a = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.info["dft_energy"] = -10.0
    a.arrays["dft_force"] = np.zeros((3, 3))
    path = tmp_path / "k.xyz"
    ase.io.write(path, [a], format="extxyz")
    with pytest.raises(DataError) as err:
        read(path)
    msg = str(err.value)
    assert "frame 0" in msg and "missing energy (key 'energy') and forces (key 'forces')" in msg
    assert msg.endswith("pass --energy-key dft_energy --forces-key dft_force")
    assert read(path, energy_key="dft_energy", forces_key="dft_force")[0].get_potential_energy() == -10.0
    b = Atoms("H2O", positions=a.positions)
    b.info["energy"] = -10.0
    b.arrays["F"] = np.zeros((3, 3))
    ase.io.write(path, [b], format="extxyz")
    with pytest.raises(DataError, match=r"missing forces \(key 'forces'\); .*: pass --forces-key F$"):
        read(path)
    c = Atoms("H2O", positions=a.positions)                 # forces under a name nothing suggests
    c.info["energy"] = -10.0
    c.arrays["grad"] = np.zeros((3, 3))
    ase.io.write(path, [c], format="extxyz")
    with pytest.raises(DataError, match=r"k.xyz: frame 0: key 'forces': missing forces \(key 'forces'\); keys present are "
                       r"\['energy', 'grad'\]: pass --forces-key NAME \(NAME: the key that holds the forces; none "
                       r"present looks like it\)$"):
        read(path)


def test_data_inspect_says_in_how_many_frames_the_stress_is(tmp_path, capsys):
    from bench.cli.main import main

    cu, stress = _labelled(_strained_cu())
    cu.info["virial"] = -stress * cu.get_volume()
    lone, _ = _labelled(Atoms("Cu", positions=[[0, 0, 0]]))
    path = tmp_path / "v.xyz"
    ase.io.write(path, [cu, lone, cu], format="extxyz")
    assert main(["data", "inspect", str(path), "--virial-key", "virial"]) == 0
    out = capsys.readouterr().out
    assert "properties    energy, forces, stress" in out and "stress        in 2 of 3 frames" in out
