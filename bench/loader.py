"""bench/loader: rpc events from the broker into the ClickHouse 18.16 server, two ways to measure.

Starts a fresh Tansu broker and ClickHouse server on free loopback ports.

Default (delay): runs `svcpulse load` as separate process(es) in one consumer group, offers
1,000,000 events with confluent-kafka at --rate per second (default 100,000; 0 = as fast as possible)
and prints sustained events/s and produce -> visible delay p50/p99. Target: >= 100,000/s, p99 <= 5 s.

--peer (issue 13): prefills the topic with --events contract rpc events (default 3,000,000), then
drains that same topic three times into fresh databases: with ClickHouse's own Kafka engine + a
materialized view (the peer, bench/kafka_engine.py), and with `svcpulse load` using each Kafka client.
It prints each drain rate (rows/s from the consumer's start, group join included, until every row
is visible; the same clock for all) and ours / peer; the target is >= 1.0 with one loader process.
Per drain it also prints the CPU per row of the server, the loader and the broker, and how many of the
machine's cores the three kept busy on average (near the core count: the machine is the limit).
--baseline REV drains twice more, with `svcpulse load` using the pipeline/ package of git commit REV
(before and after a change, from one run). Figures come with the load average: on a busy machine
they are provisional.

--cluster (issue 14): the same prefilled topic drained into one server and into the local 2 x 2
cluster, events/s side by side and rows/s per shard (bench/cluster.py).
Usage: .venv/bin/python bench/loader.py [--peer [--baseline REV] | --cluster] [--events N] [--rate R]
                                        [--loaders N] [--kafka-client kafka-python|confluent] [--batch-rows N]
                                        [--clients confluent,kafka-python] [--inserts native,json]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import ROOT, unpack
from bench.kafka_engine import KafkaEngineServer, start_engine, stop_engine
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

    now_ms = int(time.time() * 1000)
    payloads = [events.encode("rpc", rpc_event(i, ts_ms=now_ms - 60_000 + i)) for i in range(1000)]
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


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes used so far, from /proc."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Drained:
    """One drain: rows/s over the whole run (from the consumer's start), when the first rows became
    visible, and rows/s from then on (the steady rate, the group join and start-up left out; 0 when every
    row became visible at once, as the Kafka engine's view squashes a drain into one block)."""

    rate: float
    first_rows_s: float
    steady_rate: float


def drain(store_url: str, total: int, started: float, deadline_s: float = 1800) -> Drained:
    """Watch rpc_calls (every 100 ms) from `started` (the consumer's start: its group join included)
    until all `total` rows are visible."""
    store = open_store(store_url)
    deadline, first = time.monotonic() + deadline_s, (0.0, 0)
    while (visible := store.execute("SELECT count() FROM rpc_calls")[0][0]) < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"[bench/loader] only {visible:,} of {total:,} rows after {deadline_s:.0f} s")
        if visible and not first[1]:
            first = (time.monotonic(), visible)
        time.sleep(0.1)
    store.close()
    ended = time.monotonic()
    if not first[1]:  # every row became visible at once
        return Drained(total / (ended - started), ended - started, 0.0)
    return Drained(total / (ended - started), first[0] - started, (total - first[1]) / (ended - first[0]))


def loaders(bootstrap: str, store_url: str, args: argparse.Namespace, client: str, group: str,
            log: object, tree: Path | None = None) -> list[subprocess.Popen]:
    """`svcpulse load` processes; with `tree`, its pipeline/ package first (-m puts the working directory
    first on the path, so the process runs there), the rest from this tree."""
    env = {**os.environ, "PYTHONPATH": f"{tree}:{ROOT}"} if tree else None
    return [subprocess.Popen([sys.executable, "-m", "svcpulse", "load", "--bootstrap", bootstrap, "--store",
                              store_url, "--batch-rows", str(args.batch_rows), "--kafka-client", client,
                              "--group", group], stdout=log, stderr=log, cwd=tree, env=env)  # type: ignore[arg-type]
            for _ in range(args.loaders)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(60)


def compare_with_peer(broker: Tansu, clickhouse: ClickHouseServer, args: argparse.Namespace, work: Path) -> None:
    print(f"[bench/loader] prefilling {RPC} with {args.events:,} rpc events ...", flush=True)
    produce(broker.bootstrap, args.events, {}, 0)
    url = f"clickhouse://127.0.0.1:{clickhouse.port}"
    migrate(peer := open_store(f"{url}/peer"), log=False)
    print("[bench/loader] draining with ClickHouse's Kafka engine + materialized view (1 consumer) ...", flush=True)
    server, tansu = [clickhouse.pid() or 0], [broker.pid() or 0]
    started, cpu_before, broker_before = time.monotonic(), cpu_s(server), cpu_s(tansu)
    start_engine(peer, broker.bootstrap, RPC, "bench-peer")
    drained = drain(f"{url}/peer", args.events, started)
    results = {"ClickHouse Kafka engine": (drained, cpu_s(server) - cpu_before, 0.0, cpu_s(tansu) - broker_before)}
    stop_engine(peer)
    log = (work / "loader.log").open("w")
    trees: list[tuple[str, Path | None]] = [("", None)]
    if args.baseline and unpack(args.baseline, work / "baseline", "pipeline"):
        trees.append((f" at {args.baseline}", work / "baseline"))
    for (label, tree), client, inserts in itertools.product(trees, args.clients, args.inserts):
        if tree and inserts == "json" and not (tree / "pipeline" / "line_streams.py").exists():
            continue  # a baseline from before JSON-lines inserts drains with native inserts only
        name = f"svcpulse load, {client}{', JSON/HTTP' if inserts == 'json' else ''}{label}"
        database = f"ours_{len(results)}"
        migrate(open_store(f"{url}/{database}"), log=False)
        # JSON-lines inserts over HTTP (pipeline/line_streams.py) when the store URL names the HTTP port
        store_url = f"{url}/{database}" + (f"?http_port={clickhouse.http_port}" if inserts == "json" else "")
        print(f"[bench/loader] draining with {args.loaders} `{name}` process(es) ...", flush=True)
        started, server_before, broker_before = time.monotonic(), cpu_s(server), cpu_s(tansu)
        running = loaders(broker.bootstrap, store_url, args, client, f"bench-{len(results)}", log, tree)
        try:
            drained = drain(f"{url}/{database}", args.events, started)
            results[name] = (drained, cpu_s(server) - server_before, cpu_s([p.pid for p in running]),
                             cpu_s(tansu) - broker_before)
        finally:
            stop(running)
    peer = results["ClickHouse Kafka engine"][0]
    print(f"events      {args.events:,} contract rpc events, prefilled, 4 partitions; "
          f"{args.loaders} loader process(es); steady = from the first visible rows on")
    print(f"{'':<52} {'rows/s':>10} {'ratio':>6} {'first rows':>10} {'steady rows/s':>13} "
          f"{'CPU us/row: server':>19} {'loader':>7} {'broker':>7} {'cores busy':>10}")
    for name, (drained, server_cpu, loader_cpu, broker_cpu) in results.items():
        steady = f"{drained.steady_rate:>13,.0f}" if drained.steady_rate else f"{'all at once':>13}"
        per_row = [cpu / args.events * 1e6 for cpu in (server_cpu, loader_cpu, broker_cpu)]
        busy = (server_cpu + loader_cpu + broker_cpu) * drained.rate / args.events  # CPU s per wall s
        print(f"{name:<52} {drained.rate:>10,.0f} {drained.rate / peer.rate:>6.2f} {drained.first_rows_s:>9.1f}s "
              f"{steady} {per_row[0]:>19.1f} {per_row[1]:>7.1f} {per_row[2]:>7.1f} {busy:>10.2f}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
          "(figures are provisional when it is above ~1)")
    print(f"loader log   {work / 'loader.log'}")


def delay(broker: Tansu, clickhouse: ClickHouseServer, args: argparse.Namespace, work: Path) -> None:
    store_url = f"clickhouse://127.0.0.1:{clickhouse.port}/bench"
    migrate(open_store(store_url), log=False)
    log = (work / "loader.log").open("w")
    running = loaders(broker.bootstrap, store_url, args, args.kafka_client, "svcpulse-loader", log)
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
        print(f"load average           {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"loader log             {work / 'loader.log'}")
    finally:
        stop(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", action="store_true", help="compare with ClickHouse's Kafka engine")
    parser.add_argument("--events", type=int, help="default 1,000,000 (delay) or 3,000,000 (--peer)")
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"), default="kafka-python")
    parser.add_argument("--rate", type=float, default=100_000, help="events/s offered (0 = flood)")
    parser.add_argument("--loaders", type=int, default=1, help="loader processes in the consumer group")
    parser.add_argument("--baseline", default="", help="with --peer: also drain with pipeline/ at this commit")
    parser.add_argument("--clients", type=lambda text: text.split(","), default=["confluent", "kafka-python"],
                        help="with --peer: the Kafka clients our loaders drain with")
    parser.add_argument("--inserts", type=lambda text: text.split(","), default=["native", "json"],
                        help="with --peer: how our loaders insert, native and/or json (JSON lines over HTTP)")
    parser.add_argument("--cluster", action="store_true", help="one server vs the local 2 x 2 cluster, same events")
    args = parser.parse_args()
    args.events = args.events or (3_000_000 if args.peer else 1_000_000)
    if args.cluster:
        from bench.cluster import compare_loading

        compare_loading(args.events, args.loaders, args.kafka_client, args.batch_rows)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    broker = Tansu(port=free_port(), workdir=work / "tansu")
    clickhouse = KafkaEngineServer(port=free_port(), workdir=work / "ch") if args.peer else ClickHouseServer(
        port=free_port(), workdir=work / "ch")
    broker.start()
    clickhouse.start()
    try:
        ensure_topics(broker.bootstrap, [RPC])
        (compare_with_peer if args.peer else delay)(broker, clickhouse, args, work)
    finally:
        broker.stop()
        clickhouse.stop()


if __name__ == "__main__":
    main()
