"""The download path, offline: a local HTTP server on 127.0.0.1 serves files from a temporary folder."""

import hashlib
import http.server
import tarfile
import threading
import urllib.parse
from functools import partial

import ase.io
import numpy as np
import pytest
from ase import Atoms, units

from bench.cli.main import main
from bench.data import DataError, STANDARD_SETS, fetch, read


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _serve_at(root, url, data: bytes):
    path = root / urllib.parse.urlsplit(url).path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _water_bohr_hartree(tmp_path, n=3):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(n):
        a = Atoms("OH2", positions=np.array([[0, 0, 0], [1.8, 0, 0], [-0.45, 1.75, 0]]) + rng.normal(0, 0.01, (3, 3)),
                  cell=np.eye(3) * 23.5, pbc=True)  # Bohr
        a.info["TotEnergy"] = -17.2 - 0.001 * k  # Hartree
        a.arrays["force"] = rng.normal(0, 0.02, (3, 3))  # Hartree/Bohr
        frames.append(a)
    path = tmp_path / "dataset_1593.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path, frames


def test_fetch_water_records_keys_and_units(tmp_path, server):
    root, base = server
    src, raw = _water_bohr_hartree(tmp_path)
    _serve_at(root, STANDARD_SETS["water-cheng2019"].url, src.read_bytes())
    folder = fetch("water-cheng2019", base_url=base, dest=tmp_path / "cache", progress=False)
    frames = read(folder / "dataset_1593.xyz")  # no flags: the sidecar says TotEnergy/force, Hartree/Bohr
    assert len(frames) == 3
    assert frames[1].get_potential_energy() == pytest.approx(raw[1].info["TotEnergy"] * units.Hartree)
    assert np.allclose(frames[1].get_forces(), raw[1].arrays["force"] * units.Hartree / units.Bohr)
    assert np.allclose(frames[1].positions, raw[1].positions * units.Bohr)
    assert np.allclose(frames[1].cell.array, raw[1].cell.array * units.Bohr)
    # a second fetch does not download again
    (root / urllib.parse.urlsplit(STANDARD_SETS["water-cheng2019"].url).path.lstrip("/")).unlink()
    assert fetch("water-cheng2019", base_url=base, dest=tmp_path / "cache", progress=False) == folder


def test_fetch_checksum_mismatch_is_an_error_and_keeps_nothing(tmp_path, server):
    root, base = server
    src, _ = _water_bohr_hartree(tmp_path)
    _serve_at(root, STANDARD_SETS["water-cheng2019"].url, src.read_bytes())
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="checksum"):
        fetch("water-cheng2019", base_url=base, dest=tmp_path / "bad", progress=False, sha256="0" * 64)
    assert not (tmp_path / "bad" / "dataset_1593.xyz").exists()
    assert fetch("water-cheng2019", base_url=base, dest=tmp_path / "good", progress=False, sha256=good).is_dir()


def test_fetch_tar_archive_and_cli(tmp_path, server, capsys, monkeypatch):
    root, base = server
    frames = read(_water_bohr_hartree(tmp_path)[0], energy_key="TotEnergy", forces_key="force")
    inner = tmp_path / "dataset_3BPA"
    inner.mkdir()
    ase.io.write(inner / "train_300K.xyz", frames, format="extxyz")
    archive = tmp_path / "dataset_3BPA.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(inner, arcname="dataset_3BPA")
    _serve_at(root, STANDARD_SETS["3bpa"].url, archive.read_bytes())
    monkeypatch.setenv("CACE_BENCH_CACHE", str(tmp_path / "cli-cache"))
    assert main(["data", "fetch", "3bpa", "--mirror", base]) == 0
    folder = tmp_path / "cli-cache" / "datasets" / "3bpa"
    got = read(folder / "dataset_3BPA" / "train_300K.xyz")
    assert np.allclose([f.get_potential_energy() for f in got], [f.get_potential_energy() for f in frames])


def test_fetch_unreachable_and_unknown(tmp_path, capsys):
    with pytest.raises(DataError, match="download"):
        fetch("water-cheng2019", base_url="http://127.0.0.1:9", dest=tmp_path, progress=False)
    assert main(["data", "fetch", "no-such-set"]) == 2
    assert "unknown data set" in capsys.readouterr().err
