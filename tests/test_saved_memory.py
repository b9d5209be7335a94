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


def test_peak_holds_everything_autograd_saved_and_the_largest_per_edge_table():
    """Every storage autograd keeps (but the parameters, made before the call) is live at the end of
    the forward, so the peak is at least their sum; the eager path's largest tensor, the dense
    [atoms, max neighbours, Q, R] edge basis (192 x 77 x 20 x 6 floats, 37 kB an atom), is live at
    the peak, and the live storages listed add up to the peak."""
    from bench.benchmarks.saved_memory import peak_per_atom

    saved = saved_per_atom("cace", "eager")
    made_in_call = sum(kb for kb, _, node in saved["top"] if node != "leaf")
    r = peak_per_atom("cace", "eager")
    assert r["n_atoms"] == 192 and r["kb_per_atom"] >= made_in_call
    assert abs(sum(kb for kb, _, _ in r["top"]) - r["kb_per_atom"]) < 1e-9 * r["kb_per_atom"]
    assert r["top"][0][1] == (192, 77, 20, 6) and abs(r["top"][0][0] - 192 * 77 * 20 * 6 * 4 / 192 / 1e3) < 1e-9
