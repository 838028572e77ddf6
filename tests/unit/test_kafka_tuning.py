"""ConsumerTuning reaches each client in its own spelling; the loader shortens the fetch wait."""

from __future__ import annotations

from core.kafka import ConsumerTuning
from core.kafka.confluent import consumer_config
from core.kafka.kafka_python import consumer_options
from pipeline.loader_config import FETCH_MAX_WAIT_MS


def test_the_fetch_wait_reaches_both_clients_and_defaults_to_theirs() -> None:
    assert consumer_config("b:9092", "g", ConsumerTuning())["fetch.wait.max.ms"] == 500
    assert consumer_options("b:9092", "g", ConsumerTuning())["fetch_max_wait_ms"] == 500
    short = ConsumerTuning(fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    assert consumer_config("b:9092", "g", short)["fetch.wait.max.ms"] == FETCH_MAX_WAIT_MS < 500
    assert consumer_options("b:9092", "g", short)["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS
