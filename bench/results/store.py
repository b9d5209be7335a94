"""The results store: a folder of run files, each holding the records of one finished unit of work.

Layout: ``<root>/runs/<run_id>.json`` = {"format": FORMAT, "key": {...}, "records": [...],
"artifacts": {...}} where ``run_id`` is a hash of the key (task, descriptor, dataset, seed,
setting). A run file is written atomically once its work has finished, so an interrupted job
leaves only complete files behind and resumes by skipping every key already present. Each record
is one (task, descriptor, dataset, metric, seed, setting) value with its provenance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import InputError
from .io import write_json_atomic

FORMAT = "cace-bench/run-v1"


class ResultsError(InputError):
    """A results file that is damaged or not ours; names the file."""


def run_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResultsStore:
    def __init__(self, root):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.artifacts_dir = self.root / "artifacts"

    def path(self, key: dict) -> Path:
        return self.runs_dir / f"{run_id(key)}.json"

    def has(self, key: dict) -> bool:
        """True if a complete, valid run file exists for ``key`` (a damaged one raises)."""
        return self.get(key) is not None

    def get(self, key: dict) -> list[dict] | None:
        """The records of ``key``'s finished run, or None where it has not run (the file read once)."""
        path = self.path(key)
        if not path.is_file():
            return None
        data = self._load(path)
        return data["records"] if data["key"] == key else None

    def write(self, key: dict, records: list, artifacts: dict | None = None) -> Path:
        """Store ``key``'s run: its records (``Record`` or flat dicts, each checked as a ``Record``:
        a registered metric in its registry unit) and artifacts, atomically."""
        from .record import Record

        rows = [(r if isinstance(r, Record) else Record.from_dict(r)).to_dict() for r in records]
        return write_json_atomic(self.path(key), {"format": FORMAT, "key": key, "records": rows,
                                                  "artifacts": artifacts or {}})

    def artifact_path(self, key: dict, name: str) -> Path:
        folder = self.artifacts_dir / run_id(key)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def _load(self, path: Path) -> dict:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultsError(f"{path}: damaged results file ({err}); delete it to recompute that run") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("records"), list):
            raise ResultsError(f"{path}: not a cace-bench run file (expected format {FORMAT!r})")
        return data

    def runs(self, *, strict: bool = True) -> list[dict]:
        """Every run file; a damaged one raises ResultsError (``strict``) or is skipped with its
        error listed in ``self.errors``. Other files are never touched."""
        self.errors = []
        out = []
        for path in sorted(self.runs_dir.glob("*.json")):
            try:
                data = self._load(path)
            except ResultsError as err:
                if strict:
                    raise
                self.errors.append(str(err))
                continue
            data["path"] = str(path)
            out.append(data)
        return out

    def records(self, *, strict: bool = True) -> list[dict]:
        return [r for run in self.runs(strict=strict) for r in run["records"]]

    def frame(self, *, strict: bool = True):
        """All records as a pandas DataFrame (provenance columns flattened with a 'prov.' prefix)."""
        import pandas as pd

        rows = []
        for r in self.records(strict=strict):
            row = {k: v for k, v in r.items() if k != "provenance"}
            row.update({f"prov.{k}": v for k, v in (r.get("provenance") or {}).items() if not isinstance(v, dict)})
            rows.append(row)
        return pd.DataFrame(rows)
