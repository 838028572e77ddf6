"""bench/query: latency of the main query endpoints over 10,000,000 stored rpc rows, on the ClickHouse 18.16
server and on chdb (current ClickHouse, embedded).

Rows are generated in the store with INSERT ... SELECT FROM numbers() (no Kafka): the last 24 h,
20 services x 4 instances x 5 interfaces x 3 callers, latency 1-200 ms, 2% errors, 1% timeouts; the
materialized view fills the per-minute rollup as in production. Each endpoint is then called
--repeat times through the real API (in-process ASGI client, weight and alarm loops running) and
its p50/p99 printed. Target: p99 <= 300 ms.
--cluster: the same on one 18.16 server and on the local 2 x 2 cluster, p99s side by side (bench/cluster.py).
Usage: .venv/bin/python bench/query.py [--rows N] [--repeat N] [--engine clickhouse|chdb|both] [--merged] [--cluster]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.main import create_app
from core.settings import Settings
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from svcpulse.services import ClickHouseServer, free_port

CHUNK = 1_000_000
_GENERATE = """
INSERT INTO rpc_calls (ts, v, ts_ms, caller, callee, interface, instance, side, latency_ms, status, code,
                       version, host, cgroup, _topic, _partition, _offset, _kafka_ts_ms)
SELECT toDateTime(intDiv(ms, 1000)), 1, ms, concat('caller-', toString(n %% 3)), concat('svc-', toString(n %% 20)),
       concat('GET /api/', toString(intDiv(n, 60) %% 5)), concat('10.0.', toString(n %% 20), '.',
       toString(intDiv(n, 20) %% 4), ':8080'), 'server', 1 + (n * 7919) %% 200,
       multiIf(n %% 100 < 2, 'error', n %% 100 < 3, 'timeout', 'ok'), '200', concat('v', toString(intDiv(n, 20) %% 2)),
       'bench', '', 'svcpulse.rpc', 0, n, ms
FROM (SELECT number + %(offset)s AS n, %(end_ms)s - intDiv(n * 86400000, %(rows)s) AS ms FROM numbers(%(chunk)s))
"""


def generate(store: Store, rows: int) -> float:
    end_ms = int(time.time() * 1000)
    started = time.monotonic()
    for offset in range(0, rows, CHUNK):
        store.execute(_GENERATE, {"offset": offset, "end_ms": end_ms, "rows": rows,
                                  "chunk": min(CHUNK, rows - offset)})
    return time.monotonic() - started


def endpoints(now_ms: int) -> dict[str, str]:
    hour, day = now_ms - 3_600_000, now_ms - 86_400_000
    return {
        "series rps by instance, 1 h / 60 s": f"/v1/series?metric=rps&service=svc-3&by=instance&from={hour}",
        "series p99 by interface, 24 h / 300 s": f"/v1/series?metric=latency_p99&service=svc-3&by=interface"
                                                 f"&from={day}&step=300",
        "series rps by service, 24 h / 300 s": f"/v1/series?metric=rps&by=service&from={day}&step=300",
        "series raw calls, 1 h / 10 s": f"/v1/series?metric=calls&service=svc-3&from={hour}&step=10",
        "series rows format, 6 h / 60 s": f"/v1/series?metric=success_rate&service=svc-3&by=version&format=rows"
                                          f"&from={now_ms - 6 * 3_600_000}",
        "top slow interfaces, 24 h": f"/v1/top/slow-interfaces?from={day}",
        "top erroring instances, 1 h": f"/v1/top/erroring-instances?from={hour}",
        "top busy callers of svc-3, 24 h": f"/v1/top/busy-callers?service=svc-3&from={day}",
        "services with 5-min health": "/v1/services",
    }


def measure(store: Store, repeat: int, urls: dict[str, str] | None = None,
            cpu_ms: Callable[[], float] | None = None) -> dict[str, tuple[float, ...]]:
    """Each endpoint's (p50, p99) in ms, printed as they come (`urls`: name -> URL, default endpoints());
    with `cpu_ms` (a CPU-time clock in ms, e.g. this process's and the store server's), (p50, p99, CPU ms
    per request): a figure other work on the machine moves far less than the latencies."""
    timings = {}
    with TestClient(create_app(Settings(feed_open=True, kafka_bootstrap="127.0.0.1:1"), store=store)) as client:
        for name, url in (urls or endpoints(int(time.time() * 1000))).items():
            client.get(url).raise_for_status()  # warm-up
            took = []
            cpu_before = cpu_ms() if cpu_ms else 0.0
            for _ in range(repeat):
                started = time.perf_counter()
                client.get(url).raise_for_status()
                took.append((time.perf_counter() - started) * 1000)
            cpu = ((cpu_ms() - cpu_before) / repeat,) if cpu_ms else ()
            took.sort()
            p99 = took[min(len(took) - 1, round(0.99 * (len(took) - 1)))]
            verdict = "ok" if p99 <= 300 else "OVER 300 ms"
            print(f"  {name:42s} p50 {statistics.median(took):7.1f} ms  p99 {p99:7.1f} ms  {verdict}"
                  + (f"  CPU {cpu[0]:6.1f} ms/request" if cpu else ""))
            timings[name] = (statistics.median(took), p99, *cpu)
    return timings


@contextmanager
def bench_store(engine: str, work: Path) -> Iterator[Store]:
    """A migrated `bench` database on a fresh ClickHouse 18.16 server ("clickhouse") or on chdb; the server
    is stopped afterwards."""
    server = None
    if engine == "clickhouse":
        server = ClickHouseServer(port=free_port(), workdir=work / "clickhouse")
        server.start()
        store = open_store(f"clickhouse://127.0.0.1:{server.port}/bench?timeout=900")
    else:
        store = open_store(f"chdb://{work}/chdb/bench")
    try:
        migrate(store, log=False)
        yield store
    finally:
        store.close()
        if server is not None:
            server.stop()


def run(engine: str, rows: int, repeat: int, work: Path, merged: bool) -> None:
    with bench_store(engine, work) as store:
        seconds = generate(store, rows)
        if merged:
            # Steady state: a day inserted at once leaves many parts that background merges would
            # otherwise still be working through while we measure.
            store.execute("OPTIMIZE TABLE rpc_calls_1m FINAL")
        rollup = store.execute("SELECT count() FROM rpc_calls_1m")[0][0]
        print(f"{engine}: {rows:,} rpc rows generated in {seconds:.1f} s ({rollup:,} rollup rows"
              f"{', merged' if merged else ''}); {repeat} calls each")
        measure(store, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--engine", choices=("clickhouse", "chdb", "both"), default="both")
    parser.add_argument("--merged", action="store_true", help="OPTIMIZE ... FINAL the rollup before measuring")
    parser.add_argument("--cluster", action="store_true", help="one 18.16 server vs the local 2 x 2 cluster")
    args = parser.parse_args()
    if args.cluster:
        from bench.cluster import compare_queries

        compare_queries(args.rows, args.repeat, generate, measure)
        return
    engines = ("clickhouse", "chdb") if args.engine == "both" else (args.engine,)
    with tempfile.TemporaryDirectory(prefix="svcpulse-bench-query-") as work:
        for engine in engines:
            run(engine, args.rows, args.repeat, Path(work), args.merged)


if __name__ == "__main__":
    main()
