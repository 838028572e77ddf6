"""The ring buffer read from its memory (collectors/ringbuf.py) on the real kernel: a one-page ring
(30 records) wraps around many times and every connection still arrives exactly once."""

from __future__ import annotations

import re
import socket

import pytest
from ebpf_helpers import ebpf_unavailable, free_port, start_collector, stop_collector

pytestmark = [pytest.mark.ebpf, pytest.mark.skipif(ebpf_unavailable() is not None,
                                                    reason=ebpf_unavailable() or "")]

ROUNDS, PER_ROUND = 20, 10  # 10 connections = 20 records = 2,720 bytes: fits the 4 KiB ring between reads


def test_a_one_page_ring_wraps_without_losing_or_repeating_events() -> None:
    port = free_port()
    collector = start_collector("--ring-pages", "1", "--ports", str(port), "--poll-interval", "0.02")
    client_ports: list[int] = []
    try:
        with socket.create_server(("127.0.0.1", port)) as listener:
            for round_ in range(1, ROUNDS + 1):
                for _ in range(PER_ROUND):
                    client = socket.create_connection(("127.0.0.1", port))
                    client_ports.append(client.getsockname()[1])
                    server, _peer = listener.accept()
                    server.close()
                    client.close()
                # the next round starts once this one was read, so the ring never overflows
                collector.wait_for(lambda e: port in (e["lport"], e["rport"]), count=2 * PER_ROUND * round_)
    finally:
        assert stop_collector(collector) == 0
    ours = [e for e in collector.events if port in (e["lport"], e["rport"])]
    clients = sorted(e["lport"] for e in ours if e["role"] == "client")
    servers = sorted(e["rport"] for e in ours if e["role"] == "server")
    assert clients == servers == sorted(client_ports)  # each end of each connection once, none twice
    assert all(e["outcome"] == "ok" for e in ours)
    assert re.search(rf"{len(collector.events)} connections reported, 0 lost", collector.stderr[-1])
