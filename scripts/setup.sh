#!/usr/bin/env bash
# Set up cytoatlas in ./.venv (idempotent): a Python >= 3.11 virtual environment with the package (editable),
# its test tools and the CytoSig / SecAct signature files. Safe to re-run; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: need Python >= 3.11 (set PYTHON=/path/to/python)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# the parity tests' reference, secactpy 0.3.1, pins numpy < 2, which has wheels up to Python 3.12 only: on
# 3.13 the parity extra is left out (run the suite with -m "not parity" there)
# (the docs extra builds the documentation, which the test suite does: tests/test_docs.py)
extras=test,docs
if .venv/bin/python -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then extras=test,docs,parity; fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# CytoSig and SecAct: an installed secactpy's files, else downloaded once into the cache (pip, then checked)
.venv/bin/cytoatlas -q signatures fetch >/dev/null
echo "setup: cytoatlas $(.venv/bin/python -c 'import cytoatlas; print(cytoatlas.__version__)') ready in .venv" \
     "($(.venv/bin/python -c 'import sys, numpy; print(f"Python {sys.version.split()[0]}, numpy {numpy.__version__}")'))"
