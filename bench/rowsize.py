"""bench/rowsize: bytes per row on disk in ClickHouse 18.16, for sizing disks (docs/scaling.md).

Loads --rows realistic events per raw table (an hour of a 200-node fleet: 50 services, 500
interfaces, 1,000 instances, lognormal latencies and byte counts, Kubernetes-length cgroup paths,
random Kafka offsets) into a fresh ClickHouse 18.16 server in 100,000-row inserts, merges the parts
(OPTIMIZE FINAL, the steady state), and prints bytes on disk per row from system.parts, for the raw
tables and for the per-minute rollups the views filled.
Usage: .venv/bin/python bench/rowsize.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.batch import columns
from pipeline.migrate import migrate
from pipeline.store import Store, open_store
from pipeline.topics import TABLE_BY_KIND, TOPIC_BY_KIND
from pipeline.transform import COLUMNS, Message, to_row
from svcpulse.services import ClickHouseServer, free_port

HOUR_MS = 3_600_000
BASE_MS = 1_795_000_000_000


class Fleet:
    """Stable names: hosts, services with their interfaces and instances, cgroup paths."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.hosts = [f"node-{n:03d}.prod.example.net" for n in range(200)]
        self.services = [f"team{n % 9}.service-{n:02d}" for n in range(50)]
        self.interfaces = {s: [f"GET /v1/{s[-2:]}/items/{{id}}/op{i}" for i in range(10)] for s in self.services}
        self.instances = {s: [f"10.{n}.{i}.{rng.randrange(2, 250)}:8080" for i in range(20)]
                          for n, s in enumerate(self.services)}
        self.cgroup = {inst: f"/kubepods/burstable/pod{rng.getrandbits(128):032x}/{rng.getrandbits(256):064x}"
                       for insts in self.instances.values() for inst in insts}

    def lognormal(self, median: float, sigma: float) -> float:
        return math.exp(self.rng.gauss(math.log(median), sigma))


def rpc(fleet: Fleet, ts_ms: int) -> dict[str, Any]:
    rng = fleet.rng
    callee = rng.choice(fleet.services)
    instance = rng.choice(fleet.instances[callee])
    status = rng.choices(("ok", "error", "timeout"), (0.98, 0.015, 0.005))[0]
    return {"v": 1, "ts_ms": ts_ms, "caller": rng.choice(fleet.services), "callee": callee,
            "interface": rng.choice(fleet.interfaces[callee]), "instance": instance,
            "side": rng.choice(("client", "server")),
            "latency_ms": round(fleet.lognormal(20, 1.0), 3), "status": status,
            "code": {"ok": "200", "error": "503", "timeout": "504"}[status], "version": f"v1.{ts_ms % 2}.7",
            "host": rng.choice(fleet.hosts), "cgroup": fleet.cgroup[instance]}


def tcp(fleet: Fleet, ts_ms: int) -> dict[str, Any]:
    rng = fleet.rng
    callee = rng.choice(fleet.services)
    instance = rng.choice(fleet.instances[callee])
    client = rng.random() < 0.5
    return {"v": 1, "ts_ms": ts_ms, "host": rng.choice(fleet.hosts), "pid": rng.randrange(1, 4_000_000),
            "comm": rng.choice(("python3", "java", "envoy", "nginx", "node", "curl")), "cgroup": fleet.cgroup[instance],
            "family": 4, "laddr": instance.split(":")[0], "lport": rng.randrange(32768, 61000) if client else 8080,
            "raddr": rng.choice(fleet.instances[rng.choice(fleet.services)]).split(":")[0],
            "rport": 8080 if client else rng.randrange(32768, 61000), "role": "client" if client else "server",
            "tx_bytes": int(fleet.lognormal(2000, 2)), "rx_bytes": int(fleet.lognormal(8000, 2)),
            "duration_ms": round(fleet.lognormal(50, 2), 6)}


def load(fleet: Fleet, ts_ms: int) -> dict[str, Any]:
    rng = fleet.rng
    instance = rng.choice(list(fleet.cgroup))
    return {"v": 1, "ts_ms": ts_ms, "host": rng.choice(fleet.hosts), "cgroup": fleet.cgroup[instance],
            "instance": instance, "cpu_cores": round(fleet.lognormal(0.3, 1), 4), "cpu_limit_cores": 2.0,
            "mem_bytes": int(fleet.lognormal(300e6, 0.5)), "mem_limit_bytes": 1 << 30}


def fill(store: Store, kind: str, rows: int, fleet: Fleet) -> None:
    make = {"rpc": rpc, "tcp": tcp, "load": load}[kind]
    times = sorted(BASE_MS + fleet.rng.randrange(HOUR_MS) for _ in range(rows))
    for start in range(0, rows, 100_000):
        topic = TOPIC_BY_KIND[kind]
        batch = [to_row(kind, make(fleet, ts), Message(topic, n % 12, n // 12, ts + 3, None, b""))
                 for n, ts in enumerate(times[start:start + 100_000], start)]
        store.insert(TABLE_BY_KIND[kind], COLUMNS[kind], columns(batch))


def report(store: Store) -> None:
    for table in ("rpc_calls", "tcp_connections", "instance_load", "rpc_calls_1m", "tcp_connections_1m"):
        store.execute(f"OPTIMIZE TABLE {table} FINAL")
        rows, disk, raw = store.execute(
            "SELECT sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
            "WHERE active AND database = %(db)s AND table = %(table)s", {"db": store.database, "table": table})[0]
        print(f"{table:20} {rows:>10,} rows  {disk / rows:7.1f} B/row on disk  "
              f"({raw / rows:6.1f} B/row uncompressed, x{raw / disk:4.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per raw table")
    args = parser.parse_args()
    fleet = Fleet(random.Random(7))
    with tempfile.TemporaryDirectory(prefix="bench-rowsize-") as workdir:
        server = ClickHouseServer(port=free_port(), workdir=Path(workdir))
        server.start()
        try:
            store = open_store(server.url)
            migrate(store, log=False)
            for kind in ("rpc", "tcp", "load"):
                fill(store, kind, args.rows, fleet)
            print(f"[bench/rowsize] ClickHouse 18.16, {args.rows:,} rows per raw table, after OPTIMIZE FINAL")
            report(store)
            store.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
