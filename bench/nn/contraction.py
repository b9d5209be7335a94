"""Symmetrization as data: invariants B = sparse sums of products of A, from index tables.

Both descriptors express their invariants in one form,

    B[i, b, k, c] = sum_{t : out[t] = b} coeff[t] * prod_{f < order} A[i, idx[t, f], k, c],

where the angular index of A runs over Cartesian monomials (CACE) or real spherical harmonics
(baseline), and (idx, coeff, out) come from multinomial weights or Clebsch-Gordan coefficients.
The tables are built once, at construction, and kept as buffers; ``forward`` is tensor ops only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from .float64_tables import Float64Tables


@dataclass
class InvariantTable:
    """Builder for the terms of one body order: ``add(b, (a1, ..., a_o), coeff)``.

    Products commute, so index tuples are sorted and equal tuples merged, and terms with a
    coefficient below ``tol`` dropped.
    """

    order: int
    terms: dict = field(default_factory=lambda: defaultdict(float))
    labels: list = field(default_factory=list)

    def new_invariant(self, label) -> int:
        self.labels.append(label)
        return len(self.labels) - 1

    def add(self, b: int, angular: tuple, coeff: float) -> None:
        assert len(angular) == self.order
        self.terms[(b, tuple(sorted(angular)))] += float(coeff)

    def tensors(self, tol: float = 1e-12):
        items = [(b, a, c) for (b, a), c in sorted(self.terms.items()) if abs(c) > tol]
        out = torch.tensor([b for b, _, _ in items], dtype=torch.long)
        idx = torch.tensor([a for _, a, _ in items], dtype=torch.long).reshape(-1, self.order)
        coeff = torch.tensor([c for _, _, c in items], dtype=torch.float64)
        return idx, coeff, out


class SparseProductContraction(Float64Tables):
    """A [N, n_ang, K, C] -> B [N, n_invariants, K, C] from one InvariantTable per body order.

    Internally angular-major: A^T [Q, M] with M = N K C, so every gather is a row gather; the
    coefficients and the accumulation into invariants are one small matrix S [n_inv, T]
    (S[out[t], t] = coeff[t]), applied by a matrix product.
    """

    def __init__(self, tables: list[InvariantTable]):
        super().__init__()
        self.orders = [t.order for t in tables]
        self.counts = [len(t.labels) for t in tables]
        self.labels = [(t.order, lab) for t in tables for lab in t.labels]
        # coefficients (irrational for Clebsch-Gordan) as float64-master tables (Float64Tables)
        terms, offset = [], 0                                        # (row of B, factors, coeff) of every term
        for t, count in zip(tables, self.counts):
            idx, coeff, out = t.tensors()
            S = torch.zeros(count, len(coeff), dtype=torch.float64)
            S[out, torch.arange(len(coeff))] = coeff
            self.register_buffer(f"idx{t.order}", idx)
            self.register_table(f"coeff{t.order}", S)
            terms += [(offset + int(b), tuple(int(q) for q in a), float(c)) for b, a, c in zip(out, idx, coeff)]
            offset += count
        # the same terms as the fused kernel's tables (contraction_triton.py), non-persistent
        # buffers (derived from the ones above), so that they follow the module's device
        from .contraction_triton import ContractionTables

        fused = ContractionTables(terms, self.n_invariants)
        for name, tensor in zip(ContractionTables.NAMES, fused.tensors()):
            if tensor.is_floating_point():
                self.register_table(f"fused_{name}", tensor, persistent=False)
            else:
                self.register_buffer(f"fused_{name}", tensor, persistent=False)

    @property
    def n_invariants(self) -> int:
        return sum(self.counts)

    def n_terms(self) -> dict[int, int]:
        return {o: int(getattr(self, f"idx{o}").shape[0]) for o in self.orders}

    def forward(self, A: torch.Tensor, fused: bool = False, plain: bool = False) -> torch.Tensor:
        """B [N, n_inv, K, C]; ``fused``: one Triton kernel each way (``contraction_triton``, the
        fused backends), else PyTorch ops: the same terms, the same numbers. ``plain``: the same
        products differentiated by autograd, not ``_SparseProduct``."""
        N, Q, K, C = A.shape
        if fused:                                                    # in A's own layout: no copy
            from .contraction_triton import ContractionTables, contract

            tables = tuple(getattr(self, f"fused_{n}") for n in ContractionTables.NAMES)
            return contract(A.reshape(N, Q, K * C), tables).view(N, self.n_invariants, K, C)
        At = A.transpose(0, 1).reshape(Q, N * K * C)                  # [Q, M] (one copy)
        tables = [t for o in self.orders for t in (getattr(self, f"idx{o}"), getattr(self, f"coeff{o}"))]
        if plain:
            gather = _rows_product if _compiling_for_cpu(At) else _rows
            Bt = torch.cat([S.to(At.dtype) @ term_products(At, idx, gather) for idx, S in zip(tables[0::2], tables[1::2])])
        else:
            Bt = _SparseProduct.apply(At, *tables)                   # [n_inv, M], every body order
        return Bt.view(self.n_invariants, N, K, C).transpose(0, 1)   # [N, n_inv, K, C]


def term_products(At: torch.Tensor, idx: torch.Tensor, gather=None) -> torch.Tensor:
    """P[t] = prod_f At[idx[t, f]]  -> [T, M] (order <= 4: a loop over factors, not terms);
    ``gather(At, rows)``: At[rows] (default ``_rows``)."""
    gather = gather or _rows
    prod = None
    for f in range(idx.shape[1]):
        row = gather(At, idx[:, f])
        prod = row if prod is None else prod * row
    return prod


def _compiling_for_cpu(t: torch.Tensor) -> bool:
    """Whether Inductor is tracing this for the CPU: there, row gathers and row additions take their
    one-hot product forms (``_rows_product``, ``_add_rows_product``)."""
    return torch.compiler.is_compiling() and t.device.type == "cpu"


def _one_hot(rows: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """H [T, n], H[t, q] = 1 where rows[t] = q: the matrix of the row gather At[rows] = H At."""
    return torch.nn.functional.one_hot(rows, n).to(dtype)


def _rows(At: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """At[rows]  [T, M]."""
    return At.index_select(0, rows)


def _rows_product(At: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``_rows`` as H At with H [T, Q] the one-hot matrix of ``rows``: the same values, and a
    gradient H^T dP, a product, where index_select's is an index_add (``_add_rows_product`` says
    what Inductor's CPU code makes of that). The plain form's gather compiled for the CPU."""
    return _one_hot(rows, At.shape[0], At.dtype) @ At


def add_leave_one_out_gradient(grad: torch.Tensor, At: torch.Tensor, idx: torch.Tensor, g: torch.Tensor) -> None:
    """grad[q] += sum_{t, f : idx[t, f] = q} g[t] prod_{h != f} At[idx[t, h]]  (grad [Q, M], in
    place; not differentiable: the backward of energy + forces, where no second derivative is
    taken). ``g`` [T, M] is consumed (overwritten).

    One gather of every factor row, r [o, T, M] (a gather per factor and per product would be
    o^2 - o); r[0] takes g in place (r[0] <- g r[0]: every leave-one-out product but the first
    holds g through it), g's buffer becomes the first product c_0 = g r[1] ... r[o-1] and then the
    work buffer of each c_f = prod_{h != f} r[h]; each c_f is added into the gradient in place.
    Alive beside the gradient: r and g. ``_LeaveOneOutGradient`` wraps it where a second
    derivative is taken. Each grad[idx[:, f]] += c is ``_add_rows`` (index_add_), or
    ``_add_rows_product`` where Inductor compiles it for the CPU.
    """
    T, o = idx.shape
    add_rows = _add_rows_product if _compiling_for_cpu(grad) else _add_rows
    if o == 1:
        add_rows(grad, idx[:, 0], g)
        return
    r = At.index_select(0, idx.t().reshape(-1)).view(o, T, At.shape[1])   # r[f] = At[idx[:, f]]
    r[0].mul_(g)
    c = g                                                            # c_0 = g prod_{h > 0} r[h]
    for h in range(1, o):
        c.mul_(r[h])
    add_rows(grad, idx[:, 0], c)
    for f in range(1, o):
        others = [h for h in range(o) if h != f]                     # r[0] among them: g is in
        if len(others) == 1:
            c = r[others[0]]
        else:
            torch.mul(r[others[0]], r[others[1]], out=c)
            for h in others[2:]:
                c.mul_(r[h])
        add_rows(grad, idx[:, f], c)


def _add_rows(grad: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """grad[rows[t]] += values[t] for every t (grad [Q, M], values [T, M]), repeated rows adding up."""
    grad.index_add_(0, rows, values)


def _add_rows_product(grad: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """``_add_rows`` as a matrix product, grad += H^T values with H [T, Q] the one-hot matrix of
    ``rows`` (H[t, q] = 1 where rows[t] = q): the same sums. The form compiled for the CPU:
    Inductor's CPU code makes a scatter whose rows repeat (T = 24-111 terms into Q = 16-20 rows)
    one atomic compare-and-swap loop per element, which made the symmetrisation's backward about
    3x eager's there; a product is one BLAS call. Eager keeps index_add_ (eager energy + forces was
    9-11% slower with the product), and so does CUDA, whose atomic adds are native."""
    grad.addmm_(_one_hot(rows, grad.shape[0], grad.dtype).t(), values)


class _SparseProduct(torch.autograd.Function):
    """Bt = [S_o @ term_products(At, idx_o)]_o stacked over the body orders o, ``apply(At, idx_1,
    S_1, idx_2, S_2, ...)``, saving only At: the products are recomputed in backward, so autograd
    keeps no [T, M] intermediates alive. One function for every order: one output written in
    place (no concatenation) and one gradient of At (no sum of one per order). Where a second
    derivative is asked for (force training: the backward runs with grad enabled), the backward is
    ``_LeaveOneOutGradient``, differentiable once more; else (energy + forces) it is
    ``add_leave_one_out_gradient``.

        dL/dAt[q] = sum_o sum_{t, f : idx_o[t, f] = q} (S_o^T dL/dBt_o)[t] prod_{g != f} At[idx_o[t, g]]
    """

    @staticmethod
    def forward(ctx, At, *tables):
        ctx.save_for_backward(At, *tables)
        pairs = list(zip(tables[0::2], tables[1::2]))                # (idx_o [T_o, o], S_o [n_o, T_o])
        Bt = At.new_empty(sum(S.shape[0] for _, S in pairs), At.shape[1])   # [n_inv, M]
        row = 0
        for idx, S in pairs:
            torch.mm(S.to(At.dtype), term_products(At, idx), out=Bt[row:row + S.shape[0]])
            row += S.shape[0]
        return Bt

    @staticmethod
    def backward(ctx, grad_Bt):
        At, *tables = ctx.saved_tensors
        fast = not torch.is_grad_enabled()                           # no create_graph: no double backward
        grad, row = (At.new_zeros(At.shape) if fast else None), 0
        for idx, S in zip(tables[0::2], tables[1::2]):
            g = S.to(At.dtype).t() @ grad_Bt[row:row + S.shape[0]]   # [T_o, M]
            row += S.shape[0]
            if fast:
                add_leave_one_out_gradient(grad, At, idx, g)
                continue
            term = _LeaveOneOutGradient.apply(At, g, idx)
            grad = term if grad is None else grad + term
        return (grad,) + (None,) * len(tables)


def _product(first: torch.Tensor, r: torch.Tensor, factors) -> torch.Tensor:
    """first * prod_{k in factors} r[k]."""
    out = first
    for k in factors:
        out = out * r[k]
    return out


class _LeaveOneOutGradient(torch.autograd.Function):
    """F(At, g) = sum_f index_add(idx[:, f], g prod_{h != f} r_h), r_h = At[idx[:, h]]  -> [Q, M]:
    the symmetrisation's backward where a second derivative is taken (force training), computed
    as ``add_leave_one_out_gradient`` and saving only At and g [T, M]. Its backward, for v = dL/dF
    and V_f = v[idx[:, f]]:

        dL/dg   = sum_f V_f prod_{k != f} r_k
        dL/dr_h = g sum_{f != h} V_f prod_{k != f, h} r_k,   dL/dAt = sum_h index_add(idx[:, h], dL/dr_h)

    written in out-of-place ops, so it is differentiable again (a third derivative, slowly).
    """

    @staticmethod
    def forward(ctx, At, g, idx):
        ctx.save_for_backward(At, g, idx)
        grad = At.new_zeros(At.shape)
        add_leave_one_out_gradient(grad, At, idx, g.clone())          # it overwrites its g
        return grad

    @staticmethod
    def backward(ctx, v):
        At, g, idx = ctx.saved_tensors
        T, o = idx.shape
        rows = idx.t().reshape(-1)
        r = At.index_select(0, rows).view(o, T, At.shape[1])          # r[f] = At[idx[:, f]]
        V = v.index_select(0, rows).view(o, T, At.shape[1])           # V[f] = v[idx[:, f]]
        dg = None
        for f in range(o):
            term = _product(V[f], r, [k for k in range(o) if k != f])
            dg = term if dg is None else dg + term
        dAt = torch.zeros_like(At)
        for h in range(o if o > 1 else 0):                               # order 1: no factor left, no dAt
            acc = None
            for f in range(o):
                if f != h:
                    term = _product(V[f], r, [k for k in range(o) if k not in (f, h)])
                    acc = term if acc is None else acc + term
            dAt = dAt.index_add(0, idx[:, h], g * acc)
        return dAt, dg, None
