"""Fixed reference computations: a yardstick timed beside the descriptors, and the roofline ceilings.

``ReferenceWorkload`` is a frozen, ACE-shaped energy + forces computation whose code never
changes with the project: ``VERSION`` is recorded, and speed figures measured against different
versions are not compared. Timing CACE beside it in one run gives a ratio "CACE / reference" that
follows the code under test and not the machine (the reference has the descriptors' op mix),
which is what CI tracks.

``ceilings`` measures what this device reaches on two plain kernels (a square matmul and a copy):
the compute and bandwidth roofs against which the report places each descriptor's achieved
FLOP/s (``bench.costmodel``). Named peaks are listed too for the GPUs we know.
"""

from __future__ import annotations

import torch

VERSION = 2   # 2: an ACE-shaped energy + forces (1 was a single gather/matmul/scatter)

# vendor peaks (dense, no sparsity), for the roofline's "spec" roof: FLOP/s by dtype, and bytes/s
KNOWN_PEAKS = {
    "NVIDIA H100 80GB HBM3": {"float32": 67e12, "float64": 34e12, "tf32": 495e12, "bandwidth": 3.35e12},
    "NVIDIA H200": {"float32": 67e12, "float64": 34e12, "tf32": 495e12, "bandwidth": 4.8e12},
}


class ReferenceWorkload:
    """A frozen, self-contained ACE-shaped energy + forces evaluation (its own code, never the project's).

    On a seeded random cloud of ``n_atoms`` atoms at water density (pairs within ``cutoff``, no
    periodicity), with positions requiring grad:
        vec = x[s] - x[r];  d = |vec|;  u = vec / d                          [E, 3], [E]
        R_n(d) = sin(n pi d / r_c) / d * (1 - (d / r_c)^2)^2, n = 1..n_rbf     [E, R]
        Y = monomials of u up to degree 3 (20 of them)                       [E, 20]
        A[i] = sum_{j} R(d_ij) (x) Y(u_ij)   (index_add over receivers)      [N, R, 20]
        A' = A mixed over n by W                                             [N, K, 20]
        B_t = A'[..., p_t] * A'[..., q_t] for a fixed pair table             [N, K, T]
        E = sum of a two-layer MLP of B;   F = -dE/dx
    The op mix (gathers, elementwise, index_add, small matmuls, autograd through all of it) is the
    descriptors' own, so machine-state changes move it like them. Seeded: same arithmetic every run.
    """

    def __init__(self, n_atoms: int = 384, cutoff: float = 5.0, n_rbf: int = 8, n_radial: int = 12, *,
                 dtype=torch.float32, device="cpu", seed: int = 1234):
        g = torch.Generator().manual_seed(seed)
        box = (n_atoms / 0.1) ** (1 / 3)                          # 0.1 atoms / A^3, like water
        pos = torch.rand(n_atoms, 3, generator=g, dtype=torch.float64) * box
        dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
        not_self = ~torch.eye(n_atoms, dtype=torch.bool)
        r, s = torch.nonzero((dist < cutoff) & not_self, as_tuple=True)
        self.receivers, self.senders = r.to(device), s.to(device)
        self.pos = pos.to(device=device, dtype=dtype)
        self.cutoff, self.n_rbf, self.n_atoms = cutoff, n_rbf, n_atoms
        self.freq = (torch.arange(1, n_rbf + 1, dtype=dtype) * torch.pi / cutoff).to(device)
        powers = [(a, b, c) for deg in range(4) for a in range(deg + 1) for b in range(deg + 1 - a) for c in [deg - a - b]]
        self.powers = torch.tensor(powers, device=device)        # [20, 3]
        pairs = torch.randint(0, len(powers), (2, 40), generator=g)
        self.p, self.q = pairs[0].to(device), pairs[1].to(device)
        self.W = (torch.randn(n_rbf, n_radial, generator=g, dtype=dtype) / n_rbf**0.5).to(device)
        self.W1 = (torch.randn(n_radial * 40, 32, generator=g, dtype=dtype) / (n_radial * 40) ** 0.5).to(device)
        self.W2 = (torch.randn(32, 1, generator=g, dtype=dtype) / 32**0.5).to(device)

    def __call__(self) -> torch.Tensor:
        x = self.pos.detach().requires_grad_(True)
        vec = x[self.senders] - x[self.receivers]                             # [E, 3]
        d = torch.linalg.norm(vec, dim=1)                                     # [E]
        u = vec / d[:, None]
        env = (1 - (d / self.cutoff) ** 2) ** 2
        radial = torch.sin(self.freq * d[:, None]) / d[:, None] * env[:, None]   # [E, R]
        pw = torch.stack([u**0, u, u**2, u**3], dim=2)                          # [E, 3, 4]
        Y = (pw[:, 0, self.powers[:, 0]] * pw[:, 1, self.powers[:, 1]] * pw[:, 2, self.powers[:, 2]])  # [E, 20]
        edge = (radial[:, :, None] * Y[:, None, :]).reshape(len(d), -1)       # [E, R 20]
        A = x.new_zeros(self.n_atoms, edge.shape[1]).index_add(0, self.receivers, edge).view(self.n_atoms, self.n_rbf, 20)
        A = torch.einsum("inq,nk->ikq", A, self.W)                            # [N, K, 20]
        B = (A[:, :, self.p] * A[:, :, self.q]).flatten(1)                    # [N, K 40]
        energy = (torch.nn.functional.silu(B @ self.W1) @ self.W2).sum()
        (grad,) = torch.autograd.grad(energy, x)
        return -grad


def ceilings(device="cpu", dtype=torch.float32, repeats: int = 10) -> dict:
    """{"matmul_flops_per_s", "copy_bytes_per_s"} measured here (median of ``repeats``)."""
    from .measure import time_round_robin

    device = torch.device(device)
    n = 2048 if device.type == "cuda" else 1024
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    src = torch.randn(32 << 20 if device.type == "cuda" else 8 << 20, dtype=dtype, device=device)
    dst = torch.empty_like(src)
    t = time_round_robin({"matmul": lambda: a @ b, "copy": lambda: dst.copy_(src)}, device=device, warmup=2,
                         repeats=repeats)
    out = {"matmul_flops_per_s": 2 * n**3 / t["matmul"]["median_s"],
           "copy_bytes_per_s": 2 * src.numel() * src.element_size() / t["copy"]["median_s"]}
    if device.type == "cuda":
        name = torch.cuda.get_device_properties(device).name
        peak = KNOWN_PEAKS.get(name)
        if peak:
            out["spec_flops_per_s"] = peak.get(str(dtype).replace("torch.", ""))
            out["spec_bytes_per_s"] = peak["bandwidth"]
    return out
