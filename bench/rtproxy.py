"""A counting TCP proxy in front of Redis: round trips per client connection, whatever the client.

A round trip is one request/response exchange on a connection: the client writes (one
command, or a whole pipeline or MULTI … EXEC written at once), then reads the answer. The
proxy counts a new round trip each time a client sends bytes after the server last spoke on
that connection (or for the first time), so a pipeline counts once and a blocking command
(BLMOVE, a pub/sub subscription) counts once however long it waits. Connections are tied to
the process that owns them (psutil, by the client's local port) so counts come out per process.
"""
from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

import psutil


@dataclass
class Link:
    """One proxied client connection."""

    port: int
    trips: int = 0
    sent: int = 0
    received: int = 0
    client_turn: bool = True  # True until the client has written; False after it wrote and awaits
    pid: int | None = None
    closed: bool = False


@dataclass
class RoundTripProxy:
    """Listens on 127.0.0.1:<port> and forwards to Redis at target; counts per connection."""

    target: tuple[str, int]
    links: list[Link] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="rtproxy")
        self.port = 0

    def start(self) -> "RoundTripProxy":
        """Start serving in a thread; the listening port is in .port."""
        self.thread.start()
        self.ready.wait(10)
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        peer = client_w.get_extra_info("peername")
        link = Link(port=int(peer[1]))
        with self.lock:
            self.links.append(link)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    with self.lock:
                        if from_client:
                            if link.client_turn:
                                link.trips += 1
                                link.client_turn = False
                            link.sent += len(data)
                        else:
                            link.client_turn = True
                            link.received += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(client_r, server_w, True), pump(server_r, client_w, False))
        link.closed = True

    def identify(self) -> None:
        """Tie each open connection not yet tied to the process owning its local port."""
        owners = {}
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.raddr and conn.raddr.port == self.port and conn.pid:
                owners[conn.laddr.port] = conn.pid
        with self.lock:
            for link in self.links:
                if link.pid is None and link.port in owners:
                    link.pid = owners[link.port]

    def snapshot(self) -> list[int]:
        """Round trips so far on each connection (by order of arrival); cheap enough for every step."""
        with self.lock:
            return [link.trips for link in self.links]

    def by_group(self, before: list[int], after: list[int], groups: dict[int, str]) -> Counter[str]:
        """Round trips between two snapshots by process group (pid -> name; 'unknown' when the
        connection closed before identify() saw it)."""
        counts: Counter[str] = Counter()
        with self.lock:
            for i, trips in enumerate(after):
                pid = self.links[i].pid
                counts[groups.get(pid, "other") if pid else "unknown"] += trips - (before[i] if i < len(before) else 0)
        return counts

    def stop(self) -> None:
        """Stop serving (open connections are dropped)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
