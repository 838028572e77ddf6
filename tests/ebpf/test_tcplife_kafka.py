"""`--output kafka`: connections reach topic svcpulse.tcp through the shared sink (root + bcc + Tansu)."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from ebpf_helpers import connect, ebpf_unavailable, start_collector

from pipeline.events import decode
from pipeline.topics import TCP

pytestmark = [pytest.mark.ebpf, pytest.mark.services,
              pytest.mark.skipif(ebpf_unavailable() is not None, reason=ebpf_unavailable() or "")]


def read_topic(bootstrap: str, want: int, timeout: float = 20.0) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, decoded event) of the messages on svcpulse.tcp, once at least `want` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    deadline, found = time.monotonic() + timeout, []
    try:
        while time.monotonic() < deadline and len(found) < want:
            partitions = consumer.partitions_for_topic(TCP)
            if not partitions:
                time.sleep(0.2)
                continue
            consumer.assign([TopicPartition(TCP, p) for p in partitions])
            consumer.seek_to_beginning()
            batches = consumer.poll(timeout_ms=1000)
            found = [(m.key, decode("tcp", m.value)) for msgs in batches.values() for m in msgs]
    finally:
        consumer.close()
    return found


def test_events_reach_kafka_and_sigterm_stops_cleanly(broker: Any) -> None:
    collector = start_collector("--output", "kafka", "--bootstrap-servers", broker.bootstrap)
    try:
        conn = connect("127.0.0.1", upload=300_000)
        wanted = {conn.client_port, conn.server_port}
        messages = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            messages = [(k, e) for k, e in read_topic(broker.bootstrap, want=2)
                        if {e["lport"], e["rport"]} == wanted]
            if len(messages) == 2:
                break
    finally:
        collector.proc.send_signal(signal.SIGTERM)
        assert collector.proc.wait(timeout=20) == 0, collector.stderr
    assert len(messages) == 2
    by_role = {e["role"]: (k, e) for k, e in messages}
    assert set(by_role) == {"client", "server"}
    key, client = by_role["client"]
    assert key == b"ebpf-test"  # keyed by host (pipeline/topics.py KEY_FIELD)
    assert client["pid"] == conn.client_pid and 300_000 <= client["tx_bytes"] <= 300_002
    assert 300_000 <= by_role["server"][1]["rx_bytes"] <= 300_002
    assert any("stopped" in line for line in collector.stderr)
