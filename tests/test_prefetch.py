"""The read-ahead thread: order, errors, and a bound on how many blocks exist at once."""

from __future__ import annotations

import threading
import time
import weakref

import pytest

from cytoatlas.io.prefetch import Prefetch


class Block:
    pass


def test_order_and_bounded_items_alive():
    alive: weakref.WeakSet = weakref.WeakSet()
    peak = [0]
    lock = threading.Lock()

    def produce():
        for i in range(30):
            b = Block()
            b.i = i
            with lock:
                alive.add(b)
                peak[0] = max(peak[0], len(alive))
            yield b
            del b

    seen = []
    for b in Prefetch(produce(), ahead=1):
        time.sleep(0.005)  # a slow consumer: the producer is always ready to run ahead
        seen.append(b.i)
        del b
    assert seen == list(range(30))
    assert peak[0] <= 2


def test_producer_error_reaches_consumer():
    def produce():
        yield 1
        raise OSError("truncated chunk")

    got = []
    with pytest.raises(OSError, match="truncated chunk"):
        got.extend(Prefetch(produce()))
    assert got == [1]


def test_leaving_early_stops_the_producer():
    produced = []

    def produce():
        for i in range(1000):
            produced.append(i)
            yield i

    for x in Prefetch(produce()):
        if x == 3:
            break
    time.sleep(0.3)
    assert len(produced) <= 6
    assert not any(t.name == "cytoatlas-prefetch" and t.is_alive() for t in threading.enumerate())
