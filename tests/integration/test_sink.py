"""The Kafka sink against a real Tansu broker: keys, topics, order per key, and a 60 s broker outage.

Tansu keeps data in memory, so an outage here is: stop the broker, keep emitting, start a NEW broker
on the same port. Events the old broker acknowledged die with it; everything from the moment it
stopped must arrive at the new one, in order per key, with nothing missing in between.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from collectors.sink import open_sink
from pipeline.topics import KEY_FIELD, TOPIC_BY_KIND
from svcpulse.services import Tansu, free_port

pytestmark = pytest.mark.services  # a real Tansu broker (started per test)

BASE_MS = 1_700_000_000_000  # ts_ms = BASE_MS + sequence number within the key


def event(kind: str, key: str, seq: int) -> dict:
    ts = BASE_MS + seq
    if kind == "rpc":
        return {"v": 1, "ts_ms": ts, "caller": "web", "callee": key, "interface": "/users/{id}",
                "instance": "10.0.0.1:80", "side": "client", "latency_ms": 1.5, "status": "ok", "code": "200",
                "version": "", "host": "n1", "cgroup": "/"}  # fmt: skip
    if kind == "load":
        return {"v": 1, "ts_ms": ts, "host": key, "cgroup": "/a", "instance": "", "cpu_cores": 0.5,
                "cpu_limit_cores": 0.0, "mem_bytes": 1, "mem_limit_bytes": 0}  # fmt: skip
    return {"v": 1, "ts_ms": ts, "host": key, "pid": 1, "comm": "x", "cgroup": "/", "family": 4,
            "laddr": "10.0.0.1", "lport": 80, "raddr": "10.0.0.2", "rport": 5555, "role": "server",
            "tx_bytes": 1, "rx_bytes": 2, "duration_ms": 0.1}  # fmt: skip


def consume_all(bootstrap: str, last: dict[tuple[str, str], int], timeout_s: float = 60) -> dict:
    """(kind, key) -> sequence numbers in partition order (the order a loader would see), read until
    every (kind, key) of `last` has shown its last sequence number."""
    kinds = sorted({kind for kind, _ in last})
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        parts = [TopicPartition(TOPIC_BY_KIND[k], p) for k in kinds for p in _partitions(consumer, TOPIC_BY_KIND[k])]
        consumer.assign(parts)  # no group: no join delay, every partition from the start
        consumer.seek_to_beginning()
        seen: dict[tuple[str, str], list[int]] = defaultdict(list)
        deadline = time.monotonic() + timeout_s
        kind_of = {TOPIC_BY_KIND[k]: k for k in kinds}
        pending = dict(last)
        while pending and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    kind = kind_of[tp.topic]
                    doc = json.loads(m.value)
                    assert m.key == doc[KEY_FIELD[kind]].encode()  # key = KEY_FIELD value
                    seq, name = doc["ts_ms"] - BASE_MS, (kind, m.key.decode())
                    seen[name].append(seq)
                    if pending.get(name) == seq:
                        del pending[name]
        return seen
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return parts
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} never appeared")


def first_arrivals(seqs: list[int]) -> tuple[list[int], int]:
    """Sequence numbers in arrival order without repeats (delivery is at-least-once), and the repeats."""
    seen: set[int] = set()
    out = [s for s in seqs if not (s in seen or seen.add(s))]
    return out, len(seqs) - len(out)


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_send_keys_topics_and_order(broker: Tansu, tmp_path: Path, client: str) -> None:
    sink = open_sink(broker.bootstrap, spool_dir=str(tmp_path / "spool"), kafka_client=client)
    keys = {"rpc": ["svc-a", "svc-b"], "load": ["h1", "h2"], "tcp": ["h1", "h3"]}
    for seq in range(300):
        for kind, names in keys.items():
            for key in names:
                sink.send(kind, event(kind, key, seq))
    assert sink.flush(30)
    stats = sink.stats()
    sink.close()
    assert stats["sent"] == 1800 and stats["spooled"] == 0 and stats["dropped"] == 0
    seen = consume_all(broker.bootstrap, {(kind, key): 299 for kind, names in keys.items() for key in names})
    for kind, names in keys.items():
        for key in names:
            assert seen[(kind, key)] == list(range(300)), (kind, key)


class Emitter(threading.Thread):
    """A collector stand-in: sends events of one kind for two keys at a steady rate until stopped."""

    def __init__(self, sink, kind: str, keys: list[str], rate_hz: float) -> None:
        super().__init__(daemon=True)
        self.sink, self.kind, self.keys, self.period = sink, kind, keys, 1.0 / rate_hz
        self.next_seq = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop_flag.is_set():
            for key in self.keys:
                self.sink.send(self.kind, event(self.kind, key, self.next_seq))
            self.next_seq += 1
            delay = started + self.next_seq * self.period - time.monotonic()
            if delay > 0:
                self.stop_flag.wait(delay)


def test_broker_outage_60s_every_event_arrives_in_order(tmp_path: Path) -> None:
    port = free_port()
    old = Tansu(port=port, workdir=tmp_path / "old")
    old.start()
    sink = open_sink(old.bootstrap, spool_dir=str(tmp_path / "spool"), delivery_timeout_ms=4000)
    emitters = [Emitter(sink, "rpc", ["svc-a", "svc-b"], 100), Emitter(sink, "load", ["h1", "h2"], 100),
                Emitter(sink, "tcp", ["h1", "h2"], 100)]  # fmt: skip
    new = Tansu(port=port, workdir=tmp_path / "new")
    try:
        for e in emitters:
            e.start()
        time.sleep(3)
        old.stop()
        at_stop = {e.kind: e.next_seq for e in emitters}  # everything from here on must survive
        time.sleep(60)
        assert sink.stats()["spooled"] > 0
        new.start()
        time.sleep(5)
        for e in emitters:
            e.stop_flag.set()
            e.join()
        assert sink.flush(90), sink.stats()
        stats = sink.stats()
        last = {e.kind: e.next_seq - 1 for e in emitters}
        seen = consume_all(new.bootstrap, {(e.kind, key): last[e.kind] for e in emitters for key in e.keys})
    finally:
        for e in emitters:
            e.stop_flag.set()
        sink.close(timeout_s=5)
        new.stop()
        old.stop()
    assert stats["dropped"] == 0 and stats["replayed"] > 0, stats
    for e in emitters:
        for key in e.keys:
            order, repeats = first_arrivals(seen[(e.kind, key)])
            assert order, (e.kind, key)
            assert order[0] <= at_stop[e.kind], (e.kind, key, order[0], at_stop[e.kind])
            assert order == list(range(order[0], last[e.kind] + 1)), (e.kind, key, "gap or reorder")
            assert repeats <= 4000, (e.kind, key, repeats)  # resent batches only, not the whole stream


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_spool_left_by_an_earlier_run_is_replayed_first(broker: Tansu, tmp_path: Path, client: str) -> None:
    spool_dir = str(tmp_path / "spool")
    offline = open_sink(f"127.0.0.1:{free_port()}", spool_dir=spool_dir, delivery_timeout_ms=1000,
                        kafka_client=client)
    for seq in range(200):
        offline.send("rpc", event("rpc", "svc-a", seq))
    deadline = time.monotonic() + 15
    while offline.stats()["spooled"] < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    offline.close(timeout_s=0.2)  # the collector stops with everything on disk
    sink = open_sink(broker.bootstrap, spool_dir=spool_dir, kafka_client=client)
    for seq in range(200, 300):  # a restarted collector: new events go behind the old ones
        sink.send("rpc", event("rpc", "svc-a", seq))
    assert sink.flush(30)
    stats = sink.stats()
    sink.close()
    assert stats["replayed"] == 300 and stats["spool_records"] == 0
    assert consume_all(broker.bootstrap, {("rpc", "svc-a"): 299})[("rpc", "svc-a")] == list(range(300))
    assert list(Path(spool_dir).glob("*.seg")) == []

