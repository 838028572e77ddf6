"""Sink behaviour that needs no broker: JSON lines, validation, spooling while Kafka is unreachable,
bounded memory without a spool, and the prometheus counters. (Delivery is tested against a real
broker in tests/integration/test_sink.py.)"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from collectors.encoding import packer
from collectors.sink import open_sink
from collectors.sink_common import JsonlSink
from pipeline.events import Rejection
from svcpulse.services import free_port

LOAD = {"v": 1, "ts_ms": 1, "host": "h", "cgroup": "", "instance": "", "cpu_cores": 0.5,
        "cpu_limit_cores": 0, "mem_bytes": 1, "mem_limit_bytes": 0}  # fmt: skip


def metric(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


def test_jsonl_sink_writes_contract_lines() -> None:
    out = io.StringIO()
    sink = JsonlSink(out)
    sink.send("load", {**LOAD, "extra": "dropped"})
    with pytest.raises(Rejection):
        sink.send("load", {**LOAD, "cpu_cores": "lots"})
    sink.close()
    defaults = {"cpu_limit_cores": 0.0, "workload": "", "workload_kind": ""}
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [{**LOAD, **defaults}]
    assert sink.stats()["sent"] == 1


def test_unreachable_broker_spools_and_survives_restart(tmp_path: Path) -> None:
    spool_dir = str(tmp_path / "spool")
    before = metric("svcpulse_sink_spooled_total", "load")
    sink = open_sink(f"127.0.0.1:{free_port()}", spool_dir=spool_dir, delivery_timeout_ms=1000)
    for i in range(100):
        sink.send("load", {**LOAD, "ts_ms": i + 1})
    deadline = time.monotonic() + 15
    while sink.stats()["spooled"] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = sink.stats()
    assert (stats["spooled"], stats["spool_records"], stats["queued"], stats["sent"]) == (100, 100, 0, 0)
    assert not sink.flush(0.2)
    sink.send("load", {**LOAD, "ts_ms": 101})  # while spooling, new events queue behind in the spool
    assert sink.stats()["spool_records"] == 101
    sink.close(timeout_s=0.5)
    assert metric("svcpulse_sink_spooled_total", "load") - before == 101
    again = open_sink(f"127.0.0.1:{free_port()}", spool_dir=spool_dir, delivery_timeout_ms=1000)
    assert again.stats()["spool_records"] == 101  # replayed first once a broker answers
    again.close(timeout_s=0.2)


@pytest.mark.parametrize("how", ["send", "send_encoded", "send_values"])
def test_without_spool_memory_is_bounded_and_overflow_counted(how: str) -> None:
    before = metric("svcpulse_sink_dropped_total", "load")
    sink = open_sink(f"127.0.0.1:{free_port()}", memory_queue=10, delivery_timeout_ms=1000)
    loads = [{**LOAD, "ts_ms": i + 1} for i in range(25)]
    if how == "send_encoded":  # a receiver's whole request, checked and encoded by the caller, in one call
        sink.send_encoded("load", map(packer("load", None), loads))
    elif how == "send_values":  # a collector's read: one key, checked and encoded by the caller
        sink.send_values("load", b"h", [value for _key, value in map(packer("load", None), loads)])
    for event in loads if how == "send" else []:
        sink.send("load", event)  # returns at once although nothing can be delivered
    stats = sink.stats()
    assert stats["dropped"] == 15 and stats["queued"] == 10
    sink.close(timeout_s=0.2)
    assert sink.stats()["dropped"] == 25  # undeliverable and nowhere to keep them
    assert metric("svcpulse_sink_dropped_total", "load") - before == 25


def test_send_never_waits_for_kafka() -> None:
    sink = open_sink(f"127.0.0.1:{free_port()}", memory_queue=100_000)
    started = time.perf_counter()
    for i in range(5000):
        sink.send("load", {**LOAD, "ts_ms": i + 1})
    assert time.perf_counter() - started < 1.0
    sink.close(timeout_s=0.1)


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(TypeError):
        open_sink("127.0.0.1:9", lingerms=5)


def test_the_sink_opens_its_producer_when_it_opens_not_at_its_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the producer at the first batch took 0.56 s with confluent: at 40,000 events/s the memory
    queue (20,000) filled meanwhile and 2,000 events were dropped (docs/collect-tcp.md)."""
    opened: list[str] = []

    class Unused:
        def close(self, timeout_s: float = 0) -> None:
            """Nothing was produced."""

    monkeypatch.setattr("collectors.sink.new_producer", lambda servers, _opts: opened.append(servers) or Unused())
    sink = open_sink("127.0.0.1:9")
    try:
        deadline = time.monotonic() + 10
        while not opened and time.monotonic() < deadline:
            time.sleep(0.01)
        assert opened == ["127.0.0.1:9"] and sink.stats()["sent"] == 0
    finally:
        sink.close(timeout_s=0.2)
