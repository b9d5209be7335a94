"""The fused symmetrisation kernel (bench/nn/contraction_triton.py) against the PyTorch form of the
same tables (contraction.SparseProductContraction): values and gradients, both descriptors, every
body order up to 4, float64 and float32; in Triton's interpreter without a GPU, compiled on CUDA
under the ``gpu`` marker."""

import pytest
import torch

from bench.parity import relative_error
from bench.potential import build
from bench.testing.requirements import needs_fused_kernels, needs_fused_kernels_on_cpu

pytestmark = needs_fused_kernels
DEVICES = [pytest.param("cpu", marks=needs_fused_kernels_on_cpu)] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if torch.cuda.is_available() else [])

CASES = [(kind, l_max, nu_max) for kind in ("cace", "spherical") for l_max, nu_max in ((3, 3), (2, 4), (4, 2), (1, 1))]


def _symmetrize(kind, l_max, nu_max):
    pot = build(kind, elements=[1, 8], cutoff=4.0, n_rbf=4, n_embed=2, n_radial=3, l_max=l_max, nu_max=nu_max,
                n_layers=0, messages=())
    return pot.descriptor.symmetrize, pot.descriptor.angular.n_ang


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,l_max,nu_max", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kernel_equals_the_pytorch_contraction_and_its_gradient(kind, l_max, nu_max, dtype, device):
    """M = 7 x 3 x 4 = 84 columns (not a multiple of the block) and M = 300 x 12 = 3600 (several
    programs); float64 to rounding (1e-12), float32 within 1e-5."""
    sym, Q = _symmetrize(kind, l_max, nu_max)
    sym = sym.to(device=device, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    gen = torch.Generator().manual_seed(l_max * 10 + nu_max)
    for N, K, C in ((7, 3, 4), (300, 3, 4)):
        A = torch.randn(N, Q, K, C, dtype=dtype, generator=gen).to(device).requires_grad_(True)
        ref, out = sym(A), sym(A, fused=True)
        assert out.shape == ref.shape == (N, sym.n_invariants, K, C)
        assert relative_error(out, ref) < tol
        g = torch.randn(ref.shape, dtype=dtype, generator=gen).to(device)
        (want,) = torch.autograd.grad(ref, A, g)
        (got,) = torch.autograd.grad(out, A, g)
        assert relative_error(got, want) < tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,l_max,nu_max", CASES)
def test_kernel_second_derivatives_equal_the_pytorch_contractions(kind, l_max, nu_max, device):
    """The kernel's backward differentiated again (in PyTorch ops on the backward table), with
    respect to A and the incoming gradient, against the PyTorch form's second derivatives, float64."""
    sym, Q = _symmetrize(kind, l_max, nu_max)
    sym = sym.to(device=device, dtype=torch.float64)
    gen = torch.Generator().manual_seed(l_max * 7 + nu_max)
    A = torch.randn(5, Q, 2, 3, dtype=torch.float64, generator=gen).to(device).requires_grad_(True)
    g0 = torch.randn(5, sym.n_invariants, 2, 3, dtype=torch.float64, generator=gen).to(device)

    def second(fused):
        g = g0.clone().requires_grad_(True)
        B = sym(A, fused=fused)
        (gA,) = torch.autograd.grad(B, A, g, create_graph=True)
        return torch.autograd.grad(gA.sin().sum() + B.square().sum(), (A, g))

    for a, b in zip(second(True), second(False)):
        assert relative_error(a, b) < 1e-12


@needs_fused_kernels_on_cpu
def test_components_no_invariant_reads_get_a_zero_gradient():
    """nu_max 1 keeps only the scalar (q = 0): every other row's gradient is exactly zero, written
    by the launch (the kernel's table stops at row 0)."""
    sym, Q = _symmetrize("cace", 2, 1)
    assert int(sym.fused_bptr.shape[0]) - 1 < Q
    A = torch.randn(5, Q, 2, 4, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sym(A, fused=True).sum(), A)
    assert torch.equal(g[:, 1:], torch.zeros_like(g[:, 1:])) and torch.equal(g[:, 0], torch.ones_like(g[:, 0]))


def test_tables_hold_every_term_once_and_keep_float64_coefficients():
    """The forward table rebuilt as a dense coefficient matrix per (invariant, sorted factors) equals
    the PyTorch form's; each term appears in the backward table once per factor; a float32 round trip
    of the module gives the float64 coefficients back exactly."""
    sym, _ = _symmetrize("spherical", 3, 3)
    want, offset = {}, 0
    for order, count in zip(sym.orders, sym.counts):
        idx, S = getattr(sym, f"idx{order}"), getattr(sym, f"coeff{order}")
        for t in range(idx.shape[0]):
            b = int(S[:, t].nonzero()[0, 0])
            want[(offset + b, tuple(idx[t].tolist()))] = float(S[b, t])
        offset += count
    got = {}
    ptr = sym.fused_fptr.tolist()
    for b in range(sym.n_invariants):
        for t in range(ptr[b], ptr[b + 1]):
            got[(b, tuple(sym.fused_fidx[t, :int(sym.fused_ford[t])].tolist()))] = float(sym.fused_fcoef[t])
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-15 for k in want)
    assert int(sym.fused_bout.numel()) == int(sym.fused_ford.sum())                    # one pair per factor
    exact = sym.double().fused_bcoef.clone()                                          # from the float64 master
    sym.float().double()
    assert sym.fused_bcoef.dtype == torch.float64 and torch.equal(sym.fused_bcoef, exact.double())
    assert float((exact.double() - exact.float().double()).abs().max()) > 0            # float32 would round them


@needs_fused_kernels_on_cpu
def test_empty_input():
    sym, Q = _symmetrize("cace", 3, 3)
    A = torch.zeros(0, Q, 3, 4, dtype=torch.float64, requires_grad=True)
    out = sym(A, fused=True)
    assert out.shape == (0, sym.n_invariants, 3, 4)
    (g,) = torch.autograd.grad(out.sum(), A, allow_unused=True)
    assert g is None or g.shape == A.shape
