"""RPC health: rps, success and latency of a service by instance, then one instance by interface."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat

from dashboards.panels import board, grid, health_table, keep_rows, lines, row, rpc_series, single
from dashboards.sources import CH_TIME_SERIES, TIME_RANGE, Query, api, num, sql, text, time_ms

UID = "svcpulse-rpc-health"
Steps = list[tuple[float | None, str]]
FAILURES_SQL = """
    SELECT toStartOfMinute(ts) AS time, code, count() AS failures FROM rpc_calls
    WHERE $__timeFilter(ts) AND callee = '${service}' AND side = 'server' AND status != 'ok'
    GROUP BY time, code ORDER BY time"""

ALARMS = api("/v1/alarms", "alarms", [
    text("state"), text("rule.id", "rule"), text("rule.service", "service"), text("rule.metric", "metric"),
    text("rule.kind", "kind"), num("rule.threshold", "threshold"), num("value"), num("reference"),
    text("message"), time_ms("since_ms")])
ALARM_HISTORY = api(f"/v1/alarms/history?{TIME_RANGE}&limit=200", "events", [
    time_ms("ts_ms"), text("rule_id", "rule"), text("state"), num("value"), num("reference"), num("threshold"),
    text("message")])


def _summary(title: str, column: str, unit: str, steps: Steps) -> stat.Panel:
    """One health figure of the selected service over the last five minutes (its row of /v1/services)."""
    target = api("/v1/services", "services", [text("service"), num(column)])
    return (single(title, target, unit, "last 5 minutes, server side", steps=steps)
            .with_transformation(keep_rows("service", "${service}")))


def _top(kind: str) -> Query:
    columns = [text("service"), text("key"), num("calls"), num("rps"), num("success_rate", "success"),
               num("latency_ms_p99", "p99 ms")]
    return api(f"/v1/top/{kind}?service=${{service}}&n=10&{TIME_RANGE}", "rows", columns)


def dashboard() -> db.Dashboard:
    by_instance = {"service": "${service}", "by": "instance"}
    one = {"service": "${service}", "instance": "${instance}", "by": "interface"}
    quantiles = [rpc_series(m, ref, service="${service}")
                 for m, ref in (("latency_p50", "A"), ("latency_p95", "B"), ("latency_p99", "C"))]
    return (board(UID, "svcpulse / RPC health", "Calls, success and latency of one service from the svcpulse "
                  "API (Infinity); failure codes from ClickHouse.")
            .with_panel(_summary("Requests / s", "rps", "reqps", [(None, "blue")]))
            .with_panel(_summary("Success", "success_rate", "percentunit",
                                 [(None, "red"), (0.99, "orange"), (0.999, "green")]))
            .with_panel(_summary("Latency p99", "latency_ms_p99", "ms", [(None, "green"), (250, "orange"),
                                                                          (1000, "red")]))
            .with_panel(_summary("Calls", "calls", "short", [(None, "blue")]))
            .with_row(row("Service ${service} by instance"))
            .with_panel(lines("Requests / s by instance", "reqps", rpc_series("rps", **by_instance), span=8))
            .with_panel(lines("Success rate by instance", "percentunit", rpc_series("success_rate", **by_instance),
                              span=8))
            .with_panel(lines("Latency p99 by instance", "ms", rpc_series("latency_p99", **by_instance), span=8))
            .with_panel(lines("Service latency p50 / p95 / p99", "ms", *quantiles))
            .with_panel(lines("Failures by protocol code", "short", sql(FAILURES_SQL, CH_TIME_SERIES),
                              clickhouse=True, description="calls with status error or timeout per minute "
                              "and protocol code (ClickHouse, rpc_calls)"))
            .with_panel(health_table("Instances (last 5 min)", "/v1/services/${service}/instances", "instances",
                                     text("instance")))
            .with_panel(health_table("Interfaces (last 5 min)", "/v1/services/${service}/interfaces",
                                     "interfaces", text("interface")))
            .with_row(row("Instance ${instance} by interface"))
            .with_panel(lines("Requests / s by interface", "reqps", rpc_series("rps", **one), span=8))
            .with_panel(lines("Failures by interface", "short", rpc_series("errors", **one), span=8))
            .with_panel(lines("Latency p99 by interface", "ms", rpc_series("latency_p99", **one), span=8))
            .with_row(row("Alarms"))
            .with_panel(grid("Alarms (firing first)", ALARMS, "every rule and its state; rules come from the "
                             "rules file and POST /v1/alarms/rules", span=12))
            .with_panel(grid("Alarm transitions", ALARM_HISTORY, "fired and resolved in the time range", span=12))
            .with_row(row("Top lists"))
            .with_panel(grid("Slowest interfaces", _top("slow-interfaces")))
            .with_panel(grid("Most erroring instances", _top("erroring-instances"))))
