"""Where work runs: the cores of this process, or a Dask cluster named by a scheduler string.

``scheduler`` is one of
- ``None``: this process (threads for decompression, see ``threads``);
- ``"local:N"``: a Dask ``LocalCluster`` of N single-threaded worker processes, started and stopped here;
- ``"tcp://host:port"`` (or ``tls://``, ``ucx://``...): an existing Dask scheduler, left running;
- ``"slurm"``: a dask-jobqueue ``SLURMCluster`` started here (its jobs are the workers) and stopped at the end.

SLURM options come, in this order of precedence, from the call (CLI ``--slurm-*``), the registry TOML's
``[slurm]`` table, and dask-jobqueue's own configuration (``jobqueue.slurm.*`` in ``~/.config/dask/``,
e.g. ``job-directives-skip`` for directives a site rejects), as dask-jobqueue users expect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cytoatlas.errors import CytoatlasError

log = logging.getLogger("cytoatlas")

# SLURMCluster keywords a registry or the CLI may set (dask-jobqueue's names); `jobs` is how many to start
SLURM_KEYS = ("queue", "account", "cores", "processes", "memory", "walltime", "job_extra_directives",
              "job_directives_skip", "job_script_prologue", "local_directory", "log_directory", "python",
              "interface", "death_timeout", "worker_extra_args", "job_name", "jobs", "scheduler_options")

SLURM_GRACE = 60  # seconds to wait for every SLURM job's workers before starting with those that run


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a SLURM allocation or ``taskset``, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def slurm_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """SLURM options merged left to right (later layers win; ``None`` values are unset), keys checked."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = key.replace("-", "_")
            if key not in SLURM_KEYS:
                raise CytoatlasError(f"unknown SLURM option {key!r}; known: {', '.join(SLURM_KEYS)}")
            if value is not None:
                merged[key] = value
    return merged


def check_scheduler(scheduler: str | None) -> None:
    """Fail early, with the accepted forms, on a scheduler string that cannot work."""
    if scheduler is None or scheduler == "slurm" or "://" in scheduler:
        return
    kind, _, n = scheduler.partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise CytoatlasError(f"unknown scheduler {scheduler!r}; use local:N (N >= 1), tcp://HOST:PORT or slurm")


@dataclass
class Cluster:
    """A connected Dask client and the worker threads the work should be planned for (those expected once
    every requested worker has joined, which SLURM jobs do over seconds to hours)."""

    client: Any
    planned_threads: int

    def threads(self) -> int:
        """Threads of the workers connected now."""
        now = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        return max(1, now, self.planned_threads)


@contextlib.contextmanager
def dask_client(scheduler: str, slurm: Mapping[str, Any] | None = None) -> Iterator[Cluster]:
    """A :class:`Cluster` for ``scheduler``; a cluster started here is stopped on leaving."""
    check_scheduler(scheduler)
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - a dependency
        raise CytoatlasError(f"--scheduler needs dask.distributed ({e})") from None
    if not log.isEnabledFor(logging.DEBUG):  # Dask's INFO lines (cluster start and stop) would drown ours
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                     "distributed.core", "distributed.http.proxy", "distributed.client", "dask_jobqueue"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if "://" in scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise CytoatlasError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with client:
            log.info("Dask: connected to %s (%d workers)", scheduler, len(client.scheduler_info()["workers"]))
            yield Cluster(client, 0)
        return
    if scheduler == "slurm":
        options = dict(slurm or {})
        with _slurm_cluster(options) as (cluster, workers, threads), Client(cluster) as client:
            # give the jobs a minute to start together, so the first partitions spread over all of them; on a
            # busy queue start with those running, the others join when SLURM starts them
            try:
                client.wait_for_workers(workers, timeout=SLURM_GRACE)
            except TimeoutError:
                log.info("Dask: %d of %d SLURM workers running after %d s; starting with them",
                         len(client.scheduler_info()["workers"]), workers, SLURM_GRACE)
            yield Cluster(client, threads)
        return
    n = int(scheduler.partition(":")[2])
    # workers forked from this process start in ~0.1 s with its imports; spawned ones take ~1.5 s of CPU each to
    # import Dask, NumPy and h5py again (on 2 cores that was most of local:2's lag behind threads). The caller
    # starts the cluster before any thread of its own runs, so no lock is held at the fork. macOS cannot
    # fork safely once system frameworks are loaded: spawn there.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with dask.config.set({"distributed.worker.multiprocessing-method": method}), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
        log.info("Dask: local cluster of %d worker process(es)", n)
        yield Cluster(client, n)


@contextlib.contextmanager
def _slurm_cluster(options: dict[str, Any]) -> Iterator[Any]:
    try:
        import dask
        from dask_jobqueue import SLURMCluster
    except ImportError as e:  # pragma: no cover - a dependency
        raise CytoatlasError(f"--scheduler slurm needs dask-jobqueue ({e})") from None
    jobs = int(options.pop("jobs", 1))
    options.setdefault("processes", 1)
    try:
        cluster = SLURMCluster(**options)
    except (ValueError, TypeError) as e:  # e.g. no cores/memory given here or in the jobqueue config
        raise CytoatlasError(f"cannot set up a SLURM cluster: {e}; give --slurm-cores and --slurm-memory, or "
                             "set them in the registry's [slurm] table or dask's jobqueue.slurm config") from None
    with cluster:
        log.info("Dask: SLURM cluster of %d job(s); job script:\n%s", jobs, cluster.job_script())
        cluster.scale(jobs=jobs)
        cores = int(options.get("cores") or dask.config.get("jobqueue.slurm.cores", None) or 1)
        processes = int(options.get("processes") or 1)
        yield cluster, jobs * processes, jobs * cores
