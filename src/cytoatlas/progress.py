"""Periodic progress lines with rate and ETA, for runs far too long to watch a bar."""

from __future__ import annotations

import logging
import resource
import threading
import time


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


class Progress:
    """Log ``done/total unit (pct) rate unit/s, ETA`` at most every ``every`` seconds, and at the end."""

    def __init__(self, log: logging.Logger, label: str, total: int, unit: str = "cells", every: float = 10.0):
        self.log, self.label, self.total, self.unit, self.every = log, label, total, unit, every
        self.start = self.last = time.perf_counter()
        self.done = 0
        self._lock = threading.Lock()  # updated from worker threads too

    def update(self, n: int) -> None:
        """Count ``n`` more units done (logging now and then)."""
        with self._lock:
            self.done += n
            now = time.perf_counter()
            if not (now - self.last >= self.every or self.done >= self.total):
                return
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log.info("%s: %s/%s %s (%.1f%%), %s %s/s, ETA %s", self.label, f"{self.done:,}",
                          f"{self.total:,}", self.unit, 100 * self.done / max(self.total, 1),
                          f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}", self.unit, _duration(eta))

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.start


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
