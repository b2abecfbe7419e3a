#!/usr/bin/env bash
# Set up cytoatlas in ./.venv (idempotent): a Python >= 3.11 virtual environment with the package (editable)
# and its test tools. Safe to re-run; it only installs what is missing.
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
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "setup: cytoatlas $(.venv/bin/python -c 'import cytoatlas; print(cytoatlas.__version__)') ready in .venv"
