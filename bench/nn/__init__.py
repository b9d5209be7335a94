"""Building blocks shared by the Cartesian (cace) and spherical (baselines) descriptors.

Only the angular basis and its symmetrization tables differ between the two; everything here is
common code, so any change to it applies to both sides of the comparison alike.
"""
