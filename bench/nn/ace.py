"""The atomic cluster expansion skeleton shared by CACE and the spherical baseline.

A subclass supplies only ``make_angular(l_max, nu_max)``, returning an angular basis with
``forward(u) -> [E, n_ang]``, a buffer ``l_of`` [n_ang] (the l of each component), ``n_ang`` and
``invariant_tables(nu_max) -> list[InvariantTable]``. Everything else -- radial basis, envelope,
element channels, the neighbour sum, radial mixing per l, messages, feature layout -- is this
code, identical for both.

Shapes: N atoms, E edges, R = n_rbf, K = n_radial, Q = n_ang, C = n_embed^2 channels c = (a, b)
with a the receiver's and b the sender's embedding index.

Layer 0 (spec, "Atom-centred basis"):
    A[i, q, n, (a, b)] = theta_i[a] * sum_j R_n(r_ij) f_c(r_ij) L_q(u_ij) theta_j[b]
    A'[i, q, k, c]    = sum_n W^{(l(q))}[n, k, c] A[i, q, n, c]
    B                  = symmetrize(A')                       (invariant tables)
Message passing, layer t -> t+1 (spec, "Message passing"):
    M    = s[l, k, c] A^t
    Ar   = sum_j A^t_j a[l, k, c] exp(-r_ij / r0[l, k, c]) f_c(r_ij)
    Bchi = mix_t( theta_i[a] sum_j R_n f_c L_q theta_j[b] h(B^t_j)[l(q), a, b] )
    A^{t+1} = (Ar + Bchi) / sqrt(avg_num_neighbors) + M
Features: the flattened B of every layer, concatenated  -> [N, (n_layers + 1) * n_inv * K * C].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..errors import InputError
from .contraction import SparseProductContraction
from .embedding import ElementEmbedding
from .mixing import RadialMix
from .neighbor_sum import dense_by_receiver, outer
from .radial import BesselRBF, PolynomialEnvelope

MESSAGES = ("M", "Ar", "Bchi")


class _EdgeData:
    """Per-forward edge quantities, computed once and shared by every layer."""

    __slots__ = ("r", "fc", "radial", "angular", "theta", "senders", "receivers", "flat_slot",
                 "n_atoms", "max_neighbors", "angular_dense", "_edge_basis", "rowptr", "plain")

    def fused_sum(self, W: torch.Tensor, wl: torch.Tensor) -> torch.Tensor:
        """sum_{j -> i} L_q(u_ij) R_n(r_ij) f_c(r_ij) W[j, wl[q], c]  -> [N, Q, R, C], one Triton kernel
        (``neighbor_sum_triton``); W [N, n_rows, C], a row per sender atom (read through the edges'
        senders in the kernel, not copied per edge)."""
        from .neighbor_sum_triton import edge_sum

        return edge_sum(self.angular, self.radial, W, self.senders, wl, self.rowptr, self.n_atoms)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Per-edge rows [E, P] -> [N, max_neighbors, P] (zero padded)."""
        return dense_by_receiver(x, self.flat_slot, self.n_atoms, self.max_neighbors)

    def edge_basis(self) -> torch.Tensor:
        """L_q(u) R_n(r) f_c(r) in the dense layout [N, nb, Q R] ((q, n)-major), built on first use
        and shared by the Bchi message of every layer."""
        if self._edge_basis is None:
            N, nb, Q = self.angular_dense.shape
            R = self.radial.shape[1]
            # formed in the dense layout from dense factors: no [E, Q R] per-edge tensor
            radial_dense = self.dense(self.radial)                                   # [N, nb, R]
            self._edge_basis = outer(self.angular_dense, radial_dense, plain=self.plain).view(N, nb, Q * R)
        return self._edge_basis


class MessageLayer(nn.Module):
    def __init__(self, l_of: torch.Tensor, n_rbf: int, n_radial: int, n_embed: int, n_b_in: int,
                 messages: Sequence[str]):
        super().__init__()
        self.messages = tuple(messages)
        n_l = int(l_of.max()) + 1
        C = n_embed * n_embed
        self.n_l, self.n_embed = n_l, n_embed
        self.register_buffer("l_of", l_of.clone(), persistent=False)
        self.l_counts = torch.bincount(l_of, minlength=n_l).tolist()   # components per l (a constant)
        if "M" in self.messages:
            self.memory_scale = nn.Parameter(torch.ones(n_l, n_radial, C))
        if "Ar" in self.messages:
            self.ar_amplitude = nn.Parameter(torch.ones(n_l, n_radial, C))
            self.ar_log_r0 = nn.Parameter(torch.zeros(n_l, n_radial, C))  # r0 = exp(.), starts at 1 A
        if "Bchi" in self.messages:
            self.h = nn.Linear(n_b_in, n_l * C)
            self.mix = RadialMix(l_of, n_rbf, n_radial, C)

    def rows_per_l(self, n_rbf: int) -> list[int]:
        """Rows of each l in the (q, n)-major basis table (components are grouped by l)."""
        return [c * n_rbf for c in self.l_counts]

    def forward(self, A: torch.Tensor, B_flat: torch.Tensor, ed: _EdgeData, inv_sqrt_nn: float) -> torch.Tensor:
        N, Q, K, C = A.shape
        new = None                                   # the sum of the messages: no zeros to add to
        if "Ar" in self.messages:
            # [E, n_l, K, C] edge weights, expanded over the angular components of each l
            w = self.ar_amplitude * torch.exp(-ed.r[:, None, None, None] / self.ar_log_r0.exp()) * ed.fc[:, None, None, None]
            msg = A.index_select(0, ed.senders) * w[:, self.l_of]                     # [E, Q, K, C]
            new = A.new_zeros(N, Q, K, C).index_add(0, ed.receivers, msg)
        if "Bchi" in self.messages:
            e, L, R = self.n_embed, self.n_l, ed.radial.shape[1]
            H = self.h(B_flat).view(N, L, e, e)                                      # [N, l, a, b]
            g = (H * ed.theta.view(N, 1, 1, e)).reshape(N, L * C)                    # theta_j[b] h_j[l, a, b]
            if ed.rowptr is not None:               # fused: S[i, q, n, c] = sum_j L_q R_n g_j[l(q), c]
                S = ed.fused_sum(g.view(N, L, C), self.l_of)                         # [N, Q, R, C]
            else:
                G = ed.dense(g.index_select(0, ed.senders))                                        # [N, nb, L C]
                # one batched product per l block: rows (q, n) of that l against the sender weights
                # of that l, computed transposed so that every gradient comes back in the natural
                # [N, nb, .] layout: out_l[i, c, (q, n)] = sum_slot G_l[i, slot, c] basis_l[i, slot, (q, n)]
                blocks = ed.edge_basis().split(self.rows_per_l(R), dim=2)
                S = torch.cat([torch.bmm(G_l.transpose(1, 2), b) for b, G_l in zip(blocks, G.split(C, dim=2))],
                              dim=2)                                                  # [N, C, Q R]
                S = S.view(N, C, Q, R).permute(0, 2, 3, 1)                            # [N, Q, R, C]
            S = (S.reshape(N, Q, R, e, e) * ed.theta.view(N, 1, 1, e, 1)).reshape(N, Q, R, C)
            mixed = self.mix(S)
            new = mixed if new is None else new + mixed
        new = A.new_zeros(N, Q, K, C) if new is None else new * inv_sqrt_nn
        if "M" in self.messages:
            new = new + self.memory_scale[self.l_of] * A
        return new


class AtomicClusterExpansion(nn.Module):
    """Descriptor ``forward(graph) -> [n_atoms, n_features]``; see the module docstring."""

    descriptor_name = "ace"

    def __init__(self, elements: Sequence[int], *, cutoff: float, n_rbf: int = 6, n_embed: int = 4,
                 n_radial: int = 12, l_max: int = 3, nu_max: int = 3, n_layers: int = 1,
                 messages: Sequence[str] = ("M", "Ar", "Bchi"), fixed_basis: bool = False,
                 envelope_p: int = 6, trainable_rbf: bool = True, avg_num_neighbors: float = 1.0):
        super().__init__()
        unknown = set(messages) - set(MESSAGES)
        if unknown:
            raise InputError(f"unknown messages {sorted(unknown)}; known: {MESSAGES}")
        if not 1 <= nu_max <= 4:
            raise InputError(f"nu_max must be 1..4, got {nu_max}")
        if fixed_basis:  # no learnable parameter: identity mixing, one-hot channels, no messages
            n_radial, n_layers, n_embed, trainable_rbf = n_rbf, 0, len(set(elements)), False
        self._config = dict(elements=sorted(int(z) for z in elements), cutoff=float(cutoff), n_rbf=n_rbf,
                            n_embed=n_embed, n_radial=n_radial, l_max=l_max, nu_max=nu_max, n_layers=n_layers,
                            messages=list(messages), fixed_basis=fixed_basis, envelope_p=envelope_p,
                            trainable_rbf=trainable_rbf, avg_num_neighbors=float(avg_num_neighbors))
        self.cutoff = float(cutoff)
        self.fixed_basis = fixed_basis
        self.radial = BesselRBF(n_rbf, cutoff, trainable=trainable_rbf)
        self.envelope = PolynomialEnvelope(cutoff, envelope_p)
        self.embedding = ElementEmbedding(elements, n_embed, fixed=fixed_basis)
        self.angular = self.make_angular(l_max, nu_max)
        if not bool((self.angular.l_of[1:] >= self.angular.l_of[:-1]).all()):
            raise ValueError("angular components must be grouped by increasing l")
        self.symmetrize = SparseProductContraction(self.angular.invariant_tables(nu_max))
        C = self.embedding.n_embed**2
        self.n_channels = C
        self.mix0 = None if fixed_basis else RadialMix(self.angular.l_of, n_rbf, n_radial, C)
        n_b = self.symmetrize.n_invariants * n_radial * C
        self.layers = nn.ModuleList(
            MessageLayer(self.angular.l_of, n_rbf, n_radial, self.embedding.n_embed, n_b, messages)
            for _ in range(n_layers)
        )
        self.inv_sqrt_nn = 1.0 / math.sqrt(avg_num_neighbors)
        self.n_features = (n_layers + 1) * n_b

    # --- what a subclass supplies --------------------------------------------------------------
    def make_angular(self, l_max: int, nu_max: int) -> nn.Module:
        raise NotImplementedError

    # --- configuration -------------------------------------------------------------------------
    def config(self) -> dict:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> "AtomicClusterExpansion":
        return cls(**config)

    def fused_sums(self) -> list[tuple[str, int, int, int, int]]:
        """(name, Q, R, C, L) of each neighbour sum a forward pass makes (``fused_sum``: Y [E, Q],
        R [E, R], W [N, L, C]): layer 0 (W the sender's embedding) and each layer's Bchi message
        (W the sender's l-dependent weights). For the kernel benchmark and compile checks."""
        Q, R, e = int(self.angular.l_of.shape[0]), self.radial.n_rbf, self.embedding.n_embed
        sums = [("layer0", Q, R, e, 1)]
        sums += [(f"Bchi{k}", Q, R, e * e, layer.n_l) for k, layer in enumerate(self.layers) if "Bchi" in layer.messages]
        return sums

    def invariant_labels(self) -> list:
        """(body order, label) of each invariant, in feature order within a (k, c) block."""
        return self.symmetrize.labels

    # --- forward -------------------------------------------------------------------------------
    def edge_data(self, graph, neighbor_sum: str = "dense", plain: bool = False) -> _EdgeData:
        vec = graph.edge_vectors()                                   # [E, 3]
        r = torch.linalg.norm(vec, dim=1)                            # [E]
        ed = _EdgeData()
        ed.plain = plain
        ed.r = r
        ed.fc = self.envelope(r)                                     # [E]
        ed.radial = self.radial(r) * ed.fc[:, None]                  # [E, R]
        ed.angular = self.angular(vec / r[:, None], plain=plain)     # [E, Q]
        ed.theta = self.embedding(graph.numbers, graph.elements)     # [N, e]
        ed.senders, ed.receivers = graph.edge_index
        ed.n_atoms, ed.max_neighbors = graph.n_atoms, graph.max_neighbors
        ed._edge_basis = None
        if neighbor_sum == "triton":                                 # edges sorted by receiver: CSR
            ed.rowptr = graph.receiver_ptr                           # [N + 1], built with the graph
            ed.flat_slot = ed.angular_dense = None
            return ed
        if neighbor_sum != "dense":
            raise InputError(f"neighbor_sum must be 'dense' or 'triton', got {neighbor_sum!r}")
        ed.rowptr = None
        ed.flat_slot = ed.receivers * ed.max_neighbors + graph.neighbor_slot
        ed.angular_dense = ed.dense(ed.angular)                       # [N, nb, Q]
        return ed

    def atomic_basis(self, ed: _EdgeData) -> torch.Tensor:
        """Layer-0 A' [N, Q, K, C] (A before mixing when ``fixed_basis``)."""
        N, e, R = ed.n_atoms, ed.theta.shape[1], ed.radial.shape[1]
        if ed.rowptr is not None:                   # fused: S[i, q, n, b] = sum_j L_q R_n theta_j[b]
            Q = ed.angular.shape[1]
            S = ed.fused_sum(ed.theta[:, None, :], self.angular.l_of.new_zeros(Q))   # [N, Q, R, e_b]
            A = (S[:, :, :, None, :] * ed.theta.view(N, 1, 1, e, 1)).reshape(N, Q, R, e * e)
            return A if self.mix0 is None else self.mix0(A)
        x = (ed.radial[:, :, None] * ed.theta.index_select(0, ed.senders)[:, None, :]).reshape(-1, R * e)  # [E, R e_b]
        S = torch.bmm(ed.dense(x).transpose(1, 2), ed.angular_dense)                     # [N, R e_b, Q]
        Q = S.shape[2]
        A = (S.view(N, 1, R, e, Q).permute(0, 4, 2, 1, 3) * ed.theta.view(N, 1, 1, e, 1)).reshape(N, Q, R, e * e)
        return A if self.mix0 is None else self.mix0(A)

    def forward(self, graph, neighbor_sum: str = "dense", plain: bool = False) -> torch.Tensor:
        """Features [N, n_features]. ``neighbor_sum``: "dense" (batched matrix products over the
        [atoms, max_neighbours] layout, ``neighbor_sum.py``) or "triton" (one fused kernel per
        neighbour sum, ``neighbor_sum_triton.py``, and per symmetrisation, ``contraction_triton.py``):
        the same function, the same weights.

        ``plain`` (dense only): the angular basis, the edge basis's outer product and the
        symmetrisation as plain operations differentiated by autograd, instead of the autograd
        Functions that save memory in eager mode (``_Monomials``, ``_Outer``, ``_SparseProduct``):
        the same numbers. It is the form a compiled force-loss training step traces
        (``bench.backends``): torch.compile compiles an autograd Function's backward once
        differentiable, so a second derivative through one is lost, while plain operations are
        differentiated by AOTAutograd itself."""
        if plain and neighbor_sum != "dense":
            raise InputError(f"plain=True is the dense form; neighbor_sum {neighbor_sum!r} has its own kernels")
        ed = self.edge_data(graph, neighbor_sum, plain)
        A = self.atomic_basis(ed)
        fused = ed.rowptr is not None                                # the fused backends: every sum a kernel
        B = self.symmetrize(A, fused=fused, plain=plain).flatten(1)  # [N, n_inv K C]
        features = [B]
        for layer in self.layers:
            A = layer(A, B, ed, self.inv_sqrt_nn)
            B = self.symmetrize(A, fused=fused, plain=plain).flatten(1)
            features.append(B)
        return torch.cat(features, dim=1)                            # [N, n_features]
