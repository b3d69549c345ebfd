from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fashionrec.index.batcher import MicroBatcher


def test_concurrent_callers_share_batches_and_get_their_own_answers() -> None:
    sizes: list[int] = []
    running = threading.Lock()

    def square_all(items):
        assert running.acquire(blocking=False), "the function ran concurrently with itself"
        try:
            sizes.append(len(items))
            time.sleep(0.01)
            return [x * x for x in items]
        finally:
            running.release()

    batcher = MicroBatcher(square_all, max_batch=8)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(batcher, range(100)))
    batcher.close()
    assert answers == [x * x for x in range(100)]
    assert max(sizes) > 1 and max(sizes) <= 8 and sum(sizes) == 100


def test_a_failing_batch_fails_its_callers_and_the_worker_lives_on() -> None:
    def picky(items):
        if -1 in items:
            raise ValueError("bad item")
        return items

    batcher = MicroBatcher(picky)
    with pytest.raises(ValueError, match="bad item"):
        batcher(-1)
    assert batcher(3) == 3
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher(4)
