"""The shared dataset layer: reading, validation, splits, reference energies, built-in and standard sets."""

from .builtin_sets import BUILTIN, builtin
from .errors import DataError
from .fetch import STANDARD_SETS, fetch
from .hashing import dataset_hash
from .read import read, read_isolated_energies
from .reference import fit_e0, is_isolated_atom, take_isolated_atoms
from .splits import Split, explicit_split, random_split, split_counts



def load(source: str, read_options: dict | None = None):
    """Frames from ``builtin:NAME`` (or a bare built-in name) or from a path via ``read``."""
    if source.startswith("builtin:") or source in BUILTIN:
        return builtin(source.split(":", 1)[-1])
    return read(source, **(read_options or {}))


__all__ = [
    "BUILTIN", "load", "DataError", "STANDARD_SETS", "Split", "builtin", "dataset_hash", "explicit_split",
    "fetch", "fit_e0", "is_isolated_atom", "random_split", "read", "read_isolated_energies", "split_counts", "take_isolated_atoms",
]
