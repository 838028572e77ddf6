"""Service capacity: headroom, forecast and recommendation (/v1/capacity), and the CPU, memory and rps per
core behind them (ClickHouse instance_load joined with the rpc rollup)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat

from dashboards.panels import board, grid, lines, row, rpc_series, single
from dashboards.sources import CH_TIME_SERIES, Column, api, num, sql, text

UID = "svcpulse-capacity"
CAPACITY = "/v1/capacity/${service}"
# instance_load has no service column: the service's instances are those its calls name.
INSTANCES_OF_SERVICE = ("instance IN (SELECT DISTINCT instance FROM rpc_calls_1m "
                        "WHERE $__timeFilter(minute) AND callee = '${service}')")
CPU_SQL = f"""
    SELECT toStartOfMinute(ts) AS time, instance, avg(cpu_cores) AS cpu_cores FROM instance_load
    WHERE $__timeFilter(ts) AND {INSTANCES_OF_SERVICE} GROUP BY time, instance ORDER BY time"""
CPU_UTILISATION_SQL = f"""
    SELECT toStartOfMinute(ts) AS time, instance, avg(cpu_cores / cpu_limit_cores) AS utilisation
    FROM instance_load WHERE $__timeFilter(ts) AND cpu_limit_cores > 0 AND {INSTANCES_OF_SERVICE}
    GROUP BY time, instance ORDER BY time"""
MEMORY_SQL = f"""
    SELECT toStartOfMinute(ts) AS time, instance, avg(mem_bytes) AS memory FROM instance_load
    WHERE $__timeFilter(ts) AND {INSTANCES_OF_SERVICE} GROUP BY time, instance ORDER BY time"""
RPS_PER_CORE_SQL = """
    SELECT time, instance, calls / 60 / cpu AS rps_per_core FROM (
      SELECT minute AS time, instance, countMerge(calls) AS calls FROM rpc_calls_1m
      WHERE $__timeFilter(minute) AND callee = '${service}' AND side = 'server' GROUP BY time, instance) AS served
    ANY INNER JOIN (
      SELECT toStartOfMinute(ts) AS time, instance, avg(cpu_cores) AS cpu FROM instance_load
      WHERE $__timeFilter(ts) GROUP BY time, instance) AS used
    USING (time, instance) WHERE cpu > 0 ORDER BY time"""


def _figure(title: str, column: Column, unit: str, description: str,
            steps: list[tuple[float | None, str]]) -> stat.Panel:
    return single(title, api(CAPACITY, "", [column], root_is_object=True), unit, description, steps=steps)


def dashboard() -> db.Dashboard:
    summary = api(CAPACITY, "", [
        num("rps"), num("capacity_rps", "capacity rps"), num("headroom_pct", "headroom %"),
        num("per_instance_capacity_rps", "per instance rps"), num("forecast.growth_rps_per_day", "growth rps/day"),
        num("forecast.days_to_saturation", "days to saturation"),
        num("recommendation.change_instances", "change instances"), text("recommendation.reason", "recommendation"),
        text("latency_fit", "latency fit")], root_is_object=True)
    instances = api(CAPACITY, "instances", [
        text("instance"), num("rps"), num("cpu_cores", "cpu cores"), num("cpu_limit_cores", "cpu limit"),
        num("rps_per_core", "rps / core"), num("capacity_rps", "capacity rps"), text("basis"),
        num("headroom_pct", "headroom %")])
    everything = api("/v1/capacity", "services", [
        text("service"), num("rps"), num("capacity_rps", "capacity rps"), num("headroom_pct", "headroom %"),
        num("forecast.days_to_saturation", "days to saturation"),
        num("recommendation.change_instances", "change"), text("recommendation.reason", "recommendation")])
    return (board(UID, "svcpulse / Service capacity", "How much load a service takes now, how much it can take, "
                  "when it runs out and what to do: /v1/capacity plus CPU and memory from load samples.")
            .with_panel(_figure("Headroom", num("headroom_pct"), "percent", "capacity left at the target CPU "
                                "utilisation (or the p99 SLO, if lower)", [(None, "red"), (20, "orange"),
                                                                            (40, "green")]))
            .with_panel(_figure("Capacity", num("capacity_rps"), "reqps", "estimated rps the service can take",
                                [(None, "blue")]))
            .with_panel(_figure("Days to saturation", num("forecast.days_to_saturation"), "d",
                                "trend of daily peaks; empty when load is not rising",
                                [(None, "red"), (7, "orange"), (30, "green")]))
            .with_panel(_figure("Recommended change", num("recommendation.change_instances"), "short",
                                "+N scale out, -N scale in", [(None, "blue")]))
            .with_panel(grid("Capacity and recommendation", summary, span=24, height=5))
            .with_panel(grid("Instances", instances, "rps, CPU and capacity per instance over the last 5 min",
                             span=24))
            .with_row(row("Load behind the estimate"))
            .with_panel(lines("Requests / s by instance", "reqps",
                              rpc_series("rps", service="${service}", by="instance"), span=12))
            .with_panel(lines("Requests / s per core", "short", sql(RPS_PER_CORE_SQL, CH_TIME_SERIES), span=12,
                              clickhouse=True))
            .with_panel(lines("CPU cores used", "short", sql(CPU_SQL, CH_TIME_SERIES), span=8, clickhouse=True))
            .with_panel(lines("CPU of limit", "percentunit", sql(CPU_UTILISATION_SQL, CH_TIME_SERIES), span=8,
                              clickhouse=True))
            .with_panel(lines("Memory", "bytes", sql(MEMORY_SQL, CH_TIME_SERIES), span=8, clickhouse=True))
            .with_row(row("All services"))
            .with_panel(grid("Capacity of every service", everything, span=24)))
