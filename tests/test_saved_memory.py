"""The saved-for-backward count (python -m bench.benchmarks.saved_memory) counts each storage once,
largest first, per atom."""

from bench.benchmarks.saved_memory import saved_per_atom


def test_count_is_per_atom_largest_first_and_the_sum_of_its_parts():
    r = saved_per_atom("cace", "eager")
    kb = [t[0] for t in r["top"]]
    assert r["n_atoms"] == 192 and kb == sorted(kb, reverse=True)
    assert abs(sum(kb) - r["kb_per_atom"]) < 1e-9 * r["kb_per_atom"]
    # the per-edge angular basis (E x 20 floats, kept by the monomials' backward) is among them
    assert any(node == "_MonomialsBackward" for _, _, node in r["top"])
    assert 10 < r["kb_per_atom"] < 1000
