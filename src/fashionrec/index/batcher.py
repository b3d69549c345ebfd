"""Serialise model calls from many threads into batches: one forward pass for whatever is waiting."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_STOP = object()


class MicroBatcher(Generic[T, R]):
    """Calls `fn(items) -> results` on one worker thread, so the model never runs concurrently with itself.

    It never waits to fill a batch: an idle server answers a lone request at once, and under load the
    requests that arrive while one batch runs form the next.
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 16) -> None:
        self._fn = fn
        self._max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="model-batcher", daemon=True)
        self._worker.start()

    def __call__(self, item: T) -> R:
        """Blocks until `item`'s result is ready; re-raises the batch's error."""
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.put((item, future))
        return future.result()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:  # nothing can follow it: finish this batch, then stop
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            try:
                results = self._fn([item for item, _ in batch])
            except Exception as e:  # every waiting caller must hear about it
                for _, future in batch:
                    future.set_exception(e)
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)

    def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join()
