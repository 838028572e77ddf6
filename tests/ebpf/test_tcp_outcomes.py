"""Connection outcomes and health fields from the real kernel (root + bcc; one collector per module)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest
from ebpf_helpers import Collector, ebpf_unavailable

from pipeline.events import validate

pytestmark = [pytest.mark.ebpf, pytest.mark.skipif(ebpf_unavailable() is not None,
                                                    reason=ebpf_unavailable() or "")]


def ends(collector: Collector, port_a: int, port_b: int, count: int = 2) -> dict[int, dict[str, Any]]:
    """The events of one connection, by local port."""
    found = collector.wait_for(lambda e: {e["lport"], e["rport"]} == {port_a, port_b}, count=count)
    assert len(found) == count, found
    for event in found:
        assert validate("tcp", event) == event
    return {e["lport"]: e for e in found}


def test_a_clean_connection_is_ok_with_handshake_and_rtt(collector: Collector) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        client.sendall(b"ping")
        assert server.recv(4) == b"ping"
        server.sendall(b"pong")
        assert client.recv(4) == b"pong"
        client_port = client.getsockname()[1]
        client.close()
        server.close()
    events = ends(collector, client_port, port)
    mine, theirs = events[client_port], events[port]
    assert (mine["outcome"], theirs["outcome"]) == ("ok", "ok")
    assert 0 < mine["connect_ms"] < 1000 and theirs["connect_ms"] == 0.0  # the handshake is the client's
    assert mine["srtt_us"] > 0 and theirs["srtt_us"] > 0
    assert (mine["resets_in"], mine["resets_out"], mine["retransmits"]) == (0, 0, 0)


def test_a_refused_connect_is_an_event(collector: Collector) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: the SYN is answered with a RST
        port = closed.getsockname()[1]
        client = socket.socket()
        client.bind(("127.0.0.1", 0))
        client_port = client.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
        client.close()
    event = ends(collector, client_port, port, count=1)[client_port]
    assert (event["outcome"], event["role"], event["resets_in"]) == ("refused", "client", 1)
    assert (event["connect_ms"], event["srtt_us"], event["tx_bytes"], event["rx_bytes"]) == (0.0, 0, 0, 0)


def test_an_abortive_close_is_aborted_here_and_reset_there(collector: Collector) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        client.sendall(b"request")
        time.sleep(0.05)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()  # the RST leaves after the socket reached TCP_CLOSE: counted all the same
        with pytest.raises(ConnectionResetError):
            client.recv(10)
        client_port = client.getsockname()[1]
        client.close()
    events = ends(collector, client_port, port)
    assert (events[port]["outcome"], events[port]["resets_out"]) == ("aborted", 1)
    assert (events[client_port]["outcome"], events[client_port]["resets_in"]) == ("reset", 1)
