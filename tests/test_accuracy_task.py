"""Accuracy task, results store and report, on a small EMT set made by the test."""

import json

import numpy as np

import ase.io
import pytest
import torch

from bench.cli.main import main
from bench.data.builtin_sets import EMTAlloyRecipe, make_emt_alloy
from bench.report import build_report
from bench.results.store import ResultsError, ResultsStore
from bench.testing.requirements import needs_fused_kernels_on_cpu
from bench.tasks import accuracy
from bench.tasks.accuracy import AccuracySpec, DataSpec
from bench.train import TrainConfig

TINY_MODEL = dict(cutoff=4.0, n_rbf=3, n_embed=2, n_radial=2, l_max=2, nu_max=3, n_layers=1,
                  messages=("Bchi",), readout=(4,))
TRAIN = TrainConfig(max_epochs=6, batch_size=4, lr=5e-3, patience=50, ema_decay=0.5, energy_weights=(1.0,))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    recipe = EMTAlloyRecipe(repeat=1, temperatures=(300.0, 900.0), frames_per_temperature=6, md_equilibration=5,
                            md_stride=2, n_strained=4, n_rattled=4)
    path = tmp_path_factory.mktemp("data") / "tiny.extxyz"
    ase.io.write(path, make_emt_alloy(0, recipe), format="extxyz")
    return path


def spec(data_file, **kw):
    base = dict(data=DataSpec(str(data_file), name="tiny", n_train=12, n_valid=4, n_test=4),
                model=dict(TINY_MODEL), train=TRAIN, seeds=(0,))
    base.update(kw)
    return AccuracySpec(**base)


def quiet(*a, **k):
    pass


def test_training_lowers_the_loss_for_both_descriptors(data_file, tmp_path):
    from dataclasses import replace

    store = ResultsStore(tmp_path)
    accuracy.run(spec(data_file, train=replace(TRAIN, max_epochs=12)), store, progress=False, log=quiet)
    runs = store.runs()
    assert {r["key"]["descriptor"] for r in runs} == {"cace", "spherical"}
    for run in runs:
        hist = run["artifacts"]["history"]
        assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"], run["key"]["descriptor"]
        assert min(h["valid_loss"] for h in hist) < hist[0]["valid_loss"]


def test_same_seed_same_numbers_and_records_round_trip(data_file, tmp_path):
    a = accuracy.run(spec(data_file), ResultsStore(tmp_path / "a"), progress=False, log=quiet)
    b = accuracy.run(spec(data_file), ResultsStore(tmp_path / "b"), progress=False, log=quiet)
    assert all(r["backend"] == "eager" for r in a)               # the training backend, named in every record
    key = lambda r: (r["descriptor"], r["metric"])  # noqa: E731
    va = {key(r): r["value"] for r in a if r["metric"] not in ("train_time",)}
    vb = {key(r): r["value"] for r in b if r["metric"] not in ("train_time",)}
    assert va == vb and len(va) > 10
    stored = ResultsStore(tmp_path / "a").records()
    assert sorted(json.dumps(r, sort_keys=True, default=str) for r in stored) == \
        sorted(json.dumps(r, sort_keys=True, default=str) for r in json.loads(json.dumps(a, default=str)))
    r = stored[0]
    for field in ("task", "descriptor", "dataset", "metric", "seed", "setting", "value", "unit", "config_hash",
                  "dataset_hash", "split", "wall_time_s", "n_parameters"):
        assert field in r
    for field in ("git", "versions", "device", "device_name", "dtype", "seed", "threads"):
        assert field in r["provenance"]
    frame = ResultsStore(tmp_path / "a").frame()
    assert set(frame.descriptor) == {"cace", "spherical"} and "prov.device_name" in frame


def test_resume_skips_finished_work(data_file, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    accuracy.run(spec(data_file, descriptors=("cace",)), store, progress=False, log=quiet)
    before = {p.name: p.read_bytes() for p in store.runs_dir.iterdir()}

    trained = []
    real_train = accuracy.train
    monkeypatch.setattr(accuracy, "train", lambda pot, *a, **k: trained.append(pot) or real_train(pot, *a, **k))
    accuracy.run(spec(data_file), store, progress=False, log=quiet)
    assert len(trained) == 1  # only the spherical run was missing
    for name, content in before.items():
        assert (store.runs_dir / name).read_bytes() == content


def test_interrupt_keeps_best_checkpoint_and_finished_runs(data_file, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    accuracy.run(spec(data_file, descriptors=("cace",)), store, progress=False, log=quiet)
    import bench.train as train_mod

    calls = {"n": 0}
    real = train_mod.loss_terms

    def interrupting(pot, batch, training):
        calls["n"] += 1
        if calls["n"] > 8:  # Ctrl-C during the third epoch
            raise KeyboardInterrupt
        return real(pot, batch, training)

    monkeypatch.setattr(train_mod, "loss_terms", interrupting)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        accuracy.run(spec(data_file), store, progress=False, log=lines.append)
    (stop,) = [m for m in lines if m.startswith("interrupted:")]
    assert f"after 2 of {spec(data_file).train.max_epochs} epochs" in stop and "resumes it from there" in stop
    assert len(list(store.runs_dir.glob("*.json"))) == 1          # the finished CACE run is intact
    checkpoints = list(store.artifacts_dir.glob("*/model.pt"))
    assert len(checkpoints) == 2                                   # the interrupted run kept its best weights
    from bench.potential import load_checkpoint

    assert all(load_checkpoint(p) is not None for p in checkpoints)
    states = list(store.artifacts_dir.glob("*/train-state.pt"))
    assert len(states) == 1                                        # the interrupted run can resume
    monkeypatch.setattr(train_mod, "loss_terms", real)
    said = []
    accuracy.run(spec(data_file), store, progress=False, log=said.append)
    assert any(m.startswith("resuming spherical") for m in said)
    assert len(list(store.runs_dir.glob("*.json"))) == 2 and not list(store.artifacts_dir.glob("*/train-state.pt"))


def test_a_report_of_trainings_stopped_before_any_finished_says_to_run_the_command_again(tmp_path):
    """What the GPU script's first accuracy part leaves (every training stopped part-way with its
    state kept, no run finished): the report says so and how to go on, not that there are no results."""
    store = ResultsStore(tmp_path / "res")
    with pytest.raises(ResultsError, match="no results to report"):
        build_report(store.root, tmp_path / "report")
    for name in ("a", "b"):
        (store.artifacts_dir / name).mkdir(parents=True)
        (store.artifacts_dir / name / "train-state.pt").write_bytes(b"")
    with pytest.raises(ResultsError, match=r"no finished runs to report yet; 2 training\(s\) stopped part-way .*"
                                           r"run the same command again"):
        build_report(store.root, tmp_path / "report")


def test_report_has_every_section_and_damaged_files_are_clear_errors(data_file, tmp_path, capsys):
    from bench.tasks.timing import TimingSpec
    from bench.tasks import timing

    store = ResultsStore(tmp_path / "res")
    accuracy.run(spec(data_file, train_sizes=(6, 12)), store, progress=False, log=quiet)
    timing.run(TimingSpec(sizes=(1,), repeats=2, warmup=1, modes=("energy_forces",)), store, log=quiet)
    from bench.tasks import timing_trained

    trained = timing_trained.run(spec(data_file).data, store, repeats=2, warmup=1, log=quiet)
    assert {r["descriptor"] for r in trained} == {"cace", "spherical", "spherical/cace"}
    assert trained[0]["setting"]["n_train"] == 12 and trained[0]["setting"]["n_structures"] == 4
    html_path, md_path = build_report(tmp_path / "res", tmp_path / "rep")
    html, md = html_path.read_text(), md_path.read_text()
    assert "run in training through" not in md                  # all eager: nothing to say
    for needle in ("Accuracy: tiny", "Caution: a short budget", "forces_mae (meV/A)", "energy_mae_per_atom", "learning curves",
                   "predicted against reference", "Speed against system size", "ratio sph/CACE", "Roofline", "Accuracy against speed", "Caution: some points have only 2 repeats", "commits:"):
        assert needle in html and needle in md, needle
    # parity, learning curves; time against atoms, memory against atoms, roofline, accuracy against speed
    assert html.count("data:image/png;base64,") == 6 and "<script" not in html and "http" not in html.split("<footer>")[0]
    assert len(list((tmp_path / "rep" / "figures").glob("*.png"))) == 6

    damaged = store.runs_dir / "0000damaged.json"
    damaged.write_text("{ not json")
    with pytest.raises(ResultsError, match="0000damaged.json"):
        build_report(tmp_path / "res")
    assert main(["report", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0000damaged.json" in err
    assert len(store.runs(strict=False)) == 7 and len(store.errors) == 1  # the other 7 runs are intact
    damaged.write_text(json.dumps({"format": "something-else", "records": []}))
    with pytest.raises(ResultsError, match="not a cace-bench run file"):
        store.runs()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-8), ("float32", 1e-2)])
def test_training_on_cuda_equals_cpu(data_file, tmp_path, dtype, tol):
    """The same seed, data and recipe on CUDA and on the CPU: the same losses, epoch by epoch, and
    the same test errors (float64 to 1e-8, float32 to its tolerance); records name their device."""
    from dataclasses import replace

    histories, errors = {}, {}
    for device in ("cpu", "cuda"):
        store = ResultsStore(tmp_path / device)
        s = spec(data_file, train=replace(TRAIN, max_epochs=3, dtype=dtype), device=device, descriptors=("cace",))
        recs = accuracy.run(s, store, progress=False, log=quiet)
        assert {r["provenance"]["device"] for r in recs} == {device}
        histories[device] = [(h["train_loss"], h["valid_loss"]) for h in store.runs()[0]["artifacts"]["history"]]
        errors[device] = {r["metric"]: r["value"] for r in recs if r["metric"] in ("energy_mae", "forces_mae")}
    for (a, b), (c, d) in zip(histories["cpu"], histories["cuda"]):
        assert abs(a - c) <= tol * abs(a) and abs(b - d) <= tol * abs(b)
    for m in errors["cpu"]:
        assert abs(errors["cpu"][m] - errors["cuda"][m]) <= tol * abs(errors["cpu"][m]) + 1e-9


def test_index_is_honoured_for_files_and_refused_for_fixed_sets(data_file, tmp_path, capsys):
    """--index selects frames of a file (it reaches the data spec, so it changes the key); a built-in
    set has fixed frames, and --index there is a one-line error, not silently dropped."""
    from bench.cli.run_cmd import _read_options

    assert main(["accuracy", "--data", "builtin:emt-alloy", "--index", ":10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--index" in err and "built-in" in err

    class Args:
        data, index = [str(data_file)], ":10"
        energy_key = forces_key = stress_key = virial_key = energy_unit = length_unit = None

    opts = _read_options(Args)
    assert opts == {"index": ":10"}

    class Default(Args):                     # no --index given: every frame, for files and built-in sets alike
        data, index = ["builtin:emt-alloy", str(data_file)], ":"

    assert _read_options(Default) == {}
    assert len(accuracy.load_frames(str(data_file), opts)) == 10


def test_commands_parse_their_defaults_on_the_builtin_set(tmp_path, capsys):
    """The README's main command path with every option at its default: parsing, read options and
    device resolve, and stability on an empty folder says to run accuracy first (exit 2)."""
    assert main(["stability", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the accuracy task first" in err


@pytest.mark.parametrize("command", ["run", "accuracy", "stability", "timing", "front"])
def test_a_device_this_machine_lacks_is_bad_input_before_any_work(command, tmp_path, capsys, monkeypatch):
    """--device names no device, one we do not run on, or a CUDA device the machine lacks: exit 2
    with one line saying what to pass, and nothing written (it was an internal error from torch)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for device, says in [("tpu", "--device tpu: not a device name; pass cpu, cuda or cuda:N"),
                         ("meta", "--device meta: cace-bench runs on cpu or cuda; pass one of them"),
                         ("cuda", "--device cuda: no CUDA device here (torch "),
                         ("cuda:1", "pass --device cpu, or leave --device out")]:
        assert main([command, "--quick", "--device", device, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main([command, "--quick", "--device", "cuda:2", "--out", str(tmp_path / "out")]) == 2
    assert "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists() or not list((tmp_path / "out" / "runs").iterdir())


def test_the_python_api_checks_the_device_before_any_work(data_file, tmp_path, monkeypatch):
    """The task functions refuse a device this machine lacks with the same one-line InputError."""
    from dataclasses import replace

    from bench.errors import InputError
    from bench.tasks import front, timing
    from bench.tasks.presets import front_spec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    store = ResultsStore(tmp_path)
    for call in (lambda: accuracy.run(spec(data_file, device="cuda"), store, progress=False, log=quiet),
                 lambda: timing.run(replace(timing.TimingSpec(), device="cuda:0"), store, log=quiet),
                 lambda: front.run(replace(front_spec(str(data_file), quick=True), device="cuda"), store, log=quiet)):
        with pytest.raises(InputError, match=r"^device cuda(:0)?: no CUDA device here \(torch .*\): pass device cpu"):
            call()
    assert not list(tmp_path.rglob("*.json"))


def test_a_bug_is_not_reported_as_bad_input(tmp_path, capsys, monkeypatch):
    """Bad input exits 2 with one line saying what to pass; an exception from our own code (here a
    KeyError planted as the accuracy command) exits 1 and says it is a bug, not the user's input."""
    from bench.cli import main as cli

    assert main(["accuracy", "--data", "no/such/file.extxyz", "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err

    def broken(args):
        raise KeyError("forces")

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices["accuracy"].set_defaults(func=broken)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["accuracy", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "KeyError" in err and "--debug" in err


def test_quick_caps_a_file_given_with_fractions(data_file):
    """--quick on a path: the default fractions (0.8 / 0.1 / rest) become counts capped at 100 / 20
    / 100 frames (a cap on a fraction never applied before)."""
    import ase.io

    from bench.tasks.presets import accuracy_spec

    n = len(ase.io.read(data_file, ":"))
    d = accuracy_spec(str(data_file), quick=True).data
    assert (d.n_train, d.n_valid) == (min(round(0.8 * n), 100), min(round(0.1 * n), 20))
    assert d.n_test == min(n - d.n_train - d.n_valid, 100) and all(isinstance(x, int) for x in (d.n_train, d.n_valid, d.n_test))
    full = accuracy_spec(str(data_file), quick=False).data
    assert (full.n_train, full.n_valid, full.n_test) == (0.8, 0.1, None)      # the full budget keeps the fractions


def test_quick_caps_bind_on_a_large_file(data_file, tmp_path):
    import ase.io

    from bench.tasks.presets import accuracy_spec

    frames = ase.io.read(data_file, ":")
    big = tmp_path / "big.extxyz"
    ase.io.write(big, (frames * (300 // len(frames) + 1))[:300], format="extxyz")
    d = accuracy_spec(str(big), quick=True).data
    assert (d.n_train, d.n_valid, d.n_test) == (100, 20, 30)                   # 240 / 30 / 30 before the caps


def test_every_run_records_the_trivial_models_energy_error(data_file, tmp_path):
    """energy_mae_per_atom_e0: the E0 fit alone on the same test set, equal for both descriptors of
    a seed, computed as sum_i E0[Z_i] against the reference."""
    from bench.tasks.accuracy import e0_reference_error

    records = accuracy.run(spec(data_file), ResultsStore(tmp_path), progress=False, log=quiet)
    triv = {r["descriptor"]: r["value"] for r in records if r["metric"] == "energy_mae_per_atom_e0"}
    assert set(triv) == {"cace", "spherical"} and triv["cace"] == triv["spherical"] > 0
    pred = {"n_atoms": np.array([2, 1]), "numbers": np.array([1, 8, 8]), "energy_ref": np.array([-10.0, -4.0])}
    # E0: H -1, O -5 -> trivial energies -6 and -5; errors 4/2 and 1/1 eV/atom -> mean 1.5 eV/atom
    assert e0_reference_error(pred, {1: -1.0, 8: -5.0}) == pytest.approx(1500.0)


def test_test_structures_with_an_element_training_never_saw_are_flagged(data_file, tmp_path):
    """A test structure holding an element no training structure has (Mg here, in one of two): its
    error measures an untrained embedding. Every record names the element and counts the
    structures, the log says it for each descriptor, and the report carries a caution; the usual
    case records an empty list and the report says nothing."""
    from dataclasses import replace

    from ase.calculators.singlepoint import SinglePointCalculator

    frames = ase.io.read(data_file, ":")
    odd = frames[0].copy()
    odd.numbers[0] = 12                                              # Mg: not in the data
    odd.calc = SinglePointCalculator(odd, energy=frames[0].get_potential_energy(), forces=frames[0].get_forces())
    test_path = tmp_path / "test.extxyz"
    ase.io.write(test_path, [odd, frames[1]], format="extxyz")
    one = replace(TRAIN, max_epochs=1)
    sp = spec(data_file, train=one)
    sp = replace(sp, data=replace(sp.data, test_source=str(test_path)))
    said = []
    records = accuracy.run(sp, ResultsStore(tmp_path / "odd"), progress=False, log=said.append)
    assert {(r["untrained_elements"] == [12], r["n_untrained_structures"]) for r in records} == {(True, 1)}
    cautions = [line for line in said if line.startswith("caution:")]
    assert len(cautions) == 2 and all("1 of the 2 test structures hold Mg, which no training structure has" in c
                                      for c in cautions)
    _, md = build_report(tmp_path / "odd", tmp_path / "rep-odd")
    assert "test structures hold elements that no training structure of their seed has (seed 0: 1 of 2 (Mg))" in \
        md.read_text()
    assert {(tuple(r["validation_untrained_elements"]), r["n_validation_untrained_structures"]) for r in records} \
        == {((), 0)}                                                 # the validation part is the data's own
    # the same structure as the validation file: the records and the log say the best epoch was chosen on it
    sv = spec(data_file, train=one)
    sv = replace(sv, data=replace(sv.data, valid_source=str(test_path)))
    said = []
    records = accuracy.run(sv, ResultsStore(tmp_path / "odd-valid"), progress=False, log=said.append)
    assert {(tuple(r["untrained_elements"]), tuple(r["validation_untrained_elements"]),
             r["n_validation_untrained_structures"]) for r in records} == {((), (12,), 1)}
    cautions = [line for line in said if line.startswith("caution:")]
    assert len(cautions) == 2 and all("1 of the 2 validation structures hold Mg, which no training structure has: the "
                                      "best epoch was chosen partly on" in c for c in cautions)
    records = accuracy.run(spec(data_file, train=one), ResultsStore(tmp_path / "usual"), progress=False, log=quiet)
    assert {(tuple(r["untrained_elements"]), r["n_untrained_structures"]) for r in records} == {((), 0)}
    assert {tuple(r["validation_untrained_elements"]) for r in records} == {()}
    _, md = build_report(tmp_path / "usual", tmp_path / "rep-usual")
    assert "no training structure" not in md.read_text()


def test_records_say_how_the_data_was_read(data_file, tmp_path):
    """Source, read options (keys, units, --index), E0 source and the split sizes used are in every
    accuracy record, and the report prints them."""
    from dataclasses import replace

    sp = spec(data_file)
    sp = replace(sp, data=replace(sp.data, read_options={"energy_unit": "eV", "index": ":30"}))
    records = accuracy.run(sp, ResultsStore(tmp_path), progress=False, log=quiet)
    d = records[0]["data"]
    assert d["source"] == str(data_file) and d["read_options"] == {"energy_unit": "eV", "index": ":30"}
    assert d["e0_source"].startswith("least squares") and d["n_train"] + d["n_valid"] + d["n_test"] <= 30
    _, md = build_report(tmp_path, tmp_path / "rep")
    assert "read options: energy_unit eV, index :30" in md.read_text()


def test_a_split_with_an_empty_part_is_refused_before_any_training(tmp_path, capsys):
    """A one-frame file: exit 2 with the file, the sizes and what to pass, and nothing trained."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from bench.tasks.presets import accuracy_spec

    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.calc = SinglePointCalculator(a, energy=-14.2, forces=np.full((3, 3), 0.1))
    path = tmp_path / "one.extxyz"
    ase.io.write(path, [a], format="extxyz")
    assert main(["accuracy", "--data", str(path), "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "one.extxyz: 1 frame(s) give a split of 1 training, 0 validation and 0 test" in err
    assert "pass a file with more frames, or a separate file for each empty part (--valid PATH, --test PATH)" in err
    assert not list((tmp_path / "out").glob("runs/*.json"))
    # five frames under the full split's fractions: the fewest frames that split says it needs
    ase.io.write(path, [a] * 5, format="extxyz")
    assert main(["accuracy", "--data", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("5 frame(s) give a split of 4 training, 0 validation and 1 test structures; the validation part(s) "
            "would be empty: pass a file with more frames (this split, 80% training, 10% validation and the rest "
            "test, needs at least 8 frames)") in err
    ase.io.write(path, [a] * 8, format="extxyz")                   # 8 frames: 6 + 1 + 1, as it said
    split = accuracy_spec(str(path), quick=False).data.split(ase.io.read(path, ":"), 0, has_test_file=False)
    assert (len(split.train), len(split.valid), len(split.test)) == (6, 1, 1)
    # a frame selection that selects nothing says so, and what would select something
    assert main(["accuracy", "--data", str(path), "--index", "9:", "--out", str(tmp_path / "out")]) == 2
    assert "key 'index': frame selection '9:' selects none of the 8 frames: pass a selection within 0..7" in \
        capsys.readouterr().err


def test_separate_test_file_and_e0_file_from_the_command_line(data_file, tmp_path, capsys):
    """--test: errors on that file (all of it), the data splitting into training and validation only;
    --e0: the isolated-atom energies used (a missing element is a one-line error naming it)."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    from bench.tasks.presets import accuracy_spec

    frames = ase.io.read(data_file, ":")
    test_path = tmp_path / "test.extxyz"
    ase.io.write(test_path, frames[:5], format="extxyz")
    elements = sorted({int(z) for a in frames for z in a.numbers})
    singles = []
    for k, z in enumerate(elements):
        atom = Atoms(numbers=[z], positions=[[0, 0, 0]])
        atom.calc = SinglePointCalculator(atom, energy=-1.0 - k, forces=np.zeros((1, 3)))
        singles.append(atom)
    e0_path = tmp_path / "e0.extxyz"
    ase.io.write(e0_path, singles, format="extxyz")
    s = accuracy_spec(str(data_file), quick=True, test=str(test_path), e0=str(e0_path))
    assert s.data.test_source == str(test_path) and s.data.e0_source == str(e0_path)
    from dataclasses import replace

    s = replace(s, model=dict(TINY_MODEL), train=TRAIN, descriptors=("cace",), train_sizes=None)
    records = accuracy.run(s, ResultsStore(tmp_path / "out"), progress=False, log=quiet)
    r = records[0]
    assert r["n_test"] == 5 and r["split"]["n_test"] == 0 and r["data"]["test_source"] == str(test_path)
    assert r["data"]["e0_source"] == str(e0_path)
    ase.io.write(e0_path, singles[:1], format="extxyz")                        # one element only
    assert main(["accuracy", "--data", str(data_file), "--quick", "--e0", str(e0_path),
                 "--out", str(tmp_path / "out2")]) == 2
    assert "e0.extxyz: no isolated-atom energy for" in capsys.readouterr().err


def _synthetic_accuracy(store, values: dict, concurrent: int = 1) -> None:
    """Accuracy records of both descriptors, 3 seeds, without training: ``values[(kind, metric)]``
    the three seeds' values; provenance says ``concurrent`` units ran side by side where > 1."""
    from bench.results.record import Record

    for kind in ("cace", "spherical"):
        for seed in range(3):
            key = {"task": "accuracy", "descriptor": kind, "dataset": "synthetic", "dataset_hash": "h", "seed": seed,
                   "setting": {"n_train": 10}, "config_hash": "c"}
            prov = {"device": "cpu", "device_name": "test"}
            if concurrent > 1:
                prov["concurrent_units"] = concurrent
            common = {**key, "n_test": 5, "n_parameters": 100, "n_features": 10, "provenance": prov,
                      "split": {}, "evaluated_on": "test", "stopped_by": "max_epochs", "best_epoch": 499,
                      "wall_time_s": 1.0, "model": {},
                      "train_config": {"max_epochs": 500, "batch_size": 8, "lr": 0.01, "ema_decay": 0.99,
                                       "energy_weights": [1.0], "force_weight": 1000.0}}
            store.write(key, [Record.measured(common, m, v[seed]) for (k, m), v in values.items() if k == kind])


def test_the_accuracy_table_bolds_only_differences_beyond_the_seed_spread(tmp_path):
    """A force error 3x apart is bold; an energy error inside the spread and a training time measured
    with trainings side by side (--jobs) are not, and the report says how the times were taken."""
    store = ResultsStore(tmp_path / "res")
    _synthetic_accuracy(store, {
        ("cace", "forces_mae"): [10.0, 11.0, 12.0], ("spherical", "forces_mae"): [30.0, 31.0, 32.0],
        ("cace", "energy_mae_per_atom"): [1.0, 2.0, 3.0], ("spherical", "energy_mae_per_atom"): [1.5, 2.5, 3.5],
        ("cace", "train_time"): [10.0, 10.1, 10.2], ("spherical", "train_time"): [20.0, 20.1, 20.2],
    }, concurrent=6)
    _, md_path = build_report(tmp_path / "res", tmp_path / "rep")
    md = md_path.read_text()
    row = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "**11.0" in row["forces_mae (meV/A)"] and "**" not in row["forces_mae (meV/A)"].split("|")[3]
    assert "**" not in row["energy_mae_per_atom (meV/atom)"]
    assert "**" not in row["train_time (s)"]
    assert "up to 6 trainings side by side" in md
    # the same times without --jobs: apart beyond their spread, so bold
    store2 = ResultsStore(tmp_path / "res2")
    _synthetic_accuracy(store2, {("cace", "train_time"): [10.0, 10.1, 10.2], ("spherical", "train_time"): [20.0, 20.1, 20.2]})
    _, md_path = build_report(tmp_path / "res2", tmp_path / "rep2")
    md = md_path.read_text()
    assert "**10.1" in next(line for line in md.splitlines() if line.startswith("| train_time"))
    assert "side by side" not in md


@pytest.mark.slow
@needs_fused_kernels_on_cpu
def test_fused_training_gives_eagers_numbers_and_records_its_backend(data_file, tmp_path):
    """--train-backend fused: one float64 epoch through the fused kernels (Triton's interpreter here)
    ends with eager's errors (the same weights, steps and double backward, to rounding), and the
    records name the backend each ran. Slow set: about 90 s in the interpreter (the double
    backward's parity itself is in the default suite, tests/test_fused.py)."""
    from dataclasses import replace

    one = replace(TRAIN, max_epochs=1, dtype="float64")
    runs = {}
    for backend in ("eager", "fused"):
        recs = accuracy.run(spec(data_file, train=one, descriptors=("cace",), backend=backend),
                            ResultsStore(tmp_path / backend), progress=False, log=quiet)
        assert recs and all(r["backend"] == backend for r in recs)
        runs[backend] = {r["metric"]: r["value"] for r in recs}
    for metric in ("energy_mae_per_atom", "forces_mae", "forces_rmse"):
        a, b = runs["fused"][metric], runs["eager"][metric]
        assert abs(a - b) <= 1e-8 * abs(b), (metric, a, b)


def test_report_names_a_training_backend_other_than_eager(data_file, tmp_path):
    """Runs trained through the fused backend are named in the accuracy section (the records say so)."""
    store = ResultsStore(tmp_path / "res")
    accuracy.run(spec(data_file), store, progress=False, log=quiet)
    for path in store.runs_dir.glob("*.json"):                  # as if CACE had trained with --train-backend fused
        run = json.loads(path.read_text())
        if run["key"]["descriptor"] == "cace":
            path.write_text(json.dumps(run).replace('"backend": "eager"', '"backend": "fused"'))
    _, md = build_report(tmp_path / "res", tmp_path / "rep")
    assert "run in training through: cace fused (1 run); spherical eager (1 run)" in md.read_text()


def test_a_backend_that_cannot_train_is_refused_before_any_training(data_file, tmp_path, monkeypatch):
    """A compiled backend with no double backward (compile-fused: only ``compile`` compiles a whole
    training step), or fused where its kernels cannot run, is a one-line error before the data is
    read or anything trained; nothing is written."""
    from bench.errors import InputError
    from bench.nn import neighbor_sum_triton as nst

    store = ResultsStore(tmp_path)
    with pytest.raises(InputError, match="only eager, fused, .* can take a force-loss training step"):
        accuracy.run(spec(data_file, backend="compile-fused"), store, progress=False, log=quiet)
    with pytest.raises(InputError, match="'eager-cudagraphs' records CUDA graphs and needs CUDA .*pass --train-backend eager$"):
        accuracy.run(spec(data_file, backend="eager-cudagraphs"), store, progress=False, log=quiet)
    monkeypatch.setattr(nst, "interpreting", lambda: False)           # as on a CPU machine outside the tests
    with pytest.raises(InputError, match="training backend 'fused': the fused neighbour sum runs on CUDA"):
        accuracy.run(spec(data_file, backend="fused"), store, progress=False, log=quiet)
    assert store.runs() == []
    code = main(["accuracy", "--data", str(data_file), "--train-backend", "fused", "--out", str(tmp_path / "cli")])
    assert code == 2                                                  # a one-line input error, not an internal one
