"""SQL of the connection queries (tcplife): totals and series from the per-minute rollup, lifetimes raw.

The rollup `tcp_connections_1m` keeps counts, bytes and duration quantiles per (minute, host,
cgroup, raddr, rport, role); the lifetime histogram needs each connection's duration, so it reads
the raw `tcp_connections` (bucketed in SQL, one row per bucket comes back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from api.timerange import Window
from pipeline.store import Store

DIMENSIONS = {"host": "host", "cgroup": "cgroup", "remote": "concat(raddr, ':', toString(rport))", "role": "role"}
FILTERS = {"host": "host", "cgroup": "cgroup", "raddr": "raddr", "rport": "rport", "role": "role"}
ORDERS = {"connections": "connections DESC", "bytes": "tx_bytes + rx_bytes DESC"}
# Lifetime bucket upper bounds (ms), MSEC's latency ladder stretched to connection lifetimes.
LIFETIME_BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
                      3_600_000)

_AGGREGATES = ("countMerge(connections) AS connections, sumMerge(tx_bytes) AS tx_bytes, "
               "sumMerge(rx_bytes) AS rx_bytes, quantilesTDigestMerge(0.5, 0.95, 0.99)(duration) AS q")


def _where(time_column: str, filters: Mapping[str, Any], window: Window) -> tuple[str, dict[str, Any]]:
    clauses = [f"{time_column} >= toDateTime(%(from_s)s)", f"{time_column} < toDateTime(%(to_s)s)"]
    params: dict[str, Any] = {"from_s": window.from_s, "to_s": window.to_s, "step": window.step_s}
    for name, value in filters.items():
        if value is not None:
            clauses.append(f"{FILTERS[name]} = %(f_{name})s")
            params[f"f_{name}"] = value
    return " AND ".join(clauses), params


def connection_totals(store: Store, by: tuple[str, ...], filters: Mapping[str, Any], window: Window,
                      bucketed: bool, order: str = "connections", limit: int | None = None) -> list[dict[str, Any]]:
    """Rows {t (if bucketed), <by...>, connections, tx_bytes, rx_bytes, duration_ms_p50/p95/p99}."""
    where, params = _where("minute", filters, window)
    keys = [f"{DIMENSIONS[d]} AS {d}" if DIMENSIONS[d] != d else d for d in by]
    if bucketed:
        keys.insert(0, "intDiv(toUInt32(minute), %(step)s) * %(step)s AS t")
    group = ", ".join(["t", *by] if bucketed else by)
    sql = (f"SELECT {', '.join([*keys, _AGGREGATES])} FROM tcp_connections_1m WHERE {where} "
           f"{'GROUP BY ' + group if group else ''} ORDER BY {'t' if bucketed else ORDERS[order]}"
           f"{' LIMIT %(limit)s' if limit else ''}")
    params["limit"] = limit
    rows = store.query(sql, params)
    for row in rows:
        for name, value in zip(("duration_ms_p50", "duration_ms_p95", "duration_ms_p99"), row.pop("q"), strict=True):
            row[name] = None if math.isnan(value) else round(float(value), 3)
        for name in ("connections", "tx_bytes", "rx_bytes", *(("t",) if bucketed else ())):
            row[name] = int(row[name])
    return rows


def lifetime_histogram(store: Store, filters: Mapping[str, Any], window: Window) -> list[dict[str, Any]]:
    """[{le_ms (None = above the last bound), count}] for every bucket, empty ones included."""
    where, params = _where("ts", filters, window)
    # The bucket index of each row: the first bound it does not exceed (past the last: len(bounds)).
    bucket = "multiIf(" + ", ".join(f"duration_ms <= {b}, {i}" for i, b in enumerate(LIFETIME_BOUNDS_MS))
    rows = store.execute(f"SELECT {bucket}, {len(LIFETIME_BOUNDS_MS)}) AS bucket, count() AS n "
                         f"FROM tcp_connections WHERE {where} GROUP BY bucket", params)
    counts = {int(bucket): int(n) for bucket, n in rows}
    bounds: list[int | None] = [*LIFETIME_BOUNDS_MS, None]
    return [{"le_ms": bound, "count": counts.get(i, 0)} for i, bound in enumerate(bounds)]
