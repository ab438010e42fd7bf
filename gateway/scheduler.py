"""Timers and crash recovery for the workers: a supervisor thread in every worker process.

Verification timers (expiry, reply timeouts, delivery deadlines) are not rq jobs: `gw:timers`
holds each pending verification's next due time, and the leader claims due ones with a lease
(claim.lua, like the senders' outbox), so a timer whose run failed or whose leader died is due
again when the lease ends. rq remains for the rare jobs (hang-up checks, authenticator notices).

Why not rq's own scheduler (rq 2.12.0, read in `rq/scheduler.py` and `rq/worker/base.py`):

- it is a forked process that exits on the first Redis connection error, and the worker
  restarts it only in `run_maintenance_tasks` (every `maintenance_interval`, 600 s, and only
  between two dequeues), so a Redis restart stops every timer for up to 10 minutes;
- its lock (`rq:scheduler-lock:<queue>`) lives `interval + 60` s, so a recreated worker
  waits ~61 s for a dead scheduler's lock (rq issue #2189);
- a job whose worker was killed stays in the started registry until its heartbeat TTL
  (job_monitoring_interval + 60 = 90 s) has passed *and* a maintenance pass runs.

So the supervisor, one thread per worker process, does each second what rq's scheduler
does (`RQScheduler.enqueue_scheduled_jobs`) under the same lock key but with a short TTL,
putting due jobs at the front of the queue (they are already due), runs the due verification
timers and counts the conversions that approvals queued (`abuse.fold_conversions`) as the
lock holder, survives any Redis error by trying again on the next tick, marks its worker
alive with a short-lived key, and hands jobs of workers that are no longer alive to rq's own
abandoned-job handling (`StartedJobRegistry.cleanup`: failure callback, then retry or give up).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import redis
from flask import Flask
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import current_timestamp
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.timeouts import TimerDeathPenalty

from gateway import abuse, keys
from gateway.errors import Unconfirmed

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between passes: timers fire at most about this late
TIMER_BATCH = 100  # timers claimed per round trip
TIMER_LEASE = 30  # seconds before a claimed timer whose run failed (or whose leader died) is due again
TIMER_PASS = 0.5  # seconds of one pass spent on timers at most, so the lock is always refreshed
LOCK_TTL = 10  # seconds a dead leader's lock can hold timers back (rq's: interval + 60)
ALIVE_TTL = 10  # seconds after a worker's death before its running job is recovered


alive_key = keys.worker_alive


def recover_abandoned(queue: Queue) -> list[str]:
    """Give jobs of dead workers to rq's abandoned-job handling; answer the job ids."""
    connection = queue.connection
    # TimerDeathPenalty: the failure callback runs in this thread, where SIGALRM cannot be used.
    registry = StartedJobRegistry(queue=queue, death_penalty_class=TimerDeathPenalty)
    dead = []
    for raw in connection.zrange(registry.key, 0, -1):
        entry = raw.decode()
        owner = connection.hget(f"rq:execution:{entry}", "worker_name")
        # Score 0 makes rq's cleanup treat the entry as expired; XX + CH: only an entry still there.
        if (owner is None or not connection.exists(alive_key(owner.decode()))) and connection.zadd(
                registry.key, {entry: 0}, xx=True, ch=True):
            dead.append(entry.split(":", 1)[0])
    registry.cleanup()  # also entries marked on an earlier pass whose cleanup failed
    if dead:
        log.warning("recovered jobs of dead workers: %s", ", ".join(dead))
    return dead


def run_due_timers(app: Flask, until: float) -> int:
    """Run the verification timers that are due (until the monotonic time `until`); answer how many."""
    from gateway import deliveries
    from gateway.store import TIMERS

    svc = app.extensions["gateway"]
    done = 0
    while time.monotonic() < until:
        claim = svc.store.claim(TIMERS, TIMER_BATCH, TIMER_LEASE)
        for verification_id in claim.members:
            try:
                due = deliveries.run_timers(svc, verification_id)
                # Only while the claim's lease still stands: a script may have set an earlier time meanwhile.
                svc.store.reschedule(TIMERS, verification_id, claim.held, due)
            except Unconfirmed:
                # Only an end is confirmed, and the end took the timer with it: nothing to run again.
                log.warning("timer of %s: its end is on the primary, not yet confirmed by REDIS_WAIT_REPLICAS "
                            "replicas (they get it as they catch up)", verification_id)
            except redis.exceptions.RedisError:
                raise
            except Exception:  # noqa: BLE001 - one bad record must not hold the others back
                log.exception("timer of %s failed; it is due again in %ss", verification_id, TIMER_LEASE)
            done += 1
        if len(claim.members) < TIMER_BATCH:
            break
    return done


def move_due_jobs(queue: Queue) -> int:
    """Move scheduled jobs whose time has come to the front of the queue; answer how many."""
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_jobs_to_schedule(current_timestamp())
    if ids:
        # As RQScheduler.enqueue_scheduled_jobs does, but at the front: these are already due.
        with queue.connection.pipeline() as pipe:
            for job in Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer):
                if job is not None:
                    queue._enqueue_job(job, pipeline=pipe, at_front=True)
            for job_id in ids:
                registry.remove(job_id, pipeline=pipe)
            pipe.execute()
    return len(ids)


class Supervisor:
    """The thread that keeps timers firing and recovers crashed workers' jobs."""

    def __init__(self, app: Flask, queue_name: str, connection: redis.Redis) -> None:
        self.app = app
        self.redis = connection
        self.queue = Queue(queue_name, connection=connection)
        self.name = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.lock_key = RQScheduler.get_locking_key(queue_name)
        self.worker_name: str | None = None
        self.leading = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gateway-supervisor", daemon=True)
        self._failing_since: float | None = None

    def watch(self, worker_name: str) -> None:
        """Keep this worker marked alive from now on (marks it at once)."""
        self.worker_name = worker_name
        self.redis.set(alive_key(worker_name), self.name, ex=ALIVE_TTL)

    def forget(self, worker_name: str) -> None:
        """This worker has stopped: whatever it left running is recovered on the next pass."""
        if self.worker_name == worker_name:
            self.worker_name = None
        try:
            self.redis.delete(alive_key(worker_name))
        except redis.exceptions.RedisError:
            pass  # it expires by itself within ALIVE_TTL

    def beat(self) -> None:
        """One pass: mark the worker alive; as leader, move due jobs, recover abandoned ones and
        count the conversions approvals queued (abuse.fold_conversions)."""
        if self.worker_name:
            self.redis.set(alive_key(self.worker_name), self.name, ex=ALIVE_TTL)
        self.leading = acquire_or_refresh_lock(self.redis, self.lock_key, self.name, LOCK_TTL) != "taken"
        if self.leading:
            run_due_timers(self.app, time.monotonic() + TIMER_PASS)
            move_due_jobs(self.queue)
            recover_abandoned(self.queue)
            abuse.fold_conversions(self.app.extensions["gateway"])

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and hand the lead to another worker at once."""
        self._stopping.set()
        self._thread.join(5)
        try:
            release_lock(self.redis, self.lock_key, self.name)
        except redis.exceptions.RedisError:
            pass  # the lock expires by itself within LOCK_TTL

    def _loop(self) -> None:
        with self.app.app_context():  # failure callbacks reach the app's services
            while not self._stopping.is_set():
                try:
                    self.beat()
                    if self._failing_since is not None:
                        log.warning("supervisor: Redis back after %.1fs", time.monotonic() - self._failing_since)
                        self._failing_since = None
                except redis.exceptions.RedisError as exc:
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                        log.warning("supervisor: Redis unavailable (%s); trying again every %.0fs", exc, TICK)
                except Exception:  # noqa: BLE001 - one bad job must not stop every timer
                    log.exception("supervisor pass failed")
                self._stopping.wait(TICK)
