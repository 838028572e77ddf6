"""SQL of connection health (collect tcp, client side): the engine's per-endpoint window from the raw
table, and per-minute series from the tcp_health_1m rollup.

Endpoints are "ip:port" strings in the registry's form (IPv6 as "[addr]:port"). Every query is
limited to the remote ports the caller names, so a node's other traffic (databases, the internet)
is never scanned for nothing, and no ports means no query at all.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

from api.timerange import Window
from pipeline.store import Store
from weights.tcp import TcpWindow
from weights.tcp_inputs import endpoint_of

_WINDOW_SQL = """
SELECT raddr, rport, count() AS attempts,
       countIf(outcome = 'refused') AS refused, countIf(outcome = 'timeout') AS timeouts,
       countIf(outcome = 'unreachable') AS unreachable, countIf(outcome = 'reset') AS resets,
       countIf(outcome = 'aborted') AS aborted, sum(retransmits) AS retransmits,
       quantilesIf(0.5, 0.99)(connect_ms, connect_ms > 0) AS connect,
       quantilesIf(0.5, 0.99)(toFloat64(srtt_us) / 1000, srtt_us > 0) AS srtt
FROM tcp_connections
WHERE ts >= toDateTime(%(since_s)s) AND ts_ms >= %(since_ms)s AND role = 'client' AND outcome != ''
      AND rport IN %(ports)s
GROUP BY raddr, rport
"""

_SERIES_SQL = """
SELECT intDiv(toUInt32(minute), %(step)s) * %(step)s AS t, raddr, rport,
       countMerge(attempts) AS attempts, sumMerge(refused) AS refused,
       sumMerge(timeouts) AS timeouts, sumMerge(unreachable) AS unreachable, sumMerge(reset) AS resets,
       sumMerge(aborted) AS aborted, sumMerge(retransmits) AS retransmits,
       quantilesTDigestIfMerge(0.5, 0.99)(connect_ms) AS connect,
       quantilesTDigestIfMerge(0.5, 0.99)(srtt_us) AS srtt
FROM tcp_health_1m
WHERE minute >= toDateTime(%(from_s)s) AND minute < toDateTime(%(to_s)s) AND rport IN %(ports)s
GROUP BY t, raddr, rport ORDER BY t
"""

COUNTS = ("attempts", "refused", "timeouts", "unreachable", "resets", "aborted", "retransmits")


def _quantiles(values: Iterable[float], scale: float = 1.0) -> tuple[float, float]:
    # quantiles over no rows are NaN (no handshake completed): 0 = unknown, as in the contract.
    p50, p99 = (0.0 if math.isnan(v) else float(v) * scale for v in values)
    return p50, p99


def tcp_windows(store: Store, now_ms: int, window_s: int, ports: Collection[int]) -> dict[str, TcpWindow]:
    """{endpoint: TcpWindow} over the last window_s seconds, for remote ports in `ports`."""
    if not ports:
        return {}
    since_ms = now_ms - window_s * 1000
    rows = store.query(_WINDOW_SQL, {"since_s": since_ms // 1000, "since_ms": since_ms, "ports": tuple(ports)})
    windows = {}
    for row in rows:
        connect, srtt = _quantiles(row["connect"]), _quantiles(row["srtt"])
        windows[endpoint_of(row["raddr"], row["rport"])] = TcpWindow(
            **{name: int(row[name]) for name in COUNTS}, connect_ms_p50=connect[0], connect_ms_p99=connect[1],
            srtt_ms_p50=srtt[0], srtt_ms_p99=srtt[1])
    return windows


def health_series(store: Store, endpoints: Collection[str], window: Window) -> dict[str, list[dict[str, Any]]]:
    """{endpoint: [{t, attempts, failures by outcome, retransmits, connect/srtt p50/p99}, ...]} per step."""
    ports = {int(e.rsplit(":", 1)[1]) for e in endpoints}
    if not ports:
        return {}
    params = {"from_s": window.from_s, "to_s": window.to_s, "step": window.step_s, "ports": tuple(ports)}
    found: dict[str, list[dict[str, Any]]] = {e: [] for e in endpoints}
    for row in store.query(_SERIES_SQL, params):
        name = endpoint_of(row["raddr"], row["rport"])
        if name not in found:
            continue  # another instance on the same port
        connect, srtt = _quantiles(row["connect"]), _quantiles(row["srtt"], 1 / 1000)
        found[name].append({"t_ms": int(row["t"]) * 1000, **{n: int(row[n]) for n in COUNTS},
                            "connect_ms_p50": connect[0], "connect_ms_p99": connect[1],
                            "srtt_ms_p50": srtt[0], "srtt_ms_p99": srtt[1]})
    return found
