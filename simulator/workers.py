"""A small bounded pool of daemon worker threads (so a stuck webhook never blocks interpreter exit)."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger("simulator")


class WorkerPool:
    """Runs submitted callables on at most max_workers daemon threads, started lazily."""

    def __init__(self, name: str, max_workers: int) -> None:
        """Create an idle pool; threads start on demand."""
        self._name = name
        self._max = max(1, max_workers)
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._pending = 0
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue fn; start another worker if all are busy and the bound allows it."""
        with self._lock:
            if self._closed:
                return
            self._pending += 1
            if self._pending > self._idle and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            self._queue.put(fn)

    def _work(self) -> None:
        """Worker loop: run jobs until the pool is closed."""
        while True:
            with self._lock:
                self._idle += 1
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._pending -= 1
            if job is None:
                return
            try:
                job()
            except Exception:  # a job must never kill its worker
                log.exception("simulator job failed")

    def close(self, timeout: float = 2.0) -> None:
        """Stop accepting jobs and ask every worker to exit (waits at most timeout in total)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
