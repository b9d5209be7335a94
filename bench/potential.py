"""A potential on top of either descriptor: the same readout, E0, forces and stress for both.

    E_i = scale * (MLP(B_i) + w . B_i) + E0(Z_i),   E = sum_i E_i,
    F = -dE/dx (autograd),   sigma = (1/V) dE/d(eps) at eps = 0 (symmetric strain; ASE's sign).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import nn

from .errors import InputError

DESCRIPTORS = {}


def _descriptor_classes() -> dict:
    if not DESCRIPTORS:
        from baselines import SphericalACE
        from cace import CACE

        DESCRIPTORS.update({"cace": CACE, "spherical": SphericalACE})
    return DESCRIPTORS


class Potential(nn.Module):
    def __init__(self, descriptor: nn.Module, *, readout: Sequence[int] = (32, 16),
                 e0: dict[int, float] | None = None, scale: float = 1.0):
        from .nn.contracts import Descriptor, missing_members

        missing = missing_members(descriptor, Descriptor)
        if missing:
            raise TypeError(f"{type(descriptor).__name__} is not a descriptor (bench.nn.contracts.Descriptor): "
                            f"it lacks {', '.join(missing)}")
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.descriptor = descriptor
        self.readout_widths = tuple(int(w) for w in readout)
        widths = (descriptor.n_features, *self.readout_widths, 1)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.mlp = nn.Sequential(*layers[:-1])
        self.linear = nn.Linear(descriptor.n_features, 1, bias=False)
        e0 = dict(e0 or {})
        table = torch.zeros(119)
        for z, v in e0.items():
            table[int(z)] = float(v)
        self.register_buffer("e0_table", table)
        self._e0 = {int(z): float(v) for z, v in e0.items()}

    def config(self) -> dict:
        name = getattr(self.descriptor, "descriptor_name", type(self.descriptor).__name__)
        return {"descriptor": name, "descriptor_config": self.descriptor.config(),
                "readout": list(self.readout_widths), "e0": {str(z): v for z, v in self._e0.items()},
                "scale": float(self.scale)}

    @classmethod
    def from_config(cls, config: dict) -> "Potential":
        desc = _descriptor_classes()[config["descriptor"]].from_config(config["descriptor_config"])
        return cls(desc, readout=config["readout"], e0={int(z): v for z, v in config["e0"].items()},
                   scale=config.get("scale", 1.0))

    backend = "eager"            # how the descriptor runs: bench.backends.with_backend makes the others
    _descriptor_runner = None

    def features(self, graph, *, double_backward: bool = False) -> torch.Tensor:
        """The descriptor B [N, F], run through this potential's backend."""
        runner = self._descriptor_runner
        return self.descriptor(graph) if runner is None else runner(graph, double_backward=double_backward)

    def readout(self, B: torch.Tensor) -> torch.Tensor:
        """mlp(B) + linear(B)  [N, 1], with the MLP's first layer and the linear term as one matrix
        product: B [N, F] is read once, and its gradient is one [N, F] product, not two summed
        (their sum was the top of the fused path's memory peak during energy + forces)."""
        first = self.mlp[0]
        W = torch.cat([first.weight, self.linear.weight])                         # [w1 + 1, F]
        b = torch.cat([first.bias, first.bias.new_zeros(1)])                       # [w1 + 1]
        h = nn.functional.linear(B, W, b)                                          # [N, w1 + 1]
        return self.mlp[1:](h[:, :-1]) + h[:, -1:]

    def atomic_energies(self, graph, *, double_backward: bool = False, plain: bool = False) -> torch.Tensor:
        """E_i [N]; ``plain``: the descriptor's plain form, run here (not through the backend): what a
        compiled training step traces (``bench.backends``)."""
        B = self.descriptor(graph, plain=True) if plain else self.features(graph, double_backward=double_backward)  # [N, F]
        return self.scale * self.readout(B).squeeze(-1) + self.e0_table.to(B.dtype)[graph.numbers]

    _call_graphs = None          # bench.backends.recorded_calls: calls replayed from CUDA graphs

    def forward(self, graph, *, forces: bool = True, stress: bool = False, training: bool = False) -> dict:
        """{'energy': [G], 'forces': [N, 3], 'stress': [G, 3, 3] (eV/A^3)} as asked.

        ``training=True`` keeps the graph of the force computation for a force loss (double backward).
        Forces or stress with ``training=False`` are inference: the parameters are not differentiated
        (their gradients are neither computed nor prepared for); train with ``training=True``.
        Under a backend that records calls (``eager-cudagraphs``, ``fused-cudagraphs``) inference
        calls are replayed from CUDA graphs (``bench.cuda_graphs``).
        """
        if self._call_graphs is not None:
            if training:
                from .backends import BackendUnavailable

                raise BackendUnavailable(f"backend {self.backend!r} records inference calls, not a force-loss "
                                         "training step; train with --train-backend of the same name, which records "
                                         "the whole step (bench.train_step)")
            return self._call_graphs(graph, forces, stress)
        return self._forward(graph, forces=forces, stress=stress, training=training)

    def _forward(self, graph, *, forces: bool, stress: bool, training: bool) -> dict:
        pos = graph.positions
        cell = graph.cell
        inputs = []
        if forces or stress:
            pos = pos.detach().requires_grad_(True)
            inputs.append(pos)
        if stress:
            eps = torch.zeros_like(cell).requires_grad_(True)                   # [G, 3, 3]
            sym = 0.5 * (eps + eps.transpose(1, 2))
            pos = pos + torch.einsum("ia,iab->ib", pos, sym[graph.batch])
            cell = cell + torch.bmm(cell, sym)
            inputs.append(eps)
        g = graph.replace(positions=pos, cell=cell) if inputs else graph
        runner = self._descriptor_runner
        if training and inputs and runner is not None and runner.trains_compiled:
            if stress:
                from .backends import BackendUnavailable

                raise BackendUnavailable(f"backend {self.backend!r} compiles a force-loss training step, not a stress "
                                         "loss; train with backend 'eager' or 'fused'")
            e_atom, f = runner.training_forces(self, g)                          # compiled whole
            energy = e_atom.new_zeros(graph.n_graphs).index_add(0, graph.batch, e_atom)
            return {"energy": energy, "atomic_energies": e_atom, "forces": f}
        if inputs and not training:
            # forces / stress for inference (MD, evaluation, timing): the parameters are not
            # differentiated, so autograd keeps nothing for their gradients (17% of what it saves
            # for the water preset) and a compiled backward computes none of them
            with _parameters_frozen(self):
                e_atom = self.atomic_energies(g)
        else:
            e_atom = self.atomic_energies(g, double_backward=training and bool(inputs))
        energy = e_atom.new_zeros(graph.n_graphs).index_add(0, graph.batch, e_atom)
        out = {"energy": energy, "atomic_energies": e_atom}
        if inputs:
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=training, allow_unused=True)
            if forces:
                out["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(pos)
            if stress:
                volume = torch.linalg.det(graph.cell).abs()
                out["stress"] = grads[-1] / volume[:, None, None]
        return out


@contextlib.contextmanager
def _parameters_frozen(module: nn.Module):
    """Parameters of ``module`` that require gradients do not, inside the block."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(kind: str, *, elements: Sequence[int], preset: str | None = None, e0: dict | None = None,
          scale: float = 1.0, n_parameters: int | None = None, **overrides) -> Potential:
    """``build("cace" | "spherical", elements=[...], preset="water", **descriptor keywords)``.

    The same preset and keywords give the two descriptors identical everything but the angular
    part; ``readout`` (MLP widths) may be overridden like any keyword. ``n_parameters``: widen or
    narrow the first hidden layer of the readout so that the potential has (as nearly as a whole
    width allows) this many parameters -- for comparisons at equal parameter count when the
    feature counts differ (e.g. the spherical ``complete`` mode).
    """
    from cace.presets import with_overrides

    kw = with_overrides(preset, overrides)
    readout = kw.pop("readout", (32, 16))
    classes = _descriptor_classes()
    if kind not in classes:
        raise InputError(f"unknown descriptor {kind!r}; known: {sorted(classes)}")
    descriptor = classes[kind](elements, **kw)
    if n_parameters is not None:
        readout = _readout_for_parameter_count(descriptor, tuple(readout), int(n_parameters))
    return Potential(descriptor, readout=readout, e0=e0, scale=scale)


def _readout_for_parameter_count(descriptor, readout: tuple, target: int) -> tuple:
    """The parameter count is linear in the first hidden width w: solve for w, round, clamp at 1."""
    if not readout:
        raise InputError("n_parameters needs a readout with at least one hidden layer")

    def total(w: int) -> int:
        widths = (descriptor.n_features, w, *readout[1:], 1)
        mlp = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
        return count_parameters(descriptor) + mlp + descriptor.n_features

    slope = total(2) - total(1)
    w = max(1, round(1 + (target - total(1)) / slope))
    return (w, *readout[1:])


def save_checkpoint(potential: Potential, path, **extra) -> None:
    """state_dict + config (never a pickled module), written atomically."""
    from .atomic import atomic_path

    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save({"config": potential.config(), "state_dict": potential.state_dict(), **extra}, tmp)


def load_checkpoint(path, map_location="cpu") -> Potential:
    data = torch.load(path, map_location=map_location, weights_only=True)
    pot = Potential.from_config(data["config"])
    pot.load_state_dict(data["state_dict"])
    return pot
