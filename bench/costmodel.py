"""Analytic FLOP and byte counts of one descriptor + readout forward pass, stage by stage.

Both descriptors run the same skeleton (``bench.nn.ace``), so one model covers both; they differ
in Q (angular components: 20 monomials against 16 harmonics at l_max = 3), in the cost of the
angular basis per component, and in the contraction tables (terms T_o and invariants n_o per
body order o). Symbols: N atoms, E edges, nb = max neighbours (the dense neighbour layout is
[N, nb, .]), R radial functions, e element channels and C = e^2 channel pairs, K radial
channels, L = l_max + 1, M = N K C, F features, s bytes per element.

Per stage (forward):
    edge basis      E (3 + 10 + 8 R + a Q + t)      flops (a: per-component cost of the angular basis; t:
                                                    its matrix product, 2 n Q for the spherical table)
    atomic basis    2 N nb (R e) Q                  matmul flops   (the neighbour sum, one bmm)
    radial mix      2 N Q C R K                     matmul flops   (per l and channel)
    symmetrize      sum_o (o - 1) T_o M  +  2 n_o T_o M      (products; coefficient matmul S @ P)
    Bchi message    2 N F_B L C + 2 N nb C Q R + 2 N Q C R K  matmul flops (h, per-l bmm, mix)
    Ar message      3 E Q K C                       flops
    readout         2 N (F w1 + w1 w2 + ... + w_last) + 2 N F   matmul flops
With the fused kernels (``neighbor_sum="fused"``, the Triton kernels) the atomic basis and
the Bchi neighbour sum become 3 E Q R C FMA-type flops each, reading Y, R, W per edge once, with no
dense-layout tables, and the symmetrisation sum_o (o + 1) T_o M flops reading A once (no products
in memory, no matmul). Bytes count each stage's tensors read once and written once (the minimum traffic of an unfused
implementation); gathers count the gathered rows. The matmul part is exact (a test checks it
against ``torch.utils.flop_counter``); the elementwise part is a leading-order estimate.

Derivative passes: reverse mode costs at most about twice the forward for the gradient, and
counted matmul FLOPs give energy+forces 2.2-2.6x the forward and the training step (a force
loss, differentiated once more with respect to the weights) 6.0-7.6x on the presets.
``MODE_FACTORS`` (2.5 and 7) scale the forward counts to those modes; a test keeps the counted
ratios within 25% of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODE_FACTORS = {"descriptor": 1.0, "energy_forces": 2.5, "training_step": 7.0}
ANGULAR_FLOPS_PER_COMPONENT = {"cace": 1.0}  # CACE: one multiply per monomial (parent x component)


def angular_cost(kind: str, L: int, Q: int) -> tuple[float, float]:
    """(a, t): the angular basis's elementwise flops per edge over Q, and its matrix-product flops
    per edge. CACE: one multiply per monomial, no product. Spherical (polynomial form,
    ``baselines.angular``): the n = L (L + 1) (L + 2) / 6 monomials, then the dense [n, Q] table,
    a product of 2 n Q flops an edge."""
    if kind == "spherical":
        n = L * (L + 1) * (L + 2) // 6
        return n / Q, 2.0 * n * Q
    return ANGULAR_FLOPS_PER_COMPONENT.get(kind, 3.0), 0.0


@dataclass(frozen=True)
class Stage:
    name: str
    flops: float          # all floating-point operations
    matmul_flops: float   # of which in matrix products (mm/bmm/einsum)
    bytes: float


def _sizes(descriptor, graph) -> dict:
    sym = descriptor.symmetrize
    terms = sym.n_terms()
    cfg = descriptor.config()
    return dict(N=graph.n_atoms, E=graph.n_edges, nb=graph.max_neighbors, R=cfg["n_rbf"],
                e=descriptor.embedding.n_embed, C=descriptor.n_channels, K=cfg["n_radial"], Q=descriptor.angular.n_ang, L=int(descriptor.angular.l_of.max()) + 1,
                orders=list(sym.orders), T={o: terms[o] for o in sym.orders},
                n_inv={o: c for o, c in zip(sym.orders, sym.counts)}, n_layers=len(descriptor.layers),
                messages=tuple(cfg["messages"]) if len(descriptor.layers) else (), mixed=descriptor.mix0 is not None)


def _symmetrize(z, s, fused: bool = False) -> Stage:
    """PyTorch form: gathered factor rows, products [T_o, M] and the coefficient matmul S @ P.
    Fused (``contraction_triton``): o multiplies and an add per term and column, At read once and
    B written once, in A's own layout (the PyTorch form's transposed copy of A counted in its own)."""
    M = z["N"] * z["K"] * z["C"]
    n_inv = sum(z["n_inv"].values())
    if fused:
        flops = sum((o + 1) * z["T"][o] * M for o in z["orders"])
        return Stage("symmetrize (fused)", flops, 0.0, s * (z["Q"] * M + n_inv * M))
    flops = sum((o - 1) * z["T"][o] * M + 2 * z["n_inv"][o] * z["T"][o] * M for o in z["orders"])
    mm = sum(2 * z["n_inv"][o] * z["T"][o] * M for o in z["orders"])
    traffic = 2 * z["Q"] * M + sum((2 * o) * z["T"][o] * M for o in z["orders"]) + 2 * n_inv * M
    return Stage("symmetrize", flops, mm, s * traffic)


def descriptor_stages(descriptor, graph, kind: str | None = None, neighbor_sum: str = "dense") -> list[Stage]:
    """The forward stages of ``descriptor`` on ``graph`` (an AtomsGraph).

    ``neighbor_sum="fused"``: the neighbour sums run as the Triton kernels of
    ``bench/nn/neighbor_sum_triton.py``: 3 E Q R C flops each (two multiplies and an add per
    term; FMA work, no matrix product), reading each edge's Y, R and W once and writing the
    [N, Q, R, C] result, with no dense [N, nb, .] tables and no per-edge products in memory."""
    if neighbor_sum not in ("dense", "fused"):
        raise ValueError(f"neighbor_sum must be 'dense' or 'fused', got {neighbor_sum!r}")
    fused = neighbor_sum == "fused"
    z = _sizes(descriptor, graph)
    s = torch.empty((), dtype=graph.positions.dtype).element_size()
    kind = kind or getattr(descriptor, "descriptor_name", "cace")
    N, E, nb, R, e, C, K, Q, L = (z[k] for k in ("N", "E", "nb", "R", "e", "C", "K", "Q", "L"))
    a, table = angular_cost(kind, L, Q)
    if fused:
        stages = [
            # edge shifts S @ cell: a broadcast product summed over 3 (9 multiplies + 6 adds an edge,
            # in the 28), not a matrix product
            Stage("edge basis", E * (28 + 8 * R + a * Q + table), E * table, s * (E * (3 + 2 + R + Q) + N * e)),
            Stage("atomic basis (fused)", 3 * E * Q * R * e + N * Q * R * C, 0.0,
                  s * (E * (Q + R + 2) + N * e + N * Q * R * e + 2 * N * Q * R * C)),
        ]
    else:
        stages = [
            Stage("edge basis", E * (28 + 8 * R + a * Q + table), E * table,
                  s * (E * (3 + 2 + R + Q) + 2 * E * (R * e + Q) + N * nb * (R * e + Q))),
            Stage("atomic basis", 2 * N * nb * R * e * Q + N * Q * R * C, 2 * N * nb * R * e * Q,
                  s * (N * nb * (R * e + Q) + N * R * e * Q + 2 * N * Q * R * C)),
        ]
    if z["mixed"]:
        stages.append(Stage("radial mix", 2 * N * Q * C * R * K, 2 * N * Q * C * R * K, s * N * Q * C * (R + K)))
    stages.append(_symmetrize(z, s, fused))
    n_inv = sum(z["n_inv"].values())
    F_B = n_inv * K * C
    for t in range(z["n_layers"]):
        msgs = z["messages"]
        if "Bchi" in msgs and fused:
            mm = 2 * N * F_B * L * C + 2 * N * Q * C * R * K
            flops = mm + 3 * E * Q * R * C + 2 * N * Q * R * C
            # the kernel reads Y, R and the sender index per edge and W per sender atom (no per-edge copy)
            traffic = (N * F_B + 2 * N * L * C + E * (Q + R + 2) + N * C * Q * R * 3 + N * Q * C * (R + K))
            stages.append(Stage(f"layer {t + 1}: Bchi message (fused)", flops, mm, s * traffic))
        elif "Bchi" in msgs:
            mm = 2 * N * F_B * L * C + 2 * N * nb * C * Q * R + 2 * N * Q * C * R * K
            flops = mm + (N * nb * Q * R if t == 0 else 0) + 2 * N * Q * R * C
            traffic = (N * F_B + N * L * C + 2 * E * L * C + N * nb * L * C + N * nb * Q * R * (2 if t == 0 else 1)
                       + N * C * Q * R * 3 + N * Q * C * (R + K))
            stages.append(Stage(f"layer {t + 1}: Bchi message", flops, mm, s * traffic))
        if "Ar" in msgs:
            stages.append(Stage(f"layer {t + 1}: Ar message", 3 * E * Q * K * C, 0.0, s * (4 * E * Q * K * C + N * Q * K * C)))
        if "M" in msgs:
            stages.append(Stage(f"layer {t + 1}: M message", 2 * N * Q * K * C, 0.0, s * 3 * N * Q * K * C))
        sym = _symmetrize(z, s, fused)
        stages.append(Stage(f"layer {t + 1}: {sym.name}", sym.flops, sym.matmul_flops, sym.bytes))
    return stages


def readout_stage(potential, graph) -> Stage:
    N, F = graph.n_atoms, potential.descriptor.n_features
    widths = (F, *potential.readout_widths, 1)
    s = torch.empty((), dtype=graph.positions.dtype).element_size()
    mm = 2 * N * sum(a * b for a, b in zip(widths[:-1], widths[1:])) + 2 * N * F
    n_weights = sum(a * b + b for a, b in zip(widths[:-1], widths[1:])) + F
    return Stage("readout", mm + N * sum(widths[1:-1]) * 5, mm, s * (N * F + n_weights + N * sum(widths[1:])))


def potential_stages(potential, graph, kind: str | None = None, neighbor_sum: str = "dense") -> list[Stage]:
    return descriptor_stages(potential.descriptor, graph, kind, neighbor_sum) + [readout_stage(potential, graph)]


def totals(stages: list[Stage], mode: str = "descriptor") -> dict:
    """{"flops", "matmul_flops", "bytes", "intensity"} of a forward, scaled to ``mode``."""
    f = MODE_FACTORS[mode]
    flops = f * sum(s.flops for s in stages)
    byts = f * sum(s.bytes for s in stages)
    return {"flops": flops, "matmul_flops": f * sum(s.matmul_flops for s in stages), "bytes": byts,
            "intensity": flops / byts if byts else float("nan")}


def counted_matmul_flops(fn) -> int:
    """Matrix-product FLOPs torch actually executes in ``fn()`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
