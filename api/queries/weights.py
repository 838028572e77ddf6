"""SQL of the weight feed: per-instance call windows from rpc_calls, and the weight history."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.batch import columns
from pipeline.store import Store

# One scan over the membership lookback (forget_s) gives both who exists (last call) and what each
# did in the short judging window (the -If aggregates). Grouped by side: the caller prefers the
# server's own measurement and falls back to what clients saw (weights/inputs.py).
_WINDOWS_SQL = """
SELECT callee AS service, instance, side,
       max(ts_ms) AS last_ms,
       countIf(ts_ms >= %(window_ms)s) AS requests,
       countIf(ts_ms >= %(window_ms)s AND status = 'error') AS errors,
       countIf(ts_ms >= %(window_ms)s AND status = 'timeout') AS timeouts,
       quantilesIf(0.5, 0.99)(latency_ms, ts_ms >= %(window_ms)s) AS latency,
       argMax(version, ts_ms) AS version,
       arraySlice(groupUniqArray(interface), 1, %(interfaces)s) AS interfaces
FROM rpc_calls
WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND callee != '' AND instance != ''
GROUP BY callee, instance, side
"""

HISTORY_COLUMNS = ("ts", "ts_ms", "service", "revision", "mode", "instance", "weight", "state", "reason",
                   "success_rate", "latency_ms_p50", "latency_ms_p99", "rps", "version")


def observed_instances(store: Store, now_ms: int, window_s: int, forget_s: int,
                       interfaces: int = 1) -> list[dict[str, Any]]:
    """Rows {service, instance, side, last_ms, requests, errors, timeouts, p50, p99, version, interfaces}:
    `interfaces` holds at most that many of the interface names the instance served (for the caps)."""
    since_ms = now_ms - forget_s * 1000
    params = {"since_ms": since_ms, "since_s": since_ms // 1000, "window_ms": now_ms - window_s * 1000,
              "interfaces": interfaces}
    rows = store.query(_WINDOWS_SQL, params)
    for row in rows:
        p50, p99 = row.pop("latency")
        # quantiles over no rows are NaN: no calls in the window means no latency, not 0 ms.
        row["p50"] = 0.0 if math.isnan(p50) else float(p50)
        row["p99"] = 0.0 if math.isnan(p99) else float(p99)
    return rows


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
