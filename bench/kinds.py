"""The descriptors the project compares, in the order tasks run them and the report shows them: the
one home of that pair (``bench.potential.build`` makes either from its name)."""

COMPARED = ("cace", "spherical")
