"""Where cace-bench keeps data it makes or downloads: $CACE_BENCH_CACHE, else $XDG_CACHE_HOME/cace-bench, else ~/.cache/cace-bench."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("CACE_BENCH_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cace-bench"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
