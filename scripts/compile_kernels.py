"""Compile the fused kernels (neighbour sums and symmetrisation) for a CUDA target without a GPU
(Triton's bundled ptxas) and print each kernel's registers, spills and shared memory: a failed
compile or a spill is found here, before any device time is spent.

    python scripts/compile_kernels.py [--arch 90] [--preset water]

(Without TRITON_INTERPRET=1 in the environment: the interpreter compiles nothing.)
"""

import argparse
import os
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bench.benchmarks.edge_sum import model_sums
from bench.nn import neighbor_sum_triton as nst

POINTERS = {"fwd": ["Y", "Rb", "W", "SND", "WL", "ROWPTR", "OUT"],
            "bwd": ["G", "Y", "Rb", "W", "SND", "WL", "ROWPTR", "GY", "GR", "GW"]}


def resources(cubin: bytes) -> str:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    return " ".join(line.strip() for line in text.splitlines() if line.strip().startswith("REG"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, default=90)
    p.add_argument("--preset", default="water")
    args = p.parse_args()
    for ty in ("fp32", "fp64"):
        for desc, name, Q, NR, C, L in model_sums(args.preset):
            for version in nst.KERNELS:
                fwd, bwd = nst._kernels(version)
                for which, fn in (("fwd", fwd), ("bwd", bwd)):
                    meta, warps, _ = nst.launch_config(which, version, Q, NR, C, L)
                    sig = {a: ("*i64" if a in ("SND", "WL", "ROWPTR") else f"*{ty}") for a in POINTERS[which]}
                    sig.update({a: "i32" for a in ("Q", "NR", "CW")})
                    constexprs = {k: v for k, v in meta.items() if k not in sig}
                    sig.update({k: "constexpr" for k in constexprs})
                    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
                    kernel = triton.compile(src, target=GPUTarget("cuda", args.arch, 32), options=dict(num_warps=warps))
                    print(f"{ty} {desc:9s} {name:6s} {version:14s} {which} {warps} warps  {resources(kernel.asm['cubin'])}",
                          flush=True)


    from bench.nn import contraction_triton as ct

    fwd, bwd = ct._kernels()
    pointers = {"fwd": (["A", "V", "B"], ["FPTR", "FIDX", "FORD"], ["FCOEF"]),
                "bwd": (["GB", "A", "V", "GA"], ["BPTR", "BOUT", "BOTH", "BN"], ["BCOEF"])}
    scalars = {"fwd": ["M", "KC", "Q", "NINV"], "bwd": ["M", "KC", "Q", "NINV", "ROWS"]}
    for ty in ("fp32", "fp64"):
        for which, fn in (("fwd", fwd), ("bwd", bwd)):
            for tangent in (False, True):
                data, index, coeff = pointers[which]
                sig = {**{a: f"*{ty}" for a in data + coeff}, **{a: "*i64" for a in index},
                       **{a: "i32" for a in scalars[which]}, "MAXF": "constexpr", "BLOCK": "constexpr",
                       "TANGENT": "constexpr"}
                src = ASTSource(fn=fn, signature=sig, constexprs={"MAXF": 4, "BLOCK": ct.BLOCK, "TANGENT": tangent})
                kernel = triton.compile(src, target=GPUTarget("cuda", args.arch, 32), options=dict(num_warps=4))
                name = which + (" tangent" if tangent else "")
                print(f"{ty} symmetrisation {name:11s} 4 warps  {resources(kernel.asm['cubin'])}", flush=True)

if __name__ == "__main__":
    main()
