"""Known events for the query API tests, and the answers they must give (same data on both engines).

Two minutes of a service "qa.cart" starting at minute T (2 minutes before now, so the 5-minute health
window holds them): instance A (v1) serves 60 calls in minute 0 (latency 1..60 ms, 6 errors, 3
timeouts, one per second) and 120 in minute 1 (10 ms, all ok, two per second); instance B (v2) 30
calls in minute 0 at 100 ms. Ten more calls are client-side measurements (excluded by default).
Connections: host qa-h1 10 x 5 ms to 10.9.9.9:5432, host qa-h2 5 x 2 s to 10.9.9.8:443 with more bytes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pipeline.batch import columns
from pipeline.store import Store
from pipeline.transform import COLUMNS, Message, to_row

SERVICE = "qa.cart"
A, B = "10.5.0.1:8080", "10.5.0.2:8080"


def minute_t() -> int:
    return (int(time.time()) // 60 - 2) * 60


def rpc(ts_ms: int, instance: str, latency: float, status: str = "ok", **changes: Any) -> dict[str, Any]:
    event = {"v": 1, "ts_ms": ts_ms, "caller": "web" if ts_ms // 1000 % 2 else "app", "callee": SERVICE,
             "interface": "GET /cart" if instance == B or ts_ms // 1000 % 3 else "POST /cart",
             "instance": instance, "side": "server", "latency_ms": latency, "status": status,
             "code": {"ok": "200", "error": "500", "timeout": "504"}[status],
             "version": "v1" if instance == A else "v2", "host": "qa", "cgroup": ""}
    return {**event, **changes}


def rpc_events(t: int) -> list[dict[str, Any]]:
    minute0 = [rpc(t * 1000 + i * 1000, A, i + 1.0, "error" if i % 10 == 0 else "timeout" if i % 20 == 5 else "ok")
               for i in range(60)]
    minute1 = [rpc((t + 60) * 1000 + i * 500, A, 10.0) for i in range(120)]
    slow = [rpc(t * 1000 + i * 2000 + 1, B, 100.0) for i in range(30)]
    client = [rpc(t * 1000 + i * 10, A, 7.0, side="client") for i in range(10)]
    return minute0 + minute1 + slow + client


def tcp(ts_ms: int, host: str, raddr: str, rport: int, duration: float, tx: int, rx: int) -> dict[str, Any]:
    return {"v": 1, "ts_ms": ts_ms, "host": host, "pid": 42, "comm": "qa", "cgroup": f"/qa/{host}", "family": 4,
            "laddr": "10.5.0.1", "lport": 40000, "raddr": raddr, "rport": rport, "role": "client",
            "tx_bytes": tx, "rx_bytes": rx, "duration_ms": duration}


def tcp_events(t: int) -> list[dict[str, Any]]:
    return ([tcp(t * 1000 + i, "qa-h1", "10.9.9.9", 5432, 5.0, 100, 200) for i in range(10)]
            + [tcp(t * 1000 + i, "qa-h2", "10.9.9.8", 443, 2000.0, 10_000, 50_000) for i in range(5)])


def load_events(t: int) -> list[dict[str, Any]]:
    """CPU samples every 10 s until a minute from now: A uses 0.5 of 2 cores, B 0.25 of 1."""
    end = int(time.time()) + 60
    return [{"v": 1, "ts_ms": s * 1000, "host": "qa", "cgroup": f"/qa/{name}", "instance": instance,
             "cpu_cores": cores, "cpu_limit_cores": limit, "mem_bytes": 1, "mem_limit_bytes": 0}
            for s in range(t, end, 10) for name, instance, cores, limit in (("a", A, 0.5, 2.0), ("b", B, 0.25, 1.0))]


def insert_direct(store: Store, kind: str, events: Sequence[dict[str, Any]]) -> None:
    """Rows straight into a raw table (the chdb run; the 18.16 run goes through Kafka and the loader)."""
    topic = f"svcpulse.{kind}"
    rows = [to_row(kind, e, Message(topic, 0, n, e["ts_ms"], None, b"")) for n, e in enumerate(events)]
    table = {"rpc": "rpc_calls", "tcp": "tcp_connections", "load": "instance_load"}[kind]
    store.insert(table, COLUMNS[kind], columns(rows))
