"""Read ahead on a second thread, so decompression overlaps with the compiled (GIL-free) accumulation."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` while a background thread, started at once, produces up to ``depth`` ahead.

    Starting on construction lets the first read overlap with the caller's own set-up. An exception in the
    producer is re-raised in the consumer; ``close()`` (or leaving a ``with`` block) stops the producer.
    """

    def __init__(self, items: Iterable[T], depth: int = 1):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), name="cytoatlas-prefetch", daemon=True)
        self._thread.start()

    def _put(self, x) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put((_DONE, e))

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item, err = self._q.get()
                if err is not None:
                    raise err
                if item is _DONE:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
