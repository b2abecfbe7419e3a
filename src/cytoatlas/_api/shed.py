"""Load shedding: a server process runs a bounded number of API requests at once, lets a bounded number wait a
bounded time for a turn, and answers the others at once with 503 and ``Retry-After``.

Without it every request is accepted and runs in the thread pool: under 16 clients' heavy requests they all share
two cores and the GIL, and each waits for tens of seconds with no word to the client. A request that runs alone
finishes sooner than one of many sharing the cores, so a short queue in front of a few running requests keeps
each answer as fast as the machine allows, and a client told to retry can back off or go to another worker.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass

from cytoatlas.errors import CytoatlasError

EXEMPT = ("/api/v1/health",)  # cheap, and the way to see that a busy server is alive


@dataclass(frozen=True)
class Limits:
    """How much one server process takes on.

    Attributes
    ----------
    active
        API requests running at once.
    waiting
        Requests that may wait for a turn; one more is answered 503 at once.
    wait
        Seconds a request may wait for a turn before it is answered 503.
    """

    active: int = 8
    waiting: int = 32
    wait: float = 2.0

    def __post_init__(self) -> None:
        if self.active < 1:
            raise CytoatlasError(f"the requests running at once must be at least 1, got {self.active}")
        if self.waiting < 0:
            raise CytoatlasError(f"the requests waiting must be at least 0, got {self.waiting}")
        if not (math.isfinite(self.wait) and self.wait >= 0):
            raise CytoatlasError(f"the wait for a turn must be a number of seconds >= 0, got {self.wait}")


class Shed:
    """ASGI middleware: at most ``limits.active`` API requests run at once; the next ``limits.waiting`` wait up to
    ``limits.wait`` seconds for a turn (first come, first served); every other one is answered 503 with
    ``Retry-After``, at once when the requests ahead of it would take longer than that (``service``: a running
    mean of how long a request holds its turn). Paths outside ``/api/`` (the page, static files) and
    :data:`EXEMPT` are never held."""

    def __init__(self, app, limits: Limits = Limits()):  # noqa: B008  (frozen, so one shared default is safe)
        self.app = app
        self.limits = limits
        self.running = 0
        self.queue: list[asyncio.Future] = []  # the waiting requests, first come first
        self.service = 0.0  # seconds a request holds its turn (exponential mean; 0 until one has finished)

    def _held(self, scope) -> bool:
        return scope["type"] == "http" and scope["path"].startswith("/api/") and scope["path"] not in EXEMPT

    async def __call__(self, scope, receive, send):
        if not self._held(scope):
            return await self.app(scope, receive, send)
        if not await self._turn():
            return await self._busy(send)
        start = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            held = time.monotonic() - start
            self.service = held if not self.service else 0.8 * self.service + 0.2 * held
            self._release()

    async def _turn(self) -> bool:
        """Wait for a turn; False when there is no room in the queue or the wait ran out."""
        if self.running < self.limits.active and not self.queue:
            self.running += 1
            return True
        if len(self.queue) >= self.limits.waiting:
            return False
        if (len(self.queue) + 1) * self.service / self.limits.active > self.limits.wait:
            return False  # the turns ahead would outlast the wait: say so now, not after it
        ticket = asyncio.get_running_loop().create_future()
        self.queue.append(ticket)
        try:
            await asyncio.wait_for(asyncio.shield(ticket), self.limits.wait)
            return True  # _release handed its turn over (running unchanged)
        except TimeoutError:
            if ticket.done():  # handed over just as the wait ran out: take it
                return True
            self.queue.remove(ticket)
            return False
        except asyncio.CancelledError:  # the client went away while waiting
            if ticket.done():
                self._release()  # the turn it was given goes to the next one
            else:
                self.queue.remove(ticket)
            raise

    def _release(self) -> None:
        while self.queue:  # hand the turn to the first waiting request still waiting
            ticket = self.queue.pop(0)
            if not ticket.done():
                ticket.set_result(None)
                return
        self.running -= 1

    async def _busy(self, send) -> None:
        body = json.dumps({"detail": f"the server is busy ({self.running} requests running, {len(self.queue)} "
                                     "waiting): retry in a second"}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
