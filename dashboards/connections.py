"""Connections (eBPF tcplife): top talkers, new connections and bytes over time, lifetimes, and the
connections reaching the selected instance, with their health (failures by outcome, retransmits,
handshake times) from the callers' side."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import ROW_COLUMNS, bars, board, grid, lines, row, series_url
from dashboards.sources import CH_TIME_SERIES, TIME_RANGE, Query, api, num, sql, text

UID = "svcpulse-connections"
# tcp_connections_1m keys the remote end as raddr + rport; an instance is "host:port".
TO_INSTANCE = "concat(raddr, ':', toString(rport)) = '${instance}'"
INSTANCE_CONNECTIONS_SQL = f"""
    SELECT minute AS time, host, countMerge(connections) AS connections FROM tcp_connections_1m
    WHERE $__timeFilter(minute) AND {TO_INSTANCE} GROUP BY time, host ORDER BY time"""
INSTANCE_LIFETIME_SQL = f"""
    SELECT time, q[1] AS p50_ms, q[2] AS p99_ms FROM (
      SELECT minute AS time, quantilesTDigestMerge(0.5, 0.95, 0.99)(duration) AS q FROM tcp_connections_1m
      WHERE $__timeFilter(minute) AND {TO_INSTANCE} GROUP BY time) ORDER BY time"""
# tcp_health_1m: client-side connections by outcome (the callers' view of the instance).
INSTANCE_FAILURES_SQL = f"""
    SELECT minute AS time, sumMerge(refused) AS refused, sumMerge(timeouts) AS timed_out,
           sumMerge(unreachable) AS unreachable, sumMerge(reset) AS reset, sumMerge(retransmits) AS retransmits
    FROM tcp_health_1m WHERE $__timeFilter(minute) AND {TO_INSTANCE} GROUP BY time ORDER BY time"""
INSTANCE_HANDSHAKE_SQL = f"""
    SELECT time, q[1] AS handshake_p50_ms, q[2] AS handshake_p99_ms FROM (
      SELECT minute AS time, quantilesTDigestIfMerge(0.5, 0.99)(connect_ms) AS q FROM tcp_health_1m
      WHERE $__timeFilter(minute) AND {TO_INSTANCE} GROUP BY time) ORDER BY time"""
# A bar chart's x axis wants strings: the bucket bounds become labels ("" = longer than every bound).
BOUNDS_AS_LABELS = dm.DataTransformerConfig(id_val="convertFieldType", options={
    "conversions": [{"targetField": "le_ms", "destinationType": "string"}]})
GROUP_COLUMNS = [num("connections"), num("tx_bytes", "tx bytes"), num("rx_bytes", "rx bytes"),
                 num("duration_ms_p50", "lifetime p50 ms"), num("duration_ms_p99", "lifetime p99 ms")]


def _groups(by: str, order: str) -> Query:
    labels = [text(f"labels.{name}", name) for name in by.split(",")]
    return api(f"/v1/connections?by={by}&order={order}&n=20&{TIME_RANGE}", "groups", [*labels, *GROUP_COLUMNS])


def _over_time(metric: str) -> Query:
    return api(series_url("/v1/connections/series", metric=metric, by="remote"), "", ROW_COLUMNS)


def dashboard() -> db.Dashboard:
    lifetimes = api(f"/v1/connections/lifetimes?{TIME_RANGE}", "buckets", [num("le_ms"), num("count")])
    return (board(UID, "svcpulse / Connections", "TCP connections seen by the eBPF collector (tcplife): who "
                  "talks to whom, how much and for how long.")
            .with_panel(lines("New connections / min by remote endpoint", "short", _over_time("connections")))
            .with_panel(lines("Bytes received / min by remote endpoint", "bytes", _over_time("rx_bytes"), span=12))
            .with_panel(lines("Bytes sent / min by remote endpoint", "bytes", _over_time("tx_bytes"), span=12))
            .with_panel(grid("Top talkers (bytes)", _groups("host,remote", "bytes"), span=24))
            .with_panel(grid("By cgroup and role", _groups("cgroup,role", "connections"), span=12))
            .with_panel(bars("Connection lifetimes (count by upper bound, ms)", lifetimes, "le_ms", "short",
                             span=12).with_transformation(BOUNDS_AS_LABELS))
            .with_row(row("Connections to instance ${instance}"))
            .with_panel(lines("Connections / min to ${instance} by client host", "short",
                              sql(INSTANCE_CONNECTIONS_SQL, CH_TIME_SERIES), span=12, clickhouse=True))
            .with_panel(lines("Lifetime p50 / p99 of connections to ${instance}", "ms",
                              sql(INSTANCE_LIFETIME_SQL, CH_TIME_SERIES), span=12, clickhouse=True))
            .with_panel(lines("Failed connections and retransmits / min to ${instance} (callers' side)", "short",
                              sql(INSTANCE_FAILURES_SQL, CH_TIME_SERIES), span=12, clickhouse=True,
                              description="refused: nothing listens; timed out: the SYN went unanswered; "
                              "reset: the instance reset an established connection (collect tcp)"))
            .with_panel(lines("Handshake p50 / p99 to ${instance}", "ms",
                              sql(INSTANCE_HANDSHAKE_SQL, CH_TIME_SERIES), span=12, clickhouse=True)))
