"""bench/soak: the whole pipeline under steady load for a long time, watching for loss and growth.

Starts a Tansu broker, a ClickHouse 18.16 server, `svcpulse load` replicas and `svcpulse api` as
separate processes; offers rpc events of 20 services (keyed by callee, as the contract says, so the
partitions and loader replicas share the work) at --rate per second for --minutes while polling the
weight feed at --feed-rps; every --every seconds prints the consumer lag (produced - loaded), the feed's
p99 so far, and the RSS of every process; at the end prints events lost and duplicated.
Target: 30 minutes at 50,000 events/s with the feed polled at 200 req/s: 0 lost, 0 duplicates, flat
memory. Loopback only; bounded by --minutes.
Usage: .venv/bin/python bench/soak.py [--minutes 30] [--rate 50000] [--feed-rps 200] [--loaders 2]
                                      [--kafka-client confluent]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.queries.discovery import write_policy
from core.kafka import ensure_topics
from pipeline import events
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from pipeline.topics import DLQ, LOADED_TOPICS, RPC
from svcpulse.services import ClickHouseServer, Tansu, free_port, port_open


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Offered:
    """Produces rpc events at a steady rate from a thread; counts what the broker acknowledged."""

    def __init__(self, bootstrap: str, rate: float) -> None:
        self.rate, self.acked, self.failed = rate, 0, 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                                  "queue.buffering.max.messages": 2_000_000})
        self.stop = threading.Event()
        instances = [f"10.7.0.{n}:8080" for n in range(1, 6)]
        self.payloads = [events.encode("rpc", {
            "v": 1, "ts_ms": 1_000_000_000_000, "caller": "soak", "callee": f"soak.svc{n % 20}",  # ts_ms: replaced
            "interface": f"GET /items/{{id}}/{n % 7}",
            "instance": instances[n % 5], "side": "server", "latency_ms": 5.0 + n % 40, "status": "ok",
            "code": "200", "version": "v1", "host": "soak", "cgroup": ""}) for n in range(500)]

    def _delivered(self, error: object, _message: object) -> None:
        if error is None:
            self.acked += 1
        else:
            self.failed += 1

    def run(self) -> None:
        started, sent = time.monotonic(), 0
        while not self.stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            now_ms = str(int(time.time() * 1000)).encode()
            for n in range(sent, due):
                payload = self.payloads[n % 500].replace(b"\"ts_ms\":1000000000000", b"\"ts_ms\":" + now_ms, 1)
                while True:
                    try:
                        self.producer.produce(RPC, payload, key=b"soak.svc%d" % (n % 500 % 20),
                                              on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.01)
            sent = max(sent, due)
            self.producer.poll(0.005)
        self.producer.flush(120)


class FeedPoller:
    """Polls GET /v1/weights/soak.svc0 at a steady rate from threads; keeps every latency."""

    def __init__(self, base: str, rps: float, threads: int = 4) -> None:
        self.base, self.period = base, threads / rps
        self.latencies: list[float] = []
        self.errors = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._poll, daemon=True) for _ in range(threads)]

    def _poll(self) -> None:
        with httpx.Client(timeout=5) as http:
            next_at = time.monotonic()
            while not self.stop.wait(max(0.0, next_at - time.monotonic())):
                next_at += self.period
                started = time.perf_counter()
                try:
                    ok = http.get(f"{self.base}/v1/weights/soak.svc0").status_code in (200, 404)
                except httpx.HTTPError:
                    ok = False
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.errors += not ok

    def p99(self) -> float:
        recent = sorted(self.latencies[-20000:])
        return recent[int(len(recent) * 0.99)] if recent else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=50_000)
    parser.add_argument("--feed-rps", type=float, default=200)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"), default="confluent")
    parser.add_argument("--every", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    broker = Tansu(port=free_port(), workdir=work / "tansu")
    clickhouse = ClickHouseServer(port=free_port(), workdir=work / "clickhouse")
    broker.start()
    clickhouse.start()
    store_url = f"clickhouse://127.0.0.1:{clickhouse.port}/soak"
    store = open_store(store_url)
    migrate(store, log=False)
    write_policy(store, "soak.svc0", ["10.7.0.0/24"], why="the soak's instances")  # telemetry alone routes nothing
    ensure_topics(broker.bootstrap, [*LOADED_TOPICS, DLQ], partitions=8)
    log = (work / "processes.log").open("w")
    common = ["--bootstrap", broker.bootstrap, "--store", store_url]
    loaders = [subprocess.Popen([sys.executable, "-m", "svcpulse", "load", *common, "--kafka-client",
                                 args.kafka_client], stdout=log, stderr=log) for _ in range(args.loaders)]
    weigh = subprocess.Popen([sys.executable, "-m", "svcpulse", "weigh", *common], stdout=log, stderr=log)
    loaders.append(weigh)  # stopped with the loaders
    api_port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "svcpulse", "api", *common, "--port", str(api_port)],
                           stdout=log, stderr=log, env={"SVCPULSE_FEED_OPEN": "true", "PATH": "/usr/bin:/bin"})
    processes = {**{f"loader{n}": p.pid for n, p in enumerate(loaders[:-1])}, "weigh": weigh.pid, "api": api.pid,
                 "broker": broker.pid() or 0, "clickhouse": clickhouse.pid() or 0}
    try:
        while not port_open(api_port):
            time.sleep(0.1)
        time.sleep(5 + 2 * args.loaders)  # group joins
        run(args, broker.bootstrap, f"http://127.0.0.1:{api_port}", store, processes)
    finally:
        for process in (*loaders, api):
            process.terminate()
        for process in (*loaders, api):
            process.wait(60)
        broker.stop()
        clickhouse.stop()
        print(f"logs in {work}")


def rows_and_distinct(store: Store) -> tuple[int, int]:
    """Rows and distinct (partition, offset) pairs, one partition at a time: an exact distinct count
    over ~100M rows at once passes ClickHouse's per-query memory limit."""
    rows = distinct = 0
    for (partition,) in store.execute("SELECT DISTINCT _partition FROM rpc_calls"):
        count, unique = store.execute("SELECT count(), uniqExact(_offset) FROM rpc_calls WHERE _partition = "
                                      "%(p)s", {"p": partition})[0]
        rows, distinct = rows + count, distinct + unique
    return rows, distinct


def run(args: argparse.Namespace, bootstrap: str, base: str, store: Store, processes: dict[str, int]) -> None:
    offered, poller = Offered(bootstrap, args.rate), FeedPoller(base, args.feed_rps)
    producer = threading.Thread(target=offered.run)
    producer.start()
    for thread in poller.threads:
        thread.start()
    print(f"[bench/soak] {args.rate:,.0f} events/s for {args.minutes:g} min, feed at {args.feed_rps:g} req/s, "
          f"{args.loaders} loader(s) with {args.kafka_client}")
    print("   t_s   produced     loaded       lag  feed_p99_ms  " + "  ".join(f"{n}_MB" for n in processes))
    started, max_lag = time.monotonic(), 0
    while time.monotonic() - started < args.minutes * 60:
        time.sleep(args.every)
        loaded = store.execute("SELECT count() FROM rpc_calls")[0][0]
        lag = offered.acked - loaded
        max_lag = max(max_lag, lag)
        rss = "  ".join(f"{rss_mb(pid):>{len(n) + 3}.0f}" for n, pid in processes.items())
        elapsed = time.monotonic() - started
        print(f"{elapsed:6.0f} {offered.acked:10,} {loaded:10,} {lag:9,} {poller.p99():12.1f}  {rss}", flush=True)
    offered.stop.set()
    producer.join()
    poller.stop.set()
    deadline = time.monotonic() + 300
    count_sql = "SELECT count() FROM rpc_calls"
    while store.execute(count_sql)[0][0] < offered.acked and time.monotonic() < deadline:
        time.sleep(1)
    rows, distinct = rows_and_distinct(store)
    print(f"produced (acknowledged) {offered.acked:,}; produce failures {offered.failed}")
    print(f"events lost             {offered.acked - distinct:,}")
    print(f"duplicates              {rows - distinct:,}")
    print(f"max consumer lag        {max_lag:,} events")
    print(f"feed p99                {poller.p99():.1f} ms over {len(poller.latencies):,} requests, "
          f"{poller.errors} errors")


if __name__ == "__main__":
    main()
