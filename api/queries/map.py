"""SQL of the service map (GET /v1/map): calls between services (rpc_edges_*), calls per callee
instance (rpc_edge_instances_*), callers' TCP connections to endpoints (tcp_edges_*, client side) and
which services run in which cgroups (workloads_1m), all rollups keyed by time first, in minutes, ten
minutes and hours (migration 0009).
A query's cost follows the number of (caller, callee), (caller, callee, instance) and (cgroup,
endpoint) pairs in the range, never the number of calls or connections; the costliest state, the
latency t-digests, is merged only for the pairs and callees the map draws (`latencies`). A range
reads whole hours from the *_1h tables, whole ten minutes from the *_10m tables and only its edges
from the minutes (a range ending now: its current hour whole, see segments). Runs on ClickHouse 18.16
and chdb alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

from api.servicemap import CalleeKey, PairKey, Quantiles
from api.timerange import Window
from pipeline.store import Store

TCP_ROWS = 20_000  # (cgroup, endpoint) pairs read at most, busiest first: the map keeps far fewer anyway


Segment = tuple[str, int, int]  # (tier: 1m | 10m | 1h, from_s, to_s)
_TIME = {"1m": "minute", "10m": "minute", "1h": "hour"}  # each tier's time column (10m: its bucket's start)


def _split(lo: int, hi: int, size: int, tier: str, finer: Callable[[int, int], list[Segment]]) -> list[Segment]:
    """Whole `size`-second buckets of [lo, hi) from `tier`, the edges from the finer tiers."""
    first, last = -(-lo // size) * size, hi // size * size
    if first >= last:
        return finer(lo, hi)
    return [*finer(lo, first), (tier, first, last), *finer(last, hi)]


def _minutes(lo: int, hi: int) -> list[Segment]:
    return [("1m", lo, hi)] if lo < hi else []


def _tens(lo: int, hi: int) -> list[Segment]:
    return _split(lo, hi, 600, "10m", _minutes)


def segments(window: Window, now_s: float | None = None) -> list[Segment]:
    """The tiers that cover the window exactly: whole hours, whole ten minutes, minutes at the edges.
    A window that reaches now (to_s >= now_s) is read up to the end of the current hour: after now only
    calls from producers whose clocks run ahead are stamped (calls happening now), and the current hour
    or ten minutes whole cost one bucket where their minutes so far cost one each."""
    to_s = window.to_s
    if now_s is not None and to_s >= now_s:
        to_s = -(-to_s // 3600) * 3600
    return _split(window.from_s, to_s, 3600, "1h", _tens)


def _source(window: Window, rollup: str, columns: str, now_s: float | None,
            where: str = "") -> tuple[str, dict[str, Any]]:
    """A subquery over the tiers of `rollup` (`rollup`_1m, _10m, _1h) covering the window (see
    segments); `columns` excludes the time column; `where` filters every tier's rows as they are read."""
    parts, params = [], {}
    for n, (tier, lo, hi) in enumerate(segments(window, now_s)):
        column = _TIME[tier]
        parts.append(f"SELECT {columns} FROM {rollup}_{tier} WHERE {column} >= toDateTime(%(lo{n})s) "
                     f"AND {column} < toDateTime(%(hi{n})s){f' AND ({where})' if where else ''}")
        params.update({f"lo{n}": lo, f"hi{n}": hi})
    return f"({' UNION ALL '.join(parts)})", params


Rows = list[dict[str, Any]]
_COUNTS = ("calls", "errors", "timeouts", "slow")


def call_totals(store: Store, window: Window, now_s: float | None = None) -> tuple[Rows, Rows]:
    """(pairs, callees): per (caller, callee, side) and per (callee, side), rows of calls, errors, timeouts
    and slow (calls over a second: migration 0011). A call seen by both sides is in both. Counts only,
    cheap whatever the number of pairs: the latency digests are merged by `latencies`, for what the map
    draws."""
    source, params = _source(window, "rpc_edges", "caller, callee, side, calls, errors, timeouts, slow", now_s)
    sql = ("SELECT caller, callee, side, countMerge(calls) AS calls, sumMerge(errors) AS errors, "
           f"sumMerge(timeouts) AS timeouts, sumMerge(slow) AS slow FROM {source} GROUP BY caller, callee, side")
    pairs = store.query(sql, params)
    callees: dict[CalleeKey, dict[str, Any]] = {}
    for row in pairs:
        for name in _COUNTS:
            row[name] = int(row[name])
        into = callees.setdefault((row["callee"], row["side"]), {"caller": "", "callee": row["callee"],
                                                                 "side": row["side"], **dict.fromkeys(_COUNTS, 0)})
        for name in _COUNTS:
            into[name] += row[name]
    return pairs, list(callees.values())


def _quantiles(q: Sequence[float]) -> Quantiles:
    p50, p99 = (None if math.isnan(value) else round(float(value), 3) for value in q)
    return p50, p99


WIDEN_SHARE = 0.15  # latency quantiles may cover whole ten minutes around a range this much longer than it


def latency_window(window: Window, now_s: float | None = None) -> Window:
    """The span the latency quantiles cover: the range widened to whole ten minutes when that adds at most
    WIDEN_SHARE of its length (a 1-hour range always), else the range itself. A range's partial ten
    minutes cost a digest per pair and minute, half of a 1-hour map's latency merge, where a whole ten
    minutes costs one; the counts (calls, errors, slow calls) always cover the range exactly."""
    lo = window.from_s // 600 * 600
    hi = window.to_s if now_s is not None and window.to_s >= now_s else -(-window.to_s // 600) * 600
    if (window.from_s - lo) + (hi - window.to_s) > WIDEN_SHARE * (window.to_s - window.from_s):
        return window
    return Window(lo, hi, window.step_s)


def latencies(store: Store, window: Window, pairs: Collection[PairKey], callees: Collection[CalleeKey],
              now_s: float | None = None) -> tuple[dict[PairKey, Quantiles], dict[CalleeKey, Quantiles]]:
    """(p50, p99) of the calls of each of `pairs` and of all the calls each of `callees` served on that
    side, over latency_window. The t-digests are merged only for the callees these name (their rows
    filtered as they are read), once per pair, and a callee's from its pairs' merged states. The filter
    is a list of callee names: 18.16 analyses a list of (caller, callee, side) tuples at ~0.3 ms each,
    more than merging their digests."""
    names = sorted({callee for _, callee, _ in pairs} | {callee for callee, _ in callees})
    if not names:
        return {}, {}
    source, params = _source(latency_window(window, now_s), "rpc_edges", "caller, callee, side, latency", now_s,
                             where="callee IN %(names)s")
    sql = ("SELECT callee, side, groupArray(caller) AS callers, groupArray(finalizeAggregation(l)) AS qs, "
           "quantilesTDigestMerge(0.5, 0.99)(l) AS q FROM (SELECT callee, side, caller, "
           f"quantilesTDigestMergeState(0.5, 0.99)(latency) AS l FROM {source} GROUP BY callee, side, caller) "
           "GROUP BY callee, side")
    wanted_pairs, wanted_callees = set(pairs), set(callees)
    by_pair: dict[PairKey, Quantiles] = {}
    by_callee: dict[CalleeKey, Quantiles] = {}
    for row in store.query(sql, {**params, "names": tuple(names)}):
        callee, side = row["callee"], row["side"]
        for caller, q in zip(row["callers"], row["qs"], strict=True):
            if (caller, callee, side) in wanted_pairs:
                by_pair[caller, callee, side] = _quantiles(q)
        if (callee, side) in wanted_callees:
            by_callee[callee, side] = _quantiles(row["q"])
    return by_pair, by_callee


def instance_totals(store: Store, window: Window, min_calls: int, now_s: float | None = None) -> list[dict[str, Any]]:
    """Rows {caller, callee, side, instances, worst} per (caller, callee, side): the callee instances
    that served these calls, and the worst one ({instance, calls, failures}, failures = errors and
    timeouts): the largest share of failed calls among instances with `min_calls` calls or more (ties: more
    calls, then the greater name), None when none has that many. Judged here so that one row per pair
    crosses to Python instead of one per instance."""
    source, params = _source(window, "rpc_edge_instances", "caller, callee, side, instance, calls, failures",
                             now_s)
    judged = f"calls >= {int(min_calls)} AND instance != ''"
    rank = "(failures / calls, calls, instance)"
    sql = (f"SELECT caller, callee, side, groupArray(instance) AS instances, countIf({judged}) AS judged, "
           f"argMaxIf(instance, {rank}, {judged}) AS worst, argMaxIf(calls, {rank}, {judged}) AS worst_calls, "
           f"argMaxIf(failures, {rank}, {judged}) AS worst_failures FROM ("
           f"SELECT caller, callee, side, instance, sum(calls) AS calls, sum(failures) AS failures FROM {source} "
           "GROUP BY caller, callee, side, instance) GROUP BY caller, callee, side")
    rows = []
    for row in store.query(sql, params):
        worst = {"instance": row["worst"], "calls": int(row["worst_calls"]), "failures": int(row["worst_failures"])}
        rows.append({"caller": row["caller"], "callee": row["callee"], "side": row["side"],
                     "instances": list(row["instances"]), "worst": worst if row["judged"] else None})
    return rows


def tcp_links(store: Store, window: Window, now_s: float | None = None, limit: int = TCP_ROWS) -> list[dict[str, Any]]:
    """Client-side connections per (cgroup, remote endpoint): {cgroup, raddr, rport, attempts, ok,
    retransmits, resets}; the busiest `limit` pairs."""
    source, params = _source(window, "tcp_edges", "cgroup, raddr, rport, attempts, ok, retransmits, resets",
                             now_s)
    sql = ("SELECT cgroup, raddr, rport, sum(attempts) AS attempts, sum(ok) AS ok, sum(retransmits) AS retransmits, "
           f"sum(resets) AS resets FROM {source} GROUP BY cgroup, raddr, rport ORDER BY attempts DESC "
           "LIMIT %(limit)s")
    rows = store.query(sql, {**params, "limit": limit})
    for row in rows:
        for name in ("rport", "attempts", "ok", "retransmits", "resets"):
            row[name] = int(row[name])
    return rows


def cgroup_workloads(store: Store, window: Window) -> list[dict[str, Any]]:
    """Rows {cgroup, workload, workload_kind, service, source, events}: which workload each cgroup is, and
    which services measured calls there (service '' for rows from connections and load samples)."""
    sql = ("SELECT cgroup, workload, workload_kind, service, source, countMerge(events) AS events FROM workloads_1m "
           "WHERE minute >= toDateTime(%(from_s)s) AND minute < toDateTime(%(to_s)s) "
           "GROUP BY cgroup, workload, workload_kind, service, source")
    return [{**row, "events": int(row["events"])}
            for row in store.query(sql, {"from_s": window.from_s, "to_s": window.to_s})]
