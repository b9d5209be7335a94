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
