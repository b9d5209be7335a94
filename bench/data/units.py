"""Unit names accepted by the dataset layer and their factors to eV and Angstrom (from ase.units)."""

from __future__ import annotations

from ase import units

# name (lower case) -> factor that converts a value in that unit to eV
ENERGY_UNITS: dict[str, float] = {
    "ev": 1.0,
    "mev": 1e-3,
    "kcal/mol": units.kcal / units.mol,
    "kj/mol": units.kJ / units.mol,
    "hartree": units.Hartree,
    "ha": units.Hartree,
}

# name (lower case) -> factor that converts a value in that unit to Angstrom
LENGTH_UNITS: dict[str, float] = {
    "angstrom": 1.0,
    "ang": 1.0,
    "a": 1.0,
    "bohr": units.Bohr,
}


def energy_factor(name: str) -> float:
    """Factor to eV for an energy unit name; KeyError with the accepted names otherwise."""
    try:
        return ENERGY_UNITS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise KeyError(f"unknown energy unit {name!r}; known: eV, meV, kcal/mol, kJ/mol, Hartree") from None


def length_factor(name: str) -> float:
    """Factor to Angstrom for a length unit name; KeyError with the accepted names otherwise."""
    try:
        return LENGTH_UNITS[name.strip().lower()]
    except (KeyError, AttributeError):
        raise KeyError(f"unknown length unit {name!r}; known: Angstrom, Bohr") from None
