"""`cytoatlas serve` refuses what it cannot serve with one line, before any banner: a port out of range, a token
file that is not UTF-8 text, a token file its group or others may read (unless allowed, then it warns)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _api_helpers import SRC, running_server

import cytoatlas
from cytoatlas.errors import CytoatlasError

TOKEN = "serve-errors-token-0123456789"


def _serve(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "cytoatlas", "serve", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "serving" not in proc.stderr + proc.stdout  # no banner
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cytoatlas: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_a_port_out_of_range_is_one_line(api_db: Path, port: str) -> None:
    line = _one_line_error(_serve("--db", str(api_db), "--port", port))
    assert "port" in line and "65535" in line and port in line


def test_a_token_file_that_is_not_utf8_is_one_line(api_db: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe" + "a-token-in-utf16".encode("utf-16-le"))
    token.chmod(0o600)
    line = _one_line_error(_serve("--db", str(api_db), "--token-file", str(token)))
    assert str(token) in line and "UTF-8" in line


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_others_may_read_is_refused_naming_the_fix(api_db: Path, tmp_path: Path, mode: int) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(mode)
    line = _one_line_error(_serve("--db", str(api_db), "--token-file", str(token)))
    assert f"chmod 600 {token}" in line and "--allow-readable-token-file" in line
    with pytest.raises(CytoatlasError, match="chmod 600"):  # the Python API too
        cytoatlas.serve(api_db, token_file=token)


def test_a_readable_token_file_is_served_when_allowed(api_db: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    with running_server(api_db, "--token-file", str(token), "--allow-readable-token-file") as url:
        assert httpx.get(url + "/api/v1/atlases").status_code == 401
        assert httpx.get(url + "/api/v1/atlases", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        port = url.rsplit(":", 1)[1]
    log = (api_db.parent / f"serve-{port}.log").read_text()  # running_server's log of this server
    assert "readable by group and others" in log


def test_an_owner_only_token_file_is_served(api_db: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    with running_server(api_db, "--token-file", str(token)) as url:
        assert httpx.get(url + "/api/v1/atlases", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
