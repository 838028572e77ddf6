"""Helpers for the control-plane tests: `svcpulse api` and `svcpulse weigh` as real processes (so they can
be killed with -9), a steady stream of calls, the feed as each replica serves it, and who publishes what."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from svcpulse.services import free_port, port_open
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import auth, rpc_event, send_rpc
from weigh.restore import newest_feeds


class Processes:
    """svcpulse subcommands started for one test; every one is killed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, {"PATH": "/usr/bin:/bin", **env}
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "svcpulse", *args], env={**self.env, **env},
                                   stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp_path)
        self.started.append(process)
        return process

    def api(self, name: str, **env: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        process = self.start(name, "api", "--port", str(port), **env)
        wait_for(lambda: self.alive(process, name) and port_open(port), 120, f"the API {name}")  # slow when loaded
        return process, f"http://127.0.0.1:{port}"

    def alive(self, process: subprocess.Popen, name: str) -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited {process.returncode}: {(self.tmp_path / f'{name}.log').read_text()}")
        return True

    def weigh(self, name: str, **env: str) -> subprocess.Popen:
        return self.start(name, "weigh", **env)

    @staticmethod
    def kill9(process: subprocess.Popen) -> float:
        """kill -9; returns the monotonic time it happened."""
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return time.monotonic()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@contextmanager
def processes(tmp_path: Path, env: dict[str, str]) -> Iterator[Processes]:
    running = Processes(tmp_path, env)
    try:
        yield running
    finally:
        running.stop_all()


@contextmanager
def steady_calls(bootstrap: str, services: dict[str, list[str]], per_instance_per_s: int = 20,
                 error_rate: Callable[[str, str], float] = lambda s, i: 0.0) -> Iterator[None]:
    """Calls to every instance of every service, every 0.25 s, until the block ends."""
    stop = threading.Event()

    def run() -> None:
        beat = 0
        while not stop.wait(0.25):
            now = int(time.time() * 1000)
            n = max(1, per_instance_per_s // 4)
            events = [rpc_event(s, i, ok=(beat * n + k) % 100 >= 100 * error_rate(s, i), ts_ms=now - k)
                      for s, instances in services.items() for i in instances for k in range(n)]
            send_rpc(bootstrap, events)
            beat += 1

    thread = threading.Thread(target=run, name="steady-calls", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def served(base: str, service: str | None = None, user: str = "vic") -> dict[str, Any]:
    """The feed as a replica serves it ({} while it has none)."""
    path = "/v1/weights" if service is None else f"/v1/weights/{service}"
    answer = httpx.get(f"{base}{path}", headers=auth(user), timeout=10)
    return answer.json() if answer.status_code == 200 else {}


def weights_of(feed: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {i["instance"]: (i["weight"], i["state"]) for i in feed.get("instances", [])}


def publishers(bootstrap: str) -> dict[str, str]:
    """service -> the worker that published its newest feed (read from svcpulse.weights)."""
    return {s: m.worker for s, m in newest_feeds("kafka-python", bootstrap, int(time.time() * 1000) - 60_000).items()}
