"""SQL of the capacity estimate: CPU per instance (instance_load) and a service's per-minute history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from api.capacity import Minute
from api.queries.timeseries import Side
from pipeline.store import Store


def instance_cpu(store: Store, instances: Sequence[str], from_s: int, to_s: int) -> dict[str, dict[str, float]]:
    """instance -> {cpu_cores (mean used), cpu_limit_cores (largest seen; 0 = no limit)} from load samples
    whose instance label matches an RPC instance ("host:port")."""
    if not instances:
        return {}
    rows = store.query(
        "SELECT instance, avg(cpu_cores) AS cpu_cores, max(cpu_limit_cores) AS cpu_limit_cores FROM instance_load "
        "WHERE ts >= toDateTime(%(from_s)s) AND ts < toDateTime(%(to_s)s) AND instance IN %(instances)s "
        "GROUP BY instance",
        {"from_s": from_s, "to_s": to_s, "instances": tuple(instances)},
    )
    return {r["instance"]: {"cpu_cores": float(r["cpu_cores"]), "cpu_limit_cores": float(r["cpu_limit_cores"])}
            for r in rows}


def minute_history(store: Store, service: str, side: Side, from_s: int, to_s: int) -> list[Minute]:
    """Per minute: the service's rps, how many instances served, and its p99 (from the rollup)."""
    side_sql = "" if side == "all" else "AND side = %(side)s"
    rows: list[dict[str, Any]] = store.query(
        "SELECT toUInt32(minute) AS t, countMerge(calls) AS calls, uniqExact(instance) AS instances, "
        "quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) AS q FROM rpc_calls_1m "
        f"WHERE callee = %(service)s AND minute >= toDateTime(%(from_s)s) AND minute < toDateTime(%(to_s)s) {side_sql} "
        "GROUP BY t ORDER BY t",
        {"service": service, "side": side, "from_s": from_s, "to_s": to_s},
    )
    return [Minute(t=int(r["t"]), rps=int(r["calls"]) / 60, instances=int(r["instances"]),
                   p99_ms=None if math.isnan(r["q"][2]) else float(r["q"][2])) for r in rows]
