"""bench/map: GET /v1/map's latency over 10,000,000 rpc rows and 10,000,000 tcp rows in the last hour, on
the ClickHouse 18.16 server and on chdb (current ClickHouse, embedded), side by side with the load average.

Rows are generated in the store with INSERT ... SELECT FROM numbers() (no Kafka), so the materialized
views fill the map's rollups (rpc_edges_*, rpc_edge_instances_*, tcp_edges_*, workloads_1m) as in
production: 100 services with 10 instances each, every service called by 5 others (500 edges), each
call recorded by one side (the callee's for even-numbered callees, the caller's for odd ones; 2%
errors, 1% timeouts; latencies spread log-uniformly over 1-500 ms on every edge, so each edge's
digests hold as many centroids as a real edge's), callers' connections from their service's cgroup to
the callees' instances (3% refused). The rollups' and raw tables' parts are then merged (OPTIMIZE ...
FINAL), as past data settles.
The map is then asked --repeat times through the real API (in-process ASGI client) and its p50/p99
printed, with the CPU time one request costs (this process, which embeds chdb, plus the ClickHouse
server's): latencies follow the load other work puts on the machine, CPU time much less. Target: p99
<= 300 ms for the 1-hour map. Figures taken while other work runs on the machine are provisional: the
load average is printed with them.
On chdb the map is measured twice over the same data: through the store's session pool (the default,
`chdb:///dir/db?pool=3`) and through one session (`?pool=1`, as before the pool).
Usage: .venv/bin/python bench/map.py [--rows N] [--repeat N] [--engine clickhouse|chdb|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.query import bench_store, measure
from pipeline.store import Store, open_store
from pipeline.store.embedded import ChdbStore
from svcpulse.services import ClickHouseServer

CHUNK = 1_000_000
SERVICES, INSTANCES, CALLERS = 100, 10, 5
# n -> callee c = n % 100, caller = (7c + n / 100 % 5 + 1) % 100, instance 10.0.c.(n / 500 % 10):8080.
_KEYS = (f"intDiv(n, {SERVICES}) %% {CALLERS} AS k, n %% {SERVICES} AS c, (c * 7 + k + 1) %% {SERVICES} AS a, "
         f"intDiv(n, {SERVICES * CALLERS}) %% {INSTANCES} AS i, %(end_ms)s - intDiv(n * 3600000, %(rows)s) AS ms")
_RPC = f"""
INSERT INTO rpc_calls (ts, v, ts_ms, caller, callee, interface, instance, side, latency_ms, status, code, version,
                       host, cgroup, workload, workload_kind, _topic, _partition, _offset, _kafka_ts_ms)
SELECT toDateTime(intDiv(ms, 1000)), 1, ms, concat('svc-', toString(a)), concat('svc-', toString(c)), 'GET /api',
       concat('10.0.', toString(c), '.', toString(i), ':8080'), if(n %% 2 = 0, 'server', 'client'),
       round(exp(cityHash64(n) %% 10000 / 10000 * 6.2146), 3),
       multiIf(n %% 100 < 2, 'error', n %% 100 < 3, 'timeout', 'ok'), '200', 'v1', 'bench',
       concat('/system.slice/svc-', toString(if(n %% 2 = 0, c, a)), '.service'),
       concat('svc-', toString(if(n %% 2 = 0, c, a)), '.service'), 'unit', 'svcpulse.rpc', 0, n, ms
FROM (SELECT number + %(offset)s AS n, {_KEYS} FROM numbers(%(chunk)s))
"""
_TCP = f"""
INSERT INTO tcp_connections (ts, v, ts_ms, host, pid, comm, cgroup, workload, workload_kind, family, laddr, lport,
                             raddr, rport, role, tx_bytes, rx_bytes, duration_ms, outcome, connect_ms, retransmits,
                             srtt_us, resets_in, resets_out, _topic, _partition, _offset, _kafka_ts_ms)
SELECT toDateTime(intDiv(ms, 1000)), 1, ms, 'bench', 4242, 'app', concat('/system.slice/svc-', toString(a), '.service'),
       concat('svc-', toString(a), '.service'), 'unit', 4, '10.1.0.1', 30000 + n %% 30000,
       concat('10.0.', toString(c), '.', toString(i)), 8080, 'client', 500, 4000, 80,
       if(n %% 100 < 3, 'refused', 'ok'), if(n %% 100 < 3, 0, 0.3), toUInt64(n %% 50 = 0), 200,
       toUInt64(n %% 100 < 3), 0, 'svcpulse.tcp', 0, n, ms
FROM (SELECT number + %(offset)s AS n, {_KEYS} FROM numbers(%(chunk)s))
"""


def generate(store: Store, rows: int) -> float:
    """`rows` rpc rows and `rows` tcp rows over the last hour; seconds taken."""
    end_ms = int(time.time() * 1000)
    started = time.monotonic()
    for sql in (_RPC, _TCP):
        for offset in range(0, rows, CHUNK):
            store.execute(sql, {"offset": offset, "end_ms": end_ms, "rows": rows, "chunk": min(CHUNK, rows - offset)})
            print(f"  ... {'rpc' if sql is _RPC else 'tcp'} {offset + min(CHUNK, rows - offset):,} rows", flush=True)
    return time.monotonic() - started


def urls(now_ms: int) -> dict[str, str]:
    hour = now_ms - 3_600_000
    return {"map, 1 h, 50 edges": f"/v1/map?from={hour}",
            "map, 1 h, format=grafana": f"/v1/map?from={hour}&format=grafana",
            "map, 1 h, 500 edges": f"/v1/map?from={hour}&limit=500",
            "map, 15 min, 50 edges": f"/v1/map?from={now_ms - 900_000}"}


ROLLUPS = (*(f"{name}_{tier}" for name in ("rpc_edges", "rpc_edge_instances", "tcp_edges")
              for tier in ("1m", "10m", "1h")), "workloads_1m")
RAW = ("rpc_calls", "tcp_connections")  # merged too: their background merges would burn CPU mid-measurement


def merge_rollups(store: Store) -> float:
    """Merge each rollup's parts and the raw tables' into one (OPTIMIZE ... FINAL), the steady state of past
    data; seconds taken. Unmerged, the ten inserts leave up to ten parts per bucket (the hour's in all ten),
    each a state more to merge per pair, and the background merges (of 10,000,000 raw rows too) would run
    during the measurement and count in its CPU time (chdb's in this process)."""
    started = time.monotonic()
    for table in (*ROLLUPS, *RAW):
        store.execute(f"OPTIMIZE TABLE {table} FINAL")
    return time.monotonic() - started


def cpu_clock(engine: str, work: Path) -> Callable[[], float]:
    """CPU ms used so far by this process and, for "clickhouse", by the server bench_store started there."""
    server_pid = ClickHouseServer(port=0, workdir=work / "clickhouse").pid() if engine == "clickhouse" else None

    def used_ms() -> float:
        used = time.process_time()
        if server_pid is not None:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return used * 1000

    return used_ms


def run(engine: str, rows: int, repeat: int, work: Path) -> dict[str, dict[str, tuple[float, ...]]]:
    """Timings by store; for chdb also over the same data through ONE session (the store before its pool)."""
    with bench_store(engine, work) as store:
        print(f"{engine}: generating {rows:,} rpc + {rows:,} tcp rows over the last hour", flush=True)
        seconds = generate(store, rows)
        counts = {t: store.query(f"SELECT count() AS n FROM {t}")[0]["n"]
                  for t in ("rpc_edges_1m", "rpc_edge_instances_1m", "tcp_edges_1m", "workloads_1m")}
        print(f"{engine}: generated in {seconds:.0f} s (rollup rows: {counts}); rollups and raw tables merged in "
              f"{merge_rollups(store):.0f} s; {repeat} calls each, load average {os.getloadavg()[0]:.1f}", flush=True)
        timings = {engine: measure(store, repeat, urls(int(time.time() * 1000)), cpu_clock(engine, work))}
        if isinstance(store, ChdbStore):
            one_session = open_store(f"chdb://{store.directory}?pool=1")
            print(f"{engine}, 1 session: the same data through one chdb session", flush=True)
            timings[f"{engine}, 1 session"] = measure(one_session, repeat, urls(int(time.time() * 1000)),
                                                      cpu_clock(engine, work))
            one_session.close()
        print(f"{engine}: load average after {os.getloadavg()[0]:.1f}", flush=True)
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rpc rows, and as many tcp rows")
    # 200: of 50 samples the "p99" is their maximum, one pause away from any figure.
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--engine", choices=("clickhouse", "chdb", "both"), default="both")
    args = parser.parse_args()
    engines = ("clickhouse", "chdb") if args.engine == "both" else (args.engine,)
    results: dict[str, dict[str, tuple[float, ...]]] = {}
    with tempfile.TemporaryDirectory(prefix="map-bench-") as work:
        for engine in engines:
            results |= run(engine, args.rows, args.repeat, Path(work))
    print(f"\nGET /v1/map over {args.rows:,} rpc + {args.rows:,} tcp rows in 1 h; p50 / p99 ms, CPU ms per "
          f"request (target p99 <= 300); load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"  {'':28s}" + "".join(f"{e:>34s}" for e in results))
    for name in urls(0):
        print(f"  {name:28s}" + "".join(f"{results[e][name][0]:10.1f} / {results[e][name][1]:8.1f} ms, CPU "
                                       f"{results[e][name][2]:6.1f}" for e in results))


if __name__ == "__main__":
    main()
