"""Every module the README or the scripts run as ``python -m MODULE`` does something when run so: a
module that defines ``main`` has the ``__main__`` guard that calls it (the kernel benchmark lost its
guard once, and ``python -m bench.benchmarks.edge_sum`` then exited 0 having done nothing)."""

import ast
import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for pkg in ("bench", "cace", "baselines") for p in (ROOT / pkg).rglob("*.py"))


def _defines_main(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def _has_main_guard(tree: ast.Module) -> bool:
    """A top-level ``if __name__ == "__main__":`` whose body calls ``main``."""
    for node in tree.body:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
                and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)):
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            return any(isinstance(c.func, ast.Name) and c.func.id == "main" for c in calls)
    return False


def test_every_module_with_main_runs_it_under_python_m():
    with_main = [p for p in MODULES if _defines_main(ast.parse(p.read_text()))]
    assert len(with_main) >= 5, "the scan found too few modules with main(): is the tree where it should be?"
    missing = [str(p.relative_to(ROOT)) for p in with_main if not _has_main_guard(ast.parse(p.read_text()))]
    assert not missing, f"main() defined but never called under python -m: {missing}"


def test_guard_check_can_fail():
    assert not _has_main_guard(ast.parse("def main():\n    return 0\n"))
    assert not _has_main_guard(ast.parse("def main():\n    return 0\nif __name__ == '__main__':\n    pass\n"))
    assert _has_main_guard(ast.parse("import sys\ndef main():\n    return 0\n"
                                     "if __name__ == '__main__':\n    sys.exit(main())\n"))


def test_kernel_benchmark_pick_runs_as_a_module(tmp_path):
    """The GPU script exports what ``python -m bench.benchmarks.edge_sum --pick`` prints."""
    rows = [dict(kernel=k, fwd_bwd_ms=ms, Q=20, R=6, C=9, L=4, parity=1e-7, warps=None, eb=None)
            for k, ms in (("serial", 5.0), ("prefetch", 4.0))]
    path = tmp_path / "kernels.json"
    path.write_text(json.dumps({"rows": rows}))
    out = subprocess.run([sys.executable, "-m", "bench.benchmarks.edge_sum", "--pick", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "auto,20x6x9x4=prefetch"
