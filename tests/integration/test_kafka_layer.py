"""core/kafka's contract (core/kafka/abstract.py), held by both backends against the real Tansu broker."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Producer as IndependentProducer
from confluent_kafka.admin import AdminClient, ConfigResource

from core.kafka import Consumer, DeliveryError, Message, ensure_topics, open_consumer, open_producer
from svcpulse.services import Tansu

pytestmark = pytest.mark.services
CLIENTS = ["kafka-python", "confluent"]


def poll_until(consumer: Consumer, done: Callable[[list[Message]], bool], timeout_s: float = 30) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while not done(got):
        assert time.monotonic() < deadline, f"timed out with {len(got)} message(s)"
        got += consumer.poll(0.2)
    return got


def produce_timed(bootstrap: str, topic: str, timestamps: list[int], partition: int = 0, batch: int = 10) -> None:
    """Messages with chosen timestamps, `batch` per record batch (an independent client sets them)."""
    producer = IndependentProducer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for start in range(0, len(timestamps), batch):
        for ts in timestamps[start:start + batch]:
            producer.produce(topic, b"v", key=b"k", partition=partition, timestamp=ts)
        assert producer.flush(10) == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_produce_and_produce_many_then_assign_read_all_partitions_in_key_order(broker: Tansu, client: str) -> None:
    assert ensure_topics(broker.bootstrap, ["layer"], partitions=4) == ["layer"]
    # a local queue of 300 messages: produce_many (the second half) must wait for room, not fail or drop
    producer = open_producer(client, broker.bootstrap, queue_max_messages=300)
    for i in range(1000):
        producer.produce("layer", b"%d" % i, key=b"key-%d" % (i % 5))
    producer.produce_many("layer", ((b"key-%d" % (i % 5), b"%d" % i) for i in range(1000, 2000)))
    producer.flush(30)
    producer.close()
    consumer = open_consumer(client, broker.bootstrap)
    assert consumer.partitions_for("layer") == {0, 1, 2, 3}
    assert consumer.partitions_for("no-such-topic") == set()
    consumer.assign({("layer", p): None for p in range(4)})
    got = poll_until(consumer, lambda got: len(got) >= 2000)
    consumer.close()
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    for message in got:
        by_key[message.key].append(int(message.value or b""))
    assert len(got) == 2000 and sorted(by_key) == [b"key-%d" % k for k in range(5)]
    assert all(values == sorted(values) for values in by_key.values()), "a key's messages out of order"
    assert len({(m.partition, m.key) for m in got}) == 5, "one key must map to one partition"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_paused_partition_hands_out_nothing_and_loses_nothing(broker: Tansu, client: str) -> None:
    ensure_topics(broker.bootstrap, ["paused"], partitions=2)
    producer = open_producer(client, broker.bootstrap, linger_ms=0)
    for i in range(3000):
        producer.produce("paused", b"%d" % i, key=b"k%d" % (i % 2))
    producer.flush(30)
    consumer = open_consumer(client, broker.bootstrap, max_poll_records=100)
    consumer.assign({("paused", 0): None, ("paused", 1): None})
    got = poll_until(consumer, lambda got: bool(got))
    consumer.pause({("paused", 0)})
    assert consumer.paused() == {("paused", 0)}
    for _ in range(10):  # whatever was fetched for partition 0 before the pause stays held back
        got += (taken := consumer.poll(0.2))
        assert all(m.partition == 1 for m in taken)
    consumer.resume({("paused", 0)})
    got += poll_until(consumer, lambda more: len(got) + len(more) >= 3000)
    offsets = defaultdict(list)
    for message in got:
        offsets[message.partition].append(message.offset)
    assert {p: sorted(o) for p, o in offsets.items()} == {p: list(range(len(o))) for p, o in offsets.items()}
    consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_commit_committed_seek_and_watermarks(broker: Tansu, client: str) -> None:
    produce_timed(broker.bootstrap, "marks", [1_000 * i for i in range(50)])
    tp = ("marks", 0)
    first = open_consumer(client, broker.bootstrap, "marks-group")
    assert first.committed({tp}) == {tp: None}
    first.assign({tp: None})
    assert poll_until(first, bool)[0].offset == 0
    assert first.commit({tp: 20}) is True
    assert first.committed({tp}) == {tp: 20}
    first.seek(tp, 3)
    assert poll_until(first, bool)[0].offset == 3
    low, high = first.watermarks(tp)
    assert low == 0 and 41 <= high <= 50  # Tansu: the last batch's base offset + 1 (Kafka: 50)
    assert first.watermarks(tp, cached=True)[1] == 50  # from the last fetch, no request: exact even on Tansu
    first.close()
    second = open_consumer(client, broker.bootstrap, "marks-group")
    second.assign({tp: None})  # None = the group's committed offset
    assert poll_until(second, bool)[0].offset == 20
    assert second.position(tp) is not None
    second.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_offsets_for_times_finds_the_first_message_at_or_after_the_time(broker: Tansu, client: str) -> None:
    base = int(time.time() * 1000) - 600_000
    timestamps = [base + 1000 * i for i in range(500)]  # 50 batches of 10
    produce_timed(broker.bootstrap, "times", timestamps)
    consumer = open_consumer(client, broker.bootstrap)
    tp = ("times", 0)
    asked = {-5_000: 0, 0: 0, 5_500: 6, 250_000: 250, 250_001: 251, 499_000: 499, 499_001: None, 10**7: None}
    answers = {delta: consumer.offsets_for_times({tp: base + delta})[tp] for delta in asked}
    consumer.close()
    assert answers == asked


@pytest.mark.parametrize("client", CLIENTS)
def test_group_rebalance_revokes_before_reassigning_and_on_assign_may_seek(broker: Tansu, client: str) -> None:
    ensure_topics(broker.bootstrap, ["group"], partitions=4)
    producer = open_producer(client, broker.bootstrap, linger_ms=0)
    for i in range(400):
        producer.produce("group", b"%d" % i, key=b"k%d" % i)
    producer.flush(30)
    calls: list[tuple[str, str, frozenset]] = []
    commits: list[bool] = []

    def member(name: str) -> Consumer:
        consumer = open_consumer(client, broker.bootstrap, "rebalance-group")

        def assigned(partitions: set) -> None:
            calls.append((name, "assign", frozenset(partitions)))
            for tp in partitions:
                consumer.seek(tp, 5)  # e.g. a worker rebuilding a window starts behind its commit

        def revoked(partitions: set) -> None:
            calls.append((name, "revoke", frozenset(partitions)))
            if partitions:  # a blocking call inside the callback works (kafka-python runs it off its IO thread)
                commits.append(consumer.commit({tp: 6 for tp in partitions}))

        consumer.subscribe(["group"], assigned, revoked)
        return consumer

    first = member("first")
    got = poll_until(first, lambda got: len({m.partition for m in got}) == 4)
    assert all(m.offset >= 5 for m in got) and {m.offset for m in got} >= {5}
    assert first.commit({("group", 0): 7}) is True
    second = member("second")
    everything = frozenset(("group", p) for p in range(4))

    def shares() -> dict[str, frozenset]:
        revoked = calls.index(("first", "revoke", everything)) if ("first", "revoke", everything) in calls else None
        return {} if revoked is None else {name: parts for name, kind, parts in calls[revoked + 1:] if kind == "assign"}

    # 120 s: once in CI (6d3e924) the second member had no share after 60 s while the first had its
    # half; a stuck group request is retried by the client after request_timeout_ms (30 s) and a rejoin
    deadline = time.monotonic() + 120
    while set(shares()) != {"first", "second"}:  # the first member's revoke comes before either new share
        assert time.monotonic() < deadline, "\n".join(map(repr, calls))
        first.poll(0.1)
        second.poll(0.1)
    assert sorted(len(parts) for parts in shares().values()) == [2, 2]
    assert frozenset.union(*shares().values()) == everything
    assert commits and all(commits), "a commit made in on_revoke must count"
    first.close()
    second.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_flush_raises_when_messages_are_not_acknowledged(broker: Tansu, client: str) -> None:
    producer = open_producer(client, broker.bootstrap, delivery_timeout_ms=3000, linger_ms=0)
    producer.produce("gone", b"first", key=b"k")
    producer.flush(10)
    broker.stop()
    producer.produce("gone", b"lost", key=b"k")
    with pytest.raises(DeliveryError, match="1 "):
        producer.flush(6)
    producer.close(1)


def test_ensure_topics_creates_missing_topics_with_their_configs(broker: Tansu) -> None:
    assert ensure_topics(broker.bootstrap, ["feed", "plain"], 2, {"cleanup.policy": "compact"}) == ["feed", "plain"]
    assert ensure_topics(broker.bootstrap, ["feed", "other"], 2) == ["other"]  # existing ones are left alone
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.describe_configs([ConfigResource("topic", "feed")])
    configs = next(iter(described.values())).result(10)
    assert configs["cleanup.policy"].value == "compact"
    assert len(admin.list_topics(timeout=10).topics["feed"].partitions) == 2
