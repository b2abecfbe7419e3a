"""Every data file the package reads is declared as package data, so that a wheel (not only an editable install)
holds it: a file left out installs fine and fails at run time (the ground truth's alias table once did)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_of_the_package_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["cytoatlas"]
    package = ROOT / "src" / "cytoatlas"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "no data files found: the test looks in the wrong place"
    missing = [f for f in data if not any(fnmatch.fnmatch(f, g) and "/" not in f[len(g.rstrip("*")):]
                                          for g in globs)]
    assert not missing, f"not declared in [tool.setuptools.package-data]: {missing}"
