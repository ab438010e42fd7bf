"""The rq worker process (the Procfile's `worker`): jobs plus rq's scheduler."""
from __future__ import annotations

import logging
import sys
import time

import redis
from rq import SimpleWorker, Worker

from config import ConfigError
from gateway import create_app

log = logging.getLogger(__name__)


def run(app_config: object = None, burst: bool = False) -> int:
    """Run a worker until stopped; ride out Redis outages by reconnecting."""
    app = create_app(app_config)  # type: ignore[arg-type]
    svc = app.extensions["gateway"]
    worker_class = SimpleWorker if svc.settings.worker_class == "simple" else Worker
    delay = 0.5
    with app.app_context():
        while True:
            try:
                worker = worker_class([svc.queue], connection=svc.redis)
                worker.work(with_scheduler=True, burst=burst, logging_level=svc.settings.log_level)
                return 0
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # rq's worker gives up when Redis vanishes; we wait for it to come back.
                log.warning("redis unavailable (%s); reconnecting in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def main() -> None:
    """Entry point: `python -m gateway.worker`."""
    try:
        sys.exit(run())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
