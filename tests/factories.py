"""Contract-valid events for tests, varied by an index so every row is distinguishable."""

from __future__ import annotations

import time
from typing import Any

# Midnight (UTC) yesterday: recent enough for the loader's plausibility window (SVCPULSE_EVENT_MAX_AGE_S),
# fixed for the whole test session.
BASE_MS = (int(time.time()) // 86_400 - 1) * 86_400_000


def rpc_event(i: int, **changes: Any) -> dict[str, Any]:
    event = {"v": 1, "ts_ms": BASE_MS + i, "caller": f"caller-{i % 3}", "callee": f"svc-{i % 5}",
             "interface": f"GET /items/{{id}}/{i % 7}", "instance": f"10.0.0.{i % 4}:8080",
             "side": "server" if i % 2 else "client", "latency_ms": 1.5 + (i % 100) / 8,
             "status": ("ok", "error", "timeout")[i % 3], "code": str(200 + i % 3),
             "version": f"v{i % 2}", "host": f"node-{i % 2}", "cgroup": f"/kubepods/pod{i % 9}",
             "workload": f"shop/app-{i % 9}", "workload_kind": "deployment"}
    event.update(changes)
    return event


OUTCOMES = ("ok", "ok", "ok", "refused", "ok", "timeout", "ok", "reset")


def tcp_event(i: int, **changes: Any) -> dict[str, Any]:
    event = {"v": 1, "ts_ms": BASE_MS + i, "host": f"node-{i % 3}", "pid": 1000 + i % 50,
             "comm": f"proc{i % 4}", "cgroup": f"/system.slice/s{i % 6}.service", "workload": f"s{i % 6}.service",
             "workload_kind": "unit", "family": 4 if i % 5 else 6,
             "laddr": "127.0.0.1", "lport": 30000 + i % 20000, "raddr": f"10.1.{i % 200}.{i % 250}",
             "rport": 443, "role": "client" if i % 2 else "server", "tx_bytes": i * 7, "rx_bytes": i * 13,
             "duration_ms": i / 3, "outcome": OUTCOMES[i % len(OUTCOMES)], "connect_ms": i % 7 / 10,
             "retransmits": i % 3, "srtt_us": 50 + i % 900, "resets_in": int(i % 11 == 0), "resets_out": 0}
    event.update(changes)
    return event


def load_event(i: int, **changes: Any) -> dict[str, Any]:
    event = {"v": 1, "ts_ms": BASE_MS + i * 1000, "host": f"node-{i % 3}", "cgroup": f"/c{i % 4}",
             "workload": f"c{i % 4}", "workload_kind": "cgroup", "instance": f"10.0.0.{i % 4}:8080",
             "cpu_cores": 0.25 + i % 10 / 10, "cpu_limit_cores": 2.0,
             "mem_bytes": 2**20 * (i % 64 + 1), "mem_limit_bytes": 2**30}
    event.update(changes)
    return event


FACTORIES = {"rpc": rpc_event, "tcp": tcp_event, "load": load_event}
