"""Load shedding: a server process runs a bounded number of API requests, lets a bounded number wait a bounded
time, and answers the rest 503 with Retry-After. The middleware on its own (an app held by the test, so the order
of events is fixed), then a real `cytoatlas serve` under 16 clients on the heaviest routes (loopback, bounded in
count and time): every answer 200 or 503 + Retry-After, none slower than 10 s (the issue's bound)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _api_helpers import ROOT, running_server

from cytoatlas._api.shed import Limits, Shed
from cytoatlas.errors import CytoatlasError


class Held:
    """An ASGI app whose API requests finish only when the test releases them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def __call__(self, scope, receive, send) -> None:
        self.started += 1
        if scope["path"].startswith("/api/v1/slow"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _get(app, path: str) -> tuple[int, dict[str, str]]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start.get("headers", [])}


def test_requests_beyond_the_limits_are_answered_503_with_retry_after() -> None:
    async def scenario():
        inner = Held()
        app = Shed(inner, Limits(active=1, waiting=1, wait=0.05))
        first = asyncio.create_task(_get(app, "/api/v1/slow"))
        await asyncio.sleep(0)  # the first takes the only turn
        waits = asyncio.create_task(_get(app, "/api/v1/slow"))  # queued; its wait runs out: 503
        await asyncio.sleep(0)
        full = await _get(app, "/api/v1/slow")  # the queue is full: 503 at once
        late = await waits
        health = await _get(app, "/api/v1/health")  # exempt: answered while the server is busy
        page = await _get(app, "/")  # not an API route: never held
        inner.release.set()
        done = await first
        after = await _get(app, "/api/v1/slow")  # the turn is free again
        return inner, full, late, health, page, done, after, app

    inner, full, late, health, page, done, after, app = asyncio.run(scenario())
    for status, headers in (full, late):
        assert status == 503 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
    assert health[0] == page[0] == done[0] == after[0] == 200
    assert inner.started == 4  # the two shed requests never reached the app
    assert app.running == 0 and not app.queue


def test_a_waiting_request_gets_the_turn_of_one_that_finishes() -> None:
    async def scenario():
        inner = Held()
        app = Shed(inner, Limits(active=1, waiting=4, wait=60))
        tasks = [asyncio.create_task(_get(app, "/api/v1/slow")) for _ in range(3)]
        await asyncio.sleep(0)
        assert (app.running, len(app.queue), inner.started) == (1, 2, 1)  # one runs, two wait
        inner.release.set()
        return [status for status, _ in await asyncio.gather(*tasks)], app

    statuses, app = asyncio.run(scenario())
    assert statuses == [200, 200, 200] and app.running == 0 and not app.queue


def test_a_request_that_could_not_get_a_turn_in_time_is_answered_at_once() -> None:
    async def scenario():
        inner = Held()
        app = Shed(inner, Limits(active=1, waiting=8, wait=60))
        app.service = 25.0  # as if each request held its turn 25 s
        first = asyncio.create_task(_get(app, "/api/v1/slow"))
        await asyncio.sleep(0)
        second = asyncio.create_task(_get(app, "/api/v1/slow"))  # one turn ahead: 25 s <= 60 s, it waits
        await asyncio.sleep(0)
        third = asyncio.create_task(_get(app, "/api/v1/slow"))  # two turns ahead: 50 s <= 60 s, it waits
        await asyncio.sleep(0)
        fourth = await _get(app, "/api/v1/slow")  # three turns ahead: 75 s > 60 s, answered now
        queued = len(app.queue)
        inner.release.set()
        return fourth, queued, [s for s, _ in await asyncio.gather(first, second, third)]

    fourth, queued, statuses = asyncio.run(scenario())
    assert fourth[0] == 503 and fourth[1]["retry-after"] == "1"
    assert queued == 2 and statuses == [200, 200, 200]


@pytest.mark.parametrize(("kwargs", "message"), [({"active": 0}, "at least 1"), ({"waiting": -1}, "at least 0"),
                                                 ({"wait": float("nan")}, "seconds")])
def test_limits_are_range_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(CytoatlasError, match=message):
        Limits(**kwargs)


HEAVY = ("matrix", "signature", "expression_samples", "parquet", "activity_csv", "activity")


def test_sixteen_clients_on_the_heaviest_routes_get_answers_or_503(api_db: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_api import plan

    n_clients, per_client = 16, 12
    with running_server(api_db, "--max-active", "2", "--max-waiting", "4", "--max-wait", "1") as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            work = [p for kind, p in plan(c, 2000, 0) if kind in HEAVY][: n_clients * per_client]
        assert len(work) == n_clients * per_client
        answers: list[tuple[int, str | None, float]] = []
        lock = threading.Lock()

        def client(paths: list[str]) -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                for path in paths:
                    t = time.perf_counter()
                    r = c.get(path)
                    with lock:
                        answers.append((r.status_code, r.headers.get("retry-after"), time.perf_counter() - t))

        threads = [threading.Thread(target=client, args=(work[i::n_clients],)) for i in range(n_clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=300)
        assert not any(th.is_alive() for th in threads)
    assert len(answers) == len(work)
    assert all(status == 200 or (status == 503 and retry == "1") for status, retry, _ in answers), \
        sorted({(s, r) for s, r, _ in answers})
    assert max(t for _, _, t in answers) <= 10.0  # the bound: no answer after more than 10 s
    statuses = [s for s, _, _ in answers]
    assert statuses.count(200) > 0
    print(f"\n16 clients: {statuses.count(200)} answered, {statuses.count(503)} shed, "
          f"slowest {max(t for _, _, t in answers):.2f} s")
