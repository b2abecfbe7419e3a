#!/usr/bin/env bash
# What a new user on Python 3.13 gets, checked from scratch: a fresh virtual environment, `pip install .` from
# wheels only (no dependency compiled), numpy >= 2 and no secactpy, the CytoSig / SecAct files fetched into a
# cache of its own, then the test suite less the parity tests (they need secactpy 0.3.1, hence numpy < 2).
# Extra arguments go to pytest (e.g. -x). Python 3.13: $PYTHON313, else pyenv's, else python3.13 on PATH, else
# Debian's python3.13 package (Debian 13 and later; as root). Also checks that installing into an environment
# that has numpy 2 already would keep its numpy.
set -euo pipefail
cd "$(dirname "$0")/.."

is313() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
PY=${PYTHON313:-}
if [ -z "$PY" ] && command -v pyenv >/dev/null; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' || true); do
    p=$(PYENV_VERSION=$v pyenv which python 2>/dev/null) && is313 "$p" && { PY=$p; break; }
  done
fi
if [ -z "$PY" ] && command -v python3.13 >/dev/null && is313 python3.13; then PY=$(command -v python3.13); fi
if [ -z "$PY" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q --no-install-recommends python3.13 python3.13-venv >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3.13 python3.13-venv \
         >/dev/null 2>&1; }; } && is313 python3.13 && PY=$(command -v python3.13)
fi
[ -n "$PY" ] || { echo "py313: no Python 3.13 found (pyenv, python3.13 on PATH, Debian's python3.13); set" \
                       "PYTHON313=/path/to/python3.13" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cytoatlas-py313.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/venv"
V="$work/venv/bin/python"
"$V" -m pip install --quiet --upgrade pip
start=$SECONDS
# --only-binary :all: makes any dependency that would need compiling an error instead of a long build
# (with the docs extra: the suite builds the documentation, tests/test_docs.py, so its tools are checked on 3.13 too)
"$V" -m pip install --quiet --only-binary :all: '.[test,docs]'
"$V" - "$((SECONDS - start))" <<'PY'
import importlib.util, sys
import numpy
assert int(numpy.__version__.split(".")[0]) >= 2, f"numpy {numpy.__version__} installed, expected >= 2"
assert importlib.util.find_spec("secactpy") is None, "secactpy was installed: it must not be a dependency"
print(f"py313: Python {sys.version.split()[0]}, numpy {numpy.__version__}, no secactpy; installed from wheels "
      f"in {sys.argv[1]} s")
PY
# an environment that already has numpy 2 (the oldest with 3.13 wheels) keeps it: pip's plan installs no numpy
"$PY" -m venv "$work/keep"
"$work/keep/bin/python" -m pip install --quiet --only-binary :all: numpy==2.1.3
"$work/keep/bin/python" -m pip install --quiet --dry-run --only-binary :all: --report "$work/plan.json" '.[test]'
"$V" - "$work/plan.json" <<'PY'
import json, sys
plan = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
assert "numpy" not in plan, f"installing cytoatlas would change numpy 2.1.3 to {plan['numpy']}"
assert "secactpy" not in plan and "cytoatlas" in plan
print(f"py313: into a venv with numpy 2.1.3, pip would install {len(plan)} packages and keep numpy as it is")
PY
rm -rf "$work/keep"
export CYTOATLAS_CACHE="$work/cache"  # tests/conftest.py takes the fetched files from here
"$work/venv/bin/cytoatlas" -q signatures fetch >/dev/null
"$V" -m pytest -m "not parity" -p no:cacheprovider "$@"
