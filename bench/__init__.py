"""cace-bench: a fair comparison of Cartesian (CACE) and spherical (ACE/e3nn) descriptors.

Conventions, written down once (see README.md, "Conventions"):
- units: eV, Angstrom, eV/Angstrom, fs; stress in eV/Angstrom^3;
- cell rows are lattice vectors, as in ASE;
- an edge (j -> i) has sender j = ``edge_index[0]`` and receiver i = ``edge_index[1]``; its vector
  is r_ij = x_j - x_i + S_ij with S_ij = cell_shift_ij @ cell.
"""

__version__ = "0.1.0"
