"""Feed freshness: how fast a broken instance is cut, streaming (`svcpulse weigh`) vs today's path.

Background traffic of --rate events/s (default 20,000) over 200 instances (20 services x 10), keyed by
callee, from a confluent-kafka producer. --flips times (default 20) one instance turns to 100% errors
(a different one each time, --spacing s apart); the figure is the time from the first bad event
produced to the first feed that cuts it (weight below 100), p50/p99.
- streaming: `svcpulse weigh` as a process (default settings: tick 0.5 s, cycle 2 s; --kafka-client,
  confluent by default as in compose), feeds read from
  svcpulse.weights; its CPU per 1,000 events from /proc; its ClickHouse queries in the steady state
  from its svcpulse_weigh_store_calls counter (target: none).
- baseline (today's path before control plane v2): `svcpulse load` into ClickHouse 18.16, and every
  2 s the rpc_calls scan (api/queries/weights.py) + the same engine; CPU = loader + ClickHouse server +
  the cycle, per 1,000 events.
Both sides run on fresh real services (Tansu, ClickHouse 18.16) on free ports, one after the other.

    .venv/bin/python bench/freshness.py [--rate 20000] [--flips 20] [--spacing 8] [--side both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Producer

from api.queries.registry import register
from api.queries.weights import observed_instances
from pipeline.migrate import migrate
from pipeline.store import open_store
from svcpulse.services import ClickHouseServer, Tansu, free_port
from weigh.kafka import ensure_control_topics, reader
from weights.engine import compute_weights
from weights.inputs import build_windows
from weights.message import decode
from weights.model import EngineState

SERVICES = [f"bench.svc{n:02d}" for n in range(20)]
INSTANCES = {s: [f"10.{n}.0.{i}:80" for i in range(1, 11)] for n, s in enumerate(SERVICES)}
CLK = os.sysconf("SC_CLK_TCK")
QUERIES = 'svcpulse_weigh_store_calls_total{kind="query"}'
COUNTED = "svcpulse_weigh_events_total"


class Flips:
    """Which instance is broken now, when its first bad event left, when a feed first cut it."""

    def __init__(self) -> None:
        self.current: tuple[str, str] | None = None
        self.first_bad: dict[tuple[str, str], float] = {}
        self.cut: dict[tuple[str, str], float] = {}
        self.published: dict[tuple[str, str], float] = {}  # the cutting feed's Kafka timestamp (its tick)

    def saw(self, service: str, weights: dict[str, int], published_s: float | None = None) -> None:
        broken = self.current
        if broken and broken[0] == service and broken in self.first_bad and broken not in self.cut \
                and weights.get(broken[1], 100) < 100:
            self.cut[broken] = time.time()
            if published_s is not None:
                self.published[broken] = published_s

    def delays(self) -> list[float]:
        return sorted(self.cut[k] - self.first_bad[k] for k in self.cut)

    def slowest(self, n: int = 3) -> str:
        """The n slowest flips split where the time went: until the worker's tick published the cutting
        feed (transport to the worker + its window + the tick) and from there until it was read."""
        worst = sorted(self.cut, key=lambda k: self.cut[k] - self.first_bad[k], reverse=True)[:n]
        return ", ".join(f"{self.cut[k] - self.first_bad[k]:.2f} s = {self.published[k] - self.first_bad[k]:.2f} "
                         f"to the feed + {self.cut[k] - self.published[k]:.2f} to the reader"
                         for k in worst if k in self.published)


def traffic(bootstrap: str, rate: int, flips: Flips, stop: threading.Event, sent: list[int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    keys = [(s, i) for s in SERVICES for i in INSTANCES[s]]
    tick, n = 0.05, 0
    while not stop.is_set():
        started = time.time()
        broken = flips.current
        for _ in range(int(rate * tick)):
            service, instance = keys[n % len(keys)]
            bad = (service, instance) == broken
            event = {"v": 1, "ts_ms": int(time.time() * 1000), "caller": "bench", "callee": service,
                     "interface": "GET /x", "instance": instance, "side": "server", "latency_ms": 5.0 + n % 7,
                     "status": "error" if bad else "ok", "code": "503" if bad else "200", "version": "v1",
                     "host": "bench", "cgroup": ""}
            producer.produce("svcpulse.rpc", orjson.dumps(event), key=service.encode())
            if bad and broken not in flips.first_bad:
                flips.first_bad[broken] = time.time()
            n += 1
        producer.poll(0)
        sent[0] = n
        time.sleep(max(0.0, tick - (time.time() - started)))
    producer.flush(30)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def run_flips(flips: Flips, count: int, spacing: float) -> None:
    for k in range(count):
        service = SERVICES[k % len(SERVICES)]
        flips.current = (service, INSTANCES[service][k % 10])
        time.sleep(spacing)
        flips.current = None
        time.sleep(1.0)


def streaming(work: Path, broker: Tansu, store_url: str, args: argparse.Namespace) -> dict[str, float]:
    flips, stop, sent = Flips(), threading.Event(), [0]
    metrics_port = free_port()
    env = {**os.environ, "SVCPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "SVCPULSE_STORE_URL": store_url,
           "SVCPULSE_KAFKA_CLIENT": args.kafka_client}
    log = (work / "weigh.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "svcpulse", "weigh", "--metrics-port", str(metrics_port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    feeds = threading.Thread(target=read_feeds, args=(args.kafka_client, broker.bootstrap, flips, stop), daemon=True)
    feeder = threading.Thread(target=traffic, args=(broker.bootstrap, args.rate, flips, stop, sent), daemon=True)
    feeds.start()
    feeder.start()
    try:
        time.sleep(args.warmup)
        queries0, counted0 = worker_metric(metrics_port, QUERIES), worker_metric(metrics_port, COUNTED)
        cpu0, sent0, t0 = cpu_s(worker.pid), sent[0], time.time()
        run_flips(flips, args.flips, args.spacing)
        cpu, produced, seconds = cpu_s(worker.pid) - cpu0, sent[0] - sent0, time.time() - t0
        queries = worker_metric(metrics_port, QUERIES) - queries0
        counted = int(worker_metric(metrics_port, COUNTED) - counted0)
    finally:
        stop.set()
        feeder.join(60)
        worker.terminate()
        worker.wait(30)
    # CPU per 1,000 events the worker counted (a worker starved of CPU counts fewer than were produced)
    return report("streaming", flips, cpu, counted, produced / seconds, f"ClickHouse queries in the steady state: "
                  f"{queries:.0f}; the worker counted {counted} of {produced} events produced while measuring")


def worker_metric(port: int, series: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series))


def read_feeds(client: str, bootstrap: str, flips: Flips, stop: threading.Event) -> None:
    consumer = reader(client, bootstrap, "bench-freshness")
    tps = [("svcpulse.weights", p) for p in consumer.partitions_for("svcpulse.weights")]
    consumer.assign({tp: consumer.watermarks(tp)[1] for tp in tps})  # feeds from now on
    while not stop.is_set():
        for message in consumer.poll(0.05):
            try:
                feed = decode(message.key, message.value).feed
            except ValueError as err:
                print(f"[freshness] feed message skipped: {err}", flush=True)
                continue
            if feed:
                flips.saw(feed["service"], {i["instance"]: i["weight"] for i in feed["instances"]},
                          message.timestamp_ms / 1000)
    consumer.close()


def baseline(work: Path, broker: Tansu, clickhouse: ClickHouseServer, store_url: str,
             args: argparse.Namespace) -> dict[str, float]:
    flips, stop, sent = Flips(), threading.Event(), [0]
    log = (work / "load.log").open("w")
    loader = subprocess.Popen([sys.executable, "-m", "svcpulse", "load", "--bootstrap", broker.bootstrap,
                               "--store", store_url, "--kafka-client", args.kafka_client],
                              stdout=log, stderr=subprocess.STDOUT)
    cycle_cpu = [0.0]
    cycle = threading.Thread(target=todays_cycle, args=(store_url, flips, stop, cycle_cpu), daemon=True)
    feeder = threading.Thread(target=traffic, args=(broker.bootstrap, args.rate, flips, stop, sent), daemon=True)
    feeder.start()
    cycle.start()
    try:
        time.sleep(args.warmup)
        server_pid = clickhouse.pid()
        if server_pid is None:
            raise RuntimeError("the ClickHouse server is not running")
        pids = (loader.pid, server_pid)
        cpu0, own0, sent0, t0 = sum(map(cpu_s, pids)), cycle_cpu[0], sent[0], time.time()
        run_flips(flips, args.flips, args.spacing)
        cpu = sum(map(cpu_s, pids)) - cpu0 + cycle_cpu[0] - own0
        events, seconds = sent[0] - sent0, time.time() - t0
        rate = events / seconds
    finally:
        stop.set()
        feeder.join(60)
        loader.terminate()
        loader.wait(60)
    return report("baseline", flips, cpu, events, rate, "loader + ClickHouse + a 2 s scan cycle, per event produced")


def todays_cycle(store_url: str, flips: Flips, stop: threading.Event, cpu: list[float]) -> None:
    """What the API did every 2 s before v2: scan rpc_calls, step the engine per service."""
    store, states = open_store(store_url), {}
    while not stop.wait(2.0):
        started = time.thread_time()
        now = int(time.time() * 1000)
        windows = build_windows(observed_instances(store, now, 10, 300), [], 10)
        for service, service_windows in windows.items():
            result = compute_weights(service_windows, states.get(service, EngineState()), now)
            states[service] = result.state
            flips.saw(service, {i.instance: i.weight for i in result.instances})
        cpu[0] += time.thread_time() - started


def report(name: str, flips: Flips, cpu: float, events: int, rate: float, note: str) -> dict[str, float]:
    delays = flips.delays()
    p50 = statistics.median(delays) if delays else float("nan")
    # inclusive: of 20 flips the p99 lies between the two slowest, never beyond the slowest seen
    p99 = statistics.quantiles(delays, n=100, method="inclusive")[98] if len(delays) > 1 else float("nan")
    figures = {"p50": p50, "p99": p99, "cut": len(delays), "rate": rate, "cpu_per_1000": cpu / max(events, 1) * 1000}
    print(f"{name:<10} first bad event -> first feed cutting it: p50 {p50:.2f} s  p99 {p99:.2f} s  "
          f"max {max(delays, default=float('nan')):.2f} s  "
          f"({len(delays)} of {len(flips.first_bad)} flips cut)  {figures['rate']:.0f} events/s  "
          f"CPU {figures['cpu_per_1000'] * 1000:.1f} ms per 1,000 events  ({note})", flush=True)
    if flips.published:
        print(f"{'':<10} slowest flips: {flips.slowest()}", flush=True)
    return figures


def with_services(body: Callable[[Path, Tansu, ClickHouseServer, str], dict[str, float]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="freshness-") as tmp:
        work = Path(tmp)
        broker = Tansu(port=free_port(), workdir=work / "tansu")
        clickhouse = ClickHouseServer(port=free_port(), workdir=work / "clickhouse")
        broker.start()
        clickhouse.start()
        try:
            store_url = f"clickhouse://127.0.0.1:{clickhouse.port}/svcpulse"
            store = open_store(store_url)
            migrate(store, log=False)
            for service, instances in INSTANCES.items():  # telemetry alone routes nothing (docs/security.md)
                register(store, service, instances, changed_by="bench")
            store.close()
            ensure_control_topics(broker.bootstrap, 4)
            return body(work, broker, clickhouse, store_url)
        finally:
            broker.stop()
            clickhouse.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20_000, help="background events per second")
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=8.0, help="seconds each flip lasts")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--side", choices=("both", "streaming", "baseline"), default="both")
    parser.add_argument("--kafka-client", choices=("kafka-python", "confluent"), default="confluent",
                        help="client of the weigh worker and the loader (as compose runs them)")
    args = parser.parse_args()
    print(f"[freshness] {args.rate} events/s over 200 instances, {args.flips} flips of {args.spacing:g} s; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    figures = {}
    if args.side in ("both", "streaming"):
        figures["streaming"] = with_services(lambda w, b, c, url: streaming(w, b, url, args))
    if args.side in ("both", "baseline"):
        figures["baseline"] = with_services(lambda w, b, c, url: baseline(w, b, c, url, args))
    print(f"[freshness] target p99 <= 2 s; load average at end {os.getloadavg()[0]:.1f} "
          "(figures are provisional on a shared machine)")
    for name, found in figures.items():
        print(f"  {name:<10} p50 {found['p50']:.2f} s  p99 {found['p99']:.2f} s  "
              f"CPU/1k events {found['cpu_per_1000'] * 1000:.1f} ms  rate {found['rate']:.0f}/s")


if __name__ == "__main__":
    main()
