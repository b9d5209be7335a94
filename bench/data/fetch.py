"""Standard public data sets: download once, check, unpack, and record keys and units.

After ``fetch(name)`` every file of the set has a sidecar ``<file>.cace-bench.json`` holding its
keys and units, so that ``bench.data.read(path)`` needs no flags. ``base_url`` (or the
environment variable ``CACE_BENCH_MIRROR``) replaces the scheme and host of every URL, for a local
mirror; the tests use it against a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .cache import cache_dir
from .errors import DataError
from .read import SIDECAR_SUFFIX


@dataclass(frozen=True)
class StandardSet:
    name: str
    url: str
    description: str
    sha256: str | None          # of the downloaded file, where known
    archive: str | None         # "tar" or "zip" when the download is an archive, else None
    files: dict[str, dict] = field(default_factory=dict)  # glob inside the set -> read() options
    citation: str = ""


STANDARD_SETS: dict[str, StandardSet] = {
    s.name: s
    for s in [
        StandardSet(
            name="rmd17",
            url="https://figshare.com/ndownloader/files/23950376",
            description="revised MD17: 10 small molecules, 100k PBE/def2-SVP frames each, with the official 5 train/test splits",
            sha256=None,
            archive="tar",
            files={"**/npz_data/*.npz": dict(energy_key="energies", forces_key="forces",
                                             energy_unit="kcal/mol", length_unit="Angstrom")},
            citation="Christensen & von Lilienfeld, Mach. Learn.: Sci. Technol. 1, 045018 (2020)",
        ),
        StandardSet(
            name="3bpa",
            url="https://github.com/davkovacs/BOTNet-datasets/raw/refs/heads/main/dataset_3BPA.tar.gz",
            description="3BPA: train at 300 K and mixed T, tests at 300/600/1200 K and dihedral scans (wB97X/6-31G(d))",
            sha256=None,
            archive="tar",
            files={"**/*.xyz": dict(energy_key="energy", forces_key="forces", energy_unit="eV", length_unit="Angstrom")},
            citation="Kovacs et al., J. Chem. Theory Comput. 17, 7696 (2021)",
        ),
        StandardSet(
            name="water-cheng2019",
            url="https://raw.githubusercontent.com/BingqingCheng/ab-initio-thermodynamics-of-water/master/training-set/dataset_1593.xyz",
            description="liquid water, 1593 frames of 64 H2O, revPBE0-D3, stored in Bohr/Hartree",
            sha256=None,
            archive=None,
            files={"dataset_1593.xyz": dict(energy_key="TotEnergy", forces_key="force",
                                            energy_unit="Hartree", length_unit="Bohr")},
            citation="Cheng, Engel, Behler, Dellago & Ceriotti, PNAS 116, 1110 (2019)",
        ),
    ]
}


def _mirror(url: str, base_url: str | None) -> str:
    base_url = base_url or os.environ.get("CACE_BENCH_MIRROR")
    if not base_url:
        return url
    parts = urllib.parse.urlsplit(url)
    return base_url.rstrip("/") + parts.path + (("?" + parts.query) if parts.query else "")


def _download(url: str, dest: Path, *, progress: bool) -> str:
    """Stream ``url`` to ``dest`` (atomically) and return its SHA-256."""
    from tqdm import tqdm

    from ..atomic import atomic_path

    h = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    return h.hexdigest()


def fetch(name: str, *, base_url: str | None = None, dest: Path | None = None, progress: bool = True,
          sha256: str | None = None) -> Path:
    """Download the standard set ``name`` (once) and return the folder that holds its files."""
    if name not in STANDARD_SETS:
        raise DataError(name, None, "name", f"unknown data set; known: {sorted(STANDARD_SETS)}")
    spec = STANDARD_SETS[name]
    folder = Path(dest) if dest is not None else cache_dir("datasets", name)
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".complete"
    if done.is_file():
        return folder
    url = _mirror(spec.url, base_url)
    filename = Path(urllib.parse.urlsplit(spec.url).path).name or name
    target = folder / filename
    try:
        digest = _download(url, target, progress=progress)
    except OSError as err:
        raise DataError(url, None, "download", f"failed ({err})") from None
    expected = sha256 or spec.sha256
    if expected and digest != expected:
        target.unlink(missing_ok=True)
        raise DataError(url, None, "sha256", f"checksum mismatch: got {digest}, expected {expected}")
    if spec.archive == "tar":
        with tarfile.open(target) as tar:
            tar.extractall(folder, filter="data")
    elif spec.archive == "zip":
        with zipfile.ZipFile(target) as zf:
            zf.extractall(folder)
    n_described = 0
    for pattern, options in spec.files.items():
        for path in folder.glob(pattern):
            path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(options, indent=1))
            n_described += 1
    if n_described == 0:
        raise DataError(url, None, "files", f"download holds no file matching {sorted(spec.files)}")
    done.write_text(json.dumps({"url": url, "sha256": digest}))
    return folder
