"""SQL of the RPC query API: calls, errors, timeouts and latency quantiles grouped by time and dimensions.

Whole-minute steps (and whole-window summaries) read the per-minute rollup `rpc_calls_1m`; finer
steps read the raw `rpc_calls`. A range of HOURLY_FROM_S or more with whole-hour steps (or no
buckets) reads whole hours from `rpc_calls_1h` and only the partial hours at its edges from the
minutes: merging quantile states is most of a long query's cost, and hours hold ~60x fewer. All
give the same columns, so everything above this module is indifferent to the source. Buckets are
`intDiv(toUInt32(time), step) * step` (epoch-aligned), which runs on ClickHouse 18.16 and current
alike; empty buckets are simply absent (no WITH FILL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from api.timerange import Window
from pipeline.store import Store

# API dimension -> column (the contract calls the called service "callee").
DIMENSIONS = {"service": "callee", "interface": "interface", "instance": "instance", "caller": "caller",
              "version": "version"}
Side = Literal["server", "client", "all"]
Order = Literal["calls", "failures", "p99"]

# (table, time column, counts, quantiles): merging t-digests is most of a query's cost on a long range,
# so the quantiles are only computed when asked for.
_ROLLUP = ("rpc_calls_1m", "minute", "countMerge(calls) AS calls, sumMerge(errors) AS errors, "
           "sumMerge(timeouts) AS timeouts", "quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) AS q")
# Whole hours from the hourly rollup, the edges of the range from the minutes: both hold the same states.
_ROLLUP_COLUMNS = "callee, interface, instance, caller, version, side, calls, errors, timeouts, latency"
_HOURS_AND_EDGES = (
    f"(SELECT hour AS time, {_ROLLUP_COLUMNS} FROM rpc_calls_1h "
    "WHERE hour >= toDateTime(%(hours_from_s)s) AND hour < toDateTime(%(hours_to_s)s) "
    f"UNION ALL SELECT minute AS time, {_ROLLUP_COLUMNS} FROM rpc_calls_1m "
    "WHERE (minute >= toDateTime(%(from_s)s) AND minute < toDateTime(%(hours_from_s)s)) "
    "OR (minute >= toDateTime(%(hours_to_s)s) AND minute < toDateTime(%(to_s)s)))"
)
HOURLY_FROM_S = 6 * 3600
_RAW = ("rpc_calls", "ts", "count() AS calls, countIf(status = 'error') AS errors, "
        "countIf(status = 'timeout') AS timeouts", "quantilesTDigest(0.5, 0.95, 0.99)(latency_ms) AS q")
_ORDER_SQL = {"calls": "calls DESC", "failures": "errors + timeouts DESC, calls DESC", "p99": "q[3] DESC"}


@dataclass(frozen=True)
class Selector:
    """Which calls: equality filters per dimension (None = any) and whose measurement (side)."""

    filters: tuple[tuple[str, str], ...] = ()
    side: Side = "server"

    @classmethod
    def of(cls, side: Side = "server", **filters: str | None) -> Selector:
        unknown = set(filters) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown dimension(s) {sorted(unknown)}; choose from {list(DIMENSIONS)}")
        return cls(tuple(sorted((k, v) for k, v in filters.items() if v is not None)), side)

    def where(self, time_column: str) -> tuple[str, dict[str, Any]]:
        clauses = [f"{time_column} >= toDateTime(%(from_s)s)", f"{time_column} < toDateTime(%(to_s)s)"]
        params: dict[str, Any] = {}
        for name, value in self.filters:
            clauses.append(f"{DIMENSIONS[name]} = %(f_{name})s")
            params[f"f_{name}"] = value
        if self.side != "all":
            clauses.append("side = %(side)s")
            params["side"] = self.side
        return " AND ".join(clauses), params


def rpc_aggregates(store: Store, selector: Selector, by: tuple[str, ...], window: Window, bucketed: bool = True,
                   order: Order | None = None, limit: int | None = None,
                   latency: bool = True) -> list[dict[str, Any]]:
    """Rows {t (bucket start s, if bucketed), <each dimension in by>, calls, errors, timeouts, p50, p95, p99};
    latency=False leaves the quantiles out (None)."""
    table, time_column, counts, quantiles = _ROLLUP if window.uses_rollup else _RAW
    hours = _whole_hours(window, bucketed)
    if hours:
        table, time_column = _HOURS_AND_EDGES, "time"
    aggregates = f"{counts}, {quantiles}" if latency or order == "p99" else counts
    where, params = selector.where(time_column)
    keys = [f"{DIMENSIONS[d]} AS {d}" if DIMENSIONS[d] != d else d for d in by]
    if bucketed:
        keys.insert(0, f"intDiv(toUInt32({time_column}), %(step)s) * %(step)s AS t")
    group = ", ".join(["t", *by] if bucketed else by)
    order_sql = _ORDER_SQL[order] if order else ("t" if bucketed else "calls DESC")
    sql = (f"SELECT {', '.join([*keys, aggregates])} FROM {table} WHERE {where} "
           f"{'GROUP BY ' + group if group else ''} ORDER BY {order_sql}"
           f"{' LIMIT %(limit)s' if limit else ''}")
    params.update(from_s=window.from_s, to_s=window.to_s, step=window.step_s, limit=limit)
    if hours:
        params.update(hours_from_s=hours[0], hours_to_s=hours[1])
    return [_plain(row) for row in store.query(sql, params)]


def _whole_hours(window: Window, bucketed: bool) -> tuple[int, int] | None:
    """The whole hours inside a long rollup range whose buckets are whole hours too, else None."""
    if not window.uses_rollup or window.to_s - window.from_s < HOURLY_FROM_S:
        return None
    if bucketed and window.step_s % 3600:
        return None
    first, last = -(-window.from_s // 3600) * 3600, window.to_s // 3600 * 3600
    return (first, last) if first < last else None


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Quantiles of no calls are NaN (JSON has no NaN): None, and ints where ClickHouse gave UInt64."""
    q = row.pop("q", [math.nan] * 3)
    for name, value in zip(("p50", "p95", "p99"), q, strict=True):
        row[name] = None if math.isnan(value) else round(float(value), 3)
    for name in ("calls", "errors", "timeouts"):
        row[name] = int(row[name])
    if "t" in row:
        row["t"] = int(row["t"])
    return row


def service_names(store: Store, window: Window) -> list[str]:
    """Services (callees) with calls in the window, from the rollup."""
    rows = store.execute("SELECT DISTINCT callee FROM rpc_calls_1m WHERE minute >= toDateTime(%(from_s)s) "
                         "AND minute < toDateTime(%(to_s)s) AND callee != '' ORDER BY callee",
                         {"from_s": window.from_s, "to_s": window.to_s})
    return [row[0] for row in rows]
