"""Load-balancer weights: the live feed, weights and states over time, ejections, overrides, gray releases."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import board, grid, lines, row, states
from dashboards.sources import CH_TIME_SERIES, api, num, sql, text, time_ms

UID = "svcpulse-weights"
BUCKET = "toDateTime(intDiv(toUInt32(ts), $__interval_s) * $__interval_s)"  # toStartOfInterval is not on 18.16
# The worst state an instance was in during a bucket, so a short ejection is not hidden by a later healthy.
SEVERITY = ("multiIf(state = 'ejected', 5, state = 'drained', 4, state = 'degraded', 3, state = 'slow_start', 2, "
            "state = 'new', 1, 0)")
WEIGHT_SQL = f"""
    SELECT {BUCKET} AS time, instance, avg(weight) AS weight FROM weight_history
    WHERE $__timeFilter(ts) AND service = '${{service}}' GROUP BY time, instance ORDER BY time"""
STATE_SQL = f"""
    SELECT {BUCKET} AS time, instance, argMax(state, {SEVERITY}) AS state FROM weight_history
    WHERE $__timeFilter(ts) AND service = '${{service}}' GROUP BY time, instance ORDER BY time"""
STATE_COUNT_SQL = f"""
    SELECT {BUCKET} AS time, state, uniqExact(instance) AS instances FROM weight_history
    WHERE $__timeFilter(ts) AND service = '${{service}}' GROUP BY time, state ORDER BY time"""
EJECTIONS_SQL = """
    SELECT instance, count() AS cycles_ejected, min(ts) AS first_seen, max(ts) AS last_seen,
           argMax(reason, ts_ms) AS last_reason
    FROM weight_history WHERE $__timeFilter(ts) AND service = '${service}' AND state = 'ejected'
    GROUP BY instance ORDER BY cycles_ejected DESC"""
REASON_SQL = """
    SELECT ts AS time, weight, state, reason FROM weight_history
    WHERE $__timeFilter(ts) AND service = '${service}' AND instance = '${instance}' ORDER BY ts DESC LIMIT 200"""
# One frame per instance, so the state timeline draws one lane each.
BY_INSTANCE = dm.DataTransformerConfig(id_val="partitionByValues", options={"fields": ["instance"],
                                                                              "keepFields": False})


def dashboard() -> db.Dashboard:
    feed = api("/v1/weights/${service}", "instances", [
        text("instance"), text("version"), text("state"), num("weight"), text("reason"), num("rps"),
        num("success_rate", "success"), num("latency_ms_p50", "p50 ms"), num("latency_ms_p99", "p99 ms")])
    mode = api("/v1/weights/${service}", "", [text("service"), text("mode"), text("revision"), num("window_s")],
               root_is_object=True)
    overrides = api("/v1/overrides?service=${service}", "", [
        text("instance"), num("drained"), num("pinned_weight", "pinned (-1 = no)"), text("changed_by"),
        text("why"), time_ms("changed_ms")])
    releases = api("/v1/releases", "", [
        text("service"), text("canary_version"), num("percent"), text("state"), text("reason"),
        num("error_margin"), num("p99_margin"), text("changed_by"), time_ms("changed_ms")])
    audit = api("/v1/audit?service=${service}&limit=50", "", [
        time_ms("ts_ms"), text("user"), text("role"), text("action"), text("target"), text("why")])
    return (board(UID, "svcpulse / Load-balancer weights", "What the weight feed publishes for a service, how "
                  "weights and states moved, ejections, operator overrides and gray releases.")
            .with_panel(grid("Feed mode", mode, "normal, or protective when most instances look bad at once "
                             "(weights are then never cut)", span=24, height=4))
            .with_panel(grid("Weights now", feed, "the feed load balancers read: /v1/weights/${service}", span=24))
            .with_row(row("Over time"))
            .with_panel(lines("Weight by instance", "short", sql(WEIGHT_SQL, CH_TIME_SERIES), clickhouse=True,
                              description="published weights (weight_history), averaged per interval"))
            .with_panel(lines("Instances by state", "short", sql(STATE_COUNT_SQL, CH_TIME_SERIES), clickhouse=True,
                              description="how many instances were in each state: ejected and degraded show "
                              "outlier handling at work"))
            .with_panel(states("State by instance (worst in each interval)", sql(STATE_SQL))
                        .with_transformation(BY_INSTANCE))
            .with_panel(grid("Ejections", sql(EJECTIONS_SQL), "instances ejected in the time range and why",
                             clickhouse=True))
            .with_panel(grid("Instance ${instance}: weight, state and reason", sql(REASON_SQL), clickhouse=True))
            .with_row(row("Operators"))
            .with_panel(grid("Overrides in force (drain / pin)", overrides, span=12))
            .with_panel(grid("Gray releases", releases, span=12))
            .with_panel(grid("Recent changes (audit log)", audit, span=24)))
