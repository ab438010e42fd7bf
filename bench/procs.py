"""The processes a bench run starts (each in its own session, stopped by its PID), and
the CPU and memory they use."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile() -> dict[str, str]:
    """The Procfile's process lines by name."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def argv_of(line: str, port: int | None = None) -> list[str]:
    """A Procfile line as argv: $PORT substituted, python/gunicorn from this interpreter."""
    if port is not None:
        line = line.replace("$PORT", str(port))
    argv = shlex.split(line)
    bindir = Path(sys.executable).parent
    if argv[0] == "python":
        argv[0] = sys.executable
    elif (bindir / argv[0]).exists():
        argv[0] = str(bindir / argv[0])
    return argv


def poll(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call check until it returns something truthy, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def answers(url: str) -> bool:
    """Whether a URL answers 200 now."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Processes:
    """Every process this run started, by name; stop() ends them by PID (process group)."""

    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start one process in its own session, logging to bench/results/logs/<name>.log."""
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        log = open(OUT / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def alive(self, name: str) -> subprocess.Popen[bytes]:
        """The process, raising if it has exited (so a crash is not mistaken for slowness)."""
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see bench/results/logs/{name}.log")
        return proc

    def stop(self, *names: str) -> None:
        """Stop the named processes (or all): SIGTERM to each one's group, SIGKILL if it lingers."""
        targets = [n for n in (names or tuple(self.procs)) if n in self.procs]
        for name in targets:
            if self.procs[name].poll() is None:
                os.killpg(self.procs[name].pid, signal.SIGTERM)
        for name in targets:
            proc = self.procs.pop(name)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def tree(self, prefix: str) -> list[psutil.Process]:
        """The processes whose name starts with prefix, with their children (gunicorn workers, forks)."""
        found: list[psutil.Process] = []
        for name, proc in list(self.procs.items()):
            if name.startswith(prefix) and proc.poll() is None:
                try:
                    parent = psutil.Process(proc.pid)
                    found += [parent, *parent.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
        return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU time (user + system) used so far by the processes, including reaped children."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class RssSampler:
    """Samples the resident memory of named process groups every half second."""

    def __init__(self, procs: Processes, groups: dict[str, str]) -> None:
        self.procs, self.groups = procs, groups
        self.peak: dict[str, int] = {}  # "<group>" -> peak RSS of one process; "<group>:total" -> of all
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for group, prefix in self.groups.items():
                sizes = []
                for p in self.procs.tree(prefix):
                    try:
                        sizes.append(p.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
                if sizes:
                    self.peak[group] = max(self.peak.get(group, 0), *sizes)
                    self.peak[group + ":total"] = max(self.peak.get(group + ":total", 0), sum(sizes))
            self._stop.wait(0.5)
