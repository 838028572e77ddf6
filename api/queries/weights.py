"""SQL of the weight feed: per-instance call windows from rpc_calls, and the weight history."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from pipeline.batch import columns
from pipeline.store import Store

# One scan over the membership lookback (forget_s) gives both who exists (last call) and what each
# did in the short judging window (the -If aggregates). Grouped by side: the caller prefers the
# server's own measurement and falls back to what clients saw (weights/inputs.py). Only instances
# that can be routable are read (weights/admission.py), so what telemetry invents never leaves ClickHouse:
# registered ones, and in services with a discovery policy the longest-seen others up to the cap.
_WINDOWS_SQL = """
SELECT callee AS service, instance, side,
       min(ts_ms) AS first_ms,
       max(ts_ms) AS last_ms,
       countIf(ts_ms >= %(window_ms)s) AS requests,
       countIf(ts_ms >= %(window_ms)s AND status = 'error') AS errors,
       countIf(ts_ms >= %(window_ms)s AND status = 'timeout') AS timeouts,
       quantilesIf(0.5, 0.99)(latency_ms, ts_ms >= %(window_ms)s) AS latency,
       argMax(version, ts_ms) AS version,
       arraySlice(groupUniqArray(interface), 1, %(interfaces)s) AS interfaces
FROM rpc_calls
WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND callee != '' AND instance != '' AND {scope}
GROUP BY callee, instance, side
"""
# Live registrations (not older versions' auto-discovered rows), as a subquery: no list in the SQL text.
_REGISTERED = ("(SELECT service, instance FROM (SELECT service, instance, deleted, source FROM registry_instances "
               "ORDER BY changed_ms DESC LIMIT 1 BY service, instance) WHERE deleted = 0 AND source != 'discovered')")
# `callee IN` a list first: the primary key (callee, ts) skips every other service's rows.
_REGISTERED_SCOPE = f"callee IN %(registered_services)s AND (callee, instance) IN {_REGISTERED}"
_POLICY_SCOPE = f"callee IN %(policy_services)s AND (callee, instance) NOT IN {_REGISTERED}"
# Services nobody made (no registration, no policy): only whether they are still seen, for the caps'
# ledger. While the hourly cap has room: the ones tracked already first, then the earliest new ones,
# as many as there is room for (one scan). Without room: the tracked ones alone, by the primary key.
_UNMADE_SQL = """
SELECT callee AS service, min(ts_ms) AS first_ms, max(ts_ms) AS last_ms
FROM rpc_calls
WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND callee != '' AND {scope}
GROUP BY callee {order}
"""
_UNMADE_COUNT_SQL = """
SELECT uniqExact(callee) FROM rpc_calls
WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND callee != '' AND callee NOT IN %(made)s
"""

HISTORY_COLUMNS = ("ts", "ts_ms", "service", "revision", "mode", "instance", "weight", "state", "reason",
                   "success_rate", "latency_ms_p50", "latency_ms_p99", "rps", "version")


def _since(now_ms: int, forget_s: int) -> dict[str, int]:
    since_ms = now_ms - forget_s * 1000
    return {"since_ms": since_ms, "since_s": since_ms // 1000}


def _names(values: Collection[str]) -> tuple[str, ...]:
    """A non-empty tuple for `IN %(x)s` (18.16 has no `IN ()`): '' never names a service here."""
    return tuple(sorted(values)) or ("",)


def observed_instances(store: Store, now_ms: int, window_s: int, forget_s: int, interfaces: int = 1,
                       registered_services: Collection[str] = (), policy_services: Collection[str] = (),
                       per_service: int = 1000) -> list[dict[str, Any]]:
    """Rows {service, instance, side, first_ms, last_ms, requests, errors, timeouts, p50, p99, version,
    interfaces} of the registered instances (of `registered_services`), and of up to `per_service` others
    per policy service (the longest seen first); `interfaces` holds at most that many names per instance."""
    params = {**_since(now_ms, forget_s), "window_ms": now_ms - window_s * 1000, "interfaces": interfaces,
              "registered_services": _names(registered_services), "policy_services": _names(policy_services),
              "per_side": 2 * per_service}
    rows = store.query(_WINDOWS_SQL.format(scope=_REGISTERED_SCOPE), params) if registered_services else []
    if policy_services:
        rows += store.query(_WINDOWS_SQL.format(scope=_POLICY_SCOPE) + " ORDER BY service, first_ms, instance "
                            "LIMIT %(per_side)s BY service", params)
    for row in rows:
        p50, p99 = row.pop("latency")
        # quantiles over no rows are NaN: no calls in the window means no latency, not 0 ms.
        row["p50"] = 0.0 if math.isnan(p50) else float(p50)
        row["p99"] = 0.0 if math.isnan(p99) else float(p99)
    return rows


def unmade_services(store: Store, now_ms: int, forget_s: int, made: Collection[str], tracked: Collection[str],
                    room: int) -> list[dict[str, Any]]:
    """Services seen that nobody registered or gave a policy, rows {service, first_ms, last_ms}: the
    tracked ones, and while `room` > 0 up to that many new ones (the earliest seen)."""
    params = {**_since(now_ms, forget_s), "made": _names(made), "tracked": _names(tracked),
              "limit": len(tracked) + room}
    if room > 0:
        sql = _UNMADE_SQL.format(scope="callee NOT IN %(made)s",
                                 order="ORDER BY callee IN %(tracked)s DESC, first_ms, callee LIMIT %(limit)s")
    elif tracked:
        sql = _UNMADE_SQL.format(scope="callee IN %(tracked)s", order="")
    else:
        return []
    return store.query(sql, params)


def unmade_count(store: Store, now_ms: int, forget_s: int, made: Collection[str]) -> int:
    """How many services nobody made were seen within forget_s (one scan: the caller runs it rarely)."""
    return int(store.execute(_UNMADE_COUNT_SQL, {**_since(now_ms, forget_s), "made": _names(made)})[0][0])


def insert_history(store: Store, feeds: Sequence[dict[str, Any]]) -> None:
    """One row per instance per published feed (dashboards and audit read it)."""
    rows = [
        (f["generated_at_ms"] // 1000, f["generated_at_ms"], f["service"], f["revision"], f["mode"],
         i["instance"], i["weight"], i["state"], i["reason"], i["success_rate"], i["latency_ms_p50"],
         i["latency_ms_p99"], i["rps"], i["version"])
        for f in feeds for i in f["instances"]
    ]
    if rows:
        store.insert("weight_history", HISTORY_COLUMNS, columns(rows))


def weight_history(store: Store, service: str, since_ms: int, limit: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT ts_ms, instance, weight, state, reason, mode, revision FROM weight_history "
        "WHERE service = %(service)s AND ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s "
        "ORDER BY ts_ms DESC, instance LIMIT %(limit)s",
        {"service": service, "since_s": since_ms // 1000, "since_ms": since_ms, "limit": limit},
    )
