"""Helpers for the eBPF tests: a running collector and test connections between two processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("peer.py")


def ebpf_unavailable() -> str | None:
    """Why the eBPF tests cannot run here (the skip reason), or None."""
    if os.geteuid() != 0:
        return "needs root"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc Python module missing (apt-get install python3-bpfcc; scripts/bootstrap.sh --no-apt)"
    return None


@dataclass
class Collector:
    """`python -m collectors.tcplife --output jsonl` with its events gathered by a reader thread."""

    proc: subprocess.Popen[bytes]
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], count: int = 1,
                 timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in list(self.events) if match(e)]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(found)} of {count} events after {timeout} s; stderr: {self.stderr}")


def _pump(stream: Any, sink: list[Any], parse: bool) -> None:
    for line in stream:
        sink.append(json.loads(line) if parse else line.decode().rstrip())


def start_collector(*flags: str, timeout: float = 60.0) -> Collector:
    cmd = [sys.executable, "-m", "collectors.tcplife", "--output", "jsonl", "--host", "ebpf-test", *flags]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    collector = Collector(proc)
    threading.Thread(target=_pump, args=(proc.stdout, collector.events, True), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, collector.stderr, False), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not any("tracing" in line for line in collector.stderr):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"collector did not start: {collector.stderr}")
        time.sleep(0.05)
    return collector


def stop_collector(collector: Collector) -> int:
    collector.proc.send_signal(2)  # SIGINT: the clean stop path
    try:
        return collector.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        collector.proc.kill()
        raise


@dataclass
class Connection:
    """Both ends of one finished test connection."""

    host: str
    server_pid: int
    server_port: int
    client_pid: int
    client_port: int
    server_received: int
    client_received: int


def _lines(proc: subprocess.Popen[str]) -> dict[str, list[str]]:
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # a hung peer must not outlive the test
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()}


def connect(host: str, upload: int = 0, download: int = 0, cgroup_procs: str | None = None,
            port: int = 0) -> Connection:
    """Run a server and a client process; the client sends `upload` bytes, the server `download`."""
    server = subprocess.Popen([sys.executable, str(PEER), "server", host, str(download), str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    client_cmd = [sys.executable, str(PEER), "client", host, str(port), str(upload)]
    client = subprocess.Popen([*client_cmd, *([cgroup_procs] if cgroup_procs else [])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client_out = _lines(client)
    finally:
        server_out = _lines(server)
    return Connection(host, server.pid, port, client.pid, int(client_out["local"][1]),
                      int(server_out["received"][0]), int(client_out["received"][0]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
