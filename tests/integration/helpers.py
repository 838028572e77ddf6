"""Helpers for tests against the real broker and store: an independent producer, waiting, loaders."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Producer

from pipeline import events
from pipeline.loader import Loader, LoaderConfig
from pipeline.store import Store, StoreError
from pipeline.topics import KEY_FIELD, TOPIC_BY_KIND
from svcpulse.services import ClickHouseServer


def produce(bootstrap: str, items: Iterable[tuple[str, Any]], compression: str = "none") -> int:
    """Produce (kind, event-or-raw-bytes) with confluent-kafka: a client independent of the loader's."""
    # murmur2_random: Kafka's default (Java) partitioner, which the weigh workers' sharding assumes.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "queue.buffering.max.messages": 500_000,
                         "compression.type": compression, "partitioner": "murmur2_random"})
    sent = 0
    for kind, item in items:
        if isinstance(item, bytes):
            value, key = item, b"raw"
        else:
            value, key = events.encode(kind, item), str(item[KEY_FIELD[kind]]).encode()
        while True:
            try:
                producer.produce(TOPIC_BY_KIND[kind], value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
    assert producer.flush(60) == 0, "messages left unsent"
    return sent


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A small real HTTP server collecting the JSON bodies POSTed to it: (its URL, the bodies)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except StoreError:
            pass  # the store may be down on purpose
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def count(store: Store, table: str) -> int:
    return int(store.execute(f"SELECT count() FROM {table}")[0][0])


def distinct_offsets(store: Store, table: str) -> int:
    return int(store.execute(f"SELECT uniqExact(_topic, _partition, _offset) FROM {table}")[0][0])


class LoaderThread:
    """A real Loader running in a thread of the test process."""

    def __init__(self, bootstrap: str, store: Store, **config: Any) -> None:
        self.loader = Loader(LoaderConfig(bootstrap=bootstrap, batch_age_s=0.5, **config), store)
        self.thread = threading.Thread(target=self.loader.run, daemon=True)

    def __enter__(self) -> Loader:
        self.thread.start()
        return self.loader

    def __exit__(self, *exc: object) -> None:
        self.loader.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "loader did not stop"


def store_url(store: Store, clickhouse: ClickHouseServer) -> str:
    """The URL of a loader_store, for a loader process of its own."""
    http = f"?http_port={clickhouse.http_port}" if store.json_inserts else ""
    return f"clickhouse://127.0.0.1:{clickhouse.port}/{store.database}{http}"
