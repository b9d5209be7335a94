"""The configurations the CACE authors use (shared/design/cace-math.md), by name.

Each preset holds the descriptor keywords and the readout widths; ``n_layers`` counts
message-passing layers (the table's "layers"), so the features are those of n_layers + 1
symmetrizations. The elements are not part of a preset: they come from the data.
"""

from __future__ import annotations

from bench.errors import InputError

PRESETS: dict[str, dict] = {
    "water": dict(cutoff=5.5, n_rbf=6, n_embed=3, n_radial=12, l_max=3, nu_max=3, n_layers=1,
                  messages=("Bchi",), readout=(32, 16)),
    "ethanol": dict(cutoff=4.0, n_rbf=6, n_embed=4, n_radial=12, l_max=4, nu_max=3, n_layers=1,
                    messages=("M", "Ar", "Bchi"), readout=(32, 16)),
    "3bpa": dict(cutoff=6.0, n_rbf=8, n_embed=4, n_radial=12, l_max=4, nu_max=3, n_layers=1,
                 messages=("M", "Ar", "Bchi"), readout=(32, 16)),
    "hea25": dict(cutoff=4.5, n_rbf=6, n_embed=4, n_radial=8, l_max=3, nu_max=3, n_layers=1,
                  messages=("Bchi",), readout=(24, 12)),
}


def with_overrides(name: str | None, overrides: dict) -> dict:
    """The keywords of preset ``name`` (none: an empty set) with ``overrides`` on top: the one place
    a preset and a caller's keywords are merged (``bench.potential.build``, the tasks' model specs)."""
    kw = preset(name) if name else {}
    kw.update(overrides)
    return kw


def preset(name: str) -> dict:
    """Descriptor keywords and ``readout`` of a preset (a copy)."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])
