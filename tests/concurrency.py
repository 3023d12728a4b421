"""Run one call in several threads at once (each on its own database connection), for race tests."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

JOIN_SECONDS = 60


def run_together(call: Callable[[int], Any], n: int = 5) -> list[Any]:
    """
    Call `call(i)` for i in range(n) in n threads released together by a barrier; the results (or
    the exceptions raised) in order. Needs committed data: django_db(transaction=True).
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=JOIN_SECONDS)
            results[i] = call(i)
        except BaseException as exc:  # handed to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    return results
