"""Read ahead on a second thread, so decompression overlaps with the compiled (GIL-free) accumulation."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` while a background thread, started at once, produces up to ``ahead`` of them early.

    At most ``ahead + 1`` items exist at a time (the one the caller holds and those produced ahead): for
    50,000-cell blocks of ~0.5 GB that bound is what keeps memory flat. Starting on construction lets the
    first read overlap with the caller's own set-up. An exception in the producer is re-raised in the
    consumer; ``close()`` (or leaving a ``with`` block) stops the producer.
    """

    def __init__(self, items: Iterable[T], ahead: int = 1):
        self._q: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(ahead + 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(items,), name="cytoatlas-prefetch", daemon=True)
        self._thread.start()

    def _slot(self) -> bool:
        """Wait until an item may be produced (the caller has let go of an older one), or until closed."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def _produce(self, items: Iterable[T]) -> None:
        try:
            it = iter(items)
            while self._slot():
                item = next(it, _DONE)
                self._q.put((item, None))
                if item is _DONE:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._q.put((_DONE, e))

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item, err = self._q.get()
                if err is not None:
                    raise err
                if item is _DONE:
                    return
                yield item
                del item  # the caller is done with it: its slot goes to the next item
                self._slots.release()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader thread."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
