"""Load-time filters (--ports, --pids, --cgroup): each needs its own collector, started once here."""

from __future__ import annotations

import argparse
import os
import re
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpf_helpers import connect, ebpf_unavailable, free_port, start_collector, stop_collector

from collectors.cgroups import find_cgroup2_mount

pytestmark = [pytest.mark.ebpf, pytest.mark.skipif(ebpf_unavailable() is not None,
                                                    reason=ebpf_unavailable() or "")]

SETTLE_S = 1.0  # 10 collector poll intervals: time enough for an event that was not filtered out


def ports_of(event: dict[str, Any]) -> set[int]:
    return {event["lport"], event["rport"]}


def in_process_connection() -> set[int]:
    """A connection whose two ends both belong to this test process; its two ports."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _peer = listener.accept()
        client.sendall(b"x" * 1000)
        client.shutdown(socket.SHUT_WR)
        while server.recv(65536):
            pass
        ports = {client.getsockname()[1], server.getsockname()[1]}
        server.close()
        client.close()
    return ports


def test_ports_filter() -> None:
    port = free_port()
    collector = start_collector("--ports", str(port))
    try:
        other = connect("127.0.0.1", upload=500)
        wanted = connect("127.0.0.1", upload=600, port=port)
        events = collector.wait_for(lambda e: port in ports_of(e), count=2)
        time.sleep(SETTLE_S)
    finally:
        assert stop_collector(collector) == 0
    assert {e["pid"] for e in events} == {wanted.client_pid, wanted.server_pid}
    assert all(port in ports_of(e) for e in collector.events)
    assert not [e for e in collector.events if other.server_port in ports_of(e)]


def test_pids_filter() -> None:
    collector = start_collector("--pids", str(os.getpid()))
    try:
        other = connect("127.0.0.1", upload=500)
        ports = in_process_connection()
        events = collector.wait_for(lambda e: ports_of(e) == ports, count=2)
        time.sleep(SETTLE_S)
    finally:
        assert stop_collector(collector) == 0
    assert {e["pid"] for e in events} == {os.getpid()}
    assert {e["role"] for e in events} == {"client", "server"}
    assert {e["pid"] for e in collector.events} == {os.getpid()}
    assert not [e for e in collector.events if other.server_port in ports_of(e)]


@pytest.fixture
def test_cgroup() -> Iterator[Path]:
    group = find_cgroup2_mount() / f"svcpulse-filter-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    yield group
    for _ in range(50):  # emptied asynchronously after its last process exits
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def test_cgroup_filter(test_cgroup: Path) -> None:
    collector = start_collector("--cgroup", f"/{test_cgroup.name}")
    try:
        conn = connect("127.0.0.1", upload=700, cgroup_procs=str(test_cgroup / "cgroup.procs"))
        events = collector.wait_for(lambda e: conn.server_port in ports_of(e))
        time.sleep(SETTLE_S)
    finally:
        assert stop_collector(collector) == 0
    # only the client end ran inside the cgroup; the server end, outside it, is filtered out
    assert [(e["pid"], e["role"], e["cgroup"]) for e in events] == [
        (conn.client_pid, "client", f"/{test_cgroup.name}")]
    assert {e["cgroup"] for e in collector.events} == {f"/{test_cgroup.name}"}


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match[1])


def test_full_socket_map_counts_lost_events() -> None:
    # A map of one socket cannot hold both ends of a loopback connection: one end must be lost.
    port, metrics_port = free_port(), free_port()
    collector = start_collector("--map-size", "1", "--ports", str(port), "--metrics-port", str(metrics_port))
    try:
        connect("127.0.0.1", upload=100, port=port)
        deadline = time.monotonic() + 10
        while metric(metrics_port, "svcpulse_tcplife_lost_events_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        lost = metric(metrics_port, "svcpulse_tcplife_lost_events_total")
        reported = metric(metrics_port, "svcpulse_tcplife_events_total")
    finally:
        assert stop_collector(collector) == 0
    assert lost >= 1 and reported <= 1
    assert lost + reported == 2  # every socket is either reported or counted as lost
    assert re.search(rf"{int(reported)} connections reported, {int(lost)} lost", collector.stderr[-1])


def test_run_in_a_thread_stops_on_its_event() -> None:
    # How `svcpulse up` can embed the collector: no signal handlers off the main thread.
    from collectors import tcplife

    parser = argparse.ArgumentParser()
    tcplife.configure(parser)
    args = parser.parse_args(["--output", "jsonl", "--ports", str(free_port())])
    stop, result = threading.Event(), []
    worker = threading.Thread(target=lambda: result.append(tcplife.run(args, stop)))
    worker.start()
    time.sleep(2.0)  # compile and attach
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive() and result == [0]
