"""cytoatlas pseudobulk benchmark: I/O floor vs cytoatlas vs the seed (old) algorithm, side by side.

Every measured program runs in its own fresh subprocess; wall time is taken around it and peak RSS is that
child's ``ru_maxrss`` (``os.wait4``). On the ``--n-cells`` atlas (default 300k cells x 20k genes):

(a) ``io_floor.py``: read + decompress X's CSR blocks with h5py, nothing else;
(b) the ``cytoatlas pseudobulk`` CLI, full run (4 levels, samples, bootstrap B=100, files written);
(c) ``seed_baseline.py``: the old dense algorithm, same outputs;

plus cytoatlas and the I/O floor on a ``--large-cells`` atlas (default 2x; peak RSS should not grow) and
cytoatlas on an atlas with ``--extra-obs`` (default 200) extra obs columns (time to first block should not
grow). Missing atlases are generated in ``benchmarks/data/`` (``synth_atlas.py``). Prints machine info,
a table and the target ratios, and writes everything to ``benchmarks/out/results.json``.

Usage::

    python benchmarks/bench_pseudobulk.py                       # the full benchmark (~8 min on 2 cores)
    python benchmarks/bench_pseudobulk.py --n-cells 50000 --large-cells 100000 --skip-baseline
    python benchmarks/bench_pseudobulk.py --generate-only       # just make the atlases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import synth_atlas  # noqa: E402

FIRST_BLOCK_RE = re.compile(r"first block processed in\s+([0-9.]+)\s*s")
# the final summary line: "... written in 39.1s, peak memory ..." or "... (... kept) in 39.1s, peak memory"
SUMMARY_RE = re.compile(r"\bin\s+([0-9.]+)\s*s,\s*peak memory")
PASS_DONE_RE = re.compile(r"\(100\.0%\)")
PLAN_RE = re.compile(r"cells x [0-9,]+ genes")
LEVELS = ("l1", "l2", "l3", "l4")

TARGETS = {
    "cytoatlas_over_io_floor_time": ("<=", 1.3),
    "baseline_over_cytoatlas_time": (">=", 10.0),
    "baseline_over_cytoatlas_rss": (">=", 5.0),
    "rss_large_over_small": ("<=", 1.2),
    "first_block_s": ("<=", 2.0),
    "first_block_s_extra_obs": ("<=", 2.0),
}


# ------------------------------------------------------------------------------------------------ helpers
def atlas_stem(n_cells: int, extra_obs: int = 0) -> str:
    stem = f"synth_{n_cells // 1000}k" if n_cells % 1000 == 0 else f"synth_{n_cells}"
    return f"{stem}_obs{extra_obs}" if extra_obs else stem


def ensure_atlas(data_dir: Path, n_cells: int, extra_obs: int, gen_seed: int, log) -> Path:
    """The atlas of that size (generated if missing or made with other parameters) and its registry."""
    h5ad = data_dir / f"{atlas_stem(n_cells, extra_obs)}.h5ad"
    want = synth_atlas.generation_params(n_cells, 20_000, 1_200, extra_obs, gen_seed)
    if h5ad.exists() and synth_atlas.stored_params(h5ad) == want:
        if not synth_atlas.registry_path(h5ad).exists():
            synth_atlas.write_registry(h5ad)
        return h5ad
    log(f"generating {h5ad.name} ({n_cells:,d} cells, {extra_obs} extra obs) ...")
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        str(HERE / "synth_atlas.py"),
        str(h5ad),
        "--n-cells",
        str(n_cells),
        "--extra-obs",
        str(extra_obs),
        "--seed",
        str(gen_seed),
        "--quiet",
    ]
    subprocess.run(cmd, check=True)
    log(f"  done in {time.perf_counter() - t0:.0f}s ({h5ad.stat().st_size / 1e9:.2f} GB)")
    return h5ad


def warm_cache(path: Path) -> float:
    """Read the file once so every timed run starts from the same (page-cached) state."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(64 << 20):
            pass
    return time.perf_counter() - t0


def _rss_sampler(pid: int, t0: float, samples: list, stop: threading.Event, every: float = 0.1) -> None:
    """Append (seconds since launch, RSS MB) of process ``pid`` every ``every`` s until ``stop``."""
    status = Path(f"/proc/{pid}/status")
    while not stop.wait(every):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    samples.append((time.perf_counter() - t0, int(line.split()[1]) / 1024))
                    break
        except OSError:
            return


def run_child(cmd: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` in a fresh process: wall time, the child's own peak RSS / CPU times, the time (since
    launch) at which each output line appeared, and RSS sampled every 0.1 s (to tell in which phase the
    peak is). stdout and stderr both go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # flush the previous run's gigabytes of output first, so their writeback does not slow this one down
    os.sync()
    lines: list[tuple[float, str]] = []
    samples: list[tuple[float, float]] = []
    busy0 = _busy_cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env, cwd=REPO
    )
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(proc.pid, t0, samples, stop), daemon=True)
    sampler.start()
    with open(log_path, "w") as fh:
        fh.write(f"# {shlex.join(cmd)}\n")
        for line in proc.stdout:
            t = time.perf_counter() - t0
            lines.append((t, line.rstrip("\n")))
            fh.write(f"[{t:8.3f}s] {line}")
    proc.stdout.close()
    stop.set()
    sampler.join()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    busy1 = _busy_cpu_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen from waiting again
    return {
        "cmd": shlex.join(cmd),
        "returncode": proc.returncode,
        "wall_s": wall,
        "peak_rss_mb": ru.ru_maxrss / 1024,  # Linux: KiB
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        # CPU seconds the rest of the machine used meanwhile (other processes, this driver's reader):
        # well above 0 means the timing was disturbed
        "other_cpu_s": (
            round(busy1 - busy0 - ru.ru_utime - ru.ru_stime, 1) if busy0 is not None and busy1 else None
        ),
        "log": str(log_path),
        "_lines": lines,
        "_rss": samples,
    }


def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent busy (all CPUs, all processes) since boot, from /proc/stat."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _peak_between(samples, lo: float | None, hi: float | None) -> float | None:
    vals = [mb for t, mb in samples if (lo is None or t >= lo) and (hi is None or t <= hi)]
    return round(max(vals), 1) if vals else None


def _first_match(lines, regex) -> tuple[float | None, float | None]:
    """(time the line appeared, captured number) of the first line matching ``regex``."""
    for t, line in lines:
        m = regex.search(line)
        if m:
            return t, float(m.group(1)) if m.groups() else None
    return None, None


def _last_json(lines) -> dict | None:
    for _, line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _tail(lines, n=15) -> str:
    return "\n".join(line for _, line in lines[-n:])


def expected_files(out: Path, n_bootstrap: int) -> list[Path]:
    kinds = ["", "_samples"] + (["_resampled"] if n_bootstrap > 0 else [])
    return [out / f"synth_pseudobulk_{lv}{k}.h5ad" for lv in LEVELS for k in kinds]


def cytoatlas_cmd(override: str | None) -> list[str]:
    if override:
        return shlex.split(override)
    exe = Path(sys.executable).with_name("cytoatlas")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("cytoatlas")
    return [found] if found else [sys.executable, "-m", "cytoatlas"]


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy (any process) over ``seconds``, from /proc/stat."""

    def snap():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0)  # total, idle + iowait

    try:
        t1, i1 = snap()
        time.sleep(seconds)
        t2, i2 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (i2 - i1) / max(t2 - t1, 1), 3)


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_busy_at_start": cpu_busy(2.0),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024**2, 1)
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("cytoatlas", "numpy", "scipy", "pandas", "h5py", "anndata", "numba"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    info["versions"] = versions
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info["git"] = rev + ("+dirty(src)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        info["git"] = None
    return info


# ------------------------------------------------------------------------------------------------- runs
class Bench:
    def __init__(self, args):
        self.a = args
        self.out = Path(args.out_dir).resolve()
        self.logs = self.out / "logs"
        self.runs: dict[str, dict] = {}

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def _best_of(self, name: str, make_cmd, n: int, parse) -> dict:
        """Run ``n`` times, keep the fastest (all walls recorded)."""
        best, walls, rss = None, [], []
        for i in range(n):
            r = make_cmd(i)
            walls.append(round(r["wall_s"], 3))
            rss.append(round(r["peak_rss_mb"], 1))
            if r["returncode"] != 0:
                self.log(f"  {name}: FAILED (exit {r['returncode']}), log {r['log']}\n{_tail(r['_lines'])}")
                best = r
                break
            parse(r)
            if best is None or r["wall_s"] < best["wall_s"]:
                best = r
        best["all_wall_s"], best["all_peak_rss_mb"] = walls, rss
        best.pop("_lines", None)
        best.pop("_rss", None)
        self.runs[name] = best
        ok = "ok" if best["returncode"] == 0 else "FAILED"
        self.log(f"  {name}: {best['wall_s']:.2f}s, peak RSS {best['peak_rss_mb']:.0f} MB ({ok})")
        return best

    def io_floor(self, h5ad: Path, tag: str, method: str = "h5py") -> dict:
        cmd = [
            sys.executable,
            str(HERE / "io_floor.py"),
            str(h5ad),
            "--batch-size",
            str(self.a.batch_size),
            "--method",
            method,
            "--json",
        ]
        name = "io_floor" if method == "h5py" else f"io_floor_{method}"

        def parse(r):
            j = _last_json(r["_lines"]) or {}
            r["internal_s"] = j.get("seconds")
            r["pass_s"] = j.get("seconds")
            r["nnz"] = j.get("nnz")

        return self._best_of(
            f"{name}_{tag}",
            lambda i: run_child(cmd, self.logs / f"{name}_{tag}_{i}.log"),
            self.a.repeat,
            parse,
        )

    def cytoatlas(self, h5ad: Path, tag: str, repeat: int) -> dict:
        out = self.out / f"cytoatlas_{h5ad.stem}"
        reg = synth_atlas.registry_path(h5ad)
        cmd = cytoatlas_cmd(self.a.cytoatlas) + [
            "pseudobulk",
            "--registry",
            str(reg),
            "--atlas",
            "synth",
            "--out",
            str(out),
            "--batch-size",
            str(self.a.batch_size),
            "--n-bootstrap",
            str(self.a.n_bootstrap),
            "--seed",
            str(self.a.seed),
        ]

        def one(i):
            shutil.rmtree(out, ignore_errors=True)
            return run_child(cmd, self.logs / f"cytoatlas_{tag}_{i}.log")

        def parse(r):
            lines = r["_lines"]
            t_fb, fb = _first_match(lines, FIRST_BLOCK_RE)
            t_pass, _ = _first_match(lines, PASS_DONE_RE)
            t_sum, total = _first_match(lines, SUMMARY_RE)
            t_plan, _ = _first_match(lines, PLAN_RE)
            r["first_block_s"] = fb  # as logged by cytoatlas (since the pseudobulk() call)
            r["first_block_since_launch_s"] = t_fb  # seen from outside: includes interpreter start + imports
            r["internal_s"] = total
            r["pass_end_since_launch_s"] = t_pass
            r["write_s"] = (t_sum - t_pass) if (t_sum is not None and t_pass is not None) else None
            # the pass: from the plan line (obs turned into atoms, blocks start) to the 100 % progress line
            r["pass_s"] = (t_pass - t_plan) if (t_pass is not None and t_plan is not None) else None
            r["peak_rss_pass_mb"] = _peak_between(r["_rss"], None, t_pass)
            r["peak_rss_write_mb"] = _peak_between(r["_rss"], t_pass, None) if t_pass is not None else None
            missing = [p.name for p in expected_files(out, self.a.n_bootstrap) if not p.exists()]
            r["missing_outputs"] = missing
            r["output_gb"] = round(sum(p.stat().st_size for p in out.glob("*.h5ad")) / 1e9, 3)
            if fb is None:
                self.log(f"  warning: no 'first block processed in' line in {r['log']}")
            if missing:
                self.log(f"  warning: cytoatlas did not write {missing}")

        return self._best_of(f"cytoatlas_{tag}", one, repeat, parse)

    def baseline(self, h5ad: Path, tag: str) -> dict:
        out = self.out / f"seed_{h5ad.stem}"
        reg = synth_atlas.registry_path(h5ad)
        cmd = [
            sys.executable,
            str(HERE / "seed_baseline.py"),
            "--registry",
            str(reg),
            "--atlas",
            "synth",
            "--out",
            str(out),
            "--batch-size",
            str(self.a.batch_size),
            "--n-bootstrap",
            str(self.a.n_bootstrap),
            "--seed",
            str(self.a.seed),
            "--dense-dtype",
            self.a.baseline_dense_dtype,
            "--json",
        ]

        def one(i):
            shutil.rmtree(out, ignore_errors=True)
            return run_child(cmd, self.logs / f"seed_{tag}_{i}.log")

        def parse(r):
            j = _last_json(r["_lines"]) or {}
            r["internal_s"] = j.get("seconds")
            r["pass_s"] = j.get("pass_seconds")  # includes read_h5ad(backed) of obs
            r["first_block_s"] = j.get("first_block_seconds")
            r["missing_outputs"] = [p.name for p in expected_files(out, self.a.n_bootstrap) if not p.exists()]

        return self._best_of(f"baseline_{tag}", one, 1, parse)

    def check(self, h5ad: Path) -> dict:
        a, b = self.out / f"cytoatlas_{h5ad.stem}", self.out / f"seed_{h5ad.stem}"
        cmd = [sys.executable, str(HERE / "compare_trees.py"), str(a), str(b), "--mode", "rows"]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        problems = [x for x in r.stdout.splitlines() if x.strip()]
        self.log(
            "  outputs: cytoatlas and seed agree (cell-type and sample files; resample rows)"
            if r.returncode == 0
            else "  outputs DIFFER:\n    " + "\n    ".join(problems[:20])
        )
        return {"same": r.returncode == 0, "problems": problems}


def _ratio(num, den):
    return (num / den) if (num is not None and den) else None


def summarise(runs: dict, small: str, large: str | None, obs: str | None) -> dict:
    def get(name, key):
        r = runs.get(name)
        return r.get(key) if r and r.get("returncode") == 0 else None

    ratios = {
        "cytoatlas_over_io_floor_time": _ratio(
            get(f"cytoatlas_{small}", "wall_s"), get(f"io_floor_{small}", "wall_s")
        ),
        "cytoatlas_over_io_floor_time_inprocess": _ratio(
            get(f"cytoatlas_{small}", "internal_s"), get(f"io_floor_{small}", "internal_s")
        ),
        "cytoatlas_pass_over_io_floor": _ratio(
            get(f"cytoatlas_{small}", "pass_s"), get(f"io_floor_{small}", "pass_s")
        ),
        "cytoatlas_over_io_floor_direct_time": _ratio(
            get(f"cytoatlas_{small}", "wall_s"), get(f"io_floor_direct_{small}", "wall_s")
        ),
        "cytoatlas_pass_over_io_floor_direct": _ratio(
            get(f"cytoatlas_{small}", "pass_s"), get(f"io_floor_direct_{small}", "pass_s")
        ),
        "baseline_over_cytoatlas_time": _ratio(
            get(f"baseline_{small}", "wall_s"), get(f"cytoatlas_{small}", "wall_s")
        ),
        "baseline_over_cytoatlas_rss": _ratio(
            get(f"baseline_{small}", "peak_rss_mb"), get(f"cytoatlas_{small}", "peak_rss_mb")
        ),
        "first_block_s": get(f"cytoatlas_{small}", "first_block_s"),
    }
    if large:
        ratios["rss_large_over_small"] = _ratio(
            get(f"cytoatlas_{large}", "peak_rss_mb"), get(f"cytoatlas_{small}", "peak_rss_mb")
        )
        ratios["cytoatlas_over_io_floor_time_large"] = _ratio(
            get(f"cytoatlas_{large}", "wall_s"), get(f"io_floor_{large}", "wall_s")
        )
        ratios["cytoatlas_pass_over_io_floor_large"] = _ratio(
            get(f"cytoatlas_{large}", "pass_s"), get(f"io_floor_{large}", "pass_s")
        )
    if obs:
        ratios["first_block_s_extra_obs"] = get(f"cytoatlas_{obs}", "first_block_s")
    return ratios


def _verdict(key, value) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, target = TARGETS[key]
    ok = value <= target if op == "<=" else value >= target
    return f"target {op} {target:g}  {'PASS' if ok else 'FAIL'}"


def print_report(info: dict, atlases: dict, runs: dict, ratios: dict, check: dict | None) -> None:
    v = info["versions"]
    print("\n" + "=" * 122)
    print(
        f"machine: {info.get('cpu_model', '?')}, {info['cpu_count']} cores ({info['cpus_usable']} usable), "
        f"{info.get('ram_gb', '?')} GB RAM, load avg at start {info['load_avg_at_start']}, "
        f"CPUs busy at start {info['cpu_busy_at_start']}"
    )
    print(f"python {info['python']} | " + " | ".join(f"{k} {v[k]}" for k in v) + f" | git {info['git']}")
    for tag, a in atlases.items():
        print(
            f"atlas {tag}: {a['path']} ({a['n_cells']:,d} cells, {a['extra_obs']} extra obs, "
            f"{a['gb']:.2f} GB)"
        )
    print("-" * 122)
    hdr = (
        f"{'run':<28}{'wall s':>9}{'in-proc s':>11}{'pass s':>8}{'write s':>9}{'peak RSS MB':>13}"
        f"{'pass/write':>12}{'CPU s':>8}{'other CPU':>10}{'1st block s':>13}"
    )
    print(hdr)
    for name, r in runs.items():

        def f(x, fmt):
            return format(x, fmt) if isinstance(x, (int, float)) else "-".rjust(int(fmt.split(".")[0]))

        status = "" if r["returncode"] == 0 else f"  FAILED (exit {r['returncode']})"
        phases = (
            f"{r['peak_rss_pass_mb']:.0f}/{r['peak_rss_write_mb']:.0f}"
            if r.get("peak_rss_pass_mb") and r.get("peak_rss_write_mb")
            else "-"
        )
        print(
            f"{name:<28}{f(r['wall_s'], '9.2f')}{f(r.get('internal_s'), '11.2f')}{f(r.get('pass_s'), '8.2f')}"
            f"{f(r.get('write_s'), '9.2f')}{f(r['peak_rss_mb'], '13.0f')}{phases:>12}"
            f"{f(r['user_s'] + r['sys_s'], '8.1f')}{f(r.get('other_cpu_s'), '10.1f')}"
            f"{f(r.get('first_block_s'), '13.2f')}{status}"
        )
    print("-" * 122)
    labels = {
        "cytoatlas_over_io_floor_time": "cytoatlas / io_floor time (wall)",
        "cytoatlas_over_io_floor_time_inprocess": "cytoatlas / io_floor time (in-process)",
        "cytoatlas_over_io_floor_time_large": "cytoatlas / io_floor time (large atlas)",
        "cytoatlas_pass_over_io_floor": "cytoatlas pass only / io_floor",
        "cytoatlas_over_io_floor_direct_time": "cytoatlas / io_floor_direct time (wall)",
        "cytoatlas_pass_over_io_floor_direct": "cytoatlas pass only / io_floor_direct",
        "cytoatlas_pass_over_io_floor_large": "cytoatlas pass only / io_floor (large)",
        "baseline_over_cytoatlas_time": "baseline / cytoatlas time",
        "baseline_over_cytoatlas_rss": "baseline / cytoatlas peak RSS",
        "rss_large_over_small": "peak RSS large / small atlas",
        "first_block_s": "time to first block (s)",
        "first_block_s_extra_obs": "time to first block, extra obs (s)",
    }
    for key, label in labels.items():
        if key in ratios:
            val = ratios[key]
            print(
                f"{label:<42}{format(val, '8.3f') if val is not None else '       -'}   {_verdict(key, val)}"
            )
    if check is not None:
        print(f"{'outputs cytoatlas == seed':<42}{'     yes' if check['same'] else '      NO'}")
    disturbed = [
        f"{n} ({r['other_cpu_s']:.0f} CPU s)"
        for n, r in runs.items()
        if r.get("other_cpu_s") is not None and r["other_cpu_s"] > max(1.0, 0.1 * r["wall_s"])
    ]
    if disturbed:
        print(f"note: other processes used the CPUs during: {', '.join(disturbed)}; rerun on a quiet machine")
    print("=" * 122)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-cells", type=int, default=300_000, help="main atlas size (default 300000)")
    ap.add_argument(
        "--large-cells",
        type=int,
        default=None,
        help="atlas for the RSS-flatness run (default 2 x --n-cells; 0 = skip)",
    )
    ap.add_argument(
        "--extra-obs",
        type=int,
        default=200,
        help="extra obs columns of the time-to-first-block atlas (default 200; 0 = skip)",
    )
    ap.add_argument("--skip-baseline", action="store_true", help="do not run the seed algorithm")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--skip-obs", action="store_true")
    ap.add_argument(
        "--baseline-dense-dtype",
        choices=["float32", "float64"],
        default="float32",
        help="dtype of the seed's dense blocks (default float32)",
    )
    ap.add_argument(
        "--skip-direct-floor",
        action="store_true",
        help="do not also measure the raw-chunk + ISA-L floor (io_floor.py --method direct)",
    )
    ap.add_argument("--no-check", action="store_true", help="do not compare cytoatlas and seed outputs")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of io_floor / cytoatlas, fastest kept (default 1)"
    )
    ap.add_argument("--batch-size", type=int, default=50_000)
    ap.add_argument("--n-bootstrap", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42, help="bootstrap seed")
    ap.add_argument("--gen-seed", type=int, default=0, help="synthetic atlas seed")
    ap.add_argument("--data-dir", default=str(HERE / "data"))
    ap.add_argument("--out-dir", default=str(HERE / "out"))
    ap.add_argument("--json-out", default=None, help="results JSON (default OUT_DIR/results.json)")
    ap.add_argument("--cytoatlas", default=None, help="command to run cytoatlas (default: venv entry point)")
    ap.add_argument("--generate-only", action="store_true", help="make the missing atlases and stop")
    ap.add_argument("--clean", action="store_true", help="delete the pseudobulk outputs at the end")
    a = ap.parse_args(argv)

    large_n = 2 * a.n_cells if a.large_cells is None else a.large_cells
    if a.skip_large:
        large_n = 0
    extra = 0 if a.skip_obs else a.extra_obs
    data_dir = Path(a.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(a)
    bench.out.mkdir(parents=True, exist_ok=True)

    small_tag = atlas_stem(a.n_cells)
    large_tag = atlas_stem(large_n) if large_n else None
    obs_tag = atlas_stem(a.n_cells, extra) if extra else None
    specs = {small_tag: (a.n_cells, 0)}
    if large_tag:
        specs[large_tag] = (large_n, 0)
    if obs_tag:
        specs[obs_tag] = (a.n_cells, extra)
    paths = {tag: ensure_atlas(data_dir, n, k, a.gen_seed, bench.log) for tag, (n, k) in specs.items()}
    atlases = {
        tag: {
            "path": str(p),
            "n_cells": specs[tag][0],
            "extra_obs": specs[tag][1],
            "gb": p.stat().st_size / 1e9,
        }
        for tag, p in paths.items()
    }
    if a.generate_only:
        return 0

    info = machine_info()
    bench.log(
        f"machine: {info.get('cpu_model', '?')}, {info['cpu_count']} cores, {info.get('ram_gb')} GB RAM, "
        f"load {info['load_avg_at_start']}; cytoatlas {info['versions'].get('cytoatlas')} ({info['git']})"
    )
    busy = info["cpu_busy_at_start"]
    if busy is not None and busy > 0.2:
        bench.log(f"warning: the CPUs are {busy:.0%} busy before the benchmark starts: timings will be noisy")

    check = None
    t_start = time.perf_counter()
    bench.log(f"[{small_tag}] warming page cache: {warm_cache(paths[small_tag]):.1f}s")
    bench.io_floor(paths[small_tag], small_tag)
    if not a.skip_direct_floor:
        bench.io_floor(paths[small_tag], small_tag, "direct")
    bench.cytoatlas(paths[small_tag], small_tag, a.repeat)
    if not a.skip_baseline:
        bench.baseline(paths[small_tag], small_tag)
        ok = all(
            bench.runs.get(f"{k}_{small_tag}", {}).get("returncode") == 0 for k in ("cytoatlas", "baseline")
        )
        if not a.no_check and ok:
            check = bench.check(paths[small_tag])
    if large_tag:
        bench.log(f"[{large_tag}] warming page cache: {warm_cache(paths[large_tag]):.1f}s")
        bench.io_floor(paths[large_tag], large_tag)
        bench.cytoatlas(paths[large_tag], large_tag, 1)
    if obs_tag:
        bench.log(f"[{obs_tag}] warming page cache: {warm_cache(paths[obs_tag]):.1f}s")
        bench.cytoatlas(paths[obs_tag], obs_tag, a.repeat)

    ratios = summarise(bench.runs, small_tag, large_tag, obs_tag)
    print_report(info, atlases, bench.runs, ratios, check)
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bench_seconds": round(time.perf_counter() - t_start, 1),
        "machine": info,
        "parameters": {
            k: getattr(a, k)
            for k in (
                "n_cells",
                "batch_size",
                "n_bootstrap",
                "seed",
                "gen_seed",
                "repeat",
                "baseline_dense_dtype",
            )
        }
        | {"large_cells": large_n, "extra_obs": extra},
        "atlases": atlases,
        "runs": bench.runs,
        "ratios": ratios,
        "targets": {k: {"op": op, "value": v} for k, (op, v) in TARGETS.items()},
        "verdicts": {k: _verdict(k, ratios.get(k)) for k in TARGETS if k in ratios},
        "outputs_match_seed": check,
    }
    json_out = Path(a.json_out) if a.json_out else bench.out / "results.json"
    json_out.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {json_out}")
    if a.clean:
        for p in bench.out.glob("cytoatlas_*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in bench.out.glob("seed_*"):
            shutil.rmtree(p, ignore_errors=True)
    failed = [n for n, r in bench.runs.items() if r["returncode"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
