"""Backends are drop-in swaps: the same weights, the eager numbers (bench.backends).

Inductor on CPU compiles real C++ here (10-20 s a model), so the default CPU parity runs in float64
on one tiny graph; a second graph of other atom, edge and neighbour counts (the dynamic-shape
recompile MD needs) is the ``slow`` test. CUDA parity, float32 and CUDA graphs included, is under the ``gpu`` marker.
"""

import copy

import numpy as np
import pytest
import torch

from bench.backends import BACKENDS, BackendUnavailable, check_backend, default_backend, timed_backends, with_backend
from bench.graph import AtomsGraph
from bench.potential import build
from bench.testing import random_periodic, relative_error
from bench.testing.requirements import needs_compile

KW = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=1, messages=("M", "Ar", "Bchi"))


def _graphs(dtype, device="cpu"):
    rng = np.random.default_rng(3)
    small = random_periodic(rng, [1, 8], n=8)
    large = random_periodic(rng, [1, 8], n=13)
    return [AtomsGraph.from_atoms(a, KW["cutoff"], dtype=dtype, device=device) for a in (small, large)]


def _assert_parity(kind, backend, dtype, device, rtol, atol=None, sizes=2):
    """Compiled == eager on ``sizes`` graphs: elementwise ``allclose(rtol, atol)``, or, with
    ``atol=None``, ‖fast − eager‖ / ‖eager‖ <= rtol per output (float32: Inductor reorders sums, and
    force components of 70 eV/Å round by 4e-5 while the relative error stays near 1e-6)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **KW).to(device=device, dtype=dtype)
    fast = with_backend(pot, backend)
    assert fast.backend == backend and pot.backend == "eager"
    for graph in _graphs(dtype, device)[:sizes]:
        ref = pot(graph, stress=True)
        for _ in range(2):                       # CUDA graphs replay from the second call on
            out = fast(graph, stress=True)
        for key in ("energy", "forces", "stress"):
            if atol is None:
                assert relative_error(out[key], ref[key]) <= rtol, (kind, backend, key, relative_error(out[key], ref[key]))
            else:
                assert torch.allclose(out[key], ref[key], rtol=rtol, atol=atol), (kind, backend, key)
    return pot, fast


def parallel_regions_inside_loops(code: str) -> list[str]:
    """The OpenMP parallel regions of Inductor's C++ ``code`` that open inside a for loop (one
    thread team forked per iteration of that loop): the kernels that open them, by name."""
    found, stack, pending, kernel = [], [], None, None
    for line in code.splitlines():
        text = line.strip()
        if text.startswith("cpp_fused_") and "=" in text:
            kernel = text.split("=")[0].strip()
        elif text.startswith("for("):
            pending = "for"
        elif text.startswith("#pragma omp parallel") and "for" in stack:
            found.append(kernel)
        elif text == "{":
            stack.append(pending or "block")
            pending = None
        elif text.startswith("}"):
            if stack:
                stack.pop()
    return found


@needs_compile
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compile_backend_equals_eager_float64(kind):
    from torch._inductor.utils import run_and_get_code

    (pot, fast), codes = run_and_get_code(_assert_parity, kind, "compile", torch.float64, "cpu", rtol=1e-10,
                                          atol=1e-10, sizes=1)
    # energy + forces compiled (forward and backward), without a thread team forked inside a loop
    # (bench.backends.INDUCTOR_OPTIONS: with tail vectorisation, the outer product's backward forked
    # one per neighbour slot)
    assert len(codes) >= 2 and all("extern \"C\"" in c for c in codes)
    assert [k for c in codes for k in parallel_regions_inside_loops(c)] == []
    # the same tensors, not copies: a weight update reaches the compiled potential
    assert fast.state_dict().keys() == pot.state_dict().keys()
    assert all(a is b for a, b in zip(fast.parameters(), pot.parameters()))
    graph = _graphs(torch.float64)[0]
    with torch.no_grad():
        pot.linear.weight.add_(0.5)
    assert torch.allclose(fast(graph)["energy"], pot(graph)["energy"], rtol=1e-10, atol=1e-10)
    # a compiled descriptor has no double backward through AOTAutograd: a clear error, not a wrong
    # gradient (a training step compiles energies and forces together instead: the test below)
    with pytest.raises(BackendUnavailable, match="double backward"):
        fast._descriptor_runner(graph, double_backward=True)


@needs_compile
@pytest.mark.parametrize("kind", ["cace", pytest.param("spherical", marks=pytest.mark.slow)])
def test_compile_backend_takes_a_force_loss_training_step(kind):
    """``compile`` trains: energies and forces compiled together (autograd.grad inside the compiled
    graph, the descriptor's plain form), so the force loss's gradient with respect to the weights is
    a first derivative of that graph: eager's energies, forces and weight gradient (float64, 1e-10).
    A stress loss it does not compile: a clear error. (40 s of compiling each: the spherical side's
    is ``slow``; its plain form is checked in eager mode below.)"""
    fast, graph = _assert_training_parity(kind, torch.float64, "cpu", rtol=1e-10)
    with pytest.raises(BackendUnavailable, match="not a stress loss"):
        fast(graph, stress=True, training=True)


@needs_compile
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compile_backend_takes_a_force_loss_training_step_on_cuda(kind, dtype):
    """The same on CUDA (Triton's code): float64 1e-10, float32 1e-5 relative per output."""
    _assert_training_parity(kind, dtype, "cuda", rtol=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.fixture
def dynamo_traces_only(monkeypatch):
    """``torch.compile`` with dynamo's eager backend: the graphs are traced and guarded as under
    Inductor (the guards, hence the cache entries, are dynamo's), and nothing is compiled."""
    real = torch.compile

    def traced_only(fn, **kw):
        kw.pop("options", None)
        kw.pop("mode", None)
        return real(fn, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", traced_only)


@needs_compile
def test_compiled_trainings_of_a_sweep_share_their_graphs_and_keep_their_own_weights(dynamo_traces_only):
    """A sweep trains many potentials in one process (a front: variants x weights x seeds), each with
    its own compiled force-loss step on batches of several sizes. Dynamo's entries for the shared
    function must not grow with their number (guards on a potential's identity would reach
    RECOMPILE_LIMIT, an error, within a sweep) nor with the batch size (compiled dynamic from the
    first call: a static first graph cost a second compilation, 70 s on 2 CPU threads), and a reused
    graph must read each potential's own weights (as inputs, not constants): eager's energies,
    forces and weight gradient for every one. Traced with dynamo's eager backend
    (the guards are dynamo's, whatever compiles the graph), so this takes seconds, not minutes."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    import bench.backends as backends
    from bench.tasks.timing import training_result

    torch._dynamo.reset()
    entries = []
    for seed in range(4):
        torch.manual_seed(seed)
        pot = build("cace" if seed % 2 else "spherical", elements=[1, 8], readout=(8,), **KW).double()
        fast, params = with_backend(pot, "compile"), list(pot.parameters())
        for graph in _graphs(torch.float64):             # two sizes: dynamic from the first call, one graph
            want, got = training_result(pot, graph, params), training_result(fast, graph, params)
            for key in want:
                assert relative_error(got[key], want[key]) < 1e-12, (seed, graph.n_atoms, key)
        entries.append(len(_debug_get_cache_entry_list(backends._atomic_energies_and_forces.__code__)))
    assert entries == [1, 2, 2, 2], entries                # one graph per descriptor, whatever the size


@needs_compile
def test_a_training_validation_compiles_its_descriptor_once_for_every_size(dynamo_traces_only):
    """``with_backend(..., dynamic=True)`` (a training's validation, batches of every size): one
    compiled descriptor graph serves two sizes, with eager's numbers; the default (MD, timing) makes
    a static graph first, then a dynamic one. Traced with dynamo's eager backend (its guards decide
    the entries, whatever compiles)."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), **KW).double()
    code = type(pot.descriptor).forward.__code__
    for dynamic, want in ((True, 1), (None, 2)):
        torch._dynamo.reset()
        fast = with_backend(pot, "compile", dynamic=dynamic)
        for graph in _graphs(torch.float64):
            ref, out = pot(graph), fast(graph)
            assert relative_error(out["forces"], ref["forces"]) < 1e-12 and relative_error(out["energy"], ref["energy"]) < 1e-12
        assert len(_debug_get_cache_entry_list(code)) == want, (dynamic, len(_debug_get_cache_entry_list(code)))


def test_on_a_torch_older_than_the_compiled_backends_need_they_say_so_and_cuda_defaults_to_eager(monkeypatch):
    """On torch 2.5 the compiled backends failed inside dynamo (an option it lacked, a torch.mm(out=)
    it could not trace) and the compiled training step needs trace_autograd_ops (2.11): below
    ``COMPILE_MIN_TORCH`` each compiled backend is a one-line refusal naming the torch it needs and
    what to pass, --train-backend compile an input error before anything runs, and the default
    backend on CUDA is eager, not compile; eager is unaffected."""
    from bench.backends import check_training_backend
    from bench.errors import InputError
    from bench.versions import major_minor

    assert [major_minor(v) for v in ("2.11.0+cu130", "2.12.0.dev20260101", "3.2.0")] == [(2, 11), (2, 12), (3, 2)]
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    assert default_backend("cuda") == "compile"
    check_training_backend("compile", "cpu")
    monkeypatch.setattr(torch, "__version__", "2.10.1+cu128")
    said = r"needs torch 2\.11 or later \(this is torch 2\.10\.1\+cu128\)"
    for backend in ("compile", "compile-fused"):        # (the CUDA-graph ones need CUDA first)
        with pytest.raises(BackendUnavailable, match=said + ".*pass --backend eager or fused$"):
            check_backend(backend, "cpu")
    with pytest.raises(InputError, match="training backend 'compile': .*" + said):
        check_training_backend("compile", "cpu")
    assert default_backend("cuda") == "eager" and default_backend("cpu") == "eager"
    check_training_backend("eager", "cpu")
    pot = build("cace", elements=[1, 8], **KW)
    with pytest.raises(BackendUnavailable, match=said):
        with_backend(pot, "compile")
    assert with_backend(pot, "eager") is pot


def test_fused_kernels_on_a_triton_older_than_they_are_tested_with_say_so(monkeypatch):
    """Triton 3.1's interpreter failed the kernels' tests (the test extra asks for 3.2): below
    ``FUSED_MIN_TRITON`` the fused backends are refused in one line naming the Triton they need."""
    from bench.nn import neighbor_sum_triton as nst

    if nst.triton is None:
        pytest.skip("needs Triton (pip install -e '.[test]')")
    monkeypatch.setattr(nst.triton, "__version__", "3.1.0")
    assert not nst.available()
    with pytest.raises(RuntimeError, match=r"need Triton 3\.2 or later \(this is Triton 3\.1\.0\)"):
        nst.check_device("cuda")
    with pytest.raises(BackendUnavailable, match=r"backend 'fused': the fused kernels need Triton 3\.2 or later"):
        check_backend("fused", "cpu")


def test_fused_kernels_in_an_interpreter_that_numpy_2_4_breaks_say_so(monkeypatch):
    """Triton 3.6's interpreter (torch 2.10's and 2.11's Triton) fails every fused kernel under numpy
    2.4 and later (it turns a one-element array into an int, which numpy 2.4 refuses; 2.3 warns):
    there the fused backends are refused on the CPU in one line naming the versions that work;
    Triton 3.7, an older numpy, or compiled kernels on CUDA are not refused."""
    from bench.nn import neighbor_sum_triton as nst

    if nst.triton is None:
        pytest.skip("needs Triton (pip install -e '.[test]')")
    monkeypatch.setattr(nst, "interpreting", lambda: True)
    monkeypatch.setattr(nst.triton, "__version__", "3.6.0")
    monkeypatch.setattr(nst.np, "__version__", "2.5.2")
    said = r"Triton 3\.6\.0's interpreter cannot run the fused kernels under numpy 2\.5\.2 \(it needs Triton 3\.7"
    with pytest.raises(RuntimeError, match=said + ".*use the dense path"):
        nst.check_device("cpu")
    with pytest.raises(BackendUnavailable, match=r"backend 'fused': " + said):
        check_backend("fused", "cpu")
    nst.check_device("cuda")                                # compiled kernels: no interpreter
    monkeypatch.setattr(nst.np, "__version__", "2.4.6")     # the first numpy that refuses
    assert "under numpy 2.4.6" in str(nst.interpreter_unusable())
    for triton_version, numpy_version in (("3.7.0", "2.5.2"), ("3.6.0", "2.3.5"), ("3.6.0", "1.26.4")):
        monkeypatch.setattr(nst.triton, "__version__", triton_version)
        monkeypatch.setattr(nst.np, "__version__", numpy_version)
        assert nst.interpreter_unusable() is None
        nst.check_device("cpu")


@needs_compile
def test_a_compiled_training_compiles_its_step_and_its_validation_once(dynamo_traces_only):
    """``train(..., backend="compile")`` over batches and validation sets of several sizes: one
    graph for the step and one for validation's descriptor (``with_backend(..., dynamic=True)``),
    where static first graphs took two and three."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    import bench.backends as backends
    from bench.train import TrainConfig, train

    rng = np.random.default_rng(5)
    graphs = []
    for n in (5, 6, 7, 8, 9, 10, 11, 12):                  # batches of two: four training, two validation shapes
        g = AtomsGraph.from_atoms(random_periodic(rng, [1, 8], n=n), KW["cutoff"], dtype=torch.float64)
        graphs.append(g.replace(energy=torch.tensor([rng.normal()], dtype=torch.float64),
                                forces=torch.tensor(rng.normal(size=(g.n_atoms, 3)), dtype=torch.float64)))
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), **KW).double()
    train(pot, graphs[:4], graphs[4:], TrainConfig(max_epochs=2, batch_size=2), progress=False, backend="compile")
    entries = [len(_debug_get_cache_entry_list(code)) for code in
               (backends._atomic_energies_and_forces.__code__, type(pot.descriptor).forward.__code__)]
    assert entries == [1, 1], entries


def _assert_training_parity(kind, dtype, device, rtol):
    """``compile``'s energies, forces and force-loss weight gradient against eager's (relative)."""
    from bench.tasks.timing import training_result

    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **KW).to(device=device, dtype=dtype)
    graph = _graphs(dtype, device)[0]
    params = list(pot.parameters())
    want = training_result(pot, graph, params)
    fast = with_backend(pot, "compile")
    got = training_result(fast, graph, params)
    for key in want:
        assert relative_error(got[key], want[key]) < rtol, (kind, key, relative_error(got[key], want[key]))
    return fast, graph


def test_the_plain_descriptor_is_the_descriptor():
    """``plain=True`` (autograd through plain operations, the form a compiled training step traces):
    the features, forces and force-loss weight gradient of the autograd Functions' form, in eager
    mode, both descriptors (float64, 1e-12)."""
    from bench.tasks.timing import training_result

    graph = _graphs(torch.float64)[0]
    for kind in ("cace", "spherical"):
        torch.manual_seed(0)
        pot = build(kind, elements=[1, 8], readout=(8,), **KW).double()
        assert relative_error(pot.descriptor(graph, plain=True), pot.descriptor(graph)) < 1e-12
        params = list(pot.parameters())
        want = training_result(pot, graph, params)
        plain = copy.copy(pot)
        plain.features = lambda g, double_backward=False: pot.descriptor(g, plain=True)
        got = training_result(plain, graph, params)
        for key in want:
            assert relative_error(got[key], want[key]) < 1e-12, (kind, key)


@needs_compile
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compile_backend_follows_a_change_of_size(kind):
    """A second graph of other atom, edge and neighbour counts (one recompile, dynamic shapes)."""
    _assert_parity(kind, "compile", torch.float64, "cpu", rtol=1e-10, atol=1e-10, sizes=2)


def test_backend_choice_is_checked():
    with pytest.raises(ValueError, match="unknown backend 'triton'"):
        check_backend("triton", "cpu")
    with pytest.raises(BackendUnavailable, match="needs CUDA"):
        check_backend("compile-cudagraphs", "cpu")
    assert default_backend("cpu") == "eager"          # CUDA's: the test of torch versions below
    assert timed_backends("cpu") == ("eager",) and timed_backends("cuda") == BACKENDS
    pot = build("cace", elements=[1, 8], readout=(8,), **KW)
    assert with_backend(pot, "eager") is pot
    assert set(BACKENDS) == {"eager", "compile", "compile-cudagraphs", "fused", "compile-fused",
                             "compile-fused-cudagraphs", "eager-cudagraphs", "fused-cudagraphs"}
    with pytest.raises(BackendUnavailable, match="'fused-cudagraphs' needs CUDA .*pass --backend fused or eager"):
        check_backend("fused-cudagraphs", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("backend", ["compile", "compile-cudagraphs", "eager-cudagraphs", "fused-cudagraphs"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_backends_equal_eager(kind, backend, dtype):
    """One graph size (each compile costs 10-20 s on the GPU machine; the dynamic-shape recompile is
    the CPU ``slow`` test's)."""
    tol = dict(rtol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    _assert_parity(kind, backend, dtype, "cuda", sizes=1, **tol)


@needs_compile
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compile_backend_equals_eager_float32(kind):
    """float32 on CPU, the precision MD and timing use: relative error <= 1e-5 per output."""
    _assert_parity(kind, "compile", torch.float32, "cpu", rtol=1e-5, sizes=1)
