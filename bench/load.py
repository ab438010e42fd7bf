"""The load generator: keep-alive HTTP clients and bounded phases run by a fixed set of threads."""
from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class HttpError(Exception):
    """A response other than the one expected."""


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, reopened when the server closed it."""

    def __init__(self, port: int, api_key: str | None = None, timeout: float = 30) -> None:
        self.port, self.timeout = port, timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request and return (status, decoded JSON body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        for retry in (True, False):
            if self.conn is None:
                self.conn, self.used = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout), False
            try:
                self.conn.request(method, path, body=data, headers=self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                self.used = True
                return response.status, (json.loads(raw) if raw else None)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # Only a connection the server closed while idle is retried: the request never ran.
                reused = self.used
                self.close()
                if not (retry and reused):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (p in 0..100) of the values; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class Phase(Generic[R]):
    """What one phase did: results in completion order, latencies per step, errors, wall time."""

    results: list[R] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    capped: bool = False

    @property
    def done(self) -> int:
        """Items that completed."""
        return len(self.results)

    @property
    def rate(self) -> float:
        """Completed items per second of wall time."""
        return self.done / self.seconds if self.seconds else 0.0

    def p(self, step: str, q: float) -> float:
        """A latency percentile of one step, in milliseconds."""
        return percentile(self.latencies.get(step, []), q) * 1000


def merge(phases: Sequence[Phase[R]]) -> Phase[R]:
    """Several runs of one phase as one: results and latencies pooled, wall times added."""
    pooled: Phase[R] = Phase()
    for phase in phases:
        pooled.results += phase.results
        pooled.errors += phase.errors
        pooled.seconds += phase.seconds
        pooled.capped |= phase.capped
        for step, values in phase.latencies.items():
            pooled.latencies.setdefault(step, []).extend(values)
    return pooled


class Timer:
    """Collects step latencies of one worker thread."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}

    def step(self, name: str, fn: Callable[[], T]) -> T:
        """Run fn and record how long it took under name."""
        began = time.perf_counter()
        value = fn()
        self.latencies.setdefault(name, []).append(time.perf_counter() - began)
        return value


Work = Callable[[dict[str, Client], Timer, T], R]


def run_phase(
    items: Sequence[T], concurrency: int, work: Work[T, R], ports: dict[str, tuple[int, str | None]],
    cap_seconds: float, max_errors: int = 20,
) -> Phase[R]:
    """Run work over items with `concurrency` threads, each with its own clients; stop at the time cap."""
    phase: Phase[R] = Phase()
    lock = threading.Lock()
    position = iter(range(len(items)))
    started = time.perf_counter()
    deadline = started + cap_seconds

    def worker() -> None:
        clients = {name: Client(port, key) for name, (port, key) in ports.items()}
        timer = Timer()
        try:
            while time.perf_counter() < deadline:
                with lock:
                    index = next(position, None)
                    if index is None or len(phase.errors) >= max_errors:
                        return
                try:
                    result = work(clients, timer, items[index])
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        phase.errors.append(f"{type(exc).__name__}: {exc}")
                    for client in clients.values():
                        client.close()
                    continue
                with lock:
                    phase.results.append(result)
        finally:
            with lock:
                for step, values in timer.latencies.items():
                    phase.latencies.setdefault(step, []).extend(values)
            for client in clients.values():
                client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    phase.capped = phase.done + len(phase.errors) < len(items)
    return phase


def expect(status: int, body: Any, wanted: int) -> Any:
    """The body when the status is the one wanted; raise otherwise."""
    if status != wanted:
        raise HttpError(f"HTTP {status}: {str(body)[:200]}")
    return body
