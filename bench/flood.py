"""Cardinality flood (issue 9 §3): the weight cycle and memory under 50,000 one-off names.

Real parts: Tansu, ClickHouse 18.16, `svcpulse load`, `svcpulse weigh` and `svcpulse api` as their own
processes (so each RSS is its own). The weigh worker computes the weights from the stream and applies
the caps there; the API serves the feed. A registered service keeps a steady trickle of calls. Then,
phase by phase:

- services: 50,000 one-off callee names, one event each (the attack in the issue);
- instances: 50,000 one-off instance addresses of one service whose discovery policy admits 10.0.0.0/8.

Before and after each phase it prints the mean weight cycle (the worker's svcpulse_weigh_tick_seconds),
the worker's and the API's RSS, the size of GET /v1/weights, weight_history rows per minute and the
entities the caps refused (the worker's gauges), with the load average (figures from a shared machine
are provisional). The issue's figures before the fix are printed next to them: cycle 2.0 -> 13.9 s,
API 920 MB, feed 18 MB, 700k rows/min.

    .venv/bin/python bench/flood.py [--names 50000] [--measure 30]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.queries.discovery import write_policy
from api.queries.registry import register
from pipeline import events
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from svcpulse.services import ClickHouseServer, Tansu, free_port, port_open

SERVICE, POLICED = "shop.cart", "shop.pods"
FLEET = ["10.20.0.1:8080", "10.20.0.2:8080", "10.20.0.3:8080"]
ISSUE = {"cycle_s": "2.0 -> 13.9", "api_rss_mb": "-> 920", "feed_kb": "-> 18,000", "history_rows_per_min": "-> 700,000"}
CYCLE = "svcpulse_weigh_tick_seconds"


def call(callee: str, instance: str) -> bytes:
    return events.encode("rpc", {"v": 1, "ts_ms": int(time.time() * 1000), "caller": "flood", "callee": callee,
                                 "interface": "GET /x", "instance": instance, "side": "server", "latency_ms": 3.0,
                                 "status": "ok", "code": "200", "version": "v1", "host": "bench", "cgroup": ""})


def produce(producer: Producer, messages: list[tuple[str, bytes]]) -> None:
    for key, value in messages:
        while True:
            try:
                producer.produce("svcpulse.rpc", value=value, key=key.encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    return sum(float(m) for m in re.findall(pattern, text, re.MULTILINE))


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]


def measure(base: str, metrics: str, pids: dict[str, int], store: Store, producer: Producer,
            seconds: float) -> dict[str, float]:
    """Mean cycle over `seconds` while the registered service keeps being called, then the other figures."""
    scrape = httpx.get(metrics, timeout=30).text
    sum0, count0 = metric(scrape, f"{CYCLE}_sum"), metric(scrape, f"{CYCLE}_count")
    since = int(time.time())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        produce(producer, [(SERVICE, call(SERVICE, i)) for i in FLEET for _ in range(20)])
        time.sleep(1)
    scrape = httpx.get(metrics, timeout=30).text
    cycles = metric(scrape, f"{CYCLE}_count") - count0
    rows = store.execute("SELECT count() FROM weight_history WHERE ts >= toDateTime(%(s)s)", {"s": since})[0][0]
    return {"cycle_s": (metric(scrape, f"{CYCLE}_sum") - sum0) / max(cycles, 1),
            "cycles": cycles, "api_rss_mb": rss_mb(pids["api"]), "weigh_rss_mb": rss_mb(pids["weigh"]),
            "feed_kb": len(httpx.get(f"{base}/v1/weights", timeout=30).content) / 1024,
            "history_rows_per_min": rows * 60 / seconds,
            "refused_services": metric(scrape, "svcpulse_cap_refused", '{cap="services_per_hour"}'),
            "refused_instances": metric(scrape, "svcpulse_cap_refused", '{cap="instances_per_service"}'),
            "tracked_services": metric(scrape, "svcpulse_entities_tracked", '{kind="services"}')}


def flood(producer: Producer, store: Store, names: list[tuple[str, str]]) -> None:
    before = store.execute("SELECT count() FROM rpc_calls")[0][0]
    started = time.monotonic()
    produce(producer, [(callee, call(callee, instance)) for callee, instance in names])
    while store.execute("SELECT count() FROM rpc_calls")[0][0] < before + len(names):
        time.sleep(1)
    print(f"[flood] {len(names):,} one-off events produced and loaded in {time.monotonic() - started:.0f} s",
          flush=True)


def table(rows: dict[str, dict[str, float]]) -> None:
    keys = ["cycle_s", "weigh_rss_mb", "api_rss_mb", "feed_kb", "history_rows_per_min", "tracked_services",
            "refused_services", "refused_instances", "cycles"]
    print(f"{'figure':<22}" + "".join(f"{name:>16}" for name in rows) + f"{'issue (before fix)':>22}")
    for key in keys:
        print(f"{key:<22}" + "".join(f"{row[key]:>16,.2f}" for row in rows.values()) + f"{ISSUE.get(key, ''):>22}")
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} cores (figures from a shared machine are provisional)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=50_000)
    parser.add_argument("--measure", type=float, default=30.0, help="seconds per measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    broker = Tansu(port=free_port(), workdir=work / "tansu")
    clickhouse = ClickHouseServer(port=free_port(), workdir=work / "clickhouse")
    broker.start()
    clickhouse.start()
    processes: list[subprocess.Popen] = []
    try:
        url = f"clickhouse://127.0.0.1:{clickhouse.port}/flood?timeout=300"
        store = open_store(url)
        migrate(store, log=False)
        register(store, SERVICE, FLEET, changed_by="bench")
        write_policy(store, POLICED, ["10.0.0.0/8"], why="the instances flood")
        log = (work / "processes.log").open("w")
        env = {**os.environ, "SVCPULSE_FEED_OPEN": "true"}
        common = ["--bootstrap", broker.bootstrap, "--store", url]
        processes.append(subprocess.Popen([sys.executable, "-m", "svcpulse", "load", *common], stdout=log, stderr=log))
        metrics_port = free_port()
        weigh = subprocess.Popen([sys.executable, "-m", "svcpulse", "weigh", *common, "--metrics-port",
                                  str(metrics_port)], stdout=log, stderr=log)
        processes.append(weigh)
        port = free_port()
        api = subprocess.Popen([sys.executable, "-m", "svcpulse", "api", *common, "--port", str(port)], env=env,
                               stdout=log, stderr=log)
        processes.append(api)
        for process, waited in ((api, port), (weigh, metrics_port)):
            while not port_open(waited):
                if process.poll() is not None:
                    raise SystemExit(f"svcpulse {process.args[3]} exited with {process.returncode}; "
                                     f"see {work / 'processes.log'}")
                time.sleep(0.2)
        base, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
        pids = {"api": api.pid, "weigh": weigh.pid}
        # murmur2 like Kafka's Java client: the weigh workers shard services by it (docs/weights.md)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "partitioner": "murmur2_random",
                             "queue.buffering.max.messages": 500_000})
        print(f"[flood] warming up (logs: {work / 'processes.log'}) ...", flush=True)
        measure(base, metrics, pids, store, producer, 10)
        results = {"before": measure(base, metrics, pids, store, producer, args.measure)}
        flood(producer, store, [(f"flood-{uuid.uuid4().hex}", "10.9.9.9:80") for _ in range(args.names)])
        results["after services"] = measure(base, metrics, pids, store, producer, args.measure)
        flood(producer, store, [(POLICED, f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}:8080")
                                for n in range(args.names)])
        results["after instances"] = measure(base, metrics, pids, store, producer, args.measure)
        table(results)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        clickhouse.stop()
        broker.stop()


if __name__ == "__main__":
    main()
