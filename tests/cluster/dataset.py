"""A deterministic fleet's events for the cluster tests: rpc calls, closed connections and load samples,
spread over the two hours before a reference time so every query path has data (raw seconds, minute
and hour rollups, the 5-minute health windows, capacity's CPU samples).

Event i is a pure function of (i, end_ms), so the cluster and the single server get identical input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SERVICES, INSTANCES, INTERFACES, CALLERS = 12, 4, 3, 3
SPAN_MS = 2 * 3_600_000
LATENCY_RANGE_MS = (1.0, 200.0)  # uniform, so the documented quantile error (2% of the range) is ~4 ms


def service(n: int) -> str:
    return f"svc-{n % SERVICES:02d}"


def instance(n: int, k: int) -> str:
    return f"10.3.{n % SERVICES}.{k % INSTANCES}:8080"


def rpc(i: int, at_ms: int) -> dict[str, Any]:
    n, k = i % SERVICES, i // SERVICES % INSTANCES
    roll = (i * 7919) % 1000
    status = "error" if roll < 20 or (k == 3 and n == 0 and roll < 300) else "timeout" if roll < 30 else "ok"
    return {"v": 1, "ts_ms": at_ms, "caller": f"caller-{i // 7 % CALLERS}", "callee": service(n),
            "interface": f"GET /api/{i // 5 % INTERFACES}", "instance": instance(n, k),
            "side": "client" if i % 10 == 0 else "server",
            "latency_ms": LATENCY_RANGE_MS[0] + (i * 104_729) % 19_900 / 100,
            "status": status, "code": {"ok": "200", "error": "503", "timeout": "504"}[status],
            "version": f"v{k % 2 + 1}", "host": f"node-{k}", "cgroup": f"/kubepods/{service(n)}"}


def tcp(i: int, at_ms: int) -> dict[str, Any]:
    return {"v": 1, "ts_ms": at_ms, "host": f"node-{i % 6}", "pid": 100 + i % 40, "comm": f"app{i % 5}",
            "cgroup": f"/system.slice/app{i % 5}.service", "family": 4, "laddr": "10.3.0.1",
            "lport": 30_000 + i % 20_000, "raddr": f"10.4.{i % 8}.{i % 3}", "rport": (443, 5432, 6379)[i % 3],
            "role": "client" if i % 2 else "server", "tx_bytes": i % 10_000 * 11, "rx_bytes": i % 7_000 * 13,
            "duration_ms": (i * 7_907) % 120_000 / 10}


def load(i: int, at_ms: int) -> dict[str, Any]:
    n, k = i % SERVICES, i // SERVICES % INSTANCES
    return {"v": 1, "ts_ms": at_ms, "host": f"node-{k}", "cgroup": f"/kubepods/{service(n)}",
            "instance": instance(n, k), "cpu_cores": 0.2 + (i % 17) / 20, "cpu_limit_cores": 2.0,
            "mem_bytes": 2**20 * (i % 300 + 50), "mem_limit_bytes": 2**30}


# Shares of the events by kind: mostly calls, as in a real fleet.
MIX = (("rpc", 0.88, rpc), ("tcp", 0.10, tcp), ("load", 0.02, load))


def counts(total: int) -> dict[str, int]:
    """Events of each kind out of `total` (they add up to it exactly)."""
    found = {kind: int(total * share) for kind, share, _ in MIX[1:]}
    return {"rpc": total - sum(found.values()), **found}


def events(total: int, end_ms: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, event) pairs, each kind spread evenly over the SPAN_MS before end_ms, interleaved."""
    per_kind = counts(total)
    makers = {kind: maker for kind, _, maker in MIX}
    start_ms = end_ms - SPAN_MS
    for i in range(max(per_kind.values())):
        for kind, n in per_kind.items():
            if i < n:
                yield kind, makers[kind](i, start_ms + i * SPAN_MS // n)
