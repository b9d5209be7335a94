"""torch.compile: the whole descriptor traces as one graph (fullgraph, no breaks), forward and
backward through AOTAutograd, and gives the eager numbers. (Inductor's CPU code generation is not
used here: see README, "torch.compile".)"""

import copy

import numpy as np
import pytest
import torch

from bench.graph import AtomsGraph
from bench.potential import build
from bench.testing import random_periodic
from bench.testing.requirements import needs_compile

KW = dict(cutoff=3.5, n_rbf=4, n_embed=2, n_radial=3, l_max=3, nu_max=3, n_layers=1, messages=("M", "Ar", "Bchi"))


@needs_compile
@pytest.mark.parametrize("kind", ["cace", "spherical"])
def test_compiled_equals_eager(kind):
    torch._dynamo.reset()
    torch.manual_seed(0)
    pot = build(kind, elements=[1, 8], readout=(8,), **KW).double()
    graph = AtomsGraph.from_atoms(random_periodic(np.random.default_rng(3), [1, 8], n=8), KW["cutoff"])
    ref = pot(graph, stress=True)
    compiled = copy.deepcopy(pot)
    compiled.descriptor.compile(backend="aot_eager", fullgraph=True)
    out = compiled(graph, stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(out[key], ref[key], rtol=1e-12, atol=1e-12), key
