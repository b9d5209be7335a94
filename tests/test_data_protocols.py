"""Train / test / extrapolation protocols from the command line (issue #16.1): repeated named
``--test`` sets reported separately, a ``--valid`` file, and ``--e0 auto`` (the data's own
isolated-atom frames)."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from bench.data import DataError, take_isolated_atoms
from bench.errors import InputError
from bench.tasks.presets import parse_test_sets, with_data_files

ELEMENTS = ("Ni", "Cu", "Pd", "Ag", "Au")


def _single(symbol, config_type=None):
    a = Atoms(symbol, positions=[[0.0, 0.0, 0.0]])
    a.calc = EMT()
    e = a.get_potential_energy()
    a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((1, 3)))
    if config_type:
        a.info["config_type"] = config_type
    return a


def test_isolated_atom_frames_become_e0_and_leave_the_data():
    from bench.data import builtin

    frames = builtin("emt-alloy")[:4]
    iso = [_single(s, "IsolatedAtom" if k % 2 else None) for k, s in enumerate(ELEMENTS)]
    rest, e0 = take_isolated_atoms(frames[:2] + iso + frames[2:], "data.xyz")
    assert rest == frames and set(e0) == {28, 29, 46, 47, 79}
    assert e0[29] == pytest.approx(iso[1].get_potential_energy())
    with pytest.raises(DataError, match=r"data.xyz: whole file: .*found no isolated-atom frame.*--e0 PATH"):
        take_isolated_atoms(frames, "data.xyz")
    with pytest.raises(DataError, match=r"data.xyz: frame 5: .*second isolated-atom frame for Cu \(the first is frame 1\)"):
        take_isolated_atoms(iso + [_single("Cu")], "data.xyz")
    two = frames[0].copy()
    two.calc = frames[0].calc
    two.info["config_type"] = "IsolatedAtom"
    with pytest.raises(DataError, match=r"data.xyz: frame 0: key 'config_type': an IsolatedAtom frame with 32 atoms"):
        take_isolated_atoms([two], "data.xyz")


def test_test_sets_are_named_by_stem_or_name_equals_path(tmp_path):
    assert parse_test_sets(None) == [] and parse_test_sets("a/b.xyz") == [(None, "a/b.xyz")]
    assert parse_test_sets(["600K=t600.xyz", "x/t1200.xyz"]) == [("600K", "t600.xyz"), (None, "x/t1200.xyz")]
    odd = tmp_path / "a=b.xyz"                          # an existing file whose name holds '=' is a path
    odd.write_text("")
    assert parse_test_sets([str(odd)]) == [(None, str(odd))]
    with pytest.raises(InputError, match="letters, digits"):
        parse_test_sets(["hot run=t.xyz"])
    from bench.tasks.accuracy import DataSpec

    d = with_data_files(DataSpec("train.xyz"), test=["600K=t600.xyz", "x/t1200.xyz"], valid="v.xyz", e0="auto")
    assert (d.test_source, d.test_name, d.extra_tests) == ("t600.xyz", "600K", (("t1200", "x/t1200.xyz"),))
    assert d.valid_source == "v.xyz" and d.e0_source == "auto"


def _write(path, frames):
    import ase.io

    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_test_sets_valid_file_and_e0_auto_end_to_end(tmp_path):
    """Training data with its isolated-atom frames, a validation file and two test files: the
    model's E0 are those frames' energies, the split has no validation or test part, the
    validation file drives model selection, each test set has its own records and predictions, the
    main one feeds the verdict, and the report shows one row per test set."""
    from bench.data import builtin
    from bench.report import build_report
    from bench.results.store import ResultsStore
    from bench.tasks import accuracy
    from bench.tasks.accuracy import AccuracySpec, DataSpec
    from bench.tasks.presets import QUICK_MODEL
    from bench.train import TrainConfig

    frames = builtin("emt-alloy")
    iso = [_single(s, "IsolatedAtom") for s in ELEMENTS]
    data = DataSpec(_write(tmp_path / "train.xyz", iso[:2] + frames[:10] + iso[2:]), n_train=8, n_valid=0.5)
    data = with_data_files(data, test=[_write(tmp_path / "warm.xyz", frames[10:14]),
                                       "hot=" + _write(tmp_path / "t_hot.xyz", frames[14:17])],
                           valid=_write(tmp_path / "valid.xyz", frames[17:20]), e0="auto")
    spec = AccuracySpec(data, dict(QUICK_MODEL), TrainConfig(max_epochs=2, batch_size=4), seeds=(0,),
                        descriptors=("cace", "spherical"))
    store = ResultsStore(tmp_path / "res")
    records = accuracy.run(spec, store, progress=False, log=lambda *a: None)

    main = [r for r in records if not r.get("extra_test")]
    hot = [r for r in records if r.get("extra_test")]
    assert {r["test_set"] for r in main} == {"warm"} and {r["n_test"] for r in main} == {4}
    assert {r["test_set"] for r in hot} == {"hot"} and {r["n_test"] for r in hot} == {3}
    assert {m["metric"] for m in hot} >= {"energy_mae_per_atom", "forces_mae", "energy_mae_per_atom_e0"}
    r0 = main[0]
    assert r0["split"]["n_valid"] == 0 and r0["split"]["n_test"] == 0 and r0["split"]["n_train"] == 8
    assert r0["data"]["n_valid"] == 3 and r0["data"]["valid_source"].endswith("valid.xyz")
    assert r0["data"]["e0_source"] == "the data's isolated-atom frames"
    assert r0["model"]["e0"] == {str(int(a.numbers[0])): pytest.approx(a.get_potential_energy()) for a in iso}
    for run in store.runs():
        assert (store.artifacts_dir / run["path"].rsplit("/", 1)[-1][:-5] / "predictions-hot.npz").is_file()
        assert run["artifacts"]["predictions-hot"] == "predictions-hot.npz"
    _, md = build_report(tmp_path / "res", tmp_path / "rep")
    text = md.read_text()
    assert "Errors on every test set" in text
    assert "| warm | 4 |" in text and "| hot | 3 |" in text
    assert "test set hot" in text and "validation file" in text
