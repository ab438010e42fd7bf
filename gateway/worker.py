"""The worker process (the Procfile's `worker`): the sender (deliveries, many in flight), an rq
worker for the rare jobs, and the supervisor for timers and recovery."""
from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

import redis
from rq import SimpleWorker, Worker

from config import ConfigError
from gateway import create_app
from gateway.scheduler import Supervisor
from gateway.sender import Sender
from gateway.services import connect_redis

log = logging.getLogger(__name__)

# rq's worker_ttl also sets its blocking dequeue (ttl - 15 s) and its socket timeout (ttl - 5 s):
# 35 s bounds how long a dead Redis connection can hang the worker (rq's default is 420 s).
WORKER_TTL = 35
# Registry and intermediate-queue cleaning; timers and crashed jobs are the supervisor's.
MAINTENANCE_INTERVAL = 60


class _Signalled:
    """Remembers that a stop was asked for, so the run loop knows a quit from a crash."""

    stop_signalled = False
    max_connection_wait_time = 2.0  # rq's default backs off to 60 s; Redis may be back long before

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signalled = True
        super().request_stop(signum, frame)  # type: ignore[misc]


class GatewaySimpleWorker(_Signalled, SimpleWorker):
    """rq's SimpleWorker (jobs in this process)."""


class GatewayForkWorker(_Signalled, Worker):
    """rq's Worker (a fork per job)."""


def run(app_config: Any = None, burst: bool = False) -> int:
    """Run a worker until stopped; ride out Redis outages and worker crashes by starting anew."""
    app = create_app(app_config)
    svc = app.extensions["gateway"]
    worker_class = GatewaySimpleWorker if svc.settings.worker_class == "simple" else GatewayForkWorker
    # Its own fail-fast connection: rq raises the socket timeout of the connection it is given.
    rq_url, variable = ((svc.settings.rq_redis_url, "RQ_REDIS_URL") if svc.settings.rq_redis_url
                        else (svc.settings.redis_url or "redis://localhost:6379/0", "REDIS_URL"))
    supervisor = Supervisor(app, svc.queue.name, connect_redis(rq_url, variable))
    sender = Sender(app)
    delay = 0.5
    with app.app_context():
        if not burst:
            supervisor.start()
            sender.start()
        try:
            while True:
                worker = None
                try:
                    # rq talks to Redis already while building a worker (CLIENT SETNAME).
                    worker = worker_class([svc.queue], connection=svc.queue.connection, worker_ttl=WORKER_TTL,
                                          maintenance_interval=MAINTENANCE_INTERVAL)
                    supervisor.watch(worker.name)
                    if burst:
                        supervisor.beat()
                        sender.drain()
                    worker.work(burst=burst, logging_level=svc.settings.log_level)
                    if burst or worker.stop_signalled:
                        return 0
                    # rq's work loop quits on an error it did not expect (often Redis going
                    # away mid-job); a new worker takes over, the supervisor recovers the job.
                    log.warning("worker %s quit unexpectedly; starting a new one", worker.name)
                    time.sleep(delay)
                    delay = 0.5
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    # rq's worker gives up when Redis vanishes; we wait for it to come back.
                    log.warning("redis unavailable (%s); reconnecting in %.1fs", exc, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                finally:
                    if worker is not None:
                        supervisor.forget(worker.name)
        finally:
            supervisor.stop()
            sender.stop()


def main() -> None:
    """Entry point: `python -m gateway.worker`."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack
    try:
        sys.exit(run())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
