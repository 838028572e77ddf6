"""bench/loader: 1,000,000 rpc events from the broker into the ClickHouse 18.16 server.

Starts a fresh Tansu broker and ClickHouse server on free loopback ports, runs `svcpulse load` as
separate process(es) in one consumer group, offers the events with confluent-kafka at --rate per
second (default 100,000, the target; 0 = as fast as possible), and prints:
  - sustained events/s (first produce acknowledged -> last row visible in ClickHouse), and
  - produce -> visible delay p50/p99 (a row's delay = when a poll first sees its offset minus when
    the broker acknowledged it; polls every 100 ms).
Target on a 2-core machine: >= 100,000 events/s and p99 <= 5 s.
Usage: .venv/bin/python bench/loader.py [--events N] [--rate R] [--loaders N]
                                        [--kafka-client kafka-python|confluent] [--batch-rows N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.kafka import ensure_topics
from pipeline import events
from pipeline.migrate import migrate
from pipeline.store import open_store
from pipeline.topics import RPC, TOPIC_BY_KIND
from svcpulse.services import ClickHouseServer, Tansu, free_port
from tests.factories import rpc_event


def produce(bootstrap: str, total: int, acked: dict[int, list[float]], rate: float) -> None:
    """Produce `total` events at `rate` per second (0 = as fast as possible), paced per 10 ms."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 1_000_000})

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked.setdefault(msg.partition(), []).append(time.monotonic())  # type: ignore[attr-defined]

    payloads = [events.encode("rpc", rpc_event(i, ts_ms=1_764_000_000_000 + i)) for i in range(1000)]
    started = time.monotonic()
    for i in range(total):
        if rate and i % 1000 == 0:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(TOPIC_BY_KIND["rpc"], payloads[i % 1000], key=b"k%d" % (i % 64),
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(120)


def watch(store_url: str, total: int, acked: dict[int, list[float]]) -> tuple[float, list[float]]:
    """Poll max(_offset) per partition; newly visible offsets get their delay. Returns (end time, delays)."""
    store = open_store(store_url)
    seen: dict[int, int] = {}
    delays: list[float] = []
    visible = 0
    while visible < total:
        time.sleep(0.1)
        now = time.monotonic()
        for partition, high in store.execute("SELECT _partition, max(_offset) FROM rpc_calls GROUP BY _partition"):
            times = acked.get(partition, [])
            start = seen.get(partition, -1) + 1
            delays += [now - t for t in times[start:high + 1]]
            seen[partition] = high
        visible = sum(high + 1 for high in seen.values())
    store.close()
    return time.monotonic(), delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"), default="kafka-python")
    parser.add_argument("--rate", type=float, default=100_000, help="events/s offered (0 = flood)")
    parser.add_argument("--loaders", type=int, default=1, help="loader processes in the consumer group")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    broker, clickhouse = Tansu(port=free_port(), workdir=work / "tansu"), ClickHouseServer(port=free_port(),
                                                                                           workdir=work / "ch")
    broker.start()
    clickhouse.start()
    store_url = f"clickhouse://127.0.0.1:{clickhouse.port}/bench"
    migrate(open_store(store_url), log=False)
    ensure_topics(broker.bootstrap, [RPC])
    log = (work / "loader.log").open("w")
    loaders = [subprocess.Popen([sys.executable, "-m", "svcpulse", "load", "--bootstrap", broker.bootstrap,
                                 "--store", store_url, "--batch-rows", str(args.batch_rows),
                                 "--kafka-client", args.kafka_client], stdout=log, stderr=log)
               for _ in range(args.loaders)]
    try:
        time.sleep(5 + 3 * args.loaders)  # group joins
        offered = f"{args.rate:,.0f}" if args.rate else "max"
        print(f"[bench/loader] producing {args.events:,} rpc events at {offered} /s to "
              f"{broker.bootstrap}; {args.loaders} loader(s) with {args.kafka_client} ...", flush=True)
        acked: dict[int, list[float]] = {}
        started = time.monotonic()
        producer = threading.Thread(target=produce, args=(broker.bootstrap, args.events, acked, args.rate))
        producer.start()
        ended, delays = watch(store_url, args.events, acked)
        producer.join()
        produce_rate = args.events / (max(max(t) for t in acked.values()) - started)
        delays.sort()
        print(f"events                 {args.events:,} (loader Kafka client: {args.kafka_client})")
        print(f"offered rate           {produce_rate:,.0f} events/s (confluent-kafka producer)")
        print(f"sustained load rate    {args.events / (ended - started):,.0f} events/s")
        print(f"produce->visible p50   {statistics.median(delays):.2f} s")
        print(f"produce->visible p99   {delays[int(len(delays) * 0.99)]:.2f} s")
        print(f"loader log             {work / 'loader.log'}")
    finally:
        for loader in loaders:
            loader.terminate()
        for loader in loaders:
            loader.wait(60)
        broker.stop()
        clickhouse.stop()


if __name__ == "__main__":
    main()
