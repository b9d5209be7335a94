"""The fused Triton neighbour sum (bench/nn/neighbor_sum_triton.py) is a drop-in swap for the dense
batched products: the same sums, gradients, descriptors, potentials and properties.

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest) on
small graphs; on CUDA the same tests run compiled under the ``gpu`` marker.
"""

import numpy as np
import pytest
import torch

from bench.backends import BackendUnavailable, check_backend, compile_unavailable, with_backend
from bench.graph import AtomsGraph
from bench.nn import neighbor_sum_triton as nst
from bench.potential import build
from bench.testing import PotentialTests, random_periodic, relative_error
from bench.testing.requirements import needs_compile, needs_fused_kernels, needs_fused_kernels_on_cpu

pytestmark = needs_fused_kernels

SMALL = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=2, messages=("M", "Ar", "Bchi"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _device_marks(device):
    return [pytest.mark.gpu] if device == "cuda" else [needs_fused_kernels_on_cpu]


def _random_sum(rng_seed, Q, NR, L, C, dtype, device, n_atoms=7, n_edges=40):
    """Inputs of one sum: Y [E, Q], R [E, R], W [N, L, C] per sender atom, senders [E] (atom 5 sends
    nothing: its row of dW must be zero), wl [Q], receivers [E] sorted (atom 3 receives nothing:
    its output rows must be zero)."""
    g = torch.Generator().manual_seed(rng_seed)
    receivers = torch.sort(torch.randint(0, n_atoms, (n_edges,), generator=g)).values
    receivers[receivers == 3] = 2
    senders = torch.randint(0, n_atoms, (n_edges,), generator=g)
    senders[senders == 5] = 4
    make = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).to(device).requires_grad_(True)
    Y, R, W = make(n_edges, Q), make(n_edges, NR), make(n_atoms, L, C)
    wl = torch.sort(torch.randint(0, L, (Q,), generator=g)).values.to(device)
    return Y, R, W, senders.to(device), wl, receivers.to(device), n_atoms


@pytest.mark.parametrize("device", [pytest.param(d, marks=_device_marks(d)) for d in DEVICES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(20, 6, 1, 3), (20, 6, 4, 9), (16, 5, 4, 9), (1, 1, 1, 1), (35, 8, 5, 16)])
def test_kernel_equals_reference_sum_and_gradients(device, dtype, shape):
    """out[i,q,n,c] = sum_{e->i} Y[e,q] R[e,n] W[e,wl[q],c] and its three gradients, against the
    per-edge PyTorch sum; non-power-of-two sizes exercise the masks, atom 3 the empty row."""
    Y, R, W, senders, wl, receivers, N = _random_sum(sum(shape), *shape, dtype, device)
    rowptr = nst.receiver_rowptr(receivers, N)
    out = nst.edge_sum(Y, R, W, senders, wl, rowptr, N)
    ref = nst.edge_sum_reference(Y, R, W, senders, wl, receivers, N)
    grad = torch.randn_like(ref)
    got, want = torch.autograd.grad(out, (Y, R, W), grad), torch.autograd.grad(ref, (Y, R, W), grad)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert out.shape == ref.shape and bool(torch.isfinite(out).all())
    assert float(out[3].detach().abs().max()) == 0.0
    assert float(got[2][5].abs().max()) == 0.0
    assert relative_error(out, ref) < tol
    for a, b in zip(got, want):
        assert relative_error(a, b) < tol


@pytest.mark.parametrize("device", [pytest.param(d, marks=_device_marks(d)) for d in DEVICES])
@pytest.mark.parametrize("shape", [(20, 6, 4, 9), (16, 5, 1, 3)])
def test_kernel_second_derivatives_equal_the_reference_sums(device, shape):
    """The backward's own derivatives (three forward and three backward launches): a function of
    (dY, dR, dW), differentiated with respect to Y, R, W and the incoming gradient, against the
    per-edge PyTorch sum's, float64; atom 5 sends nothing."""
    Y, R, W, senders, wl, receivers, N = _random_sum(3 * sum(shape), *shape, torch.float64, device)
    rowptr = nst.receiver_rowptr(receivers, N)
    g0 = torch.randn(N, shape[0], shape[1], shape[3], dtype=torch.float64, device=device)

    def second(fn):
        grad = g0.clone().requires_grad_(True)
        dY, dR, dW = torch.autograd.grad(fn(Y, R, W), (Y, R, W), grad, create_graph=True)
        loss = dY.sin().sum() + dR.square().sum() + (dW**3).sum()
        return torch.autograd.grad(loss, (Y, R, W, grad))

    got = second(lambda Y, R, W: nst.edge_sum(Y, R, W, senders, wl, rowptr, N))
    want = second(lambda Y, R, W: nst.edge_sum_reference(Y, R, W, senders, wl, receivers, N))
    for a, b in zip(got, want):
        assert relative_error(a, b) < 1e-12


@pytest.mark.slow
@needs_fused_kernels_on_cpu
def test_kernel_gradgradcheck():
    """torch.autograd.gradgradcheck of the fused sum (finite differences of the double backward);
    slow in the interpreter (about 90 s on 2 CPU threads)."""
    Y, R, W, senders, wl, receivers, N = _random_sum(11, 4, 2, 2, 2, torch.float64, "cpu", n_atoms=6, n_edges=9)
    rowptr = nst.receiver_rowptr(receivers, N)
    assert torch.autograd.gradgradcheck(lambda Y, R, W: nst.edge_sum(Y, R, W, senders, wl, rowptr, N), (Y, R, W))


@pytest.mark.parametrize("device", [pytest.param(d, marks=_device_marks(d)) for d in DEVICES])
@pytest.mark.parametrize("version", nst.KERNELS)
@pytest.mark.parametrize("shape", [(20, 12, 4, 9), (16, 5, 1, 3), (35, 8, 5, 16)])
def test_every_kernel_version_writes_every_output(device, version, shape):
    """Each kernel version (not only the default the custom op runs) against the per-edge float64
    sum, with every output poisoned with NaN first: an element a kernel never writes fails."""
    Y, R, W, senders, wl, receivers, N = _random_sum(7 * sum(shape), *shape, torch.float64, device, n_atoms=9,
                                                     n_edges=90)
    Y, R, W = Y.detach(), R.detach(), W.detach()
    rowptr = nst.receiver_rowptr(receivers, N)
    out = Y.new_full((N, shape[0], shape[1], shape[3]), float("nan"))
    nst.launch_forward(Y, R, W, senders, wl, rowptr, out, version)
    grad = torch.randn_like(out)
    grads = [torch.full_like(t, float("nan")) for t in (Y, R, W)]
    nst.launch_backward(grad, Y, R, W, senders, wl, rowptr, *grads, version=version)
    leaves = [t.clone().requires_grad_(True) for t in (Y, R, W)]
    ref = nst.edge_sum_reference(leaves[0], leaves[1], leaves[2], senders, wl, receivers, N)
    want = torch.autograd.grad(ref, leaves, grad)
    assert relative_error(out, ref) < 1e-12
    for got, w in zip(grads, want):
        assert relative_error(got, w) < 1e-12


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_sums_states_the_shapes_the_model_launches(kind, monkeypatch):
    """descriptor.fused_sums() (read by the kernel benchmark and the compile check) lists exactly
    the (Q, R, C, L) of the sums a forward pass launches, in order."""
    launched = []
    real = nst.launch_forward

    def record(Y, R, W, *args, **kwargs):
        launched.append((Y.shape[1], R.shape[1], W.shape[2], W.shape[1]))
        return real(Y, R, W, *args, **kwargs)

    monkeypatch.setattr(nst, "launch_forward", record)
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(4), [1, 8], n=5), pot.descriptor.cutoff,
                                  dtype=torch.float64)
    pot.descriptor(graph, neighbor_sum="triton")
    assert launched == [s[1:] for s in pot.descriptor.fused_sums()]
    assert [s[0] for s in pot.descriptor.fused_sums()] == ["layer0", "Bchi0", "Bchi1"]


@needs_fused_kernels_on_cpu
def test_compiled_fused_forward_takes_the_row_pointers_from_the_graph():
    """The CSR row pointers come with the graph (built eagerly), never from a searchsorted inside
    the compiled model: Inductor's CUDA lowering of searchsorted ignores a view's offset
    (pytorch/pytorch#182343) and searched the senders row of edge_index on an H100 (wrong forces)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build("cace", elements=[1, 8], readout=(8,), **SMALL).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(6), [1, 8], n=5), pot.descriptor.cutoff,
                                  dtype=torch.float64)
    targets = []

    def record(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    compiled = torch.compile(pot.descriptor, backend=record, fullgraph=True)
    out = compiled(graph, neighbor_sum="triton")
    assert any("edge_sum" in t for t in targets)
    assert not any("searchsorted" in t or "bucketize" in t for t in targets)
    assert relative_error(out, pot.descriptor(graph)) < 1e-12


def test_unknown_kernel_version_is_named():
    with pytest.raises(ValueError, match="unknown fused kernel 'tiled'; known: serial, atomwise-split"):
        nst._kernels("tiled")


def test_model_kernel_policy_follows_the_environment_and_refuses_bad_values(monkeypatch):
    """$CACE_BENCH_FUSED_KERNEL picks the kernels the custom op runs: one version, "auto", or a
    version per shape (what the kernel benchmark's --pick writes); the timing task keys its fused
    records by it, so two policies are never stored as one."""
    from bench.tasks.timing import TimingSpec, _key

    monkeypatch.delenv(nst.KERNEL_ENV, raising=False)
    assert nst.selected_kernel() == "auto"
    # auto: v7 for every sum of the water preset, both descriptors (split tiles of at most 2,560
    # elements: CACE's Bchi sum 20 = 16 + 4 rows x 8 x 16), v2 for the unmeasured larger tiles
    assert nst.kernel_for(20, 6, 3, 1) == nst.kernel_for(16, 6, 9, 4) == nst.kernel_for(20, 6, 9, 4) == "prefetch"
    assert nst.kernel_for(35, 6, 16, 5) == "serial"
    spec = TimingSpec(backends=("eager", "fused"))
    auto_key = _key(spec, "atoms", {}, 1, "float32")
    monkeypatch.setenv(nst.KERNEL_ENV, "serial,20x6x3x1=atomwise-split")
    assert nst.kernel_for(20, 6, 3, 1) == "atomwise-split" and nst.kernel_for(16, 6, 9, 4) == "serial"
    key = _key(spec, "atoms", {}, 1, "float32")
    assert key["setting"]["fused_kernel"] == "serial,20x6x3x1=atomwise-split" != auto_key["setting"]["fused_kernel"]
    assert "fused_kernel" not in _key(TimingSpec(backends=("eager",)), "atoms", {}, 1, "float32")["setting"]
    for bad, msg in [("tiled", "'tiled' is not a fused kernel version"), ("20x6=serial", "is not a shape QxRxCxL")]:
        monkeypatch.setenv(nst.KERNEL_ENV, bad)
        with pytest.raises(ValueError, match=msg):
            nst.selected_kernel()


def test_kernel_benchmark_picks_the_fastest_correct_version_per_shape():
    from bench.benchmarks.edge_sum import fastest_by_shape, policy_string

    def row(kernel, ms, Q=20, C=9, parity=1e-7, warps=None, eb=None, **extra):
        return dict(kernel=kernel, fwd_bwd_ms=ms, Q=Q, R=6, C=C, L=4, parity=parity, warps=warps, eb=eb, **extra)

    rows = [row("serial", 5.0), row("prefetch", 5.5), row("prefetch", 0.1, warps=8),
            row("atomwise-split", 1.0, parity=float("nan")),
            row("serial", 4.0, Q=16), row("prefetch", 2.0, Q=16), row("atomwise-split", 1.0, Q=16, error="out of resources")]
    best = fastest_by_shape(rows)        # 8 warps is not the model's launch; NaN and errors lose
    assert best == {(20, 6, 9, 4): "serial", (16, 6, 9, 4): "prefetch"}
    assert policy_string(best) == "auto,16x6x9x4=prefetch,20x6x9x4=serial"
    assert nst.parse_policy(policy_string(best)) == ("auto", {(16, 6, 9, 4): "prefetch", (20, 6, 9, 4): "serial"})
    with pytest.raises(ValueError, match="no kernel version ran correctly"):
        fastest_by_shape([row("serial", 1.0, parity=1.0)])


def test_rowptr_is_csr_of_sorted_receivers():
    receivers = torch.tensor([0, 0, 2, 2, 2, 4])
    assert nst.receiver_rowptr(receivers, 6).tolist() == [0, 2, 2, 5, 5, 6, 6]
    assert nst.receiver_rowptr(torch.zeros(0, dtype=torch.long), 2).tolist() == [0, 0, 0]


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("preset", [None, "ethanol"])
def test_descriptor_fused_equals_dense(kind, preset):
    """Every neighbour sum of the model (layer 0 and the Bchi message of two layers) through the
    kernel: the features equal the dense path's to float64 rounding."""
    torch.manual_seed(0)
    kw = dict(SMALL) if preset is None else dict(preset=preset, n_layers=1, messages=("M", "Ar", "Bchi"))
    pot = build(kind, elements=[1, 6, 8], **kw).double()
    atoms = random_periodic(np.random.default_rng(5), [1, 6, 8], n=9)
    graph = AtomsGraph.from_atoms(atoms, pot.descriptor.cutoff, dtype=torch.float64)
    dense = pot.descriptor(graph)
    fused = pot.descriptor(graph, neighbor_sum="triton")
    assert relative_error(fused, dense) < 1e-12


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_backend_energy_forces_stress_equal_eager(kind):
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    fast = with_backend(pot, "fused")
    atoms = random_periodic(np.random.default_rng(2), [1, 8], n=6)
    graph = AtomsGraph.from_atoms(atoms, pot.descriptor.cutoff, dtype=torch.float64)
    ref, out = pot(graph, stress=True), fast(graph, stress=True)
    for key in ("energy", "forces", "stress"):
        assert relative_error(out[key], ref[key]) < 1e-12, key
    assert all(a is b for a, b in zip(fast.parameters(), pot.parameters()))


@pytest.mark.parametrize("device", [pytest.param(d, marks=_device_marks(d)) for d in DEVICES])
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_backend_takes_a_force_loss_training_step_like_eager(kind, device):
    """A force-loss training step (a double backward through the kernels: the neighbour sums' by
    their own kernels, the symmetrisation's in PyTorch ops) gives eager's loss and weight gradients
    (float64, 1e-10 relative), for both descriptors, on a periodic cell; compiled backends refuse."""
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).to(device=device, dtype=torch.float64)
    atoms = random_periodic(np.random.default_rng(2), [1, 8], n=4)
    graph = AtomsGraph.from_atoms(atoms, pot.descriptor.cutoff, dtype=torch.float64).to(device=device)
    f_ref = torch.randn(graph.n_atoms, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    params = [p for p in pot.parameters() if p.requires_grad]

    def step(model):
        out = model(graph, training=True)
        loss = out["energy"].square().sum() + (out["forces"] - f_ref).square().sum()
        return loss, torch.autograd.grad(loss, params, allow_unused=True)

    (loss_ref, g_ref), (loss, g) = step(pot), step(with_backend(pot, "fused"))
    assert relative_error(loss, loss_ref) < 1e-12
    for a, b, p in zip(g, g_ref, params):
        assert (a is None) == (b is None)
        if b is not None and float(b.norm()) > 0:
            assert relative_error(a, b) < 1e-10, p.shape
    with pytest.raises(BackendUnavailable, match="double backward"):
        with_backend(pot, "compile-fused")(graph, training=True)


@needs_compile
@needs_fused_kernels_on_cpu
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compile_fused_backend_equals_eager(kind):
    """torch.compile around the kernels (custom operators), two graph sizes (a dynamic recompile)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    fast = with_backend(pot, "compile-fused")
    rng = np.random.default_rng(3)
    for n in (8, 11):
        graph = AtomsGraph.from_atoms(random_periodic(rng, [1, 8], n=n), pot.descriptor.cutoff, dtype=torch.float64)
        ref, out = pot(graph, stress=True), fast(graph, stress=True)
        for key in ("energy", "forces", "stress"):
            assert relative_error(out[key], ref[key]) < 1e-12, (n, key)


def test_fused_backend_needs_a_kernel_device(monkeypatch):
    monkeypatch.setattr(nst, "interpreting", lambda: False)
    with pytest.raises(BackendUnavailable, match="runs on CUDA"):
        check_backend("fused", "cpu")
    monkeypatch.setattr(nst, "triton", None)
    for backend in ("fused", "compile-fused") if compile_unavailable() is None else ("fused",):
        with pytest.raises(BackendUnavailable, match="needs Triton"):
            check_backend(backend, "cpu")


@pytest.mark.slow
class TestCACEFusedPotential(PotentialTests):
    """The shipped property mixin (forces and stress against finite differences, invariance,
    batching) through the fused kernels (slow in the interpreter: ~70 s a class; the default suite
    has the 1e-12 parity with the dense path, which passes the same mixin)."""

    elements = (6, 1, 8)

    def make(self, elements):
        return with_backend(build("cace", elements=elements, readout=(8, 4), **SMALL).double(), "fused")


@pytest.mark.slow
class TestSphericalFusedPotential(PotentialTests):
    elements = (6, 1, 8)

    def make(self, elements):
        return with_backend(build("spherical", elements=elements, readout=(8, 4), **SMALL).double(), "fused")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["cace", "spherical"])
@pytest.mark.parametrize("backend", ["fused", "compile-fused-cudagraphs"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_fused_backends_equal_eager(kind, backend, dtype):
    """On the GPU, water preset on a 192-atom box: relative error <= 1e-5 (float32), 1e-12 (float64)."""
    from bench.structures import water_box

    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], preset="water").to(device="cuda", dtype=dtype)
    fast = with_backend(pot, backend)
    graph = AtomsGraph.from_atoms(water_box(), pot.descriptor.cutoff, dtype=dtype, device="cuda")
    ref = pot(graph, stress=True)
    for _ in range(3):                                       # CUDA graphs replay from the second call on
        out = fast(graph, stress=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for key in ("energy", "forces", "stress"):
        assert relative_error(out[key], ref[key]) < tol, (key, relative_error(out[key], ref[key]))


@needs_fused_kernels_on_cpu
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_fused_path_saves_no_per_edge_copy_of_the_channel_weights(kind):
    """The kernels read the weights through each edge's sender: nothing of shape [E, L, C] (or the
    layer-0 embedding's [E, 1, e]) is kept for the backward of energy + forces."""
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **SMALL).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(8), [1, 8], n=6), pot.descriptor.cutoff,
                                  dtype=torch.float64)
    fast = with_backend(pot, "fused")
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        out = fast(graph)
    per_edge = {s for s in shapes if len(s) == 3 and s[0] == graph.n_edges}
    assert not per_edge, per_edge
    assert any(s and s[0] == graph.n_edges for s in shapes)        # the hook saw the per-edge tensors
    assert relative_error(out["forces"], pot(graph)["forces"]) < 1e-12


def test_every_kernel_indexes_atoms_in_int64():
    """An atom's (or column's) offset is its program id times the row size (Q R C: 4,480 elements
    for l_max 4, 8 radial functions and 16 channel pairs), past 2^31 from 480,000 atoms in int32,
    which would read and write the wrong rows without any error. No graph small enough to run here
    reaches that, so the kernels' source is checked: every program id is made int64 before use."""
    import inspect
    import re

    from bench.nn import contraction_kernels, edge_sum_kernels

    for module in (edge_sum_kernels, contraction_kernels):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            for line in inspect.getsource(fn).splitlines():
                if "tl.program_id(0)" in line:
                    assert re.search(r"tl\.program_id\(0\)\.to\(tl\.int64\)", line), (module.__name__, name, line)
