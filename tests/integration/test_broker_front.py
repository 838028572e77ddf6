"""The embedded broker's front (svcpulse/broker_front.py) on real Tansu: one origin connection per
client, so consumers' long polls cannot hold up anyone's produce, and clients only ever learn the
front's address.

Tansu 0.6's own proxy (the front before this one) shares 8 origin connections among all clients; with
12 consumers long-polling behind it a produce timed out, and `svcpulse up` under bench/embedded_soak.py
waited 1-3 s per acknowledgement after a broker switch.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from collectors.producers import SinkOptions, deliver, new_producer
from core.kafka import ensure_topics
from pipeline.topics import LOADED_TOPICS
from svcpulse.rolling_broker import RollingBroker

pytestmark = pytest.mark.services

LONG_POLLERS = 12  # more than Tansu's proxy pool (4 per core on this 2-core machine)


@pytest.fixture
def rolling(tmp_path: Path) -> Iterator[RollingBroker]:
    broker = RollingBroker(tmp_path / "embedded-tansu", roll_mb=0)
    broker.start()
    ensure_topics(broker.bootstrap, [*LOADED_TOPICS])
    yield broker
    broker.stop()


def test_produces_are_answered_at_once_while_a_dozen_consumers_long_poll(rolling: RollingBroker) -> None:
    stop = threading.Event()

    def long_poll(n: int) -> None:  # an idle topic: every fetch waits the full fetch_max_wait_ms
        consumer = KafkaConsumer("svcpulse.load", bootstrap_servers=rolling.bootstrap, group_id=f"poller-{n}",
                                 fetch_max_wait_ms=500)
        while not stop.is_set():
            consumer.poll(timeout_ms=200)
        consumer.close()

    pollers = [threading.Thread(target=long_poll, args=(n,), daemon=True) for n in range(LONG_POLLERS)]
    for poller in pollers:
        poller.start()
    producer = new_producer(rolling.bootstrap, SinkOptions(linger_ms=5))
    try:
        time.sleep(8)  # every poller joined its group and is fetching
        took = []
        for n in range(20):
            started = time.monotonic()
            deliver(producer, [("rpc", f"svc{n}".encode(), b"{}")] * 100, 30)
            took.append(time.monotonic() - started)
    finally:
        producer.close(timeout_s=5)
        stop.set()
        for poller in pollers:
            poller.join(timeout=10)
    # Behind a shared pool each produce waits for a long poll (500 ms) to free a connection, or times out.
    assert statistics.median(took) < 0.2 and max(took) < 1.0, took


def test_clients_learn_only_the_front_address_also_after_a_roll(rolling: RollingBroker) -> None:
    front = ("127.0.0.1", int(rolling.bootstrap.rsplit(":", 1)[1]))
    for _ in range(2):
        admin = KafkaAdminClient(bootstrap_servers=rolling.bootstrap)
        try:  # a client that learnt the generation's own port would stay with it past a switch
            assert {(b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]} == {front}
            assert set(LOADED_TOPICS) <= set(admin.list_topics())
        finally:
            admin.close()
        rolling.roll()
