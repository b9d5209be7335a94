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

from .contraction import SparseProductContraction
from .embedding import ElementEmbedding
from .mixing import RadialMix
from .neighbor_sum import neighbor_outer_sum
from .radial import BesselRBF, PolynomialEnvelope

MESSAGES = ("M", "Ar", "Bchi")


class _EdgeData:
    """Per-forward edge quantities, computed once and shared by every layer."""

    __slots__ = ("r", "fc", "radial", "angular", "theta", "theta_send", "senders", "receivers", "slot",
                 "n_atoms", "max_neighbors")


class MessageLayer(nn.Module):
    def __init__(self, l_of: torch.Tensor, n_rbf: int, n_radial: int, n_embed: int, n_b_in: int,
                 messages: Sequence[str]):
        super().__init__()
        self.messages = tuple(messages)
        n_l = int(l_of.max()) + 1
        C = n_embed * n_embed
        self.n_l, self.n_embed = n_l, n_embed
        self.register_buffer("l_of", l_of.clone(), persistent=False)
        if "M" in self.messages:
            self.memory_scale = nn.Parameter(torch.ones(n_l, n_radial, C))
        if "Ar" in self.messages:
            self.ar_amplitude = nn.Parameter(torch.ones(n_l, n_radial, C))
            self.ar_log_r0 = nn.Parameter(torch.zeros(n_l, n_radial, C))  # r0 = exp(.), starts at 1 A
        if "Bchi" in self.messages:
            self.h = nn.Linear(n_b_in, n_l * C)
            self.mix = RadialMix(l_of, n_rbf, n_radial, C)

    def forward(self, A: torch.Tensor, B_flat: torch.Tensor, ed: _EdgeData, inv_sqrt_nn: float) -> torch.Tensor:
        N, Q, K, C = A.shape
        new = A.new_zeros(N, Q, K, C)
        if "Ar" in self.messages:
            # [E, n_l, K, C] edge weights, expanded over the angular components of each l
            w = self.ar_amplitude * torch.exp(-ed.r[:, None, None, None] / self.ar_log_r0.exp()) * ed.fc[:, None, None, None]
            msg = A[ed.senders] * w[:, self.l_of]                                   # [E, Q, K, C]
            new = new.index_add(0, ed.receivers, msg)
        if "Bchi" in self.messages:
            e, L, R = self.n_embed, self.n_l, ed.radial.shape[1]
            H = self.h(B_flat).view(N, L, e, e)                                      # [N, l, a, b]
            g = H * ed.theta.view(N, 1, 1, e)                                        # theta_j[b] h_j[l, a, b]
            x = (ed.radial[:, :, None] * g[ed.senders].reshape(-1, 1, L * C)).reshape(-1, R * L * C)
            S = neighbor_outer_sum(ed.angular, x, ed.receivers, ed.slot, ed.n_atoms, ed.max_neighbors)
            S = S.view(N, Q, R, L, C)
            S = torch.gather(S, 3, self.l_of.view(1, Q, 1, 1, 1).expand(N, Q, R, 1, C)).squeeze(3)
            S = (S.view(N, Q, R, e, e) * ed.theta.view(N, 1, 1, e, 1)).reshape(N, Q, R, C)
            new = new + self.mix(S)
        new = new * inv_sqrt_nn
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
            raise ValueError(f"unknown messages {sorted(unknown)}; known: {MESSAGES}")
        if not 1 <= nu_max <= 4:
            raise ValueError(f"nu_max must be 1..4, got {nu_max}")
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

    def invariant_labels(self) -> list:
        """(body order, label) of each invariant, in feature order within a (k, c) block."""
        return self.symmetrize.labels

    # --- forward -------------------------------------------------------------------------------
    def edge_data(self, graph) -> _EdgeData:
        vec = graph.edge_vectors()                                   # [E, 3]
        r = torch.linalg.norm(vec, dim=1)                            # [E]
        ed = _EdgeData()
        ed.r = r
        ed.fc = self.envelope(r)                                     # [E]
        ed.radial = self.radial(r) * ed.fc[:, None]                  # [E, R]
        ed.angular = self.angular(vec / r[:, None])                  # [E, Q]
        ed.theta = self.embedding(graph.numbers)                     # [N, e]
        ed.senders, ed.receivers = graph.edge_index
        ed.theta_send = ed.theta[ed.senders]                         # [E, e]
        ed.slot = graph.neighbor_slot
        ed.n_atoms, ed.max_neighbors = graph.n_atoms, graph.max_neighbors
        return ed

    def atomic_basis(self, ed: _EdgeData) -> torch.Tensor:
        """Layer-0 A' [N, Q, K, C] (A before mixing when ``fixed_basis``)."""
        N, e, R = ed.n_atoms, ed.theta.shape[1], ed.radial.shape[1]
        x = (ed.radial[:, :, None] * ed.theta_send[:, None, :]).reshape(-1, R * e)      # [E, R e]
        S = neighbor_outer_sum(ed.angular, x, ed.receivers, ed.slot, N, ed.max_neighbors)  # [N, Q, R e]
        Q = S.shape[1]
        A = (S.view(N, Q, R, 1, e) * ed.theta.view(N, 1, 1, e, 1)).reshape(N, Q, R, e * e)
        return A if self.mix0 is None else self.mix0(A)

    def forward(self, graph) -> torch.Tensor:
        ed = self.edge_data(graph)
        A = self.atomic_basis(ed)
        B = self.symmetrize(A).flatten(1)                            # [N, n_inv K C]
        features = [B]
        for layer in self.layers:
            A = layer(A, B, ed, self.inv_sqrt_nn)
            B = self.symmetrize(A).flatten(1)
            features.append(B)
        return torch.cat(features, dim=1)                            # [N, n_features]
