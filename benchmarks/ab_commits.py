"""Two commits of cytoatlas side by side: the same pseudobulk command, alternated in one run.

On a VM whose speed drifts by 10-20 % within minutes, two runs made minutes apart compare the machine, not the
code. This script checks out each commit in a git worktree under ``benchmarks/out/ab/`` and alternates them
(old, new, old, new, ...) on the 300 k-cell synthetic atlas of ``bench_pseudobulk.py``, each run a fresh
process, and prints for every run: when the plan line appeared, the 100 % line (last block or partition), the
"pass done" line (cluster: partition states merged in the driver) and the whole command.

    .venv/bin/python benchmarks/ab_commits.py a7bad40 HEAD --args "--scheduler local:2" --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pseudobulk import REPO, ensure_atlas, run_child  # noqa: E402
from synth_atlas import registry_path  # noqa: E402


def worktree(rev: str, root: Path) -> Path:
    """A checkout of ``rev`` (made once, kept for the next run)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    path = root / sha
    if not (path / "src" / "cytoatlas").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), sha], cwd=REPO, check=True,
                       capture_output=True)
    return path


def _at(lines: list[tuple[float, str]], text: str) -> str:
    """When the first line containing ``text`` appeared (seconds since launch)."""
    t = next((t for t, line in lines if text in line), None)
    return f"{t:6.2f}" if t is not None else "     -"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--args", default="", help="extra pseudobulk arguments, e.g. '--threads 2'")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-cells", type=int, default=300_000)
    a = ap.parse_args(argv)
    out = HERE / "out" / "ab"
    out.mkdir(parents=True, exist_ok=True)
    h5ad = ensure_atlas(HERE / "data", a.n_cells, 0, 0, print)
    trees = {name: worktree(rev, out / "trees") for name, rev in (("old", a.old), ("new", a.new))}
    for r in range(a.repeat):
        for name, tree in trees.items():
            dest = out / f"run_{name}"
            shutil.rmtree(dest, ignore_errors=True)
            env = dict(os.environ, PYTHONPATH=str(tree / "src"))
            cmd = [sys.executable, "-m", "cytoatlas", "pseudobulk", "--registry", str(registry_path(h5ad)),
                   "--atlas", "synth", "--out", str(dest), *shlex.split(a.args)]
            res = run_child(cmd, out / f"{name}_{r}.log", env=env)
            if res["returncode"] != 0:
                raise SystemExit(f"{name} failed, log {out / f'{name}_{r}.log'}")
            lines = res["_lines"]
            print(f"{name} ({tree.name}): plan {_at(lines, 'cells x')}  100% {_at(lines, '(100.0%)')}  "
                  f"pass done {_at(lines, 'pass done')}  "
                  f"wall {res['wall_s']:6.2f}  other CPU {res['other_cpu_s']}", flush=True)
            shutil.rmtree(dest, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
