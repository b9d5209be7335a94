"""Parity of two computations of the same function (a backend against eager, a kernel against the
per-edge sum): one measure and one tolerance per dtype, used by the tests and by the timing task,
which never times a backend whose results disagree with eager."""

from __future__ import annotations

import torch

# relative-norm tolerance of a backend against eager: float32 sums in another order over ~1e6
# edges land near 1e-6; a wrong computation lands far above (the CSR bug of the H100 run: 1e14)
BACKEND_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ over the whole tensor: the float32 parity measure (elementwise tolerances fail
    on rounding of large components that a relative norm of ~1e-7 shows is fine)."""
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def output_error(out, ref) -> dict:
    """{name: relative error} of a call's output against the reference's: a tensor (features) or
    a dict (the potential's energy, forces, stress; a training step's forces and force-loss
    gradient): every tensor both have."""
    if isinstance(out, torch.Tensor):
        return {"output": relative_error(out, ref)}
    return {k: relative_error(out[k], ref[k]) for k in ref
            if isinstance(ref[k], torch.Tensor) and isinstance(out.get(k), torch.Tensor)}


def disagreement(out, ref, dtype: torch.dtype, reference: str = "eager") -> str | None:
    """None where ``out`` equals ``ref`` (the output of backend ``reference``) within
    BACKEND_TOLERANCE[dtype], else a one-line reason."""
    tol = BACKEND_TOLERANCE.get(dtype, 1e-4)
    errors = output_error(out, ref)
    bad = {k: e for k, e in errors.items() if not e <= tol}            # NaN is bad too
    if not bad:
        return None
    worst = ", ".join(f"{k} {e:.1e}" for k, e in bad.items())
    return f"wrong result: differs from {reference} by {worst} (relative norm; tolerance {tol:.0e} in {dtype})"
