"""Fixed reference computations: a yardstick timed beside the descriptors, and the roofline ceilings.

``ReferenceWorkload`` is a frozen, ACE-shaped computation (a gather of neighbour rows into a dense
[N, nb, P] layout, a batched matrix product, an elementwise product and a scatter-add back, with
its backward) whose code never changes with the project: ``VERSION`` is recorded, and speed
figures measured against different versions are not compared. Timing CACE beside it in one run
gives a ratio "CACE / reference" that follows the code under test and not the machine (the
reference shares its memory-bound and compute-bound mix), which is what CI tracks.

``ceilings`` measures what this device reaches on two plain kernels (a square matmul and a copy):
the compute and bandwidth roofs against which the report places each descriptor's achieved
FLOP/s (``bench.costmodel``). Named peaks are listed too for the GPUs we know.
"""

from __future__ import annotations

import torch

VERSION = 1

# vendor peaks (dense, no sparsity), for the roofline's "spec" roof: FLOP/s by dtype, and bytes/s
KNOWN_PEAKS = {
    "NVIDIA H100 80GB HBM3": {"float32": 67e12, "float64": 34e12, "tf32": 495e12, "bandwidth": 3.35e12},
    "NVIDIA H200": {"float32": 67e12, "float64": 34e12, "tf32": 495e12, "bandwidth": 4.8e12},
}


class ReferenceWorkload:
    """Forward + backward of  out = index_add(dense(x)[.., :P] @ W * y)  on fixed random data.

    Shapes (n_atoms N, neighbours nb, width P): x [N nb, P] edge rows, W [P, P], y [N, nb, P].
    Seeded, so every run does the same arithmetic.
    """

    def __init__(self, n_atoms: int = 192, n_neighbors: int = 64, width: int = 128, *, dtype=torch.float32,
                 device="cpu", seed: int = 1234):
        g = torch.Generator().manual_seed(seed)
        N, nb, P = n_atoms, n_neighbors, width
        self.shape = (N, nb, P)
        self.x = torch.randn(N * nb, P, generator=g, dtype=dtype).to(device).requires_grad_(True)
        self.W = torch.randn(P, P, generator=g, dtype=dtype).div_(P**0.5).to(device).requires_grad_(True)
        self.y = torch.randn(N, nb, P, generator=g, dtype=dtype).to(device)
        self.perm = torch.randperm(N * nb, generator=g).to(device)
        self.receivers = torch.randint(0, N, (N * nb,), generator=g).to(device)

    def __call__(self) -> torch.Tensor:
        N, nb, P = self.shape
        dense = self.x.index_select(0, self.perm).view(N, nb, P)          # gather  [N, nb, P]
        h = torch.nn.functional.silu(dense @ self.W) * self.y              # matmul + elementwise
        out = self.x.new_zeros(N, P).index_add(0, self.receivers, h.view(N * nb, P))   # scatter [N, P]
        (out**2).sum().backward()
        self.x.grad = self.W.grad = None
        return out


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
