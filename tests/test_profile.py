"""The kernel profile (bench.profile): a table per (descriptor, backend) and a summary that adds up."""

import json

from bench.profile import main


def test_profile_writes_tables_and_a_consistent_summary(tmp_path, capsys):
    assert main(["--device", "cpu", "--repeat", "1", "--calls", "2", "--backend", "eager", "compile-cudagraphs",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "profile.json").read_text())
    assert sorted(c["descriptor"] for c in result["cases"]) == ["cace", "spherical"]
    for case in result["cases"]:
        assert case["backend"] == "eager" and case["n_atoms"] == 192 and case["time_per_call_ms"] > 0
        shares = [r["share"] for r in case["top"]]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
        assert "Self CPU" in (tmp_path / f"profile-{case['descriptor']}-eager.txt").read_text()
    # a backend this device cannot run is listed with the reason, not silently dropped
    assert {(f["descriptor"], f["backend"]) for f in result["unavailable"]} == {
        ("cace", "compile-cudagraphs"), ("spherical", "compile-cudagraphs")}
    assert "needs CUDA" in result["unavailable"][0]["error"]
    assert "ms/call" in capsys.readouterr().out


def test_profile_of_the_training_step_counts_its_launches(tmp_path):
    """--mode training_step profiles the force-loss step (forward, forces and the double backward):
    its own table file and mode in the summary, and more launches a call than energy + forces (which
    it contains), the same number every call (a whole count per call)."""
    ef, step = tmp_path / "ef", tmp_path / "step"
    assert main(["--device", "cpu", "--repeat", "1", "--calls", "2", "--backend", "eager", "--out", str(ef)]) == 0
    assert main(["--device", "cpu", "--repeat", "1", "--calls", "2", "--backend", "eager", "--mode", "training_step",
                 "--out", str(step)]) == 0
    launches = {}
    for folder in (ef, step):
        result = json.loads((folder / "profile.json").read_text())
        for case in result["cases"]:
            n = case["launches_per_call"]
            assert n > 0 and n == int(n), case
            launches[(case["descriptor"], case["mode"])] = n
    for kind in ("cace", "spherical"):
        assert launches[(kind, "training_step")] > launches[(kind, "energy_forces")]
        assert (step / f"profile-{kind}-eager-training_step.txt").is_file()
