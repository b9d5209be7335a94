"""Integrator steps on flat per-atom tensors (every replica of a batch at once), in ASE's units:
Angstrom, eV, amu, and ASE's time unit (``ase.units.fs`` per femtosecond), so that a = F / m needs
no conversion factor.

Velocity Verlet (NVE), as ``ase.md.verlet.VelocityVerlet``:

    v <- v + dt/2 F(x)/m ;  x <- x + dt v ;  v <- v + dt/2 F(x)/m

Langevin (NVT), the BAOAB splitting (Leimkuhler & Matthews, Appl. Math. Res. Express 2013):

    B: v <- v + dt/2 F/m      A: x <- x + dt/2 v      O: v <- c1 v + c2 sqrt(kB T / m) xi
    A: x <- x + dt/2 v        B: v <- v + dt/2 F/m    with c1 = exp(-gamma dt), c2 = sqrt(1 - c1^2)

The O step is the exact solution of the Ornstein-Uhlenbeck process over dt, so with zero forces
the velocities relax to the Maxwell-Boltzmann distribution at T for any dt (the thermostat test);
BAOAB samples configurations with an error of order dt^2.
"""

from __future__ import annotations

import math

import torch


def kick(v: torch.Tensor, forces: torch.Tensor, inv_mass: torch.Tensor, dt: float) -> torch.Tensor:
    """B: v + dt F / m.  v, forces [N, 3]; inv_mass [N, 1]."""
    return v + dt * forces * inv_mass


def drift(x: torch.Tensor, v: torch.Tensor, dt: float) -> torch.Tensor:
    """A: x + dt v."""
    return x + dt * v


def ornstein_uhlenbeck(v: torch.Tensor, inv_mass: torch.Tensor, kT: torch.Tensor, gamma: float, dt: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """O: c1 v + c2 sqrt(kT / m) xi, xi ~ N(0, 1) per component; kT [N, 1] in eV (per atom, so each
    replica has its own temperature)."""
    c1 = math.exp(-gamma * dt)
    c2 = math.sqrt(max(0.0, 1.0 - c1 * c1))
    xi = torch.randn(v.shape, generator=generator, device=v.device, dtype=v.dtype)
    return c1 * v + c2 * torch.sqrt(kT * inv_mass) * xi
