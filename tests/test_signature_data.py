"""Where CytoSig and SecAct come from without secactpy: the search order, checksums, the fetch and its errors."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cytoatlas._activity import load_signatures, signature_data, signature_fetch
from cytoatlas._activity.signature_data import RELEASE, SHA256, SIGNATURE_DIR_ENV, signature_data_file
from cytoatlas._activity.signature_fetch import extract_signature_data, fetch_signature_data
from cytoatlas.cli import main
from cytoatlas.errors import CytoatlasError


@pytest.fixture(scope="module")
def real_files() -> dict[str, Path]:
    """The files this environment provides (an installed secactpy, or $CYTOATLAS_SIGNATURE_DIR in CI)."""
    return {name: signature_data_file(name) for name in SHA256}


@pytest.fixture
def nowhere(monkeypatch, tmp_path: Path) -> Path:
    """No source at all: no directory named, secactpy not installed, an empty cache. Returns the cache."""
    monkeypatch.delenv(SIGNATURE_DIR_ENV, raising=False)
    monkeypatch.setattr(signature_data, "secactpy_data_dir", lambda: None)
    monkeypatch.setenv("CYTOATLAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("secactpy/__init__.py", "")
        for name, data in files.items():
            z.writestr(f"secactpy/data/{name}", data)
    return path


def _sums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


FAKE = {"CytoSig.tsv.gz": b"cytosig bytes\n" * 100, "SecAct.tsv.gz": b"secact bytes\n" * 1000}


def test_recorded_sums_are_what_this_environment_finds(real_files: dict[str, Path]) -> None:
    for name, path in real_files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[name]


def test_named_directory_wins_and_gives_the_same_set(real_files: dict[str, Path], tmp_path: Path,
                                                     monkeypatch, capsys) -> None:
    default = load_signatures("cytosig")
    named = tmp_path / "copied"
    named.mkdir()
    for name, path in real_files.items():
        os.symlink(path, named / name)
    monkeypatch.setenv(SIGNATURE_DIR_ENV, str(named))
    assert signature_data_file("CytoSig.tsv.gz") == named / "CytoSig.tsv.gz"
    again = load_signatures("cytosig")
    assert again.source == str(named / "CytoSig.tsv.gz")
    # the recorded version does not depend on where the file was found, so outputs and manifests do not either
    assert again.version == default.version == RELEASE
    np.testing.assert_array_equal(again.matrix, default.matrix)
    monkeypatch.delenv(SIGNATURE_DIR_ENV)
    assert main(["signatures", "--signature-dir", str(named)]) == 0
    assert str(named / "SecAct.tsv.gz") in capsys.readouterr().out
    assert SIGNATURE_DIR_ENV not in os.environ  # the option applies to the one command only
    # fetching into a directory that has the files downloads nothing
    monkeypatch.setattr(signature_fetch, "_download_wheel", lambda into: pytest.fail("downloaded"))
    assert main(["signatures", "fetch", "--signature-dir", str(named)]) == 0
    assert capsys.readouterr().out.split() == [str(named / n) for n in SHA256]


def test_named_directory_is_not_a_silent_fallback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(SIGNATURE_DIR_ENV, str(tmp_path))
    with pytest.raises(CytoatlasError, match=f"{tmp_path} .* has no CytoSig.tsv.gz"):
        signature_data_file("CytoSig.tsv.gz")
    (tmp_path / "CytoSig.tsv.gz").write_bytes(b"not the file")
    with pytest.raises(CytoatlasError, match="not secactpy 0.3.1's CytoSig.tsv.gz .SHA-256 mismatch"):
        load_signatures("cytosig")


def test_search_order_secactpy_then_cache(tmp_path: Path, monkeypatch, nowhere: Path) -> None:
    monkeypatch.setattr(signature_data, "SHA256", _sums(FAKE))
    installed, cached = tmp_path / "site" / "data", nowhere / "signature_data"
    for d in (installed, cached):
        d.mkdir(parents=True)
        (d / "CytoSig.tsv.gz").write_bytes(FAKE["CytoSig.tsv.gz"])
    monkeypatch.setattr(signature_data, "secactpy_data_dir", lambda: installed)
    assert signature_data_file("CytoSig.tsv.gz") == installed / "CytoSig.tsv.gz"
    # another secactpy release's file is passed over for the cache's verified copy
    (installed / "CytoSig.tsv.gz").write_bytes(b"secactpy 9.9's matrix")
    assert signature_data_file("CytoSig.tsv.gz") == cached / "CytoSig.tsv.gz"


def test_damaged_cached_file_is_an_error(nowhere: Path, capsys) -> None:
    cached = nowhere / "signature_data"
    cached.mkdir(parents=True)
    (cached / "CytoSig.tsv.gz").write_bytes(b"truncated")
    with pytest.raises(CytoatlasError, match=r"cached .*CytoSig.tsv.gz is damaged \(SHA-256 mismatch\); run "
                       "`cytoatlas signatures fetch`"):
        signature_data_file("CytoSig.tsv.gz")
    assert main(["signatures"]) == 2
    assert "damaged" in capsys.readouterr().err


def test_no_source_at_all_is_one_line_naming_every_option(nowhere: Path, tmp_path: Path, capsys) -> None:
    assert main(["signatures"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in captured.err + captured.out
    assert err.startswith("cytoatlas: error: secactpy 0.3.1's CytoSig.tsv.gz")
    for option in ("`cytoatlas signatures fetch`", "--signature-dir", SIGNATURE_DIR_ENV,
                   "pip install secactpy==0.3.1", str(nowhere / "signature_data")):
        assert option in err
    # the demo says so before building anything
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n-cells", "2000"]) == 2
    assert "cytoatlas signatures fetch" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_run_says_so_before_the_pass(demo_h5ad: Path, nowhere: Path, tmp_path: Path, capsys) -> None:
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.demo]\nh5ad = "{demo_h5ad}"\nsample_col = "sample"\n'
                   '[atlas.demo.levels]\nL1 = "cell_type_l1"\n')
    out = tmp_path / "results"
    assert main(["run", "--registry", str(reg), "--atlas", "demo", "--out", str(out), "--signatures", "cytosig"]) == 2
    assert "secactpy 0.3.1's CytoSig.tsv.gz" in capsys.readouterr().err
    assert not out.exists()  # no pseudobulk pass was started


def test_extract_from_a_wheel_keeps_only_the_verified_files(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "secactpy-0.3.1-py3-none-any.whl", FAKE)
    dest = tmp_path / "sig"
    written = extract_signature_data(wheel, dest, _sums(FAKE))
    assert written == [dest / "CytoSig.tsv.gz", dest / "SecAct.tsv.gz"]
    assert sorted(p.name for p in dest.iterdir()) == ["CytoSig.tsv.gz", "SecAct.tsv.gz"]
    for name, data in FAKE.items():
        assert (dest / name).read_bytes() == data


def test_extract_checksum_mismatch_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "sig"
    dest.mkdir()
    (dest / "CytoSig.tsv.gz").write_bytes(b"the copy already there")
    damaged = {**FAKE, "SecAct.tsv.gz": FAKE["SecAct.tsv.gz"][:-1]}
    wheel = _fake_wheel(tmp_path / "secactpy-0.3.1-py3-none-any.whl", damaged)
    with pytest.raises(CytoatlasError, match="secactpy/data/SecAct.tsv.gz in .* does not match its recorded SHA-256"):
        extract_signature_data(wheel, dest, _sums(FAKE))
    # the first file verified, but is not put in place alone; no temporary is left
    assert sorted(p.name for p in dest.iterdir()) == ["CytoSig.tsv.gz"]
    assert (dest / "CytoSig.tsv.gz").read_bytes() == b"the copy already there"
    # secactpy 0.3.1's real sums: the fake wheel's files are not them
    with pytest.raises(CytoatlasError, match="CytoSig.tsv.gz .* does not match"):
        extract_signature_data(_fake_wheel(tmp_path / "w.whl", FAKE), tmp_path / "other")
    assert not list((tmp_path / "other").iterdir())


@pytest.mark.parametrize(("content", "message"), [(None, "has no secactpy/data/SecAct.tsv.gz"),
                                               (b"not a zip", "is not a readable wheel")])
def test_extract_refuses_what_is_not_the_wheel(tmp_path: Path, content: bytes | None, message: str) -> None:
    wheel = tmp_path / "secactpy.whl"
    if content is None:
        _fake_wheel(wheel, {"CytoSig.tsv.gz": FAKE["CytoSig.tsv.gz"]})
    else:
        wheel.write_bytes(content)
    with pytest.raises(CytoatlasError, match=message):
        extract_signature_data(wheel, tmp_path / "sig", _sums(FAKE))


def test_fetch_when_pip_cannot_download_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: no index, and nothing to find locally
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    assert main(["signatures", "fetch", "--signature-dir", str(tmp_path / "sig")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("cytoatlas: error: pip could not download secactpy==0.3.1")
    assert "--signature-dir" in err
    assert not list((tmp_path / "sig").iterdir())  # the temporary download directory is gone


def test_fetch_downloads_the_wheel_and_keeps_two_verified_files(nowhere: Path, monkeypatch, capsys) -> None:
    """The real fetch: pip downloads secactpy 0.3.1's wheel from the configured index (PyPI)."""
    assert main(["signatures", "fetch"]) == 0
    cached = nowhere / "signature_data"
    assert capsys.readouterr().out.split() == [str(cached / "CytoSig.tsv.gz"), str(cached / "SecAct.tsv.gz")]
    assert sorted(p.name for p in cached.iterdir()) == ["CytoSig.tsv.gz", "SecAct.tsv.gz"]  # the wheel is gone
    for name in SHA256:
        assert hashlib.sha256((cached / name).read_bytes()).hexdigest() == SHA256[name]
        assert signature_data_file(name) == cached / name  # found with no other source
    assert load_signatures("cytosig").version == RELEASE
    # once there, fetching again downloads nothing; a damaged copy is downloaded again
    monkeypatch.setattr(signature_fetch, "_download_wheel", lambda into: pytest.fail("downloaded again"))
    assert fetch_signature_data() == [cached / "CytoSig.tsv.gz", cached / "SecAct.tsv.gz"]
    (cached / "CytoSig.tsv.gz").write_bytes(b"damaged")
    with pytest.raises(pytest.fail.Exception, match="downloaded again"):
        fetch_signature_data()
